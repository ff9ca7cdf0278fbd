//! RSA signature verification in Rust (RFC 8017): RSASSA-PKCS1-v1_5 for RS256/384/512 when the
//! host cannot check them, and RSASSA-PSS for PS256/384/512 (which Envoy's `verify_signature`
//! does not offer), with MGF1 over the same hash and a salt as long as the hash (RFC 7518 3.5).

use super::bignum::{self, Modulus};
use super::{Hash, KeyError, RSA_MAX_BITS, RSA_MIN_BITS};

/// The DER `DigestInfo` before a digest (RFC 8017 9.2, note 1), parameters NULL.
fn digest_info_prefix(hash: Hash) -> [u8; 19] {
    let (id, len) = match hash {
        Hash::Sha256 => (1, 0x20),
        Hash::Sha384 => (2, 0x30),
        Hash::Sha512 => (3, 0x40),
    };
    [
        0x30,
        0x11 + len,
        0x30,
        0x0d,
        0x06,
        0x09,
        0x60,
        0x86,
        0x48,
        0x01,
        0x65,
        0x03,
        0x04,
        0x02,
        id,
        0x05,
        0x00,
        0x04,
        len,
    ]
}

/// An RSA public key for verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKey {
    modulus: Modulus,
    /// The public exponent, big-endian without leading zeros.
    exponent: Vec<u8>,
    /// The modulus length in bytes (`k` in RFC 8017).
    size: usize,
}

/// Largest public exponent accepted, 2^33 - 1: real keys use 65537, and a huge exponent only
/// costs CPU on every verification.
const MAX_EXPONENT_BYTES: usize = 5;

impl RsaKey {
    /// A key from its big-endian modulus and exponent (leading zeros allowed). The modulus
    /// must have 2048 to 4096 bits and be odd; the exponent must be odd, at least 3 and below
    /// 2^33.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Result<RsaKey, KeyError> {
        let bits = super::bit_length(modulus);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        let n = Modulus::new(modulus).ok_or(KeyError::RsaMalformed)?;
        let exponent: Vec<u8> = exponent.iter().copied().skip_while(|b| *b == 0).collect();
        let too_big = exponent.len() > MAX_EXPONENT_BYTES
            || (exponent.len() == MAX_EXPONENT_BYTES && exponent.first().is_some_and(|b| *b > 1));
        let odd = exponent.last().is_some_and(|b| b & 1 == 1);
        if too_big || !odd || exponent == [1] {
            return Err(KeyError::RsaMalformed);
        }
        Ok(RsaKey { size: bits.div_ceil(8), modulus: n, exponent })
    }

    /// The modulus length in bytes; a signature must be exactly this long.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `signature^e mod n` as `len` big-endian bytes (RFC 8017 RSAVP1 and I2OSP); `None`
    /// when the signature is not exactly `k` bytes, is not below `n`, or the result does not
    /// fit in `len` bytes.
    fn open(&self, signature: &[u8], len: usize) -> Option<Vec<u8>> {
        if signature.len() != self.size {
            return None;
        }
        let s = self.modulus.element(signature)?;
        let m = self.modulus.from_montgomery(&self.modulus.pow(&self.modulus.to_montgomery(&s), &self.exponent));
        bignum::to_be_bytes(&m, len)
    }

    /// RSASSA-PKCS1-v1_5 (RFC 8017 8.2.2): the opened signature must equal, byte for byte,
    /// the encoding of `message`'s digest that a signer would have made.
    pub fn verify_pkcs1(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.open(signature, self.size) else {
            return false;
        };
        let prefix = digest_info_prefix(hash);
        let t_len = prefix.len() + hash.output_len();
        // k >= 256 here, so there is always room for the 8 bytes of 0xff padding required.
        let Some(padding) = self.size.checked_sub(t_len + 3) else {
            return false;
        };
        let mut expected = Vec::with_capacity(self.size);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + padding, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(&prefix);
        expected.extend_from_slice(&hash.digest(&[message]));
        em == expected
    }

    /// RSASSA-PSS (RFC 8017 8.1.2 and EMSA-PSS-VERIFY, 9.1.2) with MGF1 over `hash` and a salt
    /// of exactly `hash.output_len()` bytes.
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let h_len = hash.output_len();
        let s_len = h_len;
        let em_bits = self.modulus.bits() - 1;
        let em_len = em_bits.div_ceil(8);
        let Some(em) = self.open(signature, em_len) else {
            return false;
        };
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let (masked_db, rest) = em.split_at(db_len);
        let Some(h) = rest.get(..h_len) else {
            return false;
        };
        // The bits above emBits must be zero.
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8 >> unused_bits;
        if masked_db.first().is_none_or(|b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, db_len);
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        // DB = PS (zeros) || 0x01 || salt.
        let ps_len = db_len - s_len - 1;
        let (ps, rest) = db.split_at(ps_len);
        if ps.iter().any(|b| *b != 0) || rest.first() != Some(&0x01) {
            return false;
        }
        let salt = rest.get(1..).unwrap_or_default();
        let m_hash = hash.digest(&[message]);
        hash.digest(&[&[0u8; 8], &m_hash, salt]) == h
    }
}

