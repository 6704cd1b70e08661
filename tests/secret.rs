//! `bosun secret` and encrypted vars files, end to end: the real binary, real age files,
//! real SSH keys from ssh-keygen, and the loopback sshd of `tests/common` for converges.

mod common;
use age::secrecy::ExposeSecret;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASS: &str = "correct horse battery staple";
const PLAIN: &str = "db_password: Db-Secret-Value-1\napi_token: Api-Token-Value-2\n";

/// Runs bosun in `cwd` with exactly the secret-related environment given.
fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    cmd(cwd, args, env).output().expect("run bosun")
}

fn cmd(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bosun"));
    c.current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK");
    for v in [
        "BOSUN_IDENTITY",
        "BOSUN_PASSPHRASE",
        "BOSUN_NEW_PASSPHRASE",
        "BOSUN_KEY_PASSPHRASE",
        "EDITOR",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "bosun failed:\n{out}\n{err}");
    out
}

/// Asserts exit 1 and that stderr says each of `needles`; returns stderr.
fn fails(o: &Output, needles: &[&str]) -> String {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{out}\n{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A fresh age x25519 identity file; returns (path, public key).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).expect("key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, id.to_public().to_string())
}

/// An SSH key pair from ssh-keygen; returns (private key path, public key line).
fn ssh_key(dir: &Path, name: &str, kind: &[&str]) -> (PathBuf, String) {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name])
        .args(kind)
        .arg("-f")
        .arg(&path)
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (path, public.trim().to_string())
}

/// `bosun secret decrypt secrets.yml.age --identity IDENTITY` in `dir`.
fn decrypt_with(dir: &Path, identity: &Path) -> Output {
    run(
        dir,
        &[
            "secret",
            "decrypt",
            "secrets.yml.age",
            "--identity",
            p(identity),
        ],
        &[],
    )
}

