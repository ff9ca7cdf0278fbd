//! Signature primitives for the JWS algorithms tokengate accepts (RFC 7518, RFC 8037).
//!
//! Only asymmetric algorithms exist here: `none` and HMAC have no variant, so they cannot be
//! selected by anything a client sends. Keys are parsed once, when a key set is loaded; a
//! verification is one call on a ready key.

use p256::ecdsa::signature::Verifier as _;
use rsa::{BoxedUint, Pkcs1v15Sign, Pss};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A JWS signature algorithm that tokengate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    /// EdDSA with Ed25519, named `EdDSA` (RFC 8037) or `Ed25519` (RFC 9864).
    EdDSA,
}

impl Alg {
    /// The algorithm a JOSE `alg` value names, if tokengate accepts it.
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" | "Ed25519" => Alg::EdDSA,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// Smallest RSA modulus accepted: RFC 7518 3.3 and 3.5 require 2048 bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted: 4096 bits is what real key sets use; bigger keys only let a
/// key endpoint (or a token without `kid`) cost CPU on every worker.
pub const RSA_MAX_BITS: usize = 4096;

/// Why key material could not become a [`PublicKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("RSA modulus of {0} bits is outside {RSA_MIN_BITS}..={RSA_MAX_BITS}")]
    RsaSize(usize),
    #[error("RSA key is malformed (modulus or exponent)")]
    RsaMalformed,
    #[error("EC coordinates have the wrong length for the curve")]
    EcLength,
    #[error("EC point is not on the curve")]
    EcPoint,
    #[error("Ed25519 public key is malformed or of small order")]
    Ed25519,
}

/// A public key, ready to verify signatures.
#[derive(Clone)]
pub enum PublicKey {
    Rsa(Box<rsa::PublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublicKey::Rsa(_) => "PublicKey::Rsa",
            PublicKey::P256(_) => "PublicKey::P256",
            PublicKey::P384(_) => "PublicKey::P384",
            PublicKey::Ed25519(_) => "PublicKey::Ed25519",
        })
    }
}

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent (leading zeros allowed).
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey, KeyError> {
        let bits = bit_length(modulus);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        let n = BoxedUint::from_be_slice_vartime(modulus);
        let e = BoxedUint::from_be_slice_vartime(exponent);
        // The rsa crate also refuses even moduli, e < 2, e >= n and e > 2^33 - 1.
        let key = rsa::PublicKey::new_with_size_limits(n, e, RSA_MIN_BITS..=RSA_MAX_BITS)
            .map_err(|_| KeyError::RsaMalformed)?;
        Ok(PublicKey::Rsa(Box::new(key)))
    }

    /// A P-256 key from its affine coordinates (exactly 32 bytes each, RFC 7518 6.2.1.2).
    pub fn p256(x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let point = uncompressed_point(x, y, 32)?;
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(PublicKey::P256).map_err(|_| KeyError::EcPoint)
    }

    /// A P-384 key from its affine coordinates (exactly 48 bytes each).
    pub fn p384(x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let point = uncompressed_point(x, y, 48)?;
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(PublicKey::P384).map_err(|_| KeyError::EcPoint)
    }

    /// An Ed25519 key from its 32-byte encoding.
    pub fn ed25519(x: &[u8]) -> Result<PublicKey, KeyError> {
        // Small-order and non-canonical points are refused by every verification.
        ed25519_compact::PublicKey::from_slice(x).map(PublicKey::Ed25519).map_err(|_| KeyError::Ed25519)
    }

    /// Whether this key may verify `alg` at all (by key type and curve).
    pub fn fits(&self, alg: Alg) -> bool {
        match self {
            PublicKey::Rsa(_) => {
                matches!(alg, Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512)
            }
            PublicKey::P256(_) => alg == Alg::ES256,
            PublicKey::P384(_) => alg == Alg::ES384,
            PublicKey::Ed25519(_) => alg == Alg::EdDSA,
        }
    }

    /// True only if `signature` is a valid `alg` signature of `message` under this key.
    ///
    /// Encodings are checked exactly as JWA specifies: RSA signatures as long as the modulus,
    /// ECDSA as fixed-length `r || s` with both in range, Ed25519 as 64 canonical bytes.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match self {
            PublicKey::Rsa(key) => verify_rsa(key, alg, message, signature),
            PublicKey::P256(key) => {
                signature.len() == 64
                    && p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            PublicKey::P384(key) => {
                signature.len() == 96
                    && p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            PublicKey::Ed25519(key) => {
                ed25519_compact::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
        }
    }
}

