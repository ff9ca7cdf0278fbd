//! Signature primitives for the JWS algorithms tokengate accepts (RFC 7518, RFC 8037).
//!
//! Only asymmetric algorithms exist here: `none` and HMAC have no variant, so they cannot be
//! selected by anything a client sends. Keys are parsed once, when a key set is loaded; a
//! verification is one call on a ready key.
//!
//! RS* and ES* signatures go to the host (Envoy's BoringSSL) when it answers. The Rust
//! verifiers behind them ([`rsa`], [`ecdsa`] over [`bignum`]) are verification-only and small
//! on purpose: they run for PS*, for hosts without the foreign function, and natively in tests,
//! where they are checked against independent implementations. Ed25519 uses curve25519-dalek.

pub mod bignum;
pub mod ecdsa;
pub mod rsa;

use crate::hostcrypto::{self, RustOnly, SignatureHost};
use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable;
use ecdsa::{Curve, EcKey};
use rsa::RsaKey;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;

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

/// A hash function of the JWS algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The digest of `data`.
    pub fn digest(self, data: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(data: &[&[u8]]) -> Vec<u8> {
            let mut hasher = D::new();
            for part in data {
                hasher.update(part);
            }
            hasher.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(data),
            Hash::Sha384 => run::<Sha384>(data),
            Hash::Sha512 => run::<Sha512>(data),
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The name the host's `verify_signature` takes.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
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

/// A public key, ready to verify signatures. RSA and EC keys also carry their DER
/// SubjectPublicKeyInfo, prepared once, for a host that verifies natively ([`SignatureHost`]).
#[derive(Clone)]
pub enum PublicKey {
    Rsa { key: Box<RsaKey>, spki: Box<[u8]> },
    P256 { key: Box<EcKey>, spki: Box<[u8]> },
    P384 { key: Box<EcKey>, spki: Box<[u8]> },
    Ed25519(Box<Ed25519Key>),
}

/// An Ed25519 public key: its encoding (hashed into every signature check) and the negated
/// point, ready for the verification equation. A key that has verified many signatures (an
/// identity provider's signing key) also gets a fixed-base table, see [`Ed25519Key::verify`].
#[derive(Clone)]
pub struct Ed25519Key {
    encoded: [u8; 32],
    minus_a: EdwardsPoint,
    /// Good signatures this key has verified, counted until it has a table.
    verified: Cell<u32>,
    table: OnceCell<Rc<KeyTable>>,
}

/// Good signatures a key verifies before it gets its table. Building one costs about as much
/// as 25 verifications and takes about a quarter off each later one, so only keys that sign many
/// tokens get one: tokengate's own keys sign one token each, and its verified-token cache
/// answers that token's later requests.
pub const ED25519_TABLE_AFTER: u32 = 64;
/// Most tables alive at once in one VM (each about 30 KiB).
pub const ED25519_MAX_TABLES: usize = 8;

thread_local! {
    static TABLES_ALIVE: Cell<usize> = const { Cell::new(0) };
}

/// `[k](-A)` for any `k` by table lookups and additions instead of 253 doublings (dalek's
/// radix-16 fixed-base table of `-A`). Counted while alive against [`ED25519_MAX_TABLES`].
struct KeyTable(EdwardsBasepointTable);

impl KeyTable {
    fn build(minus_a: &EdwardsPoint) -> Option<Rc<KeyTable>> {
        TABLES_ALIVE.with(|alive| {
            if alive.get() >= ED25519_MAX_TABLES {
                return None;
            }
            alive.set(alive.get() + 1);
            Some(Rc::new(KeyTable(EdwardsBasepointTable::create(minus_a))))
        })
    }
}

impl Drop for KeyTable {
    fn drop(&mut self) {
        TABLES_ALIVE.with(|alive| alive.set(alive.get().saturating_sub(1)));
    }
}

/// Ed25519 fixed-base tables alive in this VM (thread).
pub fn ed25519_tables_alive() -> usize {
    TABLES_ALIVE.with(Cell::get)
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublicKey::Rsa { .. } => "PublicKey::Rsa",
            PublicKey::P256 { .. } => "PublicKey::P256",
            PublicKey::P384 { .. } => "PublicKey::P384",
            PublicKey::Ed25519(_) => "PublicKey::Ed25519",
        })
    }
}

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent (leading zeros allowed).
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey, KeyError> {
        let key = RsaKey::new(modulus, exponent)?;
        let spki = hostcrypto::rsa_spki(modulus, exponent).into_boxed_slice();
        Ok(PublicKey::Rsa { key: Box::new(key), spki })
    }

    /// A P-256 key from its affine coordinates (exactly 32 bytes each, RFC 7518 6.2.1.2).
    pub fn p256(x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let key = ec_key(Curve::p256(), x, y, 32)?;
        let point = uncompressed_point(x, y);
        Ok(PublicKey::P256 { key, spki: hostcrypto::ec_spki(hostcrypto::P256, &point).into_boxed_slice() })
    }

    /// A P-384 key from its affine coordinates (exactly 48 bytes each).
    pub fn p384(x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let key = ec_key(Curve::p384(), x, y, 48)?;
        let point = uncompressed_point(x, y);
        Ok(PublicKey::P384 { key, spki: hostcrypto::ec_spki(hostcrypto::P384, &point).into_boxed_slice() })
    }

    /// An Ed25519 key from its 32-byte encoding: a canonical encoding of a point on the curve
    /// that is not of small order (a small-order key would accept signatures of any message).
    pub fn ed25519(x: &[u8]) -> Result<PublicKey, KeyError> {
        let bytes: &[u8; 32] = x.try_into().map_err(|_| KeyError::Ed25519)?;
        if !canonical_y(bytes) {
            return Err(KeyError::Ed25519);
        }
        let point = CompressedEdwardsY(*bytes).decompress().ok_or(KeyError::Ed25519)?;
        if point.is_small_order() {
            return Err(KeyError::Ed25519);
        }
        Ok(PublicKey::Ed25519(Box::new(Ed25519Key {
            encoded: *bytes,
            minus_a: -point,
            verified: Cell::new(0),
            table: OnceCell::new(),
        })))
    }

    /// Whether this key may verify `alg` at all (by key type and curve).
    pub fn fits(&self, alg: Alg) -> bool {
        match self {
            PublicKey::Rsa { .. } => {
                matches!(alg, Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512)
            }
            PublicKey::P256 { .. } => alg == Alg::ES256,
            PublicKey::P384 { .. } => alg == Alg::ES384,
            PublicKey::Ed25519(_) => alg == Alg::EdDSA,
        }
    }

    /// True only if `signature` is a valid `alg` signature of `message` under this key,
    /// verified in Rust. Same as [`PublicKey::verify_with`] with [`RustOnly`].
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.verify_with(alg, message, signature, &RustOnly)
    }

    /// True only if `signature` is a valid `alg` signature of `message` under this key.
    ///
    /// Encodings are checked here, exactly as JWA specifies, before anything else sees them:
    /// RSA signatures as long as the modulus, ECDSA as fixed-length `r || s` with both in
    /// range, Ed25519 as 64 canonical bytes. RS* and ES* signatures are then checked by `host`
    /// when it answers, and in Rust when it does not; PS* and EdDSA always in Rust.
    pub fn verify_with(&self, alg: Alg, message: &[u8], signature: &[u8], host: &dyn SignatureHost) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match self {
            PublicKey::Rsa { key, spki } => {
                if signature.len() != key.size() {
                    return false;
                }
                let hash = match alg {
                    Alg::RS256 | Alg::PS256 => Hash::Sha256,
                    Alg::RS384 | Alg::PS384 => Hash::Sha384,
                    _ => Hash::Sha512,
                };
                if matches!(alg, Alg::PS256 | Alg::PS384 | Alg::PS512) {
                    return key.verify_pss(hash, message, signature);
                }
                host.verify(hash.name(), spki, signature, message)
                    .unwrap_or_else(|| key.verify_pkcs1(hash, message, signature))
            }
            PublicKey::P256 { key, spki } => verify_ecdsa(key, Hash::Sha256, spki, message, signature, host),
            PublicKey::P384 { key, spki } => verify_ecdsa(key, Hash::Sha384, spki, message, signature, host),
            PublicKey::Ed25519(key) => key.verify(message, signature),
        }
    }
}

