//! One host through one play: rounds of probe → plan → apply.
//!
//! A round probes every task it can in one remote script. Planning is local. Changes are
//! applied in order in one remote script, up to the first task whose probe an applied change
//! may have made stale (see [`stale`]); the next round re-probes from there. A no-op play is
//! therefore exactly one round trip, and a first converge a handful. What a round probes,
//! plans, applies and reads back is decided in [`crate::round`]; this file schedules the
//! tasks into rounds, runs the scripts and reports.
//!
//! A task that reads a variable registered by a task still in flight waits for a later
//! round, so `register` never sees a guess.

use super::batch::{Batch, StepEnd, STATE_DIR_SH};
use super::blocks::{AfterFailure, Blocks, Failing};
use super::expand::{self, ItemOutcome, Scope, Unit};
use super::{Emitter, HostStats, RunOptions};
use crate::event::{Event, Status, TaskReport};
use crate::modules::{self, Effects, Observed};
use crate::remote::Remote;
pub use crate::round::stale;
use crate::round::{self, LastScript, RoundUnit, UnitResult};
use bosun_model::inventory::Timeouts;
use bosun_model::shell::quote;
use bosun_model::site::{Play, Project, Role, Task};
use bosun_model::template::Templates;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// A task or handler in play order.
pub struct Entry<'a> {
    pub role: &'a Role,
    pub task: &'a Task,
    pub handler: bool,
}

impl Entry<'_> {
    /// The task right after `prev`'s in the same role's list: the two may share a block.
    fn follows(&self, prev: &Entry) -> bool {
        std::ptr::eq(self.role, prev.role)
            && std::ptr::eq((prev.task as *const Task).wrapping_add(1), self.task)
    }
}

/// The handlers of `roles` that `notified` (role, name or topic) asks for: each once, in
/// the order its role defines them, however many tasks (of however many roles) notified it.
pub fn handlers_for<'r>(
    roles: &[&'r Role],
    notified: &BTreeSet<(String, String)>,
) -> Vec<Entry<'r>> {
    roles
        .iter()
        .flat_map(|r| {
            r.handlers
                .iter()
                .filter(|h| {
                    notified
                        .iter()
                        .any(|(role, n)| *role == r.name && h.answers(n))
                })
                .map(move |h| Entry {
                    role: r,
                    task: h,
                    handler: true,
                })
        })
        .collect()
}

/// The (role, name) keys a notification of `name` from a task of `role` books: the task's
/// own role when one of its handlers answers, otherwise every role of the play whose
/// handler does (a notify may name another role's handler).
fn notification_keys(roles: &[&Role], role: &str, name: &str) -> Vec<(String, String)> {
    let answers = |r: &Role| r.handlers.iter().any(|h| h.answers(name));
    let key = |r: &str| (r.to_string(), name.to_string());
    if roles.iter().any(|r| r.name == role && answers(r)) {
        return vec![key(role)];
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in roles.iter().filter(|r| answers(r)) {
        if !keys.iter().any(|(k, _)| *k == r.name) {
            keys.push(key(&r.name));
        }
    }
    keys
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
    /// Deadlines: the inventory's, with the play's `task_timeout` applied.
    pub limits: Timeouts,
    /// The play's roles (their handlers may be pending from an earlier run).
    pub roles: &'a [&'a Role],
    /// Raised when a host fails in a play with `any_errors_fatal`: the others stop before
    /// their next round.
    pub fatal: &'a std::sync::atomic::AtomicBool,
    /// Other hosts' connections (and the controller's), for `delegate_to`.
    pub delegates: &'a crate::run::Delegates,
}

/// The names the controller templates a task renders read (see
/// [`crate::modules::Module::rendered_templates`]), when each is a plain name found in the
/// role's template directories; `None` when they cannot be known before rendering.
fn rendered_names(e: &Entry, project: &Project, templates: &Templates) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for src in modules::rendered_templates(&e.task.module, &e.task.args)? {
        if bosun_model::template::has_syntax(&src) {
            return None;
        }
        let path = expand::find_file(e.role.template_dirs(project), &src)?;
        let text = std::fs::read_to_string(path).ok()?;
        names.extend(templates.template_names(&text));
    }
    Some(names)
}

/// `ignore_errors`: a failed unit is reported as ignored; its result keeps `failed`, so a
/// later task can read it from `register`.
fn ignoring(e: &Entry, r: &mut TaskReport, res: &UnitResult) {
    if e.task.ignore_errors && res.failed && r.status == Status::Failed {
        r.status = Status::Ignored;
    }
}

