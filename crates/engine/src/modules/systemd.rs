//! `systemd`: a unit's file, enablement and running state.
//!
//! One probe reads everything the plan needs: the unit file (when `content` is declared,
//! through an embedded `copy`, so a changed unit shows a diff), `systemctl show` for the load
//! state, active state, whether systemd still runs an outdated copy of the unit files
//! (`NeedDaemonReload`) and whether the unit can reload, and `systemctl is-enabled`. The
//! active state comes from `show` rather than a separate `is-active`: it is the same
//! property, one process fewer.
//!
//! Plan is one pure decision over (declared, observed), in the order apply runs:
//! write unit → daemon-reload → enable/disable → start/stop/restart/reload.
//!
//! Choices worth knowing:
//! - daemon-reload runs only when the unit file content changed, when systemd reports unit
//!   files changed on disk since it loaded them (e.g. a `copy` task wrote a drop-in), or when
//!   `daemon_reload: true` forces it. A mode-only change needs none.
//! - `state: started` with a changed unit file and a running unit plans a restart: the old
//!   definition keeps running otherwise, and "started" should mean "running what is declared".
//!   Without `state`, a running unit is left alone and the plan says it runs the old definition.
//! - With a changed unit file, `enabled: true` re-enables (`reenable`) a unit that was enabled,
//!   so a changed `[Install]` section takes effect.
//! - `restarted` and `reloaded` always run (they are what handlers use); `reloaded` starts a
//!   unit that is not running, and fails at plan time for a unit without `ExecReload=`.
//! - A unit that is `failed` is not started: starting it is a change.
//! - After start/restart apply waits a second and checks the unit is still up (a `Type=simple`
//!   service that dies at once is "started" as far as `systemctl start` knows); when it is not,
//!   the task fails with the unit's last 20 journal lines.

use super::copy::{self, Copy};
use super::fileops::Attrs;
use super::support::{as_step, embed_probe, embedded, in_module, probe_failed};
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

const UNIT_DIR: &str = "/etc/systemd/system";

/// Suffixes systemd knows; a name without one is a service.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "target",
    "mount",
    "automount",
    "path",
    "slice",
    "scope",
    "device",
    "swap",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    /// The whole unit file, written to /etc/systemd/system/NAME.
    content: Option<String>,
    enabled: Option<bool>,
    state: Option<State>,
    /// Run `systemctl daemon-reload` on every converge.
    #[serde(default)]
    daemon_reload: bool,
}

#[derive(Debug)]
pub struct Systemd {
    unit: String,
    file: Option<Copy>,
    enabled: Option<bool>,
    state: Option<State>,
    daemon_reload: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enablement {
    Enable,
    /// Disable and enable again, so links follow a changed `[Install]` section.
    Reenable,
    Disable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Start,
    Stop,
    Restart,
    Reload,
}

/// The steps apply takes, in this order.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    pub write: Option<copy::Action>,
    pub daemon_reload: bool,
    pub enablement: Option<Enablement>,
    pub run: Option<Run>,
}

/// What `systemctl` said about the unit.
struct UnitState<'a> {
    load: &'a str,
    active: &'a str,
    enabled: &'a str,
    need_reload: bool,
    can_reload: bool,
}

impl Systemd {
    /// `service`: Ansible's name for starting and enabling a unit. It takes `name`, `state`
    /// and `enabled` only; a unit file is `systemd`'s `content`.
    pub fn from_service_args(args: Value) -> Result<Self, ArgError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // read only to refuse other keys
        struct ServiceArgs {
            name: String,
            state: Option<Value>,
            enabled: Option<Value>,
        }
        parse_args::<ServiceArgs>("service", args.clone())
            .map_err(|e| e.hint("service takes name, state and enabled; use `systemd` for a unit file or daemon_reload"))?;
        Systemd::from_args(args)
    }

    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("systemd", args)?;
        let unit = unit_name(&a.name)?;
        if a.content.is_none() && a.enabled.is_none() && a.state.is_none() && !a.daemon_reload {
            return Err(
                ArgError::new(format!("systemd: nothing declared for {unit}"))
                    .hint("give `state`, `enabled`, `content` or `daemon_reload`"),
            );
        }
        let file = match a.content {
            None => None,
            Some(text) => {
                if a.enabled == Some(true) && !text.lines().any(|l| l.trim() == "[Install]") {
                    return Err(ArgError::new(format!(
                        "systemd: {unit} cannot be enabled: its content has no [Install] section"
                    ))
                    .hint("add [Install] with WantedBy=multi-user.target, or drop `enabled`"));
                }
                let attrs = Attrs {
                    mode: Some(0o644),
                    ..Attrs::default()
                };
                let copy = Copy::from_content(
                    format!("{UNIT_DIR}/{unit}"),
                    text.into_bytes(),
                    attrs,
                    None,
                    false,
                )
                .map_err(|e| in_module("systemd", e))?;
                Some(copy)
            }
        };
        Ok(Systemd {
            unit,
            file,
            enabled: a.enabled,
            state: a.state,
            daemon_reload: a.daemon_reload,
        })
    }
}

