//! From a task as written to concrete module instances for one host: variables in scope,
//! `loop`, `when`, argument templating, and building the module.
//!
//! The same code runs twice: once before any host is contacted (preflight, with values
//! that only exist at run time stood in by [`Pending`]) so that a typo fails the whole run
//! up front, and again for real on each host.

use crate::modules::{self, ArgError, Controller, DynModule};
use bosun_model::diag::{LoadError, Place};
use bosun_model::inventory::{Host, Inventory};
use bosun_model::site::{Project, Role, Task};
use bosun_model::template::{self, Pending, Templates};
use minijinja::Value as JValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Variables visible to one host's templates, by top-level name.
#[derive(Clone)]
pub struct Scope {
    vars: BTreeMap<String, JValue>,
    /// Variables whose values are templates not yet rendered (they read a value that
    /// does not exist yet, such as a registered result).
    unresolved: BTreeMap<String, Value>,
    /// The names of extra vars (`-e`): nothing scoped to a task overrides them.
    extra: std::sync::Arc<BTreeSet<String>>,
}

/// Values that are the same for every host of a run (built once).
pub struct Globals {
    pub groups: JValue,
    pub hostvars: JValue,
}

impl Globals {
    pub fn new(inv: &Inventory) -> Self {
        let mut hv = BTreeMap::new();
        for (name, h) in &inv.hosts {
            let mut m = h.vars.clone();
            m.insert("inventory_hostname".into(), Value::String(name.clone()));
            m.insert("address".into(), Value::String(h.address.clone()));
            m.insert("group_names".into(), h.groups.clone().into());
            hv.insert(name.clone(), bosun_model::template::jv(&m));
        }
        Globals {
            groups: bosun_model::template::jv(inv.groups_value()),
            hostvars: JValue::from(hv),
        }
    }
}

/// What every host of one play shares when its scope is built.
pub struct PlayVars<'a> {
    pub roles: &'a [&'a Role],
    pub play_vars: &'a Map<String, Value>,
    pub extra: &'a Map<String, Value>,
    pub globals: &'a Globals,
    pub play_hosts: &'a [String],
    /// `play_hosts` as a template value, built once per play and shared (an Arc) by every
    /// host's scope: converting it per host made memory grow with hosts².
    pub play_hosts_value: JValue,
    pub check: bool,
    pub templates: &'a Templates,
}

impl Scope {
    /// Precedence, lowest first: role defaults, inventory (all → groups → host), play vars,
    /// then (set later) registered results, then extra vars.
    pub fn new(host: &Host, p: &PlayVars) -> Scope {
        let PlayVars {
            roles,
            play_vars,
            extra,
            globals,
            play_hosts: _,
            ref play_hosts_value,
            check,
            templates,
        } = *p;
        let mut vars = BTreeMap::new();
        let mut raw: BTreeMap<String, Value> = BTreeMap::new();
        let mut put = |m: &Map<String, Value>| {
            for (k, v) in m {
                vars.insert(k.clone(), bosun_model::template::jv(v));
                if contains_template(v) {
                    raw.insert(k.clone(), v.clone());
                } else {
                    raw.remove(k);
                }
            }
        };
        for r in roles {
            put(&r.defaults);
        }
        put(&host.vars);
        put(play_vars);
        put(extra);
        vars.insert(
            "inventory_hostname".into(),
            JValue::from(host.name.as_str()),
        );
        vars.insert("address".into(), JValue::from(host.address.as_str()));
        vars.insert(
            "group_names".into(),
            bosun_model::template::jv(&host.groups),
        );
        vars.insert("groups".into(), globals.groups.clone());
        vars.insert("hostvars".into(), globals.hostvars.clone());
        vars.insert("play_hosts".into(), play_hosts_value.clone());
        vars.insert("check_mode".into(), JValue::from(check));
        let mut scope = Scope {
            vars,
            unresolved: raw,
            extra: std::sync::Arc::new(extra.keys().cloned().collect()),
        };
        scope.resolve(templates);
        scope
    }

