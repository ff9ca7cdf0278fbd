//! Unsigned integers modulo an odd modulus, in Montgomery form: exactly what RSA and ECDSA
//! *verification* need (multiply, add, subtract, exponentiate), nothing more.
//!
//! Numbers are little-endian 32-bit limbs, which Wasm multiplies natively (a 64-bit limb would
//! need a 128-bit product that Wasm lacks). Everything handled here is public (keys,
//! signatures, message hashes), so the arithmetic is variable-time by design: it must never see
//! a secret. Every function is total: a value out of range is refused where it enters
//! ([`Modulus::element`]), never by a panic.

use std::cmp::Ordering;

/// Largest modulus handled: 4096 bits, the largest RSA key accepted.
pub const MAX_LIMBS: usize = 128;

/// An odd modulus `m > 1` with its Montgomery constants (`R = 2^(32 * limbs)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modulus {
    m: Vec<u32>,
    /// `-m^-1 mod 2^32`.
    m0_inv: u32,
    /// `R^2 mod m`: multiplying by it enters Montgomery form.
    r2: Vec<u32>,
    /// `R mod m`: one, in Montgomery form.
    one: Vec<u32>,
}

/// Big-endian bytes as limbs, exactly `limbs` of them; `None` if the value needs more.
pub fn from_be_bytes(bytes: &[u8], limbs: usize) -> Option<Vec<u32>> {
    let mut out = vec![0u32; limbs];
    for (i, byte) in bytes.iter().rev().enumerate() {
        if *byte == 0 {
            continue;
        }
        let limb = out.get_mut(i / 4)?;
        *limb |= u32::from(*byte) << (8 * (i % 4));
    }
    Some(out)
}

/// Limbs as exactly `len` big-endian bytes; `None` if the value does not fit.
pub fn to_be_bytes(limbs: &[u32], len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; len];
    for (i, limb) in limbs.iter().enumerate() {
        for k in 0..4 {
            let byte = (limb >> (8 * k)) as u8;
            let index = 4 * i + k;
            if index < len {
                let at = len - 1 - index;
                *out.get_mut(at)? = byte;
            } else if byte != 0 {
                return None;
            }
        }
    }
    Some(out)
}

