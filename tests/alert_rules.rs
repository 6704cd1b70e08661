//! The monitoring role without hosts. Its templates are rendered exactly as a converge
//! would (the site loader, the role's defaults, the lab inventory and its `monitoring`
//! group), then checked by the tools the role
//! validates them with on the host: `promtool check rules` and `promtool test rules` on
//! tests/fixtures/alerts/ (every alert fires in one case and stays silent in another),
//! `promtool check config`, `amtool check-config` and the blackbox exporter's
//! `--config.check`. HAProxy's /metrics block is rendered here too.
//!
//! The tools come from Debian's prometheus (promtool; Debian 13: promtool),
//! prometheus-alertmanager (amtool) and prometheus-blackbox-exporter packages, which
//! start daemons when installed: tests/run.sh unpacks them into /opt/bosun-ci/promtool
//! instead. A missing tool fails the test, with how to get it.

mod common;
use bosun_model::inventory::Inventory;
use bosun_model::site::Site;
use bosun_model::template::Templates;
use common::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where tests/run.sh unpacks the packages.
const TOOLS_ROOT: &str = "/opt/bosun-ci/promtool";
/// The host Prometheus runs on in these tests (any lab host would do).
const MONITOR: &str = "etcd";

/// `env` if set, else `name` on PATH, else in the unpacked packages; a missing tool fails.
fn tool(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let unpacked = [
        Path::new(TOOLS_ROOT).join("usr/bin"),
        Path::new(TOOLS_ROOT).join("usr/sbin"),
    ];
    std::env::split_paths(&path)
        .chain(unpacked)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: set {env}=/path/to/{name}, put it on PATH, or unpack Debian's \
                 {package} package without installing it (installing starts a daemon), as \
                 tests/run.sh does: cd \"$(mktemp -d)\" && apt-get download {package} && \
                 dpkg -x {package}_*.deb {TOOLS_ROOT}"
            )
        })
}

fn promtool() -> PathBuf {
    // Debian 12 ships promtool inside prometheus, Debian 13 as its own package.
    tool("PROMTOOL", "promtool", "prometheus (Debian 13: promtool)")
}

/// Runs `cmd` in `dir`; fails the test with its output unless it succeeds.
fn run_ok(dir: &Path, cmd: &Path, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", cmd.display()));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{stdout}\n{stderr}",
        cmd.display(),
        args.join(" "),
        out.status
    );
    stdout + &stderr
}

/// The repo's site and lab inventory (its `monitoring` group runs the role).
struct Monitoring {
    dir: PathBuf,
    inv: Inventory,
    site: Site,
}

fn monitoring() -> Monitoring {
    let dir = repo();
    let inv = Inventory::load(&dir.join("inventory/lab.yml")).expect("the lab inventory");
    assert_eq!(
        inv.select("monitoring").expect("a monitoring group").len(),
        1,
        "the lab's monitoring group is one host"
    );
    let site = bosun_engine::load_site(&dir.join("roles/site.yml")).expect("the site");
    Monitoring { dir, inv, site }
}

impl Monitoring {
    fn templates(&self) -> Templates {
        Templates::with_secrets(bosun_model::redact::SecretSet::new(&self.inv.secret_values))
    }

    /// Every task and handler of the role expands for the monitoring host (templates
    /// rendered, variables defined), as `bosun converge` checks before contacting a host.
    fn preflight(&self, extra: &Map<String, Value>) {
        let opts = bosun_engine::RunOptions {
            extra_vars: extra.clone(),
            ..Default::default()
        };
        bosun_engine::preflight(&self.inv, &self.site, &opts, &self.templates())
            .unwrap_or_else(|e| panic!("the monitoring role expands:\n{e}"));
    }

    /// `templates/monitoring/NAME` rendered for the monitoring host, `extra` as `-e`.
    fn render(&self, name: &str, extra: &Map<String, Value>) -> String {
        let t = self.templates();
        let scope = role_scope(&self.inv, &self.site, "monitoring", MONITOR, extra, &t);
        t.render_file(
            &self.dir.join("templates/monitoring").join(name),
            &scope.context(),
        )
        .unwrap_or_else(|e| panic!("{name} renders: {}", bosun_model::template::describe(&e)))
    }

