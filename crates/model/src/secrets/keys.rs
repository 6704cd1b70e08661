//! What decrypts a file: identity files or a passphrase, and which source wins.
//!
//! A file encrypted to recipients needs identities. They come from the first of these
//! that is set; the others are then not consulted:
//! 1. `--identity FILE` on the command line (repeatable);
//! 2. the `BOSUN_IDENTITY` environment variable (one path);
//! 3. `secrets_identity: FILE` in the inventory (relative to the inventory file).
//!
//! An identity file is an age identity file (`AGE-SECRET-KEY-1...` lines, as written by
//! `age-keygen` or `bosun secret keygen`) or an OpenSSH private key (ed25519 or RSA); an
//! encrypted SSH key asks for its passphrase, or reads `BOSUN_KEY_PASSPHRASE`.
//!
//! A passphrase-encrypted file needs the passphrase: `BOSUN_PASSPHRASE`, else it is asked
//! through the prompter the command line installs ([`set_prompter`]: on the terminal, no
//! echo). Which of the two a file needs is read from its header.

use super::error::{IdentitySource, SecretError};
use age::secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `--identity` flags. Set once by the CLI before anything is loaded: the flag is global
/// and every command that loads an inventory must honour it, so it is held here rather than
/// threaded through every loader.
static CLI_IDENTITIES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Records the `--identity` flags of this run (first call wins).
pub fn set_cli_identities(paths: Vec<PathBuf>) {
    let _ = CLI_IDENTITIES.set(paths);
}

pub const ENV_IDENTITY: &str = "BOSUN_IDENTITY";
pub const ENV_PASSPHRASE: &str = "BOSUN_PASSPHRASE";
pub const ENV_NEW_PASSPHRASE: &str = "BOSUN_NEW_PASSPHRASE";
pub const ENV_KEY_PASSPHRASE: &str = "BOSUN_KEY_PASSPHRASE";

/// The identity files to try and where they came from; `None` when no source is set.
pub fn identity_paths(inventory: Option<&Path>) -> Option<(Vec<PathBuf>, IdentitySource)> {
    if let Some(v) = CLI_IDENTITIES.get().filter(|v| !v.is_empty()) {
        return Some((v.clone(), IdentitySource::Flag));
    }
    if let Some(p) = std::env::var_os(ENV_IDENTITY).filter(|p| !p.is_empty()) {
        let p = crate::inventory::resolve_path(Path::new("."), &p.to_string_lossy());
        return Some((vec![p], IdentitySource::Env));
    }
    inventory.map(|p| (vec![p.to_path_buf()], IdentitySource::Inventory))
}

/// Loads every identity in `paths`.
pub fn load_identities(
    paths: &[PathBuf],
    source: IdentitySource,
) -> Result<Vec<Box<dyn age::Identity>>, SecretError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(load_identity_file(p, source)?);
    }
    Ok(out)
}

fn load_identity_file(
    path: &Path,
    source: IdentitySource,
) -> Result<Vec<Box<dyn age::Identity>>, SecretError> {
    let bad = |reason: String| SecretError::BadIdentity {
        path: path.to_path_buf(),
        from: source,
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        bad(match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".into(),
            _ => format!("cannot read it: {e}"),
        })
    })?;
    if let Ok(file) = age::IdentityFile::from_buffer(&bytes[..]) {
        let ids = file
            .into_identities()
            .map_err(|e| bad(format!("cannot use it: {e}")))?;
        if !ids.is_empty() {
            return Ok(ids);
        }
    }
    let name = path.display().to_string();
    let ssh = age::ssh::Identity::from_buffer(&bytes[..], Some(name))
        .map_err(|_| bad("neither an age identity file nor an SSH private key".into()))?;
    let ssh = match ssh {
        age::ssh::Identity::Encrypted(key) => {
            let pass = read_key_passphrase(path, source)?;
            let key = key.decrypt(pass).map_err(|_| {
                bad(format!(
                    "the SSH key's passphrase is wrong (check {ENV_KEY_PASSPHRASE})"
                ))
            })?;
            age::ssh::Identity::from(key)
        }
        age::ssh::Identity::Unsupported(k) => {
            use age::ssh::UnsupportedKey as U;
            return Err(bad(match k {
                U::EncryptedPem => {
                    "an encrypted PEM key; convert it with `ssh-keygen -p -o -f KEY`".into()
                }
                U::EncryptedSsh(c) => format!("encrypted with cipher {c}, which age cannot read"),
                U::Hardware(t) => format!("{t} lives on a hardware key; age cannot use it"),
                U::Type(t) => format!("SSH key type {t} is not supported (ed25519 or RSA)"),
            }));
        }
        plain => plain,
    };
    Ok(vec![Box::new(ssh)])
}

