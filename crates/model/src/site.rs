//! The site (ordered plays) and the roles it names, loaded and checked before any host is
//! contacted.
//!
//! ```yaml
//! # roles/site.yml
//! - name: database
//!   hosts: postgres          # an inventory pattern
//!   roles: [patroni]
//!   serial: 1                # or "30%"; hosts per batch
//!   max_fail_percentage: 0
//!   vars: { ... }
//! ```
//!
//! A role is `roles/NAME/{tasks.yml, handlers.yml, defaults.yml}`; its templates are looked
//! up in `roles/NAME/templates/`, then `templates/NAME/`, then `templates/`; files for
//! `copy: src:` in `roles/NAME/files/`. Includes, role imports, role dependencies
//! (`roles/NAME/meta.yml`), role parameters and `pre_tasks`/`post_tasks` are resolved at
//! load time by [`compose`].

mod compose;

pub use compose::RoleRef;

use crate::diag::{LoadError, LoadErrors, Place};
use crate::text::closest;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

mod block;
mod notify;
pub use block::{BlockRef, Section};

/// Where roles and templates live.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    /// The project of a site file: its directory, or the parent when the site lives in
    /// `roles/` (the default `roles/site.yml`).
    pub fn of_site(site: &Path) -> Project {
        let dir = site.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = if dir.file_name().is_some_and(|n| n == "roles") {
            dir.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            dir
        };
        Project {
            root: if root.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                root
            },
        }
    }

    pub fn roles_dir(&self) -> PathBuf {
        self.root.join("roles")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
}

/// `serial`: a host count or a percentage of the play's hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Serial {
    All,
    Count(usize),
    Percent(f64),
}

