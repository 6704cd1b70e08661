//! Modules: the units of desired state a task declares.
//!
//! Every module is one file with the same three parts:
//! - **probe**: a shell fragment that prints what the host looks like now;
//! - **plan**: a pure function from that observation to "nothing to do" or a change with a
//!   human summary and, for file contents, a diff;
//! - **apply**: the shell fragment that makes the planned change.
//!
//! The engine never runs a probe or an apply on its own: it batches the probes of many tasks
//! into one remote script (one round trip), plans locally, and batches applies the same way.
//! That is why probes and applies are *text*, and why plan must not touch the network.

pub mod apt;
pub mod assert;
pub mod authorized_key;
pub mod blockinfile;
pub mod command;
pub mod copy;
pub mod cron;
pub mod debug;
pub mod fetch;
pub mod file;
pub mod fileops;
pub mod get_url;
pub mod git;
pub mod group;
pub mod lineinfile;
pub mod mount;
pub mod npm;
pub mod pip;
pub mod postgresql;
pub mod reboot;
pub mod replace;
pub mod set_fact;
pub mod slurp;
pub mod support;
pub mod sysctl;
pub mod systemd;
pub mod template;
#[cfg(test)]
pub(crate) mod test_support;
pub mod unarchive;
pub mod upload;
pub mod uri;
pub mod user;
pub mod wait_for;
pub mod writer;

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// What a probe printed, as the engine captured it from the batched script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Observed {
    /// Probe output is mostly `key=value` lines; this reads them.
    ///
    /// Repeated keys keep the last value; lines without `=` are ignored.
    pub fn kv(&self) -> BTreeMap<&str, &str> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect()
    }

    /// Shorthand for tests and fixtures.
    pub fn stdout(s: &str) -> Self {
        Observed {
            rc: 0,
            stdout: s.to_string(),
            stderr: String::new(),
        }
    }
}

/// The contents of one file before and after a change, for the diff renderer.
///
/// `None` means the file does not exist on that side. Contents that are not valid UTF-8
/// are carried as a note instead of bytes, so a diff never prints binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A change a module would make.
#[derive(Debug)]
pub struct Change<A> {
    /// One line an operator reads in a plan: "create directory /srv/app (0755 root:root)".
    pub summary: String,
    /// Extra lines under the summary: package sets, unit state, attribute changes.
    pub details: Vec<String>,
    pub diff: Option<Diff>,
    /// True for a command without guards: it runs on every converge by design.
    pub always: bool,
    pub action: A,
}

impl<A> Change<A> {
    pub fn new(summary: impl Into<String>, action: A) -> Self {
        Change {
            summary: summary.into(),
            details: Vec::new(),
            diff: None,
            always: false,
            action,
        }
    }

    pub fn with_diff(mut self, diff: Diff) -> Self {
        self.diff = Some(diff);
        self
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

/// The outcome of planning one task against what was observed.
#[derive(Debug)]
pub enum Plan<A> {
    /// Already as declared; the reason says why (shown with -v).
    Unchanged {
        reason: String,
    },
    Change(Change<A>),
}

impl<A> Plan<A> {
    pub fn unchanged(reason: impl Into<String>) -> Self {
        Plan::Unchanged {
            reason: reason.into(),
        }
    }
}

/// What an applied change may affect, so the engine knows which later probes went stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effects {
    /// Only these paths (and what lies under them).
    Paths(Vec<String>),
    /// These directories were created where nothing existed: probes of paths under them
    /// saw "absent" and still hold; the paths themselves and their parents are stale.
    Created(Vec<String>),
    /// Anything on the host: packages, users, commands. Later tasks are re-probed.
    Host,
    /// Nothing another task could observe.
    None,
    /// Waits for a condition (a port, a URL): changes nothing itself, but the host is
    /// expected to change while it waits, so later probes are taken again.
    Wait,
}

/// A module failed to make sense of what the probe printed, or the host's state forbids the
/// change (e.g. a directory where a file is declared and `force` is off).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ModuleError(pub String);

impl ModuleError {
    pub fn new(msg: impl Into<String>) -> Self {
        ModuleError(msg.into())
    }
}

/// Bad module arguments, found before any host is touched.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ArgError {
    pub message: String,
    pub hint: Option<String>,
}

