//! What `file`, `copy` and `template` share: observing a path and writing one safely.
//!
//! The probe tells apart absent, unreadable, and present-with-attributes (a probe that
//! cannot tell "missing" from "unreadable" makes plans lie). When the caller knows the
//! checksum it wants, the probe compares remotely and ships the current contents back only
//! when they differ — a no-op converge moves checksums, not files.
//!
//! Writes go to a temp file in the same directory, get their attributes, pass the optional
//! `validate` command, and only then are renamed over the target: a failed host never
//! holds a half-written file.

use super::writer::{self, Chain, Writer};
use super::{Diff, ModuleError, Observed};
use base64::Engine;
use bosun_model::shell::{emit_bytes, quote};

/// Contents larger than this are compared by checksum only; the plan says so instead of
/// printing a diff.
pub const DIFF_LIMIT: u64 = 256 * 1024;

/// Kind of filesystem object found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Absent,
    File,
    Directory,
    Link,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Absent => "absent",
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Link => "link",
            Kind::Other => "special file",
        }
    }
}

/// Ownership and permissions a task declares; `None` leaves that attribute alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// What the probe saw at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub kind: Kind,
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub link_target: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Current contents, present only when they differ from the wanted checksum and are
    /// small enough to diff.
    pub content: Option<Vec<u8>>,
    /// Owners and modes of the directories on the way (see [`writer`]); `None` when the
    /// observation did not report them.
    pub chain: Option<Chain>,
}

impl PathState {
    /// Who may change this path (see [`writer::decide`]).
    pub fn writer(&self, path: &str) -> Result<Writer, ModuleError> {
        writer::decide(path, self.kind != Kind::Absent, self.chain.as_ref())
    }
}

pub use bosun_model::digest::sha256_hex;

/// Shell that prints the state of `path`. With `want_sha`, also the checksum, and the
/// contents (base64, one line) when they differ and are at most [`DIFF_LIMIT`] bytes.
/// The directories on the way come in the same `stat` ([`writer::chain_probe`]).
pub fn probe_path(path: &str, want_sha: Option<&str>) -> String {
    let p = quote(path);
    let mut s = format!(
        "p={p}\n__t=\n\
         if [ -L \"$p\" ]; then echo type=link; echo \"target=$(readlink \"$p\")\"\n\
         elif [ -d \"$p\" ]; then echo type=directory\n\
         elif [ -f \"$p\" ]; then echo type=file\n\
         elif [ -e \"$p\" ]; then echo type=other\n\
         else echo type=absent; __t=absent; fi\n\
         {}[ -z \"$__t\" ] || exit 0\n",
        writer::chain_probe(path, true)
    );
    if let Some(want) = want_sha {
        let want = quote(want);
        s.push_str(&format!(
            "if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then\n\
             [ -r \"$p\" ] || {{ echo \"cannot read $p\" >&2; exit 3; }}\n\
             h=$(sha256sum < \"$p\") || exit 3; h=${{h%% *}}; echo \"sha256=$h\"\n\
             if [ \"$h\" != {want} ] && [ \"$(stat -c %s \"$p\")\" -le {DIFF_LIMIT} ]; then\n\
             printf 'content_b64='; base64 -w0 < \"$p\"; echo\n\
             fi\nfi\n"
        ));
    }
    s
}

