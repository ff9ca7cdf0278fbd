//! The key set of one key source, fetched once per Envoy and shared by every worker's VM.
//!
//! Envoy runs one VM per worker thread; they share nothing but the host's shared data. Two
//! entries per key source live there: a small *meta* record (versions, fetch counters, a fetch
//! lease, the schedule) and the last good key-set document. A worker takes the lease with
//! compare-and-swap before it fetches, so one fetch serves the whole Envoy; the others see the
//! new version on their next tick and parse the document once. A fetch sends the stored
//! document's `ETag` in `If-None-Match`, so an unchanged key set comes back as a bodiless 304;
//! a fetched document the same, byte for byte, as the stored one changes nothing either and is
//! not parsed again (a flood of unknown `kid`s costs one small fetch a second, not one transfer
//! and parse of a large key set a second). A failed fetch never replaces the stored document:
//! the last good keys stay in force and the fetch is retried with backoff.

use crate::host::{SetError, SharedData};
use crate::jwks::{self, KeySet, SkippedKey};
use std::rc::Rc;

/// At most one fetch per key source per Envoy in this period, however many unknown `kid`s come.
pub const MIN_REFETCH_MS: u64 = 1_000;
/// Longest pause between retries of a failing fetch.
pub const MAX_RETRY_MS: u64 = 30_000;

const META_TAG: &str = "tg2";
/// Longest `ETag` kept for conditional fetches (longer ones are not sent back).
const MAX_ETAG_BYTES: usize = 256;
const CAS_ATTEMPTS: usize = 16;

/// The shared schedule and counters of one key source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// Version of the stored key set; bumps when its content changes. 0 = none yet.
    pub version: u64,
    /// Fetches started.
    pub started: u64,
    /// Fetches finished, successful or not.
    pub completed: u64,
    /// A fetch is in flight until this time (ms); 0 when none.
    pub lease_until_ms: u64,
    /// When the last fetch started (ms).
    pub last_start_ms: u64,
    /// When the next scheduled fetch is due (ms).
    pub next_due_ms: u64,
    /// Consecutive failed fetches.
    pub failures: u64,
    /// Somebody saw an unknown `kid` and wants a fetch as soon as the rate limit allows.
    pub refetch_wanted: bool,
    /// When a fetch last succeeded (ms); 0 = never.
    pub last_ok_ms: u64,
}

impl Meta {
    fn encode(&self) -> String {
        format!(
            "{META_TAG} {} {} {} {} {} {} {} {} {}",
            self.version,
            self.started,
            self.completed,
            self.lease_until_ms,
            self.last_start_ms,
            self.next_due_ms,
            self.failures,
            u8::from(self.refetch_wanted),
            self.last_ok_ms
        )
    }

    fn decode(bytes: &[u8]) -> Option<Meta> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(' ');
        if fields.next()? != META_TAG {
            return None;
        }
        let mut next = || fields.next().and_then(|f| f.parse::<u64>().ok());
        Some(Meta {
            version: next()?,
            started: next()?,
            completed: next()?,
            lease_until_ms: next()?,
            last_start_ms: next()?,
            next_due_ms: next()?,
            failures: next()?,
            refetch_wanted: next()? != 0,
            last_ok_ms: next()?,
        })
    }

    fn in_flight(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }
}

/// How often and how patiently the key set is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    pub refresh_ms: u64,
    pub timeout_ms: u64,
    /// Stop trusting a key set this long after the last successful fetch (`None`: never).
    pub max_stale_ms: Option<u64>,
}

/// The answer to a claimed fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched<'a> {
    /// 200: the document, and the `ETag` it came with.
    Document { body: &'a [u8], etag: Option<&'a [u8]> },
    /// 304 to the `If-None-Match` of [`KeyCache::fetch_etag`]: the stored document is current.
    NotModified,
}

