//! ECDSA signature verification in Rust on P-256 and P-384 (FIPS 186-5 6.4.2, SEC 1 4.1.4), for
//! ES256 and ES384 when the host cannot check them.
//!
//! Points are in Jacobian coordinates over the Montgomery-form field; `Z = 0` is the point at
//! infinity. Both curves have `a = -3` and cofactor 1, so a point that satisfies the curve
//! equation is in the group of prime order `n`. All inputs are public: variable time is fine.

use super::bignum::{self, Modulus};
use std::sync::OnceLock;

/// A short-Weierstrass curve `y^2 = x^3 - 3x + b` with a base point of prime order `n`.
#[derive(Debug)]
pub struct Curve {
    /// The field prime.
    p: Modulus,
    /// The group order.
    n: Modulus,
    /// `b`, in Montgomery form.
    b: Vec<u32>,
    /// The base point.
    g: Point,
    /// Bytes of a coordinate, a scalar, and half a signature.
    size: usize,
    /// `n - 2` big-endian, to invert modulo `n`.
    n_minus_two: Vec<u8>,
    /// `p - n` (plain form): an `r` below it has a second candidate `x = r + n`.
    p_minus_n: Vec<u32>,
}

/// A point in Jacobian coordinates, each in Montgomery form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Point {
    x: Vec<u32>,
    y: Vec<u32>,
    z: Vec<u32>,
}

/// The constants of one curve, as big-endian hex.
struct Params {
    p: &'static str,
    n: &'static str,
    b: &'static str,
    gx: &'static str,
    gy: &'static str,
}

const P256: Params = Params {
    p: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
    n: "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
    gx: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
    gy: "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
};

const P384: Params = Params {
    p: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
    n: "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
    gx: "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
    gy: "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
};

fn hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            (digit(pair.first().copied().unwrap_or(b'0')) << 4) | digit(pair.get(1).copied().unwrap_or(b'0'))
        })
        .collect()
}

impl Curve {
    fn build(params: &Params) -> Option<Curve> {
        let p = Modulus::new(&hex(params.p))?;
        let n = Modulus::new(&hex(params.n))?;
        let size = p.limbs() * 4;
        let b = p.to_montgomery(&p.element(&hex(params.b))?);
        let gx = p.to_montgomery(&p.element(&hex(params.gx))?);
        let gy = p.to_montgomery(&p.element(&hex(params.gy))?);
        let p_be = hex(params.p);
        let n_be = hex(params.n);
        let p_minus_n = p.sub(&bignum::from_be_bytes(&p_be, p.limbs())?, &bignum::from_be_bytes(&n_be, p.limbs())?);
        let g = Point { x: gx, y: gy, z: p.one() };
        let n_minus_two = n.minus_two_be();
        Some(Curve { p, n, b, g, size, n_minus_two, p_minus_n })
    }

