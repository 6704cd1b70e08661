//! `pg_role` and `pg_database`: PostgreSQL roles and databases, idempotently.
//!
//! Both talk to the local server through `psql` as the `postgres` OS user over the Unix
//! socket (peer authentication), so no database password is needed to manage one.
//!
//! On a streaming replica everything is read-only and arrives by replication, so by
//! default (`primary_only: true`) a replica reports "nothing to do": the same task can run on
//! every node of a Patroni cluster and acts on the current leader only.
//!
//! Passwords are compared without ever sending or storing them in clear: the probe reads
//! the role's SCRAM-SHA-256 verifier from `pg_authid`, and the plan recomputes it locally
//! from the declared password and the verifier's salt. Setting one sends a verifier made
//! here (`PASSWORD 'SCRAM-SHA-256$...'`, which PostgreSQL stores as it is), so the password
//! itself never reaches the server, its statement log or `pg_stat_activity`. The verifier
//! is as good as the password to an offline attack: it is registered as a secret of the
//! run ([`Module::secrets`]) and travels like the password did, in SQL on `psql`'s stdin,
//! never on a command line.

use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use base64::Engine;
use bosun_model::shell::quote;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn default_true() -> bool {
    true
}
fn default_port() -> u16 {
    5432
}
fn default_socket() -> String {
    "/var/run/postgresql".into()
}
fn default_os_user() -> String {
    "postgres".into()
}

/// Where and as whom to run psql.
#[derive(Debug, Clone, Deserialize)]
struct Conn {
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_socket")]
    socket_dir: String,
    #[serde(default = "default_os_user")]
    os_user: String,
    #[serde(default = "default_true")]
    primary_only: bool,
}

impl Conn {
    fn psql(&self) -> String {
        format!(
            "runuser -u {} -- psql -XAtq -v ON_ERROR_STOP=1 -h {} -p {} -d postgres",
            quote(&self.os_user),
            quote(&self.socket_dir),
            self.port
        )
    }

    /// psql reading `sql` from a heredoc (stdin), so nothing shows in `ps`.
    fn run_sql(&self, sql: &str) -> String {
        let tag = bosun_model::shell::heredoc_tag(sql);
        format!("{} -f - <<'{tag}'\n{sql}\n{tag}\n", self.psql())
    }
}

use super::support::Presence as State;

fn check_ident(kind: &str, name: &str) -> Result<(), ArgError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ArgError::new(format!(
            "{kind} name `{name}` must be lowercase letters, digits and _ (at most 63)"
        ))
        .hint("quoted mixed-case identifiers are not supported"))
    }
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads `recovery=` from the probe, shared by both modules.
fn on_replica(kv: &std::collections::BTreeMap<&str, &str>) -> bool {
    kv.get("recovery") == Some(&"t")
}

/// The probe's failure as PostgreSQL's own last word: a psql error ends with the line that
/// matters, after connection chatter, so this is not [`super::support::probe_failed`].
fn query_failed(obs: &Observed) -> Option<ModuleError> {
    (obs.rc != 0).then(|| {
        ModuleError::new(format!(
            "cannot query PostgreSQL: {}",
            obs.stderr.trim().lines().last().unwrap_or("psql failed")
        ))
    })
}

// ---------------------------------------------------------------------------------------
// pg_role

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleArgs {
    name: String,
    password: Option<String>,
    #[serde(default = "default_true")]
    login: bool,
    #[serde(default)]
    superuser: bool,
    #[serde(default)]
    replication: bool,
    #[serde(default)]
    state: State,
    #[serde(flatten)]
    conn: Conn,
}

#[derive(Debug)]
pub struct PgRole {
    a: RoleArgs,
    /// The verifier `apply` sends, made once so that the one registered as a secret is the
    /// one in the SQL.
    verifier: Option<Verifier>,
}

/// A SCRAM-SHA-256 verifier; never shown by `Debug`.
struct Verifier(String);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RoleAction {
    Create,
    Alter { password: bool },
    Drop,
}

