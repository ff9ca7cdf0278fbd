//! One worker's request gate: token header -> allow, deny, or pause until keys arrive.
//!
//! This is the whole per-request decision, host-free: the glue hands it the token header
//! values, the time and the shared data, and acts on the answer. Requests that arrive before
//! the first key set, or that name a `kid` the key set does not have yet, are paused (bounded in
//! number and time) and resolved when a fetch finishes; they are never let through unverified.

use crate::config::{FilterConfig, KeySource};
use crate::deny::Denial;
use crate::host::SharedData;
use crate::hostcrypto::{RustOnly, SignatureHost};
use crate::keycache::{FetchPolicy, FetchResult, Fetched, KeyCache, SyncResult, MIN_REFETCH_MS};
use crate::token::{self, Token};
use crate::verified::VerifiedCache;
use crate::verify::{self, Policy, VerifiedClaims};
use std::rc::Rc;

/// Most paused requests per worker; past that, requests are decided at once.
pub const MAX_PAUSED: usize = 1024;
/// Most paused requests finished by one tick or fetch answer; the rest wait for the next tick.
/// Envoy carries out the replies and continues after the callback, and each can call into the
/// VM again (another tokengate filter in the same chain), which carries out the rest from
/// inside that call: a batch of a few hundred nests deep enough to overflow V8's stack, which
/// kills the VM.
pub const MAX_RESOLVED_PER_CALL: usize = 32;
/// Extra time a paused request waits beyond the fetch timeout, for the result to spread.
const WAIT_SLACK_MS: u64 = 500;

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Allowed, with what the token proved (shared with the verified-token cache).
    Allow(Rc<VerifiedClaims>),
    Deny(Denial),
    /// Paused: the answer comes later, from [`Gate::on_tick`] or [`Gate::on_fetch_done`].
    Paused,
}

/// A paused request's final answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub context_id: u32,
    pub result: Result<Rc<VerifiedClaims>, Denial>,
}

/// What a tick asks the glue to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Start a key-set fetch now.
    pub fetch: bool,
    pub synced: SyncResult,
    pub resolved: Vec<Resolved>,
}

#[derive(Debug)]
struct Paused {
    context_id: u32,
    token: Token,
    until_completed: u64,
    deadline_ms: u64,
}

/// One worker's gate for one filter instance.
#[derive(Debug)]
pub struct Gate {
    policy: Policy,
    cache: KeyCache,
    paused: Vec<Paused>,
    verified: VerifiedCache,
    host: Box<dyn SignatureHost>,
}

impl Gate {
    /// A gate for a validated configuration.
    pub fn new(config: &FilterConfig) -> Gate {
        let cache = match &config.keys {
            KeySource::Local(keys) => KeyCache::local(keys.clone()),
            KeySource::Remote(remote) => KeyCache::remote(
                &remote.source_id(),
                FetchPolicy {
                    refresh_ms: remote.refresh_seconds * 1000,
                    timeout_ms: remote.timeout_ms,
                    max_stale_ms: remote.max_stale_seconds.map(|s| s * 1000),
                },
            ),
        };
        Gate {
            policy: config.policy.clone(),
            cache,
            paused: Vec::new(),
            verified: VerifiedCache::new(config.token_cache_size, config.policy.clock_skew_seconds),
            host: Box::new(RustOnly),
        }
    }

    /// Lets `host` check RS* and ES* signatures (Envoy's BoringSSL); by default all are checked in Rust.
    pub fn with_signature_host(mut self, host: Box<dyn SignatureHost>) -> Gate {
        self.host = host;
        self
    }

    /// Prepares the shared record; call once at configure time.
    pub fn start(&mut self, store: &dyn SharedData) {
        self.cache.init(store);
    }

    /// The key cache (read-only), for logs.
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Number of paused requests.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// Whether the glue should tick often: requests are waiting, or keys are still to come.
    pub fn wants_fast_ticks(&self) -> bool {
        !self.cache.is_local() && (!self.paused.is_empty() || self.cache.keys().is_none())
    }

