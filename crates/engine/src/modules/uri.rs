//! `uri`: an HTTP request made from the host, like Ansible's, with `curl`.
//!
//! A `GET` or `HEAD` reads: it is made by the probe (in check mode too), reports `ok`, and
//! fails when the status is not one of `status_code`. Any other method may change
//! something: it is the apply, reports a change (unless `changed_when` says otherwise),
//! and in check mode is not sent at all. The registered result has Ansible's fields:
//! `status`, `url`, `content_type`, `json` (when the response is JSON) and `content` (with
//! `return_content`); at most [`MAX_BODY`] bytes of the response are read.
//!
//! Headers and the body may carry secrets (a token, a password), so they never reach
//! curl's command line, where `ps` shows them to every user: the script writes them into a
//! private temp directory (`printf` is a shell builtin, no process sees them) and curl
//! reads its whole request from a config file there (`curl -K`). The plan shows no diff,
//! and the values of credential-like headers are redacted like secrets.

use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use base64::Engine;
use bosun_model::shell::{quote, track_temp};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The most of a response body the host sends back (for `content`, `json` and messages).
pub const MAX_BODY: u64 = 1024 * 1024;

/// How much of a response body a failure message shows.
const BODY_IN_MESSAGE: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
    #[serde(default = "get")]
    method: String,
    body: Option<Value>,
    #[serde(default)]
    body_format: BodyFormat,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    status_code: StatusCodes,
    /// Seconds for the whole request.
    #[serde(default = "default_timeout")]
    timeout: u64,
    #[serde(default)]
    return_content: bool,
    #[serde(default = "yes")]
    validate_certs: bool,
}

fn get() -> String {
    "GET".into()
}

fn default_timeout() -> u64 {
    30
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BodyFormat {
    /// The body is sent as written (a string).
    #[default]
    Raw,
    /// The body (any value) is sent as JSON, with `Content-Type: application/json`.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusCodes {
    One(u16),
    Many(Vec<u16>),
}

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes::One(200)
    }
}

impl StatusCodes {
    fn into_vec(self) -> Vec<u16> {
        match self {
            StatusCodes::One(c) => vec![c],
            StatusCodes::Many(v) => v,
        }
    }
}

#[derive(Debug)]
pub struct Uri {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    status_code: Vec<u16>,
    timeout: u64,
    return_content: bool,
    validate_certs: bool,
}

