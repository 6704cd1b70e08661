//! Which handlers a `notify` may name: those of every role of the play (by name or by a
//! `listen` topic), so a role may notify another's handler, as in Ansible. Checked per
//! play when the site loads, never at run time.

use super::{Play, Role};
use crate::diag::LoadError;
use crate::text::closest;
use indexmap::IndexMap;
use std::collections::BTreeSet;

/// One error per task and unknown name (a role in two plays is reported once).
pub(super) fn check(plays: &[Play], roles: &IndexMap<String, Role>) -> Vec<LoadError> {
    let mut errors = Vec::new();
    let mut seen: BTreeSet<(String, u64, u64, String)> = BTreeSet::new();
    for play in plays {
        let play_roles: Vec<&Role> = play.roles.iter().filter_map(|r| roles.get(r)).collect();
        let known = |n: &str| {
            play_roles
                .iter()
                .any(|r| r.handlers.iter().any(|h| h.answers(n)))
        };
        // The play's tasks: its roles', their dependencies' and what they import.
        for t in &play.tasks {
            let Some(role) = roles.get(&t.role) else {
                continue;
            };
            {
                for n in t.notify.iter().filter(|n| !known(n)) {
                    let key = (
                        t.place.file.display().to_string(),
                        t.place.line,
                        t.place.col,
                        n.clone(),
                    );
                    if !seen.insert(key) {
                        continue;
                    }
                    let names: Vec<&str> = play_roles
                        .iter()
                        .flat_map(|r| &r.handlers)
                        .flat_map(|h| std::iter::once(&h.name).chain(&h.listen))
                        .map(String::as_str)
                        .collect();
                    let e = LoadError::new(
                        t.place.clone(),
                        format!(
                            "notify names unknown handler `{n}` (no role of play `{}` has it)",
                            play.name
                        ),
                    );
                    errors.push(match closest(n, &names) {
                        Some(s) => e.hint(format!("did you mean `{s}`?")),
                        None => e.hint(format!(
                            "define it in {}",
                            role.dir.join("handlers.yml").display()
                        )),
                    });
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::site::Site;

    fn site(files: &[(&str, &str)]) -> Result<Site, crate::diag::LoadErrors> {
        let dir = std::env::temp_dir().join(format!(
            "bosun-notify-{}-{}",
            std::process::id(),
            files.len() * 7 + files[0].1.len()
        ));
        for (p, c) in files {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        let s = Site::load(&dir.join("roles/site.yml"), &["shell"]);
        std::fs::remove_dir_all(&dir).unwrap();
        s
    }

    #[test]
    fn a_task_may_notify_a_handler_of_another_role_of_its_play() {
        let files = [
            ("roles/site.yml", "- hosts: all\n  roles: [a, b]\n"),
            (
                "roles/a/tasks.yml",
                "- shell: x\n  notify: [reload b, b topic]\n",
            ),
            ("roles/b/tasks.yml", "- shell: y\n"),
            (
                "roles/b/handlers.yml",
                "- name: reload b\n  shell: z\n- name: other\n  listen: b topic\n  shell: w\n",
            ),
        ];
        let s = site(&files);
        assert!(s.is_ok(), "{:?}", s.err());
    }

    #[test]
    fn an_unknown_handler_is_an_error_at_the_task() {
        let files = [
            (
                "roles/site.yml",
                "- hosts: all\n  roles: [a]\n- hosts: all\n  roles: [a, b]\n",
            ),
            (
                "roles/a/tasks.yml",
                "- shell: x\n- shell: x\n  notify: reload b\n",
            ),
            ("roles/b/tasks.yml", "- shell: y\n"),
            ("roles/b/handlers.yml", "- name: reload b\n  shell: z\n"),
        ];
        // The first play has no role `b`: its handler is unknown there, once.
        let e = site(&files).expect_err("an error").0;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].place.line, 2);
        assert!(
            e[0].message.contains("unknown handler `reload b`"),
            "{}",
            e[0].message
        );
    }
}