    /// The role's defaults.
    fn defaults(&self) -> &Map<String, Value> {
        &self.site.roles["monitoring"].defaults
    }
}

fn yaml(text: &str) -> Value {
    bosun_model::yaml::parse(Path::new("rendered.yml"), text)
        .unwrap_or_else(|e| panic!("{}\n{text}", e.message))
}

/// The alerts of a rendered rule file, by name.
fn alerts(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| Some((r["alert"].as_str()?.to_string(), r.clone())))
        .collect()
}

#[test]
fn every_alert_fires_and_stays_silent_under_promtool() {
    let m = monitoring();
    let rules = m.render("alerts.yml.j2", &Map::new());
    let out = tempdir("alert-rules");
    std::fs::write(out.join("alerts.yml"), &rules).expect("write rules");

    let alerts = alerts(&yaml(&rules));
    assert!(alerts.len() >= 15, "the seed's alerts: {:?}", alerts.keys());
    for (name, rule) in &alerts {
        for key in ["expr", "for"] {
            assert!(rule[key].is_string(), "{name} has `{key}`:\n{rule}");
        }
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name} has a severity: {rule}"
        );
        for a in ["summary", "description"] {
            let s = rule["annotations"][a].as_str().unwrap_or_default();
            assert!(s.contains("{{ $"), "{name}'s {a} names what alerts: {s:?}");
        }
    }

    // Each alert, at some evaluation time of some fixture, is expected firing, and at
    // another expected silent (`exp_alerts: []`; promtool checks both).
    let fixtures = repo().join("tests/fixtures/alerts");
    let mut files: Vec<String> = Vec::new();
    let mut fires: BTreeMap<String, usize> = BTreeMap::new();
    let mut silent: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(&fixtures).expect("tests/fixtures/alerts") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("fixture");
        let doc = yaml(&text);
        assert_eq!(
            doc["rule_files"],
            json!(["alerts.yml"]),
            "{name} tests the rendered rules"
        );
        for t in doc["tests"].as_array().expect("tests") {
            for case in t["alert_rule_test"].as_array().into_iter().flatten() {
                let alert = case["alertname"].as_str().expect("alertname").to_string();
                assert!(
                    alerts.contains_key(&alert),
                    "{name} tests {alert}, which the rules do not have"
                );
                let firing = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
                *if firing { &mut fires } else { &mut silent }
                    .entry(alert)
                    .or_default() += 1;
            }
        }
        std::fs::copy(&path, out.join(&name)).expect("copy fixture");
        files.push(name);
    }
    files.sort();
    for name in alerts.keys() {
        assert!(fires.contains_key(name), "no fixture makes {name} fire");
        assert!(silent.contains_key(name), "no fixture keeps {name} silent");
    }

    let promtool = promtool();
    run_ok(&out, &promtool, &["check", "rules", "alerts.yml"]);
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let report = run_ok(&out, &promtool, &args);
    assert!(!report.contains("FAILED"), "{report}");
}

/// Every `monitoring_alert_*` variable reaches the rules: with each set to a value found
/// nowhere else, each value is in the rendered file, which still passes promtool.
#[test]
fn every_threshold_comes_from_its_variable() {
    let m = monitoring();
    let mut extra = Map::new();
    let mut expect: Vec<(String, String)> = Vec::new();
    for (i, (k, v)) in m
        .defaults()
        .iter()
        .filter(|(k, _)| k.starts_with("monitoring_alert_"))
        .enumerate()
    {
        let (value, shows) = match v {
            Value::Number(_) => (json!(7000 + i), format!("{}", 7000 + i)),
            // Durations: Prometheus's units.
            Value::String(_) => (json!(format!("{}s", 7000 + i)), format!("{}s", 7000 + i)),
            // Lists of names joined into a regex.
            Value::Array(_) => (json!([format!("x{}", 7000 + i)]), format!("x{}", 7000 + i)),
            other => panic!("{k}: a threshold is a number, a duration or a list: {other}"),
        };
        extra.insert(k.clone(), value);
        expect.push((k.clone(), shows));
    }
    assert!(expect.len() >= 20, "{expect:?}");
    let rules = m.render("alerts.yml.j2", &extra);
    for (k, shows) in &expect {
        assert!(
            rules.contains(shows.as_str()),
            "{k} (set to {shows}) is not in the rules:\n{rules}"
        );
    }
    let out = tempdir("alert-thresholds");
    std::fs::write(out.join("alerts.yml"), &rules).expect("write rules");
    run_ok(&out, &promtool(), &["check", "rules", "alerts.yml"]);
}

