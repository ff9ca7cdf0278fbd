//! The key service's operations, between HTTP and storage: mint and record tokens, list, show
//! and delete them, and render a namespace's JWKS.
//!
//! Two bounds keep a flood from reaching the database:
//! - the JWKS is served from a [`JwksCache`], at most
//!   [`JWKS_CACHE_TTL`](crate::jwks_cache::JWKS_CACHE_TTL) old (a create or delete made here
//!   invalidates its namespace at once);
//! - store calls run on tokio's blocking pool, each drawing on a budget of its own: at most
//!   [`ADMIN_STORE_CALLS`] admin calls, [`PUBLISHING_NAMESPACE_READS`] JWKS reads of namespaces
//!   known to have keys, and [`OTHER_NAMESPACE_READS`] of other names at a time. The others
//!   wait (asynchronously) for a turn, so blocking threads cannot pile up, and a flood of JWKS
//!   misses for made-up names takes neither the admin calls' turns nor the real namespaces'.
//!   At most [`OTHER_NAMESPACE_READS_QUEUED`] such misses wait; more are refused at once
//!   ([`ServiceError::Busy`], answered 503).
//!
//! A namespace publishes at most [`TokenService::max_keys_per_namespace`] keys (default
//! [`DEFAULT_MAX_KEYS_PER_NAMESPACE`]): live tokens plus tokens expired less than
//! [`crate::jwks::EXPIRY_GRACE_SECS`] ago. The Envoy filter refuses a larger key set outright.
//!
//! The service counts, in its [`Metrics`], the tokens it creates and deletes, the creates it
//! refuses because the namespace is full, and whether each JWKS lookup read the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::api::{CreatedToken, TokenMetadata};
use crate::clock::Clock;
use crate::jwks::{self, JwksDocument};
use crate::jwks_cache::{JwksCache, PublishingNamespaces};
use crate::jwt::{self, MintError, TokenClaims};
use crate::metrics::{Counter, Metrics};
use crate::store::{CreateOutcome, NewToken, StoreError, TokenFilter, TokenStore};
use crate::token_id;

/// Keys a namespace may publish unless `serve --max-keys-per-namespace` says otherwise.
pub const DEFAULT_MAX_KEYS_PER_NAMESPACE: u32 = 10_000;

/// Highest `--max-keys-per-namespace`. The filter refuses a key set over 4 MiB or over 50,000
/// keys (`MAX_JWKS_BYTES`, `MAX_KEYS` in the filter's `src/jwks.rs`); one key of ours takes
/// 151 bytes, so 4 MiB holds 27,776 of them. 25,000 keys make 3.8 MB.
pub const MAX_KEYS_PER_NAMESPACE_CEILING: u32 = 25_000;

/// Store calls of the admin API in flight at once (each holds a blocking thread).
pub const ADMIN_STORE_CALLS: usize = 4;

/// Store reads for JWKS misses of namespaces known to have keys, in flight at once.
pub const PUBLISHING_NAMESPACE_READS: usize = 2;

/// Store reads for JWKS misses of other names (unknown, or empty when last read), in flight
/// at once.
pub const OTHER_NAMESPACE_READS: usize = 2;

/// JWKS misses of other names that may wait for a turn; beyond, they are refused at once.
pub const OTHER_NAMESPACE_READS_QUEUED: usize = 30;

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

/// Failures inside the service. [`ServiceError::NamespaceFull`] is the client's to resolve
/// (409) and [`ServiceError::Busy`] a momentary refusal (503, also when shared); all the others
/// are server-side (answered 500, logged).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The namespace already publishes the most keys allowed: the client's to resolve.
    #[error("namespace {namespace_id} already publishes {limit} keys, the most allowed")]
    NamespaceFull {
        /// The namespace.
        namespace_id: String,
        /// The limit in force.
        limit: u32,
    },
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
    /// Too many JWKS reads of namespaces without keys are waiting already: try again later.
    #[error("too many key-set reads of namespaces without keys are waiting")]
    Busy,
    /// The JWKS read this request shared with others failed.
    #[error(transparent)]
    Shared(Arc<ServiceError>),
    /// A blocking store task died.
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A store-call budget was closed (never happens: the service never closes them).
    #[error("store call budget closed")]
    BudgetClosed,
}

/// Which budget of blocking store calls a call draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// Admin API calls.
    Admin,
    /// JWKS reads of namespaces known to have keys.
    PublishingNamespace,
    /// JWKS reads of any other name; only so many may wait.
    OtherNamespace,
}

/// The turns of blocking store calls, one budget per kind of call.
struct Budgets {
    admin: Arc<Semaphore>,
    publishing_namespace: Arc<Semaphore>,
    other_namespace: Arc<Semaphore>,
    /// Places for other names' reads, running or waiting; taken without waiting.
    other_namespace_places: Arc<Semaphore>,
}

