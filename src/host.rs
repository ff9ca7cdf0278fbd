//! What the core needs from the proxy, as a trait, with an in-memory fake for native tests.
//!
//! Only the key cache talks to the host through this: Envoy's shared data, which every worker
//! thread's VM can read and compare-and-swap. Clock values are passed in as plain numbers;
//! HTTP dispatch, replies and metrics stay in the thin `filter` glue.

use std::cell::RefCell;
use std::collections::HashMap;

/// A failed shared-data write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Someone else wrote the key since it was read.
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The host refused for another reason.
    #[error("host refused the write")]
    Host,
}

/// A failed shared-data read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host refused the read")]
pub struct GetError;

/// Envoy's shared data: process-wide key/value pairs with compare-and-swap.
pub trait SharedData {
    /// The value and its CAS token, or `(None, None)` when the key was never written.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), GetError>;
    /// Writes the value if `cas` is `None` or still the key's CAS token.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// Shared data in memory, with Envoy's CAS semantics. For native tests.
#[derive(Debug, Default)]
pub struct MemorySharedData {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedData for MemorySharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), GetError> {
        Ok(match self.entries.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas, current) {
            if expected != current {
                return Err(SetError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// Encodes header pairs in the proxy-wasm map format: the count, the (name size, value size)
/// of each pair, then each name and value followed by a NUL byte.
pub fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Header pairs as raw bytes: (name, value), borrowed from the encoded map.
pub type HeaderPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Decodes the proxy-wasm map format without copying; `None` if the bytes are inconsistent.
pub fn decode_map(bytes: &[u8]) -> Option<HeaderPairs<'_>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    };
    let count = word(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    if at > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for n in 0..count {
        let name_size = word(4 + n * 8)?;
        let value_size = word(8 + n * 8)?;
        let name = bytes.get(at..at.checked_add(name_size)?)?;
        at = at.checked_add(name_size)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(value_size)?)?;
        at = at.checked_add(value_size)?.checked_add(1)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_and_bad_encodings_are_refused() {
        let pairs = [(":path", "/"), ("x-auth-token", "a.b.c"), ("empty", "")];
        let encoded = encode_map(&pairs);
        let decoded = decode_map(&encoded).unwrap();
        let want: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        assert_eq!(decoded, want);
        assert_eq!(decode_map(&[]), Some(vec![]));
        for cut in 1..encoded.len() - 1 {
            assert_eq!(decode_map(&encoded[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_map(&[0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn memory_shared_data_has_envoy_cas_semantics() {
        let store = MemorySharedData::default();
        assert_eq!(store.get("k"), Ok((None, None)));
        store.set("k", b"1", None).unwrap();
        let (_, cas) = store.get("k").unwrap();
        store.set("k", b"2", cas).unwrap();
        assert_eq!(store.set("k", b"3", cas), Err(SetError::CasMismatch));
        assert_eq!(store.get("k").unwrap().0.as_deref(), Some(&b"2"[..]));
    }
}
