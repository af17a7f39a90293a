//! Authority signing keys: the ed25519 key an authority signs its blocks
//! with, the well-known dev key, and the authority key file.
//!
//! Owns the key file format and its creation and loading (the one place in
//! `chain` besides genesis files that touches the file system). It must not
//! decide whether a key may produce: that is the genesis' authority list.
//!
//! # Authority key file
//!
//! A small TOML file, created by `concord authority new` with mode 0600 and
//! never overwritten:
//!
//! ```toml
//! # Concord authority key. Keep this file secret: whoever holds it can sign blocks.
//! public_key = "<64 hex digits: the ed25519 public key, as in genesis files>"
//! secret_seed = "<64 hex digits: the 32-byte ed25519 secret seed (RFC 8032)>"
//! ```
//!
//! Both keys are required; on load the public key must be the one the seed
//! derives, so a file garbled by hand is caught before it signs anything.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::chain::{Hash, PublicKey, Signature};

/// Public seed phrase of the dev authority (blake3 of it is the secret seed).
pub(crate) const DEV_SEED_PHRASE: &[u8] = b"concord dev authority //Alice";

/// An authority's signing key (ed25519).
#[derive(Clone)]
pub struct AuthorityKey {
    key: SigningKey,
}

impl fmt::Debug for AuthorityKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityKey({})", self.public())
    }
}

/// Errors creating or loading an authority key file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityKeyError {
    #[error("authority key file {path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot create authority key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read authority key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid authority key file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The TOML shape of a key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    public_key: String,
    secret_seed: String,
}

impl AuthorityKey {
    /// The well-known dev authority, derived from a fixed public seed (like Substrate's //Alice).
    /// Never use it on a real network.
    pub fn dev() -> AuthorityKey {
        AuthorityKey::from_seed(*blake3::hash(DEV_SEED_PHRASE).as_bytes())
    }

    pub fn from_seed(seed: [u8; 32]) -> AuthorityKey {
        AuthorityKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> AuthorityKey {
        AuthorityKey {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, block_hash: &Hash) -> Signature {
        Signature(self.key.sign(&block_hash.0).to_bytes())
    }

    /// The key file text (see the module docs).
    fn to_file_text(&self) -> String {
        let file = KeyFile {
            public_key: self.public().to_hex(),
            secret_seed: hex::encode(self.key.to_bytes()),
        };
        // Two strings always serialize.
        let body = toml::to_string(&file).unwrap_or_default();
        format!("# Concord authority key. Keep this file secret: whoever holds it can sign blocks.\n{body}")
    }

    /// Generates a new key and writes it to `path`, which must not exist:
    /// the file is created exclusively (O_EXCL, so two concurrent calls
    /// cannot both win) with mode 0600 from the start, so the secret is never
    /// readable by others, not even for a moment.
    pub fn generate_to(path: &Path) -> Result<AuthorityKey, AuthorityKeyError> {
        let key = AuthorityKey::generate();
        key.write_new(path)?;
        Ok(key)
    }

    /// Writes this key to a new file at `path` (see [`AuthorityKey::generate_to`]).
    pub fn write_new(&self, path: &Path) -> Result<(), AuthorityKeyError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                AuthorityKeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                AuthorityKeyError::Create {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let written = file
            .write_all(self.to_file_text().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            // A half-written key must not be mistaken for a key later; the
            // file is ours (we created it exclusively), so removing it is safe.
            let _ = std::fs::remove_file(path);
            return Err(AuthorityKeyError::Create {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(())
    }

    /// Reads a key file and checks that its public key is the seed's.
    pub fn load(path: &Path) -> Result<AuthorityKey, AuthorityKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthorityKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file_text(&text).map_err(|reason| AuthorityKeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses key file text; the error is one line without the file name.
    fn from_file_text(text: &str) -> Result<AuthorityKey, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(file.secret_seed.trim(), &mut seed)
            .map_err(|e| format!("secret_seed is not 64 hex digits: {e}"))?;
        let public = PublicKey::from_hex(file.public_key.trim())
            .map_err(|e| format!("public_key is not 64 hex digits: {e}"))?;
        let key = AuthorityKey::from_seed(seed);
        if key.public() != public {
            return Err(format!(
                "public_key {public} is not the key of its secret_seed (that would be {})",
                key.public()
            ));
        }
        Ok(key)
    }
}

/// The permission bits of `path` that let its group or others read or write
/// it (`None` when there are none, or off Unix). A key file that others can
/// read is a leaked key; callers warn about it.
pub fn loose_permissions(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o077;
        (mode != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let key = AuthorityKey::generate_to(&path).unwrap();
        let back = AuthorityKey::load(&path).unwrap();
        assert_eq!(back.public(), key.public());
        let h = Hash::digest(b"x");
        assert_eq!(back.sign(&h), key.sign(&h));
        assert_eq!(loose_permissions(&path), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("public_key = \"{}\"", key.public())));
        assert_ne!(
            AuthorityKey::generate().public(),
            key.public(),
            "keys are random"
        );
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        std::fs::write(&path, "precious").unwrap();
        let err = AuthorityKey::generate_to(&path).unwrap_err();
        assert!(matches!(err, AuthorityKeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("a.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let err = AuthorityKey::generate_to(&dir.path().join("no/such/dir.key")).unwrap_err();
        assert!(matches!(err, AuthorityKeyError::Create { .. }), "{err}");
    }

    #[test]
    fn missing_and_garbled_files_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let err = AuthorityKey::load(&missing).unwrap_err();
        assert!(matches!(err, AuthorityKeyError::Read { .. }));
        assert!(err.to_string().contains("missing.key"));

        let good = AuthorityKey::from_seed([5; 32]).to_file_text();
        let other = AuthorityKey::from_seed([6; 32]).public().to_hex();
        let cases = [
            ("junk", "this is not toml =".to_string()),
            ("empty", String::new()),
            ("short-seed", good.replace(&hex::encode([5u8; 32]), "0505")),
            (
                "mismatch",
                good.replace(&AuthorityKey::from_seed([5; 32]).public().to_hex(), &other),
            ),
            ("extra-key", format!("{good}colour = \"red\"\n")),
        ];
        for (name, text) in cases {
            let path = dir.path().join(format!("{name}.key"));
            std::fs::write(&path, text).unwrap();
            let err = AuthorityKey::load(&path).unwrap_err();
            assert!(
                matches!(err, AuthorityKeyError::Invalid { .. }),
                "{name}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{name}.key")), "{name}: {msg}");
            assert!(!msg.contains('\n'), "{name}: {msg}");
            assert!(
                !msg.contains(&hex::encode([5u8; 32])),
                "{name}: secret in {msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        AuthorityKey::generate_to(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(loose_permissions(&path), Some(0o044));
        AuthorityKey::load(&path).unwrap();
    }
}
