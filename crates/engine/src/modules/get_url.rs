//! `get_url`: a file at `dest` downloaded from a URL, verified by checksum.
//!
//! Decided like Ansible: with a `checksum`, a `dest` whose sha256 matches is left alone and
//! nothing is downloaded; without one, an existing `dest` is left alone whatever it holds
//! (so declare a checksum to have a changed upstream file noticed). Only attributes are
//! then brought to what is declared.
//!
//! The host downloads with `curl`, else `wget` (the probe says which it has; neither is an
//! error naming both, raised only when a download is needed). The file goes to a temp file
//! beside `dest`, is checked against the checksum, gets its attributes, and only then is
//! renamed over `dest`: a failed download or a wrong checksum leaves `dest` as it was and
//! no temp file behind. Writes happen as the [`Writer`] the path's directories call for.

use super::fileops::{self, attr_changes, Attrs, Kind};
use super::writer::Writer;
use super::{de_mode, parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::{quote, track_temp};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
    /// The file to write (absolute; not a directory).
    dest: String,
    /// `sha256:HEX`.
    checksum: Option<String>,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    /// Seconds the whole download may take (default 10, as in Ansible).
    timeout: Option<u32>,
}

#[derive(Debug)]
pub struct GetUrl {
    url: String,
    dest: String,
    sha256: Option<String>,
    attrs: Attrs,
    timeout: u32,
}

/// The tool the host downloads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloader {
    Curl,
    Wget,
}

/// What apply does, and who does it (see [`Writer`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Download to a temp file beside `dest`, verify, set attributes, rename into place.
    Download { with: Downloader, writer: Writer },
    /// The contents are right; only mode/owner/group differ.
    Attrs { writer: Writer },
}

impl GetUrl {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("get_url", args)?;
        if !a.dest.starts_with('/') || a.dest.ends_with('/') {
            return Err(ArgError::new(format!(
                "get_url: dest `{}` must be the absolute path of a file",
                a.dest
            ))
            .hint("dest: /usr/local/bin/tool (the file, not its directory)"));
        }
        let scheme_ok = ["http://", "https://", "ftp://", "file://"]
            .iter()
            .any(|s| a.url.starts_with(s));
        if !scheme_ok || a.url.chars().any(char::is_whitespace) {
            return Err(ArgError::new(format!(
                "get_url: url `{}` is not an http(s), ftp or file URL",
                a.url
            )));
        }
        let sha256 = match a.checksum.as_deref() {
            None => None,
            Some(c) => Some(parse_checksum(c)?),
        };
        if a.timeout == Some(0) {
            return Err(ArgError::new("get_url: timeout must be at least 1 second"));
        }
        Ok(GetUrl {
            url: a.url,
            dest: a.dest,
            sha256,
            attrs: Attrs {
                mode: a.mode,
                owner: a.owner,
                group: a.group,
            },
            timeout: a.timeout.unwrap_or(10),
        })
    }

    /// The shell that fetches the URL into `"$t"`, as the writer (`__as`).
    fn fetch(&self, with: Downloader) -> String {
        let u = quote(&self.url);
        let t = self.timeout;
        match with {
            Downloader::Curl => format!(
                "__as curl --fail --silent --show-error --location --max-time {t} --output \"$t\" -- {u}"
            ),
            Downloader::Wget => {
                format!("__as wget --quiet --tries=1 --timeout={t} --output-document=\"$t\" -- {u}")
            }
        }
    }
}

/// `sha256:HEX` → lowercase hex; other algorithms are refused by name.
fn parse_checksum(c: &str) -> Result<String, ArgError> {
    let bad = || {
        ArgError::new(format!(
            "get_url: checksum `{c}` is not `sha256:` and 64 hex digits"
        ))
        .hint("checksum: \"sha256:9f86d08...\" (sha256sum prints the digits)")
    };
    let (algo, hex) = c.split_once(':').ok_or_else(bad)?;
    if !algo.eq_ignore_ascii_case("sha256") {
        return Err(ArgError::new(format!(
            "get_url: checksum algorithm `{algo}` is not supported; use sha256"
        )));
    }
    let hex = hex.trim().to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(hex)
}

