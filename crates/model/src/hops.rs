//! The syntax of a `jump:` chain (OpenSSH's ProxyJump: `user@host[:port]`, comma-separated):
//! parsed once, by the inventory readers, so a malformed chain is an error at its file:line.
//! Model-level: no connection here; the transport (`jump.rs`) resolves and connects hops.

use std::fmt;

/// One hop of a chain as written: `[ssh://][user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HopSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => write!(f, "{}", self.host),
        }
    }
}

/// A jump chain, parsed once when the inventory is read: the hops the transport connects
/// through, and the text as written (shown by `bosun inventory` and in messages). A host
/// holds one only when it has hops; `none` is no chain at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    text: String,
    hops: Vec<HopSpec>,
}

impl Jump {
    /// `Ok(None)` for `none`; an error names the hop that is malformed.
    pub fn parse(value: &str) -> Result<Option<Jump>, String> {
        let hops = parse(value)?;
        Ok((!hops.is_empty()).then(|| Jump {
            text: value.trim().to_string(),
            hops,
        }))
    }

    /// The hops, first hop first (never empty).
    pub fn hops(&self) -> &[HopSpec] {
        &self.hops
    }

    /// The chain as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Jump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Jump {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// What the hint of a malformed `jump:` says.
pub const SYNTAX_HINT: &str = "write `user@host[:port]`, several hops separated by commas \
     (`a@b1,c@b2:2222`, as OpenSSH's ProxyJump), an inventory host name, or `none`";

/// Parses a `jump:` value into its hops, first hop first. `none` is an empty chain.
///
/// This is the one place the syntax is checked: the inventory readers call it (through
/// [`Jump::parse`]) to report a malformed value at its file:line; the transport takes the
/// parsed [`Jump`] and never reads the text again.
pub fn parse(value: &str) -> Result<Vec<HopSpec>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    if value.is_empty() {
        return Err("empty jump host; write `none` to connect directly".into());
    }
    value
        .split(',')
        .enumerate()
        .map(|(i, hop)| parse_hop(hop.trim()).map_err(|m| format!("hop {} `{hop}`: {m}", i + 1)))
        .collect()
}

fn parse_hop(hop: &str) -> Result<HopSpec, String> {
    if hop.is_empty() {
        return Err("empty hop (two commas in a row, or a trailing comma?)".into());
    }
    if hop.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, hostport) = match rest.split_once('@') {
        Some((u, h)) => {
            if u.is_empty() {
                return Err("empty user before `@`".into());
            }
            if h.contains('@') {
                return Err("more than one `@`".into());
            }
            (Some(u.to_string()), h)
        }
        None => (None, rest),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or("`[` without a closing `]`")?;
        match after {
            "" => (h, None),
            p => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("unexpected `{p}` after `]`")),
            },
        }
    } else {
        match hostport.matches(':').count() {
            0 => (hostport, None),
            // `host:port`; several colons are a bare IPv6 address without a port.
            1 => hostport
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .unwrap_or((hostport, None)),
            _ => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '%')))
    {
        return Err(format!("`{c}` is not allowed in a host name or address"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("port `{p}` is not a number from 1 to 65535")),
        },
    };
    Ok(HopSpec {
        user,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<&str>, host: &str, port: Option<u16>) -> HopSpec {
        HopSpec {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn a_jump_is_parsed_once_and_keeps_its_text() {
        let j = Jump::parse(" a@b,c:2222 ").unwrap().expect("two hops");
        assert_eq!(j.as_str(), "a@b,c:2222");
        assert_eq!(
            j.hops(),
            &[spec(Some("a"), "b", None), spec(None, "c", Some(2222))]
        );
        assert_eq!(serde_json::to_string(&j).unwrap(), "\"a@b,c:2222\"");
        assert_eq!(Jump::parse("none").unwrap(), None, "none is no chain");
        let e = Jump::parse("a@b,,").unwrap_err();
        assert!(e.contains("hop 2"), "{e}");
    }

    #[test]
    fn parses_proxyjump_syntax() {
        assert_eq!(
            parse("admin@bastion").unwrap(),
            vec![spec(Some("admin"), "bastion", None)]
        );
        assert_eq!(
            parse("a@b1,c@b2:2222").unwrap(),
            vec![
                spec(Some("a"), "b1", None),
                spec(Some("c"), "b2", Some(2222))
            ]
        );
        assert_eq!(parse("lb").unwrap(), vec![spec(None, "lb", None)]);
        assert_eq!(
            parse("ssh://root@10.0.0.1:22").unwrap(),
            vec![spec(Some("root"), "10.0.0.1", Some(22))]
        );
        assert_eq!(
            parse("u@[fe80::1%eth0]:2200, u@::1").unwrap(),
            vec![
                spec(Some("u"), "fe80::1%eth0", Some(2200)),
                spec(Some("u"), "::1", None)
            ]
        );
        assert!(parse("none").unwrap().is_empty());
        assert_eq!(
            parse("a@b1,c@b2:2222")
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["a@b1", "c@b2:2222"]
        );
    }

    #[test]
    fn rejects_malformed_values_and_says_which_hop() {
        for (bad, what) in [
            ("", "empty jump host"),
            ("a@b,,c@d", "hop 2"),
            ("a@b,", "empty hop"),
            ("@b", "empty user"),
            ("a@", "no host"),
            ("a@b@c", "more than one"),
            ("a@b:0", "port `0`"),
            ("a@b:99999", "port `99999`"),
            ("a@b:ssh", "port `ssh`"),
            ("a@[::1", "closing"),
            ("a@[::1]x", "after `]`"),
            ("a@b c", "whitespace"),
            ("a@b/c", "`/`"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(what), "{bad:?}: {e}");
        }
    }
}
