//! Composition, resolved at load time: `import_tasks`/`include_tasks`, `import_role`/
//! `include_role`, role dependencies (`roles/NAME/meta.yml`), role parameters
//! (`roles: [{role: x, vars: {...}}]`) and a play's `pre_tasks`/`post_tasks`.
//!
//! Everything is flattened here into one task list per play, so the engine runs plain
//! tasks: an included task keeps its own file:line, its role (for templates, files and
//! handlers) and carries the include's `when`, `tags` and `vars`. Cycles (of files or of
//! roles) are load errors naming the chain, never a stack overflow at run time.

use super::{
    list_roles, load_tasks, parse_tasks, strings, Project, RawTask, Role, Task, Value,
};
use crate::diag::{LoadError, Place};
use crate::text::closest;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Map;
use serde_saphyr::Spanned;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A role named by a play, a dependency or an import, with parameters for its tasks.
#[derive(Debug, Clone)]
pub struct RoleRef {
    pub name: String,
    /// Scoped to the role's tasks: above role defaults, inventory and play vars, below
    /// extra vars.
    pub vars: Map<String, Value>,
    pub place: Place,
}

/// The hint every malformed role reference gets.
const ROLE_REF_FORMS: &str = "write `NAME` or `{role: NAME, vars: {key: value}}`";

impl RoleRef {
    /// `NAME` or `{role: NAME, vars: {...}}` (`name:` is accepted for `role:`).
    fn parse(place: Place, v: &Value) -> Result<RoleRef, LoadError> {
        match v {
            Value::String(s) => Ok(RoleRef {
                name: s.clone(),
                vars: Map::new(),
                place,
            }),
            Value::Object(o) => {
                let mut name = None;
                let mut vars = Map::new();
                for (k, x) in o {
                    match k.as_str() {
                        "role" | "name" => {
                            name = Some(x.as_str().map(str::to_string).ok_or_else(|| {
                                LoadError::new(place.clone(), format!("`{k}` must be a role name"))
                                    .hint(ROLE_REF_FORMS)
                            })?)
                        }
                        "vars" => vars = vars_map(&place, x)?,
                        other => {
                            return Err(LoadError::new(
                                place.clone(),
                                format!("unknown key `{other}` in a role reference"),
                            )
                            .hint(format!(
                                "{ROLE_REF_FORMS}; role parameters go under `vars:`"
                            )))
                        }
                    }
                }
                let name = name.ok_or_else(|| {
                    LoadError::new(place.clone(), "a role reference without `role:`")
                        .hint(ROLE_REF_FORMS)
                })?;
                Ok(RoleRef { name, vars, place })
            }
            _ => Err(LoadError::new(place, "a role reference must be a name or a mapping")
                .hint(ROLE_REF_FORMS)),
        }
    }
}

fn vars_map(place: &Place, v: &Value) -> Result<Map<String, Value>, LoadError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(
            LoadError::new(place.clone(), "`vars` must be a mapping")
                .hint("vars: {port: 5432}"),
        ),
    }
}

/// `roles/NAME/meta.yml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    #[serde(default)]
    dependencies: Vec<Spanned<Value>>,
}

/// A play's tasks and roles once composed.
pub(super) struct Composed {
    pub roles: Vec<String>,
    pub tasks: Vec<Task>,
}

/// Which of the four composition keywords an item of a task list uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Tasks(&'static str),
    Role(&'static str),
}

impl Kind {
    fn of(key: &str) -> Option<Kind> {
        Some(match key {
            "import_tasks" => Kind::Tasks("import_tasks"),
            "include_tasks" => Kind::Tasks("include_tasks"),
            "import_role" => Kind::Role("import_role"),
            "include_role" => Kind::Role("include_role"),
            _ => return None,
        })
    }

    fn keyword(self) -> &'static str {
        match self {
            Kind::Tasks(k) | Kind::Role(k) => k,
        }
    }
}

