//! HTTPS on the balancer (issue 13): what :80 serves (the Saleor API) also on :443 and the
//! Dashboard on :9443, with the certificate that is on lb (self-signed in the lab: the lab
//! inventory has no `haproxy_tls_pem`); TLS 1.1 refused; the redirect from plain HTTP
//! switched on and off again. Assumes the whole site was converged (tests/lab_app.rs runs
//! first) and leaves the lab as it found it: redirect off.
//! Needs root and the lab; run by tests/run.sh.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LB: &str = "10.20.0.11";
const PEM: &str = "/etc/haproxy/certs/site.pem";

fn run(args: &[&str]) -> Output {
    bosun(&repo(), args)
}

/// Converges the balancer only (the haproxy play; base is a no-op there).
fn converge_lb(extra: &[&str]) -> (Output, Vec<Value>, f64) {
    let t0 = Instant::now();
    let mut args = vec![
        "converge",
        "-i",
        "inventory/lab.yml",
        "-l",
        "balancers",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    let evs = events(&o);
    (o, evs, t0.elapsed().as_secs_f64())
}

/// curl with `-w` appended after a newline: (exit code, body, the `-w` line, stderr).
fn curl(w: &str, args: &[&str]) -> (i32, String, String, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w"])
        .arg(format!("\n{w}"))
        .args(args)
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, tail) = out.rsplit_once('\n').unwrap_or((&out, ""));
    (
        o.status.code().unwrap_or(-1),
        body.to_string(),
        tail.to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

/// `sha256 Fingerprint=AB:CD:…` (OpenSSL 3) or `SHA256 Fingerprint=…`: the hex part.
fn fingerprint(line: &str) -> String {
    line.rsplit_once('=')
        .map(|(_, h)| h.trim().to_ascii_uppercase())
        .unwrap_or_default()
}

/// The certificate lb presents on `port`, saved (PEM, the certificate only) to `out`;
/// returns its SHA-256 fingerprint.
fn presented(port: u16, out: &Path) -> String {
    let o = Command::new("sh")
        .args([
            "-c",
            "openssl s_client -connect \"$1\" </dev/null 2>/dev/null | openssl x509 -out \"$2\" && openssl x509 -noout -fingerprint -sha256 -in \"$2\"",
            "sh",
        ])
        .arg(format!("{LB}:{port}"))
        .arg(out)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        o.status.success(),
        "certificate on {LB}:{port}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    fingerprint(&String::from_utf8_lossy(&o.stdout))
}

/// Switches the redirect back off (a converge without `-e`) if a check failed while it
/// was on, so the lab is left as it was found.
struct RedirectOff {
    armed: bool,
}

impl Drop for RedirectOff {
    fn drop(&mut self) {
        if self.armed {
            let (o, _, _) = converge_lb(&[]);
            eprintln!(
                "redirect switched off again after a failure: converge exit {:?}",
                o.status.code()
            );
        }
    }
}

fn backends_up() -> bool {
    let o = run(&["status", "-i", "inventory/lab.yml", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let up = |proxy: &str| {
        v["haproxy"].as_array().is_some_and(|b| {
            b.iter()
                .any(|b| b["proxy"] == proxy && b["server"] == "saleor" && b["status"] == "UP")
        })
    };
    up("saleor_api") && up("dashboard")
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn https_serves_the_api_and_dashboard_and_the_redirect_switches() {
    // Converged already: the certificate is made once (`creates`), so this changes nothing.
    let (o, evs, _) = converge_lb(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    assert_eq!(
        changed_tasks(&evs),
        Value::Array(vec![]),
        "a converged balancer stays as it is (no new certificate)"
    );

    // The certificate on the host: private to root and the haproxy group. Only its
    // fingerprint and names are read; nothing of the key is printed.
    let (rc, modes) = lab_ssh(
        "lb",
        &format!("stat -c '%a %U:%G' /etc/haproxy/certs {PEM}"),
    );
    assert_eq!(rc, 0, "{modes}");
    assert_eq!(modes, "750 root:haproxy\n640 root:haproxy");
    let (rc, on_host) = lab_ssh(
        "lb",
        &format!("openssl x509 -noout -fingerprint -sha256 -in {PEM}"),
    );
    assert_eq!(rc, 0, "{on_host}");
    let on_host = fingerprint(&on_host);
    let (_, san) = lab_ssh(
        "lb",
        &format!("openssl x509 -noout -ext subjectAltName -in {PEM}"),
    );
    assert!(san.contains(&format!("IP Address:{LB}")), "{san}");

    // The same certificate on both TLS ports, and it verifies for the address (its SAN)
    // when trusted explicitly: no `-k` needed with it as the CA.
    let dir = tempdir("lab-tls");
    let cert: PathBuf = dir.join("lb.pem");
    let on_443 = presented(443, &cert);
    let on_9443 = presented(9443, &dir.join("lb-9443.pem"));
    assert!(!on_host.is_empty());
    assert_eq!(on_443, on_host, "443 presents the certificate on lb");
    assert_eq!(on_9443, on_host, "9443 presents the certificate on lb");

    // GraphQL over HTTPS.
    let query = serde_json::json!({ "query": "{ shop { name } }" }).to_string();
    let url = format!("https://{LB}/graphql/");
    let graphql = |extra: &[&str]| {
        let mut args = vec![
            "-H",
            "Content-Type: application/json",
            "--data",
            &query,
            &url,
        ];
        args.splice(0..0, extra.iter().copied());
        curl("%{http_code} %{time_appconnect} %{http_version}", &args)
    };
    let (rc, body, w, err) = graphql(&["--cacert", cert.to_str().unwrap()]);
    assert_eq!(rc, 0, "verified against the presented certificate: {err}");
    let parts: Vec<&str> = w.split(' ').collect();
    assert_eq!(parts[0], "200", "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(v["data"]["shop"]["name"].is_string(), "{body}");
    let handshake_ms = parts[1].parse::<f64>().unwrap_or(f64::NAN) * 1000.0;
    let http_version = parts[2].to_string();
    let (rc, body, w, err) = graphql(&["-k"]);
    assert_eq!((rc, w.split(' ').next()), (0, Some("200")), "{err}{body}");

    // The dashboard on 9443, built with the public API URL.
    let (rc, page, code, err) = curl("%{http_code}", &["-k", &format!("https://{LB}:9443/")]);
    assert_eq!((rc, code.as_str()), (0, "200"), "{err}");
    assert!(
        page.contains("http://10.20.0.11/graphql/"),
        "dashboard baked the API URL: {page}"
    );

    // TLS 1.1 is refused by the server: the client is allowed to offer it (SECLEVEL=0 lifts
    // the client's own floor) and gets HAProxy's protocol_version alert. TLS 1.2 works.
    let (rc, _, _, tls11) = curl(
        "%{http_code}",
        &[
            "-k",
            "--tlsv1.1",
            "--tls-max",
            "1.1",
            "--ciphers",
            "DEFAULT@SECLEVEL=0",
            &format!("https://{LB}/graphql/"),
        ],
    );
    assert_eq!(rc, 35, "TLS 1.1 handshake fails: {tls11}");
    assert!(tls11.contains("protocol version"), "{tls11}");
    let (rc, _, code, err) = curl(
        "%{http_code}",
        &[
            "-k",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            &format!("https://{LB}/health/"),
        ],
    );
    assert_eq!(rc, 0, "TLS 1.2 accepted: {err}");
    assert_ne!(code, "000");

    // Plain HTTP still answers while the redirect is off (`%{redirect_url}`: the Location
    // of a redirect, which curl does not follow here).
    let plain_url = format!("http://{LB}/graphql/");
    let plain = || {
        curl(
            "%{http_code} %{redirect_url}",
            &[
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/json",
                "--data",
                &query,
                &plain_url,
            ],
        )
        .2
    };
    let plain_dashboard = || {
        curl(
            "%{http_code} %{redirect_url}",
            &["-o", "/dev/null", &format!("http://{LB}:9000/orders/")],
        )
        .2
    };
    assert_eq!(plain(), "200 ", "GraphQL over plain HTTP");
    assert_eq!(plain_dashboard(), "200 ", "dashboard over plain HTTP");

    // Redirect on: plain HTTP gets a 301 to the same path on the HTTPS port.
    let mut guard = RedirectOff { armed: true };
    let (o, _, secs_on) = converge_lb(&["-e", "haproxy_https_redirect=true"]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    let live_on = wait_until("redirect live", Duration::from_secs(30), || {
        plain().starts_with("301 ")
    });
    assert_eq!(plain(), format!("301 https://{LB}/graphql/"));
    assert_eq!(plain_dashboard(), format!("301 https://{LB}:9443/orders/"));
    let (rc, _, w, err) = graphql(&["-k"]);
    assert_eq!(
        (rc, w.split(' ').next()),
        (0, Some("200")),
        "HTTPS unchanged: {err}"
    );
    // Health checks go to the servers directly, so the redirect cannot take them down.
    // (Right after the reload the new worker's checks have not all run yet.)
    wait_until(
        "saleor_api and dashboard backends UP with the redirect on",
        Duration::from_secs(30),
        backends_up,
    );

    // Off again: plain HTTP is served as before.
    let (o, evs, secs_off) = converge_lb(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    guard.armed = false;
    let live_off = wait_until("redirect gone", Duration::from_secs(30), || {
        !plain().starts_with("301 ")
    });
    assert!(
        changed_tasks(&evs)
            .as_array()
            .is_some_and(|c| c.iter().any(|t| t[1] == "haproxy configuration")),
        "{}",
        changed_tasks(&evs)
    );
    assert_eq!(plain(), "200 ", "GraphQL over plain HTTP again");
    assert_eq!(plain_dashboard(), "200 ", "dashboard over plain HTTP again");
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "DRILL https: GraphQL over TLS on 443 (HTTP/{http_version}, handshake {handshake_ms:.1} ms, certificate verified against the one on lb, sha256 {}…), dashboard 200 on 9443, TLS 1.1 refused ({}); redirect on: converge {secs_on:.1}s, 301 → https://{LB}/graphql/ {:.1}s later, backends UP; off: converge {secs_off:.1}s, plain HTTP served again {:.1}s later",
        &on_host[..on_host.len().min(11)],
        tls11.lines().next().unwrap_or(""),
        live_on.as_secs_f64(),
        live_off.as_secs_f64(),
    );
}
