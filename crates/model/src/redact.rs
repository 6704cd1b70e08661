//! Secrets never leave the engine: every event is scrubbed here, by value.
//!
//! Matching by value (not by variable name) also catches a secret after a template put it
//! into a config file, a diff line, a command's output or an error message. The values to
//! mask live in one shared [`SecretSet`] that grows during a run: templates register every
//! value they derive from a secret (`{{ pw | urlencode }}`; see `crate::template`), and
//! every [`Redactor`] made from the set sees them at once.
//!
//! Short values are matched as whole words only: a secret shorter than
//! [`crate::inventory::MIN_SECRET_LEN`] characters, or a number of fewer than 8 digits,
//! is masked where it is not part of a longer word or number (`7` in `port 7 open`, not in
//! `17` or `10.0.0.7`). Longer ones are masked wherever they occur.

use aho_corasick::{AhoCorasick, MatchKind};
use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::sync::{Arc, RwLock};

pub const MASK: &str = "<redacted>";

/// Numbers shorter than this many digits are matched as whole numbers only.
const SHORT_NUMBER: usize = 8;

/// One value to mask.
#[derive(Debug, Clone)]
struct Entry {
    text: String,
    /// Matched only where it is not part of a longer word or number.
    whole_word: bool,
}

/// An immutable snapshot of the secret values, compiled for searching.
#[derive(Debug, Default)]
pub struct Matcher {
    entries: Vec<Entry>,
    known: HashSet<String>,
    ac: Option<AhoCorasick>,
}

impl Matcher {
    fn build(entries: Vec<Entry>) -> Matcher {
        let known = entries.iter().map(|e| e.text.clone()).collect();
        let ac = if entries.is_empty() {
            None
        } else {
            // Standard semantics so that overlapping matches can all be reported.
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(entries.iter().map(|e| e.text.as_str()))
                .ok()
        };
        Matcher { entries, known, ac }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many values are masked (the secrets and what was derived from them).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Byte ranges of `s` that hold a secret, merged where they overlap or touch.
    pub fn find(&self, s: &str) -> Vec<Range<usize>> {
        let mut found: Vec<Range<usize>> = Vec::new();
        match &self.ac {
            Some(ac) => {
                for m in ac.find_overlapping_iter(s) {
                    let e = &self.entries[m.pattern().as_usize()];
                    if !e.whole_word || at_word_boundaries(s, m.start(), m.end()) {
                        found.push(m.start()..m.end());
                    }
                }
            }
            None => {
                // The automaton could not be built (it never fails for plain strings, but
                // redaction must not depend on it): the slow, obvious search.
                for e in &self.entries {
                    for (i, _) in s.match_indices(e.text.as_str()) {
                        let end = i + e.text.len();
                        if !e.whole_word || at_word_boundaries(s, i, end) {
                            found.push(i..end);
                        }
                    }
                }
            }
        }
        merge_ranges(found)
    }

    /// `s` with every secret in it replaced by [`MASK`].
    pub fn redact(&self, s: &str) -> String {
        if self.is_empty() {
            return s.to_string();
        }
        let ranges = self.find(s);
        if ranges.is_empty() {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for r in ranges {
            out.push_str(&s[at..r.start]);
            out.push_str(MASK);
            at = r.end;
        }
        out.push_str(&s[at..]);
        out
    }

    /// True when `s` is, as a whole, one of the secret values.
    pub fn is_secret(&self, s: &str) -> bool {
        self.known.contains(s)
    }
}

/// Sorts ranges and merges the ones that overlap or touch.
pub fn merge_ranges(mut v: Vec<Range<usize>>) -> Vec<Range<usize>> {
    v.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `s[start..end]` is not glued to a word or number around it. An edge that is not itself
/// a word character needs no boundary (like `\b`); a digit edge next to `.digit` is inside
/// a larger number (`10.0.0.7`, `7.5`).
fn at_word_boundaries(s: &str, start: usize, end: usize) -> bool {
    let inner = &s[start..end];
    let (Some(first), Some(last)) = (inner.chars().next(), inner.chars().next_back()) else {
        return true;
    };
    let before = &s[..start];
    let after = &s[end..];
    if is_word(first) {
        let mut b = before.chars().rev();
        match b.next() {
            Some(c) if is_word(c) => return false,
            Some('.') if first.is_ascii_digit() && b.next().is_some_and(|c| c.is_ascii_digit()) => {
                return false
            }
            _ => {}
        }
    }
    if is_word(last) {
        let mut a = after.chars();
        match a.next() {
            Some(c) if is_word(c) => return false,
            Some('.') if last.is_ascii_digit() && a.next().is_some_and(|c| c.is_ascii_digit()) => {
                return false
            }
            _ => {}
        }
    }
    true
}

/// The secret values of a run, shared by the template engine (which adds the values it
/// derives from secrets) and every redactor. Cloning shares the set.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    inner: Arc<RwLock<Arc<Matcher>>>,
}

impl SecretSet {
    /// The values of `secrets:` maps, secret files and encrypted `-e @file`s.
    pub fn new(values: &BTreeSet<String>) -> SecretSet {
        let set = SecretSet::default();
        let mut add = Vec::new();
        for v in values {
            add.push(v.clone());
            // A multi-line secret (a private key) shows up line by line in diffs.
            if v.contains('\n') {
                add.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8)
                        .map(str::to_string),
                );
            }
        }
        set.add(add);
        set
    }

