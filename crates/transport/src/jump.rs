//! Jump hosts (bastions): reaching hosts that only a bastion can reach, as OpenSSH's
//! `ProxyJump` does, but inside bosun's own russh connections.
//!
//! A host's `jump:` is a comma-separated chain `[user@]host[:port],...` (the `ProxyJump`
//! syntax; `none` means "connect directly"). The controller connects to the first hop,
//! opens a `direct-tcpip` channel to the next hop (or the target) and runs the next SSH
//! session inside that channel. Every hop's host key is verified against the same
//! known_hosts as the targets, under the hop's own address and port.
//!
//! Hop connections are shared for the whole run ([`JumpPool`]): one bastion connection
//! serves every host behind it. Each tunnel is a channel on the bastion connection, and
//! sshd caps channels per connection (`MaxSessions`, 10 by default), so one bastion
//! connection carries at most `ssh.max_channels` tunnels. When they are all in use the pool
//! opens another connection to the same bastion; if the bastion refuses that one too, the
//! host waits for a tunnel to free up instead of failing.
//!
//! A hop that fails (down, refused key, failed login) fails every host behind it at once,
//! with the hop named in the error, and is not retried during the run; hosts not behind it
//! carry on.

use crate::ssh::{ConnectOptions, Connection, SshError};
use bosun_model::inventory::{Host, SshDefaults};
use russh::client;
use russh::ChannelStream;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use bosun_model::hops::{parse, HopSpec, Jump, SYNTAX_HINT};

/// One hop, resolved to where and how to connect.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Address, port, user and key of the hop (`jump` is always `None`).
    pub host: Host,
    /// How errors name this hop: `lb (root@10.20.0.11)` or `root@10.0.0.1:2222`.
    pub label: String,
}

/// What identifies one hop connection: the same user, address, port and key, reached
/// through the same hops before it.
type HopKey = (String, String, u16, Option<PathBuf>);

impl Hop {
    fn key(&self) -> HopKey {
        (
            self.host.user.clone(),
            self.host.address.clone(),
            self.host.port,
            self.host.identity_file.clone(),
        )
    }
}

/// A connection to a jump host and the tunnels it may still carry.
pub(crate) struct HopConn {
    conn: Connection,
    slots: Arc<Semaphore>,
    label: String,
}

/// A tunnel's claim on its hop connection: keeps the hop open and holds one of its channel
/// slots for as long as the connection inside the tunnel lives.
pub(crate) struct Lease {
    _hop: Arc<HopConn>,
    _slot: OwnedSemaphorePermit,
}

/// A `direct-tcpip` channel to the next hop or the target, ready for an SSH handshake.
pub(crate) struct Tunnel {
    pub(crate) stream: ChannelStream<client::Msg>,
    pub(crate) lease: Lease,
}

#[derive(Default)]
struct Entry {
    conns: Vec<Arc<HopConn>>,
    /// The first connection failed: every host behind this hop fails with this error.
    failed: Option<SshError>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The run's jump host connections, shared by every host behind them.
pub struct JumpPool {
    /// Inventory hosts by name: a hop may name one and then uses its address, port, user, key.
    hosts: HashMap<String, Host>,
    default_user: String,
    default_port: u16,
    /// Chain prefix (the hop and every hop before it) → its connections.
    entries: std::sync::Mutex<HashMap<Vec<HopKey>, Arc<tokio::sync::Mutex<Entry>>>>,
}

impl fmt::Debug for JumpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JumpPool")
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl Default for JumpPool {
    fn default() -> Self {
        JumpPool::new(&SshDefaults::default(), std::iter::empty())
    }
}

/// A pause before retrying a refused channel open: sshd frees a channel slot a moment
/// after the channel closed.
const RETRY_PAUSE: Duration = Duration::from_millis(150);
const CHANNEL_RETRIES: u32 = 5;

impl JumpPool {
    pub fn new<'a>(ssh: &SshDefaults, hosts: impl Iterator<Item = &'a Host>) -> Self {
        JumpPool {
            hosts: hosts.map(|h| (h.name.clone(), h.clone())).collect(),
            default_user: ssh.user.clone(),
            default_port: ssh.port,
            entries: Default::default(),
        }
    }

    /// The hops in front of `target`, first hop first; empty for a direct connection.
    ///
    /// A hop that is the target itself ends the chain there, so `jump:` in the `ssh:`
    /// defaults does not send the bastion through itself.
    pub fn chain_for(&self, target: &Host) -> Vec<Hop> {
        let Some(jump) = &target.jump else {
            return Vec::new();
        };
        let mut chain = Vec::new();
        for spec in jump.hops() {
            let hop = self.resolve(spec, target);
            if hop.host.name == target.name
                || (hop.host.address == target.address && hop.host.port == target.port)
            {
                break;
            }
            chain.push(hop);
        }
        chain
    }

