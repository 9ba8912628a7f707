//! Sealing secrets at rest in the index: access-key secrets are stored encrypted (AES-256-GCM)
//! under a fleet key (`CAIRN_INDEX_SEAL_KEY`), so the RocksDB files, the Raft log and snapshots
//! (which travel between gateways) never hold them in clear.
//!
//! A sealed value reads `sealed:v1:KEYID:BASE64(nonce | ciphertext | tag)`; the key id is
//! derived from the key, so a gateway holding the current and the previous key (during a
//! rotation) knows which opens a value, and re-seals values under the current one. The
//! ciphertext is bound to what it belongs to (the access key id), so a sealed secret copied into
//! another record does not open. Values written before sealing existed are plain and still read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cairn_transport::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed under a key this gateway does not hold (a rotation dropped it too soon?).
    #[error("sealed under key {0}, which this gateway does not hold (CAIRN_INDEX_SEAL_KEY)")]
    UnknownKey(String),
    /// The value does not parse or fails authentication (tampered, or moved to another record).
    #[error("sealed value is malformed or was tampered with")]
    Corrupt,
}

struct SealKey {
    id: String,
    key: LessSafeKey,
}

impl SealKey {
    fn new(secret: &Secret) -> Self {
        let derive = |label: &[u8]| {
            let mut input = label.to_vec();
            input.extend_from_slice(secret.expose().as_bytes());
            digest::digest(&digest::SHA256, &input)
        };
        let id = cairn_transport::secret::hex(&derive(b"cairn seal key id\0").as_ref()[..4]);
        let material = derive(b"cairn index seal v1\0");
        let key = UnboundKey::new(&AES_256_GCM, material.as_ref()).expect("a 32-byte AES key");
        Self {
            id,
            key: LessSafeKey::new(key),
        }
    }
}

/// Seals and opens secrets with the current key (and opens with the previous one).
pub struct Sealer {
    current: SealKey,
    previous: Option<SealKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Sealer {
    /// A sealer with `current`, also opening values sealed with `previous`.
    pub fn new(current: &Secret, previous: Option<&Secret>) -> Self {
        Self {
            current: SealKey::new(current),
            previous: previous.map(SealKey::new),
            random: SystemRandom::new(),
        }
    }

    /// `plaintext` sealed for the record `context` names.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut buf = plaintext.as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any length we store");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(out))
    }

    /// The plaintext of a stored value: opened if sealed, as it is if it predates sealing.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, body) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let bytes = STANDARD.decode(body).map_err(|_| SealError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Corrupt)
    }

    /// Whether a stored value should be written again: plain, or sealed with another key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match stored.strip_prefix(PREFIX) {
            None => true,
            Some(rest) => !rest.starts_with(&format!("{}:", self.current.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Secret {
        Secret::new("k", &format!("{s:0>32}"), 32).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_record() {
        let s = Sealer::new(&key("one"), None);
        let sealed = s.seal("wJalrXUtnFEMI/K7MDENG", "AKID1");
        assert!(sealed.starts_with("sealed:v1:"));
        assert!(!sealed.contains("wJalrXUtnFEMI"));
        assert_eq!(s.open(&sealed, "AKID1").unwrap(), "wJalrXUtnFEMI/K7MDENG");
        // Twice sealed, twice different (random nonces).
        assert_ne!(sealed, s.seal("wJalrXUtnFEMI/K7MDENG", "AKID1"));
        // Moved to another record, or tampered with: refused.
        assert_eq!(s.open(&sealed, "AKID2"), Err(SealError::Corrupt));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(s.open(&tampered, "AKID1"), Err(SealError::Corrupt));
        // Plain values from before sealing read as they are, and want sealing.
        assert_eq!(s.open("plain", "AKID1").unwrap(), "plain");
        assert!(s.needs_reseal("plain"));
        assert!(!s.needs_reseal(&sealed));
        // Another key: unknown, until it is the previous one of a rotation.
        let other = Sealer::new(&key("two"), None);
        assert!(matches!(
            other.open(&sealed, "AKID1"),
            Err(SealError::UnknownKey(_))
        ));
        let rotated = Sealer::new(&key("two"), Some(&key("one")));
        assert_eq!(
            rotated.open(&sealed, "AKID1").unwrap(),
            "wJalrXUtnFEMI/K7MDENG"
        );
        assert!(rotated.needs_reseal(&sealed));
        assert!(format!("{rotated:?}").contains("previous"));
    }
}