impl ArgError {
    pub fn new(message: impl Into<String>) -> Self {
        ArgError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What modules may ask of the controller while being built from their arguments.
///
/// `copy` reads controller files and `template` renders templates; both need the role's
/// search paths and the host's variables, which only the engine knows.
pub trait Controller {
    /// Reads a file named in a task (`copy: src:`), searched in the role's `files/` dirs.
    fn read_file(&self, src: &str) -> Result<Vec<u8>, ArgError>;
    /// Renders a template file (`template: src:`) with the host's variables.
    fn render_template(&self, src: &str) -> Result<String, ArgError>;
    /// A controller file or directory named in a task (`upload: src:`): absolute, or
    /// searched in the role's `files/` dirs, then the project root.
    fn find_path(&self, src: &str) -> Result<PathBuf, ArgError>;
    /// Evaluates an expression (`assert: that:`) with the host's variables.
    fn test(&self, expr: &str) -> Result<bool, ArgError>;
    /// A variable's value (`debug: var:`), `None` when it is not defined.
    fn var(&self, name: &str) -> Option<Value>;
}

/// One module, typed. Implemented by every file in this directory.
pub trait Module: Send + Sync + Sized + 'static {
    /// What plan decided to do, handed back to apply.
    type Action: Send + Sync + fmt::Debug + 'static;

    /// The shell that prints the current state, or `None` when nothing needs observing
    /// (an unguarded command always runs).
    fn probe(&self) -> Option<String>;

    /// Pure: decide from the observation. Must not do I/O.
    fn plan(&self, observed: &Observed) -> Result<Plan<Self::Action>, ModuleError>;

    /// The shell that makes the change. A non-zero exit fails the task; its stderr is the
    /// message the operator sees.
    fn apply(&self, action: &Self::Action) -> String;

    /// What an applied change may affect (see [`Effects`]).
    fn effects(&self) -> Effects;

    /// Whether the probe is slow (it starts an interpreter or queries a server): slow
    /// probes of a round run concurrently on the host.
    fn slow_probe(&self) -> bool {
        false
    }

    /// When [`Module::probe`] is exactly [`fileops::probe_path`]: its path and wanted
    /// checksum. The engine then probes all such paths of a round together, with a fixed
    /// number of processes on the host instead of a few per path.
    fn path_probe(&self) -> Option<(&str, Option<&str>)> {
        None
    }

    /// What applying `action` affects, when the plan knows better than [`Module::effects`].
    fn applied_effects(&self, _action: &Self::Action) -> Effects {
        self.effects()
    }

    /// A shell condition that, when true on the host, means there is nothing to do. A
    /// module that has one can be applied even when an earlier change in the same script
    /// made its probe stale: the condition is tested again right before the apply.
    fn apply_guard(&self) -> Option<String> {
        None
    }

    /// The controller templates a task of this module renders while it is built, named as
    /// its arguments (not yet templated) name them; `None` when that cannot be told from
    /// the arguments. The engine reads the variables those files use, so a task waits for
    /// the facts or a registered result its template reads, and only then. Most modules
    /// render none.
    fn rendered_templates(_args: &Value) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    /// Bare expressions (not `{{ }}` templates) the module evaluates on the controller when
    /// it is built, named as its arguments name them (`assert: that:`). The engine counts
    /// the variables they read like those of `when`, so the task waits for facts or a
    /// registered result they need.
    fn expressions(_args: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Whether the operator sees the task's result without `-v` (`debug`, `assert`'s
    /// message): its plan's reason is shown like a change's summary.
    fn shows_result(&self) -> bool {
        false
    }

    /// Values the module makes from its arguments that are as good as a secret (a
    /// password's SCRAM verifier). The engine adds them to the run's secrets when it
    /// builds the module, so they are redacted wherever they would show (`-vv` scripts,
    /// errors, JSON output) before any of them can.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// Fields the module adds to its registered result beside `changed`, `rc`, `stdout`…
    /// (`uri`'s `status` and `json`, `slurp`'s `content`), read from what its probe printed
    /// when nothing changed, or from what its apply printed. A module whose result is only
    /// its exit code and output adds none.
    fn registered(&self, _out: &Observed) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }

    /// Whether the change this module plans is made on the controller, not on the host
    /// (`fetch` writes the file its probe read). Such a change has no apply step in the
    /// host's script: the engine calls [`Module::apply_on_controller`] instead, and never
    /// in check mode.
    fn applies_on_controller(&self) -> bool {
        false
    }

    /// Makes a change planned by a module that [`Module::applies_on_controller`]. Its
    /// failure fails the task like a failed plan does.
    fn apply_on_controller(&self, _action: &Self::Action) -> Result<(), ModuleError> {
        Ok(())
    }

    /// Variables the task sets for the host's later tasks when it finishes (`set_fact`).
    /// The engine makes a later task that reads one of them wait for this task, as it does
    /// for a registered result.
    fn sets_vars(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }

    /// Whether an applied change restarts the host (`reboot`): the engine then drops the
    /// connection, reopens it until the host is back on a new boot, and runs the rest of
    /// the play over the new one. Nothing queued after such a unit shares its round.
    fn reboots(&self) -> Option<reboot::RebootWait> {
        None
    }
}

/// Object-safe face of [`Module`], so the engine can hold a list of mixed modules.
pub trait DynModule: Send + Sync {
    fn name(&self) -> &'static str;
    fn probe(&self) -> Option<String>;
    fn plan(&self, observed: &Observed) -> Result<Plan<Box<dyn Any + Send + Sync>>, ModuleError>;
    fn apply(&self, action: &(dyn Any + Send + Sync)) -> String;
    fn effects(&self) -> Effects;
    fn slow_probe(&self) -> bool;
    fn path_probe(&self) -> Option<(&str, Option<&str>)>;
    fn applied_effects(&self, action: &(dyn Any + Send + Sync)) -> Effects;
    fn apply_guard(&self) -> Option<String>;
    fn secrets(&self) -> Vec<String>;
    fn shows_result(&self) -> bool;
    // The defaults are those of [`Module`]'s, for stand-ins in the engine's tests.
    fn registered(&self, _out: &Observed) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }
    fn applies_on_controller(&self) -> bool {
        false
    }
    fn apply_on_controller(&self, _action: &(dyn Any + Send + Sync)) -> Result<(), ModuleError> {
        Ok(())
    }
    fn sets_vars(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }
    fn reboots(&self) -> Option<reboot::RebootWait> {
        None
    }
}

