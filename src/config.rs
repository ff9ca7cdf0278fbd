//! Plugin configuration JSON -> validated [`FilterConfig`].
//!
//! The configuration is a public contract (see README). It is validated once, at
//! `on_configure`: unknown fields and bad values are refused with an error naming the field.

use crate::json;
use crate::jwks::{self, KeySet};
use crate::verified;
use crate::verify::{Policy, Scope};
use serde_json::{Map, Value};

/// Default token header.
pub const DEFAULT_HEADER: &str = "x-auth-token";
/// Prefix of the headers tokengate sends upstream; clients can never set these.
pub const UPSTREAM_HEADER_PREFIX: &str = "x-tokengate-";

/// Whether a request header name belongs to tokengate's upstream headers. Underscores count
/// as dashes, because many upstreams (CGI, WSGI, PHP) read `x_tokengate_token_id` and
/// `x-tokengate-token-id` as the same variable.
pub fn is_reserved_header(name: &[u8]) -> bool {
    let prefix = UPSTREAM_HEADER_PREFIX.as_bytes();
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(have, want)| {
            let have = if *have == b'_' { b'-' } else { have.to_ascii_lowercase() };
            have == *want
        })
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Fetched from an Envoy cluster and refreshed.
    Remote(RemoteJwks),
    /// Given inline, already parsed.
    Local(KeySet),
}

/// A key set fetched over HTTP through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
    /// Deny everything once the last good key set is this old (`None`: keep it forever).
    pub max_stale_seconds: Option<u64>,
}

impl RemoteJwks {
    /// Identifies the key source: filter instances with the same source share one key set.
    /// Each part goes in with its length, so no two sources can spell the same id (`|` is
    /// common in cluster names: Istio's `outbound|8081||keys.tokengate.svc.cluster.local`).
    pub fn source_id(&self) -> String {
        let (c, a, p) = (&self.cluster, &self.authority, &self.path);
        format!("{}:{c}|{}:{a}|{}:{p}", c.len(), a.len(), p.len())
    }
}

/// A validated filter configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub keys: KeySource,
    /// Lower-case name of the token header.
    pub header: String,
    pub policy: Policy,
    /// Keep the token header on the request that goes upstream.
    pub forward_token: bool,
    /// Verified tokens remembered per worker (0: none).
    pub token_cache_size: usize,
    /// Keys skipped while parsing `local_jwks`.
    pub local_keys_skipped: usize,
}

impl FilterConfig {
    /// One line describing the configuration, for the log (no secrets in it).
    pub fn summary(&self) -> String {
        let keys = match &self.keys {
            KeySource::Remote(r) => format!(
                "jwks=cluster:{} path:{} authority:{} refresh:{}s timeout:{}ms max_stale:{}",
                r.cluster,
                r.path,
                r.authority,
                r.refresh_seconds,
                r.timeout_ms,
                r.max_stale_seconds.map_or("none".to_owned(), |s| format!("{s}s"))
            ),
            KeySource::Local(set) => format!("local_jwks={} keys ({} skipped)", set.len(), self.local_keys_skipped),
        };
        let scope = match &self.policy.scope {
            None => "none".to_owned(),
            Some(Scope { namespace_id, function_id: None }) => format!("namespace:{namespace_id}"),
            Some(Scope { namespace_id, function_id: Some(f) }) => format!("namespace:{namespace_id} function:{f}"),
        };
        format!(
            "{keys} header={} scope={scope} issuer={} audiences={} clock_skew={}s forward_token={} token_cache_size={}",
            self.header,
            self.policy.issuer.as_deref().unwrap_or("any"),
            if self.policy.audiences.is_empty() { "any".to_owned() } else { self.policy.audiences.join(",") },
            self.policy.clock_skew_seconds,
            self.forward_token,
            self.token_cache_size
        )
    }
}

/// A refused configuration: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

fn refuse(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_owned(), problem: problem.into() }
}

const TOP_FIELDS: [&str; 11] = [
    "jwks",
    "local_jwks",
    "header",
    "namespace_id",
    "function_id",
    "issuer",
    "audiences",
    "clock_skew_seconds",
    "forward_token",
    "token_cache_size",
    "comment",
];
const JWKS_FIELDS: [&str; 6] = ["cluster", "path", "authority", "refresh_seconds", "timeout_ms", "max_stale_seconds"];

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    let value = json::parse_strict(bytes).map_err(|e| refuse("(document)", format!("not valid JSON: {e}")))?;
    let Value::Object(top) = value else {
        return Err(refuse("(document)", "must be a JSON object"));
    };
    reject_unknown(&top, &TOP_FIELDS, "")?;

    let keys = match (top.get("jwks"), top.get("local_jwks")) {
        (Some(remote), None) => KeySource::Remote(parse_remote(remote)?),
        (None, Some(local)) => {
            let parsed = jwks::parse_value(local).map_err(|e| refuse("local_jwks", e.to_string()))?;
            let skipped = parsed.skipped.len();
            return finish(&top, KeySource::Local(parsed.keys), skipped);
        }
        (Some(_), Some(_)) => return Err(refuse("jwks", "give exactly one of `jwks` and `local_jwks`, not both")),
        (None, None) => return Err(refuse("jwks", "required: give `jwks` (a cluster to fetch from) or `local_jwks`")),
    };
    finish(&top, keys, 0)
}

