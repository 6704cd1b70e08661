//! `upload`: a directory tree (or a .tar.gz) from the controller to a directory on the host,
//! shipped only when its checksum changed.
//!
//! The controller packs the tree into a deterministic tar.gz (sorted entries, zero
//! timestamps and owners), so the same tree always has the same checksum. The host keeps
//! that checksum in `DEST/.bosun-source.sha256`; the probe compares it, and a no-op
//! converge moves 64 bytes, not the tree. A changed tree is unpacked next to the old one
//! and swapped in by rename, so the directory is never half old, half new.

use super::fileops::{self, Attrs};
use super::writer::{self, Chain, Writer};
use super::{
    parse_args, ArgError, Change, Controller, Effects, Module, ModuleError, Observed, Plan,
};
use bosun_model::shell::{emit_bytes, quote};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Name of the checksum stamp inside the destination.
pub const STAMP: &str = ".bosun-source.sha256";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    src: String,
    dest: String,
    owner: Option<String>,
    group: Option<String>,
    /// Names (any depth) left out of a directory upload.
    #[serde(default = "default_exclude")]
    exclude: Vec<String>,
}

fn default_exclude() -> Vec<String> {
    [
        ".git",
        "node_modules",
        ".venv",
        "__pycache__",
        ".next",
        "target",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A packed source: gzip'd tar bytes and their checksum.
#[derive(Debug)]
pub struct Packed {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub files: usize,
}

#[derive(Debug)]
pub struct Upload {
    dest: String,
    owner: Option<String>,
    group: Option<String>,
    packed: Arc<Packed>,
}

/// The only action: replace the directory with the packed tree, as `writer`.
#[derive(Debug, PartialEq, Eq)]
pub struct Deploy {
    pub writer: Writer,
}

/// Packs are cached per controller path for the whole run: every host (and the preflight)
/// uploads the same bytes, packed once.
type PackCache = Mutex<HashMap<(PathBuf, Vec<String>), Arc<Packed>>>;

fn cache() -> &'static PackCache {
    static CACHE: OnceLock<PackCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Upload {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("upload", args)?;
        if !a.dest.starts_with('/') || a.dest.trim_end_matches('/').is_empty() {
            return Err(ArgError::new(format!(
                "upload: dest `{}` must be an absolute directory other than /",
                a.dest
            )));
        }
        let src = ctl.find_path(&a.src)?;
        let key = (src.clone(), a.exclude.clone());
        let cached = cache().lock().ok().and_then(|c| c.get(&key).cloned());
        let packed = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(
                    pack(&src, &a.exclude)
                        .map_err(|e| ArgError::new(format!("upload: {}: {e}", src.display())))?,
                );
                if let Ok(mut c) = cache().lock() {
                    c.insert(key, p.clone());
                }
                p
            }
        };
        Ok(Upload {
            dest: a.dest.trim_end_matches('/').to_string(),
            owner: a.owner,
            group: a.group,
            packed,
        })
    }
}

/// Packs a directory (deterministically) or reads a `.tar.gz`/`.tgz` as it is.
pub fn pack(src: &Path, exclude: &[String]) -> std::io::Result<Packed> {
    if src.is_file() {
        let bytes = std::fs::read(src)?;
        let sha256 = super::fileops::sha256_hex(&bytes);
        return Ok(Packed {
            bytes,
            sha256,
            files: 0,
        });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    walk(src, src, exclude, &mut files)?;
    files.sort();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut count = 0;
    for rel in &files {
        let full = src.join(rel);
        tar.append_path_with_name(&full, rel)?;
        if full.is_file() {
            count += 1;
        }
    }
    let gz = tar.into_inner()?;
    let bytes = gz.finish()?;
    let sha256 = super::fileops::sha256_hex(&bytes);
    Ok(Packed {
        bytes,
        sha256,
        files: count,
    })
}

fn walk(
    root: &Path,
    dir: &Path,
    exclude: &[String],
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if exclude.contains(&name) {
            continue;
        }
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.clone());
        let ft = e.file_type()?;
        out.push(rel);
        if ft.is_dir() {
            walk(root, &path, exclude, out)?;
        }
    }
    Ok(())
}

impl Module for Upload {
    type Action = Deploy;

    fn probe(&self) -> Option<String> {
        let stamp = quote(&format!("{}/{STAMP}", self.dest));
        Some(format!(
            "p={}\n{}\
             if [ -f {stamp} ] && [ ! -L {stamp} ]; then __s=; IFS= read -r __s < {stamp}; echo \"sha256=$__s\"; else echo sha256=none; fi\n",
            quote(&self.dest),
            writer::chain_probe(&self.dest, false)
        ))
    }