/// A unit waiting in the round queue.
struct Queued {
    entry: usize,
    unit: Unit,
    /// The unit's place among its task's loop items (registered results keep item order).
    slot: usize,
}

/// How the host came out of the play.
#[derive(Debug, PartialEq, Eq)]
pub enum HostEnd {
    Done,
    Failed,
    Unreachable(String),
    /// The operator interrupted the run; what ran was reported, nothing new started.
    Interrupted,
}

/// Runs `entries` (tasks, or notified handlers) on one host.
pub struct HostRun<'a, 'b> {
    pub ctx: &'a PlayCtx<'b>,
    pub host: &'a str,
    /// The host's connection; replaced when the host rebooted (`reboot`).
    pub conn: Arc<dyn Remote>,
    /// Scripts run on connections this run gave up (a reboot's old connection, attempts
    /// that found the host not back yet), counted from when it got them.
    replaced_execs: u64,
    /// `conn`'s script count when this run got it.
    conn_base: u64,
    pub scope: &'a mut Scope,
    pub stats: &'a mut HostStats,
    /// Handler names notified so far, per role.
    pub notified: BTreeSet<(String, String)>,
    /// The task that failed the host, with its message.
    pub failure: Option<(String, String)>,
    /// Effects of changes already made (or, in check mode, that would be made) in this
    /// play: later probes that they touch are re-run, or marked as predictions.
    pending_effects: Vec<Effects>,
    /// The first probe round also reads the notifications an earlier run recorded.
    pending_handlers_unread: bool,
    /// Handlers found pending from an earlier run (role, handler).
    pub pending_earlier: Vec<(String, String)>,
    /// A notification was recorded on the host by this run (it is cleared at the end).
    pub recorded: bool,
    /// `facts` is in scope (gathered by this run's first round on the host).
    facts_known: bool,
    last: LastScript,
}

impl<'a, 'b> HostRun<'a, 'b> {
    pub fn new(
        ctx: &'a PlayCtx<'b>,
        host: &'a str,
        conn: Arc<dyn Remote>,
        scope: &'a mut Scope,
        stats: &'a mut HostStats,
    ) -> Self {
        let facts_known = scope.has("facts");
        HostRun {
            ctx,
            host,
            replaced_execs: 0,
            conn_base: conn.exec_count(),
            conn,
            scope,
            stats,
            notified: BTreeSet::new(),
            failure: None,
            pending_effects: Vec::new(),
            pending_handlers_unread: true,
            pending_earlier: Vec::new(),
            recorded: false,
            facts_known,
            last: LastScript::default(),
        }
    }

    /// Scripts this run sent to the host, over every connection it had.
    pub fn execs(&self) -> u64 {
        self.replaced_execs + self.conn.exec_count().saturating_sub(self.conn_base)
    }

    /// Goes on with `conn` (the host rebooted); the old connection was closed.
    fn replace_conn(&mut self, conn: Arc<dyn Remote>) {
        self.replaced_execs += self.conn.exec_count().saturating_sub(self.conn_base);
        self.conn = conn;
        self.conn_base = 0;
    }

    /// Makes `facts` visible to this host's templates (variables that read them render now).
    pub fn set_facts(&mut self, facts: &Value) {
        self.scope
            .set_facts(&bosun_model::template::jv(facts), &self.ctx.opts.extra_vars);
        self.scope.resolve(self.ctx.templates);
        self.facts_known = true;
    }

    /// Sets variables a task made (`set_fact`) for the host's later tasks; variables whose
    /// templates read them render now.
    fn set_vars(&mut self, vars: serde_json::Map<String, Value>) {
        if vars.is_empty() {
            return;
        }
        for (k, v) in &vars {
            self.scope
                .set(k, bosun_model::template::jv(v), &self.ctx.opts.extra_vars);
        }
        self.scope.resolve(self.ctx.templates);
    }

    /// Fails the host outside any task (facts could not be gathered); the engine reports
    /// it with the host's failure.
    fn fail_host(&mut self, what: &str, why: String) -> HostEnd {
        self.failure = Some((what.to_string(), why));
        HostEnd::Failed
    }

    /// How long a task's apply step may run.
    fn task_limit(&self, e: &Entry) -> std::time::Duration {
        e.task.timeout.unwrap_or(self.ctx.limits.task)
    }

    /// How long a task's probe may run: the probe deadline, or the task's if shorter.
    fn probe_limit(&self, e: &Entry) -> std::time::Duration {
        self.ctx.limits.probe.min(self.task_limit(e))
    }