struct Named<M> {
    name: &'static str,
    module: M,
}

impl<M: Module> DynModule for Named<M> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn probe(&self) -> Option<String> {
        self.module.probe()
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Box<dyn Any + Send + Sync>>, ModuleError> {
        Ok(match self.module.plan(observed)? {
            Plan::Unchanged { reason } => Plan::Unchanged { reason },
            Plan::Change(c) => Plan::Change(Change {
                summary: c.summary,
                details: c.details,
                diff: c.diff,
                always: c.always,
                action: Box::new(c.action),
            }),
        })
    }

    fn apply(&self, action: &(dyn Any + Send + Sync)) -> String {
        match action.downcast_ref::<M::Action>() {
            Some(a) => self.module.apply(a),
            // Only reachable through an engine bug; fail the remote step loudly.
            None => "echo 'bosun: internal error: action of another module' >&2; exit 70".into(),
        }
    }

    fn effects(&self) -> Effects {
        self.module.effects()
    }

    fn slow_probe(&self) -> bool {
        self.module.slow_probe()
    }

    fn path_probe(&self) -> Option<(&str, Option<&str>)> {
        self.module.path_probe()
    }

    fn applied_effects(&self, action: &(dyn Any + Send + Sync)) -> Effects {
        match action.downcast_ref::<M::Action>() {
            Some(a) => self.module.applied_effects(a),
            None => Effects::Host,
        }
    }

    fn apply_guard(&self) -> Option<String> {
        self.module.apply_guard()
    }

    fn secrets(&self) -> Vec<String> {
        self.module.secrets()
    }

    fn shows_result(&self) -> bool {
        self.module.shows_result()
    }

    fn registered(&self, out: &Observed) -> serde_json::Map<String, Value> {
        self.module.registered(out)
    }

    fn applies_on_controller(&self) -> bool {
        self.module.applies_on_controller()
    }

    fn apply_on_controller(&self, action: &(dyn Any + Send + Sync)) -> Result<(), ModuleError> {
        match action.downcast_ref::<M::Action>() {
            Some(a) => self.module.apply_on_controller(a),
            None => Err(ModuleError::new("internal error: action of another module")),
        }
    }

    fn sets_vars(&self) -> serde_json::Map<String, Value> {
        self.module.sets_vars()
    }

    fn reboots(&self) -> Option<reboot::RebootWait> {
        self.module.reboots()
    }
}

/// The states a package module (`apt`, `pip`, `npm`) can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageState {
    #[default]
    Present,
    Absent,
    Latest,
}