impl Serial {
    pub fn batch_size(self, hosts: usize) -> usize {
        match self {
            Serial::All => hosts.max(1),
            Serial::Count(n) => n.max(1),
            Serial::Percent(p) => ((hosts as f64 * p / 100.0).ceil() as usize).max(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    /// Every role of the play once, in order of first use: the ones it names, their
    /// dependencies and the roles their tasks import (their defaults and handlers join
    /// the play).
    pub roles: Vec<String>,
    /// What the play runs, in order: `pre_tasks`, each role's tasks (its dependencies'
    /// first, includes and imports expanded, role parameters in [`Task::vars`]), then
    /// `post_tasks`. [`Site::role_of`] gives each task's role.
    pub tasks: Vec<Task>,
    pub serial: Serial,
    pub max_fail_percentage: Option<f64>,
    /// One host's failure stops the play on every host (after the task each is on).
    pub any_errors_fatal: bool,
    pub vars: Map<String, Value>,
    pub tags: Vec<String>,
    /// `task_timeout:` — the deadline of every task of the play without its own `timeout`.
    pub task_timeout: Option<std::time::Duration>,
    /// `become_user:` — the account every task of the play without its own runs as.
    pub become_user: Option<String>,
    pub place: Place,
}

#[derive(Debug, Clone, Default)]
pub struct Task {
    pub name: String,
    pub module: String,
    /// Arguments as written; templated per host at run time.
    pub args: Value,
    pub when: Vec<String>,
    pub notify: Vec<String>,
    /// Handlers only: topics that notify this handler besides its name (`listen:`).
    pub listen: Vec<String>,
    pub tags: Vec<String>,
    pub loop_items: Option<Value>,
    pub loop_var: String,
    pub register: Option<String>,
    pub retries: u32,
    pub delay: u64,
    pub until: Option<String>,
    pub run_once: bool,
    /// `ignore_errors`: a failure is reported (as ignored) and registered, and the host
    /// carries on.
    pub ignore_errors: bool,
    /// `changed_when`: a boolean or an expression over the task's result.
    pub changed_when: Option<Value>,
    /// `failed_when`: an expression over the task's result.
    pub failed_when: Option<String>,
    /// `timeout:` — how long the task's remote step may run before it is killed.
    pub timeout: Option<std::time::Duration>,
    /// `become_user:` — the account the task's probe and apply run as (the play's when
    /// the task names none; root otherwise).
    pub become_user: Option<String>,
    /// `delegate_to:` — the inventory host (or `local`, the controller) whose connection
    /// runs the task, with this host's variables.
    pub delegate_to: Option<String>,
    /// Variables scoped to this task: role parameters (`{role: x, vars: ...}`,
    /// `import_role` vars) and include vars. Above role defaults, inventory and play vars,
    /// below extra vars.
    pub vars: Map<String, Value>,
    pub place: Place,
    /// The role whose files the task uses; empty for `pre_tasks`/`post_tasks`.
    pub role: String,
    /// The blocks the task is in, outermost first (see [`block`]).
    pub blocks: Vec<BlockRef>,
}

impl Task {
    /// `meta: flush_handlers`: run the handlers notified so far, here.
    pub fn flushes_handlers(&self) -> bool {
        self.module == "meta" && self.args == "flush_handlers"
    }

    /// In a `rescue:` section (of any enclosing block).
    pub fn in_rescue(&self) -> bool {
        self.blocks.iter().any(|b| b.section == Section::Rescue)
    }

    /// Whether a notification of `name` runs this handler: its name or a `listen` topic.
    pub fn answers(&self, name: &str) -> bool {
        self.name == name || self.listen.iter().any(|t| t == name)
    }
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub dir: PathBuf,
    pub defaults: Map<String, Value>,
    pub defaults_file: PathBuf,
    /// Its tasks, includes and role imports expanded (its dependencies are not in them:
    /// a play runs those first, once).
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    /// `dependencies:` from `roles/NAME/meta.yml`.
    pub deps: Vec<RoleRef>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub path: PathBuf,
    pub project: Project,
    pub plays: Vec<Play>,
    pub roles: IndexMap<String, Role>,
    /// What `pre_tasks`/`post_tasks` use as their role: files and templates next to the
    /// site file.
    pub site_role: Role,
}

impl Site {
    /// The role a task of a play belongs to (the site's for `pre_tasks`/`post_tasks`).
    pub fn role_of(&self, task: &Task) -> Option<&Role> {
        if task.role.is_empty() {
            Some(&self.site_role)
        } else {
            self.roles.get(&task.role)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    name: Option<String>,
    hosts: String,
    #[serde(default)]
    roles: Vec<Spanned<Value>>,
    #[serde(default)]
    pre_tasks: Vec<RawTask>,
    #[serde(default)]
    post_tasks: Vec<RawTask>,
    serial: Option<Value>,
    max_fail_percentage: Option<f64>,
    #[serde(default)]
    any_errors_fatal: bool,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    tags: Vec<String>,
    task_timeout: Option<Spanned<Value>>,
    become_user: Option<Spanned<String>>,
}

use block::RawTask;

/// Task keys that are not modules.
const KEYWORDS: &[&str] = &[
    "name",
    "when",
    "notify",
    "listen",
    "tags",
    "loop",
    "loop_var",
    "register",
    "retries",
    "delay",
    "until",
    "run_once",
    "ignore_errors",
    "become_user",
    "delegate_to",
    "changed_when",
    "failed_when",
    "timeout",
    "meta",
];

/// A deadline in seconds: a positive number (`timeout: 300`, `task_timeout: 1.5`).
pub fn positive_seconds(v: &Value) -> Option<std::time::Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| std::time::Duration::from_secs_f64(secs))
}

impl Site {
    /// Loads the site and every role it names; reports all errors found, not just the first.
    /// `modules` are the names a task may use (the engine's registry: the model does not
    /// know what modules exist, only that a task names one of them).
    pub fn load(path: &Path, modules: &[&str]) -> Result<Site, LoadErrors> {
        let project = Project::of_site(path);
        let raw: Vec<Spanned<RawPlay>> = crate::yaml::load(path)?;
        let mut errors = Vec::new();
        let mut plays = Vec::new();
        let mut loader = compose::Loader::new(&project, modules);
        for (i, rp) in raw.into_iter().enumerate() {
            let place = Place::at(path, &rp.referenced);
            let p = rp.value;
            let serial = match parse_serial(&p.serial) {
                Ok(s) => s,
                Err(m) => {
                    errors.push(
                        LoadError::new(place.clone(), m).hint("serial: 2 or serial: \"30%\""),
                    );
                    Serial::All
                }
            };
            if let Some(m) = p.max_fail_percentage {
                if !(0.0..=100.0).contains(&m) {
                    errors.push(LoadError::new(
                        place.clone(),
                        "max_fail_percentage must be between 0 and 100",
                    ));
                }
            }
            let task_timeout = match &p.task_timeout {
                None => None,
                Some(t) => match positive_seconds(&t.value) {
                    Some(d) => Some(d),
                    None => {
                        errors.push(
                            LoadError::new(
                                Place::at(path, &t.referenced),
                                format!(
                                    "task_timeout `{}` is not a positive number of seconds",
                                    t.value
                                ),
                            )
                            .hint("task_timeout: 1800"),
                        );
                        None
                    }
                },
            };
            let become_user = match p.become_user {
                Some(u) if !is_user_name(&u.value) => {
                    errors.push(
                        LoadError::new(
                            Place::at(path, &u.referenced),
                            format!("become_user `{}` is not a user name", u.value),
                        )
                        .hint("become_user: postgres"),
                    );
                    None
                }
                u => u.map(|u| u.value),
            };
            let composed = loader.play(path, &p.roles, p.pre_tasks, p.post_tasks);
            plays.push(Play {
                name: p
                    .name
                    .unwrap_or_else(|| format!("play {} ({})", i + 1, p.hosts)),
                hosts: p.hosts,
                roles: composed.roles,
                tasks: composed.tasks,
                serial,
                max_fail_percentage: p.max_fail_percentage,
                any_errors_fatal: p.any_errors_fatal,
                vars: p.vars,
                tags: p.tags,
                task_timeout,
                become_user,
                place,
            });
        }
        let site_role = loader.site_role(path);
        let (roles, load_errors) = loader.finish();
        errors.extend(load_errors);
        errors.extend(notify::check(&plays, &roles));
        if errors.is_empty() {
            Ok(Site {
                path: path.to_path_buf(),
                project,
                plays,
                roles,
                site_role,
            })
        } else {
            Err(LoadErrors(errors))
        }
    }
}

fn parse_serial(v: &Option<Value>) -> Result<Serial, String> {
    match v {
        None | Some(Value::Null) => Ok(Serial::All),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c) if c > 0 => Ok(Serial::Count(c as usize)),
            _ => Err(format!("serial `{n}` must be a positive whole number")),
        },
        Some(Value::String(s)) => match s.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>())
        {
            Some(Ok(p)) if p > 0.0 && p <= 100.0 => Ok(Serial::Percent(p)),
            _ => Err(format!(
                "serial `{s}` must be a number or a percentage like \"30%\""
            )),
        },
        Some(other) => Err(format!("serial `{other}` must be a number or a percentage")),
    }
}

