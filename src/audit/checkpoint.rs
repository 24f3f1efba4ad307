//! Signed checkpoints: an Ed25519 signature over (seq, hash, time) of the record just before the
//! checkpoint. Someone who can rewrite the log but lacks the private key cannot make a rewritten
//! history verify up to the last checkpoint, even by re-hashing every line.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// Domain separation for checkpoint signatures.
pub const SIGNATURE_DOMAIN: &[u8] = b"sustainbot-checkpoint-v1\n";

/// The exact bytes a checkpoint signs.
pub fn message(covered_seq: u64, covered_hash: &str, signed_at: &str) -> Vec<u8> {
    let mut message = SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(format!("{covered_seq}\n{covered_hash}\n{signed_at}").as_bytes());
    message
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0} must hold 64 hexadecimal characters (32 bytes)")]
    Format(PathBuf),
    #[error("public key in {0} is not a valid Ed25519 key")]
    InvalidPublicKey(PathBuf),
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no random source: {0}")]
    Random(String),
}

fn read_32(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeyFileError::Format(path.to_owned()))?;
    bytes
        .try_into()
        .map_err(|_| KeyFileError::Format(path.to_owned()))
}

/// The server's signing key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(public {})", self.public_hex())
    }
}

impl Signer {
    /// Reads a private key file written by `sustainbot audit keygen` (hex of the 32-byte seed).
    pub fn from_file(path: &Path) -> Result<Signer, KeyFileError> {
        Ok(Signer {
            key: SigningKey::from_bytes(&read_32(path)?),
        })
    }

    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Hex of the signature over [`message`].
    pub fn sign(&self, covered_seq: u64, covered_hash: &str, signed_at: &str) -> String {
        hex::encode(
            self.key
                .sign(&message(covered_seq, covered_hash, signed_at))
                .to_bytes(),
        )
    }
}

/// A public key to check checkpoints against.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    pub fn from_file(path: &Path) -> Result<PublicKey, KeyFileError> {
        let key = VerifyingKey::from_bytes(&read_32(path)?)
            .map_err(|_| KeyFileError::InvalidPublicKey(path.to_owned()))?;
        Ok(PublicKey { key })
    }

    pub fn hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Whether `signature_hex` is this key's signature over the checkpoint fields.
    pub fn verifies(
        &self,
        covered_seq: u64,
        covered_hash: &str,
        signed_at: &str,
        signature_hex: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(signature_hex) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        self.key
            .verify_strict(
                &message(covered_seq, covered_hash, signed_at),
                &Signature::from_bytes(&bytes),
            )
            .is_ok()
    }
}

/// Writes a new key pair into `dir`: `audit-signing.key` (private, mode 0600) and
/// `audit-signing.pub`. Refuses to overwrite an existing private key.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    let signer = Signer::from_seed(seed);
    std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let private = dir.join("audit-signing.key");
    let public = dir.join("audit-signing.pub");
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyFileError::Write { path, source }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&private).map_err(write_err(&private))?;
    std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(seed)).as_bytes())
        .map_err(write_err(&private))?;
    std::fs::write(&public, format!("{}\n", signer.public_hex())).map_err(write_err(&public))?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_public_key_only_for_the_same_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keygen(dir.path()).unwrap();
        assert!(public
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .contains("pub"));
        let signer = Signer::from_file(&private).unwrap();
        let key = PublicKey::from_file(&public).unwrap();
        assert_eq!(key.hex(), signer.public_hex());
        let signature = signer.sign(41, "sha256:ab", "2026-01-01T00:00:00Z");
        assert!(key.verifies(41, "sha256:ab", "2026-01-01T00:00:00Z", &signature));
        assert!(!key.verifies(42, "sha256:ab", "2026-01-01T00:00:00Z", &signature));
        assert!(!key.verifies(41, "sha256:ac", "2026-01-01T00:00:00Z", &signature));
        assert!(!key.verifies(41, "sha256:ab", "2026-01-01T00:00:00Z", "00"));
    }

    #[test]
    fn keygen_refuses_to_overwrite_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path()).unwrap();
        assert!(keygen(dir.path()).is_err());
    }
}
