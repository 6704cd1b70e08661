//! SSH connections with russh: one per host for the whole run, host keys always verified.
//!
//! A remote script is sent on the channel's stdin and run by `/bin/sh` (through `sudo -n`
//! for non-root users), so no script — and no secret in it — ever appears in a process
//! list or hits sshd's command-length limit.

use crate::jump::{JumpPool, Lease, Tunnel};
use crate::known_hosts::{self, Verdict};
use bosun_engine::interrupt::Interrupt;
use bosun_engine::remote::{interrupt_reached, Connector, Remote, RemoteError, StopClock};
use bosun_model::inventory::{Host, Inventory};
use futures::future::BoxFuture;
use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr} timed out after {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error(
        "host key of {addr} is not in {known_hosts} ({fingerprint}); refusing to connect.\n  \
         hint: verify the fingerprint out of band, then run with --accept-new-host-keys to record it"
    )]
    UnknownHostKey {
        addr: String,
        known_hosts: String,
        fingerprint: String,
    },
    #[error(
        "HOST KEY OF {addr} CHANGED: {known_hosts} records {recorded} for it, but it offered {fingerprint}; refusing to connect.\n  \
         hint: someone may be intercepting the connection: verify the offered fingerprint out of band. If the host was rebuilt, {fix}, then connect with --accept-new-host-keys"
    )]
    ChangedHostKey {
        addr: String,
        known_hosts: String,
        /// The recorded keys, e.g. `ssh-ed25519 (line 3)`.
        recorded: String,
        fingerprint: String,
        /// How to forget the recorded keys: their `FILE:LINE`s, or `ssh-keygen -R`.
        fix: String,
    },
    #[error(
        "host key of {addr} ({fingerprint}) is REVOKED at {known_hosts}:{line}; refusing to connect.\n  \
         hint: the key was marked compromised; the host needs a new host key, recorded after verifying it out of band"
    )]
    RevokedHostKey {
        addr: String,
        known_hosts: String,
        line: usize,
        fingerprint: String,
    },
    #[error("authentication as {user}@{addr} failed: {reason}")]
    Auth {
        user: String,
        addr: String,
        reason: String,
    },
    #[error("{0}")]
    Key(String),
    #[error("ssh session to {addr} failed: {reason}")]
    Session { addr: String, reason: String },
    /// Connecting to, verifying or logging in to a jump host failed.
    #[error("via jump host {hop}: {source}")]
    Jump { hop: String, source: Box<SshError> },
    /// The jump host was reached but would not forward to the next hop or the target.
    #[error("jump host {hop} could not open a tunnel to {target}: {reason}")]
    Tunnel {
        hop: String,
        target: String,
        reason: String,
    },
}

/// Options for connecting, resolved from the inventory and the command line.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub max_channels: usize,
    /// How long to wait for a free tunnel on a full bastion connection.
    pub tunnel_wait: Duration,
    /// The run's jump host connections (shared by every clone of these options).
    pub jumps: Arc<JumpPool>,
}

impl ConnectOptions {
    /// The inventory's ssh settings; jump hosts may name inventory hosts.
    pub fn for_inventory(inv: &Inventory, accept_new: bool) -> Self {
        let ssh = &inv.ssh;
        ConnectOptions {
            known_hosts: inv.known_hosts.clone(),
            accept_new_host_keys: accept_new,
            connect_timeout: ssh.connect_timeout(),
            keepalive: Duration::from_secs(ssh.keepalive_interval.max(1)),
            max_channels: ssh.max_channels.clamp(1, 64),
            tunnel_wait: Duration::from_secs(ssh.tunnel_wait_timeout.max(1)),
            jumps: Arc::new(JumpPool::new(ssh, inv.hosts.values())),
        }
    }
}

pub use bosun_engine::remote::{Killed, NoDeadline, Output, Watch};

/// Runs first in every script: prints the script's process group (what bosun kills on a
/// deadline) as the first line of stdout, and keeps it in `$__pg`. Builtins only.
const PROLOGUE: &str = "__pg=$$\n\
    if read -r __s < /proc/$$/stat 2>/dev/null; then __s=${__s##*) }; set -- $__s; __pg=${3:-$$}; set --; fi\n\
    printf '@@bosun-pg:%s\\n' \"$__pg\"\n";

