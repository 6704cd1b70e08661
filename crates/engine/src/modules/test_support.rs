//! Helpers for the modules' unit tests: a shell runner standing in for the host, a
//! scratch directory, and a controller with one file and one template.

use super::{ArgError, Controller, Observed};
use std::path::PathBuf;

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
