//! Turning engine events into what an operator reads: progress per host while running,
//! changes (and diffs) as they happen, a recap table at the end; or JSON lines for CI.

use super::OutputFormat;
use bosun_engine::event::{Event, HostRecap, Status, TaskReport};
use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

pub struct Renderer {
    format: OutputFormat,
    verbose: u8,
    diff: bool,
    bars: Option<MultiProgress>,
    host_bars: HashMap<String, ProgressBar>,
    check: bool,
}

impl Renderer {
    pub fn new(format: OutputFormat, verbose: u8, diff: bool) -> Self {
        let tty = console::Term::stderr().is_term() && format == OutputFormat::Text;
        Renderer {
            format,
            verbose,
            diff,
            bars: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            host_bars: HashMap::new(),
            check: false,
        }
    }

    /// Prints a line above the progress bars (or plainly when there are none).
    fn line(&self, s: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
            }
        }
    }

    pub fn handle(&mut self, ev: &Event) {
        // Command output, error messages and file contents come from hosts: no terminal
        // control sequence in them reaches the operator's terminal, in either format
        // (JSON escapes C0 controls but not the 8-bit C1 ones such as CSI U+009B).
        let ev = &without_escapes(ev);
        if self.format == OutputFormat::Json {
            if let Ok(s) = serde_json::to_string(ev) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
            }
            return;
        }
        match ev {
            Event::RunStart {
                check,
                hosts,
                plays,
                ..
            } => {
                self.check = *check;
                if self.verbose > 0 {
                    self.line(&format!(
                        "{} plays on {} hosts{}",
                        plays,
                        hosts.len(),
                        if *check { " (check mode)" } else { "" }
                    ));
                }
            }
            Event::PlayStart { play, hosts } => {
                self.line(&format!(
                    "{} {} {}",
                    style("PLAY").bold(),
                    style(play).bold().cyan(),
                    style(format!("[{}]", hosts.join(", "))).dim()
                ));
                if let Some(m) = &self.bars {
                    for h in hosts {
                        let pb = self.host_bars.entry(h.clone()).or_insert_with(|| {
                            let pb = m.add(ProgressBar::new_spinner());
                            pb.set_style(
                                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                            );
                            pb.set_prefix(h.clone());
                            pb.enable_steady_tick(Duration::from_millis(120));
                            pb
                        });
                        pb.set_message(format!("{play}: connecting"));
                    }
                }
            }
            Event::HostConnected { host, seconds } => {
                if self.verbose > 1 {
                    self.line(&format!("  connected to {host} in {seconds:.2}s"));
                }
            }
            Event::Task(r) => self.task(r),
            Event::HandlersSkipped { host, handlers, .. } => {
                self.line(&format!("  {} [{host}] handlers not run because a task failed: {} (use --force-handlers)", style("note:").yellow(), handlers.join(", ")));
            }
            Event::HandlersPending { host, handlers, .. } => {
                self.line(&format!(
                    "  {} [{host}] handlers notified by an earlier run that did not finish; they run at the end of this play: {}",
                    style("pending:").yellow(),
                    handlers.join(", ")
                ));
            }
            Event::HostUnreachable { host, message } => {
                self.bar_done(host, "unreachable");
                self.line(&format!(
                    "{} [{host}] {message}",
                    style("unreachable:").red().bold()
                ));
            }
            Event::HostFailed { host, .. } => self.bar_done(host, "failed"),
            Event::PlayEnd {
                play,
                aborted,
                reason,
            } => {
                if *aborted {
                    self.line(&format!(
                        "{} play `{play}` aborted: {}",
                        style("error:").red().bold(),
                        reason.as_deref().unwrap_or("")
                    ));
                }
            }
            Event::Recap {
                hosts,
                changed_tasks,
                seconds,
                check,
                interrupted,
            } => {
                for (_, pb) in self.host_bars.drain() {
                    pb.finish_and_clear();
                }
                self.recap(hosts, changed_tasks, *seconds, *check, *interrupted);
            }
        }
    }

    fn bar_done(&mut self, host: &str, msg: &str) {
        if let Some(pb) = self.host_bars.get(host) {
            pb.set_message(msg.to_string());
        }
    }

    fn task(&mut self, r: &TaskReport) {
        if let Some(pb) = self.host_bars.get(&r.host) {
            pb.set_message(format!("{} › {}", r.role, r.task));
        }
        let item = r
            .item
            .as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default();
        // A rescue task runs because the block failed: say so, or it reads like the plan.
        let rescue = if r.rescue { " (rescue)" } else { "" };
        let what = format!("[{}] {} › {}{item}{rescue}", r.host, r.role, r.task);
        match r.status {
            Status::Changed => {
                let label = if self.check {
                    "would change:"
                } else {
                    "changed:"
                };
                let label = if r.handler {
                    if self.check {
                        "would run handler:"
                    } else {
                        "handler:"
                    }
                } else {
                    label
                };
                let mut s = format!("{} {what}", style(label).yellow().bold());
                if let Some(sum) = &r.summary {
                    s.push_str(&format!(": {sum}"));
                }
                if r.predicted {
                    s.push_str(&format!(
                        " {}",
                        style("(predicted: depends on an earlier change)").dim()
                    ));
                }
                self.line(&s);
                for d in &r.details {
                    self.line(&format!("      {d}"));
                }
                if self.diff {
                    if let Some(d) = &r.diff {
                        for l in d.unified.lines() {
                            let styled = if l.starts_with("+++") || l.starts_with("---") {
                                style(l).bold().to_string()
                            } else if l.starts_with('+') {
                                style(l).green().to_string()
                            } else if l.starts_with('-') {
                                style(l).red().to_string()
                            } else if l.starts_with("@@") {
                                style(l).cyan().to_string()
                            } else {
                                l.to_string()
                            };
                            self.line(&format!("    {styled}"));
                        }
                    }
                }
            }
            Status::Failed => {
                self.line(&format!("{} {what}", style("failed:").red().bold()));
                if let Some(m) = &r.message {
                    for l in m.lines() {
                        self.line(&format!("    {l}"));
                    }
                }
            }
            Status::Ignored => {
                self.line(&format!("{} {what}", style("failed (ignored):").yellow()));
                if let Some(m) = &r.message {
                    for l in m.lines() {
                        self.line(&format!("    {l}"));
                    }
                }
            }
            Status::Ok if self.verbose > 0 || r.shown => {
                let why = r
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{} {what}{}",
                    style("ok:").green(),
                    style(why).dim()
                ));
            }
            Status::Skipped if self.verbose > 0 => {
                let why = r
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{} {what}{}",
                    style("skipped:").dim(),
                    style(why).dim()
                ));
            }
            _ => {}
        }
    }

    fn recap(
        &self,
        hosts: &[HostRecap],
        changed_tasks: &[(String, String)],
        seconds: f64,
        check: bool,
        interrupted: bool,
    ) {
        let w = hosts.iter().map(|h| h.host.len()).max().unwrap_or(4).max(4);
        self.line("");
        self.line(&format!(
            "{}",
            style(match (check, interrupted) {
                (_, true) => "RECAP (INTERRUPTED: nothing new was started after the signal)",
                (true, false) => "RECAP (check mode: nothing was changed)",
                (false, false) => "RECAP",
            })
            .bold()
        ));
        let mut head = format!(
            "{:<w$}  {:>4}  {:>7}  {:>6}  {:>7}  {:>7}  {:>7}  {:>11}  {:>7}",
            "HOST",
            "OK",
            "CHANGED",
            "FAILED",
            "SKIPPED",
            "IGNORED",
            "RESCUED",
            "UNREACHABLE",
            "SECONDS"
        );
        if self.verbose > 0 {
            head.push_str("  EXECS (per play)");
        }
        self.line(&head);
        for h in hosts {
            let mut row = format!(
                "{:<w$}  {:>4}  {:>7}  {:>6}  {:>7}  {:>7}  {:>7}  {:>11}  {:>7.2}",
                h.host,
                h.ok,
                h.changed,
                h.failed,
                h.skipped,
                h.ignored,
                h.rescued,
                if h.unreachable { 1 } else { 0 },
                h.seconds
            );
            if self.verbose > 0 {
                row.push_str(&format!(
                    "  {} ({})",
                    h.execs,
                    h.execs_per_play
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            if h.interrupted {
                row.push_str("  (interrupted)");
            }
            let row = if h.failed > 0 || h.unreachable {
                style(row).red().to_string()
            } else if h.changed > 0 {
                style(row).yellow().to_string()
            } else {
                style(row).green().to_string()
            };
            self.line(&row);
        }
        if !changed_tasks.is_empty() {
            self.line(&format!(
                "{}",
                style(if check { "would change:" } else { "changed:" }).bold()
            ));
            for (h, t) in changed_tasks {
                self.line(&format!("  {h}: {t}"));
            }
        }
        self.line(&format!("{:.2}s", seconds));
    }
}

/// A copy of the event with [`bosun_model::text::strip_escapes`] applied to every string.
pub fn without_escapes(ev: &Event) -> Event {
    let mut ev = ev.clone();
    ev.for_each_string(&mut |s: &mut String| {
        if let std::borrow::Cow::Owned(clean) = bosun_model::text::strip_escapes(s) {
            *s = clean;
        }
    });
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_output_loses_its_escapes_in_every_field() {
        let ev = Event::Task(TaskReport {
            host: "h".into(),
            play: "p".into(),
            role: "r".into(),
            task: "t".into(),
            status: Status::Failed,
            item: Some("\x1b]0;title\x07i".into()),
            summary: None,
            details: vec!["\x1b[2Jd".into()],
            diff: Some(bosun_engine::event::FileDiff {
                path: "/x".into(),
                unified: "+a\x1b[31mb\r\n".into(),
            }),
            predicted: false,
            always: false,
            handler: false,
            shown: false,
            rescue: false,
            message: Some("stderr: \u{9b}1;1Hboom\x1b]52;c;eA==\x1b\\".into()),
        });
        let clean = without_escapes(&ev);
        let json = serde_json::to_string(&clean).unwrap();
        assert!(
            !json.contains("\\u001b") && !json.contains('\u{9b}'),
            "{json}"
        );
        assert!(json.contains("stderr: boom"), "{json}");
        assert!(json.contains("+ab\\n"), "{json}");
        let Event::Task(r) = clean else { panic!() };
        assert_eq!(r.item.as_deref(), Some("i"));
        assert_eq!(r.details, vec!["d".to_string()]);
    }
}
