//! Many probes (or applies) in one remote script, and their outputs taken apart again.
//!
//! Each step runs in its own subshell with stdin from /dev/null; its stdout, exit code and
//! stderr are framed by marker lines carrying a random nonce, so nothing a step prints can
//! be mistaken for a frame. In `stop_on_failure` mode (applies) a failing step ends the
//! script: later steps depend on it and must not run.
//!
//! Probes are read-only, so slow ones (a `pip list`, an `npm ls`, a psql query) may run
//! in the background, all at once, while the quick ones run in order: a round trip then
//! costs about its slowest probe instead of the sum of them.

use crate::modules::Observed;
use rand::Rng;

pub struct Batch {
    nonce: String,
    /// Each step's shell and whether it may run in the background.
    steps: Vec<(String, bool)>,
    stop_on_failure: bool,
}

impl Batch {
    pub fn new(stop_on_failure: bool) -> Self {
        let nonce: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        Batch {
            nonce,
            steps: Vec::new(),
            stop_on_failure,
        }
    }

    /// Adds a step that runs in order; returns its index.
    pub fn push(&mut self, body: &str) -> usize {
        self.steps.push((body.to_string(), false));
        self.steps.len() - 1
    }

    /// Adds a read-only step that may run in the background with the other slow ones.
    /// (In `stop_on_failure` batches every step runs in order.)
    pub fn push_background(&mut self, body: &str) -> usize {
        self.steps.push((body.to_string(), !self.stop_on_failure));
        self.steps.len() - 1
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The remote script: background steps start first, the rest run in order, then the
    /// background results are framed once they have all finished.
    pub fn script(&self) -> String {
        let n = &self.nonce;
        let background: Vec<usize> = (0..self.steps.len()).filter(|i| self.steps[*i].1).collect();
        // Every process counts on the host (a no-op is a handful of them): the directory
        // for background results is made only when there are background steps.
        let mut s = String::from("__be=$(mktemp) || exit 99\n");
        s.push_str(if background.is_empty() {
            "trap 'rm -f \"$__be\"' EXIT\n"
        } else {
            "__bd=$(mktemp -d) || exit 99\ntrap 'rm -rf \"$__be\" \"$__bd\"' EXIT\n"
        });
        s.push_str("export LC_ALL=C DEBIAN_FRONTEND=noninteractive\n");
        for &i in &background {
            let body = &self.steps[i].0;
            s.push_str(&format!(
                "( ( {body}\n) </dev/null >\"$__bd/o{i}\" 2>\"$__bd/e{i}\"; echo $? >\"$__bd/r{i}\" ) &\n"
            ));
        }
        for (i, (body, bg)) in self.steps.iter().enumerate() {
            if *bg {
                continue;
            }
            s.push_str(&format!(
                "printf '@@{n}:b:{i}\\n'\n( {body}\n) </dev/null 2>\"$__be\"\n__rc=$?\n"
            ));
            s.push_str(&format!(
                "printf '\\n@@{n}:e:{i}:%d\\n' \"$__rc\"\n[ ! -s \"$__be\" ] || cat \"$__be\"\nprintf '\\n@@{n}:x:{i}\\n'\n"
            ));
            if self.stop_on_failure {
                s.push_str("[ \"$__rc\" -eq 0 ] || exit 0\n");
            }
        }
        if !background.is_empty() {
            s.push_str("wait\n");
            for &i in &background {
                s.push_str(&format!(
                    "printf '@@{n}:b:{i}\\n'; cat \"$__bd/o{i}\"; printf '\\n@@{n}:e:{i}:%s\\n' \"$(cat \"$__bd/r{i}\")\"; \
                     cat \"$__bd/e{i}\"; printf '\\n@@{n}:x:{i}\\n'\n"
                ));
            }
        }
        s
    }

    /// Splits the script's stdout into one result per step; steps that never ran (after a
    /// failure, or a script cut short) are `None`.
    pub fn parse(&self, stdout: &[u8]) -> Vec<Option<Observed>> {
        let text = String::from_utf8_lossy(stdout);
        let n = &self.nonce;
        (0..self.steps.len())
            .map(|i| {
                let begin = format!("@@{n}:b:{i}\n");
                let bpos = text.find(&begin)?;
                let after_begin = &text[bpos + begin.len()..];
                let end_prefix = format!("\n@@{n}:e:{i}:");
                let epos = after_begin.find(&end_prefix)?;
                let stdout = &after_begin[..epos];
                let after_end = &after_begin[epos + end_prefix.len()..];
                let nl = after_end.find('\n')?;
                let rc: i32 = after_end[..nl].trim().parse().unwrap_or(-1);
                let after_rc = &after_end[nl + 1..];
                let x = format!("\n@@{n}:x:{i}\n");
                let xpos = after_rc.find(&x)?;
                Some(Observed {
                    rc,
                    stdout: stdout.to_string(),
                    stderr: after_rc[..xpos].to_string(),
                })
            })
            .collect()
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
    fn background_steps_overlap_and_keep_their_frames() {
        let mut b = Batch::new(false);
        b.push_background("sleep 0.3; echo slow1; exit 4");
        b.push("echo quick");
        b.push_background("sleep 0.3; echo slow2 >&2");
        let t0 = std::time::Instant::now();
        let r = run(&b);
        // Two 0.3 s probes in the background take about 0.3 s, not 0.6 s.
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(550),
            "{:?}",
            t0.elapsed()
        );
        let r: Vec<Observed> = r
            .into_iter()
            .map(|o| o.expect("every step framed"))
            .collect();
        assert_eq!((r[0].stdout.as_str(), r[0].rc), ("slow1\n", 4));
        assert_eq!(r[1].stdout, "quick\n");
        assert_eq!(r[2].stderr, "slow2\n");
    }

    #[test]
    fn applies_never_run_in_the_background() {
        let mut b = Batch::new(true);
        b.push_background("false");
        b.push("echo never");
        let r = run(&b);
        assert_eq!(r[0].as_ref().map(|o| o.rc), Some(1));
        assert!(r[1].is_none());
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
