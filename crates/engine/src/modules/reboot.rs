//! `reboot`: restart the host and wait until it is back, like Ansible's
//! `ansible.builtin.reboot`.
//!
//! The probe reads the kernel's boot id ([`BOOT_ID_PATH`], a fresh random UUID at every
//! boot). The plan is always a change: a reboot declares an event, not a state, so gate it
//! with `when:` on a registered result or a fact. The apply prints the boot id again and
//! *schedules* the reboot detached from the session ([`REBOOT_SH`]), so that the apply
//! script itself ends and reports before the host goes down.
//!
//! Waiting for the host is the engine's part ([`crate::modules::Module::reboots`]): the
//! connection dies with the host, so only the controller can reopen it. It reconnects until
//! the boot id differs from the one the apply printed and [`RebootWait::test_command`]
//! succeeds, then the play goes on over the new connection.

use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Where Linux keeps the current boot's id. The tests' fake transport moves it into the
/// fake host's directory (it rewrites this exact text in the scripts it runs).
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Shell that schedules the reboot `$__delay` seconds (plus one) from now, broadcasting
/// `$__msg`, in a way that outlives the session that ran it.
///
/// `systemd-run` hands the reboot to PID 1 as a transient timer, so nothing of it belongs to
/// the SSH session or the script's process group (which bosun kills when a deadline
/// passes). Without systemd, `setsid` runs in the foreground and starts the delayed reboot
/// in the background of a new session: by the time it returns, the reboot is out of the
/// script's process group (which a kill of the group, or the session's hangup, would reach
/// while a plain `... &` has not left it yet), and with no inherited descriptors the
/// channel closes as soon as the script ends.
/// The extra second lets the apply's output reach the controller before the host goes down.
///
/// Kept as one constant so that the tests' fake transport can replace it (it must never run
/// a real reboot) and refuse any script that still would. It has no single quote, so it is
/// found verbatim in a batch, which quotes each step in single quotes.
pub const REBOOT_SH: &str = "\
[ \"$(id -u)\" = 0 ] || { echo \"reboot: needs root (run it without become_user)\" >&2; exit 1; }
__cmd=\"shutdown -r now \\\"\\$1\\\" 2>/dev/null || systemctl reboot || reboot\"
if command -v systemd-run >/dev/null 2>&1 && systemd-run --quiet --collect --on-active=\"$((__delay + 1))\" --timer-property=AccuracySec=100ms /bin/sh -c \"$__cmd\" sh \"$__msg\" >/dev/null 2>&1; then
  :
elif command -v setsid >/dev/null 2>&1; then
  nohup setsid /bin/sh -c \"(sleep $((__delay + 1)); $__cmd) &\" sh \"$__msg\" >/dev/null 2>&1 </dev/null
else
  nohup /bin/sh -c \"sleep $((__delay + 1)); $__cmd\" sh \"$__msg\" >/dev/null 2>&1 </dev/null &
fi
";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default = "default_timeout")]
    reboot_timeout: u64,
    #[serde(default)]
    pre_reboot_delay: u64,
    #[serde(default)]
    post_reboot_delay: u64,
    #[serde(default = "default_test_command")]
    test_command: String,
    #[serde(default = "default_msg")]
    msg: String,
}

fn default_timeout() -> u64 {
    600
}

fn default_test_command() -> String {
    "whoami".into()
}

fn default_msg() -> String {
    "Reboot initiated by bosun".into()
}

/// What the engine does after a `reboot` changed: how long it waits for the host to come
/// back and how it knows it is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootWait {
    /// From the reboot's apply to a new boot answering `test_command`.
    pub timeout: Duration,
    /// How long to wait once the new boot answers, before `test_command` runs.
    pub post_delay: Duration,
    /// Shell that succeeds once the host is ready for the rest of the play.
    pub test_command: String,
}

/// `reboot` as a task.
#[derive(Debug)]
pub struct Reboot {
    wait: RebootWait,
    pre_delay: u64,
    msg: String,
}

