//! Text of the files written into each host before it boots. Pure functions,
//! so what a host gets is testable without booting anything.

use std::net::Ipv4Addr;

use rand::Rng;

use super::config::LabHost;

/// systemd-networkd config for the container side of the veth (`host0`).
/// Sorts before the image's own `80-container-host0.network` (DHCP), so it wins.
pub(crate) fn network_file(
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    dns: Ipv4Addr,
) -> String {
    format!(
        "# Written by bosun lab: static address on the nspawn veth.\n\
         [Match]\n\
         Name=host0\n\
         \n\
         [Network]\n\
         Address={address}/{prefix_len}\n\
         Gateway={gateway}\n\
         DNS={dns}\n\
         LinkLocalAddressing=no\n\
         IPv6AcceptRA=no\n"
    )
}

/// /etc/hosts listing every lab host, so roles can use names (etcd peers,
/// Patroni members, HAProxy backends) without DNS for the lab.
pub(crate) fn hosts_file(hosts: &[LabHost]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n\
         \n\
         # bosun lab hosts\n",
    );
    for h in hosts {
        s.push_str(&format!("{}\t{}\n", h.address, h.name));
    }
    s
}

/// resolv.conf for a host. Written as a plain file: there is no
/// systemd-resolved in the image, so networkd's `DNS=` alone would not reach
/// the resolver library.
pub(crate) fn resolv_conf(dns: Ipv4Addr) -> String {
    format!("# Written by bosun lab.\nnameserver {dns}\n")
}

/// A fresh machine id (32 lowercase hex digits). Each host needs its own:
/// journald, D-Bus and DHCP client ids are derived from it.
pub(crate) fn machine_id(rng: &mut impl Rng) -> String {
    let bytes: [u8; 16] = rng.gen();
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_network_file() {
        let text = network_file(
            Ipv4Addr::new(10, 20, 0, 21),
            24,
            Ipv4Addr::new(10, 20, 0, 1),
            Ipv4Addr::new(10, 255, 255, 53),
        );
        assert!(text.contains("[Match]\nName=host0\n"));
        assert!(text.contains("Address=10.20.0.21/24\n"));
        assert!(text.contains("Gateway=10.20.0.1\n"));
        assert!(text.contains("DNS=10.255.255.53\n"));
        assert!(!text.contains("DHCP"));
    }

    #[test]
    fn hosts_file_lists_everyone() {
        let hosts = vec![
            LabHost {
                name: "lb".into(),
                address: Ipv4Addr::new(10, 20, 0, 11),
            },
            LabHost {
                name: "pg1".into(),
                address: Ipv4Addr::new(10, 20, 0, 21),
            },
        ];
        let text = hosts_file(&hosts);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.20.0.11\tlb\n"));
        assert!(text.ends_with("10.20.0.21\tpg1\n"));
    }

    #[test]
    fn resolv_conf_has_one_nameserver() {
        assert!(resolv_conf(Ipv4Addr::new(10, 20, 0, 1)).ends_with("nameserver 10.20.0.1\n"));
    }

    #[test]
    fn machine_ids_are_hex_and_distinct() {
        let mut rng = rand::thread_rng();
        let a = machine_id(&mut rng);
        let b = machine_id(&mut rng);
        assert_eq!(a.trim().len(), 32);
        assert!(a
            .trim()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
