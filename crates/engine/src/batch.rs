//! Many probes (or applies) in one remote script, and their outputs taken apart again.
//!
//! Each step runs in its own subshell through `eval` of its quoted text, with stdin from
//! /dev/null, so even a syntax error in one step (a `validate:` with a stray quote) ends
//! that step alone, with its message and exit status. Its stdout, exit code and stderr are
//! framed by marker lines carrying a random nonce, so nothing a step prints can be mistaken
//! for a frame. A step whose begin frame arrived but whose end frame never did (the script
//! was killed, the host went away) is reported as unfinished, never as "not run": the
//! engine must not run it again as if it had not started. In `stop_on_failure` mode
//! (applies) a failing step ends the script: later steps depend on it and must not run.
//!
//! Probes are read-only, so slow ones (a `pip list`, an `npm ls`, a psql query) may run
//! in the background, all at once, while the quick ones run in order: a round trip then
//! costs about its slowest probe instead of the sum of them. A background step prints a
//! one-line "done" marker the moment it ends, so the controller can tell which one is
//! still running when a deadline expires.
//!
//! Every step has a deadline ([`Batch::watch`]): the controller follows the frames as they
//! stream in and kills the script's process group when the running step overstays.
//!
//! The script keeps its scratch files in `/tmp/.bosun.NONCE` (mode 0700), which also lists
//! the temp files that steps create next to their targets (`$__bt`). When a script is
//! killed, [`Batch::cleanup`] removes all of them; a probe script also sweeps such
//! directories left by a script whose process group is gone (a dropped connection).

use crate::modules::Observed;
use crate::remote::Watch;
use bosun_model::shell::quote;
use rand::Rng;
use std::time::{Duration, Instant};

/// Shell that sets `$__bs`, bosun's state directory on the host (pending handler
/// notifications live there): `/var/lib/bosun` for root, under `$HOME` otherwise.
pub const STATE_DIR_SH: &str =
    "if [ -w /var/lib ]; then __bs=/var/lib/bosun; else __bs=\"${HOME:-/tmp}/.cache/bosun\"; fi\n";

/// Removes the scratch directory `$1` of a script that no longer runs, and every temp
/// file it listed.
const CLEAN_DIR_SH: &str = "__bosun_clean() { [ ! -f \"$1/tmps\" ] || while IFS= read -r __f; do rm -rf -- \"$__f\"; done < \"$1/tmps\"; rm -rf -- \"$1\"; }\n";

struct Step {
    body: String,
    background: bool,
    limit: Duration,
}

/// How one step of a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    /// It ran to its end: its output and exit status.
    Done(Observed),
    /// It began and never finished: the script was killed or the connection lost. `stdout`
    /// is what it printed until then.
    Unfinished { stdout: String },
    /// It never began (an earlier step failed, or the script ended first).
    NotRun,
}

impl StepEnd {
    pub fn done(self) -> Option<Observed> {
        match self {
            StepEnd::Done(o) => Some(o),
            _ => None,
        }
    }
}