fn finish(top: &Map<String, Value>, keys: KeySource, local_keys_skipped: usize) -> Result<FilterConfig, ConfigError> {
    let header = match optional_string(top, "header")? {
        None => DEFAULT_HEADER.to_owned(),
        Some(name) => {
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || lower.len() > 128 || !lower.bytes().all(is_tchar) {
                return Err(refuse("header", "must be an HTTP header name (letters, digits, -, _ ...)"));
            }
            if is_reserved_header(lower.as_bytes()) {
                return Err(refuse(
                    "header",
                    format!("must not start with `{UPSTREAM_HEADER_PREFIX}` (tokengate's own upstream headers)"),
                ));
            }
            lower
        }
    };
    let namespace_id = optional_id(top, "namespace_id")?;
    let function_id = optional_id(top, "function_id")?;
    let scope = match (namespace_id, function_id) {
        (None, None) => None,
        (Some(namespace_id), function_id) => Some(Scope { namespace_id, function_id }),
        (None, Some(_)) => return Err(refuse("function_id", "needs `namespace_id` too")),
    };
    let issuer = optional_string(top, "issuer")?.map(str::to_owned);
    if issuer.as_deref() == Some("") {
        return Err(refuse("issuer", "must not be empty"));
    }
    let audiences = match top.get("audiences") {
        None => Vec::new(),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refuse("audiences", "must be an array of non-empty strings"))?,
        Some(_) => return Err(refuse("audiences", "must be a non-empty array of non-empty strings")),
    };
    let clock_skew_seconds = optional_integer(top, "clock_skew_seconds", 0..=3600)?.unwrap_or(60);
    let forward_token = match top.get("forward_token") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(refuse("forward_token", "must be true or false")),
    };
    let token_cache_size = optional_integer(top, "token_cache_size", 0..=verified::MAX_ENTRIES as u64)?
        .map_or(verified::DEFAULT_ENTRIES, |n| n as usize);
    if top.get("comment").is_some_and(|c| !c.is_string()) {
        return Err(refuse("comment", "must be a string"));
    }
    Ok(FilterConfig {
        keys,
        header,
        policy: Policy { clock_skew_seconds, issuer, audiences, scope },
        forward_token,
        token_cache_size,
        local_keys_skipped,
    })
}

fn parse_remote(value: &Value) -> Result<RemoteJwks, ConfigError> {
    let Value::Object(jwks) = value else {
        return Err(refuse("jwks", "must be an object with `cluster` and `path`"));
    };
    reject_unknown(jwks, &JWKS_FIELDS, "jwks.")?;
    let cluster = optional_string(jwks, "cluster")
        .map_err(|_| refuse("jwks.cluster", "must be a string"))?
        .ok_or_else(|| refuse("jwks.cluster", "required: the Envoy cluster that serves the key set"))?;
    if cluster.is_empty() || cluster.len() > 256 || cluster.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse("jwks.cluster", "must be a cluster name without spaces (at most 256 bytes)"));
    }
    let path = optional_string(jwks, "path")
        .map_err(|_| refuse("jwks.path", "must be a string"))?
        .ok_or_else(|| refuse("jwks.path", "required: the key set's path, like /v1/namespaces/NS/jwks.json"))?;
    if !path.starts_with('/') || path.len() > 2048 || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse("jwks.path", "must start with / and contain only visible ASCII (at most 2048 bytes)"));
    }
    let authority =
        match optional_string(jwks, "authority").map_err(|_| refuse("jwks.authority", "must be a string"))? {
            None => cluster.to_owned(),
            Some(a) if !a.is_empty() && a.len() <= 256 && a.bytes().all(|b| b.is_ascii_graphic()) => a.to_owned(),
            Some(_) => return Err(refuse("jwks.authority", "must be a host[:port] without spaces")),
        };
    let refresh_seconds = optional_integer(jwks, "refresh_seconds", 1..=86_400)
        .map_err(|e| refuse("jwks.refresh_seconds", e.problem))?
        .unwrap_or(300);
    let timeout_ms = optional_integer(jwks, "timeout_ms", 10..=60_000)
        .map_err(|e| refuse("jwks.timeout_ms", e.problem))?
        .unwrap_or(2000);
    let max_stale_seconds = optional_integer(jwks, "max_stale_seconds", 1..=31_536_000)
        .map_err(|e| refuse("jwks.max_stale_seconds", e.problem))?;
    if max_stale_seconds.is_some_and(|max| max <= refresh_seconds) {
        return Err(refuse("jwks.max_stale_seconds", "must be longer than jwks.refresh_seconds"));
    }
    Ok(RemoteJwks {
        cluster: cluster.to_owned(),
        path: path.to_owned(),
        authority,
        refresh_seconds,
        timeout_ms,
        max_stale_seconds,
    })
}

