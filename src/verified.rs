//! A bounded cache of tokens that already verified, so a repeated token costs one hash-table
//! lookup instead of a parse and a signature check.
//!
//! Keyed by the whole header value, compared byte for byte (so no two tokens can ever share an
//! entry). Only tokens that verified are inserted, so a client cannot fill the table or choose
//! colliding keys without valid tokens; that is also why the table can use a fast,
//! unkeyed hash (a lookup of any other value costs one hash and at most a compare). An entry
//! holds only for the key-set version it was verified under (any change to the key set empties
//! the cache, so a deleted token stops working at the same refresh as without the cache) and
//! only until the token's `exp` plus the clock skew. Refusals are never cached: they are always
//! decided afresh.

use crate::verify::VerifiedClaims;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Tokens remembered per filter instance and worker unless `token_cache_size` says otherwise.
pub const DEFAULT_ENTRIES: usize = 1024;
/// The largest `token_cache_size` accepted.
pub const MAX_ENTRIES: usize = 65_536;

#[derive(Debug)]
struct Entry {
    claims: Rc<VerifiedClaims>,
    valid_until: f64,
}

/// Verified tokens of one key-set version.
#[derive(Debug)]
pub struct VerifiedCache {
    capacity: usize,
    version: u64,
    entries: HashMap<Box<[u8]>, Entry, BuildHasherDefault<TokenHasher>>,
}

impl Default for VerifiedCache {
    fn default() -> VerifiedCache {
        VerifiedCache::new(DEFAULT_ENTRIES)
    }
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (0: nothing is ever cached); when full, it starts over.
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache { capacity: capacity.min(MAX_ENTRIES), version: 0, entries: HashMap::default() }
    }

    /// The claims of a token verified under key-set `version`, if it is still within its `exp`.
    pub fn get(&mut self, token: &[u8], version: u64, now_s: f64) -> Option<Rc<VerifiedClaims>> {
        self.follow(version);
        let entry = self.entries.get(token)?;
        if now_s < entry.valid_until {
            Some(Rc::clone(&entry.claims))
        } else {
            self.entries.remove(token);
            None
        }
    }

    /// Remembers a token that verified under key-set `version`.
    pub fn insert(&mut self, token: &[u8], version: u64, claims: &Rc<VerifiedClaims>, clock_skew_seconds: u64) {
        self.follow(version);
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        let valid_until = claims.expires_at.map_or(f64::INFINITY, |exp| exp + clock_skew_seconds as f64);
        self.entries.insert(token.into(), Entry { claims: Rc::clone(claims), valid_until });
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn follow(&mut self, version: u64) {
        if version != self.version {
            self.entries.clear();
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
        let mut cache = VerifiedCache::default();
        let d: &[u8] = b"token";
        assert_eq!(cache.get(d, 1, 0.0), None);
        cache.insert(d, 1, &claims(Some(100.0)), 60);
        assert_eq!(cache.get(d, 1, 159.9).and_then(|c| c.token_id.clone()), Some("t".into()));
        assert_eq!(cache.get(d, 1, 160.0), None);
        assert!(cache.is_empty(), "an expired entry is dropped");
        cache.insert(d, 1, &claims(None), 60);
        assert!(cache.get(d, 1, 1e12).is_some(), "no exp: valid while the key set is");
        assert_eq!(cache.get(b"other", 1, 0.0), None);
    }

    #[test]
    fn a_key_set_change_empties_the_cache() {
        let mut cache = VerifiedCache::default();
        let d: &[u8] = b"token";
        cache.insert(d, 1, &claims(None), 0);
        assert_eq!(cache.get(d, 2, 0.0), None, "verified under another key set");
        assert!(cache.is_empty());
        assert_eq!(cache.get(d, 1, 0.0), None, "never back to an older version's entries");
    }

    #[test]
    fn the_cache_is_bounded() {
        for capacity in [1, 3, DEFAULT_ENTRIES] {
            let mut cache = VerifiedCache::new(capacity);
            for n in 0..(capacity + 10) {
                cache.insert(&n.to_le_bytes(), 1, &claims(None), 0);
                assert!(cache.len() <= capacity);
                assert!(cache.get(&n.to_le_bytes(), 1, 0.0).is_some(), "the newest entry is kept");
            }
        }
        assert_eq!(VerifiedCache::new(usize::MAX).capacity, MAX_ENTRIES);
    }

    #[test]
    fn size_zero_caches_nothing() {
        let mut cache = VerifiedCache::new(0);
        cache.insert(b"token", 1, &claims(None), 0);
        assert!(cache.is_empty());
        assert_eq!(cache.get(b"token", 1, 0.0), None);
    }

    #[test]
    fn tokens_that_share_a_prefix_or_a_hash_word_stay_apart() {
        // Lengths around the 8-byte words of the hash, and values differing only in the
        // zero-padded tail of the last word: every one is its own entry.
        let mut cache = VerifiedCache::new(64);
        let values: Vec<Vec<u8>> =
            (0..20).map(|n| vec![b'a'; n]).chain([b"abcdefg\0".to_vec(), b"abcdefg".to_vec()]).collect();
        for (i, v) in values.iter().enumerate() {
            let c = Rc::new(VerifiedClaims { token_id: Some(i.to_string()), ..VerifiedClaims::default() });
            cache.insert(v, 1, &c, 0);
        }
        for (i, v) in values.iter().enumerate() {
            assert_eq!(cache.get(v, 1, 0.0).and_then(|c| c.token_id.clone()), Some(i.to_string()), "value {v:?}");
        }
    }
}