/// Shell that probes many paths at once, with a fixed number of processes whatever their
/// count: one `stat` for every path that exists and every directory on the way to each,
/// one `sha256sum` for every regular file with a wanted checksum (plus `readlink` per
/// symlink and `base64` per file that differs). [`split_probe_paths`] turns its output into
/// one [`probe_path`]-shaped observation per path. No path is ever printed, so odd names
/// cannot confuse the parser; the output is, per path, `T type`, `L target`, `C count` (of
/// its stat lines), then lines of `S chain-entry mode owner group size`, `H sha256`,
/// `B base64`. A symlinked directory on the way prints `X`: such paths are probed one by
/// one ([`probe_path`] resolves the link).
pub fn probe_paths(paths: &[(&str, Option<&str>)]) -> String {
    let mut s = String::from("set -f\nset --\n");
    for (path, _) in paths {
        let anc: Vec<String> = writer::ancestors(path).iter().map(|a| quote(a)).collect();
        s.push_str(&format!(
            "p={}\n\
             if [ -L \"$p\" ]; then echo 'T link'; printf 'L%s\\n' \"$(readlink \"$p\")\"\n\
             elif [ -d \"$p\" ]; then echo 'T directory'\n\
             elif [ -f \"$p\" ]; then echo 'T file'\n\
             elif [ -e \"$p\" ]; then echo 'T other'\n\
             else echo 'T absent'; fi\n\
             __c=0; __k=1\n\
             for __a in {} \"$p\"; do\n\
             if [ $__k = 1 ] && {{ [ -e \"$__a\" ] || [ -L \"$__a\" ]; }}; then\n\
             if [ \"$__a\" != \"$p\" ] && [ -L \"$__a\" ]; then echo X; fi\n\
             set -- \"$@\" \"$__a\"; __c=$((__c+1))\n\
             else __k=0; fi\n\
             done\necho \"C $__c\"\n",
            quote(path),
            anc.join(" ")
        ));
    }
    s.push_str("[ $# -eq 0 ] || stat -c 'S %f:%u:%g:%U %a %U %G %s' -- \"$@\" || exit 3\nset +f\n");
    let hashed: Vec<(String, &str)> = paths
        .iter()
        .filter_map(|(p, w)| w.map(|w| (quote(p), w)))
        .collect();
    if !hashed.is_empty() {
        let names: Vec<&str> = hashed.iter().map(|(p, _)| p.as_str()).collect();
        let wants: String = hashed.iter().map(|(_, w)| format!("{w} ")).collect();
        s.push_str(&format!(
            "set -- {}\nn=$#\n__w='{wants}'\n__h=''\n\
             for p do\n\
             w=${{__w%% *}}; __w=${{__w#* }}\n\
             if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then\n\
             [ -r \"$p\" ] || {{ echo \"cannot read $p\" >&2; exit 3; }}\n\
             set -- \"$@\" \"$p\"; __h=\"$__h$w \"\n\
             fi\ndone\nshift $n\n\
             [ $# -eq 0 ] || sha256sum -- \"$@\" | while IFS= read -r l; do\n\
             l=${{l#\\\\}}; h=${{l%% *}}; w=${{__h%% *}}; __h=${{__h#* }}\n\
             echo \"H $h\"\n\
             if [ \"$h\" != \"$w\" ] && [ \"$(stat -c %s -- \"$1\")\" -le {DIFF_LIMIT} ]; then\n\
             printf 'B'; base64 -w0 < \"$1\"; echo\nfi\nshift\ndone\n",
            names.join(" ")
        ));
    }
    s
}

