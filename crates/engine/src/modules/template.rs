//! `template`: a file rendered on the controller, then written exactly like `copy`.
//!
//! Rendering happens once, when the task is built (`ctl.render_template` knows the role's
//! search path and the host's variables); from then on the rendered text is an ordinary
//! `copy` of inline contents, so probe, plan, diff, validation, backup and the atomic write
//! are `copy`'s, not a second implementation.

use super::copy::{self, Copy};
use super::fileops::Attrs;
use super::support::in_module;
use super::{
    de_mode, parse_args, ArgError, Controller, Effects, Module, ModuleError, Observed, Plan,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// The template file, found in the role's `templates/` directories.
    src: String,
    dest: String,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    validate: Option<String>,
    #[serde(default)]
    backup: bool,
}

#[derive(Debug)]
pub struct Template {
    copy: Copy,
}

impl Template {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("template", args)?;
        let text = ctl.render_template(&a.src)?;
        let attrs = Attrs {
            mode: a.mode,
            owner: a.owner,
            group: a.group,
        };
        let copy = Copy::from_content(a.dest, text.into_bytes(), attrs, a.validate, a.backup)
            .map_err(|e| in_module("template", e))?;
        Ok(Template { copy })
    }
}

impl Module for Template {
    type Action = copy::Action;

    fn probe(&self) -> Option<String> {
        self.copy.probe()
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<copy::Action>, ModuleError> {
        self.copy.plan(observed)
    }

    fn apply(&self, action: &copy::Action) -> String {
        self.copy.apply(action)
    }

    fn effects(&self) -> Effects {
        self.copy.effects()
    }

    fn path_probe(&self) -> Option<(&str, Option<&str>)> {
        self.copy.path_probe()
    }

    /// `src`, the one template it renders; unknown without one (the task fails when built).
    fn rendered_templates(args: &Value) -> Option<Vec<String>> {
        let src = args.get("src")?.as_str()?;
        Some(vec![src.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::FakeCtl;
    use serde_json::json;

    #[test]
    fn renders_then_plans_like_copy() {
        let m = Template::from_args(
            json!({"src": "app.conf.j2", "dest": "/etc/app.conf", "mode": "0640"}),
            &FakeCtl,
        )
        .unwrap();
        match m.plan(&Observed::stdout("type=absent\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "create /etc/app.conf");
                assert_eq!(c.diff.unwrap().after.as_deref(), Some("port = 8080\n"));
                assert!(m.apply(&c.action).contains("chmod 0640 -- \"$t\""));
            }
            p => panic!("{p:?}"),
        }
        assert!(m
            .probe()
            .unwrap()
            .contains(&crate::modules::fileops::sha256_hex(b"port = 8080\n")));
        assert_eq!(m.effects(), Effects::Paths(vec!["/etc/app.conf".into()]));
    }

    #[test]
    fn renders_its_src() {
        let names = |args| crate::modules::rendered_templates("template", &args);
        assert_eq!(
            names(json!({"src": "app.conf.j2", "dest": "/x"})),
            Some(vec!["app.conf.j2".to_string()])
        );
        assert_eq!(names(json!({"dest": "/x"})), None);
        assert_eq!(
            crate::modules::rendered_templates("copy", &json!({"src": "app.conf.j2"})),
            Some(Vec::new())
        );
    }

    #[test]
    fn errors_name_the_template_module() {
        let e = Template::from_args(json!({"src": "app.conf.j2", "dest": "app.conf"}), &FakeCtl)
            .unwrap_err();
        assert_eq!(
            e.message,
            "template: dest `app.conf` must be an absolute file path"
        );
        let e =
            Template::from_args(json!({"src": "missing.j2", "dest": "/x"}), &FakeCtl).unwrap_err();
        assert!(e.message.contains("not found"), "{}", e.message);
        let e = Template::from_args(
            json!({"src": "app.conf.j2", "dest": "/x", "content": "x"}),
            &FakeCtl,
        )
        .unwrap_err();
        assert!(e.message.contains("content"), "{}", e.message);
    }
}