/// A value as curl's config file quotes it: `"` and `\` escaped. Newlines cannot be in a
/// config value (they would start a new option), so they are refused before this.
fn cfg_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Header values that are as good as a password, by the header's name.
fn is_credential(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "password",
        "key",
        "auth",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `url` without the `user:password@` part, for what the operator reads.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl Uri {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("uri", args)?;
        if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
            return Err(ArgError::new(format!(
                "uri: `url` must start with http:// or https://: {}",
                shown_url(&a.url)
            )));
        }
        let method = a.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ArgError::new(format!(
                "uri: `{}` is not an HTTP method",
                a.method
            )));
        }
        let mut headers = Vec::new();
        for (name, v) in a.headers {
            let value = match v {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => {
                    return Err(ArgError::new(format!(
                        "uri: header `{name}` must be a string"
                    )))
                }
            };
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !token {
                return Err(ArgError::new(format!("uri: `{name}` is not a header name")));
            }
            if value.contains(['\n', '\r']) {
                return Err(ArgError::new(format!(
                    "uri: header `{name}` contains a line break"
                )));
            }
            headers.push((name, value));
        }
        if a.url.contains(['\n', '\r', ' ']) {
            return Err(ArgError::new("uri: `url` contains a space or a line break")
                .hint("encode it as %20"));
        }
        let body = match (a.body, a.body_format) {
            (None, _) => None,
            (Some(v), BodyFormat::Json) => {
                if !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                Some(v.to_string())
            }
            (Some(Value::String(s)), BodyFormat::Raw) => Some(s),
            (Some(_), BodyFormat::Raw) => {
                return Err(ArgError::new(
                    "uri: a `body` that is not a string needs `body_format: json`",
                ))
            }
        };
        if body.as_deref().is_some_and(|b| b.contains('\0')) {
            return Err(ArgError::new("uri: `body` contains a NUL byte"));
        }
        let status_code = a.status_code.into_vec();
        if status_code.is_empty() {
            return Err(ArgError::new("uri: `status_code` lists no status"));
        }
        if a.timeout == 0 {
            return Err(ArgError::new("uri: `timeout` must be at least 1 second"));
        }
        Ok(Uri {
            url: a.url,
            method,
            headers,
            body,
            status_code,
            timeout: a.timeout,
            return_content: a.return_content,
            validate_certs: a.validate_certs,
        })
    }

    fn read_only(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }

    /// curl's config file: the whole request. Paths under `$__u` are added by the script.
    fn config(&self) -> String {
        let mut c = format!(
            "url = {}\nsilent\nshow-error\nmax-time = {}\nwrite-out = \"%{{http_code}} %{{content_type}}\"\n",
            cfg_quote(&self.url),
            self.timeout
        );
        match self.method.as_str() {
            "HEAD" => c.push_str("head\n"),
            "GET" => {}
            m => c.push_str(&format!("request = {}\n", cfg_quote(m))),
        }
        if self.read_only() {
            // Like Ansible's `follow_redirects: safe`: only reads follow redirects.
            c.push_str("location\n");
        }
        if !self.validate_certs {
            c.push_str("insecure\n");
        }
        for (n, v) in &self.headers {
            c.push_str(&format!("header = {}\n", cfg_quote(&format!("{n}: {v}"))));
        }
        c
    }

    /// The shell that makes the request and prints `status=`, `content_type=` and
    /// `content=` (base64). With `check`, a status outside `status_code` fails it, with the
    /// status and the start of the body as the message.
    fn request(&self, check: bool) -> String {
        let mut s = String::from(
            "command -v curl >/dev/null 2>&1 || { echo 'uri: curl is not installed on the host' >&2; exit 127; }\n\
             __u=$(mktemp -d) || exit 1\n",
        );
        s.push_str(&track_temp("\"$__u\""));
        s.push_str("trap 'rm -rf -- \"$__u\"' EXIT\n");
        s.push_str(&format!(
            "printf '%s' {} > \"$__u/cfg\" || exit 1\n",
            quote(&self.config())
        ));
        s.push_str("printf 'output = \"%s/resp\"\\n' \"$__u\" >> \"$__u/cfg\" || exit 1\n");
        if let Some(b) = &self.body {
            s.push_str(&format!(
                "printf '%s' {} > \"$__u/body\" || exit 1\n",
                quote(b)
            ));
            s.push_str(
                "printf 'data-binary = \"@%s/body\"\\n' \"$__u\" >> \"$__u/cfg\" || exit 1\n",
            );
        }
        s.push_str(&format!(
            "w=$(curl -K \"$__u/cfg\") || exit $?\n\
             : >> \"$__u/resp\"\n\
             code=${{w%% *}}; echo \"status=$code\"; echo \"content_type=${{w#* }}\"\n\
             printf 'content='; head -c {MAX_BODY} < \"$__u/resp\" | base64 -w0; echo\n",
        ));
        if check {
            let ok: Vec<String> = self.status_code.iter().map(u16::to_string).collect();
            s.push_str(&format!(
                "case \"$code\" in {}) ;; *) printf 'status %s (expected {}): %s\\n' \"$code\" \"$(head -c {BODY_IN_MESSAGE} < \"$__u/resp\")\" >&2; exit 1;; esac\n",
                ok.join("|"),
                ok.join(", "),
            ));
        }
        s
    }

    /// What the request printed: status, content type and body.
    fn response(&self, out: &Observed) -> Option<(u16, String, Vec<u8>)> {
        let kv = out.kv();
        let status = kv.get("status")?.parse().ok()?;
        let ctype = kv
            .get("content_type")
            .copied()
            .unwrap_or_default()
            .to_string();
        let body = base64::engine::general_purpose::STANDARD
            .decode(kv.get("content").copied().unwrap_or_default())
            .ok()?;
        Some((status, ctype, body))
    }

    fn summary(&self) -> String {
        format!("{} {}", self.method, shown_url(&self.url))
    }
}