    /// Decides a request from the values of its token header (one entry per header line).
    pub fn on_request(&mut self, store: &dyn SharedData, context_id: u32, values: &[&[u8]], now_ms: u64) -> Outcome {
        let value = match values {
            [] => return Outcome::Deny(Denial::MissingToken),
            [one] => *one,
            _ => return Outcome::Deny(Denial::MultipleTokens),
        };
        // A token that verified under the current key set, and has not expired since, is
        // allowed without parsing or checking its signature again.
        // Values too long to be a token are refused by the parser without being hashed.
        let now_s = now_ms as f64 / 1000.0;
        if value.len() <= token::MAX_TOKEN_BYTES && self.cache.keys().is_some() && !self.cache.is_stale(now_ms) {
            if let Some(claims) = self.verified.get(value, self.cache.version(), now_s) {
                return Outcome::Allow(claims);
            }
        }
        let outcome = self.decide_value(store, context_id, value, now_ms);
        if let Outcome::Allow(claims) = &outcome {
            self.verified.insert(value, self.cache.version(), claims);
        }
        outcome
    }

    fn decide_value(&mut self, store: &dyn SharedData, context_id: u32, value: &[u8], now_ms: u64) -> Outcome {
        match token::parse(value) {
            Ok(token) => self.decide(store, context_id, token, now_ms, true),
            Err(e) => Outcome::Deny(e.denial()),
        }
    }

    /// Periodic work: pick up key sets other workers fetched, claim due fetches, resolve
    /// paused requests whose wait is over.
    pub fn on_tick(&mut self, store: &dyn SharedData, now_ms: u64) -> Tick {
        let synced = self.cache.sync(store);
        let fetch = self.cache.claim_fetch(store, now_ms);
        let resolved = self.resolve(store, now_ms);
        Tick { fetch, synced, resolved }
    }

    /// The fetch this worker claimed has ended.
    pub fn on_fetch_done(
        &mut self,
        store: &dyn SharedData,
        now_ms: u64,
        outcome: Result<Fetched<'_>, String>,
    ) -> (FetchResult, Vec<Resolved>) {
        let result = self.cache.finish_fetch(store, now_ms, outcome);
        (result, self.resolve(store, now_ms))
    }

    fn decide(
        &mut self,
        store: &dyn SharedData,
        context_id: u32,
        token: Token,
        now_ms: u64,
        may_wait: bool,
    ) -> Outcome {
        if self.cache.keys().is_none() {
            self.cache.sync(store);
        }
        let Some(keys) = self.cache.keys().cloned() else {
            return match self.cache.first_keys_target(now_ms) {
                Some(target) if may_wait => {
                    let deadline = now_ms + self.cache.policy().timeout_ms + WAIT_SLACK_MS;
                    self.pause(context_id, token, target, deadline, Denial::KeysUnavailable)
                }
                _ => Outcome::Deny(Denial::KeysUnavailable),
            };
        };
        if self.cache.is_stale(now_ms) {
            return Outcome::Deny(Denial::KeysUnavailable);
        }
        match verify::verify_with(&token, &keys, &self.policy, now_ms as f64 / 1000.0, self.host.as_ref()) {
            Ok(claims) => Outcome::Allow(Rc::new(claims)),
            Err(Denial::UnknownKey) if may_wait && verify::names_unknown_kid(&token, &keys) => {
                match self.cache.want_refetch(store) {
                    Some(target) => {
                        let deadline = now_ms + MIN_REFETCH_MS + self.cache.policy().timeout_ms + WAIT_SLACK_MS;
                        self.pause(context_id, token, target, deadline, Denial::UnknownKey)
                    }
                    None => Outcome::Deny(Denial::UnknownKey),
                }
            }
            Err(denial) => Outcome::Deny(denial),
        }
    }

    fn pause(
        &mut self,
        context_id: u32,
        token: Token,
        until_completed: u64,
        deadline_ms: u64,
        otherwise: Denial,
    ) -> Outcome {
        if self.paused.len() >= MAX_PAUSED {
            return Outcome::Deny(otherwise);
        }
        self.paused.push(Paused { context_id, token, until_completed, deadline_ms });
        Outcome::Paused
    }

