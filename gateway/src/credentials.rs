//! Root credentials and the admin token: from `CAIRN_ROOT_ACCESS_KEY`, `CAIRN_ROOT_SECRET_KEY` and
//! `CAIRN_ADMIN_TOKEN`, or (in `dev`) generated once and kept in the data directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::admin::new_key_pair;

/// The secrets a gateway needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Root access key id.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// Bearer token of the admin API.
    pub admin_token: String,
}

/// Why secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A required variable is missing.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// The credentials file could not be read or written.
    #[error("credentials file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Secrets from the environment only (`serve`).
pub fn from_env() -> Result<Secrets, SecretsError> {
    Ok(Secrets {
        access_key: env("CAIRN_ROOT_ACCESS_KEY")
            .ok_or(SecretsError::Missing("CAIRN_ROOT_ACCESS_KEY"))?,
        secret_key: env("CAIRN_ROOT_SECRET_KEY")
            .ok_or(SecretsError::Missing("CAIRN_ROOT_SECRET_KEY"))?,
        admin_token: env("CAIRN_ADMIN_TOKEN").ok_or(SecretsError::Missing("CAIRN_ADMIN_TOKEN"))?,
    })
}

/// Secrets for `dev`: the environment wins; otherwise `dir/credentials.json`, created on first use
/// (mode 0600). Returns the secrets and whether they were just generated.
pub fn load_or_create(dir: &Path) -> Result<(Secrets, bool), SecretsError> {
    let path = dir.join("credentials.json");
    let io = |source| SecretsError::File {
        path: path.clone(),
        source,
    };
    let (mut secrets, created) = match std::fs::read(&path) {
        Ok(bytes) => (
            serde_json::from_slice(&bytes).map_err(|e| io(std::io::Error::other(e)))?,
            false,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (access_key, secret_key) = new_key_pair();
            let s = Secrets {
                access_key,
                secret_key,
                admin_token: crate::s3::checksums::hex(&rand::random::<[u8; 24]>()),
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            write_private(&path, &serde_json::to_vec_pretty(&s).expect("serialises"))
                .map_err(io)?;
            (s, true)
        }
        Err(e) => return Err(io(e)),
    };
    if let Some(v) = env("CAIRN_ROOT_ACCESS_KEY") {
        secrets.access_key = v;
    }
    if let Some(v) = env("CAIRN_ROOT_SECRET_KEY") {
        secrets.secret_key = v;
    }
    if let Some(v) = env("CAIRN_ADMIN_TOKEN") {
        secrets.admin_token = v;
    }
    Ok((secrets, created))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
