//! `AdminClient`: the admin API over plain HTTP with ureq, answers decoded into `api` types.

use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::http::Response;
use ureq::{Agent, Body};

use super::error::CliError;
use crate::api::{CreateTokenRequest, CreatedToken, ErrorBody, TokenList, TokenMetadata};

/// How long one admin call may take in all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one service's admin API.
pub struct AdminClient {
    agent: Agent,
    base_url: String,
    authorization: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the service at `base_url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base_url: &str, admin_token: &str) -> Result<Self, CliError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        // This build speaks plain HTTP only (no TLS stack): put a TLS proxy in front if needed.
        if !base_url.starts_with("http://") || base_url.contains(['?', '#']) {
            return Err(CliError::BadUrl {
                url: base_url,
                reason: "expected http://HOST:PORT (plain HTTP), with no query or fragment".to_owned(),
            });
        }
        let config = Agent::config_builder().http_status_as_error(false).timeout_global(Some(CALL_TIMEOUT)).build();
        Ok(Self { agent: Agent::new_with_config(config), base_url, authorization: format!("Bearer {admin_token}") })
    }

    /// `POST /v1/tokens`.
    pub fn create(&self, request: &CreateTokenRequest) -> Result<CreatedToken, CliError> {
        let response = self
            .agent
            .post(self.url("/v1/tokens"))
            .header("Authorization", &self.authorization)
            .send_json(request)
            .map_err(|error| self.transport(error))?;
        self.decode(response, 201)
    }

    /// `GET /v1/tokens?namespace_id=NS[&function_id=FN]`.
    pub fn list(&self, namespace_id: &str, function_id: Option<&str>) -> Result<TokenList, CliError> {
        let mut request = self
            .agent
            .get(self.url("/v1/tokens"))
            .header("Authorization", &self.authorization)
            .query("namespace_id", namespace_id);
        if let Some(function_id) = function_id {
            request = request.query("function_id", function_id);
        }
        let response = request.call().map_err(|error| self.transport(error))?;
        self.decode(response, 200)
    }

    /// `GET /v1/tokens/{id}`.
    pub fn show(&self, id: &str) -> Result<TokenMetadata, CliError> {
        let response = self
            .agent
            .get(self.url(&format!("/v1/tokens/{}", encode_path_segment(id))))
            .header("Authorization", &self.authorization)
            .call()
            .map_err(|error| self.transport(error))?;
        self.decode(response, 200)
    }

    /// `DELETE /v1/tokens/{id}`.
    pub fn delete(&self, id: &str) -> Result<(), CliError> {
        let mut response = self
            .agent
            .delete(self.url(&format!("/v1/tokens/{}", encode_path_segment(id))))
            .header("Authorization", &self.authorization)
            .call()
            .map_err(|error| self.transport(error))?;
        let status = response.status().as_u16();
        if status == 204 {
            return Ok(());
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Err(error_from(status, &text))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn transport(&self, error: ureq::Error) -> CliError {
        match error {
            ureq::Error::BadUri(reason) => CliError::BadUrl { url: self.base_url.clone(), reason },
            ureq::Error::Http(error) => CliError::BadUrl { url: self.base_url.clone(), reason: error.to_string() },
            other => CliError::Unreachable { url: self.base_url.clone(), reason: other.to_string() },
        }
    }

    fn decode<T: DeserializeOwned>(&self, mut response: Response<Body>, expected: u16) -> Result<T, CliError> {
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|error| self.transport(error))?;
        if status != expected {
            return Err(error_from(status, &text));
        }
        serde_json::from_str(&text).map_err(|error| CliError::UnexpectedResponse { status, detail: error.to_string() })
    }
}

/// The CLI error for a non-success answer, using the service's error body when there is one.
fn error_from(status: u16, text: &str) -> CliError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => CliError::Api { status, field: body.field, message: body.message },
        Err(_) => CliError::UnexpectedResponse {
            status,
            detail: text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect(),
        },
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_path_segment("0f8fad5b-d9cb-469f-a165-70867728950e"), "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(encode_path_segment("../a b/é"), "..%2Fa%20b%2F%C3%A9");
    }

    #[test]
    fn refuses_unusable_urls() {
        assert!(AdminClient::new("127.0.0.1:8081", "t").is_err());
        assert!(AdminClient::new("https://127.0.0.1:8081", "t").is_err());
        assert!(AdminClient::new("http://127.0.0.1:8081/?x", "t").is_err());
        let client = AdminClient::new("http://127.0.0.1:8081/", "t").unwrap();
        assert_eq!(client.url("/v1/tokens"), "http://127.0.0.1:8081/v1/tokens");
        assert!(!format!("{client:?}").contains("Bearer"));
    }

    #[test]
    fn maps_error_bodies() {
        let error = error_from(404, r#"{"error":"not_found","message":"no such token"}"#);
        assert!(matches!(error, CliError::Api { status: 404, field: None, .. }), "{error:?}");
        let error = error_from(502, "<html>bad gateway</html>");
        assert!(matches!(error, CliError::UnexpectedResponse { status: 502, .. }), "{error:?}");
    }
}
