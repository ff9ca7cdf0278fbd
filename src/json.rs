//! Strict JSON parsing for untrusted documents (token headers and claims, JWKS, config).
//!
//! Same as `serde_json::Value`, except that an object with a repeated member name is an error at
//! any depth: two parsers that pick different duplicates is how claims get smuggled.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `bytes` as one JSON value, refusing duplicate object members.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let Strict(value) = serde_json::from_slice(bytes)?;
    Ok(value)
}

/// The members of a JWKS document's `keys` array, each still unparsed (so that one bad key can be
/// skipped without losing the others). The document must be an object with exactly one `keys`
/// member, an array; its other members are ignored. Only the first `max_keys` members are kept:
/// the count says how many there were, so a document of millions of `0`s costs no memory.
///
/// Like [`parse_strict`], this reads the document through `deserialize_any` with visitors that
/// answer every kind of value themselves: serde's typed paths would describe a wrong value in the
/// error ("invalid type: floating point `1.5`"), which links float formatting into the .wasm.
pub fn jwks_keys(bytes: &[u8], max_keys: usize) -> Result<(Vec<&RawValue>, usize), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let keys = DocumentVisitor(max_keys).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((keys.members, keys.count))
}

/// A string from an untrusted document made safe for a log line or an error message: control
/// and non-ASCII characters escaped (`\n`, `\u{202e}`), at most `max_chars` characters kept.
pub fn printable(text: &str, max_chars: usize) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).take(max_chars + 1).collect();
    if escaped.chars().count() > max_chars {
        let kept: String = escaped.chars().take(max_chars).collect();
        format!("{kept}...")
    } else {
        escaped
    }
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v).map(|n| Strict(Value::Number(n))).ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Strict(Value::Object(members)))
    }
}

/// Visitor methods that refuse the value kinds a visitor does not want, in words.
macro_rules! refuse_scalars {
    ($what:literal) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom($what))
        }
    };
}

/// Reads the document (an object) and keeps at most `.0` members of its `keys`.
struct DocumentVisitor(usize);

impl<'de> DeserializeSeed<'de> for DocumentVisitor {
    type Value = Keys<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Keys<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWKS object")
    }
    refuse_scalars!("the document is not a JSON object");
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom("the document is not a JSON object"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = None;
        while let Some(name) = map.next_key::<String>()? {
            if name != "keys" {
                map.next_value::<IgnoredAny>()?;
            } else if keys.is_some() {
                return Err(de::Error::custom("duplicate member \"keys\""));
            } else {
                keys = Some(map.next_value_seed(KeysVisitor(self.0))?);
            }
        }
        keys.ok_or_else(|| de::Error::custom("no `keys` member"))
    }
}

struct Keys<'a> {
    members: Vec<&'a RawValue>,
    count: usize,
}

/// Reads `keys` (an array), keeping at most `.0` members and counting the rest.
struct KeysVisitor(usize);

impl<'de> DeserializeSeed<'de> for KeysVisitor {
    type Value = Keys<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Keys<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of keys")
    }
    refuse_scalars!("`keys` is not an array");
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom("`keys` is not an array"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while members.len() < self.0 {
            match seq.next_element::<&'de RawValue>()? {
                Some(member) => members.push(member),
                None => return Ok(Keys { count: members.len(), members }),
            }
        }
        let mut count = members.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Keys { members, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"exp":1,"exp":2}}"#,
            r#"[{"k":"v","k":"v"}]"#,
            r#"{"a":1,"b":{"c":[{"d":1,"d":1}]}}"#,
        ] {
            assert!(parse_strict(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn parses_what_serde_json_parses() {
        for doc in [r#"{"a":1,"b":[1,2.5,"x",null,true]}"#, "[]", "1e300", r#""\u00e9""#] {
            let strict = parse_strict(doc.as_bytes()).ok();
            let plain: Option<Value> = serde_json::from_str(doc).ok();
            assert_eq!(strict, plain, "{doc}");
        }
    }

    #[test]
    fn jwks_keys_takes_the_keys_array_and_nothing_else() {
        let doc = br#"{"other":[1,{"a":1,"a":2}],"keys":[{"kty":"RSA"}, 7, {"x":1,"x":2}]}"#;
        let (keys, count) = jwks_keys(doc, 10).unwrap();
        let raw: Vec<&str> = keys.iter().map(|k| k.get()).collect();
        assert_eq!((raw.as_slice(), count), ([r#"{"kty":"RSA"}"#, "7", r#"{"x":1,"x":2}"#].as_slice(), 3));
        assert!(jwks_keys(br#"{"keys":[]}"#, 10).is_ok_and(|(keys, count)| keys.is_empty() && count == 0));
        // Beyond the limit members are counted, not kept, and must still be valid JSON.
        let (kept, count) = jwks_keys(br#"{"keys":[1,2,3,{"a":[4]},5]}"#, 2).unwrap();
        assert_eq!((kept.len(), count), (2, 5));
        assert!(jwks_keys(br#"{"keys":[1,2,3,{"a":[4}]}"#, 2).is_err());
        for doc in [
            "[]",
            "1.5",
            "null",
            r#""keys""#,
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":1e400}"#,
            r#"{"keys":[],"keys":[]}"#,
            r#"{"keys":[1,]}"#,
            r#"{"keys":[]} x"#,
            "",
        ] {
            assert!(jwks_keys(doc.as_bytes(), 10).is_err(), "{doc}");
        }
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("kid-1", 10), "kid-1");
        assert_eq!(printable("a\nb", 10), "a\\nb");
        assert_eq!(printable("\u{202e}x", 20), "\\u{202e}x");
        assert_eq!(printable("abcdef", 3), "abc...");
        assert_eq!(printable("", 3), "");
    }

    #[test]
    fn refuses_trailing_garbage_and_bad_utf8() {
        assert!(parse_strict(b"{} x").is_err());
        assert!(parse_strict(b"\"\xff\"").is_err());
        assert!(parse_strict(b"").is_err());
    }
}
