//! The master key: it seals the secrets the metadata store keeps (Redis
//! passwords, link-signing keys) with AES-256-GCM, so that a copy of the
//! database alone reveals none of them. The key itself never enters the
//! database: it comes from `master_key` (in practice the environment variable
//! `RDBVAULT_MASTER_KEY`) or from `master_key_file`, which is generated, 0600,
//! at first start when absent. The database records only the key's id, so a
//! node given another key refuses to start instead of failing on every
//! password later (see `Meta::connect`).
//!
//! A sealed value reads `<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`; its
//! associated data names the column and the row it belongs to, so a sealed
//! value copied into another row does not open.
//!
//! Rotation (`rdbvault keys rotate`) writes the new key beside the file as
//! `<file>.next`, re-seals every value in one transaction, then renames the
//! new key over the old. A crash in between leaves both files; the next start
//! keeps whichever the database names (`Keyring::settle`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::Config;

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("master key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata's secrets are sealed with master key {sealed_with}, and this node has {ours}: \
         give every node the same master key (master_key_file or RDBVAULT_MASTER_KEY)"
    )]
    WrongKey { sealed_with: String, ours: String },
    #[error("a sealed {what} does not open with master key {key_id} (tampered with, or moved)")]
    Unseal { what: String, key_id: String },
}

/// One AES-256-GCM key and its public id.
struct MasterKey {
    id: String,
    aead: LessSafeKey,
    /// The file it was read from, if any (`None`: given as a value).
    file: Option<PathBuf>,
}

impl MasterKey {
    fn from_bytes(
        bytes: &[u8],
        file: Option<PathBuf>,
        origin: &str,
    ) -> Result<MasterKey, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        if bytes.len() != KEY_LEN {
            return Err(invalid(format!(
                "must be {KEY_LEN} bytes (base64), found {}",
                bytes.len()
            )));
        }
        let aead = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| invalid("not an AES-256 key".into()))?;
        Ok(MasterKey {
            id: key_id(bytes),
            aead: LessSafeKey::new(aead),
            file,
        })
    }

    fn parse(text: &str, file: Option<PathBuf>, origin: &str) -> Result<MasterKey, KeyError> {
        let bytes = BASE64.decode(text.trim()).map_err(|e| KeyError::Invalid {
            origin: origin.to_string(),
            reason: format!("not base64: {e}"),
        })?;
        MasterKey::from_bytes(&bytes, file, origin)
    }

    fn read(path: &Path) -> Result<MasterKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        MasterKey::parse(&text, Some(path.to_path_buf()), &path.display().to_string())
    }
}

/// Public and stable: an HMAC of a constant under the key, so it names the
/// key without saying anything about it.
fn key_id(key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(b"rdbvault master key id");
    let tag = mac.finalize().into_bytes();
    format!("mk-{}", hex::encode(&tag[..8]))
}

fn new_key_text() -> String {
    let mut bytes = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}\n", BASE64.encode(bytes))
}

/// Writes a key file readable by its owner only, flushed to disk before
/// anything is sealed with it. The file appears whole or not at all (a hard
/// link of a finished temporary file), and never replaces one: nodes starting
/// together on one key file all end up with the first one written.
fn write_key_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written.map_err(io)?;
    sync_parent(path).map_err(io)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn next_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// The keys a node holds: the one that seals, and (only during a rotation)
/// the other that may still be named by the database.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<MasterKey>>,
    current: usize,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.id())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// The node's key: `master_key` if set, else `master_key_file` (default
    /// `data_dir/master.key`), generated there when absent. A `<file>.next`
    /// left by an interrupted rotation is held too, until `settle`.
    pub fn load(config: &Config) -> Result<Keyring, KeyError> {
        if let Some(value) = config.master_key.as_deref().filter(|v| !v.is_empty()) {
            return Ok(Keyring::single(MasterKey::parse(
                value,
                None,
                "master_key (RDBVAULT_MASTER_KEY)",
            )?));
        }
        let path = config.master_key_path();
        if !path.exists() {
            write_key_file(&path, &new_key_text())?;
            tracing::warn!(file = %path.display(),
                "generated a master key: back it up apart from the database, \
                 without it no Redis password or link key can be read");
        }
        let mut keys = vec![MasterKey::read(&path)?];
        let next = next_path(&path);
        if next.exists() {
            keys.push(MasterKey::read(&next)?);
        }
        Ok(Keyring {
            keys: Arc::new(keys),
            current: 0,
        })
    }

    /// A key that lives in memory only (tests, tools).
    pub fn ephemeral() -> Keyring {
        let key =
            MasterKey::parse(&new_key_text(), None, "generated").expect("a fresh key is valid");
        Keyring::single(key)
    }

    fn single(key: MasterKey) -> Keyring {
        Keyring {
            keys: Arc::new(vec![key]),
            current: 0,
        }
    }

    /// The id of the key that seals.
    pub fn id(&self) -> &str {
        &self.keys[self.current].id
    }

    /// The same keys, sealing with the one the database names (`None`: this
    /// node does not hold it).
    pub(crate) fn adopt(&self, key_id: &str) -> Option<Keyring> {
        let current = self.keys.iter().position(|k| k.id == key_id)?;
        Some(Keyring {
            keys: self.keys.clone(),
            current,
        })
    }

    /// Finishes or undoes an interrupted rotation on disk, once the database
    /// said which key it uses: the chosen key ends up in the key file, the
    /// other is removed.
    pub fn settle(&self) -> Result<(), KeyError> {
        if self.keys.len() < 2 {
            return Ok(());
        }
        let (Some(main), Some(next)) = (&self.keys[0].file, &self.keys[1].file) else {
            return Ok(());
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        if self.current == 1 {
            std::fs::rename(next, main).map_err(io(main))?;
            tracing::warn!(file = %main.display(), "finished an interrupted master key rotation");
        } else {
            std::fs::remove_file(next).map_err(io(next))?;
            tracing::warn!(file = %next.display(), "removed the key of a rotation that did not happen");
        }
        sync_parent(main).map_err(io(main))
    }

    /// Seals `plaintext` as the value of `column` in row `row`.
    pub(crate) fn seal(&self, column: &str, row: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[self.current];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = plaintext.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(column, row)),
                &mut buf,
            )
            .expect("AES-GCM seals any value shorter than 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{}:{}", key.id, BASE64.encode(out))
    }

    /// Opens what `seal` made for the same column and row.
    pub(crate) fn unseal(
        &self,
        column: &str,
        row: &str,
        sealed: &str,
    ) -> Result<Vec<u8>, KeyError> {
        let fail = |key_id: &str| KeyError::Unseal {
            what: format!("{column} of {row}"),
            key_id: key_id.to_string(),
        };
        let (id, body) = sealed.split_once(':').ok_or_else(|| fail("(none)"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| fail(id))?;
        let mut buf = BASE64.decode(body).map_err(|_| fail(id))?;
        if buf.len() < NONCE_LEN {
            return Err(fail(id));
        }
        let mut sealed_part = buf.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&buf).map_err(|_| fail(id))?;
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(aad(column, row)), &mut sealed_part)
            .map_err(|_| fail(id))?;
        Ok(plain.to_vec())
    }
}