/// Builds one module of a known type from its (already templated) arguments.
trait Build: Sync {
    fn build(
        &self,
        name: &'static str,
        args: Value,
        ctl: &dyn Controller,
    ) -> Result<Box<dyn DynModule>, ArgError>;

    /// [`Module::rendered_templates`] of the module type.
    fn rendered_templates(&self, args: &Value) -> Option<Vec<String>>;

    /// [`Module::expressions`] of the module type.
    fn expressions(&self, args: &Value) -> Vec<String>;
}

/// A module type's constructor, wrapped so that modules of different types sit in one list.
struct Make<M>(fn(Value, &dyn Controller) -> Result<M, ArgError>);

impl<M: Module> Build for Make<M> {
    fn build(
        &self,
        name: &'static str,
        args: Value,
        ctl: &dyn Controller,
    ) -> Result<Box<dyn DynModule>, ArgError> {
        Ok(Box::new(Named {
            name,
            module: (self.0)(args, ctl)?,
        }))
    }

    fn rendered_templates(&self, args: &Value) -> Option<Vec<String>> {
        M::rendered_templates(args)
    }

    fn expressions(&self, args: &Value) -> Vec<String> {
        M::expressions(args)
    }
}

/// Every module a task may use: its name, written only here, and how to build it.
///
/// [`NAMES`] and [`build`] are read from this list, so a module is added by one line (and
/// its file); a test keeps the list sorted and free of duplicates.
const REGISTRY: &[(&str, &dyn Build)] = &[
    ("apt", &Make(|args, _| apt::Apt::from_args(args))),
    ("assert", &Make(assert::Assert::from_args)),
    (
        "authorized_key",
        &Make(|args, _| authorized_key::AuthorizedKey::from_args(args)),
    ),
    (
        "blockinfile",
        &Make(|args, _| blockinfile::BlockInFile::from_args(args)),
    ),
    (
        "command",
        &Make(|args, _| command::Command::from_args(args, false)),
    ),
    ("copy", &Make(copy::Copy::from_args)),
    ("cron", &Make(|args, _| cron::Cron::from_args(args))),
    ("debug", &Make(debug::DebugMessage::from_args)),
    ("fetch", &Make(fetch::Fetch::from_args)),
    ("file", &Make(|args, _| file::File::from_args(args))),
    ("get_url", &Make(|args, _| get_url::GetUrl::from_args(args))),
    ("git", &Make(|args, _| git::Git::from_args(args))),
    ("group", &Make(|args, _| group::Group::from_args(args))),
    ("ini", &Make(|args, _| lineinfile::Ini::from_args(args))),
    (
        "lineinfile",
        &Make(|args, _| lineinfile::LineInFile::from_args(args)),
    ),
    ("mount", &Make(|args, _| mount::Mount::from_args(args))),
    ("npm", &Make(|args, _| npm::Npm::from_args(args))),
    (
        "pg_database",
        &Make(|args, _| postgresql::PgDatabase::from_args(args)),
    ),
    (
        "pg_role",
        &Make(|args, _| postgresql::PgRole::from_args(args)),
    ),
    ("pip", &Make(|args, _| pip::Pip::from_args(args))),
    ("reboot", &Make(|args, _| reboot::Reboot::from_args(args))),
    (
        "replace",
        &Make(|args, _| replace::Replace::from_args(args)),
    ),
    (
        "service",
        &Make(|args, _| systemd::Systemd::from_service_args(args)),
    ),
    ("set_fact", &Make(set_fact::SetFact::from_args)),
    (
        "shell",
        &Make(|args, _| command::Command::from_args(args, true)),
    ),
    ("slurp", &Make(|args, _| slurp::Slurp::from_args(args))),
    ("sysctl", &Make(|args, _| sysctl::Sysctl::from_args(args))),
    (
        "systemd",
        &Make(|args, _| systemd::Systemd::from_args(args)),
    ),
    ("template", &Make(template::Template::from_args)),
    (
        "unarchive",
        &Make(|args, _| unarchive::Unarchive::from_args(args)),
    ),
    ("upload", &Make(upload::Upload::from_args)),
    ("uri", &Make(|args, _| uri::Uri::from_args(args))),
    ("user", &Make(|args, _| user::User::from_args(args))),
    (
        "wait_for",
        &Make(|args, _| wait_for::WaitFor::from_args(args)),
    ),
];

/// Every module name a task may use, for "unknown module" errors with suggestions and for
/// the site loader's checks.
pub const NAMES: &[&str] = &{
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = REGISTRY[i].0;
        i += 1;
    }
    names
};