    /// Forgets paused requests whose stream is gone (`alive` says which are not), so that their
    /// places are free again at once; returns how many went.
    pub fn forget_gone(&mut self, alive: impl Fn(u32) -> bool) -> usize {
        let before = self.paused.len();
        self.paused.retain(|p| alive(p.context_id));
        before - self.paused.len()
    }

    fn resolve(&mut self, store: &dyn SharedData, now_ms: u64) -> Vec<Resolved> {
        let completed = self.cache.completed();
        let mut batch = 0;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.paused).into_iter().partition(|p| {
            let due = p.until_completed <= completed || p.deadline_ms <= now_ms;
            batch += usize::from(due);
            due && batch <= MAX_RESOLVED_PER_CALL
        });
        self.paused = waiting;
        due.into_iter()
            .map(|p| {
                let result = match self.decide(store, p.context_id, p.token, now_ms, false) {
                    Outcome::Allow(claims) => Ok(claims),
                    Outcome::Deny(denial) => Err(denial),
                    Outcome::Paused => Err(Denial::KeysUnavailable),
                };
                Resolved { context_id: p.context_id, result }
            })
            .collect()
    }
}

/// Header names of the verified facts sent upstream (all under
/// [`crate::config::UPSTREAM_HEADER_PREFIX`], which clients can never set).
pub const TOKEN_ID_HEADER: &str = "x-tokengate-token-id";
pub const NAMESPACE_HEADER: &str = "x-tokengate-namespace-id";
pub const FUNCTION_HEADER: &str = "x-tokengate-function-id";