impl PgRole {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: RoleArgs = parse_args("pg_role", args)?;
        check_ident("role", &a.name)?;
        if a.password.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err(ArgError::new("pg_role: password contains a NUL byte"));
        }
        // PostgreSQL and libpq hash the SASLprep form of a password (RFC 4013: NFKC,
        // non-ASCII spaces mapped, some characters dropped), which bosun does not compute.
        // For ASCII it is the password itself; anything else could make a verifier no
        // client can log in with.
        if a.password.as_deref().is_some_and(|p| !p.is_ascii()) {
            return Err(
                ArgError::new("pg_role: password has non-ASCII characters").hint(
                    "bosun computes the SCRAM verifier itself and does not apply SASLprep \
                     normalization to non-ASCII passwords: use an ASCII password",
                ),
            );
        }
        let verifier = a.password.as_deref().map(|p| Verifier(scram_verifier(p)));
        Ok(PgRole { a, verifier })
    }

    fn attrs(&self) -> String {
        let flag = |b: bool, name: &str| {
            if b {
                name.to_string()
            } else {
                format!("NO{name}")
            }
        };
        format!(
            "{} {} {}",
            flag(self.a.login, "LOGIN"),
            flag(self.a.superuser, "SUPERUSER"),
            flag(self.a.replication, "REPLICATION")
        )
    }
}

impl Module for PgRole {
    type Action = RoleAction;

    fn probe(&self) -> Option<String> {
        let q = format!(
            "SELECT 'recovery=' || CASE WHEN pg_is_in_recovery() THEN 't' ELSE 'f' END;\n\
             SELECT 'role=' || rolcanlogin::int || rolsuper::int || rolreplication::int FROM pg_authid WHERE rolname = {n};\n\
             SELECT 'verifier=' || coalesce(rolpassword, '') FROM pg_authid WHERE rolname = {n};",
            n = lit(&self.a.name)
        );
        Some(self.a.conn.run_sql(&q))
    }

    fn plan(&self, obs: &Observed) -> Result<Plan<RoleAction>, ModuleError> {
        if let Some(e) = query_failed(obs) {
            return Err(e);
        }
        let kv = obs.kv();
        let name = &self.a.name;
        if self.a.conn.primary_only && on_replica(&kv) {
            return Ok(Plan::unchanged(
                "a replica: roles arrive by replication from the primary",
            ));
        }
        let exists = kv.contains_key("role");
        match (self.a.state, exists) {
            (State::Absent, false) => {
                return Ok(Plan::unchanged(format!("role {name} does not exist")))
            }
            (State::Absent, true) => {
                return Ok(Plan::Change(Change::new(
                    format!("drop role {name}"),
                    RoleAction::Drop,
                )))
            }
            (State::Present, false) => {
                let mut details = vec![self.attrs()];
                if self.a.password.is_some() {
                    details.push("password set (SCRAM-SHA-256)".into());
                }
                return Ok(Plan::Change(
                    Change::new(format!("create role {name}"), RoleAction::Create)
                        .with_details(details),
                ));
            }
            (State::Present, true) => {}
        }
        let mut details = Vec::new();
        let flags = kv.get("role").copied().unwrap_or("");
        let want = format!(
            "{}{}{}",
            u8::from(self.a.login),
            u8::from(self.a.superuser),
            u8::from(self.a.replication)
        );
        if flags != want {
            details.push(format!("attributes → {}", self.attrs()));
        }
        let mut password = false;
        if let Some(p) = &self.a.password {
            let verifier = kv.get("verifier").copied().unwrap_or("");
            if !scram_matches(verifier, p) {
                password = true;
                details.push("password differs: set it again".into());
            }
        }
        if details.is_empty() {
            Ok(Plan::unchanged(format!("role {name} exists as declared")))
        } else {
            Ok(Plan::Change(
                Change::new(format!("alter role {name}"), RoleAction::Alter { password })
                    .with_details(details),
            ))
        }
    }

    fn apply(&self, action: &RoleAction) -> String {
        let n = &self.a.name;
        // A pre-hashed verifier is stored as it is, whatever `password_encryption` says.
        let pw = |set: bool| match (&self.verifier, set) {
            (Some(v), true) => format!(" PASSWORD {}", lit(&v.0)),
            _ => String::new(),
        };
        let sql = match action {
            RoleAction::Create => format!("CREATE ROLE {n} {}{};", self.attrs(), pw(true)),
            RoleAction::Alter { password } => {
                format!("ALTER ROLE {n} {}{};", self.attrs(), pw(*password))
            }
            RoleAction::Drop => format!("DROP ROLE {n};"),
        };
        self.a.conn.run_sql(&sql)
    }

    /// Database objects: later database probes (a database owned by this role) must
    /// see the change, so everything after it is probed again.
    fn effects(&self) -> Effects {
        Effects::Host
    }

    /// Starts an interpreter or a client on every probe.
    fn slow_probe(&self) -> bool {
        true
    }

    /// The verifier: whoever reads it can try passwords against it offline.
    fn secrets(&self) -> Vec<String> {
        self.verifier.iter().map(|v| v.0.clone()).collect()
    }
}