/// Splits what [`probe_paths`] printed into one observation per path, each exactly what
/// [`probe_path`] would have printed. `None` when the output does not add up (a path
/// changed between the checks, a file could not be read, a symlink on the way): the caller
/// then probes those paths one by one.
pub fn split_probe_paths(paths: &[(&str, Option<&str>)], obs: &Observed) -> Option<Vec<Observed>> {
    if obs.rc != 0 {
        return None;
    }
    let mut lines = obs.stdout.lines().peekable();
    let mut kinds: Vec<(String, Option<String>, usize)> = Vec::with_capacity(paths.len());
    for _ in paths {
        let t = lines.next()?.strip_prefix("T ")?.to_string();
        let target = if t == "link" {
            Some(lines.next()?.strip_prefix('L')?.to_string())
        } else {
            None
        };
        let count = lines.next()?.strip_prefix("C ")?.parse().ok()?;
        kinds.push((t, target, count));
    }
    let mut outs: Vec<String> = Vec::with_capacity(paths.len());
    for ((path, _), (t, target, count)) in paths.iter().zip(&kinds) {
        let n = writer::ancestors(path).len();
        let exists = t != "absent";
        if (exists && *count != n + 1) || (!exists && *count > n) {
            return None;
        }
        let mut chain = Vec::with_capacity(*count);
        let mut own = None;
        for _ in 0..*count {
            let f: Vec<&str> = lines.next()?.strip_prefix("S ")?.split(' ').collect();
            if f.len() != 5 {
                return None;
            }
            chain.push(f[0]);
            own = Some(f);
        }
        let mut o = format!("type={t}\n");
        if let Some(tg) = target {
            o.push_str(&format!("target={tg}\n"));
        }
        if let (true, Some(f)) = (exists, own) {
            o.push_str(&format!(
                "mode={}\nowner={}\ngroup={}\nsize={}\n",
                f[1], f[2], f[3], f[4]
            ));
        }
        o.push_str(&format!("chain={}\n", chain.join(" ")));
        outs.push(o);
    }
    for (i, (_, want)) in paths.iter().enumerate() {
        if want.is_none() || kinds[i].0 != "file" {
            continue;
        }
        let h = lines.next()?.strip_prefix("H ")?;
        if h.len() != 64 {
            return None;
        }
        outs[i].push_str(&format!("sha256={h}\n"));
        if lines.peek().is_some_and(|l| l.starts_with('B')) {
            let b = lines.next()?;
            outs[i].push_str(&format!("content_b64={}\n", &b[1..]));
        }
    }
    if lines.next().is_some() {
        return None;
    }
    Some(
        outs.into_iter()
            .map(|stdout| Observed {
                rc: 0,
                stdout,
                stderr: String::new(),
            })
            .collect(),
    )
}

/// Reads what [`probe_path`] printed.
pub fn parse_path_state(obs: &Observed) -> Result<PathState, ModuleError> {
    if obs.rc != 0 {
        let why = obs.stderr.trim();
        return Err(ModuleError::new(if why.is_empty() {
            format!("probe failed with exit code {}", obs.rc)
        } else {
            why.to_string()
        }));
    }
    let kv = obs.kv();
    let kind = match kv.get("type").copied() {
        Some("absent") => Kind::Absent,
        Some("file") => Kind::File,
        Some("directory") => Kind::Directory,
        Some("link") => Kind::Link,
        Some("other") => Kind::Other,
        _ => {
            return Err(ModuleError::new(format!(
                "unexpected probe output: {:?}",
                obs.stdout
            )))
        }
    };
    let content = match kv.get("content_b64") {
        Some(b) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))?,
        ),
        None => None,
    };
    Ok(PathState {
        kind,
        mode: kv.get("mode").and_then(|m| u32::from_str_radix(m, 8).ok()),
        owner: kv.get("owner").map(|s| s.to_string()),
        group: kv.get("group").map(|s| s.to_string()),
        link_target: kv.get("target").map(|s| s.to_string()),
        size: kv.get("size").and_then(|s| s.parse().ok()),
        sha256: kv.get("sha256").map(|s| s.to_string()),
        content,
        chain: Chain::from_kv(&kv)?,
    })
}

/// Human lines for each attribute that differs (empty when all match).
pub fn attr_changes(state: &PathState, want: &Attrs) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = want.mode {
        if state.mode != Some(m) {
            out.push(format!(
                "mode {} → {:04o}",
                state.mode.map_or("-".into(), |m| format!("{m:04o}")),
                m
            ));
        }
    }
    if let Some(o) = &want.owner {
        if state.owner.as_deref() != Some(o) {
            out.push(format!(
                "owner {} → {o}",
                state.owner.as_deref().unwrap_or("-")
            ));
        }
    }
    if let Some(g) = &want.group {
        if state.group.as_deref() != Some(g) {
            out.push(format!(
                "group {} → {g}",
                state.group.as_deref().unwrap_or("-")
            ));
        }
    }
    out
}

/// `OWNER:GROUP`, `OWNER` or `:GROUP` for `chown`, quoted; `None` when neither is declared.
pub fn owner_spec(attrs: &Attrs) -> Option<String> {
    match (&attrs.owner, &attrs.group) {
        (Some(o), Some(g)) => Some(quote(&format!("{o}:{g}"))),
        (Some(o), None) => Some(quote(o)),
        (None, Some(g)) => Some(quote(&format!(":{g}"))),
        (None, None) => None,
    }
}

