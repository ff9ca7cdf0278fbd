//! A bounded cache of tokens that already verified, so a repeated token costs one hash-table
//! lookup instead of a parse and a signature check.
//!
//! Keyed by the whole header value, compared byte for byte (so no two tokens can ever share an
//! entry). Only tokens that verified are inserted, so a client cannot fill the table or choose
//! colliding keys without valid tokens; that is also why the table can use a fast, unkeyed hash
//! (a lookup of any other value costs one hash and a short probe). An entry holds only for the
//! key-set version it was verified under (any change to the key set empties the cache, so a
//! deleted token stops working at the same refresh as without the cache) and only while the
//! token's time claims would still pass: before `exp` plus the clock skew and, should the clock
//! step back, not before `nbf` minus it. Refusals are never cached: they are always decided
//! afresh.
//!
//! When the cache is full (by count, or by [`MAX_BYTES`]), each new entry replaces one picked at
//! random, in constant time. So a worker that sees a few more tokens than the cache holds still
//! gets most of them from it, instead of the cache emptying itself over and over.

use crate::verify::VerifiedClaims;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Tokens remembered per filter instance and worker unless `token_cache_size` says otherwise.
pub const DEFAULT_ENTRIES: usize = 1024;
/// The largest `token_cache_size` accepted.
pub const MAX_ENTRIES: usize = 65_536;
/// The most memory one cache may account for (a Wasm VM never gives memory back): each entry
/// counts its token, its claim strings and [`ENTRY_OVERHEAD`].
pub const MAX_BYTES: usize = 32 << 20;
/// What an entry costs beyond its strings on wasm32, about: its hash-table slots (the table keeps
/// up to four per entry), its place in the eviction list, the claims and the allocation headers.
pub const ENTRY_OVERHEAD: usize = 300;

#[derive(Debug)]
struct Entry {
    claims: Rc<VerifiedClaims>,
    valid_until: f64,
    not_before: f64,
    bytes: usize,
    /// Where the token is in `VerifiedCache::order`.
    slot: usize,
}

