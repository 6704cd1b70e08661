//! Who an encrypted file is for: age x25519 keys, SSH public keys, or a passphrase.
//!
//! age does not record recipients in a file (an x25519 stanza carries only an ephemeral
//! key), so `edit` and `rekey` could not otherwise re-encrypt "to the same people". bosun
//! keeps the list beside the file: the recipients of `X.age` live in `X.recipients`, one
//! public key per line, `#` comments allowed (the format of `age -R`). It is committed with
//! the file, so a change of who can read a secret shows up in review.

use super::error::SecretError;
use age::secrecy::SecretString;
use std::path::{Path, PathBuf};

/// One public key a file is encrypted to.
pub struct Recipient {
    /// As the operator wrote it (an SSH key keeps its comment, which says whose it is).
    pub text: String,
    /// The key alone (`age1...` or `ssh-ed25519 AAAA...`), for comparing lists.
    pub key: String,
    pub age: Box<dyn age::Recipient + Send>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a file is (or will be) encrypted to.
pub enum Recipients {
    Passphrase(SecretString),
    Keys(Vec<Recipient>),
}

impl Recipients {
    /// "a passphrase" or "3 recipients", for messages.
    pub fn describe(&self) -> String {
        match self {
            Recipients::Passphrase(_) => "a passphrase".into(),
            Recipients::Keys(k) if k.len() == 1 => "1 recipient".into(),
            Recipients::Keys(k) => format!("{} recipients", k.len()),
        }
    }
}

/// Parses one recipient: `age1...`, `ssh-ed25519 AAAA... [comment]` or `ssh-rsa AAAA... [comment]`.
pub fn parse(text: &str) -> Result<Recipient, SecretError> {
    let text = text.trim();
    let bad = |reason: &str| SecretError::BadRecipient {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    if text.starts_with("age1") {
        let r: age::x25519::Recipient = text
            .parse()
            .map_err(|_| bad("not a valid age public key"))?;
        return Ok(Recipient {
            text: text.to_string(),
            key: r.to_string(),
            age: Box::new(r),
        });
    }
    if text.starts_with("ssh-") {
        use age::ssh::ParseRecipientKeyError as E;
        let r: age::ssh::Recipient = text.parse().map_err(|e| match e {
            E::RsaModulusTooSmall => bad("RSA keys shorter than 2048 bits are refused"),
            E::RsaModulusTooLarge => bad("this RSA key is larger than age supports"),
            E::Unsupported(t) => bad(&format!(
                "SSH key type {t} is not supported (use ssh-ed25519 or ssh-rsa)"
            )),
            E::Ignore | E::Invalid(_) => bad("not a valid SSH public key"),
        })?;
        return Ok(Recipient {
            text: text.to_string(),
            key: r.to_string(),
            age: Box::new(r),
        });
    }
    if text.starts_with("AGE-SECRET-KEY-") {
        // Do not echo a private key back into a terminal or a CI log.
        return Err(SecretError::BadRecipient {
            text: "AGE-SECRET-KEY-...".into(),
            reason: "this is a private key; pass its public half (age1...)".into(),
        });
    }
    Err(bad(
        "not an age public key (age1...) or an SSH public key (ssh-ed25519, ssh-rsa)",
    ))
}

/// Reads a recipients file: one key per line; blank lines and `#` comments are skipped.
pub fn read_file(path: &Path) -> Result<Vec<Recipient>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = parse(line).map_err(|e| SecretError::BadRecipientsFile {
            path: path.to_path_buf(),
            line: i + 1,
            reason: match e {
                SecretError::BadRecipient { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        out.push(r);
    }
    Ok(out)
}

/// Where the recipients of an encrypted file are kept: `X.age` → `X.recipients`.
pub fn sidecar(encrypted: &Path) -> PathBuf {
    let name = encrypted
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".age").unwrap_or(&name);
    encrypted.with_file_name(format!("{stem}.recipients"))
}

/// The recipients recorded beside `encrypted`, if that file exists.
pub fn recorded(encrypted: &Path) -> Result<Option<Vec<Recipient>>, SecretError> {
    let path = sidecar(encrypted);
    if !path.exists() {
        return Ok(None);
    }
    read_file(&path).map(Some)
}

/// Records `keys` beside `encrypted`, unless the recorded list already says the same (so an
/// operator's comments in it survive). Returns whether the file was written.
pub fn record(encrypted: &Path, keys: &[Recipient]) -> Result<bool, SecretError> {
    let path = sidecar(encrypted);
    if let Ok(Some(old)) = recorded(encrypted) {
        let mut a: Vec<&str> = old.iter().map(|r| r.key.as_str()).collect();
        let mut b: Vec<&str> = keys.iter().map(|r| r.key.as_str()).collect();
        a.sort_unstable();
        a.dedup();
        b.sort_unstable();
        b.dedup();
        if a == b {
            return Ok(false);
        }
    }
    let name = encrypted
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = format!(
        "# Who can decrypt {name}: one age or SSH public key per line.\n\
         # Change this list, then run `bosun secret rekey {}`.\n",
        encrypted.display()
    );
    for r in keys {
        text.push_str(&r.text);
        text.push('\n');
    }
    super::files::write_atomic(&path, text.as_bytes(), None)?;
    Ok(true)
}

/// Removes a recorded list that no longer applies (the file is now passphrase-encrypted).
pub fn forget(encrypted: &Path) -> Result<bool, SecretError> {
    let path = sidecar(encrypted);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SecretError::Write { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_replaces_the_age_suffix() {
        assert_eq!(
            sidecar(Path::new("inventory/production-secrets.yml.age")),
            PathBuf::from("inventory/production-secrets.yml.recipients")
        );
        assert_eq!(
            sidecar(Path::new("vault.yml")),
            PathBuf::from("vault.yml.recipients")
        );
    }

    #[test]
    fn parses_age_and_ssh_keys_and_refuses_private_keys() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let r = parse(&format!("  {public} ")).unwrap();
        assert_eq!(r.key, public);
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
        let r = parse(ssh).unwrap();
        assert_eq!(r.text, ssh);
        assert!(!r.key.contains("alice"));
        let e = parse("AGE-SECRET-KEY-1QQQQ").unwrap_err().to_string();
        assert!(e.contains("private key") && !e.contains("QQQQ"), "{e}");
        assert!(parse("age1notakey").is_err());
        assert!(parse("hello").is_err());
    }

    #[test]
    fn recipients_file_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("bosun-recip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.recipients");
        let id = age::x25519::Identity::generate();
        std::fs::write(&f, format!("# team\n\n{}\nnonsense\n", id.to_public())).unwrap();
        match read_file(&f).unwrap_err() {
            SecretError::BadRecipientsFile { line, .. } => assert_eq!(line, 4),
            other => panic!("{other}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
