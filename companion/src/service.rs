//! The key service's operations, between HTTP and storage: mint and record tokens, list, show
//! and delete them, and render a namespace's JWKS. Store calls run on the blocking pool.

use std::sync::Arc;

use crate::api::{CreatedToken, TokenMetadata};
use crate::clock::Clock;
use crate::jwks::{self, JwksDocument};
use crate::jwt::{self, MintError, TokenClaims};
use crate::store::{NewToken, StoreError, TokenFilter, TokenStore};
use crate::token_id;

/// A validated `POST /v1/tokens` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    /// Namespace the token opens.
    pub namespace_id: String,
    /// Function the token opens; `None` for a namespace token.
    pub function_id: Option<String>,
    /// Free text.
    pub description: String,
    /// Unix seconds, in the future; `None` = never expires.
    pub expires_at: Option<i64>,
}

/// Failures inside the service; all are server-side (answered 500, logged).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Minting failed.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// No randomness for a token id.
    #[error("no randomness for a token id: {0}")]
    Randomness(getrandom::Error),
    /// The JWKS could not be serialised.
    #[error("could not render the JWKS: {0}")]
    Render(serde_json::Error),
    /// A blocking store task died.
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Token operations over a [`TokenStore`].
#[derive(Clone)]
pub struct TokenService {
    store: Arc<dyn TokenStore>,
    issuer: Arc<str>,
    clock: Clock,
}

impl TokenService {
    /// A service issuing tokens as `issuer`, reading time from `clock`.
    pub fn new(store: Arc<dyn TokenStore>, issuer: &str, clock: Clock) -> Self {
        Self { store, issuer: Arc::from(issuer), clock }
    }

    /// The current time in unix seconds, from the service's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        Ok(tokio::task::spawn_blocking(move || work(store.as_ref())).await??)
    }

    /// Mints a token with a fresh key pair, records its public key and returns the token.
    pub async fn create(&self, request: CreateToken) -> Result<CreatedToken, ServiceError> {
        let now = self.now();
        let id = token_id::generate().map_err(ServiceError::Randomness)?;
        let minted = jwt::mint(&TokenClaims {
            id: &id,
            issued_at: now,
            expires_at: request.expires_at,
            issuer: &self.issuer,
            namespace_id: &request.namespace_id,
            function_id: request.function_id.as_deref(),
        })?;
        let record = NewToken {
            id,
            namespace_id: request.namespace_id,
            function_id: request.function_id,
            description: request.description,
            created_at: now,
            expires_at: request.expires_at,
            public_key: minted.public_key,
        };
        let metadata = TokenMetadata::from_record(&record.record(), now);
        self.blocking(move |store| store.create(&record)).await?;
        Ok(CreatedToken { metadata, token: minted.token })
    }

    /// A namespace's tokens (optionally one function's), deleted ones included.
    pub async fn list(&self, filter: TokenFilter) -> Result<Vec<TokenMetadata>, ServiceError> {
        let records = self.blocking(move |store| store.list(&filter)).await?;
        let now = self.now();
        Ok(records.iter().map(|record| TokenMetadata::from_record(record, now)).collect())
    }

    /// One token's metadata, `None` if unknown.
    pub async fn get(&self, id: String) -> Result<Option<TokenMetadata>, ServiceError> {
        let record = self.blocking(move |store| store.get(&id)).await?;
        let now = self.now();
        Ok(record.map(|record| TokenMetadata::from_record(&record, now)))
    }

    /// Deletes (revokes) a token; `false` if it is unknown or already deleted.
    pub async fn delete(&self, id: String) -> Result<bool, ServiceError> {
        let now = self.now();
        self.blocking(move |store| store.delete(&id, now)).await
    }

    /// The namespace's JWKS as published now (empty for an unknown namespace).
    pub async fn jwks(&self, namespace_id: String) -> Result<JwksDocument, ServiceError> {
        let now = self.now();
        let keys = self.blocking(move |store| store.live_keys_for_namespace(&namespace_id, now)).await?;
        jwks::render(&keys).map_err(ServiceError::Render)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TokenStatus;
    use crate::store::SqliteStore;

    const NOW: i64 = 1_796_317_200;

    fn fixed_now() -> i64 {
        NOW
    }

    fn two_hours_later() -> i64 {
        NOW + 7200
    }

    fn request(expires_at: Option<i64>) -> CreateToken {
        CreateToken {
            namespace_id: "shop".to_owned(),
            function_id: Some("cart".to_owned()),
            description: "ci".to_owned(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn create_publish_expire_delete() {
        let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open_in_memory(NOW).unwrap());
        let service = TokenService::new(Arc::clone(&store), "tokengate", fixed_now);
        let later = TokenService::new(store, "tokengate", two_hours_later);

        let expiring = service.create(request(Some(NOW + 60))).await.unwrap();
        let forever = service.create(request(None)).await.unwrap();
        assert_eq!(expiring.metadata.status, TokenStatus::Active);
        assert_eq!(expiring.metadata.created_at, "2026-12-03T17:00:00Z");
        assert_eq!(expiring.metadata.expires_at.as_deref(), Some("2026-12-03T17:01:00Z"));

        let published = service.jwks("shop".to_owned()).await.unwrap();
        let text = String::from_utf8(published.body).unwrap();
        assert!(text.contains(&expiring.metadata.id) && text.contains(&forever.metadata.id));

        // Two hours on, the expired token's key has left the set; the other stays.
        let text = String::from_utf8(later.jwks("shop".to_owned()).await.unwrap().body).unwrap();
        assert!(!text.contains(&expiring.metadata.id) && text.contains(&forever.metadata.id));
        let shown = later.get(expiring.metadata.id.clone()).await.unwrap().unwrap();
        assert_eq!(shown.status, TokenStatus::Expired);

        assert!(service.delete(forever.metadata.id.clone()).await.unwrap());
        assert!(!service.delete(forever.metadata.id.clone()).await.unwrap());
        assert_eq!(later.jwks("shop".to_owned()).await.unwrap().body, br#"{"keys":[]}"#);

        let listed = service.list(TokenFilter { namespace_id: "shop".to_owned(), function_id: None }).await.unwrap();
        assert_eq!(listed.len(), 2);
        let deleted = listed.iter().find(|t| t.id == forever.metadata.id).unwrap();
        assert_eq!(deleted.status, TokenStatus::Deleted);
        assert!(deleted.deleted_at.is_some());
    }
}
