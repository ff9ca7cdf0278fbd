//! Signature checks lent by the host: Envoy's `verify_signature` foreign function, which runs
//! BoringSSL natively, several times faster than RSA or ECDSA compiled to Wasm.
//!
//! Everything here is plain Rust: the DER encodings the host wants (a SubjectPublicKeyInfo,
//! prepared once per key, and an ECDSA signature), and the protobuf messages of the call
//! (`envoy.source.extensions.common.wasm.VerifySignatureArguments` and `...Result`). The glue
//! only moves bytes. A host answer is used only when it is a well-formed `result: true` or a
//! well-formed refusal; anything else means "no answer" and the key verifies in Rust.

/// A signature check the host offers.
pub trait SignatureHost: std::fmt::Debug {
    /// Whether `signature` is a valid signature of `message` under the DER
    /// SubjectPublicKeyInfo `spki`, with the hash `hash` (`sha256`, `sha384`, `sha512`) and the
    /// key type's default scheme: RSASSA-PKCS1-v1_5 for RSA, ECDSA with a DER signature for EC.
    /// `None` when the host gave no answer; the caller then verifies in Rust.
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], message: &[u8]) -> Option<bool>;
}

/// No host: every signature is verified in Rust (native builds, tests, fuzzing).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustOnly;

impl SignatureHost for RustOnly {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

/// The foreign function's name in Envoy.
pub const FUNCTION: &str = "verify_signature";

// DER tags.
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

// Object identifiers, DER contents only.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]; // 1.2.840.113549.1.1.1
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (P-384), 1.3.132.0.34.
pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Appends one DER element: tag, definite length, contents.
fn element(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
}

/// Appends a non-negative INTEGER from big-endian magnitude bytes, minimally encoded.
fn unsigned_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let digits = magnitude.get(skip..).unwrap_or_default();
    let mut contents = Vec::with_capacity(digits.len() + 1);
    // Zero is one 0x00 byte; a leading 1 bit needs a 0x00 so the number stays positive.
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        contents.push(0);
    }
    contents.extend_from_slice(digits);
    element(out, INTEGER, &contents);
}

fn spki(algorithm: &[u8], key_bits: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key_bits.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key_bits);
    let mut body = Vec::with_capacity(algorithm.len() + bits.len() + 8);
    element(&mut body, SEQUENCE, algorithm);
    element(&mut body, BIT_STRING, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    element(&mut out, SEQUENCE, &body);
    out
}

/// The SubjectPublicKeyInfo of an RSA key (RFC 8017 A.1.1 inside RFC 5280 4.1).
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut algorithm = Vec::new();
    element(&mut algorithm, OID, RSA_ENCRYPTION);
    element(&mut algorithm, NULL, &[]);
    let mut integers = Vec::with_capacity(modulus.len() + exponent.len() + 8);
    unsigned_integer(&mut integers, modulus);
    unsigned_integer(&mut integers, exponent);
    let mut key = Vec::with_capacity(integers.len() + 4);
    element(&mut key, SEQUENCE, &integers);
    spki(&algorithm, &key)
}

/// The SubjectPublicKeyInfo of an EC key (RFC 5480), from its uncompressed SEC1 point.
pub fn ec_spki(curve: &[u8], point: &[u8]) -> Vec<u8> {
    let mut algorithm = Vec::new();
    element(&mut algorithm, OID, EC_PUBLIC_KEY);
    element(&mut algorithm, OID, curve);
    spki(&algorithm, point)
}

