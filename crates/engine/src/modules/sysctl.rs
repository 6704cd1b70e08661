//! `sysctl`: a kernel parameter, persisted for boot and (by default) set live.
//!
//! Persisted: one `key = value` line in a sysctl.d file. By default every key gets its own
//! file, `/etc/sysctl.d/60-bosun-KEY.conf`, so two tasks never edit the same file. A `file`
//! shared by several keys works too: only this key's line is replaced (or appended), the rest
//! of the file is kept, and equal values written differently (`a=1` vs `a = 1`) are left alone.
//!
//! Live: `sysctl -w`, then the value is read back. The kernel may refuse or rewrite a value
//! (`01` reads back as `1`, clamped limits); that fails the task instead of planning the same
//! change on every converge. Values are compared with whitespace collapsed, because the kernel
//! prints multi-field values tab-separated (`4096<TAB>131072<TAB>6291456`).
//!
//! Boot order: systemd-sysctl reads all sysctl.d files sorted by file name, the last setting
//! wins. The probe also lists the other files that set this key; if one that is read after
//! ours sets a different value (Debian's `99-sysctl.conf` → `/etc/sysctl.conf`, or a package's
//! `99-*.conf`), the persisted value would silently lose at the next boot, so the plan fails
//! and names that file. (Only for files in /etc/sysctl.d; glob keys like `net.*.x` are not
//! considered.)

use super::fileops::{self, Attrs, Kind};
use super::support::{as_step, embed_probe, embedded, probe_failed};
use super::writer::Writer;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

/// Where systemd-sysctl looks, most important first: a file in an earlier directory hides a
/// file with the same name in a later one.
const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    /// A string or a number (`value: 1` arrives as a number).
    value: Value,
    file: Option<String>,
    #[serde(default = "yes")]
    reload: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct Sysctl {
    /// Canonical key: `.` between components (`net.ipv4.conf.eth0/100.rp_filter`).
    key: String,
    /// Declared value, whitespace collapsed.
    value: String,
    file: String,
    reload: bool,
}

/// What apply does: either part may be needed alone.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    /// `sysctl -w` and read back.
    pub live: bool,
    /// New contents of the persisted file.
    pub write: Option<Vec<u8>>,
    /// Who writes it (see [`Writer`]); decided only when there is something to write.
    pub writer: Option<Writer>,
}

