//! Encrypted secrets: age files that vars load transparently, and the `bosun secret`
//! commands' building blocks (the Ansible Vault equivalent).
//!
//! An encrypted vars file is an ASCII-armored age file (`-----BEGIN AGE ENCRYPTED
//! FILE-----`), encrypted to a passphrase (scrypt), age x25519 keys (`age1...`) or SSH
//! public keys (`ssh-ed25519`, `ssh-rsa`). Wherever bosun reads a vars file as secrets
//! (the inventory's `secrets_file:`, `-e @file`), it recognises the header and decrypts
//! before anything else happens, so a missing key or a tampered file stops the run before
//! any host is contacted. Every value in an encrypted file is a secret, redacted everywhere.
//!
//! - [`keys`]: identities and passphrases, and their precedence;
//! - [`recipients`]: who a file is for, and the `X.recipients` list kept beside `X.age`;
//! - [`crypto`]: encrypt and decrypt;
//! - [`edit`]: the private scratch directory and editor run of `bosun secret edit`;
//! - [`files`]: temp-then-rename writes.

pub mod crypto;
pub mod edit;
pub mod error;
pub mod files;
pub mod keys;
pub mod recipients;

pub use age::secrecy::{ExposeSecret, SecretString};
pub use crypto::{decrypt, encrypt, is_encrypted, Plaintext, Unlocked};
pub use error::{IdentitySource, SecretError};
pub use keys::{prompt, set_cli_identities, set_prompter, Prompter};
pub use recipients::{Recipient, Recipients};

use crate::diag::{LoadError, Place};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Why a vars file could not be loaded: the file's own content, or its decryption.
#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl VarsError {
    /// As a load error; a decryption failure is placed where the file is referenced
    /// (`referenced_at`), since its bytes have no meaningful line.
    pub fn at(self, referenced_at: Place) -> LoadError {
        match self {
            VarsError::Load(e) => e,
            VarsError::Secret(e) => {
                let hint = e.hint();
                let mut le = LoadError::new(referenced_at, e.to_string());
                le.hint = hint;
                le
            }
        }
    }
}

/// Whether the file at `path` is age-encrypted (reads only its first bytes).
pub fn is_encrypted_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    is_encrypted(&head[..n])
}

/// Reads a YAML vars file, plain or age-encrypted.
///
/// `inventory_identity` is the inventory's `secrets_identity` (lowest precedence; see
/// [`keys`]). A YAML error in decrypted content names the encrypted file and the line in
/// the plaintext, and quotes none of it.
pub fn load_yaml<T: DeserializeOwned>(
    path: &Path,
    inventory_identity: Option<&Path>,
) -> Result<T, VarsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| LoadError::new(Place::file(path), format!("cannot read: {e}")))?;
    if !is_encrypted(&bytes) {
        let text = String::from_utf8(bytes)
            .map_err(|_| LoadError::new(Place::file(path), "not UTF-8 text"))?;
        return Ok(crate::yaml::parse(path, &text)?);
    }
    let plain = decrypt(path, &bytes, inventory_identity)?;
    let text = std::str::from_utf8(&plain.bytes).map_err(|_| SecretError::NotText {
        file: path.to_path_buf(),
    })?;
    parse_decrypted(path, text).map_err(VarsError::Load)
}

/// Parses decrypted YAML; errors keep their place but lose anything quoted from the text.
pub fn parse_decrypted<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, LoadError> {
    crate::yaml::parse(path, text).map_err(|mut e| {
        e.message = format!("{} (in the decrypted text)", scrub_quotes(&e.message));
        e.hint = Some(format!(
            "the line is in the plaintext: fix it with `bosun secret edit {}`",
            path.display()
        ));
        e
    })
}

/// Replaces every quoted part of a parser message: it may be a secret value.
fn scrub_quotes(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if matches!(c, '"' | '`' | '\'') => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    #[test]
    fn quoted_parts_of_parser_messages_are_dropped() {
        assert_eq!(
            scrub_quotes("invalid type: string \"hunter22\", expected a map"),
            "invalid type: string \"…\", expected a map"
        );
        assert_eq!(scrub_quotes("unknown `pw` and 'x"), "unknown `…` and '…");
    }

    #[test]
    fn yaml_errors_in_decrypted_text_keep_the_line_but_not_the_text() {
        let e =
            parse_decrypted::<Map<String, Value>>(Path::new("s.yml.age"), "a: 1\nb: [hunter22\n")
                .unwrap_err();
        assert_eq!(e.place.line, 2, "{e}");
        assert!(e.to_string().starts_with("s.yml.age:"), "{e}");
        assert!(!e.render().contains("hunter22"), "{}", e.render());
        assert!(e.render().contains("bosun secret edit s.yml.age"));
        // A value the parser would quote in its message.
        let e = parse_decrypted::<Map<String, Value>>(Path::new("s.yml.age"), "hunter22\n")
            .unwrap_err();
        assert!(!e.render().contains("hunter22"), "{}", e.render());
    }
}