const PGID_MARK: &[u8] = b"@@bosun-pg:";

/// The process group from the prologue's line, if it has arrived.
fn peek_pgid(stdout: &[u8]) -> Option<u32> {
    let rest = stdout.strip_prefix(PGID_MARK)?;
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let pg: u32 = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    // Never a kernel or init group.
    (pg > 1).then_some(pg)
}

/// Takes the prologue's line off the front of stdout; returns the process group.
fn take_pgid(stdout: &mut Vec<u8>) -> Option<u32> {
    let pg = peek_pgid(stdout);
    if stdout.starts_with(PGID_MARK) {
        let end = stdout
            .iter()
            .position(|b| *b == b'\n')
            .map_or(stdout.len(), |p| p + 1);
        stdout.drain(..end);
    }
    pg
}

struct Verifier {
    addr: String,
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    /// Why the key was refused; the connect error from russh alone would not say.
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: &PublicKey = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                self.refuse(SshError::Key(format!(
                    "{}: host certificates are not supported",
                    self.addr
                )));
                return Ok(false);
            }
        };
        let fingerprint = format!(
            "{} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        );
        let kh = self.known_hosts.display().to_string();
        let verdict = match known_hosts::check_path(&self.known_hosts, &self.host, self.port, key) {
            Ok(v) => v,
            Err(e) => {
                self.refuse(SshError::Key(format!("cannot read {kh}: {e}")));
                return Ok(false);
            }
        };
        match verdict {
            Verdict::Known { .. } => Ok(true),
            Verdict::Unknown if self.accept_new => {
                if let Some(dir) = self.known_hosts.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        self.refuse(SshError::Key(format!(
                            "cannot record host key in {kh}: {e}"
                        )));
                        Ok(false)
                    }
                }
            }
            Verdict::Unknown => {
                self.refuse(SshError::UnknownHostKey {
                    addr: self.addr.clone(),
                    known_hosts: kh,
                    fingerprint,
                });
                Ok(false)
            }
            Verdict::Changed { recorded } => {
                let lines: Vec<String> = recorded
                    .iter()
                    .map(|r| format!("`{kh}:{}`", r.line))
                    .collect();
                self.refuse(SshError::ChangedHostKey {
                    addr: self.addr.clone(),
                    recorded: recorded
                        .iter()
                        .map(|r| format!("{} (line {})", r.algorithm, r.line))
                        .collect::<Vec<_>>()
                        .join(", "),
                    fix: format!(
                        "remove {} {} or run `ssh-keygen -R '{}' -f {kh}`",
                        if lines.len() == 1 { "line" } else { "lines" },
                        lines.join(", "),
                        known_hosts::lookup_name(&self.host, self.port)
                    ),
                    known_hosts: kh,
                    fingerprint,
                });
                Ok(false)
            }
            Verdict::Revoked { line } => {
                self.refuse(SshError::RevokedHostKey {
                    addr: self.addr.clone(),
                    known_hosts: kh,
                    line,
                    fingerprint,
                });
                Ok(false)
            }
        }
    }
}

impl Verifier {
    fn refuse(&self, e: SshError) {
        if let Ok(mut r) = self.refusal.lock() {
            *r = Some(e);
        }
    }
}

/// The runner when sudo needs a password. The password is the first line of the channel's
/// input, so it never appears on a command line or in a process list. A sudo that does
/// not ask (NOPASSWD, or a cached ticket) would otherwise leave that line to be run as the
/// script's first command, so the runner reads it itself and hands it to `sudo -S` only
/// when `sudo -n true` says a password is needed. `-p ''` keeps the prompt out of stderr.
const SUDO_WITH_PASSWORD: &str = "/bin/sh -c 'IFS= read -r p; \
     if sudo -n true 2>/dev/null; then p=; exec sudo -n -H /bin/sh -c \"b=\\$(cat) && eval \\\"\\$b\\\"\"; fi; \
     { printf \"%s\\n\" \"$p\"; p=; exec cat; } | sudo -S -p \"\" -H /bin/sh -c \"b=\\$(cat) && eval \\\"\\$b\\\"\"'";

