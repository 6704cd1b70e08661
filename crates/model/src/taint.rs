//! Secrecy carried through templates: what a template derives from a secret is secret.
//!
//! Redaction by value knows the secrets as written; `{{ db_pw | urlencode }}`,
//! `{{ db_pw | b64encode }}` or `"x" ~ db_pw[2:]` print other strings. No list of
//! encodings is kept here. Instead, a render whose context holds a secret is done again
//! with every secret in the context replaced by a stand-in: a string of the same length in
//! which every character differs ([`Mapping`]). Whatever differs between the real output
//! and the stand-in outputs depends on a secret, whatever the filters did to it, and is
//! registered in the run's [`SecretSet`](crate::redact::SecretSet) as a secret of its own.
//! Values derived before (a variable `url: "...{{ pw | urlencode }}..."` rendered earlier)
//! are secrets too, so they are stood in for in turn: taint follows chains of variables.
//!
//! The stand-in context is not copied: [`Taint::context`] wraps the real context in an
//! object that substitutes lazily, value by value, as the template reads it, and notes
//! whether it substituted anything. A render that read no secret costs one extra render;
//! a run without secrets costs nothing (see `crate::template::Templates`).

use crate::redact::Matcher;
use crate::template::Pending;
use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, ValueKind};
use minijinja::Value as JValue;
use serde_json::Value;
use similar::{Algorithm, DiffTag};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Equal runs this short between two differing regions are taken into the region: two
/// unrelated strings share a character here and there by chance.
const GAP: usize = 3;

/// How a stand-in is made from a secret, character by character. Both mappings change
/// every letter and digit (digits never to `0`, so a number keeps its length); they
/// differ from each other everywhere too, so a character that matches by chance under
/// one does not under the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Every character changes: letters shift by one, digits `d → d % 9 + 1`, anything
    /// else (punctuation, spaces, non-ASCII) becomes `x`; only line ends stay.
    All,
    /// Letters rotate by 13, digits `d → (d + 1) % 9 + 1`, non-ASCII letters become `y`;
    /// ASCII punctuation and spaces stay, so a template that splits a secret on `@` or
    /// `:` still renders when [`Mapping::All`] made it fail.
    Alnum,
}

impl Mapping {
    fn shift(c: char, base: u8, n: u8) -> char {
        char::from(base + ((c as u8 - base + n) % 26))
    }

    pub fn digit(self, c: char) -> char {
        let d = c as u8 - b'0';
        let m = match self {
            Mapping::All => d % 9 + 1,
            Mapping::Alnum => (d + 1) % 9 + 1,
        };
        char::from(b'0' + m)
    }

    pub fn char(self, c: char) -> char {
        let n = match self {
            Mapping::All => 1,
            Mapping::Alnum => 13,
        };
        match c {
            'a'..='z' => Self::shift(c, b'a', n),
            'A'..='Z' => Self::shift(c, b'A', n),
            '0'..='9' => self.digit(c),
            // Line ends stay, so that a multi-line secret keeps its lines and the
            // outputs can be compared line by line.
            '\n' | '\r' => c,
            _ => match self {
                Mapping::All => 'x',
                Mapping::Alnum if c.is_alphanumeric() => 'y',
                Mapping::Alnum => c,
            },
        }
    }
}

/// One stand-in render: the secrets to replace, how, and whether any was read.
#[derive(Debug)]
pub struct Taint {
    matcher: Arc<Matcher>,
    mapping: Mapping,
    touched: AtomicBool,
}

impl Taint {
    pub fn new(matcher: Arc<Matcher>, mapping: Mapping) -> Arc<Taint> {
        Arc::new(Taint {
            matcher,
            mapping,
            touched: AtomicBool::new(false),
        })
    }

    /// True once the render read a value that holds a secret.
    pub fn touched(&self) -> bool {
        self.touched.load(Ordering::Relaxed)
    }

    /// The context with every secret stood in for.
    pub fn context(self: &Arc<Self>, ctx: &JValue) -> JValue {
        self.value(ctx.clone())
    }

    /// `s` with every secret in it replaced by its stand-in (`None`: it holds none).
    pub fn stand_in(&self, s: &str, digits_only: bool) -> Option<String> {
        let ranges = self.matcher.find(s);
        if ranges.is_empty() {
            return None;
        }
        self.touched.store(true, Ordering::Relaxed);
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for r in ranges {
            out.push_str(&s[at..r.start]);
            out.extend(s[r.clone()].chars().map(|c| match (digits_only, c) {
                (true, '0'..='9') => self.mapping.digit(c),
                (true, _) => c,
                (false, _) => self.mapping.char(c),
            }));
            at = r.end;
        }
        out.push_str(&s[at..]);
        Some(out)
    }