fn aad(column: &str, row: &str) -> Vec<u8> {
    format!("rdbvault:{column}:{row}").into_bytes()
}

/// A rotation prepared on disk: the new key written beside the old one, not
/// yet used. `commit` puts it in place once the database is re-sealed.
pub struct Rotation {
    pub next: Keyring,
    /// `<file>.next` and `<file>`; `None` when the new key goes to a file of
    /// the operator's choosing (the old key came from `master_key`).
    rename: Option<(PathBuf, PathBuf)>,
    pub written_to: PathBuf,
}

impl Rotation {
    /// Writes a new key to `out` (when the current key is a value) or to
    /// `<master_key_file>.next`.
    pub fn prepare(config: &Config, out: Option<&Path>) -> Result<Rotation, KeyError> {
        let from_value = config.master_key.as_deref().is_some_and(|v| !v.is_empty());
        let (target, rename) = match (from_value, out) {
            (_, Some(out)) => (out.to_path_buf(), None),
            (true, None) => {
                return Err(KeyError::Invalid {
                    origin: "master_key (RDBVAULT_MASTER_KEY)".into(),
                    reason: "the key is given as a value: name a file for the new one with --out"
                        .into(),
                });
            }
            (false, None) => {
                let main = config.master_key_path();
                let next = next_path(&main);
                (next.clone(), Some((next, main)))
            }
        };
        if target.exists() {
            return Err(KeyError::Io {
                path: target,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists already: start the service once to settle an interrupted rotation, or remove it",
                ),
            });
        }
        write_key_file(&target, &new_key_text())?;
        let key = MasterKey::read(&target)?;
        Ok(Rotation {
            next: Keyring::single(key),
            rename,
            written_to: target,
        })
    }

    /// The database is re-sealed: the new key replaces the old on disk.
    pub fn commit(self) -> Result<Option<PathBuf>, KeyError> {
        let Some((next, main)) = self.rename else {
            return Ok(None);
        };
        std::fs::rename(&next, &main).map_err(|source| KeyError::Io {
            path: main.clone(),
            source,
        })?;
        sync_parent(&main).map_err(|source| KeyError::Io {
            path: main.clone(),
            source,
        })?;
        Ok(Some(main))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_row_and_with_their_key() {
        let keys = Keyring::ephemeral();
        let sealed = keys.seal("instances.password", "i-1", b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert!(sealed.starts_with(&format!("{}:", keys.id())));
        assert_eq!(
            keys.unseal("instances.password", "i-1", &sealed).unwrap(),
            b"hunter2"
        );
        // Another row, another column, another key, a flipped bit: refused.
        assert!(keys.unseal("instances.password", "i-2", &sealed).is_err());
        assert!(keys.unseal("link_keys.secret", "i-1", &sealed).is_err());
        let other = Keyring::ephemeral();
        let foreign = other.seal("instances.password", "i-1", b"hunter2");
        assert!(keys.unseal("instances.password", "i-1", &foreign).is_err());
        let (id, body) = sealed.split_once(':').unwrap();
        let mut raw = BASE64.decode(body).unwrap();
        raw[NONCE_LEN] ^= 1;
        let tampered = format!("{id}:{}", BASE64.encode(raw));
        assert!(keys.unseal("instances.password", "i-1", &tampered).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, keys.seal("instances.password", "i-1", b"hunter2"));
    }

    #[test]
    fn key_values_are_checked() {
        assert!(MasterKey::parse("not base64!", None, "t").is_err());
        assert!(MasterKey::parse(&BASE64.encode([0u8; 16]), None, "t").is_err());
        let key = MasterKey::parse(&BASE64.encode([7u8; 32]), None, "t").unwrap();
        assert_eq!(key.id, key_id(&[7u8; 32]));
        assert_ne!(key.id, key_id(&[8u8; 32]));
    }
}