/// An authenticated connection to one host.
pub struct Connection {
    handle: Handle<Verifier>,
    channels: Semaphore,
    execs: AtomicU64,
    become_root: bool,
    /// sudo's password (a secret of the inventory): the first line each script sends.
    become_password: Option<String>,
    pub addr: String,
    pub connect_seconds: f64,
    /// The tunnel through jump hosts this connection runs in, held open while it lives.
    _via: Option<Lease>,
}

/// Where the key for `host` comes from.
fn key_candidates(host: &Host) -> Vec<PathBuf> {
    match &host.identity_file {
        Some(p) => vec![p.clone()],
        None => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| bosun_model::inventory::home().join(".ssh").join(n))
            .filter(|p| p.exists())
            .collect(),
    }
}

/// Loads a private key, asking for its passphrase when it is encrypted.
pub fn load_key(path: &Path) -> Result<keys::PrivateKey, SshError> {
    match keys::load_secret_key(path, None) {
        Ok(k) => Ok(k),
        Err(keys::Error::KeyIsEncrypted) => {
            use bosun_model::secrets::ExposeSecret;
            // Asked through the command line's prompter; without a terminal the empty
            // passphrase fails below, with the key named.
            let pass = match std::env::var("BOSUN_KEY_PASSPHRASE") {
                Ok(p) => p,
                Err(_) => {
                    bosun_model::secrets::prompt(&format!("passphrase for {}: ", path.display()))
                        .map_err(|e| {
                            SshError::Key(format!("{} is encrypted: {e}", path.display()))
                        })?
                        .map(|p| p.expose_secret().to_string())
                        .unwrap_or_default()
                }
            };
            keys::load_secret_key(path, Some(&pass))
                .map_err(|e| SshError::Key(format!("cannot decrypt {}: {e}", path.display())))
        }
        Err(e) => Err(SshError::Key(format!(
            "cannot load key {}: {e}",
            path.display()
        ))),
    }
}

impl Connection {
    /// Connects and authenticates (agent first when `SSH_AUTH_SOCK` is set, then key files),
    /// through the host's jump hosts when it has any.
    pub async fn open(host: &Host, opts: &ConnectOptions) -> Result<Connection, SshError> {
        let started = Instant::now();
        let chain = opts.jumps.chain_for(host);
        let mut c = if chain.is_empty() {
            Self::open_timed(host, opts, None).await?
        } else {
            opts.jumps.connect(&chain, host, opts).await?
        };
        c.connect_seconds = started.elapsed().as_secs_f64();
        Ok(c)
    }

