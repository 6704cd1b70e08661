//! `wait_for`: hold the play until something is ready — a TCP port accepts connections (or
//! stops accepting them), a URL answers with a status, or a command succeeds.
//!
//! The probe runs the check once. When it already holds, the plan is `Unchanged`, so a
//! converge where everything is up costs one quick check and nothing else. Otherwise apply
//! runs a bounded loop on the host: check, give up with a message naming what was waited for
//! and for how long once `timeout` seconds have passed, sleep `interval`, check again. The
//! loop runs remotely so waiting costs no round trips.
//!
//! TCP checks cannot use `/dev/tcp` in the script itself: the scripts run under dash, which
//! has no network redirections. The check calls, in order of preference:
//! 1. `bash` (with coreutils `timeout` bounding the connect) — bash and coreutils are
//!    `Essential: yes` on Debian, so they are there even on a debootstrap minbase system;
//! 2. `python3` (`socket.create_connection`) — on most cloud and lab images, not on minimal;
//! 3. `nc -z` — either netcat flavour, when installed.
//!
//! If none exists the probe fails with a message saying so rather than guessing. One TCP
//! connect is bounded by 5 s, one URL request by 10 s, one `command` run by 10 s in the probe
//! and by `timeout` in the loop (the `command` runs in the probe too: it must be a read-only
//! check, like `pg_isready`). URL checks
//! need `curl` (`curl -sk`: certificates are not verified, since readiness of a service with a
//! self-signed certificate is still readiness; redirects are not followed, the status of the
//! URL itself is compared).

use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The port accepts connections (the URL answers, the command succeeds).
    #[default]
    Started,
    /// Nothing accepts connections on the port any more.
    Stopped,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    port: Option<u16>,
    host: Option<String>,
    url: Option<String>,
    status: Option<u16>,
    command: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(default = "default_timeout")]
    timeout: u64,
    /// Seconds to wait before the first check of the loop (the clock already runs).
    #[serde(default)]
    delay: u64,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    interval: u64,
}

/// Seconds one `command` check may take in the probe.
const PROBE_COMMAND_LIMIT: u64 = 10;

fn default_timeout() -> u64 {
    60
}

fn default_interval() -> u64 {
    1
}

/// What is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Port {
        host: String,
        port: u16,
        state: State,
    },
    Url {
        url: String,
        status: u16,
    },
    Command(String),
}

/// `wait_for` as a task.
///
/// The wait is not a change to the host: an engine reporting results should count a
/// `wait_for` that had to wait as **ok**, not **changed** (its [`Change::summary`] reads
/// "wait for 127.0.0.1:5432" so a plan still shows that it will wait). A timeout is a
/// failure, with the message from the loop. [`Effects::Wait`]: nothing it does can make
/// another task's probe stale.
#[derive(Debug)]
pub struct WaitFor {
    check: Check,
    timeout: u64,
    delay: u64,
    interval: u64,
}

/// Running the wait loop is the only action.
#[derive(Debug, PartialEq, Eq)]
pub struct Wait;