    /// The values as they are now; later additions do not change a snapshot.
    pub fn snapshot(&self) -> Arc<Matcher> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Adds values (ignoring empty and whitespace-only ones, which cannot be masked).
    pub fn add<I: IntoIterator<Item = String>>(&self, values: I) {
        let values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.trim().is_empty())
            .collect();
        if values.is_empty() {
            return;
        }
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh: Vec<Entry> = Vec::new();
        let mut seen = HashSet::new();
        for v in values {
            if guard.known.contains(&v) || !seen.insert(v.clone()) {
                continue;
            }
            fresh.push(Entry {
                whole_word: needs_whole_word(&v),
                text: v,
            });
        }
        if fresh.is_empty() {
            return;
        }
        let mut entries = guard.entries.clone();
        entries.extend(fresh);
        *guard = Arc::new(Matcher::build(entries));
    }
}

/// Short values and short numbers are only masked as whole words (see the module docs).
fn needs_whole_word(v: &str) -> bool {
    let n = v.chars().count();
    let digits = v.trim_start_matches('-');
    let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    n < crate::inventory::MIN_SECRET_LEN || (numeric && digits.len() < SHORT_NUMBER)
}

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: SecretSet,
}

impl Redactor {
    /// A redactor over a fixed set of values.
    pub fn new(values: &BTreeSet<String>) -> Self {
        Redactor {
            secrets: SecretSet::new(values),
        }
    }

    /// A redactor that sees every value added to `secrets`, now or later.
    pub fn shared(secrets: SecretSet) -> Self {
        Redactor { secrets }
    }

    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact(&self, s: &str) -> String {
        self.secrets.snapshot().redact(s)
    }

    /// Every string of a JSON value redacted, and every number that is a secret replaced
    /// by [`MASK`] (for printing variables, where a PIN may well be a YAML number).
    pub fn json(&self, v: &mut serde_json::Value) {
        let m = self.secrets.snapshot();
        if m.is_empty() {
            return;
        }
        json_with(&m, v);
    }
}

fn json_with(m: &Matcher, v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = m.redact(s),
        Value::Number(n) => {
            let t = n.to_string();
            if m.redact(&t) != t {
                *v = Value::String(MASK.to_string());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| json_with(m, x)),
        Value::Object(o) => {
            // Keys too: a map keyed by a secret would print it.
            let old = std::mem::take(o);
            for (k, mut x) in old {
                json_with(m, &mut x);
                o.insert(m.redact(&k), x);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_secrets_are_masked_once() {
        let r = Redactor::new(&["abcdef".to_string(), "defghi".to_string()].into());
        assert_eq!(r.redact("x abcdefghi y"), "x <redacted> y");
        // The mask itself never becomes a match for a short secret.
        let r = Redactor::new(&["red".to_string(), "abcdef".to_string()].into());
        assert_eq!(r.redact("abcdef red"), "<redacted> <redacted>");
    }

    #[test]
    fn short_and_numeric_secrets_match_whole_words_only() {
        let r = Redactor::new(&["7".to_string(), "1234".to_string(), "ab".to_string()].into());
        assert_eq!(r.redact("pin 7."), "pin <redacted>.");
        assert_eq!(r.redact("port=7"), "port=<redacted>");
        assert_eq!(r.redact("17 71 10.0.0.7 7.5"), "17 71 10.0.0.7 7.5");
        assert_eq!(
            r.redact("code 1234, not 51234 or 12345"),
            "code <redacted>, not 51234 or 12345"
        );
        assert_eq!(r.redact("\"1234\""), "\"<redacted>\"");
        assert_eq!(
            r.redact("ab cab abc (ab)"),
            "<redacted> cab abc (<redacted>)"
        );
        // Long numbers are masked anywhere, like any long secret.
        let r = Redactor::new(&["123456789".to_string()].into());
        assert_eq!(r.redact("x0123456789"), "x0<redacted>");
    }

    #[test]
    fn json_values_are_redacted_before_serializing() {
        let r = Redactor::new(&["q\"uo\\te".to_string(), "42".to_string()].into());
        let mut v = serde_json::json!({"a": "q\"uo\\te!", "pin": 42, "port": 420, "l": ["42"]});
        r.json(&mut v);
        let s = v.to_string();
        assert_eq!(
            s,
            r#"{"a":"<redacted>!","pin":"<redacted>","port":420,"l":["<redacted>"]}"#
        );
    }

    #[test]
    fn a_shared_set_grows_for_every_redactor() {
        let set = SecretSet::new(&["hunter22".to_string()].into());
        let r = Redactor::shared(set.clone());
        assert_eq!(r.redact("HUNTER22"), "HUNTER22");
        set.add(["HUNTER22".to_string(), "".to_string(), "  ".to_string()]);
        assert_eq!(r.redact("HUNTER22 hunter22"), "<redacted> <redacted>");
        assert_eq!(r.redact("  "), "  ");
    }
}