/// The upstream headers for an allowed request. A value that is not plain visible ASCII (or is
/// longer than 256 bytes) is left out rather than passed on, so a claim can never inject a header.
pub fn upstream_headers(claims: &VerifiedClaims) -> Vec<(&'static str, &str)> {
    [
        (TOKEN_ID_HEADER, claims.token_id.as_deref()),
        (NAMESPACE_HEADER, claims.namespace_id.as_deref()),
        (FUNCTION_HEADER, claims.function_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .filter(|(_, value)| !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| (0x20..0x7f).contains(&b)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::config;
    use crate::host::MemorySharedData;
    use ed25519_compact::{KeyPair, Seed};

    fn pair(seed: u8) -> KeyPair {
        KeyPair::from_seed(Seed::new([seed; 32]))
    }

    fn jwks(seeds: &[u8]) -> Vec<u8> {
        let keys: Vec<_> = seeds
            .iter()
            .map(|s| serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":format!("k{s}"),"x":b64::encode(pair(*s).pk.as_ref())}))
            .collect();
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    fn token(seed: u8, claims: &str) -> Vec<u8> {
        let header = format!(r#"{{"alg":"EdDSA","kid":"k{seed}"}}"#);
        let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(claims.as_bytes()));
        let sig = pair(seed).sk.sign(input.as_bytes(), None);
        format!("{input}.{}", b64::encode(sig.as_ref())).into_bytes()
    }

    fn remote_gate(store: &MemorySharedData) -> Gate {
        let config = config::parse(br#"{"jwks":{"cluster":"keys","path":"/jwks.json","timeout_ms":1000}}"#).unwrap();
        let mut gate = Gate::new(&config);
        gate.start(store);
        gate
    }

    #[test]
    fn upstream_headers_carry_only_safe_values() {
        let claims = VerifiedClaims {
            token_id: Some("t-1".into()),
            namespace_id: Some("ns\r\nx-injected: 1".into()),
            function_id: Some(String::new()),
            expires_at: None,
            not_before: None,
        };
        assert_eq!(upstream_headers(&claims), vec![(TOKEN_ID_HEADER, "t-1")]);
        let long = VerifiedClaims { token_id: Some("a".repeat(257)), ..VerifiedClaims::default() };
        assert!(upstream_headers(&long).is_empty());
    }

    #[test]
    fn header_count_and_syntax_are_decided_without_keys() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        assert_eq!(gate.on_request(&store, 1, &[], 0), Outcome::Deny(Denial::MissingToken));
        let t = token(1, "{}");
        assert_eq!(gate.on_request(&store, 1, &[&t, &t], 0), Outcome::Deny(Denial::MultipleTokens));
        assert_eq!(gate.on_request(&store, 1, &[b"garbage"], 0), Outcome::Deny(Denial::MalformedToken));
        assert_eq!(gate.on_request(&store, 1, &[b""], 0), Outcome::Deny(Denial::MalformedToken));
        assert_eq!(gate.paused(), 0);
    }

    #[test]
    fn a_request_before_the_first_keys_waits_for_them() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        let t = token(1, "{}");
        assert_eq!(gate.on_request(&store, 7, &[&t], 0), Outcome::Paused);
        let tick = gate.on_tick(&store, 10);
        assert!(tick.fetch && tick.resolved.is_empty());
        let (result, resolved) = gate.on_fetch_done(&store, 20, Ok(Fetched::body(&jwks(&[1]))));
        assert!(matches!(result, FetchResult::Stored { changed: true, .. }));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].context_id, 7);
        assert!(resolved[0].result.is_ok());
    }

    #[test]
    fn paused_requests_are_denied_when_the_first_fetch_fails_or_times_out() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        let t = token(1, "{}");
        assert_eq!(gate.on_request(&store, 1, &[&t], 0), Outcome::Paused);
        assert!(gate.on_tick(&store, 0).fetch);
        let (_, resolved) = gate.on_fetch_done(&store, 5, Ok(Fetched::body(b"<html>502</html>")));
        assert_eq!(resolved, vec![Resolved { context_id: 1, result: Err(Denial::KeysUnavailable) }]);
        // Once the key service has failed, new requests are denied at once, not parked.
        assert_eq!(gate.on_request(&store, 2, &[&t], 10), Outcome::Deny(Denial::KeysUnavailable));

        // A fetch that never answers: the paused request is denied at its deadline.
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        assert_eq!(gate.on_request(&store, 3, &[&t], 0), Outcome::Paused);
        assert!(gate.on_tick(&store, 0).fetch);
        assert!(gate.on_tick(&store, 1_499).resolved.is_empty());
        let late = gate.on_tick(&store, 1_500).resolved;
        assert_eq!(late, vec![Resolved { context_id: 3, result: Err(Denial::KeysUnavailable) }]);
    }

    #[test]
    fn an_unknown_kid_waits_for_one_refetch_then_is_decided() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        assert!(gate.on_tick(&store, 0).fetch);
        gate.on_fetch_done(&store, 5, Ok(Fetched::body(&jwks(&[1]))));
        let fresh = token(2, "{}");
        assert_eq!(gate.on_request(&store, 9, &[&fresh], 100), Outcome::Paused);
        // Rate limit: no refetch before 1 s after the last fetch started.
        assert!(!gate.on_tick(&store, 999).fetch);
        assert!(gate.on_tick(&store, 1_000).fetch);
        let (_, resolved) = gate.on_fetch_done(&store, 1_010, Ok(Fetched::body(&jwks(&[1, 2]))));
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].result.is_ok(), "a freshly created token is accepted");
        // A kid that is still unknown after the refetch is denied.
        let stranger = token(3, "{}");
        assert_eq!(gate.on_request(&store, 10, &[&stranger], 1_100), Outcome::Paused);
        assert!(gate.on_tick(&store, 2_000).fetch);
        let (_, resolved) = gate.on_fetch_done(&store, 2_010, Ok(Fetched::body(&jwks(&[1, 2]))));
        assert_eq!(resolved, vec![Resolved { context_id: 10, result: Err(Denial::UnknownKey) }]);
    }

    #[test]
    fn token_cache_size_bounds_the_verified_tokens_kept() {
        for (size, kept) in [(None, 3), (Some(2), 2), (Some(0), 0)] {
            let store = MemorySharedData::default();
            let size = size.map_or(String::new(), |n| format!(r#","token_cache_size":{n}"#));
            let doc = format!(r#"{{"jwks":{{"cluster":"keys","path":"/c"}}{size}}}"#);
            let mut gate = Gate::new(&config::parse(doc.as_bytes()).unwrap());
            gate.start(&store);
            assert!(gate.on_tick(&store, 0).fetch);
            gate.on_fetch_done(&store, 10, Ok(Fetched::body(&jwks(&[1]))));
            for n in 0..3 {
                let t = token(1, &format!(r#"{{"jti":"{n}"}}"#));
                for _ in 0..2 {
                    assert!(matches!(gate.on_request(&store, 1, &[&t], 20), Outcome::Allow(_)), "{doc}");
                }
            }
            assert_eq!(gate.cached_tokens(), kept, "{doc}");
        }
    }

    #[test]
    fn a_cached_token_is_refused_when_the_clock_steps_back_before_nbf() {
        let store = MemorySharedData::default();
        let doc = br#"{"jwks":{"cluster":"keys","path":"/n"},"clock_skew_seconds":0}"#;
        let mut gate = Gate::new(&config::parse(doc).unwrap());
        gate.start(&store);
        assert!(gate.on_tick(&store, 0).fetch);
        gate.on_fetch_done(&store, 10, Ok(Fetched::body(&jwks(&[1]))));
        let t = token(1, r#"{"nbf":100,"exp":200}"#);
        assert!(matches!(gate.on_request(&store, 1, &[&t], 100_000), Outcome::Allow(_)));
        assert_eq!(gate.cached_tokens(), 1);
        assert_eq!(gate.on_request(&store, 2, &[&t], 50_000), Outcome::Deny(Denial::NotYetValid));
        assert!(matches!(gate.on_request(&store, 3, &[&t], 150_000), Outcome::Allow(_)));
        assert_eq!(gate.on_request(&store, 4, &[&t], 200_000), Outcome::Deny(Denial::Expired));
    }

    #[test]
    fn stale_keys_are_refused_only_when_a_maximum_is_configured() {
        let store = MemorySharedData::default();
        let doc = br#"{"jwks":{"cluster":"keys","path":"/s","refresh_seconds":1,"max_stale_seconds":5}}"#;
        let mut gate = Gate::new(&config::parse(doc).unwrap());
        gate.start(&store);
        assert!(gate.on_tick(&store, 0).fetch);
        gate.on_fetch_done(&store, 10, Ok(Fetched::body(&jwks(&[1]))));
        let t = token(1, "{}");
        assert!(matches!(gate.on_request(&store, 1, &[&t], 4_000), Outcome::Allow(_)));
        // Every refresh fails from here on.
        for now in [1_010, 2_020, 4_030] {
            if gate.on_tick(&store, now).fetch {
                gate.on_fetch_done(&store, now + 5, Err("down".into()));
            }
        }
        assert_eq!(gate.on_request(&store, 2, &[&t], 5_011), Outcome::Deny(Denial::KeysUnavailable));
    }

    #[test]
    fn a_cached_token_stops_working_when_its_key_leaves_the_key_set() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        assert!(gate.on_tick(&store, 0).fetch);
        gate.on_fetch_done(&store, 5, Ok(Fetched::body(&jwks(&[1, 2]))));
        let t = token(1, r#"{"exp":100}"#);
        assert!(matches!(gate.on_request(&store, 1, &[&t], 10), Outcome::Allow(_)));
        assert!(matches!(gate.on_request(&store, 2, &[&t], 20), Outcome::Allow(_)), "from the cache");
        // Expired (exp 100 + 60 s skew): refused even though it is cached.
        assert_eq!(gate.on_request(&store, 3, &[&t], 160_000), Outcome::Deny(Denial::Expired));
        let fresh = token(1, "{}");
        assert!(matches!(gate.on_request(&store, 4, &[&fresh], 160_000), Outcome::Allow(_)));
        // Key 1 is deleted: the next key set no longer has it, and the cached token is refused.
        assert!(gate.on_tick(&store, 1_000_000).fetch);
        gate.on_fetch_done(&store, 1_000_005, Ok(Fetched::body(&jwks(&[2]))));
        assert_eq!(gate.on_request(&store, 5, &[&fresh], 1_000_010), Outcome::Paused, "unknown kid: one refetch");
    }

    #[test]
    fn paused_requests_are_finished_in_bounded_batches_oldest_first() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        let t = token(1, "{}");
        for id in 0..100 {
            assert_eq!(gate.on_request(&store, id, &[&t], 0), Outcome::Paused);
        }
        assert!(gate.on_tick(&store, 0).fetch);
        let (_, first) = gate.on_fetch_done(&store, 5, Ok(Fetched::body(&jwks(&[1]))));
        let ids: Vec<u32> = first.iter().map(|r| r.context_id).collect();
        assert_eq!(ids, (0..MAX_RESOLVED_PER_CALL as u32).collect::<Vec<_>>());
        assert_eq!(gate.paused(), 100 - MAX_RESOLVED_PER_CALL);
        assert!(gate.wants_fast_ticks(), "the rest are finished at the next ticks");
        let mut rest = Vec::new();
        while gate.paused() > 0 {
            let tick = gate.on_tick(&store, 25);
            assert!(!tick.resolved.is_empty() && tick.resolved.len() <= MAX_RESOLVED_PER_CALL);
            rest.extend(tick.resolved);
        }
        assert_eq!(rest.len(), 100 - MAX_RESOLVED_PER_CALL);
        assert!(first.iter().chain(&rest).all(|r| r.result.is_ok()));
    }

    #[test]
    fn paused_requests_whose_stream_is_gone_free_their_places() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        let t = token(1, "{}");
        for id in 0..MAX_PAUSED as u32 {
            assert_eq!(gate.on_request(&store, id, &[&t], 0), Outcome::Paused);
        }
        assert_eq!(gate.on_request(&store, 5_000, &[&t], 0), Outcome::Deny(Denial::KeysUnavailable));
        assert_eq!(gate.forget_gone(|id| id % 2 == 0), MAX_PAUSED / 2);
        assert_eq!(gate.on_request(&store, 5_001, &[&t], 0), Outcome::Paused);
    }

    #[test]
    fn paused_requests_are_bounded() {
        let store = MemorySharedData::default();
        let mut gate = remote_gate(&store);
        let t = token(1, "{}");
        for id in 0..MAX_PAUSED as u32 {
            assert_eq!(gate.on_request(&store, id, &[&t], 0), Outcome::Paused);
        }
        assert_eq!(gate.on_request(&store, 99_999, &[&t], 0), Outcome::Deny(Denial::KeysUnavailable));
        // Their wait over, they are finished (in batches) and their places freed.
        let mut finished = 0;
        while gate.paused() > 0 {
            let resolved = gate.on_tick(&store, 60_000).resolved.len();
            assert!(resolved > 0, "a tick with requests past their wait finished none");
            finished += resolved;
        }
        assert_eq!(finished, MAX_PAUSED);
    }

    #[test]
    fn local_keys_never_wait() {
        let store = MemorySharedData::default();
        let doc = format!(r#"{{"local_jwks":{}}}"#, String::from_utf8(jwks(&[1])).unwrap());
        let mut gate = Gate::new(&config::parse(doc.as_bytes()).unwrap());
        gate.start(&store);
        assert!(matches!(gate.on_request(&store, 1, &[&token(1, "{}")], 0), Outcome::Allow(_)));
        assert_eq!(gate.on_request(&store, 1, &[&token(2, "{}")], 0), Outcome::Deny(Denial::UnknownKey));
        assert!(!gate.on_tick(&store, 0).fetch);
        assert!(!gate.wants_fast_ticks());
    }

    #[test]
    fn keys_fetched_by_another_worker_are_used() {
        let store = MemorySharedData::default();
        let mut a = remote_gate(&store);
        let mut b = remote_gate(&store);
        let t = token(1, "{}");
        assert_eq!(b.on_request(&store, 1, &[&t], 0), Outcome::Paused);
        assert!(a.on_tick(&store, 0).fetch);
        assert!(!b.on_tick(&store, 0).fetch, "only one worker fetches");
        a.on_fetch_done(&store, 5, Ok(Fetched::body(&jwks(&[1]))));
        let tick = b.on_tick(&store, 20);
        assert_eq!(tick.synced, SyncResult::Loaded { keys: 1 });
        assert_eq!(tick.resolved.len(), 1);
        assert!(tick.resolved[0].result.is_ok());
    }
}
