//! The filter's counters, declared once. Envoy shows them under its stats with the prefix
//! `wasmcustom.` (see README for the full list).

use crate::deny::Denial;

/// A counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Requests let through with a verified token.
    Allowed,
    /// Requests refused, by reason.
    Denied(Denial),
    /// Requests that were paused to wait for a key set (first load or unknown `kid`).
    WaitedForKeys,
    /// Key-set fetches that returned a usable key set.
    FetchOk,
    /// Key-set fetches that failed (unreachable, timeout, non-200, not a key set, too large).
    FetchFailed,
    /// Keys skipped in fetched key sets (unsupported or unusable), counted once per new key set.
    KeysSkipped,
    /// Times a fetched key set differed from the previous one.
    KeySetChanged,
    /// RS*/ES* signatures checked by Envoy (BoringSSL, the `verify_signature` foreign function).
    SignatureByEnvoy,
    /// RS*/ES* signatures checked in Wasm because Envoy gave no answer (function missing or forbidden).
    SignatureEnvoyUnavailable,
}

impl Counter {
    /// Every counter, in a stable order (the index is the metric slot in the glue).
    pub fn all() -> Vec<Counter> {
        let mut all = vec![Counter::Allowed];
        all.extend(Denial::ALL.iter().map(|d| Counter::Denied(*d)));
        all.extend([
            Counter::WaitedForKeys,
            Counter::FetchOk,
            Counter::FetchFailed,
            Counter::KeysSkipped,
            Counter::KeySetChanged,
            Counter::SignatureByEnvoy,
            Counter::SignatureEnvoyUnavailable,
        ]);
        all
    }

    /// The metric name, dotted under `tokengate.`.
    pub fn name(self) -> String {
        match self {
            Counter::Allowed => "tokengate.allowed".to_owned(),
            Counter::Denied(d) => format!("tokengate.denied.{}", d.code()),
            Counter::WaitedForKeys => "tokengate.waited_for_keys".to_owned(),
            Counter::FetchOk => "tokengate.jwks.fetch_ok".to_owned(),
            Counter::FetchFailed => "tokengate.jwks.fetch_failed".to_owned(),
            Counter::KeysSkipped => "tokengate.jwks.keys_skipped".to_owned(),
            Counter::KeySetChanged => "tokengate.jwks.changed".to_owned(),
            Counter::SignatureByEnvoy => "tokengate.signatures.by_envoy".to_owned(),
            Counter::SignatureEnvoyUnavailable => "tokengate.signatures.envoy_unavailable".to_owned(),
        }
    }

    /// Position in [`Counter::all`].
    pub fn index(self) -> usize {
        match self {
            Counter::Allowed => 0,
            Counter::Denied(d) => 1 + Denial::ALL.iter().position(|x| *x == d).unwrap_or(0),
            Counter::WaitedForKeys => 1 + Denial::ALL.len(),
            Counter::FetchOk => 2 + Denial::ALL.len(),
            Counter::FetchFailed => 3 + Denial::ALL.len(),
            Counter::KeysSkipped => 4 + Denial::ALL.len(),
            Counter::KeySetChanged => 5 + Denial::ALL.len(),
            Counter::SignatureByEnvoy => 6 + Denial::ALL.len(),
            Counter::SignatureEnvoyUnavailable => 7 + Denial::ALL.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_the_list_and_names_are_unique() {
        let all = Counter::all();
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
