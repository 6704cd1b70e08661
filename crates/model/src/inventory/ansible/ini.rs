//! Ansible's INI inventory format, line by line, as its `ini` plugin reads it.
//!
//! ```ini
//! bastion ansible_host=203.0.113.10   # before any section: ungrouped
//! [web]
//! web[01:03] ansible_port=2222        # web01, web02, web03 (leading zeros kept)
//! [web:vars]
//! http_port=8080
//! [app:children]
//! web
//! ```
//!
//! Differences from Ansible, all on the strict side: a range that runs backwards
//! (`pg[3:1]`) is an error instead of no hosts, and a `[group:vars]` value ends at a
//! ` #` or ` ;` comment outside quotes.

use super::{literal, Doc, Target};
use crate::diag::{LoadError, Place};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

/// `[group]`, `[group:children]`, `[group:vars]`, with an optional trailing comment.
static SECTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$").expect("static regex")
});
/// A group name on a `[x:children]` line.
static GROUP_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([^:\]\s\[]+)\s*(?:[#;].*)?$").expect("static regex"));

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Hosts,
    Children,
    Vars,
}

/// Parses `text` (the file `path`) into `doc`.
pub(super) fn parse(path: &Path, text: &str, doc: &mut Doc) -> Result<(), LoadError> {
    // None: before any section, or in [all] / [all:*].
    let mut group: Option<String> = None;
    let mut kind = Kind::Hosts;
    let mut declared: BTreeMap<String, u64> = BTreeMap::new();
    let mut vars_sections: Vec<(String, u64)> = Vec::new();
    let mut children: Vec<(Option<String>, String, u64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let place = Place::new(path, n, 0);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let Some(c) = SECTION.captures(line) else {
                return Err(bad_section(place, line));
            };
            let name = c.get(1).map_or("", |m| m.as_str()).to_string();
            kind = match c.get(2).map(|m| m.as_str()) {
                None => Kind::Hosts,
                Some("children") => Kind::Children,
                Some("vars") => Kind::Vars,
                Some(other) => {
                    return Err(LoadError::new(
                        place,
                        format!("unknown section type `:{other}` in `[{name}:{other}]`"),
                    )
                    .hint(format!(
                        "use [{name}] for its hosts, [{name}:children] for its child groups or [{name}:vars] for its variables"
                    )))
                }
            };
            if name == "all" {
                group = None;
                continue;
            }
            if kind == Kind::Vars {
                vars_sections.push((name.clone(), n));
            } else {
                declared.entry(name.clone()).or_insert(n);
            }
            doc.group(&name, n);
            group = Some(name);
            continue;
        }
        match kind {
            Kind::Hosts => host_line(&place, line, group.as_deref(), doc)?,
            Kind::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(
                        LoadError::new(place, format!("expected key=value, got `{line}`"))
                            .hint("a [group:vars] section holds one `name=value` per line"),
                    );
                };
                let k = k.trim();
                if k.is_empty() || k.contains(char::is_whitespace) {
                    return Err(
                        LoadError::new(place, format!("`{k}` is not a variable name"))
                            .hint("a [group:vars] section holds one `name=value` per line"),
                    );
                }
                let value = literal::parse(strip_comment(v.trim()));
                let target = match &group {
                    Some(g) => Target::Group(g.clone()),
                    None => Target::All,
                };
                doc.set_var(&target, k, value, &place)?;
            }
            Kind::Children => {
                let Some(c) = GROUP_NAME.captures(line) else {
                    return Err(LoadError::new(
                        place,
                        format!("expected a group name, got `{line}`"),
                    )
                    .hint("a [group:children] section lists one child group per line"));
                };
                let child = c.get(1).map_or("", |m| m.as_str()).to_string();
                children.push((group.clone(), child, n));
            }
        }
    }
    // Like Ansible: a group is declared by [g] or [g:children]; being named as a child or
    // having [g:vars] is not enough (a typo would otherwise make an empty group).
    for (parent, child, n) in children {
        if child != "all" && !declared.contains_key(&child) {
            let p = parent.as_deref().unwrap_or("all");
            return Err(LoadError::new(
                Place::new(path, n, 0),
                format!("[{p}:children] lists `{child}`, a group that is never declared"),
            )
            .hint(format!(
                "declare it with a [{child}] section (it may be empty), or fix the name"
            )));
        }
        if let Some(p) = parent {
            doc.add_child(&p, &child);
        }
    }
    for (g, n) in vars_sections {
        if !declared.contains_key(&g) {
            return Err(LoadError::new(
                Place::new(path, n, 0),
                format!("[{g}:vars] is for a group that is never declared"),
            )
            .hint(format!(
                "declare it with a [{g}] or [{g}:children] section, or fix the name"
            )));
        }
    }
    Ok(())
}

fn bad_section(place: Place, line: &str) -> LoadError {
    let e = if !line.contains(']') {
        LoadError::new(place, format!("section header `{line}` has no closing `]`"))
    } else {
        LoadError::new(place, format!("malformed section header `{line}`"))
    };
    e.hint("write [group], [group:children] or [group:vars]; group names have no spaces or `:`")
}