/// Checks a unit name and adds `.service` when it has no unit type suffix.
fn unit_name(name: &str) -> Result<String, ArgError> {
    let ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '\\'));
    if !ok {
        return Err(
            ArgError::new(format!("systemd: `{name}` is not a unit name"))
                .hint("unit names use letters, digits and :-_.@\\ — e.g. nginx or app@1.service"),
        );
    }
    let has_type = name
        .rsplit_once('.')
        .is_some_and(|(_, suffix)| UNIT_TYPES.contains(&suffix));
    Ok(if has_type {
        name.to_string()
    } else {
        format!("{name}.service")
    })
}

impl Module for Systemd {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let mut s = String::new();
        if let Some(f) = &self.file {
            if let Some(p) = f.probe() {
                s.push_str(&embed_probe("unit", &p));
            }
        }
        s.push_str(&format!(
            "u={}\n\
             s=$(systemctl show -p LoadState -p ActiveState -p NeedDaemonReload -p CanReload \"$u\") \
             || {{ echo \"systemctl show $u failed\" >&2; exit 3; }}\n\
             printf '%s\\n' \"$s\"\n\
             e=$(systemctl is-enabled \"$u\" 2>/dev/null)\n\
             case \"$s\" in *LoadState=not-found*) [ -n \"$e\" ] || e=not-found ;; esac\n\
             [ -n \"$e\" ] || {{ echo \"systemctl is-enabled $u printed nothing\" >&2; exit 3; }}\n\
             echo \"is_enabled=$e\"\n",
            quote(&self.unit)
        ));
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let u = &self.unit;
        let kv = observed.kv();
        let field = |k: &str| {
            kv.get(k)
                .map(|v| v.trim())
                .ok_or_else(|| ModuleError::new(format!("probe did not report {k} for {u}")))
        };
        let st = UnitState {
            load: field("LoadState")?,
            active: field("ActiveState")?,
            enabled: field("is_enabled")?,
            need_reload: field("NeedDaemonReload")? == "yes",
            can_reload: field("CanReload")? == "yes",
        };

        let mut summary = Vec::new();
        let mut details = Vec::new();
        let mut diff = None;

        // 1. The unit file.
        let write = match &self.file {
            None => None,
            Some(f) => match f.plan(&embedded(observed, "unit"))? {
                Plan::Unchanged { .. } => None,
                Plan::Change(c) => {
                    summary.push(match c.action {
                        copy::Action::Write { .. } => format!("write unit {}", f.dest()),
                        copy::Action::Attrs { .. } => c.summary,
                    });
                    details.extend(c.details);
                    diff = c.diff;
                    Some(c.action)
                }
            },
        };
        let rewritten = matches!(write, Some(copy::Action::Write { .. }));
        let wants_running = matches!(
            self.state,
            Some(State::Started | State::Restarted | State::Reloaded)
        );

        // Our unit file is in place, yet systemd still has "not found" cached for the name
        // (the file appeared after something referenced the unit): a daemon-reload fixes it.
        let not_loaded_yet = st.load == "not-found" && self.file.is_some() && !rewritten;
        // Units that cannot be acted on, unless the content we write is what fixes them.
        match st.load {
            "loaded" => {}
            _ if rewritten || not_loaded_yet => {}
            "not-found" => {
                return Err(ModuleError::new(format!(
                    "{u} does not exist: no unit file found; give `content`, or install the package that ships it first"
                )))
            }
            "masked" if wants_running || self.enabled == Some(true) => {
                return Err(ModuleError::new(format!(
                    "{u} is masked; unmask it (systemctl unmask {u}) before it can be started or enabled"
                )))
            }
            "masked" => {}
            other => {
                return Err(ModuleError::new(format!(
                    "{u} failed to load (LoadState={other}); `systemctl status {u}` shows why"
                )))
            }
        }

