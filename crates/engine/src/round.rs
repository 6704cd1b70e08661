//! The pieces of one round of one host, each pure so it can be tested without a host:
//!
//! 1. [`probes`]: the round queue → one probe script ([`Probes`]);
//! 2. [`plan`]: what the probes printed → a plan per unit, up to the first unit whose probe
//!    a change planned before it may have made stale;
//! 3. [`applies`]: those plans → one apply script ([`Applies`]);
//! 4. [`outcomes`] and [`Applies::interpret`]: plans and the apply script's output → what
//!    each unit reports and the result `register` sees ([`Outcome`]).
//!
//! [`crate::host::HostRun`] runs the two scripts between these steps and does the
//! reporting (events, stats, `changed_when`/`failed_when`): nothing here sends an event or
//! touches the transport, so a round is still one probe and one apply round trip.

use crate::batch::{Batch, StepEnd};
use crate::event::Status;
use crate::host::record_notification;
use crate::modules::{fileops, Change, Diff, DynModule, Effects, ModuleError, Observed, Plan};
use crate::remote::Killed;
use bosun_model::shell::quote;
use serde_json::{json, Value};
use std::any::Any;
use std::time::Duration;

/// One unit of the round queue, with what the round needs of its task.
pub struct RoundUnit<'a> {
    pub module: &'a dyn DynModule,
    /// How long its probe step may run.
    pub probe_limit: Duration,
    /// How long its apply step may run.
    pub task_limit: Duration,
    /// The task's role, where its notifications are recorded.
    pub role: &'a str,
    /// The handlers a change notifies (recorded on the host by the apply step itself).
    pub notify: &'a [String],
    /// `become_user`: the account its probe and apply run as (root when `None`).
    pub become_user: Option<&'a str>,
}

/// `body` run as `user` (the task's `become_user`): with `runuser` when the script runs as
/// root (it needs no password), with `sudo -n -u` otherwise. It starts in the user's home,
/// since the script's own directory may be one the user cannot enter (`/root`).
pub fn as_user(user: Option<&str>, body: &str) -> String {
    let Some(user) = user else {
        return body.to_string();
    };
    let u = quote(user);
    let inner = quote(&format!("cd \"$HOME\" 2>/dev/null || cd /\n{body}\n"));
    format!(
        "if [ \"$(id -u)\" = 0 ]; then runuser -u {u} -- /bin/sh -c {inner}; \
         else sudo -n -H -u {u} -- /bin/sh -c {inner}; fi"
    )
}

/// The result of one unit, in the shape `register` exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitResult {
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
    pub msg: String,
    /// The module's own fields ([`crate::modules::Module::registered`]).
    pub extra: serde_json::Map<String, Value>,
}

impl UnitResult {
    /// `stdout`/`stderr` lose their trailing newline, as Ansible's do: `who.stdout ==
    /// 'nobody'` holds for `id -un`.
    pub fn to_json(&self) -> Value {
        let stdout = self.stdout.trim_end_matches(['\n', '\r']);
        let stderr = self.stderr.trim_end_matches(['\n', '\r']);
        let mut v = json!({
            "changed": self.changed,
            "failed": self.failed,
            "skipped": self.skipped,
            "rc": self.rc,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_lines": stdout.lines().collect::<Vec<_>>(),
            "stderr_lines": stderr.lines().collect::<Vec<_>>(),
            "msg": self.msg,
        });
        if let Some(m) = v.as_object_mut() {
            m.extend(self.extra.clone());
        }
        v
    }
}

/// How the last remote script of a host ended, for the messages of its unfinished steps.
#[derive(Debug, Default, Clone)]
pub struct LastScript {
    pub rc: i32,
    pub stderr: String,
    pub killed: Option<Killed>,
    /// Steps killed for overstaying, with their limit.
    pub expired: Vec<(usize, Duration)>,
}

impl LastScript {
    /// Why probe step `step` of this script has no result.
    pub fn unfinished_probe(&self, end: Option<&StepEnd>, step: usize) -> String {
        self.why_unfinished(end, step, "the probe", "`probe_timeout`")
    }

    /// Why apply step `step` of this script has no result.
    pub fn unfinished_apply(&self, end: &StepEnd, step: usize) -> String {
        self.why_unfinished(Some(end), step, "the change", "`task_timeout`")
    }

