//! `bosun secret …`: encrypt, decrypt, edit and rekey age-encrypted vars files, and make
//! age keys. The CLI face of [`bosun_model::secrets`].

use crate::printer;
use bosun_model::secrets::edit::{run_editor, EditorOutcome, PrivateDir};
use bosun_model::secrets::files::write_atomic;
use bosun_model::secrets::keys::{self, ENV_NEW_PASSPHRASE, ENV_PASSPHRASE};
use bosun_model::secrets::{self as s, recipients, Recipients, SecretError, Unlocked};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Encrypt a file (ASCII-armored age) to recipients or a passphrase; writes FILE.age.
    Encrypt {
        file: PathBuf,
        /// Where to write (default FILE.age; `-` for stdout).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        to: RecipientArgs,
    },
    /// Decrypt a file to stdout, or to OUT (mode 0600).
    Decrypt {
        file: PathBuf,
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Decrypt into a private temp dir, run $EDITOR (default vi), re-encrypt if changed.
    Edit { file: PathBuf },
    /// Re-encrypt to other recipients or another passphrase (default: the ones in FILE's
    /// .recipients list, after you changed it).
    Rekey {
        file: PathBuf,
        #[command(flatten)]
        to: RecipientArgs,
    },
    /// Make an age identity (private key); prints its public key (the recipient).
    Keygen {
        /// Write the identity here (mode 0600; refuses to overwrite). Default: stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RecipientArgs {
    /// A public key to encrypt to: `age1...`, or an SSH public key (`ssh-ed25519 AAAA...`,
    /// `ssh-rsa AAAA...`). Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    recipient: Vec<String>,
    /// A file of public keys, one per line (`#` comments). Repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    recipients_file: Vec<PathBuf>,
    /// Encrypt with a passphrase instead (scrypt): from BOSUN_PASSPHRASE for encrypt,
    /// BOSUN_NEW_PASSPHRASE for rekey, else asked twice on the terminal.
    #[arg(long, conflicts_with_all = ["recipient", "recipients_file"])]
    passphrase: bool,
}

impl RecipientArgs {
    /// What the flags ask for; `None` when none was given.
    fn resolve(&self, passphrase_env: &str) -> Result<Option<Recipients>, SecretError> {
        if self.passphrase {
            return keys::new_passphrase(passphrase_env)
                .map(Recipients::Passphrase)
                .map(Some);
        }
        if self.recipient.is_empty() && self.recipients_file.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for r in &self.recipient {
            list.push(recipients::parse(r)?);
        }
        for f in &self.recipients_file {
            list.extend(recipients::read_file(f)?);
        }
        Ok(Some(Recipients::Keys(list)))
    }
}

pub async fn run(cmd: SecretCommand) -> u8 {
    let r = match cmd {
        SecretCommand::Encrypt { file, output, to } => encrypt(&file, output, &to),
        SecretCommand::Decrypt { file, output } => decrypt(&file, output.as_deref()),
        SecretCommand::Edit { file } => edit(&file).await,
        SecretCommand::Rekey { file, to } => rekey(&file, &to),
        SecretCommand::Keygen { output } => keygen(output.as_deref()),
    };
    r.unwrap_or_else(printer::error)
}

/// An error for the operator: the message, then its hint.
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        Failure(e.render())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    std::fs::read(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_encrypted(path: &Path) -> Result<Vec<u8>, SecretError> {
    let bytes = read(path)?;
    if !s::is_encrypted(&bytes) {
        return Err(SecretError::NotEncrypted(path.to_path_buf()));
    }
    Ok(bytes)
}

/// Writes the new ciphertext and brings the `.recipients` list in line with it.
fn store(file: &Path, ciphertext: &[u8], to: &Recipients) -> Result<String, SecretError> {
    write_atomic(file, ciphertext, None)?;
    let side = recipients::sidecar(file);
    Ok(match to {
        Recipients::Keys(k) => {
            if recipients::record(file, k)? {
                format!("; recipients recorded in {}", side.display())
            } else {
                String::new()
            }
        }
        Recipients::Passphrase(_) => {
            if recipients::forget(file)? {
                format!("; removed {} (it no longer applies)", side.display())
            } else {
                String::new()
            }
        }
    })
}

fn encrypt(file: &Path, output: Option<PathBuf>, to: &RecipientArgs) -> Result<u8, Failure> {
    let plain = zeroize::Zeroizing::new(read(file)?);
    if s::is_encrypted(&plain) {
        return Err(SecretError::AlreadyEncrypted(file.to_path_buf()).into());
    }
    let out = output.unwrap_or_else(|| {
        let mut o = file.as_os_str().to_owned();
        o.push(".age");
        PathBuf::from(o)
    });
    let to_stdout = out.as_os_str() == "-";
    let recipients = match to.resolve(ENV_PASSPHRASE)? {
        Some(r) => r,
        None => match (to_stdout, recipients::recorded(&out)?) {
            (false, Some(list)) if !list.is_empty() => Recipients::Keys(list),
            _ => {
                return Err(SecretError::NoRecipients {
                    file: out.to_path_buf(),
                }
                .into())
            }
        },
    };
    let ciphertext = s::encrypt(file, &plain, &recipients)?;
    if to_stdout {
        printer::out_bytes(&ciphertext)
            .map_err(|e| Failure(format!("cannot write to stdout: {e}")))?;
        return Ok(0);
    }
    let note = store(&out, &ciphertext, &recipients)?;
    printer::note(format!(
        "encrypted {} to {} for {}{note}\nthe plaintext {} is still there: delete it once you have checked the result",
        file.display(),
        out.display(),
        recipients.describe(),
        file.display(),
    ));
    Ok(0)
}

fn decrypt(file: &Path, output: Option<&Path>) -> Result<u8, Failure> {
    let bytes = read_encrypted(file)?;
    let plain = s::decrypt(file, &bytes, None)?;
    match output {
        None => printer::out_bytes(&plain.bytes)
            .map_err(|e| Failure(format!("cannot write to stdout: {e}")))?,
        Some(out) => write_atomic(out, &plain.bytes, Some(0o600))?,
    }
    Ok(0)
}

async fn edit(file: &Path) -> Result<u8, Failure> {
    let bytes = read_encrypted(file)?;
    let plain = s::decrypt(file, &bytes, None)?;
    // Decide how to re-encrypt before the editor opens: an edit that cannot be saved would
    // be lost.
    let recipients = match plain.unlocked {
        Unlocked::Passphrase(ref p) => Recipients::Passphrase(p.clone()),
        Unlocked::Identities { .. } => match recipients::recorded(file)? {
            Some(list) if !list.is_empty() => Recipients::Keys(list),
            _ => {
                return Err(Failure(format!(
                    "cannot tell who {} is encrypted to: {} is missing or empty (age files do not record their recipients)\n  \
                     hint: run `bosun secret rekey {} -r RECIPIENT...` (or -R FILE) once; it records them",
                    file.display(),
                    recipients::sidecar(file).display(),
                    file.display()
                )))
            }
        },
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secret".into());
    // The plaintext's own name, so the editor highlights YAML as YAML.
    let name = name.strip_suffix(".age").unwrap_or(&name).to_string();
    let scratch = PrivateDir::create()
        .map_err(|e| Failure(format!("cannot create a private scratch directory: {e}")))?;
    let scratch_path = scratch.path().to_path_buf();
    let result = edit_in(&scratch, file, &name, &plain.bytes, &recipients).await;
    // Gone whatever happened; if it cannot be, the operator must know (plaintext).
    if let Err(e) = scratch.remove() {
        printer::note(format!(
            "warning: could not remove {}: {e}; remove it by hand, it holds plaintext",
            scratch_path.display()
        ));
    }
    result
}

/// The editor run on a scratch copy of `plain` named `name`, and the re-encryption.
async fn edit_in(
    scratch: &PrivateDir,
    file: &Path,
    name: &str,
    plain: &[u8],
    recipients: &Recipients,
) -> Result<u8, Failure> {
    let tmp = scratch
        .write_file(name, plain)
        .map_err(|e| Failure(format!("cannot write the scratch copy: {e}")))?;
    let outcome = run_editor(&tmp).await;
    match outcome {
        EditorOutcome::Saved => {
            let edited = zeroize::Zeroizing::new(
                std::fs::read(&tmp)
                    .map_err(|e| Failure(format!("cannot read the edited copy back: {e}")))?,
            );
            if edited[..] == plain[..] {
                printer::note(format!("no changes; {} left as it was", file.display()));
                Ok(0)
            } else {
                warn_if_not_yaml(file, name, &edited);
                let ciphertext = s::encrypt(file, &edited, recipients)?;
                write_atomic(file, &ciphertext, None)?;
                printer::note(format!(
                    "{} re-encrypted for {}",
                    file.display(),
                    recipients.describe()
                ));
                Ok(0)
            }
        }
        EditorOutcome::Failed(why) => Err(Failure(format!(
            "{why}; {} is unchanged and the scratch copy was removed",
            file.display()
        ))),
        EditorOutcome::Interrupted => {
            printer::note(format!(
                "interrupted; {} is unchanged and the scratch copy was removed",
                file.display()
            ));
            Ok(130)
        }
    }
}

/// A vars file that no longer parses would stop every later run; say so now (the edit is
/// kept: throwing it away would be worse).
fn warn_if_not_yaml(file: &Path, name: &str, text: &[u8]) {
    if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
        return;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        printer::note(format!(
            "warning: {} is not UTF-8 text any more",
            file.display()
        ));
        return;
    };
    if let Err(e) = s::parse_decrypted::<serde_json::Value>(file, text) {
        printer::note(format!("warning: saved, but {}", e.render()));
    }
}

fn rekey(file: &Path, to: &RecipientArgs) -> Result<u8, Failure> {
    let bytes = read_encrypted(file)?;
    let plain = s::decrypt(file, &bytes, None)?;
    let recipients = match to.resolve(ENV_NEW_PASSPHRASE)? {
        Some(r) => r,
        None => match recipients::recorded(file)? {
            Some(list) if !list.is_empty() => Recipients::Keys(list),
            _ => {
                return Err(SecretError::NoRecipients {
                    file: file.to_path_buf(),
                }
                .into())
            }
        },
    };
    let ciphertext = s::encrypt(file, &plain.bytes, &recipients)?;
    let note = store(file, &ciphertext, &recipients)?;
    printer::note(format!(
        "{} re-encrypted for {}{note}",
        file.display(),
        recipients.describe()
    ));
    Ok(0)
}

fn keygen(output: Option<&Path>) -> Result<u8, Failure> {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = zeroize::Zeroizing::new(format!(
        "# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    ));
    match output {
        None => {
            printer::out_bytes(text.as_bytes())
                .map_err(|e| Failure(format!("cannot write to stdout: {e}")))?;
            printer::note(format!("public key: {public}"));
        }
        Some(out) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)
                .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            printer::out(public);
        }
    }
    Ok(0)
}