    fn resolve(&self, spec: &HopSpec, target: &Host) -> Hop {
        let known = self.hosts.get(&spec.host);
        let host = Host {
            name: spec.host.clone(),
            address: known.map_or_else(|| spec.host.clone(), |h| h.address.clone()),
            port: spec
                .port
                .or(known.map(|h| h.port))
                .unwrap_or(self.default_port),
            user: spec
                .user
                .clone()
                .or(known.map(|h| h.user.clone()))
                .unwrap_or_else(|| self.default_user.clone()),
            identity_file: match known {
                Some(h) => h.identity_file.clone(),
                None => target.identity_file.clone(),
            },
            become_root: false,
            groups: Vec::new(),
            vars: Default::default(),
            jump: None,
        };
        let at = if host.port == 22 {
            format!("{}@{}", host.user, host.address)
        } else {
            format!("{}@{}:{}", host.user, host.address, host.port)
        };
        let label = if known.is_some() {
            format!("{} ({at})", spec.host)
        } else {
            at
        };
        Hop { host, label }
    }

    /// Connects to `target` through `chain` (non-empty).
    pub(crate) async fn connect(
        &self,
        chain: &[Hop],
        target: &Host,
        opts: &ConnectOptions,
    ) -> Result<Connection, SshError> {
        let tunnel = self
            .tunnel(chain, &target.address, target.port, opts)
            .await?;
        Connection::open_timed(target, opts, Some(tunnel)).await
    }

