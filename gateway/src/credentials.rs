//! The gateway's secrets: the root key pair, the admin token, the fleet credential and the key
//! that seals secrets at rest in the index. From `CAIRN_ROOT_ACCESS_KEY`,
//! `CAIRN_ROOT_SECRET_KEY`, `CAIRN_ADMIN_TOKEN`, `CAIRN_FLEET_SECRET` (and
//! `CAIRN_FLEET_SECRET_PREVIOUS` during a rotation) and `CAIRN_INDEX_SEAL_KEY`, or (in `dev`)
//! generated once and kept in the data directory. `Debug` never shows a secret.

use std::path::Path;

use cairn_transport::secret::{MIN_SECRET_LEN, random_hex};
use cairn_transport::{Secret, SecretError};
use serde::{Deserialize, Serialize};

use crate::admin::new_key_pair;

/// Shortest root secret key accepted (AWS's are 40 characters).
pub const MIN_ROOT_SECRET_LEN: usize = 16;

/// The secrets a gateway needs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Root access key id.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// Bearer token of the admin API (opens `/admin/v1` only).
    pub admin_token: String,
    /// The fleet credential: signs and checks every request between gateways and storage
    /// nodes (`/internal/v1`, the nodes' `/v1`).
    #[serde(default)]
    pub fleet_secret: String,
    /// The previous fleet credential, still accepted during a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_secret_previous: Option<String>,
    /// Seals access-key secrets in the index (Raft log and snapshots included).
    #[serde(default)]
    pub seal_key: String,
    /// The previous seal key, still opening values during a rotation (they are sealed again
    /// with the current one at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_key_previous: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("admin_token", &"<redacted>")
            .field("fleet_secret", &"<redacted>")
            .field("seal_key", &"<redacted>")
            .finish()
    }
}

