//! `slurp`: reads a file of the host into the registered result, base64-encoded like
//! Ansible's (`content`, `encoding: base64`, `source`).
//!
//! Read-only: the probe reads the file and the task never reports a change. The probe
//! sends at most `max_size` bytes (plus one, to tell "over the cap" from "exactly the cap"),
//! so a file that grows while it is read cannot flood the controller.

use super::support::probe_failed;
use super::{parse_args, ArgError, Effects, Module, ModuleError, Observed, Plan};
use base64::Engine;
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The default cap on what is read: results live in memory on the controller, per host.
pub const DEFAULT_MAX_SIZE: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(alias = "path")]
    src: String,
    /// Bytes; a larger file fails the task instead of being read.
    #[serde(default = "default_max_size")]
    max_size: u64,
}

fn default_max_size() -> u64 {
    DEFAULT_MAX_SIZE
}

#[derive(Debug)]
pub struct Slurp {
    src: String,
    max_size: u64,
}

impl Slurp {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("slurp", args)?;
        if !a.src.starts_with('/') {
            return Err(ArgError::new(format!(
                "slurp: `src` must be absolute: {}",
                a.src
            )));
        }
        if a.max_size == 0 {
            return Err(ArgError::new("slurp: `max_size` must be at least 1 byte"));
        }
        Ok(Slurp {
            src: a.src,
            max_size: a.max_size,
        })
    }

    /// The file's bytes, or why they cannot be had.
    fn read(&self, obs: &Observed) -> Result<Vec<u8>, ModuleError> {
        probe_failed(obs)?;
        let kv = obs.kv();
        let src = &self.src;
        match kv.get("state").copied() {
            Some("file") => {}
            Some("absent") => return Err(ModuleError::new(format!("{src} does not exist"))),
            Some("other") => {
                return Err(ModuleError::new(format!(
                    "{src} is not a regular file (a directory or a device)"
                )))
            }
            _ => return Err(ModuleError::new("probe printed no state")),
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(kv.get("content").copied().unwrap_or_default())
            .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))?;
        if data.len() as u64 > self.max_size {
            return Err(ModuleError::new(format!(
                "{src} is larger than the `max_size` cap of {} bytes; raise `max_size` to read it",
                self.max_size
            )));
        }
        Ok(data)
    }
}

impl Module for Slurp {
    type Action = ();

    fn probe(&self) -> Option<String> {
        Some(format!(
            "p={}\n\
             if [ ! -e \"$p\" ]; then echo state=absent; exit 0; fi\n\
             if [ ! -f \"$p\" ]; then echo state=other; exit 0; fi\n\
             echo state=file\n\
             printf 'content='; head -c {} < \"$p\" | base64 -w0 || exit 1; echo\n",
            quote(&self.src),
            self.max_size + 1
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<()>, ModuleError> {
        let data = self.read(observed)?;
        Ok(Plan::unchanged(format!(
            "read {} bytes from {}",
            data.len(),
            self.src
        )))
    }

    fn apply(&self, _: &()) -> String {
        String::new()
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.src.clone()])
    }

    /// Reads nothing new into the host: a later probe of the same path still holds.
    fn applied_effects(&self, _: &()) -> Effects {
        Effects::None
    }

    fn registered(&self, out: &Observed) -> Map<String, Value> {
        let Ok(data) = self.read(out) else {
            return Map::new();
        };
        let v = json!({
            "content": base64::engine::general_purpose::STANDARD.encode(data),
            "encoding": "base64",
            "source": self.src,
        });
        v.as_object().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir};

    fn slurp(args: Value) -> Slurp {
        Slurp::from_args(args).expect("args")
    }

    fn observe(m: &Slurp) -> Observed {
        run(&m.probe().expect("probe"))
    }

    #[test]
    fn reads_a_file_as_base64_and_changes_nothing() {
        let dir = temp_dir("slurp-read");
        let f = dir.join("key");
        std::fs::write(&f, b"secret\x00bytes\n").unwrap();
        let m = slurp(json!({"src": f.to_str().unwrap()}));
        let obs = observe(&m);
        match m.plan(&obs) {
            Ok(Plan::Unchanged { reason }) => assert!(reason.starts_with("read 13 bytes")),
            p => panic!("{p:?}"),
        }
        let r = m.registered(&obs);
        assert_eq!(r["content"], json!("c2VjcmV0AGJ5dGVzCg=="));
        assert_eq!(r["encoding"], json!("base64"));
        assert_eq!(r["source"], json!(f.to_str().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_a_directory_or_one_over_the_cap_fails_clearly() {
        let dir = temp_dir("slurp-fail");
        let missing = slurp(json!({"src": dir.join("nope").to_str().unwrap()}));
        let e = missing.plan(&observe(&missing)).unwrap_err();
        assert!(e.0.ends_with("nope does not exist"), "{e}");
        let d = slurp(json!({"src": dir.to_str().unwrap()}));
        assert!(d
            .plan(&observe(&d))
            .unwrap_err()
            .0
            .contains("not a regular file"));
        let f = dir.join("big");
        std::fs::write(&f, vec![b'x'; 11]).unwrap();
        let capped = slurp(json!({"path": f.to_str().unwrap(), "max_size": 10}));
        let obs = observe(&capped);
        assert!(
            obs.stdout.len() < 40,
            "at most the cap and a byte travel: {obs:?}"
        );
        let e = capped.plan(&obs).unwrap_err();
        assert!(e.0.contains("`max_size` cap of 10 bytes"), "{e}");
        assert!(capped.registered(&obs).is_empty());
        let exact = slurp(json!({"src": f.to_str().unwrap(), "max_size": 11}));
        assert!(exact.plan(&observe(&exact)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Slurp::from_args(json!({"src": "relative"})).is_err());
        assert!(Slurp::from_args(json!({"src": "/x", "max_size": 0})).is_err());
        assert!(Slurp::from_args(json!({"src": "/x", "bogus": 1})).is_err());
        assert!(Slurp::from_args(json!({})).is_err());
    }
}
