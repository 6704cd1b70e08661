//! Many probes (or applies) in one remote script, and their outputs taken apart again.
//!
//! Each step runs in its own subshell with stdin from /dev/null; its stdout, exit code and
//! stderr are framed by marker lines carrying a random nonce, so nothing a step prints can
//! be mistaken for a frame. In `stop_on_failure` mode (applies) a failing step ends the
//! script: later steps depend on it and must not run.

use crate::modules::Observed;
use rand::Rng;

pub struct Batch {
    nonce: String,
    script: String,
    steps: usize,
    stop_on_failure: bool,
}

impl Batch {
    pub fn new(stop_on_failure: bool) -> Self {
        let nonce: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        let mut script = String::new();
        script.push_str("__be=$(mktemp) || exit 99\ntrap 'rm -f \"$__be\"' EXIT\n");
        script.push_str("export LC_ALL=C DEBIAN_FRONTEND=noninteractive\n");
        Batch {
            nonce,
            script,
            steps: 0,
            stop_on_failure,
        }
    }

    /// Adds a step; returns its index.
    pub fn push(&mut self, body: &str) -> usize {
        let i = self.steps;
        let n = &self.nonce;
        self.script.push_str(&format!(
            "printf '@@{n}:b:{i}\\n'\n( {body}\n) </dev/null 2>\"$__be\"\n__rc=$?\n"
        ));
        self.script.push_str(&format!(
            "printf '\\n@@{n}:e:{i}:%d\\n' \"$__rc\"\ncat \"$__be\"\nprintf '\\n@@{n}:x:{i}\\n'\n"
        ));
        if self.stop_on_failure {
            self.script.push_str("[ \"$__rc\" -eq 0 ] || exit 0\n");
        }
        self.steps += 1;
        i
    }

    pub fn len(&self) -> usize {
        self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    pub fn script(&self) -> &str {
        &self.script
    }

    /// Splits the script's stdout into one result per step; steps that never ran (after a
    /// failure, or a script cut short) are `None`.
    pub fn parse(&self, stdout: &[u8]) -> Vec<Option<Observed>> {
        let text = String::from_utf8_lossy(stdout);
        let n = &self.nonce;
        let mut out = vec![None; self.steps];
        let mut rest: &str = &text;
        for (i, slot) in out.iter_mut().enumerate() {
            let begin = format!("@@{n}:b:{i}\n");
            let Some(bpos) = rest.find(&begin) else { break };
            let after_begin = &rest[bpos + begin.len()..];
            let end_prefix = format!("\n@@{n}:e:{i}:");
            let Some(epos) = after_begin.find(&end_prefix) else {
                break;
            };
            let stdout = &after_begin[..epos];
            let after_end = &after_begin[epos + end_prefix.len()..];
            let Some(nl) = after_end.find('\n') else {
                break;
            };
            let rc: i32 = after_end[..nl].trim().parse().unwrap_or(-1);
            let after_rc = &after_end[nl + 1..];
            let x = format!("\n@@{n}:x:{i}\n");
            let Some(xpos) = after_rc.find(&x) else { break };
            let stderr = &after_rc[..xpos];
            *slot = Some(Observed {
                rc,
                stdout: stdout.to_string(),
                stderr: stderr.to_string(),
            });
            rest = &after_rc[xpos + x.len()..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &Batch) -> Vec<Option<Observed>> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(b.script())
            .output()
            .unwrap();
        b.parse(&out.stdout)
    }

    #[test]
    fn frames_survive_odd_output() {
        let mut b = Batch::new(false);
        b.push("printf 'no newline'");
        b.push("echo out; echo err >&2; exit 3");
        b.push("printf '@@fake:e:2:0\\n'; cat");
        let r = run(&b);
        let r: Vec<Observed> = r.into_iter().map(|o| o.unwrap()).collect();
        assert_eq!(r[0].stdout, "no newline");
        assert_eq!(r[1].stdout, "out\n");
        assert_eq!(r[1].stderr, "err\n");
        assert_eq!(r[1].rc, 3);
        assert_eq!(
            r[2].stdout, "@@fake:e:2:0\n",
            "stdin is /dev/null and fake markers are data"
        );
        assert_eq!(r[2].rc, 0);
    }

    #[test]
    fn stop_on_failure_skips_the_rest() {
        let mut b = Batch::new(true);
        b.push("true");
        b.push("false");
        b.push("echo never");
        let r = run(&b);
        assert_eq!(r[0].as_ref().unwrap().rc, 0);
        assert_eq!(r[1].as_ref().unwrap().rc, 1);
        assert!(r[2].is_none());
    }

    #[test]
    fn exit_inside_a_step_ends_only_that_step() {
        let mut b = Batch::new(false);
        b.push("exit 0");
        b.push("echo second");
        let r = run(&b);
        assert_eq!(r[1].as_ref().unwrap().stdout, "second\n");
    }
}