impl Sysctl {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("sysctl", args)?;
        let key = normalize_key(a.name.trim());
        let valid_chars = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if key.is_empty()
            || !valid_chars
            || key
                .split('.')
                .any(|part| part.is_empty() || part.starts_with('/') || part.ends_with('/'))
        {
            return Err(
                ArgError::new(format!("sysctl: `{}` is not a sysctl key", a.name))
                    .hint("keys look like net.ipv4.ip_forward (no globs)"),
            );
        }
        let value = match &a.value {
            Value::String(s) if s.contains(['\n', '\r']) => {
                return Err(ArgError::new(format!(
                    "sysctl: value for {key} must be one line"
                )))
            }
            Value::String(s) => normalize_value(s),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(
                    ArgError::new("sysctl: `value` must be a string or a number")
                        .hint("quote it: value: \"1\""),
                )
            }
        };
        if value.is_empty() {
            return Err(ArgError::new(format!("sysctl: value for {key} is empty")));
        }
        let file = a
            .file
            .unwrap_or_else(|| format!("/etc/sysctl.d/60-bosun-{}.conf", key.replace('/', "_")));
        if !file.starts_with('/') || file.ends_with('/') {
            return Err(ArgError::new(format!(
                "sysctl: file `{file}` must be an absolute file path"
            )));
        }
        Ok(Sysctl {
            key,
            value,
            file,
            reload: a.reload,
        })
    }

    /// `/proc/sys/...` for the key: components are directories, a `/` inside a component is a
    /// `.` in the name (`eth0/100` is interface `eth0.100`).
    fn proc_path(&self) -> String {
        let swapped: String = self
            .key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect();
        format!("/proc/sys/{swapped}")
    }

    /// The persisted file's new contents and the value it held for our key (last one wins),
    /// or `None` as contents when the file already says what we want.
    fn edit(&self, current: Option<&str>) -> (Option<String>, Option<String>) {
        let ours = format!("{} = {}", self.key, self.value);
        let Some(text) = current else {
            return (Some(format!("# Managed by bosun.\n{ours}\n")), None);
        };
        let mut out: Vec<&str> = Vec::new();
        let mut placed = false;
        let mut changed = false;
        let mut old = None;
        for line in text.lines() {
            match parse_line(line) {
                Some((k, v)) if k == self.key => {
                    if !placed && v == self.value {
                        out.push(line);
                    } else if !placed {
                        out.push(&ours);
                        changed = true;
                    } else {
                        // A later duplicate would override the line we keep.
                        changed = true;
                    }
                    placed = true;
                    old = Some(v);
                }
                _ => out.push(line),
            }
        }
        if !placed {
            out.push(&ours);
            changed = true;
        }
        if changed {
            (Some(out.join("\n") + "\n"), old)
        } else {
            (None, old)
        }
    }

    /// A file read after ours at boot that sets this key to another value, from the
    /// probe's `conf=PATH:LINE` lines.
    fn boot_override(&self, observed: &Observed) -> Option<(String, String)> {
        let (our_dir, our_name) = self.file.rsplit_once('/')?;
        if our_dir != SYSCTL_DIRS[0] {
            return None;
        }
        // (rank of its directory, file name) of a path in one of SYSCTL_DIRS.
        fn place(path: &str) -> Option<(usize, &str)> {
            let (dir, name) = path.rsplit_once('/')?;
            Some((SYSCTL_DIRS.iter().position(|d| *d == dir)?, name))
        }
        let lines = || observed.stdout.lines();
        // Every file present, setting our key or not: a same-named file in a more important
        // directory hides the other entirely (`ln -s /dev/null /etc/sysctl.d/NAME` is how
        // admins switch a vendor file off).
        let files: Vec<(usize, &str)> = lines()
            .filter_map(|l| l.strip_prefix("conffile="))
            .filter_map(place)
            .collect();
        let mut settings: Vec<(usize, &str, &str, String)> = Vec::new();
        for entry in lines().filter_map(|l| l.strip_prefix("conf=")) {
            let Some((path, line)) = entry.split_once(':') else {
                continue;
            };
            let Some((rank, name)) = place(path) else {
                continue;
            };
            match parse_line(line) {
                Some((k, v)) if k == self.key && name > our_name => {
                    settings.push((rank, name, path, v))
                }
                _ => {}
            }
        }
        let hidden = |rank: usize, name: &str| files.iter().any(|f| f.1 == name && f.0 < rank);
        settings
            .iter()
            .filter(|s| !hidden(s.0, s.1))
            // The last file by name wins; of equal names (one file) `max_by` keeps the last line.
            .max_by(|a, b| a.1.cmp(b.1))
            .filter(|s| s.3 != self.value)
            .map(|s| (s.2.to_string(), s.3.clone()))
    }
}

impl Module for Sysctl {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        // "0" is no file's checksum, so the contents always come back: sysctl files are a few
        // lines, and a shared file is edited, not replaced, so its contents are needed.
        let mut s = embed_probe("file", &fileops::probe_path(&self.file, Some("0")));
        let key = quote(&self.key);
        let leaf = self.key.rsplit(['.', '/']).next().unwrap_or(&self.key);
        s.push_str(&format!(
            "if [ -e {pp} ]; then\n\
             v=$(sysctl -n {key}) || {{ echo \"cannot read {key_text}\" >&2; exit 3; }}\n\
             printf 'live=%s\\n' \"$(printf '%s' \"$v\" | tr '\\t\\n' '  ')\"\n\
             else echo live=absent; fi\n\
             for f in {globs}; do [ ! -e \"$f\" ] && [ ! -L \"$f\" ] || echo \"conffile=$f\"; done\n\
             grep -s -H -F -e {leaf} -- {globs} | sed 's/^/conf=/'\n\
             exit 0\n",
            pp = quote(&self.proc_path()),
            key_text = self.key,
            leaf = quote(leaf),
            globs = SYSCTL_DIRS
                .iter()
                .map(|d| format!("{d}/*.conf"))
                .collect::<Vec<_>>()
                .join(" "),
        ));
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let (k, want, f) = (&self.key, &self.value, &self.file);
        let st = fileops::parse_path_state(&embedded(observed, "file"))?;
        let current = match st.kind {
            Kind::Absent => None,
            Kind::File => match &st.content {
                Some(c) => Some(
                    std::str::from_utf8(c)
                        .map_err(|_| ModuleError::new(format!("{f} is not a text file")))?
                        .to_string(),
                ),
                None => {
                    return Err(ModuleError::new(format!(
                        "{f} is too large to be a sysctl file"
                    )))
                }
            },
            kind => {
                return Err(ModuleError::new(format!(
                    "{f} is a {}; `file` must name a regular file",
                    kind.as_str()
                )))
            }
        };
        let (new_contents, persisted) = self.edit(current.as_deref());