/// `bosun secret rekey secrets.yml.age --identity IDENTITY -r RECIPIENT`, which must succeed.
fn rekey_to(dir: &Path, identity: &Path, recipient: &str) {
    ok(&run(
        dir,
        &[
            "secret",
            "rekey",
            "secrets.yml.age",
            "--identity",
            p(identity),
            "-r",
            recipient,
        ],
        &[],
    ));
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn armored(path: &Path) -> String {
    let t = std::fs::read_to_string(path).expect("encrypted file");
    assert!(t.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{t}");
    assert!(
        !t.contains("Secret-Value"),
        "plaintext in the encrypted file"
    );
    t
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An EDITOR script: records the path it got (and the modes of it and its directory),
/// then does `action` to it.
fn editor(dir: &Path, name: &str, record: &Path, action: &str) -> PathBuf {
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" > {rec}\nstat -c %a \"$(dirname \"$1\")\" >> {rec}\nstat -c %a \"$1\" >> {rec}\n{action}\n",
            rec = record.display()
        ),
    )
    .expect("editor script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// What the editor script recorded: (path edited, dir mode, file mode).
fn recorded(record: &Path) -> (PathBuf, String, String) {
    let t = std::fs::read_to_string(record).expect("the editor ran");
    let l: Vec<&str> = t.lines().collect();
    assert_eq!(l.len(), 3, "{t}");
    (PathBuf::from(l[0]), l[1].to_string(), l[2].to_string())
}

/// Encrypts PLAIN into `dir/secrets.yml.age` with `flags`; the plaintext is removed after.
fn encrypt_plain(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let src = dir.join("secrets.yml");
    std::fs::write(&src, PLAIN).expect("plaintext");
    let mut args = vec!["secret", "encrypt", "secrets.yml"];
    args.extend_from_slice(flags);
    ok(&run(dir, &args, env));
    std::fs::remove_file(&src).expect("remove plaintext");
    let enc = dir.join("secrets.yml.age");
    armored(&enc);
    enc
}

#[test]
fn passphrase_round_trip_encrypt_decrypt_edit_rekey() {
    let dir = tempdir("sec-pass");
    let env = [("BOSUN_PASSPHRASE", PASS)];
    encrypt_plain(&dir, &["--passphrase"], &env);
    assert!(
        !dir.join("secrets.yml.recipients").exists(),
        "a passphrase file has no recipients list"
    );

    assert_eq!(
        ok(&run(&dir, &["secret", "decrypt", "secrets.yml.age"], &env)),
        PLAIN
    );
    ok(&run(
        &dir,
        &["secret", "decrypt", "secrets.yml.age", "-o", "out.yml"],
        &env,
    ));
    let out = dir.join("out.yml");
    assert_eq!(std::fs::read_to_string(&out).expect("out"), PLAIN);
    let mode = std::fs::metadata(&out).expect("out").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "-o writes a private file");
    std::fs::remove_file(&out).expect("rm");

    // edit re-encrypts with the same passphrase.
    let rt = tempdir("sec-pass-rt");
    let record = rt.join("record");
    let tools = tempdir("sec-pass-tools");
    let ed = editor(
        &tools,
        "ed.sh",
        &record,
        "echo 'added: Added-Secret-Value' >> \"$1\"",
    );
    let o = run(
        &dir,
        &["secret", "edit", "secrets.yml.age"],
        &[
            ("BOSUN_PASSPHRASE", PASS),
            ("EDITOR", p(&ed)),
            ("XDG_RUNTIME_DIR", p(&rt)),
        ],
    );
    ok(&o);
    let (edited, dmode, fmode) = recorded(&record);
    assert!(edited.starts_with(&rt), "{edited:?} under XDG_RUNTIME_DIR");
    assert_eq!((dmode.as_str(), fmode.as_str()), ("700", "600"));
    assert!(
        !edited.parent().expect("dir").exists(),
        "scratch dir removed"
    );
    assert_eq!(names_in(&rt), vec!["record"], "nothing else left behind");
    assert_eq!(
        names_in(&dir),
        vec!["secrets.yml.age"],
        "no plaintext beside it"
    );
    let after = ok(&run(&dir, &["secret", "decrypt", "secrets.yml.age"], &env));
    assert_eq!(after, format!("{PLAIN}added: Added-Secret-Value\n"));

    // rekey to a new passphrase: the old one stops working.
    ok(&run(
        &dir,
        &["secret", "rekey", "secrets.yml.age", "--passphrase"],
        &[
            ("BOSUN_PASSPHRASE", PASS),
            ("BOSUN_NEW_PASSPHRASE", "new pass phrase"),
        ],
    ));
    fails(
        &run(&dir, &["secret", "decrypt", "secrets.yml.age"], &env),
        &["wrong passphrase", "secrets.yml.age"],
    );
    assert_eq!(
        ok(&run(
            &dir,
            &["secret", "decrypt", "secrets.yml.age"],
            &[("BOSUN_PASSPHRASE", "new pass phrase")]
        )),
        after
    );

    // rekey from the passphrase to an age key records the recipient.
    let (key, public) = age_key(&tools, "k.txt");
    ok(&run(
        &dir,
        &["secret", "rekey", "secrets.yml.age", "-r", &public],
        &[("BOSUN_PASSPHRASE", "new pass phrase")],
    ));
    let side = std::fs::read_to_string(dir.join("secrets.yml.recipients")).expect("sidecar");
    assert!(side.contains(&public), "{side}");
    assert_eq!(
        ok(&run(
            &dir,
            &[
                "secret",
                "decrypt",
                "secrets.yml.age",
                "--identity",
                p(&key)
            ],
            &[]
        )),
        after
    );
    for d in [&dir, &rt, &tools] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn x25519_round_trip_and_rekey_through_the_recipients_list() {
    let dir = tempdir("sec-x");
    let keys = tempdir("sec-x-keys");
    let (a, a_pub) = age_key(&keys, "alice.txt");
    let (b, b_pub) = age_key(&keys, "bob.txt");
    encrypt_plain(&dir, &["-r", &a_pub], &[]);
    let side = dir.join("secrets.yml.recipients");
    assert!(std::fs::read_to_string(&side)
        .expect("sidecar")
        .contains(&a_pub));

    let dec = |id: &Path| decrypt_with(&dir, id);
    assert_eq!(ok(&dec(&a)), PLAIN);
    fails(
        &dec(&b),
        &["none of the identities", "bob.txt", "secrets.yml.age"],
    );

    // A teammate joins: add their key to the list, rekey, and they can read it.
    let mut list = std::fs::read_to_string(&side).expect("sidecar");
    list.push_str(&format!("{b_pub}\n"));
    std::fs::write(&side, list).expect("sidecar");
    ok(&run(
        &dir,
        &["secret", "rekey", "secrets.yml.age", "--identity", p(&a)],
        &[],
    ));
    assert_eq!(ok(&dec(&b)), PLAIN);
    assert_eq!(ok(&dec(&a)), PLAIN);

    // edit (as bob, through BOSUN_IDENTITY) keeps both recipients.
    let rt = tempdir("sec-x-rt");
    let record = rt.join("record");
    let ed = editor(
        &keys,
        "ed.sh",
        &record,
        "sed -i 's/Api-Token-Value-2/Api-Token-Value-3/' \"$1\"",
    );
    ok(&run(
        &dir,
        &["secret", "edit", "secrets.yml.age"],
        &[
            ("BOSUN_IDENTITY", p(&b)),
            ("EDITOR", p(&ed)),
            ("XDG_RUNTIME_DIR", p(&rt)),
        ],
    ));
    let (edited, _, _) = recorded(&record);
    assert!(!edited.parent().expect("dir").exists());
    assert_eq!(names_in(&rt), vec!["record"]);
    let want = PLAIN.replace("Value-2", "Value-3");
    assert_eq!(
        ok(&dec(&a)),
        want,
        "alice still a recipient after bob's edit"
    );
    assert_eq!(ok(&dec(&b)), want);
    assert_eq!(
        names_in(&dir),
        vec!["secrets.yml.age", "secrets.yml.recipients"]
    );

    // rekey to bob alone: alice is out.
    rekey_to(&dir, &b, &b_pub);
    fails(&dec(&a), &["none of the identities"]);
    assert_eq!(ok(&dec(&b)), want);
    let list = std::fs::read_to_string(&side).expect("sidecar");
    assert!(list.contains(&b_pub) && !list.contains(&a_pub), "{list}");

    // keygen writes a private identity file and prints its recipient.
    let o = run(&keys, &["secret", "keygen", "-o", "new.txt"], &[]);
    let public = ok(&o).trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    let new = keys.join("new.txt");
    assert_eq!(
        std::fs::metadata(&new).expect("key").permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&new)
        .expect("key")
        .contains("AGE-SECRET-KEY-1"));
    fails(
        &run(&keys, &["secret", "keygen", "-o", "new.txt"], &[]),
        &["new.txt"],
    );
    for d in [&dir, &keys, &rt] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn ssh_ed25519_and_rsa_recipients_round_trip() {
    let dir = tempdir("sec-ssh");
    let keys = tempdir("sec-ssh-keys");
    let (ed, ed_pub) = ssh_key(&keys, "ed", &["-t", "ed25519"]);
    let (rsa, rsa_pub) = ssh_key(&keys, "rsa", &["-t", "rsa", "-b", "2048"]);
    let rsa_file = keys.join("team.pub");
    std::fs::write(&rsa_file, format!("# ops team\n{rsa_pub}\n")).expect("recipients file");
    encrypt_plain(&dir, &["-r", &ed_pub, "-R", p(&rsa_file)], &[]);
    let side = std::fs::read_to_string(dir.join("secrets.yml.recipients")).expect("sidecar");
    assert!(side.contains(&ed_pub) && side.contains(&rsa_pub), "{side}");

    let dec = |id: &Path| decrypt_with(&dir, id);
    assert_eq!(ok(&dec(&ed)), PLAIN);
    assert_eq!(ok(&dec(&rsa)), PLAIN);

    // edit with the ed25519 key re-encrypts to both.
    let rt = tempdir("sec-ssh-rt");
    let record = rt.join("record");
    let edit = editor(
        &keys,
        "ed.sh",
        &record,
        "echo 'more: Ssh-Secret-Value' >> \"$1\"",
    );
    ok(&run(
        &dir,
        &["secret", "edit", "secrets.yml.age", "--identity", p(&ed)],
        &[("EDITOR", p(&edit)), ("XDG_RUNTIME_DIR", p(&rt))],
    ));
    let (edited, _, _) = recorded(&record);
    assert!(!edited.parent().expect("dir").exists());
    let want = format!("{PLAIN}more: Ssh-Secret-Value\n");
    assert_eq!(ok(&dec(&rsa)), want);
    assert_eq!(ok(&dec(&ed)), want);

    // rekey to the ed25519 key only.
    rekey_to(&dir, &rsa, &ed_pub);
    fails(&dec(&rsa), &["none of the identities"]);
    assert_eq!(ok(&dec(&ed)), want);

    // A passphrase-protected SSH key works with BOSUN_KEY_PASSPHRASE; a wrong one is named.
    let locked = keys.join("locked");
    std::fs::copy(&ed, &locked).expect("copy key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "key-pass", "-P", "", "-f"])
        .arg(&locked)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ssh-keygen -p");
    assert!(st.success());
    let o = run(
        &dir,
        &[
            "secret",
            "decrypt",
            "secrets.yml.age",
            "--identity",
            p(&locked),
        ],
        &[("BOSUN_KEY_PASSPHRASE", "key-pass")],
    );
    assert_eq!(ok(&o), want);
    let o = run(
        &dir,
        &[
            "secret",
            "decrypt",
            "secrets.yml.age",
            "--identity",
            p(&locked),
        ],
        &[("BOSUN_KEY_PASSPHRASE", "nope")],
    );
    fails(&o, &["passphrase is wrong", "locked"]);
    for d in [&dir, &keys, &rt] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn edit_cleans_up_after_editor_failure_ctrl_c_and_sigterm_and_keeps_the_file() {
    let dir = tempdir("sec-edit");
    let keys = tempdir("sec-edit-keys");
    let rt = tempdir("sec-edit-rt");
    let (key, public) = age_key(&keys, "k.txt");
    let enc = encrypt_plain(&dir, &["-r", &public], &[]);
    let before = std::fs::read(&enc).expect("encrypted");
    let record = keys.join("record");

    let cases = [
        (
            "fails.sh",
            "echo 'x: Junk-Value' >> \"$1\"; exit 3",
            Some(1),
            "exited with status 3",
        ),
        // Ctrl-C on a terminal: SIGINT to the whole foreground process group.
        (
            "ctrlc.sh",
            "echo 'x: Junk-Value' >> \"$1\"; kill -INT 0",
            Some(130),
            "interrupted",
        ),
        // bosun alone told to stop: it ends the editor.
        (
            "term.sh",
            "echo 'x: Junk-Value' >> \"$1\"; kill -TERM $PPID; exec sleep 30",
            Some(130),
            "interrupted",
        ),
    ];
    for (name, action, code, says) in cases {
        let _ = std::fs::remove_file(&record);
        let ed = editor(&keys, name, &record, action);
        let mut c = cmd(
            &dir,
            &["secret", "edit", "secrets.yml.age", "--identity", p(&key)],
            &[("EDITOR", p(&ed)), ("XDG_RUNTIME_DIR", p(&rt))],
        );
        // Its own process group, as a terminal's foreground job: `kill -INT 0` stays in it.
        c.process_group(0);
        let o = c.output().expect("run bosun");
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), code, "{name}:\n{out}\n{err}");
        assert!(err.contains(says), "{name}: expected `{says}` in:\n{err}");
        assert!(err.contains("unchanged"), "{name}:\n{err}");
        let (edited, _, _) = recorded(&record);
        assert!(edited.starts_with(&rt), "{edited:?}");
        assert!(
            !edited.parent().expect("dir").exists(),
            "{name}: scratch dir removed"
        );
        assert!(
            names_in(&rt).is_empty(),
            "{name}: nothing left in the runtime dir"
        );
        assert_eq!(
            std::fs::read(&enc).expect("encrypted"),
            before,
            "{name}: file untouched"
        );
        assert_eq!(
            names_in(&dir),
            vec!["secrets.yml.age", "secrets.yml.recipients"]
        );
    }

    // An editor that changes nothing leaves the file byte for byte as it was.
    let _ = std::fs::remove_file(&record);
    let ed = editor(&keys, "noop.sh", &record, "true");
    let o = run(
        &dir,
        &["secret", "edit", "secrets.yml.age", "--identity", p(&key)],
        &[("EDITOR", p(&ed)), ("XDG_RUNTIME_DIR", p(&rt))],
    );
    ok(&o);
    assert!(text(&o).1.contains("no changes"));
    assert_eq!(std::fs::read(&enc).expect("encrypted"), before);

    // Without its recipients list, edit refuses before opening the editor.
    std::fs::remove_file(dir.join("secrets.yml.recipients")).expect("rm sidecar");
    let _ = std::fs::remove_file(&record);
    let o = run(
        &dir,
        &["secret", "edit", "secrets.yml.age", "--identity", p(&key)],
        &[("EDITOR", p(&ed)), ("XDG_RUNTIME_DIR", p(&rt))],
    );
    fails(&o, &["cannot tell who", "secrets.yml.recipients", "rekey"]);
    assert!(!record.exists(), "the editor never opened");
    for d in [&dir, &keys, &rt] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn wrong_passphrase_and_missing_or_wrong_identity_are_clear_errors() {
    let dir = tempdir("sec-wrong");
    encrypt_plain(&dir, &["--passphrase"], &[("BOSUN_PASSPHRASE", PASS)]);
    let o = run(
        &dir,
        &["secret", "decrypt", "secrets.yml.age"],
        &[("BOSUN_PASSPHRASE", "not it")],
    );
    fails(&o, &["wrong passphrase for secrets.yml.age", "hint:"]);
    assert!(o.stdout.is_empty(), "nothing decrypted to stdout");
    // No passphrase and no terminal: say how to give one instead of hanging.
    let o = run(&dir, &["secret", "decrypt", "secrets.yml.age"], &[]);
    fails(&o, &["secrets.yml.age", "BOSUN_PASSPHRASE"]);

    let keys = tempdir("sec-wrong-keys");
    let (_, public) = age_key(&keys, "k.txt");
    std::fs::remove_file(dir.join("secrets.yml.age")).expect("rm");
    encrypt_plain(&dir, &["-r", &public], &[]);
    fails(
        &run(&dir, &["secret", "decrypt", "secrets.yml.age"], &[]),
        &[
            "secrets.yml.age",
            "no identity",
            "--identity",
            "BOSUN_IDENTITY",
            "secrets_identity",
        ],
    );
    fails(
        &run(
            &dir,
            &[
                "secret",
                "decrypt",
                "secrets.yml.age",
                "--identity",
                "/nonexistent/key",
            ],
            &[],
        ),
        &["/nonexistent/key", "does not exist"],
    );
    let junk = keys.join("junk");
    std::fs::write(&junk, "not a key\n").expect("junk");
    fails(
        &run(
            &dir,
            &["secret", "decrypt", "secrets.yml.age"],
            &[("BOSUN_IDENTITY", p(&junk))],
        ),
        &[
            "junk",
            "BOSUN_IDENTITY",
            "neither an age identity file nor an SSH private key",
        ],
    );
    fails(
        &run(
            &dir,
            &["secret", "encrypt", "secrets.yml.age", "-r", &public],
            &[],
        ),
        &["already encrypted"],
    );
    for d in [&dir, &keys] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Flips one base64 character of line `line` (0 = the BEGIN marker) for another valid one.
fn flip(armor: &str, line: usize) -> String {
    let mut lines: Vec<String> = armor.lines().map(str::to_string).collect();
    let mut b = lines[line].clone().into_bytes();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    lines[line] = String::from_utf8(b).expect("ascii");
    lines.join("\n") + "\n"
}

#[test]
fn a_tampered_file_is_refused() {
    let dir = tempdir("sec-tamper");
    let keys = tempdir("sec-tamper-keys");
    let (key, public) = age_key(&keys, "k.txt");
    // Long enough that the last full body lines are the encrypted content, not the header.
    let src = dir.join("big.yml");
    let plain: String = (0..40)
        .map(|i| format!("key{i}: Secret-Value-{i:04}\n"))
        .collect();
    std::fs::write(&src, &plain).expect("plain");
    ok(&run(
        &dir,
        &["secret", "encrypt", "big.yml", "-r", &public],
        &[],
    ));
    let enc = dir.join("big.yml.age");
    let good = armored(&enc);
    let n = good.lines().count();
    assert_eq!(
        ok(&run(
            &dir,
            &["secret", "decrypt", "big.yml.age", "--identity", p(&key)],
            &[]
        )),
        plain
    );
    for (line, where_) in [(n - 3, "content"), (1, "header")] {
        std::fs::write(&enc, flip(&good, line)).expect("tamper");
        let o = run(
            &dir,
            &["secret", "decrypt", "big.yml.age", "--identity", p(&key)],
            &[],
        );
        let err = fails(&o, &["big.yml.age", "tampered", "refusing"]);
        assert!(
            o.stdout.is_empty(),
            "{where_}: no partial plaintext on stdout"
        );
        assert!(!err.contains("Secret-Value"), "{err}");
    }
    // Loaded through an inventory, the same refusal, before anything else.
    std::fs::write(&enc, flip(&good, n - 3)).expect("tamper");
    write_tree(
        &dir,
        &[(
            "inv.yml",
            "secrets_file: big.yml.age\nhosts:\n  h1: {address: 127.0.0.2}\n",
        )],
    );
    fails(
        &run(
            &dir,
            &["inventory", "list", "-i", "inv.yml", "--identity", p(&key)],
            &[],
        ),
        &["inv.yml:1:", "big.yml.age", "tampered", "git checkout"],
    );
    for d in [&dir, &keys] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn identity_precedence_flag_then_env_then_inventory() {
    let dir = tempdir("sec-prec");
    let keys = tempdir("sec-prec-keys");
    let (good, public) = age_key(&keys, "good.txt");
    let (bad, _) = age_key(&keys, "bad.txt");
    encrypt_plain(&dir, &["-r", &public], &[]);
    let inv = |identity: &Path| {
        format!(
            "secrets_file: secrets.yml.age\nsecrets_identity: {}\nhosts:\n  h1: {{address: 127.0.0.2}}\n",
            identity.display()
        )
    };
    let list = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["inventory", "list", "-i", "inv.yml", "-v"];
        args.extend_from_slice(extra);
        run(&dir, &args, env)
    };
    // Inventory alone.
    write_tree(&dir, &[("inv.yml", &inv(&good))]);
    let out = ok(&list(&[], &[]));
    assert!(out.contains("db_password = \"<redacted>\""), "{out}");
    assert!(!out.contains("Db-Secret-Value-1"), "{out}");
    // The environment beats the inventory...
    fails(
        &list(&[("BOSUN_IDENTITY", p(&bad))], &[]),
        &["BOSUN_IDENTITY", "bad.txt", "none of the identities"],
    );
    write_tree(&dir, &[("inv.yml", &inv(&bad))]);
    ok(&list(&[("BOSUN_IDENTITY", p(&good))], &[]));
    // ...and the flag beats the environment.
    ok(&list(
        &[("BOSUN_IDENTITY", p(&bad))],
        &["--identity", p(&good)],
    ));
    fails(
        &list(&[("BOSUN_IDENTITY", p(&good))], &["--identity", p(&bad)]),
        &["--identity", "bad.txt"],
    );
    // A relative secrets_identity is from the inventory's directory.
    std::fs::copy(&good, dir.join("ops.key")).expect("copy");
    write_tree(
        &dir,
        &[(
            "sub/inv.yml",
            "secrets_file: ../secrets.yml.age\nsecrets_identity: ../ops.key\nhosts:\n  h1: {}\n",
        )],
    );
    ok(&run(&dir, &["inventory", "list", "-i", "sub/inv.yml"], &[]));
    for d in [&dir, &keys] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn yaml_error_inside_an_encrypted_file_names_it_and_the_plaintext_line() {
    let dir = tempdir("sec-yaml");
    let keys = tempdir("sec-yaml-keys");
    let (key, public) = age_key(&keys, "k.txt");
    std::fs::write(
        dir.join("s.yml"),
        "good: Fine-Secret-Value\nbad: [Unclosed-Secret-Value\n",
    )
    .expect("plain");
    ok(&run(
        &dir,
        &["secret", "encrypt", "s.yml", "-r", &public],
        &[],
    ));
    std::fs::remove_file(dir.join("s.yml")).expect("rm");
    write_tree(
        &dir,
        &[("inv.yml", "secrets_file: s.yml.age\nhosts:\n  h1: {}\n")],
    );
    let o = run(
        &dir,
        &["inventory", "list", "-i", "inv.yml", "--identity", p(&key)],
        &[],
    );
    let err = fails(
        &o,
        &["s.yml.age:2:", "decrypted", "bosun secret edit s.yml.age"],
    );
    assert!(
        !err.contains("Secret-Value"),
        "no plaintext in the error:\n{err}"
    );
    for d in [&dir, &keys] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A project against the loopback sshd whose inventory's secrets_file is encrypted.
struct Project {
    dir: PathBuf,
    root: PathBuf,
    keys: PathBuf,
    key: PathBuf,
    _sshd: Sshd,
}

const SECRET: &str = "Db-Secret-Value-1";
const TOKEN: &str = "Extra-Token-Value-9";

impl Project {
    /// `passphrase`: encrypt the secrets with it instead of an age key.
    fn new(passphrase: Option<&str>, identity_in_inventory: bool) -> Project {
        let sshd = Sshd::start(1);
        let dir = tempdir("sec-proj");
        let root = tempdir("sec-root");
        let keys = tempdir("sec-proj-keys");
        let (key, public) = age_key(&keys, "ops.key");
        std::fs::write(dir.join("known_hosts"), sshd.known_hosts()).expect("known_hosts");
        let identity = if identity_in_inventory {
            format!("secrets_identity: {}\n", key.display())
        } else {
            String::new()
        };
        let inv = format!(
            "ssh:\n  user: root\n  port: {port}\n  identity_file: {ckey}\n  known_hosts: known_hosts\n\
             secrets_file: secrets.yml.age\n{identity}vars:\n  root: {root}\nhosts:\n  h1: {{address: 127.0.0.2}}\n",
            port = sshd.port,
            ckey = sshd.client_key.display(),
            root = root.display(),
        );
        write_tree(
            &dir,
            &[
                ("inventory.yml", &inv),
                ("roles/site.yml", "- name: app\n  hosts: all\n  roles: [app]\n"),
                (
                    "roles/app/tasks.yml",
                    "- name: marker\n  file: {path: \"{{ root }}/made\", state: directory}\n\
                     - name: config\n  template: {src: app.conf.j2, dest: \"{{ root }}/app.conf\", mode: \"0600\"}\n",
                ),
                (
                    "templates/app/app.conf.j2",
                    "port = 8000\npassword = {{ db_password }}\n{% if api_token is defined %}token = {{ api_token }}\n{% endif %}",
                ),
                ("secrets.yml", &format!("db_password: {SECRET}\n")),
            ],
        );
        let flags: Vec<&str> = match passphrase {
            Some(_) => vec!["--passphrase"],
            None => vec!["-r", &public],
        };
        let mut args = vec!["secret", "encrypt", "secrets.yml"];
        args.extend_from_slice(&flags);
        let env: Vec<(&str, &str)> = passphrase
            .map(|p| ("BOSUN_PASSPHRASE", p))
            .into_iter()
            .collect();
        ok(&run(&dir, &args, &env));
        std::fs::remove_file(dir.join("secrets.yml")).expect("rm plaintext");
        Project {
            dir,
            root,
            keys,
            key,
            _sshd: sshd,
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        for d in [&self.dir, &self.root, &self.keys] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn converge_without_the_key_fails_before_connecting() {
    let pr = Project::new(None, false);
    let o = run(&pr.dir, &["converge", "-i", "inventory.yml"], &[]);
    fails(
        &o,
        &[
            "inventory.yml:",
            "secrets.yml.age",
            "no identity",
            "hint:",
            "nothing was changed",
        ],
    );
    assert!(!pr.root.join("made").exists(), "no host was touched");
    let o = run(
        &pr.dir,
        &["plan", "-i", "inventory.yml", "--output", "json"],
        &[],
    );
    fails(&o, &["no identity"]);
    assert!(events(&o).is_empty(), "no run started: {:?}", text(&o));
    // The control: with the key, the same converge reaches the host.
    ok(&run(
        &pr.dir,
        &["converge", "-i", "inventory.yml", "--identity", p(&pr.key)],
        &[],
    ));
    assert!(pr.root.join("made").is_dir());

    let pr = Project::new(Some(PASS), false);
    let o = run(
        &pr.dir,
        &["converge", "-i", "inventory.yml"],
        &[("BOSUN_PASSPHRASE", "wrong one")],
    );
    fails(&o, &["wrong passphrase for", "secrets.yml.age"]);
    assert!(!pr.root.join("made").exists(), "no host was touched");
    ok(&run(
        &pr.dir,
        &["converge", "-i", "inventory.yml"],
        &[("BOSUN_PASSPHRASE", PASS)],
    ));
    assert!(pr.root.join("made").is_dir());
}

#[test]
fn encrypted_vars_converge_and_plan_redacts_them() {
    let pr = Project::new(None, true);
    // Extra vars from an encrypted file are secrets too.
    std::fs::write(pr.dir.join("extra.yml"), format!("api_token: {TOKEN}\n")).expect("extra");
    let public = {
        let t = run(
            &pr.dir,
            &[
                "secret",
                "decrypt",
                "secrets.yml.age",
                "--identity",
                p(&pr.key),
            ],
            &[],
        );
        assert_eq!(ok(&t), format!("db_password: {SECRET}\n"));
        std::fs::read_to_string(pr.dir.join("secrets.yml.recipients")).expect("sidecar")
    };
    let recipient = public
        .lines()
        .find(|l| l.starts_with("age1"))
        .expect("a recipient")
        .to_string();
    ok(&run(
        &pr.dir,
        &["secret", "encrypt", "extra.yml", "-r", &recipient],
        &[],
    ));
    std::fs::remove_file(pr.dir.join("extra.yml")).expect("rm");

    let args = ["-i", "inventory.yml", "-e", "@extra.yml.age"];
    let mut converge = vec!["converge"];
    converge.extend_from_slice(&args);
    let o = run(&pr.dir, &converge, &[]);
    let out = ok(&o);
    let conf = std::fs::read_to_string(pr.root.join("app.conf")).expect("template written");
    assert!(
        conf.contains(&format!("password = {SECRET}"))
            && conf.contains(&format!("token = {TOKEN}")),
        "the host got the decrypted values: {conf}"
    );
    let err = text(&o).1;
    assert!(!out.contains(SECRET) && !err.contains(SECRET) && !out.contains(TOKEN));

    // A hand edit: plan shows the diff with the secrets redacted.
    std::fs::write(
        pr.root.join("app.conf"),
        format!("port = 9999\npassword = {SECRET}\ntoken = {TOKEN}\n"),
    )
    .expect("hand edit");
    let mut plan = vec!["plan"];
    plan.extend_from_slice(&args);
    let o = run(&pr.dir, &plan, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "changes pending:\n{out}\n{err}");
    assert!(
        out.contains("-port = 9999") && out.contains("+port = 8000"),
        "{out}"
    );
    assert!(out.contains("password = <redacted>"), "{out}");
    assert!(out.contains("token = <redacted>"), "{out}");
    for s in [SECRET, TOKEN] {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{s} leaked:\n{out}\n{err}"
        );
    }
    plan.extend_from_slice(&["--output", "json"]);
    let o = run(&pr.dir, &plan, &[]);
    assert_eq!(o.status.code(), Some(2));
    let raw = String::from_utf8_lossy(&o.stdout);
    for s in [SECRET, TOKEN] {
        assert!(!raw.contains(s), "{s} in JSON output");
    }
    assert!(events(&o).iter().any(|e| e["event"] == "task"
        && e["diff"]["unified"]
            .as_str()
            .is_some_and(|d| d.contains("password = <redacted>"))));
}

#[test]
fn production_inventory_needs_the_ops_identity() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = run(
        repo,
        &["inventory", "list", "-i", "inventory/production.yml"],
        &[],
    );
    fails(
        &o,
        &[
            "inventory/production.yml:",
            "production-secrets.yml.age",
            "no identity",
            "hint:",
        ],
    );
    // Committed: the armored file and the public recipient only, never a private key.
    let enc = std::fs::read_to_string(repo.join("inventory/production-secrets.yml.age"))
        .expect("committed encrypted secrets");
    assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let side = std::fs::read_to_string(repo.join("inventory/production-secrets.yml.recipients"))
        .expect("committed recipients");
    let keys: Vec<&str> = side
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(keys.len(), 1, "{side}");
    assert!(keys[0].starts_with("age1"), "{side}");
    for e in std::fs::read_dir(repo.join("inventory")).expect("inventory dir") {
        let t = std::fs::read_to_string(e.expect("entry").path()).unwrap_or_default();
        assert!(!t.contains("AGE-SECRET-KEY-"), "a private key is committed");
    }
    // Any other key is refused by name.
    let keys_dir = tempdir("sec-prod");
    let (other, _) = age_key(&keys_dir, "other.txt");
    fails(
        &run(
            repo,
            &[
                "inventory",
                "list",
                "-i",
                "inventory/production.yml",
                "--identity",
                p(&other),
            ],
            &[],
        ),
        &["none of the identities", "other.txt"],
    );
    let _ = std::fs::remove_dir_all(&keys_dir);
}