    fn value(self: &Arc<Self>, v: JValue) -> JValue {
        match v.kind() {
            ValueKind::String => {
                let Some(s) = v.as_str() else { return v };
                match self.stand_in(s, false) {
                    Some(n) if v.is_safe() => JValue::from_safe_string(n),
                    Some(n) => JValue::from(n),
                    None => v,
                }
            }
            ValueKind::Number => {
                let s = v.to_string();
                let Some(n) = self.stand_in(&s, true) else {
                    return v;
                };
                let parsed = if v.is_integer() {
                    n.parse::<i64>()
                        .map(JValue::from)
                        .or_else(|_| n.parse::<u64>().map(JValue::from))
                        .or_else(|_| n.parse::<i128>().map(JValue::from))
                        .ok()
                } else {
                    n.parse::<f64>().map(JValue::from).ok()
                };
                parsed.unwrap_or_else(|| JValue::from(n))
            }
            ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => {
                // Values that only exist at run time stand for themselves, and a wrapped
                // value is not wrapped twice.
                if v.as_object().is_none()
                    || v.downcast_object_ref::<Pending>().is_some()
                    || v.downcast_object_ref::<StandIn>().is_some()
                {
                    v
                } else {
                    JValue::from_object(StandIn {
                        inner: v,
                        taint: self.clone(),
                    })
                }
            }
            _ => v,
        }
    }
}

/// A map or a list of the real context, seen through a [`Taint`]: what is read from it
/// comes out with its secrets stood in for.
struct StandIn {
    inner: JValue,
    taint: Arc<Taint>,
}

impl StandIn {
    fn obj(&self) -> Option<&minijinja::value::DynObject> {
        self.inner.as_object()
    }

    fn repr_of(&self) -> ObjectRepr {
        self.obj().map_or(ObjectRepr::Plain, |o| o.repr())
    }
}

/// Shows the stood-in values, never the real ones (error messages and `pprint` use it).
impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(o) = self.obj() else {
            return f.write_str("<object>");
        };
        match o.repr() {
            ObjectRepr::Map => {
                let mut m = f.debug_map();
                for k in o.try_iter().into_iter().flatten() {
                    let v = o
                        .get_value(&k)
                        .map(|v| self.taint.value(v))
                        .unwrap_or(JValue::UNDEFINED);
                    m.entry(&k, &v);
                }
                m.finish()
            }
            ObjectRepr::Seq | ObjectRepr::Iterable => f
                .debug_list()
                .entries(
                    o.try_iter()
                        .into_iter()
                        .flatten()
                        .map(|v| self.taint.value(v)),
                )
                .finish(),
            _ => f.write_str("<object>"),
        }
    }
}

impl Object for StandIn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        self.repr_of()
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        self.obj()?.get_value(key).map(|v| self.taint.value(v))
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<JValue> {
        self.obj()?
            .get_value_by_str(key)
            .map(|v| self.taint.value(v))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.repr_of() {
            // Keys as they are; their values through get_value.
            ObjectRepr::Map => self.mapped_enumerator(|this| match this.obj() {
                Some(o) => o.try_iter().unwrap_or_else(|| Box::new(std::iter::empty())),
                None => Box::new(std::iter::empty()),
            }),
            ObjectRepr::Seq | ObjectRepr::Iterable => self.mapped_enumerator(|this| {
                let taint = this.taint.clone();
                match this.obj().and_then(|o| o.try_iter()) {
                    Some(it) => Box::new(it.map(move |v| taint.value(v))),
                    None => Box::new(std::iter::empty()),
                }
            }),
            _ => Enumerator::NonEnumerable,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.obj()?.enumerator_len()
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.obj().is_some_and(|o| o.is_true())
    }
}

