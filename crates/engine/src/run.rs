//! The converge pipeline: inventory → connect → probe → plan → apply → report.
//!
//! Plays run in order with a barrier between them. Within a play, hosts run in parallel
//! (at most `forks` at once), in batches of `serial`. A host that fails or cannot be
//! reached drops out of the rest of the run; the others carry on unless the play's
//! `max_fail_percentage` is exceeded.

use crate::event::{Event, HostRecap, Status, TaskReport};
use crate::expand::{Globals, PlayVars, Scope};
use crate::host::{Entry, HostEnd, HostRun, PlayCtx};
use crate::remote::{Connector, Remote};
use crate::{expand, host};
use bosun_model::diag::{LoadError, LoadErrors, Place};
use bosun_model::inventory::{Host, Inventory};
use bosun_model::redact::Redactor;
use bosun_model::site::{Play, Role, Site};
use bosun_model::template::Templates;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Mutex, Semaphore};

/// What the operator asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    pub limit: Option<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub forks: usize,
    pub extra_vars: Map<String, Value>,
    pub force_handlers: bool,
    pub accept_new_host_keys: bool,
    /// Raised by the command line on Ctrl-C / SIGTERM (see [`crate::interrupt`]).
    pub interrupt: crate::interrupt::Interrupt,
}

/// Sends events to the renderer, scrubbing secrets first.
pub struct Emitter {
    tx: mpsc::UnboundedSender<Event>,
    redactor: Redactor,
}

impl Emitter {
    pub fn new(tx: mpsc::UnboundedSender<Event>, redactor: Redactor) -> Self {
        Emitter { tx, redactor }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn send(&self, ev: Event) {
        let _ = self.tx.send(ev.redacted(&self.redactor));
    }
}

/// Per-host counters for the recap.
#[derive(Debug, Clone, Default)]
pub struct HostStats {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub ignored: u32,
    /// Failures a block's rescue handled.
    pub rescued: u32,
    pub changed_tasks: Vec<String>,
}

impl HostStats {
    pub fn count(&mut self, r: &TaskReport) {
        match r.status {
            Status::Ok => self.ok += 1,
            Status::Changed => {
                self.changed += 1;
                let name = match &r.item {
                    Some(i) => format!("{} ({i})", r.task),
                    None => r.task.clone(),
                };
                self.changed_tasks.push(name);
            }
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Ignored => self.ignored += 1,
        }
    }
}

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub recap: Vec<HostRecap>,
    pub changed: bool,
    pub failed: bool,
    /// Ctrl-C or SIGTERM stopped the run (exit code 130).
    pub interrupted: bool,
}

struct HostState {
    stats: HostStats,
    unreachable: Option<String>,
    failed: bool,
    interrupted: bool,
    /// Gathered by the host's first round of the run; every later play sees them.
    facts: Option<minijinja::Value>,
    execs_per_play: Vec<u64>,
    seconds: f64,
}