    /// One hop: the handshake and login within the connect timeout, over TCP or `via` a
    /// tunnel. The host key is verified under `host`'s own address and port either way.
    pub(crate) async fn open_timed(
        host: &Host,
        opts: &ConnectOptions,
        via: Option<Tunnel>,
    ) -> Result<Connection, SshError> {
        let addr = if host.port == 22 {
            host.address.clone()
        } else {
            format!("{}:{}", host.address, host.port)
        };
        let fut = Self::open_inner(host, opts, addr.clone(), via);
        match tokio::time::timeout(opts.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout {
                addr,
                secs: opts.connect_timeout.as_secs(),
            }),
        }
    }

    async fn open_inner(
        host: &Host,
        opts: &ConnectOptions,
        addr: String,
        via: Option<Tunnel>,
    ) -> Result<Connection, SshError> {
        let config = Arc::new(client::Config {
            // Keepalives detect a dead host; the inactivity timeout must outlast them.
            keepalive_interval: Some(opts.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            addr: addr.clone(),
            host: host.address.clone(),
            port: host.port,
            known_hosts: opts.known_hosts.clone(),
            accept_new: opts.accept_new_host_keys,
            refusal: refusal.clone(),
        };
        let (connected, lease) = match via {
            None => (
                client::connect(config, (host.address.as_str(), host.port), verifier).await,
                None,
            ),
            Some(t) => (
                client::connect_stream(config, t.stream, verifier).await,
                Some(t.lease),
            ),
        };
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                if let Some(r) = refusal.lock().ok().and_then(|mut r| r.take()) {
                    return Err(r);
                }
                return Err(SshError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
        };
        let user = host.user.clone();
        let mut tried = Vec::new();
        // ssh-agent first: operators keep passphrase-protected keys there.
        if host.identity_file.is_none() {
            if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
                if let Ok(ids) = agent.request_identities().await {
                    for id in ids {
                        let pk = id.public_key().into_owned();
                        let hash = handle
                            .best_supported_rsa_hash()
                            .await
                            .ok()
                            .flatten()
                            .flatten();
                        if let Ok(r) = handle
                            .authenticate_publickey_with(&user, pk, hash, &mut agent)
                            .await
                        {
                            if r.success() {
                                return Ok(Self::ready(handle, host, opts, addr, lease));
                            }
                        }
                    }
                    tried.push("ssh-agent".to_string());
                }
            }
        }
        for path in key_candidates(host) {
            let key = load_key(&path)?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let r = handle
                .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| SshError::Auth {
                    user: user.clone(),
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            if r.success() {
                return Ok(Self::ready(handle, host, opts, addr, lease));
            }
            tried.push(path.display().to_string());
        }
        Err(SshError::Auth {
            user,
            addr,
            reason: if tried.is_empty() {
                "no key to offer: set ssh.identity_file in the inventory or load a key into ssh-agent".into()
            } else {
                format!("the server accepted none of: {}", tried.join(", "))
            },
        })
    }

    fn ready(
        handle: Handle<Verifier>,
        host: &Host,
        opts: &ConnectOptions,
        addr: String,
        via: Option<Lease>,
    ) -> Connection {
        Connection {
            handle,
            channels: Semaphore::new(opts.max_channels),
            execs: AtomicU64::new(0),
            become_root: host.become_root && host.user != "root",
            become_password: host.become_password().map(str::to_string),
            addr,
            connect_seconds: 0.0,
            _via: via,
        }
    }

    /// A `direct-tcpip` channel from this host to `address:port`, as a byte stream: the
    /// transport for a connection through this host as a jump host.
    pub(crate) async fn direct_tcpip(
        &self,
        address: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<client::Msg>, russh::Error> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
            .await?;
        Ok(ch.into_stream())
    }

    /// The session ended (the host went away or closed it).
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// How many scripts this connection has run (shown with -v; tests assert on it).
    pub fn exec_count(&self) -> u64 {
        self.execs.load(Ordering::Relaxed)
    }

    /// Runs `script` with `/bin/sh` on the host and collects its output (no deadline).
    pub async fn run(&self, script: &str) -> Result<Output, SshError> {
        self.run_watched(script, &mut NoDeadline, None).await
    }

    /// Runs `script`, following its stdout with `watch`: when the deadline `watch` gives
    /// passes, or `interrupt` asks (see [`bosun_engine::interrupt`]), the script's whole process
    /// group is killed on the host, `watch`'s cleanup runs there, and what the script
    /// printed until then is returned with [`Output::killed`] set.
    pub async fn run_watched(
        &self,
        script: &str,
        watch: &mut dyn Watch,
        interrupt: Option<&Interrupt>,
    ) -> Result<Output, SshError> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| SshError::Session {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            })?;
        self.execs.fetch_add(1, Ordering::Relaxed);
        let err = |e: russh::Error| SshError::Session {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let mut ch = self.handle.channel_open_session().await.map_err(err)?;
        ch.exec(true, self.runner()).await.map_err(err)?;
        ch.data(format!("{}{PROLOGUE}{script}", self.password_line()).as_bytes())
            .await
            .map_err(err)?;
        ch.eof().await.map_err(err)?;
        let mut out = Output::default();
        let mut rc = None;
        let mut clock = StopClock::new(watch, bosun_engine::interrupt::GRACE);
        let finishing = interrupt_reached(interrupt, 1);
        let aborting = interrupt_reached(interrupt, 2);
        tokio::pin!(finishing, aborting);
        loop {
            tokio::select! {
                msg = ch.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        out.stdout.extend_from_slice(&data);
                        clock.output(watch, &out.stdout);
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => out.stderr.extend_from_slice(&data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => rc = Some(exit_status as i32),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        out.stderr
                            .extend_from_slice(format!("killed by signal {signal_name:?}").as_bytes());
                        rc = Some(128);
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(clock.until().into()) => {
                    out.killed = Some(clock.expired(watch, Instant::now()));
                    self.kill(&mut ch, &mut out, &*watch).await;
                    break;
                }
                _ = &mut finishing, if !clock.in_grace() => clock.interrupted(),
                _ = &mut aborting => {
                    out.killed = Some(Killed::Interrupted);
                    self.kill(&mut ch, &mut out, &*watch).await;
                    break;
                }
            }
        }
        let _ = ch.close().await;
        out.pgid = take_pgid(&mut out.stdout);
        if out.killed.is_some() {
            out.rc = rc.unwrap_or(137);
            return Ok(out);
        }
        out.rc = match rc {
            Some(c) => c,
            None => {
                return Err(SshError::Session {
                    addr: self.addr.clone(),
                    reason: "the channel closed without an exit status (host down or sshd killed?)"
                        .into(),
                })
            }
        };
        if self.become_root && out.rc == 1 && String::from_utf8_lossy(&out.stderr).contains("sudo:")
        {
            return Err(SshError::Auth {
                user: "sudo".into(),
                addr: self.addr.clone(),
                reason: format!(
                    "{}; {}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if self.become_password.is_some() {
                        "check the host's become_password secret"
                    } else {
                        "bosun needs passwordless sudo (NOPASSWD) for the remote user, \
                         or a become_password secret"
                    }
                ),
            });
        }
        Ok(out)
    }

    /// The command that reads a script from stdin and runs it.
    fn runner(&self) -> String {
        // The script arrives on stdin and is read whole before it runs, so commands inside
        // it never consume the rest of the script as their input (and, as the module doc
        // says, never shows in a process list); the price is one `cat` per round trip.
        let runner = "/bin/sh -c 'b=$(cat) && eval \"$b\"'";
        match (self.become_root, &self.become_password) {
            (false, _) => runner.to_string(),
            (true, None) => format!("sudo -n -H {runner}"),
            (true, Some(_)) => SUDO_WITH_PASSWORD.to_string(),
        }
    }

    /// What goes before every script on the channel: sudo's password and a newline when
    /// the inventory gives one (see [`SUDO_WITH_PASSWORD`]), nothing otherwise.
    fn password_line(&self) -> String {
        match (&self.become_password, self.become_root) {
            (Some(p), true) => format!("{p}\n"),
            _ => String::new(),
        }
    }

    /// Kills the process group of the script running on `ch` (from a second channel),
    /// runs `watch`'s cleanup, and collects what the dying script still sends.
    async fn kill(
        &self,
        ch: &mut russh::Channel<client::Msg>,
        out: &mut Output,
        watch: &dyn Watch,
    ) {
        let Some(pg) = peek_pgid(&out.stdout) else {
            // The prologue's line has not arrived: the script has not started its steps;
            // closing the channel is all there is to do.
            return;
        };
        // TERM first (a package manager may clean up), KILL what is left after 3 s.
        let mut kill = format!(
            "kill -TERM -{pg} 2>/dev/null
__i=0
\
             while kill -0 -{pg} 2>/dev/null && [ $__i -lt 30 ]; do sleep 0.1; __i=$((__i+1)); done
\
             kill -KILL -{pg} 2>/dev/null
"
        );
        if let Some(c) = watch.cleanup() {
            kill.push_str(&c);
        }
        if let Ok(mut k) = self.handle.channel_open_session().await {
            if k.exec(true, self.runner()).await.is_ok()
                && k.data(format!("{}{kill}", self.password_line()).as_bytes())
                    .await
                    .is_ok()
                && k.eof().await.is_ok()
            {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    while k.wait().await.is_some() {}
                })
                .await;
            }
            let _ = k.close().await;
        }
        // What the killed script still had in flight (its last output, its status).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    _ => {}
                }
            }
        })
        .await;
    }

    /// An interactive login shell on a pseudo-terminal (`bosun lab ssh NAME`): the local
    /// terminal is put in raw mode for the session and restored afterwards.
    pub async fn interactive(&self) -> Result<i32, SshError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let err = |e: russh::Error| SshError::Session {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let mut ch = self.handle.channel_open_session().await.map_err(err)?;
        let (cols, rows) = console::Term::stdout()
            .size_checked()
            .map(|(r, c)| (c, r))
            .unwrap_or((80, 24));
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        ch.request_pty(false, &term, cols.into(), rows.into(), 0, 0, &[])
            .await
            .map_err(err)?;
        ch.request_shell(false).await.map_err(err)?;
        let _raw = RawMode::enter();
        let mut stdin = tokio::io::stdin();
        let mut stdout = tokio::io::stdout();
        let mut buf = [0u8; 4096];
        let mut stdin_open = true;
        let mut rc = 0;
        loop {
            tokio::select! {
                n = stdin.read(&mut buf), if stdin_open => match n {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        let _ = ch.eof().await;
                    }
                    Ok(n) => ch.data(&buf[..n]).await.map_err(err)?,
                },
                msg = ch.wait() => match msg {
                    Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        let _ = stdout.write_all(&data).await;
                        let _ = stdout.flush().await;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => rc = exit_status as i32,
                    Some(_) => {}
                    None => break,
                },
            }
        }
        Ok(rc)
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

