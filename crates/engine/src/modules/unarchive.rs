//! `unarchive`: an archive that is already on the host, extracted into a directory.
//!
//! Idempotent by checksum: after a successful extraction, a marker file
//! `DEST/.bosun-unarchive-NAME.sha256` (NAME: the archive's file name) records the
//! archive's sha256, and an archive with the same sha256 is not extracted again. `creates`
//! (a path that exists once extracted) skips the task as well, as in Ansible.
//!
//! Extraction goes directly into `dest`, and the marker is written (atomically) only after
//! it succeeded, so an interrupted or failed extraction is redone in full on the next run.
//! A temp directory renamed into place was not chosen: `dest` usually already holds other
//! files (`/opt`, `/usr/local`), so the entries would have to be merged into it one by one,
//! which is no more atomic than extracting there and costs a second copy.
//!
//! Formats, by file name: `.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz`, `.tar.bz2`/`.tbz2`
//! (`tar`) and `.zip` (`unzip`, which the host must have). Files extracted belong to whoever
//! extracts (owners recorded in the archive are not restored): root, or, when a non-root
//! user controls `dest`, that user (see [`Writer`]), so no link in the archive or in
//! `dest` can make root write elsewhere.

use super::fileops::{self, Kind};
use super::writer::Writer;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// The archive, on the host (absolute).
    src: String,
    /// An existing directory.
    dest: String,
    creates: Option<String>,
    /// Accepted for Ansible's spelling; only `true` (the archive is on the host) is supported.
    remote_src: Option<bool>,
}

/// How an archive is extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar(&'static str),
    Zip,
}

#[derive(Debug)]
pub struct Unarchive {
    src: String,
    dest: String,
    creates: Option<String>,
    format: Format,
}

/// What apply does: extract, then record `sha256` in the marker.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    sha256: String,
    writer: Writer,
}

/// The format of `name` by its extension.
fn format_of(name: &str) -> Option<Format> {
    let n = name.to_ascii_lowercase();
    let tar = |ends: &[&str]| ends.iter().any(|e| n.ends_with(e));
    if tar(&[".tar.gz", ".tgz"]) {
        Some(Format::Tar("z"))
    } else if tar(&[".tar.xz", ".txz"]) {
        Some(Format::Tar("J"))
    } else if tar(&[".tar.bz2", ".tbz2"]) {
        Some(Format::Tar("j"))
    } else if tar(&[".tar"]) {
        Some(Format::Tar(""))
    } else if tar(&[".zip"]) {
        Some(Format::Zip)
    } else {
        None
    }
}

impl Unarchive {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("unarchive", args)?;
        if a.remote_src == Some(false) {
            return Err(ArgError::new(
                "unarchive: only archives already on the host are supported (remote_src: true)",
            )
            .hint("ship it first with `copy`, or a directory with `upload`"));
        }
        for (what, p) in [("src", &a.src), ("dest", &a.dest)] {
            if !p.starts_with('/') || p.contains('\n') {
                return Err(ArgError::new(format!(
                    "unarchive: {what} `{p}` must be an absolute path on the host"
                )));
            }
        }
        let format = format_of(&a.src).ok_or_else(|| {
            ArgError::new(format!(
                "unarchive: cannot tell the format of `{}` from its name",
                a.src
            ))
            .hint("supported: .tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.bz2, .tbz2, .zip")
        })?;
        if let Some(c) = &a.creates {
            if !c.starts_with('/') {
                return Err(ArgError::new(format!(
                    "unarchive: creates `{c}` must be an absolute path"
                )));
            }
        }
        let dest = match a.dest.trim_end_matches('/') {
            "" => "/".to_string(),
            d => d.to_string(),
        };
        Ok(Unarchive {
            src: a.src,
            dest,
            creates: a.creates,
            format,
        })
    }

    /// `DEST/.bosun-unarchive-NAME.sha256`.
    pub fn marker(&self) -> String {
        let name: String = self
            .src
            .rsplit('/')
            .next()
            .unwrap_or("archive")
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '/' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{}/.bosun-unarchive-{name}.sha256",
            self.dest.trim_end_matches('/')
        )
    }

    fn tool(&self) -> &'static str {
        match self.format {
            Format::Tar(_) => "tar",
            Format::Zip => "unzip",
        }
    }
}

