//! Composition, resolved at load time: `import_tasks`/`include_tasks`, `import_role`/
//! `include_role`, role dependencies (`roles/NAME/meta.yml`), role parameters
//! (`roles: [{role: x, vars: {...}}]`) and a play's `pre_tasks`/`post_tasks`.
//!
//! Everything is flattened here into one task list per play, so the engine runs plain
//! tasks: an included task keeps its own file:line, its role (for templates, files and
//! handlers) and carries the include's `when`, `tags` and `vars`. Cycles (of files or of
//! roles) are load errors naming the chain, never a stack overflow at run time.

use super::{
    block, list_roles, load_tasks, parse_tasks, strings, Project, RawTask, Role, Task, Value,
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
            _ => Err(
                LoadError::new(place, "a role reference must be a name or a mapping")
                    .hint(ROLE_REF_FORMS),
            ),
        }
    }
}

fn vars_map(place: &Place, v: &Value) -> Result<Map<String, Value>, LoadError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => {
            Err(LoadError::new(place.clone(), "`vars` must be a mapping")
                .hint("vars: {port: 5432}"))
        }
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
        for t in out.tasks.iter().chain(post.iter()) {
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
        // Each notify names a handler of a role of the play: checked per play, by
        // [`super::notify::check`].
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
                self.errors.push(
                    e.hint("meta.yml takes `dependencies: [NAME, {role: NAME, vars: {...}}]`"),
                );
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
        let modules = self.modules;
        let mut errors = Vec::new();
        let mut includes = BlockIncludes {
            loader: self,
            file,
            role,
            base,
            files,
        };
        // Includes at the top of the list and inside blocks alike go through `includes`.
        let out = parse_tasks(file, role, false, raw, modules, &mut errors, &mut includes);
        self.errors.extend(errors);
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
                    layer.when =
                        strings(&v.value).ok_or_else(|| bad("an expression or a list of them"))?
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
            return Err(
                LoadError::new(place, format!("include cycle: {}", chain.join(" → ")))
                    .hint("a file cannot include itself, directly or through others"),
            );
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

/// Expands the includes of one task list where they stand, at its top or inside its
/// blocks (which then pass their `when`, `tags`, … down to the included tasks).
struct BlockIncludes<'c, 'a, 'f> {
    loader: &'c mut Loader<'a>,
    file: &'f Path,
    role: &'f str,
    base: &'f Path,
    files: &'f mut Vec<PathBuf>,
}

