//! Inventories bosun reads besides its own format, through the real binary: Ansible INI
//! and YAML (with group_vars/ and host_vars/), Terraform state, and `inventory graph`.
//! Fixtures live in tests/fixtures/inventory/.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inventory")
        .join(sub)
}

/// `bosun inventory list --output json` in `dir`, which must succeed.
fn list(dir: &Path, inventory: &str) -> (Value, String) {
    let o = bosun(
        dir,
        &["inventory", "list", "-i", inventory, "--output", "json"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{inventory}: {out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{inventory}: {e}: {out}"));
    (v, err)
}

/// The parts that must not depend on the source format, in a canonical order.
fn canonical(v: &Value) -> Value {
    let mut hosts: Vec<Value> = v["hosts"].as_array().cloned().unwrap_or_default();
    hosts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut groups = serde_json::Map::new();
    for (g, grp) in v["groups"].as_object().cloned().unwrap_or_default() {
        let sorted = |k: &str| {
            let mut x: Vec<String> = grp[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            x.sort();
            x
        };
        groups.insert(
            g,
            serde_json::json!({"hosts": sorted("hosts"), "children": sorted("children")}),
        );
    }
    serde_json::json!({"hosts": hosts, "groups": groups})
}

fn host<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {v}"))
}

#[test]
fn ansible_ini_ansible_yaml_and_bosun_inventories_agree() {
    let dir = fixtures("equivalent");
    let (bosun_yml, err) = list(&dir, "bosun.yml");
    assert!(err.is_empty(), "bosun.yml: {err}");
    let expected = canonical(&bosun_yml);
    for inv in ["inventory.ini", "inventory.yml"] {
        let (v, err) = list(&dir, inv);
        assert!(err.is_empty(), "{inv} warned: {err}");
        assert_eq!(v["warnings"], serde_json::json!([]), "{inv}");
        let got = canonical(&v);
        // Host by host first, so a difference is readable.
        for (h, e) in got["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(expected["hosts"].as_array().into_iter().flatten())
        {
            assert_eq!(h, e, "{inv}: host differs from bosun.yml");
        }
        assert_eq!(got, expected, "{inv} differs from bosun.yml");
    }

    // And what they agree on is what the fixtures say (not, say, three empty lists).
    let names: Vec<&str> = expected["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["bastion", "etcd-a", "etcd-b", "lb", "pg1", "pg2", "pg3", "web01", "web02"]
    );
    let bastion = host(&expected, "bastion");
    assert_eq!(
        (&bastion["address"], &bastion["port"], &bastion["user"]),
        (&"203.0.113.10".into(), &2222.into(), &"ops".into())
    );
    assert_eq!(bastion["groups"], serde_json::json!(["ungrouped"]));
    let pg1 = host(&expected, "pg1");
    assert_eq!(pg1["address"], "10.20.0.21");
    assert_eq!(pg1["user"], "deploy");
    assert_eq!(pg1["become"], true);
    assert_eq!(pg1["jump"], "ops@203.0.113.10:2222");
    assert_eq!(pg1["identity_file"], "keys/deploy_ed25519");
    assert_eq!(pg1["groups"], serde_json::json!(["database", "postgres"]));
    assert_eq!(
        pg1["vars"]["patroni_scope"], "pg-main",
        "group_vars beat [postgres:vars]"
    );
    assert_eq!(pg1["vars"]["pg_port"], 5432);
    assert_eq!(
        pg1["vars"]["backup_days"], 7,
        "group_vars/database/ directory"
    );
    assert_eq!(host(&expected, "pg3")["vars"]["replica_of"], "pg1");
    assert_eq!(
        host(&expected, "lb")["vars"]["server_names"],
        serde_json::json!(["shop.example", "api.example"])
    );
    assert_eq!(host(&expected, "etcd-b")["address"], "etcd-b");
    assert!(
        pg1["vars"]
            .as_object()
            .is_some_and(|m| !m.keys().any(|k| k.starts_with("ansible_"))),
        "connection vars are settings, not vars: {pg1}"
    );
    assert_eq!(
        expected["groups"]["database"]["children"],
        serde_json::json!(["etcd", "postgres"])
    );
}

#[test]
fn unsupported_connection_vars_warn_with_their_line() {
    let dir = tempdir("ansible-warn");
    write_tree(
        &dir,
        &[
            (
                "hosts",
                "[web]\nweb1 ansible_host=10.0.0.1\nwin1 ansible_connection=winrm\n[web:vars]\nansible_become_method=su\n",
            ),
            ("group_vars/all.yml", "env: x\nansible_password: hunter22-secret\n"),
        ],
    );
    let (v, err) = list(&dir, "hosts");
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("hosts:3: ") && w.contains("ansible_connection=winrm")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("hosts:5: ") && w.contains("ansible_become_method=su")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("group_vars/all.yml:2") && w.contains("ansible_password")),
        "{warnings:?}"
    );
    // Every warning also reaches stderr, and a password never appears anywhere.
    for w in &warnings {
        assert!(err.contains(&format!("warning: {w}")), "{err}");
    }
    assert!(!err.contains("hunter22") && !v.to_string().contains("hunter22"));
    assert!(host(&v, "win1")["vars"].get("ansible_connection").is_none());

    // The text listing (and any other command) prints them too.
    let o = bosun(&dir, &["inventory", "list", "-i", "hosts"]);
    let (_, err) = text(&o);
    assert!(o.status.success());
    assert!(err.contains("hosts:3: ansible_connection=winrm"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_ini_is_an_error_naming_file_and_line() {
    let dir = tempdir("ansible-bad");
    for (ini, at, what) in [
        ("[web\nw1\n", "bad.ini:1", "no closing `]`"),
        ("[web]\nw1\npg[3:1]\n", "bad.ini:3", "runs backwards"),
        (
            "[web]\nw1\n\n[web:foo]\n",
            "bad.ini:4",
            "unknown section type",
        ),
    ] {
        write_tree(&dir, &[("bad.ini", ini)]);
        let o = bosun(&dir, &["inventory", "list", "-i", "bad.ini"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("error: {at}: ")), "{err}");
        assert!(err.contains(what) && err.contains("hint:"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn terraform_state_with_mapping_file() {
    let dir = fixtures("terraform");
    let (v, err) = list(&dir, ".");
    let summary: Vec<(String, String, String, Vec<String>)> = v["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h["name"].as_str().unwrap_or("").to_string(),
                h["address"].as_str().unwrap_or("").to_string(),
                h["user"].as_str().unwrap_or("").to_string(),
                serde_json::from_value(h["groups"].clone()).unwrap_or_default(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    let g = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            // yandex, count = 2; the mapping's `database` group picks private addresses and `admin`.
            (
                s("pg1"),
                s("10.20.0.21"),
                s("admin"),
                g(&["database", "env_prod", "role_postgres", "postgres"])
            ),
            (
                s("pg2"),
                s("10.20.0.22"),
                s("admin"),
                g(&["database", "env_prod", "role_postgres", "postgres"])
            ),
            // aws in a module, count = 2: tags.Name, or the resource name and index.
            (
                s("storefront"),
                s("3.120.5.10"),
                s("ubuntu"),
                g(&["frontend", "tier_web", "balancers"])
            ),
            (
                s("app-1"),
                s("172.31.5.11"),
                s("ubuntu"),
                g(&["frontend", "tier_web"])
            ),
        ]
    );
    let pg1 = host(&v, "pg1");
    assert_eq!(pg1["vars"]["public_address"], "51.250.10.21");
    assert_eq!(pg1["vars"]["private_address"], "10.20.0.21");
    assert_eq!(
        pg1["vars"]["terraform_resource"],
        "yandex_compute_instance.pg[0]"
    );
    assert_eq!(pg1["vars"]["env_name"], "production");
    let app = host(&v, "app-1");
    assert_eq!(
        app["vars"]["terraform_resource"],
        "module.web.aws_instance.app[1]"
    );
    assert_eq!(app["vars"]["canary"], true);
    assert!(app["vars"].get("public_address").is_none());
    assert_eq!(host(&v, "storefront")["vars"]["haproxy_maxconn"], 2000);
    assert_eq!(
        v["groups"]["frontend"]["children"],
        serde_json::json!(["balancers"])
    );

    // Unknown resource types: skipped, named in a warning (data sources are not hosts at all).
    let w = v["warnings"].to_string();
    assert!(
        w.contains("aws_security_group")
            && w.contains("yandex_vpc_subnet")
            && !w.contains("yandex_compute_image"),
        "{w}"
    );
    assert!(
        err.contains("warning:") && err.contains("aws_security_group"),
        "{err}"
    );

    // The state file, the directory and the mapping file name the same inventory.
    let (by_state, _) = list(&dir, "terraform.tfstate");
    let (by_mapping, _) = list(&dir, "bosun-terraform.yml");
    assert_eq!(canonical(&by_state), canonical(&v));
    assert_eq!(canonical(&by_mapping), canonical(&v));
}

#[test]
fn terraform_state_without_mapping_and_broken_state() {
    let dir = tempdir("tf");
    let state = std::fs::read_to_string(fixtures("terraform/terraform.tfstate")).expect("fixture");
    write_tree(&dir, &[("prod.tfstate", &state)]);
    let (v, _) = list(&dir, "prod.tfstate");
    let pg1 = host(&v, "pg1");
    // Public address when there is one, bosun's default user, label groups only.
    assert_eq!(pg1["address"], "51.250.10.21");
    assert_eq!(pg1["user"], "root");
    assert_eq!(host(&v, "pg2")["address"], "10.20.0.22");
    assert!(v["groups"].get("balancers").is_none());
    assert_eq!(
        v["groups"]["postgres"]["hosts"],
        serde_json::json!(["pg1", "pg2"])
    );

    write_tree(
        &dir,
        &[(
            "broken.tfstate",
            "{\n  \"version\": 4,\n  \"resources\": [\n    {\"type\": }\n  ]\n}\n",
        )],
    );
    let o = bosun(&dir, &["inventory", "list", "-i", "broken.tfstate"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("broken.tfstate:4:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

const GRAPH: &str = "\
@all:
  |--@database:
  |  |--@etcd:
  |  |  |--etcd-a (10.20.0.31 via ops@203.0.113.10:2222)
  |  |  |--etcd-b (etcd-b via ops@203.0.113.10:2222)
  |  |--@postgres:
  |  |  |--pg1 (10.20.0.21 via ops@203.0.113.10:2222)
  |  |  |--pg2 (10.20.0.22 via ops@203.0.113.10:2222)
  |  |  |--pg3 (10.20.0.23 via ops@203.0.113.10:2222)
  |--@ungrouped:
  |  |--bastion (203.0.113.10:2222)
  |--@web:
  |  |--lb (10.20.0.11)
  |  |--web01 (web01)
  |  |--web02 (web02)
";

const DOT: &str = r#"digraph inventory {
  rankdir=LR;
  "@all" [shape=ellipse, label="all"];
  "@database" [shape=ellipse, label="database"];
  "@etcd" [shape=ellipse, label="etcd"];
  "etcd-a" [shape=box, label="etcd-a\n10.20.0.31 via ops@203.0.113.10:2222"];
  "etcd-b" [shape=box, label="etcd-b\netcd-b via ops@203.0.113.10:2222"];
  "@postgres" [shape=ellipse, label="postgres"];
  "pg1" [shape=box, label="pg1\n10.20.0.21 via ops@203.0.113.10:2222"];
  "pg2" [shape=box, label="pg2\n10.20.0.22 via ops@203.0.113.10:2222"];
  "pg3" [shape=box, label="pg3\n10.20.0.23 via ops@203.0.113.10:2222"];
  "@ungrouped" [shape=ellipse, label="ungrouped"];
  "bastion" [shape=box, label="bastion\n203.0.113.10:2222"];
  "@web" [shape=ellipse, label="web"];
  "lb" [shape=box, label="lb\n10.20.0.11"];
  "web01" [shape=box, label="web01\nweb01"];
  "web02" [shape=box, label="web02\nweb02"];
  "@all" -> "@database";
  "@database" -> "@etcd";
  "@etcd" -> "etcd-a";
  "@etcd" -> "etcd-b";
  "@database" -> "@postgres";
  "@postgres" -> "pg1";
  "@postgres" -> "pg2";
  "@postgres" -> "pg3";
  "@all" -> "@ungrouped";
  "@ungrouped" -> "bastion";
  "@all" -> "@web";
  "@web" -> "lb";
  "@web" -> "web01";
  "@web" -> "web02";
}
"#;

#[test]
fn inventory_graph_text_and_dot() {
    let dir = fixtures("equivalent");
    for inv in ["inventory.ini", "inventory.yml", "bosun.yml"] {
        let o = bosun(&dir, &["inventory", "graph", "-i", inv]);
        assert!(o.status.success(), "{:?}", text(&o));
        assert_eq!(text(&o).0, GRAPH, "{inv}");
        let o = bosun(&dir, &["inventory", "graph", "-i", inv, "--format", "dot"]);
        assert!(o.status.success(), "{:?}", text(&o));
        assert_eq!(text(&o).0, DOT, "{inv}");
    }
}
