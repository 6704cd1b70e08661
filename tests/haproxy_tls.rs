//! HTTPS on the balancer, offline: the site's HAProxy configuration as the lab inventory
//! renders it (TLS binds, forwarded headers, the switchable redirect), the whole site
//! expanded for every lab host with each certificate source, and the haproxy role's two
//! certificate snippets run here: the self-signed one (with a stand-in `chown`, as no
//! `haproxy` group need exist) and the check of a certificate from the secrets.
//! The lab drill (tests/lab_tls.rs) checks the same on real hosts.

mod common;
use bosun_model::template::Templates;
use common::*;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::Command;

fn haproxy_cfg(extra: Map<String, Value>) -> String {
    let (inv, site) = lab_site();
    let t = Templates::new();
    let scope = role_scope(&inv, &site, "haproxy", "lb", &extra, &t);
    t.render_file(
        &repo().join("templates/haproxy/haproxy.cfg.j2"),
        &scope.context(),
    )
    .expect("haproxy.cfg renders")
}

/// The lines of one frontend section.
fn frontend<'a>(cfg: &'a str, name: &str) -> Vec<&'a str> {
    cfg.lines()
        .skip_while(|l| *l != format!("frontend {name}"))
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn https_binds_and_forwarded_headers_without_redirect_by_default() {
    let cfg = haproxy_cfg(Map::new());
    assert!(cfg.contains("ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2"));
    let api = frontend(&cfg, "saleor_api");
    let dash = frontend(&cfg, "dashboard");
    assert!(api.contains(&"    bind *:80"), "{api:?}");
    assert!(
        api.contains(&"    bind *:443 ssl crt /etc/haproxy/certs/site.pem alpn h2,http/1.1"),
        "{api:?}"
    );
    assert!(
        dash.contains(&"    bind *:9443 ssl crt /etc/haproxy/certs/site.pem alpn h2,http/1.1"),
        "{dash:?}"
    );
    for f in [&api, &dash] {
        assert!(f.contains(&"    option forwardfor"), "{f:?}");
        assert!(
            f.contains(&"    http-request set-header X-Forwarded-Proto https if { ssl_fc }"),
            "{f:?}"
        );
        assert!(
            f.contains(&"    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }"),
            "{f:?}"
        );
    }
    assert!(
        !cfg.contains("redirect"),
        "no redirect unless asked:\n{cfg}"
    );
    // The database and stats sections are not touched by TLS.
    assert_eq!(cfg.matches(" ssl crt ").count(), 2, "{cfg}");
}

#[test]
fn redirect_to_https_keeps_host_path_and_picks_the_tls_port() {
    let cfg = haproxy_cfg(vars(json!({ "haproxy_https_redirect": true })));
    let api = frontend(&cfg, "saleor_api");
    let dash = frontend(&cfg, "dashboard");
    assert!(
        api.contains(&"    http-request redirect location https://%[req.hdr(host),field(1,:)]%[capture.req.uri] code 301 if !{ ssl_fc }"),
        "{api:?}"
    );
    assert!(
        dash.contains(&"    http-request redirect location https://%[req.hdr(host),field(1,:)]:9443%[capture.req.uri] code 301 if !{ ssl_fc }"),
        "{dash:?}"
    );
    // `-e haproxy_https_redirect=false` (a string from some callers) is still off.
    let cfg = haproxy_cfg(vars(json!({ "haproxy_https_redirect": "false" })));
    assert!(!cfg.contains("redirect"), "{cfg}");
}

/// Every task of every play expands for every lab host (what converge checks before it
/// contacts any host), whichever way the certificate comes.
#[test]
fn the_site_expands_with_a_self_signed_or_a_secret_certificate() {
    let (inv, site) = lab_site();
    for e in [
        json!({}),
        json!({ "haproxy_https_redirect": true }),
        json!({ "haproxy_tls_pem": "-----BEGIN CERTIFICATE-----\n...\n", "haproxy_tls_names": ["shop.example.com", "203.0.113.7"] }),
        json!({ "haproxy_acme_domains": ["shop.example.com", "www.example.com"], "haproxy_acme_email": "ops@example.com" }),
    ] {
        let opts = bosun_engine::RunOptions {
            extra_vars: vars(e.clone()),
            ..Default::default()
        };
        bosun_engine::preflight(&inv, &site, &opts, &Templates::new())
            .unwrap_or_else(|err| panic!("preflight with {e}: {err}"));
    }
}

fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(o.status.success(), "openssl {args:?}: {:?}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn self_signed_certificate_is_made_whole_and_checked_like_a_secret_one() {
    let (inv, site) = lab_site();
    let dir = tempdir("tls");
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    // A leftover of a killed run, holding a key: removed by the next one.
    std::fs::create_dir(certs.join(".selfsigned.OLD123")).expect("leftover");
    write_tree(
        &dir,
        &[(
            "bin/chown",
            "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/../chown.log\"\n",
        )],
    );
    assert!(
        sh_with_path(&format!("chmod +x {}/bin/chown", dir.display()), None)
            .status
            .success()
    );

    let t = Templates::new();
    let e = vars(json!({
        "haproxy_tls_dir": certs.display().to_string(),
        "haproxy_tls_names": ["10.20.0.11", "shop.example.com"],
    }));
    let scope = role_scope(&inv, &site, "haproxy", "lb", &e, &t);
    let task = role_task(&site, "haproxy", "self-signed certificate");
    assert_eq!(
        t.render_str(task.args["creates"].as_str().unwrap(), &scope.context())
            .unwrap(),
        certs.join("site.pem").display().to_string(),
        "made once"
    );
    let cmd = t
        .render_str(task.args["cmd"].as_str().unwrap(), &scope.context())
        .expect("the snippet renders");
    let o = sh_with_path(&cmd, Some(&dir.join("bin")));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{cmd}\n{out}\n{err}");
    assert!(
        !out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY") && !err.contains("+++"),
        "nothing of the key or openssl's progress in the output: {out}{err}"
    );

    let pem = certs.join("site.pem");
    let pem_s = pem.display().to_string();
    let left: Vec<_> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["site.pem".to_string()], "no temp file left");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let chowned = std::fs::read_to_string(dir.join("chown.log")).unwrap_or_default();
    assert!(chowned.starts_with("root:haproxy "), "{chowned}");
    let body = std::fs::read_to_string(&pem).unwrap();
    let c = body.find("BEGIN CERTIFICATE").expect("a certificate");
    let k = body.find("BEGIN PRIVATE KEY").expect("its key");
    assert!(c < k, "chain first, then the key");
    let info = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName",
        "-in",
        &pem_s,
    ]);
    assert!(
        info.contains("CN = 10.20.0.11") || info.contains("CN=10.20.0.11"),
        "{info}"
    );
    assert!(
        info.contains("IP Address:10.20.0.11, DNS:shop.example.com"),
        "{info}"
    );

    // The secret's check accepts this pair, and refuses a certificate with another key,
    // a key alone and an empty value.
    let validate = role_task(&site, "haproxy", "certificate from the secrets").args["validate"]
        .as_str()
        .unwrap()
        .to_string();
    let check =
        |file: &Path| sh_with_path(&validate.replace("%s", &file.display().to_string()), None);
    assert!(check(&pem).status.success(), "{:?}", text(&check(&pem)));
    let other = dir.join("other.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &other.display().to_string(),
    ]);
    let cert_only: String = body[..k].to_string();
    let mismatched = dir.join("mismatched.pem");
    std::fs::write(
        &mismatched,
        cert_only.clone() + &std::fs::read_to_string(&other).unwrap(),
    )
    .unwrap();
    let key_only = dir.join("key-only.pem");
    std::fs::write(&key_only, &body[k..]).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for bad in [&mismatched, &key_only, &empty] {
        let o = check(bad);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{} accepted", bad.display());
        assert!(
            !out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"),
            "{out}{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn acme_route_only_with_domains_and_never_redirected() {
    let cfg = haproxy_cfg(Map::new());
    assert!(!cfg.contains("acme"), "{cfg}");
    let cfg = haproxy_cfg(vars(json!({
        "haproxy_acme_domains": ["shop.example.com"],
        "haproxy_https_redirect": true,
    })));
    let api = frontend(&cfg, "saleor_api");
    let dash = frontend(&cfg, "dashboard");
    assert!(
        api.contains(&"    acl acme path_beg /.well-known/acme-challenge/"),
        "{api:?}"
    );
    assert!(
        api.contains(&"    http-request redirect location https://%[req.hdr(host),field(1,:)]%[capture.req.uri] code 301 if !{ ssl_fc } !acme"),
        "{api:?}"
    );
    assert!(api.contains(&"    use_backend acme if acme"), "{api:?}");
    assert!(!dash.iter().any(|l| l.contains("acme")), "{dash:?}");
    assert_eq!(cfg.matches("\nbackend acme\n").count(), 1, "{cfg}");
    assert!(cfg.contains("    server certbot 127.0.0.1:8888\n"), "{cfg}");
}

/// The ACME tasks as they render for two names: certbot's command, the guard that compares
/// the live certificate's names with the list, and the deploy hook (run here with
/// stand-ins for `chown` and `systemctl`).
#[test]
fn acme_certbot_command_name_guard_and_deploy_hook() {
    let (inv, site) = lab_site();
    let dir = tempdir("acme");
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    let t = Templates::new();
    let e = vars(json!({
        "haproxy_tls_dir": certs.display().to_string(),
        "haproxy_acme_domains": ["shop.example.com", "www.example.com"],
    }));
    let scope = role_scope(&inv, &site, "haproxy", "lb", &e, &t);
    let ctx = scope.context();
    let task = role_task(&site, "haproxy", "certificate from ACME");
    let cmd = t
        .render_str(task.args["cmd"].as_str().unwrap(), &ctx)
        .unwrap();
    for want in [
        "systemctl reload-or-restart haproxy && certbot certonly --non-interactive --agree-tos --register-unsafely-without-email",
        "--standalone --http-01-address 127.0.0.1 --http-01-port 8888",
        "--cert-name shop.example.com -d shop.example.com -d www.example.com --deploy-hook /usr/local/sbin/haproxy-acme-deploy",
    ] {
        assert!(cmd.contains(want), "`{want}` in {cmd}");
    }
    let unless = t
        .render_str(task.args["unless"].as_str().unwrap(), &ctx)
        .unwrap();
    let live = dir.join("live");
    let unless = unless.replace("/etc/letsencrypt/live", &live.display().to_string());
    let lineage = live.join("shop.example.com");
    std::fs::create_dir_all(&lineage).unwrap();
    let issue = |names: &str| {
        let o = sh_with_path(
            &format!(
                "cd {} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=shop.example.com -addext subjectAltName={names} -keyout privkey.pem -out cert.pem 2>/dev/null && cp cert.pem fullchain.pem",
                lineage.display()
            ),
            None,
        );
        assert!(o.status.success(), "{:?}", text(&o));
    };
    let covered = || sh_with_path(&unless, None).status.success();
    assert!(!covered(), "no certificate yet: certbot runs");
    issue("DNS:shop.example.com");
    assert!(!covered(), "a name is missing: certbot runs again");
    issue("DNS:shop.example.com,DNS:www.example.com");
    assert!(covered(), "every name covered: nothing to do");
    issue("DNS:www.example.com,DNS:shop.example.com.evil.test");
    assert!(!covered(), "names match whole, not as prefixes");

    // The deploy hook: chain then key into haproxy_tls_cert, whole, then a reload.
    let hook = role_task(&site, "haproxy", "certbot deploy hook");
    let script = t
        .render_str(hook.args["content"].as_str().unwrap(), &ctx)
        .unwrap();
    issue("DNS:shop.example.com,DNS:www.example.com");
    write_tree(
        &dir,
        &[
            ("hook", &script),
            (
                "bin/chown",
                "#!/bin/sh\necho \"chown $*\" >> \"$(dirname \"$0\")/../calls.log\"\n",
            ),
            (
                "bin/systemctl",
                "#!/bin/sh\necho \"systemctl $*\" >> \"$(dirname \"$0\")/../calls.log\"\n",
            ),
        ],
    );
    let o = sh_with_path(
        &format!(
            "chmod +x {d}/bin/chown {d}/bin/systemctl {d}/hook && RENEWED_LINEAGE={l} {d}/hook",
            d = dir.display(),
            l = lineage.display()
        ),
        Some(&dir.join("bin")),
    );
    assert!(o.status.success(), "{script}\n{:?}", text(&o));
    let pem = std::fs::read_to_string(certs.join("site.pem")).expect("site.pem written");
    let key = std::fs::read_to_string(lineage.join("privkey.pem")).unwrap();
    let chain = std::fs::read_to_string(lineage.join("fullchain.pem")).unwrap();
    assert_eq!(pem, chain + &key, "chain, then key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("site.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert!(calls.starts_with("chown root:haproxy "), "{calls}");
    assert!(calls.ends_with("systemctl reload haproxy\n"), "{calls}");
    let left: Vec<_> = std::fs::read_dir(&certs).unwrap().collect();
    assert_eq!(left.len(), 1, "no temp file left");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The secret and ACME would overwrite each other's certificate: the role refuses both.
#[test]
fn a_secret_certificate_and_acme_exclude_each_other() {
    let (_, site) = lab_site();
    let task = role_task(&site, "haproxy", "haproxy_tls_pem and haproxy_acme_domains");
    assert_eq!(
        task.when,
        vec!["haproxy_tls_pem is defined and haproxy_acme_domains | length > 0".to_string()]
    );
    let argv: Vec<String> = serde_json::from_value(task.args["argv"].clone()).unwrap();
    let o = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not both"));
    let first = &site.roles["haproxy"].tasks[0];
    assert_eq!(first.name, task.name, "checked before anything is written");
}