/// Scheduling the reboot is the only action.
#[derive(Debug, PartialEq, Eq)]
pub struct Restart;

impl Reboot {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        // `reboot: {}` and a bare `reboot:` both mean the defaults.
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args
        };
        let a: Args = parse_args("reboot", args)?;
        if a.reboot_timeout == 0 {
            return Err(ArgError::new(
                "reboot: `reboot_timeout` must be at least 1 second",
            ));
        }
        if a.test_command.trim().is_empty() {
            return Err(ArgError::new("reboot: `test_command` is empty")
                .hint("leave it out for the default (`whoami`)"));
        }
        Ok(Reboot {
            wait: RebootWait {
                timeout: Duration::from_secs(a.reboot_timeout),
                post_delay: Duration::from_secs(a.post_reboot_delay),
                test_command: a.test_command,
            },
            pre_delay: a.pre_reboot_delay,
            msg: a.msg,
        })
    }
}

/// Shell that prints `boot_id=<id>` for the current boot, or fails saying why.
pub fn boot_id_sh() -> String {
    format!(
        "__b=$(cat {BOOT_ID_PATH} 2>/dev/null) && [ -n \"$__b\" ] || \
         {{ echo 'reboot: cannot read {BOOT_ID_PATH} (is this Linux?)' >&2; exit 1; }}\n\
         echo \"boot_id=$__b\"\n"
    )
}

/// The boot id a [`boot_id_sh`] printed.
pub fn boot_id(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("boot_id="))
        .map(str::trim)
        .find(|id| !id.is_empty())
}

impl Module for Reboot {
    type Action = Restart;

