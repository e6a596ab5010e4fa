//! Secrets at rest: AES-256-GCM with a key ring. Every ciphertext carries the id
//! of the key that sealed it and a random 96-bit nonce, and is bound by AAD to
//! (tenant, connection, field), so a ciphertext copied onto another row or field
//! does not decrypt. `POBLYSH_CRYPTO_KEY` is the primary key; keys in
//! `POBLYSH_CRYPTO_PREVIOUS_KEYS` still decrypt older rows until `keys reencrypt`.
//!
//! Error messages never contain key material or plaintext.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::domain::{ConnectionId, TenantId};

/// Format version of a sealed value.
const VERSION: u8 = 1;
/// Bytes of a key id.
const KEY_ID_LEN: usize = 4;
/// Bytes of a nonce.
const NONCE_LEN: usize = 12;
/// Bytes before the ciphertext: version, key id, nonce.
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a key could not be used or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A configured key is malformed.
    #[error(
        "{source_name} is not a valid key: {reason} (expected 32 random bytes, base64-encoded)"
    )]
    BadKey {
        /// Where the key came from (an env var or a file).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// No key is configured and a development key is not allowed.
    #[error(
        "POBLYSH_CRYPTO_KEY is not set; in production (POBLYSH_ENV=production) a key is required: generate one with `openssl rand -base64 32`"
    )]
    MissingKey,
    /// The development key file could not be read or written.
    #[error("cannot use the development key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The sealed value was made with a key that is not in the ring.
    #[error(
        "sealed with key {0}, which is not configured (add it to POBLYSH_CRYPTO_PREVIOUS_KEYS)"
    )]
    UnknownKey(String),
    /// The sealed value is damaged, or belongs to another row or field.
    #[error("the sealed value cannot be opened: it is damaged or belongs to another record")]
    Inauthentic,
    /// The sealed value is not in a format this version reads.
    #[error("the sealed value has an unknown format")]
    Format,
}

/// A key's short public id (first bytes of its SHA-256), stored with each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

struct Key {
    id: KeyId,
    cipher: Aes256Gcm,
}

impl Key {
    fn from_base64(source_name: &str, text: &str) -> Result<Key, CryptoError> {
        let bad = |reason: &str| CryptoError::BadKey {
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| bad("not valid base64"))?;
        if bytes.len() != 32 {
            return Err(bad(&format!("{} bytes long", bytes.len())));
        }
        let digest = Sha256::digest(&bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad("wrong length"))?;
        Ok(Key {
            id: KeyId(id),
            cipher,
        })
    }
}

/// What a sealed value is bound to: its tenant, its row and its field.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The tenant.
    pub tenant: TenantId,
    /// The row (a connection, or an OAuth state's id).
    pub record: ConnectionId,
    /// The column or field (`credentials`, `access_token`).
    pub field: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "poblysh/v1|tenant={}|record={}|field={}",
            self.tenant, self.record, self.field
        )
        .into_bytes()
    }
}