#[test]
fn monitoring_configs_pass_the_checks_the_role_runs_on_the_host() {
    let m = monitoring();
    m.preflight(&Map::new());
    let out = tempdir("monitoring-configs");
    let promtool = promtool();

    // prometheus.yml, with its rule_files pointing at the rendered rules, so that
    // `check config` loads them as it does on the host.
    let rules_dir = out.join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    let extra: Map<String, Value> = json!({ "monitoring_rules_dir": rules_dir })
        .as_object()
        .cloned()
        .unwrap();
    std::fs::write(
        rules_dir.join("bosun-alerts.yml"),
        m.render("alerts.yml.j2", &extra),
    )
    .expect("rules");
    let prom = m.render("prometheus.yml.j2", &extra);
    std::fs::write(out.join("prometheus.yml"), &prom).expect("prometheus.yml");
    let checked = run_ok(&out, &promtool, &["check", "config", "prometheus.yml"]);
    assert!(checked.contains("SUCCESS: 1 rule files found"), "{checked}");

    // The lab's hosts, by inventory name, at their private addresses.
    let cfg = yaml(&prom);
    let jobs: BTreeMap<&str, &Value> = cfg["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .map(|j| (j["job_name"].as_str().expect("job_name"), j))
        .collect();
    let targets = |job: &str| -> Vec<(String, String)> {
        jobs[job]["static_configs"]
            .as_array()
            .expect("static_configs")
            .iter()
            .map(|s| {
                (
                    s["labels"]["instance"].as_str().unwrap_or("").to_string(),
                    s["targets"][0].as_str().expect("target").to_string(),
                )
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        targets("node").len(),
        7,
        "every host: {:?}",
        targets("node")
    );
    assert!(targets("node").contains(&("pg1".into(), "10.20.0.21:9100".into())));
    assert_eq!(
        targets("patroni"),
        pairs(&[
            ("pg1", "10.20.0.21:8008"),
            ("pg2", "10.20.0.22:8008"),
            ("pg3", "10.20.0.23:8008")
        ])
    );
    assert_eq!(targets("postgres").len(), 3);
    assert_eq!(
        targets("etcd"),
        pairs(&[
            ("pg1", "10.20.0.21:2379"),
            ("pg2", "10.20.0.22:2379"),
            ("etcd", "10.20.0.31:2379")
        ])
    );
    assert_eq!(targets("haproxy"), pairs(&[("lb", "10.20.0.11:8080")]));
    assert_eq!(
        jobs["haproxy"]["basic_auth"],
        json!({ "username": "stats", "password": "lab-stats-pw" })
    );
    assert_eq!(
        targets("redis"),
        pairs(&[
            ("saleor", "10.20.0.12:9121"),
            ("storefront", "10.20.0.13:9121")
        ])
    );
    let probes: Vec<(String, String, String)> = jobs["blackbox"]["static_configs"]
        .as_array()
        .expect("probes")
        .iter()
        .map(|s| {
            (
                s["labels"]["probe"].as_str().unwrap_or("").to_string(),
                s["labels"]["module"].as_str().unwrap_or("").to_string(),
                s["targets"][0].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let probe = |p: &str, m: &str, u: &str| (p.to_string(), m.to_string(), u.to_string());
    assert_eq!(
        probes,
        vec![
            probe("api-health", "http_2xx", "http://10.20.0.11/health/"),
            probe("api-graphql", "graphql", "http://10.20.0.11/graphql/"),
            probe("dashboard", "http_2xx", "http://10.20.0.11:9000/"),
            probe("storefront", "http_2xx", "http://10.20.0.13:3000/"),
        ]
    );
    // Everything of the monitoring host itself on its private address.
    for job in ["prometheus", "alertmanager", "blackbox_exporter"] {
        assert!(targets(job)[0].1.starts_with("10.20.0.31:"), "{job}");
    }
    assert_eq!(
        cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
        json!(["10.20.0.31:9093"])
    );

    // blackbox.yml: its GraphQL module posts the query as JSON.
    let bb = m.render("blackbox.yml.j2", &Map::new());
    assert_eq!(
        yaml(&bb)["modules"]["graphql"]["http"]["body"],
        json!(r#"{"query":"{ shop { name } }"}"#)
    );
    std::fs::write(out.join("blackbox.yml"), &bb).expect("blackbox.yml");
    let blackbox = tool(
        "BLACKBOX_EXPORTER",
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    run_ok(
        &out,
        &blackbox,
        &["--config.check", "--config.file=blackbox.yml"],
    );

    // alertmanager.yml: no receiver configured (alerts on its page only; the lab's own
    // webhook set aside), then a webhook and e-mail through a relay that asks for a password.
    let amtool = tool("AMTOOL", "amtool", "prometheus-alertmanager");
    let no_receiver: Map<String, Value> = json!({ "monitoring_notify_webhook_url": "" })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let bare = m.render("alertmanager.yml.j2", &no_receiver);
    assert!(!bare.contains("_configs"), "{bare}");
    std::fs::write(out.join("alertmanager.yml"), &bare).expect("alertmanager.yml");
    run_ok(&out, &amtool, &["check-config", "alertmanager.yml"]);
    let both: Map<String, Value> = json!({
        "monitoring_notify_webhook_url": "https://hooks.example.com/alerts/T0KEN",
        "monitoring_notify_email_to": "ops@example.com",
        "monitoring_notify_smarthost": "smtp.example.com:587",
        "monitoring_notify_smtp_user": "alerts",
        "monitoring_notify_smtp_password": "smtp-pw",
    })
    .as_object()
    .cloned()
    .unwrap();
    m.preflight(&both);
    let full = m.render("alertmanager.yml.j2", &both);
    let am = yaml(&full);
    assert_eq!(
        am["receivers"][0]["webhook_configs"][0]["url"],
        json!("https://hooks.example.com/alerts/T0KEN")
    );
    assert_eq!(
        am["receivers"][0]["email_configs"][0]["to"],
        json!("ops@example.com")
    );
    assert_eq!(am["global"]["smtp_auth_password"], json!("smtp-pw"));
    std::fs::write(out.join("alertmanager-full.yml"), &full).expect("alertmanager.yml");
    run_ok(&out, &amtool, &["check-config", "alertmanager-full.yml"]);
}

/// HAProxy's /metrics (the haproxy play of roles/site.yml on the lab's balancer): absent
/// by default, so the lab's configuration is what it was; when asked, on the stats
/// listener, asking for the stats user and password before the exporter answers.
#[test]
fn haproxy_metrics_only_when_asked_and_behind_the_stats_password() {
    let inv = Inventory::load(&repo().join("inventory/lab.yml")).expect("the lab inventory");
    let site = bosun_engine::load_site(&repo().join("roles/site.yml")).expect("the repo's site");
    let render = |on: bool| {
        let t = Templates::new();
        let extra: Map<String, Value> = json!({ "haproxy_prometheus_exporter": on })
            .as_object()
            .cloned()
            .unwrap();
        let scope = role_scope(&inv, &site, "haproxy", "lb", &extra, &t);
        t.render_file(
            &repo().join("templates/haproxy/haproxy.cfg.j2"),
            &scope.context(),
        )
        .expect("haproxy.cfg renders")
    };
    let off = render(false);
    assert!(
        !off.contains("prometheus") && !off.contains("userlist"),
        "{off}"
    );
    assert!(
        off.contains("    timeout check 2s\n\nlisten stats\n    bind 10.20.0.11:8080\n    mode http\n    stats enable\n"),
        "{off}"
    );

    let on = render(true);
    let stats: Vec<&str> = on
        .lines()
        .skip_while(|l| *l != "listen stats")
        .take_while(|l| !l.is_empty())
        .collect();
    // The password check comes first: use-service would answer before `stats auth`.
    assert_eq!(
        &stats[..5],
        [
            "listen stats",
            "    bind 10.20.0.11:8080",
            "    mode http",
            "    http-request auth realm haproxy if { path /metrics } !{ http_auth(stats_users) }",
            "    http-request use-service prometheus-exporter if { path /metrics }",
        ],
        "{on}"
    );
    assert!(
        on.contains("userlist stats_users\n    user stats insecure-password \"lab-stats-pw\"\n"),
        "{on}"
    );
}
