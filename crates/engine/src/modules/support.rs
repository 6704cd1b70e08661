//! Helpers shared by modules: embedding one module's probe in another's, running an
//! embedded apply as one step of a longer script, and reading a failed probe.
//!
//! They live here, not in the module that first needed them, so a module that embeds a
//! `copy` (apt, systemd, sysctl) or reads a probe like `group` does depends on this file
//! and not on a sibling module's internals.

use super::{ArgError, ModuleError, Observed};

/// `state: present|absent`, the choice most modules take (a line, a key, a cron job, an
/// account, a database object): present by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

/// Prefixes an argument error from [`super::copy::Copy::from_content`] with the module that was building it.
pub fn in_module(module: &str, e: ArgError) -> ArgError {
    ArgError {
        message: format!("{module}: {}", e.message),
        hint: e.hint,
    }
}

/// Wraps `script` so it can be one part of a bigger probe.
///
/// `script` runs inside a command substitution, so an `exit` in it (the path probe exits
/// early for an absent path) ends only that part; every line it prints comes out prefixed
/// with `tag.`; and when it fails, the whole probe fails with its exit code (its stderr
/// already went to the probe's stderr). `tag` must be a plain shell word (letters, `_`).
pub fn embed_probe(tag: &str, script: &str) -> String {
    format!(
        "{tag}_out=$(\n{script}) || exit $?\n\
         [ -z \"${tag}_out\" ] || printf '%s\\n' \"${tag}_out\" | sed 's/^/{tag}./'\n"
    )
}

/// The lines an [`embed_probe`] part printed, without their prefix, as that part's own
/// observation.
pub fn embedded(obs: &Observed, tag: &str) -> Observed {
    let prefix = format!("{tag}.");
    let mut stdout = String::new();
    for line in obs.stdout.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            stdout.push_str(rest);
            stdout.push('\n');
        }
    }
    Observed {
        rc: obs.rc,
        stdout,
        stderr: obs.stderr.clone(),
    }
}

/// An apply of an embedded copy as one step of a longer script: in a subshell, so its
/// variables and EXIT trap stay inside, and any failure (the final rename included, which
/// [`super::fileops::write_file`] leaves as its exit status) stops the script there.
pub fn as_step(script: &str) -> String {
    format!("(\n{script}) || exit 1\n")
}

/// Fails with the probe's own message (its stderr, else its exit code) when it exited
/// non-zero: "cannot tell" is an error, never a guess.
pub fn probe_failed(obs: &Observed) -> Result<(), ModuleError> {
    if obs.rc == 0 {
        return Ok(());
    }
    let why = obs.stderr.trim();
    Err(ModuleError::new(if why.is_empty() {
        format!("probe failed with exit code {}", obs.rc)
    } else {
        why.to_string()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::fileops::{self, Attrs};
    use crate::modules::test_support::run;
    use crate::modules::writer::Writer;

    #[test]
    fn a_failed_probe_reads_its_own_message() {
        let ok = Observed::stdout("x=1\n");
        assert_eq!(probe_failed(&ok), Ok(()));
        let quiet = Observed {
            rc: 3,
            ..Default::default()
        };
        assert_eq!(
            probe_failed(&quiet),
            Err(ModuleError::new("probe failed with exit code 3"))
        );
        let loud = Observed {
            rc: 1,
            stdout: String::new(),
            stderr: "  no such user\n".into(),
        };
        assert_eq!(probe_failed(&loud), Err(ModuleError::new("no such user")));
    }

    #[test]
    fn embedded_parts_keep_their_own_lines() {
        let script = format!(
            "{}{}echo other=1\n",
            embed_probe("a", "echo type=absent; exit 0\necho never=1\n"),
            embed_probe("b", "echo type=file\necho sha256=ff\n")
        );
        let obs = run(&script);
        assert_eq!(obs.rc, 0, "{}", obs.stderr);
        assert_eq!(embedded(&obs, "a").stdout, "type=absent\n");
        assert_eq!(embedded(&obs, "b").stdout, "type=file\nsha256=ff\n");
        assert_eq!(obs.kv().get("other"), Some(&"1"));
        let failing = run(&embed_probe("a", "echo 'cannot read' >&2; exit 3\n"));
        assert_eq!((failing.rc, failing.stderr.as_str()), (3, "cannot read\n"));
    }

    #[test]
    fn a_failed_step_stops_the_script() {
        let write = fileops::write_file(
            "/nonexistent/bosun/x",
            b"x",
            &Attrs::default(),
            None,
            &Writer::root_for("/nonexistent/bosun/x"),
        );
        let r = run(&format!("{}echo after\n", as_step(&write)));
        assert_eq!(r.rc, 1);
        assert!(!r.stdout.contains("after"), "{}", r.stdout);
        let r = run(&format!("{}echo after\n", as_step("true\n")));
        assert_eq!((r.rc, r.stdout.as_str()), (0, "after\n"));
    }
}