/// `name[:port] key=value ...`: one host, or several through ranges.
fn host_line(
    place: &Place,
    line: &str,
    group: Option<&str>,
    doc: &mut Doc,
) -> Result<(), LoadError> {
    let words = crate::text::split_words(line, true).map_err(|e| {
        LoadError::new(place.clone(), e).hint("close the quote, or escape it with a backslash")
    })?;
    let Some((pattern, rest)) = words.split_first() else {
        return Ok(());
    };
    let (names, port) = host_pattern(pattern).map_err(|e| {
        LoadError::new(place.clone(), e)
            .hint("ranges are [begin:end] or [begin:end:step], e.g. web[01:10] or db-[a:c]")
    })?;
    let mut vars = Vec::new();
    for w in rest {
        let Some((k, v)) = w.split_once('=') else {
            return Err(LoadError::new(
                place.clone(),
                format!("expected key=value after the host name, got `{w}`"),
            )
            .hint("host variables are key=value pairs; quote a value that has spaces"));
        };
        vars.push((k.to_string(), literal::parse(v)));
    }
    if let Some(p) = port {
        vars.insert(0, ("ansible_port".into(), p.into()));
    }
    for name in names {
        doc.add_host(&name, place.line, group);
        for (k, v) in &vars {
            doc.set_var(&Target::Host(name.clone()), k, v.clone(), place)?;
        }
    }
    Ok(())
}

/// A value up to a ` #`/` ;` comment that is outside quotes.
fn strip_comment(v: &str) -> &str {
    let mut quote = None;
    let b = v.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, b'#' | b';') if i > 0 && b[i - 1].is_ascii_whitespace() => {
                return v[..i].trim_end();
            }
            _ => {}
        }
    }
    v
}

/// A host pattern: names (ranges expanded) and the port after a `:`.
pub(super) fn host_pattern(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    let (name, port) = match colons.as_slice() {
        [i] if !pattern[i + 1..].is_empty()
            && pattern[i + 1..].bytes().all(|c| c.is_ascii_digit()) =>
        {
            let p: u16 = pattern[i + 1..]
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port in `{pattern}` is not from 1 to 65535"))?;
            (&pattern[..*i], Some(p))
        }
        _ => (pattern, None),
    };
    Ok((expand(name)?, port))
}

/// The most hosts one pattern may expand to (a typo like `[1:1000000]` is caught early).
const MAX_EXPANSION: usize = 100_000;