/// The parts of `real` that differ from any of the stand-in outputs, as strings to
/// redact: equal runs of up to [`GAP`] characters inside a region are taken in, regions
/// grow to whole alphanumeric words, and are cut at line ends (diffs show lines).
pub fn derived(real: &str, stand_ins: &[&str]) -> Vec<String> {
    let rc: Vec<char> = real.chars().collect();
    let n = rc.len();
    let mut mark = vec![false; n];
    let deadline = Instant::now() + Duration::from_secs(2);
    // Lines first, then characters within the lines that differ: a character diff costs
    // with the number of differences, and a stood-in private key differs everywhere.
    let real_lines: Vec<&str> = real.split_inclusive('\n').collect();
    let mut line_start = Vec::with_capacity(real_lines.len() + 1);
    let mut at = 0;
    for l in &real_lines {
        line_start.push(at);
        at += l.chars().count();
    }
    line_start.push(at);
    for st in stand_ins {
        if *st == real {
            continue;
        }
        let st_lines: Vec<&str> = st.split_inclusive('\n').collect();
        let ops = similar::capture_diff_slices_deadline(
            Algorithm::Myers,
            &real_lines,
            &st_lines,
            (real_lines.len() + st_lines.len() > 1024).then_some(deadline),
        );
        for op in ops {
            let (tag, old, new) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal | DiffTag::Insert => {}
                DiffTag::Delete => {
                    (line_start[old.start]..line_start[old.end]).for_each(|i| mark[i] = true)
                }
                DiffTag::Replace if old.len() == new.len() => {
                    for (o, n) in old.zip(new) {
                        mark_chars(
                            &rc[line_start[o]..line_start[o + 1]],
                            st_lines[n],
                            &mut mark[line_start[o]..line_start[o + 1]],
                            deadline,
                        );
                    }
                }
                DiffTag::Replace => {
                    let block: String = st_lines[new].concat();
                    let span = line_start[old.start]..line_start[old.end];
                    mark_chars(&rc[span.clone()], &block, &mut mark[span], deadline);
                }
            }
        }
    }
    // The regions as the diff found them (grown to whole words), and the same with the
    // small equal runs between them taken in. Both are registered: a host may print one
    // part alone (the first) or the parts together with what separates them (the second).
    let mut exact = mark.clone();
    grow_to_words(&rc, &mut exact);
    widen(&rc, &mut mark);
    let mut out = pieces(&rc, &mark);
    for p in pieces(&rc, &exact) {
        if p.chars().count() >= crate::inventory::MIN_SECRET_LEN && !out.contains(&p) {
            out.push(p);
        }
    }
    // A lone punctuation character (`{{ pw[4] }}` is `+`) cannot be masked without
    // masking every `+` of the output, diff markers included: it is left out.
    out.retain(|p| {
        p.chars().any(char::is_alphanumeric)
            || p.chars().count() >= crate::inventory::MIN_SECRET_LEN
    });
    out
}

/// Marks the characters of `real` that differ from `stand_in`. Only the real output is
/// printed: what the stand-in has in excess (an insertion) shows nothing of the secret
/// where the real one has nothing. Past the deadline the diff is coarser: more is marked,
/// never less.
fn mark_chars(real: &[char], stand_in: &str, mark: &mut [bool], deadline: Instant) {
    let sc: Vec<char> = stand_in.chars().collect();
    if sc.len() == real.len() {
        // Stand-ins have the secrets' lengths, so most changed lines keep theirs: compared
        // position by position, which is exact when nothing shifted (and marks more, never
        // less, when something did), and costs nothing next to a diff of a line that
        // differs everywhere (a line of a private key).
        for (i, (a, b)) in real.iter().zip(&sc).enumerate() {
            if a != b {
                mark[i] = true;
            }
        }
        return;
    }
    // Small inputs never come near the deadline; checking the clock is what costs then.
    let deadline = (real.len() + sc.len() > 4096).then_some(deadline);
    for op in similar::capture_diff_slices_deadline(Algorithm::Myers, real, &sc, deadline) {
        let (tag, old, _) = op.as_tag_tuple();
        if matches!(tag, DiffTag::Delete | DiffTag::Replace) {
            old.for_each(|i| mark[i] = true);
        }
    }
}

