//! Lab configuration: which hosts exist, their addresses, and where state lives.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

use super::error::LabError;

/// The seven hosts of the seed topology (load balancer, app, storefront,
/// three PostgreSQL nodes, etcd) with their fixed addresses.
pub const SEED_HOSTS: [(&str, [u8; 4]); 7] = [
    ("lb", [10, 20, 0, 11]),
    ("saleor", [10, 20, 0, 12]),
    ("storefront", [10, 20, 0, 13]),
    ("pg1", [10, 20, 0, 21]),
    ("pg2", [10, 20, 0, 22]),
    ("pg3", [10, 20, 0, 23]),
    ("etcd", [10, 20, 0, 31]),
];

/// Where the base image, host overlays, keys and known_hosts live by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bosun/lab";
/// Name of the Linux bridge the hosts' veths are attached to.
pub const DEFAULT_BRIDGE: &str = "bosun0";
/// The bridge's own address; hosts use it as their default gateway.
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
/// Prefix length of the lab network.
pub const DEFAULT_PREFIX_LEN: u8 = 24;
/// First address handed to hosts beyond the seven seed hosts (host08 gets it).
const EXTRA_HOSTS_FIRST: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);

/// nspawn names the host side of a container's veth `vb-NAME`, and Linux
/// interface names have at most 15 bytes; longer names would be mangled.
pub(crate) const MAX_HOST_NAME_LEN: usize = 12;

pub use bosun_model::lab_os::LabOs;

/// How the lab picks its release: the environment, the disks of an existing lab.
pub trait LabOsExt: Sized {
    fn from_env() -> Result<Option<LabOs>, String>;
    fn of_lab(state_dir: &std::path::Path) -> Option<LabOs>;
    fn current(state_dir: &std::path::Path) -> Result<LabOs, String>;
}

impl LabOsExt for LabOs {
    /// `BOSUN_LAB_OS`, when set (how CI runs the lab on each release).
    fn from_env() -> Result<Option<LabOs>, String> {
        match std::env::var("BOSUN_LAB_OS") {
            Ok(v) if !v.trim().is_empty() => LabOs::parse(v.trim())
                .map(Some)
                .map_err(|e| format!("BOSUN_LAB_OS: {e}")),
            _ => Ok(None),
        }
    }

    /// The release the lab's hosts were made from, read from their disks' base stamps
    /// (`None` when no host has a disk).
    fn of_lab(state_dir: &std::path::Path) -> Option<LabOs> {
        let hosts = std::fs::read_dir(state_dir.join("hosts")).ok()?;
        hosts.filter_map(Result::ok).find_map(|h| {
            let stamp = std::fs::read_to_string(h.path().join("base-stamp")).ok()?;
            LabOs::ALL
                .into_iter()
                .find(|o| stamp.contains(&format!(" suite={} ", o.suite())))
        })
    }

    /// For commands on an existing lab: the release it runs, else `BOSUN_LAB_OS`, else
    /// the default.
    fn current(state_dir: &std::path::Path) -> Result<LabOs, String> {
        match LabOs::of_lab(state_dir) {
            Some(o) => Ok(o),
            None => Ok(LabOs::from_env()?.unwrap_or_default()),
        }
    }
}

/// One lab host: a booted Debian container with its own address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabHost {
    pub name: String,
    pub address: Ipv4Addr,
}

/// The whole lab: network, state location and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabConfig {
    pub state_dir: PathBuf,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    pub hosts: Vec<LabHost>,
    /// The release every host runs.
    pub os: LabOs,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self::default_with_hosts(SEED_HOSTS.len())
    }
}