    /// P-256 (secp256r1).
    pub fn p256() -> Option<&'static Curve> {
        static CURVE: OnceLock<Option<Curve>> = OnceLock::new();
        CURVE.get_or_init(|| Curve::build(&P256)).as_ref()
    }

    /// P-384 (secp384r1).
    pub fn p384() -> Option<&'static Curve> {
        static CURVE: OnceLock<Option<Curve>> = OnceLock::new();
        CURVE.get_or_init(|| Curve::build(&P384)).as_ref()
    }

    /// Bytes of a coordinate or a scalar.
    pub fn size(&self) -> usize {
        self.size
    }

    fn infinity(&self) -> Point {
        let zero = vec![0u32; self.p.limbs()];
        Point { x: self.p.one(), y: self.p.one(), z: zero }
    }

    fn double(&self, a: &Point) -> Point {
        let f = &self.p;
        if bignum::is_zero(&a.z) || bignum::is_zero(&a.y) {
            return self.infinity();
        }
        // dbl-2001-b (a = -3).
        let delta = f.mul(&a.z, &a.z);
        let gamma = f.mul(&a.y, &a.y);
        let beta = f.mul(&a.x, &gamma);
        let t = f.mul(&f.sub(&a.x, &delta), &f.add(&a.x, &delta));
        let alpha = f.add(&f.add(&t, &t), &t);
        let beta4 = f.add(&f.add(&beta, &beta), &f.add(&beta, &beta));
        let beta8 = f.add(&beta4, &beta4);
        let x3 = f.sub(&f.mul(&alpha, &alpha), &beta8);
        let yz = f.add(&a.y, &a.z);
        let z3 = f.sub(&f.sub(&f.mul(&yz, &yz), &gamma), &delta);
        let gamma2 = f.mul(&gamma, &gamma);
        let gamma2_4 = f.add(&f.add(&gamma2, &gamma2), &f.add(&gamma2, &gamma2));
        let y3 = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x3)), &f.add(&gamma2_4, &gamma2_4));
        Point { x: x3, y: y3, z: z3 }
    }

    fn add(&self, a: &Point, b: &Point) -> Point {
        let f = &self.p;
        if bignum::is_zero(&a.z) {
            return b.clone();
        }
        if bignum::is_zero(&b.z) {
            return a.clone();
        }
        // add-1998-cmo-2, with the equal and opposite cases taken apart.
        let z1z1 = f.mul(&a.z, &a.z);
        let z2z2 = f.mul(&b.z, &b.z);
        let u1 = f.mul(&a.x, &z2z2);
        let u2 = f.mul(&b.x, &z1z1);
        let s1 = f.mul(&f.mul(&a.y, &b.z), &z2z2);
        let s2 = f.mul(&f.mul(&b.y, &a.z), &z1z1);
        let h = f.sub(&u2, &u1);
        let r = f.sub(&s2, &s1);
        if bignum::is_zero(&h) {
            return if bignum::is_zero(&r) { self.double(a) } else { self.infinity() };
        }
        let hh = f.mul(&h, &h);
        let hhh = f.mul(&hh, &h);
        let v = f.mul(&u1, &hh);
        let x3 = f.sub(&f.sub(&f.mul(&r, &r), &hhh), &f.add(&v, &v));
        let y3 = f.sub(&f.mul(&r, &f.sub(&v, &x3)), &f.mul(&s1, &hhh));
        let z3 = f.mul(&f.mul(&a.z, &b.z), &h);
        Point { x: x3, y: y3, z: z3 }
    }

    /// `u1 G + u2 Q` by Shamir's trick (scalars big-endian, of `size` bytes).
    fn double_mul(&self, u1: &[u8], q: &Point, u2: &[u8]) -> Point {
        let g_plus_q = self.add(&self.g, q);
        let mut acc = self.infinity();
        for (b1, b2) in u1.iter().zip(u2) {
            for bit in (0..8).rev() {
                acc = self.double(&acc);
                match ((b1 >> bit) & 1, (b2 >> bit) & 1) {
                    (1, 1) => acc = self.add(&acc, &g_plus_q),
                    (1, 0) => acc = self.add(&acc, &self.g),
                    (0, 1) => acc = self.add(&acc, q),
                    _ => {}
                }
            }
        }
        acc
    }
}

/// A public key on a curve.
#[derive(Debug, Clone)]
pub struct EcKey {
    curve: &'static Curve,
    q: Point,
}

impl PartialEq for EcKey {
    fn eq(&self, other: &EcKey) -> bool {
        std::ptr::eq(self.curve, other.curve) && self.q == other.q
    }
}

impl EcKey {
    /// A key from its affine coordinates (big-endian, `curve.size()` bytes each), if the point
    /// is on the curve (which, with cofactor 1, also puts it in the group of order `n`).
    pub fn new(curve: &'static Curve, x: &[u8], y: &[u8]) -> Option<EcKey> {
        if x.len() != curve.size || y.len() != curve.size {
            return None;
        }
        let f = &curve.p;
        let x = f.to_montgomery(&f.element(x)?);
        let y = f.to_montgomery(&f.element(y)?);
        // y^2 = x^3 - 3x + b
        let left = f.mul(&y, &y);
        let x3 = f.mul(&f.mul(&x, &x), &x);
        let three_x = f.add(&f.add(&x, &x), &x);
        let right = f.add(&f.sub(&x3, &three_x), &curve.b);
        (left == right).then(|| EcKey { curve, q: Point { x, y, z: f.one() } })
    }

    /// Whether `signature` is a fixed-length `r || s` with both in `1..n` (JWA's only encoding).
    pub fn signature_in_range(&self, signature: &[u8]) -> bool {
        let size = self.curve.size;
        if signature.len() != 2 * size {
            return false;
        }
        let (r, s) = signature.split_at(size);
        let n = &self.curve.n;
        [r, s].iter().all(|half| n.element(half).is_some_and(|v| !bignum::is_zero(&v)))
    }