        // 2. daemon-reload.
        let daemon_reload = if rewritten {
            details.push("daemon-reload: the unit file changes".into());
            true
        } else if not_loaded_yet {
            details.push("daemon-reload: systemd has not loaded the unit file yet".into());
            true
        } else if st.need_reload {
            details
                .push("daemon-reload: unit files changed on disk since systemd loaded them".into());
            true
        } else if self.daemon_reload {
            details.push("daemon-reload: forced (daemon_reload: true)".into());
            true
        } else {
            false
        };
        if daemon_reload {
            summary.push("reload systemd".into());
        }

        // 3. Enablement.
        let e = st.enabled;
        let enablement = match self.enabled {
            None => None,
            Some(true) => match e {
                "enabled" | "alias" if rewritten => Some(Enablement::Reenable),
                "enabled" | "alias" | "indirect" | "generated" | "transient" => None,
                "disabled" | "enabled-runtime" | "linked" | "linked-runtime" | "not-found" => {
                    Some(Enablement::Enable)
                }
                // Only a rewritten file gets here static or masked: it is about to change.
                "static" | "masked" | "masked-runtime" if rewritten => Some(Enablement::Enable),
                "static" => {
                    return Err(ModuleError::new(format!(
                        "{u} is static (its unit has no [Install] section), so it cannot be enabled; drop `enabled`"
                    )))
                }
                other => {
                    return Err(ModuleError::new(format!(
                        "{u}: cannot enable, systemctl is-enabled reports `{other}`"
                    )))
                }
            },
            Some(false) => match e {
                "enabled" | "enabled-runtime" | "linked" | "linked-runtime" | "alias" => Some(Enablement::Disable),
                "disabled" | "static" | "indirect" | "generated" | "transient" | "masked" | "masked-runtime"
                | "not-found" => None,
                other => {
                    return Err(ModuleError::new(format!(
                        "{u}: cannot disable, systemctl is-enabled reports `{other}`"
                    )))
                }
            },
        };
        match enablement {
            Some(Enablement::Enable) => {
                summary.push(format!("enable {u}"));
                details.push(format!("enabled: {e} → enabled"));
            }
            Some(Enablement::Reenable) => {
                summary.push(format!("re-enable {u}"));
                details.push("enabled: enabled (links refreshed for the changed unit)".into());
            }
            Some(Enablement::Disable) => {
                summary.push(format!("disable {u}"));
                details.push(format!("enabled: {e} → disabled"));
            }
            None => {}
        }

        // 4. Running state.
        let a = st.active;
        let up = matches!(a, "active" | "reloading" | "refreshing");
        let run = match self.state {
            None => {
                if rewritten && up {
                    details.push(format!(
                        "note: {u} keeps running the old definition until restarted"
                    ));
                }
                None
            }
            Some(State::Started) if !up => Some(Run::Start),
            Some(State::Started) if rewritten => Some(Run::Restart),
            Some(State::Started) => None,
            Some(State::Stopped) if matches!(a, "inactive" | "failed") => None,
            Some(State::Stopped) => Some(Run::Stop),
            Some(State::Restarted) => Some(Run::Restart),
            Some(State::Reloaded) if !up => Some(Run::Start),
            Some(State::Reloaded) if !st.can_reload && !rewritten => {
                return Err(ModuleError::new(format!(
                    "{u} cannot reload (no ExecReload=); use state: restarted"
                )))
            }
            Some(State::Reloaded) => Some(Run::Reload),
        };
        match run {
            Some(Run::Start) => {
                summary.push(format!("start {u}"));
                details.push(format!("active: {a} → active"));
            }
            Some(Run::Stop) => {
                summary.push(format!("stop {u}"));
                details.push(format!("active: {a} → inactive"));
            }
            Some(Run::Restart) => {
                summary.push(format!("restart {u}"));
                let why = if self.state == Some(State::Started) {
                    "restart: the unit changed"
                } else {
                    "restart"
                };
                details.push(format!("active: {a} → active ({why})"));
            }
            Some(Run::Reload) => {
                summary.push(format!("reload {u}"));
                details.push(format!("active: {a} (reload)"));
            }
            None => {}
        }