/// The primary key (seals) and previous keys (still open).
pub struct KeyRing {
    primary: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary.id.to_string())
            .field(
                "previous",
                &self
                    .previous
                    .iter()
                    .map(|k| k.id.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where the key ring came from, for start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `POBLYSH_CRYPTO_KEY`.
    Environment,
    /// A development key file that already existed.
    DevelopmentFile(String),
    /// A development key file created now.
    GeneratedDevelopmentFile(String),
}

impl KeyRing {
    /// A ring from base64 keys: the primary and any previous ones.
    pub fn new(primary: &str, previous: &[&str]) -> Result<KeyRing, CryptoError> {
        let primary = Key::from_base64("POBLYSH_CRYPTO_KEY", primary)?;
        let previous = previous
            .iter()
            .enumerate()
            .map(|(i, k)| Key::from_base64(&format!("POBLYSH_CRYPTO_PREVIOUS_KEYS[{i}]"), k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyRing { primary, previous })
    }

    /// The ring configured by the environment values given: `primary` is
    /// `POBLYSH_CRYPTO_KEY`, `previous` the comma-separated
    /// `POBLYSH_CRYPTO_PREVIOUS_KEYS`. Without a primary key, outside production, a
    /// development key is read from (or created in) `dev_key_file`.
    pub fn from_config(
        primary: Option<&str>,
        previous: Option<&str>,
        production: bool,
        dev_key_file: &Path,
    ) -> Result<(KeyRing, KeySource), CryptoError> {
        let previous: Vec<&str> = previous
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if let Some(primary) = primary.filter(|k| !k.trim().is_empty()) {
            return Ok((KeyRing::new(primary, &previous)?, KeySource::Environment));
        }
        if production {
            return Err(CryptoError::MissingKey);
        }
        let shown = dev_key_file.display().to_string();
        let file_error = |e: std::io::Error| CryptoError::KeyFile {
            path: shown.clone(),
            reason: e.to_string(),
        };
        if dev_key_file.exists() {
            let text = std::fs::read_to_string(dev_key_file).map_err(file_error)?;
            let ring = KeyRing::new(text.trim(), &previous).map_err(|e| match e {
                CryptoError::BadKey { reason, .. } => CryptoError::BadKey {
                    source_name: shown.clone(),
                    reason,
                },
                other => other,
            })?;
            return Ok((ring, KeySource::DevelopmentFile(shown)));
        }
        let mut key = [0u8; 32];
        #[expect(
            clippy::disallowed_methods,
            reason = "keys always come from the OS, never from a test's seeded randomness"
        )]
        getrandom::fill(&mut key).map_err(|e| CryptoError::KeyFile {
            path: shown.clone(),
            reason: format!("no randomness: {e}"),
        })?;
        let encoded = STANDARD.encode(key);
        if let Some(dir) = dev_key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        write_private(dev_key_file, &encoded).map_err(file_error)?;
        Ok((
            KeyRing::new(&encoded, &previous)?,
            KeySource::GeneratedDevelopmentFile(shown),
        ))
    }

    /// The id of the primary key.
    pub fn primary_id(&self) -> KeyId {
        self.primary.id
    }

    /// Seals `plaintext` with the primary key, bound to `binding`.
    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        #[expect(
            clippy::disallowed_methods,
            reason = "AES-GCM nonces always come from the OS, never from a test's seeded randomness"
        )]
        getrandom::fill(&mut nonce).expect("the operating system provides randomness");
        let aad = binding.aad();
        let ciphertext = self
            .primary
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.primary.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a sealed value bound to `binding`.
    pub fn open(&self, sealed: &[u8], binding: Binding<'_>) -> Result<Vec<u8>, CryptoError> {
        let key_id = self.key_id_of(sealed)?;
        let key = std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = binding.aad();
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Inauthentic)
    }

    /// The id of the key that sealed a value.
    pub fn key_id_of(&self, sealed: &[u8]) -> Result<KeyId, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Format);
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&sealed[1..1 + KEY_ID_LEN]);
        Ok(KeyId(id))
    }

    /// Whether a sealed value must be re-sealed to be under the primary key.
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        !self.key_id_of(sealed).is_ok_and(|id| id == self.primary.id)
    }
}

