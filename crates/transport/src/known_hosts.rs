//! A known_hosts reader that decides what an offered host key means, as OpenSSH would.
//!
//! Lines are `[@marker] PATTERNS KEYTYPE BASE64 [comment]`. PATTERNS is a comma list of
//! names with `*`/`?` wildcards and `!` negation (a matching negated pattern rules the line
//! out), or one hashed name `|1|SALT|HMAC-SHA1`. A host on another port than 22 is looked
//! up as `[host]:port`. `@revoked` lines list keys that are refused whatever else the file
//! says; `@cert-authority` lines are for host certificates, which bosun does not accept, so
//! they are read and ignored. Comments, blank lines and lines whose key does not parse are
//! skipped, as OpenSSH skips them.
//!
//! Unlike `russh::keys::check_known_hosts_path`, a host that has keys recorded only of
//! another algorithm than the one it offers is [`Verdict::Changed`], not unknown: otherwise
//! an attacker who offers an algorithm the file does not mention would be "new" and, with
//! `--accept-new-host-keys`, learned.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use sha1::Sha1;
use std::path::Path;

/// A recorded key for the host that is not the offered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// 1-based line number.
    pub line: usize,
    /// The recorded key's algorithm, e.g. `ssh-ed25519`.
    pub algorithm: String,
}

/// What the file says about an offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is recorded for the host (first such line).
    Known { line: usize },
    /// The host has no line at all: it may be learned.
    Unknown,
    /// The host has lines, none with this key: every key recorded for it.
    Changed { recorded: Vec<Recorded> },
    /// An `@revoked` line for the host lists this key.
    Revoked { line: usize },
}

/// The name a host is looked up by: `host` on port 22, else `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// What the file at `path` says about `key` offered by `host` on `port`. A missing file
/// knows no host.
pub fn check_path(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<Verdict> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(check(&String::from_utf8_lossy(&bytes), host, port, key)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Verdict::Unknown),
        Err(e) => Err(e),
    }
}

/// What known_hosts `text` says about `key` offered by `host` on `port`.
pub fn check(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    // ssh lowercases the host name before it looks it up (hashed names included).
    let name = lookup_name(&host.to_ascii_lowercase(), port);
    let mut known = None;
    let mut recorded = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let Some((marker, recorded_key)) = parse_line(line, &name) else {
            continue;
        };
        let same = recorded_key.key_data() == key.key_data();
        match marker {
            Marker::Revoked if same => return Verdict::Revoked { line: line_no },
            Marker::Revoked | Marker::CertAuthority => {}
            Marker::None if same => {
                known.get_or_insert(line_no);
            }
            Marker::None => recorded.push(Recorded {
                line: line_no,
                algorithm: recorded_key.algorithm().as_str().to_string(),
            }),
        }
    }
    match known {
        Some(line) => Verdict::Known { line },
        None if recorded.is_empty() => Verdict::Unknown,
        None => Verdict::Changed { recorded },
    }
}

/// A line's marker and key when its patterns match `name`; `None` for comments, blank or
/// malformed lines and other hosts.
fn parse_line(line: &str, name: &str) -> Option<(Marker, PublicKey)> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    if !hosts_match(first, name) {
        return None;
    }
    let algorithm = fields.next()?;
    let key = russh::keys::parse_public_key_base64(fields.next()?).ok()?;
    (key.algorithm().as_str() == algorithm).then_some((marker, key))
}

/// Whether a line's host field names `name` (already lowercased).
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut positive = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            Some(neg) if wildcard_match(&neg.to_ascii_lowercase(), name) => return false,
            Some(_) => {}
            None => positive |= wildcard_match(&pattern.to_ascii_lowercase(), name),
        }
    }
    positive
}