pub struct Batch {
    nonce: String,
    steps: Vec<Step>,
    stop_on_failure: bool,
    /// Sweep scratch directories of dead scripts first (probe scripts do).
    sweep: bool,
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
            sweep: !stop_on_failure,
        }
    }

    /// Adds a step that runs in order, with no deadline of its own; returns its index.
    pub fn push(&mut self, body: &str) -> usize {
        self.push_limited(body, Duration::MAX)
    }

    /// Adds a step that runs in order and must end within `limit`.
    pub fn push_limited(&mut self, body: &str, limit: Duration) -> usize {
        self.steps.push(Step {
            body: body.to_string(),
            background: false,
            limit,
        });
        self.steps.len() - 1
    }

    /// Adds a read-only step that may run in the background with the other slow ones.
    /// (In `stop_on_failure` batches every step runs in order.)
    pub fn push_background(&mut self, body: &str, limit: Duration) -> usize {
        self.steps.push(Step {
            body: body.to_string(),
            background: !self.stop_on_failure,
            limit,
        });
        self.steps.len() - 1
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The scratch directory of this script on the host.
    fn scratch(&self) -> String {
        format!("/tmp/.bosun.{}", self.nonce)
    }

    /// The remote script: background steps start first, the rest run in order, then the
    /// background results are framed once they have all finished.
    ///
    /// It expects `$__pg` (its process group, set by [`crate::remote::Remote::run_watched`]'s
    /// prologue) to record whose scratch directory this is.
    pub fn script(&self) -> String {
        let n = &self.nonce;
        let background: Vec<usize> = (0..self.steps.len())
            .filter(|i| self.steps[*i].background)
            .collect();
        let mut s = format!(
            "__bd={}\nmkdir -m 700 \"$__bd\" || exit 99\ntrap 'rm -rf \"$__bd\"' EXIT\n\
             printf '%s %s\\n' \"${{__pg:-$$}}\" \"$$\" > \"$__bd/pg\"\n__bt=\"$__bd/tmps\"\n{STATE_DIR_SH}",
            self.scratch()
        );
        s.push_str("export LC_ALL=C DEBIAN_FRONTEND=noninteractive\n");
        if self.sweep {
            // Scratch directories of our own whose process group is gone: a connection
            // dropped while their script ran. Builtins only when there are none.
            s.push_str(CLEAN_DIR_SH);
            s.push_str(
                "for __o in /tmp/.bosun.*; do\n\
                 [ \"$__o\" != \"$__bd\" ] && [ -O \"$__o\" ] && [ -f \"$__o/pg\" ] || continue\n\
                 read -r __p __q < \"$__o/pg\" || continue\n\
                 kill -0 \"-$__p\" 2>/dev/null || kill -0 \"$__q\" 2>/dev/null && continue\n\
                 __bosun_clean \"$__o\"\n\
                 done\n",
            );
        }
        for &i in &background {
            let body = quote(&self.steps[i].body);
            s.push_str(&format!(
                "( ( eval {body}\n) </dev/null >\"$__bd/o{i}\" 2>\"$__bd/e{i}\"; echo $? >\"$__bd/r{i}\"; printf '@@{n}:d:{i}\\n' ) &\n"
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.background {
                continue;
            }
            let body = quote(&step.body);
            s.push_str(&format!(
                "printf '@@{n}:b:{i}\\n'\n( eval {body}\n) </dev/null 2>\"$__bd/e\"\n__rc=$?\n"
            ));
            s.push_str(&format!(
                "printf '\\n@@{n}:e:{i}:%d\\n' \"$__rc\"\n[ ! -s \"$__bd/e\" ] || cat \"$__bd/e\"\nprintf '\\n@@{n}:x:{i}\\n'\n"
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

    /// Shell that removes this script's scratch directory and every temp file its steps
    /// listed there (run after the script was killed).
    pub fn cleanup(&self) -> String {
        format!("{CLEAN_DIR_SH}__bosun_clean {}\n", self.scratch())
    }

    /// Follows the script's frames as they stream in, for its deadlines.
    pub fn watch(&self) -> BatchWatch<'_> {
        BatchWatch {
            batch: self,
            started: Instant::now(),
            begun: vec![None; self.steps.len()],
            ended: vec![false; self.steps.len()],
            scanned: 0,
            expired: Vec::new(),
        }
    }

    /// Splits the script's stdout into one result per step.
    pub fn parse(&self, stdout: &[u8]) -> Vec<StepEnd> {
        let raw = String::from_utf8_lossy(stdout);
        let n = &self.nonce;
        // "done" lines of background steps may land anywhere, even inside another step's
        // output: they are taken out before the frames are read.
        let mut text = raw.into_owned();
        for i in 0..self.steps.len() {
            if self.steps[i].background {
                text = text.replace(&format!("@@{n}:d:{i}\n"), "");
            }
        }
        (0..self.steps.len())
            .map(|i| {
                let begin = format!("@@{n}:b:{i}\n");
                let Some(bpos) = text.find(&begin) else {
                    return StepEnd::NotRun;
                };
                let after_begin = &text[bpos + begin.len()..];
                let end_prefix = format!("\n@@{n}:e:{i}:");
                let unfinished = || StepEnd::Unfinished {
                    stdout: after_begin
                        .split(&format!("\n@@{n}:"))
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                };
                let Some(epos) = after_begin.find(&end_prefix) else {
                    return unfinished();
                };
                let stdout = &after_begin[..epos];
                let after_end = &after_begin[epos + end_prefix.len()..];
                let Some(nl) = after_end.find('\n') else {
                    return unfinished();
                };
                let rc: i32 = after_end[..nl].trim().parse().unwrap_or(-1);
                let after_rc = &after_end[nl + 1..];
                let x = format!("\n@@{n}:x:{i}\n");
                match after_rc.find(&x) {
                    Some(xpos) => StepEnd::Done(Observed {
                        rc,
                        stdout: stdout.to_string(),
                        stderr: after_rc[..xpos].to_string(),
                    }),
                    // The exit status arrived; only (part of) its stderr is missing.
                    None => StepEnd::Done(Observed {
                        rc,
                        stdout: stdout.to_string(),
                        stderr: after_rc.to_string(),
                    }),
                }
            })
            .collect()
    }
}

/// Deadlines of a running [`Batch`]: a step's clock starts when its begin frame arrives
/// (background steps: when the script starts) and stops at its end (or "done") frame.
pub struct BatchWatch<'a> {
    batch: &'a Batch,
    started: Instant,
    begun: Vec<Option<Instant>>,
    ended: Vec<bool>,
    /// How far stdout has been scanned for frames.
    scanned: usize,
    /// Steps that overstayed, with their limit.
    expired: Vec<(usize, Duration)>,
}

impl BatchWatch<'_> {
    /// Steps whose deadline expired (the script was killed for them).
    pub fn expired(&self) -> &[(usize, Duration)] {
        &self.expired
    }

    fn scan(&mut self, stdout: &[u8], now: Instant) {
        let n = self.batch.nonce.as_bytes();
        // A frame may straddle two chunks: look back a little.
        let from = self.scanned.saturating_sub(64);
        let hay = &stdout[from..];
        let mut k = 0;
        while let Some(p) = find(&hay[k..], b"@@") {
            let at = k + p + 2;
            k = at;
            let rest = &hay[at..];
            if !rest.starts_with(n) || rest.get(n.len()) != Some(&b':') {
                continue;
            }
            let rest = &rest[n.len() + 1..];
            let (kind, rest) = match rest.split_first() {
                Some((c, r)) => (*c, r),
                None => continue,
            };
            if rest.first() != Some(&b':') {
                continue;
            }
            let digits: Vec<u8> = rest[1..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            // A frame is complete once the character after its index has arrived.
            if rest.len() <= 1 + digits.len() {
                continue;
            }
            let Some(i) = std::str::from_utf8(&digits)
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|i| *i < self.begun.len())
            else {
                continue;
            };
            match kind {
                b'b' if self.begun[i].is_none() => self.begun[i] = Some(now),
                b'e' | b'd' => self.ended[i] = true,
                _ => {}
            }
        }
        self.scanned = stdout.len();
    }

    /// The steps running now, with the instant each must end by.
    fn running(&self) -> impl Iterator<Item = (usize, Option<Instant>)> + '_ {
        self.batch
            .steps
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.ended[*i])
            .filter_map(|(i, s)| {
                let since = if s.background {
                    Some(self.started)
                } else {
                    self.begun[i]
                }?;
                Some((i, since.checked_add(s.limit)))
            })
    }
}

impl Watch for BatchWatch<'_> {
    fn deadline(&mut self, stdout: &[u8], now: Instant) -> Option<Instant> {
        self.scan(stdout, now);
        self.running().filter_map(|(_, d)| d).min()
    }

    fn expire(&mut self, now: Instant) {
        let limits: Vec<(usize, Duration)> = self
            .running()
            .filter(|(_, d)| d.is_some_and(|d| d <= now))
            .map(|(i, _)| (i, self.batch.steps[i].limit))
            .collect();
        self.expired = limits;
    }

    fn cleanup(&self) -> Option<String> {
        Some(self.batch.cleanup())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_out(b: &Batch) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(b.script())
            .output()
            .expect("sh runs")
    }

    fn run(b: &Batch) -> Vec<StepEnd> {
        b.parse(&run_out(b).stdout)
    }

    fn done(r: Vec<StepEnd>) -> Vec<Observed> {
        r.into_iter()
            .map(|o| o.done().expect("every step framed"))
            .collect()
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn background_steps_overlap_and_keep_their_frames() {
        let mut b = Batch::new(false);
        b.push_background("sleep 0.3; echo slow1; exit 4", LONG);
        b.push("echo quick");
        b.push_background("sleep 0.3; echo slow2 >&2", LONG);
        let t0 = Instant::now();
        let r = done(run(&b));
        // Two 0.3 s probes in the background take about 0.3 s, not 0.6 s.
        assert!(
            t0.elapsed() < Duration::from_millis(550),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!((r[0].stdout.as_str(), r[0].rc), ("slow1\n", 4));
        assert_eq!(r[1].stdout, "quick\n");
        assert_eq!(r[2].stderr, "slow2\n");
    }

    #[test]
    fn done_lines_inside_other_output_are_taken_out() {
        let mut b = Batch::new(false);
        // The background step ends once the foreground step has printed half a line; the
        // foreground step finishes the line once the background step's status is written
        // (its "done" line follows at once). Waiting on files, not on timing alone, keeps
        // the order under load.
        b.push_background("while [ ! -e \"$__bd/half\" ]; do sleep 0.01; done", LONG);
        b.push(
            "printf 'half'; : > \"$__bd/half\"; while [ ! -s \"$__bd/r0\" ]; do sleep 0.01; done; sleep 0.2; echo ' line'",
        );
        let out = run_out(&b);
        let raw = String::from_utf8_lossy(&out.stdout);
        assert!(raw.contains(&format!("half@@{}:d:0\n", b.nonce)), "{raw}");
        let r = done(b.parse(&out.stdout));
        assert_eq!(r[1].stdout, "half line\n");
    }

    #[test]
    fn applies_never_run_in_the_background() {
        let mut b = Batch::new(true);
        b.push_background("false", LONG);
        b.push("echo never");
        let r = run(&b);
        assert_eq!(r[0].clone().done().map(|o| o.rc), Some(1));
        assert_eq!(r[1], StepEnd::NotRun);
    }

    #[test]
    fn frames_survive_odd_output() {
        let mut b = Batch::new(false);
        b.push("printf 'no newline'");
        b.push("echo out; echo err >&2; exit 3");
        b.push("printf '@@fake:e:2:0\\n'; cat");
        let r = done(run(&b));
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
        assert_eq!(r[0].clone().done().map(|o| o.rc), Some(0));
        assert_eq!(r[1].clone().done().map(|o| o.rc), Some(1));
        assert_eq!(r[2], StepEnd::NotRun);
    }

    #[test]
    fn exit_inside_a_step_ends_only_that_step() {
        let mut b = Batch::new(false);
        b.push("exit 0");
        b.push("echo second");
        let r = done(run(&b));
        assert_eq!(r[1].stdout, "second\n");
    }

    #[test]
    fn a_syntax_error_ends_only_its_step_with_its_message() {
        // The `validate: "test -s %s'"` of issue 11: a stray quote.
        let mut b = Batch::new(true);
        b.push("test -s /etc/hostname'");
        b.push("echo never");
        let r = run(&b);
        let first = r[0].clone().done().expect("the broken step is framed");
        assert_ne!(first.rc, 0);
        assert!(
            first.stderr.contains("quote") || first.stderr.contains("EOF"),
            "{}",
            first.stderr
        );
        assert_eq!(r[1], StepEnd::NotRun);
        let mut p = Batch::new(false);
        p.push("echo 'unclosed");
        p.push("echo fine");
        let r = run(&p);
        assert_ne!(r[0].clone().done().map(|o| o.rc), Some(0));
        assert_eq!(r[1].clone().done().map(|o| o.stdout), Some("fine\n".into()));
    }

    #[test]
    fn a_step_killed_with_its_script_is_unfinished_not_unrun() {
        let mut b = Batch::new(true);
        b.push("echo first");
        // Kills the whole script (the parent shell) from inside the step.
        b.push("echo partial; kill -9 $$");
        b.push("echo never");
        let out = run_out(&b);
        let r = b.parse(&out.stdout);
        assert!(matches!(r[0], StepEnd::Done(_)));
        assert_eq!(
            r[1],
            StepEnd::Unfinished {
                stdout: "partial\n".into()
            }
        );
        assert_eq!(r[2], StepEnd::NotRun);
        // Killed: no EXIT trap ran, so the scratch directory is still there; cleanup
        // removes it and every temp file a step listed in it.
        let dir = b.scratch();
        assert!(std::path::Path::new(&dir).is_dir());
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(b.cleanup())
            .status();
        assert!(!std::path::Path::new(&dir).exists());
    }

    #[test]
    fn scratch_files_are_gone_after_a_normal_end() {
        let mut b = Batch::new(false);
        b.push_background("true", LONG);
        b.push("true");
        run(&b);
        assert!(!std::path::Path::new(&b.scratch()).exists());
    }

    #[test]
    fn a_probe_script_sweeps_what_a_dead_script_left() {
        // A script that died (its process group is gone) with a listed temp file.
        let victim = std::env::temp_dir().join(format!(".bosun.test-temp-{}", std::process::id()));
        std::fs::write(&victim, "half").expect("write");
        let mut dead = Batch::new(true);
        dead.push(&format!(
            "printf '%s\\n' {} >> \"$__bt\"; kill -9 $$",
            quote(&victim.display().to_string())
        ));
        // Its process group: a subshell that is gone by the time the sweep runs.
        let _ = run_out(&dead);
        assert!(std::path::Path::new(&dead.scratch()).is_dir());
        let mut probe = Batch::new(false);
        probe.push("true");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("__pg=$$\n{}", probe.script()))
            .output()
            .expect("sh");
        assert!(out.status.success());
        assert!(!victim.exists(), "the listed temp file is removed");
        assert!(!std::path::Path::new(&dead.scratch()).exists());
    }

    #[test]
    fn the_watch_times_each_step_from_its_begin_frame() {
        let mut b = Batch::new(true);
        b.push_limited("a", Duration::from_secs(10));
        b.push_limited("b", Duration::from_secs(2));
        let n = b.nonce.clone();
        let mut w = b.watch();
        let t0 = Instant::now();
        assert_eq!(w.deadline(b"", t0), None, "nothing runs yet");
        let s1 = format!("@@{n}:b:0\n");
        assert_eq!(
            w.deadline(s1.as_bytes(), t0),
            Some(t0 + Duration::from_secs(10))
        );
        let t1 = t0 + Duration::from_secs(3);
        let s2 = format!("{s1}out\n@@{n}:e:0:0\n\n@@{n}:x:0\n@@{n}:b:1\n");
        assert_eq!(
            w.deadline(s2.as_bytes(), t1),
            Some(t1 + Duration::from_secs(2))
        );
        w.expire(t1 + Duration::from_secs(2));
        assert_eq!(w.expired(), &[(1, Duration::from_secs(2))]);
    }

    #[test]
    fn background_steps_are_timed_from_the_start_until_done() {
        let mut b = Batch::new(false);
        b.push_background("slow", Duration::from_secs(5));
        b.push_background("slower", Duration::from_secs(9));
        let n = b.nonce.clone();
        let mut w = b.watch();
        let t0 = w.started;
        assert_eq!(w.deadline(b"", t0), Some(t0 + Duration::from_secs(5)));
        let s = format!("@@{n}:d:0\n");
        assert_eq!(
            w.deadline(s.as_bytes(), t0),
            Some(t0 + Duration::from_secs(9))
        );
    }
}