impl<'a> Fetched<'a> {
    /// A 200 without an `ETag`.
    pub fn body(body: &'a [u8]) -> Fetched<'a> {
        Fetched::Document { body, etag: None }
    }
}

/// What a finished fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// A usable key-set document; `changed` when it differs from the previous one.
    Stored { changed: bool, keys: usize, skipped: Vec<SkippedKey> },
    /// The fetch failed; the last good key set (if any) stays.
    Failed { reason: String },
}

/// What reading the shared state brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResult {
    Unchanged,
    /// A newer key set was loaded into this worker.
    Loaded {
        keys: usize,
    },
    /// The shared state could not be read or parsed; nothing changed locally.
    Unreadable(String),
}

/// One worker's view of a key source.
#[derive(Debug)]
pub struct KeyCache {
    meta_key: String,
    keys_key: String,
    policy: FetchPolicy,
    version: u64,
    keys: Option<Rc<KeySet>>,
    /// `ETag` of the document of `version`, when it came with a usable one.
    etag: Option<String>,
    seen: Meta,
    initialized: bool,
    local: bool,
    /// Key-set documents this worker has parsed.
    parses: u64,
}

impl KeyCache {
    /// A cache for keys fetched from `source_id` (see [`crate::config::RemoteJwks::source_id`]).
    pub fn remote(source_id: &str, policy: FetchPolicy) -> KeyCache {
        KeyCache {
            meta_key: format!("tokengate/{source_id}/meta"),
            keys_key: format!("tokengate/{source_id}/keys"),
            policy,
            version: 0,
            keys: None,
            etag: None,
            seen: Meta::default(),
            initialized: false,
            local: false,
            parses: 0,
        }
    }

    /// A cache that holds a fixed key set and never fetches.
    pub fn local(keys: KeySet) -> KeyCache {
        let mut cache =
            KeyCache::remote("local", FetchPolicy { refresh_ms: u64::MAX, timeout_ms: 0, max_stale_ms: None });
        cache.keys = Some(Rc::new(keys));
        cache.version = 1;
        cache.local = true;
        cache
    }

    /// True for a fixed key set.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The current key set, if one was ever loaded.
    pub fn keys(&self) -> Option<&Rc<KeySet>> {
        self.keys.as_ref()
    }

