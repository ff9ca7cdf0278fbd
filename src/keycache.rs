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
    /// `etag`: the one the 304 came with, if any.
    NotModified { etag: Option<&'a [u8]> },
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
    /// The fetch this worker claimed and has not finished: its number (`Meta::started`) and the
    /// `If-None-Match` it goes out with.
    claim: Option<(u64, Option<String>)>,
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
            claim: None,
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

    /// The `If-None-Match` of the fetch this worker claimed: the `ETag` of the keys it holds, when
    /// they are the version in force (a 304 can only confirm keys the worker has).
    pub fn fetch_etag(&self) -> Option<&str> {
        self.claim.as_ref().and_then(|(_, etag)| etag.as_deref())
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
        if doc.version <= self.version {
            // The newer document has not landed yet (or its write was lost): never step back
            // to an older one.
            return SyncResult::Unchanged;
        }
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
            // Ask for a 304 only about a document this worker holds, and the one in force.
            let etag = self.etag.clone().filter(|_| self.keys.is_some() && self.version == claimed.version);
            self.claim = Some((claimed.started, etag));
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
    /// body that is not a key set counts as a failure. An answer that comes after the lease ran
    /// out and another fetch was claimed changes nothing: the newer fetch decides.
    pub fn finish_fetch(
        &mut self,
        store: &dyn SharedData,
        now_ms: u64,
        outcome: Result<Fetched<'_>, String>,
    ) -> FetchResult {
        let Some((claim, sent_etag)) = self.claim.take() else {
            return FetchResult::Failed { reason: "no fetch of this worker was in flight".to_owned() };
        };
        // The document in force, to tell a changed key set from a refreshed one by its bytes.
        let stored_bytes = match store.get(&self.keys_key) {
            Ok((Some(bytes), _)) => Some(bytes),
            _ => None,
        };
        let stored = stored_bytes.as_deref().and_then(split_stored);
        let held = stored.filter(|doc| self.keys.is_some() && doc.version == self.version);
        let (body, etag) = match outcome {
            Ok(Fetched::Document { body, etag }) => (body, etag.and_then(usable_etag)),
            Ok(Fetched::NotModified { etag: answered }) => {
                // Only an answer to the If-None-Match this fetch sent, which named the keys this
                // worker still holds, and (if the 304 names a tag) about that same tag.
                let confirms = sent_etag.as_deref().is_some_and(|sent| {
                    self.etag.as_deref() == Some(sent)
                        && answered.is_none_or(|a| opaque_tag(a) == opaque_tag(sent.as_bytes()))
                });
                if !confirms {
                    // Whatever went wrong, the next fetch asks for the whole document.
                    self.etag = None;
                    return self.fail(store, now_ms, claim, "a 304 that confirms no key set this worker holds");
                }
                match held {
                    Some(doc) => (doc.body, doc.etag),
                    // The keys stay; the stored document is not this worker's to mend without
                    // a body (a worker without keys fetches in full).
                    None => return self.confirm(store, now_ms, claim),
                }
            }
            Err(reason) => return self.fail(store, now_ms, claim, &reason),
        };
        // This worker already holds exactly these keys: nothing to parse.
        let parsed = if held.is_some_and(|doc| doc.body == body) {
            None
        } else {
            self.parses += 1;
            match jwks::parse(body) {
                Ok(parsed) => Some(parsed),
                Err(e) => return self.fail(store, now_ms, claim, &e.to_string()),
            }
        };
        let refresh_ms = self.policy.refresh_ms;
        // A new version is above every version this worker has seen, even if the meta record
        // was lost or replaced in between.
        let floor = self.version.max(stored.map_or(0, |doc| doc.version));
        let mut changed = false;
        let recorded = self.record(store, claim, |meta| {
            changed = meta.version == 0 || !stored.is_some_and(|doc| doc.version == meta.version && doc.body == body);
            let version = if changed { meta.version.max(floor) + 1 } else { meta.version };
            Meta { version, ..succeeded(meta, now_ms, refresh_ms) }
        });
        let meta = match recorded {
            Recorded::Written(meta) => meta,
            Recorded::Superseded => return superseded(),
            Recorded::Failed => return FetchResult::Failed { reason: "could not update shared data".to_owned() },
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

    /// Records a 304 that confirmed this worker's keys when the stored document is not theirs.
    fn confirm(&mut self, store: &dyn SharedData, now_ms: u64, claim: u64) -> FetchResult {
        let refresh_ms = self.policy.refresh_ms;
        let recorded = self.record(store, claim, |meta| succeeded(meta, now_ms, refresh_ms));
        match recorded {
            Recorded::Written(_) => {
                let keys = self.keys.as_ref().map_or(0, |k| k.len());
                FetchResult::Stored { changed: false, keys, skipped: Vec::new() }
            }
            Recorded::Superseded => superseded(),
            Recorded::Failed => FetchResult::Failed { reason: "could not update shared data".to_owned() },
        }
    }

    /// Records a failed fetch: the last good keys stay, the next try backs off.
    fn fail(&mut self, store: &dyn SharedData, now_ms: u64, claim: u64, reason: &str) -> FetchResult {
        let refresh_ms = self.policy.refresh_ms;
        let recorded = self.record(store, claim, |meta| {
            let failures = meta.failures + 1;
            Meta {
                completed: meta.completed + 1,
                lease_until_ms: 0,
                failures,
                next_due_ms: now_ms + retry_delay(failures, refresh_ms),
                ..meta
            }
        });
        match recorded {
            Recorded::Superseded => superseded(),
            _ => FetchResult::Failed { reason: reason.to_owned() },
        }
    }

    /// Records that a claimed fetch could not even be started (for example, unknown cluster).
    pub fn fetch_not_started(&mut self, store: &dyn SharedData, now_ms: u64, reason: String) -> FetchResult {
        self.finish_fetch(store, now_ms, Err(reason))
    }

    /// Read-modify-write of the meta record for the end of fetch `claim`, with compare-and-swap.
    /// Nothing is written once another fetch was claimed (this one's lease ran out).
    fn record(&mut self, store: &dyn SharedData, claim: u64, mut change: impl FnMut(Meta) -> Meta) -> Recorded {
        for _ in 0..CAS_ATTEMPTS {
            let Some((meta, cas)) = self.read_meta(store) else {
                return Recorded::Failed;
            };
            if meta.started != claim {
                self.seen = meta;
                return Recorded::Superseded;
            }
            let next = change(meta);
            match store.set(&self.meta_key, next.encode().as_bytes(), cas) {
                Ok(()) => {
                    self.seen = next;
                    return Recorded::Written(next);
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Host) => return Recorded::Failed,
            }
        }
        Recorded::Failed
    }
}

/// How a read-modify-write of the meta record ended.
enum Recorded {
    Written(Meta),
    /// Another worker claimed a fetch after this one's lease ran out.
    Superseded,
    Failed,
}

/// The meta record after a successful fetch (a 200 or a 304), version aside.
fn succeeded(meta: Meta, now_ms: u64, refresh_ms: u64) -> Meta {
    Meta {
        completed: meta.completed + 1,
        lease_until_ms: 0,
        failures: 0,
        next_due_ms: now_ms + refresh_ms,
        last_ok_ms: now_ms,
        ..meta
    }
}

fn superseded() -> FetchResult {
    FetchResult::Failed { reason: "answer came after the fetch lease ran out; a newer fetch decides".to_owned() }
}

/// An entity tag without its weakness mark (`W/"x"` and `"x"` name the same document, as in
/// If-None-Match's weak comparison).
fn opaque_tag(etag: &[u8]) -> &[u8] {
    etag.strip_prefix(b"W/").unwrap_or(etag)
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
        assert_eq!(w[0].fetch_etag(), None, "no fetch in flight");
        assert!(matches!(w[1].sync(&store), SyncResult::Loaded { keys: 1 }));

        // The next fetch, by a worker that picked the document up, asks for a 304; a 304 then
        // changes nothing and parses nothing.
        let mut now = 2 + POLICY.refresh_ms;
        assert!(w[1].claim_fetch(&store, now));
        assert_eq!(w[1].fetch_etag(), Some(r#""v1""#), "the ETag is shared with the document");
        let weak = Fetched::NotModified { etag: Some(br#"W/"v1""#) };
        let result = w[1].finish_fetch(&store, now + 1, Ok(weak));
        assert!(matches!(result, FetchResult::Stored { changed: false, keys: 1, .. }), "{result:?}");
        assert_eq!((w[1].version(), w[1].parses()), (1, 1));

        // A 304 for another tag, or to a fetch that asked for none, confirms nothing.
        now += POLICY.refresh_ms + 10;
        assert!(w[1].claim_fetch(&store, now));
        let other = Fetched::NotModified { etag: Some(br#""v0""#) };
        assert!(matches!(w[1].finish_fetch(&store, now + 1, Ok(other)), FetchResult::Failed { .. }));
        now += 1_010;
        assert!(w[2].claim_fetch(&store, now));
        assert_eq!(w[2].fetch_etag(), None, "w[2] holds no keys");
        let unasked = Fetched::NotModified { etag: None };
        assert!(matches!(w[2].finish_fetch(&store, now + 1, Ok(unasked)), FetchResult::Failed { .. }));
        assert!(w[2].keys().is_none());

        // A new document with a new ETag: a new version; workers ask about the new tag once
        // they hold the new document.
        now += POLICY.refresh_ms + 10;
        assert!(w[0].claim_fetch(&store, now));
        assert_eq!(w[0].fetch_etag(), Some(r#""v1""#));
        let v2 = Fetched::Document { body: SET_EMPTY, etag: Some(br#"W/"v2""#) };
        assert!(matches!(w[0].finish_fetch(&store, now + 1, Ok(v2)), FetchResult::Stored { changed: true, .. }));
        assert!(matches!(w[1].sync(&store), SyncResult::Loaded { keys: 0 }));
        now += POLICY.refresh_ms + 10;
        assert!(w[1].claim_fetch(&store, now));
        assert_eq!(w[1].fetch_etag(), Some(r#"W/"v2""#));

        // The same bytes under another ETag: no new version, the new ETag is kept.
        let v3 = Fetched::Document { body: SET_EMPTY, etag: Some(br#""v3""#) };
        assert!(matches!(w[1].finish_fetch(&store, now + 1, Ok(v3)), FetchResult::Stored { changed: false, .. }));
        now += POLICY.refresh_ms + 10;
        assert!(w[1].claim_fetch(&store, now));
        assert_eq!((w[1].version(), w[1].fetch_etag(), w[1].parses()), (2, Some(r#""v3""#), 2));
    }

    #[test]
    fn an_etag_that_cannot_be_sent_back_is_not_kept() {
        let long = [b'a'; MAX_ETAG_BYTES + 1];
        for etag in [&b"\"a b\""[..], b"\"\xc3\xa9\"", b"\"a\"\r\nx: y", b"", &long] {
            let store = MemorySharedData::default();
            let mut w = workers(2, &store);
            assert!(w[0].claim_fetch(&store, 0));
            w[0].finish_fetch(&store, 1, Ok(Fetched::Document { body: SET_A, etag: Some(etag) }));
            w[1].sync(&store);
            assert!(w[1].claim_fetch(&store, 2 + POLICY.refresh_ms));
            assert_eq!((w[1].version(), w[1].fetch_etag()), (1, None), "{:?}", String::from_utf8_lossy(etag));
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

    // Sequences found by a review of the conditional fetches (each failed before its fix).

    const SET_AB: &[u8] = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"-sMjijSE0upXqunAueledd7rUPOlyKB5in-8PuZL6Zs"},{"kty":"OKP","crv":"Ed25519","kid":"b","x":"-sMjijSE0upXqunAueledd7rUPOlyKB5in-8PuZL6Zs"}]}"#;
    const SET_B: &[u8] =
        br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"b","x":"-sMjijSE0upXqunAueledd7rUPOlyKB5in-8PuZL6Zs"}]}"#;

    /// Shared data whose next `fail_keys_writes` writes of a key-set document are refused by the host.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemorySharedData,
        fail_keys_writes: std::cell::Cell<u32>,
    }

    impl SharedData for FlakyStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), crate::host::GetError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            if key.ends_with("/keys") && self.fail_keys_writes.get() > 0 {
                self.fail_keys_writes.set(self.fail_keys_writes.get() - 1);
                return Err(SetError::Host);
            }
            self.inner.set(key, value, cas)
        }
    }

    fn worker_on(store: &dyn SharedData, policy: FetchPolicy) -> KeyCache {
        let mut c = KeyCache::remote("c|a|/p", policy);
        c.init(store);
        c
    }

    fn has(cache: &KeyCache, kid: &str) -> bool {
        cache.keys().is_some_and(|k| k.has_kid(kid))
    }

    /// A server that honours If-None-Match: 304 only when the tag sent is the current one.
    fn answer<'a>(sent: Option<&str>, body: &'a [u8], etag: &'a [u8]) -> Fetched<'a> {
        if sent.map(str::as_bytes) == Some(etag) {
            Fetched::NotModified { etag: None }
        } else {
            Fetched::Document { body, etag: Some(etag) }
        }
    }

    #[test]
    fn a_lost_document_write_does_not_turn_every_later_304_into_a_failure() {
        // One worker (a sidecar with --concurrency 1). The host refuses one write of the
        // key-set document; the meta record already names version 1.
        let store = FlakyStore::default();
        let policy = FetchPolicy { max_stale_ms: Some(600_000), ..POLICY };
        let mut w = worker_on(&store, policy);
        store.fail_keys_writes.set(1);
        assert!(w.claim_fetch(&store, 0));
        let first = w.finish_fetch(&store, 1, Ok(answer(w.fetch_etag(), SET_A, br#""a""#)));
        assert!(matches!(first, FetchResult::Stored { changed: true, .. }), "{first:?}");
        // The key service never changes again and answers every conditional GET with 304.
        let mut now = 1 + POLICY.refresh_ms;
        for round in 0..6 {
            assert!(w.claim_fetch(&store, now), "round {round}");
            let sent = w.fetch_etag().map(str::to_owned);
            let result = w.finish_fetch(&store, now + 1, Ok(answer(sent.as_deref(), SET_A, br#""a""#)));
            assert!(
                matches!(result, FetchResult::Stored { .. }),
                "round {round}: a healthy key service, yet the refresh {result:?} (If-None-Match {sent:?})"
            );
            now = w.seen.next_due_ms.max(now + MIN_REFETCH_MS);
        }
        assert!(!w.is_stale(now), "the key service answered every refresh, yet the keys went stale");
    }

    /// Two workers on `SET_AB` (v1), then key `a` deleted: w1 fetches `SET_B` as v2 and the host
    /// refuses to store the document. Returns the time of that fetch.
    fn deleted_with_a_lost_write(store: &FlakyStore, w0: &mut KeyCache, w1: &mut KeyCache) -> u64 {
        assert!(w0.claim_fetch(store, 0));
        w0.finish_fetch(store, 1, Ok(Fetched::body(SET_AB)));
        w1.sync(store);
        store.fail_keys_writes.set(1);
        let now = 1 + POLICY.refresh_ms;
        assert!(w1.claim_fetch(store, now));
        let r = w1.finish_fetch(store, now + 1, Ok(Fetched::body(SET_B)));
        assert!(matches!(r, FetchResult::Stored { changed: true, .. }));
        assert!(!has(w1, "a"));
        now
    }

    #[test]
    fn a_304_to_an_unconditional_fetch_never_brings_a_deleted_key_back() {
        let store = FlakyStore::default();
        let (mut w0, mut w1) = (worker_on(&store, POLICY), worker_on(&store, POLICY));
        let now = deleted_with_a_lost_write(&store, &mut w0, &mut w1);
        w0.sync(&store); // meta says v2; the stored document is still v1 (with `a`).
                         // Next refresh: w0 sends no If-None-Match (it does not hold the version in force), but
                         // the server, or a cache in between, answers 304 anyway.
        let now = w0.seen.next_due_ms.max(now + 10);
        assert!(w0.claim_fetch(&store, now));
        assert_eq!(w0.fetch_etag(), None, "an unconditional GET");
        let r = w0.finish_fetch(&store, now + 1, Ok(Fetched::NotModified { etag: None }));
        assert!(matches!(r, FetchResult::Failed { .. }), "an unasked 304 was taken: {r:?}");
        w1.sync(&store);
        assert!(!has(&w1, "a") && w1.version() == 2, "the unasked 304 republished key `a`");
        // w0 never saw the lost v2 document; its retry, a second later, brings it.
        let now = now + 1 + MIN_REFETCH_MS;
        assert!(w0.claim_fetch(&store, now));
        assert!(matches!(w0.finish_fetch(&store, now + 1, Ok(Fetched::body(SET_B))), FetchResult::Stored { .. }));
        w1.sync(&store);
        assert!(!has(&w0, "a") && !has(&w1, "a"), "key `a`, deleted, still verifies");
    }

    #[test]
    fn a_replaced_meta_record_does_not_hide_a_revocation() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        let mut now = 0;
        for body in [SET_A, SET_EMPTY, SET_AB] {
            assert!(w[0].claim_fetch(&store, now));
            w[0].finish_fetch(&store, now + 1, Ok(Fetched::body(body)));
            now += 1 + POLICY.refresh_ms;
        }
        w[1].sync(&store);
        assert_eq!((w[0].version(), w[1].version()), (3, 3));
        // A build with the old "tg1" record format writes the meta record (the code says such
        // a record is "treated as empty and replaced by the next compare-and-swap write").
        store.set("tokengate/c|a|/p/meta", b"tg1 3 3 3 0 0 0 0 0 0 0", None).unwrap();
        // Key `a` is deleted; the next fetch brings the set without it.
        assert!(w[0].claim_fetch(&store, now));
        let r = w[0].finish_fetch(&store, now + 1, Ok(Fetched::body(SET_B)));
        assert!(matches!(r, FetchResult::Stored { changed: true, .. }), "{r:?}");
        w[1].sync(&store);
        assert!(
            !has(&w[0], "a") && !has(&w[1], "a"),
            "deleted key `a` still in force: fetcher {} (v{}), other worker {} (v{})",
            has(&w[0], "a"),
            w[0].version(),
            has(&w[1], "a"),
            w[1].version()
        );
    }

    #[test]
    fn a_late_answer_after_the_lease_ran_out_does_not_roll_back_a_revocation() {
        let store = MemorySharedData::default();
        let mut w = workers(2, &store);
        assert!(w[0].claim_fetch(&store, 0));
        w[0].finish_fetch(&store, 1, Ok(Fetched::body(SET_AB)));
        w[1].sync(&store);
        let now = 1 + POLICY.refresh_ms;
        assert!(w[0].claim_fetch(&store, now)); // the server answers with SET_AB, slowly
        let later = now + POLICY.timeout_ms + 1_000;
        assert!(w[1].claim_fetch(&store, later), "the lease expired");
        // Key `a` is deleted meanwhile; w1's fetch brings the new set.
        w[1].finish_fetch(&store, later + 1, Ok(Fetched::body(SET_B)));
        // w0's old answer is handled only now.
        let r = w[0].finish_fetch(&store, later + 2, Ok(Fetched::body(SET_AB)));
        w[1].sync(&store);
        assert!(!has(&w[1], "a"), "an answer older than the last fetched document replaced it: {r:?}");
    }

    #[test]
    fn a_worker_never_steps_back_to_an_older_stored_document() {
        let store = FlakyStore::default();
        let (mut w0, mut w1) = (worker_on(&store, POLICY), worker_on(&store, POLICY));
        let now = deleted_with_a_lost_write(&store, &mut w0, &mut w1);
        // w0 fetches the same set as v3, and its write is lost too: meta says v3, the stored
        // document is still v1 (with `a`).
        store.fail_keys_writes.set(1);
        let now = now + 1 + POLICY.refresh_ms;
        assert!(w0.claim_fetch(&store, now));
        w0.finish_fetch(&store, now + 1, Ok(Fetched::body(SET_B)));
        assert_eq!(w0.version(), 3);
        assert!(matches!(w1.sync(&store), SyncResult::Unchanged));
        assert!(!has(&w1, "a") && w1.version() == 2, "w1 went back to the v1 document");
    }
}
