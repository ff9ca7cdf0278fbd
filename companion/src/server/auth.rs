//! Admin authentication: `Authorization: Bearer <admin token>`, compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::config::AdminToken;
use super::error::ApiError;
use super::routes::AppState;

/// Middleware on the admin routes: 401 unless the request carries the admin bearer token.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented =
        request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer_token);
    match presented {
        Some(token) if token_matches(&state.admin_token, token) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The credentials of a `Bearer` authorization header value (scheme matched case-insensitively).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares digests of both tokens so neither the content nor the length leaks through timing.
fn token_matches(expected: &AdminToken, presented: &str) -> bool {
    let expected = Sha256::digest(expected.expose().as_bytes());
    let presented = Sha256::digest(presented.as_bytes());
    let difference = expected.iter().zip(presented.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER   abc  ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("abc", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer_token(value), *want, "{value}");
        }
    }

    #[test]
    fn compares_tokens() {
        let token = AdminToken::new("admin-token-0123456789").unwrap();
        assert!(token_matches(&token, "admin-token-0123456789"));
        assert!(!token_matches(&token, "admin-token-012345678"));
        assert!(!token_matches(&token, "admin-token-01234567890"));
        assert!(!token_matches(&token, ""));
    }
}
