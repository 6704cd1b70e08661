//! `lineinfile` and `ini`: edit one line or one option of a text file, leave the rest alone.
//!
//! Both read the whole file in the probe (base64, so any byte survives the trip), compute the
//! new contents in plan — pure Rust, so every rule below is unit-tested without a host — and
//! write the result with [`fileops::write_file`] (temp file, attributes, `validate`, rename).
//! A plan is `Unchanged` exactly when the computed contents equal the current ones, and the
//! diff shows the edit in context.
//!
//! The write is guarded: apply refuses to replace a file whose checksum is no longer the one
//! the plan was computed from (another task, or a person, changed it in between). Writing
//! anyway would silently drop that change; failing says "re-run" instead.
//!
//! Files are edited as UTF-8 text of at most [`MAX_SIZE`] bytes; larger or binary files are
//! refused with a clear error rather than shipped around or mangled. Symlinks are refused too:
//! the atomic rename would replace the link with a regular file, so the task must name the
//! link's target.

use super::fileops::{self, attr_changes, Attrs, Kind, PathState};
use super::writer::Writer;
use super::{de_mode, parse_args, ArgError, Change, Diff, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// Files larger than this are not edited.
pub const MAX_SIZE: u64 = 1024 * 1024;

pub use super::support::Presence as State;

/// What apply does (shared by both modules), and who does it (see [`Writer`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Replace the file with `content`, provided it still is as probed.
    Write {
        content: Vec<u8>,
        expect: Expect,
        writer: Writer,
    },
    /// Contents are right; only mode/owner/group differ.
    Attrs { writer: Writer },
}

/// What the file must still look like when apply runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Sha256(String),
}

// ---------------------------------------------------------------------------------------
// Shared: probing, reading, planning and writing a whole text file.
// ---------------------------------------------------------------------------------------

/// [`fileops::probe_path`] plus the full contents of a regular file of at most
/// [`MAX_SIZE`] bytes.
pub(super) fn probe_text(path: &str) -> String {
    let mut s = fileops::probe_path(path, None);
    s.push_str(&format!(
        "if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then\n\
         [ -r \"$p\" ] || {{ echo \"cannot read $p\" >&2; exit 3; }}\n\
         if [ \"$(stat -c %s \"$p\")\" -le {MAX_SIZE} ]; then\n\
         printf 'content_b64='; base64 -w0 < \"$p\" || exit 3; echo\n\
         fi\nfi\n"
    ));
    s
}

/// The probed file: its state and, when it exists, its text.
pub(super) fn read_text(
    path: &str,
    obs: &Observed,
) -> Result<(PathState, Option<String>), ModuleError> {
    let st = fileops::parse_path_state(obs)?;
    match st.kind {
        Kind::Absent => Ok((st, None)),
        Kind::File => {
            let Some(bytes) = st.content.clone() else {
                return Err(ModuleError::new(format!(
                    "{path} is {} bytes, larger than the {} KiB this module edits; manage it with `copy` or `template`",
                    st.size.map_or("?".into(), |s| s.to_string()),
                    MAX_SIZE / 1024
                )));
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| ModuleError::new(format!("{path} is not UTF-8 text; refusing to edit it line by line")))?;
            Ok((st, Some(text)))
        }
        Kind::Link => Err(ModuleError::new(format!(
            "{path} is a symlink to {}; name the target file in `path` (writing would replace the link)",
            st.link_target.as_deref().unwrap_or("?")
        ))),
        k => Err(ModuleError::new(format!("{path} is a {}, not a file", k.as_str()))),
    }
}

/// The outcome of an edit computed in plan.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Edit {
    /// New contents; `None` when nothing changes.
    pub(super) content: Option<String>,
    /// Summary when something changes, reason when not.
    pub(super) what: String,
    pub(super) details: Vec<String>,
}

impl Edit {
    pub(super) fn none(reason: impl Into<String>) -> Self {
        Edit {
            content: None,
            what: reason.into(),
            details: Vec::new(),
        }
    }

    pub(super) fn change(content: String, summary: impl Into<String>) -> Self {
        Edit {
            content: Some(content),
            what: summary.into(),
            details: Vec::new(),
        }
    }
}

/// Turns an edit into a plan: contents first, then attributes.
pub(super) fn plan_edit(
    path: &str,
    st: &PathState,
    old: Option<&str>,
    edit: Edit,
    attrs: &Attrs,
) -> Result<Plan<Action>, ModuleError> {
    let attr_lines = if st.kind == Kind::Absent {
        Vec::new()
    } else {
        attr_changes(st, attrs)
    };
    match edit.content {
        Some(new) if Some(new.as_str()) != old => {
            let expect = match old {
                None => Expect::Absent,
                Some(o) => Expect::Sha256(fileops::sha256_hex(o.as_bytes())),
            };
            // Same rule as copy/template: big contents are not printed.
            let shown = |t: &str| {
                if t.len() as u64 > fileops::DIFF_LIMIT {
                    format!(
                        "<{} bytes, not shown: larger than {} KiB>",
                        t.len(),
                        fileops::DIFF_LIMIT / 1024
                    )
                } else {
                    t.to_string()
                }
            };
            let diff = Diff {
                path: path.to_string(),
                before: old.map(shown),
                after: Some(shown(&new)),
            };
            let writer = st.writer(path)?;
            let mut details = edit.details;
            details.extend(attr_lines);
            details.extend(writer.note());
            Ok(Plan::Change(
                Change::new(
                    edit.what,
                    Action::Write {
                        content: new.into_bytes(),
                        expect,
                        writer,
                    },
                )
                .with_details(details)
                .with_diff(diff),
            ))
        }
        _ if !attr_lines.is_empty() => {
            let writer = st.writer(path)?;
            let mut details = attr_lines;
            details.extend(writer.note());
            Ok(Plan::Change(
                Change::new(
                    format!("set attributes of {path}"),
                    Action::Attrs { writer },
                )
                .with_details(details),
            ))
        }
        Some(_) => Ok(Plan::unchanged(format!(
            "{path} already has the declared contents"
        ))),
        None => Ok(Plan::unchanged(edit.what)),
    }
}

