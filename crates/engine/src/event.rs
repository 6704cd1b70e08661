//! What the engine reports. The engine never prints: the CLI renders these as progress
//! bars and a recap, or as one JSON object per line (`--output json`).
//!
//! Every event passes through the [`bosun_model::redact::Redactor`] before it leaves the engine,
//! so no renderer can leak a secret.

use bosun_model::redact::Redactor;
use serde::{Deserialize, Serialize};

/// How one task ended on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
    /// Failed, under `ignore_errors`: reported and registered, and the host carries on.
    Ignored,
}

/// A file's diff, rendered once in unified form (the CLI only colours it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    pub unified: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskReport {
    pub host: String,
    pub play: String,
    pub role: String,
    pub task: String,
    pub status: Status,
    /// Loop item label, when the task loops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub details: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<FileDiff>,
    /// In check mode, after an earlier pending change this plan is a prediction.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub predicted: bool,
    /// An unguarded command: changes on every run by design.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub always: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub handler: bool,
    /// Shown without `-v`: the task exists to show its message (`debug`, `assert`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub shown: bool,
    /// In a block's `rescue`: it runs because a task of the block failed.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub rescue: bool,
    /// Why nothing changed, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostRecap {
    pub host: String,
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Failures under `ignore_errors`.
    #[serde(default)]
    pub ignored: u32,
    /// Failures a block's `rescue` handled (the host went on).
    #[serde(default)]
    pub rescued: u32,
    pub unreachable: bool,
    /// The run was interrupted before this host was done.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub interrupted: bool,
    pub seconds: f64,
    /// Remote scripts run on this host (one per probe or apply round trip).
    pub execs: u64,
    /// Execs per play, in play order.
    pub execs_per_play: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        site: String,
        inventory: String,
        check: bool,
        hosts: Vec<String>,
        plays: usize,
    },
    PlayStart {
        play: String,
        hosts: Vec<String>,
    },
    HostConnected {
        host: String,
        seconds: f64,
    },
    Task(TaskReport),
    HandlersSkipped {
        host: String,
        play: String,
        handlers: Vec<String>,
    },
    /// Handlers an earlier run notified but never ran (it was interrupted or failed):
    /// they run at the end of this play.
    HandlersPending {
        host: String,
        play: String,
        handlers: Vec<String>,
    },
    HostUnreachable {
        host: String,
        message: String,
    },
    HostFailed {
        host: String,
        play: String,
        task: String,
        message: String,
    },
    PlayEnd {
        play: String,
        aborted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Recap {
        hosts: Vec<HostRecap>,
        /// (host, task) of every task that changed: after a converge that should have
        /// been a no-op, this says exactly what was not idempotent.
        changed_tasks: Vec<(String, String)>,
        seconds: f64,
        check: bool,
        /// Ctrl-C or SIGTERM stopped the run early.
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        interrupted: bool,
    },
}

impl Event {
    /// Scrubs every string inside an event. It cannot fail: the event is walked field by
    /// field, so there is no conversion that could hand it back unredacted.
    pub fn redacted(mut self, r: &Redactor) -> Event {
        let m = r.secrets().snapshot();
        if m.is_empty() {
            return self;
        }
        self.for_each_string(&mut |s: &mut String| {
            let r = m.redact(s);
            if r != *s {
                *s = r;
            }
        });
        self
    }

    /// Calls `f` on every string of the event (names, messages, diffs, labels), for the
    /// redactor and the renderer's escape stripping. Every field is named, with no `..`:
    /// a new string field does not compile until it is handled here.
    pub fn for_each_string(&mut self, f: &mut dyn FnMut(&mut String)) {
        fn all(v: &mut [String], f: &mut dyn FnMut(&mut String)) {
            v.iter_mut().for_each(f);
        }
        match self {
            Event::RunStart {
                site,
                inventory,
                check: _,
                hosts,
                plays: _,
            } => {
                f(site);
                f(inventory);
                all(hosts, f);
            }
            Event::PlayStart { play, hosts } => {
                f(play);
                all(hosts, f);
            }
            Event::HostConnected { host, seconds: _ } => f(host),
            Event::Task(r) => r.for_each_string(f),
            Event::HandlersSkipped {
                host,
                play,
                handlers,
            }
            | Event::HandlersPending {
                host,
                play,
                handlers,
            } => {
                f(host);
                f(play);
                all(handlers, f);
            }
            Event::HostUnreachable { host, message } => {
                f(host);
                f(message);
            }
            Event::HostFailed {
                host,
                play,
                task,
                message,
            } => {
                f(host);
                f(play);
                f(task);
                f(message);
            }
            Event::PlayEnd {
                play,
                aborted: _,
                reason,
            } => {
                f(play);
                if let Some(r) = reason {
                    f(r);
                }
            }
            Event::Recap {
                hosts,
                changed_tasks,
                seconds: _,
                check: _,
                interrupted: _,
            } => {
                for h in hosts {
                    let HostRecap {
                        host,
                        ok: _,
                        changed: _,
                        failed: _,
                        skipped: _,
                        ignored: _,
                        rescued: _,
                        unreachable: _,
                        interrupted: _,
                        seconds: _,
                        execs: _,
                        execs_per_play: _,
                    } = h;
                    f(host);
                }
                for (h, t) in changed_tasks {
                    f(h);
                    f(t);
                }
            }
        }
    }
}

impl TaskReport {
    fn for_each_string(&mut self, f: &mut dyn FnMut(&mut String)) {
        let TaskReport {
            host,
            play,
            role,
            task,
            status: _,
            item,
            summary,
            details,
            diff,
            predicted: _,
            always: _,
            handler: _,
            shown: _,
            rescue: _,
            message,
        } = self;
        for s in [host, play, role, task] {
            f(s);
        }
        for s in [item, summary, message].into_iter().flatten() {
            f(s);
        }
        details.iter_mut().for_each(&mut *f);
        if let Some(FileDiff { path, unified }) = diff {
            f(path);
            f(unified);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_model::redact::Redactor;

    #[test]
    fn masks_values_everywhere_in_an_event() {
        let r = Redactor::new(
            &[
                "hunter22".to_string(),
                "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----".to_string(),
            ]
            .into(),
        );
        let ev = Event::HostFailed {
            host: "h".into(),
            play: "p".into(),
            task: "t".into(),
            message: "password=hunter22 and +AAAABBBBCCCC".into(),
        };
        let s = serde_json::to_string(&ev.redacted(&r)).unwrap();
        assert!(!s.contains("hunter22"));
        assert!(!s.contains("AAAABBBBCCCC"));
        assert!(s.contains("password=<redacted>"));
    }

    #[test]
    fn event_redaction_cannot_fail_open() {
        // A NaN cannot round-trip through serde_json: a conversion-based redactor used to
        // hand such an event back untouched.
        let r = Redactor::new(&["hunter22".to_string()].into());
        let ev = Event::Recap {
            hosts: vec![HostRecap {
                host: "hunter22-box".into(),
                seconds: f64::NAN,
                ..Default::default()
            }],
            changed_tasks: vec![("h".into(), "set hunter22".into())],
            seconds: f64::NAN,
            check: false,
            interrupted: false,
        };
        let s = format!("{:?}", ev.redacted(&r));
        assert!(!s.contains("hunter22"), "{s}");
        assert!(s.contains("<redacted>-box"), "{s}");
    }
}