/// The marked runs of `rc`, cut at line ends and trimmed.
fn pieces(rc: &[char], mark: &[bool]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (c, m) in rc.iter().zip(mark) {
        if *m && *c != '\n' {
            cur.push(*c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Grows marked regions of `rc`: equal runs of up to [`GAP`] characters between two
/// marked ones (on one line) are marked, and a region that starts or ends inside an
/// alphanumeric word takes the whole word.
pub fn widen(rc: &[char], mark: &mut [bool]) {
    let n = rc.len().min(mark.len());
    let mut i = 0;
    while i < n {
        if mark[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && !mark[i] {
            i += 1;
        }
        if start > 0 && i < n && i - start <= GAP && !rc[start..i].contains(&'\n') {
            mark[start..i].iter_mut().for_each(|m| *m = true);
        }
    }
    grow_to_words(rc, mark);
}

/// A marked region that starts or ends inside an alphanumeric word takes the whole word.
fn grow_to_words(rc: &[char], mark: &mut [bool]) {
    let n = rc.len().min(mark.len());
    let marked: Vec<usize> = (0..n).filter(|&i| mark[i]).collect();
    for i in marked {
        let mut j = i;
        while j > 0 && !mark[j - 1] && rc[j - 1].is_alphanumeric() && rc[j].is_alphanumeric() {
            mark[j - 1] = true;
            j -= 1;
        }
        let mut k = i;
        while k + 1 < n && !mark[k + 1] && rc[k + 1].is_alphanumeric() && rc[k].is_alphanumeric() {
            mark[k + 1] = true;
            k += 1;
        }
    }
}

/// Every line of `real`: what is registered when no stand-in render succeeded and
/// nothing tells which part came from a secret.
pub fn whole(real: &str) -> Vec<String> {
    real.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// [`derived`] for a JSON value (an argument that is one `{{ expression }}`), leaf by
/// leaf. Where the shapes differ the whole real subtree is taken.
pub fn derived_json(real: &Value, stand_ins: &[&Value], out: &mut Vec<String>) {
    if stand_ins.iter().all(|s| *s == real) {
        return;
    }
    match real {
        Value::String(a) => {
            let bs: Vec<&str> = stand_ins.iter().filter_map(|s| s.as_str()).collect();
            if bs.len() == stand_ins.len() {
                out.extend(derived(a, &bs));
            } else {
                whole_json(real, out);
            }
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => {
            let subs: Option<Vec<&Vec<Value>>> = stand_ins
                .iter()
                .map(|s| s.as_array().filter(|b| b.len() == a.len()))
                .collect();
            match subs {
                Some(subs) => {
                    for (i, x) in a.iter().enumerate() {
                        let col: Vec<&Value> = subs.iter().map(|b| &b[i]).collect();
                        derived_json(x, &col, out);
                    }
                }
                None => whole_json(real, out),
            }
        }
        Value::Object(o) => {
            let subs: Option<Vec<&serde_json::Map<String, Value>>> =
                stand_ins.iter().map(|s| s.as_object()).collect();
            let Some(subs) = subs else {
                whole_json(real, out);
                return;
            };
            for (k, x) in o {
                let col: Option<Vec<&Value>> = subs.iter().map(|b| b.get(k)).collect();
                match col {
                    Some(col) => derived_json(x, &col, out),
                    None => {
                        // The key itself came from a secret.
                        out.push(k.clone());
                        whole_json(x, out);
                    }
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Every string and number in `v`.
pub fn whole_json(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(whole(s)),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => a.iter().for_each(|x| whole_json(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            whole_json(x, out)
        }),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_change_every_character_and_keep_lengths() {
        let s = "p@ss+w/rd=Zq9 0189 äz\tq";
        for m in [Mapping::All, Mapping::Alnum] {
            let t: String = s.chars().map(|c| m.char(c)).collect();
            assert_eq!(t.chars().count(), s.chars().count());
            for (a, b) in s.chars().zip(t.chars()) {
                let punct_kept = m == Mapping::Alnum && !a.is_alphanumeric();
                assert!(punct_kept || a != b, "{m:?}: {a} stays");
            }
        }
        let a: String = "0123456789"
            .chars()
            .map(|c| Mapping::All.digit(c))
            .collect();
        let b: String = "0123456789"
            .chars()
            .map(|c| Mapping::Alnum.digit(c))
            .collect();
        assert_eq!(a, "1234567891");
        assert_eq!(b, "2345678912");
    }

    #[test]
    fn derived_regions_grow_to_words_and_bridge_small_gaps() {
        assert_eq!(
            derived("url=x:AB12@h", &["url=x:ZZZZ@h"]),
            vec!["AB12".to_string()]
        );
        // "ab" equal by chance between two differing parts; a word is taken whole.
        assert_eq!(derived("k=QabQ;", &["k=ZabZ;"]), vec!["QabQ".to_string()]);
        assert_eq!(derived("a\nSECRET\nb", &["a\nTFDSFU\nb"]), vec!["SECRET"]);
        // Parts printed together are registered together and one by one.
        assert_eq!(
            derived("echo AAAA+ BBBB + end", &["echo zzzzx yyyy x end"]),
            vec!["AAAA+ BBBB +", "AAAA+", "BBBB"]
        );
        // A lone punctuation character is not registered (it would mask every `+`).
        assert!(derived("x + y", &["x a y"]).is_empty());
        assert!(derived("same", &["same"]).is_empty());
    }
}
