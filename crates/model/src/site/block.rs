//! `block` / `rescue` / `always`, and `meta: flush_handlers`.
//!
//! ```yaml
//! - name: install the app
//!   when: app_enabled
//!   tags: [app]
//!   block:
//!     - apt: {name: [app]}
//!   rescue:
//!     - debug: {msg: "{{ ansible_failed_task.name }} failed"}
//!   always:
//!     - file: {path: /tmp/lock, state: absent}
//! ```
//!
//! Blocks are flattened when the file is loaded: each task keeps its own place in the
//! file and carries its chain of enclosing blocks ([`BlockRef`], outermost first), with the
//! block's `when` prepended to its own (a conjunction), the block's tags added to its own,
//! and the block's `ignore_errors`. The engine keeps one flat list of tasks and finds the
//! sections of each block from the chains, so batching probes across tasks is unchanged.

use super::{parse_task, strings, Task, KEYWORDS};
use crate::diag::{LoadError, Place};
use crate::text::closest;
use indexmap::IndexMap;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The part of a block a task is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// `block:` — runs first; a failure here runs `rescue`.
    Main,
    /// `rescue:` — runs only when a task of the block's main part failed.
    Rescue,
    /// `always:` — runs after the rest of the block, whether it failed or not.
    Always,
}

/// One enclosing block of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    /// Unique within a load (several files of a role may each have blocks).
    pub id: u64,
    pub section: Section,
    /// The block's `name:` ("" when it has none).
    pub name: String,
}

/// The keys that open a section.
const SECTIONS: &[&str] = &["block", "rescue", "always"];

/// What a block may say besides its sections.
const BLOCK_KEYWORDS: &[&str] = &[
    "name",
    "when",
    "tags",
    "ignore_errors",
    "become_user",
    "delegate_to",
];

/// What `meta:` may ask for.
pub(super) const META_ACTIONS: &[&str] = &["flush_handlers"];

/// Block ids, unique for the process: a role's tasks may come from several files.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A task (or block) as written: its keys with their places; a section's tasks are kept
/// with theirs, so an error in a nested task names its own line.
#[derive(Debug, Default)]
pub(super) struct RawFields {
    fields: IndexMap<Spanned<String>, Spanned<Value>>,
    sections: Vec<(Spanned<String>, RawSection)>,
}

pub(super) type RawTask = Spanned<RawFields>;

/// A section's tasks as written (`null` when the key has no value).
type RawSection = Spanned<Option<Vec<RawTask>>>;

impl RawFields {
    /// The keys besides sections (an include's keyword is one of them).
    pub(super) fn keys(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.fields.keys()
    }
}

impl IntoIterator for RawFields {
    type Item = (Spanned<String>, Spanned<Value>);
    type IntoIter = indexmap::map::IntoIter<Spanned<String>, Spanned<Value>>;