    fn why_unfinished(
        &self,
        end: Option<&StepEnd>,
        step: usize,
        what: &str,
        deadline: &str,
    ) -> String {
        if let Some((_, limit)) = self.expired.iter().find(|(i, _)| *i == step) {
            return format!(
                "{what} did not finish within {} (deadline: the task's `timeout`, else \
                 {deadline}); its processes on the host were killed",
                secs(*limit),
            );
        }
        let status = if self.stderr.is_empty() {
            format!("exit code {}", self.rc)
        } else {
            format!("exit code {}: {}", self.rc, self.stderr)
        };
        match (self.killed, end) {
            (Some(Killed::Interrupted), _) => {
                format!("{what} was stopped: the run was interrupted")
            }
            (Some(Killed::Deadline), _) => {
                format!("{what} was stopped with a step that overstayed its deadline")
            }
            (None, Some(StepEnd::Unfinished { .. })) => {
                format!("{what} began but did not finish (the remote script ended: {status})")
            }
            _ => format!("{what} did not run: the remote script ended before it ({status})"),
        }
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The probe script of a round, and where each unit's observation will be found.
pub struct Probes<'a> {
    pub batch: Batch,
    /// The batch step of each unit; `None` for a unit without a probe or with a path probe.
    step_of: Vec<Option<usize>>,
    /// Path probes, answered together by one step (see [`crate::modules::Module::path_probe`]).
    shared: Vec<(&'a str, Option<&'a str>)>,
    /// The unit of each path in `shared`.
    shared_of: Vec<usize>,
    shared_step: Option<usize>,
    /// The step printing the notifications an earlier run recorded, if asked for.
    pub pending_step: Option<usize>,
    /// The step gathering facts, if asked for.
    pub facts_step: Option<usize>,
}

/// Builds the probe script of a round: one step per unit that probes (slow probes in the
/// background), one shared step for all path probes (a fixed number of processes on the
/// host for all of them), then the pending notifications (`pending`, a script) and the
/// facts (when `facts`), both with the host's probe deadline `limit`.
pub fn probes<'a>(
    units: &[RoundUnit<'a>],
    pending: Option<&str>,
    facts: bool,
    limit: Duration,
) -> Probes<'a> {
    let mut batch = Batch::new(false);
    let mut step_of = Vec::with_capacity(units.len());
    let mut shared = Vec::new();
    let mut shared_of = Vec::new();
    for (qi, u) in units.iter().enumerate() {
        let m = u.module;
        // A path probe shared with the others runs as root: one that must see the files
        // as another user does runs its own probe, as that user.
        match m.path_probe().filter(|_| u.become_user.is_none()) {
            Some(pp) => {
                shared.push(pp);
                shared_of.push(qi);
                step_of.push(None);
            }
            None => step_of.push(m.probe().map(|p| {
                let p = as_user(u.become_user, &p);
                if m.slow_probe() {
                    batch.push_background(&p, u.probe_limit)
                } else {
                    batch.push_limited(&p, u.probe_limit)
                }
            })),
        }
    }
    let shared_step =
        (!shared.is_empty()).then(|| batch.push_limited(&fileops::probe_paths(&shared), limit));
    let pending_step = pending.map(|p| batch.push_limited(p, limit));
    let facts_step = facts.then(|| batch.push_background(crate::facts::SCRIPT, limit));
    Probes {
        batch,
        step_of,
        shared,
        shared_of,
        shared_step,
        pending_step,
        facts_step,
    }
}

impl<'a> Probes<'a> {
    /// The shared path step taken apart into one observation per path, in the order of
    /// the units that asked; empty when there are no path probes. `None` when something did
    /// not add up (a path changed under us, an unreadable file): then those paths are
    /// probed one by one with [`Self::shared_fallback`], as each module would.
    pub fn split_shared(&self, observed: &[StepEnd]) -> Option<Vec<StepEnd>> {
        let Some(ss) = self.shared_step else {
            return Some(Vec::new());
        };
        let o = observed.get(ss).cloned().and_then(StepEnd::done)?;
        let split = fileops::split_probe_paths(&self.shared, &o)?;
        Some(split.into_iter().map(StepEnd::Done).collect())
    }

    /// A probe script with each path-probing unit's own probe, one step per path.
    pub fn shared_fallback(&self, units: &[RoundUnit], limit: Duration) -> Batch {
        let mut one = Batch::new(false);
        for &qi in &self.shared_of {
            let body = units
                .get(qi)
                .and_then(|u| u.module.probe())
                .unwrap_or_default();
            one.push_limited(&body, limit);
        }
        one
    }

    /// Every unit's observation: `observed` (the probe script's steps) followed by
    /// `shared` (the path probes, from [`Self::split_shared`] or the fallback script).
    pub fn observations(self, mut observed: Vec<StepEnd>, shared: Vec<StepEnd>) -> Observations {
        let mut step_of = self.step_of;
        for (k, &qi) in self.shared_of.iter().enumerate() {
            if let Some(s) = step_of.get_mut(qi) {
                *s = Some(observed.len());
            }
            observed.push(shared.get(k).cloned().unwrap_or(StepEnd::NotRun));
        }
        Observations {
            ends: observed,
            step_of,
        }
    }
}

/// What each unit's probe printed, by unit.
#[derive(Debug, Default)]
pub struct Observations {
    ends: Vec<StepEnd>,
    step_of: Vec<Option<usize>>,
}

impl Observations {
    /// The step of unit `qi`'s probe and how it ended (`None`: it never reported);
    /// `None` for a unit without a probe.
    fn of(&self, qi: usize) -> Option<(usize, Option<&StepEnd>)> {
        let step = (*self.step_of.get(qi)?)?;
        Some((step, self.ends.get(step)))
    }
}