/// `SALT|HASH`, both base64: HMAC-SHA1 of `name` keyed with the salt is the hash.
fn hashed_matches(salt_hash: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = salt_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's `match_pattern`: `*` is any run of characters, `?` exactly one.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was and what it matched up to, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == '?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICm/WdjW4AM+0CeKagtwRfYESsFdcn4onr+Wb41SwAGJ";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA5giZ9hQsSODb7ryMBQJ/q0GGt53Ga6DycZ9j7Osqve";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIz9PY6GefnxLs0dYAodJTp9UT+L3oM3QJMubSLUU/mNTKs4W7LKpmDwCldtoAX4OArcBFVXVXXV5y/eaaMHPa0=";
    /// `ssh-keygen -H` of `[127.0.0.2]:2222` and of `db.example.com`, both with ED_A.
    const HASHED_PORT: &str = "|1|0xnj75eTD69FXq5oc+zQU4EvVD8=|OUKbKD4iXbMtaJ3o9fLOpmVI6g4=";
    const HASHED_22: &str = "|1|+qnXmRLyxndEawJp+k9WD0261WU=|ai4UHjHfzKUSQY1318fYDkxle/4=";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).expect("test key")
    }

    fn ed(b64: &str) -> String {
        format!("ssh-ed25519 {b64}")
    }

    #[test]
    fn plain_names_and_comma_lists() {
        let kh = format!(
            "# comment\n\nother.example {}\ndb.example.com,10.0.0.5 {}\n",
            ed(ED_B),
            ed(ED_A)
        );
        assert_eq!(
            check(&kh, "db.example.com", 22, &key(ED_A)),
            Verdict::Known { line: 4 }
        );
        assert_eq!(
            check(&kh, "10.0.0.5", 22, &key(ED_A)),
            Verdict::Known { line: 4 }
        );
        // Names are case-insensitive, as ssh lowercases them.
        assert_eq!(
            check(&kh, "DB.Example.COM", 22, &key(ED_A)),
            Verdict::Known { line: 4 }
        );
        assert_eq!(check(&kh, "10.0.0.6", 22, &key(ED_A)), Verdict::Unknown);
        // A line for port 22 does not cover another port.
        assert_eq!(check(&kh, "10.0.0.5", 2222, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn port_form() {
        let kh = format!("[127.0.0.2]:2222 {}\n127.0.0.3 {}\n", ed(ED_A), ed(ED_A));
        assert_eq!(
            check(&kh, "127.0.0.2", 2222, &key(ED_A)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(check(&kh, "127.0.0.2", 22, &key(ED_A)), Verdict::Unknown);
        assert_eq!(check(&kh, "127.0.0.3", 2222, &key(ED_A)), Verdict::Unknown);
        assert_eq!(
            check(&kh, "127.0.0.3", 22, &key(ED_A)),
            Verdict::Known { line: 2 }
        );
    }

    #[test]
    fn hashed_names() {
        let kh = format!("{HASHED_PORT} {}\n{HASHED_22} {}\n", ed(ED_A), ed(ED_A));
        assert_eq!(
            check(&kh, "127.0.0.2", 2222, &key(ED_A)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(
            check(&kh, "db.example.com", 22, &key(ED_A)),
            Verdict::Known { line: 2 }
        );
        assert_eq!(check(&kh, "127.0.0.2", 22, &key(ED_A)), Verdict::Unknown);
        assert_eq!(
            check(&kh, "db.example.com", 22, &key(ED_B)),
            Verdict::Changed {
                recorded: vec![Recorded {
                    line: 2,
                    algorithm: "ssh-ed25519".into()
                }]
            }
        );
        // A damaged hash is no match and no crash.
        let bad = format!("|1|!!|?? {}\n|1|abc {}\n", ed(ED_A), ed(ED_A));
        assert_eq!(check(&bad, "127.0.0.2", 2222, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn wildcards() {
        let kh = format!("*.example.com,[10.0.0.?]:2222 {}\n", ed(ED_A));
        assert_eq!(
            check(&kh, "db.example.com", 22, &key(ED_A)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(
            check(&kh, "10.0.0.7", 2222, &key(ED_A)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(check(&kh, "10.0.0.17", 2222, &key(ED_A)), Verdict::Unknown);
        assert_eq!(check(&kh, "example.com", 22, &key(ED_A)), Verdict::Unknown);
        assert!(wildcard_match("*", "[::1]:2222"));
        assert!(wildcard_match("a*b*c", "aXXbYbc"));
        assert!(!wildcard_match("a*b*c", "aXXbYb"));
        assert!(wildcard_match("**?", "x"));
        assert!(!wildcard_match("?", ""));
    }

    #[test]
    fn negation_rules_a_line_out() {
        let kh = format!(
            "*.example.com,!db.example.com {}\ndb.example.com {}\n",
            ed(ED_A),
            ed(ED_B)
        );
        assert_eq!(
            check(&kh, "web.example.com", 22, &key(ED_A)),
            Verdict::Known { line: 1 }
        );
        // Line 1 does not apply to db: its key there is only line 2's.
        assert_eq!(
            check(&kh, "db.example.com", 22, &key(ED_B)),
            Verdict::Known { line: 2 }
        );
        assert!(matches!(
            check(&kh, "db.example.com", 22, &key(ED_A)),
            Verdict::Changed { recorded } if recorded.len() == 1 && recorded[0].line == 2
        ));
        // A negation alone matches nothing.
        let only_neg = format!("!db.example.com {}\n", ed(ED_A));
        assert_eq!(check(&only_neg, "web", 22, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn revoked_keys_are_refused_whatever_else_matches() {
        let kh = format!(
            "[127.0.0.2]:2222 {}\n@revoked {HASHED_PORT} {}\n@revoked * {}\n",
            ed(ED_A),
            ed(ED_A),
            ed(ED_B)
        );
        assert_eq!(
            check(&kh, "127.0.0.2", 2222, &key(ED_A)),
            Verdict::Revoked { line: 2 }
        );
        // The wildcard revocation applies to every host, known or not.
        assert_eq!(
            check(&kh, "elsewhere", 22, &key(ED_B)),
            Verdict::Revoked { line: 3 }
        );
        // A revoked line is not a recorded key: another host is still unknown.
        assert_eq!(check(&kh, "elsewhere", 22, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn another_algorithm_is_a_changed_key() {
        let kh = format!(
            "[127.0.0.2]:2222 ecdsa-sha2-nistp256 {ECDSA} root@old\n\
             @cert-authority *.example.com {}\n",
            ed(ED_B)
        );
        assert_eq!(
            check(&kh, "127.0.0.2", 2222, &key(ED_A)),
            Verdict::Changed {
                recorded: vec![Recorded {
                    line: 1,
                    algorithm: "ecdsa-sha2-nistp256".into()
                }]
            }
        );
        // The same host with both keys recorded: the offered one is known.
        let both = format!("{kh}[127.0.0.2]:2222 {}\n", ed(ED_A));
        assert_eq!(
            check(&both, "127.0.0.2", 2222, &key(ED_A)),
            Verdict::Known { line: 3 }
        );
        // A @cert-authority line neither breaks parsing nor makes a host known.
        assert_eq!(
            check(&kh, "web.example.com", 22, &key(ED_B)),
            Verdict::Unknown
        );
    }

    #[test]
    fn same_algorithm_other_key_is_changed() {
        let kh = format!("h1 {}\nh1 {}\n", ed(ED_B), ed(ED_B));
        assert_eq!(
            check(&kh, "h1", 22, &key(ED_A)),
            Verdict::Changed {
                recorded: vec![
                    Recorded {
                        line: 1,
                        algorithm: "ssh-ed25519".into()
                    },
                    Recorded {
                        line: 2,
                        algorithm: "ssh-ed25519".into()
                    }
                ]
            }
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let kh = format!(
            "h1\nh1 ssh-ed25519\nh1 ssh-ed25519 !!notbase64\nh1 ssh-rsa {ED_B}\n@bogus h1 {}\n\th1 {}\n",
            ed(ED_B),
            ed(ED_A)
        );
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Known { line: 6 });
        assert_eq!(
            check(&kh, "h1", 22, &key(ED_B)),
            Verdict::Changed {
                recorded: vec![Recorded {
                    line: 6,
                    algorithm: "ssh-ed25519".into()
                }]
            }
        );
        let missing = Path::new("/nonexistent/bosun/known_hosts");
        assert_eq!(
            check_path(missing, "h1", 22, &key(ED_A)).unwrap(),
            Verdict::Unknown
        );
    }
}