/// Checks every task of every play on every targeted host before anything is contacted:
/// unknown variables, bad module arguments, missing templates and files.
pub fn preflight(
    inv: &Inventory,
    site: &Site,
    opts: &RunOptions,
    templates: &Templates,
) -> Result<(), LoadErrors> {
    let globals = Globals::new(inv);
    let mut errors: Vec<LoadError> = Vec::new();
    let mut seen: BTreeSet<(String, u64, String)> = BTreeSet::new();
    for play in &site.plays {
        let hosts = match play_hosts(inv, play, opts) {
            Ok(h) => h,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let roles: Vec<&Role> = play
            .roles
            .iter()
            .filter_map(|r| site.roles.get(r))
            .collect();
        let pv = PlayVars {
            roles: &roles,
            play_vars: &play.vars,
            extra: &opts.extra_vars,
            globals: &globals,
            play_hosts: &names,
            play_hosts_value: bosun_model::template::jv(&names),
            check: opts.check,
            templates,
        };
        for host in hosts {
            let mut scope = Scope::new(host, &pv);
            // The play's tasks (pre_tasks, roles, post_tasks), then its roles' handlers.
            let tasks: Vec<(&Role, &bosun_model::site::Task)> = play
                .tasks
                .iter()
                .filter_map(|t| site.role_of(t).map(|r| (r, t)))
                .chain(
                    roles
                        .iter()
                        .flat_map(|r| r.handlers.iter().map(move |h| (*r, h))),
                )
                .collect();
            for (_, task) in &tasks {
                for name in expand::defined_names(task) {
                    scope.set_pending(&name);
                }
            }
            // A rescue reads what failed.
            if tasks.iter().any(|(_, t)| t.in_rescue()) {
                scope.set_pending("ansible_failed_task");
                scope.set_pending("ansible_failed_result");
            }
            scope.set_facts_pending();
            scope.resolve(templates);
            {
                for (i, (role, task)) in tasks.iter().enumerate() {
                    // `meta` is the engine's, not a module's: nothing to expand.
                    if task.module == "meta" {
                        continue;
                    }
                    let expanded = expand::expand(i, task, role, &site.project, templates, &scope);
                    if let Ok(units) = &expanded {
                        if let Some(e) = unknown_delegate(inv, task, units) {
                            let key = (e.place.to_string(), e.place.line, e.message.clone());
                            if seen.insert(key) {
                                errors.push(e);
                            }
                        }
                    }
                    if let Err(e) = expanded {
                        // One report per task and message, not one per host.
                        let key = (e.place.to_string(), e.place.line, e.message.clone());
                        if seen.insert(key) {
                            let mut le = e.into_load_error();
                            le.message = format!("{} (host {})", le.message, host.name);
                            errors.push(le);
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadErrors(errors))
    }
}

/// A `delegate_to` naming neither an inventory host nor the controller.
fn unknown_delegate(
    inv: &Inventory,
    task: &bosun_model::site::Task,
    units: &[expand::ItemOutcome],
) -> Option<LoadError> {
    units.iter().find_map(|u| {
        let expand::ItemOutcome::Run(u) = u else {
            return None;
        };
        let d = u.delegate_to.as_deref()?;
        if crate::local::is_local(d) || inv.hosts.contains_key(d) {
            return None;
        }
        let known: Vec<&str> = inv.hosts.keys().map(String::as_str).collect();
        let e = LoadError::new(
            task.place.clone(),
            format!(
                "task `{}`: delegate_to `{d}` is not a host of the inventory",
                task.name
            ),
        );
        Some(match bosun_model::text::closest(d, &known) {
            Some(s) => e.hint(format!("did you mean `{s}`? (`local` is the controller)")),
            None => e.hint("name an inventory host, or `local` for the controller"),
        })
    })
}

/// Connections for `delegate_to`, opened on first use and kept for the whole run. They are
/// kept apart from the hosts' own connections, which close after each host's last play
/// while another host may still delegate to it.
pub struct Delegates {
    inv: Arc<Inventory>,
    connector: Arc<dyn Connector>,
    emitter: Arc<Emitter>,
    open: Mutex<HashMap<String, Arc<dyn Remote>>>,
}

impl Delegates {
    /// The connection to `name` (an inventory host, or the controller).
    pub async fn get(&self, name: &str) -> Result<Arc<dyn Remote>, String> {
        // Held while connecting: two hosts delegating to the same host share one connection.
        let mut open = self.open.lock().await;
        if let Some(c) = open.get(name) {
            return Ok(c.clone());
        }
        let c: Arc<dyn Remote> = if crate::local::is_local(name) {
            Arc::new(crate::local::Local::default())
        } else {
            let host =
                self.inv.hosts.get(name).ok_or_else(|| {
                    format!("delegate_to `{name}` is not a host of the inventory")
                })?;
            let c = self
                .connector
                .open(host)
                .await
                .map_err(|e| format!("delegate_to {name}: {e}"))?;
            self.emitter.send(Event::HostConnected {
                host: host.name.clone(),
                seconds: c.connect_seconds(),
            });
            c
        };
        open.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// A new connection to the inventory host `name`, neither shared nor kept: a host that
    /// rebooted is reached again with it (its old connection died with it).
    pub async fn reopen(&self, name: &str) -> Result<Arc<dyn Remote>, String> {
        let host = self
            .inv
            .hosts
            .get(name)
            .ok_or_else(|| format!("`{name}` is not a host of the inventory"))?;
        self.connector.open(host).await.map_err(|e| e.to_string())
    }

    /// Announces a connection made with [`Self::reopen`] that the run goes on with.
    pub fn connected(&self, name: &str, c: &dyn Remote) {
        self.emitter.send(Event::HostConnected {
            host: name.to_string(),
            seconds: c.connect_seconds(),
        });
    }

    async fn close(&self) {
        for c in self.open.lock().await.values() {
            c.close().await;
        }
    }
}

/// The hosts of a play after `--limit`.
pub fn play_hosts<'a>(
    inv: &'a Inventory,
    play: &Play,
    opts: &RunOptions,
) -> Result<Vec<&'a Host>, LoadError> {
    let mut hosts = inv.select(&play.hosts).map_err(|m| {
        LoadError::new(play.place.clone(), m).hint("fix the play's `hosts:` pattern")
    })?;
    if let Some(limit) = &opts.limit {
        let allowed: BTreeSet<&str> = inv
            .select(limit)
            .map_err(|m| LoadError::new(Place::default(), format!("--limit: {m}")))?
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        hosts.retain(|h| allowed.contains(h.name.as_str()));
    }
    Ok(hosts)
}

/// Runs the site. Load-time problems were already reported by [`preflight`].
pub async fn run(
    inv: Arc<Inventory>,
    site: Arc<Site>,
    opts: Arc<RunOptions>,
    templates: Arc<Templates>,
    emitter: Arc<Emitter>,
    connector: Arc<dyn Connector>,
) -> RunSummary {
    let started = Instant::now();
    let globals = Globals::new(&inv);
    // Each play's hosts, selected once (a play whose pattern fails was reported by preflight).
    let hosts_of_play: Vec<Option<Vec<&Host>>> = site
        .plays
        .iter()
        .map(|play| play_hosts(&inv, play, &opts).ok())
        .collect();
    let mut all_hosts: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for h in hosts_of_play.iter().flatten().flatten() {
        if seen.insert(&h.name) {
            all_hosts.push(h.name.clone());
        }
    }
    emitter.send(Event::RunStart {
        site: site.path.display().to_string(),
        inventory: inv.path.display().to_string(),
        check: opts.check,
        hosts: all_hosts.clone(),
        plays: site.plays.len(),
    });
    let conns: Arc<Mutex<HashMap<String, Arc<dyn Remote>>>> = Arc::new(Mutex::new(HashMap::new()));
    let delegates = Arc::new(Delegates {
        inv: inv.clone(),
        connector: connector.clone(),
        emitter: emitter.clone(),
        open: Mutex::new(HashMap::new()),
    });
    let mut state: BTreeMap<String, HostState> = all_hosts
        .iter()
        .map(|h| {
            (
                h.clone(),
                HostState {
                    stats: HostStats::default(),
                    unreachable: None,
                    failed: false,
                    interrupted: false,
                    facts: None,
                    execs_per_play: Vec::new(),
                    seconds: 0.0,
                },
            )
        })
        .collect();
    let forks = Arc::new(Semaphore::new(opts.forks.max(1)));

    // The last play of each host: its connection is closed as soon as that play is done
    // for it, so memory and open sessions are bounded by --forks, not by the host count.
    let mut last_play: HashMap<String, usize> = HashMap::new();
    for (pi, hs) in hosts_of_play.iter().enumerate() {
        for h in hs.iter().flatten() {
            last_play.insert(h.name.clone(), pi);
        }
    }
    let last_play = Arc::new(last_play);

    'plays: for (play_index, play) in site.plays.iter().enumerate() {
        let Some(hosts) = &hosts_of_play[play_index] else {
            continue;
        };
        let hosts: Vec<&Host> = hosts
            .iter()
            .copied()
            .filter(|h| {
                state
                    .get(&h.name)
                    .is_some_and(|s| s.unreachable.is_none() && !s.failed && !s.interrupted)
            })
            .collect();
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        emitter.send(Event::PlayStart {
            play: play.name.clone(),
            hosts: names.clone(),
        });
        if hosts.is_empty() {
            emitter.send(Event::PlayEnd {
                play: play.name.clone(),
                aborted: false,
                reason: Some("no hosts left".into()),
            });
            continue;
        }
        let roles: Vec<&Role> = play
            .roles
            .iter()
            .filter_map(|r| site.roles.get(r))
            .collect();
        let batch_size = play.serial.batch_size(hosts.len());
        let limits = bosun_model::inventory::Timeouts {
            task: play.task_timeout.unwrap_or(inv.timeouts.task),
            probe: inv.timeouts.probe,
        };
        let mut play_failed = 0usize;
        let fatal = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pv = PlayVars {
            roles: &roles,
            play_vars: &play.vars,
            extra: &opts.extra_vars,
            globals: &globals,
            play_hosts: &names,
            play_hosts_value: bosun_model::template::jv(&names),
            check: opts.check,
            templates: &templates,
        };
        // Shared by every host's future (a clone per host made memory grow with hosts²).
        let names_shared: Arc<Vec<String>> = Arc::new(names.clone());
        for batch in hosts.chunks(batch_size) {
            let mut futs = FuturesUnordered::new();
            for host in batch {
                let stats = state
                    .get_mut(&host.name)
                    .map(|s| std::mem::take(&mut s.stats))
                    .unwrap_or_default();
                // Each play has its own scope: its roles' defaults and vars. Registered
                // results live for the play that registered them.
                let mut scope = Scope::new(host, &pv);
                if let Some(f) = state.get(&host.name).and_then(|s| s.facts.clone()) {
                    scope.set_facts(&f, &opts.extra_vars);
                    scope.resolve(&templates);
                }
                let forks = forks.clone();
                let conns = conns.clone();
                let connector = connector.clone();
                let emitter = emitter.clone();
                let opts = opts.clone();
                let templates = templates.clone();
                let site = site.clone();
                let names = names_shared.clone();
                let last_play = last_play.clone();
                let roles = roles.clone();
                let fatal = fatal.clone();
                let delegates = delegates.clone();
                futs.push(async move {
                    let _permit = forks.acquire().await;
                    let t0 = Instant::now();
                    let mut scope = scope;
                    let mut stats = stats;
                    if opts.interrupt.level() > 0 {
                        return (
                            host.name.clone(),
                            scope,
                            stats,
                            HostEnd::Interrupted,
                            0,
                            0.0,
                        );
                    }
                    let conn = match connection(&conns, host, connector.as_ref(), &emitter).await {
                        Ok(c) => c,
                        Err(msg) => {
                            return (
                                host.name.clone(),
                                scope,
                                stats,
                                HostEnd::Unreachable(msg),
                                0,
                                t0.elapsed().as_secs_f64(),
                            );
                        }
                    };
                    let ctx = PlayCtx {
                        play,
                        project: &site.project,
                        templates: &templates,
                        opts: &opts,
                        emit: &emitter,
                        play_hosts: &names,
                        limits,
                        roles: &roles,
                        fatal: &fatal,
                        delegates: &delegates,
                    };
                    let entries: Vec<Entry> = play
                        .tasks
                        .iter()
                        .filter_map(|t| {
                            site.role_of(t).map(|r| Entry {
                                role: r,
                                task: t,
                                handler: false,
                            })
                        })
                        .collect();
                    let mut run = HostRun::new(&ctx, &host.name, conn, &mut scope, &mut stats);
                    let mut end = run.run(&entries).await;
                    if end == HostEnd::Failed && play.any_errors_fatal {
                        fatal.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    let notified = std::mem::take(&mut run.notified);
                    if !run.pending_earlier.is_empty() {
                        emitter.send(Event::HandlersPending {
                            host: host.name.clone(),
                            play: play.name.clone(),
                            handlers: run.pending_earlier.iter().map(|(_, h)| h.clone()).collect(),
                        });
                    }
                    let recorded = run.recorded || !run.pending_earlier.is_empty();
                    // Notifications recorded on the host are done with once their handlers
                    // have run, or when nothing was notified after all (`changed_when`).
                    let mut clear = notified.is_empty() && run.recorded && end == HostEnd::Done;
                    // Handlers: once, in the order the role defines them, only if notified.
                    if !notified.is_empty() {
                        let handlers: Vec<Entry> = host::handlers_for(&roles, &notified);
                        if end == HostEnd::Done || (end == HostEnd::Failed && opts.force_handlers) {
                            let hend = run.run(&handlers).await;
                            clear = hend == HostEnd::Done && recorded;
                            if end == HostEnd::Done {
                                end = hend;
                            }
                        } else {
                            emitter.send(Event::HandlersSkipped {
                                host: host.name.clone(),
                                play: play.name.clone(),
                                handlers: handlers.iter().map(|h| h.task.name.clone()).collect(),
                            });
                        }
                    }
                    // A reboot replaced the connection: the rest goes over the new one.
                    let conn = run.conn.clone();
                    if clear && !opts.check {
                        let roles: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
                        if let Err(e) = conn.run(&host::clear_notifications(&roles)).await {
                            end = HostEnd::Unreachable(e.to_string());
                        }
                    }
                    if let HostEnd::Failed = end {
                        let (task, message) = run.failure.take().unwrap_or_default();
                        emitter.send(Event::HostFailed {
                            host: host.name.clone(),
                            play: play.name.clone(),
                            task,
                            message,
                        });
                    }
                    let execs = run.execs();
                    if last_play.get(&host.name) == Some(&play_index) {
                        conns.lock().await.remove(&host.name);
                        conn.close().await;
                    } else {
                        conns.lock().await.insert(host.name.clone(), conn);
                    }
                    (
                        host.name.clone(),
                        scope,
                        stats,
                        end,
                        execs,
                        t0.elapsed().as_secs_f64(),
                    )
                });
            }
            while let Some((name, scope, stats, end, execs, secs)) = futs.next().await {
                if let Some(s) = state.get_mut(&name) {
                    if s.facts.is_none() {
                        s.facts = scope.get("facts").cloned();
                    }
                    drop(scope);
                    s.stats = stats;
                    s.execs_per_play.push(execs);
                    s.seconds += secs;
                    match end {
                        HostEnd::Done => {}
                        HostEnd::Failed => {
                            s.failed = true;
                            play_failed += 1;
                        }
                        HostEnd::Unreachable(msg) => {
                            emitter.send(Event::HostUnreachable {
                                host: name.clone(),
                                message: msg.clone(),
                            });
                            s.unreachable = Some(msg);
                            play_failed += 1;
                        }
                        HostEnd::Interrupted => s.interrupted = true,
                    }
                }
            }
            if opts.interrupt.level() > 0 {
                emitter.send(Event::PlayEnd {
                    play: play.name.clone(),
                    aborted: true,
                    reason: Some("interrupted (Ctrl-C or SIGTERM): nothing new was started".into()),
                });
                break 'plays;
            }
            let pct = 100.0 * play_failed as f64 / hosts.len() as f64;
            let over = match play.max_fail_percentage {
                Some(max) => pct > max,
                None => play_failed == hosts.len(),
            } || (play.any_errors_fatal && play_failed > 0);
            if over {
                emitter.send(Event::PlayEnd {
                    play: play.name.clone(),
                    aborted: true,
                    reason: Some(match play.max_fail_percentage {
                        _ if play.any_errors_fatal => format!("{play_failed} of {} hosts failed, and the play has any_errors_fatal", hosts.len()),
                        Some(max) => format!("{play_failed} of {} hosts failed ({pct:.0}% > max_fail_percentage {max})", hosts.len()),
                        None => "every host of the play failed".into(),
                    }),
                });
                break 'plays;
            }
        }
        emitter.send(Event::PlayEnd {
            play: play.name.clone(),
            aborted: false,
            reason: None,
        });
    }

    for c in conns.lock().await.values() {
        c.close().await;
    }
    delegates.close().await;
    let mut summary = RunSummary::default();
    let mut changed_tasks = Vec::new();
    for (name, s) in &state {
        // Counted per play, over every connection (a reboot replaces the host's).
        let execs = s.execs_per_play.iter().sum();
        summary.changed |= s.stats.changed > 0;
        summary.failed |= s.failed || s.unreachable.is_some();
        for t in &s.stats.changed_tasks {
            changed_tasks.push((name.clone(), t.clone()));
        }
        summary.recap.push(HostRecap {
            host: name.clone(),
            ok: s.stats.ok,
            changed: s.stats.changed,
            failed: s.stats.failed,
            skipped: s.stats.skipped,
            ignored: s.stats.ignored,
            rescued: s.stats.rescued,
            unreachable: s.unreachable.is_some(),
            interrupted: s.interrupted,
            seconds: s.seconds,
            execs,
            execs_per_play: s.execs_per_play.clone(),
        });
    }
    emitter.send(Event::Recap {
        hosts: summary.recap.clone(),
        changed_tasks,
        seconds: started.elapsed().as_secs_f64(),
        check: opts.check,
        interrupted: opts.interrupt.level() > 0,
    });
    summary.interrupted = opts.interrupt.level() > 0;
    summary
}

/// The host's connection, opened on first use and kept for the whole run.
async fn connection(
    conns: &Mutex<HashMap<String, Arc<dyn Remote>>>,
    host: &Host,
    connector: &dyn Connector,
    emitter: &Emitter,
) -> Result<Arc<dyn Remote>, String> {
    if let Some(c) = conns.lock().await.get(&host.name) {
        return Ok(c.clone());
    }
    let c = connector.open(host).await.map_err(|e| e.to_string())?;
    emitter.send(Event::HostConnected {
        host: host.name.clone(),
        seconds: c.connect_seconds(),
    });
    conns.lock().await.insert(host.name.clone(), c.clone());
    Ok(c)
}
