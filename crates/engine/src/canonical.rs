//! Canonical JSON and the sha256 digests built on it: policy hashes and the per-request event
//! hash chain. Keys are sorted explicitly here rather than relying on `serde_json`'s map order,
//! so that a dependency enabling `preserve_order` can never silently change a hash.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first event of every request.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Serializes `value` with object keys sorted and no insignificant whitespace.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn digest(value: &Value) -> String {
    digest_bytes(to_string(value).as_bytes())
}

/// `sha256:<hex>` of raw bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"d": [3, {"z": null, "y": "x"}], "c": true}});
        assert_eq!(to_string(&v), r#"{"a":{"c":true,"d":[3,{"y":"x","z":null}]},"b":1}"#);
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