    /// Fails the queue's first `n` units with `msg` (their connection could not be opened):
    /// each is reported, and the caller books them as failed.
    fn fail_units(
        &mut self,
        entries: &[Entry<'_>],
        queue: &mut VecDeque<Queued>,
        n: usize,
        msg: &str,
    ) -> Vec<(usize, UnitResult)> {
        let mut finished = Vec::new();
        for q in queue.drain(..n) {
            let e = &entries[q.entry];
            let mut r = self.report(e, q.unit.label.clone(), Status::Failed);
            r.message = Some(msg.to_string());
            let res = UnitResult {
                failed: true,
                msg: msg.to_string(),
                ..Default::default()
            };
            ignoring(e, &mut r, &res);
            self.emit(r);
            finished.push((q.entry, res));
        }
        finished
    }

    /// Runs a batch on `conn` (this host's, or a delegate's) with its deadlines and the
    /// run's interrupt; remembers how it ended.
    async fn run_batch(&mut self, conn: &dyn Remote, b: &Batch) -> Result<Vec<StepEnd>, HostEnd> {
        // Interrupted (say while the probes ran): start nothing new, not even this
        // round's applies.
        if self.ctx.opts.interrupt.level() > 0 {
            return Err(HostEnd::Interrupted);
        }
        let mut watch = b.watch();
        let out = conn
            .run_watched(&b.script(), &mut watch, Some(&self.ctx.opts.interrupt))
            .await
            .map_err(|e| HostEnd::Unreachable(e.to_string()))?;
        self.last = LastScript {
            rc: out.rc,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            killed: out.killed,
            expired: watch.expired().to_vec(),
        };
        Ok(b.parse(&out.stdout))
    }

    /// A probe step printing `role<TAB>handler` for every notification recorded on the host.
    fn pending_probe(&self) -> String {
        let mut s = String::from(STATE_DIR_SH);
        for r in self.roles() {
            let f = format!("\"$__bs/notify/\"{}", quote(r));
            s.push_str(&format!(
                "[ ! -f {f} ] || while IFS= read -r h; do printf '%s\\t%s\\n' {} \"$h\"; done < {f}\n",
                quote(r)
            ));
        }
        s
    }

    /// The play's role names, in order, once each.
    fn roles(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.ctx.play.roles {
            if !seen.contains(&r.as_str()) {
                seen.push(r);
            }
        }
        seen
    }

    /// Books the notifications an earlier run left: their handlers run at the end of this
    /// play as if notified now.
    fn read_pending(&mut self, o: &Observed) {
        for line in o.stdout.lines() {
            let Some((role, handler)) = line.split_once('\t') else {
                continue;
            };
            for key in notification_keys(self.ctx.roles, role, handler) {
                if !self.pending_earlier.contains(&key) {
                    self.notified.insert(key.clone());
                    self.pending_earlier.push(key);
                }
            }
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
            shown: false,
            rescue: entry.task.in_rescue(),
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

    /// True when one of the task's `when` conditions reads only what is known now (no
    /// loop item, no fact before the facts, no unrendered variable, no registered result
    /// still in flight) and is false: the task will be skipped whatever else it reads.
    fn known_false_when(
        &self,
        entry: &Entry,
        templates: &Templates,
        pending_regs: &BTreeMap<String, usize>,
    ) -> bool {
        let task = entry.task;
        if task.when.is_empty() || task.loop_items.is_some() {
            return false;
        }
        let known = |n: &String| {
            (!crate::facts::is_fact_name(n) || self.facts_known)
                && !self.scope.is_unresolved(n)
                && !pending_regs.contains_key(n)
        };
        let Ok(scope) = self.scope.for_task(task, templates) else {
            return false;
        };
        let ctx = scope.context();
        task.when.iter().any(|w| {
            templates.expression_names(w).iter().all(known)
                && matches!(templates.test(w, &ctx), Ok(false))
        })
    }

    fn selected(&self, entry: &Entry) -> bool {
        // `meta` runs where it is written, whatever the tags.
        if entry.handler || entry.task.module == "meta" {
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
        // Per task: its units' results with their item slots, in the order they finished.
        let mut results: HashMap<usize, Vec<(usize, UnitResult)>> = HashMap::new();
        // Blocks: their sections over `entries`, the rescues a failure entered, and the
        // blocks whose `always` runs before their failure goes on.
        let blocks = Blocks::new(
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.task, i > 0 && e.follows(&entries[i - 1]))),
        );
        let mut rescuing: HashSet<usize> = HashSet::new();
        let mut failing: Vec<Failing> = Vec::new();

        loop {
            // Interrupted: start nothing new.
            if self.ctx.opts.interrupt.level() > 0 {
                return HostEnd::Interrupted;
            }
            if self.ctx.fatal.load(std::sync::atomic::Ordering::Relaxed) {
                return self.fail_host(
                    "any_errors_fatal",
                    "stopped: another host of the play failed, and the play has `any_errors_fatal`"
                        .into(),
                );
            }
            // 1. Expand as many tasks as can be known now.
            while next < entries.len() {
                // A rescue runs only after a failure in its block.
                if let Some(to) = blocks.skip(next, &rescuing) {
                    next = to;
                    continue;
                }
                // A failing block's `always` is all queued: its failure goes on once it ran.
                if failing
                    .last()
                    .is_some_and(|f| next >= blocks.spans[f.span].end())
                {
                    break;
                }
                let e = &entries[next];
                if !self.selected(e) {
                    next += 1;
                    continue;
                }
                if e.task.flushes_handlers() {
                    // Everything before it runs first.
                    if !queue.is_empty() {
                        break;
                    }
                    if let Err(end) = self.flush_handlers(e).await {
                        return end;
                    }
                    next += 1;
                    continue;
                }
                let mut names = expand::referenced_names(e.task, templates);
                // Only facts not gathered yet and registered results in flight make a task
                // wait: otherwise what it reads does not matter here.
                let may_wait = !self.facts_known || !pending_regs.is_empty();
                // A task whose `when` is already known to be false is skipped whatever its
                // arguments read: it waits for nothing.
                let skipped_now = may_wait && self.known_false_when(e, templates, &pending_regs);
                if skipped_now {
                    names.clear();
                }
                // A template file reads what it reads: when it can be found now, its own
                // names count; otherwise it may read anything.
                let mut any_name = false;
                if may_wait && !skipped_now {
                    match rendered_names(e, self.ctx.project, templates) {
                        Some(file) => names.extend(file),
                        None => any_name = true,
                    }
                }
                // Facts arrive with the first probe round: a task that reads them, or a
                // variable not rendered yet (it may read them), waits for that round.
                let wait_facts = !self.facts_known
                    && (names
                        .iter()
                        .any(|n| crate::facts::is_fact_name(n) || self.scope.is_unresolved(n))
                        || (any_name && self.scope.has_unresolved()));
                let blocked = wait_facts
                    || names.iter().any(|n| pending_regs.contains_key(n))
                    || (any_name && !pending_regs.is_empty());
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
                    // It may read facts (a template file, a `when`): try again once they
                    // are known.
                    Err(_) if !self.facts_known => break,
                    // In a block, the tasks before it run first: a rescue comes after them.
                    Err(_) if !queue.is_empty() && !blocks.chain(next).is_empty() => break,
                    Err(err) => {
                        let mut r = self.report(e, None, Status::Failed);
                        r.message = Some(err.render());
                        self.emit(r);
                        let res = UnitResult {
                            failed: true,
                            msg: err.render(),
                            ..Default::default()
                        };
                        self.set_failed_vars(e, &res);
                        let after =
                            blocks.fail(blocks.chain(next).to_vec(), &mut rescuing, &mut failing);
                        match self.after_failure(after, &failing) {
                            Some(to) => {
                                next = to;
                                continue;
                            }
                            None => return HostEnd::Failed,
                        }
                    }
                };
                let mut units = 0;
                for (slot, o) in outcomes.into_iter().enumerate() {
                    match o {
                        ItemOutcome::Skipped { label, reason } => {
                            let mut r = self.report(e, label, Status::Skipped);
                            r.message = Some(reason);
                            self.emit(r);
                            results.entry(next).or_default().push((
                                slot,
                                UnitResult {
                                    skipped: true,
                                    ..Default::default()
                                },
                            ));
                        }
                        ItemOutcome::Run(unit) => {
                            units += 1;
                            queue.push_back(Queued {
                                entry: next,
                                unit,
                                slot,
                            });
                        }
                    }
                }
                if units == 0 {
                    self.register(e, item_order(results.remove(&next)));
                } else {
                    remaining.insert(next, units);
                    for name in expand::defined_names(e.task) {
                        pending_regs.insert(name, next);
                    }
                }
                next += 1;
                // A reboot is a barrier: what follows it is expanded, probed and applied
                // on the host that comes back.
                if e.task.until.is_some()
                    || queue
                        .back()
                        .is_some_and(|q| q.unit.module.reboots().is_some())
                {
                    break;
                }
            }
            if queue.is_empty() {
                // A failing block's `always` ran: the failure goes on outside it.
                if let Some(f) = failing.pop_if(|f| next >= blocks.spans[f.span].end()) {
                    let after = blocks.fail(f.outer, &mut rescuing, &mut failing);
                    match self.after_failure(after, &failing) {
                        Some(to) => {
                            next = to;
                            continue;
                        }
                        None => return HostEnd::Failed,
                    }
                }
                if next >= entries.len() {
                    return HostEnd::Done;
                }
                if !self.facts_known {
                    // The next task waits for facts and nothing else is ready: a round
                    // with just them (and the pending handler notifications).
                    if let Err(end) = self.round(entries, &mut queue).await {
                        return end;
                    }
                }
                continue;
            }

            // 2. Probe, plan and apply one round.
            let until = queue
                .front()
                .and_then(|q| entries[q.entry].task.until.clone());
            // Finished units come off the queue's front, in order: their slots are these.
            let slots: Vec<usize> = queue.iter().map(|q| q.slot).collect();
            let outcome = match until {
                Some(cond) => self.run_until(entries, &mut queue, &cond).await,
                None => self.round(entries, &mut queue).await,
            };
            let finished = match outcome {
                Ok(f) => f,
                Err(end) => return end,
            };

            // 3. Book results; a task is done when all its units are.
            let mut first_failed: Option<(usize, UnitResult)> = None;
            for ((entry, res), slot) in finished.into_iter().zip(slots) {
                if res.failed && !entries[entry].task.ignore_errors && first_failed.is_none() {
                    first_failed = Some((entry, res.clone()));
                }
                results.entry(entry).or_default().push((slot, res));
                if let Some(n) = remaining.get_mut(&entry) {
                    *n -= 1;
                    if *n == 0 {
                        remaining.remove(&entry);
                        let e = &entries[entry];
                        for name in expand::defined_names(e.task) {
                            pending_regs.remove(&name);
                        }
                        let res = item_order(results.remove(&entry));
                        if res.iter().any(|r| r.changed) {
                            for h in &e.task.notify {
                                let keys = notification_keys(self.ctx.roles, &e.role.name, h);
                                self.notified.extend(keys);
                            }
                        }
                        self.register(e, res);
                    }
                }
            }
            if let Some((entry, res)) = first_failed {
                if self.ctx.opts.interrupt.level() > 0 {
                    return HostEnd::Interrupted;
                }
                let e = &entries[entry];
                self.set_failed_vars(e, &res);
                let after = blocks.fail(blocks.chain(entry).to_vec(), &mut rescuing, &mut failing);
                let Some(to) = self.after_failure(after, &failing) else {
                    return HostEnd::Failed;
                };
                // Nothing queued after the failure runs. The failed task registers what
                // its items did; tasks that had not finished register nothing.
                queue.clear();
                if remaining.remove(&entry).is_some() {
                    self.register(e, item_order(results.remove(&entry)));
                }
                remaining.clear();
                results.clear();
                pending_regs.clear();
                next = to;
            }
        }
    }

    /// A failure in a block: `ansible_failed_task` and `ansible_failed_result`, for its
    /// rescue (outside blocks the host fails, and nothing reads them).
    fn set_failed_vars(&mut self, e: &Entry, res: &UnitResult) {
        if e.task.blocks.is_empty() {
            return;
        }
        let extra = &self.ctx.opts.extra_vars;
        let task = json!({"name": e.task.name, "role": e.role.name});
        self.scope.set(
            "ansible_failed_task",
            bosun_model::template::jv(&task),
            extra,
        );
        self.scope.set(
            "ansible_failed_result",
            bosun_model::template::jv(res.to_json()),
            extra,
        );
    }

    /// Where the host goes after a failure (`None`: it fails). A rescue handles the
    /// failure: the recap counts it as rescued, not failed, unless an outer block is
    /// still failing (its always is running).
    fn after_failure(&mut self, after: AfterFailure, failing: &[Failing]) -> Option<usize> {
        match after {
            AfterFailure::Rescue(to) => {
                self.stats.failed = self.stats.failed.saturating_sub(1);
                self.stats.rescued += 1;
                if failing.is_empty() {
                    self.failure = None;
                }
                Some(to)
            }
            AfterFailure::Always(to) => Some(to),
            AfterFailure::Fail => None,
        }
    }

    /// `meta: flush_handlers`: the handlers notified so far run now (nothing is queued);
    /// the end of the play runs only those notified after.
    async fn flush_handlers(&mut self, e: &Entry<'_>) -> Result<(), HostEnd> {
        let ctx = self.scope.context();
        for w in &e.task.when {
            match self.ctx.templates.test(w, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let mut r = self.report(e, None, Status::Skipped);
                    r.message = Some(format!("when: {w}"));
                    self.emit(r);
                    return Ok(());
                }
                Err(err) => {
                    let mut r = self.report(e, None, Status::Failed);
                    r.message = Some(format!("when: {}", bosun_model::template::describe(&err)));
                    self.emit(r);
                    return Err(HostEnd::Failed);
                }
            }
        }
        let handlers = handlers_for(self.ctx.roles, &self.notified);
        if handlers.is_empty() {
            return Ok(());
        }
        let end = Box::pin(self.run(&handlers)).await;
        if end != HostEnd::Done {
            return Err(end);
        }
        self.notified.clear();
        // They ran: the notifications recorded on the host are done with.
        if (self.recorded || !self.pending_earlier.is_empty()) && !self.ctx.opts.check {
            let roles = self.roles();
            self.conn
                .run(&clear_notifications(&roles))
                .await
                .map_err(|e| HostEnd::Unreachable(e.to_string()))?;
            self.recorded = false;
        }
        Ok(())
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
        self.scope.set(
            name,
            bosun_model::template::jv(&v),
            &self.ctx.opts.extra_vars,
        );
    }

