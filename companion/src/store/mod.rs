//! Token storage behind the [`TokenStore`] trait: SQLite (the default, one file per service) or
//! PostgreSQL (shared by several replicas).
//!
//! The trait is blocking: the server calls it from `tokio::task::spawn_blocking`. Stores hold
//! only public keys and metadata, never a token or a private key. Every call reads the database:
//! nothing is cached here (the service keeps its short JWKS cache above this layer, see
//! [`crate::jwks_cache`]).
//!
//! A namespace publishes at most a configured number of keys: [`TokenStore::create`] counts them
//! and inserts under a lock per namespace (SQLite's write lock; a PostgreSQL advisory lock), so
//! concurrent creates, from this process or from other replicas, cannot overshoot.
//!
//! What does not depend on the SQL dialect lives here and in `migrate`: the record columns, the
//! stored-key check, the migration plan. Each backend keeps only its SQL and its driver.

mod migrate;
mod postgres;
mod sqlite;

pub use self::postgres::{DatabaseUrl, InvalidDatabaseUrl, PostgresStore};
pub use sqlite::SqliteStore;

use crate::jwks::PublishedKey;

/// The columns of a [`TokenRecord`], in the order both backends read them.
const RECORD_COLUMNS: &str = "id, namespace_id, function_id, description, created_at, expires_at, deleted_at";

/// A published key from a stored row, refusing a key that is not 32 bytes.
fn published_key(id: String, public_key: &[u8]) -> Result<PublishedKey, StoreError> {
    match <[u8; 32]>::try_from(public_key) {
        Ok(public_key) => Ok(PublishedKey { id, public_key }),
        Err(_) => Err(StoreError::CorruptRow { id, reason: "public key is not 32 bytes" }),
    }
}

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
    /// Every PostgreSQL connection of the pool stayed busy for too long.
    #[error("no free PostgreSQL connection within {0:?}")]
    PoolTimeout(std::time::Duration),
    /// SQLite itself failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed or could not be reached.
    #[error("postgres: {}", with_causes(.0))]
    Postgres(#[from] ::postgres::Error),
}

/// An error and its causes on one line (the PostgreSQL driver keeps the useful part, such as
/// "connection refused" or the server's message, in the causes).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// What [`TokenStore::create`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The token is recorded.
    Created,
    /// Nothing was recorded: the namespace already publishes the most keys allowed.
    NamespaceFull,
}

/// Persistent token metadata and public keys.
pub trait TokenStore: Send + Sync {
    /// Records a new token, unless its namespace already publishes `max_published` keys at
    /// `token.created_at` (see [`crate::jwks::is_published`]). The count and the insert happen
    /// in one transaction under a lock per namespace.
    fn create(&self, token: &NewToken, max_published: u32) -> Result<CreateOutcome, StoreError>;
    /// Lists a namespace's tokens (deleted ones included), ordered by `created_at`, `id`.
    fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError>;
    /// One token by id, deleted or not.
    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks a token deleted at `now` and returns its namespace; `None` if the token is unknown
    /// or already deleted.
    fn delete(&self, id: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// The keys to publish for a namespace at `now` (see [`crate::jwks::is_published`]),
    /// ordered by `created_at`, `id`.
    fn live_keys_for_namespace(&self, namespace_id: &str, now: i64) -> Result<Vec<PublishedKey>, StoreError>;
}
