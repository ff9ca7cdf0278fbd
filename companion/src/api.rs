//! The admin API's JSON shapes, shared by the server (which writes them) and the CLI (which
//! reads them). Timestamps are RFC 3339 UTC strings.

use serde::{Deserialize, Serialize};

use crate::rfc3339;
use crate::store::TokenRecord;

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// Usable: not deleted and not expired.
    Active,
    /// Past its `expires_at`.
    Expired,
    /// Deleted (revoked); its key is no longer published.
    Deleted,
}

impl TokenStatus {
    /// The status of a token at `now`.
    pub fn at(record: &TokenRecord, now: i64) -> Self {
        if record.deleted_at.is_some() {
            Self::Deleted
        } else if record.expires_at.is_some_and(|expires| expires <= now) {
            Self::Expired
        } else {
            Self::Active
        }
    }

    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
        }
    }
}

/// A token's metadata, as listed and shown. Never carries the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMetadata {
    /// Token id (`jti` and `kid`).
    pub id: String,
    /// Namespace the token opens.
    pub namespace_id: String,
    /// Function the token opens; `null` for a namespace token.
    pub function_id: Option<String>,
    /// Free text from the admin.
    pub description: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC; `null` = never expires.
    pub expires_at: Option<String>,
    /// Where the token stands now.
    pub status: TokenStatus,
    /// RFC 3339 UTC; `null` unless deleted.
    pub deleted_at: Option<String>,
}

impl TokenMetadata {
    /// The metadata of a stored token at `now`.
    pub fn from_record(record: &TokenRecord, now: i64) -> Self {
        Self {
            id: record.id.clone(),
            namespace_id: record.namespace_id.clone(),
            function_id: record.function_id.clone(),
            description: record.description.clone(),
            created_at: rfc3339::format(record.created_at),
            expires_at: record.expires_at.map(rfc3339::format),
            status: TokenStatus::at(record, now),
            deleted_at: record.deleted_at.map(rfc3339::format),
        }
    }
}

/// `POST /v1/tokens` request body (the server parses it field by field, see `server::body`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateTokenRequest {
    /// Namespace the token opens.
    pub namespace_id: String,
    /// Function the token opens; `None` for a namespace token.
    pub function_id: Option<String>,
    /// Free text, 1 to 256 characters.
    pub description: String,
    /// RFC 3339; `None` = never expires.
    pub expires_at: Option<String>,
}

/// `POST /v1/tokens` answer: the metadata and the token, which is shown this once only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The new token's metadata.
    #[serde(flatten)]
    pub metadata: TokenMetadata,
    /// The signed JWT.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken").field("metadata", &self.metadata).field("token", &"<redacted>").finish()
    }
}

/// `GET /v1/tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Tokens ordered by creation time, then id.
    pub tokens: Vec<TokenMetadata>,
}

/// Every error answer: `{"error": code, "field": name (400s only), "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`, `unauthorized`, `not_found`.
    pub error: String,
    /// The request field at fault, for `invalid_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: Option<i64>, deleted_at: Option<i64>) -> TokenRecord {
        TokenRecord {
            id: "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
            namespace_id: "shop".to_owned(),
            function_id: None,
            description: "d".to_owned(),
            created_at: 1_796_317_200,
            expires_at,
            deleted_at,
        }
    }

    #[test]
    fn status_at_fixed_clock() {
        let now = 1_796_317_200;
        let cases = [
            (record(None, None), TokenStatus::Active),
            (record(Some(now + 1), None), TokenStatus::Active),
            (record(Some(now), None), TokenStatus::Expired),
            (record(Some(now - 1), Some(now)), TokenStatus::Deleted),
            (record(None, Some(now)), TokenStatus::Deleted),
        ];
        for (record, want) in cases {
            assert_eq!(TokenStatus::at(&record, now), want, "{record:?}");
        }
    }

    #[test]
    fn metadata_json_shape() {
        let metadata = TokenMetadata::from_record(&record(Some(1_796_320_800), None), 1_796_317_200);
        let created = CreatedToken { metadata, token: "a.b.c".to_owned() };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            serde_json::json!({
                "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                "namespace_id": "shop",
                "function_id": null,
                "description": "d",
                "created_at": "2026-12-03T17:00:00Z",
                "expires_at": "2026-12-03T18:00:00Z",
                "status": "active",
                "deleted_at": null,
                "token": "a.b.c",
            })
        );
        assert!(!format!("{created:?}").contains("a.b.c"));
        let back: CreatedToken = serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
        assert_eq!(back, created);
    }
}