impl Budgets {
    fn new() -> Self {
        Self {
            admin: Arc::new(Semaphore::new(ADMIN_STORE_CALLS)),
            publishing_namespace: Arc::new(Semaphore::new(PUBLISHING_NAMESPACE_READS)),
            other_namespace: Arc::new(Semaphore::new(OTHER_NAMESPACE_READS)),
            other_namespace_places: Arc::new(Semaphore::new(OTHER_NAMESPACE_READS + OTHER_NAMESPACE_READS_QUEUED)),
        }
    }

    /// Waits for a turn in `budget` (the turn ends when it is dropped); other names' reads
    /// first take a place in their queue, or are refused with [`ServiceError::Busy`].
    async fn turn(&self, budget: Budget) -> Result<Turn, ServiceError> {
        let (semaphore, place) = match budget {
            Budget::Admin => (&self.admin, None),
            Budget::PublishingNamespace => (&self.publishing_namespace, None),
            Budget::OtherNamespace => match Arc::clone(&self.other_namespace_places).try_acquire_owned() {
                Ok(place) => (&self.other_namespace, Some(place)),
                Err(TryAcquireError::NoPermits) => return Err(ServiceError::Busy),
                Err(TryAcquireError::Closed) => return Err(ServiceError::BudgetClosed),
            },
        };
        let turn = Arc::clone(semaphore).acquire_owned().await.map_err(|_| ServiceError::BudgetClosed)?;
        Ok(Turn { _turn: turn, _place: place })
    }
}

/// A turn to run one store call, and its place in the queue if it needed one.
struct Turn {
    _turn: OwnedSemaphorePermit,
    _place: Option<OwnedSemaphorePermit>,
}

/// Token operations over a [`TokenStore`]. Clones share the store, the cache, the budgets and
/// the metrics.
#[derive(Clone)]
pub struct TokenService {
    store: Arc<dyn TokenStore>,
    issuer: Arc<str>,
    clock: Clock,
    max_keys_per_namespace: u32,
    jwks_cache: Arc<JwksCache<ServiceError>>,
    publishing: Arc<PublishingNamespaces>,
    budgets: Arc<Budgets>,
    metrics: Arc<Metrics>,
}

