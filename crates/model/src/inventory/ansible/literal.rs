//! Values of INI `key=value` pairs, read the way Ansible reads them.
//!
//! Ansible passes each INI value through Python's `ast.literal_eval` and keeps the text
//! as a string when that fails: `42` is a number, `True` a boolean, `'x y'` a string,
//! `[1, 2]` a list, but `true`, `0644` and `pool.ntp.org` stay strings. This is a small
//! parser for exactly those Python literals, so an inventory means in bosun what it meant
//! in Ansible.

use serde_json::{Map, Number, Value};

/// The Python literal `text` denotes, or `text` itself as a string.
pub(super) fn parse(text: &str) -> Value {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    match p.value() {
        Some(v) => {
            p.ws();
            if p.i == p.s.len() {
                v
            } else {
                Value::String(text.to_string())
            }
        }
        None => Value::String(text.to_string()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                self.seq(b']').map(Value::Array)
            }
            b'(' => {
                self.i += 1;
                self.tuple()
            }
            b'{' => {
                self.i += 1;
                self.dict_or_set()
            }
            b'\'' | b'"' => self.strings(),
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                match word {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    // String prefixes: r'..', u'..', b'..' (bytes become text, as in Ansible).
                    "r" | "R" | "u" | "U" | "b" | "B" | "rb" | "br" | "Rb" | "bR" | "RB" | "BR"
                        if matches!(self.peek(), Some(b'\'' | b'"')) =>
                    {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Comma-separated values up to `close`; a trailing comma is allowed.
    fn seq(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.value()?);
            if self.eat(b',') {
                continue;
            }
            return self.eat(close).then_some(out);
        }
    }

    /// `()` and `(a,)` are tuples (lists here); `(a)` is just `a`.
    fn tuple(&mut self) -> Option<Value> {
        if self.eat(b')') {
            return Some(Value::Array(Vec::new()));
        }
        let first = self.value()?;
        if self.eat(b')') {
            return Some(first);
        }
        if !self.eat(b',') {
            return None;
        }
        let mut rest = self.seq(b')')?;
        rest.insert(0, first);
        Some(Value::Array(rest))
    }

    fn dict_or_set(&mut self) -> Option<Value> {
        if self.eat(b'}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.value()?;
        if !self.eat(b':') {
            // A set: JSON has none, a list is the closest.
            if self.eat(b'}') {
                return Some(Value::Array(vec![first]));
            }
            if !self.eat(b',') {
                return None;
            }
            let mut rest = self.seq(b'}')?;
            rest.insert(0, first);
            return Some(Value::Array(rest));
        }
        let mut m = Map::new();
        let mut key = first;
        loop {
            let v = self.value()?;
            m.insert(key_text(&key)?, v);
            if self.eat(b'}') {
                return Some(Value::Object(m));
            }
            if !self.eat(b',') {
                return None;
            }
            if self.eat(b'}') {
                return Some(Value::Object(m));
            }
            key = self.value()?;
            if !self.eat(b':') {
                return None;
            }
        }
    }

    /// One or more adjacent string literals, concatenated as Python does.
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        let mut any = false;
        loop {
            self.ws();
            let start = self.i;
            let mut raw = false;
            while let Some(c) = self.peek() {
                match c {
                    b'r' | b'R' => raw = true,
                    b'u' | b'U' | b'b' | b'B' => {}
                    _ => break,
                }
                self.i += 1;
            }
            match self.peek() {
                Some(q @ (b'\'' | b'"')) => {
                    self.i += 1;
                    out.push_str(&self.string_body(q, raw)?);
                    any = true;
                }
                _ => {
                    self.i = start;
                    return any.then_some(Value::String(out));
                }
            }
        }
    }

    fn string_body(&mut self, quote: u8, raw: bool) -> Option<String> {
        let mut bytes = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            if c == quote {
                return String::from_utf8(bytes).ok();
            }
            if c != b'\\' {
                bytes.push(c);
                continue;
            }
            let e = self.peek()?;
            self.i += 1;
            if raw {
                bytes.extend([b'\\', e]);
                continue;
            }
            match e {
                b'n' => bytes.push(b'\n'),
                b't' => bytes.push(b'\t'),
                b'r' => bytes.push(b'\r'),
                b'0' => bytes.push(0),
                b'\\' | b'\'' | b'"' => bytes.push(e),
                b'x' | b'u' => {
                    let n = if e == b'x' { 2 } else { 4 };
                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + n)?).ok()?;
                    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    self.i += n;
                    let mut buf = [0u8; 4];
                    bytes.extend(ch.encode_utf8(&mut buf).as_bytes());
                }
                // Python keeps unknown escapes as written.
                other => bytes.extend([b'\\', other]),
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        let negative = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                true
            }
            Some(b'+') => {
                self.i += 1;
                false
            }
            _ => false,
        };
        self.ws();
        let body_start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.'))
            || (matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s.get(self.i.wrapping_sub(1)), Some(b'e' | b'E'))
                && !self.s[body_start..self.i].starts_with(b"0x"))
        {
            self.i += 1;
        }
        let body: String = std::str::from_utf8(&self.s[body_start..self.i])
            .ok()?
            .replace('_', "");
        if body.is_empty() || start == self.i {
            return None;
        }
        let radix = |prefix: &str, r: u32| -> Option<Option<i64>> {
            let digits = body
                .strip_prefix(prefix)
                .or_else(|| body.strip_prefix(&prefix.to_ascii_uppercase()))?;
            Some(i64::from_str_radix(digits, r).ok())
        };
        let int = if let Some(v) = radix("0x", 16) {
            v
        } else if let Some(v) = radix("0o", 8) {
            v
        } else if let Some(v) = radix("0b", 2) {
            v
        } else if body.bytes().all(|c| c.is_ascii_digit()) {
            // Python 3 refuses `0644`: a decimal with a leading zero must be all zeros.
            if body.len() > 1 && body.starts_with('0') && body.bytes().any(|c| c != b'0') {
                return None;
            }
            body.parse::<i64>().ok()
        } else {
            None
        };
        if let Some(i) = int {
            return Some(Value::Number(Number::from(if negative { -i } else { i })));
        }
        let looks_float = body
            .bytes()
            .all(|c| c.is_ascii_digit() || b".eE+-".contains(&c))
            && body.bytes().any(|c| c.is_ascii_digit());
        if !looks_float {
            return None;
        }
        let f: f64 = body.parse().ok()?;
        Number::from_f64(if negative { -f } else { f }).map(Value::Number)
    }
}