/// Verified tokens of one key-set version.
#[derive(Debug)]
pub struct VerifiedCache {
    capacity: usize,
    skew: f64,
    version: u64,
    bytes: usize,
    entries: HashMap<Rc<[u8]>, Entry, BuildHasherDefault<TokenHasher>>,
    /// Every cached token once, in no particular order: the candidates for eviction.
    order: Vec<Rc<[u8]>>,
    random: u64,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (0: nothing is ever cached), for a policy that allows
    /// `clock_skew_seconds` on `exp` and `nbf`.
    pub fn new(capacity: usize, clock_skew_seconds: u64) -> VerifiedCache {
        VerifiedCache {
            capacity: capacity.min(MAX_ENTRIES),
            skew: clock_skew_seconds as f64,
            version: 0,
            bytes: 0,
            entries: HashMap::default(),
            order: Vec::new(),
            random: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The claims of a token verified under key-set `version`, if its time claims still hold at
    /// `now_s` (the same comparisons as the verifier's).
    pub fn get(&mut self, token: &[u8], version: u64, now_s: f64) -> Option<Rc<VerifiedClaims>> {
        self.follow(version);
        let entry = self.entries.get(token)?;
        if now_s >= entry.valid_until {
            self.remove(token);
            return None;
        }
        if now_s + self.skew < entry.not_before {
            return None;
        }
        Some(Rc::clone(&entry.claims))
    }

    /// Remembers a token that verified under key-set `version`.
    pub fn insert(&mut self, token: &[u8], version: u64, claims: &Rc<VerifiedClaims>) {
        self.follow(version);
        let bytes = token.len()
            + [&claims.token_id, &claims.namespace_id, &claims.function_id]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + ENTRY_OVERHEAD;
        if self.capacity == 0 || bytes > MAX_BYTES {
            return;
        }
        self.remove(token);
        while !self.order.is_empty() && (self.order.len() >= self.capacity || self.bytes + bytes > MAX_BYTES) {
            self.evict_one();
        }
        let key: Rc<[u8]> = Rc::from(token);
        let entry = Entry {
            claims: Rc::clone(claims),
            valid_until: claims.expires_at.map_or(f64::INFINITY, |exp| exp + self.skew),
            not_before: claims.not_before.unwrap_or(f64::NEG_INFINITY),
            bytes,
            slot: self.order.len(),
        };
        self.bytes += bytes;
        self.order.push(Rc::clone(&key));
        self.entries.insert(key, entry);
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the cached entries account for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets `token`, keeping `order` dense: the last token takes its place there.
    fn remove(&mut self, token: &[u8]) {
        let Some(old) = self.entries.remove(token) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(old.bytes);
        if old.slot < self.order.len() {
            self.order.swap_remove(old.slot);
            if let Some(moved) = self.order.get(old.slot) {
                if let Some(entry) = self.entries.get_mut(moved) {
                    entry.slot = old.slot;
                }
            }
        }
    }

    /// Forgets one cached token picked at random (xorshift64: cheap, and a client cannot steer
    /// it without tokens that verify).
    fn evict_one(&mut self) {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let len = self.order.len() as u64;
        if len == 0 {
            return;
        }
        let victim = (self.random % len) as usize;
        if let Some(key) = self.order.get(victim).cloned() {
            self.remove(&key);
        }
    }

    fn follow(&mut self, version: u64) {
        if version != self.version {
            self.entries.clear();
            self.order.clear();
            self.bytes = 0;
            self.version = version;
        }
    }
}

/// FxHash's word-at-a-time multiply-rotate, unkeyed: several times cheaper than std's SipHash
/// on a token of a few hundred bytes in Wasm. Safe here because only verified tokens are keys.
#[derive(Debug, Default)]
pub struct TokenHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl TokenHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            for (to, from) in buf.iter_mut().zip(rest) {
                *to = *from;
            }
            self.add(u64::from_le_bytes(buf));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<f64>) -> Rc<VerifiedClaims> {
        Rc::new(VerifiedClaims { token_id: Some("t".into()), expires_at: exp, ..VerifiedClaims::default() })
    }

    #[test]
    fn hits_until_exp_plus_skew() {
        let mut cache = VerifiedCache::new(DEFAULT_ENTRIES, 60);
        let d: &[u8] = b"token";
        assert_eq!(cache.get(d, 1, 0.0), None);
        cache.insert(d, 1, &claims(Some(100.0)));
        assert_eq!(cache.get(d, 1, 159.9).and_then(|c| c.token_id.clone()), Some("t".into()));
        assert_eq!(cache.get(d, 1, 160.0), None);
        assert!(cache.is_empty(), "an expired entry is dropped");
        assert_eq!(cache.bytes(), 0);
        cache.insert(d, 1, &claims(None));
        assert!(cache.get(d, 1, 1e12).is_some(), "no exp: valid while the key set is");
        assert_eq!(cache.get(b"other", 1, 0.0), None);
    }

    #[test]
    fn a_clock_that_steps_back_before_nbf_misses() {
        let mut cache = VerifiedCache::new(DEFAULT_ENTRIES, 5);
        let c =
            Rc::new(VerifiedClaims { not_before: Some(100.0), expires_at: Some(200.0), ..VerifiedClaims::default() });
        cache.insert(b"token", 1, &c);
        assert!(cache.get(b"token", 1, 100.0).is_some());
        assert!(cache.get(b"token", 1, 95.0).is_some(), "nbf minus the skew still holds");
        assert_eq!(cache.get(b"token", 1, 94.9), None, "before nbf minus the skew: decided afresh");
        assert!(cache.get(b"token", 1, 150.0).is_some(), "the entry stays for when the clock is right again");
    }

    #[test]
    fn a_key_set_change_empties_the_cache() {
        let mut cache = VerifiedCache::new(DEFAULT_ENTRIES, 0);
        let d: &[u8] = b"token";
        cache.insert(d, 1, &claims(None));
        assert_eq!(cache.get(d, 2, 0.0), None, "verified under another key set");
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.get(d, 1, 0.0), None, "never back to an older version's entries");
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_newest() {
        for capacity in [1, 2, 3, 7, 8, 9, 100, DEFAULT_ENTRIES] {
            let mut cache = VerifiedCache::new(capacity, 0);
            for n in 0..(3 * capacity + 10) {
                cache.insert(&n.to_le_bytes(), 1, &claims(None));
                assert!(cache.len() <= capacity);
                assert!(cache.get(&n.to_le_bytes(), 1, 0.0).is_some(), "the newest entry is kept");
            }
            assert_eq!(cache.len(), capacity, "a full cache stays full");
            assert_eq!(cache.order.len(), capacity);
            for (slot, key) in cache.order.iter().enumerate() {
                assert_eq!(cache.entries.get(key).map(|e| e.slot), Some(slot), "the eviction list matches the table");
            }
        }
        assert_eq!(VerifiedCache::new(usize::MAX, 0).capacity, MAX_ENTRIES);
    }

    #[test]
    fn a_few_more_tokens_than_fit_still_mostly_hit() {
        // A worker that cycles through just over the capacity (the worst order for a cache that
        // empties itself when full, which then hits nothing) still gets most of them cached.
        for (capacity, tokens) in [(1024, 1025), (1024, 1200), (64, 70)] {
            let mut cache = VerifiedCache::new(capacity, 0);
            let (mut hits, mut lookups) = (0, 0);
            for round in 0..20 {
                for n in 0..tokens {
                    let key = (n as u64).to_le_bytes();
                    let hit = cache.get(&key, 1, 0.0).is_some();
                    if !hit {
                        cache.insert(&key, 1, &claims(None));
                    }
                    if round >= 2 {
                        lookups += 1;
                        hits += usize::from(hit);
                    }
                }
            }
            let rate = hits as f64 / lookups as f64;
            assert!(rate > 0.5, "capacity {capacity}, {tokens} tokens in turn: hit rate {rate:.2}");
        }
    }

    #[test]
    fn the_bytes_kept_are_counted_and_bounded() {
        let mut cache = VerifiedCache::new(MAX_ENTRIES, 0);
        let big = vec![b'a'; 8192];
        let id = "j".repeat(6000);
        let c = Rc::new(VerifiedClaims { token_id: Some(id.clone()), ..VerifiedClaims::default() });
        let per_entry = big.len() + id.len() + ENTRY_OVERHEAD;
        for n in 0..(MAX_BYTES / per_entry + 100) {
            let mut token = big.clone();
            token.extend_from_slice(&n.to_le_bytes());
            cache.insert(&token, 1, &c);
            assert!(cache.bytes() <= MAX_BYTES);
            assert!(cache.get(&token, 1, 0.0).is_some(), "the newest entry is kept");
        }
        let counted: usize = cache.entries.values().map(|e| e.bytes).sum();
        assert_eq!(cache.bytes(), counted);
        assert_eq!(cache.order.len(), cache.len());
        assert!(cache.len() < MAX_BYTES / per_entry + 1);
        // Replacing an entry does not count it twice.
        let before = cache.bytes();
        let last = cache.entries.keys().next().map(|k| k.to_vec()).unwrap_or_default();
        cache.insert(&last, 1, &c);
        assert_eq!(cache.bytes(), before);
    }

    #[test]
    fn the_eviction_list_and_the_byte_count_follow_every_change() {
        // Inserts (new and repeated), expiries, lookups and key-set changes in a pseudo-random
        // order; after each step the list, the slots and the byte count must match the table.
        let mut cache = VerifiedCache::new(50, 1);
        let mut state = 7u64;
        for step in 0..20_000u64 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let n = (state >> 33) % 80;
            let key = format!("token-{n}-{}", "x".repeat((n % 9) as usize));
            let version = 1 + step / 5_000;
            let now = (step % 100) as f64;
            match (state >> 20) % 3 {
                0 | 1 => {
                    let c = Rc::new(VerifiedClaims {
                        token_id: Some(n.to_string()),
                        expires_at: Some(now + (n % 7) as f64),
                        ..VerifiedClaims::default()
                    });
                    cache.insert(key.as_bytes(), version, &c);
                }
                _ => {
                    cache.get(key.as_bytes(), version, now);
                }
            }
            assert!(cache.len() <= 50);
            assert_eq!(cache.order.len(), cache.len(), "step {step}");
            for (slot, k) in cache.order.iter().enumerate() {
                assert_eq!(cache.entries.get(k).map(|e| e.slot), Some(slot), "step {step}");
            }
            assert_eq!(cache.bytes(), cache.entries.values().map(|e| e.bytes).sum::<usize>(), "step {step}");
        }
    }

    #[test]
    fn size_zero_caches_nothing() {
        let mut cache = VerifiedCache::new(0, 0);
        cache.insert(b"token", 1, &claims(None));
        assert!(cache.is_empty());
        assert_eq!(cache.get(b"token", 1, 0.0), None);
    }

    #[test]
    fn tokens_that_share_a_prefix_or_a_hash_word_stay_apart() {
        // Lengths around the 8-byte words of the hash, and values differing only in the
        // zero-padded tail of the last word: every one is its own entry.
        let mut cache = VerifiedCache::new(64, 0);
        let values: Vec<Vec<u8>> =
            (0..20).map(|n| vec![b'a'; n]).chain([b"abcdefg\0".to_vec(), b"abcdefg".to_vec()]).collect();
        for (i, v) in values.iter().enumerate() {
            let c = Rc::new(VerifiedClaims { token_id: Some(i.to_string()), ..VerifiedClaims::default() });
            cache.insert(v, 1, &c);
        }
        for (i, v) in values.iter().enumerate() {
            assert_eq!(cache.get(v, 1, 0.0).and_then(|c| c.token_id.clone()), Some(i.to_string()), "value {v:?}");
        }
    }
}