impl LabConfig {
    /// The default lab with `n` hosts: the first `n` seed hosts, and for `n > 7`
    /// additionally `host08`, `host09`, … at 10.20.0.100, .101, ….
    ///
    /// Addresses beyond the /24 are generated as they come and then rejected by
    /// [`LabConfig::validate`], so an impossible size fails loudly instead of
    /// being silently capped.
    pub fn default_with_hosts(n: usize) -> Self {
        let mut hosts: Vec<LabHost> = SEED_HOSTS
            .iter()
            .take(n)
            .map(|(name, octets)| LabHost {
                name: (*name).to_string(),
                address: Ipv4Addr::from(*octets),
            })
            .collect();
        let first = u32::from(EXTRA_HOSTS_FIRST);
        for i in 0..n.saturating_sub(SEED_HOSTS.len()) {
            let offset = u32::try_from(i).unwrap_or(u32::MAX);
            hosts.push(LabHost {
                name: format!("host{:02}", SEED_HOSTS.len() + 1 + i),
                address: Ipv4Addr::from(first.saturating_add(offset)),
            });
        }
        LabConfig {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            bridge: DEFAULT_BRIDGE.to_string(),
            gateway: DEFAULT_GATEWAY,
            prefix_len: DEFAULT_PREFIX_LEN,
            hosts,
            os: LabOs::default(),
        }
    }

    /// The host called `name`, or an error listing the hosts that do exist.
    pub fn host(&self, name: &str) -> Result<&LabHost, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost {
                name: name.to_string(),
                known: self
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Network mask as a u32 (e.g. 0xffffff00 for /24).
    fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            p if p >= 32 => u32::MAX,
            p => u32::MAX << (32 - u32::from(p)),
        }
    }

    /// The network address of the lab subnet (10.20.0.0 for the default).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & self.mask())
    }

    /// The lab subnet in CIDR notation, as iptables and ip expect it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network(), self.prefix_len)
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) | !self.mask())
    }

    fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// Checks everything that would otherwise fail late and obscurely
    /// (inside `mount`, `ip` or nspawn): names, addresses, the bridge name and
    /// characters that overlayfs' option syntax cannot carry.
    pub fn validate(&self) -> Result<(), LabError> {
        let err = |m: String| Err(LabError::Config(m));
        if !(8..=30).contains(&self.prefix_len) {
            return err(format!(
                "prefix_len {} is out of range (8..=30)",
                self.prefix_len
            ));
        }
        if self.bridge.is_empty()
            || self.bridge.len() > 15
            || !self
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return err(format!(
                "bridge name `{}` must be 1-15 characters of [A-Za-z0-9_-]",
                self.bridge
            ));
        }
        if self.gateway == self.network() || self.gateway == self.broadcast() {
            return err(format!(
                "gateway {} is the network or broadcast address of {}",
                self.gateway,
                self.cidr()
            ));
        }
        let state = self.state_dir.to_string_lossy();
        if state.is_empty() || state.contains([',', ':', '\n']) {
            return err(format!(
                "state_dir `{state}` must be non-empty and must not contain ',', ':' or newlines \
                 (overlayfs mount options cannot express them)"
            ));
        }
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for h in &self.hosts {
            validate_host_name(&h.name)?;
            if !names.insert(h.name.as_str()) {
                return err(format!("host name `{}` is used twice", h.name));
            }
            if !addresses.insert(h.address) {
                return err(format!("address {} is used twice", h.address));
            }
            if !self.contains(h.address) {
                return err(format!(
                    "host {} address {} is outside the lab network {}",
                    h.name,
                    h.address,
                    self.cidr()
                ));
            }
            if h.address == self.gateway
                || h.address == self.network()
                || h.address == self.broadcast()
            {
                return err(format!(
                    "host {} address {} is the gateway, network or broadcast address",
                    h.name, h.address
                ));
            }
        }
        Ok(())
    }
}

