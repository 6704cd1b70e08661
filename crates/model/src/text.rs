//! Small text helpers shared by error messages and the renderer.

use std::borrow::Cow;

/// Text that came from a host with every terminal control sequence removed, so that
/// command output or a file's content cannot move the cursor, retitle the window, rewrite
/// what the operator already read or talk to the terminal (OSC 52 clipboard, DCS).
///
/// Removed: ESC sequences (CSI `ESC [ ... final`, OSC/DCS/SOS/PM/APC strings up to BEL or
/// ST, and two-character ones such as `ESC c`), their 8-bit C1 forms (U+0080..U+009F,
/// CSI U+009B and OSC U+009D included), DEL, and every other C0 control character but
/// `\n` and `\t`. An unterminated string sequence runs to the end of the text, as it would
/// in the terminal.
pub fn strip_escapes(s: &str) -> Cow<'_, str> {
    fn is_control(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t') || c == '\u{7f}'
    }
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    // Skips a control string's body, up to and including BEL, ST (ESC \) or C1 ST.
    fn skip_string(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while let Some(c) = it.next() {
            match c {
                '\u{07}' | '\u{9c}' => return,
                '\u{1b}' => {
                    if it.peek() == Some(&'\\') {
                        it.next();
                    }
                    return;
                }
                _ => {}
            }
        }
    }
    // Skips a CSI body: parameter and intermediate bytes, then one final byte.
    fn skip_csi(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while let Some(&c) = it.peek() {
            if ('\u{20}'..='\u{3f}').contains(&c) {
                it.next();
            } else {
                // The final byte ends it; anything else ends a malformed one, and stays.
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    it.next();
                }
                return;
            }
        }
    }
    while let Some(c) = it.next() {
        match c {
            '\u{1b}' => match it.next() {
                Some('[') => skip_csi(&mut it),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut it),
                // nF sequences: intermediates, then a final character (`ESC ( B`).
                Some(c) if ('\u{20}'..='\u{2f}').contains(&c) => {
                    while let Some(&n) = it.peek() {
                        it.next();
                        if !('\u{20}'..='\u{2f}').contains(&n) {
                            break;
                        }
                    }
                }
                // Two-character sequences (`ESC c`, `ESC 7`), or a lone ESC at the end.
                Some(_) | None => {}
            },
            '\u{9b}' => skip_csi(&mut it),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut it),
            c if is_control(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely
/// typo (distance at most a third of the word, minimum 1).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Classic Levenshtein distance over chars.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Splits a line into words as a POSIX shell would (Python's `shlex`): quotes group,
/// backslash escapes, and with `comments` an unquoted `#` ends the line. Nothing is
/// expanded. Used for command lines, `extra_args` and Ansible INI lines alike.
pub fn split_words(line: &str, comments: bool) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if comments => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed quote in `{line}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(format!("unclosed quote in `{line}`")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed quote in `{line}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_terminal_escapes() {
        assert!(matches!(strip_escapes("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(strip_escapes("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(strip_escapes("a\x1b[2J\x1b[1;1Hb"), "ab");
        // OSC: window title (BEL) and clipboard (ST); an 8-bit CSI and OSC.
        assert_eq!(strip_escapes("x\x1b]0;pwned\x07y"), "xy");
        assert_eq!(strip_escapes("x\x1b]52;c;ZXZpbA==\x1b\\y"), "xy");
        assert_eq!(strip_escapes("x\u{9b}2Ky\u{9d}title\u{9c}z"), "xyz");
        // DCS, two-character and nF sequences, other C0 controls and DEL.
        assert_eq!(strip_escapes("a\x1bPq#0\x1b\\b\x1bc\x1b(Bc"), "abc");
        assert_eq!(strip_escapes("over\rwrite\x08\x07\x7f\x00!"), "overwrite!");
        // Unterminated: to the end, as the terminal would take it.
        assert_eq!(strip_escapes("ok\x1b]0;never ends"), "ok");
        assert_eq!(strip_escapes("ok\x1b"), "ok");
        assert_eq!(
            strip_escapes("tab\tand\nnewline kept, ünïcode too"),
            "tab\tand\nnewline kept, ünïcode too"
        );
    }

    #[test]
    fn finds_typos() {
        assert_eq!(closest("tempalte", &["template", "file"]), Some("template"));
        assert_eq!(closest("zzz", &["template", "file"]), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
