//! Modules that bring something from the host into the run: `set_fact`, `slurp`, `fetch`, `uri`.

use super::harness::*;
use crate::event::Status;

#[tokio::test]
async fn set_fact_sets_variables_that_later_tasks_read() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: facts\n  set_fact:\n    dir_name: \"made-{{ inventory_hostname }}\"\n    wanted: true\n\
             - name: use them\n  file: {path: \"{{ root }}/{{ dir_name }}\", state: directory}\n  when: wanted\n\
             - name: looped\n  set_fact: {last: \"{{ item }}\"}\n  loop: [a, b]\n\
             - name: after loop\n  file: {path: \"{{ root }}/{{ last }}\", state: directory}\n\
             - name: not wanted\n  file: {path: \"{{ root }}/never\", state: directory}\n  when: not wanted\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "facts"), Status::Ok, "{}", o.dump());
    assert_eq!(o.status("h1", "use them"), Status::Changed);
    assert!(p.exists("h1", "made-h1"), "{}", o.dump());
    assert!(
        p.exists("h1", "b") && !p.exists("h1", "a"),
        "the last item wins"
    );
    assert_eq!(o.status("h1", "not wanted"), Status::Skipped);
    assert!(!p.exists("h1", "never"));
}

#[tokio::test]
async fn set_fact_evaluates_in_check_mode() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: facts\n  set_fact: {go: false}\n\
             - name: gated\n  file: {path: \"{{ root }}/d\", state: directory}\n  when: go\n",
        )],
    );
    let o = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    assert_eq!(o.status("h1", "facts"), Status::Ok, "{}", o.dump());
    assert_eq!(o.status("h1", "gated"), Status::Skipped);
}

#[tokio::test]
async fn slurp_registers_the_file_for_later_tasks() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: read\n  slurp: {src: \"{{ root }}/token\"}\n  register: tok\n\
             - name: use\n  copy: {dest: \"{{ root }}/copy\", content: \"{{ tok.content | b64decode }}\"}\n  when: tok.encoding == 'base64'\n",
        )],
    );
    std::fs::write(p.root("h1").join("token"), "abc123\n").unwrap();
    let o = p.converge().await;
    assert_eq!(o.status("h1", "read"), Status::Ok, "{}", o.dump());
    assert_eq!(p.read("h1", "copy"), "abc123\n");
}

#[tokio::test]
async fn fetch_copies_to_the_controller_once_and_not_in_check_mode() {
    let p = Project::new(&["h1"], &[]);
    let landing = p.net.root.join("fetched");
    p.write(&[tasks(&format!(
        "- name: fetch\n  fetch: {{src: \"{{{{ root }}}}/app.log\", dest: \"{}\"}}\n  register: got\n\
         - name: flat\n  fetch: {{src: \"{{{{ root }}}}/app.log\", dest: \"{}/flat.log\", flat: true}}\n",
        landing.display(),
        landing.display()
    ))]);
    std::fs::write(p.root("h1").join("app.log"), "line 1\n").unwrap();
    let src = p.root("h1").join("app.log");
    let landed = landing
        .join("h1")
        .join(src.to_str().unwrap().trim_start_matches('/'));

    let check = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    assert_eq!(
        check.status("h1", "fetch"),
        Status::Changed,
        "{}",
        check.dump()
    );
    assert!(
        !landing.exists(),
        "check mode writes nothing on the controller"
    );

    let o = p.converge().await;
    assert_eq!(o.status("h1", "fetch"), Status::Changed, "{}", o.dump());
    assert_eq!(std::fs::read_to_string(&landed).unwrap(), "line 1\n");
    assert_eq!(
        std::fs::read_to_string(landing.join("flat.log")).unwrap(),
        "line 1\n"
    );

    let again = p.converge().await;
    assert_eq!(again.status("h1", "fetch"), Status::Ok, "{}", again.dump());
    assert_eq!(again.status("h1", "flat"), Status::Ok);

    std::fs::write(&src, "line 1\nline 2\n").unwrap();
    let o = p.converge().await;
    assert_eq!(o.status("h1", "fetch"), Status::Changed, "{}", o.dump());
    assert_eq!(
        std::fs::read_to_string(&landed).unwrap(),
        "line 1\nline 2\n"
    );
}

#[tokio::test]
async fn uri_reads_with_get_and_changes_with_post_but_not_in_check_mode() {
    let (url, seen) = crate::modules::test_support::serve(vec![
        (200, "application/json", r#"{"ready": true}"#),
        (200, "application/json", r#"{"ready": true}"#),
        (201, "text/plain", "created"),
        (200, "text/plain", "pong"),
    ]);
    let p = Project::new(
        &["h1"],
        &[tasks(&format!(
            "- name: health\n  uri: {{url: \"{url}/health\"}}\n  register: health\n\
             - name: create\n  uri: {{url: \"{url}/items\", method: POST, body: \"x\", status_code: 201}}\n  when: health.json.ready\n\
             - name: ping\n  uri: {{url: \"{url}/ping\", method: PUT}}\n  changed_when: false\n"
        ))],
    );
    let check = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    assert_eq!(check.status("h1", "health"), Status::Ok, "{}", check.dump());
    assert_eq!(check.status("h1", "create"), Status::Changed);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "check mode sends only the GET"
    );

    let o = p.converge().await;
    assert_eq!(o.status("h1", "health"), Status::Ok, "{}", o.dump());
    assert_eq!(o.status("h1", "create"), Status::Changed);
    assert_eq!(o.status("h1", "ping"), Status::Ok, "changed_when: false");
    let lines: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.line.clone())
        .collect();
    assert!(
        lines[1].starts_with("GET /health")
            && lines[2].starts_with("POST /items")
            && lines[3].starts_with("PUT /ping"),
        "{lines:?}"
    );
}