impl WaitFor {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("wait_for", args)?;
        let given = [a.port.is_some(), a.url.is_some(), a.command.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ArgError::new(
                "wait_for: give exactly one of `port`, `url` or `command`",
            ));
        }
        if a.host.is_some() && a.port.is_none() {
            return Err(ArgError::new("wait_for: `host` only applies to `port`"));
        }
        if a.status.is_some() && a.url.is_none() {
            return Err(ArgError::new("wait_for: `status` only applies to `url`"));
        }
        if a.state == State::Stopped && a.port.is_none() {
            return Err(
                ArgError::new("wait_for: state stopped only applies to `port`")
                    .hint("for a command, wait for one that succeeds once the thing is gone"),
            );
        }
        if a.timeout == 0 || a.interval == 0 {
            return Err(ArgError::new(
                "wait_for: `timeout` and `interval` must be at least 1 second",
            ));
        }
        let check = if let Some(port) = a.port {
            let host = a.host.unwrap_or_else(|| "127.0.0.1".to_string());
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(ArgError::new(format!(
                    "wait_for: host {host:?} is not a host name or address"
                )));
            }
            if port == 0 {
                return Err(ArgError::new("wait_for: port 0 cannot be connected to"));
            }
            Check::Port {
                host,
                port,
                state: a.state,
            }
        } else if let Some(url) = a.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ArgError::new(format!(
                    "wait_for: url `{url}` must start with http:// or https://"
                )));
            }
            let status = a.status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(ArgError::new(format!(
                    "wait_for: status {status} is not an HTTP status"
                )));
            }
            Check::Url { url, status }
        } else {
            let cmd = a.command.unwrap_or_default();
            if cmd.trim().is_empty() {
                return Err(ArgError::new("wait_for: `command` is empty"));
            }
            Check::Command(cmd)
        };
        Ok(WaitFor {
            check,
            timeout: a.timeout,
            delay: a.delay,
            interval: a.interval,
        })
    }

    /// "127.0.0.1:5432", "[::1]:5432", the URL, or the command in backticks.
    fn target(&self) -> String {
        match &self.check {
            Check::Port { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Check::Port { host, port, .. } => format!("{host}:{port}"),
            Check::Url { url, .. } => url.clone(),
            Check::Command(c) => format!("`{c}`"),
        }
    }

    /// Shell defining `bosun_ready`: returns 0 when the condition holds and leaves what it
    /// saw in `$now` (`open`/`closed`, the HTTP status, or the exit code). `command_limit`
    /// bounds one run of a `command` check: short in the probe (a hung check must not hold
    /// up every other task's probe; "not yet" only costs a wait), `timeout` in the loop.
    fn setup(&self, command_limit: u64) -> String {
        match &self.check {
            Check::Port { host, port, state } => {
                let t = self.timeout.min(5);
                let want = match state {
                    State::Started => "open",
                    State::Stopped => "closed",
                };
                format!(
                    "if command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then\n\
                     bosun_tcp() {{ timeout {t} bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' \"$1\" \"$2\" >/dev/null 2>&1; }}\n\
                     elif command -v python3 >/dev/null 2>&1; then\n\
                     bosun_tcp() {{ python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), {t}).close()' \"$1\" \"$2\" >/dev/null 2>&1; }}\n\
                     elif command -v nc >/dev/null 2>&1; then\n\
                     bosun_tcp() {{ nc -z -w {t} \"$1\" \"$2\" >/dev/null 2>&1; }}\n\
                     else\n\
                     echo 'wait_for: cannot test TCP ports on this host: none of bash, python3 or nc is installed' >&2; exit 3\n\
                     fi\n\
                     bosun_ready() {{ if bosun_tcp {} {port}; then now=open; else now=closed; fi; [ \"$now\" = {want} ]; }}\n",
                    quote(host)
                )
            }
            Check::Url { url, status } => {
                let t = self.timeout.min(10);
                format!(
                    "command -v curl >/dev/null 2>&1 || {{ printf 'wait_for: curl is not installed on this host, so %s cannot be checked (apt install curl)\\n' {u} >&2; exit 3; }}\n\
                     bosun_ready() {{ now=$(curl -sk -o /dev/null -m {t} -w '%{{http_code}}' {u} 2>/dev/null); now=${{now:-000}}; [ \"$now\" = {status} ]; }}\n",
                    u = quote(url)
                )
            }
            Check::Command(cmd) => format!(
                "bosun_ready() {{ timeout {} sh -c {} >/dev/null 2>&1 </dev/null; now=$?; [ \"$now\" -eq 0 ]; }}\n",
                command_limit,
                quote(cmd)
            ),
        }
    }

    /// Shell that prints why the loop gave up (to stderr), using `$now`.
    fn give_up(&self) -> String {
        let (n, target) = (self.timeout, quote(&self.target()));
        match &self.check {
            Check::Port { state: State::Started, .. } => {
                format!("printf 'wait_for: %s did not accept connections within {n}s\\n' {target} >&2")
            }
            Check::Port { state: State::Stopped, .. } => {
                format!("printf 'wait_for: %s still accepted connections after {n}s\\n' {target} >&2")
            }
            Check::Url { status, .. } => format!(
                "[ \"$now\" = 000 ] && now='no HTTP answer'\n\
                 printf 'wait_for: %s did not answer {status} within {n}s (last: %s)\\n' {target} \"$now\" >&2"
            ),
            Check::Command(_) => {
                format!("printf 'wait_for: %s did not succeed within {n}s (last exit code %s)\\n' {target} \"$now\" >&2")
            }
        }
    }

    /// What the probe saw, for the plan's details.
    fn describe_now(&self, now: &str) -> String {
        match (&self.check, now) {
            (Check::Port { .. }, "open") => "now: accepting connections".into(),
            (Check::Port { .. }, _) => "now: not accepting connections".into(),
            (Check::Url { .. }, "000") => "now: no HTTP answer".into(),
            (Check::Url { .. }, s) => format!("now: answers {s}"),
            (Check::Command(_), "124") => format!(
                "now: still running after {}s",
                self.timeout.min(PROBE_COMMAND_LIMIT)
            ),
            (Check::Command(_), rc) => format!("now: exit code {rc}"),
        }
    }
}