    /// Version of the loaded key set (changes whenever its content does).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The `If-None-Match` for the next fetch: the `ETag` of the document in force, when this
    /// worker holds that document (a 304 can only confirm a document the worker has).
    pub fn fetch_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|_| self.keys.is_some() && self.version == self.seen.version)
    }

    /// Key-set documents this worker has parsed (fetched or picked up from shared data).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// Fetches finished, as last seen.
    pub fn completed(&self) -> u64 {
        if self.local {
            u64::MAX
        } else {
            self.seen.completed
        }
    }

    /// The fetch policy.
    pub fn policy(&self) -> FetchPolicy {
        self.policy
    }

    /// When no key set is loaded yet: the number of finished fetches to wait for, if a first
    /// load is still to come (nothing finished yet, or a fetch in flight). `None` means there is
    /// nothing to wait for: the keys are there, or the key service has already failed.
    pub fn first_keys_target(&self, now_ms: u64) -> Option<u64> {
        if self.keys.is_some() {
            None
        } else if self.seen.in_flight(now_ms) {
            Some(self.seen.started.max(1))
        } else if self.seen.completed == 0 {
            Some(1)
        } else {
            None
        }
    }

    /// Writes the shared record if no worker has yet. Called at configure time.
    pub fn init(&mut self, store: &dyn SharedData) {
        if self.local || self.initialized {
            return;
        }
        if let Ok((None, _)) = store.get(&self.meta_key) {
            // Envoy cannot create a key atomically, so workers starting together may all write
            // this empty record; fetches are only claimed later, with compare-and-swap.
            let _ = store.set(&self.meta_key, Meta::default().encode().as_bytes(), None);
        }
        self.initialized = true;
    }

    /// True when the key set is older than the configured maximum staleness: every fetch since
    /// the last good one has failed for that long, so the keys may include revoked tokens.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        !self.local
            && self
                .policy
                .max_stale_ms
                .is_some_and(|max| self.seen.last_ok_ms > 0 && now_ms > self.seen.last_ok_ms.saturating_add(max))
    }

    fn read_meta(&self, store: &dyn SharedData) -> Option<(Meta, Option<u32>)> {
        match store.get(&self.meta_key) {
            // A record this version cannot read (left by another plugin version in the same VM
            // group) is treated as empty and replaced by the next compare-and-swap write.
            Ok((Some(bytes), cas)) => Some((Meta::decode(&bytes).unwrap_or_default(), cas)),
            _ => None,
        }
    }

    /// Reads the shared record and loads a newer key set if there is one.
    pub fn sync(&mut self, store: &dyn SharedData) -> SyncResult {
        if self.local {
            return SyncResult::Unchanged;
        }
        let Some((meta, _)) = self.read_meta(store) else {
            return SyncResult::Unreadable("no shared record yet".to_owned());
        };
        self.seen = meta;
        if meta.version <= self.version {
            return SyncResult::Unchanged;
        }
        let stored = match store.get(&self.keys_key) {
            Ok((Some(bytes), _)) => bytes,
            _ => return SyncResult::Unreadable("stored key set missing".to_owned()),
        };
        let Some(doc) = split_stored(&stored) else {
            return SyncResult::Unreadable("stored key set has no version".to_owned());
        };
        self.parses += 1;
        match jwks::parse(doc.body) {
            Ok(parsed) => {
                let keys = parsed.keys.len();
                self.keys = Some(Rc::new(parsed.keys));
                self.version = doc.version;
                self.etag = doc.etag.map(str::to_owned);
                SyncResult::Loaded { keys }
            }
            Err(e) => SyncResult::Unreadable(e.to_string()),
        }
    }

    /// Takes the fetch lease if a fetch is due and none is in flight. `true`: the caller must
    /// start the fetch now and report it with [`KeyCache::finish_fetch`].
    pub fn claim_fetch(&mut self, store: &dyn SharedData, now_ms: u64) -> bool {
        if self.local || !self.initialized {
            return false;
        }
        let Some((meta, cas)) = self.read_meta(store) else {
            return false;
        };
        self.seen = meta;
        let never = meta.started == 0;
        let scheduled = now_ms >= meta.next_due_ms;
        let wanted = meta.refetch_wanted && now_ms >= meta.last_start_ms.saturating_add(MIN_REFETCH_MS);
        if meta.in_flight(now_ms) || !(never || scheduled || wanted) {
            return false;
        }
        let claimed = Meta {
            started: meta.started + 1,
            lease_until_ms: now_ms + self.policy.timeout_ms + 1_000,
            last_start_ms: now_ms,
            refetch_wanted: false,
            ..meta
        };
        if store.set(&self.meta_key, claimed.encode().as_bytes(), cas).is_ok() {
            self.seen = claimed;
            true
        } else {
            false
        }
    }

    /// Asks for a fetch as soon as the rate limit allows (a token named an unknown `kid`).
    /// Returns the number of finished fetches after which that fetch is done.
    pub fn want_refetch(&mut self, store: &dyn SharedData) -> Option<u64> {
        if self.local {
            return None;
        }
        for _ in 0..CAS_ATTEMPTS {
            let (meta, cas) = self.read_meta(store)?;
            self.seen = meta;
            let target = meta.started + 1;
            if meta.refetch_wanted {
                return Some(target);
            }
            let wanted = Meta { refetch_wanted: true, ..meta };
            match store.set(&self.meta_key, wanted.encode().as_bytes(), cas) {
                Ok(()) => {
                    self.seen = wanted;
                    return Some(target);
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Host) => return None,
            }
        }
        None
    }

    /// Records the end of the fetch this worker claimed: its answer, or the reason it failed. A
    /// body that is not a key set counts as a failure.
    pub fn finish_fetch(
        &mut self,
        store: &dyn SharedData,
        now_ms: u64,
        outcome: Result<Fetched<'_>, String>,
    ) -> FetchResult {
        // The document in force, to tell a changed key set from a refreshed one by its bytes.
        let stored_bytes = match store.get(&self.keys_key) {
            Ok((Some(bytes), _)) => Some(bytes),
            _ => None,
        };
        let stored = stored_bytes.as_deref().and_then(split_stored);
        let held = stored.filter(|doc| self.keys.is_some() && doc.version == self.version);
        let (body, etag) = match outcome {
            Ok(Fetched::Document { body, etag }) => (body, etag.and_then(usable_etag)),
            Ok(Fetched::NotModified) => match held {
                Some(doc) => (doc.body, doc.etag),
                None => return self.fail(store, now_ms, "304 for a key set this worker does not hold".to_owned()),
            },
            Err(reason) => return self.fail(store, now_ms, reason),
        };
        // This worker already holds exactly these keys: nothing to parse.
        let parsed = if held.is_some_and(|doc| doc.body == body) {
            None
        } else {
            self.parses += 1;
            match jwks::parse(body) {
                Ok(parsed) => Some(parsed),
                Err(e) => return self.fail(store, now_ms, e.to_string()),
            }
        };
        let refresh_ms = self.policy.refresh_ms;
        let mut changed = false;
        let recorded = self.record(store, |meta| {
            changed = meta.version == 0 || !stored.is_some_and(|doc| doc.version == meta.version && doc.body == body);
            Meta {
                version: if changed { meta.version + 1 } else { meta.version },
                completed: meta.completed + 1,
                lease_until_ms: 0,
                failures: 0,
                next_due_ms: now_ms + refresh_ms,
                last_ok_ms: now_ms,
                ..meta
            }
        });
        let Some(meta) = recorded else {
            return FetchResult::Failed { reason: "could not update shared data".to_owned() };
        };
        if changed || stored.is_some_and(|doc| doc.etag != etag) {
            let mut value = format!("{META_TAG} {} {}\n", meta.version, etag.unwrap_or("")).into_bytes();
            value.extend_from_slice(body);
            // The meta record already names this version; workers that read it before this
            // write lands find an older document and simply try again on their next tick.
            let _ = store.set(&self.keys_key, &value, None);
        }
        let etag = etag.map(str::to_owned);
        let Some(parsed) = parsed else {
            // The keys this worker holds are the document of `meta.version` now.
            self.version = meta.version;
            self.etag = etag;
            let keys = self.keys.as_ref().map_or(0, |k| k.len());
            return FetchResult::Stored { changed, keys, skipped: Vec::new() };
        };
        let keys = parsed.keys.len();
        if meta.version > self.version || self.keys.is_none() {
            self.keys = Some(Rc::new(parsed.keys));
            self.version = meta.version;
            self.etag = etag;
        }
        FetchResult::Stored { changed, keys, skipped: parsed.skipped }
    }

    /// Records a failed fetch: the last good keys stay, the next try backs off.
    fn fail(&mut self, store: &dyn SharedData, now_ms: u64, reason: String) -> FetchResult {
        let refresh_ms = self.policy.refresh_ms;
        self.record(store, |meta| {
            let failures = meta.failures + 1;
            Meta {
                completed: meta.completed + 1,
                lease_until_ms: 0,
                failures,
                next_due_ms: now_ms + retry_delay(failures, refresh_ms),
                ..meta
            }
        });
        FetchResult::Failed { reason }
    }

    /// Records that a claimed fetch could not even be started (for example, unknown cluster).
    pub fn fetch_not_started(&mut self, store: &dyn SharedData, now_ms: u64, reason: String) -> FetchResult {
        self.finish_fetch(store, now_ms, Err(reason))
    }

    /// Read-modify-write of the meta record with compare-and-swap.
    fn record(&mut self, store: &dyn SharedData, mut change: impl FnMut(Meta) -> Meta) -> Option<Meta> {
        for _ in 0..CAS_ATTEMPTS {
            let (meta, cas) = self.read_meta(store)?;
            let next = change(meta);
            match store.set(&self.meta_key, next.encode().as_bytes(), cas) {
                Ok(()) => {
                    self.seen = next;
                    return Some(next);
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Host) => return None,
            }
        }
        None
    }
}