/// Expands `[begin:end]` and `[begin:end:step]` ranges, numeric or alphabetic, left to right.
pub(super) fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let Some(len) = pattern[open..].find(']') else {
        return Err(format!("`{pattern}` has a `[` without a closing `]`"));
    };
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..open + len],
        &pattern[open + len + 1..],
    );
    let bounds: Vec<&str> = inner.split(':').collect();
    if !(2..=3).contains(&bounds.len()) {
        return Err(format!(
            "range `[{inner}]` in `{pattern}` is not [begin:end] or [begin:end:step]"
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("range `[{inner}]` in `{pattern}` has no end"));
    }
    let step =
        match bounds.get(2) {
            None => 1,
            Some(s) => s.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| {
                format!("range step `{s}` in `{pattern}` is not a positive number")
            })?,
        };
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let items: Vec<String> = match (LETTERS.find(beg), LETTERS.find(end)) {
        (Some(b), Some(e)) if beg.len() == 1 && end.len() == 1 => {
            if b > e {
                return Err(format!(
                    "range `[{inner}]` in `{pattern}` runs backwards: `{beg}` comes after `{end}`"
                ));
            }
            LETTERS[b..=e]
                .chars()
                .step_by(step)
                .map(String::from)
                .collect()
        }
        _ => {
            let num = |s: &str| {
                s.parse::<u64>().map_err(|_| {
                    format!("range bound `{s}` in `{pattern}` is not a number or a single letter")
                })
            };
            let (b, e) = (num(beg)?, num(end)?);
            if b > e {
                return Err(format!(
                    "range `[{inner}]` in `{pattern}` runs backwards: {b} is after {e}"
                ));
            }
            if e - b >= MAX_EXPANSION as u64 {
                return Err(format!("range `[{inner}]` in `{pattern}` is too large"));
            }
            // `[01:10]` keeps the width: web01 .. web10.
            let width = if beg.len() > 1 && beg.starts_with('0') {
                if beg.len() != end.len() {
                    return Err(format!(
                        "range `[{inner}]` in `{pattern}`: a zero-padded begin needs an end of the same width"
                    ));
                }
                beg.len()
            } else {
                0
            };
            (b..=e)
                .step_by(step)
                .map(|i| format!("{i:0width$}"))
                .collect()
        }
    };
    let mut out = Vec::new();
    for it in items {
        out.extend(expand(&format!("{head}{it}{tail}"))?);
        if out.len() > MAX_EXPANSION {
            return Err(format!("`{pattern}` expands to too many hosts"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    #[test]
    fn ranges_expand_like_ansible() {
        assert_eq!(expand("pg[1:3]").unwrap(), ["pg1", "pg2", "pg3"]);
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        let w = expand("web[01:10]").unwrap();
        assert_eq!(w.len(), 10);
        assert_eq!((w[0].as_str(), w[9].as_str()), ("web01", "web10"));
        assert_eq!(expand("n[0:6:3].x").unwrap(), ["n0.x", "n3.x", "n6.x"]);
        assert_eq!(
            expand("r[1:2]c[a:b]").unwrap(),
            ["r1ca", "r1cb", "r2ca", "r2cb"]
        );
        assert_eq!(expand("h[:1]").unwrap(), ["h0", "h1"]);
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn bad_ranges_are_errors() {
        for (p, what) in [
            ("pg[3:1]", "runs backwards"),
            ("db-[c:a]", "runs backwards"),
            ("pg[1:3", "without a closing"),
            ("pg[1]", "not [begin:end]"),
            ("pg[1:]", "no end"),
            ("pg[01:100]", "same width"),
            ("pg[1:x2]", "not a number"),
            ("pg[1:3:0]", "step"),
            ("pg[1:999999999]", "too large"),
        ] {
            let e = expand(p).unwrap_err();
            assert!(e.contains(what), "{p}: {e}");
        }
    }

    #[test]
    fn host_patterns_with_ports() {
        assert_eq!(
            host_pattern("web[1:2]:2222").unwrap(),
            (vec!["web1".to_string(), "web2".to_string()], Some(2222))
        );
        assert_eq!(host_pattern("a.example").unwrap().1, None);
        assert!(host_pattern("a:99999").is_err());
        // Bare IPv6: more than one colon is not a port.
        assert_eq!(host_pattern("2001:db8::1").unwrap().1, None);
    }

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            crate::text::split_words(r#"h1 a="x y" b='1#2' c=\# # comment"#, true).unwrap(),
            ["h1", "a=x y", "b=1#2", "c=#"]
        );
        assert_eq!(crate::text::split_words("a#b", true).unwrap(), ["a"]);
        assert_eq!(crate::text::split_words("a#b", false).unwrap(), ["a#b"]);
        assert!(crate::text::split_words("h1 a='x", true).is_err());
        assert_eq!(strip_comment("8080 # web port"), "8080");
        assert_eq!(strip_comment("'a #b'"), "'a #b'");
        assert_eq!(strip_comment("x#y"), "x#y");
    }

    fn load(text: &str) -> Result<Inventory, crate::diag::LoadError> {
        let dir = std::env::temp_dir().join(format!(
            "bosun-ini-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts.ini");
        std::fs::write(&path, text).unwrap();
        let r = Inventory::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn sections_children_vars_and_ungrouped() {
        let inv = load(
            "# top\nlone ansible_host=10.0.0.9\n\n[db:children]\npg ; child\n\n[pg]\npg[1:2] ansible_port=2222 flag=True name='x y'\n\
             [pg:vars]\nlevel = 3 # comment\nmode=0644\n[all:vars]\nenv=prod\n[all]\nlone2\n",
        )
        .unwrap();
        assert_eq!(
            inv.hosts.keys().collect::<Vec<_>>(),
            ["lone", "pg1", "pg2", "lone2"]
        );
        let pg1 = &inv.hosts["pg1"];
        assert_eq!(pg1.port, 2222);
        assert_eq!(pg1.groups, ["db", "pg"]);
        assert_eq!(pg1.vars["flag"], true);
        assert_eq!(pg1.vars["name"], "x y");
        assert_eq!(pg1.vars["level"], 3);
        assert_eq!(pg1.vars["mode"], "0644");
        assert_eq!(pg1.vars["env"], "prod");
        assert!(!pg1.vars.contains_key("ansible_port"));
        assert_eq!(inv.hosts["lone"].address, "10.0.0.9");
        assert_eq!(inv.groups["ungrouped"].hosts, ["lone", "lone2"]);
        assert_eq!(inv.groups["db"].hosts, ["pg1", "pg2"]);
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    }

    #[test]
    fn bad_ini_names_the_line() {
        for (text, line, what) in [
            ("[web\nw1\n", 1, "no closing `]`"),
            ("[web]\npg[3:1]\n", 2, "runs backwards"),
            ("[web]\nw1\n[web:foo]\n", 3, "unknown section type `:foo`"),
            ("[web]\nw1 novalue\n", 2, "expected key=value"),
            ("[a:children]\nb\n", 2, "never declared"),
            ("[w]\nx\n[web:vars]\na=1\n", 3, "never declared"),
            ("[web]\nw1 a='x\n", 2, "unclosed quote"),
            ("[web]\nw 1\n", 2, "expected key=value"),
            ("[web]\nw1 ansible_port=http\n", 2, "not a port"),
            ("[my group]\n", 1, "malformed section"),
        ] {
            let e = load(text).unwrap_err();
            assert_eq!(e.place.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {}", e.message);
            assert!(e.hint.is_some(), "{text:?} has a hint");
        }
    }
}