    /// One probe round trip, local planning, one apply round trip.
    /// Returns the finished units (queue entries consumed from the front).
    ///
    /// What each step decides is in [`crate::round`]; this runs the scripts, reads the
    /// facts and pending notifications, and reports every finished unit.
    async fn round(
        &mut self,
        entries: &[Entry<'_>],
        queue: &mut VecDeque<Queued>,
    ) -> Result<Vec<(usize, UnitResult)>, HostEnd> {
        let check = self.ctx.opts.check;
        let limit = self.ctx.limits.probe;
        // A round runs on one connection: the queue's front units that share a
        // `delegate_to` (or none).
        let target = queue.front().and_then(|q| q.unit.delegate_to.clone());
        let n = queue
            .iter()
            .take_while(|q| q.unit.delegate_to == target)
            .count();
        // Nothing after a reboot shares its round (a loop's next item included).
        let n = match queue
            .iter()
            .take(n)
            .position(|q| q.unit.module.reboots().is_some())
        {
            Some(k) => k + 1,
            None => n,
        };
        let delegate = match &target {
            None => None,
            Some(t) => match self.ctx.delegates.get(t).await {
                Ok(c) => Some(c),
                Err(msg) => return Ok(self.fail_units(entries, queue, n, &msg)),
            },
        };
        let own_conn = self.conn.clone();
        let conn: &dyn Remote = delegate.as_deref().unwrap_or(own_conn.as_ref());
        let units: Vec<RoundUnit> = queue
            .iter()
            .take(n)
            .map(|q| {
                let e = &entries[q.entry];
                RoundUnit {
                    module: q.unit.module.as_ref(),
                    probe_limit: self.probe_limit(e),
                    task_limit: self.task_limit(e),
                    role: &e.role.name,
                    // A change on another host is not recorded there as this host's
                    // pending handler: the engine still notifies from the result.
                    notify: if target.is_some() {
                        &[]
                    } else {
                        &e.task.notify
                    },
                    become_user: q.unit.become_user.as_deref().or(self
                        .ctx
                        .play
                        .become_user
                        .as_deref()),
                }
            })
            .collect();
        // Handlers notified by an earlier run that did not get to run them.
        // Both are this host's own: a delegated round reads neither.
        let own = target.is_none();
        let pending = (own && self.pending_handlers_unread).then(|| self.pending_probe());
        self.pending_handlers_unread &= !own;
        let probes = round::probes(&units, pending.as_deref(), own && !self.facts_known, limit);
        let observed = if probes.batch.is_empty() {
            Vec::new()
        } else {
            self.run_batch(conn, &probes.batch).await?
        };
        if let Some(StepEnd::Done(o)) = probes.pending_step.and_then(|ps| observed.get(ps)) {
            self.read_pending(o);
        }
        if let Some(fs) = probes.facts_step {
            match observed.get(fs) {
                Some(StepEnd::Done(o)) => {
                    let facts = super::facts::parse(&o.stdout);
                    self.set_facts(&facts);
                }
                // The script was killed (a probe overstayed, an interrupt): background
                // results are lost with it; the task that overstayed reports why, and
                // facts are gathered again by the next round.
                _ if self.last.killed.is_some() => {}
                other => {
                    let why = self.last.unfinished_probe(other, fs);
                    return Err(self.fail_host("gather facts", why));
                }
            }
        }
        let shared = match probes.split_shared(&observed) {
            Some(shared) => shared,
            None => {
                self.run_batch(conn, &probes.shared_fallback(&units, limit))
                    .await?
            }
        };
        let observations = probes.observations(observed, shared);

        // What a change on another host touches says nothing about this host's probes.
        let mut elsewhere = Vec::new();
        let effects = if own {
            &mut self.pending_effects
        } else {
            &mut elsewhere
        };
        let mut planned = round::plan(&units, &observations, check, effects);
        if !check {
            round::controller_changes(&units, &mut planned);
        }
        let applies = (!check).then(|| {
            let token = format!("@@bosun-guard-holds-{:016x}", rand::random::<u64>());
            round::applies(&units, &planned, token)
        });
        let mut outcomes = round::outcomes(&units, planned, check, &self.last);
        let mut ran = outcomes.len();
        if let Some(a) = applies.filter(|a| !a.batch.is_empty()) {
            self.recorded |= a.records_notification;
            let ends = self.run_batch(conn, &a.batch).await?;
            ran = a.interpret(&units, &ends, &self.last, &mut outcomes);
        }
        outcomes.truncate(ran);
        if own && !check {
            for (u, o) in units.iter().zip(outcomes.iter_mut()) {
                if let Some(wait) = u.module.reboots() {
                    if o.status == Status::Changed {
                        self.await_reboot(&wait, o).await;
                    }
                }
            }
        }

        // After a failure only what was applied is reported: the rest did not run, and
        // the host either fails or goes on in a rescue.
        let applied_upto = if check {
            None
        } else {
            outcomes
                .iter()
                .rposition(|o| matches!(o.status, Status::Changed | Status::Failed))
        };
        let mut failed_at: Option<usize> = None;
        let mut finished = Vec::new();
        for (i, (q, o)) in queue.iter().zip(outcomes).enumerate() {
            if failed_at.is_some() && applied_upto.is_none_or(|k| i > k) {
                break;
            }
            let e = &entries[q.entry];
            let mut r = self.report(e, q.unit.label.clone(), o.status);
            r.summary = o.summary;
            r.details = o.details;
            r.always = o.always;
            r.predicted = o.predicted;
            r.message = o.message;
            r.shown = q.unit.module.shows_result();
            if self.ctx.opts.diff {
                r.diff = o.diff.as_ref().map(|d| {
                    let mut fd = crate::diff::render(d);
                    crate::diff::mask_rotated_secrets(&mut fd, self.ctx.emit.redactor());
                    fd
                });
            }
            let mut res = o.result;
            self.post_conditions(e, &mut r, &mut res);
            if !res.failed {
                self.set_vars(q.unit.module.sets_vars());
            }
            ignoring(e, &mut r, &res);
            if res.failed && !e.task.ignore_errors {
                failed_at.get_or_insert(i);
            }
            self.emit(r);
            finished.push((q.entry, res));
        }
        // Outcomes are in queue order, so the finished units are the queue's front.
        for _ in 0..finished.len() {
            queue.pop_front();
        }
        Ok(finished)
    }

    /// A reboot was scheduled (`o` is its applied outcome): closes the host's connection
    /// and waits for the host to come back on a new boot (see [`crate::reconnect`]), then
    /// goes on over the new connection. A host that is not back in time fails the task.
    async fn await_reboot(&mut self, wait: &modules::reboot::RebootWait, o: &mut round::Outcome) {
        let started = Instant::now();
        let fail = |o: &mut round::Outcome, msg: String| {
            o.status = Status::Failed;
            o.result.failed = true;
            o.result.msg = msg.clone();
            o.message = Some(msg);
        };
        let Some(old) = modules::reboot::boot_id(&o.result.stdout).map(str::to_string) else {
            return fail(o, "the reboot's apply printed no boot id".into());
        };
        self.conn.close().await;
        let delegates = self.ctx.delegates;
        let host = self.host;
        let mut discarded = crate::reconnect::Discarded::default();
        let back = crate::reconnect::wait_back(
            || delegates.reopen(host),
            wait,
            &old,
            &self.ctx.opts.interrupt,
            started,
            &mut discarded,
        )
        .await;
        self.replaced_execs += discarded.execs;
        match back {
            Ok(back) => {
                delegates.connected(host, back.conn.as_ref());
                self.replace_conn(back.conn);
                let secs = back.elapsed.as_secs_f64();
                let msg = format!("rebooted in {secs:.1}s");
                o.details.push(msg.clone());
                o.result.msg = msg.clone();
                o.message = Some(msg);
                o.result.extra.insert("rebooted".into(), json!(true));
                o.result.extra.insert("elapsed".into(), json!(secs));
            }
            Err(crate::reconnect::NotBack::Timeout(msg)) => fail(o, msg),
            Err(crate::reconnect::NotBack::Interrupted) => fail(
                o,
                "interrupted while waiting for the host to come back from its reboot".into(),
            ),
        }
    }

    /// `changed_when` and `failed_when`, evaluated over the unit's result.
    fn post_conditions(&self, e: &Entry, r: &mut TaskReport, res: &mut UnitResult) {
        if e.task.changed_when.is_none() && e.task.failed_when.is_none() {
            return;
        }
        let v = bosun_model::template::jv(res.to_json());
        let mut scope = match self.scope.for_task(e.task, self.ctx.templates) {
            Ok(s) => s.into_owned(),
            Err(_) => self.scope.clone(),
        };
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
                    r.message = Some(format!(
                        "failed_when: {}",
                        bosun_model::template::describe(&err)
                    ));
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
                    r.message = Some(format!(
                        "changed_when: {}",
                        bosun_model::template::describe(&err)
                    ));
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
            let v = bosun_model::template::jv(res.to_json());
            let mut scope = match self.scope.for_task(e.task, self.ctx.templates) {
                Ok(s) => s.into_owned(),
                Err(_) => self.scope.clone(),
            };
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
                ignoring(e, &mut r, &res);
                self.emit(r);
                return Ok(vec![(entry, res)]);
            }
            attempt += 1;
            let interrupt = &self.ctx.opts.interrupt;
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(e.task.delay)) => {}
                _ = interrupt.reached(1) => {}
            }
            if interrupt.level() > 0 {
                return Err(HostEnd::Interrupted);
            }
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
                    for (slot, o) in outcomes.into_iter().enumerate() {
                        if let ItemOutcome::Run(unit) = o {
                            queue.push_front(Queued { entry, unit, slot });
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
            limits: self.ctx.limits,
            roles: self.ctx.roles,
            fatal: self.ctx.fatal,
            delegates: self.ctx.delegates,
        };
        let mut stats = before.clone();
        let mut inner = HostRun::new(&ctx, self.host, self.conn.clone(), self.scope, &mut stats);
        inner.replaced_execs = self.replaced_execs;
        inner.conn_base = self.conn_base;
        inner.pending_effects = std::mem::take(&mut self.pending_effects);
        inner.pending_handlers_unread = self.pending_handlers_unread;
        inner.facts_known = self.facts_known;
        let r = inner.round(entries, queue).await;
        self.conn = inner.conn.clone();
        self.replaced_execs = inner.replaced_execs;
        self.conn_base = inner.conn_base;
        self.recorded |= inner.recorded;
        self.pending_effects = std::mem::take(&mut inner.pending_effects);
        self.pending_handlers_unread = inner.pending_handlers_unread;
        self.facts_known = inner.facts_known;
        for k in std::mem::take(&mut inner.pending_earlier) {
            self.notified.insert(k.clone());
            self.pending_earlier.push(k);
        }
        r
    }
}

/// A task's unit results in loop item order (they finish in another order when some items
/// were skipped at expansion, or ran in later rounds).
fn item_order(res: Option<Vec<(usize, UnitResult)>>) -> Vec<UnitResult> {
    let mut res = res.unwrap_or_default();
    res.sort_by_key(|(slot, _)| *slot);
    res.into_iter().map(|(_, r)| r).collect()
}

/// Shell that records, on the host, that `handlers` of `role` were notified.
pub fn record_notification(role: &str, handlers: &[String]) -> String {
    let names: Vec<String> = handlers.iter().map(|h| quote(h)).collect();
    format!(
        "[ -d \"$__bs/notify\" ] || mkdir -p \"$__bs/notify\" || exit 1\n\
         printf '%s\\n' {} >> \"$__bs/notify/\"{} || exit 1\n",
        names.join(" "),
        quote(role)
    )
}

/// Shell that clears the recorded notifications of `roles` (their handlers have run).
pub fn clear_notifications(roles: &[&str]) -> String {
    let files: Vec<String> = roles
        .iter()
        .map(|r| format!("\"$__bs/notify/\"{}", quote(r)))
        .collect();
    format!("{STATE_DIR_SH}rm -f -- {}\n", files.join(" "))
}