/// ECDSA: `r || s` of the curve's size with both in `1..n` (checked here, so the host never
/// sees an encoding JWA forbids), then the host's answer or the Rust check.
fn verify_ecdsa(
    key: &EcKey,
    hash: Hash,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
    host: &dyn SignatureHost,
) -> bool {
    if !key.signature_in_range(signature) {
        return false;
    }
    host.verify(hash.name(), spki, &hostcrypto::ecdsa_der(signature), message)
        .unwrap_or_else(|| key.verify_digest(&hash.digest(&[message]), signature))
}

impl Ed25519Key {
    /// RFC 8032 5.1.7, cofactorless, as ed25519-dalek's `verify`: `s` must be below L, and
    /// `[s]B - [k]A` must encode to exactly the signature's R bytes, so a non-canonical R never
    /// verifies. `[s]B + [k](-A)` is computed with shared doublings, or, once this key has a
    /// table, as two fixed-base products (the same point either way).
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let Some(s) = <[u8; 32]>::try_from(s).ok().and_then(|s| Option::from(Scalar::from_canonical_bytes(s))) else {
            return false;
        };
        let digest = Hash::Sha512.digest(&[r, &self.encoded, message]);
        let Ok(wide) = <[u8; 64]>::try_from(digest.as_slice()) else {
            return false;
        };
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        let expected_r = match self.table.get() {
            Some(table) => ED25519_BASEPOINT_TABLE * &s + &table.0 * &k,
            None => EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.minus_a, &s),
        };
        let good = expected_r.compress().as_bytes() == r;
        if good && self.table.get().is_none() {
            self.count_good_signature();
        }
        good
    }

    fn count_good_signature(&self) {
        let verified = self.verified.get().saturating_add(1);
        self.verified.set(verified);
        if verified >= ED25519_TABLE_AFTER {
            if let Some(table) = KeyTable::build(&self.minus_a) {
                let _ = self.table.set(table);
            }
        }
    }

    /// Whether this key verifies with its own fixed-base table.
    pub fn has_table(&self) -> bool {
        self.table.get().is_some()
    }
}