/// Host names become hostnames, machine names and veth names, so they are
/// restricted to what all three accept.
fn validate_host_name(name: &str) -> Result<(), LabError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || name.len() > MAX_HOST_NAME_LEN
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(LabError::Config(format!(
            "host name `{name}` must be 1-{MAX_HOST_NAME_LEN} characters of [a-z0-9-], \
             not starting or ending with '-' (it also names the veth vb-{name})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_seed_hosts_in_order() {
        let cfg = LabConfig::default();
        assert_eq!(cfg.hosts.len(), 7);
        assert_eq!(cfg.hosts[0].name, "lb");
        assert_eq!(cfg.hosts[0].address, Ipv4Addr::new(10, 20, 0, 11));
        assert_eq!(cfg.hosts[6].name, "etcd");
        assert_eq!(cfg.hosts[6].address, Ipv4Addr::new(10, 20, 0, 31));
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/bosun/lab"));
        assert_eq!(cfg.bridge, "bosun0");
        cfg.validate().expect("default config is valid");
    }

    #[test]
    fn fewer_than_seven_takes_a_prefix() {
        let cfg = LabConfig::default_with_hosts(3);
        let names: Vec<_> = cfg.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["lb", "saleor", "storefront"]);
        assert!(LabConfig::default_with_hosts(0).hosts.is_empty());
    }

    #[test]
    fn more_than_seven_adds_numbered_hosts() {
        let cfg = LabConfig::default_with_hosts(10);
        assert_eq!(cfg.hosts.len(), 10);
        assert_eq!(cfg.hosts[7].name, "host08");
        assert_eq!(cfg.hosts[7].address, Ipv4Addr::new(10, 20, 0, 100));
        assert_eq!(cfg.hosts[9].name, "host10");
        assert_eq!(cfg.hosts[9].address, Ipv4Addr::new(10, 20, 0, 102));
        cfg.validate().expect("10 hosts fit");
    }

    #[test]
    fn too_many_hosts_fail_validation_instead_of_wrapping() {
        // .100 .. .254 is 155 extra hosts; one more leaves the /24.
        LabConfig::default_with_hosts(7 + 155)
            .validate()
            .expect("162 hosts fit");
        // The 163rd would get the broadcast address; later ones leave the net.
        let err = LabConfig::default_with_hosts(7 + 156)
            .validate()
            .expect_err("163 hosts do not fit");
        assert!(err.to_string().contains("host163"), "{err}");
        let mut cfg = LabConfig::default_with_hosts(7 + 157);
        cfg.hosts.remove(7 + 155);
        let err = cfg.validate().expect_err("10.20.1.0 is outside");
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[test]
    fn network_math() {
        let cfg = LabConfig::default();
        assert_eq!(cfg.network(), Ipv4Addr::new(10, 20, 0, 0));
        assert_eq!(cfg.cidr(), "10.20.0.0/24");
        assert_eq!(cfg.broadcast(), Ipv4Addr::new(10, 20, 0, 255));
    }

    #[test]
    fn rejects_duplicates_and_bad_names() {
        let mut cfg = LabConfig::default_with_hosts(2);
        cfg.hosts[1].address = cfg.hosts[0].address;
        assert!(cfg.validate().is_err());

        let mut cfg = LabConfig::default_with_hosts(2);
        cfg.hosts[1].name = "lb".into();
        assert!(cfg.validate().is_err());

        for bad in [
            "",
            "UPPER",
            "has_underscore",
            "-dash",
            "averyveryverylongname",
        ] {
            let mut cfg = LabConfig::default_with_hosts(1);
            cfg.hosts[0].name = bad.into();
            assert!(cfg.validate().is_err(), "{bad} accepted");
        }

        let mut cfg = LabConfig::default_with_hosts(1);
        cfg.hosts[0].address = cfg.gateway;
        assert!(cfg.validate().is_err());

        let mut cfg = LabConfig::default_with_hosts(1);
        cfg.state_dir = PathBuf::from("/var/lib/a,b");
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn unknown_host_lists_known_ones() {
        let cfg = LabConfig::default_with_hosts(2);
        let err = cfg.host("nope").expect_err("unknown");
        assert!(err.to_string().contains("lb, saleor"), "{err}");
    }
}