#[cfg(unix)]
/// Writes a new file only its owner can read (0600), failing if it exists.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn binding(record: u128, field: &str) -> Binding<'_> {
        Binding {
            tenant: TenantId::from_uuid(Uuid::from_u128(7)),
            record: ConnectionId::from_uuid(Uuid::from_u128(record)),
            field,
        }
    }

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let ring = KeyRing::new(K1, &[]).unwrap();
        let a = ring.seal(b"ghp_secret", binding(1, "credentials"));
        let b = ring.seal(b"ghp_secret", binding(1, "credentials"));
        assert_ne!(a, b, "random nonces");
        assert!(!a.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(
            ring.open(&a, binding(1, "credentials")).unwrap(),
            b"ghp_secret"
        );
    }

    #[test]
    fn a_value_is_bound_to_its_tenant_record_and_field() {
        let ring = KeyRing::new(K1, &[]).unwrap();
        let sealed = ring.seal(b"s", binding(1, "credentials"));
        assert_eq!(
            ring.open(&sealed, binding(2, "credentials")),
            Err(CryptoError::Inauthentic)
        );
        assert_eq!(
            ring.open(&sealed, binding(1, "access_token")),
            Err(CryptoError::Inauthentic)
        );
        let other_tenant = Binding {
            tenant: TenantId::from_uuid(Uuid::from_u128(8)),
            ..binding(1, "credentials")
        };
        assert_eq!(
            ring.open(&sealed, other_tenant),
            Err(CryptoError::Inauthentic)
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            ring.open(&flipped, binding(1, "credentials")),
            Err(CryptoError::Inauthentic)
        );
        assert_eq!(
            ring.open(&sealed[..10], binding(1, "credentials")),
            Err(CryptoError::Format)
        );
    }

    #[test]
    fn rotation_previous_keys_open_new_values_use_the_primary() {
        let old = KeyRing::new(K1, &[]).unwrap();
        let sealed = old.seal(b"s", binding(1, "f"));
        let rotated = KeyRing::new(K2, &[K1]).unwrap();
        assert!(rotated.needs_reseal(&sealed));
        assert_eq!(rotated.open(&sealed, binding(1, "f")).unwrap(), b"s");
        let resealed = rotated.seal(b"s", binding(1, "f"));
        assert!(!rotated.needs_reseal(&resealed));
        let new_only = KeyRing::new(K2, &[]).unwrap();
        assert!(matches!(
            new_only.open(&sealed, binding(1, "f")),
            Err(CryptoError::UnknownKey(_))
        ));
        assert_eq!(
            old.open(&resealed, binding(1, "f")).unwrap_err(),
            CryptoError::UnknownKey(rotated.primary_id().to_string())
        );
    }

    #[test]
    fn malformed_keys_are_clear_errors_without_key_material() {
        let e = KeyRing::new("not base64!", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "POBLYSH_CRYPTO_KEY is not a valid key: not valid base64 (expected 32 random bytes, base64-encoded)"
        );
        let short = STANDARD.encode([1u8; 16]);
        let e = KeyRing::new(&short, &[]).unwrap_err();
        assert!(e.to_string().contains("16 bytes long"), "{e}");
        assert!(!e.to_string().contains(&short));
        let e = KeyRing::new(K1, &[K2, "x"]).unwrap_err();
        assert!(
            e.to_string().starts_with("POBLYSH_CRYPTO_PREVIOUS_KEYS[1]"),
            "{e}"
        );
    }

    #[test]
    fn development_key_is_generated_once_and_refused_in_production() {
        let dir = std::env::temp_dir().join(format!("poblysh-crypto-{}", Uuid::now_v7()));
        let file = dir.join("dev.key");
        assert_eq!(
            KeyRing::from_config(None, None, true, &file).unwrap_err(),
            CryptoError::MissingKey
        );
        assert!(!file.exists());
        let (ring, source) = KeyRing::from_config(None, None, false, &file).unwrap();
        assert!(matches!(source, KeySource::GeneratedDevelopmentFile(_)));
        let sealed = ring.seal(b"s", binding(1, "f"));
        let (again, source) = KeyRing::from_config(Some("  "), None, false, &file).unwrap();
        assert!(matches!(source, KeySource::DevelopmentFile(_)));
        assert_eq!(again.open(&sealed, binding(1, "f")).unwrap(), b"s");
        let (env, source) = KeyRing::from_config(Some(K1), Some(K2), true, &file).unwrap();
        assert_eq!(source, KeySource::Environment);
        let debug = format!("{env:?}");
        assert!(!debug.contains(K1) && !debug.contains(K2), "{debug}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