        if summary.is_empty() {
            let mut parts = vec![format!("enabled: {e}"), format!("active: {a}")];
            if self.file.is_some() {
                parts.push("unit file up to date".into());
            }
            return Ok(Plan::unchanged(format!(
                "{u} is as declared ({})",
                parts.join(", ")
            )));
        }
        let mut c = Change::new(
            summary.join(", "),
            Action {
                write,
                daemon_reload,
                enablement,
                run,
            },
        )
        .with_details(details);
        c.diff = diff;
        c.always =
            matches!(self.state, Some(State::Restarted | State::Reloaded)) || self.daemon_reload;
        Ok(Plan::Change(c))
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = String::new();
        if let (Some(w), Some(f)) = (&action.write, &self.file) {
            s.push_str(&as_step(&f.apply(w)));
        }
        s.push_str(&format!("u={}\n", quote(&self.unit)));
        s.push_str(
            "bosun_fail() {\n\
             printf '%s\\n' \"$1\" >&2\n\
             journalctl -u \"$u\" -n 20 --no-pager >&2\n\
             exit 1\n\
             }\n",
        );
        let sc = "systemctl --no-ask-password";
        if action.daemon_reload {
            s.push_str(&format!("{sc} daemon-reload || exit 1\n"));
        }
        match action.enablement {
            Some(Enablement::Enable) => s.push_str(&format!("{sc} enable \"$u\" || exit 1\n")),
            Some(Enablement::Reenable) => s.push_str(&format!("{sc} reenable \"$u\" || exit 1\n")),
            Some(Enablement::Disable) => s.push_str(&format!("{sc} disable \"$u\" || exit 1\n")),
            None => {}
        }
        let verb = match action.run {
            None => return s,
            Some(Run::Start) => "start",
            Some(Run::Stop) => "stop",
            Some(Run::Restart) => "restart",
            Some(Run::Reload) => "reload",
        };
        s.push_str(&format!(
            "{sc} {verb} \"$u\" || bosun_fail \"systemctl {verb} $u failed\"\n"
        ));
        if matches!(action.run, Some(Run::Start | Run::Restart)) {
            // A oneshot unit without RemainAfterExit is inactive once it ran; for it, "did not
            // fail" is success.
            s.push_str(&format!(
                "sleep 1\n\
                 a=$(systemctl is-active \"$u\")\n\
                 case $a in\n\
                 active|reloading|refreshing) ;;\n\
                 *) [ \"$a\" != failed ] && [ \"$(systemctl show -p Type --value \"$u\")\" = oneshot ] \
                 || bosun_fail \"$u is $a after {verb}\" ;;\n\
                 esac\n"
            ));
        }
        s
    }

    fn effects(&self) -> Effects {
        // Starting or stopping a unit can change anything on the host.
        Effects::Host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::fileops::sha256_hex;
    use crate::modules::test_support::{run, temp_dir};
    use serde_json::json;

    #[test]
    fn service_is_systemd_without_unit_files() {
        let s = Systemd::from_service_args(
            json!({"name": "nginx", "state": "started", "enabled": true}),
        )
        .expect("service args");
        assert_eq!(s.unit, "nginx.service");
        assert_eq!(s.enabled, Some(true));
        let e =
            Systemd::from_service_args(json!({"name": "x", "content": "[Unit]\n"})).unwrap_err();
        assert!(
            e.hint.as_deref().unwrap_or("").contains("use `systemd`"),
            "{e:?}"
        );
        assert!(
            Systemd::from_service_args(json!({"name": "x"})).is_err(),
            "nothing declared"
        );
    }

    fn module(v: Value) -> Systemd {
        Systemd::from_args(v).expect("valid args")
    }

    fn change(p: Plan<Action>) -> Change<Action> {
        match p {
            Plan::Change(c) => c,
            p => panic!("expected a change, got {p:?}"),
        }
    }

    /// Probe output as `systemctl` prints it, for a unit without managed content.
    fn obs(load: &str, active: &str, enabled: &str) -> Observed {
        Observed::stdout(&format!(
            "LoadState={load}\nActiveState={active}\nNeedDaemonReload=no\nCanReload=yes\nis_enabled={enabled}\n"
        ))
    }

    const UNIT: &str = "[Unit]\nDescription=app\n[Service]\nExecStart=/usr/bin/app\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn names_get_a_service_suffix() {
        assert_eq!(unit_name("nginx").unwrap(), "nginx.service");
        assert_eq!(unit_name("app@1").unwrap(), "app@1.service");
        assert_eq!(unit_name("fstrim.timer").unwrap(), "fstrim.timer");
        assert_eq!(
            unit_name("postgresql@15-main.service").unwrap(),
            "postgresql@15-main.service"
        );
        assert!(unit_name("../etc/passwd").is_err());
        assert!(unit_name("a b").is_err());
        assert!(unit_name("-x").is_err());
    }

    #[test]
    fn disabled_inactive_unit_is_enabled_then_started() {
        let m = module(json!({"name": "redis-server", "enabled": true, "state": "started"}));
        let c = change(m.plan(&obs("loaded", "inactive", "disabled")).unwrap());
        assert_eq!(
            c.summary,
            "enable redis-server.service, start redis-server.service"
        );
        assert_eq!(
            c.details,
            vec!["enabled: disabled → enabled", "active: inactive → active"]
        );
        assert!(!c.always);
        assert_eq!(
            c.action,
            Action {
                write: None,
                daemon_reload: false,
                enablement: Some(Enablement::Enable),
                run: Some(Run::Start)
            }
        );
        let script = m.apply(&c.action);
        assert!(script.starts_with("u=redis-server.service\n"), "{script}");
        assert!(script.contains("systemctl --no-ask-password enable \"$u\" || exit 1\n"));
        assert!(script.contains("systemctl --no-ask-password start \"$u\" || bosun_fail"));
        assert!(script.contains("journalctl -u \"$u\" -n 20 --no-pager"));
        assert!(!script.contains("daemon-reload"));
    }

    #[test]
    fn enabled_and_active_is_unchanged() {
        let m = module(json!({"name": "redis-server", "enabled": true, "state": "started"}));
        match m.plan(&obs("loaded", "active", "enabled")).unwrap() {
            Plan::Unchanged { reason } => {
                assert_eq!(
                    reason,
                    "redis-server.service is as declared (enabled: enabled, active: active)"
                )
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn failed_unit_is_started() {
        let m = module(json!({"name": "app", "state": "started"}));
        let c = change(m.plan(&obs("loaded", "failed", "enabled")).unwrap());
        assert_eq!(c.summary, "start app.service");
        assert_eq!(c.details, vec!["active: failed → active"]);
    }

    #[test]
    fn stopped_and_disabled() {
        let m = module(json!({"name": "apache2", "enabled": false, "state": "stopped"}));
        let c = change(m.plan(&obs("loaded", "active", "enabled")).unwrap());
        assert_eq!(c.summary, "disable apache2.service, stop apache2.service");
        assert_eq!(
            c.details,
            vec!["enabled: enabled → disabled", "active: active → inactive"]
        );
        assert!(matches!(
            m.plan(&obs("loaded", "failed", "disabled")).unwrap(),
            Plan::Unchanged { .. }
        ));
        // Masked is more than disabled and stopped.
        assert!(matches!(
            m.plan(&obs("masked", "inactive", "masked")).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn restarted_and_reloaded_always_run() {
        let m = module(json!({"name": "haproxy", "state": "restarted"}));
        let c = change(m.plan(&obs("loaded", "active", "enabled")).unwrap());
        assert!(c.always);
        assert_eq!(c.summary, "restart haproxy.service");
        assert_eq!(c.details, vec!["active: active → active (restart)"]);
        assert!(m.apply(&c.action).contains("restart \"$u\""));

        let m = module(json!({"name": "haproxy", "state": "reloaded"}));
        let c = change(m.plan(&obs("loaded", "active", "enabled")).unwrap());
        assert!(c.always);
        assert_eq!(c.action.run, Some(Run::Reload));
        let script = m.apply(&c.action);
        assert!(script.contains("systemctl --no-ask-password reload \"$u\""));
        assert!(
            !script.contains("sleep 1"),
            "reload is checked by systemctl itself"
        );
        // Not running: reloading means starting.
        let c = change(m.plan(&obs("loaded", "inactive", "enabled")).unwrap());
        assert_eq!(c.action.run, Some(Run::Start));
        // Cannot reload at all: said before anything runs.
        let no_reload = Observed::stdout(
            "LoadState=loaded\nActiveState=active\nNeedDaemonReload=no\nCanReload=no\nis_enabled=enabled\n",
        );
        assert!(m
            .plan(&no_reload)
            .unwrap_err()
            .0
            .contains("state: restarted"));
    }

    #[test]
    fn missing_unit_without_content_is_an_error() {
        let m = module(json!({"name": "nope", "state": "started"}));
        let err = m
            .plan(&obs("not-found", "inactive", "not-found"))
            .unwrap_err();
        assert_eq!(
            err.0,
            "nope.service does not exist: no unit file found; give `content`, or install the package that ships it first"
        );
        let m = module(json!({"name": "x", "enabled": true}));
        assert!(m
            .plan(&obs("masked", "inactive", "masked"))
            .unwrap_err()
            .0
            .contains("masked"));
        let m = module(json!({"name": "x", "enabled": true}));
        assert!(m
            .plan(&obs("loaded", "inactive", "static"))
            .unwrap_err()
            .0
            .contains("static"));
        assert!(m
            .plan(&obs("bad-setting", "inactive", "disabled"))
            .unwrap_err()
            .0
            .contains("bad-setting"));
    }

    #[test]
    fn new_unit_is_written_reloaded_enabled_and_started() {
        let m =
            module(json!({"name": "app", "content": UNIT, "enabled": true, "state": "started"}));
        let probe = m.probe().unwrap();
        assert!(probe.contains(&sha256_hex(UNIT.as_bytes())), "{probe}");
        let o = Observed::stdout(
            "unit.type=absent\nLoadState=not-found\nActiveState=inactive\nNeedDaemonReload=no\nCanReload=no\nis_enabled=not-found\n",
        );
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.summary,
            "write unit /etc/systemd/system/app.service, reload systemd, enable app.service, start app.service"
        );
        assert_eq!(
            c.details,
            vec![
                "mode - → 0644",
                "daemon-reload: the unit file changes",
                "enabled: not-found → enabled",
                "active: inactive → active"
            ]
        );
        assert_eq!(c.diff.as_ref().unwrap().after.as_deref(), Some(UNIT));
        let script = m.apply(&c.action);
        let order: Vec<usize> = [
            "p=/etc/systemd/system/app.service",
            "daemon-reload",
            "enable \"$u\"",
            "start \"$u\"",
        ]
        .iter()
        .map(|s| {
            script
                .find(s)
                .unwrap_or_else(|| panic!("{s} missing in {script}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{script}");
    }

    #[test]
    fn changed_unit_restarts_a_running_service_and_refreshes_links() {
        let m =
            module(json!({"name": "app", "content": UNIT, "enabled": true, "state": "started"}));
        let o = Observed::stdout(
            "unit.type=file\nunit.mode=644\nunit.sha256=old\nunit.content_b64=W1VuaXRdCg==\n\
             LoadState=loaded\nActiveState=active\nNeedDaemonReload=no\nCanReload=no\nis_enabled=enabled\n",
        );
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.summary,
            "write unit /etc/systemd/system/app.service, reload systemd, re-enable app.service, restart app.service"
        );
        assert_eq!(c.diff.as_ref().unwrap().before.as_deref(), Some("[Unit]\n"));
        assert!(c
            .details
            .contains(&"active: active → active (restart: the unit changed)".to_string()));
        // Without a declared state, the running unit is left alone, and the plan says so.
        let m = module(json!({"name": "app", "content": UNIT}));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.summary,
            "write unit /etc/systemd/system/app.service, reload systemd"
        );
        assert_eq!(
            c.details.last().unwrap(),
            "note: app.service keeps running the old definition until restarted"
        );
    }

    #[test]
    fn unchanged_unit_file_needs_no_daemon_reload() {
        let m = module(json!({"name": "app", "content": UNIT, "state": "started"}));
        let sha = sha256_hex(UNIT.as_bytes());
        let o = Observed::stdout(&format!(
            "unit.type=file\nunit.mode=644\nunit.sha256={sha}\n\
             LoadState=loaded\nActiveState=active\nNeedDaemonReload=no\nCanReload=no\nis_enabled=enabled\n"
        ));
        assert!(matches!(m.plan(&o).unwrap(), Plan::Unchanged { .. }));
        // ... unless systemd says its loaded copy is outdated (a drop-in written by copy).
        let stale = Observed::stdout(
            &o.stdout
                .replace("NeedDaemonReload=no", "NeedDaemonReload=yes"),
        );
        let c = change(m.plan(&stale).unwrap());
        assert_eq!(c.summary, "reload systemd");
        assert_eq!(c.action.run, None);
        // A mode-only change rewrites attributes without a reload.
        let modes = Observed::stdout(&o.stdout.replace("unit.mode=644", "unit.mode=600"));
        let c = change(m.plan(&modes).unwrap());
        assert_eq!(
            c.summary,
            "set attributes of /etc/systemd/system/app.service"
        );
        assert!(!c.action.daemon_reload);
    }

    #[test]
    fn unit_file_in_place_but_not_loaded_gets_a_daemon_reload() {
        let m = module(json!({"name": "app", "content": UNIT, "state": "started"}));
        let o = Observed::stdout(&format!(
            "unit.type=file\nunit.mode=644\nunit.sha256={}\n\
             LoadState=not-found\nActiveState=inactive\nNeedDaemonReload=no\nCanReload=no\nis_enabled=disabled\n",
            sha256_hex(UNIT.as_bytes())
        ));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "reload systemd, start app.service");
        assert_eq!(
            c.details[0],
            "daemon-reload: systemd has not loaded the unit file yet"
        );
        assert_eq!(c.action.write, None);
    }

    #[test]
    fn forced_daemon_reload_always_runs() {
        let m = module(json!({"name": "app", "daemon_reload": true}));
        let c = change(m.plan(&obs("loaded", "active", "enabled")).unwrap());
        assert!(c.always);
        assert_eq!(c.summary, "reload systemd");
    }

    #[test]
    fn bad_args_are_rejected() {
        assert!(Systemd::from_args(json!({"name": "app"})).is_err());
        assert!(Systemd::from_args(json!({"name": "app", "state": "running"})).is_err());
        let e = Systemd::from_args(
            json!({"name": "app", "content": "[Service]\nExecStart=/x\n", "enabled": true}),
        )
        .unwrap_err();
        assert!(e.message.contains("[Install]"), "{}", e.message);
        let e = Systemd::from_args(json!({"name": "app", "stat": "started"})).unwrap_err();
        assert!(e.message.contains("stat"), "{}", e.message);
    }

    /// A stand-in `systemctl`/`journalctl` directory on PATH: the real ones are never called.
    fn fake_systemd(dir: &std::path::Path, systemctl: &str) -> String {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for (name, body) in [
            ("systemctl", systemctl),
            ("journalctl", "echo 'app[1]: boom'\n"),
            ("sleep", ""),
        ] {
            std::fs::write(bin.join(name), format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        format!("PATH={}:$PATH\n", bin.display())
    }

    #[test]
    fn probe_parses_what_systemctl_prints() {
        let dir = temp_dir("systemd-probe");
        let path = fake_systemd(
            &dir,
            "case $1 in\n\
             show) printf 'LoadState=loaded\\nActiveState=failed\\nNeedDaemonReload=no\\nCanReload=no\\n' ;;\n\
             is-enabled) echo disabled; exit 1 ;;\n\
             esac\n",
        );
        let m = module(json!({"name": "app", "enabled": true, "state": "started"}));
        let o = run(&format!("{path}{}", m.probe().unwrap()));
        assert_eq!(o.rc, 0, "{}", o.stderr);
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "enable app.service, start app.service");

        // A host without a running systemd: cannot tell, so the probe fails with the reason.
        let path = fake_systemd(
            &dir,
            "echo 'System has not been booted with systemd' >&2; exit 1\n",
        );
        let o = run(&format!("{path}{}", m.probe().unwrap()));
        assert_eq!(o.rc, 3);
        assert!(m.plan(&o).unwrap_err().0.contains("not been booted"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_that_does_not_stay_up_fails_with_the_journal() {
        let dir = temp_dir("systemd-apply");
        let m = module(json!({"name": "app", "state": "started"}));
        let action = Action {
            write: None,
            daemon_reload: false,
            enablement: None,
            run: Some(Run::Start),
        };
        let path = fake_systemd(
            &dir,
            "case $1 in is-active) echo failed; exit 3 ;; esac\nexit 0\n",
        );
        let r = run(&format!("{path}{}", m.apply(&action)));
        assert_eq!(r.rc, 1);
        assert_eq!(
            r.stderr,
            "app.service is failed after start\napp[1]: boom\n"
        );
        let path = fake_systemd(&dir, "case $1 in is-active) echo active ;; esac\nexit 0\n");
        let r = run(&format!("{path}{}", m.apply(&action)));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        // A oneshot that ran and exited is fine.
        let path = fake_systemd(
            &dir,
            "case $1 in is-active) echo inactive ;; show) echo oneshot ;; esac\nexit 0\n",
        );
        let r = run(&format!("{path}{}", m.apply(&action)));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