        let kv = observed.kv();
        let live = match kv.get("live").copied() {
            Some("absent") if self.reload => {
                return Err(ModuleError::new(format!(
                    "{k} does not exist on this kernel (is the module that provides it loaded?)"
                )))
            }
            Some("absent") => None,
            Some(v) => Some(normalize_value(v)),
            None => {
                return Err(ModuleError::new(format!(
                    "unexpected probe output: {:?}",
                    observed.stdout
                )))
            }
        };
        if let Some((path, v)) = self.boot_override(observed) {
            return Err(ModuleError::new(format!(
                "{k} is also set to {v} in {path}, which is read after {f} at boot and wins; \
                 remove it there or set `file` to a name that sorts after it"
            )));
        }

        let live_change = self.reload && live.as_deref() != Some(want.as_str());
        let mut details = Vec::new();
        if live_change {
            details.push(format!("live: {} → {want}", live.as_deref().unwrap_or("-")));
        }
        if new_contents.is_some() {
            details.push(format!(
                "{f}: {} → {want}",
                persisted.as_deref().unwrap_or("unset")
            ));
        }
        let summary = match (live_change, new_contents.is_some()) {
            (false, false) => {
                let live_note = if self.reload { " and live" } else { "" };
                return Ok(Plan::unchanged(format!("{k} = {want} in {f}{live_note}")));
            }
            (true, true) => format!("set {k} = {want} (live and in {f})"),
            (true, false) => format!("set {k} = {want} (live)"),
            (false, true) => format!("persist {k} = {want} in {f}"),
        };
        let writer = match &new_contents {
            Some(_) => Some(st.writer(f)?),
            None => None,
        };
        details.extend(writer.as_ref().and_then(Writer::note));
        let mut c = Change::new(
            summary,
            Action {
                live: live_change,
                write: new_contents.as_ref().map(|s| s.as_bytes().to_vec()),
                writer,
            },
        )
        .with_details(details);
        if let Some(after) = &new_contents {
            c = c.with_diff(fileops::content_diff(f, &st, after.as_bytes()));
        }
        Ok(Plan::Change(c))
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = String::new();
        // Live first: the kernel is the judge of a value, and a refused value is not persisted.
        if action.live {
            s.push_str(&format!(
                "sysctl -q -w {assign} >/dev/null || exit 1\n\
                 got=$(sysctl -n {key}) || exit 1\n\
                 set -f; set -- $got; got=\"$*\"\n\
                 [ \"$got\" = {want} ] || {{\n\
                 printf 'kernel reports %s = %s after writing %s\\n' {key} \"$got\" {want} >&2; exit 1; }}\n",
                assign = quote(&format!("{}={}", self.key, self.value)),
                key = quote(&self.key),
                want = quote(&self.value),
            ));
        }
        if let Some(data) = &action.write {
            let writer = action
                .writer
                .clone()
                .unwrap_or_else(|| Writer::root_for(&self.file));
            let write = fileops::write_file(&self.file, data, &Attrs::default(), None, &writer);
            s.push_str(&as_step(&write));
        }
        s
    }

    fn effects(&self) -> Effects {
        // The live value is a path too: a later probe reading /proc/sys sees the change.
        Effects::Paths(vec![self.file.clone(), self.proc_path()])
    }
}