fn verify_rsa(key: &rsa::PublicKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    let result = match alg {
        Alg::RS256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message), signature),
        Alg::RS384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(message), signature),
        Alg::RS512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(message), signature),
        // RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash output.
        Alg::PS256 => key.verify(Pss::<Sha256>::new(), &Sha256::digest(message), signature),
        Alg::PS384 => key.verify(Pss::<Sha384>::new(), &Sha384::digest(message), signature),
        Alg::PS512 => key.verify(Pss::<Sha512>::new(), &Sha512::digest(message), signature),
        _ => return false,
    };
    result.is_ok()
}

fn uncompressed_point(x: &[u8], y: &[u8], size: usize) -> Result<Vec<u8>, KeyError> {
    if x.len() != size || y.len() != size {
        return Err(KeyError::EcLength);
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(point)
}

/// Bits in a big-endian unsigned integer, ignoring leading zero bytes.
fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => {
            let rest = big_endian.len() - first - 1;
            let top = big_endian.get(first).copied().unwrap_or(0);
            rest * 8 + (8 - top.leading_zeros() as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_symmetric_and_none() {
        for alg in
            [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512, Alg::ES256, Alg::ES384, Alg::EdDSA]
        {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Alg::from_name("Ed25519"), Some(Alg::EdDSA));
        for name in ["none", "None", "HS256", "HS384", "HS512", "ES512", "rs256", "", "RSA-OAEP", "Ed448"] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x7f; 256]), 2047);
    }

    #[test]
    fn rsa_size_limits() {
        let mut small = vec![0xff; 128];
        small[127] = 0xfb;
        assert_eq!(PublicKey::rsa(&small, &[1, 0, 1]).err(), Some(KeyError::RsaSize(1024)));
        let mut even = vec![0xff; 256];
        even[255] = 0xfe;
        assert_eq!(PublicKey::rsa(&even, &[1, 0, 1]).err(), Some(KeyError::RsaMalformed));
        let mut odd = vec![0xff; 256];
        odd[255] = 0xfb;
        assert!(PublicKey::rsa(&odd, &[1, 0, 1]).is_ok());
        assert_eq!(PublicKey::rsa(&odd, &[1]).err(), Some(KeyError::RsaMalformed));
        assert_eq!(PublicKey::rsa(&odd, &[]).err(), Some(KeyError::RsaMalformed));
        assert_eq!(PublicKey::rsa(&vec![0xff; 513], &[3]).err(), Some(KeyError::RsaSize(4104)));
    }

    #[test]
    fn ec_points_must_be_on_curve_with_exact_lengths() {
        assert_eq!(PublicKey::p256(&[1; 32], &[2; 32]).err(), Some(KeyError::EcPoint));
        assert_eq!(PublicKey::p256(&[1; 31], &[2; 32]).err(), Some(KeyError::EcLength));
        assert_eq!(PublicKey::p384(&[1; 32], &[2; 32]).err(), Some(KeyError::EcLength));
    }

    #[test]
    fn ed25519_refuses_small_order_and_bad_lengths() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let small_order = PublicKey::ed25519(&identity).unwrap();
        assert!(!small_order.verify(Alg::EdDSA, b"", &[0; 64]));
        assert_eq!(PublicKey::ed25519(&[0; 31]).err(), Some(KeyError::Ed25519));
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
        let key = PublicKey::ed25519(kp.pk.as_ref()).unwrap();
        let sig = kp.sk.sign(b"msg", None);
        assert!(key.verify(Alg::EdDSA, b"msg", sig.as_ref()));
        assert!(!key.verify(Alg::EdDSA, b"msh", sig.as_ref()));
        assert!(!key.verify(Alg::ES256, b"msg", sig.as_ref()));
        assert!(!key.verify(Alg::EdDSA, b"msg", &sig.as_ref()[..63]));
    }
}