impl block::Includes for BlockIncludes<'_, '_, '_> {
    fn is_include(&self, rt: &RawTask) -> bool {
        rt.value.keys().any(|k| Kind::of(&k.value).is_some())
    }

    fn expand(&mut self, rt: RawTask, errors: &mut Vec<LoadError>) -> Vec<Task> {
        let Some(kind) = rt.value.keys().find_map(|k| Kind::of(&k.value)) else {
            return Vec::new();
        };
        let (file, role, base) = (self.file, self.role, self.base);
        self.loader
            .include(file, role, base, kind, rt, self.files)
            .unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::LoadErrors;
    use crate::site::{Section, Site};
    use std::path::PathBuf;

    const MODULES: &[&str] = &["command", "copy", "file"];

    /// A project in a fresh directory: `files` are (path, text) under it; the site is
    /// `site.yml` at its root.
    struct Project(PathBuf);

    impl Project {
        fn new(name: &str, files: &[(&str, &str)]) -> Project {
            let dir =
                std::env::temp_dir().join(format!("bosun-compose-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, text) in files {
                let p = dir.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            }
            Project(dir)
        }

        fn load(&self) -> Result<Site, LoadErrors> {
            Site::load(&self.0.join("site.yml"), MODULES)
        }

        fn errors(&self) -> Vec<String> {
            match self.load() {
                Ok(_) => panic!("expected load errors"),
                Err(e) => e.0.iter().map(|e| e.render()).collect(),
            }
        }
    }

    impl Drop for Project {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(site: &Site) -> Vec<String> {
        site.plays[0].tasks.iter().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn includes_expand_in_place_with_when_tags_vars_and_their_own_lines() {
        let p = Project::new(
            "include",
            &[
                ("site.yml", "- hosts: all\n  roles: [app]\n"),
                (
                    "roles/app/tasks.yml",
                    "- name: first\n  command: \"true\"\n- import_tasks: tasks/setup.yml\n  when: x == 1\n  tags: [setup]\n  vars: {port: 80}\n- name: last\n  command: \"true\"\n",
                ),
                (
                    "roles/app/tasks/setup.yml",
                    "- name: a\n  command: \"true\"\n  when: y == 2\n- include_tasks: tasks/more.yml\n",
                ),
                ("roles/app/tasks/more.yml", "\n- name: b\n  command: \"true\"\n  vars_ignored: 1\n"),
            ],
        );
        // `vars_ignored` is not a keyword: the included file's own error, at its line.
        let e = p.errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("tasks/more.yml:4:3"), "{}", e[0]);

        std::fs::write(
            p.0.join("roles/app/tasks/more.yml"),
            "\n- name: b\n  command: \"true\"\n",
        )
        .unwrap();
        let site = p.load().unwrap();
        assert_eq!(names(&site), ["first", "a", "b", "last"]);
        let t = &site.plays[0].tasks;
        assert_eq!(t[1].when, ["x == 1", "y == 2"]);
        assert_eq!(t[2].when, ["x == 1"]);
        assert_eq!(t[2].tags, ["setup"]);
        assert_eq!(t[2].vars["port"], 80);
        assert!(t[3].when.is_empty() && t[3].vars.is_empty());
        assert!(t[2].place.file.ends_with("roles/app/tasks/more.yml"));
        assert_eq!(t[2].place.line, 2);
        assert_eq!(t[2].role, "app");
    }

    #[test]
    fn an_include_inside_a_block_expands_there_under_the_block() {
        let p = Project::new(
            "in-block",
            &[
                ("site.yml", "- hosts: all\n  roles: [app]\n"),
                (
                    "roles/app/tasks.yml",
                    "- name: guarded\n  when: x == 1\n  become_user: app\n  block:\n    - include_tasks: steps.yml\n      tags: [steps]\n  rescue:\n    - import_tasks: undo.yml\n",
                ),
                (
                    "roles/app/steps.yml",
                    "- name: a\n  command: \"true\"\n- name: inner\n  block:\n    - name: b\n      command: \"true\"\n",
                ),
                ("roles/app/undo.yml", "- name: undo\n  command: \"true\"\n"),
            ],
        );
        let site = p.load().unwrap();
        assert_eq!(names(&site), ["a", "b", "undo"]);
        let t = &site.plays[0].tasks;
        let chain = |i: usize| -> Vec<(String, Section)> {
            t[i].blocks
                .iter()
                .map(|b| (b.name.clone(), b.section))
                .collect()
        };
        assert_eq!(chain(0), [("guarded".to_string(), Section::Main)]);
        // The included file's own block sits inside the including one.
        assert_eq!(
            chain(1),
            [
                ("guarded".to_string(), Section::Main),
                ("inner".to_string(), Section::Main)
            ]
        );
        assert_eq!(chain(2), [("guarded".to_string(), Section::Rescue)]);
        for task in t {
            assert_eq!(task.when, ["x == 1"], "{}", task.name);
            assert_eq!(task.become_user.as_deref(), Some("app"), "{}", task.name);
        }
        assert_eq!(t[0].tags, ["steps"]);
        assert!(t[2].tags.is_empty());
        assert!(t[1].place.file.ends_with("roles/app/steps.yml"));

        // A bad include inside a block is an error at its own line.
        std::fs::write(
            p.0.join("roles/app/tasks.yml"),
            "- block:\n    - include_tasks: missing.yml\n",
        )
        .unwrap();
        let e = p.errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("roles/app/tasks.yml:2:"), "{}", e[0]);
    }

    #[test]
    fn an_include_cycle_is_an_error_naming_the_chain() {
        let p = Project::new(
            "cycle",
            &[
                ("site.yml", "- hosts: all\n  roles: [app]\n"),
                ("roles/app/tasks.yml", "- include_tasks: a.yml\n"),
                (
                    "roles/app/a.yml",
                    "- name: a\n  command: \"true\"\n- import_tasks: b.yml\n",
                ),
                ("roles/app/b.yml", "- import_tasks: a.yml\n"),
            ],
        );
        let e = p.errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("roles/app/b.yml:1:3"), "{}", e[0]);
        assert!(e[0].contains("include cycle:"), "{}", e[0]);
        assert!(
            e[0].contains("a.yml → ")
                && e[0].contains("b.yml → ")
                && e[0].ends_with(
                    "a.yml\n  hint: a file cannot include itself, directly or through others"
                ),
            "{}",
            e[0]
        );
    }

    #[test]
    fn bad_includes_are_errors_at_their_line() {
        let p = Project::new(
            "badinc",
            &[
                ("site.yml", "- hosts: all\n  roles: [app]\n"),
                (
                    "roles/app/tasks.yml",
                    "- include_tasks: nope.yml\n- include_tasks: x.yml\n  loop: [1, 2]\n- import_tasks: x.yml\n  register: r\n- import_tasks: x.yml\n  vars: [1]\n",
                ),
                ("roles/app/x.yml", "- name: x\n  command: \"true\"\n"),
            ],
        );
        let e = p.errors();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].contains("tasks.yml:1:") && e[0].contains("nope.yml not found"),
            "{}",
            e[0]
        );
        assert!(
            e[1].contains("tasks.yml:3:3") && e[1].contains("not supported yet"),
            "{}",
            e[1]
        );
        assert!(
            e[2].contains("tasks.yml:5:3") && e[2].contains("`register` is not supported"),
            "{}",
            e[2]
        );
        assert!(
            e[3].contains("tasks.yml:7:3") && e[3].contains("`vars` must be a mapping"),
            "{}",
            e[3]
        );
    }

    #[test]
    fn import_role_inlines_its_tasks_with_its_vars_role_and_dependencies() {
        let p = Project::new(
            "import",
            &[
                ("site.yml", "- hosts: all\n  roles: [app]\n"),
                (
                    "roles/app/tasks.yml",
                    "- name: before\n  command: \"true\"\n- import_role: {name: db, vars: {port: 5432}}\n  when: use_db\n- name: after\n  command: \"true\"\n",
                ),
                ("roles/db/tasks.yml", "- name: db task\n  command: \"true\"\n  notify: restart db\n"),
                ("roles/db/handlers.yml", "- name: restart db\n  command: \"true\"\n"),
                ("roles/db/defaults.yml", "port: 1\n"),
                ("roles/db/meta.yml", "dependencies: [base]\n"),
                ("roles/base/tasks.yml", "- name: base task\n  command: \"true\"\n"),
            ],
        );
        let site = p.load().unwrap();
        assert_eq!(names(&site), ["before", "base task", "db task", "after"]);
        let t = &site.plays[0].tasks;
        assert_eq!(t[2].role, "db");
        assert_eq!(t[2].vars["port"], 5432);
        assert_eq!(t[2].when, ["use_db"]);
        assert_eq!(t[1].when, ["use_db"]);
        // db's handlers and defaults join the play.
        assert_eq!(site.plays[0].roles, ["app", "base", "db"]);
        assert_eq!(site.roles["db"].handlers[0].name, "restart db");
    }

    #[test]
    fn dependencies_run_first_once_per_play_unless_their_vars_differ() {
        let p = Project::new(
            "deps",
            &[
                (
                    "site.yml",
                    "- hosts: all\n  roles: [base, web, {role: api, vars: {name: v2}}]\n",
                ),
                ("roles/base/tasks.yml", "- name: base\n  command: \"true\"\n"),
                ("roles/web/tasks.yml", "- name: web\n  command: \"true\"\n"),
                (
                    "roles/web/meta.yml",
                    "dependencies:\n  - base\n  - {role: common, vars: {who: web}}\n",
                ),
                ("roles/api/tasks.yml", "- name: api\n  command: \"true\"\n"),
                (
                    "roles/api/meta.yml",
                    "dependencies: [base, {role: common, vars: {who: api}}, {role: common, vars: {who: api}}]\n",
                ),
                ("roles/common/tasks.yml", "- name: common\n  command: \"true\"\n"),
            ],
        );
        let site = p.load().unwrap();
        assert_eq!(names(&site), ["base", "common", "web", "common", "api"]);
        let t = &site.plays[0].tasks;
        assert_eq!(t[1].vars["who"], "web");
        assert_eq!(t[3].vars["who"], "api");
        assert_eq!(t[4].vars["name"], "v2");
        assert!(t[0].vars.is_empty());
    }

    #[test]
    fn a_dependency_cycle_is_an_error_at_the_meta_line() {
        let p = Project::new(
            "depcycle",
            &[
                ("site.yml", "- hosts: all\n  roles: [a]\n"),
                ("roles/a/tasks.yml", "- name: a\n  command: \"true\"\n"),
                ("roles/a/meta.yml", "dependencies:\n  - b\n"),
                ("roles/b/tasks.yml", "- import_role: {name: a}\n"),
            ],
        );
        let e = p.errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("roles/b/tasks.yml:1:"), "{}", e[0]);
        assert!(e[0].contains("role cycle: a → b → a"), "{}", e[0]);

        std::fs::write(
            p.0.join("roles/b/tasks.yml"),
            "- name: b\n  command: \"true\"\n",
        )
        .unwrap();
        std::fs::write(p.0.join("roles/b/meta.yml"), "dependencies: [a]\n").unwrap();
        let e = p.errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("roles/b/meta.yml:1:") && e[0].contains("a → b → a"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn bad_role_references_are_errors_at_their_line() {
        let p = Project::new(
            "refs",
            &[
                (
                    "site.yml",
                    "- hosts: all\n  roles:\n    - bse\n    - {role: base, vars: [1]}\n    - {role: base, when: x}\n    - {vars: {}}\n    - base\n",
                ),
                ("roles/base/tasks.yml", "- name: base\n  command: \"true\"\n"),
                ("roles/base/meta.yml", "depends: [x]\n"),
            ],
        );
        let e = p.errors();
        let all = e.join("\n");
        assert!(
            all.contains("site.yml:3:")
                && all.contains("role `bse` not found")
                && all.contains("did you mean `base`?"),
            "{all}"
        );
        assert!(
            all.contains("site.yml:4:") && all.contains("`vars` must be a mapping"),
            "{all}"
        );
        assert!(
            all.contains("site.yml:5:") && all.contains("unknown key `when` in a role reference"),
            "{all}"
        );
        assert!(
            all.contains("site.yml:6:") && all.contains("without `role:`"),
            "{all}"
        );
        assert!(
            all.contains("meta.yml:1:") && all.contains("depends"),
            "{all}"
        );
    }

    #[test]
    fn pre_and_post_tasks_wrap_the_roles_and_resolve_against_the_site_dir() {
        let p = Project::new(
            "prepost",
            &[
                (
                    "site.yml",
                    "- hosts: all\n  pre_tasks:\n    - name: pre\n      command: \"true\"\n    - include_tasks: extra/post.yml\n  roles: [base]\n  post_tasks:\n    - name: post\n      command: \"true\"\n",
                ),
                ("extra/post.yml", "- name: included pre\n  command: \"true\"\n"),
                ("roles/base/tasks.yml", "- name: base\n  command: \"true\"\n"),
            ],
        );
        let site = p.load().unwrap();
        assert_eq!(names(&site), ["pre", "included pre", "base", "post"]);
        let t = &site.plays[0].tasks;
        assert_eq!(t[0].role, "");
        assert_eq!(site.role_of(&t[0]).unwrap().dir, p.0);
        assert_eq!(site.role_of(&t[2]).unwrap().name, "base");
        assert_eq!(site.plays[0].roles, ["base"]);

        std::fs::write(
            p.0.join("site.yml"),
            "- hosts: all\n  pre_tasks:\n    - name: pre\n      command: \"true\"\n      notify: x\n",
        )
        .unwrap();
        let e = p.errors();
        assert!(
            e[0].contains("site.yml:3:") && e[0].contains("cannot notify"),
            "{e:?}"
        );
    }
}
