//! Signed checkpoints: the log's size and root at a time, signed with Ed25519, so that anyone
//! who keeps one can later ask the log to prove it only grew. The signed body is text in the
//! shape of a C2SP transparency-log checkpoint (origin, size, base64 root), with the time as an
//! extension line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// A checkpoint as published: what it says and who signed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Names the log: a checkpoint of another log never verifies against this one.
    pub origin: String,
    pub size: u64,
    /// Lowercase hex.
    pub root: String,
    /// RFC 3339.
    pub time: String,
    /// The signer's public key, base64 (32 bytes).
    pub public_key: String,
    /// The first 8 bytes of the public key's sha256, hex: a short name for the key.
    pub key_id: String,
    /// Ed25519 over `body()`, base64.
    pub signature: String,
}

/// Why a checkpoint is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is malformed: {0}")]
    Malformed(String),
    #[error("the checkpoint was signed by key {found}, not by the expected key {expected}")]
    OtherKey { expected: String, found: String },
    #[error("the checkpoint's signature does not match what it says: it was altered or forged")]
    BadSignature,
}

/// The text a checkpoint's signature covers.
pub fn body(origin: &str, size: u64, root: &Hash, time: &str) -> String {
    format!("{origin}\n{size}\n{}\ntime {time}\n", B64.encode(root))
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The checkpoint of a tree of `size` leaves with `root`, signed with `key`.
pub fn sign(key: &SigningKey, origin: &str, size: u64, root: &Hash, time: &str) -> Checkpoint {
    let signature = key.sign(body(origin, size, root, time).as_bytes());
    let public = key.verifying_key();
    Checkpoint {
        origin: origin.to_string(),
        size,
        root: hex::encode(root),
        time: time.to_string(),
        public_key: B64.encode(public.as_bytes()),
        key_id: key_id(&public),
        signature: B64.encode(signature.to_bytes()),
    }
}

/// A public key from its base64 form.
pub fn public_key(text: &str) -> Result<VerifyingKey, CheckpointError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| CheckpointError::Malformed(format!("public key: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CheckpointError::Malformed("public key: not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| CheckpointError::Malformed(format!("public key: {e}")))
}

impl Checkpoint {
    /// The root as bytes.
    pub fn root_hash(&self) -> Result<Hash, CheckpointError> {
        let bytes = hex::decode(&self.root)
            .map_err(|e| CheckpointError::Malformed(format!("root: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| CheckpointError::Malformed("root: not 32 bytes".into()))
    }

    /// Checks the signature, with `trusted` (the log's key as the verifier knows it) or, when
    /// none is given, with the key the checkpoint names.
    pub fn verify(&self, trusted: Option<&VerifyingKey>) -> Result<(), CheckpointError> {
        let named = public_key(&self.public_key)?;
        let key = match trusted {
            Some(k) if k != &named => {
                return Err(CheckpointError::OtherKey {
                    expected: key_id(k),
                    found: key_id(&named),
                });
            }
            Some(k) => k,
            None => &named,
        };
        let signature = B64
            .decode(&self.signature)
            .map_err(|e| CheckpointError::Malformed(format!("signature: {e}")))?;
        let signature = Signature::from_slice(&signature)
            .map_err(|e| CheckpointError::Malformed(format!("signature: {e}")))?;
        let root = self.root_hash()?;
        key.verify(
            body(&self.origin, self.size, &root, &self.time).as_bytes(),
            &signature,
        )
        .map_err(|_| CheckpointError::BadSignature)
    }
}

/// A new signing key from the operating system's randomness.
pub fn generate_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's randomness");
    SigningKey::from_bytes(&seed)
}

/// A signing key from its stored form (base64 of the 32-byte seed).
pub fn signing_key(text: &str) -> Result<SigningKey, CheckpointError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| CheckpointError::Malformed(format!("signing key: {e}")))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CheckpointError::Malformed("signing key: not 32 bytes".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A signing key's stored form.
pub fn encode_signing_key(key: &SigningKey) -> String {
    B64.encode(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_to_it_does_not() {
        let key = generate_key();
        let root = crate::merkle::leaf_hash(b"x");
        let c = sign(&key, "signoff.example", 7, &root, "2026-12-01T10:00:00Z");
        assert_eq!(c.verify(None), Ok(()));
        assert_eq!(c.verify(Some(&key.verifying_key())), Ok(()));
        assert_eq!(
            Checkpoint {
                size: 8,
                ..c.clone()
            }
            .verify(None),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(
            Checkpoint {
                time: "2026-12-02T10:00:00Z".into(),
                ..c.clone()
            }
            .verify(None),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(
            Checkpoint {
                root: hex::encode([0u8; 32]),
                ..c.clone()
            }
            .verify(None),
            Err(CheckpointError::BadSignature)
        );
        let other = generate_key();
        assert!(matches!(
            c.verify(Some(&other.verifying_key())),
            Err(CheckpointError::OtherKey { .. })
        ));
        // A forger who signs with their own key and names it is caught by the pinned key.
        let forged = sign(&other, "signoff.example", 7, &root, "2026-12-01T10:00:00Z");
        assert!(matches!(
            forged.verify(Some(&key.verifying_key())),
            Err(CheckpointError::OtherKey { .. })
        ));
        assert_eq!(
            signing_key(&encode_signing_key(&key)).unwrap().to_bytes(),
            key.to_bytes()
        );
    }
}
