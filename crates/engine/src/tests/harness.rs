//! A project (inventory, site, roles) over fake hosts, a converge through [`crate::run`], and
//! what came out of it.

use crate::event::{Event, HostRecap, Status, TaskReport};
use crate::fake::{FakeHost, FakeNet};
use crate::{Emitter, RunOptions, RunSummary};
use bosun_model::inventory::Inventory;
use bosun_model::redact::{Redactor, SecretSet};
use bosun_model::template::Templates;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The inventory secret of every project.
pub const SECRET: &str = "Sup3r-Secret-Pa55word";

/// A project over fake hosts: `roles/site.yml` defaults to one play `web` over every host
/// with the role `main`; each host's `root` variable is its fake directory.
pub struct Project {
    pub net: Arc<FakeNet>,
    pub dir: PathBuf,
    hosts: Vec<String>,
    inventory_extra: String,
}

impl Project {
    pub fn new(hosts: &[&str], files: &[(&str, &str)]) -> Project {
        Project::with_inventory(hosts, "", files)
    }

    /// Like [`Project::new`], with `extra` top-level inventory lines (`probe_timeout: 1`).
    pub fn with_inventory(hosts: &[&str], extra: &str, files: &[(&str, &str)]) -> Project {
        let net = Arc::new(FakeNet::new("engine"));
        let dir = net.root.join("project");
        let p = Project {
            net,
            dir,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            inventory_extra: extra.to_string(),
        };
        for h in hosts {
            p.net.host(h);
        }
        p.write(&[(
            "roles/site.yml",
            "- name: web\n  hosts: web\n  roles: [main]\n",
        )]);
        p.write(files);
        p.write_inventory();
        p
    }

    fn write_inventory(&self) {
        let hosts: String = self
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "  {h}: {{address: 192.0.2.1, vars: {{root: \"{}\"}}}}\n",
                    self.root(h).display()
                )
            })
            .collect();
        let inv = format!(
            "{}\nvars:\n  shared: \"{}\"\nsecrets:\n  app_password: {SECRET}\nhosts:\n{hosts}groups:\n  web: {{hosts: [{}]}}\n",
            self.inventory_extra,
            self.shared().display(),
            self.hosts.join(", "),
        );
        self.write(&[("inventory.yml", &inv)]);
    }

    /// Writes `files` (path relative to the project → content).
    pub fn write(&self, files: &[(&str, &str)]) {
        write_tree(&self.dir, files);
    }

    pub fn host(&self, name: &str) -> Arc<FakeHost> {
        self.net.host(name)
    }

    /// The host's directory (its `root` variable).
    pub fn root(&self, host: &str) -> PathBuf {
        self.net.host(host).dir.clone()
    }

    /// A directory every host sees as `shared` (for run_once and ordering checks).
    pub fn shared(&self) -> PathBuf {
        let d = self.net.root.join("shared");
        std::fs::create_dir_all(&d).expect("shared dir");
        d
    }

    /// Reads a file below the host's directory ("" when it is missing).
    pub fn read(&self, host: &str, rel: &str) -> String {
        std::fs::read_to_string(self.root(host).join(rel)).unwrap_or_default()
    }

    pub fn exists(&self, host: &str, rel: &str) -> bool {
        self.root(host).join(rel).exists()
    }

    /// Converges with default options.
    pub async fn converge(&self) -> Outcome {
        self.run(opts()).await
    }

    /// The preflight's errors (file:line, message), as `bosun converge` checks before it
    /// connects anywhere; empty when the site would run.
    pub fn preflight(&self) -> Vec<(String, u64, String)> {
        let inv = Inventory::load(&self.dir.join("inventory.yml"))
            .unwrap_or_else(|e| panic!("inventory: {}", e.render()));
        let site = match crate::load_site(&self.dir.join("roles/site.yml")) {
            Ok(s) => s,
            Err(e) => {
                return e
                    .0
                    .into_iter()
                    .map(|e| (e.place.file.display().to_string(), e.place.line, e.message))
                    .collect()
            }
        };
        let templates = Templates::with_secrets(SecretSet::new(&inv.secret_values));
        match crate::preflight(&inv, &site, &opts(), &templates) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| (e.place.file.display().to_string(), e.place.line, e.message))
                    .collect()
            }
        }
    }

    /// Runs the site as the command line does: load, preflight, run; collects the events.
    pub async fn run(&self, opts: RunOptions) -> Outcome {
        let inv = Inventory::load(&self.dir.join("inventory.yml"))
            .unwrap_or_else(|e| panic!("inventory: {}", e.render()));
        let site = crate::load_site(&self.dir.join("roles/site.yml"))
            .unwrap_or_else(|e| panic!("site: {e:?}"));
        let secrets = SecretSet::new(&inv.secret_values);
        let templates = Templates::with_secrets(secrets.clone());
        if let Err(e) = crate::preflight(&inv, &site, &opts, &templates) {
            panic!("preflight: {e:?}");
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let emitter = Arc::new(Emitter::new(tx, Redactor::shared(secrets)));
        let summary = crate::run(
            Arc::new(inv),
            Arc::new(site),
            Arc::new(opts),
            Arc::new(templates),
            emitter,
            self.net.clone(),
        )
        .await;
        let mut events = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        let o = Outcome { events, summary };
        // Shown with the output of a failing test.
        println!("{}", o.dump());
        o
    }
}