/// Shell for either action.
pub(super) fn apply_edit(
    path: &str,
    action: &Action,
    attrs: &Attrs,
    validate: Option<&str>,
) -> String {
    let p = quote(path);
    match action {
        Action::Attrs { writer } => format!(
            "{}{}",
            writer.prelude(path),
            fileops::apply_attrs(&p, attrs, writer)
        ),
        Action::Write {
            content,
            expect,
            writer,
        } => {
            let guard = match expect {
                Expect::Absent => format!(
                    "if [ -e {p} ] || [ -L {p} ]; then echo {} >&2; exit 1; fi\n",
                    quote(&format!("{path} appeared after it was probed; not overwriting it (run again to plan against it)"))
                ),
                Expect::Sha256(h) => format!(
                    "h=$(sha256sum 2>/dev/null < {p}) || h=missing\n\
                     if [ \"${{h%% *}}\" != {h} ]; then echo {} >&2; exit 1; fi\n",
                    quote(&format!("{path} changed after it was probed; not overwriting it (run again to plan against the new contents)"))
                ),
            };
            format!(
                "{guard}{}",
                fileops::write_file(path, content, attrs, validate, writer)
            )
        }
    }
}

pub(super) fn check_path(module: &str, path: &str) -> Result<(), ArgError> {
    if !path.starts_with('/') {
        return Err(ArgError::new(format!(
            "{module}: path `{path}` must be absolute"
        )));
    }
    Ok(())
}

pub(super) fn check_validate(module: &str, v: &Option<String>) -> Result<(), ArgError> {
    match v {
        Some(v) if !v.contains("%s") => Err(ArgError::new(format!(
            "{module}: `validate` must contain %s (the path of the file to check)"
        ))
        .hint("e.g. validate: \"visudo -cf %s\"")),
        _ => Ok(()),
    }
}

/// Accepts a string, number or boolean as text (`value: 100` arrives as a number from YAML).
pub fn de_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(serde::de::Error::custom(
            "expected a string, number or boolean",
        )),
    }
}

/// One line of a file: its text and the line ending it had (`""` for a last line without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) eol: &'static str,
}

impl Line {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Line {
            text: text.into(),
            eol: "\n",
        }
    }
}

pub(super) fn split_lines(s: &str) -> Vec<Line> {
    s.split_inclusive('\n')
        .map(|l| {
            if let Some(t) = l.strip_suffix("\r\n") {
                Line {
                    text: t.to_string(),
                    eol: "\r\n",
                }
            } else if let Some(t) = l.strip_suffix('\n') {
                Line {
                    text: t.to_string(),
                    eol: "\n",
                }
            } else {
                Line {
                    text: l.to_string(),
                    eol: "",
                }
            }
        })
        .collect()
}

pub(super) fn join_lines(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| format!("{}{}", l.text, l.eol))
        .collect()
}

/// Inserts `line` at `at`, giving an unterminated line before it a newline.
pub(super) fn insert_line(lines: &mut Vec<Line>, at: usize, line: Line) {
    if at > 0 {
        if let Some(prev) = lines.get_mut(at - 1) {
            if prev.eol.is_empty() {
                prev.eol = "\n";
            }
        }
    }
    lines.insert(at, line);
}

pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The `Module` impl every whole-file text editor shares (`lineinfile`, `ini`, `replace`,
/// `blockinfile`): probe the file, compute the edit in plan with the type's own pure
/// `edit(content)`, write it guarded. The type needs `path`, `attrs` and `validate` fields.
macro_rules! text_edit_module {
    ($t:ty) => {
        impl $crate::modules::Module for $t {
            type Action = $crate::modules::lineinfile::Action;

            fn probe(&self) -> Option<String> {
                Some($crate::modules::lineinfile::probe_text(&self.path))
            }

            fn plan(
                &self,
                observed: &$crate::modules::Observed,
            ) -> Result<$crate::modules::Plan<Self::Action>, $crate::modules::ModuleError> {
                let (st, text) = $crate::modules::lineinfile::read_text(&self.path, observed)?;
                let edit = self.edit(text.as_deref())?;
                $crate::modules::lineinfile::plan_edit(
                    &self.path,
                    &st,
                    text.as_deref(),
                    edit,
                    &self.attrs,
                )
            }

            fn apply(&self, action: &Self::Action) -> String {
                $crate::modules::lineinfile::apply_edit(
                    &self.path,
                    action,
                    &self.attrs,
                    self.validate.as_deref(),
                )
            }

            fn effects(&self) -> $crate::modules::Effects {
                $crate::modules::Effects::Paths(vec![self.path.clone()])
            }
        }
    };
}
pub(super) use text_edit_module;

// ---------------------------------------------------------------------------------------
// lineinfile
// ---------------------------------------------------------------------------------------

/// Where `lineinfile` (or `blockinfile`) inserts what is not there yet.
#[derive(Debug, Clone)]
pub enum Anchor {
    Bof,
    Eof,
    /// After the last line matching.
    After(Regex),
    /// Before the last line matching.
    Before(Regex),
}

impl Anchor {
    /// From `insertafter` / `insertbefore` (at most one; `BOF`/`EOF` or a regex).
    pub(super) fn from_args(
        module: &str,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<Anchor, ArgError> {
        Ok(match (after, before) {
            (Some(_), Some(_)) => {
                return Err(ArgError::new(format!(
                    "{module}: give `insertafter` or `insertbefore`, not both"
                )))
            }
            (None, None) | (Some("EOF"), None) | (None, Some("EOF")) => Anchor::Eof,
            (Some("BOF"), None) | (None, Some("BOF")) => Anchor::Bof,
            (Some(r), None) => Anchor::After(compile(module, "insertafter", r)?),
            (None, Some(r)) => Anchor::Before(compile(module, "insertbefore", r)?),
        })
    }

    /// The index in `lines` to insert at (a regex that matches nothing: the end).
    pub(super) fn position(&self, lines: &[Line]) -> usize {
        let last = |re: &Regex| lines.iter().rposition(|l| re.is_match(&l.text));
        match self {
            Anchor::Bof => 0,
            Anchor::Eof => lines.len(),
            Anchor::After(re) => last(re).map_or(lines.len(), |i| i + 1),
            Anchor::Before(re) => last(re).unwrap_or(lines.len()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineArgs {
    path: String,
    #[serde(default, deserialize_with = "de_scalar")]
    line: Option<String>,
    regexp: Option<String>,
    #[serde(default)]
    state: State,
    insertafter: Option<String>,
    insertbefore: Option<String>,
    #[serde(default)]
    create: bool,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    validate: Option<String>,
}

/// `lineinfile`: make sure one line is (or is not) in a text file.
///
/// - `state: present` with `regexp`: the **last** line matching `regexp` is replaced by
///   `line` (as in Ansible). With no match, or without `regexp`: nothing happens when `line`
///   is already in the file verbatim, otherwise it is inserted after the last line matching
///   `insertafter`, before the last line matching `insertbefore` (`BOF`/`EOF` for the start
///   and end), or at the end — also when the anchor matches nothing.
/// - `state: absent`: every line matching `regexp` (or equal to `line`) is removed.
///
/// `regexp` and the anchors are Rust `regex` syntax, matched against each line without its
/// line ending (use `^`/`$` to anchor). A missing file is an error unless `create: true`
/// (for present) and nothing to do for absent.
#[derive(Debug)]
pub struct LineInFile {
    path: String,
    line: Option<String>,
    regexp: Option<Regex>,
    state: State,
    anchor: Anchor,
    create: bool,
    attrs: Attrs,
    validate: Option<String>,
}

fn compile(module: &str, what: &str, re: &str) -> Result<Regex, ArgError> {
    Regex::new(re).map_err(|e| {
        ArgError::new(format!(
            "{module}: `{what}` is not a valid regular expression: {e}"
        ))
        .hint("regexp uses Rust regex syntax (no look-around or backreferences)")
    })
}

impl LineInFile {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: LineArgs = parse_args("lineinfile", args)?;
        check_path("lineinfile", &a.path)?;
        check_validate("lineinfile", &a.validate)?;
        if let Some(l) = &a.line {
            if l.contains('\n') {
                return Err(ArgError::new("lineinfile: `line` must be a single line")
                    .hint("use `copy` or `template` for blocks of text"));
            }
        }
        match a.state {
            State::Present if a.line.is_none() => {
                return Err(ArgError::new("lineinfile: state present needs `line`"))
            }
            State::Absent if a.line.is_none() && a.regexp.is_none() => {
                return Err(ArgError::new("lineinfile: state absent needs `regexp` or `line`"))
            }
            State::Absent if a.insertafter.is_some() || a.insertbefore.is_some() || a.create => {
                return Err(ArgError::new(
                    "lineinfile: `insertafter`, `insertbefore` and `create` only apply to state: present",
                ))
            }
            _ => {}
        }
        let regexp = a
            .regexp
            .as_deref()
            .map(|r| compile("lineinfile", "regexp", r))
            .transpose()?;
        let anchor = Anchor::from_args(
            "lineinfile",
            a.insertafter.as_deref(),
            a.insertbefore.as_deref(),
        )?;
        Ok(LineInFile {
            path: a.path,
            line: a.line,
            regexp,
            state: a.state,
            anchor,
            create: a.create,
            attrs: Attrs {
                mode: a.mode,
                owner: a.owner,
                group: a.group,
            },
            validate: a.validate,
        })
    }

    /// Pure: the edit `lineinfile` makes to `content` (`None`: the file does not exist).
    fn edit(&self, content: Option<&str>) -> Result<Edit, ModuleError> {
        let p = &self.path;
        let Some(content) = content else {
            return match (self.state, &self.line) {
                (State::Absent, _) => Ok(Edit::none(format!("{p} does not exist"))),
                (State::Present, Some(line)) if self.create => Ok(Edit::change(
                    format!("{line}\n"),
                    format!("create {p} with the line"),
                )),
                (State::Present, _) => Err(ModuleError::new(format!(
                    "{p} does not exist; set `create: true` to create it"
                ))),
            };
        };
        let mut lines = split_lines(content);
        let matches = |l: &Line| match (&self.regexp, &self.line) {
            (Some(re), _) => re.is_match(&l.text),
            (None, Some(line)) => l.text == *line,
            (None, None) => false,
        };
        match self.state {
            State::Absent => {
                let before = lines.len();
                lines.retain(|l| !matches(l));
                let n = before - lines.len();
                Ok(if n == 0 {
                    Edit::none(format!("no line in {p} matches"))
                } else {
                    Edit::change(
                        join_lines(&lines),
                        format!("remove {} from {p}", plural(n, "line", "lines")),
                    )
                })
            }
            State::Present => {
                let line = self.line.clone().unwrap_or_default();
                if self.regexp.is_some() {
                    if let Some(i) = lines.iter().rposition(matches) {
                        if lines[i].text == line {
                            return Ok(Edit::none(format!("the line is in {p} (line {})", i + 1)));
                        }
                        lines[i].text = line;
                        return Ok(Edit::change(
                            join_lines(&lines),
                            format!("replace line {} in {p}", i + 1),
                        ));
                    }
                }
                if let Some(i) = lines.iter().position(|l| l.text == line) {
                    return Ok(Edit::none(format!("the line is in {p} (line {})", i + 1)));
                }
                let at = self.anchor.position(&lines);
                insert_line(&mut lines, at, Line::new(line));
                Ok(Edit::change(
                    join_lines(&lines),
                    format!("add a line to {p}"),
                ))
            }
        }
    }
}

text_edit_module!(LineInFile);

// ---------------------------------------------------------------------------------------
// ini
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IniArgs {
    path: String,
    section: Option<String>,
    option: String,
    #[serde(default, deserialize_with = "de_scalar")]
    value: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(default)]
    create: bool,
    separator: Option<String>,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    validate: Option<String>,
}

/// `ini`: one `option = value` in one section of an INI-style file.
///
/// Everything else — comments, blank lines, other sections, the order of lines — is kept.
/// Sections are `[name]` lines; without `section` the option lives at the top of the file,
/// before the first section. An option line is `option<sep>value` (or a bare `option`) with
/// optional blanks around the key; commented-out lines (`#`, `;`) are never options.
///
/// - present: the first occurrence in the section gets the value (written as
///   `option<separator>value`) and further occurrences in that section are removed, so the
///   file states one value; a line whose value already matches is left as written (`a=1`
///   is not churned into `a = 1`). A missing option goes after the section's last setting;
///   a missing section is appended at the end of the file.
/// - absent: every occurrence in the section is removed; the section header stays.
///
/// The same option in other sections is never touched. The separator defaults to `" = "`;
/// its non-blank part (`=` or `:`) is what splits keys from values when reading.
#[derive(Debug)]
pub struct Ini {
    path: String,
    section: Option<String>,
    option: String,
    value: Option<String>,
    state: State,
    create: bool,
    separator: String,
    delim: char,
    attrs: Attrs,
    validate: Option<String>,
}

impl Ini {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: IniArgs = parse_args("ini", args)?;
        check_path("ini", &a.path)?;
        check_validate("ini", &a.validate)?;
        let separator = a.separator.unwrap_or_else(|| " = ".to_string());
        let delim = match separator.trim() {
            "=" => '=',
            ":" => ':',
            other => {
                return Err(ArgError::new(format!(
                    "ini: separator {separator:?} must be `=` or `:` with optional blanks (got {other:?})"
                )))
            }
        };
        if let Some(s) = &a.section {
            if s.trim().is_empty() {
                return Err(ArgError::new("ini: `section` is empty").hint(
                    "omit `section` for options at the top of the file, before any section",
                ));
            }
            if s.contains(['\n', ']']) {
                return Err(ArgError::new(format!(
                    "ini: section {s:?} may not contain `]` or a newline"
                )));
            }
        }
        let o = a.option.trim();
        if o.is_empty() || o.contains(['\n', delim]) || o.starts_with(['[', '#', ';']) {
            return Err(ArgError::new(format!(
                "ini: option {:?} must be a non-empty key without `{delim}`, newlines, or a leading `[`, `#`, `;`",
                a.option
            )));
        }
        if a.value.as_deref().is_some_and(|v| v.contains('\n')) {
            return Err(ArgError::new("ini: `value` must be a single line"));
        }
        match a.state {
            State::Present if a.value.is_none() => {
                return Err(ArgError::new("ini: state present needs `value`"))
            }
            State::Absent if a.value.is_some() || a.create => {
                return Err(ArgError::new(
                    "ini: `value` and `create` only apply to state: present",
                ))
            }
            _ => {}
        }
        Ok(Ini {
            path: a.path,
            section: a.section.map(|s| s.trim().to_string()),
            option: o.to_string(),
            value: a.value,
            state: a.state,
            create: a.create,
            separator,
            delim,
            attrs: Attrs {
                mode: a.mode,
                owner: a.owner,
                group: a.group,
            },
            validate: a.validate,
        })
    }

    /// "PATH [section]" or "PATH" for messages.
    fn place(&self) -> String {
        match &self.section {
            Some(s) => format!("{} [{s}]", self.path),
            None => self.path.clone(),
        }
    }

    fn wanted_line(&self) -> Line {
        let v = self.value.as_deref().unwrap_or_default();
        Line::new(format!("{}{}{v}", self.option, self.separator).trim_end())
    }

    /// The key an option line sets, and its value (`None` for a bare key).
    fn key_value<'a>(&self, text: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let t = text.trim_start();
        if t.is_empty() || t.starts_with(['#', ';', '[']) {
            return None;
        }
        Some(match t.split_once(self.delim) {
            Some((k, v)) => (k.trim_end(), Some(v.trim())),
            None => (t.trim_end(), None),
        })
    }

    /// Pure: the edit `ini` makes to `content` (`None`: the file does not exist).
    fn edit(&self, content: Option<&str>) -> Result<Edit, ModuleError> {
        let (p, o, place) = (&self.path, &self.option, self.place());
        let want = self.value.as_deref().unwrap_or_default().trim();
        let Some(content) = content else {
            return match self.state {
                State::Absent => Ok(Edit::none(format!("{p} does not exist"))),
                State::Present if self.create => {
                    let mut lines = Vec::new();
                    if let Some(s) = &self.section {
                        lines.push(Line::new(format!("[{s}]")));
                    }
                    lines.push(self.wanted_line());
                    let what = match &self.section {
                        Some(s) => format!("create {p} with {o} in [{s}]"),
                        None => format!("create {p} with {o}"),
                    };
                    Ok(Edit::change(join_lines(&lines), what))
                }
                State::Present => Err(ModuleError::new(format!(
                    "{p} does not exist; set `create: true` to create it"
                ))),
            };
        };
        let mut lines = split_lines(content);
        // The lines of the target section, header excluded: [start, end).
        let range = section_range(&lines, self.section.as_deref());
        let Some((start, end)) = range else {
            return Ok(match self.state {
                State::Absent => Edit::none(format!(
                    "{p} has no section [{}]",
                    self.section.as_deref().unwrap_or("")
                )),
                State::Present => {
                    if let Some(last) = lines.last_mut() {
                        if last.eol.is_empty() {
                            last.eol = "\n";
                        }
                        if !last.text.trim().is_empty() {
                            lines.push(Line::new(""));
                        }
                    }
                    lines.push(Line::new(format!(
                        "[{}]",
                        self.section.as_deref().unwrap_or("")
                    )));
                    lines.push(self.wanted_line());
                    let mut e = Edit::change(join_lines(&lines), format!("set {o} in {place}"));
                    e.details.push(format!(
                        "new section [{}]",
                        self.section.as_deref().unwrap_or("")
                    ));
                    e.details.push(format!("{o} = {want}"));
                    e
                }
            });
        };
        let found: Vec<usize> = (start..end)
            .filter(|&i| self.key_value(&lines[i].text).is_some_and(|(k, _)| k == o))
            .collect();
        match self.state {
            State::Absent => {
                if found.is_empty() {
                    return Ok(Edit::none(format!("{o} is not set in {place}")));
                }
                for &i in found.iter().rev() {
                    lines.remove(i);
                }
                let mut e = Edit::change(join_lines(&lines), format!("remove {o} from {place}"));
                if found.len() > 1 {
                    e.details
                        .push(format!("{} removed", plural(found.len(), "line", "lines")));
                }
                Ok(e)
            }
            State::Present => {
                let Some((&first, dupes)) = found.split_first() else {
                    let at = (start..end)
                        .rev()
                        .find(|&i| self.key_value(&lines[i].text).is_some())
                        .map_or(start, |i| i + 1);
                    insert_line(&mut lines, at, self.wanted_line());
                    let mut e = Edit::change(join_lines(&lines), format!("set {o} in {place}"));
                    e.details.push(format!("{o} = {want} (new)"));
                    return Ok(e);
                };
                let now = self.key_value(&lines[first].text).and_then(|(_, v)| v);
                if now == Some(want) && dupes.is_empty() {
                    return Ok(Edit::none(format!("{o} is already {want:?} in {place}")));
                }
                let mut e = Edit::none("");
                if now != Some(want) {
                    e.details
                        .push(format!("{o}: {} → {want}", now.unwrap_or("(no value)")));
                    lines[first].text = self.wanted_line().text;
                }
                if !dupes.is_empty() {
                    e.details.push(format!(
                        "{} of {o} removed",
                        plural(dupes.len(), "duplicate line", "duplicate lines")
                    ));
                    for &i in dupes.iter().rev() {
                        lines.remove(i);
                    }
                }
                e.content = Some(join_lines(&lines));
                e.what = format!("set {o} in {place}");
                Ok(e)
            }
        }
    }
}

/// The line range of a section's body, or of the top of the file for `None`.
fn section_range(lines: &[Line], section: Option<&str>) -> Option<(usize, usize)> {
    fn header(l: &Line) -> Option<&str> {
        let t = l.text.trim();
        t.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .map(str::trim)
    }
    let start = match section {
        None => 0,
        Some(s) => lines.iter().position(|l| header(l) == Some(s))? + 1,
    };
    let end = lines[start..]
        .iter()
        .position(|l| header(l).is_some())
        .map_or(lines.len(), |i| start + i);
    Some((start, end))
}

text_edit_module!(Ini);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir};
    use crate::modules::Module;
    use base64::Engine;
    use serde_json::json;

    fn lif(v: Value) -> LineInFile {
        LineInFile::from_args(v).expect("valid args")
    }

    fn ini(v: Value) -> Ini {
        Ini::from_args(v).expect("valid args")
    }

    /// Probe output for a regular file with `content`.
    fn file(content: &str) -> Observed {
        let b64 = base64::engine::general_purpose::STANDARD.encode(content);
        Observed::stdout(&format!(
            "type=file\nmode=644\nowner=root\ngroup=root\nsize={}\ncontent_b64={b64}\n",
            content.len()
        ))
    }

    fn new_content(edit: Edit) -> String {
        edit.content.expect("a change")
    }

    // --- lineinfile: pure edits ---

    #[test]
    fn regexp_replaces_the_last_match() {
        let m = lif(json!({"path": "/etc/x", "regexp": "^port\\s*=", "line": "port = 5433"}));
        let e = m.edit(Some("port = 1\n# c\nport=2\nother\n")).unwrap();
        assert_eq!(e.what, "replace line 3 in /etc/x");
        assert_eq!(new_content(e), "port = 1\n# c\nport = 5433\nother\n");
    }

    #[test]
    fn matching_line_already_there_is_unchanged() {
        let m = lif(json!({"path": "/etc/x", "regexp": "^port", "line": "port = 5433"}));
        let e = m.edit(Some("port = 5433\n")).unwrap();
        assert_eq!(e, Edit::none("the line is in /etc/x (line 1)"));
        // A regexp that does not match the line itself stays idempotent.
        let m = lif(json!({"path": "/etc/x", "regexp": "^#port", "line": "port = 5433"}));
        assert!(m.edit(Some("a\nport = 5433\n")).unwrap().content.is_none());
    }

    #[test]
    fn missing_line_is_appended_at_eof() {
        let m = lif(json!({"path": "/etc/x", "line": "new"}));
        assert_eq!(new_content(m.edit(Some("a\nb\n")).unwrap()), "a\nb\nnew\n");
        // A last line without newline gets one before the new line.
        assert_eq!(new_content(m.edit(Some("a\nb")).unwrap()), "a\nb\nnew\n");
        assert_eq!(new_content(m.edit(Some("")).unwrap()), "new\n");
    }

    #[test]
    fn insert_after_and_before_use_the_last_match() {
        let m = lif(json!({"path": "/etc/x", "line": "new", "insertafter": "^\\[main\\]"}));
        assert_eq!(
            new_content(m.edit(Some("[main]\na\n[main]\nb\n")).unwrap()),
            "[main]\na\n[main]\nnew\nb\n"
        );
        let m = lif(json!({"path": "/etc/x", "line": "new", "insertbefore": "^include"}));
        assert_eq!(
            new_content(m.edit(Some("include a\nx\ninclude b\n")).unwrap()),
            "include a\nx\nnew\ninclude b\n"
        );
        // No match: end of file.
        assert_eq!(new_content(m.edit(Some("x\n")).unwrap()), "x\nnew\n");
        let m = lif(json!({"path": "/etc/x", "line": "#!/bin/sh", "insertbefore": "BOF"}));
        assert_eq!(
            new_content(m.edit(Some("echo\n")).unwrap()),
            "#!/bin/sh\necho\n"
        );
        let m = lif(json!({"path": "/etc/x", "line": "last", "insertafter": "EOF"}));
        assert_eq!(new_content(m.edit(Some("a\n")).unwrap()), "a\nlast\n");
        // Insertion after an unterminated final line.
        let m = lif(json!({"path": "/etc/x", "line": "new", "insertafter": "^b"}));
        assert_eq!(new_content(m.edit(Some("a\nb")).unwrap()), "a\nb\nnew\n");
    }

    #[test]
    fn absent_removes_every_match() {
        let m = lif(json!({"path": "/etc/x", "regexp": "^PermitRootLogin", "state": "absent"}));
        let e = m
            .edit(Some("PermitRootLogin yes\nPort 22\nPermitRootLogin no\n"))
            .unwrap();
        assert_eq!(e.what, "remove 2 lines from /etc/x");
        assert_eq!(new_content(e), "Port 22\n");
        let m = lif(json!({"path": "/etc/x", "line": "Port 22", "state": "absent"}));
        assert_eq!(
            new_content(m.edit(Some("Port 22\nPort 2222\n")).unwrap()),
            "Port 2222\n"
        );
        assert!(m.edit(Some("Port 2222\n")).unwrap().content.is_none());
        assert!(m.edit(None).unwrap().content.is_none());
    }

    #[test]
    fn crlf_line_endings_are_kept() {
        let m = lif(json!({"path": "/x", "regexp": "^a=", "line": "a=2"}));
        assert_eq!(
            new_content(m.edit(Some("a=1\r\nb=1\r\n")).unwrap()),
            "a=2\r\nb=1\r\n"
        );
    }

    #[test]
    fn missing_file_needs_create() {
        let m = lif(json!({"path": "/etc/x", "line": "a"}));
        assert!(m.edit(None).unwrap_err().0.contains("create: true"));
        let m = lif(json!({"path": "/etc/x", "line": "a", "create": true, "mode": "0600"}));
        match m.plan(&Observed::stdout("type=absent\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "create /etc/x with the line");
                let d = c.diff.as_ref().unwrap();
                assert_eq!(
                    (d.before.as_deref(), d.after.as_deref()),
                    (None, Some("a\n"))
                );
                assert_eq!(
                    c.action,
                    Action::Write {
                        content: b"a\n".to_vec(),
                        expect: Expect::Absent,
                        writer: Writer::root_for("/etc/x"),
                    }
                );
                let s = m.apply(&c.action);
                assert!(
                    s.starts_with("if [ -e /etc/x ] || [ -L /etc/x ]; then"),
                    "{s}"
                );
                assert!(s.contains("chmod 0600 -- \"$t\""), "{s}");
            }
            p => panic!("{p:?}"),
        }
    }

    // --- lineinfile: plan ---

    #[test]
    fn plan_carries_diff_and_checksum_guard() {
        let m = lif(json!({"path": "/etc/x", "regexp": "^a=", "line": "a=2"}));
        match m.plan(&file("a=1\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "replace line 1 in /etc/x");
                let d = c.diff.unwrap();
                assert_eq!(
                    (d.before.as_deref(), d.after.as_deref()),
                    (Some("a=1\n"), Some("a=2\n"))
                );
                let sha = fileops::sha256_hex(b"a=1\n");
                assert_eq!(
                    c.action,
                    Action::Write {
                        content: b"a=2\n".to_vec(),
                        expect: Expect::Sha256(sha.clone()),
                        writer: Writer::root_for("/etc/x"),
                    }
                );
                assert!(m.apply(&c.action).contains(&format!("!= {sha}")));
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            m.plan(&file("a=2\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn big_contents_are_not_printed_in_the_diff() {
        let m = lif(json!({"path": "/etc/big", "line": "tail"}));
        let big = "x\n".repeat(200 * 1024);
        match m.plan(&file(&big)).unwrap() {
            Plan::Change(c) => {
                let d = c.diff.unwrap();
                assert_eq!(
                    d.before.as_deref(),
                    Some("<409600 bytes, not shown: larger than 256 KiB>")
                );
                assert_eq!(
                    d.after.as_deref(),
                    Some("<409605 bytes, not shown: larger than 256 KiB>")
                );
                let Action::Write { content, .. } = c.action else {
                    panic!()
                };
                assert!(content.ends_with(b"x\ntail\n"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn attributes_alone_are_fixed_without_rewriting() {
        let m = lif(json!({"path": "/etc/x", "line": "a", "mode": "0600", "owner": "root"}));
        match m.plan(&file("a\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "set attributes of /etc/x");
                assert_eq!(c.details, vec!["mode 0644 → 0600"]);
                assert!(m.apply(&c.action).ends_with(
                    "fi\n__chown -- root /etc/x || exit 1\n__as chmod 0600 -- /etc/x || exit 1\n"
                ));
            }
            p => panic!("{p:?}"),
        }
        // With a content change the attributes ride along in the details.
        match m.plan(&file("b\n")).unwrap() {
            Plan::Change(c) => assert_eq!(c.details, vec!["mode 0644 → 0600"]),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn unusable_files_are_errors() {
        let m = lif(json!({"path": "/etc/x", "line": "a"}));
        let big = Observed::stdout("type=file\nmode=644\nowner=root\ngroup=root\nsize=5000000\n");
        assert!(m
            .plan(&big)
            .unwrap_err()
            .0
            .contains("larger than the 1024 KiB"));
        let bin = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]);
        let bin = Observed::stdout(&format!("type=file\nsize=2\ncontent_b64={bin}\n"));
        assert!(m.plan(&bin).unwrap_err().0.contains("not UTF-8"));
        let link = Observed::stdout("type=link\ntarget=/run/x\n");
        assert!(m.plan(&link).unwrap_err().0.contains("symlink to /run/x"));
        assert!(m
            .plan(&Observed::stdout("type=directory\n"))
            .unwrap_err()
            .0
            .contains("directory"));
        let failed = Observed {
            rc: 3,
            stdout: String::new(),
            stderr: "cannot read /etc/x\n".into(),
        };
        assert_eq!(m.plan(&failed).unwrap_err().0, "cannot read /etc/x");
    }

    #[test]
    fn lineinfile_args_are_checked() {
        let bad = [
            json!({"path": "rel", "line": "a"}),
            json!({"path": "/x"}),
            json!({"path": "/x", "state": "absent"}),
            json!({"path": "/x", "line": "a\nb"}),
            json!({"path": "/x", "line": "a", "regexp": "("}),
            json!({"path": "/x", "line": "a", "insertafter": "a", "insertbefore": "b"}),
            json!({"path": "/x", "line": "a", "insertafter": "["}),
            json!({"path": "/x", "line": "a", "validate": "visudo -c"}),
            json!({"path": "/x", "regexp": "a", "state": "absent", "create": true}),
            json!({"path": "/x", "line": "a", "backrefs": true}),
        ];
        for b in bad {
            assert!(LineInFile::from_args(b.clone()).is_err(), "accepted {b}");
        }
        let e =
            LineInFile::from_args(json!({"path": "/x", "line": "a", "regexp": "("})).unwrap_err();
        assert!(e.message.contains("regexp"), "{}", e.message);
        // Numbers are text too.
        assert_eq!(
            lif(json!({"path": "/x", "line": 42})).line.as_deref(),
            Some("42")
        );
    }

    // --- ini: pure edits ---

    const CONF: &str = "# top comment\nuser = root\n\n[main]\n; a comment\nport = 80\nhost=0.0.0.0\n\n[other]\nport = 1\n";

    #[test]
    fn ini_changes_an_existing_key() {
        let m =
            ini(json!({"path": "/etc/a.ini", "section": "main", "option": "port", "value": 8080}));
        let e = m.edit(Some(CONF)).unwrap();
        assert_eq!(e.what, "set port in /etc/a.ini [main]");
        assert_eq!(e.details, vec!["port: 80 → 8080"]);
        assert_eq!(new_content(e), CONF.replace("port = 80\n", "port = 8080\n"));
    }

    #[test]
    fn ini_key_in_other_sections_is_untouched() {
        let m =
            ini(json!({"path": "/etc/a.ini", "section": "other", "option": "host", "value": "::"}));
        let out = new_content(m.edit(Some(CONF)).unwrap());
        assert_eq!(out, format!("{CONF}host = ::\n"));
        // `port` is set in [other] only; [main]'s port = 80 stays.
        let m =
            ini(json!({"path": "/etc/a.ini", "section": "other", "option": "port", "value": "2"}));
        let out = new_content(m.edit(Some(CONF)).unwrap());
        assert!(out.contains("[main]\n; a comment\nport = 80\n"), "{out}");
        assert!(out.ends_with("[other]\nport = 2\n"), "{out}");
    }

    #[test]
    fn ini_same_value_is_unchanged_whatever_the_spacing() {
        let m = ini(
            json!({"path": "/etc/a.ini", "section": "main", "option": "host", "value": "0.0.0.0"}),
        );
        let e = m.edit(Some(CONF)).unwrap();
        assert_eq!(
            e,
            Edit::none("host is already \"0.0.0.0\" in /etc/a.ini [main]")
        );
    }

    #[test]
    fn ini_new_key_goes_after_the_sections_last_setting() {
        let m =
            ini(json!({"path": "/etc/a.ini", "section": "main", "option": "workers", "value": 4}));
        let out = new_content(m.edit(Some(CONF)).unwrap());
        assert!(
            out.contains("port = 80\nhost=0.0.0.0\nworkers = 4\n\n[other]"),
            "{out}"
        );
        // A section with only comments: right after the header.
        let m = ini(json!({"path": "/x", "section": "s", "option": "k", "value": "v"}));
        assert_eq!(
            new_content(m.edit(Some("[s]\n# c\n")).unwrap()),
            "[s]\nk = v\n# c\n"
        );
    }

    #[test]
    fn ini_new_section_is_appended() {
        let m = ini(json!({"path": "/etc/a.ini", "section": "new", "option": "k", "value": "v"}));
        let e = m.edit(Some(CONF)).unwrap();
        assert_eq!(e.details, vec!["new section [new]", "k = v"]);
        assert_eq!(new_content(e), format!("{CONF}\n[new]\nk = v\n"));
        // An unterminated last line is terminated first.
        assert_eq!(
            new_content(m.edit(Some("a=1")).unwrap()),
            "a=1\n\n[new]\nk = v\n"
        );
        assert_eq!(new_content(m.edit(Some("")).unwrap()), "[new]\nk = v\n");
    }

    #[test]
    fn ini_top_level_options_precede_sections() {
        let m = ini(json!({"path": "/etc/a.ini", "option": "user", "value": "app"}));
        let out = new_content(m.edit(Some(CONF)).unwrap());
        assert!(
            out.starts_with("# top comment\nuser = app\n\n[main]"),
            "{out}"
        );
        let m = ini(json!({"path": "/etc/a.ini", "option": "debug", "value": true}));
        let out = new_content(m.edit(Some("[main]\na = 1\n")).unwrap());
        assert_eq!(out, "debug = true\n[main]\na = 1\n");
    }

    #[test]
    fn ini_duplicates_collapse_and_absent_removes_all() {
        let m = ini(json!({"path": "/x", "section": "s", "option": "k", "value": "2"}));
        let e = m.edit(Some("[s]\nk = 1\nk = 2\n")).unwrap();
        assert_eq!(e.details, vec!["k: 1 → 2", "1 duplicate line of k removed"]);
        assert_eq!(new_content(e), "[s]\nk = 2\n");
        let m = ini(json!({"path": "/x", "section": "s", "option": "k", "state": "absent"}));
        let e = m
            .edit(Some("[s]\nk = 1\n# k = 0\nk=3\n[t]\nk = 1\n"))
            .unwrap();
        assert_eq!(e.what, "remove k from /x [s]");
        assert_eq!(new_content(e), "[s]\n# k = 0\n[t]\nk = 1\n");
        assert!(m.edit(Some("[t]\nk = 1\n")).unwrap().content.is_none());
        assert!(m.edit(None).unwrap().content.is_none());
    }

    #[test]
    fn ini_separator_and_bare_keys() {
        let m = ini(
            json!({"path": "/x", "section": "mysqld", "option": "skip-name-resolve", "value": "1"}),
        );
        let e = m.edit(Some("[mysqld]\nskip-name-resolve\n")).unwrap();
        assert_eq!(e.details, vec!["skip-name-resolve: (no value) → 1"]);
        let m = ini(json!({"path": "/x", "option": "key", "value": "v", "separator": ": "}));
        assert_eq!(new_content(m.edit(Some("key: old\n")).unwrap()), "key: v\n");
        assert!(Ini::from_args(
            json!({"path": "/x", "option": "k", "value": "v", "separator": " -> "})
        )
        .is_err());
    }

    #[test]
    fn ini_missing_file_with_and_without_create() {
        let m = ini(json!({"path": "/x.ini", "section": "s", "option": "k", "value": "v"}));
        assert!(m.edit(None).unwrap_err().0.contains("create: true"));
        let m = ini(
            json!({"path": "/x.ini", "section": "s", "option": "k", "value": "v", "create": true}),
        );
        match m.plan(&Observed::stdout("type=absent\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "create /x.ini with k in [s]");
                assert_eq!(c.diff.unwrap().after.as_deref(), Some("[s]\nk = v\n"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn ini_args_are_checked() {
        let bad = [
            json!({"path": "/x", "option": "k"}),
            json!({"path": "/x", "option": "", "value": "v"}),
            json!({"path": "/x", "option": "a=b", "value": "v"}),
            json!({"path": "/x", "option": "k", "value": "a\nb"}),
            json!({"path": "/x", "section": "", "option": "k", "value": "v"}),
            json!({"path": "/x", "section": "a]", "option": "k", "value": "v"}),
            json!({"path": "/x", "option": "k", "value": "v", "state": "absent"}),
            json!({"path": "/x", "option": "k", "value": [1]}),
        ];
        for b in bad {
            assert!(Ini::from_args(b.clone()).is_err(), "accepted {b}");
        }
    }

    // --- against this machine's sh ---

    #[test]
    fn probe_reads_file_and_apply_writes_it() {
        let dir = temp_dir("lif");
        let f = dir.join("app.ini");
        std::fs::write(&f, "[main]\nport = 80\n").unwrap();
        let path = f.to_str().unwrap();
        let m = ini(
            json!({"path": path, "section": "main", "option": "port", "value": 81, "mode": "0640"}),
        );
        let plan = m.plan(&run(&m.probe().unwrap())).unwrap();
        let Plan::Change(c) = plan else {
            panic!("{plan:?}")
        };
        // Someone edits the file in between: the guarded write refuses.
        std::fs::write(&f, "[main]\nport = 79\n").unwrap();
        let r = run(&m.apply(&c.action));
        assert_ne!(r.rc, 0);
        assert!(
            r.stderr.contains("changed after it was probed"),
            "{}",
            r.stderr
        );
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "[main]\nport = 79\n");
        // Deleted in between: refused the same way, quietly.
        std::fs::remove_file(&f).unwrap();
        let r = run(&m.apply(&c.action));
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("changed after it was probed"),
            "{}",
            r.stderr
        );
        std::fs::write(&f, "[main]\nport = 79\n").unwrap();
        // Re-probe, re-plan, apply, and the next plan is a no-op.
        let Plan::Change(c) = m.plan(&run(&m.probe().unwrap())).unwrap() else {
            panic!()
        };
        let r = run(&m.apply(&c.action));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "[main]\nport = 81\n");
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));

        // A missing file is created; the probe tells absent apart.
        let g = dir.join("new.conf");
        let m = lif(json!({"path": g.to_str().unwrap(), "line": "x=1", "create": true}));
        let Plan::Change(c) = m.plan(&run(&m.probe().unwrap())).unwrap() else {
            panic!()
        };
        assert_eq!(run(&m.apply(&c.action)).rc, 0);
        assert_eq!(std::fs::read_to_string(&g).unwrap(), "x=1\n");
        // An empty file probes as empty text, not as "too large".
        std::fs::write(&g, "").unwrap();
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Change(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
