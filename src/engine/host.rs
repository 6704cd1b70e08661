//! One host through one play: rounds of probe → plan → apply.
//!
//! A round probes every task it can in one remote script. Planning is local. Changes are
//! applied in order in one remote script, up to the first task whose probe an applied change
//! may have made stale (see [`stale`]); the next round re-probes from there. A no-op play is
//! therefore exactly one round trip, and a first converge a handful.
//!
//! A task that reads a variable registered by a task still in flight waits for a later
//! round, so `register` never sees a guess.

use super::batch::Batch;
use super::expand::{self, ItemOutcome, Scope, Unit};
use super::{Emitter, HostStats, RunOptions};
use crate::event::{Event, Status, TaskReport};
use crate::modules::{Effects, Observed, Plan};
use crate::site::{Play, Project, Role, Task};
use crate::ssh::Connection;
use crate::template::Templates;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A task or handler in play order.
pub struct Entry<'a> {
    pub role: &'a Role,
    pub task: &'a Task,
    pub handler: bool,
}

/// What a play needs to run one host.
pub struct PlayCtx<'a> {
    pub play: &'a Play,
    pub project: &'a Project,
    pub templates: &'a Templates,
    pub opts: &'a RunOptions,
    pub emit: &'a Emitter,
    /// The play's hosts; `run_once` tasks run on the first.
    pub play_hosts: &'a [String],
}

/// The result of one unit, in the shape `register` exposes.
#[derive(Debug, Clone, Default)]
struct UnitResult {
    changed: bool,
    failed: bool,
    skipped: bool,
    rc: i32,
    stdout: String,
    stderr: String,
    msg: String,
}

impl UnitResult {
    fn to_json(&self) -> Value {
        json!({
            "changed": self.changed,
            "failed": self.failed,
            "skipped": self.skipped,
            "rc": self.rc,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_lines": self.stdout.lines().collect::<Vec<_>>(),
            "msg": self.msg,
        })
    }
}

/// A unit waiting in the round queue.
struct Queued {
    entry: usize,
    unit: Unit,
}

/// How the host came out of the play.
#[derive(Debug, PartialEq, Eq)]
pub enum HostEnd {
    Done,
    Failed,
    Unreachable(String),
}

/// Runs `entries` (tasks, or notified handlers) on one host.
pub struct HostRun<'a, 'b> {
    pub ctx: &'a PlayCtx<'b>,
    pub host: &'a str,
    pub conn: &'a Connection,
    pub scope: &'a mut Scope,
    pub stats: &'a mut HostStats,
    /// Handler names notified so far, per role.
    pub notified: BTreeSet<(String, String)>,
    /// The task that failed the host, with its message.
    pub failure: Option<(String, String)>,
    /// Effects of changes already made (or, in check mode, that would be made) in this
    /// play: later probes that they touch are re-run, or marked as predictions.
    pending_effects: Vec<Effects>,
}

impl<'a, 'b> HostRun<'a, 'b> {
    pub fn new(
        ctx: &'a PlayCtx<'b>,
        host: &'a str,
        conn: &'a Connection,
        scope: &'a mut Scope,
        stats: &'a mut HostStats,
    ) -> Self {
        HostRun {
            ctx,
            host,
            conn,
            scope,
            stats,
            notified: BTreeSet::new(),
            failure: None,
            pending_effects: Vec::new(),
        }
    }

    fn report(&mut self, entry: &Entry, label: Option<String>, status: Status) -> TaskReport {
        TaskReport {
            host: self.host.to_string(),
            play: self.ctx.play.name.clone(),
            role: entry.role.name.clone(),
            task: entry.task.name.clone(),
            status,
            item: label,
            summary: None,
            details: Vec::new(),
            diff: None,
            predicted: false,
            always: false,
            handler: entry.handler,
            message: None,
        }
    }

    fn emit(&mut self, r: TaskReport) {
        self.stats.count(&r);
        if r.status == Status::Failed && self.failure.is_none() {
            self.failure = Some((r.task.clone(), r.message.clone().unwrap_or_default()));
        }
        self.ctx.emit.send(Event::Task(r));
    }