/// What planning decided for one unit.
#[derive(Debug)]
pub enum Planned {
    /// Its probe did not finish; the unit fails and the round ends with it.
    ProbeUnfinished { step: usize, end: Option<StepEnd> },
    /// Check mode: the plan failed, but on a state an earlier change would alter first.
    Predicted(ModuleError),
    /// The plan failed; the round ends with it.
    Failed(ModuleError),
    Unchanged {
        reason: String,
        /// The module's fields for the registered result, read from the probe.
        fields: serde_json::Map<String, Value>,
    },
    Change {
        change: Change<Box<dyn Any + Send + Sync>>,
        /// Check mode: planned on a state an earlier change would alter first.
        predicted: bool,
        /// The probe went stale, but the module tests this condition again on the host right
        /// before applying.
        guard: Option<String>,
        /// A wait: it changes nothing itself.
        wait_only: bool,
        /// The module's fields for the registered result, read from the probe (an apply's
        /// output replaces them).
        fields: serde_json::Map<String, Value>,
    },
}

/// Plans the units in order, against `obs`, and stops after the first that fails or
/// before the first whose probe an earlier change of this round may have made stale
/// (unless its module can test its guard again on the host): the next round probes it
/// again. Returns one plan per unit planned, from the front of `units`.
///
/// `pending` holds the effects of changes already made (or, in `check` mode, that would
/// be made) in this play; each change planned here is added to it.
pub fn plan(
    units: &[RoundUnit],
    obs: &Observations,
    check: bool,
    pending: &mut Vec<Effects>,
) -> Vec<Planned> {
    let mut out = Vec::new();
    // What this round's apply script will have changed before each unit.
    let mut applied: Vec<Effects> = Vec::new();
    for (qi, u) in units.iter().enumerate() {
        let m = u.module;
        let effects = m.effects();
        let mut guard = None;
        if !check && stale(&effects, &applied) {
            match m.apply_guard() {
                Some(g) => guard = Some(g),
                None => break,
            }
        }
        let observed = match obs.of(qi) {
            // The guard is tested on the host; the stale probe is not looked at.
            _ if guard.is_some() => Observed::default(),
            Some((_, Some(StepEnd::Done(o)))) => o.clone(),
            Some((step, end)) => {
                out.push(Planned::ProbeUnfinished {
                    step,
                    end: end.cloned(),
                });
                break;
            }
            None => Observed::default(),
        };
        let planned = match m.plan(&observed) {
            // In check mode the state this plan saw may not exist yet: an earlier task
            // would install the package or write the unit. Report a prediction.
            Err(err) if check && stale(&effects, pending) => {
                pending.push(effects);
                Planned::Predicted(err)
            }
            Err(err) => {
                out.push(Planned::Failed(err));
                break;
            }
            Ok(Plan::Unchanged { reason }) => Planned::Unchanged {
                reason,
                fields: m.registered(&observed),
            },
            Ok(Plan::Change(change)) => {
                let wait_only = effects == Effects::Wait;
                let predicted = check && stale(&effects, pending);
                if check {
                    pending.push(effects);
                } else {
                    // Waiting means the host is expected to change under us (a server
                    // coming up): everything probed after a wait is probed again.
                    let effects = if wait_only {
                        Effects::Host
                    } else {
                        m.applied_effects(change.action.as_ref())
                    };
                    applied.push(effects.clone());
                    pending.push(effects);
                }
                Planned::Change {
                    change,
                    predicted,
                    guard,
                    wait_only,
                    fields: m.registered(&observed),
                }
            }
        };
        out.push(planned);
    }
    out
}

/// The apply script of a round, and which unit each of its steps applies.
pub struct Applies {
    pub batch: Batch,
    /// (unit, batch step) of every change, in order.
    steps: Vec<(usize, usize)>,
    /// Units applied behind a guard tested again on the host.
    rechecked: Vec<usize>,
    /// The line such a unit prints when its guard holds by then.
    guard_token: String,
    /// A step records handler notifications on the host (cleared at the end of the run).
    pub records_notification: bool,
}

/// Builds the apply script of the changes in `planned` (not in check mode: nothing is
/// applied then). A change that notifies handlers records the notification on the host in
/// the same step, so a run that dies before its handlers leaves them pending for the next
/// one. A guarded change prints `guard_token` instead of applying when its guard holds;
/// the token must be one no apply prints (a random one).
pub fn applies(units: &[RoundUnit], planned: &[Planned], guard_token: String) -> Applies {
    let mut a = Applies {
        batch: Batch::new(true),
        steps: Vec::new(),
        rechecked: Vec::new(),
        guard_token,
        records_notification: false,
    };
    for (i, (u, p)) in units.iter().zip(planned).enumerate() {
        let Planned::Change {
            change,
            guard,
            wait_only,
            ..
        } = p
        else {
            continue;
        };
        if u.module.applies_on_controller() {
            continue;
        }
        // The notification is recorded as root, in bosun's own state directory.
        let mut body = as_user(u.become_user, &u.module.apply(change.action.as_ref()));
        if !wait_only && !u.notify.is_empty() {
            a.records_notification = true;
            body = format!(
                "( {body}\n) || exit $?\n{}",
                record_notification(u.role, u.notify)
            );
        }
        let step = match guard {
            Some(g) => {
                a.rechecked.push(i);
                a.batch.push_limited(
                    &format!(
                        "if {}; then echo '{}'; exit 0; fi\n{body}",
                        as_user(u.become_user, g),
                        a.guard_token
                    ),
                    u.task_limit,
                )
            }
            None => a.batch.push_limited(&body, u.task_limit),
        };
        a.steps.push((i, step));
    }
    a
}