impl From<SshError> for RemoteError {
    fn from(e: SshError) -> Self {
        RemoteError(e.to_string())
    }
}

impl Remote for Connection {
    fn run_watched<'a>(
        &'a self,
        script: &'a str,
        watch: &'a mut dyn Watch,
        interrupt: Option<&'a Interrupt>,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move { Ok(Connection::run_watched(self, script, watch, interrupt).await?) })
    }

    fn exec_count(&self) -> u64 {
        Connection::exec_count(self)
    }

    fn connect_seconds(&self) -> f64 {
        self.connect_seconds
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Connection::close(self))
    }
}

/// Opens SSH connections for the engine, with the inventory's settings and jump hosts.
pub struct SshConnector(pub ConnectOptions);

impl SshConnector {
    pub fn for_inventory(inv: &Inventory, accept_new_host_keys: bool) -> Self {
        SshConnector(ConnectOptions::for_inventory(inv, accept_new_host_keys))
    }
}

impl Connector for SshConnector {
    fn open<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Arc<dyn Remote>, RemoteError>> {
        Box::pin(async move {
            let c: Arc<dyn Remote> = Arc::new(Connection::open(host, &self.0).await?);
            Ok(c)
        })
    }
}

/// Works on many hosts over SSH, at most `forks` at once: for each host, opens a
/// connection (through its jump hosts), hands it to `work`, and closes it when `work` is
/// done. Yields `(host, result)` as each host finishes; a host that cannot be reached
/// yields the connect error. Hosts are started in the order given, and only as the stream
/// is polled: with `forks == 1` they are worked on one after the other, in order, and
/// dropping the stream early opens no further connection. `forks` below 1 counts as 1.
///
/// This is the one place the command line opens connections; the engine opens its own
/// through [`SshConnector`].
pub fn on_hosts<'a, I, T, F, Fut>(
    hosts: I,
    opts: &'a ConnectOptions,
    forks: usize,
    work: F,
) -> impl futures::Stream<Item = (&'a Host, Result<T, SshError>)> + 'a
where
    I: IntoIterator<Item = &'a Host>,
    I::IntoIter: 'a,
    T: 'a,
    F: Fn(&'a Host, Arc<Connection>) -> Fut + 'a,
    Fut: std::future::Future<Output = Result<T, SshError>> + 'a,
{
    use futures::StreamExt;
    let work = Arc::new(work);
    futures::stream::iter(hosts)
        .map(move |host| {
            let work = work.clone();
            async move {
                let conn = match Connection::open(host, opts).await {
                    Ok(c) => Arc::new(c),
                    Err(e) => return (host, Err(e)),
                };
                let r = work(host, conn.clone()).await;
                conn.close().await;
                (host, r)
            }
        })
        .buffer_unordered(forks.max(1))
}

/// Runs one script on each host ([`on_hosts`]): `script` says which for a host. Yields
/// `(host, output)` as each host finishes.
pub fn run_on_hosts<'a, I, S>(
    hosts: I,
    opts: &'a ConnectOptions,
    forks: usize,
    script: S,
) -> impl futures::Stream<Item = (&'a Host, Result<Output, SshError>)> + 'a
where
    I: IntoIterator<Item = &'a Host>,
    I::IntoIter: 'a,
    S: Fn(&Host) -> String + 'a,
{
    on_hosts(hosts, opts, forks, move |host, conn| {
        let script = script(host);
        async move { conn.run(&script).await }
    })
}

/// Puts the local terminal in raw mode while alive (no-op when stdin is not a terminal).
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios struct.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawMode(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawMode(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restoring the attributes saved in `enter`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Runs the password runner with a stand-in `sudo` first on PATH: `asks` says whether
    /// `sudo -n true` fails (a password is needed). The stand-in accepts only the password
    /// `pw` on `-S`, and logs every command line it gets.
    fn sudo_runner(asks: bool, input: &str) -> (String, String) {
        let dir =
            std::env::temp_dir().join(format!("bosun-sudo-{}-{}", std::process::id(), asks as u8));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sudo = dir.join("sudo");
        std::fs::write(
            &sudo,
            format!(
                "#!/bin/sh\necho \"$*\" >> {log}\n                 if [ \"$1 $2\" = \"-n true\" ]; then exit {n}; fi\n                 if [ \"$1\" = -S ]; then IFS= read -r pw; [ \"$pw\" = pw ] || {{ echo 'sudo: wrong password' >&2; exit 1; }}; fi\n                 while [ \"${{1#-}}\" != \"$1\" ]; do [ \"$1\" = -p ] && shift; shift; done\n                 exec \"$@\"\n",
                log = dir.join("log").display(),
                n = if asks { 1 } else { 0 },
            ),
        )
        .expect("write sudo");
        std::process::Command::new("chmod")
            .args(["+x", &sudo.display().to_string()])
            .status()
            .expect("chmod");
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", SUDO_WITH_PASSWORD])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (String::from_utf8_lossy(&out.stdout).into_owned(), log)
    }

    #[test]
    fn sudo_gets_the_password_on_its_input_and_the_script_runs() {
        let (out, log) = sudo_runner(true, "pw\necho ran; echo \"$0\"\n");
        assert_eq!(out.lines().next(), Some("ran"), "{out}");
        assert!(log.contains("-S -p  -H /bin/sh -c"), "{log}");
        assert!(
            !log.contains("pw\n") && !log.contains(" pw"),
            "never on a command line: {log}"
        );
    }

    #[test]
    fn a_sudo_that_asks_nothing_never_runs_the_password_line() {
        // `sudo -n true` passes: the password line must not reach the shell as a command.
        let (out, log) = sudo_runner(false, "touch-me-not\necho ran\n");
        assert_eq!(out.trim(), "ran", "{out}");
        assert!(log.contains("-n -H /bin/sh -c"), "{log}");
        assert!(!log.contains("touch-me-not"), "{log}");
    }

    /// A host on a loopback port nothing listens on: connecting fails at once.
    fn closed(name: &str) -> Host {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Host {
            name: name.into(),
            address: "127.0.0.1".into(),
            port,
            user: "root".into(),
            identity_file: None,
            become_root: false,
            groups: Vec::new(),
            vars: Default::default(),
            jump: None,
        }
    }

    fn opts() -> ConnectOptions {
        ConnectOptions {
            known_hosts: std::env::temp_dir().join("bosun-on-hosts-known_hosts"),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(15),
            max_channels: 4,
            tunnel_wait: Duration::from_secs(5),
            jumps: Default::default(),
        }
    }

    #[tokio::test]
    async fn on_hosts_yields_every_host_and_connect_errors_in_order_with_one_fork() {
        let hosts = [closed("a"), closed("b"), closed("c")];
        let opts = opts();
        let worked = std::sync::atomic::AtomicUsize::new(0);
        let got: Vec<(String, bool)> = on_hosts(&hosts, &opts, 1, |_, _conn| {
            worked.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .map(|(h, r)| (h.name.clone(), matches!(r, Err(SshError::Connect { .. }))))
        .collect()
        .await;
        assert_eq!(
            got,
            [("a".into(), true), ("b".into(), true), ("c".into(), true)]
        );
        assert_eq!(
            worked.load(Ordering::SeqCst),
            0,
            "no work without a connection"
        );
        // More forks than hosts, and zero forks (counts as one): every host once.
        for forks in [0, 8] {
            let mut names: Vec<String> = run_on_hosts(&hosts, &opts, forks, |_| "true".into())
                .map(|(h, _)| h.name.clone())
                .collect()
                .await;
            names.sort();
            assert_eq!(names, ["a", "b", "c"]);
        }
    }
}
