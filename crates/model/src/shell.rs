//! Building remote shell text safely.
//!
//! Every value that reaches a remote shell goes through [`quote`], so a path with a space
//! or a quote in it is an argument, never syntax. Scripts run under `/bin/sh` (dash on
//! Debian), so only POSIX constructs are used.

/// Quotes `s` as one POSIX shell word.
///
/// Single quotes keep everything literal; an embedded single quote is closed, escaped and
/// reopened (`'\''`). Plain words that need no quoting are returned as they are, which
/// keeps probe scripts readable in `-vv` output.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'.' | b'_' | b'-' | b'+' | b':' | b'=' | b',' | b'@'
                )
        });
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Shell that lists the temp path `expr` (a quoted word, e.g. `"$t"`) in the running
/// script's list of temp files (`$__bt`, see `engine::batch`), so that it is removed when
/// the script is killed before its own cleanup runs. Outside a batch it goes nowhere.
pub fn track_temp(expr: &str) -> String {
    format!("printf '%s\\n' {expr} >> \"${{__bt:-/dev/null}}\"\n")
}

/// Quotes each word and joins them with spaces.
pub fn quote_all<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A heredoc delimiter that cannot occur in `body`.
///
/// Used when shipping file contents (base64) inside an apply script.
pub fn heredoc_tag(body: &str) -> String {
    let mut tag = String::from("BOSUN_EOF");
    while body.contains(&tag) {
        tag.push('_');
    }
    tag
}

/// A shell fragment that writes `data` (any bytes) to stdout, decoded from base64 carried
/// inside the script itself, so contents never need escaping.
pub fn emit_bytes(data: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    // Wrap at 76 columns: very long lines slow some shells' heredoc readers down.
    let mut wrapped = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            wrapped.push('\n');
        }
        wrapped.push(c);
    }
    let tag = heredoc_tag(&wrapped);
    format!("base64 -d <<'{tag}'\n{wrapped}\n{tag}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(quote("/etc/hosts"), "/etc/hosts");
        assert_eq!(quote("a=b"), "a=b");
    }

    #[test]
    fn specials_are_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn heredoc_tag_avoids_body() {
        assert_eq!(heredoc_tag("abc"), "BOSUN_EOF");
        assert_eq!(heredoc_tag("x BOSUN_EOF y"), "BOSUN_EOF_");
    }

    #[test]
    fn emit_bytes_round_trips_through_sh() {
        let data = b"line one\n'quoted' $HOME `tick`\n\x00\xff";
        let script = emit_bytes(data);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert_eq!(out.stdout, data);
    }
}