/// Iterations of a verifier made here: PostgreSQL's default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

/// A new SCRAM-SHA-256 verifier for `password`, as PostgreSQL stores one
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64; RFC 5802 and
/// RFC 7677), with 16 random bytes of salt as PostgreSQL makes them.
fn scram_verifier(password: &str) -> String {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let (stored, server) = scram_keys(password, &salt, SCRAM_ITERATIONS);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored),
        b64.encode(server)
    )
}

/// Whether `password` matches a stored `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`.
pub fn scram_matches(verifier: &str, password: &str) -> bool {
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((iter_salt, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iter, salt)) = iter_salt.split_once(':') else {
        return false;
    };
    let Some((stored, server)) = keys.split_once(':') else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(iter), Ok(salt), Ok(stored), Ok(server)) = (
        iter.parse::<u32>(),
        b64.decode(salt),
        b64.decode(stored),
        b64.decode(server),
    ) else {
        return false;
    };
    let (s, v) = scram_keys(password, &salt, iter);
    s == stored && v == server
}

/// (StoredKey, ServerKey) for a password, salt and iteration count (RFC 5802).
fn scram_keys(password: &str, salt: &[u8], iter: u32) -> (Vec<u8>, Vec<u8>) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iter, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| -> Vec<u8> {
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored = Sha256::digest(&client_key).to_vec();
    let server = hmac(&salted, b"Server Key");
    (stored, server)
}

// ---------------------------------------------------------------------------------------
// pg_database

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DbArgs {
    name: String,
    owner: Option<String>,
    #[serde(default = "default_encoding")]
    encoding: String,
    #[serde(default)]
    state: State,
    #[serde(flatten)]
    conn: Conn,
}

fn default_encoding() -> String {
    "UTF8".into()
}

#[derive(Debug)]
pub struct PgDatabase {
    a: DbArgs,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DbAction {
    Create,
    SetOwner,
    Drop,
}

impl PgDatabase {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: DbArgs = parse_args("pg_database", args)?;
        check_ident("database", &a.name)?;
        if let Some(o) = &a.owner {
            check_ident("owner", o)?;
        }
        if !a
            .encoding
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ArgError::new(format!(
                "pg_database: encoding `{}` is not an encoding name",
                a.encoding
            )));
        }
        Ok(PgDatabase { a })
    }
}

impl Module for PgDatabase {
    type Action = DbAction;

    fn probe(&self) -> Option<String> {
        let q = format!(
            "SELECT 'recovery=' || CASE WHEN pg_is_in_recovery() THEN 't' ELSE 'f' END;\n\
             SELECT 'owner=' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = {n};\n\
             SELECT 'encoding=' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = {n};",
            n = lit(&self.a.name)
        );
        Some(self.a.conn.run_sql(&q))
    }

    fn plan(&self, obs: &Observed) -> Result<Plan<DbAction>, ModuleError> {
        if let Some(e) = query_failed(obs) {
            return Err(e);
        }
        let kv = obs.kv();
        let name = &self.a.name;
        if self.a.conn.primary_only && on_replica(&kv) {
            return Ok(Plan::unchanged(
                "a replica: databases arrive by replication from the primary",
            ));
        }
        let owner = kv.get("owner").copied();
        match (self.a.state, owner) {
            (State::Absent, None) => Ok(Plan::unchanged(format!("database {name} does not exist"))),
            (State::Absent, Some(_)) => Ok(Plan::Change(Change::new(
                format!("drop database {name}"),
                DbAction::Drop,
            ))),
            (State::Present, None) => {
                let mut d = vec![format!("encoding {}", self.a.encoding)];
                if let Some(o) = &self.a.owner {
                    d.push(format!("owner {o}"));
                }
                Ok(Plan::Change(
                    Change::new(format!("create database {name}"), DbAction::Create)
                        .with_details(d),
                ))
            }
            (State::Present, Some(cur)) => {
                let enc = kv.get("encoding").copied().unwrap_or("");
                if !enc.eq_ignore_ascii_case(&self.a.encoding) {
                    return Err(ModuleError::new(format!(
                        "database {name} exists with encoding {enc}, not {}; bosun will not recreate a database",
                        self.a.encoding
                    )));
                }
                match &self.a.owner {
                    Some(o) if o != cur => Ok(Plan::Change(
                        Change::new(
                            format!("change owner of database {name}"),
                            DbAction::SetOwner,
                        )
                        .with_details(vec![format!("owner {cur} → {o}")]),
                    )),
                    _ => Ok(Plan::unchanged(format!(
                        "database {name} exists as declared"
                    ))),
                }
            }
        }
    }