/// MGF1 (RFC 8017 B.2.1): `len` bytes from `seed`.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut counter = 0u32;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn hex(text: &str) -> Vec<u8> {
        let padded = if text.len() % 2 == 1 { format!("0{text}") } else { text.to_owned() };
        (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(&padded[i..i + 2], 16).unwrap()).collect()
    }

    fn verify(key: &RsaKey, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        let hash = match &alg[2..] {
            "256" => Hash::Sha256,
            "384" => Hash::Sha384,
            _ => Hash::Sha512,
        };
        if alg.starts_with("PS") {
            key.verify_pss(hash, message, signature)
        } else {
            key.verify_pkcs1(hash, message, signature)
        }
    }

    /// Vectors from OpenSSL (tools/crypto-vectors): signatures made normally, and encodings a
    /// sloppy verifier would take, signed with the raw private-key operation.
    #[test]
    fn openssl_vectors_give_their_verdicts() {
        let doc: Value = serde_json::from_str(include_str!("testdata/rsa.json")).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert!(vectors.len() > 150);
        let mut failures = Vec::new();
        for v in vectors {
            let bits = v["bits"].as_u64().unwrap().to_string();
            let key = &doc["keys"][&bits];
            let key = RsaKey::new(&hex(key["n"].as_str().unwrap()), &hex(key["e"].as_str().unwrap())).unwrap();
            let alg = v["alg"].as_str().unwrap();
            let got = verify(&key, alg, &hex(v["message"].as_str().unwrap()), &hex(v["signature"].as_str().unwrap()));
            if got != v["valid"].as_bool().unwrap() {
                failures.push(format!("{bits} bits {alg}: {} (got {got})", v["why"]));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// Signatures by the `rsa` crate (through jsonwebtoken) on random messages, under keys of
    /// every size class, agree with it on the signature and on every one-bit change of it.
    #[test]
    fn agrees_with_the_rsa_crate_on_tampered_signatures() {
        use ::rsa::pkcs1v15::Pkcs1v15Sign;
        let doc: Value = serde_json::from_str(include_str!("testdata/rsa.json")).unwrap();
        for bits in ["2048", "2049", "4096"] {
            let (n, e) = (hex(doc["keys"][bits]["n"].as_str().unwrap()), hex(doc["keys"][bits]["e"].as_str().unwrap()));
            let ours = RsaKey::new(&n, &e).unwrap();
            let theirs = ::rsa::PublicKey::new(
                ::rsa::BoxedUint::from_be_slice_vartime(&n),
                ::rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .unwrap();
            let vector = doc["vectors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["bits"].as_u64().unwrap().to_string() == bits && v["alg"] == "RS256" && v["valid"] == true)
                .unwrap();
            let message = hex(vector["message"].as_str().unwrap());
            let signature = hex(vector["signature"].as_str().unwrap());
            let digest = Hash::Sha256.digest(&[&message]);
            for i in 0..signature.len() * 8 {
                let mut changed = signature.clone();
                changed[i / 8] ^= 1 << (i % 8);
                let theirs = theirs.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &changed).is_ok();
                assert_eq!(ours.verify_pkcs1(Hash::Sha256, &message, &changed), theirs, "{bits} bits, bit {i}");
                assert!(!theirs);
            }
        }
    }

    #[test]
    fn keys_out_of_bounds_are_refused() {
        let mut n = vec![0xffu8; 256];
        n[255] = 0xfb;
        assert!(RsaKey::new(&n, &[1, 0, 1]).is_ok());
        assert!(RsaKey::new(&[&[0, 0][..], &n].concat(), &[0, 1, 0, 1]).is_ok(), "leading zeros are fine");
        for e in [&[][..], &[0], &[1], &[2], &[1, 0, 0], &[2, 0, 0, 0, 1], &[1, 0, 0, 0, 0, 1]] {
            assert_eq!(RsaKey::new(&n, e).err(), Some(KeyError::RsaMalformed), "e = {e:?}");
        }
        assert!(RsaKey::new(&n, &[1, 0xff, 0xff, 0xff, 0xff]).is_ok(), "e = 2^33 - 1");
        let mut even = n.clone();
        even[255] = 0xfe;
        assert_eq!(RsaKey::new(&even, &[3]).err(), Some(KeyError::RsaMalformed));
        assert_eq!(RsaKey::new(&n[1..], &[3]).err(), Some(KeyError::RsaSize(2040)));
        assert_eq!(RsaKey::new(&vec![0xff; 513], &[3]).err(), Some(KeyError::RsaSize(4104)));
        assert!(RsaKey::new(&vec![0xff; 512], &[3]).is_ok());
    }

    #[test]
    fn signatures_of_the_wrong_length_are_refused() {
        let doc: Value = serde_json::from_str(include_str!("testdata/rsa.json")).unwrap();
        let v = &doc["vectors"][0];
        let key = &doc["keys"]["2048"];
        let key = RsaKey::new(&hex(key["n"].as_str().unwrap()), &hex(key["e"].as_str().unwrap())).unwrap();
        let (message, signature) = (hex(v["message"].as_str().unwrap()), hex(v["signature"].as_str().unwrap()));
        assert!(key.verify_pkcs1(Hash::Sha256, &message, &signature));
        assert!(!key.verify_pkcs1(Hash::Sha256, &message, &[&[0u8][..], &signature].concat()));
        assert!(!key.verify_pkcs1(Hash::Sha256, &message, &signature[1..]));
        assert!(!key.verify_pkcs1(Hash::Sha256, &message, &[]));
    }
}