fn read_key_passphrase(path: &Path, source: IdentitySource) -> Result<SecretString, SecretError> {
    if let Ok(p) = std::env::var(ENV_KEY_PASSPHRASE) {
        return Ok(SecretString::from(p));
    }
    prompt(&format!("passphrase for SSH key {}: ", path.display()))?.ok_or_else(|| {
        SecretError::BadIdentity {
            path: path.to_path_buf(),
            from: source,
            reason: format!(
                "the SSH key is encrypted: set {ENV_KEY_PASSPHRASE} or run on a terminal"
            ),
        }
    })
}

/// The passphrase of an existing file: `BOSUN_PASSPHRASE`, else asked on the terminal.
pub fn passphrase_for(file: &Path) -> Result<SecretString, SecretError> {
    if let Some(p) = std::env::var(ENV_PASSPHRASE).ok().filter(|p| !p.is_empty()) {
        return Ok(SecretString::from(p));
    }
    prompt(&format!("passphrase for {}: ", file.display()))?.ok_or_else(|| {
        SecretError::NoPassphrase {
            file: file.to_path_buf(),
        }
    })
}

/// A passphrase to encrypt with: from `env_var`, else asked twice on the terminal.
pub fn new_passphrase(env_var: &str) -> Result<SecretString, SecretError> {
    if let Some(p) = std::env::var(env_var).ok().filter(|p| !p.is_empty()) {
        return Ok(SecretString::from(p));
    }
    use age::secrecy::ExposeSecret;
    let first = prompt("new passphrase: ")?
        .ok_or_else(|| SecretError::Prompt(format!("no terminal; set {env_var}")))?;
    if first.expose_secret().is_empty() {
        return Err(SecretError::EmptyPassphrase);
    }
    let again = prompt("new passphrase again: ")?
        .ok_or_else(|| SecretError::Prompt(format!("no terminal; set {env_var}")))?;
    if first.expose_secret() != again.expose_secret() {
        return Err(SecretError::PassphraseMismatch);
    }
    Ok(first)
}

/// How a secret is asked of the operator: the question, then the answer (`None` when
/// nobody can be asked, e.g. no terminal). The command line installs one; this crate never
/// touches the terminal itself.
pub type Prompter = fn(&str) -> std::io::Result<Option<SecretString>>;

static PROMPTER: OnceLock<Prompter> = OnceLock::new();

/// Installs the prompter of this run (first call wins). Without one, nothing is asked.
pub fn set_prompter(p: Prompter) {
    let _ = PROMPTER.set(p);
}

/// Asks the operator through the installed prompter (also for other crates: the SSH key
/// passphrase of the transport); `None` when there is none or it cannot ask.
pub fn prompt(question: &str) -> Result<Option<SecretString>, SecretError> {
    match PROMPTER.get() {
        Some(ask) => ask(question).map_err(|e| SecretError::Prompt(e.to_string())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_files_age_and_garbage() {
        let dir = std::env::temp_dir().join(format!("bosun-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = age::x25519::Identity::generate();
        let f = dir.join("id.txt");
        {
            use age::secrecy::ExposeSecret;
            std::fs::write(
                &f,
                format!("# created now\n{}\n", id.to_string().expose_secret()),
            )
            .unwrap();
        }
        assert_eq!(
            load_identities(&[f], IdentitySource::Flag).unwrap().len(),
            1
        );
        let g = dir.join("garbage");
        std::fs::write(&g, "hello\n").unwrap();
        let e = load_identities(&[g], IdentitySource::Env)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("neither") && e.contains("BOSUN_IDENTITY"), "{e}");
        let e = load_identities(&[dir.join("missing")], IdentitySource::Inventory)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
