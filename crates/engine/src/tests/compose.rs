//! Composition through a run: pre_tasks, role dependencies, includes, import_role with
//! vars, role parameters and post_tasks, in the order they run and with the values each
//! task sees.

use super::harness::*;
use crate::event::Status;

/// Every task appends a line to `{{ root }}/log`: the run's order and values.
fn log(name: &str, text: &str) -> String {
    format!("- name: {name}\n  shell: \"echo {text} >> {{{{ root }}}}/log\"\n")
}

fn project() -> Project {
    let site = "- name: web\n  hosts: web\n  vars: {colour: play}\n  pre_tasks:\n    - name: pre\n      shell: \"echo pre >> {{ root }}/log\"\n    - include_tasks: pre.yml\n  roles:\n    - main\n    - {role: app, vars: {colour: param, greeting: \"hi {{ colour }}\"}}\n  post_tasks:\n    - name: post\n      shell: \"echo post {{ colour }} >> {{ root }}/log\"\n";
    let main = format!(
        "{}- include_tasks: extra.yml\n  when: flag == 'on'\n  vars: {{what: included}}\n- include_tasks: never.yml\n  when: flag == 'off'\n- import_role: {{name: db, vars: {{port: 5433}}}}\n",
        log("main", "main {{ colour }}")
    );
    let app = format!(
        "{}  when: colour == 'param'\n{}",
        log("app", "app {{ colour }}"),
        log("greet", "{{ greeting }}")
    );
    let db = format!("{}  notify: restart db\n", log("db", "db {{ port }}"));
    Project::new(
        &["h1"],
        &[
            ("roles/site.yml", site),
            ("roles/pre.yml", &log("pre included", "pre included")),
            ("roles/main/tasks.yml", &main),
            ("roles/main/defaults.yml", "flag: \"on\"\n"),
            ("roles/main/meta.yml", "dependencies: [common]\n"),
            ("roles/main/extra.yml", &log("extra", "extra {{ what }}")),
            ("roles/main/never.yml", &log("never", "never")),
            ("roles/db/tasks.yml", &db),
            ("roles/db/defaults.yml", "port: 5432\n"),
            ("roles/db/handlers.yml", &log("restart db", "handler db")),
            ("roles/app/tasks.yml", &app),
            ("roles/app/meta.yml", "dependencies: [common]\n"),
            (
                "roles/common/tasks.yml",
                &log("common", "common {{ colour }}"),
            ),
        ],
    )
}

#[tokio::test]
async fn a_composed_play_runs_in_order_with_each_task_seeing_its_vars() {
    let p = project();
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "pre\npre included\ncommon play\nmain play\nextra included\ndb 5433\napp param\nhi param\npost play\nhandler db\n",
        "{}",
        o.dump()
    );
    assert_eq!(o.status("h1", "never"), Status::Skipped);
    // `common` is a dependency of two roles with the same (no) parameters: once.
    assert_eq!(o.all("h1", "common").len(), 1);
    assert_eq!(o.task("h1", "db").role, "db");
    assert_eq!(o.task("h1", "pre").role, "");
    assert_eq!(o.status("h1", "restart db"), Status::Changed);
}

#[tokio::test]
async fn extra_vars_beat_role_parameters() {
    let p = project();
    let mut opts = opts();
    opts.extra_vars
        .insert("colour".into(), serde_json::Value::String("extra".into()));
    opts.extra_vars
        .insert("port".into(), serde_json::Value::from(1));
    let o = p.run(opts).await;
    let log = p.read("h1", "log");
    assert!(log.contains("db 1\n"), "{log}\n{}", o.dump());
    assert!(
        log.contains("hi extra\n") && log.contains("post extra\n"),
        "{log}"
    );
    // `when: colour == 'param'` is false once the extra var wins.
    assert_eq!(o.status("h1", "app"), Status::Skipped);
}

#[tokio::test]
async fn preflight_names_the_included_file_and_line_of_a_bad_task() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: first\n  shell: \"true\"\n- import_tasks: extra.yml\n"),
            (
                "roles/main/extra.yml",
                "- name: fine\n  shell: \"true\"\n- name: bad\n  shell: \"echo {{ nowhere }}\"\n",
            ),
        ],
    );
    let inv = bosun_model::inventory::Inventory::load(&p.dir.join("inventory.yml"))
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let site = crate::load_site(&p.dir.join("roles/site.yml")).unwrap_or_else(|e| panic!("{e}"));
    let templates = bosun_model::template::Templates::default();
    let err = crate::preflight(&inv, &site, &opts(), &templates)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("roles/main/extra.yml:3:"), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}
