//! `JwksCache`: each namespace's rendered JWKS (body and ETag) kept in memory for at most
//! [`JWKS_CACHE_TTL`], computed once per miss however many requests miss together.
//!
//! Why: the JWKS route is public and every Envoy polls it. Without the cache each GET is a
//! database read on a blocking thread, so a flood of GETs becomes a flood of database work.
//! With it, a flood on one namespace costs one read per [`JWKS_CACHE_TTL`].
//!
//! - **Freshness.** A create or delete made through this process invalidates its namespace
//!   before it is answered, so this process never serves a key set older than its own writes.
//!   Writes made by *other* replicas (sharing the PostgreSQL database) show after at most
//!   [`JWKS_CACHE_TTL`]: an entry's age is counted from the moment its read began.
//! - **Single flight.** Requests that miss together share one computation (a `OnceCell` per
//!   entry). If the request computing is cancelled (its client left), the next waiter takes over.
//!   A failed computation's error is handed to everyone waiting on it, and is never kept.
//! - **Bounded.** At most [`MAX_CACHED_NAMESPACES`] entries; when full, expired and abandoned
//!   ones are dropped, and if that is not enough the new key set is served without being kept.
//!
//! [`PublishingNamespaces`] remembers which namespaces have keys, so that the service can read
//! theirs before the misses of made-up names (a flood can ask for any name).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::jwks::JwksDocument;

/// Longest time a cached key set is served: the bound on how late this process publishes a
/// create or delete made through another replica.
pub const JWKS_CACHE_TTL: Duration = Duration::from_secs(1);

/// Most namespaces cached at once (unknown namespaces requested by anyone included).
pub const MAX_CACHED_NAMESPACES: usize = 1024;

/// How long an entry whose computation has not finished may block its slot when the cache is
/// full: longer than any request may run (see `server::limits`).
const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// The per-namespace JWKS cache of one process; `E` is the error of a failed computation.
#[derive(Debug)]
pub struct JwksCache<E> {
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<Entry<E>>>>,
}

/// One namespace's key set: being computed (cell empty) or computed.
#[derive(Debug)]
struct Entry<E> {
    created: Instant,
    outcome: OnceCell<Result<Computed, Arc<E>>>,
}

#[derive(Debug)]
struct Computed {
    document: JwksDocument,
    /// When the read that produced it began.
    read_at: Instant,
}

impl<E> Entry<E> {
    fn new(now: Instant) -> Self {
        Self { created: now, outcome: OnceCell::new() }
    }

    /// Whether a request arriving at `now` may use this entry: its key set is fresh enough,
    /// or it is still being computed (a request joining it gets what the computation reads).
    fn usable(&self, now: Instant, ttl: Duration) -> bool {
        match self.outcome.get() {
            None => true,
            Some(Ok(computed)) => now.saturating_duration_since(computed.read_at) < ttl,
            Some(Err(_)) => false,
        }
    }

    /// Whether the entry is worth its slot when the cache is full.
    fn worth_keeping(&self, now: Instant, ttl: Duration) -> bool {
        match self.outcome.get() {
            None => now.saturating_duration_since(self.created) < ABANDONED_AFTER,
            Some(_) => self.usable(now, ttl),
        }
    }
}

impl<E> Default for JwksCache<E> {
    fn default() -> Self {
        Self::new(JWKS_CACHE_TTL)
    }
}

impl<E> JwksCache<E> {
    /// An empty cache whose entries live at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The namespace's key set: from the cache if fresh, else from `compute` (run by one of the
    /// requests missing together; the others wait for its result, or its error).
    pub async fn get<F, Fut>(&self, namespace_id: &str, compute: F) -> Result<JwksDocument, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<JwksDocument, E>>,
    {
        let entry = self.entry(namespace_id);
        let outcome = entry
            .outcome
            .get_or_init(|| async {
                let read_at = Instant::now();
                compute().await.map(|document| Computed { document, read_at }).map_err(Arc::new)
            })
            .await;
        match outcome {
            Ok(computed) => Ok(computed.document.clone()),
            Err(error) => Err(Arc::clone(error)),
        }
    }

    /// Forgets the namespace's key set: the next request reads it anew. Called after every
    /// create and delete this process makes, once the write is committed.
    pub fn invalidate(&self, namespace_id: &str) {
        self.lock().remove(namespace_id);
    }

