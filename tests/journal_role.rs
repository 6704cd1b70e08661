//! Central logs without hosts: the journal role's files as a converge renders them for the
//! lab inventory (the collector on the `monitoring` host, etcd, 10.20.0.31), the firewall
//! rule for its port, HAProxy's logging, and the role's two shell snippets run here against
//! stand-ins (the first upload's cursor, the uploader's client certificate). The whole path
//! (a request through lb:80 found in the collector's journal) needs the lab.

mod common;
use bosun_model::inventory::Inventory;
use bosun_model::template::Templates;
use common::*;
use serde_json::{json, Map, Value};
use std::process::Command;

const COLLECTOR: &str = "etcd";
const COLLECTOR_ADDRESS: &str = "10.20.0.31";

/// The role's `journal_remote_conf_limits` reads the host's facts (its Debian release),
/// which exist only on a host: these renders say which release they stand for.
fn debian(release: u32, more: Value) -> Map<String, Value> {
    let mut e = vars(more);
    e.insert("journal_remote_conf_limits".into(), json!(release >= 13));
    e
}

/// `templates/DIR/NAME` rendered for `host` as the first play running `role` sees it.
fn render(role: &str, host: &str, template: &str, e: &Map<String, Value>) -> String {
    let (inv, site) = lab_site();
    let t = Templates::with_secrets(bosun_model::redact::SecretSet::new(&inv.secret_values));
    let scope = role_scope(&inv, &site, role, host, e, &t);
    t.render_file(&repo().join("templates").join(template), &scope.context())
        .unwrap_or_else(|err| {
            panic!(
                "{template} renders: {}",
                bosun_model::template::describe(&err)
            )
        })
}

fn journal(host: &str, template: &str, e: &Map<String, Value>) -> String {
    render("journal", host, &format!("journal/{template}"), e)
}

/// The `key=value` lines of a systemd-style file whose key is `key`, in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_lab_has_one_collector_on_the_monitoring_host() {
    let (inv, _) = lab_site();
    let groups = inv.groups_value();
    assert_eq!(groups["monitoring"], json!([COLLECTOR]), "{groups}");
    assert_eq!(
        inv.hosts[COLLECTOR].vars["private_address"],
        json!(COLLECTOR_ADDRESS)
    );
}

#[test]
fn every_host_uploads_to_the_collectors_private_address() {
    let (inv, _) = lab_site();
    for host in inv.hosts.keys() {
        let conf = journal(host, "journal-upload.conf.j2", &debian(13, json!({})));
        assert_eq!(
            values(&conf, "URL"),
            vec![format!("http://{COLLECTOR_ADDRESS}:19532")],
            "{host}:\n{conf}"
        );
        assert!(conf.starts_with("# managed by bosun"), "{conf}");
        assert!(!conf.contains("ServerKeyFile"), "no TLS over http: {conf}");
        // Restarted without a start limit while the collector is away.
        let unit = journal(
            host,
            "journal-upload.service.conf.j2",
            &debian(13, json!({})),
        );
        assert_eq!(values(&unit, "Restart"), vec!["always"], "{unit}");
        assert_eq!(values(&unit, "RestartSec"), vec!["10"], "{unit}");
        assert_eq!(values(&unit, "StartLimitIntervalSec"), vec!["0"], "{unit}");
    }
}

#[test]
fn the_collector_listens_on_its_private_address_only() {
    let socket = journal(COLLECTOR, "journal-remote.socket.conf.j2", &Map::new());
    // The empty assignment first drops the package's `ListenStream=19532` (every address).
    assert_eq!(
        values(&socket, "ListenStream"),
        vec!["", &format!("{COLLECTOR_ADDRESS}:19532")],
        "{socket}"
    );
    assert_eq!(values(&socket, "FreeBind"), vec!["yes"]);

    // Plain HTTP on the socket's descriptor (the package's unit says https), the output
    // directory of the unit's LogsDirectory=.
    let service = journal(COLLECTOR, "journal-remote.service.conf.j2", &Map::new());
    assert_eq!(
        values(&service, "ExecStart"),
        vec![
            "",
            "/lib/systemd/systemd-journal-remote --listen-http=-3 --output=/var/log/journal/remote/"
        ],
        "{service}"
    );
    let conf = journal(COLLECTOR, "journal-remote.conf.j2", &debian(13, json!({})));
    assert_eq!(values(&conf, "SplitMode"), vec!["host"], "{conf}");
    assert!(!conf.contains("ServerKeyFile"), "{conf}");
}

