//! The cluster secret: the key every node of a cluster shares, so that a secondary can tell its
//! master's requests from anyone else's.
//!
//! It never leaves the host. Components reach it only through `replog:node/auth`, which signs
//! and checks (HMAC-SHA256, compared in constant time) without handing out the key, and it is
//! never printed: its `Debug` is redacted, and nothing logs or answers it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A cluster secret. Cheap to clone.
#[derive(Clone)]
pub struct ClusterSecret {
    /// The HMAC with the key already absorbed: every signature starts from a copy of it, which
    /// saves hashing the key's two padded blocks again (half of a short message's work).
    keyed: Arc<HmacSha256>,
}

/// Why a cluster secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret, trimmed, is shorter than the 16 bytes required: its length.
    #[error(
        "the cluster secret is {0} bytes long; it must be at least {min} (e.g. 32 random bytes \
         in hex: `openssl rand -hex 32`)",
        min = ClusterSecret::MIN_LEN
    )]
    TooShort(usize),
    /// The secret's file could not be read.
    #[error("cannot read the cluster secret from {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it failed with.
        error: std::io::Error,
    },
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(redacted)")
    }
}

impl ClusterSecret {
    /// Shorter secrets are refused: they can be guessed.
    pub(crate) const MIN_LEN: usize = 16;

    /// `text` as the secret, surrounding whitespace (a file's last newline) left out.
    pub fn new(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() < Self::MIN_LEN {
            return Err(SecretError::TooShort(text.len()));
        }
        let keyed =
            HmacSha256::new_from_slice(text.as_bytes()).expect("HMAC takes keys of any length");
        Ok(Self { keyed: Arc::new(keyed) })
    }

    /// The secret kept in the file at `path` (the Docker and Kubernetes secret form).
    pub(crate) fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| SecretError::Read { path: path.to_owned(), error })?;
        Self::new(&text)
    }

    /// A new secret: 32 bytes from the operating system's random source, as 64 hex digits.
    pub fn random_text() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        hex(&bytes)
    }

    /// Makes a new random secret at `path`, readable by its owner only, unless a file is there
    /// already: an existing secret is never replaced (nodes already use it). Returns whether
    /// it made one. Written whole or not at all: a failed write leaves no file.
    pub(crate) fn make_file_once(path: &Path) -> std::io::Result<bool> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        let mut file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        let written = writeln!(file, "{}", Self::random_text()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(true)
    }

    /// A new random secret, for a cluster that lives as long as this process.
    pub fn random() -> Self {
        Self::new(&Self::random_text()).expect("64 hex digits are long enough")
    }

    /// HMAC-SHA256 of `head` then `body`, in lower-case hex.
    pub fn sign(&self, head: &[u8], body: &[u8]) -> String {
        hex(&self.mac(head, body).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the HMAC-SHA256 of `head` then `body`, compared in
    /// constant time.
    pub(crate) fn verify(&self, head: &[u8], body: &[u8], signature: &str) -> bool {
        match unhex(signature) {
            Some(tag) => self.mac(head, body).verify_slice(&tag).is_ok(),
            None => false,
        }
    }

    fn mac(&self, head: &[u8], body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::clone(&self.keyed);
        mac.update(head);
        mac.update(body);
        mac
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_made_once_owner_only_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("replog-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster-secret");
        let _ = std::fs::remove_file(&path);
        assert!(ClusterSecret::make_file_once(&path).unwrap());
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(ClusterSecret::from_file(&path).is_ok(), "a secret nodes take: {first:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!ClusterSecret::make_file_once(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "never overwritten");
        let nowhere = dir.join("missing").join("cluster-secret");
        assert!(ClusterSecret::make_file_once(&nowhere).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_signature_checks_only_with_the_same_key_and_the_same_bytes() {
        let secret = ClusterSecret::new("correct horse battery staple\n").unwrap();
        let signature = secret.sign(b"POST /replicate 1700000000000\n", b"{\"entries\":[]}");
        // Python's hmac.new(key, head + body, hashlib.sha256).hexdigest() for the same bytes.
        assert_eq!(signature, "3f0935a7fdb8ea124f87da27bb6bd027c808dfe4a823394f54f6ef5e8e31b249");
        assert_eq!(secret.sign(b"POST /replicate 1700000000000\n", b"{\"entries\":[]}"), signature);
        assert!(secret.verify(b"POST /replicate 1700000000000\n", b"{\"entries\":[]}", &signature));
        assert!(!secret.verify(
            b"POST /replicate 1700000000001\n",
            b"{\"entries\":[]}",
            &signature
        ));
        assert!(!secret.verify(
            b"POST /replicate 1700000000000\n",
            b"{\"entries\":[1]}",
            &signature
        ));
        let other = ClusterSecret::new("correct horse battery stapler").unwrap();
        assert!(!other.verify(b"POST /replicate 1700000000000\n", b"{\"entries\":[]}", &signature));
        assert!(!secret.verify(b"x", b"", "not hex"));
        assert!(!secret.verify(b"x", b"", ""));
    }

    #[test]
    fn short_secrets_are_refused_and_none_is_ever_printed() {
        assert!(matches!(ClusterSecret::new("  short\n"), Err(SecretError::TooShort(5))));
        let text = ClusterSecret::random_text();
        assert_eq!(text.len(), 64);
        assert_ne!(text, ClusterSecret::random_text());
        let secret = ClusterSecret::new(&text).unwrap();
        assert!(!format!("{secret:?}").contains(&text));
    }
}