/// Backoff after `failures` consecutive failures: 1 s, 2 s, 4 s ... at most 30 s and never
/// later than the refresh period.
pub fn retry_delay(failures: u64, refresh_ms: u64) -> u64 {
    let exponent = failures.saturating_sub(1).min(16) as u32;
    MIN_REFETCH_MS.saturating_mul(1 << exponent).min(MAX_RETRY_MS).min(refresh_ms.max(MIN_REFETCH_MS))
}

/// The stored key set: a `tg2 VERSION ETAG` line (ETAG may be empty), then the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredDoc<'a> {
    version: u64,
    etag: Option<&'a str>,
    body: &'a [u8],
}

fn split_stored(stored: &[u8]) -> Option<StoredDoc<'_>> {
    let newline = stored.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(stored.get(..newline)?).ok()?;
    let mut fields = head.split(' ');
    if fields.next()? != META_TAG {
        return None;
    }
    let version = fields.next()?.parse().ok()?;
    let etag = fields.next().filter(|e| !e.is_empty());
    if fields.next().is_some() {
        return None;
    }
    Some(StoredDoc { version, etag, body: stored.get(newline + 1..)? })
}

/// An `ETag` that can be stored and sent back as it came: visible ASCII, no spaces.
fn usable_etag(etag: &[u8]) -> Option<&str> {
    let fits = !etag.is_empty() && etag.len() <= MAX_ETAG_BYTES && etag.iter().all(|b| b.is_ascii_graphic());
    std::str::from_utf8(etag).ok().filter(|_| fits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemorySharedData;

    const POLICY: FetchPolicy = FetchPolicy { refresh_ms: 300_000, timeout_ms: 2_000, max_stale_ms: None };
    const SET_A: &[u8] =
        br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"-sMjijSE0upXqunAueledd7rUPOlyKB5in-8PuZL6Zs"}]}"#;
    const SET_EMPTY: &[u8] = br#"{"keys":[]}"#;

    fn workers(n: usize, store: &MemorySharedData) -> Vec<KeyCache> {
        (0..n)
            .map(|_| {
                let mut c = KeyCache::remote("c|a|/p", POLICY);
                c.init(store);
                c
            })
            .collect()
    }

    #[test]
    fn meta_round_trips() {
        let meta = Meta {
            last_ok_ms: 11,
            version: 3,
            started: 9,
            completed: 8,
            lease_until_ms: 5,
            last_start_ms: 4,
            next_due_ms: 7,
            failures: 2,
            refetch_wanted: true,
        };
        assert_eq!(Meta::decode(meta.encode().as_bytes()), Some(meta));
        assert_eq!(Meta::decode(b"tg0 1 2 3"), None);
        assert_eq!(Meta::decode(b"tg1 1 2"), None);
    }

    #[test]
    fn one_fetch_serves_every_worker() {
        let store = MemorySharedData::default();
        let mut w = workers(4, &store);
        let claims: Vec<bool> = w.iter_mut().map(|c| c.claim_fetch(&store, 1_000)).collect();
        assert_eq!(claims.iter().filter(|c| **c).count(), 1, "exactly one worker fetches");
        let first = claims.iter().position(|c| *c).unwrap();
        assert_eq!(w[first].first_keys_target(1_000), Some(1));
        let result = w[first].finish_fetch(&store, 1_050, Ok(Fetched::body(SET_A)));
        assert!(matches!(result, FetchResult::Stored { changed: true, keys: 1, .. }));
        for cache in w.iter_mut() {
            cache.sync(&store);
            assert_eq!(cache.keys().map(|k| k.len()), Some(1));
            assert_eq!(cache.completed(), 1);
            // Nothing is due until the refresh period has passed.
            assert!(!cache.claim_fetch(&store, 2_000));
        }
        assert!(w[0].claim_fetch(&store, 1_050 + POLICY.refresh_ms));
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_good_keys_and_backs_off() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 10, Ok(Fetched::body(SET_A)));
        let version = w[0].version();
        let due = 10 + POLICY.refresh_ms;
        for (i, body) in [&b"<html>502</html>"[..], b"", b"{\"keys\":7}"].iter().enumerate() {
            let now = due + 100_000 * i as u64;
            assert!(w[1].claim_fetch(&store, now));
            assert!(matches!(w[1].finish_fetch(&store, now + 5, Ok(Fetched::body(body))), FetchResult::Failed { .. }));
            w[0].sync(&store);
            assert_eq!(w[0].version(), version);
            assert_eq!(w[0].keys().map(|k| k.len()), Some(1));
            // Retried after 1 s, 2 s, 4 s: not at once.
            assert!(!w[0].claim_fetch(&store, now + 5 + 999 * (1 << i)));
        }
        assert!(w[1].claim_fetch(&store, due + 200_000 + 5 + 4_000));
        assert!(matches!(
            w[1].fetch_not_started(&store, due + 200_010, "no cluster".into()),
            FetchResult::Failed { .. }
        ));
    }

    #[test]
    fn an_unchanged_key_set_keeps_its_version_and_an_empty_one_replaces_it() {
        let store = MemorySharedData::default();
        let mut w = workers(1, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 1, Ok(Fetched::body(SET_A)));
        assert!(w[0].claim_fetch(&store, 1 + POLICY.refresh_ms));
        let again = w[0].finish_fetch(&store, 2 + POLICY.refresh_ms, Ok(Fetched::body(SET_A)));
        assert!(matches!(again, FetchResult::Stored { changed: false, keys: 1, .. }));
        assert_eq!(w[0].version(), 1);
        assert_eq!(w[0].parses(), 1, "the same document is not parsed again");
        // Revoking the last token publishes an empty set: it must take effect.
        assert!(w[0].claim_fetch(&store, 3 + 2 * POLICY.refresh_ms));
        w[0].finish_fetch(&store, 4 + 2 * POLICY.refresh_ms, Ok(Fetched::body(SET_EMPTY)));
        assert_eq!(w[0].version(), 2);
        assert!(w[0].keys().is_some_and(|k| k.is_empty()));
        // The same keys written differently (one more space) are another document: a new
        // version, so the verified-token cache of every worker starts over.
        assert!(w[0].claim_fetch(&store, 5 + 3 * POLICY.refresh_ms));
        w[0].finish_fetch(&store, 6 + 3 * POLICY.refresh_ms, Ok(Fetched::body(br#"{"keys": []}"#)));
        assert_eq!(w[0].version(), 3);
    }

    #[test]
    fn an_etag_makes_refreshes_conditional() {
        let store = MemorySharedData::default();
        let mut w = workers(3, &store);
        let v1 = Fetched::Document { body: SET_A, etag: Some(br#""v1""#) };
        assert!(w[0].claim_fetch(&store, 0));
        assert_eq!(w[0].fetch_etag(), None, "nothing to confirm before the first key set");
        w[0].finish_fetch(&store, 1, Ok(v1));
        assert_eq!(w[0].fetch_etag(), Some(r#""v1""#));
        assert!(matches!(w[1].sync(&store), SyncResult::Loaded { keys: 1 }));
        assert_eq!(w[1].fetch_etag(), Some(r#""v1""#), "the ETag is shared with the document");

        // 304: nothing changes, nothing is parsed.
        let mut now = 2 + POLICY.refresh_ms;
        assert!(w[1].claim_fetch(&store, now));
        let result = w[1].finish_fetch(&store, now + 1, Ok(Fetched::NotModified));
        assert!(matches!(result, FetchResult::Stored { changed: false, keys: 1, .. }), "{result:?}");
        assert_eq!((w[1].version(), w[1].parses()), (1, 1));

        // A 304 can only confirm a document the worker holds: w[2] has none.
        now += POLICY.refresh_ms + 10;
        assert!(w[2].claim_fetch(&store, now));
        assert!(matches!(w[2].finish_fetch(&store, now + 1, Ok(Fetched::NotModified)), FetchResult::Failed { .. }));
        assert!(w[2].keys().is_none());

        // A new document with a new ETag: a new version; others send the old ETag until they
        // have picked the new document up.
        now += POLICY.refresh_ms + 10;
        assert!(w[0].claim_fetch(&store, now));
        let v2 = Fetched::Document { body: SET_EMPTY, etag: Some(br#"W/"v2""#) };
        assert!(matches!(w[0].finish_fetch(&store, now + 1, Ok(v2)), FetchResult::Stored { changed: true, .. }));
        assert_eq!((w[0].version(), w[0].fetch_etag()), (2, Some(r#"W/"v2""#)));
        assert!(matches!(w[1].sync(&store), SyncResult::Loaded { keys: 0 }));
        assert_eq!(w[1].fetch_etag(), Some(r#"W/"v2""#));

        // The same bytes under another ETag: no new version, the new ETag is kept.
        now += POLICY.refresh_ms + 10;
        assert!(w[0].claim_fetch(&store, now));
        let v3 = Fetched::Document { body: SET_EMPTY, etag: Some(br#""v3""#) };
        assert!(matches!(w[0].finish_fetch(&store, now + 1, Ok(v3)), FetchResult::Stored { changed: false, .. }));
        assert_eq!((w[0].version(), w[0].fetch_etag(), w[0].parses()), (2, Some(r#""v3""#), 2));
    }

    #[test]
    fn an_etag_that_cannot_be_sent_back_is_not_kept() {
        let long = [b'a'; MAX_ETAG_BYTES + 1];
        for etag in [&b"\"a b\""[..], b"\"\xc3\xa9\"", b"\"a\"\r\nx: y", b"", &long] {
            let store = MemorySharedData::default();
            let mut w = workers(2, &store);
            assert!(w[0].claim_fetch(&store, 0));
            w[0].finish_fetch(&store, 1, Ok(Fetched::Document { body: SET_A, etag: Some(etag) }));
            assert_eq!(w[0].fetch_etag(), None, "{:?}", String::from_utf8_lossy(etag));
            w[1].sync(&store);
            assert_eq!((w[1].version(), w[1].fetch_etag()), (1, None));
        }
    }

    #[test]
    fn any_changed_byte_is_a_new_version_for_every_worker() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 1, Ok(Fetched::body(SET_A)));
        w[1].sync(&store);
        let renamed = String::from_utf8_lossy(SET_A).replace(r#""kid":"a""#, r#""kid":"b""#).into_bytes();
        assert!(w[0].claim_fetch(&store, 1 + POLICY.refresh_ms));
        assert!(matches!(
            w[0].finish_fetch(&store, 2 + POLICY.refresh_ms, Ok(Fetched::body(&renamed))),
            FetchResult::Stored { changed: true, .. }
        ));
        assert!(matches!(w[1].sync(&store), SyncResult::Loaded { .. }));
        assert_eq!((w[0].version(), w[1].version()), (2, 2));
    }

    #[test]
    fn refetches_for_unknown_kids_are_rate_limited_across_workers() {
        let store = MemorySharedData::default();
        let mut w = workers(3, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 10, Ok(Fetched::body(SET_A)));
        let mut fetches = 0;
        // 10 s of unknown kids from every worker, ticking every 10 ms.
        for now in (20..10_020).step_by(10) {
            for cache in w.iter_mut() {
                let target = cache.want_refetch(&store).unwrap();
                assert!(target > cache.completed());
                if cache.claim_fetch(&store, now) {
                    fetches += 1;
                    cache.finish_fetch(&store, now + 3, Ok(Fetched::body(SET_A)));
                }
            }
        }
        assert!((9..=10).contains(&fetches), "{fetches} fetches in 10 s");
        // The key set never changed: each worker parsed it once, fetched or picked up.
        for cache in w.iter_mut() {
            cache.sync(&store);
        }
        assert!(w.iter().all(|c| c.parses() == 1), "{:?}", w.iter().map(KeyCache::parses).collect::<Vec<_>>());
        assert!(w.iter().all(|c| c.version() == 1));
    }

    #[test]
    fn waiting_for_the_first_keys() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert_eq!(w[1].first_keys_target(0), Some(1));
        assert!(w[0].claim_fetch(&store, 0));
        w[1].sync(&store);
        assert_eq!(w[1].first_keys_target(5), Some(1));
        w[0].finish_fetch(&store, 10, Ok(Fetched::body(b"<html>")));
        w[1].sync(&store);
        // The key service failed: nothing more to wait for until a retry starts.
        assert_eq!(w[1].first_keys_target(20), None);
        assert!(w[1].claim_fetch(&store, 1_010));
        assert_eq!(w[1].first_keys_target(1_020), Some(2));
    }

    #[test]
    fn a_lease_expires_if_its_fetch_never_ends() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert!(w[0].claim_fetch(&store, 0));
        assert!(!w[1].claim_fetch(&store, POLICY.timeout_ms + 999));
        assert!(w[1].claim_fetch(&store, POLICY.timeout_ms + 1_000));
    }

    #[test]
    fn an_unreadable_shared_record_is_replaced_not_a_dead_end() {
        let store = MemorySharedData::default();
        store.set("tokengate/c|a|/p/meta", b"tg0 from another version", None).unwrap();
        let mut w = workers(1, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 5, Ok(Fetched::body(SET_A)));
        assert_eq!(w[0].keys().map(|k| k.len()), Some(1));
    }

    #[test]
    fn keys_go_stale_only_when_configured_and_fetches_keep_failing() {
        let store = MemorySharedData::default();
        let policy = FetchPolicy { max_stale_ms: Some(60_000), ..POLICY };
        let mut cache = KeyCache::remote("c|a|/p", policy);
        cache.init(&store);
        assert!(!cache.is_stale(1_000_000), "never fetched: nothing to be stale");
        assert!(cache.claim_fetch(&store, 0));
        cache.finish_fetch(&store, 10, Ok(Fetched::body(SET_A)));
        assert!(!cache.is_stale(60_010));
        assert!(cache.is_stale(60_011));
        assert!(cache.claim_fetch(&store, 400_000));
        cache.finish_fetch(&store, 400_001, Ok(Fetched::body(SET_A)));
        assert!(!cache.is_stale(400_002), "a good fetch makes the keys fresh again");
        let mut forever = workers(1, &store).pop().unwrap();
        forever.sync(&store);
        assert!(!forever.is_stale(u64::MAX));
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay(1, 300_000), 1_000);
        assert_eq!(retry_delay(2, 300_000), 2_000);
        assert_eq!(retry_delay(6, 300_000), 30_000);
        assert_eq!(retry_delay(u64::MAX, 300_000), 30_000);
        assert_eq!(retry_delay(4, 5_000), 5_000);
    }
}