/// JSON object keys are strings; Python dict keys may be numbers or booleans.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        Value::Null => Some("None".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_literals_as_ansible_reads_them() {
        assert_eq!(parse("42"), json!(42));
        assert_eq!(parse("-7"), json!(-7));
        assert_eq!(parse("1.5"), json!(1.5));
        assert_eq!(parse("0x1F"), json!(31));
        assert_eq!(parse("True"), json!(true));
        assert_eq!(parse("None"), json!(null));
        assert_eq!(parse("'a b'"), json!("a b"));
        assert_eq!(parse(r#""it's""#), json!("it's"));
        assert_eq!(parse("'03#pa33w0rd'"), json!("03#pa33w0rd"));
        assert_eq!(parse("'a' \"b\""), json!("ab"));
        assert_eq!(parse("[1, 'x', [True]]"), json!([1, "x", [true]]));
        assert_eq!(parse("(1,)"), json!([1]));
        assert_eq!(parse("(1)"), json!(1));
        assert_eq!(parse("{'a': 1, 2: 'b',}"), json!({"a": 1, "2": "b"}));
    }

    #[test]
    fn anything_else_stays_the_text() {
        for s in [
            "true",
            "FALSE",
            "0644",
            "pool.ntp.org",
            "10.0.0.1",
            "1.2.3",
            "a b",
            "{'a': 1",
            "[1, 2",
            "'unclosed",
            "",
            "-o ProxyJump=x",
            "2001:db8::1",
            "1e",
        ] {
            assert_eq!(parse(s), json!(s), "{s}");
        }
    }
}