impl Module for WaitFor {
    type Action = Wait;

    fn probe(&self) -> Option<String> {
        Some(format!(
            "{}if bosun_ready; then echo ready=yes; else echo ready=no; fi\necho \"now=$now\"\n",
            self.setup(self.timeout.min(PROBE_COMMAND_LIMIT))
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Wait>, ModuleError> {
        probe_failed(observed)?;
        let kv = observed.kv();
        let now = kv.get("now").copied().unwrap_or_default();
        let target = self.target();
        match kv.get("ready").copied() {
            Some("yes") => Ok(Plan::unchanged(match &self.check {
                Check::Port {
                    state: State::Started,
                    ..
                } => format!("{target} accepts connections"),
                Check::Port {
                    state: State::Stopped,
                    ..
                } => format!("nothing accepts connections on {target}"),
                Check::Url { status, .. } => format!("{target} answers {status}"),
                Check::Command(_) => format!("{target} succeeds"),
            })),
            Some("no") => {
                let summary = match &self.check {
                    Check::Port {
                        state: State::Started,
                        ..
                    }
                    | Check::Command(_) => format!("wait for {target}"),
                    Check::Port {
                        state: State::Stopped,
                        ..
                    } => {
                        format!("wait until nothing accepts connections on {target}")
                    }
                    Check::Url { status, .. } => format!("wait for {target} to answer {status}"),
                };
                let mut timing =
                    format!("up to {}s, checking every {}s", self.timeout, self.interval);
                if self.delay > 0 {
                    timing.push_str(&format!(", first after {}s", self.delay));
                }
                Ok(Plan::Change(
                    Change::new(summary, Wait).with_details(vec![timing, self.describe_now(now)]),
                ))
            }
            _ => Err(ModuleError::new(format!(
                "unexpected probe output: {:?}",
                observed.stdout
            ))),
        }
    }

    fn apply(&self, _: &Wait) -> String {
        let mut s = self.setup(self.timeout);
        s.push_str("start=$(date +%s)\n");
        if self.delay > 0 {
            s.push_str(&format!("sleep {}\n", self.delay));
        }
        s.push_str(&format!(
            "until bosun_ready; do\n\
             if [ $(($(date +%s) - start)) -ge {} ]; then\n{}\nexit 1\nfi\n\
             sleep {}\n\
             done\n",
            self.timeout,
            self.give_up(),
            self.interval
        ));
        s
    }

    fn effects(&self) -> Effects {
        Effects::Wait
    }

    /// Starts an interpreter or a client on every probe.
    fn slow_probe(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;
    use serde_json::json;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    fn module(v: Value) -> WaitFor {
        WaitFor::from_args(v).expect("valid args")
    }

    /// A loopback port nothing listens on (bound, read, released).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn ready_port_is_unchanged() {
        let m = module(json!({"port": 5432}));
        match m.plan(&Observed::stdout("ready=yes\nnow=open\n")).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "127.0.0.1:5432 accepts connections"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn closed_port_plans_a_wait() {
        let m = module(json!({"port": 5432, "timeout": 30, "delay": 2}));
        match m.plan(&Observed::stdout("ready=no\nnow=closed\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "wait for 127.0.0.1:5432");
                assert_eq!(
                    c.details,
                    vec![
                        "up to 30s, checking every 1s, first after 2s",
                        "now: not accepting connections"
                    ]
                );
                assert!(!c.always);
                let s = m.apply(&c.action);
                assert!(s.contains("sleep 2\nuntil bosun_ready; do\n"), "{s}");
                assert!(s.contains("-ge 30 ]"), "{s}");
                assert!(s.contains("did not accept connections within 30s"), "{s}");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn stopped_waits_for_the_port_to_close() {
        let m = module(json!({"port": 8080, "host": "::1", "state": "stopped"}));
        assert!(matches!(
            m.plan(&Observed::stdout("ready=yes\nnow=closed\n"))
                .unwrap(),
            Plan::Unchanged { .. }
        ));
        match m.plan(&Observed::stdout("ready=no\nnow=open\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(
                    c.summary,
                    "wait until nothing accepts connections on [::1]:8080"
                );
                assert!(m.apply(&c.action).contains("[ \"$now\" = closed ]"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn url_and_command_plans() {
        let m = module(json!({"url": "https://localhost:8443/health", "status": 204}));
        match m.plan(&Observed::stdout("ready=no\nnow=000\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(
                    c.summary,
                    "wait for https://localhost:8443/health to answer 204"
                );
                assert_eq!(c.details[1], "now: no HTTP answer");
            }
            p => panic!("{p:?}"),
        }
        match m.plan(&Observed::stdout("ready=yes\nnow=204\n")).unwrap() {
            Plan::Unchanged { reason } => {
                assert_eq!(reason, "https://localhost:8443/health answers 204")
            }
            p => panic!("{p:?}"),
        }
        let m = module(json!({"command": "pg_isready -q"}));
        // One check is bounded by 10s in the probe, by the whole timeout in the loop.
        assert!(m
            .probe()
            .unwrap()
            .contains("timeout 10 sh -c 'pg_isready -q'"));
        assert!(m.apply(&Wait).contains("timeout 60 sh -c 'pg_isready -q'"));
        match m.plan(&Observed::stdout("ready=no\nnow=2\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "wait for `pg_isready -q`");
                assert_eq!(c.details[1], "now: exit code 2");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn probe_failure_is_an_error() {
        let m = module(json!({"url": "http://x/"}));
        let failed = Observed {
            rc: 3,
            stdout: String::new(),
            stderr:
                "wait_for: curl is not installed on this host, so http://x/ cannot be checked\n"
                    .into(),
        };
        assert!(m
            .plan(&failed)
            .unwrap_err()
            .0
            .contains("curl is not installed"));
        assert!(m.plan(&Observed::stdout("")).is_err());
    }

    #[test]
    fn tcp_probe_sees_a_listener_on_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let m = module(json!({"port": port}));
        let obs = run(&m.probe().unwrap());
        assert_eq!(obs.rc, 0, "{}", obs.stderr);
        assert!(
            matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }),
            "{obs:?}"
        );
        drop(listener);
        let closed = module(json!({"port": free_port()}));
        let obs = run(&closed.probe().unwrap());
        assert!(
            matches!(closed.plan(&obs).unwrap(), Plan::Change(_)),
            "{obs:?}"
        );
        let stopped = module(json!({"port": free_port(), "state": "stopped"}));
        assert!(matches!(
            stopped.plan(&run(&stopped.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn tcp_probe_falls_back_to_python3_without_bash() {
        // The real interpreter, not a wrapper script such as a pyenv shim.
        let py = run("python3 -c 'import sys; print(sys.executable)'");
        if py.rc != 0 {
            return; // the fallback needs python3; bash is tested above
        }
        // A PATH holding python3 only: no bash, no timeout, no nc.
        let dir = std::env::temp_dir().join(format!("bosun-wf-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(py.stdout.trim(), dir.join("python3")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let m = module(json!({"port": port}));
        let script = format!("PATH={}\n{}", dir.display(), m.probe().unwrap());
        let obs = run(&script);
        assert_eq!(obs.kv().get("ready"), Some(&"yes"), "{obs:?}");
        drop(listener);
        assert_eq!(run(&script).kv().get("ready"), Some(&"no"));
        // And with nothing usable, the probe fails instead of guessing.
        std::fs::remove_file(dir.join("python3")).unwrap();
        let obs = run(&script);
        assert_eq!(obs.rc, 3);
        assert!(m
            .plan(&obs)
            .unwrap_err()
            .0
            .contains("none of bash, python3 or nc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wait_loop_succeeds_once_the_port_opens() {
        let port = free_port();
        let m = module(json!({"port": port, "timeout": 20}));
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            // Keep it open long enough for the loop's next check.
            std::thread::sleep(Duration::from_secs(3));
            drop(l);
        });
        let r = run(&m.apply(&Wait));
        opener.join().unwrap();
        assert_eq!(r.rc, 0, "{}", r.stderr);
    }

    #[test]
    fn wait_loop_gives_up_with_a_clear_message() {
        let port = free_port();
        let m = module(json!({"port": port, "timeout": 2}));
        let t = Instant::now();
        let r = run(&m.apply(&Wait));
        assert_eq!(r.rc, 1);
        assert_eq!(
            r.stderr.trim(),
            format!("wait_for: 127.0.0.1:{port} did not accept connections within 2s")
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let m = module(json!({"command": "exit 3", "timeout": 1}));
        let r = run(&m.apply(&Wait));
        assert_eq!(
            r.stderr.trim(),
            "wait_for: `exit 3` did not succeed within 1s (last exit code 3)"
        );
    }

    #[test]
    fn command_probe_runs() {
        let m = module(json!({"command": "test -d /"}));
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
        let m = module(json!({"command": "test -d /nonexistent-bosun"}));
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Change(_)
        ));
    }

    #[test]
    fn url_probe_reads_the_status() {
        if run("command -v curl").rc != 0 {
            return; // curl is a documented prerequisite of url checks on targets, not of tests
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        let m = module(json!({"url": format!("http://127.0.0.1:{port}/health"), "status": 204}));
        let obs = run(&m.probe().unwrap());
        server.join().unwrap();
        assert_eq!(obs.kv().get("now"), Some(&"204"), "{obs:?}");
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn bad_args_are_rejected() {
        let bad = [
            json!({}),
            json!({"port": 1, "url": "http://x"}),
            json!({"url": "ftp://x"}),
            json!({"url": "http://x", "status": 42}),
            json!({"command": "x", "host": "h"}),
            json!({"port": 1, "status": 200}),
            json!({"command": "x", "state": "stopped"}),
            json!({"port": 1, "timeout": 0}),
            json!({"port": 1, "interval": 0}),
            json!({"port": 0}),
            json!({"port": 70000}),
            json!({"port": 1, "host": "a b"}),
            json!({"command": " "}),
            json!({"port": 1, "sleep": 1}),
        ];
        for b in bad {
            assert!(WaitFor::from_args(b.clone()).is_err(), "accepted {b}");
        }
    }
}