    /// A channel from the last hop of `chain` to `address:port`.
    fn tunnel<'a>(
        &'a self,
        chain: &'a [Hop],
        address: &'a str,
        port: u16,
        opts: &'a ConnectOptions,
    ) -> BoxFut<'a, Result<Tunnel, SshError>> {
        Box::pin(async move {
            let (hop, slot) = self.lease(chain, opts).await?;
            let target = format!("{address}:{port}");
            let fail = |reason: String| SshError::Tunnel {
                hop: hop.label.clone(),
                target: target.clone(),
                reason,
            };
            let mut attempt = 0;
            loop {
                let open = hop.conn.direct_tcpip(address, port);
                match tokio::time::timeout(opts.connect_timeout, open).await {
                    Ok(Ok(stream)) => {
                        return Ok(Tunnel {
                            stream,
                            lease: Lease {
                                _hop: hop.clone(),
                                _slot: slot,
                            },
                        })
                    }
                    Ok(Err(russh::Error::ChannelOpenFailure(why))) => {
                        use russh::ChannelOpenFailure as F;
                        let busy =
                            matches!(why, F::ResourceShortage | F::AdministrativelyProhibited);
                        if busy && attempt < CHANNEL_RETRIES {
                            attempt += 1;
                            tokio::time::sleep(RETRY_PAUSE * attempt).await;
                            continue;
                        }
                        return Err(fail(match why {
                            F::ConnectFailed => {
                                "the jump host cannot connect there (wrong address or port, or the host is down)".into()
                            }
                            F::AdministrativelyProhibited => "administratively prohibited; \
                                 check AllowTcpForwarding/PermitOpen in the jump host's sshd_config \
                                 and its MaxSessions"
                                .into(),
                            F::ResourceShortage => "the jump host is short of resources".into(),
                            F::UnknownChannelType => {
                                "the jump host does not support direct-tcpip channels".into()
                            }
                            F::Other { code, reason } => format!("refused ({code}): {reason}"),
                        }));
                    }
                    Ok(Err(e)) => return Err(fail(e.to_string())),
                    Err(_) => {
                        return Err(fail(format!(
                            "no answer within {}s",
                            opts.connect_timeout.as_secs()
                        )))
                    }
                }
            }
        })
    }

    /// A connection to the last hop of `chain` with a free channel slot, opened on first use.
    ///
    /// The entry's lock is held while a connection is opened, so hosts connecting in
    /// parallel wait for that one connection instead of opening their own.
    fn lease<'a>(
        &'a self,
        chain: &'a [Hop],
        opts: &'a ConnectOptions,
    ) -> BoxFut<'a, Result<(Arc<HopConn>, OwnedSemaphorePermit), SshError>> {
        Box::pin(async move {
            let Some((last, before)) = chain.split_last() else {
                return Err(SshError::Key("internal: empty jump chain".into()));
            };
            let key: Vec<HopKey> = chain.iter().map(Hop::key).collect();
            let entry = {
                let mut m = self
                    .entries
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                m.entry(key).or_default().clone()
            };
            let mut e = entry.lock().await;
            if let Some(err) = &e.failed {
                return Err(err.clone());
            }
            e.conns.retain(|c| !c.conn.is_closed());
            for c in &e.conns {
                if let Ok(p) = c.slots.clone().try_acquire_owned() {
                    return Ok((c.clone(), p));
                }
            }
            let wrap = |err: SshError| SshError::Jump {
                hop: last.label.clone(),
                source: Box::new(err),
            };
            let opened = if before.is_empty() {
                Connection::open_timed(&last.host, opts, None)
                    .await
                    .map_err(wrap)
            } else {
                match self
                    .tunnel(before, &last.host.address, last.host.port, opts)
                    .await
                {
                    Ok(t) => Connection::open_timed(&last.host, opts, Some(t))
                        .await
                        .map_err(wrap),
                    Err(err) => Err(err),
                }
            };
            match opened {
                Ok(conn) => {
                    let hop = Arc::new(HopConn {
                        conn,
                        slots: Arc::new(Semaphore::new(opts.max_channels.max(1))),
                        label: last.label.clone(),
                    });
                    let slot = hop
                        .slots
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| SshError::Key("internal: new hop has no slot".into()))?;
                    e.conns.push(hop.clone());
                    Ok((hop, slot))
                }
                Err(err) => match e.conns.first().cloned() {
                    None => {
                        e.failed = Some(err.clone());
                        Err(err)
                    }
                    // The bastion took one connection but refuses another (MaxStartups,
                    // MaxSessions of a user, ...): wait for a free slot on the first one.
                    Some(first) => {
                        drop(e);
                        let wait = first.slots.clone().acquire_owned();
                        let slot = match tokio::time::timeout(opts.tunnel_wait, wait).await {
                            Ok(Ok(slot)) => slot,
                            Ok(Err(_)) => {
                                return Err(SshError::Key("internal: hop connection closed".into()))
                            }
                            Err(_) => {
                                return Err(SshError::Tunnel {
                                    hop: last.label.clone(),
                                    target: "a free tunnel".into(),
                                    reason: format!(
                                        "every tunnel stayed busy for {} s and the bastion refused another connection ({err}); \
                                         raise ssh.tunnel_wait_timeout or the bastion's MaxStartups/MaxSessions, or lower --forks",
                                        opts.tunnel_wait.as_secs()
                                    ),
                                })
                            }
                        };
                        Ok((first, slot))
                    }
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, port: u16, jump: Option<&str>) -> Host {
        Host {
            name: name.into(),
            address: address.into(),
            port,
            user: "deploy".into(),
            identity_file: Some(PathBuf::from(format!("/keys/{name}"))),
            become_root: true,
            groups: Vec::new(),
            vars: Default::default(),
            jump: jump.and_then(|j| Jump::parse(j).expect("a valid chain")),
        }
    }

    #[test]
    fn hops_resolve_inventory_names_and_defaults() {
        let lb = host("lb", "10.0.0.11", 2201, None);
        let ssh = SshDefaults {
            user: "ops".into(),
            port: 2222,
            ..Default::default()
        };
        let pool = JumpPool::new(&ssh, [&lb].into_iter());
        let pg = host("pg1", "10.0.0.21", 22, Some("lb,root@b2,x@lb:7"));
        let chain = pool.chain_for(&pg);
        assert_eq!(chain.len(), 3);
        // An inventory host: its address, port, user and key.
        assert_eq!(chain[0].host.address, "10.0.0.11");
        assert_eq!(chain[0].host.port, 2201);
        assert_eq!(chain[0].host.user, "deploy");
        assert_eq!(chain[0].host.identity_file, Some("/keys/lb".into()));
        assert_eq!(chain[0].label, "lb (deploy@10.0.0.11:2201)");
        // A literal hop: the inventory defaults, the target's key.
        assert_eq!(chain[1].host.address, "b2");
        assert_eq!(chain[1].host.port, 2222);
        assert_eq!(chain[1].host.identity_file, Some("/keys/pg1".into()));
        assert_eq!(chain[1].label, "root@b2:2222");
        // Explicit user and port override the inventory's.
        assert_eq!((chain[2].host.user.as_str(), chain[2].host.port), ("x", 7));
        assert!(pool.chain_for(&lb).is_empty(), "no jump: direct");
    }

    #[test]
    fn a_host_never_jumps_through_itself() {
        let lb = host("lb", "10.0.0.11", 22, Some("lb"));
        let pool = JumpPool::new(&SshDefaults::default(), [&lb].into_iter());
        assert!(pool.chain_for(&lb).is_empty());
        let by_address = host("x", "10.0.0.11", 22, Some("a@b,root@10.0.0.11,c@d"));
        let chain = pool.chain_for(&by_address);
        assert_eq!(chain.len(), 1, "the chain stops before the host itself");
        assert_eq!(chain[0].host.address, "b");
    }
}
