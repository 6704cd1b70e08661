//! `fetch`: copies a file from the host to the controller, like Ansible's.
//!
//! The file lands at `dest/HOST/SRC` (the host's name, then the source's absolute path),
//! or at `dest` itself with `flat: true`. The controller's copy is hashed when the task is
//! built, and the probe sends the host's file (base64) only when its sha256 differs, so a
//! fetch that has nothing to do moves no content. The write is a change made on the
//! controller ([`Module::apply_on_controller`]): never in check mode, and atomic (a temp
//! file beside the destination, then a rename), so an interrupted run never leaves a
//! half-written copy.

use super::support::probe_failed;
use super::{
    parse_args, ArgError, Change, Controller, Effects, Module, ModuleError, Observed, Plan,
};
use base64::Engine;
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    src: String,
    /// A controller directory (or, with `flat`, the file itself); relative to the
    /// directory bosun runs in.
    dest: String,
    #[serde(default)]
    flat: bool,
    #[serde(default = "yes")]
    fail_on_missing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct Fetch {
    src: String,
    /// Where the file lands on the controller.
    dest: PathBuf,
    fail_on_missing: bool,
    /// The sha256 of the controller's copy when the task was built; `None` when absent.
    have: Option<String>,
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where `src` of `host` lands under `dest` (see the module's doc).
fn destination(dest: &str, host: &str, src: &str, flat: bool) -> PathBuf {
    if flat {
        if dest.ends_with('/') {
            let name = src.rsplit('/').next().unwrap_or(src);
            return Path::new(dest).join(name);
        }
        return PathBuf::from(dest);
    }
    Path::new(dest).join(host).join(src.trim_start_matches('/'))
}

impl Fetch {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("fetch", args)?;
        if !a.src.starts_with('/') || a.src.ends_with('/') {
            return Err(ArgError::new(format!(
                "fetch: `src` must be the absolute path of a file: {}",
                a.src
            )));
        }
        if a.src.split('/').any(|c| c == "..") {
            return Err(
                ArgError::new(format!("fetch: `src` must not contain `..`: {}", a.src))
                    .hint("`..` would put the copy outside `dest`"),
            );
        }
        if a.dest.is_empty() {
            return Err(ArgError::new("fetch: `dest` is empty"));
        }
        let host = match ctl.var("inventory_hostname") {
            Some(Value::String(h)) => h,
            _ => return Err(ArgError::new("fetch: the host has no `inventory_hostname`")),
        };
        let dest = destination(&a.dest, &host, &a.src, a.flat);
        let have = match std::fs::read(&dest) {
            Ok(data) => Some(sha256_hex(&data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ArgError::new(format!(
                    "fetch: cannot read {} on the controller: {e}",
                    dest.display()
                )))
            }
        };
        Ok(Fetch {
            src: a.src,
            dest,
            fail_on_missing: a.fail_on_missing,
            have,
        })
    }

    /// The file's content from the probe, `None` when it is the controller's already, or
    /// absent and allowed to be.
    fn fetched(&self, obs: &Observed) -> Result<Option<Vec<u8>>, ModuleError> {
        probe_failed(obs)?;
        let kv = obs.kv();
        let src = &self.src;
        match kv.get("state").copied() {
            Some("file") => {}
            Some("absent") if self.fail_on_missing => {
                return Err(ModuleError::new(format!(
                    "{src} does not exist on the host (set `fail_on_missing: false` to allow it)"
                )))
            }
            Some("absent") => return Ok(None),
            Some("other") => return Err(ModuleError::new(format!("{src} is not a regular file"))),
            _ => return Err(ModuleError::new("probe printed no state")),
        }
        let Some(b64) = kv.get("content") else {
            // Only left out when the host's checksum was the controller's.
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Some)
            .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))
    }

    /// Writes `data` to the destination through a temp file beside it and a rename.
    fn write(&self, data: &[u8]) -> std::io::Result<()> {
        let dir = match self.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.bosun-{:016x}", rand::random::<u64>()));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.dest)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

impl Module for Fetch {
    /// The file's bytes, to be written on the controller.
    type Action = Vec<u8>;

    fn probe(&self) -> Option<String> {
        let want = self.have.as_deref().unwrap_or("-");
        Some(format!(
            "p={}\n\
             if [ ! -e \"$p\" ]; then echo state=absent; exit 0; fi\n\
             if [ ! -f \"$p\" ]; then echo state=other; exit 0; fi\n\
             h=$(sha256sum < \"$p\") || exit 1; h=${{h%% *}}\n\
             echo state=file; echo \"sha256=$h\"\n\
             [ \"$h\" = {want} ] || {{ printf 'content='; base64 -w0 < \"$p\" || exit 1; echo; }}\n",
            quote(&self.src),
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Vec<u8>>, ModuleError> {
        let dest = self.dest.display();
        let Some(data) = self.fetched(observed)? else {
            return Ok(Plan::unchanged(match observed.kv().get("state") {
                Some(&"absent") => format!("{} does not exist on the host", self.src),
                _ => format!("{dest} matches {}", self.src),
            }));
        };
        // The content is the truth: the file may have changed between hash and read.
        let sha = sha256_hex(&data);
        if self.have.as_deref() == Some(sha.as_str()) {
            return Ok(Plan::unchanged(format!("{dest} matches {}", self.src)));
        }
        let verb = if self.have.is_some() {
            "update"
        } else {
            "create"
        };
        Ok(Plan::Change(
            Change::new(format!("fetch {} to {verb} {dest}", self.src), data)
                .with_details(vec![format!("sha256 {sha}")]),
        ))
    }

    fn apply(&self, _: &Vec<u8>) -> String {
        // Never called: the change is made on the controller.
        String::new()
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.src.clone()])
    }

    /// Changes nothing on the host.
    fn applied_effects(&self, _: &Vec<u8>) -> Effects {
        Effects::None
    }

    fn applies_on_controller(&self) -> bool {
        true
    }

    fn apply_on_controller(&self, data: &Vec<u8>) -> Result<(), ModuleError> {
        self.write(data).map_err(|e| {
            ModuleError::new(format!(
                "cannot write {} on the controller: {e}",
                self.dest.display()
            ))
        })
    }

    fn registered(&self, out: &Observed) -> Map<String, Value> {
        let kv = out.kv();
        let mut m = json!({"dest": self.dest.display().to_string()});
        if let (Some(o), Some(sha)) = (m.as_object_mut(), kv.get("sha256")) {
            o.insert("checksum".into(), json!(sha));
        }
        m.as_object().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir, FakeCtl};

    /// A controller whose host is `h1`.
    struct Host1;
    impl Controller for Host1 {
        fn read_file(&self, s: &str) -> Result<Vec<u8>, ArgError> {
            FakeCtl.read_file(s)
        }
        fn render_template(&self, s: &str) -> Result<String, ArgError> {
            FakeCtl.render_template(s)
        }
        fn find_path(&self, s: &str) -> Result<PathBuf, ArgError> {
            FakeCtl.find_path(s)
        }
        fn test(&self, e: &str) -> Result<bool, ArgError> {
            FakeCtl.test(e)
        }
        fn var(&self, name: &str) -> Option<Value> {
            (name == "inventory_hostname").then(|| json!("h1"))
        }
    }

    fn fetch(args: Value) -> Fetch {
        Fetch::from_args(args, &Host1).expect("args")
    }

    #[test]
    fn lands_under_the_host_name_or_flat() {
        assert_eq!(
            destination("/b", "h1", "/etc/app.conf", false),
            Path::new("/b/h1/etc/app.conf")
        );
        assert_eq!(
            destination("/b/x.conf", "h1", "/etc/app.conf", true),
            Path::new("/b/x.conf")
        );
        assert_eq!(
            destination("/b/", "h1", "/etc/app.conf", true),
            Path::new("/b/app.conf")
        );
    }

    #[test]
    fn fetches_once_then_matches() {
        let dir = temp_dir("fetch-unit");
        let src = dir.join("remote.txt");
        std::fs::write(&src, "v1\n").unwrap();
        let args = json!({"src": src.to_str().unwrap(), "dest": dir.join("got").to_str().unwrap()});
        let m = fetch(args.clone());
        let obs = run(&m.probe().unwrap());
        let Plan::Change(c) = m.plan(&obs).unwrap() else {
            panic!("a first fetch changes")
        };
        assert_eq!(c.action, b"v1\n");
        m.apply_on_controller(&c.action).unwrap();
        let landed = dir
            .join("got/h1")
            .join(src.to_str().unwrap().trim_start_matches('/'));
        assert_eq!(std::fs::read_to_string(&landed).unwrap(), "v1\n");
        // Built again: the controller's copy matches, and the probe sends no content.
        let again = fetch(args);
        let obs = run(&again.probe().unwrap());
        assert!(!obs.stdout.contains("content="), "{}", obs.stdout);
        assert!(matches!(again.plan(&obs), Ok(Plan::Unchanged { .. })));
        assert_eq!(
            again.registered(&obs)["dest"],
            json!(landed.to_str().unwrap())
        );
        let leftovers: Vec<_> = std::fs::read_dir(landed.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("bosun-"))
            .collect();
        assert!(leftovers.is_empty(), "no temp file is left: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_source_fails_unless_allowed() {
        let dir = temp_dir("fetch-missing");
        let src = dir.join("nope");
        let dest = dir.join("got");
        let m = fetch(json!({"src": src.to_str().unwrap(), "dest": dest.to_str().unwrap()}));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(e.0.contains("does not exist on the host"), "{e}");
        let m = fetch(
            json!({"src": src.to_str().unwrap(), "dest": dest.to_str().unwrap(), "fail_on_missing": false}),
        );
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())),
            Ok(Plan::Unchanged { .. })
        ));
        let d = fetch(json!({"src": dir.to_str().unwrap(), "dest": dest.to_str().unwrap()}));
        assert!(d
            .plan(&run(&d.probe().unwrap()))
            .unwrap_err()
            .0
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = temp_dir("fetch-fail");
        let dest = dir.join("taken");
        let m =
            fetch(json!({"src": "/etc/hostname", "dest": dest.to_str().unwrap(), "flat": true}));
        // A directory appears where the copy goes after the task was built: the rename
        // fails, and the temp file beside it is removed.
        std::fs::create_dir_all(dest.join("sub")).unwrap();
        let e = m.apply_on_controller(&b"x".to_vec()).unwrap_err();
        assert!(e.0.contains("cannot write"), "{e}");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["taken"]);
        // A directory already there when the task is built is an argument error.
        let e = Fetch::from_args(
            json!({"src": "/etc/hostname", "dest": dest.to_str().unwrap(), "flat": true}),
            &Host1,
        )
        .unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Fetch::from_args(json!({"src": "rel", "dest": "/d"}), &Host1).is_err());
        assert!(Fetch::from_args(json!({"src": "/a/../b", "dest": "/d"}), &Host1).is_err());
        assert!(Fetch::from_args(json!({"src": "/a", "dest": ""}), &Host1).is_err());
        assert!(Fetch::from_args(json!({"src": "/a", "dest": "/d", "x": 1}), &Host1).is_err());
    }
}