/// Compares two numbers of the same length.
fn compare(a: &[u32], b: &[u32]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// `a -= b` over equal lengths; returns the borrow out.
fn sub_assign(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(*y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

/// `a += b` over equal lengths; returns the carry out.
fn add_assign(a: &mut [u32], b: &[u32]) -> bool {
    let mut carry = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (s1, c1) = x.overflowing_add(*y);
        let (s2, c2) = s1.overflowing_add(u32::from(carry));
        *x = s2;
        carry = c1 || c2;
    }
    carry
}

/// Number of significant bits.
fn bit_length(a: &[u32]) -> usize {
    match a.iter().rposition(|l| *l != 0) {
        None => 0,
        Some(top) => 32 * top + 32 - a.get(top).map_or(32, |l| l.leading_zeros() as usize),
    }
}

impl Modulus {
    /// The modulus with these big-endian bytes, if it is odd, above 1 and at most
    /// [`MAX_LIMBS`] limbs.
    pub fn new(be: &[u8]) -> Option<Modulus> {
        let significant = be.iter().position(|b| *b != 0).map_or(&[][..], |i| be.get(i..).unwrap_or_default());
        let limbs = significant.len().div_ceil(4);
        if limbs == 0 || limbs > MAX_LIMBS {
            return None;
        }
        let m = from_be_bytes(significant, limbs)?;
        let m0 = *m.first()?;
        if m0 & 1 == 0 || (limbs == 1 && m0 == 1) {
            return None;
        }
        // Newton's iteration for m0^-1 mod 2^32: each step doubles the correct low bits
        // (an odd m0 is its own inverse mod 8, so 3 -> 6 -> 12 -> 24 -> 48).
        let mut inv = m0;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(m0.wrapping_mul(inv)));
        }
        let mut modulus = Modulus { m, m0_inv: inv.wrapping_neg(), r2: Vec::new(), one: Vec::new() };
        modulus.one = modulus.power_of_two(32 * limbs);
        modulus.r2 = modulus.r_squared();
        Some(modulus)
    }

    /// Limbs per element.
    pub fn limbs(&self) -> usize {
        self.m.len()
    }

    /// Significant bits of the modulus.
    pub fn bits(&self) -> usize {
        bit_length(&self.m)
    }

    /// `2^k mod m` (plain form), by doubling from the largest power of two below `m`.
    fn power_of_two(&self, k: usize) -> Vec<u32> {
        let top = self.bits() - 1;
        let mut x = vec![0u32; self.limbs()];
        if k <= top {
            if let Some(limb) = x.get_mut(k / 32) {
                *limb = 1 << (k % 32);
            }
            return x;
        }
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in top..k {
            self.double_assign(&mut x);
        }
        x
    }

    /// `R^2 mod m` from `R mod m`: a Montgomery square of `2^a R` is `2^(2a) R`, so square
    /// and double along the bits of `32 * limbs` (a dozen steps instead of thousands of
    /// doublings).
    fn r_squared(&self) -> Vec<u32> {
        let target = 32 * self.limbs();
        let mut x = self.one.clone();
        self.double_assign(&mut x); // 2^1 R
        let bits = usize::BITS - target.leading_zeros();
        for i in (0..bits.saturating_sub(1)).rev() {
            x = self.mul(&x, &x);
            if (target >> i) & 1 == 1 {
                self.double_assign(&mut x);
            }
        }
        x
    }

    /// `x = 2x mod m` for `x < m`.
    fn double_assign(&self, x: &mut [u32]) {
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        if carry == 1 || compare(x, &self.m) != Ordering::Less {
            sub_assign(x, &self.m);
        }
    }

    /// The big-endian value as an element in plain form, if it is below `m`.
    pub fn element(&self, be: &[u8]) -> Option<Vec<u32>> {
        let x = from_be_bytes(be, self.limbs())?;
        (compare(&x, &self.m) == Ordering::Less).then_some(x)
    }

    /// `x mod m` for any `x < 2m` given in big-endian bytes (a hash, a coordinate of
    /// another field of about the same size); `None` if `x >= 2m` or it is too long.
    pub fn reduce_once(&self, be: &[u8]) -> Option<Vec<u32>> {
        let mut x = from_be_bytes(be, self.limbs())?;
        if compare(&x, &self.m) != Ordering::Less {
            sub_assign(&mut x, &self.m);
            if compare(&x, &self.m) != Ordering::Less {
                return None;
            }
        }
        Some(x)
    }

    /// Plain form into Montgomery form (`x R mod m`).
    pub fn to_montgomery(&self, x: &[u32]) -> Vec<u32> {
        self.mul(x, &self.r2)
    }

    /// Montgomery form back to plain form.
    pub fn from_montgomery(&self, x: &[u32]) -> Vec<u32> {
        let mut one = vec![0u32; self.limbs()];
        if let Some(first) = one.first_mut() {
            *first = 1;
        }
        self.mul(x, &one)
    }

    /// One in Montgomery form.
    pub fn one(&self) -> Vec<u32> {
        self.one.clone()
    }

    /// Montgomery product `a b R^-1 mod m` of two elements below `m` (CIOS).
    // Indexing is bounded by construction: `n = self.limbs() <= MAX_LIMBS`, `t` has
    // `MAX_LIMBS + 2` limbs, `self.m` has exactly `n`, and `a` and `b` are read through iterators.
    #[allow(clippy::indexing_slicing)]
    pub fn mul(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let n = self.limbs();
        let mut t = [0u32; MAX_LIMBS + 2];
        for &ai in a.iter().take(n) {
            let ai = u64::from(ai);
            // t += ai * b
            let mut carry = 0u64;
            for (tj, &bj) in t.iter_mut().zip(b.iter()).take(n) {
                let sum = u64::from(*tj) + ai * u64::from(bj) + carry;
                *tj = sum as u32;
                carry = sum >> 32;
            }
            let sum = u64::from(t[n]) + carry;
            t[n] = sum as u32;
            t[n + 1] = (sum >> 32) as u32;
            // t = (t + q m) / 2^32, with q chosen so that the low limb becomes zero.
            let q = u64::from(t[0].wrapping_mul(self.m0_inv));
            let mut carry = (u64::from(t[0]) + q * u64::from(self.m[0])) >> 32;
            for j in 1..n {
                let sum = u64::from(t[j]) + q * u64::from(self.m[j]) + carry;
                t[j - 1] = sum as u32;
                carry = sum >> 32;
            }
            let sum = u64::from(t[n]) + carry;
            t[n - 1] = sum as u32;
            t[n] = t[n + 1] + (sum >> 32) as u32;
        }
        // The result is below 2m: one conditional subtraction.
        let mut out = t[..n].to_vec();
        if t[n] != 0 || compare(&out, &self.m) != Ordering::Less {
            sub_assign(&mut out, &self.m);
        }
        out
    }

    /// `a + b mod m`.
    pub fn add(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = a.to_vec();
        let carry = add_assign(&mut out, b);
        if carry || compare(&out, &self.m) != Ordering::Less {
            sub_assign(&mut out, &self.m);
        }
        out
    }

    /// `a - b mod m`.
    pub fn sub(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = a.to_vec();
        if sub_assign(&mut out, b) {
            add_assign(&mut out, &self.m);
        }
        out
    }

    /// `base^exponent` in Montgomery form (base in Montgomery form, exponent big-endian).
    pub fn pow(&self, base: &[u32], exponent: &[u8]) -> Vec<u32> {
        let mut acc = self.one();
        for byte in exponent {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                if (byte >> bit) & 1 == 1 {
                    acc = self.mul(&acc, base);
                }
            }
        }
        acc
    }

    /// The modulus minus two, big-endian: the exponent of an inverse for a prime modulus.
    pub fn minus_two_be(&self) -> Vec<u8> {
        let mut two = vec![0u32; self.limbs()];
        if let Some(first) = two.first_mut() {
            *first = 2;
        }
        let mut e = self.m.clone();
        sub_assign(&mut e, &two);
        to_be_bytes(&e, 4 * self.limbs()).unwrap_or_default()
    }
}

