//! The key set of one key source, fetched once per Envoy and shared by every worker's VM.
//!
//! Envoy runs one VM per worker thread; they share nothing but the host's shared data. Two
//! entries per key source live there: a small *meta* record (versions, fetch counters, a fetch
//! lease, the schedule) and the last good key-set document. A worker takes the lease with
//! compare-and-swap before it fetches, so one fetch serves the whole Envoy; the others see the
//! new version on their next tick and parse the document once. A fetched document the same,
//! byte for byte, as the stored one changes nothing and is not parsed again (a flood of unknown
//! `kid`s costs one fetch a second, not one parse of a large key set a second). A failed fetch
//! never replaces the stored document: the last good keys stay in force and the fetch is
//! retried with backoff.

use crate::host::{SetError, SharedData};
use crate::jwks::{self, KeySet, SkippedKey};
use std::rc::Rc;

/// At most one fetch per key source per Envoy in this period, however many unknown `kid`s come.
pub const MIN_REFETCH_MS: u64 = 1_000;
/// Longest pause between retries of a failing fetch.
pub const MAX_RETRY_MS: u64 = 30_000;

const META_TAG: &str = "tg2";
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
        let Some((version, body)) = split_stored(&stored) else {
            return SyncResult::Unreadable("stored key set has no version".to_owned());
        };
        self.parses += 1;
        match jwks::parse(body) {
            Ok(parsed) => {
                let keys = parsed.keys.len();
                self.keys = Some(Rc::new(parsed.keys));
                self.version = version;
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

    /// Records the end of the fetch this worker claimed: `Ok(body)` for a 200 response, or the
    /// reason it failed. A body that is not a key set counts as a failure.
    pub fn finish_fetch(&mut self, store: &dyn SharedData, now_ms: u64, outcome: Result<&[u8], String>) -> FetchResult {
        let refresh_ms = self.policy.refresh_ms;
        // The document in force, to tell a changed key set from a refreshed one by its bytes.
        let stored = match store.get(&self.keys_key) {
            Ok((Some(bytes), _)) => Some(bytes),
            _ => None,
        };
        let stored = stored.as_deref().and_then(split_stored);
        let parsed = match outcome {
            // This worker already holds exactly these keys: nothing to parse.
            Ok(body) if self.keys.is_some() && stored == Some((self.version, body)) => Ok((body, None)),
            Ok(body) => {
                self.parses += 1;
                jwks::parse(body).map(|p| (body, Some(p))).map_err(|e| e.to_string())
            }
            Err(reason) => Err(reason),
        };
        let (body, parsed) = match parsed {
            Ok(ok) => ok,
            Err(reason) => {
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
                return FetchResult::Failed { reason };
            }
        };
        let mut changed = false;
        let recorded = self.record(store, |meta| {
            changed = meta.version == 0 || stored != Some((meta.version, body));
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
        if changed {
            let mut value = format!("{META_TAG} {}\n", meta.version).into_bytes();
            value.extend_from_slice(body);
            // The meta record already names this version; workers that read it before this
            // write lands find an older document and simply try again on their next tick.
            let _ = store.set(&self.keys_key, &value, None);
        }
        let Some(parsed) = parsed else {
            let keys = self.keys.as_ref().map_or(0, |k| k.len());
            return FetchResult::Stored { changed, keys, skipped: Vec::new() };
        };
        let keys = parsed.keys.len();
        if meta.version > self.version || self.keys.is_none() {
            self.keys = Some(Rc::new(parsed.keys));
            self.version = meta.version;
        }
        FetchResult::Stored { changed, keys, skipped: parsed.skipped }
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

fn split_stored(stored: &[u8]) -> Option<(u64, &[u8])> {
    let newline = stored.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(stored.get(..newline)?).ok()?;
    let version = head.strip_prefix(META_TAG)?.trim().parse().ok()?;
    Some((version, stored.get(newline + 1..)?))
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
        let result = w[first].finish_fetch(&store, 1_050, Ok(SET_A));
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
        w[0].finish_fetch(&store, 10, Ok(SET_A));
        let version = w[0].version();
        let due = 10 + POLICY.refresh_ms;
        for (i, body) in [&b"<html>502</html>"[..], b"", b"{\"keys\":7}"].iter().enumerate() {
            let now = due + 100_000 * i as u64;
            assert!(w[1].claim_fetch(&store, now));
            assert!(matches!(w[1].finish_fetch(&store, now + 5, Ok(body)), FetchResult::Failed { .. }));
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
        w[0].finish_fetch(&store, 1, Ok(SET_A));
        assert!(w[0].claim_fetch(&store, 1 + POLICY.refresh_ms));
        let again = w[0].finish_fetch(&store, 2 + POLICY.refresh_ms, Ok(SET_A));
        assert!(matches!(again, FetchResult::Stored { changed: false, keys: 1, .. }));
        assert_eq!(w[0].version(), 1);
        assert_eq!(w[0].parses(), 1, "the same document is not parsed again");
        // Revoking the last token publishes an empty set: it must take effect.
        assert!(w[0].claim_fetch(&store, 3 + 2 * POLICY.refresh_ms));
        w[0].finish_fetch(&store, 4 + 2 * POLICY.refresh_ms, Ok(SET_EMPTY));
        assert_eq!(w[0].version(), 2);
        assert!(w[0].keys().is_some_and(|k| k.is_empty()));
        // The same keys written differently (one more space) are another document: a new
        // version, so the verified-token cache of every worker starts over.
        assert!(w[0].claim_fetch(&store, 5 + 3 * POLICY.refresh_ms));
        w[0].finish_fetch(&store, 6 + 3 * POLICY.refresh_ms, Ok(br#"{"keys": []}"#));
        assert_eq!(w[0].version(), 3);
    }

    #[test]
    fn any_changed_byte_is_a_new_version_for_every_worker() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 1, Ok(SET_A));
        w[1].sync(&store);
        let renamed = String::from_utf8_lossy(SET_A).replace(r#""kid":"a""#, r#""kid":"b""#).into_bytes();
        assert!(w[0].claim_fetch(&store, 1 + POLICY.refresh_ms));
        assert!(matches!(
            w[0].finish_fetch(&store, 2 + POLICY.refresh_ms, Ok(&renamed)),
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
        w[0].finish_fetch(&store, 10, Ok(SET_A));
        let mut fetches = 0;
        // 10 s of unknown kids from every worker, ticking every 10 ms.
        for now in (20..10_020).step_by(10) {
            for cache in w.iter_mut() {
                let target = cache.want_refetch(&store).unwrap();
                assert!(target > cache.completed());
                if cache.claim_fetch(&store, now) {
                    fetches += 1;
                    cache.finish_fetch(&store, now + 3, Ok(SET_A));
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
        w[0].finish_fetch(&store, 10, Ok(b"<html>"));
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
        w[0].finish_fetch(&store, 5, Ok(SET_A));
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
        cache.finish_fetch(&store, 10, Ok(SET_A));
        assert!(!cache.is_stale(60_010));
        assert!(cache.is_stale(60_011));
        assert!(cache.claim_fetch(&store, 400_000));
        cache.finish_fetch(&store, 400_001, Ok(SET_A));
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
