//! A bounded cache of tokens that already verified, so a repeated token costs one hash-table
//! lookup instead of a parse and a signature check.
//!
//! Keyed by the whole header value, compared byte for byte (so no two tokens can ever share an
//! entry). Only tokens that verified are inserted, so a client cannot fill the table or choose
//! colliding keys without valid tokens. An entry holds only for the key-set version it was
//! verified under (any change to the key set empties the cache, so a deleted token stops
//! working at the same refresh as without the cache) and only until the token's `exp` plus the
//! clock skew. Refusals are never cached: they are always decided afresh.

use crate::verify::VerifiedClaims;
use std::collections::HashMap;
use std::rc::Rc;

/// Most tokens remembered per filter instance and worker; when full, the cache starts over.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    claims: Rc<VerifiedClaims>,
    valid_until: f64,
}

/// Verified tokens of one key-set version.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    version: u64,
    entries: HashMap<Box<[u8]>, Entry>,
}

impl VerifiedCache {
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
        if self.entries.len() >= MAX_ENTRIES {
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
        let mut cache = VerifiedCache::default();
        for n in 0..(MAX_ENTRIES + 10) {
            cache.insert(&n.to_le_bytes(), 1, &claims(None), 0);
            assert!(cache.len() <= MAX_ENTRIES);
        }
    }
}
