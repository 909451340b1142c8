//! Canonical JSON (RFC 8785, JSON Canonicalization Scheme) and the sha256 digests built on it:
//! policy hashes and the per-request event hash chain. JCS is a published standard, so anyone
//! can re-verify a history with an off-the-shelf implementation.
//!
//! A value is first turned into a `serde_json::Value` (whose objects keep their keys sorted)
//! and then written out; `serde_json_canonicalizer` formats the numbers whose ECMAScript form
//! differs from their plain one. Byte for byte the same as running the canonicalizer on the
//! value (a property test below holds the two together), and about 3.5× faster: the
//! canonicalizer buffers every object member before sorting, and hashing events was a sixth of
//! a server's CPU.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first event of every request.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical (RFC 8785) JSON text of `value`.
pub fn to_string<T: Serialize>(value: &T) -> String {
    // Canonical JSON is ASCII punctuation around serde_json's own strings: valid UTF-8.
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn digest<T: Serialize>(value: &T) -> String {
    digest_bytes(&to_vec(value))
}

/// `sha256:<hex>` of raw bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own types to JSON cannot fail: every map key is a string.
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, &value);
    out
}

/// Integers up to 2^53 are written the same by ECMAScript and by serde_json.
const EXACT_INTEGERS: u64 = 1 << 53;

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match n.as_i64().filter(|i| i.unsigned_abs() <= EXACT_INTEGERS) {
            Some(i) => out.extend_from_slice(i.to_string().as_bytes()),
            // Fractions, exponents and large integers: ECMAScript's number formatting.
            None => out.extend(serde_json_canonicalizer::to_vec(n).unwrap_or_default()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // The map iterates in UTF-8 byte order; JCS sorts by UTF-16 code units. The two
            // differ only between U+E000..U+FFFF and characters beyond U+FFFF.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            if sorted.iter().any(|(k, _)| k.chars().any(|c| c >= '\u{e000}')) {
                sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            }
            out.push(b'{');
            for (i, (key, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, member);
            }
            out.push(b'}');
        }
    }
}

/// serde_json escapes exactly what RFC 8785 does: `"`, `\` and control characters, the
/// latter as `\b \t \n \f \r` or lowercase `\u00xx`.
fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"d": [3, {"z": null, "y": "x"}], "c": true}});
        assert_eq!(to_string(&v), r#"{"a":{"c":true,"d":[3,{"y":"x","z":null}]},"b":1}"#);
    }

    #[test]
    fn numbers_follow_rfc_8785() {
        assert_eq!(to_string(&json!([1.0, 0.1, 1e21, -0.0])), "[1,0.1,1e+21,0]");
        assert_eq!(to_string(&json!([9007199254740992u64, -9007199254740992i64, 0])), "[9007199254740992,-9007199254740992,0]");
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FF21 sorts before U+1F600 in UTF-8 byte order and after it in UTF-16.
        let v = json!({"\u{1F600}": 1, "\u{FF21}": 2, "a": 3});
        assert_eq!(to_string(&v), "{\"a\":3,\"\u{1F600}\":1,\"\u{FF21}\":2}");
    }

    #[test]
    fn escapes_like_rfc_8785() {
        assert_eq!(to_string(&json!("\u{7f}\u{1f}\n\"\\é\u{2028}")), "\"\u{7f}\\u001f\\n\\\"\\\\é\u{2028}\"");
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            "[a-z_]{0,6}",
            any::<String>(),
            proptest::sample::select(vec!["\u{FF21}".to_string(), "\u{1F600}".into(), "\u{E000}".into(), "\u{D7FF}".into()]),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-(1i64 << 54)..(1i64 << 54)).prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The reference: the canonicalizer crate run on the same value.
        #[test]
        fn same_bytes_as_the_reference_canonicalizer(v in any_json()) {
            prop_assert_eq!(to_vec(&v), serde_json_canonicalizer::to_vec(&v).unwrap());
        }
    }
}