    /// Whether the fixed-length `r || s` signature verifies for this digest (of the curve's
    /// size: SHA-256 for P-256, SHA-384 for P-384, so no truncation is needed). `r` and `s`
    /// must both be in `1..n`.
    pub fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> bool {
        let curve = self.curve;
        let (n, f) = (&curve.n, &curve.p);
        if signature.len() != 2 * curve.size || digest.len() != curve.size {
            return false;
        }
        let (r_be, s_be) = signature.split_at(curve.size);
        let (Some(r), Some(s)) = (n.element(r_be), n.element(s_be)) else {
            return false;
        };
        if bignum::is_zero(&r) || bignum::is_zero(&s) {
            return false;
        }
        // A digest as long as n is below 2n (n > 2^(8 size - 1)).
        let Some(e) = n.reduce_once(digest) else {
            return false;
        };
        let w = n.pow(&n.to_montgomery(&s), &curve.n_minus_two);
        let u1 = n.from_montgomery(&n.mul(&n.to_montgomery(&e), &w));
        let u2 = n.from_montgomery(&n.mul(&n.to_montgomery(&r), &w));
        let (Some(u1), Some(u2)) = (bignum::to_be_bytes(&u1, curve.size), bignum::to_be_bytes(&u2, curve.size)) else {
            return false;
        };
        let point = curve.double_mul(&u1, &self.q, &u2);
        if bignum::is_zero(&point.z) {
            return false;
        }
        // x / z^2 mod n == r, without inverting z: x == r z^2, or x == (r + n) z^2 when r + n
        // is still a field element (x < p < 2n, so these are the only two candidates).
        let zz = f.mul(&point.z, &point.z);
        let matches = |candidate: &[u32]| f.mul(&f.to_montgomery(candidate), &zz) == point.x;
        if matches(&r) {
            return true;
        }
        // r + n < p exactly when r < p - n; then r + n = r - (p - n) mod p.
        let r_plus_n_is_a_field_element = r.iter().rev().lt(curve.p_minus_n.iter().rev());
        r_plus_n_is_a_field_element && matches(&f.sub(&r, &curve.p_minus_n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    fn p256_key(signing: &p256::ecdsa::SigningKey) -> EcKey {
        let point = signing.verifying_key().to_sec1_point(false);
        EcKey::new(Curve::p256().unwrap(), &point.as_bytes()[1..33], &point.as_bytes()[33..]).unwrap()
    }

    fn p384_key(signing: &p384::ecdsa::SigningKey) -> EcKey {
        let point = signing.verifying_key().to_sec1_point(false);
        EcKey::new(Curve::p384().unwrap(), &point.as_bytes()[1..49], &point.as_bytes()[49..]).unwrap()
    }

    fn digest(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8).collect()
    }

    #[test]
    fn base_points_are_on_their_curves_and_have_order_n() {
        for curve in [Curve::p256().unwrap(), Curve::p384().unwrap()] {
            let g = &curve.g;
            let (x, y) = (curve.p.from_montgomery(&g.x), curve.p.from_montgomery(&g.y));
            let (x, y) = (bignum::to_be_bytes(&x, curve.size).unwrap(), bignum::to_be_bytes(&y, curve.size).unwrap());
            assert!(EcKey::new(curve, &x, &y).is_some());
            // n G = infinity, (n - 1) G = -G.
            let n =
                bignum::to_be_bytes(&bignum::from_be_bytes(&curve.n_minus_two, curve.p.limbs()).unwrap(), curve.size);
            let mut n_minus_one = n.unwrap();
            *n_minus_one.last_mut().unwrap() += 1;
            let zero = vec![0u8; curve.size];
            let minus_g = curve.double_mul(&n_minus_one, g, &zero);
            assert!(bignum::is_zero(&curve.add(&minus_g, g).z));
        }
    }

    /// Signatures by the p256 and p384 crates over many keys and digests verify, and every
    /// change of a bit of r, s or the digest, or of the key, is refused, as those crates do.
    #[test]
    fn agrees_with_the_rustcrypto_curves() {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        for seed in 1..=24u32 {
            let mut secret = [0u8; 32];
            secret[..4].copy_from_slice(&seed.to_be_bytes());
            secret[31] = 1;
            let signing = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let key = p256_key(&signing);
            let d = digest(seed, 32);
            let sig: p256::ecdsa::Signature = signing.sign_prehash(&d).unwrap();
            let bytes = sig.to_bytes().to_vec();
            assert!(key.verify_digest(&d, &bytes), "seed {seed}");
            for bit in (0..512).step_by(7 + seed as usize % 5) {
                let mut changed = bytes.clone();
                changed[bit / 8] ^= 1 << (bit % 8);
                let theirs = p256::ecdsa::Signature::from_slice(&changed)
                    .is_ok_and(|s| signing.verifying_key().verify_prehash(&d, &s).is_ok());
                assert_eq!(key.verify_digest(&d, &changed), theirs, "seed {seed} bit {bit}");
            }
            let mut other = d.clone();
            other[seed as usize % 32] ^= 0x10;
            assert!(!key.verify_digest(&other, &bytes));
            let other_key = p256_key(&p256::ecdsa::SigningKey::from_slice(&[seed as u8 + 1; 32]).unwrap());
            assert!(!other_key.verify_digest(&d, &bytes));

            let mut secret = [0u8; 48];
            secret[..4].copy_from_slice(&seed.to_be_bytes());
            secret[47] = 3;
            let signing = p384::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let key = p384_key(&signing);
            let d = digest(seed, 48);
            let sig: p384::ecdsa::Signature = signing.sign_prehash(&d).unwrap();
            let bytes = sig.to_bytes().to_vec();
            assert!(key.verify_digest(&d, &bytes), "P-384 seed {seed}");
            let mut changed = bytes.clone();
            changed[seed as usize % 96] ^= 1;
            assert!(!key.verify_digest(&d, &changed));
            assert!(!key.verify_digest(&d[..32], &bytes[..64]));
        }
    }

    /// Keys G and -G (private keys 1 and n - 1) drive Shamir's trick through its special cases:
    /// G + Q is 2G (a doubling inside the addition) or the point at infinity.
    #[test]
    fn keys_at_the_base_point_and_its_negation_verify() {
        let n_minus_one = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550");
        let mut one = [0u8; 32];
        one[31] = 1;
        for secret in [one.to_vec(), n_minus_one] {
            let signing = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let key = p256_key(&signing);
            for seed in 0..8 {
                let d = digest(seed, 32);
                let sig: p256::ecdsa::Signature = signing.sign_prehash(&d).unwrap();
                assert!(key.verify_digest(&d, &sig.to_bytes()), "seed {seed}");
            }
        }
    }

    #[test]
    fn points_off_the_curve_and_values_out_of_range_are_refused() {
        let curve = Curve::p256().unwrap();
        let signing = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        let point = signing.verifying_key().to_sec1_point(false);
        let (x, y) = (&point.as_bytes()[1..33], &point.as_bytes()[33..]);
        assert!(EcKey::new(curve, x, y).is_some());
        let mut y1 = y.to_vec();
        y1[31] ^= 1;
        assert!(EcKey::new(curve, x, &y1).is_none());
        assert!(EcKey::new(curve, &[0; 32], &[0; 32]).is_none());
        // x + p is the same field element but not a coordinate.
        let p = hex(P256.p);
        assert!(EcKey::new(curve, &p, y).is_none());
        assert!(EcKey::new(curve, &x[1..], y).is_none());
        assert!(EcKey::new(Curve::p384().unwrap(), x, y).is_none());

        let key = p256_key(&signing);
        let d = digest(1, 32);
        let sig: p256::ecdsa::Signature = signing.sign_prehash(&d).unwrap();
        let good = sig.to_bytes().to_vec();
        assert!(key.signature_in_range(&good));
        let n = hex(P256.n);
        let (r, s) = good.split_at(32);
        for bad in [
            [&[0u8; 32][..], s].concat(),
            [r, &[0u8; 32][..]].concat(),
            [&n[..], s].concat(),
            [r, &n[..]].concat(),
            [r, &[0xff; 32][..]].concat(),
            good[..63].to_vec(),
            [&good[..], &[0]].concat(),
        ] {
            assert!(!key.signature_in_range(&bad));
            assert!(!key.verify_digest(&d, &bad));
        }
    }
}
