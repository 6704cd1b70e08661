//! What can go wrong with an encrypted file, worded for the operator who has to fix it.
//!
//! Every variant names the file it is about; [`SecretError::hint`] says what to do next.
//! No variant ever carries plaintext: messages from the YAML parser about decrypted
//! content are scrubbed before they get here (see `super::vars`).

use std::path::PathBuf;

/// Where the identities that were tried came from (see `super::keys` for the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// `--identity FILE` on the command line.
    Flag,
    /// The `BOSUN_IDENTITY` environment variable.
    Env,
    /// `secrets_identity:` in the inventory.
    Inventory,
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentitySource::Flag => "--identity",
            IdentitySource::Env => "BOSUN_IDENTITY",
            IdentitySource::Inventory => "the inventory's secrets_identity",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an age-encrypted file", .0.display())]
    NotEncrypted(PathBuf),
    #[error("{} is already encrypted", .0.display())]
    AlreadyEncrypted(PathBuf),
    #[error("{} is encrypted to age/SSH recipients, and no identity was given to decrypt it", file.display())]
    NoIdentity { file: PathBuf },
    #[error("identity {} (from {from}): {reason}", path.display())]
    BadIdentity {
        path: PathBuf,
        from: IdentitySource,
        reason: String,
    },
    #[error("none of the identities from {from} ({}) can decrypt {}", list(.identities), file.display())]
    NoMatchingIdentity {
        file: PathBuf,
        identities: Vec<PathBuf>,
        from: IdentitySource,
    },
    #[error("wrong passphrase for {}", file.display())]
    WrongPassphrase { file: PathBuf },
    #[error("{} is passphrase-encrypted and no passphrase is available (BOSUN_PASSPHRASE is not set and there is no terminal to ask on)", file.display())]
    NoPassphrase { file: PathBuf },
    #[error("{} needs scrypt work 2^{required}, more than bosun accepts; refusing", file.display())]
    ExcessiveWork { file: PathBuf, required: u8 },
    #[error("{} was tampered with or is corrupted ({detail}); refusing to use it", file.display())]
    Tampered { file: PathBuf, detail: String },
    #[error("{}: the decrypted content is not UTF-8 text", file.display())]
    NotText { file: PathBuf },
    #[error("recipient `{text}`: {reason}")]
    BadRecipient { text: String, reason: String },
    #[error("{}:{line}: {reason}", path.display())]
    BadRecipientsFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no recipients to encrypt {} to", file.display())]
    NoRecipients { file: PathBuf },
    #[error("--passphrase cannot be combined with -r/-R recipients")]
    PassphraseAndRecipients,
    #[error("cannot encrypt {}: {reason}", file.display())]
    Encrypt { file: PathBuf, reason: String },
    #[error("cannot read a passphrase: {0}")]
    Prompt(String),
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    #[error("the passphrase is empty")]
    EmptyPassphrase,
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl SecretError {
    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SecretError::NoIdentity { file } => format!(
                "pass --identity KEYFILE (an age identity file or an SSH private key), set BOSUN_IDENTITY=KEYFILE, \
                 or set `secrets_identity: KEYFILE` in the inventory; {} lists who can decrypt it",
                super::recipients::sidecar(file).display()
            ),
            SecretError::BadIdentity { .. } => {
                "point it at an age identity file (AGE-SECRET-KEY-1...) or an SSH private key (ed25519 or RSA)".into()
            }
            SecretError::NoMatchingIdentity { file, .. } => format!(
                "use a key whose public half is one of its recipients ({}); or the file's header was modified: restore it from version control",
                super::recipients::sidecar(file).display()
            ),
            SecretError::WrongPassphrase { .. } => {
                "check BOSUN_PASSPHRASE (or what you typed); a wrong passphrase and a modified header look the same to age".into()
            }
            SecretError::NoPassphrase { .. } => {
                "set BOSUN_PASSPHRASE, or run bosun on a terminal to be asked".into()
            }
            SecretError::Tampered { file, .. } => format!(
                "age authenticates every byte, so the file was changed after it was encrypted; restore it \
                 (git checkout -- {}) and change secrets only through `bosun secret edit`",
                file.display()
            ),
            SecretError::NoRecipients { file } => format!(
                "pass -r RECIPIENT (age1... or an SSH public key), -R RECIPIENTS_FILE or --passphrase, or list the recipients in {}",
                super::recipients::sidecar(file).display()
            ),
            SecretError::BadRecipient { .. } | SecretError::BadRecipientsFile { .. } => {
                "a recipient is an age public key (age1...) or an SSH public key (ssh-ed25519 AAAA... or ssh-rsa AAAA...)".into()
            }
            SecretError::AlreadyEncrypted(file) => format!(
                "use `bosun secret rekey {}` to change who can decrypt it, or `bosun secret edit` to change it",
                file.display()
            ),
            SecretError::NotEncrypted(_) => {
                "encrypt it first with `bosun secret encrypt`".into()
            }
            SecretError::ExcessiveWork { .. } => {
                "re-encrypt it with bosun (scrypt work 2^18)".into()
            }
            _ => return None,
        })
    }

    /// The message and, when there is one, the hint, as shown to the operator.
    pub fn render(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self}\n  hint: {h}"),
            None => self.to_string(),
        }
    }
}