#[test]
fn retention_by_age_and_size_on_both_releases() {
    // The timer's journalctl enforces both limits on Debian 12 and 13.
    let vacuum = journal(
        COLLECTOR,
        "journal-remote-vacuum.service.j2",
        &debian(12, json!({})),
    );
    assert_eq!(
        values(&vacuum, "ExecStart"),
        vec!["/usr/bin/journalctl --directory=/var/log/journal/remote --vacuum-time=30d --vacuum-size=2G"],
        "{vacuum}"
    );
    let timer = journal(COLLECTOR, "journal-remote-vacuum.timer.j2", &Map::new());
    assert_eq!(values(&timer, "OnCalendar"), vec!["hourly"], "{timer}");
    assert_eq!(values(&timer, "WantedBy"), vec!["timers.target"], "{timer}");

    let e = json!({ "journal_retention": "7d", "journal_remote_max_use": "500M", "journal_vacuum_schedule": "daily" });
    let vacuum = journal(
        COLLECTOR,
        "journal-remote-vacuum.service.j2",
        &debian(13, e.clone()),
    );
    assert!(
        vacuum.contains("--vacuum-time=7d --vacuum-size=500M"),
        "{vacuum}"
    );
    let timer = journal(COLLECTOR, "journal-remote-vacuum.timer.j2", &vars(e));
    assert_eq!(values(&timer, "OnCalendar"), vec!["daily"], "{timer}");

    // journal-remote.conf's own limits exist from systemd 253 (Debian 13: 257); Debian 12's
    // 252 would only warn about unknown keys, so they are left out there.
    let d13 = journal(COLLECTOR, "journal-remote.conf.j2", &debian(13, json!({})));
    for (k, v) in [
        ("MaxUse", "2G"),
        ("KeepFree", "1G"),
        ("MaxFileSize", "128M"),
        ("MaxFiles", "100"),
    ] {
        assert_eq!(values(&d13, k), vec![v], "{k} on Debian 13:\n{d13}");
    }
    let d12 = journal(COLLECTOR, "journal-remote.conf.j2", &debian(12, json!({})));
    for k in ["MaxUse", "KeepFree", "MaxFileSize", "MaxFiles"] {
        assert!(values(&d12, k).is_empty(), "no {k} on Debian 12:\n{d12}");
    }
    assert_eq!(values(&d12, "SplitMode"), vec!["host"], "{d12}");
}

#[test]
fn https_serves_the_secrets_certificate_and_uploaders_check_it() {
    let e = debian(13, json!({ "journal_remote_scheme": "https" }));
    let service = journal(COLLECTOR, "journal-remote.service.conf.j2", &e);
    assert!(service.contains(" --listen-https=-3 "), "{service}");
    let conf = journal(COLLECTOR, "journal-remote.conf.j2", &e);
    assert_eq!(
        values(&conf, "ServerKeyFile"),
        vec!["/etc/systemd/journal-remote-tls/key.pem"]
    );
    assert_eq!(
        values(&conf, "ServerCertificateFile"),
        vec!["/etc/systemd/journal-remote-tls/cert.pem"]
    );
    let upload = journal("lb", "journal-upload.conf.j2", &e);
    assert_eq!(
        values(&upload, "URL"),
        vec![format!("https://{COLLECTOR_ADDRESS}:19532")]
    );
    for (k, v) in [
        ("ServerKeyFile", "/etc/systemd/journal-upload-tls/key.pem"),
        (
            "ServerCertificateFile",
            "/etc/systemd/journal-upload-tls/cert.pem",
        ),
        (
            "TrustedCertificateFile",
            "/etc/systemd/journal-upload-tls/ca.pem",
        ),
    ] {
        assert_eq!(values(&upload, k), vec![v], "{upload}");
    }
}

