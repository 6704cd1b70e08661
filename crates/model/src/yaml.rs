//! Reading YAML input with one set of rules everywhere.
//!
//! YAML 1.2 core booleans only (`yes`, `no`, `y`, `on` stay strings: a package called `y`
//! must not turn into `true`), and numbers with a leading zero stay strings so a mode
//! written `0644` reaches the `file` module as the operator wrote it.

use crate::diag::{LoadError, Place};
use serde::de::DeserializeOwned;
use std::path::Path;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// Parses `text` (read from `file`) into `T`, mapping errors to `file:line:col`.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, LoadError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        let place = match e.location() {
            Some(l) => Place::at(file, &l),
            None => Place::file(file),
        };
        LoadError::new(place, clean_message(&e.to_string()))
            .hint("fix the YAML at that line; check indentation and quoting")
    })
}

/// Reads and parses a file; a missing file is reported with its path.
pub fn load<T: DeserializeOwned>(file: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| LoadError::new(Place::file(file), format!("cannot read: {e}")))?;
    parse(file, &text)
}

/// serde-saphyr prefixes "error: line N column M:"; the place already says that.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn yaml12_booleans_and_leading_zeros() {
        let v: Value = parse(
            Path::new("t.yml"),
            "a: y\nb: yes\nc: true\nd: 0644\ne: 12\n",
        )
        .unwrap();
        assert_eq!(v["a"], "y");
        assert_eq!(v["b"], "yes");
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], "0644");
        assert_eq!(v["e"], 12);
    }

    #[test]
    fn errors_name_file_line_col() {
        let e =
            parse::<Value>(Path::new("roles/x/tasks.yml"), "- name: x\n  apt: [\n").unwrap_err();
        assert_eq!(e.place.line, 2);
        assert!(e.to_string().starts_with("roles/x/tasks.yml:2:"), "{e}");
        assert!(e.message.contains("unclosed"), "{}", e.message);
    }
}