impl Module for Unarchive {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let s = quote(&self.src);
        let m = quote(&self.marker());
        let tool = self.tool();
        let mut out = String::new();
        if let Some(c) = &self.creates {
            out.push_str(&format!(
                "if [ -e {c} ] || [ -L {c} ]; then echo creates=yes; exit 0; fi\n",
                c = quote(c)
            ));
        }
        // The checksum and marker first: the path probe ends the script early for an
        // absent dest.
        out.push_str(&format!(
            "[ -f {s} ] || {{ echo \"unarchive: \"{s}\" is not a file on the host\" >&2; exit 1; }}\n\
             if command -v {tool} >/dev/null 2>&1; then echo tool=yes; else echo tool=no; fi\n\
             h=$(sha256sum < {s}) || exit 3; echo \"sha256=${{h%% *}}\"\n\
             if [ -f {m} ] && [ ! -L {m} ]; then read -r __m < {m} || :; echo \"marker=$__m\"; fi\n"
        ));
        out.push_str(&fileops::probe_path(&self.dest, None));
        Some(out)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        super::support::probe_failed(observed)?;
        let kv = observed.kv();
        if kv.get("creates").copied() == Some("yes") {
            return Ok(Plan::unchanged(format!(
                "{} exists",
                self.creates.as_deref().unwrap_or("?")
            )));
        }
        let st = fileops::parse_path_state(observed)?;
        if st.kind != Kind::Directory {
            return Err(ModuleError::new(format!(
                "unarchive: dest {} is {}, not a directory; create it first (file: state: directory)",
                self.dest,
                match st.kind {
                    Kind::Absent => "absent".to_string(),
                    k => format!("a {}", k.as_str()),
                }
            )));
        }
        let sha = kv
            .get("sha256")
            .filter(|h| h.len() == 64)
            .ok_or_else(|| {
                ModuleError::new(format!(
                    "unarchive: the probe did not report the checksum of {}",
                    self.src
                ))
            })?
            .to_string();
        if kv.get("marker") == Some(&sha.as_str()) {
            return Ok(Plan::unchanged(format!(
                "{} (sha256 {}) was extracted into {}",
                self.src,
                &sha[..16],
                self.dest
            )));
        }
        if kv.get("tool").copied() != Some("yes") {
            return Err(ModuleError::new(format!(
                "unarchive: {} is not installed on the host, so {} cannot be extracted; install it first (apt: {{name: {}}})",
                self.tool(),
                self.src,
                self.tool()
            )));
        }
        let writer = st.writer(&self.dest)?;
        let mut details = Vec::new();
        if kv.contains_key("marker") {
            details.push("the archive changed since it was last extracted".to_string());
        }
        details.extend(writer.note());
        Ok(Plan::Change(
            Change::new(
                format!(
                    "extract {} (sha256 {}) into {}",
                    self.src,
                    &sha[..16],
                    self.dest
                ),
                Action {
                    sha256: sha,
                    writer,
                },
            )
            .with_details(details),
        ))
    }

    fn apply(&self, a: &Action) -> String {
        let s = quote(&self.src);
        let d = quote(&self.dest);
        let m = quote(&self.marker());
        let extract = match self.format {
            Format::Tar(z) => format!("__as tar -x{z}f {s} --no-same-owner -C {d}"),
            Format::Zip => format!("__as unzip -o -q {s} -d {d}"),
        };
        // The checksum is taken again: the archive may have been replaced since the probe,
        // and the marker must name what was really extracted.
        format!(
            "{}h=$(sha256sum < {s}) || exit 1\n\
             [ \"${{h%% *}}\" = {want} ] || {{ echo \"unarchive: \"{s}\" changed after it was probed; run again\" >&2; exit 1; }}\n\
             {extract} || {{ echo \"unarchive: extracting \"{s}\" into \"{d}\" failed; it will be extracted again on the next run\" >&2; exit 1; }}\n\
             __as sh -c 'rm -f -- \"$2.tmp\" && printf \"%s\\n\" \"$1\" > \"$2.tmp\" && mv -f -- \"$2.tmp\" \"$2\"' sh {want} {m} || exit 1\n",
            a.writer.prelude(&self.dest),
            want = quote(&a.sha256),
        )
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.dest.clone()])
    }

    fn slow_probe(&self) -> bool {
        // The archive's checksum reads the whole archive.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{converge, run, temp_dir};
    use serde_json::json;
    use std::path::Path;

    fn module(src: &Path, dest: &Path) -> Unarchive {
        Unarchive::from_args(json!({"src": src, "dest": dest})).unwrap()
    }

    fn has(tool: &str) -> bool {
        run(&format!("command -v {tool}")).rc == 0
    }

    /// `tree/app/VERSION` holding `v`, packed as `name` with `cmd` (`%a` archive, run in
    /// the parent of `tree`).
    fn pack(t: &Path, name: &str, v: &str, cmd: &str) -> std::path::PathBuf {
        std::fs::create_dir_all(t.join("tree/app")).unwrap();
        std::fs::write(t.join("tree/app/VERSION"), v).unwrap();
        let a = t.join(name);
        let _ = std::fs::remove_file(&a);
        let script = format!(
            "cd {} && {}",
            quote(t.join("tree").to_str().unwrap()),
            cmd.replace("%a", &quote(a.to_str().unwrap()))
        );
        let out = run(&script);
        assert_eq!(out.rc, 0, "{}", out.stderr);
        a
    }

    #[test]
    fn extracts_each_format_once_per_checksum() {
        let t = temp_dir("unarchive");
        let mut cases = vec![
            ("a.tar", "tar -cf %a app"),
            ("a.tar.gz", "tar -czf %a app"),
            ("a.tgz", "tar -czf %a app"),
        ];
        if has("xz") {
            cases.push(("a.tar.xz", "tar -cJf %a app"));
        }
        if has("zip") && has("unzip") {
            cases.push(("a.zip", "zip -qr %a app"));
        }
        for (name, cmd) in cases {
            let dest = t.join(format!("dest-{name}"));
            std::fs::create_dir_all(&dest).unwrap();
            std::fs::write(dest.join("keep"), "mine").unwrap();
            let a = pack(&t, name, "1\n", cmd);
            let m = module(&a, &dest);
            match converge(&m).unwrap() {
                Plan::Change(c) => assert!(c.summary.starts_with("extract "), "{}", c.summary),
                p => panic!("{name}: {p:?}"),
            }
            assert_eq!(
                std::fs::read_to_string(dest.join("app/VERSION")).unwrap(),
                "1\n"
            );
            assert_eq!(std::fs::read_to_string(dest.join("keep")).unwrap(), "mine");
            let marker = std::fs::read_to_string(m.marker()).unwrap();
            assert_eq!(
                marker.trim(),
                fileops::sha256_hex(&std::fs::read(&a).unwrap())
            );
            // The same archive: nothing to do, even after the files were edited.
            std::fs::write(dest.join("app/VERSION"), "edited\n").unwrap();
            assert!(
                matches!(converge(&m).unwrap(), Plan::Unchanged { .. }),
                "{name}"
            );
            // A new archive under the same name: extracted again.
            pack(&t, name, "2\n", cmd);
            assert!(matches!(converge(&m).unwrap(), Plan::Change(_)), "{name}");
            assert_eq!(
                std::fs::read_to_string(dest.join("app/VERSION")).unwrap(),
                "2\n"
            );
        }
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_failed_extraction_is_not_marked_done() {
        let t = temp_dir("unarchive-bad");
        std::fs::create_dir_all(t.join("dest")).unwrap();
        std::fs::write(t.join("broken.tar.gz"), "not gzip").unwrap();
        let m = module(&t.join("broken.tar.gz"), &t.join("dest"));
        let e = converge(&m).unwrap_err();
        assert!(e.contains("will be extracted again"), "{e}");
        assert!(!Path::new(&m.marker()).exists());
        // creates: skipped without looking at the archive.
        let c = Unarchive::from_args(json!({
            "src": t.join("broken.tar.gz"), "dest": t.join("dest"), "creates": t.join("dest")
        }))
        .unwrap();
        assert!(matches!(converge(&c).unwrap(), Plan::Unchanged { .. }));
        // dest must exist.
        let m = module(&t.join("broken.tar.gz"), &t.join("nope"));
        assert!(converge(&m).unwrap_err().contains("not a directory"));
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_missing_tool_is_named_and_bad_arguments_are_refused() {
        let m = Unarchive::from_args(json!({"src": "/tmp/a.zip", "dest": "/opt"})).unwrap();
        let obs = Observed::stdout(&format!(
            "tool=no\nsha256={}\ntype=directory\n",
            "a".repeat(64)
        ));
        let e = m.plan(&obs).unwrap_err();
        assert!(e.0.contains("unzip is not installed"), "{e}");
        for (args, says) in [
            (
                json!({"src": "/tmp/a.rar", "dest": "/opt"}),
                "cannot tell the format",
            ),
            (json!({"src": "a.tar", "dest": "/opt"}), "absolute"),
            (
                json!({"src": "/a.tar", "dest": "/opt", "remote_src": false}),
                "already on the host",
            ),
            (
                json!({"src": "/a.tar", "dest": "/opt", "creates": "x"}),
                "absolute",
            ),
        ] {
            let e = Unarchive::from_args(args).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
    }
}
