//! Canonical JSON (RFC 8785, JSON Canonicalization Scheme) and the sha256 digests built on it:
//! policy hashes and the per-request event hash chain. JCS is a published standard, so anyone
//! can re-verify a history with an off-the-shelf implementation; serializing straight to the
//! canonical form also avoids building a `Value` tree for every event.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash that precedes the first event of every request.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical (RFC 8785) JSON text of `value`.
pub fn to_string<T: Serialize>(value: &T) -> String {
    // Serializing our own types to JSON cannot fail: every map key is a string.
    serde_json_canonicalizer::to_string(value).unwrap_or_default()
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn digest<T: Serialize>(value: &T) -> String {
    let bytes = serde_json_canonicalizer::to_vec(value).unwrap_or_default();
    digest_bytes(&bytes)
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
    fn numbers_follow_rfc_8785() {
        assert_eq!(to_string(&json!([1.0, 0.1, 1e21, -0.0])), "[1,0.1,1e+21,0]");
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
