//! Denials: one variant per reason a request is refused, and the local reply for each.
//!
//! This is the only place where statuses, reason codes and reply bodies are decided. Reason
//! codes are a public contract (clients, logs and metrics use them); never rename one.

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// No token header at all.
    MissingToken,
    /// The token header appears more than once.
    MultipleTokens,
    /// The header value is not a well-formed compact JWS with the claims' expected types.
    MalformedToken,
    /// `alg` is `none`, HMAC or anything else tokengate does not accept, or `crit` is present.
    DisallowedAlgorithm,
    /// No usable key in the key set matches the token's `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed (beyond the allowed clock skew).
    Expired,
    /// `nbf` is still in the future (beyond the allowed clock skew).
    NotYetValid,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// The token does not grant this namespace or function.
    OutOfScope,
    /// No key set could be loaded, so nothing can be verified.
    KeysUnavailable,
    /// The proxy refused an operation the filter needed (fail closed).
    InternalError,
}

impl Denial {
    /// Every reason, for metrics and documentation.
    pub const ALL: [Denial; 13] = [
        Denial::MissingToken,
        Denial::MultipleTokens,
        Denial::MalformedToken,
        Denial::DisallowedAlgorithm,
        Denial::UnknownKey,
        Denial::BadSignature,
        Denial::Expired,
        Denial::NotYetValid,
        Denial::WrongIssuer,
        Denial::WrongAudience,
        Denial::OutOfScope,
        Denial::KeysUnavailable,
        Denial::InternalError,
    ];

    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::MultipleTokens => "multiple_tokens",
            Denial::MalformedToken => "malformed_token",
            Denial::DisallowedAlgorithm => "disallowed_algorithm",
            Denial::UnknownKey => "unknown_key",
            Denial::BadSignature => "bad_signature",
            Denial::Expired => "expired",
            Denial::NotYetValid => "not_yet_valid",
            Denial::WrongIssuer => "wrong_issuer",
            Denial::WrongAudience => "wrong_audience",
            Denial::OutOfScope => "out_of_scope",
            Denial::KeysUnavailable => "keys_unavailable",
            Denial::InternalError => "internal_error",
        }
    }

    /// The HTTP status of the local reply. Every denial is a 403: the caller is not allowed,
    /// and an unavailable key service must not look like a retryable upstream error.
    pub fn status(self) -> u32 {
        403
    }

    /// The reply body: a small JSON object with the reason code, never the token.
    pub fn body(self) -> String {
        format!("{{\"error\":\"forbidden\",\"reason\":\"{}\"}}\n", self.code())
    }

    /// Extra headers of the local reply.
    pub fn headers(self) -> [(&'static str, &'static str); 2] {
        [("content-type", "application/json"), ("cache-control", "no-store")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_bodies_are_json() {
        let codes: HashSet<_> = Denial::ALL.iter().map(|d| d.code()).collect();
        assert_eq!(codes.len(), Denial::ALL.len());
        for denial in Denial::ALL {
            let code = denial.code();
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
            let body: serde_json::Value = serde_json::from_str(&denial.body()).unwrap();
            assert_eq!(body["reason"], code);
            assert_eq!(denial.status(), 403);
        }
    }
}
