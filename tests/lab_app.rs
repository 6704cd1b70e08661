//! The application tier on the lab: Redis, the Saleor API and worker, the Dashboard and
//! the Storefront under PM2 behind HAProxy — the whole site from one converge.
//! Needs root and the lab; run by tests/run.sh after the database-tier tests.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const LB: &str = "10.20.0.11";
const STOREFRONT: &str = "10.20.0.13";
const APP_PASSWORD: &str = "lab-saleor-db-pw";

fn run(args: &[&str]) -> std::process::Output {
    bosun(&repo(), args)
}

fn converge(extra: &[&str]) -> (std::process::Output, Vec<Value>, f64) {
    let t0 = Instant::now();
    let mut args = vec!["converge", "-i", "inventory/lab.yml", "--output", "json"];
    args.extend_from_slice(extra);
    let o = run(&args);
    let evs = events(&o);
    (o, evs, t0.elapsed().as_secs_f64())
}

fn recap(evs: &[Value]) -> Value {
    evs.iter()
        .find(|e| e["event"] == "recap")
        .cloned()
        .unwrap_or(Value::Null)
}

fn curl(args: &[&str]) -> (String, String) {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), code.to_string())
}

fn graphql(query: &str) -> Value {
    let body = serde_json::json!({ "query": query }).to_string();
    let (resp, code) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &format!("http://{LB}/graphql/"),
    ]);
    assert_eq!(code, "200", "GraphQL through lb:80: {resp}");
    serde_json::from_str(&resp).unwrap_or(Value::Null)
}

fn pm2_online() -> bool {
    let (_, jlist) = lab_ssh(
        "storefront",
        "runuser -u storefront -- env HOME=/home/storefront pm2 jlist",
    );
    let v: Value = serde_json::from_str(&jlist).unwrap_or(Value::Null);
    v.as_array().is_some_and(|a| {
        a.iter()
            .any(|p| p["name"] == "storefront" && p["pm2_env"]["status"] == "online")
    })
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn whole_site_serves_the_shop_and_stays_converged() {
    let (o, evs, secs) = converge(&[]);
    assert!(
        o.status.success(),
        "converge of the whole site failed:\n{}",
        why(&o)
    );
    println!("SITE: converge of the whole site took {secs:.1}s");
    let r = recap(&evs);
    assert!(r["hosts"].as_array().is_some_and(|h| h.len() == 7), "{r}");

    // Data that came from PostgreSQL, through HAProxy :80 → Saleor → HAProxy :5432 → primary.
    let marker = format!("bosun-lab-{}", std::process::id());
    let sql = format!("INSERT INTO product_product (name, slug) VALUES ('{marker}', '{marker}') ON CONFLICT (slug) DO NOTHING");
    let psql = Command::new("psql")
        .arg(format!(
            "host={LB} port=5432 user=saleor dbname=saleor connect_timeout=3"
        ))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .expect("psql");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let data = graphql(&format!("{{ shop {{ name }} products(first: 10, search: \"{marker}\") {{ totalCount edges {{ node {{ name }} }} }} }}"));
    assert_eq!(
        data["data"]["products"]["edges"][0]["node"]["name"],
        marker.as_str(),
        "{data}"
    );

    // The dashboard on lb:9000, built with the public API URL.
    let (page, code) = curl(&[&format!("http://{LB}:9000/")]);
    assert_eq!(code, "200");
    assert!(
        page.contains("http://10.20.0.11/graphql/"),
        "dashboard baked the API URL: {page}"
    );
    let (_, code) = curl(&[&format!("http://{LB}:9000/orders/some/deep/link")]);
    assert_eq!(code, "200", "single-page app fallback");

    // The storefront answers on :3000 with products from the API, online under PM2.
    let (page, code) = curl(&[&format!("http://{STOREFRONT}:3000/")]);
    assert_eq!(code, "200");
    assert!(
        page.contains(&marker),
        "storefront renders products from the API"
    );
    assert!(pm2_online(), "pm2 jlist shows the app online");

    // A restart of the storefront host: PM2 brings the app back without a converge.
    assert!(run(&["lab", "kill", "storefront"]).status.success());
    assert!(run(&["lab", "start", "storefront"]).status.success());
    let took = wait_until(
        "storefront back after a reboot",
        Duration::from_secs(180),
        || curl(&[&format!("http://{STOREFRONT}:3000/")]).1 == "200",
    );
    assert!(pm2_online());
    println!(
        "REBOOT: storefront answered again {:.0}s after boot",
        took.as_secs_f64()
    );

    // A second converge changes nothing.
    let (o, evs, secs) = converge(&[]);
    assert!(o.status.success(), "{:?}", text(&o));
    println!("SITE: no-op converge of the whole site took {secs:.2}s");
    assert_eq!(
        recap(&evs)["changed_tasks"],
        Value::Array(vec![]),
        "second converge must change nothing"
    );

    // The API stopped by hand: a converge starts it again and says so.
    let (rc, _) = lab_ssh("saleor", "systemctl stop saleor-api");
    assert_eq!(rc, 0);
    let (o, evs, _) = converge(&["-l", "saleor"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let changed = recap(&evs)["changed_tasks"].clone();
    assert!(
        changed
            .as_array()
            .is_some_and(|c| c.iter().any(|t| t[1] == "API unit")),
        "{changed}"
    );
    let (_, active) = lab_ssh("saleor", "systemctl is-active saleor-api");
    assert_eq!(active, "active");
}