    fn plan(&self, obs: &Observed) -> Result<Plan<Deploy>, ModuleError> {
        if obs.rc != 0 {
            return Err(ModuleError::new(format!(
                "cannot read {}/{STAMP}: {}",
                self.dest,
                obs.stderr.trim()
            )));
        }
        let kv = obs.kv();
        let have = kv.get("sha256").map(|s| s.trim()).unwrap_or("none");
        let want = &self.packed.sha256;
        if have == want {
            return Ok(Plan::unchanged(format!(
                "{} holds source {}",
                self.dest,
                &want[..12]
            )));
        }
        let mut details = vec![format!(
            "{} KiB packed{}",
            self.packed.bytes.len().div_ceil(1024),
            if self.packed.files > 0 {
                format!(", {} files", self.packed.files)
            } else {
                String::new()
            }
        )];
        details.push(if have == "none" {
            format!("source → {}", &want[..12])
        } else {
            let shown: String = have
                .chars()
                .take(12)
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '?' })
                .collect();
            format!("source {shown} → {}", &want[..12])
        });
        let chain = Chain::from_kv(&kv)?;
        let exists = chain
            .as_ref()
            .is_some_and(|c| c.entries.len() == writer::ancestors(&self.dest).len() + 1);
        let writer = writer::decide(&self.dest, exists, chain.as_ref())?;
        details.extend(writer.note());
        Ok(Plan::Change(
            Change::new(format!("deploy source to {}", self.dest), Deploy { writer })
                .with_details(details),
        ))
    }

    fn apply(&self, deploy: &Deploy) -> String {
        let w = &deploy.writer;
        let d = quote(&self.dest);
        let parent = match self.dest.rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((p, _)) => p.to_string(),
        };
        // As another user, tar keeps the recorded modes as it does for root.
        let keep_modes = match w {
            Writer::Root { .. } => "",
            Writer::Owner { .. } => " --same-permissions",
        };
        let mut s = w.prelude(&self.dest);
        s.push_str(&w.mkdirs(&parent));
        s.push_str(&format!(
            "d={d}\n\
             new=$(__as mktemp -d \"$d.new.XXXXXX\") || exit 1\n\
             {}trap '__as rm -rf -- \"$new\"' EXIT\n\
             {{\n{}}} | __as tar -xzf - -C \"$new\" --no-same-owner{keep_modes} || {{ echo \"cannot unpack the source into $new\" >&2; exit 1; }}\n\
             printf '%s\\n' {} | __as sh -c 'cat > \"$1\"' sh \"$new/{STAMP}\" || exit 1\n",
            bosun_model::shell::track_temp("\"$new\""),
            emit_bytes(&self.packed.bytes),
            quote(&self.packed.sha256)
        ));
        if let Some(spec) = fileops::owner_spec(&Attrs {
            mode: None,
            owner: self.owner.clone(),
            group: self.group.clone(),
        }) {
            s.push_str(&format!("__chown -R -- {spec} \"$new\" || exit 1\n"));
        }
        s.push_str(
            "__as chmod 755 \"$new\" || exit 1\n\
             __as rm -rf -- \"$d.old\" || exit 1\n\
             if [ -e \"$d\" ] || [ -L \"$d\" ]; then __as mv -T -- \"$d\" \"$d.old\" || exit 1; fi\n\
             __as mv -T -- \"$new\" \"$d\" || { [ -e \"$d.old\" ] && __as mv -T -- \"$d.old\" \"$d\"; exit 1; }\n\
             trap - EXIT\n\
             __as rm -rf -- \"$d.old\"\n",
        );
        s
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.dest.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bosun-up-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("pkg/sub")).unwrap();
        std::fs::create_dir_all(d.join("node_modules/x")).unwrap();
        std::fs::write(d.join("pkg/a.py"), "print('a')\n").unwrap();
        std::fs::write(d.join("pkg/sub/b.txt"), "b\n").unwrap();
        std::fs::write(d.join("node_modules/x/big.js"), "x").unwrap();
        d
    }

    #[test]
    fn packing_is_deterministic_and_excludes() {
        let d = tree("det");
        let a = pack(&d, &default_exclude()).unwrap();
        // Touching mtimes does not change the checksum.
        std::fs::write(d.join("pkg/a.py"), "print('a')\n").unwrap();
        let b = pack(&d, &default_exclude()).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.files, 2, "node_modules left out");
        std::fs::write(d.join("pkg/a.py"), "print('A')\n").unwrap();
        assert_ne!(pack(&d, &default_exclude()).unwrap().sha256, a.sha256);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn deploy_swaps_the_directory_and_probe_sees_the_stamp() {
        let d = tree("deploy");
        let dest = std::env::temp_dir().join(format!("bosun-up-dest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dest);
        let packed = Arc::new(pack(&d, &default_exclude()).unwrap());
        let m = Upload {
            dest: dest.to_string_lossy().into(),
            owner: None,
            group: None,
            packed: packed.clone(),
        };
        let run = |s: &str| {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(s)
                .output()
                .unwrap();
            Observed {
                rc: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            }
        };
        let p = m.plan(&run(&m.probe().unwrap())).unwrap();
        assert!(matches!(p, Plan::Change(_)));
        let r = run(&m.apply(&Deploy {
            writer: Writer::root_for(&m.dest),
        }));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(dest.join("pkg/sub/b.txt")).unwrap(),
            "b\n"
        );
        assert!(!dest.join("node_modules").exists());
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
        // No temp or old directories left beside it.
        let siblings = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("bosun-up-dest-{}.", std::process::id()))
            })
            .count();
        assert_eq!(siblings, 0);
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&dest).unwrap();
    }
}