fn reject_unknown(object: &Map<String, Value>, known: &[&str], prefix: &str) -> Result<(), ConfigError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => {
            let name = json::printable(unknown, 64);
            Err(refuse(&format!("{prefix}{name}"), format!("unknown field (known: {})", known.join(", "))))
        }
        None => Ok(()),
    }
}

fn optional_string<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(refuse(field, "must be a string")),
    }
}

fn optional_id(object: &Map<String, Value>, field: &str) -> Result<Option<String>, ConfigError> {
    match optional_string(object, field)? {
        None => Ok(None),
        Some(id) if !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control) => Ok(Some(id.to_owned())),
        Some(_) => Err(refuse(field, "must be a non-empty string of at most 256 bytes")),
    }
}

fn optional_integer(
    object: &Map<String, Value>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(refuse(field, format!("must be a whole number from {} to {}", range.start(), range.end()))),
        },
        Some(_) => Err(refuse(field, format!("must be a whole number from {} to {}", range.start(), range.end()))),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources_that_differ_never_share_an_id() {
        let source = |cluster: &str, authority: &str, path: &str| RemoteJwks {
            cluster: cluster.to_owned(),
            path: path.to_owned(),
            authority: authority.to_owned(),
            refresh_seconds: 60,
            timeout_ms: 1000,
            max_stale_seconds: None,
        };
        let ids = [
            source("tenant-a|x", "keys", "/j"),
            source("tenant-a", "x|keys", "/j"),
            source("tenant-a", "x", "keys|/j"),
            source("a:1|b", "c", "/j"),
            source("a", "1|b:c", "/j"),
            source("outbound|8081||keys", "", "/j"),
            source("outbound|8081|", "|keys", "/j"),
        ]
        .map(|s| s.source_id());
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[..i].contains(id), "{id} twice");
        }
        // Only what names the source counts: timing settings share the key set.
        let mut slower = source("c", "a", "/p");
        slower.refresh_seconds = 600;
        assert_eq!(slower.source_id(), source("c", "a", "/p").source_id());
    }

    fn field_of(doc: &str) -> Option<String> {
        parse(doc.as_bytes()).err().map(|e| e.field)
    }

    #[test]
    fn a_minimal_remote_config_gets_the_documented_defaults() {
        let config = parse(br#"{"jwks":{"cluster":"keys","path":"/v1/namespaces/ns/jwks.json"}}"#).unwrap();
        let KeySource::Remote(remote) = &config.keys else { panic!("remote expected") };
        assert_eq!(remote.authority, "keys");
        assert_eq!(remote.refresh_seconds, 300);
        assert_eq!(remote.timeout_ms, 2000);
        assert_eq!(config.header, "x-auth-token");
        assert_eq!(config.policy.clock_skew_seconds, 60);
        assert!(!config.forward_token);
        assert_eq!(config.token_cache_size, 1024);
        assert_eq!(config.policy.scope, None);
        assert!(config.summary().contains("cluster:keys"));
    }

    #[test]
    fn reserved_headers_include_underscore_and_case_variants() {
        for name in
            ["x-tokengate-token-id", "X-TokenGate-Function-Id", "x_tokengate_token_id", "x-tokengate_x", "x-tokengate-"]
        {
            assert!(is_reserved_header(name.as_bytes()), "{name}");
        }
        for name in ["x-tokengate", "x-auth-token", "xx-tokengate-id", "x-tokengatex-id", ""] {
            assert!(!is_reserved_header(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn a_full_config() {
        let config = parse(
            br#"{"jwks":{"cluster":"keys","path":"/k","authority":"keys.internal:8081","refresh_seconds":10,"timeout_ms":500},
                "header":"X-Token","namespace_id":"ns","function_id":"fn","issuer":"tokengate",
                "audiences":["a"],"clock_skew_seconds":0,"forward_token":true,"token_cache_size":0,"comment":"demo"}"#,
        )
        .unwrap();
        assert_eq!(config.header, "x-token");
        assert_eq!(config.token_cache_size, 0);
        assert_eq!(config.policy.scope, Some(Scope { namespace_id: "ns".into(), function_id: Some("fn".into()) }));
        assert_eq!(config.policy.clock_skew_seconds, 0);
        assert!(config.forward_token);
    }

    #[test]
    fn local_jwks() {
        let config = parse(br#"{"local_jwks":{"keys":[{"kty":"oct","k":"AA"}]}}"#).unwrap();
        let KeySource::Local(keys) = &config.keys else { panic!("local expected") };
        assert!(keys.is_empty());
        assert_eq!(config.local_keys_skipped, 1);
    }

    #[test]
    fn every_bad_field_is_named() {
        let remote = r#""jwks":{"cluster":"c","path":"/p"}"#;
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "(document)"),
            ("[]".into(), "(document)"),
            ("{}".into(), "jwks"),
            (r#"{"jwks":{"cluster":"c","path":"/p"},"jwks":{}}"#.into(), "(document)"),
            (format!(r#"{{{remote},"local_jwks":{{"keys":[]}}}}"#), "jwks"),
            (format!(r#"{{{remote},"unknown":1}}"#), "unknown"),
            (format!(r#"{{{remote},"":1}}"#), ""),
            (format!(r#"{{{remote},"a\nb":1}}"#), "a\\nb"),
            (r#"{"jwks":{"cluster":"c","path":"/p","extra":1}}"#.into(), "jwks.extra"),
            (r#"{"jwks":"c"}"#.into(), "jwks"),
            (r#"{"jwks":{"path":"/p"}}"#.into(), "jwks.cluster"),
            (r#"{"jwks":{"cluster":"","path":"/p"}}"#.into(), "jwks.cluster"),
            (r#"{"jwks":{"cluster":"a b","path":"/p"}}"#.into(), "jwks.cluster"),
            (r#"{"jwks":{"cluster":"c"}}"#.into(), "jwks.path"),
            (r#"{"jwks":{"cluster":"c","path":"p"}}"#.into(), "jwks.path"),
            (r#"{"jwks":{"cluster":"c","path":"/a b"}}"#.into(), "jwks.path"),
            (r#"{"jwks":{"cluster":"c","path":"/p","authority":""}}"#.into(), "jwks.authority"),
            (r#"{"jwks":{"cluster":"c","path":"/p","refresh_seconds":0}}"#.into(), "jwks.refresh_seconds"),
            (r#"{"jwks":{"cluster":"c","path":"/p","refresh_seconds":"60"}}"#.into(), "jwks.refresh_seconds"),
            (r#"{"jwks":{"cluster":"c","path":"/p","refresh_seconds":1.5}}"#.into(), "jwks.refresh_seconds"),
            (r#"{"jwks":{"cluster":"c","path":"/p","timeout_ms":-1}}"#.into(), "jwks.timeout_ms"),
            (r#"{"jwks":{"cluster":"c","path":"/p","max_stale_seconds":300}}"#.into(), "jwks.max_stale_seconds"),
            (r#"{"jwks":{"cluster":"c","path":"/p","max_stale_seconds":0}}"#.into(), "jwks.max_stale_seconds"),
            (r#"{"jwks":{"cluster":"c","path":"/p","timeout_ms":600000}}"#.into(), "jwks.timeout_ms"),
            (r#"{"local_jwks":"{}"}"#.into(), "local_jwks"),
            (r#"{"local_jwks":{"keys":{}}}"#.into(), "local_jwks"),
            (format!(r#"{{{remote},"header":""}}"#), "header"),
            (format!(r#"{{{remote},"header":"x auth"}}"#), "header"),
            (format!(r#"{{{remote},"header":"x-tokengate-id"}}"#), "header"),
            (format!(r#"{{{remote},"header":5}}"#), "header"),
            (format!(r#"{{{remote},"namespace_id":""}}"#), "namespace_id"),
            (format!(r#"{{{remote},"function_id":"f"}}"#), "function_id"),
            (format!(r#"{{{remote},"issuer":""}}"#), "issuer"),
            (format!(r#"{{{remote},"audiences":[]}}"#), "audiences"),
            (format!(r#"{{{remote},"audiences":"a"}}"#), "audiences"),
            (format!(r#"{{{remote},"audiences":[""]}}"#), "audiences"),
            (format!(r#"{{{remote},"clock_skew_seconds":3601}}"#), "clock_skew_seconds"),
            (format!(r#"{{{remote},"forward_token":"yes"}}"#), "forward_token"),
            (format!(r#"{{{remote},"token_cache_size":65537}}"#), "token_cache_size"),
            (format!(r#"{{{remote},"token_cache_size":-1}}"#), "token_cache_size"),
            (format!(r#"{{{remote},"token_cache_size":1.5}}"#), "token_cache_size"),
            (format!(r#"{{{remote},"token_cache_size":"1024"}}"#), "token_cache_size"),
            (format!(r#"{{{remote},"comment":1}}"#), "comment"),
        ];
        for (doc, field) in cases {
            assert_eq!(field_of(&doc).as_deref(), Some(field), "{doc}");
        }
    }
}
