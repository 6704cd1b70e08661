//! age encryption and decryption of whole (small) files, ASCII-armored.
//!
//! Armor keeps encrypted vars files text: they diff, merge-conflict and commit like any
//! other file. age authenticates everything (the header by its MAC, the content chunk by
//! chunk), so any change to an encrypted file makes decryption fail; that failure is
//! reported as tampering, never skipped.

use super::error::{IdentitySource, SecretError};
use super::keys;
use super::recipients::Recipients;
use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use age::DecryptError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The first line of an armored age file.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The first bytes of a binary age file.
const BINARY_MAGIC: &[u8] = b"age-encryption.org/";
/// scrypt work for new passphrase files: 2^18, as the reference age uses.
pub const SCRYPT_LOG_N: u8 = 18;
/// The most scrypt work a file may ask for (as the reference age: 2^22, 4 GiB).
const SCRYPT_MAX_LOG_N: u8 = 22;

/// Whether `bytes` are an age file (armored or binary).
pub fn is_encrypted(bytes: &[u8]) -> bool {
    let t = trim_start(bytes);
    t.starts_with(ARMOR_BEGIN.as_bytes()) || t.starts_with(BINARY_MAGIC)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &bytes[n..]
}

/// Encrypts `plaintext` for `to`, armored. `file` only names the file in errors.
pub fn encrypt(file: &Path, plaintext: &[u8], to: &Recipients) -> Result<Vec<u8>, SecretError> {
    let fail = |reason: String| SecretError::Encrypt {
        file: file.to_path_buf(),
        reason,
    };
    let encryptor = match to {
        Recipients::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(p.clone());
            r.set_work_factor(SCRYPT_LOG_N);
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        }
        Recipients::Keys(keys) => {
            if keys.is_empty() {
                return Err(SecretError::NoRecipients {
                    file: file.to_path_buf(),
                });
            }
            age::Encryptor::with_recipients(
                keys.iter().map(|k| k.age.as_ref() as &dyn age::Recipient),
            )
        }
    }
    .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    let io = |e: std::io::Error| fail(e.to_string());
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io)?;
    let mut w = encryptor.wrap_output(armor).map_err(io)?;
    w.write_all(plaintext).map_err(io)?;
    w.finish().and_then(|a| a.finish()).map_err(io)?;
    Ok(out)
}

/// How a file was unlocked; `edit` re-encrypts the same way.
pub enum Unlocked {
    Passphrase(SecretString),
    Identities {
        paths: Vec<PathBuf>,
        source: IdentitySource,
    },
}

/// A decrypted file.
pub struct Plaintext {
    pub bytes: Zeroizing<Vec<u8>>,
    pub unlocked: Unlocked,
}

/// Decrypts an age file (armored or binary) read from `file`.
///
/// `inventory_identity` is the inventory's `secrets_identity`, the lowest-precedence
/// identity source (see [`keys`]).
pub fn decrypt(
    file: &Path,
    bytes: &[u8],
    inventory_identity: Option<&Path>,
) -> Result<Plaintext, SecretError> {
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(trim_start(bytes)))
        .map_err(|e| classify(file, e))?;
    if decryptor.is_scrypt() {
        let pass = keys::passphrase_for(file)?;
        let mut id = age::scrypt::Identity::new(pass.clone());
        id.set_max_work_factor(SCRYPT_MAX_LOG_N);
        let reader = decryptor
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| match e {
                DecryptError::DecryptionFailed => SecretError::WrongPassphrase {
                    file: file.to_path_buf(),
                },
                other => classify(file, other),
            })?;
        Ok(Plaintext {
            bytes: read_all(file, reader)?,
            unlocked: Unlocked::Passphrase(pass),
        })
    } else {
        let (paths, source) =
            keys::identity_paths(inventory_identity).ok_or_else(|| SecretError::NoIdentity {
                file: file.to_path_buf(),
            })?;
        let ids = keys::load_identities(&paths, source)?;
        let reader = decryptor
            .decrypt(ids.iter().map(|i| i.as_ref()))
            .map_err(|e| match e {
                DecryptError::NoMatchingKeys => SecretError::NoMatchingIdentity {
                    file: file.to_path_buf(),
                    identities: paths.clone(),
                    from: source,
                },
                other => classify(file, other),
            })?;
        Ok(Plaintext {
            bytes: read_all(file, reader)?,
            unlocked: Unlocked::Identities { paths, source },
        })
    }
}

fn read_all(file: &Path, mut r: impl Read) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).map_err(|e| SecretError::Tampered {
        file: file.to_path_buf(),
        detail: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "it ends early: it was truncated".into(),
            _ if e.to_string() == "decryption error" => {
                "its content does not match its authentication tag".into()
            }
            _ => e.to_string(),
        },
    })?;
    Ok(out)
}

/// Every failure that is not about keys means the bytes are not what age wrote.
fn classify(file: &Path, e: DecryptError) -> SecretError {
    let detail = match e {
        DecryptError::InvalidMac => "its header MAC does not match".to_string(),
        DecryptError::InvalidHeader => "its header is not a valid age header".into(),
        DecryptError::DecryptionFailed => "a file key in its header does not decrypt".into(),
        DecryptError::UnknownFormat => "its header does not parse as age v1".into(),
        DecryptError::ExcessiveWork { required, .. } => {
            return SecretError::ExcessiveWork {
                file: file.to_path_buf(),
                required,
            }
        }
        other => other.to_string(),
    };
    SecretError::Tampered {
        file: file.to_path_buf(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::recipients;

    fn keys_for(id: &age::x25519::Identity) -> Recipients {
        Recipients::Keys(vec![recipients::parse(&id.to_public().to_string()).unwrap()])
    }

    #[test]
    fn armored_round_trip_and_detection() {
        let id = age::x25519::Identity::generate();
        let f = Path::new("t.yml.age");
        let enc = encrypt(f, b"a: secret-value\n", &keys_for(&id)).unwrap();
        let text = String::from_utf8(enc.clone()).unwrap();
        assert!(text.starts_with(ARMOR_BEGIN), "{text}");
        assert!(!text.contains("secret-value"));
        assert!(is_encrypted(&enc));
        assert!(!is_encrypted(b"a: 1\n"));
        let d = age::Decryptor::new_buffered(ArmoredReader::new(&enc[..])).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap();
        let out = read_all(f, &mut r).unwrap();
        assert_eq!(&out[..], b"a: secret-value\n");
    }

    #[test]
    fn a_changed_byte_is_reported_as_tampering() {
        let id = age::x25519::Identity::generate();
        let f = Path::new("t.yml.age");
        let plain = "k: v\n".repeat(200);
        let enc = encrypt(f, plain.as_bytes(), &keys_for(&id)).unwrap();
        let text = String::from_utf8(enc).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // A full line of the body, well past the header: the content's chunk.
        let victim = lines.len() - 3;
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut bytes = changed[victim].clone().into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        changed[victim] = String::from_utf8(bytes).unwrap();
        let tampered = changed.join("\n") + "\n";
        let d = age::Decryptor::new_buffered(ArmoredReader::new(tampered.as_bytes())).unwrap();
        let r = d
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap();
        match read_all(f, r) {
            Err(SecretError::Tampered { detail, .. }) => {
                assert!(detail.contains("authentication"), "{detail}")
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("tampered content decrypted"),
        }
    }
}