impl Module for Uri {
    type Action = ();

    fn probe(&self) -> Option<String> {
        self.read_only().then(|| self.request(false))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<()>, ModuleError> {
        if !self.read_only() {
            return Ok(Plan::Change(Change::new(self.summary(), ())));
        }
        probe_failed(observed)?;
        let Some((status, _, body)) = self.response(observed) else {
            return Err(ModuleError::new("probe printed no status"));
        };
        if !self.status_code.contains(&status) {
            let expected: Vec<String> = self.status_code.iter().map(u16::to_string).collect();
            let start = &body[..body.len().min(BODY_IN_MESSAGE)];
            return Err(ModuleError::new(format!(
                "{}: status {status} (expected {}): {}",
                self.summary(),
                expected.join(", "),
                String::from_utf8_lossy(start)
            )));
        }
        Ok(Plan::unchanged(format!(
            "{}: status {status}",
            self.summary()
        )))
    }

    fn apply(&self, _: &()) -> String {
        self.request(true)
    }

    fn effects(&self) -> Effects {
        if self.read_only() {
            Effects::None
        } else {
            // A call may change anything the host's later tasks look at (a local API).
            Effects::Host
        }
    }

    /// A request waits on the network: probes of a round wait for it together.
    fn slow_probe(&self) -> bool {
        true
    }

    fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, v)| is_credential(n) && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        if let Some((_, rest)) = self.url.split_once("://") {
            let end = rest.find('/').unwrap_or(rest.len());
            if let Some(at) = rest[..end].rfind('@') {
                s.push(rest[..at].to_string());
            }
        }
        s
    }

    fn registered(&self, out: &Observed) -> Map<String, Value> {
        let Some((status, ctype, body)) = self.response(out) else {
            return Map::new();
        };
        let mut m = Map::new();
        m.insert("status".into(), json!(status));
        m.insert("url".into(), json!(self.url));
        m.insert("content_type".into(), json!(ctype));
        if ctype.contains("json") {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                m.insert("json".into(), v);
            }
        }
        if self.return_content {
            m.insert(
                "content".into(),
                json!(String::from_utf8_lossy(&body).into_owned()),
            );
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, serve};
    use std::net::TcpListener;

    fn uri(args: Value) -> Uri {
        Uri::from_args(args).expect("args")
    }

    #[test]
    fn a_get_reads_and_registers_the_response() {
        let (url, seen) = serve(vec![(200, "application/json", r#"{"ok": true, "n": 3}"#)]);
        let m = uri(json!({"url": format!("{url}/health"), "return_content": true}));
        let obs = run(&m.probe().expect("a GET is probed"));
        match m.plan(&obs) {
            Ok(Plan::Unchanged { reason }) => assert!(reason.ends_with("status 200"), "{reason}"),
            p => panic!("{p:?}"),
        }
        let r = m.registered(&obs);
        assert_eq!(r["status"], json!(200));
        assert_eq!(r["json"], json!({"ok": true, "n": 3}));
        assert_eq!(r["content"], json!(r#"{"ok": true, "n": 3}"#));
        assert_eq!(r["url"], json!(format!("{url}/health")));
        assert!(seen.lock().unwrap()[0].line.starts_with("GET /health "));
    }

    #[test]
    fn a_status_outside_status_code_fails_with_the_body() {
        let (url, _) = serve(vec![
            (503, "text/plain", "down for maintenance"),
            (404, "text/plain", "gone"),
        ]);
        let m = uri(json!({"url": url.clone()}));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(
            e.0.contains("status 503 (expected 200): down for maintenance"),
            "{e}"
        );
        let ok = uri(json!({"url": url, "status_code": [200, 404]}));
        assert!(ok.plan(&run(&ok.probe().unwrap())).is_ok());
    }

    #[test]
    fn a_post_is_a_change_sent_by_the_apply_with_headers_and_a_json_body() {
        let (url, seen) = serve(vec![
            (201, "application/json", r#"{"id": 7}"#),
            (500, "text/plain", "boom"),
        ]);
        let m = uri(json!({
            "url": format!("{url}/items"),
            "method": "post",
            "body_format": "json",
            "body": {"name": "a \"quoted\" thing"},
            "headers": {"Authorization": "Bearer s3cr3t-token", "X-Count": 2},
            "status_code": [200, 201],
        }));
        assert!(m.probe().is_none(), "a POST is never sent by a probe");
        let Plan::Change(c) = m.plan(&Observed::default()).unwrap() else {
            panic!("a POST is a change")
        };
        assert!(c.diff.is_none());
        let script = m.apply(&());
        assert!(
            !script
                .lines()
                .any(|l| l.contains("curl ") && l.contains("s3cr3t")),
            "headers are never on curl's command line"
        );
        assert_eq!(m.secrets(), ["Bearer s3cr3t-token"]);
        let out = run(&script);
        assert_eq!(out.rc, 0, "{}", out.stderr);
        assert_eq!(m.registered(&out)["json"], json!({"id": 7}));
        assert_eq!(m.registered(&out)["status"], json!(201));
        let s = seen.lock().unwrap()[0].clone();
        assert!(s.line.starts_with("POST /items "), "{s:?}");
        assert!(
            s.headers
                .contains(&"Authorization: Bearer s3cr3t-token".to_string()),
            "{s:?}"
        );
        assert!(
            s.headers
                .contains(&"Content-Type: application/json".to_string()),
            "{s:?}"
        );
        assert!(s.headers.contains(&"X-Count: 2".to_string()), "{s:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&s.body).unwrap(),
            json!({"name": "a \"quoted\" thing"})
        );
        // The second call answers 500: the apply fails with the status and the body.
        let out = run(&script);
        assert_eq!(out.rc, 1);
        assert!(
            out.stderr.contains("status 500 (expected 200, 201): boom"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn missing_curl_or_a_closed_port_is_a_clear_error() {
        let m = uri(json!({"url": "http://127.0.0.1:9/"}));
        let out = run(&format!("PATH=/nonexistent\n{}", m.probe().unwrap()));
        assert_eq!(out.rc, 127);
        assert!(
            out.stderr.contains("curl is not installed"),
            "{}",
            out.stderr
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let m = uri(json!({"url": format!("http://127.0.0.1:{port}/"), "timeout": 5}));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(e.0.contains("curl"), "curl says why: {e}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Uri::from_args(json!({"url": "ftp://x"})).is_err());
        assert!(Uri::from_args(json!({"url": "http://x", "method": "GE T"})).is_err());
        assert!(Uri::from_args(json!({"url": "http://x", "body": {"a": 1}})).is_err());
        assert!(Uri::from_args(json!({"url": "http://x", "headers": {"A": "b\nc"}})).is_err());
        assert!(Uri::from_args(json!({"url": "http://x", "status_code": []})).is_err());
        assert!(Uri::from_args(json!({"url": "http://x", "bogus": 1})).is_err());
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        let m = uri(json!({"url": "https://me:pw@example.test/a", "method": "DELETE"}));
        let Plan::Change(c) = m.plan(&Observed::default()).unwrap() else {
            panic!("a DELETE is a change")
        };
        assert_eq!(c.summary, "DELETE https://***@example.test/a");
        assert_eq!(m.secrets(), ["me:pw"]);
    }
}