#[test]
fn the_site_expands_with_and_without_a_collector() {
    let (inv, site) = lab_site();
    for e in [
        json!({}),
        json!({ "journal_remote_scheme": "https", "journal_remote_tls_ca": "ca", "journal_remote_tls_cert": "cert", "journal_remote_tls_key": "key" }),
        json!({ "journal_upload_history": true }),
    ] {
        let opts = bosun_engine::RunOptions {
            extra_vars: vars(e.clone()),
            ..Default::default()
        };
        bosun_engine::preflight(&inv, &site, &opts, &Templates::new())
            .unwrap_or_else(|err| panic!("preflight with {e}: {err}"));
    }

    // An inventory whose `monitoring` group is empty: the role has nothing to do (no upload
    // URL), and the site still expands (its monitoring play has no host).
    let dir = tempdir("journal-nocollector");
    let lab = std::fs::read_to_string(repo().join("inventory/lab.yml")).expect("lab.yml");
    let without: String = lab
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("monitoring:") {
                "  monitoring: { hosts: [] }\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = dir.join("inventory.yml");
    std::fs::write(&path, without).expect("inventory");
    let inv = Inventory::load(&path).expect("the lab inventory without monitoring");
    bosun_engine::preflight(&inv, &site, &Default::default(), &Templates::new())
        .unwrap_or_else(|err| panic!("preflight without a collector: {err}"));
    let t = Templates::new();
    let scope = role_scope(&inv, &site, "journal", "lb", &Map::new(), &t);
    let ctx = scope.context();
    assert_eq!(
        t.render_str(
            "{{ journal_upload_url }}|{{ journal_collectors | length }}",
            &ctx
        )
        .unwrap(),
        "|0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_firewall_admits_the_collector_port_from_every_host_only() {
    let (inv, _) = lab_site();
    let every: Vec<String> = inv
        .hosts
        .values()
        .map(|h| h.vars["private_address"].as_str().unwrap().to_string())
        .collect();
    let nft = render(
        "firewall",
        COLLECTOR,
        "firewall/nftables.conf.j2",
        &Map::new(),
    );
    let rules: Vec<&str> = nft.lines().filter(|l| l.contains("19532")).collect();
    assert_eq!(
        rules,
        vec![format!(
            "        ip saddr {{ {} }} tcp dport {{ 19532 }} accept comment \"monitoring (from all)\"",
            every.join(", ")
        )],
        "{nft}"
    );
    // Nowhere else, and never from the whole subnet or the world.
    for host in inv.hosts.keys().filter(|h| *h != COLLECTOR) {
        let nft = render("firewall", host, "firewall/nftables.conf.j2", &Map::new());
        assert!(!nft.contains("19532"), "{host}:\n{nft}");
    }
}

#[test]
fn haproxy_logs_every_request_to_the_journal() {
    let cfg = render("haproxy", "lb", "haproxy/haproxy.cfg.j2", &Map::new());
    let global: Vec<&str> = cfg
        .lines()
        .skip_while(|l| *l != "global")
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(global.contains(&"    log /dev/log local0"), "{global:?}");
    assert!(
        !cfg.lines().any(|l| l.trim_start().starts_with("chroot")),
        "not chrooted: /dev/log is journald's own socket"
    );
    let defaults: Vec<&str> = cfg
        .lines()
        .skip_while(|l| *l != "defaults")
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(defaults.contains(&"    log global"), "{defaults:?}");

    // Every proxy logs: HTTP ones one line per request, TCP ones one line per session.
    let mut proxies = 0;
    let mut section: Option<(String, Vec<&str>)> = None;
    let mut check = |name: &str, lines: &[&str]| {
        let http = lines.iter().any(|l| l.trim() == "mode http");
        let tcp = lines.iter().any(|l| l.trim() == "mode tcp");
        if !(http || tcp) || name.starts_with("backend") {
            return;
        }
        let want = if http {
            "option httplog"
        } else {
            "option tcplog"
        };
        assert!(
            lines.iter().any(|l| l.trim() == want),
            "{name}: `{want}` in {lines:?}"
        );
        proxies += 1;
    };
    for line in cfg.lines() {
        if line.starts_with("frontend ")
            || line.starts_with("listen ")
            || line.starts_with("backend ")
        {
            if let Some((n, ls)) = section.take() {
                check(&n, &ls);
            }
            section = Some((line.to_string(), Vec::new()));
        } else if let Some((_, ls)) = section.as_mut() {
            ls.push(line);
        }
    }
    if let Some((n, ls)) = section.take() {
        check(&n, &ls);
    }
    // stats, postgres, redis, saleor_api, dashboard.
    assert_eq!(proxies, 5, "{cfg}");
}

#[test]
fn the_first_upload_starts_at_the_newest_entry() {
    let (inv, site) = lab_site();
    let dir = tempdir("journal-cursor");
    let state_dir = dir.join("journal-upload");
    // A stand-in journalctl that prints one entry in the export format, as
    // `journalctl -q -n 1 -o export` does (the cursor first, then the fields).
    let cursor = "s=0123456789abcdef0123456789abcdef;i=2a;b=fedcba9876543210fedcba9876543210;m=1f00;t=60a1b2c3d4e5f;x=1122334455667788";
    write_tree(
        &dir,
        &[(
            "bin/journalctl",
            &format!(
                "#!/bin/sh\n[ \"$*\" = \"-q -n 1 -o export\" ] || {{ echo \"unexpected: $*\" >&2; exit 2; }}\n\
                 printf '__CURSOR={cursor}\\n__REALTIME_TIMESTAMP=1700000000000000\\nMESSAGE=hello\\n\\n'\n"
            ),
        )],
    );
    assert!(
        sh_with_path(&format!("chmod +x {}/bin/journalctl", dir.display()), None)
            .status
            .success()
    );

    let t = Templates::new();
    let scope = role_scope(&inv, &site, "journal", "lb", &Map::new(), &t);
    let task = role_task(&site, "journal", "first upload starts");
    assert_eq!(
        task.when,
        vec!["not (journal_collector_pass | bool) and journal_collectors | length > 0 and not (journal_upload_history | bool)"]
    );
    let here = |s: &str| {
        s.replace(
            "/var/lib/systemd/journal-upload",
            &state_dir.display().to_string(),
        )
    };
    let cmd = here(
        &t.render_str(task.args["cmd"].as_str().unwrap(), &scope.context())
            .unwrap(),
    );
    let unless = here(task.args["unless"].as_str().unwrap());
    assert!(
        !sh_with_path(&unless, None).status.success(),
        "no state yet: runs"
    );
    let o = sh_with_path(&cmd, Some(&dir.join("bin")));
    assert!(o.status.success(), "{cmd}\n{:?}", text(&o));
    // The format systemd-journal-upload writes and reads back (LAST_CURSOR=).
    let state = std::fs::read_to_string(state_dir.join("state")).expect("state written");
    assert_eq!(
        state,
        format!("# This is private data. Do not parse.\nLAST_CURSOR={cursor}\n")
    );
    let left: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["state".to_string()], "no temp file left");
    assert!(
        sh_with_path(&unless, None).status.success(),
        "then never again"
    );

    // An empty journal: nothing to skip, no state.
    std::fs::remove_dir_all(&state_dir).unwrap();
    write_tree(&dir, &[("bin/journalctl", "#!/bin/sh\nexit 0\n")]);
    let o = sh_with_path(&cmd, Some(&dir.join("bin")));
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!state_dir.join("state").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_uploader_client_certificate_is_made_once_for_the_journal_group() {
    let (inv, site) = lab_site();
    let dir = tempdir("journal-client-tls");
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::create_dir(tls.join(".client.OLD123")).unwrap();
    write_tree(
        &dir,
        &[(
            "bin/chgrp",
            "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/../chgrp.log\"\n",
        )],
    );
    assert!(
        sh_with_path(&format!("chmod +x {}/bin/chgrp", dir.display()), None)
            .status
            .success()
    );
    let t = Templates::new();
    let e = vars(json!({ "journal_upload_tls_dir": tls.display().to_string() }));
    let scope = role_scope(&inv, &site, "journal", "lb", &e, &t);
    let task = role_task(&site, "journal", "uploader client certificate");
    assert_eq!(
        t.render_str(task.args["creates"].as_str().unwrap(), &scope.context())
            .unwrap(),
        tls.join("key.pem").display().to_string()
    );
    let cmd = t
        .render_str(task.args["cmd"].as_str().unwrap(), &scope.context())
        .unwrap();
    let o = sh_with_path(&cmd, Some(&dir.join("bin")));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{cmd}\n{out}\n{err}");
    assert!(!err.contains("PRIVATE KEY") && !out.contains("PRIVATE KEY"));
    let mut left: Vec<_> = std::fs::read_dir(&tls)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["cert.pem", "key.pem"], "no temp file left");
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("key.pem"), 0o640);
    assert_eq!(mode("cert.pem"), 0o644);
    let chgrp = std::fs::read_to_string(dir.join("chgrp.log")).unwrap_or_default();
    assert!(chgrp.starts_with("systemd-journal "), "{chgrp}");
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(tls.join("cert.pem"))
        .output()
        .expect("openssl");
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(
        subject.contains("CN = lb") || subject.contains("CN=lb"),
        "{subject}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The base play sets up the uploaders, the monitoring play (facts known by then) the
/// collector: no collector task runs in the base play, no uploader task in the monitoring one.
#[test]
fn uploaders_in_the_base_play_collector_in_the_monitoring_play() {
    let (_, site) = lab_site();
    let play = |name: &str| {
        site.plays
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("play {name}"))
    };
    assert!(play("base").roles.iter().any(|r| r == "journal"));
    let monitoring = play("monitoring");
    assert!(monitoring.roles.iter().any(|r| r == "journal"));
    assert_eq!(
        monitoring.vars.get("journal_collector_pass"),
        Some(&serde_json::json!(true))
    );
    for t in &site.roles["journal"].tasks {
        let when = t.when.join(" and ");
        if t.name.starts_with("collector") || t.name.starts_with("vacuum") {
            assert!(
                when.starts_with("journal_collector_pass | bool"),
                "{}: {when}",
                t.name
            );
        }
        if t.name.starts_with("uploader") || t.name.starts_with("first upload") {
            assert!(
                when.starts_with("not (journal_collector_pass | bool)"),
                "{}: {when}",
                t.name
            );
        }
    }
}