    fn apply(&self, action: &DbAction) -> String {
        let n = &self.a.name;
        let owner = self
            .a
            .owner
            .as_deref()
            .map(|o| format!(" OWNER {o}"))
            .unwrap_or_default();
        let sql = match action {
            DbAction::Create => format!(
                "CREATE DATABASE {n}{owner} ENCODING {} TEMPLATE template0;",
                lit(&self.a.encoding)
            ),
            DbAction::SetOwner => format!("ALTER DATABASE {n}{owner};"),
            DbAction::Drop => format!("DROP DATABASE {n};"),
        };
        self.a.conn.run_sql(&sql)
    }

    /// Database objects: later database probes (a database owned by this role) must
    /// see the change, so everything after it is probed again.
    fn effects(&self) -> Effects {
        Effects::Host
    }

    /// Starts an interpreter or a client on every probe.
    fn slow_probe(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A verifier made with the same construction PostgreSQL uses (salt and keys base64).
    fn verifier(password: &str, salt: &[u8], iter: u32) -> String {
        let b = base64::engine::general_purpose::STANDARD;
        let (s, v) = scram_keys(password, salt, iter);
        format!(
            "SCRAM-SHA-256${iter}:{}${}:{}",
            b.encode(salt),
            b.encode(s),
            b.encode(v)
        )
    }

    #[test]
    fn scram_verifier_round_trip() {
        // Against a real server's verifiers: the lab's patroni role converges twice and the
        // second run must leave the saleor role unchanged.
        let v = verifier("secret", b"0123456789abcdef", 4096);
        assert!(scram_matches(&v, "secret"));
        assert!(!scram_matches(&v, "Secret"));
        assert!(!scram_matches("md5abcdef", "secret"));
        assert!(!scram_matches("", "secret"));
    }

    fn role(v: Value) -> PgRole {
        PgRole::from_args(v).expect("args")
    }

    /// The verifier in an apply script (`PASSWORD '...'`).
    fn sent_verifier(sql: &str) -> &str {
        let at = sql.find("PASSWORD '").expect("a PASSWORD clause") + "PASSWORD '".len();
        let len = sql[at..].find('\'').expect("a closing quote");
        &sql[at..at + len]
    }

    #[test]
    fn missing_role_is_created_with_a_verifier_on_stdin() {
        let pw = "pw'x-Plain7ext";
        let m = role(json!({"name": "saleor", "password": pw}));
        match m.plan(&Observed::stdout("recovery=f\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.action, RoleAction::Create);
                let sql = m.apply(&c.action);
                assert!(
                    sql.contains("CREATE ROLE saleor LOGIN NOSUPERUSER NOREPLICATION PASSWORD 'SCRAM-SHA-256$4096:"),
                    "{sql}"
                );
                assert!(!sql.contains("Plain7ext"), "plaintext sent: {sql}");
                assert!(!sql.contains("pw''x"), "plaintext sent: {sql}");
                let v = sent_verifier(&sql);
                assert!(scram_matches(v, pw), "{v}");
                assert!(!scram_matches(v, "pw'x-Plain7exT"));
                // The verifier is what the module declares secret.
                assert_eq!(m.secrets(), vec![v.to_string()]);
                assert!(
                    sql.contains("-f - <<'BOSUN_EOF'"),
                    "the verifier travels on stdin"
                );
            }
            p => panic!("{p:?}"),
        }
        // Without a password, no verifier and nothing secret.
        let m = role(json!({"name": "reader"}));
        let sql = m.apply(&RoleAction::Create);
        assert!(!sql.contains("PASSWORD"), "{sql}");
        assert!(m.secrets().is_empty());
    }

    #[test]
    fn verifiers_have_postgres_shape_and_fresh_salts() {
        let b = base64::engine::general_purpose::STANDARD;
        let (a, c) = (scram_verifier("same-pw"), scram_verifier("same-pw"));
        assert_ne!(a, c, "two verifiers share a salt");
        for v in [&a, &c] {
            assert!(scram_matches(v, "same-pw"), "{v}");
            let rest = v.strip_prefix("SCRAM-SHA-256$4096:").expect("prefix");
            let (salt, keys) = rest.split_once('$').expect("keys");
            assert_eq!(b.decode(salt).unwrap().len(), 16);
            let (stored, server) = keys.split_once(':').expect("two keys");
            assert_eq!(b.decode(stored).unwrap().len(), 32);
            assert_eq!(b.decode(server).unwrap().len(), 32);
        }
        let salt = |v: &str| v.split(['$', ':']).nth(2).map(str::to_string);
        assert_ne!(salt(&a), salt(&c));
        // Each module made from the same arguments sends its own.
        let args = json!({"name": "saleor", "password": "pw"});
        let (m1, m2) = (role(args.clone()), role(args));
        let (s1, s2) = (m1.apply(&RoleAction::Create), m2.apply(&RoleAction::Create));
        assert_ne!(sent_verifier(&s1), sent_verifier(&s2));
        // Debug output (error reports) never shows it.
        assert!(!format!("{m1:?}").contains(sent_verifier(&s1)));
    }

    #[test]
    fn alter_sends_a_verifier_only_when_the_password_differs() {
        let m = role(json!({"name": "saleor", "password": "n3w-pw", "superuser": true}));
        let sql = m.apply(&RoleAction::Alter { password: true });
        assert!(
            sql.contains(
                "ALTER ROLE saleor LOGIN SUPERUSER NOREPLICATION PASSWORD 'SCRAM-SHA-256$"
            ),
            "{sql}"
        );
        assert!(!sql.contains("n3w-pw"), "{sql}");
        assert!(scram_matches(sent_verifier(&sql), "n3w-pw"));
        let sql = m.apply(&RoleAction::Alter { password: false });
        assert!(
            sql.contains("ALTER ROLE saleor LOGIN SUPERUSER NOREPLICATION;"),
            "{sql}"
        );
        // What was sent is what the next probe reads back: nothing to do then.
        let sent = sent_verifier(&m.apply(&RoleAction::Create)).to_string();
        let obs = Observed::stdout(&format!("recovery=f\nrole=110\nverifier={sent}\n"));
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn non_ascii_passwords_are_refused() {
        // PostgreSQL would hash their SASLprep form (here: NFKC makes `ﬁ` `fi`).
        let e = PgRole::from_args(json!({"name": "x", "password": "ﬁle-pw"})).unwrap_err();
        assert!(e.message.contains("non-ASCII"), "{}", e.message);
        assert!(!e.message.contains("ﬁle-pw"));
        assert!(PgRole::from_args(json!({"name": "x", "password": "a\u{0}b"})).is_err());
    }

    #[test]
    fn existing_role_with_right_password_is_unchanged() {
        let m = role(json!({"name": "saleor", "password": "pw"}));
        let obs = Observed::stdout(&format!(
            "recovery=f\nrole=100\nverifier={}\n",
            verifier("pw", b"salt-salt-salt!!", 4096)
        ));
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
        let obs = Observed::stdout(&format!(
            "recovery=f\nrole=100\nverifier={}\n",
            verifier("old", b"salt-salt-salt!!", 4096)
        ));
        match m.plan(&obs).unwrap() {
            Plan::Change(c) => assert_eq!(c.action, RoleAction::Alter { password: true }),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn replicas_do_nothing() {
        let m = role(json!({"name": "saleor"}));
        assert!(matches!(
            m.plan(&Observed::stdout("recovery=t\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn database_create_owner_and_encoding_guard() {
        let m = PgDatabase::from_args(json!({"name": "saleor", "owner": "saleor"})).unwrap();
        match m.plan(&Observed::stdout("recovery=f\n")).unwrap() {
            Plan::Change(c) => assert!(m.apply(&c.action).contains(
                "CREATE DATABASE saleor OWNER saleor ENCODING 'UTF8' TEMPLATE template0;"
            )),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            m.plan(&Observed::stdout(
                "recovery=f\nowner=saleor\nencoding=UTF8\n"
            ))
            .unwrap(),
            Plan::Unchanged { .. }
        ));
        match m
            .plan(&Observed::stdout(
                "recovery=f\nowner=postgres\nencoding=UTF8\n",
            ))
            .unwrap()
        {
            Plan::Change(c) => assert_eq!(c.action, DbAction::SetOwner),
            p => panic!("{p:?}"),
        }
        assert!(m
            .plan(&Observed::stdout(
                "recovery=f\nowner=saleor\nencoding=LATIN1\n"
            ))
            .is_err());
    }

    #[test]
    fn failed_probe_and_bad_names() {
        let m = role(json!({"name": "x"}));
        let obs = Observed {
            rc: 2,
            stdout: String::new(),
            stderr: "psql: error: connection refused\n".into(),
        };
        assert!(m.plan(&obs).unwrap_err().0.contains("connection refused"));
        assert!(PgRole::from_args(json!({"name": "Bad-Name"})).is_err());
        assert!(PgDatabase::from_args(json!({"name": "x", "encodng": "UTF8"})).is_err());
    }
}