    /// Renders variables whose values are templates (`base: "{{ root }}/app"`), in as
    /// many passes as chains of them need. Ones that cannot be rendered yet stay pending
    /// and are retried when a new value (a registered result) appears. A variable is
    /// rendered only once every variable it reads is: rendered earlier, it would read the
    /// other's template text (`"{{ 'a' if is_x else 'b' }}"` with `is_x` still a
    /// non-empty string, so true).
    pub fn resolve(&mut self, templates: &Templates) {
        for _ in 0..32 {
            if self.unresolved.is_empty() {
                return;
            }
            let ctx = self.context();
            let mut progressed = false;
            let names: Vec<String> = self.unresolved.keys().cloned().collect();
            // As `ctx` has them: a variable rendered earlier in this pass is not in it yet.
            let pending = self.unresolved.clone();
            for name in names {
                let Some(raw) = self.unresolved.get(&name) else {
                    continue;
                };
                if reads_unresolved(raw, &name, &pending, templates) {
                    continue;
                }
                if let Ok(v) = templates.render_value(raw, &ctx) {
                    if !contains_template(&v) {
                        self.vars
                            .insert(name.clone(), bosun_model::template::jv(&v));
                        self.unresolved.remove(&name);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The scope `task` sees: its `vars` (role parameters, include vars) rendered over
    /// this one, in order (one may read an earlier one); extra vars still win.
    pub fn for_task(
        &self,
        task: &Task,
        templates: &Templates,
    ) -> Result<Cow<'_, Scope>, ExpandError> {
        if task.vars.is_empty() {
            return Ok(Cow::Borrowed(self));
        }
        let mut scope = self.clone();
        for (k, v) in &task.vars {
            if self.extra.contains(k) {
                continue;
            }
            let v = templates
                .render_value(v, &scope.context())
                .map_err(|e| terr(task, &format!("vars: {k}"), &e))?;
            scope.vars.insert(k.clone(), bosun_model::template::jv(&v));
            scope.unresolved.remove(k);
        }
        Ok(Cow::Owned(scope))
    }

    /// Sets a variable unless an extra var (`-e`) of that name exists: extra vars win.
    pub fn set(&mut self, name: &str, v: JValue, extra: &Map<String, Value>) {
        if !extra.contains_key(name) {
            self.vars.insert(name.to_string(), v);
            self.unresolved.remove(name);
        }
    }

    pub fn context(&self) -> JValue {
        JValue::from(self.vars.clone())
    }

    pub fn with(&self, name: &str, v: JValue) -> JValue {
        let mut m = self.vars.clone();
        m.insert(name.to_string(), v);
        JValue::from(m)
    }

    /// Whether `name` is a variable whose template could not be rendered yet.
    pub fn is_unresolved(&self, name: &str) -> bool {
        self.unresolved.contains_key(name)
    }

    pub fn has_unresolved(&self) -> bool {
        !self.unresolved.is_empty()
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&JValue> {
        self.vars.get(name)
    }

    /// Whether `name` has a value.
    pub fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Sets the host's facts: `facts`, and the same facts under their Ansible names
    /// ([`crate::facts::ANSIBLE_NAMES`]).
    pub fn set_facts(&mut self, facts: &JValue, extra: &Map<String, Value>) {
        self.set("facts", facts.clone(), extra);
        let plain = serde_json::to_value(facts).unwrap_or(Value::Null);
        for (k, v) in crate::facts::ansible_aliases(&plain) {
            self.set(&k, bosun_model::template::jv(&v), extra);
        }
    }

    /// Marks the facts, under every name they have, as still to come.
    pub fn set_facts_pending(&mut self) {
        self.set_pending("facts");
        for n in crate::facts::ANSIBLE_NAMES {
            self.set_pending(n);
        }
    }

    /// Marks names whose values exist only at run time (registered results, facts).
    pub fn set_pending(&mut self, name: &str) {
        self.vars.insert(
            name.to_string(),
            JValue::from_object(Pending(name.to_string())),
        );
    }
}

/// Whether the templates in `v` read a variable (other than `name`) still unresolved.
fn reads_unresolved(
    v: &Value,
    name: &str,
    unresolved: &BTreeMap<String, Value>,
    templates: &Templates,
) -> bool {
    match v {
        Value::String(s) if template::has_syntax(s) => templates
            .template_names(s)
            .iter()
            .any(|n| n != name && unresolved.contains_key(n)),
        Value::Array(a) => a
            .iter()
            .any(|x| reads_unresolved(x, name, unresolved, templates)),
        Value::Object(o) => o.iter().any(|(k, x)| {
            reads_unresolved(&Value::String(k.clone()), name, unresolved, templates)
                || reads_unresolved(x, name, unresolved, templates)
        }),
        _ => false,
    }
}

fn contains_template(v: &Value) -> bool {
    match v {
        Value::String(s) => template::has_syntax(s),
        Value::Array(a) => a.iter().any(contains_template),
        Value::Object(o) => o.values().any(contains_template),
        _ => false,
    }
}

/// A task's unit of work on one host: one loop item (or the task itself).
pub struct Unit {
    pub task: usize,
    pub label: Option<String>,
    pub module: Box<dyn DynModule>,
    /// The task's `become_user`, rendered for this item.
    pub become_user: Option<String>,
    /// The task's `delegate_to`, rendered for this item: whose connection runs it.
    pub delegate_to: Option<String>,
}

pub enum ItemOutcome {
    Skipped {
        label: Option<String>,
        reason: String,
    },
    Run(Unit),
}

/// A task that could not be turned into modules on this host.
#[derive(Debug, Clone)]
pub struct ExpandError {
    pub place: Place,
    pub message: String,
    pub hint: Option<String>,
}

impl ExpandError {
    pub fn into_load_error(self) -> LoadError {
        let mut e = LoadError::new(self.place, self.message);
        e.hint = self.hint;
        e
    }

    pub fn render(&self) -> String {
        self.clone().into_load_error().render()
    }
}

/// Resolves `template:` and `copy:` sources for one task of one role.
pub struct TaskController<'a> {
    pub role: &'a Role,
    pub project: &'a Project,
    pub templates: &'a Templates,
    pub ctx: &'a JValue,
}

impl TaskController<'_> {}

/// `src` itself when absolute, else the first of `dirs` that holds it as a file.
pub fn find_file(dirs: Vec<PathBuf>, src: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(src);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    dirs.into_iter().map(|d| d.join(src)).find(|c| c.is_file())
}

impl Controller for TaskController<'_> {
    fn test(&self, expr: &str) -> Result<bool, ArgError> {
        // Before any host is contacted (preflight), an expression over values that exist
        // only at run time (facts, registered results) cannot be told yet: it holds for now
        // and is evaluated for real on the host's turn.
        let pending = self.templates.expression_names(expr).iter().any(|n| {
            self.ctx
                .get_attr(n)
                .is_ok_and(|v| v.downcast_object_ref::<Pending>().is_some())
        });
        if pending {
            return Ok(true);
        }
        self.templates.test(expr, self.ctx).map_err(|e| {
            ArgError::new(format!("`{expr}`: {}", template::describe(&e)))
                .hint("an expression as in `when:`, over the host's variables")
        })
    }

    fn var(&self, name: &str) -> Option<Value> {
        let v = self.ctx.get_attr(name).ok()?;
        (!v.is_undefined())
            .then(|| serde_json::to_value(&v).ok())
            .flatten()
    }

    fn read_file(&self, src: &str) -> Result<Vec<u8>, ArgError> {
        let dirs = self.role.file_dirs(self.project);
        let path = find_file(dirs.clone(), src).ok_or_else(|| {
            ArgError::new(format!("file `{src}` not found")).hint(format!(
                "looked in {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        std::fs::read(&path)
            .map_err(|e| ArgError::new(format!("cannot read {}: {e}", path.display())))
    }

    fn render_template(&self, src: &str) -> Result<String, ArgError> {
        let dirs = self.role.template_dirs(self.project);
        let path = find_file(dirs.clone(), src).ok_or_else(|| {
            ArgError::new(format!("template `{src}` not found")).hint(format!(
                "looked in {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        self.templates.render_file(&path, self.ctx).map_err(|e| {
            let msg = template::describe(&e);
            match template::file_place(&e) {
                Some((f, line)) => ArgError::new(format!("{}:{line}: {msg}", f.display())),
                None => ArgError::new(format!("{}: {msg}", path.display())),
            }
            .hint("define the variable in the role's defaults.yml, the inventory, or with -e; or use `| default(...)`")
        })
    }

    fn find_path(&self, src: &str) -> Result<PathBuf, ArgError> {
        let p = std::path::Path::new(src);
        let mut dirs = self.role.file_dirs(self.project);
        dirs.push(self.project.root.clone());
        let found = if p.is_absolute() {
            p.exists().then(|| p.to_path_buf())
        } else {
            dirs.iter().map(|d| d.join(src)).find(|c| c.exists())
        };
        found.ok_or_else(|| {
            ArgError::new(format!("`{src}` not found on the controller")).hint(format!(
                "give an absolute path, or put it in one of: {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

fn terr(task: &Task, what: &str, e: &minijinja::Error) -> ExpandError {
    ExpandError {
        place: task.place.clone(),
        message: format!("task `{}`: {what}: {}", task.name, template::describe(e)),
        hint: Some(
            "define the variable in the role's defaults.yml, the inventory, the play's vars or with -e; or use `| default(...)`"
                .into(),
        ),
    }
}

/// The loop items of a task (`None` when it does not loop).
pub fn loop_items(
    task: &Task,
    templates: &Templates,
    ctx: &JValue,
) -> Result<Option<Vec<Value>>, ExpandError> {
    let Some(l) = &task.loop_items else {
        return Ok(None);
    };
    let v = templates
        .render_value(l, ctx)
        .map_err(|e| terr(task, "loop", &e))?;
    match v {
        Value::Array(a) => Ok(Some(a)),
        Value::String(s) if s.starts_with('<') && s.ends_with("at run time>") => {
            Ok(Some(Vec::new()))
        }
        other => Err(ExpandError {
            place: task.place.clone(),
            message: format!("task `{}`: loop must be a list, got {other}", task.name),
            hint: Some("loop: [a, b] or loop: \"{{ a_list_variable }}\"".into()),
        }),
    }
}

/// Expands one task for one host: loop items, `when`, templated arguments, module.
pub fn expand(
    idx: usize,
    task: &Task,
    role: &Role,
    project: &Project,
    templates: &Templates,
    scope: &Scope,
) -> Result<Vec<ItemOutcome>, ExpandError> {
    let scope = scope.for_task(task, templates)?;
    let base = scope.context();
    let items: Vec<(Option<Value>, JValue)> = match loop_items(task, templates, &base)? {
        None => vec![(None, base)],
        Some(items) => items
            .into_iter()
            .map(|it| {
                let ctx = scope.with(&task.loop_var, bosun_model::template::jv(&it));
                (Some(it), ctx)
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(items.len());
    for (item, ctx) in items {
        let label = item.as_ref().map(label_of);
        let mut skip = None;
        for cond in &task.when {
            if !templates
                .test(cond, &ctx)
                .map_err(|e| terr(task, "when", &e))?
            {
                skip = Some(format!("when: {cond}"));
                break;
            }
        }
        if let Some(reason) = skip {
            out.push(ItemOutcome::Skipped { label, reason });
            continue;
        }
        let args = templates
            .render_value(&task.args, &ctx)
            .map_err(|e| terr(task, "arguments", &e))?;
        let ctl = TaskController {
            role,
            project,
            templates,
            ctx: &ctx,
        };
        let module = modules::build(&task.module, args, &ctl).map_err(|e| ExpandError {
            place: task.place.clone(),
            message: format!("task `{}`: {}", task.name, e.message),
            hint: e.hint,
        })?;
        // What the module derived from a secret (a password's verifier) is secret too.
        templates.secrets().add(module.secrets());
        let become_user = match &task.become_user {
            None => None,
            Some(u) => {
                let u = templates
                    .render_str(u, &ctx)
                    .map_err(|e| terr(task, "become_user", &e))?;
                if !bosun_model::site::is_user_name(&u) {
                    return Err(ExpandError {
                        place: task.place.clone(),
                        message: format!(
                            "task `{}`: become_user `{u}` is not a user name",
                            task.name
                        ),
                        hint: Some("become_user: postgres".into()),
                    });
                }
                Some(u)
            }
        };
        let delegate_to = match &task.delegate_to {
            None => None,
            Some(d) => Some(
                templates
                    .render_str(d, &ctx)
                    .map_err(|e| terr(task, "delegate_to", &e))?
                    .trim()
                    .to_string(),
            ),
        };
        // A reboot is waited for over the host's own connection, as root: another host's
        // connection would never see it come back, and another account cannot reboot.
        if module.reboots().is_some() && (delegate_to.is_some() || become_user.is_some()) {
            let what = if delegate_to.is_some() {
                "delegate_to"
            } else {
                "become_user"
            };
            return Err(ExpandError {
                place: task.place.clone(),
                message: format!(
                    "task `{}`: `{}` cannot take `{what}`: a reboot runs as root on the host \
                     it restarts, and bosun waits for that host to come back",
                    task.name, task.module
                ),
                hint: Some(format!(
                    "remove `{what}` (to reboot another host, run the task in a play on it)"
                )),
            });
        }
        out.push(ItemOutcome::Run(Unit {
            task: idx,
            label,
            module,
            become_user,
            delegate_to,
        }));
    }
    Ok(out)
}

/// A short label for a loop item in reports.
pub fn label_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("name")
            .or_else(|| o.get("path"))
            .or_else(|| o.get("dest"))
            .map(label_of)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// The variables a task defines for the host's later tasks: its `register`, and what a
/// `set_fact` sets. A later task that reads one waits for this one.
pub fn defined_names(task: &Task) -> Vec<String> {
    let mut names = modules::set_fact::names(&task.module, &task.args);
    names.extend(task.register.iter().cloned());
    names
}

/// The variables a task reads (top-level names), to order batches around `register`.
pub fn referenced_names(task: &Task, templates: &Templates) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if template::has_syntax(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                if template::has_syntax(k) {
                    out.push(k.clone());
                }
                strings(x, out)
            }),
            _ => {}
        }
    }
    strings(&task.args, &mut texts);
    for v in task.vars.values() {
        strings(v, &mut texts);
    }
    if let Some(l) = &task.loop_items {
        strings(l, &mut texts);
    }
    let mut names = Vec::new();
    for w in task
        .when
        .iter()
        .chain(&modules::expressions(&task.module, &task.args))
    {
        names.extend(templates.expression_names(w));
    }
    for t in texts {
        names.extend(templates.template_names(&t));
    }
    names
}