/// Shell that sets the declared attributes on `target` (a quoted word or `"$t"`), as
/// `writer` (after its [`Writer::prelude`]).
pub fn apply_attrs(target: &str, want: &Attrs, writer: &Writer) -> String {
    writer.attrs(target, owner_spec(want), want.mode)
}

/// Shell that atomically replaces `path` with `data`, as `writer` (prelude included).
///
/// `validate` is a command with `%s` standing for the temp file (as in Ansible); a failing
/// validation leaves the old file in place and fails the task. New files default to 0644
/// when no mode is declared; existing files keep their mode (and, written as root, their
/// owner) unless declared.
///
/// Written as another user ([`Writer::Owner`]), that user creates, fills and renames the
/// temp file, so nothing they plant redirects it. `validate` runs as root (validators often
/// need it) on a copy in a private root directory, never on a path that user controls; the
/// temp file is then filled from that very copy.
pub fn write_file(
    path: &str,
    data: &[u8],
    attrs: &Attrs,
    validate: Option<&str>,
    writer: &Writer,
) -> String {
    // Builtins wherever the shell has them: as root, a new file without a declared mode
    // costs one process (`mv`). The temp file is created empty with noclobber under a
    // random name, with umask 022 only when its final mode is the default 0644 (new file,
    // no mode), 077 otherwise, so contents are never readable by others before the final
    // chmod.
    let p = quote(path);
    let suffix: String =
        rand::Rng::sample_iter(rand::thread_rng(), &rand::distributions::Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
    let umask = if attrs.mode.is_some() { "077" } else { "022" };
    let mut s = writer.prelude(path);
    s.push_str(&format!(
        "p={p}\nd=${{p%/*}}; d=${{d:-/}}\n\
         [ -d \"$d\" ] || {{ echo \"directory $d does not exist\" >&2; exit 1; }}\n\
         t=\"$d/.bosun.{suffix}\"\n{}\
         if [ -e \"$p\" ] && [ ! -L \"$p\" ]; then __m=077; else __m={umask}; fi\n",
        bosun_model::shell::track_temp("\"$t\"")
    ));
    let contents = match std::str::from_utf8(data) {
        // Text: the printf builtin, no process. NUL cannot live in a shell word.
        Ok(text) if !text.contains('\0') => format!("printf '%s' {}", quote(text)),
        _ => format!("{{\n{}}}", emit_bytes(data)),
    };
    let validation = |file: &str| match validate {
        // The validator sees the temp path where the operator wrote %s.
        Some(v) => format!(
            "if ! out=$({} 2>&1); then echo \"validation failed: $out\" >&2; exit 1; fi\n",
            v.replace("%s", file)
        ),
        None => String::new(),
    };
    match writer {
        Writer::Root { .. } => {
            s.push_str(
                "umask $__m\nset -C; : > \"$t\" || exit 1; set +C\n\
                 trap 'rm -f \"$t\"' EXIT\n\
                 if [ -e \"$p\" ] && [ ! -L \"$p\" ]; then chmod --reference=\"$p\" -- \"$t\" && chown --reference=\"$p\" -- \"$t\" || exit 1; fi\n",
            );
            s.push_str(&format!("{contents} > \"$t\" || exit 1\n"));
            s.push_str(&apply_attrs("\"$t\"", attrs, writer));
            s.push_str(&validation("\"$t\""));
            s.push_str("mv -fT -- \"$t\" \"$p\" || exit 1\ntrap - EXIT\n");
        }
        Writer::Owner { .. } => {
            let fill = "__as sh -c 'umask \"$2\" && set -C && cat > \"$1\"' sh \"$t\" \"$__m\"";
            // The trap is set before the temp file exists: a failed fill leaves nothing behind.
            let mut cleanup = String::from("__as rm -f -- \"$t\"");
            if validate.is_some() {
                let name = quote(path.rsplit('/').next().unwrap_or("file"));
                s.push_str(&format!(
                    "__v=$(mktemp -d) || exit 1\n{}trap 'rm -rf -- \"$__v\"' EXIT\n__f=\"$__v\"/{name}\n\
                     (umask $__m && set -C && {contents} > \"$__f\") || exit 1\n",
                    bosun_model::shell::track_temp("\"$__v\"")
                ));
                // Root's own copy, in root's own directory: plain chown and chmod are safe.
                if let Some(spec) = owner_spec(attrs) {
                    s.push_str(&format!("chown -h -- {spec} \"$__f\" || exit 1\n"));
                }
                if let Some(m) = attrs.mode {
                    s.push_str(&format!("chmod {m:04o} -- \"$__f\" || exit 1\n"));
                }
                // Traversable, not listable: a validator that drops privileges can read it.
                s.push_str("chmod 711 \"$__v\" || exit 1\n");
                s.push_str(&validation("\"$__f\""));
                cleanup.push_str("; rm -rf -- \"$__v\"");
                s.push_str(&format!(
                    "trap '{cleanup}' EXIT\n{fill} < \"$__f\" || exit 1\n"
                ));
            } else {
                s.push_str(&format!(
                    "trap '{cleanup}' EXIT\n{contents} | {fill} || exit 1\n"
                ));
            }
            s.push_str(
                "if [ -e \"$p\" ] && [ ! -L \"$p\" ]; then __as chmod --reference=\"$p\" -- \"$t\" || exit 1; fi\n",
            );
            s.push_str(&apply_attrs("\"$t\"", attrs, writer));
            s.push_str("__as mv -fT -- \"$t\" \"$p\" || exit 1\ntrap - EXIT\n");
            if validate.is_some() {
                s.push_str("rm -rf -- \"$__v\"\n");
            }
        }
    }
    s
}

/// A diff for the plan, from what the probe brought back and what is wanted.
///
/// Binary or oversized contents become a one-line note rather than bytes.
pub fn content_diff(path: &str, state: &PathState, want: &[u8]) -> Diff {
    let before = match state.kind {
        Kind::File => Some(match &state.content {
            Some(c) => printable(c),
            None => format!(
                "<{} bytes, not shown: larger than {} KiB>",
                state.size.unwrap_or(0),
                DIFF_LIMIT / 1024
            ),
        }),
        _ => None,
    };
    Diff {
        path: path.to_string(),
        before,
        after: Some(if want.len() as u64 > DIFF_LIMIT {
            format!(
                "<{} bytes, not shown: larger than {} KiB>",
                want.len(),
                DIFF_LIMIT / 1024
            )
        } else {
            printable(want)
        }),
    }
}

fn printable(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if !s.contains('\0') => s.to_string(),
        _ => format!(
            "<binary, {} bytes, sha256 {}>",
            data.len(),
            &sha256_hex(data)[..16]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;

    #[test]
    fn probe_paths_matches_probe_path_one_by_one() {
        let dir = std::env::temp_dir().join(format!("bosun-pp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub dir")).unwrap();
        std::fs::write(dir.join("same.txt"), "same\n").unwrap();
        std::fs::write(dir.join("differs.txt"), "old\n").unwrap();
        std::fs::write(dir.join("new\nline's \\ odd"), "x").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        std::os::unix::fs::symlink("same.txt", dir.join("link")).unwrap();
        let d = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let same = sha256_hex(b"same\n");
        let x = sha256_hex(b"x");
        let cases: Vec<(String, Option<&str>)> = vec![
            (d("same.txt"), Some(same.as_str())),
            (d("absent"), Some(same.as_str())),
            (d("sub dir"), None),
            (d("differs.txt"), Some(same.as_str())),
            (d("link"), Some(same.as_str())),
            (d("new\nline's \\ odd"), Some(x.as_str())),
            (d("sub dir"), Some(same.as_str())),
            (d("empty"), None),
            (d("empty"), Some("00")),
            ("/dev/null".to_string(), None),
        ];
        let paths: Vec<(&str, Option<&str>)> =
            cases.iter().map(|(p, w)| (p.as_str(), *w)).collect();
        let together = run(&probe_paths(&paths));
        let split = split_probe_paths(&paths, &together)
            .unwrap_or_else(|| panic!("does not add up: {together:?}"));
        for ((p, w), got) in paths.iter().zip(&split) {
            let alone = run(&probe_path(p, *w));
            assert_eq!(got.stdout, alone.stdout, "{p:?}");
        }
        // A symlinked directory on the way: probed one by one, where the link is resolved.
        std::os::unix::fs::symlink(dir.join("sub dir"), dir.join("linked")).unwrap();
        let linked = d("linked/x");
        let via = [(linked.as_str(), None)];
        assert!(split_probe_paths(&via, &run(&probe_paths(&via))).is_none());
        let alone = run(&probe_path(&linked, None));
        let real = dir.join("sub dir");
        assert!(
            alone.stdout.contains(&format!("real={}\n", real.display())),
            "{}",
            alone.stdout
        );
        // An unreadable file or an odd output falls back instead of guessing.
        let bad = Observed::stdout("T file\nS 644 root root 1\n");
        assert!(split_probe_paths(&[("/a", Some("00"))], &bad).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn probe_reports_absent() {
        let st = parse_path_state(&run(&probe_path("/nonexistent/bosun/x", Some("00")))).unwrap();
        assert_eq!(st.kind, Kind::Absent);
    }

    #[test]
    fn probe_ships_content_only_when_checksum_differs() {
        let dir = std::env::temp_dir().join(format!("bosun-fo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.txt");
        std::fs::write(&f, "hello\n").unwrap();
        let path = f.to_str().unwrap();
        let same =
            parse_path_state(&run(&probe_path(path, Some(&sha256_hex(b"hello\n"))))).unwrap();
        assert_eq!(same.kind, Kind::File);
        assert_eq!(
            same.sha256.as_deref(),
            Some(sha256_hex(b"hello\n").as_str())
        );
        assert_eq!(same.content, None);
        let differ = parse_path_state(&run(&probe_path(path, Some("ffff")))).unwrap();
        assert_eq!(differ.content.as_deref(), Some(&b"hello\n"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_file_is_atomic_and_validated() {
        let dir = std::env::temp_dir().join(format!("bosun-wf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("conf");
        std::fs::write(&f, "old\n").unwrap();
        let path = f.to_str().unwrap();
        let attrs = Attrs {
            mode: Some(0o600),
            ..Default::default()
        };
        // A validator that rejects: the old file stays, no temp file is left.
        let w = Writer::root_for(path);
        let r = run(&write_file(
            path,
            b"new\n",
            &attrs,
            Some("grep -q nope %s"),
            &w,
        ));
        assert_ne!(r.rc, 0);
        assert!(r.stderr.contains("validation failed"));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let r = run(&write_file(
            path,
            b"new\n",
            &attrs,
            Some("grep -q new %s"),
            &w,
        ));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn attr_changes_lists_only_differences() {
        let st = PathState {
            kind: Kind::File,
            mode: Some(0o644),
            owner: Some("root".into()),
            group: Some("root".into()),
            link_target: None,
            size: Some(1),
            sha256: None,
            content: None,
            chain: None,
        };
        let want = Attrs {
            mode: Some(0o600),
            owner: Some("root".into()),
            group: Some("www".into()),
        };
        assert_eq!(
            attr_changes(&st, &want),
            vec!["mode 0644 → 0600", "group root → www"]
        );
    }

    #[test]
    fn binary_content_is_not_printed() {
        let st = PathState {
            kind: Kind::File,
            mode: None,
            owner: None,
            group: None,
            link_target: None,
            size: Some(2),
            sha256: None,
            content: Some(vec![0, 1]),
            chain: None,
        };
        let d = content_diff("/x", &st, b"text\n");
        assert!(d.before.unwrap().starts_with("<binary"));
        assert_eq!(d.after.as_deref(), Some("text\n"));
    }
}