/// What one unit reports at the end of a round, and the result `register` sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub summary: Option<String>,
    pub details: Vec<String>,
    /// The change's diff, unrendered (the caller renders it when asked to).
    pub diff: Option<Diff>,
    pub always: bool,
    pub predicted: bool,
    pub message: Option<String>,
    pub result: UnitResult,
}

impl Outcome {
    fn new(status: Status, result: UnitResult) -> Self {
        Outcome {
            status,
            summary: None,
            details: Vec::new(),
            diff: None,
            always: false,
            predicted: false,
            message: None,
            result,
        }
    }
}

/// What each planned unit reports before anything is applied (in check mode, what it
/// reports at all). `last` is the probe script, for the units whose probe did not finish.
pub fn outcomes(
    units: &[RoundUnit],
    planned: Vec<Planned>,
    check: bool,
    last: &LastScript,
) -> Vec<Outcome> {
    units
        .iter()
        .zip(planned)
        .map(|(u, p)| match p {
            Planned::ProbeUnfinished { step, end } => {
                let mut o = Outcome::new(
                    Status::Failed,
                    UnitResult {
                        failed: true,
                        ..Default::default()
                    },
                );
                o.message = Some(last.unfinished_probe(end.as_ref(), step));
                o
            }
            Planned::Predicted(err) => {
                let mut o = Outcome::new(
                    Status::Changed,
                    UnitResult {
                        changed: true,
                        skipped: true,
                        ..Default::default()
                    },
                );
                o.predicted = true;
                o.summary = Some(format!("depends on earlier changes; now: {}", err.0));
                o
            }
            Planned::Failed(err) => {
                let mut o = Outcome::new(
                    Status::Failed,
                    UnitResult {
                        failed: true,
                        msg: err.0.clone(),
                        ..Default::default()
                    },
                );
                o.message = Some(format!("{}: {}", u.module.name(), err.0));
                o
            }
            Planned::Unchanged { reason, fields } => {
                let mut o = Outcome::new(
                    Status::Ok,
                    UnitResult {
                        extra: fields,
                        ..Default::default()
                    },
                );
                o.message = Some(reason);
                o
            }
            Planned::Change {
                change,
                predicted,
                wait_only,
                fields,
                ..
            } => {
                let result = if check {
                    UnitResult {
                        changed: !wait_only,
                        skipped: true,
                        msg: "check mode".into(),
                        extra: fields,
                        ..Default::default()
                    }
                } else {
                    UnitResult {
                        changed: !wait_only,
                        extra: fields,
                        ..Default::default()
                    }
                };
                // A wait only checked in check mode reports no change.
                let status = if check && wait_only {
                    Status::Ok
                } else {
                    Status::Changed
                };
                let mut o = Outcome::new(status, result);
                o.summary = Some(change.summary);
                o.details = change.details;
                o.diff = change.diff;
                o.always = change.always;
                o.predicted = predicted;
                o
            }
        })
        .collect()
}

impl Applies {
    /// Reads the apply script's step ends into the outcomes of the units it applied.
    /// Returns how many outcomes, from the front, are finished: the units after a failed
    /// step never ran and stay queued. `last` is the apply script; `units` the round's
    /// units, whose modules read their registered fields from what their apply printed.
    pub fn interpret(
        &self,
        units: &[RoundUnit],
        ends: &[StepEnd],
        last: &LastScript,
        outcomes: &mut [Outcome],
    ) -> usize {
        let mut ran = outcomes.len();
        let mut earlier_failed = false;
        for &(i, step) in &self.steps {
            let Some(o) = outcomes.get_mut(i) else {
                continue;
            };
            match ends.get(step).cloned().unwrap_or(StepEnd::NotRun) {
                StepEnd::Done(out)
                    if self.rechecked.contains(&i)
                        && out.rc == 0
                        && out.stdout.trim_end() == self.guard_token =>
                {
                    o.result.changed = false;
                    o.status = Status::Ok;
                    o.summary = None;
                    o.details.clear();
                    o.always = false;
                    o.message = Some("guard holds (tested again on the host)".into());
                }
                StepEnd::Done(out) => {
                    if let Some(u) = units.get(i) {
                        o.result.extra = u.module.registered(&out);
                    }
                    let res = &mut o.result;
                    res.rc = out.rc;
                    res.stdout = out.stdout;
                    res.stderr = out.stderr;
                    if out.rc == 0 && !res.changed {
                        // A wait that succeeded changed nothing.
                        o.status = Status::Ok;
                    }
                    if out.rc != 0 {
                        earlier_failed = true;
                        res.failed = true;
                        res.changed = false;
                        o.status = Status::Failed;
                        let why = res.stderr.trim();
                        o.message = Some(if why.is_empty() {
                            format!("exit code {}", out.rc)
                        } else {
                            format!("exit code {}: {why}", out.rc)
                        });
                    }
                }
                StepEnd::NotRun if earlier_failed => {
                    // Never ran: an earlier step failed, and with it the host.
                    ran = ran.min(i);
                }
                // Began and never ended, or the script ended before it without a failed
                // step: it fails with what is known, and is never run again (a command
                // that may have half-run must not silently run twice).
                end => {
                    earlier_failed = true;
                    o.result.failed = true;
                    o.result.changed = false;
                    o.status = Status::Failed;
                    o.message = Some(last.unfinished_apply(&end, step));
                    if let StepEnd::Unfinished { stdout } = end {
                        o.result.stdout = stdout;
                    }
                }
            }
        }
        ran
    }
}