/// The DER `Ecdsa-Sig-Value` of a JWS ECDSA signature (`r || s`, two equal halves).
pub fn ecdsa_der(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let mut integers = Vec::with_capacity(fixed.len() + 6);
    unsigned_integer(&mut integers, r);
    unsigned_integer(&mut integers, s);
    let mut out = Vec::with_capacity(integers.len() + 3);
    element(&mut out, SEQUENCE, &integers);
    out
}

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited protobuf field.
fn bytes_field(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// The serialized `VerifySignatureArguments`: `hash_function` = 1, `public_key` = 2,
/// `signature` = 3, `text` = 4.
pub fn encode_arguments(hash: &str, spki: &[u8], signature: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hash.len() + spki.len() + signature.len() + message.len() + 16);
    bytes_field(&mut out, 1, hash.as_bytes());
    bytes_field(&mut out, 2, spki);
    bytes_field(&mut out, 3, signature);
    bytes_field(&mut out, 4, message);
    out
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The verdict in a serialized `VerifySignatureResult` (`result` = 1, a bool; `error` = 2).
/// An empty message is a valid "false" (proto3 leaves default values out). Anything malformed
/// is `None`: no answer.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut at = 0;
    let mut result = false;
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => result = read_varint(bytes, &mut at)? != 0,
            (_, 0) => {
                read_varint(bytes, &mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                at = at.checked_add(len).filter(|end| *end <= bytes.len())?;
            }
            (_, 1) => at = at.checked_add(8).filter(|end| *end <= bytes.len())?,
            (_, 5) => at = at.checked_add(4).filter(|end| *end <= bytes.len())?,
            _ => return None,
        }
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers_are_minimal() {
        let mut out = Vec::new();
        element(&mut out, OID, &[1; 0x7f]);
        assert_eq!(&out[..2], &[OID, 0x7f]);
        out.clear();
        element(&mut out, OID, &[1; 0x80]);
        assert_eq!(&out[..3], &[OID, 0x81, 0x80]);
        out.clear();
        element(&mut out, OID, &[1; 0x1234]);
        assert_eq!(&out[..4], &[OID, 0x82, 0x12, 0x34]);
        for (magnitude, der) in [
            (&[][..], &[INTEGER, 1, 0][..]),
            (&[0, 0], &[INTEGER, 1, 0]),
            (&[0x7f], &[INTEGER, 1, 0x7f]),
            (&[0x80], &[INTEGER, 2, 0, 0x80]),
            (&[0, 0, 0x01, 0x00], &[INTEGER, 2, 0x01, 0x00]),
        ] {
            let mut out = Vec::new();
            unsigned_integer(&mut out, magnitude);
            assert_eq!(out, der, "{magnitude:?}");
        }
    }

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut fixed = [0u8; 64];
        fixed[31] = 1; // r = 1
        fixed[32] = 0x80; // s has its top bit set
        let der = ecdsa_der(&fixed);
        let mut want = vec![SEQUENCE, 3 + 35, INTEGER, 1, 1, INTEGER, 33, 0];
        want.extend_from_slice(&fixed[32..]);
        assert_eq!(der, want);
        // P-384: 48-byte halves with a long SEQUENCE still under 128 bytes.
        let der = ecdsa_der(&[0xff; 96]);
        assert_eq!(&der[..2], &[SEQUENCE, 2 * (2 + 49)]);
    }

    #[test]
    fn spki_encodings_match_known_keys() {
        // The fixed frame of a 2048-bit RSA key with e = 65537 (as `openssl rsa -pubout` writes it).
        let modulus = [0xb0u8; 256];
        let der = rsa_spki(&modulus, &[1, 0, 1]);
        assert_eq!(
            &der[..32],
            &[
                0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
                0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01
            ]
        );
        assert_eq!(der.len(), 294);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 1, 0, 1]);
        let mut point = vec![4u8];
        point.extend_from_slice(&[9; 64]);
        let der = ec_spki(P256, &point);
        assert_eq!(
            &der[..27],
            &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
                0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04
            ]
        );
        assert_eq!(der.len(), 91);
        let mut point = vec![4u8];
        point.extend_from_slice(&[9; 96]);
        assert_eq!(ec_spki(P384, &point).len(), 120);
    }

    #[test]
    fn arguments_and_results_round_trip_the_protobuf_wire_format() {
        let args = encode_arguments("sha256", &[1, 2], &[3; 200], b"m");
        assert_eq!(&args[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&args[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&args[12..15], &[0x1a, 0xc8, 0x01]);
        assert_eq!(&args[args.len() - 3..], &[0x22, 1, b'm']);

        assert_eq!(decode_result(&[]), Some(false));
        assert_eq!(decode_result(&[0x08, 1]), Some(true));
        assert_eq!(decode_result(&[0x08, 1, 0x12, 0]), Some(true));
        assert_eq!(decode_result(&[0x08, 0, 0x12, 3, b'b', b'a', b'd']), Some(false));
        assert_eq!(decode_result(&[0x12, 3, b'b', b'a', b'd']), Some(false));
        // Unknown fields of every wire type are skipped.
        assert_eq!(decode_result(&[0x18, 5, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0x2d, 0, 0, 0, 0, 0x08, 1]), Some(true));
        // Malformed: a truncated varint, a length past the end, a group wire type.
        for bad in [&[0x08][..], &[0x08, 0x80], &[0x12, 5, 1], &[0x0b], &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
            assert_eq!(decode_result(bad), None, "{bad:?}");
        }
    }
}