impl Module for GetUrl {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        // The downloader first: the path probe ends the script early for an absent dest.
        let mut s = String::from(
            "if command -v curl >/dev/null 2>&1; then echo downloader=curl\n\
             elif command -v wget >/dev/null 2>&1; then echo downloader=wget\n\
             else echo downloader=none; fi\n",
        );
        s.push_str(&fileops::probe_path(&self.dest, None));
        if self.sha256.is_some() {
            // Only the checksum comes back, never the contents (they may be large binaries).
            s.push_str(
                "if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then\n\
                 [ -r \"$p\" ] || { echo \"cannot read $p\" >&2; exit 3; }\n\
                 h=$(sha256sum < \"$p\") || exit 3; echo \"sha256=${h%% *}\"\nfi\n",
            );
        }
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let st = fileops::parse_path_state(observed)?;
        let d = &self.dest;
        let why = match st.kind {
            Kind::Absent => format!("{d} is absent"),
            Kind::File => match (&self.sha256, &st.sha256) {
                (None, _) => String::new(),
                (Some(want), Some(have)) if want == have => String::new(),
                (Some(_), Some(have)) => format!("{d} has sha256 {}", &have[..have.len().min(16)]),
                (Some(_), None) => {
                    return Err(ModuleError::new(format!(
                        "get_url: the probe did not report the checksum of {d}"
                    )))
                }
            },
            Kind::Link => {
                return Err(ModuleError::new(format!(
                    "get_url: {d} is a symlink to {}; name the target file in `dest` (the rename would replace the link)",
                    st.link_target.as_deref().unwrap_or("?")
                )))
            }
            k => {
                return Err(ModuleError::new(format!(
                    "get_url: {d} is a {}, not a file; `dest` names the file to write",
                    k.as_str()
                )))
            }
        };
        if why.is_empty() {
            let diffs = attr_changes(&st, &self.attrs);
            if diffs.is_empty() {
                return Ok(Plan::unchanged(match &self.sha256 {
                    Some(_) => format!("{d} has the declared sha256"),
                    None => format!("{d} exists (no checksum declared, so it is kept)"),
                }));
            }
            let writer = st.writer(d)?;
            let mut details = diffs;
            details.extend(writer.note());
            return Ok(Plan::Change(
                Change::new(format!("set attributes of {d}"), Action::Attrs { writer })
                    .with_details(details),
            ));
        }
        let with = match observed.kv().get("downloader").copied() {
            Some("curl") => Downloader::Curl,
            Some("wget") => Downloader::Wget,
            _ => {
                return Err(ModuleError::new(format!(
                    "get_url: neither curl nor wget is installed on the host, so {} cannot be downloaded; install one first (apt: {{name: curl}})",
                    self.url
                )))
            }
        };
        let writer = st.writer(d)?;
        let sum = match &self.sha256 {
            Some(h) => format!("sha256 {}", &h[..16]),
            None => "no checksum".to_string(),
        };
        let mut details = vec![why];
        details.extend(writer.note());
        Ok(Plan::Change(
            Change::new(
                format!("download {} → {d} ({sum})", self.url),
                Action::Download { with, writer },
            )
            .with_details(details),
        ))
    }

    fn apply(&self, action: &Action) -> String {
        let p = quote(&self.dest);
        match action {
            Action::Attrs { writer } => format!(
                "{}{}",
                writer.prelude(&self.dest),
                fileops::apply_attrs(&p, &self.attrs, writer)
            ),
            Action::Download { with, writer } => {
                let suffix: String =
                    rand::Rng::sample_iter(rand::thread_rng(), &rand::distributions::Alphanumeric)
                        .take(12)
                        .map(char::from)
                        .collect();
                let mut s = writer.prelude(&self.dest);
                // The temp file is created empty (noclobber, owner-only) by the writer before
                // the downloader fills it, so it never follows anything planted at its name.
                s.push_str(&format!(
                    "p={p}\nd=${{p%/*}}; d=${{d:-/}}\n\
                     [ -d \"$d\" ] || {{ echo \"get_url: directory $d does not exist\" >&2; exit 1; }}\n\
                     t=\"$d/.bosun-get_url.{suffix}\"\n{}\
                     trap '__as rm -f -- \"$t\"' EXIT\n\
                     __as sh -c 'umask 077 && set -C && : > \"$1\"' sh \"$t\" || exit 1\n\
                     {} || {{ echo {} >&2; exit 1; }}\n",
                    track_temp("\"$t\""),
                    self.fetch(*with),
                    quote(&format!("get_url: downloading {} failed", self.url)),
                ));
                if let Some(want) = &self.sha256 {
                    s.push_str(&format!(
                        "h=$(sha256sum < \"$t\") || exit 1; h=${{h%% *}}\n\
                         [ \"$h\" = {want} ] || {{ echo \"get_url: {} has sha256 $h, not the declared {want}; {} left as it was\" >&2; exit 1; }}\n",
                        quote(&self.url),
                        quote(&self.dest),
                    ));
                }
                // New files default to 0644 like `copy`'s; an existing file keeps its mode.
                if self.attrs.mode.is_none() {
                    s.push_str(
                        "if [ -e \"$p\" ] && [ ! -L \"$p\" ]; then __as chmod --reference=\"$p\" -- \"$t\" || exit 1\n\
                         else __as chmod 0644 -- \"$t\" || exit 1; fi\n",
                    );
                }
                s.push_str(&fileops::apply_attrs("\"$t\"", &self.attrs, writer));
                s.push_str("__as mv -fT -- \"$t\" \"$p\" || exit 1\ntrap - EXIT\n");
                s
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.dest.clone()])
    }

    fn slow_probe(&self) -> bool {
        // A checksum of a large download can take a while.
        self.sha256.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{converge, run, temp_dir};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn module(args: Value) -> GetUrl {
        GetUrl::from_args(args).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn has(tool: &str) -> bool {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn downloads_verifies_and_then_leaves_a_matching_file_alone() {
        if !has("curl") {
            eprintln!("curl is not installed here; the module's shell is not exercised");
            return;
        }
        let t = temp_dir("get_url");
        std::fs::create_dir_all(t.join("out")).unwrap();
        std::fs::write(t.join("tool"), "v1\n").unwrap();
        let url = format!("file://{}", t.join("tool").display());
        let dest = t.join("out/tool");
        let sum = format!("sha256:{}", fileops::sha256_hex(b"v1\n"));
        let m = module(json!({"url": url, "dest": dest, "checksum": sum, "mode": "0750"}));
        match converge(&m).unwrap() {
            Plan::Change(c) => {
                assert!(c.summary.starts_with("download file://"), "{}", c.summary);
                assert!(c.summary.contains("(sha256 "), "{}", c.summary);
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "v1\n");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        assert_eq!(entries(&t.join("out")), vec!["tool"], "no temp file left");
        // The same checksum again: nothing to download, even if the source changed.
        std::fs::write(t.join("tool"), "v2\n").unwrap();
        assert!(matches!(converge(&m).unwrap(), Plan::Unchanged { .. }));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "v1\n");
        // Only the mode differs: set, not downloaded.
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
        match converge(&m).unwrap() {
            Plan::Change(c) => assert!(matches!(c.action, Action::Attrs { .. })),
            p => panic!("{p:?}"),
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "v1\n");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_wrong_checksum_or_failed_download_leaves_nothing_at_dest() {
        if !has("curl") {
            return;
        }
        let t = temp_dir("get_url-fail");
        std::fs::create_dir_all(t.join("out")).unwrap();
        std::fs::write(t.join("tool"), "tampered\n").unwrap();
        let dest = t.join("out/tool");
        let want = format!("sha256:{}", fileops::sha256_hex(b"v1\n"));
        let url = format!("file://{}", t.join("tool").display());
        let m = module(json!({"url": url, "dest": dest, "checksum": want}));
        let e = converge(&m).unwrap_err();
        assert!(e.contains("not the declared"), "{e}");
        assert!(
            entries(&t.join("out")).is_empty(),
            "{:?}",
            entries(&t.join("out"))
        );
        // An existing dest with the wrong contents survives a mismatch untouched.
        std::fs::write(&dest, "old\n").unwrap();
        assert!(converge(&m).is_err());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
        assert_eq!(entries(&t.join("out")), vec!["tool"]);
        // A URL that does not exist: the download fails, nothing is left.
        std::fs::remove_file(&dest).unwrap();
        let missing = format!("file://{}", t.join("nope").display());
        let m = module(json!({"url": missing, "dest": dest}));
        let e = converge(&m).unwrap_err();
        assert!(e.contains("downloading") && e.contains("failed"), "{e}");
        assert!(entries(&t.join("out")).is_empty());
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn without_a_checksum_an_existing_dest_is_kept() {
        let t = temp_dir("get_url-keep");
        std::fs::write(t.join("tool"), "mine\n").unwrap();
        let m = module(json!({"url": "https://example.invalid/tool", "dest": t.join("tool")}));
        // No network is touched: the plan is decided by the probe alone.
        let plan = m.plan(&run(&m.probe().unwrap())).unwrap();
        assert!(matches!(plan, Plan::Unchanged { .. }), "{plan:?}");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn wget_is_used_when_curl_is_missing() {
        if !has("wget") {
            return;
        }
        let t = temp_dir("get_url-wget");
        // wget has no file:// support: serve one response over HTTP from this thread.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req).unwrap();
            conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")
                .unwrap();
        });
        let dest = t.join("hi");
        let m = module(json!({"url": format!("http://127.0.0.1:{port}/hi"), "dest": dest}));
        let plan = m
            .plan(&Observed::stdout("downloader=wget\ntype=absent\n"))
            .unwrap();
        let Plan::Change(c) = plan else {
            panic!("{plan:?}")
        };
        assert!(matches!(
            c.action,
            Action::Download {
                with: Downloader::Wget,
                ..
            }
        ));
        let out = run(&m.apply(&c.action));
        assert_eq!(out.rc, 0, "{}", out.stderr);
        server.join().unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hi\n");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644, "new files default to 0644");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn plans_name_what_is_missing_and_refuse_bad_arguments() {
        let m = module(json!({"url": "https://example.invalid/t", "dest": "/opt/t"}));
        let e = m
            .plan(&Observed::stdout("downloader=none\ntype=absent\n"))
            .unwrap_err();
        assert!(e.0.contains("neither curl nor wget"), "{e}");
        let e = m
            .plan(&Observed::stdout("downloader=curl\ntype=directory\n"))
            .unwrap_err();
        assert!(e.0.contains("not a file"), "{e}");
        for (args, says) in [
            (json!({"url": "https://x/t", "dest": "rel"}), "absolute"),
            (json!({"url": "https://x/t", "dest": "/opt/"}), "absolute"),
            (json!({"url": "x/t", "dest": "/opt/t"}), "not an http"),
            (
                json!({"url": "https://x/t", "dest": "/opt/t", "checksum": "md5:00"}),
                "not supported",
            ),
            (
                json!({"url": "https://x/t", "dest": "/opt/t", "checksum": "sha256:abc"}),
                "64 hex",
            ),
            (
                json!({"url": "https://x/t", "dest": "/opt/t", "timeout": 0}),
                "at least",
            ),
        ] {
            let e = GetUrl::from_args(args).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
    }
}