/// Makes the planned changes that are made on the controller, not the host (see
/// [`crate::modules::Module::applies_on_controller`]), in order; not in check mode. The
/// first that fails becomes a failed plan and ends the round's plans there, as a failed
/// plan does: the units after it are planned again next round.
pub fn controller_changes(units: &[RoundUnit], planned: &mut Vec<Planned>) {
    for (i, u) in units.iter().enumerate() {
        let Some(Planned::Change { change, .. }) = planned.get(i) else {
            continue;
        };
        if !u.module.applies_on_controller() {
            continue;
        }
        if let Err(err) = u.module.apply_on_controller(change.action.as_ref()) {
            planned.truncate(i);
            planned.push(Planned::Failed(err));
            return;
        }
    }
}

/// Whether a probe with `effects` may be out of date after `applied` changes.
///
/// Host-wide changes (packages, users, commands) invalidate everything after them. Path
/// changes invalidate probes of the same path, a parent or a child. Modules that observe
/// the whole host (apt, systemd, wait_for) are re-probed after any change.
pub fn stale(effects: &Effects, applied: &[Effects]) -> bool {
    if applied.is_empty() {
        return false;
    }
    if applied.contains(&Effects::Host) {
        return true;
    }
    match effects {
        Effects::Host | Effects::None | Effects::Wait => {
            applied.iter().any(|a| *a != Effects::None)
        }
        Effects::Paths(mine) | Effects::Created(mine) => applied.iter().any(|a| match a {
            Effects::Paths(theirs) => mine.iter().any(|m| theirs.iter().any(|t| overlaps(m, t))),
            // A new empty directory: only the probes of it and of its parents went stale.
            Effects::Created(theirs) => mine.iter().any(|m| theirs.iter().any(|t| under(t, m))),
            _ => false,
        }),
    }
}