/// Why secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A required variable is missing.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A secret is too short.
    #[error(transparent)]
    Weak(#[from] SecretError),
    /// The credentials file could not be read or written.
    #[error("credentials file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Secrets {
    /// Refuses secrets shorter than their minimum.
    pub fn validate(&self) -> Result<(), SecretsError> {
        Secret::new(
            "CAIRN_ROOT_SECRET_KEY",
            &self.secret_key,
            MIN_ROOT_SECRET_LEN,
        )?;
        Secret::new("CAIRN_ADMIN_TOKEN", &self.admin_token, MIN_SECRET_LEN)?;
        self.fleet_secrets()?;
        self.sealer()?;
        Ok(())
    }

    /// The fleet credentials accepted: the current one (which signs), then the previous one.
    pub fn fleet_secrets(&self) -> Result<Vec<Secret>, SecretsError> {
        let mut out = vec![Secret::new(
            "CAIRN_FLEET_SECRET",
            &self.fleet_secret,
            MIN_SECRET_LEN,
        )?];
        if let Some(previous) = &self.fleet_secret_previous {
            out.push(Secret::new(
                "CAIRN_FLEET_SECRET_PREVIOUS",
                previous,
                MIN_SECRET_LEN,
            )?);
        }
        Ok(out)
    }

    /// The key sealing secrets in the index.
    pub fn seal_key(&self) -> Result<Secret, SecretsError> {
        Ok(Secret::new(
            "CAIRN_INDEX_SEAL_KEY",
            &self.seal_key,
            MIN_SECRET_LEN,
        )?)
    }

    /// The sealer of the index: the current seal key, and the previous one if given.
    pub fn sealer(&self) -> Result<crate::seal::Sealer, SecretsError> {
        let previous = self
            .seal_key_previous
            .as_deref()
            .map(|p| Secret::new("CAIRN_INDEX_SEAL_KEY_PREVIOUS", p, MIN_SECRET_LEN))
            .transpose()?;
        Ok(crate::seal::Sealer::new(
            &self.seal_key()?,
            previous.as_ref(),
        ))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Secrets from the environment only (`serve`).
pub fn from_env() -> Result<Secrets, SecretsError> {
    let required = |name: &'static str| env(name).ok_or(SecretsError::Missing(name));
    let secrets = Secrets {
        access_key: required("CAIRN_ROOT_ACCESS_KEY")?,
        secret_key: required("CAIRN_ROOT_SECRET_KEY")?,
        admin_token: required("CAIRN_ADMIN_TOKEN")?,
        fleet_secret: required("CAIRN_FLEET_SECRET")?,
        fleet_secret_previous: env("CAIRN_FLEET_SECRET_PREVIOUS"),
        seal_key: required("CAIRN_INDEX_SEAL_KEY")?,
        seal_key_previous: env("CAIRN_INDEX_SEAL_KEY_PREVIOUS"),
    };
    secrets.validate()?;
    Ok(secrets)
}

/// Secrets for `dev`: the environment wins; otherwise `dir/credentials.json`, created on first use
/// (mode 0600; secrets a file of an earlier version lacks are added to it). Returns the secrets
/// and whether they were just generated.
pub fn load_or_create(dir: &Path) -> Result<(Secrets, bool), SecretsError> {
    let path = dir.join("credentials.json");
    let io = |source| SecretsError::File {
        path: path.clone(),
        source,
    };
    let (mut secrets, created) = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut s: Secrets =
                serde_json::from_slice(&bytes).map_err(|e| io(std::io::Error::other(e)))?;
            let mut added = false;
            for field in [&mut s.fleet_secret, &mut s.seal_key] {
                if field.is_empty() {
                    *field = random_hex(32);
                    added = true;
                }
            }
            if added {
                write_private(&path, &serde_json::to_vec_pretty(&s).expect("serialises"))
                    .map_err(io)?;
            }
            (s, false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (access_key, secret_key) = new_key_pair();
            let s = Secrets {
                access_key,
                secret_key,
                admin_token: random_hex(24),
                fleet_secret: random_hex(32),
                fleet_secret_previous: None,
                seal_key: random_hex(32),
                seal_key_previous: None,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            write_private(&path, &serde_json::to_vec_pretty(&s).expect("serialises"))
                .map_err(io)?;
            (s, true)
        }
        Err(e) => return Err(io(e)),
    };
    let overrides: [(&str, &mut String); 5] = [
        ("CAIRN_ROOT_ACCESS_KEY", &mut secrets.access_key),
        ("CAIRN_ROOT_SECRET_KEY", &mut secrets.secret_key),
        ("CAIRN_ADMIN_TOKEN", &mut secrets.admin_token),
        ("CAIRN_FLEET_SECRET", &mut secrets.fleet_secret),
        ("CAIRN_INDEX_SEAL_KEY", &mut secrets.seal_key),
    ];
    for (name, field) in overrides {
        if let Some(v) = env(name) {
            *field = v;
        }
    }
    if let Some(v) = env("CAIRN_FLEET_SECRET_PREVIOUS") {
        secrets.fleet_secret_previous = Some(v);
    }
    if let Some(v) = env("CAIRN_INDEX_SEAL_KEY_PREVIOUS") {
        secrets.seal_key_previous = Some(v);
    }
    secrets.validate()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_strong_kept_completed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let (s, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        s.validate().unwrap();
        let printed = format!("{s:?}");
        for secret in [&s.secret_key, &s.admin_token, &s.fleet_secret, &s.seal_key] {
            assert!(!printed.contains(secret.as_str()), "{printed}");
        }
        let (again, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again, s);
        // A file written before the fleet secret and seal key existed gets them.
        let old = serde_json::json!({"access_key": s.access_key, "secret_key": s.secret_key,
                                     "admin_token": s.admin_token});
        std::fs::write(dir.path().join("credentials.json"), old.to_string()).unwrap();
        let (upgraded, _) = load_or_create(dir.path()).unwrap();
        assert_eq!(upgraded.fleet_secret.len(), 64);
        assert_eq!(upgraded.seal_key.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap().0, upgraded);
        // Weak secrets are refused.
        let weak = Secrets {
            admin_token: "short".into(),
            ..upgraded.clone()
        };
        assert!(matches!(weak.validate(), Err(SecretsError::Weak(_))));
        let weak = Secrets {
            fleet_secret: "short".into(),
            ..upgraded
        };
        assert!(matches!(weak.validate(), Err(SecretsError::Weak(_))));
    }
}