    /// How many namespaces are cached (or being computed).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable entry for the namespace, or a new one (kept if there is room).
    fn entry(&self, namespace_id: &str) -> Arc<Entry<E>> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(entry) = entries.get(namespace_id).filter(|entry| entry.usable(now, self.ttl)) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry::new(now));
        if entries.len() >= MAX_CACHED_NAMESPACES && !entries.contains_key(namespace_id) {
            entries.retain(|_, entry| entry.worth_keeping(now, self.ttl));
        }
        if entries.len() < MAX_CACHED_NAMESPACES || entries.contains_key(namespace_id) {
            entries.insert(namespace_id.to_owned(), Arc::clone(&entry));
        }
        entry
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry<E>>>> {
        // Nothing here can leave the map half-updated, so a panic elsewhere spoils nothing.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Most namespaces [`PublishingNamespaces`] remembers.
pub const MAX_PUBLISHING_NAMESPACES: usize = 100_000;

/// The namespaces that published keys when this process last read or wrote them: their cache
/// misses go first. Anyone can ask for the key set of any name, but only the admin API can give
/// a namespace keys, so a flood of made-up names cannot get in here. Bounded by
/// [`MAX_PUBLISHING_NAMESPACES`] (beyond it, new names are not remembered: they only lose
/// their priority).
#[derive(Debug, Default)]
pub struct PublishingNamespaces {
    names: Mutex<HashSet<String>>,
}

impl PublishingNamespaces {
    /// Whether the namespace published keys when last seen.
    pub fn contains(&self, namespace_id: &str) -> bool {
        self.lock().contains(namespace_id)
    }

    /// Records whether the namespace publishes keys now.
    pub fn record(&self, namespace_id: &str, publishes: bool) {
        let mut names = self.lock();
        if !publishes {
            names.remove(namespace_id);
        } else if names.len() < MAX_PUBLISHING_NAMESPACES && !names.contains(namespace_id) {
            names.insert(namespace_id.to_owned());
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // A set of names cannot be left half-updated: a panic elsewhere spoils nothing.
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::jwks::{render, PublishedKey};

    fn document(marker: u8) -> JwksDocument {
        render(&[PublishedKey { id: format!("k{marker}"), public_key: [marker; 32] }]).unwrap()
    }

    /// A computation that counts its runs, waits `delay` (paused clock) and renders `marker`.
    async fn counted(runs: &AtomicUsize, delay: Duration, marker: u8) -> Result<JwksDocument, String> {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        Ok(document(marker))
    }

    #[tokio::test(start_paused = true)]
    async fn misses_together_compute_once() {
        let cache = Arc::new(JwksCache::<String>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut gets = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
            gets.spawn(async move { cache.get("shop", || counted(&runs, Duration::from_millis(200), 1)).await });
        }
        while let Some(result) = gets.join_next().await {
            assert_eq!(result.unwrap().unwrap(), document(1));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Fresh: served from memory.
        cache.get("shop", || counted(&runs, Duration::ZERO, 2)).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_live_one_ttl_from_their_read() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        // The read takes 300 ms; the entry's age counts from its start.
        cache.get("shop", || counted(&runs, Duration::from_millis(300), 1)).await.unwrap();
        tokio::time::advance(Duration::from_millis(650)).await;
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 2)).await.unwrap(), document(1));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 2)).await.unwrap(), document(2));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidation_forgets_at_once() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        cache.get("shop", || counted(&runs, Duration::ZERO, 1)).await.unwrap();
        cache.get("other", || counted(&runs, Duration::ZERO, 1)).await.unwrap();
        cache.invalidate("shop");
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 2)).await.unwrap(), document(2));
        assert_eq!(cache.get("other", || counted(&runs, Duration::ZERO, 3)).await.unwrap(), document(1));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidation_during_a_read_is_not_undone_by_it() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        let slow = cache.get("shop", || counted(&runs, Duration::from_millis(500), 1));
        let write_then_read = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cache.invalidate("shop");
            cache.get("shop", || counted(&runs, Duration::from_millis(500), 2)).await
        };
        let (slow, after_write) = tokio::join!(slow, write_then_read);
        assert_eq!(slow.unwrap(), document(1));
        assert_eq!(after_write.unwrap(), document(2));
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 3)).await.unwrap(), document(2));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_shared_and_not_kept() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        let failing = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<JwksDocument, _>("database down".to_owned())
        };
        let (first, second) = tokio::join!(cache.get("shop", failing), cache.get("shop", failing));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(first.unwrap_err().as_str(), "database down");
        assert_eq!(second.unwrap_err().as_str(), "database down");
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 1)).await.unwrap(), document(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_computation_is_taken_over() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            cache.get("shop", || counted(&runs, Duration::from_secs(5), 1)),
        );
        assert!(abandoned.await.is_err());
        assert_eq!(cache.get("shop", || counted(&runs, Duration::ZERO, 2)).await.unwrap(), document(2));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn remembers_publishing_namespaces() {
        let names = PublishingNamespaces::default();
        assert!(!names.contains("shop"));
        names.record("shop", true);
        names.record("empty", false);
        assert!(names.contains("shop") && !names.contains("empty"));
        names.record("shop", false);
        assert!(!names.contains("shop"));
    }

    #[tokio::test(start_paused = true)]
    async fn stays_bounded() {
        let cache = JwksCache::<String>::default();
        let runs = AtomicUsize::new(0);
        for index in 0..MAX_CACHED_NAMESPACES + 10 {
            cache.get(&format!("ns{index}"), || counted(&runs, Duration::ZERO, 1)).await.unwrap();
        }
        assert_eq!(cache.len(), MAX_CACHED_NAMESPACES);
        // Once the entries have expired, room is made for new ones.
        tokio::time::advance(JWKS_CACHE_TTL).await;
        cache.get("late", || counted(&runs, Duration::ZERO, 1)).await.unwrap();
        assert_eq!(cache.len(), 1);
    }
}
