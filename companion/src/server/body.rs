//! `POST /v1/tokens` body -> validated [`CreateToken`], naming the field at fault.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::rfc3339;
use crate::service::CreateToken;
use crate::validate::{check_description, check_id};

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

const FIELDS: [&str; 4] = ["namespace_id", "function_id", "description", "expires_at"];

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses and validates a create request at `now` (unix seconds).
pub fn parse_create(headers: &HeaderMap, body: &[u8], now: i64) -> Result<CreateToken, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::body("Content-Type must be application/json"));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|error| ApiError::body(format!("malformed JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::body("the body must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(ApiError::field(unknown, "unknown field"));
    }

    let namespace_id = required_string(&object, "namespace_id")?;
    check_id(&namespace_id).map_err(|error| ApiError::field("namespace_id", error))?;
    let function_id = optional_string(&object, "function_id")?;
    if let Some(function_id) = &function_id {
        check_id(function_id).map_err(|error| ApiError::field("function_id", error))?;
    }
    let description = required_string(&object, "description")?;
    check_description(&description).map_err(|error| ApiError::field("description", error))?;
    let expires_at = match optional_string(&object, "expires_at")? {
        None => None,
        Some(text) => Some(check_expiry(&text, now)?),
    };
    Ok(CreateToken { namespace_id, function_id, description, expires_at })
}

fn check_expiry(text: &str, now: i64) -> Result<i64, ApiError> {
    let expires_at = rfc3339::parse(text).map_err(|error| ApiError::field("expires_at", error))?;
    if expires_at <= now {
        return Err(ApiError::field("expires_at", "must be in the future"));
    }
    if expires_at >= rfc3339::YEAR_9999_UNIX {
        return Err(ApiError::field("expires_at", "must be before the year 9999"));
    }
    Ok(expires_at)
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match object.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) => Err(ApiError::field(field, "is required")),
        Some(_) => Err(ApiError::field(field, "must be a string")),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        Some(Value::String(text)) => Ok(Some(text.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(ApiError::field(field, "must be a string or null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const NOW: i64 = 1_796_317_200;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
    }

    fn field_of(result: Result<CreateToken, ApiError>) -> Option<String> {
        match result {
            Err(ApiError::InvalidRequest { field, .. }) => field,
            other => Some(format!("unexpected: {other:?}")),
        }
    }

    #[test]
    fn accepts_good_requests() {
        let body = br#"{"namespace_id":"shop","function_id":"cart","description":"ci",
                        "expires_at":"2026-12-03T19:00:00+01:00"}"#;
        assert_eq!(
            parse_create(&json_headers(), body, NOW).unwrap(),
            CreateToken {
                namespace_id: "shop".to_owned(),
                function_id: Some("cart".to_owned()),
                description: "ci".to_owned(),
                expires_at: Some(NOW + 3600),
            }
        );
        let body = br#"{"namespace_id":"shop","function_id":null,"description":"ns","expires_at":null}"#;
        let parsed = parse_create(&json_headers(), body, NOW).unwrap();
        assert_eq!((parsed.function_id, parsed.expires_at), (None, None));
        let body = br#"{"namespace_id":"shop","description":"ns"}"#;
        assert!(parse_create(&json_headers(), body, NOW).is_ok());
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"namespace_id":"shop","description":"d","extra":1}"#, Some("extra")),
            (r#"{"description":"d"}"#, Some("namespace_id")),
            (r#"{"namespace_id":"-bad","description":"d"}"#, Some("namespace_id")),
            (r#"{"namespace_id":7,"description":"d"}"#, Some("namespace_id")),
            (r#"{"namespace_id":"shop","function_id":"a/b","description":"d"}"#, Some("function_id")),
            (r#"{"namespace_id":"shop","function_id":"","description":"d"}"#, Some("function_id")),
            (r#"{"namespace_id":"shop"}"#, Some("description")),
            (r#"{"namespace_id":"shop","description":""}"#, Some("description")),
            (r#"{"namespace_id":"shop","description":"a\nb"}"#, Some("description")),
            (r#"{"namespace_id":"shop","description":"d","expires_at":"tomorrow"}"#, Some("expires_at")),
            (r#"{"namespace_id":"shop","description":"d","expires_at":"2026-12-03T17:00:00Z"}"#, Some("expires_at")),
            (r#"{"namespace_id":"shop","description":"d","expires_at":"9999-06-01T00:00:00Z"}"#, Some("expires_at")),
            (r#"{"namespace_id":"shop","description":"d","expires_at":5}"#, Some("expires_at")),
            (r#"{"namespace_id":"shop","#, None),
            (r#"["shop"]"#, None),
        ];
        for (body, want) in cases {
            let got = field_of(parse_create(&json_headers(), body.as_bytes(), NOW));
            assert_eq!(got.as_deref(), *want, "{body}");
        }
    }

    #[test]
    fn requires_json_content_type() {
        let body = br#"{"namespace_id":"shop","description":"d"}"#;
        assert!(parse_create(&HeaderMap::new(), body, NOW).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(parse_create(&headers, body, NOW).is_err());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert!(parse_create(&headers, body, NOW).is_ok());
    }
}