fn ec_key(curve: Option<&'static Curve>, x: &[u8], y: &[u8], size: usize) -> Result<Box<EcKey>, KeyError> {
    if x.len() != size || y.len() != size {
        return Err(KeyError::EcLength);
    }
    let curve = curve.ok_or(KeyError::EcPoint)?;
    EcKey::new(curve, x, y).map(Box::new).ok_or(KeyError::EcPoint)
}

/// The SEC1 uncompressed encoding `04 || x || y`.
fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// Whether a 32-byte Ed25519 point encoding has its y below p = 2^255 - 19 (RFC 8032 5.1.3).
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    // The only 255-bit values >= p are p..2^255-1: 0x7fff..ffed and up.
    !(y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f)
}

/// Bits in a big-endian unsigned integer, ignoring leading zero bytes.
pub(crate) fn bit_length(big_endian: &[u8]) -> usize {
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

    /// What a host was asked: hash, SPKI, signature, message.
    type Asked = (String, Vec<u8>, Vec<u8>, Vec<u8>);

    /// A host that records what it was asked and gives a fixed answer.
    #[derive(Debug, Default)]
    struct Host {
        answer: Option<bool>,
        asked: std::cell::RefCell<Vec<Asked>>,
    }

    impl SignatureHost for Host {
        fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
            self.asked.borrow_mut().push((hash.to_owned(), spki.to_vec(), signature.to_vec(), message.to_vec()));
            self.answer
        }
    }

    fn host(answer: Option<bool>) -> Host {
        Host { answer, ..Host::default() }
    }

    #[test]
    fn rsa_goes_to_the_host_with_its_spki_only_for_pkcs1_and_only_when_the_length_fits() {
        use ::rsa::pkcs8::DecodePublicKey as _;
        let mut modulus = vec![0xff; 256];
        modulus[255] = 0xfb;
        let key = PublicKey::rsa(&modulus, &[1, 0, 1]).unwrap();
        for (alg, hash) in [(Alg::RS256, "sha256"), (Alg::RS384, "sha384"), (Alg::RS512, "sha512")] {
            let yes = host(Some(true));
            assert!(key.verify_with(alg, b"msg", &[5; 256], &yes));
            let asked = yes.asked.borrow();
            assert_eq!(asked.len(), 1);
            assert_eq!((asked[0].0.as_str(), &asked[0].2[..], &asked[0].3[..]), (hash, &[5u8; 256][..], &b"msg"[..]));
            let expected = ::rsa::PublicKey::new(
                ::rsa::BoxedUint::from_be_slice_vartime(&modulus),
                ::rsa::BoxedUint::from_be_slice_vartime(&[1, 0, 1]),
            )
            .unwrap();
            assert!(::rsa::PublicKey::from_public_key_der(&asked[0].1).unwrap() == expected);
            // The host's "no" is final; no answer means Rust decides (and this is no signature).
            assert!(!key.verify_with(alg, b"msg", &[5; 256], &host(Some(false))));
            assert!(!key.verify_with(alg, b"msg", &[5; 256], &host(None)));
        }
        // Lengths other than the modulus's never reach the host, whatever it would say.
        for len in [0, 255, 257, 512] {
            let yes = host(Some(true));
            assert!(!key.verify_with(Alg::RS256, b"msg", &vec![5; len], &yes));
            assert!(yes.asked.borrow().is_empty());
        }
        // PSS is checked in Rust: the host would apply PKCS #1 v1.5.
        let yes = host(Some(true));
        assert!(!key.verify_with(Alg::PS256, b"msg", &[5; 256], &yes));
        assert!(yes.asked.borrow().is_empty());
    }

    #[test]
    fn ecdsa_goes_to_the_host_as_der_only_when_r_and_s_are_in_range() {
        use p256::ecdsa::signature::Signer as _;
        use p256::pkcs8::DecodePublicKey as _;
        let signing = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let point = signing.verifying_key().to_sec1_point(false);
        let (x, y) = (&point.as_bytes()[1..33], &point.as_bytes()[33..]);
        let key = PublicKey::p256(x, y).unwrap();
        let signature: p256::ecdsa::Signature = signing.sign(b"msg");
        let fixed = signature.to_bytes();
        assert!(key.verify_with(Alg::ES256, b"msg", &fixed, &RustOnly));
        assert!(key.verify_with(Alg::ES256, b"msg", &fixed, &host(None)));

        let no = host(Some(false));
        assert!(!key.verify_with(Alg::ES256, b"msg", &fixed, &no));
        let asked = no.asked.borrow();
        assert_eq!(asked[0].0, "sha256");
        assert_eq!(p256::ecdsa::Signature::from_der(&asked[0].2).unwrap(), signature);
        let spki = p256::PublicKey::from_public_key_der(&asked[0].1).unwrap();
        assert_eq!(spki, p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap());

        // r = 0, s = 0, s = n, and wrong lengths never reach the host.
        let order = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let mut s_is_n = fixed.to_vec();
        s_is_n[32..].copy_from_slice(&order);
        let mut zero_r = fixed.to_vec();
        zero_r[..32].fill(0);
        let mut zero_s = fixed.to_vec();
        zero_s[32..].fill(0);
        for bad in [zero_r, zero_s, s_is_n, fixed[..63].to_vec(), [&fixed[..], &[0]].concat()] {
            let yes = host(Some(true));
            assert!(!key.verify_with(Alg::ES256, b"msg", &bad, &yes));
            assert!(yes.asked.borrow().is_empty());
        }
    }

    fn hex32(hex: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn ed25519_refuses_small_order_non_canonical_and_bad_lengths() {
        // Small order: the identity (y = 1) and the point of order 2 (y = p - 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order_two = [0xffu8; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        // Non-canonical: y = p + 1 encodes the identity again; y = p, with and without the sign bit.
        let mut p_plus_one = order_two;
        p_plus_one[0] = 0xee;
        let mut p = order_two;
        p[0] = 0xed;
        let mut p_signed = p;
        p_signed[31] = 0xff;
        for bad in [identity, order_two, p_plus_one, p, p_signed] {
            assert_eq!(PublicKey::ed25519(&bad).err(), Some(KeyError::Ed25519), "{bad:?}");
        }
        assert!(canonical_y(&order_two));
        assert!(!canonical_y(&p) && !canonical_y(&p_plus_one) && !canonical_y(&[0xff; 32]));
        assert_eq!(PublicKey::ed25519(&[0; 31]).err(), Some(KeyError::Ed25519));

        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
        let key = PublicKey::ed25519(kp.pk.as_ref()).unwrap();
        let sig = kp.sk.sign(b"msg", None);
        assert!(key.verify(Alg::EdDSA, b"msg", sig.as_ref()));
        assert!(!key.verify(Alg::EdDSA, b"msh", sig.as_ref()));
        assert!(!key.verify(Alg::ES256, b"msg", sig.as_ref()));
        assert!(!key.verify(Alg::EdDSA, b"msg", &sig.as_ref()[..63]));
        // s + L: the same s modulo L, but not canonical (RFC 8032 5.1.7 requires s < L).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = sig.as_ref().to_vec();
        let mut carry = 0u16;
        for (byte, l) in malleated[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert!(!key.verify(Alg::EdDSA, b"msg", &malleated));
    }

    /// A message and its signature.
    type Signed = (Vec<u8>, Vec<u8>);

    /// Signatures over `n` messages, and for each a list of tampered variants.
    fn ed25519_corpus(kp: &ed25519_compact::KeyPair, n: usize) -> Vec<(Vec<u8>, Vec<u8>, Vec<Signed>)> {
        (0..n)
            .map(|i| {
                let message = format!("header.claims-{i}").into_bytes();
                let sig = kp.sk.sign(&message, None).as_ref().to_vec();
                let mut bad = Vec::new();
                for bit in [0usize, 7, 100, 255, 256, 300, 511] {
                    let mut s = sig.clone();
                    s[bit / 8] ^= 1 << (bit % 8);
                    bad.push((message.clone(), s));
                }
                let mut other = message.clone();
                other.push(b'x');
                bad.push((other, sig.clone()));
                (message, sig, bad)
            })
            .collect()
    }

    #[test]
    fn an_ed25519_key_with_a_table_gives_the_same_answers() {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
        let corpus = ed25519_corpus(&kp, ED25519_TABLE_AFTER as usize + 40);
        let PublicKey::Ed25519(key) = PublicKey::ed25519(kp.pk.as_ref()).unwrap() else { unreachable!() };
        let PublicKey::Ed25519(plain) = PublicKey::ed25519(kp.pk.as_ref()).unwrap() else { unreachable!() };
        // Bad signatures never count towards a table.
        for (_, _, bad) in &corpus {
            for (message, signature) in bad {
                assert!(!key.verify(message, signature));
            }
        }
        assert!(!key.has_table());
        for (i, (message, signature, _)) in corpus.iter().enumerate() {
            assert!(key.verify(message, signature), "signature {i}");
            assert_eq!(key.has_table(), i + 1 >= ED25519_TABLE_AFTER as usize, "after {} good ones", i + 1);
        }
        // With the table, every answer is the shared-doublings answer.
        for (message, signature, bad) in &corpus {
            assert!(key.verify(message, signature) && plain.verify(message, signature));
            for (message, signature) in bad {
                assert!(!key.verify(message, signature) && !plain.verify(message, signature));
            }
        }
        // A signature of another key, and s + L, are refused with the table too.
        let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([10; 32]));
        assert!(!key.verify(b"m", other.sk.sign(b"m", None).as_ref()));
        let sig = kp.sk.sign(b"m", None).as_ref().to_vec();
        let l_low = [0xedu8, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14];
        let mut malleated = sig.clone();
        let mut carry = 0u16;
        for i in 0..32 {
            let l = if i < 16 {
                l_low[i]
            } else if i == 31 {
                0x10
            } else {
                0
            };
            let sum = u16::from(malleated[32 + i]) + u16::from(l) + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(key.verify(b"m", &sig));
        assert!(!key.verify(b"m", &malleated));
    }

    #[test]
    fn ed25519_tables_are_bounded_and_freed_with_their_keys() {
        let mut keys = Vec::new();
        for seed in 0..=ED25519_MAX_TABLES as u8 {
            let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed + 20; 32]));
            let PublicKey::Ed25519(key) = PublicKey::ed25519(kp.pk.as_ref()).unwrap() else { unreachable!() };
            for (message, signature, _) in ed25519_corpus(&kp, ED25519_TABLE_AFTER as usize) {
                assert!(key.verify(&message, &signature));
            }
            keys.push((kp, key));
        }
        assert_eq!(ed25519_tables_alive(), ED25519_MAX_TABLES);
        assert!(keys[..ED25519_MAX_TABLES].iter().all(|(_, key)| key.has_table()));
        let (kp, last) = &keys[ED25519_MAX_TABLES];
        assert!(!last.has_table(), "over the limit: verified without a table");
        let sig = kp.sk.sign(b"late", None);
        assert!(last.verify(b"late", sig.as_ref()));
        // A key set replaced: its keys and their tables go, and a busy key gets one again.
        keys.drain(..2);
        assert_eq!(ed25519_tables_alive(), ED25519_MAX_TABLES - 2);
        let (kp, last) = keys.last().unwrap();
        assert!(last.verify(b"later", kp.sk.sign(b"later", None).as_ref()));
        assert!(last.has_table());
        drop(keys);
        assert_eq!(ed25519_tables_alive(), 0);
    }
}