/// systemd-sysctl's key normalization: when the first separator is `/`, the key is written
/// with `/` between components, so `/` and `.` swap (`net/ipv4/ip_forward`).
fn normalize_key(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key = value` from one line of a sysctl.d file (comments, blanks and globs give `None`).
/// A leading `-` (ignore failures) is part of the syntax, not the key.
fn parse_line(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    let k = k.trim().trim_start_matches('-').trim();
    if k.contains(['*', '?', '[']) {
        return None;
    }
    Some((normalize_key(k), normalize_value(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir};
    use serde_json::json;

    fn module(v: Value) -> Sysctl {
        Sysctl::from_args(v).expect("valid args")
    }

    fn change(p: Plan<Action>) -> Change<Action> {
        match p {
            Plan::Change(c) => c,
            p => panic!("expected a change, got {p:?}"),
        }
    }

    const FILE: &str = "/etc/sysctl.d/60-bosun-net.ipv4.ip_forward.conf";

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn new_key_is_set_live_and_persisted_in_its_own_file() {
        let m = module(json!({"name": "net.ipv4.ip_forward", "value": 1}));
        let c = change(
            m.plan(&Observed::stdout("file.type=absent\nlive=0\n"))
                .unwrap(),
        );
        assert_eq!(
            c.summary,
            format!("set net.ipv4.ip_forward = 1 (live and in {FILE})")
        );
        assert_eq!(
            c.details,
            vec!["live: 0 → 1".to_string(), format!("{FILE}: unset → 1")]
        );
        let d = c.diff.unwrap();
        assert_eq!(
            d.after.as_deref(),
            Some("# Managed by bosun.\nnet.ipv4.ip_forward = 1\n")
        );
        let script = m.apply(&c.action);
        assert!(
            script.starts_with("sysctl -q -w net.ipv4.ip_forward=1 >/dev/null || exit 1\n"),
            "{script}"
        );
        assert!(script.contains(&format!("p={FILE}\n")), "{script}");
        assert_eq!(
            m.effects(),
            Effects::Paths(vec![FILE.into(), "/proc/sys/net/ipv4/ip_forward".into()])
        );
    }

    #[test]
    fn matching_live_and_file_is_unchanged() {
        let m = module(json!({"name": "net.ipv4.tcp_rmem", "value": "4096 131072  6291456"}));
        let file = "net.ipv4.tcp_rmem=4096 131072 6291456\n";
        let obs = Observed::stdout(&format!(
            "file.type=file\nfile.sha256=x\nfile.content_b64={}\nlive=4096 131072 6291456\n",
            b64(file)
        ));
        match m.plan(&obs).unwrap() {
            Plan::Unchanged { reason } => assert!(reason.contains("and live"), "{reason}"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn only_the_live_value_differs() {
        let m = module(json!({"name": "vm.swappiness", "value": "10"}));
        let obs = Observed::stdout(&format!(
            "file.type=file\nfile.content_b64={}\nlive=60\n",
            b64("vm.swappiness = 10\n")
        ));
        let c = change(m.plan(&obs).unwrap());
        assert_eq!(c.summary, "set vm.swappiness = 10 (live)");
        assert!(c.diff.is_none());
        assert_eq!(
            c.action,
            Action {
                live: true,
                write: None,
                writer: None,
            }
        );
        // Without reload, the live value is not our business.
        let m = module(json!({"name": "vm.swappiness", "value": "10", "reload": false}));
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn shared_file_keeps_other_keys_and_drops_duplicates() {
        let m = module(
            json!({"name": "vm.swappiness", "value": 10, "file": "/etc/sysctl.d/90-app.conf"}),
        );
        let text = "# tuning\nvm.swappiness=60\nnet.core.somaxconn = 4096\n-vm/swappiness = 1\n";
        let obs = Observed::stdout(&format!(
            "file.type=file\nfile.content_b64={}\nlive=10\n",
            b64(text)
        ));
        let c = change(m.plan(&obs).unwrap());
        assert_eq!(
            c.summary,
            "persist vm.swappiness = 10 in /etc/sysctl.d/90-app.conf"
        );
        assert_eq!(c.details, vec!["/etc/sysctl.d/90-app.conf: 1 → 10"]);
        assert_eq!(
            c.diff.unwrap().after.as_deref(),
            Some("# tuning\nvm.swappiness = 10\nnet.core.somaxconn = 4096\n")
        );
    }

    #[test]
    fn later_file_with_another_value_fails_the_plan() {
        let m = module(json!({"name": "fs.protected_regular", "value": 0}));
        let obs = Observed::stdout(
            "file.type=absent\nlive=2\n\
             conf=/usr/lib/sysctl.d/99-protect-links.conf:fs.protected_regular = 2\n\
             conf=/etc/sysctl.d/10-early.conf:fs.protected_regular = 1\n",
        );
        let err = m.plan(&obs).unwrap_err();
        assert!(
            err.0
                .contains("set to 2 in /usr/lib/sysctl.d/99-protect-links.conf"),
            "{err}"
        );
        // Hidden by a same-named file in /etc that agrees with us, or says nothing about the
        // key (a /dev/null link): no conflict.
        let obs = Observed::stdout(
            "file.type=absent\nlive=2\n\
             conffile=/etc/sysctl.d/99-protect-links.conf\n\
             conffile=/usr/lib/sysctl.d/99-protect-links.conf\n\
             conf=/usr/lib/sysctl.d/99-protect-links.conf:fs.protected_regular = 2\n\
             conf=/etc/sysctl.d/99-protect-links.conf:fs.protected_regular = 0\n",
        );
        assert!(m.plan(&obs).is_ok());
        let obs = Observed::stdout(
            "file.type=absent\nlive=2\n\
             conffile=/etc/sysctl.d/99-protect-links.conf\n\
             conffile=/usr/lib/sysctl.d/99-protect-links.conf\n\
             conf=/usr/lib/sysctl.d/99-protect-links.conf:fs.protected_regular = 2\n",
        );
        assert!(m.plan(&obs).is_ok());
    }

    #[test]
    fn missing_key_is_an_error_only_when_setting_it_live() {
        let m = module(json!({"name": "net.bridge.bridge-nf-call-iptables", "value": 1}));
        let err = m
            .plan(&Observed::stdout("file.type=absent\nlive=absent\n"))
            .unwrap_err();
        assert!(err.0.contains("does not exist on this kernel"), "{err}");
        let m = module(
            json!({"name": "net.bridge.bridge-nf-call-iptables", "value": 1, "reload": false}),
        );
        let c = change(
            m.plan(&Observed::stdout("file.type=absent\nlive=absent\n"))
                .unwrap(),
        );
        assert!(!c.action.live);
    }

    #[test]
    fn keys_normalize_like_systemd_sysctl() {
        assert_eq!(
            normalize_key("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
        let m = module(json!({"name": "net/ipv4/conf/eth0.100/rp_filter", "value": 2}));
        assert_eq!(m.proc_path(), "/proc/sys/net/ipv4/conf/eth0.100/rp_filter");
        assert_eq!(
            m.file,
            "/etc/sysctl.d/60-bosun-net.ipv4.conf.eth0_100.rp_filter.conf"
        );
        assert!(Sysctl::from_args(json!({"name": "net.*.x", "value": 1})).is_err());
        assert!(Sysctl::from_args(json!({"name": "net..x", "value": 1})).is_err());
        assert!(Sysctl::from_args(json!({"name": "a.b", "value": true})).is_err());
        assert!(Sysctl::from_args(json!({"name": "a.b", "value": "1\n2"})).is_err());
        assert!(Sysctl::from_args(json!({"name": "a.b", "value": 1, "flie": "/x"})).is_err());
    }

    /// The real probe on this machine: a readable key, and a file in a temp dir.
    #[test]
    fn probe_reads_a_real_key_and_file() {
        let dir = temp_dir("sysctl");
        let file = dir.join("90-test.conf");
        std::fs::write(&file, "net.ipv4.ip_forward\t=   7\n").unwrap();
        let m = module(
            json!({"name": "net.ipv4.ip_forward", "value": 7, "file": file.to_str().unwrap()}),
        );
        let obs = run(&m.probe().unwrap());
        assert_eq!(obs.rc, 0, "{}", obs.stderr);
        let live = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        assert_eq!(obs.kv().get("live").copied(), Some(live.trim()));
        // The file already says 7 (written differently); only the live value can differ.
        match m.plan(&obs).unwrap() {
            Plan::Change(c) => assert_eq!(
                c.action,
                Action {
                    live: true,
                    write: None,
                    writer: None,
                }
            ),
            Plan::Unchanged { .. } => panic!("live value is not 7"),
        }
        let missing = module(
            json!({"name": "net.ipv4.bosun_no_such_key", "value": 1, "file": file.to_str().unwrap()}),
        );
        let obs = run(&missing.probe().unwrap());
        assert_eq!(obs.kv().get("live"), Some(&"absent"), "{obs:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Apply against a stand-in `sysctl` that ignores writes: the read-back catches it.
    #[test]
    fn apply_fails_when_the_kernel_does_not_take_the_value() {
        let dir = temp_dir("sysctl-apply");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("sysctl"),
            "#!/bin/sh\n[ \"$1\" = -n ] && printf '4096\\t87380\\n'\nexit 0\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("sysctl"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let file = dir.join("x.conf");
        let path = format!("PATH={}:$PATH\n", bin.display());
        let ok = module(
            json!({"name": "net.ipv4.tcp_rmem", "value": "4096 87380", "file": file.to_str().unwrap()}),
        );
        let action = Action {
            live: true,
            write: Some(b"net.ipv4.tcp_rmem = 4096 87380\n".to_vec()),
            writer: None,
        };
        let r = run(&format!("{path}{}", ok.apply(&action)));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "net.ipv4.tcp_rmem = 4096 87380\n"
        );
        let refused = module(
            json!({"name": "net.ipv4.tcp_rmem", "value": "1 2", "file": file.to_str().unwrap()}),
        );
        let r = run(&format!("{path}{}", refused.apply(&action)));
        assert_ne!(r.rc, 0);
        assert_eq!(
            r.stderr,
            "kernel reports net.ipv4.tcp_rmem = 4096 87380 after writing 1 2\n"
        );
        // Refused live value: the file was not rewritten.
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "net.ipv4.tcp_rmem = 4096 87380\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
