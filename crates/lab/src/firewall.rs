//! iptables rules for the lab: NAT to the outside, forwarding, and DNS
//! redirection when needed.
//!
//! Every rule carries `-m comment --comment bosun-lab`, so teardown can remove
//! exactly the lab's rules by listing `iptables -S` and deleting tagged lines,
//! including rules a killed earlier run added with a different config.

use super::cmd;
use super::config::LabConfig;
use super::error::LabError;
use super::net::DnsPlan;

/// Comment tag on every rule the lab adds.
pub(crate) const TAG: &str = "bosun-lab";

/// Tables the lab adds rules to.
pub(crate) const TABLES: &[&str] = &["filter", "nat"];

/// One rule: table, chain, and the match/target arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    pub spec: Vec<String>,
    /// Insert at the top instead of appending, so a DROP policy rule added by
    /// other software (e.g. Docker's FORWARD chain) cannot shadow it.
    pub insert: bool,
}

fn tagged(parts: &[&str], target: &[&str]) -> Vec<String> {
    parts
        .iter()
        .copied()
        .chain(["-m", "comment", "--comment", TAG])
        .chain(target.iter().copied())
        .map(str::to_string)
        .collect()
}

/// The rules a lab with this config and DNS plan needs.
pub(crate) fn lab_rules(cfg: &LabConfig, dns: &DnsPlan) -> Vec<Rule> {
    let br = cfg.bridge.as_str();
    let cidr = cfg.cidr();
    let mut rules = vec![
        Rule {
            table: "nat",
            chain: "POSTROUTING",
            spec: tagged(&["-s", &cidr, "!", "-o", br], &["-j", "MASQUERADE"]),
            insert: false,
        },
        Rule {
            table: "filter",
            chain: "FORWARD",
            spec: tagged(&["-i", br], &["-j", "ACCEPT"]),
            insert: true,
        },
        Rule {
            table: "filter",
            chain: "FORWARD",
            spec: tagged(
                &[
                    "-o",
                    br,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "RELATED,ESTABLISHED",
                ],
                &["-j", "ACCEPT"],
            ),
            insert: true,
        },
    ];
    if let DnsPlan::ViaGateway { loopback } = dns {
        let gw = cfg.gateway.to_string();
        let to = format!("{loopback}:53");
        for proto in ["udp", "tcp"] {
            rules.push(Rule {
                table: "nat",
                chain: "PREROUTING",
                spec: tagged(
                    &["-i", br, "-d", &gw, "-p", proto, "--dport", "53"],
                    &["-j", "DNAT", "--to-destination", &to],
                ),
                insert: false,
            });
            rules.push(Rule {
                table: "filter",
                chain: "INPUT",
                spec: tagged(&["-i", br, "-p", proto, "--dport", "53"], &["-j", "ACCEPT"]),
                insert: true,
            });
        }
    }
    rules
}

/// Adds each rule unless an identical one exists (`iptables -C`), so repeated
/// `up`s do not stack duplicates.
pub(crate) async fn ensure_rules(rules: &[Rule]) -> Result<(), LabError> {
    for r in rules {
        let mut check = vec!["-w", "-t", r.table, "-C", r.chain];
        check.extend(r.spec.iter().map(String::as_str));
        if cmd::run_unchecked("iptables", &check).await?.success {
            continue;
        }
        let mut add = vec!["-w", "-t", r.table];
        if r.insert {
            add.extend(["-I", r.chain, "1"]);
        } else {
            add.extend(["-A", r.chain]);
        }
        add.extend(r.spec.iter().map(String::as_str));
        cmd::run("iptables", &add).await?;
    }
    Ok(())
}

/// Splits an `iptables -S` line into arguments, honouring the double quotes
/// iptables puts around comments containing spaces.
pub(crate) fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    out
}

/// Whether a tokenized rule carries exactly our comment tag.
fn has_tag(tokens: &[String]) -> bool {
    tokens
        .windows(2)
        .any(|w| w[0] == "--comment" && w[1] == TAG)
}

