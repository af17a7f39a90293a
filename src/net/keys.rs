//! The node key: an ed25519 libp2p identity persisted in the data dir as
//! `node.key` (libp2p protobuf encoding, mode 0600), so the peer id survives
//! restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// File name of the node key inside the data dir.
pub const NODE_KEY_FILE: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot access node key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key {path} is not a valid libp2p key: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Loads `data_dir/node.key`, generating (and saving) a new ed25519 key if the
/// file does not exist. Creates `data_dir` if needed.
pub fn load_or_generate(data_dir: &Path) -> Result<Keypair, KeyError> {
    let path = data_dir.join(NODE_KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| KeyError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            // Write a private temp file, then rename: a crash never leaves a
            // half-written key behind.
            let tmp = data_dir.join(format!("{NODE_KEY_FILE}.tmp"));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!(path = %path.display(), peer_id = %key.public().to_peer_id(), "generated new node key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(dir.path()).unwrap();
        let b = load_or_generate(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_KEY_FILE), b"junk").unwrap();
        assert!(matches!(
            load_or_generate(dir.path()),
            Err(KeyError::Invalid { .. })
        ));
    }
}
