//! The one place the command line writes to stdout and stderr: commands hand it values
//! (events, tables, results, errors) and it writes them as text or JSON.
//!
//! - [`events`]: the engine's events while converging (progress, changes, recap);
//! - [`views`]: what the other commands show (inventory, exec, status, lab, facts);
//! - here: plain lines and bytes, warnings and errors, and the terminal prompt for secrets.
//!
//! Output on stdout is what a command produces (and what scripts read); stderr carries
//! progress, notes, warnings and errors.

pub mod events;
pub mod views;

use age::secrecy::SecretString;
use bosun_model::diag::LoadErrors;
use console::style;
use std::fmt::Display;
use std::io::Write;

pub use events::Renderer;

/// `--output`: text for people, JSON (one object per line) for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// A line on stdout.
pub fn out(line: impl Display) {
    println!("{line}");
}

/// Text on stdout as it is (no newline added).
pub fn out_text(text: &str) {
    print!("{text}");
}

/// Bytes on stdout as they are (a decrypted file, a key, a host's output).
pub fn out_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()
}

/// A JSON value as one line on stdout.
pub fn out_json(v: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(v) {
        out(s);
    }
}

/// Text on stderr as it is (no newline added).
pub fn err_text(text: &str) {
    eprint!("{text}");
}

/// Bytes on stderr as they are.
pub fn err_bytes(bytes: &[u8]) {
    let _ = std::io::stderr().write_all(bytes);
}

/// A line on stderr: progress and notes.
pub fn note(line: impl Display) {
    eprintln!("{line}");
}

/// `warning: …` on stderr.
pub fn warning(msg: impl Display) {
    eprintln!("{} {msg}", style("warning:").yellow());
}

/// `error: …` on stderr; returns the exit code of a failed command (1).
pub fn error(msg: impl Display) -> u8 {
    eprintln!("{} {msg}", style("error:").red().bold());
    1
}

/// Every error of a load or preflight, then that nothing was changed; returns 1.
pub fn load_errors(e: &LoadErrors) -> u8 {
    for err in &e.0 {
        eprintln!("{} {}", style("error:").red().bold(), err.render());
    }
    if e.0.len() > 1 {
        eprintln!("{} errors; nothing was changed on any host", e.0.len());
    } else {
        eprintln!("nothing was changed on any host");
    }
    1
}

/// The prompter installed into [`bosun_model::secrets`]: asks on the terminal (stderr)
/// without echo; `None` when stderr is not a terminal.
pub fn ask_secret(question: &str) -> std::io::Result<Option<SecretString>> {
    let term = console::Term::stderr();
    if !term.is_term() {
        return Ok(None);
    }
    term.write_str(question)?;
    let answer = term.read_secure_line()?;
    Ok(Some(SecretString::from(answer)))
}