/// `x` is `dir` or lies under it.
fn under(x: &str, dir: &str) -> bool {
    x == dir || x.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

fn overlaps(a: &str, b: &str) -> bool {
    under(a, b) || under(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;

    /// A module whose every answer is given in advance: enough to drive a round's pieces
    /// without a host.
    struct Fake {
        probe: Option<String>,
        slow: bool,
        path: Option<String>,
        effects: Effects,
        /// Plans this change (its summary); `None`: unchanged.
        change: Option<String>,
        /// Planning fails with this.
        fail: Option<String>,
        guard: Option<String>,
    }

    fn fake() -> Fake {
        Fake {
            probe: None,
            slow: false,
            path: None,
            effects: Effects::Host,
            change: None,
            fail: None,
            guard: None,
        }
    }

    fn changing(summary: &str, effects: Effects) -> Fake {
        Fake {
            change: Some(summary.into()),
            effects,
            ..fake()
        }
    }

    fn paths(p: &str) -> Effects {
        Effects::Paths(vec![p.to_string()])
    }

    impl DynModule for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn probe(&self) -> Option<String> {
            self.probe.clone()
        }
        fn plan(
            &self,
            observed: &Observed,
        ) -> Result<Plan<Box<dyn Any + Send + Sync>>, ModuleError> {
            if let Some(why) = &self.fail {
                return Err(ModuleError::new(why));
            }
            Ok(match &self.change {
                Some(s) => Plan::Change(Change::new(s.clone(), Box::new(s.clone()) as _)),
                None => Plan::unchanged(format!("saw {}", observed.stdout.trim())),
            })
        }
        fn apply(&self, action: &(dyn Any + Send + Sync)) -> String {
            let what = action.downcast_ref::<String>().cloned().unwrap_or_default();
            format!("echo applying {what}\n")
        }
        fn effects(&self) -> Effects {
            self.effects.clone()
        }
        fn slow_probe(&self) -> bool {
            self.slow
        }
        fn path_probe(&self) -> Option<(&str, Option<&str>)> {
            self.path.as_deref().map(|p| (p, None))
        }
        fn applied_effects(&self, _action: &(dyn Any + Send + Sync)) -> Effects {
            self.effects.clone()
        }
        fn apply_guard(&self) -> Option<String> {
            self.guard.clone()
        }
        fn secrets(&self) -> Vec<String> {
            Vec::new()
        }

        fn shows_result(&self) -> bool {
            false
        }
    }

    const NOTIFY: &[String] = &[];

    fn units(mods: &[Fake]) -> Vec<RoundUnit<'_>> {
        mods.iter()
            .map(|m| RoundUnit {
                module: m,
                probe_limit: Duration::from_secs(1),
                task_limit: Duration::from_secs(2),
                role: "web",
                notify: NOTIFY,
                become_user: None,
            })
            .collect()
    }

    fn done(stdout: &str) -> StepEnd {
        StepEnd::Done(Observed::stdout(stdout))
    }

    /// Observations where unit `i` probed and printed `outs[i]`.
    fn observed(mods: &[Fake], outs: &[&str]) -> Observations {
        let u = units(mods);
        let p = probes(&u, None, false, Duration::from_secs(1));
        p.observations(outs.iter().map(|o| done(o)).collect(), Vec::new())
    }

    #[test]
    fn probes_put_each_kind_of_probe_in_its_place() {
        let mods = [
            Fake {
                probe: Some("echo a".into()),
                ..fake()
            },
            fake(),
            Fake {
                path: Some("/etc/x".into()),
                probe: Some("probe x".into()),
                ..fake()
            },
            Fake {
                probe: Some("echo slow".into()),
                slow: true,
                ..fake()
            },
            Fake {
                path: Some("/etc/y".into()),
                probe: Some("probe y".into()),
                ..fake()
            },
        ];
        let u = units(&mods);
        let p = probes(&u, Some("echo pending"), true, Duration::from_secs(5));
        // a, slow, the shared path step, pending, facts.
        assert_eq!(p.batch.len(), 5);
        assert_eq!((p.pending_step, p.facts_step), (Some(3), Some(4)));
        assert_eq!(p.batch.step(0), Some(("echo a", false)));
        assert_eq!(p.batch.step(1), Some(("echo slow", true)));
        assert_eq!(p.batch.step(3), Some(("echo pending", false)));
        assert_eq!(p.batch.step(4), Some((crate::facts::SCRIPT, true)));
        let shared = p.batch.step(2).map(|s| s.0).unwrap_or_default();
        assert!(shared.contains("/etc/x") && shared.contains("/etc/y"));
        assert!(!shared.contains("probe x"), "path probes share one step");
        let fallback = p.shared_fallback(&u, Duration::from_secs(5));
        assert_eq!(fallback.len(), 2);
        assert_eq!(fallback.step(1), Some(("probe y", false)));

        let ends: Vec<StepEnd> = (0..5).map(|i| done(&format!("step{i}"))).collect();
        let obs = p.observations(ends, vec![done("x"), done("y")]);
        assert_eq!(obs.of(0), Some((0, Some(&done("step0")))));
        assert_eq!(obs.of(1), None);
        assert_eq!(obs.of(2), Some((5, Some(&done("x")))));
        assert_eq!(obs.of(3), Some((1, Some(&done("step1")))));
        assert_eq!(obs.of(4), Some((6, Some(&done("y")))));
    }

    #[test]
    fn shared_path_probes_are_split_or_fall_back() {
        let none = [fake()];
        let u = units(&none);
        let p = probes(&u, None, false, Duration::from_secs(1));
        assert!(p.batch.is_empty());
        assert_eq!(p.split_shared(&[]), Some(Vec::new()));

        let mods = [Fake {
            path: Some("/nonexistent/bosun/a".into()),
            ..fake()
        }];
        let u = units(&mods);
        let p = probes(&u, None, false, Duration::from_secs(1));
        let out = run(&fileops::probe_paths(&[("/nonexistent/bosun/a", None)]));
        let split = p.split_shared(&[StepEnd::Done(out)]).expect("adds up");
        assert_eq!(split.len(), 1);
        assert!(matches!(&split[0], StepEnd::Done(o) if o.stdout.contains("absent")));
        // The step did not finish, or failed: probe the paths one by one instead.
        assert_eq!(p.split_shared(&[StepEnd::NotRun]), None);
        let failed = Observed {
            rc: 1,
            ..Default::default()
        };
        assert_eq!(p.split_shared(&[StepEnd::Done(failed)]), None);
    }

    #[test]
    fn planning_stops_before_a_stale_probe() {
        let mods = [
            changing("write /etc/app", paths("/etc/app")),
            fake(),
            Fake {
                effects: paths("/etc/app/x.conf"),
                ..fake()
            },
        ];
        let mut pending = Vec::new();
        let planned = plan(&units(&mods), &Observations::default(), false, &mut pending);
        // The unchanged unit affects the whole host: its probe went stale too.
        assert_eq!(planned.len(), 1);
        assert!(matches!(&planned[0], Planned::Change { guard: None, .. }));
        assert_eq!(pending, vec![paths("/etc/app")]);

        let mods = [
            changing("write /etc/app", paths("/etc/app")),
            Fake {
                effects: paths("/etc/other"),
                ..fake()
            },
            Fake {
                guard: Some("test -e /etc/app".into()),
                ..changing("run", Effects::Host)
            },
            fake(),
        ];
        let planned = plan(
            &units(&mods),
            &Observations::default(),
            false,
            &mut Vec::new(),
        );
        // Another path still holds; a guarded unit is applied behind its guard; after a
        // host-wide change nothing holds.
        assert_eq!(planned.len(), 3);
        assert!(matches!(&planned[1], Planned::Unchanged { .. }));
        assert!(
            matches!(&planned[2], Planned::Change { guard: Some(g), .. } if g == "test -e /etc/app")
        );
    }

    #[test]
    fn a_wait_makes_every_later_probe_stale() {
        let mods = [changing("wait for :80", Effects::Wait), fake()];
        let mut pending = Vec::new();
        let planned = plan(&units(&mods), &Observations::default(), false, &mut pending);
        assert_eq!(planned.len(), 1);
        assert!(matches!(
            &planned[0],
            Planned::Change {
                wait_only: true,
                ..
            }
        ));
        assert_eq!(pending, vec![Effects::Host]);
    }

    #[test]
    fn planning_reads_each_probe_and_stops_at_a_failure() {
        let probing = || Fake {
            probe: Some("p".into()),
            effects: Effects::None,
            ..fake()
        };
        let mods = [probing(), probing(), probing()];
        let u = units(&mods);
        let p = probes(&u, None, false, Duration::from_secs(1));
        let obs = p.observations(
            vec![done("one"), StepEnd::Unfinished { stdout: "x".into() }],
            Vec::new(),
        );
        let planned = plan(&u, &obs, false, &mut Vec::new());
        assert_eq!(planned.len(), 2);
        assert!(matches!(&planned[0], Planned::Unchanged { reason, .. } if reason == "saw one"));
        assert!(matches!(
            &planned[1],
            Planned::ProbeUnfinished {
                step: 1,
                end: Some(StepEnd::Unfinished { .. })
            }
        ));

        let mods = [
            Fake {
                fail: Some("cannot tell".into()),
                ..fake()
            },
            fake(),
        ];
        let planned = plan(&units(&mods), &observed(&mods, &[]), false, &mut Vec::new());
        assert_eq!(planned.len(), 1);
        assert!(matches!(&planned[0], Planned::Failed(e) if e.0 == "cannot tell"));
    }

    #[test]
    fn check_mode_plans_everything_and_predicts_what_depends_on_earlier_changes() {
        let mods = [
            changing("install nginx", Effects::Host),
            Fake {
                fail: Some("no such unit".into()),
                ..fake()
            },
            changing("write /etc/x", paths("/etc/x")),
            changing("wait for :80", Effects::Wait),
        ];
        let u = units(&mods);
        let mut pending = Vec::new();
        let planned = plan(&u, &Observations::default(), true, &mut pending);
        assert_eq!(planned.len(), 4);
        assert!(matches!(
            &planned[0],
            Planned::Change {
                predicted: false,
                ..
            }
        ));
        assert!(matches!(&planned[1], Planned::Predicted(_)));
        assert!(matches!(
            &planned[2],
            Planned::Change {
                predicted: true,
                ..
            }
        ));
        assert_eq!(pending.len(), 4);

        let out = outcomes(&u, planned, true, &LastScript::default());
        assert_eq!(out[0].status, Status::Changed);
        assert_eq!(
            out[0].result,
            UnitResult {
                changed: true,
                skipped: true,
                msg: "check mode".into(),
                ..Default::default()
            }
        );
        assert!(out[1].predicted);
        assert_eq!(
            out[1].summary.as_deref(),
            Some("depends on earlier changes; now: no such unit")
        );
        assert!(out[2].predicted);
        // A wait changes nothing itself.
        assert_eq!(out[3].status, Status::Ok);
        assert!(!out[3].result.changed);
    }

    #[test]
    fn applies_record_notifications_and_guards() {
        let mods = [
            Fake {
                effects: Effects::None,
                ..fake()
            },
            changing("write a", paths("/a")),
            Fake {
                guard: Some("test -e /b".into()),
                ..changing("run b", Effects::Host)
            },
            Fake {
                guard: Some("false".into()),
                ..changing("wait", Effects::Wait)
            },
        ];
        let notify = vec!["restart nginx".to_string()];
        let mut u = units(&mods);
        u[1].notify = &notify;
        u[3].notify = &notify;
        let planned = plan(&u, &Observations::default(), false, &mut Vec::new());
        let a = applies(&u, &planned, "TOKEN".into());
        assert_eq!(a.batch.len(), 3);
        assert_eq!(a.steps, vec![(1, 0), (2, 1), (3, 2)]);
        assert_eq!(a.rechecked, vec![2, 3]);
        assert!(a.records_notification);
        let body = |i| a.batch.step(i).map(|s| s.0.to_string()).unwrap_or_default();
        assert_eq!(
            body(0),
            format!(
                "( echo applying write a\n\n) || exit $?\n{}",
                record_notification("web", &notify)
            )
        );
        assert_eq!(
            body(1),
            "if test -e /b; then echo 'TOKEN'; exit 0; fi\necho applying run b\n"
        );
        // A wait records nothing: it changes nothing to notify about.
        assert_eq!(
            body(2),
            "if false; then echo 'TOKEN'; exit 0; fi\necho applying wait\n"
        );

        let mods = [changing("wait", Effects::Wait)];
        let mut u = units(&mods);
        u[0].notify = &notify;
        let planned = plan(&u, &Observations::default(), false, &mut Vec::new());
        assert!(!applies(&u, &planned, "T".into()).records_notification);
    }

    #[test]
    fn the_apply_output_becomes_each_units_result() {
        let mods = [
            Fake {
                guard: Some("true".into()),
                ..changing("run a", Effects::None)
            },
            changing("run b", Effects::None),
            changing("run c", Effects::None),
            changing("run d", Effects::None),
        ];
        let u = units(&mods);
        // Nothing is stale among units without effects, so the guard is set by hand.
        let mut planned = plan(&u, &Observations::default(), false, &mut Vec::new());
        if let Some(Planned::Change { guard, .. }) = planned.get_mut(0) {
            *guard = Some("true".into());
        }
        let a = applies(&u, &planned, "TOKEN".into());
        let mut out = outcomes(&u, planned, false, &LastScript::default());
        let ends = [
            done("TOKEN\n"),
            done("did b\n"),
            StepEnd::Done(Observed {
                rc: 3,
                stdout: String::new(),
                stderr: "boom\n".into(),
            }),
            StepEnd::NotRun,
        ];
        let ran = a.interpret(&u, &ends, &LastScript::default(), &mut out);
        assert_eq!(ran, 3, "d never ran");
        assert_eq!(out[0].status, Status::Ok);
        assert_eq!(out[0].summary, None);
        assert!(!out[0].result.changed);
        assert_eq!(out[1].status, Status::Changed);
        assert_eq!(out[1].result.stdout, "did b\n");
        assert_eq!(out[2].status, Status::Failed);
        assert_eq!(out[2].message.as_deref(), Some("exit code 3: boom"));
        assert!(out[2].result.failed && !out[2].result.changed);
    }

    #[test]
    fn an_unfinished_change_fails_and_keeps_what_it_printed() {
        let mods = [changing("run", Effects::None)];
        let u = units(&mods);
        let planned = plan(&u, &Observations::default(), false, &mut Vec::new());
        let a = applies(&u, &planned, "T".into());
        let mut out = outcomes(&u, planned, false, &LastScript::default());
        let last = LastScript {
            rc: 255,
            stderr: "connection lost".into(),
            ..Default::default()
        };
        let ends = [StepEnd::Unfinished {
            stdout: "half\n".into(),
        }];
        assert_eq!(a.interpret(&u, &ends, &last, &mut out), 1);
        assert_eq!(out[0].status, Status::Failed);
        assert_eq!(out[0].result.stdout, "half\n");
        assert_eq!(
            out[0].message.as_deref(),
            Some(
                "the change began but did not finish (the remote script ended: \
                 exit code 255: connection lost)"
            )
        );
    }

    #[test]
    fn unfinished_steps_say_why() {
        let last = LastScript {
            expired: vec![(2, Duration::from_millis(1500))],
            ..Default::default()
        };
        assert_eq!(
            last.unfinished_probe(None, 2),
            "the probe did not finish within 1.5 s (deadline: the task's `timeout`, else \
             `probe_timeout`); its processes on the host were killed"
        );
        assert_eq!(
            last.unfinished_probe(None, 1),
            "the probe did not run: the remote script ended before it (exit code 0)"
        );
        let killed = LastScript {
            killed: Some(Killed::Interrupted),
            ..Default::default()
        };
        assert_eq!(
            killed.unfinished_apply(&StepEnd::NotRun, 0),
            "the change was stopped: the run was interrupted"
        );
    }

    #[test]
    fn a_failed_plan_names_its_module() {
        let mods = [Fake {
            fail: Some("bad state".into()),
            ..fake()
        }];
        let u = units(&mods);
        let planned = plan(&u, &Observations::default(), false, &mut Vec::new());
        let out = outcomes(&u, planned, false, &LastScript::default());
        assert_eq!(out[0].message.as_deref(), Some("fake: bad state"));
        assert_eq!(out[0].result.msg, "bad state");
    }

    #[test]
    fn staleness_rules() {
        let p = paths;
        assert!(!stale(&p("/etc/a"), &[]));
        assert!(stale(&p("/etc/a"), &[Effects::Host]));
        assert!(stale(&p("/etc/app/x.conf"), &[p("/etc/app")]));
        assert!(stale(&p("/etc/app"), &[p("/etc/app/x.conf")]));
        assert!(!stale(&p("/etc/application"), &[p("/etc/app")]));
        assert!(!stale(&p("/etc/b"), &[p("/etc/a")]));
        assert!(stale(
            &Effects::Host,
            &[p("/etc/apt/sources.list.d/x.list")]
        ));
        assert!(!stale(&p("/etc/b"), &[Effects::None]));
        let created = |s: &str| Effects::Created(vec![s.to_string()]);
        assert!(!stale(&p("/srv/app/x.conf"), &[created("/srv/app")]));
        assert!(stale(&p("/srv/app"), &[created("/srv/app")]));
        assert!(stale(&p("/srv"), &[created("/srv/app")]));
        assert!(stale(&Effects::Host, &[created("/srv/app")]));
    }
}
