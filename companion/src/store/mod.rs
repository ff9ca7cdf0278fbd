//! Token storage behind the [`TokenStore`] trait; SQLite is the only backend for now.
//!
//! The trait is blocking: the server calls it from `tokio::task::spawn_blocking`. Stores hold
//! only public keys and metadata, never a token or a private key.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::jwks::PublishedKey;

/// A token to record, as minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Token id (UUID v4), also the JWT `jti` and JWK `kid`.
    pub id: String,
    /// Namespace the token opens.
    pub namespace_id: String,
    /// Function the token opens; `None` for a namespace token.
    pub function_id: Option<String>,
    /// Free text from the admin.
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
}

impl NewToken {
    /// The metadata this token has once stored (not deleted).
    pub fn record(&self) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            namespace_id: self.namespace_id.clone(),
            function_id: self.function_id.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            deleted_at: None,
        }
    }
}

/// A stored token's metadata (everything but the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token id.
    pub id: String,
    /// Namespace the token opens.
    pub namespace_id: String,
    /// Function the token opens; `None` for a namespace token.
    pub function_id: Option<String>,
    /// Free text from the admin.
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
    /// Unix seconds; `None` unless deleted.
    pub deleted_at: Option<i64>,
}

/// Which tokens to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFilter {
    /// Only tokens of this namespace.
    pub namespace_id: String,
    /// Only tokens of this function (namespace tokens are left out) when set.
    pub function_id: Option<String>,
}

/// Why the store failed. None of these are the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database was written by a newer tokengate.
    #[error("database schema version {found} is newer than this tokengate knows ({known})")]
    NewerSchema {
        /// Version recorded in the database.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A stored row does not hold what the schema promises.
    #[error("corrupt row for token {id}: {reason}")]
    CorruptRow {
        /// The token id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A token with this id already exists.
    #[error("token id {0} already exists")]
    DuplicateId(String),
    /// The connection lock was poisoned by a panic elsewhere.
    #[error("store connection lock poisoned")]
    Poisoned,
    /// SQLite itself failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Persistent token metadata and public keys.
pub trait TokenStore: Send + Sync {
    /// Records a new token.
    fn create(&self, token: &NewToken) -> Result<(), StoreError>;
    /// Lists a namespace's tokens (deleted ones included), ordered by `created_at`, `id`.
    fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError>;
    /// One token by id, deleted or not.
    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks a token deleted at `now`; `false` if it is unknown or already deleted.
    fn delete(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// The keys to publish for a namespace at `now` (see [`crate::jwks::is_published`]),
    /// ordered by `created_at`, `id`.
    fn live_keys_for_namespace(&self, namespace_id: &str, now: i64) -> Result<Vec<PublishedKey>, StoreError>;
}