/// What an include passes on to each task it brings in.
struct Layer {
    when: Vec<String>,
    tags: Vec<String>,
    vars: Map<String, Value>,
}

impl Layer {
    /// The include's conditions come first, its tags add to the task's, and the task's
    /// own (more specific) vars win over the include's.
    fn apply(&self, tasks: &mut [Task]) {
        for t in tasks {
            if !self.when.is_empty() {
                let mut when = self.when.clone();
                when.append(&mut t.when);
                t.when = when;
            }
            for tag in &self.tags {
                if !t.tags.contains(tag) {
                    t.tags.push(tag.clone());
                }
            }
            if !self.vars.is_empty() {
                t.vars = merged(&self.vars, &t.vars);
            }
        }
    }
}

/// `over` on top of `under`.
fn merged(under: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut m = under.clone();
    for (k, v) in over {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// Loads roles on demand, once each, and expands task lists.
pub(super) struct Loader<'a> {
    project: &'a Project,
    modules: &'a [&'a str],
    roles: IndexMap<String, Role>,
    errors: Vec<LoadError>,
    /// Roles that failed to load (their errors are reported once).
    broken: BTreeSet<String>,
    /// Roles being loaded, outermost first: a dependency or import of one of them is a
    /// cycle.
    stack: Vec<String>,
}