impl TokenService {
    /// A service issuing tokens as `issuer`, reading time from `clock`, with the default limits.
    pub fn new(store: Arc<dyn TokenStore>, issuer: &str, clock: Clock) -> Self {
        Self {
            store,
            issuer: Arc::from(issuer),
            clock,
            max_keys_per_namespace: DEFAULT_MAX_KEYS_PER_NAMESPACE,
            jwks_cache: Arc::new(JwksCache::default()),
            publishing: Arc::new(PublishingNamespaces::default()),
            budgets: Arc::new(Budgets::new()),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The same service, with at most `limit` published keys per namespace.
    pub fn with_max_keys_per_namespace(mut self, limit: u32) -> Self {
        self.max_keys_per_namespace = limit;
        self
    }

    /// The most keys a namespace may publish.
    pub fn max_keys_per_namespace(&self) -> u32 {
        self.max_keys_per_namespace
    }

    /// The process's metrics: what this service counts, and what the server adds.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current time in unix seconds, from the service's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Runs `work` on the blocking pool once the budget allows. The turn is held until `work`
    /// returns, even if the caller gives up waiting for it: that is what bounds the threads.
    async fn blocking<T, F>(&self, budget: Budget, work: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
    {
        let turn = self.budgets.turn(budget).await?;
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || {
            let result = work(store.as_ref());
            drop(turn);
            result
        });
        Ok(result.await??)
    }

    /// Mints a token with a fresh key pair, records its public key and returns the token;
    /// [`ServiceError::NamespaceFull`] if the namespace already publishes the most keys allowed.
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
        let limit = self.max_keys_per_namespace;
        let namespace_id = record.namespace_id.clone();
        match self.blocking(Budget::Admin, move |store| store.create(&record, limit)).await? {
            CreateOutcome::Created => {
                self.jwks_cache.invalidate(&namespace_id);
                self.publishing.record(&namespace_id, true);
                self.metrics.count(Counter::TokensCreated);
                Ok(CreatedToken { metadata, token: minted.token })
            }
            CreateOutcome::NamespaceFull => {
                self.metrics.count(Counter::NamespaceFull);
                Err(ServiceError::NamespaceFull { namespace_id, limit })
            }
        }
    }

    /// A namespace's tokens (optionally one function's), deleted ones included.
    pub async fn list(&self, filter: TokenFilter) -> Result<Vec<TokenMetadata>, ServiceError> {
        let records = self.blocking(Budget::Admin, move |store| store.list(&filter)).await?;
        let now = self.now();
        Ok(records.iter().map(|record| TokenMetadata::from_record(record, now)).collect())
    }

    /// One token's metadata, `None` if unknown.
    pub async fn get(&self, id: String) -> Result<Option<TokenMetadata>, ServiceError> {
        let record = self.blocking(Budget::Admin, move |store| store.get(&id)).await?;
        let now = self.now();
        Ok(record.map(|record| TokenMetadata::from_record(&record, now)))
    }

    /// Deletes (revokes) a token; `false` if it is unknown or already deleted.
    pub async fn delete(&self, id: String) -> Result<bool, ServiceError> {
        let now = self.now();
        let deleted = self.blocking(Budget::Admin, move |store| store.delete(&id, now)).await?;
        if let Some(namespace_id) = &deleted {
            self.jwks_cache.invalidate(namespace_id);
            self.metrics.count(Counter::TokensDeleted);
        }
        Ok(deleted.is_some())
    }

    /// The namespace's JWKS as published now (empty for an unknown namespace), at most
    /// [`JWKS_CACHE_TTL`](crate::jwks_cache::JWKS_CACHE_TTL) old. Counted as a cache miss if
    /// this call read the store, as a hit if it got a key set without reading.
    pub async fn jwks(&self, namespace_id: String) -> Result<JwksDocument, ServiceError> {
        let read_here = AtomicBool::new(false);
        let cached = self.jwks_cache.get(&namespace_id, || async {
            read_here.store(true, Ordering::Relaxed);
            let now = self.now();
            let budget = if self.publishing.contains(&namespace_id) {
                Budget::PublishingNamespace
            } else {
                Budget::OtherNamespace
            };
            let read = namespace_id.clone();
            let keys = self.blocking(budget, move |store| store.live_keys_for_namespace(&read, now)).await?;
            self.publishing.record(&namespace_id, !keys.is_empty());
            jwks::render(&keys).map_err(ServiceError::Render)
        });
        let document = cached.await;
        if read_here.load(Ordering::Relaxed) {
            self.metrics.count(Counter::JwksCacheMiss);
        } else if document.is_ok() {
            self.metrics.count(Counter::JwksCacheHit);
        }
        document.map_err(ServiceError::Shared)
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
        let text = String::from_utf8(published.body.to_vec()).unwrap();
        assert!(text.contains(&expiring.metadata.id) && text.contains(&forever.metadata.id));

        // Two hours on, the expired token's key has left the set; the other stays.
        let text = String::from_utf8(later.jwks("shop".to_owned()).await.unwrap().body.to_vec()).unwrap();
        assert!(!text.contains(&expiring.metadata.id) && text.contains(&forever.metadata.id));
        let shown = later.get(expiring.metadata.id.clone()).await.unwrap().unwrap();
        assert_eq!(shown.status, TokenStatus::Expired);

        // Deleted through `later`, whose cache holds the namespace: it forgets it at once.
        assert!(later.delete(forever.metadata.id.clone()).await.unwrap());
        assert!(!later.delete(forever.metadata.id.clone()).await.unwrap());
        assert_eq!(&later.jwks("shop".to_owned()).await.unwrap().body[..], br#"{"keys":[]}"#);

        let listed = service.list(TokenFilter { namespace_id: "shop".to_owned(), function_id: None }).await.unwrap();
        assert_eq!(listed.len(), 2);
        let deleted = listed.iter().find(|t| t.id == forever.metadata.id).unwrap();
        assert_eq!(deleted.status, TokenStatus::Deleted);
        assert!(deleted.deleted_at.is_some());
    }

    fn kids(document: &JwksDocument) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_slice(&document.body).unwrap();
        value["keys"].as_array().unwrap().iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
    }

    #[tokio::test]
    async fn own_writes_show_in_the_cached_jwks_at_once() {
        let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open_in_memory(NOW).unwrap());
        let service = TokenService::new(store, "tokengate", fixed_now);
        assert!(kids(&service.jwks("shop".to_owned()).await.unwrap()).is_empty());
        let created = service.create(request(None)).await.unwrap();
        assert_eq!(kids(&service.jwks("shop".to_owned()).await.unwrap()), vec![created.metadata.id.clone()]);
        assert!(service.delete(created.metadata.id).await.unwrap());
        assert!(kids(&service.jwks("shop".to_owned()).await.unwrap()).is_empty());
    }

