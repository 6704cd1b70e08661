//! `replace`: every match of a regular expression in a text file, replaced.
//!
//! The file is read, edited and written like `lineinfile`'s (see [`super::lineinfile`]): the
//! new contents are computed in plan, so the diff shows exactly what changes, and the write
//! is refused if the file changed after it was probed. The expression is matched in
//! multi-line mode (`^` and `$` at every line), as Ansible's `replace` does; `$1` and
//! `${name}` in `replace` refer to groups.

use super::fileops::Attrs;
use super::lineinfile::{check_path, check_validate, plural, text_edit_module, Edit};
use super::{de_mode, parse_args, ArgError, ModuleError};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    regexp: String,
    /// What each match becomes; default: nothing (the matches are removed).
    #[serde(default)]
    replace: String,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    validate: Option<String>,
}

#[derive(Debug)]
pub struct Replace {
    path: String,
    regexp: Regex,
    replace: String,
    attrs: Attrs,
    validate: Option<String>,
}

impl Replace {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("replace", args)?;
        check_path("replace", &a.path)?;
        check_validate("replace", &a.validate)?;
        let regexp = Regex::new(&format!("(?m){}", a.regexp)).map_err(|e| {
            ArgError::new(format!(
                "replace: `regexp` is not a valid regular expression: {e}"
            ))
            .hint("regexp uses Rust regex syntax (no look-around or backreferences)")
        })?;
        Ok(Replace {
            path: a.path,
            regexp,
            replace: a.replace,
            attrs: Attrs {
                mode: a.mode,
                owner: a.owner,
                group: a.group,
            },
            validate: a.validate,
        })
    }

    /// Pure: the edit to `content` (`None`: the file does not exist).
    fn edit(&self, content: Option<&str>) -> Result<Edit, ModuleError> {
        let p = &self.path;
        let Some(content) = content else {
            return Err(ModuleError::new(format!("{p} does not exist")));
        };
        let n = self.regexp.find_iter(content).count();
        if n == 0 {
            return Ok(Edit::none(format!("nothing in {p} matches")));
        }
        let new = self
            .regexp
            .replace_all(content, self.replace.as_str())
            .into_owned();
        if new == content {
            return Ok(Edit::none(format!(
                "{p}: {} already read as replaced",
                plural(n, "match", "matches")
            )));
        }
        Ok(Edit::change(
            new,
            format!("replace {} in {p}", plural(n, "match", "matches")),
        ))
    }
}

text_edit_module!(Replace);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{Module, Plan};
    use serde_json::json;

    fn m(v: Value) -> Replace {
        Replace::from_args(v).unwrap()
    }

    fn new_content(e: Edit) -> String {
        e.content.expect("a change")
    }

    #[test]
    fn replaces_every_match_with_groups_and_line_anchors() {
        let r = m(json!({"path": "/etc/x", "regexp": "^(\\w+) = off$", "replace": "$1 = on"}));
        let e = r.edit(Some("a = off\nb = off\nc = offline\n")).unwrap();
        assert_eq!(e.what, "replace 2 matches in /etc/x");
        assert_eq!(new_content(e), "a = on\nb = on\nc = offline\n");
        let e = r.edit(Some("a = on\n")).unwrap();
        assert!(e.content.is_none(), "nothing matches: unchanged");
    }

    #[test]
    fn a_replacement_equal_to_the_match_is_no_change() {
        let r = m(json!({"path": "/etc/x", "regexp": "on", "replace": "on"}));
        assert!(r.edit(Some("on\n")).unwrap().content.is_none());
    }

    #[test]
    fn no_replace_removes_the_matches() {
        let r = m(json!({"path": "/etc/x", "regexp": "^#.*\\n"}));
        assert_eq!(new_content(r.edit(Some("#c\nx\n#d\n")).unwrap()), "x\n");
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Replace::from_args(json!({"path": "rel", "regexp": "a"})).is_err());
        let e = Replace::from_args(json!({"path": "/x", "regexp": "("})).unwrap_err();
        assert!(e.message.contains("not a valid regular expression"), "{e}");
        assert!(m(json!({"path": "/x", "regexp": "a"})).edit(None).is_err());
    }

    #[test]
    fn plans_with_a_diff_against_the_probed_file() {
        let r = m(json!({"path": "/etc/x", "regexp": "old", "replace": "new"}));
        let dir = crate::modules::test_support::temp_dir("replace");
        let f = dir.join("x");
        std::fs::write(&f, "old\n").unwrap();
        let r2 = m(json!({"path": f.to_str().unwrap(), "regexp": "old", "replace": "new"}));
        let obs = crate::modules::test_support::run(&r2.probe().unwrap());
        match r2.plan(&obs).unwrap() {
            Plan::Change(c) => {
                let d = c.diff.expect("a diff");
                assert_eq!(d.before.as_deref(), Some("old\n"));
                assert_eq!(d.after.as_deref(), Some("new\n"));
                let out = crate::modules::test_support::run(&r2.apply(&c.action));
                assert_eq!(out.rc, 0, "{}", out.stderr);
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
        let obs = crate::modules::test_support::run(&r2.probe().unwrap());
        assert!(matches!(r2.plan(&obs).unwrap(), Plan::Unchanged { .. }));
        assert!(r.edit(Some("x")).unwrap().content.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
