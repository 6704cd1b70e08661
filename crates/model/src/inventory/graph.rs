//! The inventory drawn as its group tree, with each host's address: text in the shape of
//! `ansible-inventory --graph`, or Graphviz DOT.
//!
//! ```text
//! @all:
//!   |--@database:
//!   |  |--@postgres:
//!   |  |  |--pg1 (10.0.0.21)
//!   |--@ungrouped:
//!   |  |--bastion (203.0.113.10:2222)
//! ```
//!
//! Groups are listed before hosts, each sorted by name, as Ansible does. A group appears
//! under every parent it has. A host is drawn under the groups that list it directly, not
//! again under their parents. Hosts in no group appear under `@ungrouped`. An address shows
//! its port when that is not 22, and ` via JUMP` when the host is reached through jump hosts.

use super::{Host, Inventory};
use std::collections::BTreeSet;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
}

impl Inventory {
    /// The drawing in `format`, ending with a newline.
    pub fn graph(&self, format: GraphFormat) -> String {
        match format {
            GraphFormat::Text => self.graph_text(),
            GraphFormat::Dot => self.graph_dot(),
        }
    }

    fn graph_text(&self) -> String {
        let mut out = String::from("@all:\n");
        for g in self.top_groups() {
            self.text_group(&g, 1, &mut out);
        }
        out
    }

    fn text_group(&self, name: &str, depth: usize, out: &mut String) {
        let indent = |d: usize| "  |".repeat(d);
        let _ = writeln!(out, "{}--@{name}:", indent(depth));
        for c in self.child_groups(name) {
            self.text_group(&c, depth + 1, out);
        }
        for h in self.direct_hosts(name) {
            let _ = writeln!(out, "{}--{} ({})", indent(depth + 1), h.name, reach(h));
        }
    }