impl<'a> Loader<'a> {
    pub fn new(project: &'a Project, modules: &'a [&'a str]) -> Self {
        Loader {
            project,
            modules,
            roles: IndexMap::new(),
            errors: Vec::new(),
            broken: BTreeSet::new(),
            stack: Vec::new(),
        }
    }

    /// The roles loaded and every error found.
    pub fn finish(self) -> (IndexMap<String, Role>, Vec<LoadError>) {
        (self.roles, self.errors)
    }

    /// The role of `pre_tasks`/`post_tasks`: the site file's directory.
    pub fn site_role(&self, site: &Path) -> Role {
        let dir = site.parent().map(Path::to_path_buf).unwrap_or_default();
        Role {
            name: String::new(),
            defaults_file: dir.join("defaults.yml"),
            dir,
            defaults: Map::new(),
            tasks: Vec::new(),
            handlers: Vec::new(),
            deps: Vec::new(),
        }
    }

    /// One play: its role references parsed and loaded, then its tasks in run order.
    pub fn play(
        &mut self,
        site: &Path,
        refs: &[Spanned<Value>],
        pre: Vec<RawTask>,
        post: Vec<RawTask>,
    ) -> Composed {
        let base = site.parent().map(Path::to_path_buf).unwrap_or_default();
        let pre = self.site_tasks(site, &base, pre, "pre_tasks");
        let mut uses = Vec::new();
        for r in refs {
            match RoleRef::parse(Place::at(site, &r.referenced), &r.value) {
                Ok(u) => {
                    if self.role(&u) {
                        uses.push(u);
                    }
                }
                Err(e) => self.errors.push(e),
            }
        }
        let post = self.site_tasks(site, &base, post, "post_tasks");
        let mut out = Composed {
            roles: Vec::new(),
            tasks: pre,
        };
        // A role (with the same parameters) runs once per play, however many roles
        // depend on it: Ansible's rule.
        let mut seen = Vec::new();
        for u in &uses {
            self.expand_use(u, Some(&mut seen), &mut out);
        }
        for t in post.iter().chain(out.tasks.iter()) {
            if !t.role.is_empty() && !out.roles.contains(&t.role) {
                out.roles.push(t.role.clone());
            }
        }
        out.tasks.extend(post);
        out
    }

    /// `pre_tasks`/`post_tasks`: tasks of the site file, paths relative to its directory.
    fn site_tasks(&mut self, site: &Path, base: &Path, raw: Vec<RawTask>, what: &str) -> Vec<Task> {
        let tasks = self.task_list(site, "", base, raw, &mut vec![site.to_path_buf()]);
        for t in &tasks {
            if t.role.is_empty() && !t.notify.is_empty() {
                self.errors.push(
                    LoadError::new(
                        t.place.clone(),
                        format!("a task of `{what}` cannot notify handlers (they belong to roles)"),
                    )
                    .hint("move the task into a role, or run the step as a task of its own"),
                );
            }
        }
        tasks
    }

    /// Appends the tasks of one use of a role: its dependencies' first, then its own, with
    /// the use's `vars` under each task's own. `seen` (the play's uses so far) skips a use
    /// already made with the same parameters; imports pass `None` and always expand.
    fn expand_use(
        &self,
        u: &RoleRef,
        mut seen: Option<&mut Vec<(String, Map<String, Value>)>>,
        out: &mut Composed,
    ) {
        let Some(role) = self.roles.get(&u.name) else {
            return;
        };
        if let Some(seen) = seen.as_deref_mut() {
            let key = (u.name.clone(), u.vars.clone());
            if seen.contains(&key) {
                return;
            }
            seen.push(key);
        }
        for d in &role.deps {
            self.expand_use(d, seen.as_deref_mut(), out);
        }
        if !out.roles.contains(&role.name) {
            out.roles.push(role.name.clone());
        }
        let start = out.tasks.len();
        out.tasks.extend(role.tasks.iter().cloned());
        Layer {
            when: Vec::new(),
            tags: Vec::new(),
            vars: u.vars.clone(),
        }
        .apply(&mut out.tasks[start..]);
    }

    /// Loads `r.name` (its dependencies and the roles it imports first) unless it is
    /// loaded already; false when it cannot be used (the errors are recorded).
    fn role(&mut self, r: &RoleRef) -> bool {
        if self.roles.contains_key(&r.name) {
            return true;
        }
        if self.broken.contains(&r.name) {
            return false;
        }
        if let Some(i) = self.stack.iter().position(|n| *n == r.name) {
            let chain: Vec<&str> = self.stack[i..]
                .iter()
                .map(String::as_str)
                .chain([r.name.as_str()])
                .collect();
            self.errors.push(
                LoadError::new(
                    r.place.clone(),
                    format!("role cycle: {}", chain.join(" → ")),
                )
                .hint("a role cannot depend on or import itself, directly or through others"),
            );
            return false;
        }
        let name = r.name.clone();
        let dir = self.project.roles_dir().join(&name);
        let tasks_file = dir.join("tasks.yml");
        if !tasks_file.is_file() {
            self.errors.push(self.missing_role(r));
            self.broken.insert(name);
            return false;
        }
        let before = self.errors.len();
        self.stack.push(name.clone());
        let defaults_file = dir.join("defaults.yml");
        let defaults = if defaults_file.is_file() {
            match crate::yaml::load::<Option<Map<String, Value>>>(&defaults_file) {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => {
                    self.errors.push(e);
                    Map::new()
                }
            }
        } else {
            Map::new()
        };
        let deps = self.meta(&dir.join("meta.yml"));
        for d in &deps {
            self.role(d);
        }
        let tasks = self.task_file(&tasks_file, &name, &dir, &mut vec![tasks_file.clone()]);
        let handlers_file = dir.join("handlers.yml");
        let handlers = if handlers_file.is_file() {
            load_tasks(&handlers_file, &name, true, self.modules, &mut self.errors)
        } else {
            Vec::new()
        };
        // A notify must name a handler of the task's role, or a topic one listens to
        // (checked here, not at run time). Imported roles' tasks were checked with them.
        for t in tasks.iter().filter(|t| t.role == name) {
            for n in &t.notify {
                if !handlers.iter().any(|h| h.answers(n)) {
                    let names: Vec<&str> = handlers
                        .iter()
                        .flat_map(|h| std::iter::once(&h.name).chain(&h.listen))
                        .map(String::as_str)
                        .collect();
                    let mut e = LoadError::new(
                        t.place.clone(),
                        format!("notify names unknown handler `{n}`"),
                    );
                    e = match closest(n, &names) {
                        Some(s) => e.hint(format!("did you mean `{s}`?")),
                        None => e.hint(format!("define it in {}", handlers_file.display())),
                    };
                    self.errors.push(e);
                }
            }
        }
        self.stack.pop();
        if self.errors.len() > before {
            self.broken.insert(name);
            return false;
        }
        self.roles.insert(
            name.clone(),
            Role {
                name,
                dir,
                defaults,
                defaults_file,
                tasks,
                handlers,
                deps,
            },
        );
        true
    }

    fn missing_role(&self, r: &RoleRef) -> LoadError {
        let known = list_roles(self.project);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let e = LoadError::new(
            r.place.clone(),
            format!(
                "role `{}` not found in {}",
                r.name,
                self.project.roles_dir().display()
            ),
        );
        match closest(&r.name, &known) {
            Some(s) => e.hint(format!("did you mean `{s}`?")),
            None => e.hint(format!(
                "create {}/{}/tasks.yml",
                self.project.roles_dir().display(),
                r.name
            )),
        }
    }

    /// A role's `dependencies:`, when it has a meta.yml.
    fn meta(&mut self, file: &Path) -> Vec<RoleRef> {
        if !file.is_file() {
            return Vec::new();
        }
        let raw: Option<RawMeta> = match crate::yaml::load(file) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(e.hint("meta.yml takes `dependencies: [NAME, {role: NAME, vars: {...}}]`"));
                return Vec::new();
            }
        };
        let mut deps = Vec::new();
        for d in raw.map(|m| m.dependencies).unwrap_or_default() {
            match RoleRef::parse(Place::at(file, &d.referenced), &d.value) {
                Ok(r) => deps.push(r),
                Err(e) => self.errors.push(e),
            }
        }
        deps
    }

    /// The tasks of `file` with its includes expanded. `files` is the chain of files
    /// including it (a file that includes itself, however indirectly, is a cycle).
    fn task_file(
        &mut self,
        file: &Path,
        role: &str,
        base: &Path,
        files: &mut Vec<PathBuf>,
    ) -> Vec<Task> {
        let raw: Option<Vec<RawTask>> = match crate::yaml::load(file) {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return Vec::new();
            }
        };
        self.task_list(file, role, base, raw.unwrap_or_default(), files)
    }

    /// Parses a task list, expanding each include or role import where it stands.
    fn task_list(
        &mut self,
        file: &Path,
        role: &str,
        base: &Path,
        raw: Vec<RawTask>,
        files: &mut Vec<PathBuf>,
    ) -> Vec<Task> {
        let mut out = Vec::new();
        let mut plain = Vec::new();
        for rt in raw {
            let kind = rt.value.keys().find_map(|k| Kind::of(&k.value));
            let Some(kind) = kind else {
                plain.push(rt);
                continue;
            };
            let before = std::mem::take(&mut plain);
            out.extend(parse_tasks(
                file,
                role,
                false,
                before,
                self.modules,
                &mut self.errors,
            ));
            match self.include(file, role, base, kind, rt, files) {
                Ok(tasks) => out.extend(tasks),
                Err(e) => self.errors.push(e),
            }
        }
        out.extend(parse_tasks(
            file,
            role,
            false,
            plain,
            self.modules,
            &mut self.errors,
        ));
        out
    }

    /// One `import_tasks`/`include_tasks`/`import_role`/`include_role` item.
    fn include(
        &mut self,
        file: &Path,
        role: &str,
        base: &Path,
        kind: Kind,
        rt: RawTask,
        files: &mut Vec<PathBuf>,
    ) -> Result<Vec<Task>, LoadError> {
        let place = Place::at(file, &rt.referenced);
        let kw = kind.keyword();
        let mut target = None;
        let mut layer = Layer {
            when: Vec::new(),
            tags: Vec::new(),
            vars: Map::new(),
        };
        for (k, v) in rt.value {
            let kplace = Place::at(file, &k.referenced);
            let bad = |what: &str| {
                LoadError::new(kplace.clone(), format!("`{}` must be {what}", k.value))
            };
            match k.value.as_str() {
                key if Kind::of(key).is_some() => {
                    if target.is_some() {
                        return Err(LoadError::new(
                            kplace,
                            format!("`{kw}` and `{key}` in one item"),
                        )
                        .hint("split them into two items"));
                    }
                    target = Some((v.value, kplace));
                }
                "name" => {
                    v.value.as_str().ok_or_else(|| bad("a string"))?;
                }
                "when" => {
                    layer.when = strings(&v.value)
                        .ok_or_else(|| bad("an expression or a list of them"))?
                }
                "tags" => {
                    layer.tags = strings(&v.value).ok_or_else(|| bad("a tag or a list of tags"))?
                }
                "vars" => layer.vars = vars_map(&kplace, &v.value)?,
                "loop" | "loop_var" | "loop_control" => {
                    return Err(LoadError::new(
                        kplace,
                        format!("`{}` on `{kw}` is not supported yet", k.value),
                    )
                    .hint("put the loop on the tasks inside the included file"))
                }
                other => {
                    return Err(LoadError::new(
                        kplace,
                        format!("`{other}` is not supported on `{kw}`"),
                    )
                    .hint(format!("`{kw}` takes name, when, tags and vars")))
                }
            }
        }
        let Some((target, tplace)) = target else {
            return Err(LoadError::new(place, format!("`{kw}` without a target")));
        };
        let mut tasks = match kind {
            Kind::Tasks(_) => self.include_tasks(role, base, &target, tplace, files)?,
            Kind::Role(_) => self.import_role(&target, tplace, &mut layer)?,
        };
        layer.apply(&mut tasks);
        Ok(tasks)
    }

    fn include_tasks(
        &mut self,
        role: &str,
        base: &Path,
        target: &Value,
        place: Place,
        files: &mut Vec<PathBuf>,
    ) -> Result<Vec<Task>, LoadError> {
        let rel = match target {
            Value::String(s) => s.as_str(),
            Value::Object(o) if o.len() == 1 && o.get("file").is_some_and(Value::is_string) => {
                o["file"].as_str().unwrap_or_default()
            }
            _ => {
                return Err(LoadError::new(place, "the included file must be a path")
                    .hint("include_tasks: install.yml (relative to the role's directory)"))
            }
        };
        let path = base.join(rel);
        if !path.is_file() {
            return Err(LoadError::new(
                place,
                format!("included file {} not found", path.display()),
            )
            .hint(format!("paths are relative to {}", base.display())));
        }
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let keys: Vec<PathBuf> = files
            .iter()
            .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
            .collect();
        if let Some(i) = keys.iter().position(|f| *f == key) {
            let chain: Vec<String> = files[i..]
                .iter()
                .chain([&path])
                .map(|f| f.display().to_string())
                .collect();
            return Err(LoadError::new(
                place,
                format!("include cycle: {}", chain.join(" → ")),
            )
            .hint("a file cannot include itself, directly or through others"));
        }
        files.push(path.clone());
        let tasks = self.task_file(&path, role, base, files);
        files.pop();
        Ok(tasks)
    }

    /// `import_role: NAME` or `{name: NAME, vars: {...}}`: the role's tasks (its
    /// dependencies' first) at this point, its vars added to the item's.
    fn import_role(
        &mut self,
        target: &Value,
        place: Place,
        layer: &mut Layer,
    ) -> Result<Vec<Task>, LoadError> {
        let r = RoleRef::parse(place, target)?;
        // The item's `vars:` and the reference's: the reference's are nearer the role.
        layer.vars = merged(&layer.vars, &r.vars);
        if !self.role(&r) {
            // Its errors (or the cycle) were recorded.
            return Ok(Vec::new());
        }
        let mut out = Composed {
            roles: Vec::new(),
            tasks: Vec::new(),
        };
        let plain = RoleRef {
            vars: Map::new(),
            ..r
        };
        self.expand_use(&plain, None, &mut out);
        Ok(out.tasks)
    }
}