    /// A plain task's keys (a task with sections is a block and never gets here).
    fn into_iter(self) -> Self::IntoIter {
        self.fields.into_iter()
    }
}

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFields;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a task: a module with its arguments, and task keywords")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawFields, A::Error> {
                let mut out = RawFields::default();
                // The key decides how its value is read: sections hold tasks (with places),
                // everything else is plain data.
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    if SECTIONS.contains(&k.value.as_str()) {
                        let v = m.next_value::<RawSection>()?;
                        out.sections.push((k, v));
                    } else {
                        let v = m.next_value::<Spanned<Value>>()?;
                        out.fields.insert(k, v);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// What the enclosing blocks give each task inside them.
#[derive(Debug, Clone, Default)]
pub(super) struct Inherited {
    when: Vec<String>,
    tags: Vec<String>,
    ignore_errors: bool,
    /// The innermost block's that says one; a task's own wins.
    become_user: Option<String>,
    delegate_to: Option<String>,
    blocks: Vec<BlockRef>,
}

impl Inherited {
    fn apply(&self, t: &mut Task) {
        if !self.when.is_empty() {
            let own = std::mem::take(&mut t.when);
            t.when = self.when.iter().cloned().chain(own).collect();
        }
        for tag in &self.tags {
            if !t.tags.contains(tag) {
                t.tags.push(tag.clone());
            }
        }
        t.ignore_errors |= self.ignore_errors;
        if t.become_user.is_none() {
            t.become_user.clone_from(&self.become_user);
        }
        if t.delegate_to.is_none() {
            t.delegate_to.clone_from(&self.delegate_to);
        }
        // An included task may sit in blocks of its own file: those are inside these.
        let own = std::mem::take(&mut t.blocks);
        t.blocks = self.blocks.iter().cloned().chain(own).collect();
    }
}

/// Expands an include item (`include_tasks`, `import_role`, …) met inside a block, where
/// the composer that knows the role's files is not at hand.
pub(super) trait Includes {
    /// Whether `rt` is an include rather than an ordinary task.
    fn is_include(&self, rt: &RawTask) -> bool;
    /// The tasks the include `rt` stands for (problems go to `errors`).
    fn expand(&mut self, rt: RawTask, errors: &mut Vec<LoadError>) -> Vec<Task>;
}

/// For task lists without includes (handlers): every item is an ordinary task.
pub(super) struct NoIncludes;

impl Includes for NoIncludes {
    fn is_include(&self, _: &RawTask) -> bool {
        false
    }
    fn expand(&mut self, _: RawTask, _: &mut Vec<LoadError>) -> Vec<Task> {
        Vec::new()
    }
}

/// Appends the task `rt` (or every task of the block it is, or of the include it is) to
/// `out`, flattened; problems go to `errors`, each at its own line.
#[allow(clippy::too_many_arguments)]
pub(super) fn flatten(
    file: &Path,
    role: &str,
    rt: RawTask,
    modules: &[&str],
    inh: &Inherited,
    out: &mut Vec<Task>,
    errors: &mut Vec<LoadError>,
    includes: &mut dyn Includes,
) {
    let place = Place::at(file, &rt.referenced);
    let has_block = rt.value.sections.iter().any(|(k, _)| k.value == "block");
    if !has_block {
        if let Some((k, _)) = rt.value.sections.first() {
            errors.push(
                LoadError::new(
                    Place::at(file, &k.referenced),
                    format!("`{}` without `block`", k.value),
                )
                .hint(format!(
                    "put the tasks it handles under `block:` in the same item, with `{}:` beside it",
                    k.value
                )),
            );
            return;
        }
        if includes.is_include(&rt) {
            for mut t in includes.expand(rt, errors) {
                inh.apply(&mut t);
                out.push(t);
            }
            return;
        }
        match parse_task(file, role, rt, modules) {
            Ok(mut t) => {
                inh.apply(&mut t);
                out.push(t);
            }
            Err(e) => errors.push(e),
        }
        return;
    }
    let RawFields { fields, sections } = rt.value;
    let mut name = String::new();
    let mut inner = inh.clone();
    for (k, v) in fields {
        let kplace = Place::at(file, &k.referenced);
        let key = k.value.as_str();
        let bad = |what: &str| LoadError::new(kplace.clone(), format!("`{key}` must be {what}"));
        let parsed = match key {
            "name" => v
                .value
                .as_str()
                .map(|s| name = s.to_string())
                .ok_or_else(|| bad("a string")),
            "when" => strings(&v.value)
                .map(|w| inner.when.extend(w))
                .ok_or_else(|| bad("an expression or a list of them")),
            "tags" => strings(&v.value)
                .map(|ts| {
                    for t in ts {
                        if !inner.tags.contains(&t) {
                            inner.tags.push(t);
                        }
                    }
                })
                .ok_or_else(|| bad("a tag or a list of tags")),
            "ignore_errors" => v
                .value
                .as_bool()
                .map(|b| inner.ignore_errors |= b)
                .ok_or_else(|| bad("true or false")),
            "become_user" => v
                .value
                .as_str()
                .filter(|u| super::is_user_name(u) || crate::template::has_syntax(u))
                .map(|u| inner.become_user = Some(u.to_string()))
                .ok_or_else(|| bad("a user name")),
            "delegate_to" => v
                .value
                .as_str()
                .filter(|d| !d.trim().is_empty())
                .map(|d| inner.delegate_to = Some(d.to_string()))
                .ok_or_else(|| bad("a host name, or `local` for the controller")),
            m if modules.contains(&m) || m == "meta" => Err(LoadError::new(
                kplace.clone(),
                format!("a block runs the tasks under it; found the module `{m}` beside `block`"),
            )
            .hint("move it into the block's list as a task of its own")),
            k if KEYWORDS.contains(&k) => Err(LoadError::new(
                kplace.clone(),
                format!("`{k}` is not supported on a block"),
            )
            .hint(format!(
                "a block takes {}; put `{k}` on the tasks inside",
                BLOCK_KEYWORDS.join(", ")
            ))),
            other => {
                let mut all: Vec<&str> = BLOCK_KEYWORDS.to_vec();
                all.extend(SECTIONS);
                let e = LoadError::new(kplace.clone(), format!("unknown block keyword `{other}`"));
                Err(match closest(other, &all) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e.hint(format!("a block takes {}", all.join(", "))),
                })
            }
        };
        if let Err(e) = parsed {
            errors.push(e);
            return;
        }
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // Main, rescue, always: in that order whatever order the file wrote them in.
    let mut sections: Vec<(Section, Spanned<String>, RawSection)> = sections
        .into_iter()
        .map(|(k, v)| {
            let s = match k.value.as_str() {
                "block" => Section::Main,
                "rescue" => Section::Rescue,
                _ => Section::Always,
            };
            (s, k, v)
        })
        .collect();
    sections.sort_by_key(|(s, _, _)| *s);
    for (section, k, tasks) in sections {
        let tasks = tasks.value.unwrap_or_default();
        if tasks.is_empty() {
            let what = if section == Section::Main {
                "an empty block".to_string()
            } else {
                format!("an empty `{}`", k.value)
            };
            errors.push(
                LoadError::new(
                    Place::at(file, &k.referenced),
                    format!("{what} (at {place})"),
                )
                .hint(format!("list tasks under `{}:`, or remove it", k.value)),
            );
            continue;
        }
        let mut scope = inner.clone();
        scope.blocks.push(BlockRef {
            id,
            section,
            name: name.clone(),
        });
        for t in tasks {
            flatten(file, role, t, modules, &scope, out, errors, includes);
        }
    }
}

/// Checks a `meta:` action; returns it as the task's arguments.
pub(super) fn meta_action(v: &Value) -> Result<Value, String> {
    match v.as_str() {
        Some(a) if META_ACTIONS.contains(&a) => Ok(Value::String(a.to_string())),
        _ => Err(format!(
            "`meta` must be one of: {}",
            META_ACTIONS.join(", ")
        )),
    }
}

/// What a `meta` task may not have: it runs once, at its place, and registers nothing.
pub(super) fn check_meta(t: &Task) -> Result<(), String> {
    let mut bad = Vec::new();
    if t.loop_items.is_some() {
        bad.push("loop");
    }
    if t.register.is_some() {
        bad.push("register");
    }
    if !t.notify.is_empty() {
        bad.push("notify");
    }
    if t.until.is_some() {
        bad.push("until");
    }
    if t.changed_when.is_some() || t.failed_when.is_some() {
        bad.push("changed_when/failed_when");
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("`meta` takes no {}", bad.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::load_tasks;
    use super::*;

    const TEST_MODULES: &[&str] = &["apt", "copy", "file", "shell"];

    fn load(text: &str, handlers: bool) -> (Vec<Task>, Vec<LoadError>) {
        let dir = std::env::temp_dir().join(format!(
            "bosun-block-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tasks.yml");
        std::fs::write(&f, text).unwrap();
        let mut errors = Vec::new();
        let t = load_tasks(&f, "r", handlers, TEST_MODULES, &mut errors);
        std::fs::remove_dir_all(&dir).unwrap();
        (t, errors)
    }

    fn tasks(text: &str) -> (Vec<Task>, Vec<LoadError>) {
        load(text, false)
    }

    const NESTED: &str = "\
- name: outer
  when: a
  tags: [o]
  block:
    - name: one
      file: {}
      when: b
      tags: [t1]
    - name: inner
      when: c
      tags: o2
      ignore_errors: true
      block:
        - name: two
          shell: x
      rescue:
        - name: fix
          shell: y
  always:
    - name: last
      copy: {}
- name: after
  apt: {}
";

    #[test]
    fn nested_blocks_flatten_in_order_with_their_chains() {
        let (t, e) = tasks(NESTED);
        assert!(e.is_empty(), "{e:?}");
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["one", "two", "fix", "last", "after"]);
        let sections =
            |i: usize| -> Vec<Section> { t[i].blocks.iter().map(|b| b.section).collect() };
        assert_eq!(sections(0), [Section::Main]);
        assert_eq!(sections(1), [Section::Main, Section::Main]);
        assert_eq!(sections(2), [Section::Main, Section::Rescue]);
        assert_eq!(sections(3), [Section::Always]);
        assert!(t[4].blocks.is_empty());
        // One outer block, one inner block, distinct.
        assert_eq!(t[0].blocks[0].id, t[3].blocks[0].id);
        assert_eq!(t[1].blocks[0].id, t[0].blocks[0].id);
        assert_ne!(t[1].blocks[1].id, t[1].blocks[0].id);
        assert_eq!(t[1].blocks[1].id, t[2].blocks[1].id);
        assert_eq!(t[0].blocks[0].name, "outer");
        assert_eq!(t[1].blocks[1].name, "inner");
        // Each task keeps its own line.
        assert_eq!(t[0].place.line, 5);
        assert_eq!(t[2].place.line, 17);
    }

    #[test]
    fn block_keywords_are_inherited() {
        let (t, e) = tasks(NESTED);
        assert!(e.is_empty(), "{e:?}");
        // whens: a conjunction, outermost first, the task's own last.
        assert_eq!(t[0].when, ["a", "b"]);
        assert_eq!(t[1].when, ["a", "c"]);
        assert_eq!(t[3].when, ["a"]);
        assert!(t[4].when.is_empty());
        // tags: a union.
        assert_eq!(t[0].tags, ["t1", "o"]);
        assert_eq!(t[1].tags, ["o", "o2"]);
        assert!(t[4].tags.is_empty());
        // ignore_errors: from the inner block only.
        assert!(t[1].ignore_errors && t[2].ignore_errors);
        assert!(!t[0].ignore_errors && !t[3].ignore_errors);
    }

    #[test]
    fn become_user_and_delegate_to_pass_down_unless_a_task_says_otherwise() {
        let (t, e) = tasks(
            "- become_user: app\n  delegate_to: local\n  block:\n    - name: a\n      file: {}\n    - name: b\n      file: {}\n      become_user: root\n      delegate_to: h2\n    - block:\n        - name: c\n          file: {}\n      become_user: other\n- name: d\n  file: {}\n",
        );
        assert!(e.is_empty(), "{e:?}");
        let who: Vec<(Option<&str>, Option<&str>)> = t
            .iter()
            .map(|t| (t.become_user.as_deref(), t.delegate_to.as_deref()))
            .collect();
        assert_eq!(
            who,
            [
                (Some("app"), Some("local")),
                (Some("root"), Some("h2")),
                (Some("other"), Some("local")),
                (None, None)
            ]
        );
        let (_, e) = tasks("- become_user: \"-x\"\n  block:\n    - name: a\n      file: {}\n");
        assert!(
            e.len() == 1 && e[0].message.contains("become_user"),
            "{e:?}"
        );
    }

    #[test]
    fn rescue_or_always_without_block_is_an_error_at_its_line() {
        let (_, e) = tasks("- name: a\n  file: {}\n- name: b\n  rescue:\n    - file: {}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].place.line, 4);
        assert!(
            e[0].message.contains("`rescue` without `block`"),
            "{}",
            e[0].message
        );
        let (_, e) = tasks("- always:\n    - file: {}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].message.contains("`always` without `block`"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn a_module_or_task_keyword_beside_block_is_an_error() {
        let (_, e) = tasks("- name: b\n  block:\n    - file: {}\n  apt: {}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].place.line, 4);
        assert!(
            e[0].message.contains("module `apt` beside `block`"),
            "{}",
            e[0].message
        );
        let (_, e) = tasks("- block:\n    - file: {}\n  notify: x\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0]
            .message
            .contains("`notify` is not supported on a block"));
        let (_, e) = tasks("- block:\n    - file: {}\n  resuce:\n    - file: {}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].hint.as_deref().unwrap_or("").contains("rescue"));
    }

    #[test]
    fn empty_sections_are_errors() {
        let (_, e) = tasks("- name: b\n  block: []\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].place.line, 2);
        assert!(e[0].message.contains("an empty block"), "{}", e[0].message);
        let (_, e) = tasks("- block:\n    - file: {}\n  always:\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].message.contains("an empty `always`"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn a_bad_task_inside_a_block_names_its_own_line() {
        let (_, e) = tasks(
            "- block:\n    - name: ok\n      file: {}\n    - name: bad\n      tempalte: {}\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].place.line, 5);
        assert!(e[0].message.contains("`tempalte`"), "{}", e[0].message);
    }

    #[test]
    fn blocks_are_not_for_handlers() {
        let (_, e) = load("- name: h\n  block:\n    - name: x\n      file: {}\n", true);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("handlers"), "{}", e[0].message);
    }

    #[test]
    fn meta_flush_handlers() {
        let (t, e) = tasks("- meta: flush_handlers\n");
        assert!(e.is_empty(), "{e:?}");
        assert!(t[0].flushes_handlers());
        assert_eq!(t[0].name, "meta: flush_handlers");
        let (_, e) = tasks("- meta: end_play\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("flush_handlers"), "{}", e[0].message);
        let (_, e) = tasks("- meta: flush_handlers\n  loop: [1]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("takes no loop"), "{}", e[0].message);
    }
}
