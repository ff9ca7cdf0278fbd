//! Differential: tokengate's Montgomery arithmetic (what RSA and ECDSA verification stand on)
//! against num-bigint, for any odd modulus up to 4096 bits and any operands below it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use num_bigint::BigUint;
use tokengate::crypto::bignum::{self, Modulus};

fuzz_target!(|data: &[u8]| {
    // [modulus length][modulus][a and b, each as long as the modulus][exponent: the rest, <= 8 bytes]
    let Some((&len, rest)) = data.split_first() else { return };
    let len = usize::from(len) % 64 + 1;
    let len = if rest.first().is_some_and(|b| b & 1 == 1) { len * 8 } else { len };
    if rest.len() < 3 * len {
        return;
    }
    let (m_be, rest) = rest.split_at(len);
    let (a_be, rest) = rest.split_at(len);
    let (b_be, e_be) = rest.split_at(len);
    let e_be = &e_be[..e_be.len().min(8)];
    let Some(modulus) = Modulus::new(m_be) else {
        let m = BigUint::from_bytes_be(m_be);
        assert!(m.bits() <= 1 || !m.bit(0) || m.bits() > 4096, "refused a usable modulus");
        return;
    };
    let m = BigUint::from_bytes_be(m_be);
    let (a, b) = (BigUint::from_bytes_be(a_be) % &m, BigUint::from_bytes_be(b_be) % &m);
    let limbs = modulus.limbs();
    let element = |x: &BigUint| modulus.element(&x.to_bytes_be()).expect("below m");
    let value = |limbs_: &[u32]| BigUint::from_bytes_be(&bignum::to_be_bytes(limbs_, 4 * limbs).expect("fits"));
    let (am, bm) = (modulus.to_montgomery(&element(&a)), modulus.to_montgomery(&element(&b)));
    assert_eq!(value(&modulus.from_montgomery(&modulus.mul(&am, &bm))), (&a * &b) % &m);
    assert_eq!(value(&modulus.from_montgomery(&modulus.add(&am, &bm))), (&a + &b) % &m);
    assert_eq!(value(&modulus.from_montgomery(&modulus.sub(&am, &bm))), (&a + &m - &b) % &m);
    let e = BigUint::from_bytes_be(e_be);
    assert_eq!(value(&modulus.from_montgomery(&modulus.pow(&am, e_be))), a.modpow(&e, &m));
    // Values at or above m never enter.
    assert!(modulus.element(m_be).is_none());
});