    #[tokio::test]
    async fn a_full_namespace_refuses_new_tokens() {
        let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open_in_memory(NOW).unwrap());
        let service = TokenService::new(store, "tokengate", fixed_now).with_max_keys_per_namespace(2);
        let first = service.create(request(None)).await.unwrap();
        service.create(request(Some(NOW + 60))).await.unwrap();
        let refused = service.create(request(None)).await.unwrap_err();
        assert!(
            matches!(&refused, ServiceError::NamespaceFull { namespace_id, limit: 2 } if namespace_id == "shop"),
            "{refused:?}"
        );
        let mut elsewhere = request(None);
        elsewhere.namespace_id = "other".to_owned();
        service.create(elsewhere).await.unwrap();
        // A deletion makes room.
        assert!(service.delete(first.metadata.id).await.unwrap());
        service.create(request(None)).await.unwrap();
        assert_eq!(kids(&service.jwks("shop".to_owned()).await.unwrap()).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_tokens_and_cache_lookups() {
        let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open_in_memory(NOW).unwrap());
        let service = TokenService::new(store, "tokengate", fixed_now).with_max_keys_per_namespace(1);
        let metrics = Arc::clone(service.metrics());
        let counts = || {
            [
                Counter::TokensCreated,
                Counter::TokensDeleted,
                Counter::NamespaceFull,
                Counter::JwksCacheHit,
                Counter::JwksCacheMiss,
            ]
            .map(|counter| metrics.value(counter))
        };
        let created = service.create(request(None)).await.unwrap();
        assert!(service.create(request(None)).await.is_err());
        assert_eq!(counts(), [1, 0, 1, 0, 0]);
        // The paused clock keeps the cached key set fresh: one read, then hits.
        service.jwks("shop".to_owned()).await.unwrap();
        service.jwks("shop".to_owned()).await.unwrap();
        service.jwks("shop".to_owned()).await.unwrap();
        assert_eq!(counts(), [1, 0, 1, 2, 1]);
        assert!(service.delete(created.metadata.id.clone()).await.unwrap());
        assert!(!service.delete(created.metadata.id).await.unwrap());
        // The delete emptied the namespace's cache entry: the next lookup reads again.
        service.jwks("shop".to_owned()).await.unwrap();
        assert_eq!(counts(), [1, 1, 1, 2, 2]);
        // Requests that miss together share one read: one miss, the rest hits.
        tokio::time::advance(crate::jwks_cache::JWKS_CACHE_TTL).await;
        let (a, b, c) = tokio::join!(
            service.jwks("shop".to_owned()),
            service.jwks("shop".to_owned()),
            service.jwks("shop".to_owned())
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(counts(), [1, 1, 1, 4, 3]);
        // Clones count into the same metrics.
        service.clone().jwks("other".to_owned()).await.unwrap();
        assert_eq!(metrics.value(Counter::JwksCacheMiss), 4);
    }

    #[test]
    fn the_largest_namespace_fits_what_the_filter_accepts() {
        // The filter's limits (`MAX_JWKS_BYTES` and `MAX_KEYS` in the filter's src/jwks.rs).
        const FILTER_MAX_JWKS_BYTES: usize = 4 << 20;
        const FILTER_MAX_KEYS: usize = 50_000;
        let keys: Vec<jwks::PublishedKey> = (0..MAX_KEYS_PER_NAMESPACE_CEILING)
            .map(|_| jwks::PublishedKey { id: token_id::generate().unwrap(), public_key: [0xff; 32] })
            .collect();
        let document = jwks::render(&keys).unwrap();
        assert!(keys.len() <= FILTER_MAX_KEYS);
        assert!(document.body.len() < FILTER_MAX_JWKS_BYTES, "{} bytes", document.body.len());
        let one_more_key = jwks::render(&keys[..2]).unwrap().body.len() - jwks::render(&keys[..1]).unwrap().body.len();
        assert_eq!(one_more_key, 151, "the arithmetic in MAX_KEYS_PER_NAMESPACE_CEILING's comment");
    }

    #[tokio::test]
    async fn other_names_wait_in_a_bounded_queue() {
        let budgets = Arc::new(Budgets::new());
        let running: Vec<Turn> = {
            let mut turns = Vec::new();
            for _ in 0..OTHER_NAMESPACE_READS {
                turns.push(budgets.turn(Budget::OtherNamespace).await.unwrap());
            }
            turns
        };
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..OTHER_NAMESPACE_READS_QUEUED {
            let budgets = Arc::clone(&budgets);
            waiting.spawn(async move { budgets.turn(Budget::OtherNamespace).await.map(drop) });
        }
        for _ in 0..1000 {
            if budgets.other_namespace_places.available_permits() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(matches!(budgets.turn(Budget::OtherNamespace).await, Err(ServiceError::Busy)));
        // Namespaces with keys and admin calls have turns of their own.
        drop(budgets.turn(Budget::PublishingNamespace).await.unwrap());
        drop(budgets.turn(Budget::Admin).await.unwrap());

        drop(running);
        while let Some(waited) = waiting.join_next().await {
            waited.unwrap().unwrap();
        }
        drop(budgets.turn(Budget::OtherNamespace).await.unwrap());
    }
}