/// Builds a module from its (already templated) arguments.
pub fn build(
    name: &str,
    args: Value,
    ctl: &dyn Controller,
) -> Result<Box<dyn DynModule>, ArgError> {
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((name, make)) => make.build(name, args, ctl),
        None => Err(unknown_module(name)),
    }
}

/// The controller templates a task of module `name` with (untemplated) `args` renders
/// when it is built (see [`Module::rendered_templates`]); none for an unknown module, whose
/// task fails when it is built.
pub fn rendered_templates(name: &str, args: &Value) -> Option<Vec<String>> {
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((_, make)) => make.rendered_templates(args),
        None => Some(Vec::new()),
    }
}

/// The bare expressions a task of module `name` evaluates when it is built (see
/// [`Module::expressions`]).
pub fn expressions(name: &str, args: &Value) -> Vec<String> {
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((_, make)) => make.expressions(args),
        None => Vec::new(),
    }
}

fn unknown_module(name: &str) -> ArgError {
    let err = ArgError::new(format!("unknown module `{name}`"));
    match bosun_model::text::closest(name, NAMES) {
        Some(s) => err.hint(format!("did you mean `{s}`? modules: {}", NAMES.join(", "))),
        None => err.hint(format!("modules: {}", NAMES.join(", "))),
    }
}

/// Parses module arguments into a typed struct (`deny_unknown_fields` on the struct turns a
/// typo into an error naming the parameter and the ones that exist).
pub fn parse_args<T: DeserializeOwned>(module: &str, args: Value) -> Result<T, ArgError> {
    serde_json::from_value(args).map_err(|e| {
        ArgError::new(format!("module `{module}`: {e}")).hint(format!(
            "see the `{module}` module's parameters in README.md"
        ))
    })
}

/// File modes as operators write them: `"0644"`, `"644"`, `0644` (YAML reads an unquoted
/// leading-zero number as octal) or `"u=rw,g=r,o=r"`-free plain octal only.
pub fn parse_mode(v: &Value) -> Result<u32, ArgError> {
    let s = match v {
        Value::String(s) => s.clone(),
        // An unquoted 644 arrives as decimal 644: read its digits as octal, like Ansible.
        Value::Number(n) => n.to_string(),
        _ => return Err(ArgError::new("mode must be an octal string like \"0644\"")),
    };
    let digits = s.trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            ArgError::new(format!("mode `{s}` is not an octal mode"))
                .hint("quote it: mode: \"0644\"")
        })
}

/// Deserializes an optional mode with [`parse_mode`].
pub fn de_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::Deserialize;
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_mode(&v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Accepts `name: foo` or `name: [foo, bar]`.
pub fn de_one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_registry_is_sorted_and_names_each_module_once() {
        assert!(
            NAMES.windows(2).all(|w| w[0] < w[1]),
            "keep REGISTRY in alphabetical order, each name once: {NAMES:?}"
        );
        assert_eq!(NAMES.len(), REGISTRY.len());
    }

    #[test]
    fn every_registered_name_builds_its_own_module() {
        for name in NAMES {
            // Empty arguments are wrong for most modules, but the error must come from the
            // module named, never from "unknown module".
            match build(name, json!({}), &test_support::FakeCtl) {
                Ok(m) => assert_eq!(m.name(), *name),
                Err(e) => assert!(!e.message.contains("unknown module"), "{name}: {e}"),
            }
        }
        let e = build("templat", json!({}), &test_support::FakeCtl).err();
        assert!(e
            .and_then(|e| e.hint)
            .is_some_and(|h| h.contains("`template`")));
    }

    #[test]
    fn kv_reads_key_value_lines() {
        let o = Observed::stdout("type=file\nmode=644\njunk\nmode=600\n");
        let kv = o.kv();
        assert_eq!(kv.get("type"), Some(&"file"));
        assert_eq!(kv.get("mode"), Some(&"600"));
    }

    #[test]
    fn modes_parse_like_operators_write_them() {
        assert_eq!(parse_mode(&json!("0644")).unwrap(), 0o644);
        assert_eq!(parse_mode(&json!("755")).unwrap(), 0o755);
        assert_eq!(parse_mode(&json!(644)).unwrap(), 0o644);
        assert!(parse_mode(&json!("0999")).is_err());
        assert!(parse_mode(&json!(true)).is_err());
    }
}