    fn graph_dot(&self) -> String {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let mut seen = BTreeSet::new();
        nodes.push(format!(
            "  {} [shape=ellipse, label=\"all\"];",
            group_id("all")
        ));
        for g in self.top_groups() {
            edges.push(format!("  {} -> {};", group_id("all"), group_id(&g)));
            self.dot_group(&g, &mut seen, &mut nodes, &mut edges);
        }
        let mut out = String::from("digraph inventory {\n  rankdir=LR;\n");
        for l in nodes.iter().chain(&edges) {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("}\n");
        out
    }

    fn dot_group(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        nodes: &mut Vec<String>,
        edges: &mut Vec<String>,
    ) {
        if !seen.insert(format!("g:{name}")) {
            return;
        }
        nodes.push(format!(
            "  {} [shape=ellipse, label={}];",
            group_id(name),
            quote(name)
        ));
        for c in self.child_groups(name) {
            edges.push(format!("  {} -> {};", group_id(name), group_id(&c)));
            self.dot_group(&c, seen, nodes, edges);
        }
        for h in self.direct_hosts(name) {
            if seen.insert(format!("h:{}", h.name)) {
                nodes.push(format!(
                    "  {} [shape=box, label={}];",
                    quote(&h.name),
                    quote(&format!("{}\n{}", h.name, reach(h)))
                ));
            }
            edges.push(format!("  {} -> {};", group_id(name), quote(&h.name)));
        }
    }

    /// Groups that are nobody's child, plus `ungrouped` when some host is in no group.
    fn top_groups(&self) -> Vec<String> {
        let children: BTreeSet<&str> = self
            .groups
            .values()
            .flat_map(|g| g.children.iter().map(String::as_str))
            .collect();
        let mut top: BTreeSet<String> = self
            .groups
            .keys()
            .filter(|g| !children.contains(g.as_str()))
            .cloned()
            .collect();
        if self.hosts.values().any(|h| h.groups.is_empty()) {
            top.insert("ungrouped".into());
        }
        top.into_iter().collect()
    }

    fn child_groups(&self, name: &str) -> Vec<String> {
        let mut c: Vec<String> = self
            .groups
            .get(name)
            .map(|g| g.children.clone())
            .unwrap_or_default();
        c.sort();
        c.dedup();
        c
    }

    /// Hosts of `name` that none of its child groups holds, by name.
    fn direct_hosts(&self, name: &str) -> Vec<&Host> {
        let Some(g) = self.groups.get(name) else {
            // The implicit `ungrouped` of an inventory that has no such group.
            let mut lone: Vec<&Host> = self
                .hosts
                .values()
                .filter(|h| h.groups.is_empty())
                .collect();
            lone.sort_by(|a, b| a.name.cmp(&b.name));
            return lone;
        };
        let below: BTreeSet<&str> = g
            .children
            .iter()
            .filter_map(|c| self.groups.get(c))
            .flat_map(|c| c.hosts.iter().map(String::as_str))
            .collect();
        let mut direct: Vec<&Host> = g
            .hosts
            .iter()
            .filter(|h| !below.contains(h.as_str()))
            .filter_map(|h| self.hosts.get(h))
            .collect();
        // An explicit `ungrouped` group also shows hosts that are in no group at all.
        if name == "ungrouped" {
            direct.extend(self.hosts.values().filter(|h| h.groups.is_empty()));
        }
        direct.sort_by(|a, b| a.name.cmp(&b.name));
        direct.dedup_by(|a, b| a.name == b.name);
        direct
    }
}

/// `address[:port][ via jump]`.
fn reach(h: &Host) -> String {
    let mut s = h.address.clone();
    if h.port != 22 {
        let _ = write!(s, ":{}", h.port);
    }
    if let Some(j) = &h.jump {
        let _ = write!(s, " via {j}");
    }
    s
}

/// Group node ids carry `@`, which host names cannot contain.
fn group_id(name: &str) -> String {
    quote(&format!("@{name}"))
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const INV: &str = "hosts:\n  pg1: {address: 10.0.0.21}\n  pg2: {address: 10.0.0.22, port: 2222}\n  lb: {address: 10.0.0.1, jump: ops@gw}\n  etcd1: {}\n  lone: {address: 1.2.3.4}\n\
        groups:\n  postgres: {hosts: [pg2, pg1]}\n  etcd: {hosts: [etcd1]}\n  database: {children: [postgres, etcd]}\n  web: {hosts: [lb]}\n";

    #[test]
    fn text_tree_like_ansible_with_addresses() {
        let inv = Inventory::parse(Path::new("i.yml"), INV).unwrap();
        assert_eq!(
            inv.graph(GraphFormat::Text),
            "@all:\n  |--@database:\n  |  |--@etcd:\n  |  |  |--etcd1 (etcd1)\n  |  |--@postgres:\n  |  |  |--pg1 (10.0.0.21)\n  |  |  |--pg2 (10.0.0.22:2222)\n  |--@ungrouped:\n  |  |--lone (1.2.3.4)\n  |--@web:\n  |  |--lb (10.0.0.1 via ops@gw)\n"
        );
    }

    #[test]
    fn dot_quotes_and_lists_each_node_once() {
        let inv = Inventory::parse(Path::new("i.yml"), INV).unwrap();
        let dot = inv.graph(GraphFormat::Dot);
        assert!(
            dot.starts_with(
                "digraph inventory {\n  rankdir=LR;\n  \"@all\" [shape=ellipse, label=\"all\"];\n"
            ),
            "{dot}"
        );
        assert!(
            dot.contains("  \"pg2\" [shape=box, label=\"pg2\\n10.0.0.22:2222\"];\n"),
            "{dot}"
        );
        assert!(dot.contains("  \"@database\" -> \"@postgres\";\n"), "{dot}");
        assert!(dot.contains("  \"@all\" -> \"@ungrouped\";\n"), "{dot}");
        assert_eq!(dot.matches("\"pg1\" [").count(), 1);
        assert!(dot.ends_with("}\n"));
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