/// The tagged rules in `iptables -S` output, as they were printed.
pub(crate) fn tagged_lines(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with("-A "))
        .filter(|l| has_tag(&tokenize(l)))
        .map(str::to_string)
        .collect()
}

/// For each tagged rule in `iptables -S` output, the arguments that delete it
/// (`-A CHAIN …` becomes `-D CHAIN …`).
pub(crate) fn delete_args(listing: &str) -> Vec<Vec<String>> {
    tagged_lines(listing)
        .iter()
        .map(|l| {
            let mut t = tokenize(l);
            t[0] = "-D".to_string();
            t
        })
        .collect()
}

/// Deletes every tagged rule in the lab's tables. Loops because deleting by
/// specification removes one copy per call and listings may race other writers.
pub(crate) async fn delete_tagged_rules() -> Result<usize, LabError> {
    let mut deleted = 0;
    if cmd::find_tool("iptables").is_none() {
        // Without iptables the lab never added rules; nothing to delete.
        return Ok(0);
    }
    for table in TABLES {
        for _ in 0..10 {
            let listing = cmd::run("iptables", &["-w", "-t", table, "-S"])
                .await?
                .stdout;
            let deletes = delete_args(&listing);
            if deletes.is_empty() {
                break;
            }
            for args in deletes {
                let mut full = vec!["-w".to_string(), "-t".to_string(), (*table).to_string()];
                full.extend(args);
                // A rule may already be gone (duplicate lines delete the same
                // rule); the next listing decides whether anything is left.
                if cmd::run_unchecked("iptables", &full).await?.success {
                    deleted += 1;
                }
            }
        }
    }
    Ok(deleted)
}

/// Tagged rules still present, for [`super::leftovers`]. A machine without
/// iptables cannot have any.
pub(crate) fn remaining_tagged_rules() -> Vec<String> {
    TABLES
        .iter()
        .flat_map(|table| {
            cmd::run_sync("iptables", &["-w", "-t", table, "-S"])
                .map(|listing| {
                    tagged_lines(&listing)
                        .into_iter()
                        .map(|l| format!("iptables -t {table}: {l}"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LISTING: &str = "\
-P POSTROUTING ACCEPT
-A POSTROUTING -s 10.20.0.0/24 ! -o bosun0 -m comment --comment bosun-lab -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -m comment --comment \"bosun-lab but not ours\" -j ACCEPT
-A POSTROUTING -m comment --comment bosun-lab2 -j ACCEPT
";

    #[test]
    fn tokenizes_quotes() {
        assert_eq!(
            tokenize(r#"-A X -m comment --comment "a \"b\" c" -j ACCEPT"#),
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "ACCEPT"
            ]
        );
        assert_eq!(tokenize("  a   b "), ["a", "b"]);
        assert_eq!(tokenize(r#"x "" y"#), ["x", "", "y"]);
    }

    #[test]
    fn finds_only_exactly_tagged_rules() {
        let lines = tagged_lines(LISTING);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("10.20.0.0/24"));
    }

    #[test]
    fn delete_args_swap_append_for_delete() {
        let d = delete_args(LISTING);
        assert_eq!(
            d,
            vec![vec![
                "-D",
                "POSTROUTING",
                "-s",
                "10.20.0.0/24",
                "!",
                "-o",
                "bosun0",
                "-m",
                "comment",
                "--comment",
                "bosun-lab",
                "-j",
                "MASQUERADE"
            ]]
        );
    }

    #[test]
    fn rules_are_all_tagged() {
        let cfg = LabConfig::default();
        let direct = lab_rules(&cfg, &DnsPlan::Direct(Ipv4Addr::new(10, 255, 255, 53)));
        assert_eq!(direct.len(), 3);
        let via = lab_rules(
            &cfg,
            &DnsPlan::ViaGateway {
                loopback: Ipv4Addr::new(127, 0, 0, 53),
            },
        );
        assert_eq!(via.len(), 7);
        for r in &via {
            assert!(has_tag(&r.spec), "{r:?}");
        }
        assert!(via
            .iter()
            .any(|r| r.spec.contains(&"127.0.0.53:53".to_string())));
        assert!(direct[0].spec.contains(&"10.20.0.0/24".to_string()));
    }
}
