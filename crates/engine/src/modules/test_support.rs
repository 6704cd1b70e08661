//! Helpers for the modules' unit tests: a shell runner standing in for the host, a
//! scratch directory, and a controller with one file and one template.

use super::{ArgError, Controller, Module, Observed, Plan};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A controller with one file and one template, for the modules that need one.
pub struct FakeCtl;

impl Controller for FakeCtl {
    fn read_file(&self, src: &str) -> Result<Vec<u8>, ArgError> {
        match src {
            "motd" => Ok(b"welcome\n".to_vec()),
            other => Err(ArgError::new(format!("file `{other}` not found in files/"))),
        }
    }
    fn render_template(&self, src: &str) -> Result<String, ArgError> {
        match src {
            "app.conf.j2" => Ok("port = 8080\n".into()),
            other => Err(ArgError::new(format!("template `{other}` not found"))),
        }
    }
    fn find_path(&self, src: &str) -> Result<PathBuf, ArgError> {
        Err(ArgError::new(format!("`{src}` not found")))
    }
    /// `yes` and `1 == 1` hold, `no` does not; anything else is an error.
    fn test(&self, expr: &str) -> Result<bool, ArgError> {
        match expr {
            "yes" | "1 == 1" => Ok(true),
            "no" => Ok(false),
            other => Err(ArgError::new(format!("`{other}`: undefined"))),
        }
    }
    /// One variable, `port` = 8080.
    fn var(&self, name: &str) -> Option<serde_json::Value> {
        (name == "port").then(|| serde_json::json!(8080))
    }
}

/// Runs `script` with the local `sh`, as a probe or apply would run on a host.
/// What a converge does, on this machine: probe, plan, and apply a change, each script
/// passed through `wrap` first (a stand-in `PATH`, say). The plan, or the apply's stderr.
pub fn converge_with<M: Module>(
    m: &M,
    wrap: impl Fn(&str) -> String,
) -> Result<Plan<M::Action>, String> {
    let observed = m.probe().map(|p| run(&wrap(&p))).unwrap_or_default();
    let plan = m.plan(&observed).map_err(|e| e.0)?;
    if let Plan::Change(c) = &plan {
        let out = run(&wrap(&m.apply(&c.action)));
        if out.rc != 0 {
            return Err(out.stderr);
        }
    }
    Ok(plan)
}

/// [`converge_with`] with the scripts as they are.
pub fn converge<M: Module>(m: &M) -> Result<Plan<M::Action>, String> {
    converge_with(m, str::to_string)
}

pub fn run(script: &str) -> Observed {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    Observed {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A fresh directory under the system temp dir, removed by the caller.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bosun-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One request as the server saw it: its request line, headers and body.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<String>,
    pub body: String,
}

/// A server on 127.0.0.1 that answers `responses` in order, one per connection, and
/// records what it was sent; it stops after the last.
pub fn serve(responses: Vec<(u16, &'static str, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, ctype, body) in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut r = BufReader::new(stream);
            let mut s = Seen::default();
            let _ = r.read_line(&mut s.line);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let h = h.trim_end().to_string();
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                s.headers.push(h);
            }
            let mut b = vec![0; len];
            let _ = r.read_exact(&mut b);
            s.body = String::from_utf8_lossy(&b).into();
            log.lock().unwrap().push(s);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = r.get_mut().write_all(reply.as_bytes());
        }
    });
    (url, seen)
}