/// Default options: what `bosun converge` gives.
pub fn opts() -> RunOptions {
    RunOptions {
        forks: 10,
        ..RunOptions::default()
    }
}

/// Writes `files` (relative path → content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = root.join(p);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&path, c).expect("write");
    }
}

/// The one preflight error of the role `main` whose tasks are `yaml`, on `hosts`: it must
/// be at `line` of its tasks file; returns its message.
pub fn the_preflight_error(hosts: &[&str], line: u64, yaml: &str) -> String {
    let p = Project::new(hosts, &[tasks(yaml)]);
    let errors = p.preflight();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (file, at, message) = &errors[0];
    assert!(
        file.ends_with("roles/main/tasks.yml") && *at == line,
        "{errors:?}"
    );
    message.clone()
}

/// The role `main`'s task file (and optionally its handlers).
pub fn tasks(yaml: &str) -> (&'static str, &str) {
    ("roles/main/tasks.yml", yaml)
}

pub fn handlers(yaml: &str) -> (&'static str, &str) {
    ("roles/main/handlers.yml", yaml)
}

/// What a run emitted and returned.
pub struct Outcome {
    pub events: Vec<Event>,
    pub summary: RunSummary,
}

impl Outcome {
    /// Every task report, in order.
    pub fn reports(&self) -> Vec<&TaskReport> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Task(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The reports of `task` on `host` (one per loop item).
    pub fn all(&self, host: &str, task: &str) -> Vec<&TaskReport> {
        self.reports()
            .into_iter()
            .filter(|r| r.host == host && r.task == task)
            .collect()
    }

    /// The report of `task` on `host`; panics, listing what was reported, when there is none.
    pub fn task(&self, host: &str, task: &str) -> &TaskReport {
        match self.all(host, task).first() {
            Some(r) => r,
            None => panic!("no report of `{task}` on {host}:\n{}", self.dump()),
        }
    }

    pub fn status(&self, host: &str, task: &str) -> Status {
        self.task(host, task).status
    }

    /// Whether `task` was reported on `host` at all.
    pub fn reported(&self, host: &str, task: &str) -> bool {
        !self.all(host, task).is_empty()
    }

    pub fn recap(&self, host: &str) -> &HostRecap {
        match self.summary.recap.iter().find(|r| r.host == host) {
            Some(r) => r,
            None => panic!("no recap of {host}:\n{}", self.dump()),
        }
    }

    /// Remote scripts run on `host` in each play.
    pub fn execs(&self, host: &str) -> Vec<u64> {
        self.recap(host).execs_per_play.clone()
    }

    /// The recap event's `changed_tasks`.
    pub fn changed_tasks(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::Recap { changed_tasks, .. } => Some(changed_tasks.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no recap event:\n{}", self.dump()))
    }

    /// The first event `f` picks.
    pub fn find<T>(&self, f: impl Fn(&Event) -> Option<T>) -> Option<T> {
        self.events.iter().find_map(f)
    }

    /// The message of the `host_failed` event of `host`.
    pub fn host_failed(&self, host: &str) -> Option<(String, String)> {
        self.find(|e| match e {
            Event::HostFailed {
                host: h,
                task,
                message,
                ..
            } if h == host => Some((task.clone(), message.clone())),
            _ => None,
        })
    }

    pub fn unreachable(&self, host: &str) -> Option<String> {
        self.find(|e| match e {
            Event::HostUnreachable { host: h, message } if h == host => Some(message.clone()),
            _ => None,
        })
    }

    /// `(aborted, reason)` of the play's end.
    pub fn play_end(&self, play: &str) -> Option<(bool, Option<String>)> {
        self.find(|e| match e {
            Event::PlayEnd {
                play: p,
                aborted,
                reason,
            } if p == play => Some((*aborted, reason.clone())),
            _ => None,
        })
    }

    /// The hosts a play started with; `None` when it never started.
    pub fn play_hosts(&self, play: &str) -> Option<Vec<String>> {
        self.find(|e| match e {
            Event::PlayStart { play: p, hosts } if p == play => Some(hosts.clone()),
            _ => None,
        })
    }

    /// Every event, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
