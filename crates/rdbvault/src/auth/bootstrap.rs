//! First-start credentials: with none configured, `serve` makes one AK/SK
//! pair and a project id, keeps them in the data dir (mode 0600) and prints
//! them once, so the quickstart works without editing a config file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::config::{AuthMode, Config, ConfigError, CredentialConfig};

const FILE_NAME: &str = "credentials.toml";

#[derive(Serialize, Deserialize)]
struct Stored {
    credentials: Vec<CredentialConfig>,
}

/// What happened at start, so `serve` can tell the operator.
pub(crate) enum Outcome {
    /// Credentials come from the configuration; nothing was read or written.
    Configured,
    /// Loaded from an earlier first start.
    Loaded(PathBuf),
    /// Generated now; the caller prints them this one time.
    Generated(PathBuf, CredentialConfig),
}

pub(crate) fn ensure_credentials(config: &mut Config) -> Result<Outcome, ConfigError> {
    if config.auth == AuthMode::None || !config.credentials.is_empty() {
        return Ok(Outcome::Configured);
    }
    let path = config.data_dir.join(FILE_NAME);
    if path.exists() {
        config.credentials = load(&path)?;
        return Ok(Outcome::Loaded(path));
    }
    let generated = generate();
    write(&path, std::slice::from_ref(&generated))?;
    config.credentials = vec![generated.clone()];
    Ok(Outcome::Generated(path, generated))
}

fn generate() -> CredentialConfig {
    let mut rng = rand::rng();
    let access_key: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(20)
        .map(|c| (c as char).to_ascii_uppercase())
        .collect();
    let secret_key: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let project: [u8; 16] = rng.random();
    CredentialConfig {
        access_key,
        secret_key: Some(secret_key),
        secret_key_file: None,
        projects: vec![hex::encode(project)],
    }
}

fn load(path: &Path) -> Result<Vec<CredentialConfig>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("reading {}: {e}", path.display())))?;
    let stored: Stored = toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("parsing {}: {e}", path.display())))?;
    Ok(stored.credentials)
}

fn write(path: &Path, credentials: &[CredentialConfig]) -> Result<(), ConfigError> {
    let io = |e: std::io::Error| ConfigError::Invalid(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = toml::to_string(&Stored {
        credentials: credentials.to_vec(),
    })
    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    // create_new + 0600 at creation: the secret is never readable by others, not even briefly.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_then_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let Outcome::Generated(path, cred) = ensure_credentials(&mut config).expect("generate")
        else {
            panic!("expected generation on first start");
        };
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(cred.access_key.len(), 20);
        assert_eq!(cred.projects[0].len(), 32);

        let mut again = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert!(matches!(
            ensure_credentials(&mut again).expect("load"),
            Outcome::Loaded(_)
        ));
        assert_eq!(again.credentials[0].access_key, cred.access_key);
        assert_eq!(again.credentials[0].secret_key, cred.secret_key);
    }

    #[test]
    fn configured_credentials_or_no_auth_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            auth: AuthMode::None,
            ..Config::default()
        };
        assert!(matches!(
            ensure_credentials(&mut config).expect("ok"),
            Outcome::Configured
        ));
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