/// Whether `a` is zero.
pub fn is_zero(a: &[u32]) -> bool {
    a.iter().all(|l| *l == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain schoolbook `a * b mod m` for small numbers held in u128, as the reference.
    fn modmul(a: u128, b: u128, m: u128) -> u128 {
        let (mut result, mut a, mut b) = (0u128, a % m, b);
        while b > 0 {
            if b & 1 == 1 {
                result = (result + a) % m;
            }
            a = (a + a) % m;
            b >>= 1;
        }
        result
    }

    fn be(x: u128) -> Vec<u8> {
        x.to_be_bytes().to_vec()
    }

    fn value(limbs: &[u32]) -> u128 {
        limbs.iter().rev().fold(0u128, |acc, l| (acc << 32) | u128::from(*l))
    }

    #[test]
    fn montgomery_arithmetic_matches_plain_arithmetic() {
        // Moduli of one to three limbs, with high and low top limbs.
        let moduli: [u128; 6] =
            [3, 0xffff_fffb, 0x1_0000_000f, 0xffff_ffff_ffff_ffc5, 0x1_0000_0000_0000_0000_0000_0001, (1 << 95) - 1];
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            u128::from(seed)
        };
        for m in moduli {
            let modulus = Modulus::new(&be(m)).unwrap();
            let limbs = modulus.limbs();
            for _ in 0..200 {
                let (a, b) = (((next() << 64) | next()) % m, ((next() << 64) | next()) % m);
                let (am, bm) = (modulus.element(&be(a)).unwrap(), modulus.element(&be(b)).unwrap());
                let (ma, mb) = (modulus.to_montgomery(&am), modulus.to_montgomery(&bm));
                assert_eq!(value(&modulus.from_montgomery(&ma)), a);
                assert_eq!(value(&modulus.from_montgomery(&modulus.mul(&ma, &mb))), modmul(a, b, m), "{a}*{b} mod {m}");
                assert_eq!(value(&modulus.add(&am, &bm)), (a + b) % m);
                assert_eq!(value(&modulus.sub(&am, &bm)), (a + m - b) % m);
                let e = next() % 1000;
                let mut expected = 1 % m;
                for _ in 0..e {
                    expected = modmul(expected, a, m);
                }
                let got = modulus.from_montgomery(&modulus.pow(&ma, &(e as u16).to_be_bytes()));
                assert_eq!(value(&got), expected, "{a}^{e} mod {m}");
                assert_eq!(got.len(), limbs);
            }
        }
    }

    #[test]
    fn inverse_by_fermat_for_a_prime() {
        let p: u128 = (1 << 89) - 1; // a Mersenne prime
        let modulus = Modulus::new(&be(p)).unwrap();
        for a in [1u128, 2, 3, 12345, p - 1, p / 3] {
            let am = modulus.to_montgomery(&modulus.element(&be(a)).unwrap());
            let inv = modulus.pow(&am, &modulus.minus_two_be());
            assert_eq!(value(&modulus.from_montgomery(&modulus.mul(&am, &inv))), 1, "{a}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused_not_wrapped() {
        assert!(Modulus::new(&[]).is_none());
        assert!(Modulus::new(&[0, 0]).is_none());
        assert!(Modulus::new(&[1]).is_none());
        assert!(Modulus::new(&[4]).is_none());
        assert!(Modulus::new(&vec![0xff; 4 * MAX_LIMBS + 1]).is_none());
        assert!(Modulus::new(&[&[0u8; 10][..], &vec![0xff; 4 * MAX_LIMBS]].concat()).is_some());
        let m = Modulus::new(&[0x01, 0x00, 0x00, 0x00, 0x0f]).unwrap(); // 2^32 + 15
        assert_eq!(m.limbs(), 2);
        assert!(m.element(&[0x01, 0x00, 0x00, 0x00, 0x0f]).is_none(), "m itself");
        assert!(m.element(&[0x01, 0x00, 0x00, 0x00, 0x0e]).is_some());
        assert!(m.element(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_none(), "longer than the modulus");
        assert!(m.element(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 5]).is_some(), "leading zeros");
        assert_eq!(m.reduce_once(&[0x01, 0x00, 0x00, 0x00, 0x10]).map(|v| value(&v)), Some(1));
        assert!(m.reduce_once(&[0x02, 0x00, 0x00, 0x00, 0x1e]).is_none(), "2m");
        assert_eq!(to_be_bytes(&[0x0102, 0], 2), Some(vec![1, 2]));
        assert_eq!(to_be_bytes(&[0x010203, 0], 2), None);
        assert_eq!(to_be_bytes(&[0, 1], 5), Some(vec![1, 0, 0, 0, 0]));
        assert_eq!(to_be_bytes(&[0, 1], 4), None);
    }
}
