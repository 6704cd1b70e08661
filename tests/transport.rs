//! The SSH transport through the engine's `Remote` trait, against a real OpenSSH sshd on
//! loopback: what the engine sees of a host is exactly this trait.

mod common;
use bosun_engine::remote::{Connector, Remote};
use bosun_model::inventory::Inventory;
use bosun_transport::ssh::SshConnector;
use common::*;
use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_runs_scripts_and_uploads_through_the_remote_trait() {
    let p = Project::new(1, &[]);
    let inv = Inventory::load(&p.dir.join("inventory.yml")).expect("inventory");
    let connector = SshConnector::for_inventory(&inv, false);
    let remote: std::sync::Arc<dyn Remote> = connector
        .open(&inv.hosts["h1"])
        .await
        .expect("connects to the loopback sshd");
    assert!(remote.connect_seconds() > 0.0);

    let out = remote
        .run("echo out; echo err >&2; exit 3")
        .await
        .expect("runs");
    assert_eq!(
        (out.rc, out.stdout.as_slice(), out.stderr.as_slice()),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // Binary content, a name that needs quoting, a mode: written whole, then renamed.
    let dest = p.root.join("it's a file");
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    remote
        .upload(dest.to_str().expect("UTF-8 temp path"), &data, 0o640)
        .await
        .expect("uploads");
    assert_eq!(std::fs::read(&dest).expect("uploaded"), data);
    let mode = std::fs::metadata(&dest).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let beside: Vec<String> = std::fs::read_dir(&p.root)
        .expect("root")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".bosun-"))
        .collect();
    assert!(beside.is_empty(), "no temporary file left: {beside:?}");

    // An upload that cannot land says where, and leaves nothing.
    let missing = p.root.join("no-such-dir/x");
    let e = remote
        .upload(missing.to_str().expect("UTF-8"), b"x", 0o644)
        .await
        .expect_err("the directory does not exist");
    assert!(e.to_string().contains("no-such-dir/x"), "{e}");

    // One connection: every script above went over it.
    assert_eq!(remote.exec_count(), 3);
    remote.close().await;
    assert!(
        remote.run("true").await.is_err(),
        "a closed connection runs nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_is_an_error_naming_it() {
    let p = Project::with_inventory(1, &[], "");
    let mut inv = Inventory::load(&p.dir.join("inventory.yml")).expect("inventory");
    // A loopback address nothing listens on, on the sshd's port.
    let h = inv.hosts.get_mut("h1").expect("h1");
    h.address = "127.0.0.250".into();
    h.port = 1;
    let connector = SshConnector::for_inventory(&inv, false);
    let e = match connector.open(&inv.hosts["h1"]).await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("127.0.0.250"), "{e}");
}