    fn probe(&self) -> Option<String> {
        Some(boot_id_sh())
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Restart>, ModuleError> {
        probe_failed(observed)?;
        let id = boot_id(&observed.stdout).ok_or_else(|| {
            ModuleError::new(format!("unexpected probe output: {:?}", observed.stdout))
        })?;
        let mut details = Vec::new();
        if self.pre_delay > 0 {
            details.push(format!("in {}s", self.pre_delay));
        }
        details.push(format!(
            "then wait up to {}s for a new boot that runs `{}`",
            self.wait.timeout.as_secs(),
            self.wait.test_command
        ));
        let mut c = Change::new(format!("reboot (boot {id})"), Restart).with_details(details);
        // A reboot is an event: it runs on every converge that reaches it.
        c.always = true;
        Ok(Plan::Change(c))
    }

    fn apply(&self, _: &Restart) -> String {
        format!(
            "{}__delay={}\n__msg={}\n{REBOOT_SH}",
            boot_id_sh(),
            self.pre_delay,
            quote(&self.msg)
        )
    }

    /// The whole host restarts: every later probe is taken again.
    fn effects(&self) -> Effects {
        Effects::Host
    }

    fn reboots(&self) -> Option<RebootWait> {
        Some(self.wait.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(v: Value) -> Reboot {
        Reboot::from_args(v).expect("valid args")
    }

    #[test]
    fn defaults_follow_ansible() {
        let m = module(Value::Null);
        assert_eq!(
            m.reboots(),
            Some(RebootWait {
                timeout: Duration::from_secs(600),
                post_delay: Duration::ZERO,
                test_command: "whoami".into(),
            })
        );
        assert_eq!(m.pre_delay, 0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for (args, want) in [
            (json!({"reboot_timeout": 0}), "at least 1 second"),
            (json!({"test_command": " "}), "`test_command` is empty"),
            (json!({"timeout": 5}), "unknown field `timeout`"),
        ] {
            let e = Reboot::from_args(args).expect_err("refused");
            assert!(e.message.contains(want), "{}", e.message);
        }
    }

    #[test]
    fn the_plan_always_reboots_naming_the_boot() {
        let m = module(
            json!({"reboot_timeout": 30, "pre_reboot_delay": 5, "test_command": "systemctl is-system-running"}),
        );
        match m.plan(&Observed::stdout("boot_id=1b2c\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "reboot (boot 1b2c)");
                assert!(c.always);
                assert_eq!(
                    c.details,
                    vec![
                        "in 5s",
                        "then wait up to 30s for a new boot that runs `systemctl is-system-running`"
                    ]
                );
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_probe_that_cannot_read_the_boot_id_fails_the_plan() {
        let m = module(json!({}));
        let e = m
            .plan(&Observed {
                rc: 1,
                stdout: String::new(),
                stderr: "reboot: cannot read /proc/sys/kernel/random/boot_id (is this Linux?)"
                    .into(),
            })
            .expect_err("fails");
        assert!(e.0.contains("cannot read"), "{e}");
        assert!(m.plan(&Observed::stdout("junk\n")).is_err());
    }

    #[test]
    fn the_apply_prints_the_boot_and_schedules_a_detached_reboot() {
        let m = module(json!({"pre_reboot_delay": 7, "msg": "kernel's update"}));
        let s = m.apply(&Restart);
        assert!(s.starts_with(&boot_id_sh()), "{s}");
        assert!(
            s.contains("__delay=7\n__msg='kernel'\\''s update'\n"),
            "{s}"
        );
        assert!(s.ends_with(REBOOT_SH), "{s}");
        // Detached: handed to PID 1, or in a session of its own with no inherited streams.
        assert!(REBOOT_SH.contains("systemd-run --quiet --collect --on-active="));
        assert!(
            REBOOT_SH.contains("nohup setsid /bin/sh -c \"(sleep $((__delay + 1)); $__cmd) &\"")
        );
        assert!(REBOOT_SH.contains(">/dev/null 2>&1 </dev/null\n"));
        assert!(
            !REBOOT_SH.contains('\''),
            "a batch would quote it out of recognition"
        );
    }

    /// The scheduling shell's fallback (no systemd) outlives the script: its output stream
    /// closes when the script ends, and killing the script's process group, as a deadline
    /// or the session's end would, does not stop the delayed reboot. The reboot is replaced
    /// by a marker file, and the root check left out.
    #[test]
    fn the_scheduled_reboot_outlives_the_script_and_its_process_group() {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!("bosun-reboot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("rebooted");
        let cmd_line = REBOOT_SH
            .lines()
            .find(|l| l.starts_with("__cmd="))
            .expect("the reboot command");
        let sh = REBOOT_SH
            .lines()
            .filter(|l| !l.contains("id -u"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(
                cmd_line,
                &format!("__cmd=\"echo \\\"\\$1\\\" > {}\"", marker.display()),
            )
            .replace("command -v systemd-run", "false");
        let script = format!("__delay=2\n__msg='it works'\n{sh}\n");
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pgid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !marker.exists(),
            "the streams closed before the delayed reboot ran"
        );
        // `--`: procps' kill reads `-KILL -<pgid>` as something else and kills nothing.
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{pgid}"))
            .stderr(std::process::Stdio::null())
            .status();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !marker.exists() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let got = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, "it works\n");
    }

    #[test]
    fn boot_ids_are_read_from_their_line() {
        assert_eq!(boot_id("x=1\nboot_id=ab-cd\n"), Some("ab-cd"));
        assert_eq!(boot_id("boot_id=\n"), None);
        assert_eq!(boot_id(""), None);
    }

    /// The boot id script and the scheduling shell run under `sh` (the reboot itself
    /// replaced by a marker: the test must not reboot the machine it runs on).
    #[test]
    fn the_scripts_run_under_sh() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(boot_id_sh())
            .output()
            .unwrap();
        if std::path::Path::new(BOOT_ID_PATH).exists() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                boot_id(&stdout).is_some_and(|id| id.len() >= 32),
                "{stdout}"
            );
        } else {
            assert!(!out.status.success());
        }
        let syntax = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(module(json!({})).apply(&Restart))
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{}",
            String::from_utf8_lossy(&syntax.stderr)
        );
    }
}