fn list_roles(project: &Project) -> Vec<String> {
    std::fs::read_dir(project.roles_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("tasks.yml").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Role {
    /// Directories searched for `template: src:`, most specific first.
    pub fn template_dirs(&self, project: &Project) -> Vec<PathBuf> {
        vec![
            self.dir.join("templates"),
            project.templates_dir().join(&self.name),
            project.templates_dir(),
        ]
    }

    /// Directories searched for `copy: src:`.
    pub fn file_dirs(&self, project: &Project) -> Vec<PathBuf> {
        vec![
            self.dir.join("files"),
            project.root.join("files").join(&self.name),
        ]
    }
}

fn load_tasks(
    file: &Path,
    role: &str,
    handlers: bool,
    modules: &[&str],
    errors: &mut Vec<LoadError>,
) -> Vec<Task> {
    let raw: Option<Vec<RawTask>> = match crate::yaml::load(file) {
        Ok(r) => r,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    parse_tasks(
        file,
        role,
        handlers,
        raw.unwrap_or_default(),
        modules,
        errors,
        &mut block::NoIncludes,
    )
}

/// Parses tasks read from `file` (includes are expanded by [`compose`] before this).
fn parse_tasks(
    file: &Path,
    role: &str,
    handlers: bool,
    raw: Vec<RawTask>,
    modules: &[&str],
    errors: &mut Vec<LoadError>,
    includes: &mut dyn block::Includes,
) -> Vec<Task> {
    let mut out = Vec::new();
    for rt in raw {
        block::flatten(
            file,
            role,
            rt,
            modules,
            &Default::default(),
            &mut out,
            errors,
            includes,
        );
    }
    for t in &out {
        if handlers && !t.blocks.is_empty() {
            errors.push(
                LoadError::new(t.place.clone(), "blocks are not supported in handlers")
                    .hint("make each handler a single task"),
            );
        }
        if handlers && t.module == "meta" {
            errors.push(LoadError::new(
                t.place.clone(),
                "`meta` is for tasks, not handlers",
            ));
        }
        if handlers && t.name.is_empty() {
            errors.push(LoadError::new(
                t.place.clone(),
                "a handler needs a `name` (tasks notify it by name)",
            ));
        }
        if !handlers && !t.listen.is_empty() {
            errors.push(
                LoadError::new(t.place.clone(), "`listen` is for handlers, not tasks")
                    .hint("move the task to handlers.yml, or notify a handler from it"),
            );
        }
    }
    out
}

fn parse_task(file: &Path, role: &str, rt: RawTask, modules: &[&str]) -> Result<Task, LoadError> {
    let place = Place::at(file, &rt.referenced);
    let mut module: Option<(String, Value, Place)> = None;
    let mut t = Task {
        name: String::new(),
        module: String::new(),
        args: Value::Null,
        when: Vec::new(),
        notify: Vec::new(),
        listen: Vec::new(),
        tags: Vec::new(),
        loop_items: None,
        loop_var: "item".into(),
        register: None,
        retries: 0,
        delay: 1,
        until: None,
        run_once: false,
        ignore_errors: false,
        changed_when: None,
        failed_when: None,
        timeout: None,
        become_user: None,
        delegate_to: None,
        vars: Map::new(),
        place: place.clone(),
        role: role.to_string(),
        blocks: Vec::new(),
    };
    for (k, v) in rt.value {
        let kplace = Place::at(file, &k.referenced);
        let key = k.value;
        let val = v.value;
        let bad = |what: &str| LoadError::new(kplace.clone(), format!("`{key}` must be {what}"));
        match key.as_str() {
            "name" => t.name = val.as_str().ok_or_else(|| bad("a string"))?.to_string(),
            "when" => {
                t.when = strings(&val).ok_or_else(|| bad("an expression or a list of them"))?
            }
            "listen" => t.listen = strings(&val).ok_or_else(|| bad("a topic or a list of them"))?,
            "notify" => {
                t.notify = strings(&val).ok_or_else(|| bad("a handler name or a list of them"))?
            }
            "tags" => t.tags = strings(&val).ok_or_else(|| bad("a tag or a list of tags"))?,
            "loop" => {
                if !(val.is_array() || val.is_string()) {
                    return Err(bad("a list or a template string like \"{{ packages }}\""));
                }
                t.loop_items = Some(val)
            }
            "loop_var" => {
                t.loop_var = val
                    .as_str()
                    .ok_or_else(|| bad("a variable name"))?
                    .to_string()
            }
            "register" => {
                t.register = Some(
                    val.as_str()
                        .ok_or_else(|| bad("a variable name"))?
                        .to_string(),
                )
            }
            "retries" => t.retries = val.as_u64().ok_or_else(|| bad("a whole number"))? as u32,
            "delay" => t.delay = val.as_u64().ok_or_else(|| bad("a number of seconds"))?,
            "until" => {
                t.until = Some(
                    val.as_str()
                        .ok_or_else(|| bad("an expression"))?
                        .to_string(),
                )
            }
            "run_once" => t.run_once = val.as_bool().ok_or_else(|| bad("true or false"))?,
            "ignore_errors" => {
                t.ignore_errors = val.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "changed_when" => {
                if !(val.is_boolean() || val.is_string()) {
                    return Err(bad("true, false or an expression"));
                }
                t.changed_when = Some(val)
            }
            "timeout" => {
                t.timeout = Some(
                    positive_seconds(&val)
                        .ok_or_else(|| bad("a positive number of seconds").hint("timeout: 300"))?,
                )
            }
            "become_user" => {
                let u = val.as_str().ok_or_else(|| bad("a user name"))?;
                if !is_user_name(u) && !crate::template::has_syntax(u) {
                    return Err(bad("a user name").hint("become_user: postgres"));
                }
                t.become_user = Some(u.to_string())
            }
            "delegate_to" => {
                let d = val
                    .as_str()
                    .filter(|d| !d.trim().is_empty())
                    .ok_or_else(|| bad("a host name, or `local` for the controller"))?;
                t.delegate_to = Some(d.to_string())
            }
            "failed_when" => {
                t.failed_when = Some(
                    val.as_str()
                        .ok_or_else(|| bad("an expression"))?
                        .to_string(),
                )
            }
            m if m == "meta" || modules.contains(&m) => {
                let val = if m == "meta" {
                    block::meta_action(&val).map_err(|msg| {
                        LoadError::new(kplace.clone(), msg).hint("meta: flush_handlers")
                    })?
                } else {
                    val
                };
                if let Some((other, _, _)) = &module {
                    return Err(LoadError::new(
                        kplace,
                        format!("a task has one module; found `{other}` and `{m}`"),
                    )
                    .hint("split it into two tasks"));
                }
                module = Some((m.to_string(), val, kplace));
            }
            other => {
                let mut all: Vec<&str> = KEYWORDS.to_vec();
                all.extend(modules);
                let e = LoadError::new(kplace, format!("unknown module or task keyword `{other}`"));
                return Err(match closest(other, &all) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e.hint(format!("modules: {}", modules.join(", "))),
                });
            }
        }
    }
    if t.register.as_deref().is_some_and(|r| !is_ident(r)) || !is_ident(&t.loop_var) {
        return Err(LoadError::new(
            place,
            "register and loop_var must be plain variable names",
        ));
    }
    let Some((m, args, _)) = module else {
        return Err(
            LoadError::new(place, format!("task `{}` names no module", t.name))
                .hint(format!("add one of: {}", modules.join(", "))),
        );
    };
    if t.name.is_empty() {
        t.name = match &args {
            Value::String(a) if m == "meta" => format!("meta: {a}"),
            _ => m.to_string(),
        };
    }
    t.module = m;
    t.args = args;
    if t.module == "meta" {
        block::check_meta(&t).map_err(|msg| LoadError::new(place, msg))?;
    }
    Ok(t)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Bool(b) => Some(vec![b.to_string()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A POSIX account name (what `runuser -u` and `sudo -u` accept without surprises): it
/// goes into the remote script quoted, but a name that could be an option is refused. A
/// task's `become_user` may be a template, checked again once rendered.
pub fn is_user_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphanumeric() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '-' | '.'))
        && s.len() <= 32
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model does not know the engine's modules; these stand in for its registry.
    const TEST_MODULES: &[&str] = &["apt", "copy", "file", "template"];

    fn tasks(text: &str) -> (Vec<Task>, Vec<LoadError>) {
        // One directory per call: tests run in parallel, and texts may be as long.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bosun-site-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tasks.yml");
        std::fs::write(&f, text).unwrap();
        let mut errors = Vec::new();
        let t = load_tasks(&f, "r", false, TEST_MODULES, &mut errors);
        std::fs::remove_dir_all(&dir).unwrap();
        (t, errors)
    }

    #[test]
    fn parses_keywords_and_module() {
        let (t, e) = tasks("- name: pkgs\n  apt: {name: [a]}\n  when: x == 1\n  notify: restart\n  tags: [p]\n  loop: [1, 2]\n  register: r\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(t[0].module, "apt");
        assert_eq!(t[0].when, vec!["x == 1"]);
        assert_eq!(t[0].notify, vec!["restart"]);
        assert_eq!(t[0].register.as_deref(), Some("r"));
        assert_eq!(t[0].place.line, 1);
    }

    #[test]
    fn unknown_module_gets_line_and_suggestion() {
        let (_, e) = tasks("- name: a\n  file: {path: /x, state: directory}\n- name: b\n  tempalte: {src: a, dest: /b}\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].place.line, 4);
        assert_eq!(e[0].place.col, 3);
        assert!(e[0].hint.as_deref().unwrap_or("").contains("template"));
    }

    #[test]
    fn listen_is_for_handlers_only() {
        let (_, e) = tasks("- name: a\n  file: {}\n  listen: topic\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message.contains("`listen` is for handlers"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn become_user_is_a_user_name() {
        let (t, e) = tasks("- name: a\n  file: {}\n  become_user: postgres\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(t[0].become_user.as_deref(), Some("postgres"));
        let (_, e) = tasks("- name: a\n  file: {}\n  become_user: \"-o x\"\n");
        assert!(e[0].message.contains("become_user"), "{}", e[0].message);
        assert_eq!(e[0].place.line, 3, "{:?}", e[0]);
    }

    #[test]
    fn ignore_errors_is_true_or_false() {
        let (t, e) = tasks("- name: a\n  file: {}\n  ignore_errors: true\n");
        assert!(e.is_empty() && t[0].ignore_errors, "{e:?}");
        let (_, e) = tasks("- name: a\n  file: {}\n  ignore_errors: maybe\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("ignore_errors"), "{}", e[0].message);
    }

    #[test]
    fn two_modules_or_none_are_errors() {
        let (_, e) = tasks("- name: a\n  file: {}\n  copy: {}\n- name: b\n");
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("one module"));
        assert!(e[1].message.contains("names no module"));
    }

    #[test]
    fn serial_forms() {
        assert_eq!(
            parse_serial(&Some(Value::from(2))).unwrap(),
            Serial::Count(2)
        );
        assert_eq!(
            parse_serial(&Some(Value::from("50%"))).unwrap(),
            Serial::Percent(50.0)
        );
        assert!(parse_serial(&Some(Value::from("x"))).is_err());
        assert_eq!(Serial::Percent(50.0).batch_size(3), 2);
    }
}