    fn selected(&self, entry: &Entry) -> bool {
        if entry.handler {
            return true;
        }
        let opts = self.ctx.opts;
        let tags: BTreeSet<&str> = entry
            .task
            .tags
            .iter()
            .chain(self.ctx.play.tags.iter())
            .map(String::as_str)
            .collect();
        if opts.skip_tags.iter().any(|t| tags.contains(t.as_str())) {
            return false;
        }
        opts.tags.is_empty()
            || tags.contains("always")
            || opts.tags.iter().any(|t| tags.contains(t.as_str()))
    }

    /// Runs the entries; returns how the host ended.
    pub async fn run(&mut self, entries: &[Entry<'_>]) -> HostEnd {
        let templates = self.ctx.templates;
        let mut next = 0usize;
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut pending_regs: BTreeMap<String, usize> = BTreeMap::new();
        let mut remaining: HashMap<usize, usize> = HashMap::new();
        let mut results: HashMap<usize, Vec<UnitResult>> = HashMap::new();

        loop {
            // 1. Expand as many tasks as can be known now.
            while next < entries.len() {
                let e = &entries[next];
                if !self.selected(e) {
                    next += 1;
                    continue;
                }
                let names = expand::referenced_names(e.task, templates);
                let blocked = names.iter().any(|n| pending_regs.contains_key(n))
                    || (e.task.module == "template" && !pending_regs.is_empty());
                if blocked || (e.task.until.is_some() && !queue.is_empty()) {
                    break;
                }
                if e.task.run_once && self.ctx.play_hosts.first().is_some_and(|f| f != self.host) {
                    let mut r = self.report(e, None, Status::Skipped);
                    r.message = Some(format!("run_once: runs on {}", self.ctx.play_hosts[0]));
                    self.emit(r);
                    next += 1;
                    continue;
                }
                let outcomes = match expand::expand(
                    next,
                    e.task,
                    e.role,
                    self.ctx.project,
                    templates,
                    self.scope,
                ) {
                    Ok(o) => o,
                    Err(err) => {
                        let mut r = self.report(e, None, Status::Failed);
                        r.message = Some(err.render());
                        self.emit(r);
                        return HostEnd::Failed;
                    }
                };
                let mut units = 0;
                for o in outcomes {
                    match o {
                        ItemOutcome::Skipped { label, reason } => {
                            let mut r = self.report(e, label, Status::Skipped);
                            r.message = Some(reason);
                            self.emit(r);
                            results.entry(next).or_default().push(UnitResult {
                                skipped: true,
                                ..Default::default()
                            });
                        }
                        ItemOutcome::Run(unit) => {
                            units += 1;
                            queue.push_back(Queued { entry: next, unit });
                        }
                    }
                }
                if units == 0 {
                    self.register(e, results.remove(&next).unwrap_or_default());
                } else {
                    remaining.insert(next, units);
                    if let Some(r) = &e.task.register {
                        pending_regs.insert(r.clone(), next);
                    }
                }
                next += 1;
                if e.task.until.is_some() {
                    break;
                }
            }
            if queue.is_empty() {
                if next >= entries.len() {
                    return HostEnd::Done;
                }
                continue;
            }

            // 2. Probe, plan and apply one round.
            let until = queue
                .front()
                .and_then(|q| entries[q.entry].task.until.clone());
            let outcome = match until {
                Some(cond) => self.run_until(entries, &mut queue, &cond).await,
                None => self.round(entries, &mut queue).await,
            };
            let finished = match outcome {
                Ok(f) => f,
                Err(end) => return end,
            };

            // 3. Book results; a task is done when all its units are.
            let mut failed = false;
            for (entry, res) in finished {
                failed |= res.failed;
                results.entry(entry).or_default().push(res);
                if let Some(n) = remaining.get_mut(&entry) {
                    *n -= 1;
                    if *n == 0 {
                        remaining.remove(&entry);
                        let e = &entries[entry];
                        if let Some(r) = &e.task.register {
                            pending_regs.remove(r);
                        }
                        let res = results.remove(&entry).unwrap_or_default();
                        if res.iter().any(|r| r.changed) {
                            for h in &e.task.notify {
                                self.notified.insert((e.role.name.clone(), h.clone()));
                            }
                        }
                        self.register(e, res);
                    }
                }
            }
            if failed {
                return HostEnd::Failed;
            }
        }
    }

    /// Sets the task's `register` variable from its units' results.
    fn register(&mut self, e: &Entry, res: Vec<UnitResult>) {
        let Some(name) = &e.task.register else { return };
        let v = if e.task.loop_items.is_some() {
            json!({
                "changed": res.iter().any(|r| r.changed),
                "failed": res.iter().any(|r| r.failed),
                "skipped": !res.is_empty() && res.iter().all(|r| r.skipped),
                "results": res.iter().map(UnitResult::to_json).collect::<Vec<_>>(),
            })
        } else {
            res.first().map(UnitResult::to_json).unwrap_or_else(|| {
                UnitResult {
                    skipped: true,
                    ..Default::default()
                }
                .to_json()
            })
        };
        self.scope
            .set(name, crate::template::jv(&v), &self.ctx.opts.extra_vars);
    }

    /// One probe round trip, local planning, one apply round trip.
    /// Returns the finished units (queue entries consumed from the front).
    async fn round(
        &mut self,
        entries: &[Entry<'_>],
        queue: &mut VecDeque<Queued>,
    ) -> Result<Vec<(usize, UnitResult)>, HostEnd> {
        let check = self.ctx.opts.check;
        let mut probes = Batch::new(false);
        let mut step_of: Vec<Option<usize>> = Vec::with_capacity(queue.len());
        // Path probes (file, copy, template) go into one shared step: a fixed number of
        // processes on the host for all of them. Their results are appended to `observed`
        // after the batch's own steps.
        let mut shared: Vec<(&str, Option<&str>)> = Vec::new();
        let mut shared_of: Vec<usize> = Vec::new(); // queue index of each shared path
        for (qi, q) in queue.iter().enumerate() {
            let m = &q.unit.module;
            match m.path_probe() {
                Some(pp) => {
                    shared.push(pp);
                    shared_of.push(qi);
                    step_of.push(None);
                }
                None => step_of.push(m.probe().map(|p| {
                    if m.slow_probe() {
                        probes.push_background(&p)
                    } else {
                        probes.push(&p)
                    }
                })),
            }
        }
        let shared_step = (!shared.is_empty())
            .then(|| probes.push(&crate::modules::fileops::probe_paths(&shared)));
        let mut observed = if probes.is_empty() {
            Vec::new()
        } else {
            match self.conn.run(&probes.script()).await {
                Ok(out) => probes.parse(&out.stdout),
                Err(e) => return Err(HostEnd::Unreachable(e.to_string())),
            }
        };
        if let Some(ss) = shared_step {
            let split = observed
                .get(ss)
                .cloned()
                .flatten()
                .and_then(|o| crate::modules::fileops::split_probe_paths(&shared, &o));
            let split = match split {
                Some(v) => v.into_iter().map(Some).collect::<Vec<_>>(),
                None => {
                    // Something did not add up (a path changed under us, an unreadable
                    // file): probe those paths one by one, as each module would.
                    let mut one = Batch::new(false);
                    for &qi in &shared_of {
                        let body = queue[qi].unit.module.probe().unwrap_or_default();
                        one.push(&body);
                    }
                    match self.conn.run(&one.script()).await {
                        Ok(out) => one.parse(&out.stdout),
                        Err(e) => return Err(HostEnd::Unreachable(e.to_string())),
                    }
                }
            };
            for (k, &qi) in shared_of.iter().enumerate() {
                step_of[qi] = Some(observed.len());
                observed.push(split.get(k).cloned().flatten());
            }
        }

        // Plan in order; collect applies until a stale probe.
        let mut reports: Vec<(usize, TaskReport, UnitResult)> = Vec::new();
        let mut applies = Batch::new(true);
        let mut apply_step: Vec<(usize, usize)> = Vec::new(); // (report index, batch step)
        let mut applied: Vec<Effects> = Vec::new();
        // Units applied behind a guard tested again on the host (report indices), and the
        // line such a unit prints when its guard holds by then.
        let mut rechecked: Vec<usize> = Vec::new();
        let guard_token = format!("@@bosun-guard-holds-{:016x}", rand::random::<u64>());
        for (qi, q) in queue.iter().enumerate() {
            let effects = q.unit.module.effects();
            let mut guard = None;
            if !check && stale(&effects, &applied) {
                // A stale probe ends the round, unless the module can test its guard again
                // on the host right before applying (guarded commands).
                match q.unit.module.apply_guard() {
                    Some(g) => guard = Some(g),
                    None => break,
                }
            }
            let e = &entries[q.entry];
            let mut r = self.report(e, q.unit.label.clone(), Status::Ok);
            let obs = match step_of[qi] {
                _ if guard.is_some() => Observed::default(),
                Some(s) => match observed.get(s).cloned().flatten() {
                    Some(o) => o,
                    None => {
                        r.status = Status::Failed;
                        r.message = Some("the probe did not complete (connection lost?)".into());
                        reports.push((
                            q.entry,
                            r,
                            UnitResult {
                                failed: true,
                                ..Default::default()
                            },
                        ));
                        break;
                    }
                },
                None => Observed::default(),
            };
            match q.unit.module.plan(&obs) {
                // In check mode the state this plan saw may not exist yet: an earlier task
                // would install the package or write the unit. Report a prediction.
                Err(err) if check && stale(&effects, &self.pending_effects) => {
                    r.status = Status::Changed;
                    r.predicted = true;
                    r.summary = Some(format!("depends on earlier changes; now: {}", err.0));
                    self.pending_effects.push(effects);
                    reports.push((
                        q.entry,
                        r,
                        UnitResult {
                            changed: true,
                            skipped: true,
                            ..Default::default()
                        },
                    ));
                }
                Err(err) => {
                    r.status = Status::Failed;
                    r.message = Some(format!("{}: {}", q.unit.module.name(), err.0));
                    reports.push((
                        q.entry,
                        r,
                        UnitResult {
                            failed: true,
                            msg: err.0,
                            ..Default::default()
                        },
                    ));
                    break;
                }
                Ok(Plan::Unchanged { reason }) => {
                    r.message = Some(reason);
                    reports.push((q.entry, r, UnitResult::default()));
                }
                Ok(Plan::Change(c)) => {
                    r.status = Status::Changed;
                    r.summary = Some(c.summary.clone());
                    r.details = c.details.clone();
                    r.always = c.always;
                    if self.ctx.opts.diff {
                        r.diff = c.diff.as_ref().map(|d| {
                            let mut fd = crate::diff::render(d);
                            crate::diff::mask_rotated_secrets(&mut fd, self.ctx.emit.redactor());
                            fd
                        });
                    }
                    let wait_only = effects == Effects::Wait;
                    if check {
                        r.predicted = stale(&effects, &self.pending_effects);
                        self.pending_effects.push(effects);
                        let res = UnitResult {
                            changed: !wait_only,
                            skipped: true,
                            msg: "check mode".into(),
                            ..Default::default()
                        };
                        if wait_only {
                            r.status = Status::Ok;
                        }
                        reports.push((q.entry, r, res));
                    } else {
                        let body = q.unit.module.apply(c.action.as_ref());
                        let step = match &guard {
                            Some(g) => {
                                rechecked.push(reports.len());
                                applies.push(&format!(
                                    "if {g}; then echo '{guard_token}'; exit 0; fi\n{body}"
                                ))
                            }
                            None => applies.push(&body),
                        };
                        // Waiting means the host is expected to change under us (a server
                        // coming up): everything probed after a wait is probed again.
                        let effects = if wait_only {
                            Effects::Host
                        } else {
                            q.unit.module.applied_effects(c.action.as_ref())
                        };
                        applied.push(effects.clone());
                        self.pending_effects.push(effects);
                        apply_step.push((reports.len(), step));
                        reports.push((
                            q.entry,
                            r,
                            UnitResult {
                                changed: !wait_only,
                                ..Default::default()
                            },
                        ));
                    }
                }
            }
        }

        // Apply what was planned, in one round trip.
        let mut ran = reports.len();
        if !applies.is_empty() {
            let results = match self.conn.run(&applies.script()).await {
                Ok(out) => applies.parse(&out.stdout),
                Err(e) => return Err(HostEnd::Unreachable(e.to_string())),
            };
            for (ri, step) in &apply_step {
                let (_, r, res) = &mut reports[*ri];
                match results.get(*step).cloned().flatten() {
                    Some(o)
                        if rechecked.contains(ri)
                            && o.rc == 0
                            && o.stdout.trim_end() == guard_token =>
                    {
                        res.changed = false;
                        r.status = Status::Ok;
                        r.summary = None;
                        r.details.clear();
                        r.always = false;
                        r.message = Some("guard holds (tested again on the host)".into());
                    }
                    Some(o) => {
                        res.rc = o.rc;
                        res.stdout = o.stdout;
                        res.stderr = o.stderr;
                        if o.rc == 0 && !res.changed {
                            // A wait that succeeded changed nothing.
                            r.status = Status::Ok;
                        }
                        if o.rc != 0 {
                            res.failed = true;
                            res.changed = false;
                            r.status = Status::Failed;
                            let why = res.stderr.trim();
                            r.message = Some(if why.is_empty() {
                                format!("exit code {}", o.rc)
                            } else {
                                format!("exit code {}: {why}", o.rc)
                            });
                        }
                    }
                    None => {
                        // Never ran: an earlier step failed. It goes back to the queue.
                        ran = ran.min(*ri);
                    }
                }
            }
        }
        reports.truncate(ran);
        let mut finished = Vec::new();
        for (entry, mut r, mut res) in reports {
            self.post_conditions(&entries[entry], &mut r, &mut res);
            self.emit(r);
            finished.push((entry, res));
        }
        // Reports are in queue order, so the finished units are the queue's front.
        for _ in 0..finished.len() {
            queue.pop_front();
        }
        Ok(finished)
    }

    /// `changed_when` and `failed_when`, evaluated over the unit's result.
    fn post_conditions(&self, e: &Entry, r: &mut TaskReport, res: &mut UnitResult) {
        if e.task.changed_when.is_none() && e.task.failed_when.is_none() {
            return;
        }
        let v = crate::template::jv(res.to_json());
        let mut scope = self.scope.clone();
        if let Some(name) = &e.task.register {
            scope.set(name, v.clone(), &serde_json::Map::new());
        }
        let ctx = scope.with("result", v);
        let t = self.ctx.templates;
        if let Some(fw) = &e.task.failed_when {
            match t.test(fw, &ctx) {
                Ok(f) => {
                    res.failed = f;
                    if f {
                        r.status = Status::Failed;
                        r.message
                            .get_or_insert_with(|| format!("failed_when: {fw}"));
                    } else if r.status == Status::Failed {
                        r.status = if res.rc == 0 || res.changed {
                            Status::Changed
                        } else {
                            Status::Ok
                        };
                        r.message = None;
                    }
                }
                Err(err) => {
                    res.failed = true;
                    r.status = Status::Failed;
                    r.message = Some(format!("failed_when: {}", crate::template::describe(&err)));
                }
            }
        }
        if res.failed {
            return;
        }
        match &e.task.changed_when {
            Some(Value::Bool(b)) => res.changed = *b,
            Some(Value::String(expr)) => match t.test(expr, &ctx) {
                Ok(c) => res.changed = c,
                Err(err) => {
                    res.failed = true;
                    r.status = Status::Failed;
                    r.message = Some(format!("changed_when: {}", crate::template::describe(&err)));
                    return;
                }
            },
            _ => return,
        }
        if r.status != Status::Failed {
            r.status = if res.changed {
                Status::Changed
            } else {
                Status::Ok
            };
        }
    }

    /// A task with `until`: probe, plan, apply, test; again after `delay` seconds, at most
    /// `retries` more times.
    async fn run_until(
        &mut self,
        entries: &[Entry<'_>],
        queue: &mut VecDeque<Queued>,
        cond: &str,
    ) -> Result<Vec<(usize, UnitResult)>, HostEnd> {
        let entry = match queue.front() {
            Some(q) => q.entry,
            None => return Ok(Vec::new()),
        };
        let e = &entries[entry];
        let mut attempt = 0;
        loop {
            // Round on a one-unit queue so the same code plans and applies it.
            let mut single: VecDeque<Queued> = VecDeque::new();
            let Some(front) = queue.pop_front() else {
                return Ok(Vec::new());
            };
            let label = front.unit.label.clone();
            single.push_back(front);
            let finished = self.round_quiet(entries, &mut single).await?;
            let Some((_, res)) = finished.into_iter().next() else {
                return Ok(Vec::new());
            };
            let v = crate::template::jv(res.to_json());
            let mut scope = self.scope.clone();
            if let Some(name) = &e.task.register {
                scope.set(name, v.clone(), &serde_json::Map::new());
            }
            let ok = self
                .ctx
                .templates
                .test(cond, &scope.with("result", v))
                .unwrap_or(false);
            if ok || attempt >= e.task.retries || self.ctx.opts.check {
                let gave_up = !ok && !self.ctx.opts.check;
                let status = if res.failed || gave_up {
                    Status::Failed
                } else if res.changed {
                    Status::Changed
                } else {
                    Status::Ok
                };
                let mut r = self.report(e, label, status);
                if gave_up {
                    r.message = Some(format!(
                        "until `{cond}` still false after {} attempts",
                        attempt + 1
                    ));
                }
                let mut res = res;
                if r.status == Status::Failed {
                    res.failed = true;
                }
                self.emit(r);
                return Ok(vec![(entry, res)]);
            }
            attempt += 1;
            tokio::time::sleep(std::time::Duration::from_secs(e.task.delay)).await;
            // Rebuild the unit for the next attempt from the same (already templated) task.
            match expand::expand(
                entry,
                e.task,
                e.role,
                self.ctx.project,
                self.ctx.templates,
                self.scope,
            ) {
                Ok(outcomes) => {
                    for o in outcomes {
                        if let ItemOutcome::Run(unit) = o {
                            queue.push_front(Queued { entry, unit });
                        }
                    }
                }
                Err(err) => {
                    let mut r = self.report(e, None, Status::Failed);
                    r.message = Some(err.render());
                    self.emit(r);
                    return Err(HostEnd::Failed);
                }
            }
        }
    }

    /// [`Self::round`] without emitting reports (until-loops report once, at the end).
    async fn round_quiet(
        &mut self,
        entries: &[Entry<'_>],
        queue: &mut VecDeque<Queued>,
    ) -> Result<Vec<(usize, UnitResult)>, HostEnd> {
        let before = self.stats.clone();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let quiet = Emitter::new(tx, Default::default());
        let ctx = PlayCtx {
            play: self.ctx.play,
            project: self.ctx.project,
            templates: self.ctx.templates,
            opts: self.ctx.opts,
            emit: &quiet,
            play_hosts: self.ctx.play_hosts,
        };
        let mut stats = before.clone();
        let mut inner = HostRun::new(&ctx, self.host, self.conn, self.scope, &mut stats);
        inner.pending_effects = std::mem::take(&mut self.pending_effects);
        let r = inner.round(entries, queue).await;
        self.pending_effects = std::mem::take(&mut inner.pending_effects);
        r
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

    #[test]
    fn staleness_rules() {
        let p = |s: &str| Effects::Paths(vec![s.to_string()]);
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
