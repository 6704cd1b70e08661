//! `blockinfile`: a block of lines between two marker lines, kept as declared.
//!
//! The markers (`# BEGIN BOSUN MANAGED BLOCK` / `# END …` by default, `{mark}` in `marker`
//! standing for `marker_begin`/`marker_end`) find the block again on the next converge, so
//! only what is between them is bosun's. A block not there yet is inserted after the last
//! line matching `insertafter`, before the last matching `insertbefore` (`BOF`/`EOF`), or at
//! the end. Reading, planning and writing are `lineinfile`'s ([`super::lineinfile`]): diff,
//! the write refused if the file changed after the probe, `validate`, attributes.

use super::fileops::Attrs;
use super::lineinfile::{
    check_path, check_validate, insert_line, join_lines, split_lines, text_edit_module, Anchor,
    Edit, Line, State,
};
use super::{de_mode, parse_args, ArgError, ModuleError};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    #[serde(default)]
    block: String,
    #[serde(default = "default_marker")]
    marker: String,
    #[serde(default = "default_begin")]
    marker_begin: String,
    #[serde(default = "default_end")]
    marker_end: String,
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

fn default_marker() -> String {
    "# {mark} BOSUN MANAGED BLOCK".into()
}
fn default_begin() -> String {
    "BEGIN".into()
}
fn default_end() -> String {
    "END".into()
}

#[derive(Debug)]
pub struct BlockInFile {
    path: String,
    /// The block's lines, without line endings.
    block: Vec<String>,
    begin: String,
    end: String,
    state: State,
    anchor: Anchor,
    create: bool,
    attrs: Attrs,
    validate: Option<String>,
}

impl BlockInFile {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("blockinfile", args)?;
        check_path("blockinfile", &a.path)?;
        check_validate("blockinfile", &a.validate)?;
        if !a.marker.contains("{mark}") {
            return Err(ArgError::new("blockinfile: `marker` must contain {mark}")
                .hint("marker: \"# {mark} my block\" ({mark} becomes BEGIN, then END)"));
        }
        let begin = a.marker.replace("{mark}", &a.marker_begin);
        let end = a.marker.replace("{mark}", &a.marker_end);
        if begin == end || begin.contains('\n') || end.contains('\n') {
            return Err(ArgError::new(
                "blockinfile: the begin and end markers must be two different single lines",
            ));
        }
        let block: Vec<String> = a.block.lines().map(str::to_string).collect();
        if block.iter().any(|l| *l == begin || *l == end) {
            return Err(ArgError::new(
                "blockinfile: the block contains one of its own marker lines",
            ));
        }
        let anchor = Anchor::from_args(
            "blockinfile",
            a.insertafter.as_deref(),
            a.insertbefore.as_deref(),
        )?;
        Ok(BlockInFile {
            path: a.path,
            block,
            begin,
            end,
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

    /// The block as lines, markers included.
    fn wanted(&self) -> Vec<Line> {
        let mut v = vec![Line::new(self.begin.clone())];
        v.extend(self.block.iter().cloned().map(Line::new));
        v.push(Line::new(self.end.clone()));
        v
    }

    /// Pure: the edit to `content` (`None`: the file does not exist).
    fn edit(&self, content: Option<&str>) -> Result<Edit, ModuleError> {
        let p = &self.path;
        let Some(content) = content else {
            return match self.state {
                State::Absent => Ok(Edit::none(format!("{p} does not exist"))),
                State::Present if self.create => Ok(Edit::change(
                    join_lines(&self.wanted()),
                    format!("create {p} with the block"),
                )),
                State::Present => Err(ModuleError::new(format!(
                    "{p} does not exist; set `create: true` to create it"
                ))),
            };
        };
        let mut lines = split_lines(content);
        let begin = lines.iter().position(|l| l.text == self.begin);
        let end = begin.and_then(|b| {
            lines[b + 1..]
                .iter()
                .position(|l| l.text == self.end)
                .map(|i| b + 1 + i)
        });
        match (begin, end, self.state) {
            (Some(_), None, _) => Err(ModuleError::new(format!(
                "{p} has the line `{}` but no `{}` after it; fix the file by hand",
                self.begin, self.end
            ))),
            (Some(b), Some(e), State::Absent) => {
                lines.drain(b..=e);
                Ok(Edit::change(
                    join_lines(&lines),
                    format!("remove the block from {p}"),
                ))
            }
            (None, _, State::Absent) => Ok(Edit::none(format!("{p} has no such block"))),
            (Some(b), Some(e), State::Present) => {
                let have: Vec<&str> = lines[b + 1..e].iter().map(|l| l.text.as_str()).collect();
                if have == self.block.iter().map(String::as_str).collect::<Vec<_>>() {
                    return Ok(Edit::none(format!("the block in {p} is as declared")));
                }
                // Keep the file's line ending style for the new lines.
                let eol = lines[b].eol;
                let new: Vec<Line> = self
                    .block
                    .iter()
                    .map(|t| Line {
                        text: t.clone(),
                        eol: if eol.is_empty() { "\n" } else { eol },
                    })
                    .collect();
                lines.splice(b + 1..e, new);
                Ok(Edit::change(
                    join_lines(&lines),
                    format!("update the block in {p}"),
                ))
            }
            (None, _, State::Present) => {
                let at = self.anchor.position(&lines);
                for (i, l) in self.wanted().into_iter().enumerate() {
                    insert_line(&mut lines, at + i, l);
                }
                Ok(Edit::change(
                    join_lines(&lines),
                    format!("add the block to {p}"),
                ))
            }
        }
    }
}

text_edit_module!(BlockInFile);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> BlockInFile {
        BlockInFile::from_args(v).unwrap()
    }

    fn after(b: &BlockInFile, content: &str) -> String {
        b.edit(Some(content)).unwrap().content.expect("a change")
    }

    #[test]
    fn inserts_updates_and_then_leaves_the_block_alone() {
        let b = m(json!({"path": "/etc/x", "block": "a\nb\n"}));
        let once = after(&b, "head\n");
        assert_eq!(
            once,
            "head\n# BEGIN BOSUN MANAGED BLOCK\na\nb\n# END BOSUN MANAGED BLOCK\n"
        );
        assert!(b.edit(Some(&once)).unwrap().content.is_none(), "idempotent");
        let b2 = m(json!({"path": "/etc/x", "block": "c"}));
        assert_eq!(
            after(&b2, &format!("{once}tail\n")),
            "head\n# BEGIN BOSUN MANAGED BLOCK\nc\n# END BOSUN MANAGED BLOCK\ntail\n"
        );
    }

    #[test]
    fn anchors_custom_markers_and_absent() {
        let b = m(
            json!({"path": "/etc/x", "block": "x", "marker": "## {mark} ssh", "insertafter": "^Port"}),
        );
        assert_eq!(
            after(&b, "Port 22\nother\n"),
            "Port 22\n## BEGIN ssh\nx\n## END ssh\nother\n"
        );
        let gone = m(json!({"path": "/etc/x", "marker": "## {mark} ssh", "state": "absent"}));
        assert_eq!(
            after(&gone, "Port 22\n## BEGIN ssh\nx\n## END ssh\nother\n"),
            "Port 22\nother\n"
        );
        assert!(gone.edit(Some("Port 22\n")).unwrap().content.is_none());
        let bof = m(json!({"path": "/etc/x", "block": "x", "insertbefore": "BOF"}));
        assert!(after(&bof, "y\n").starts_with("# BEGIN"));
    }

    #[test]
    fn crlf_files_keep_their_line_endings() {
        let b = m(json!({"path": "/etc/x", "block": "new"}));
        let f = "a\r\n# BEGIN BOSUN MANAGED BLOCK\r\nold\r\n# END BOSUN MANAGED BLOCK\r\n";
        assert_eq!(
            after(&b, f),
            "a\r\n# BEGIN BOSUN MANAGED BLOCK\r\nnew\r\n# END BOSUN MANAGED BLOCK\r\n"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do_safely() {
        let b = m(json!({"path": "/etc/x", "block": "x"}));
        let e = b
            .edit(Some("# BEGIN BOSUN MANAGED BLOCK\nx\n"))
            .unwrap_err();
        assert!(e.0.contains("no `# END BOSUN MANAGED BLOCK`"), "{e}");
        assert!(b.edit(None).is_err(), "a missing file needs create");
        let c = m(json!({"path": "/etc/x", "block": "x", "create": true}));
        assert_eq!(
            c.edit(None).unwrap().content.as_deref(),
            Some("# BEGIN BOSUN MANAGED BLOCK\nx\n# END BOSUN MANAGED BLOCK\n")
        );
        assert!(BlockInFile::from_args(json!({"path": "/x", "marker": "no mark"})).is_err());
        assert!(BlockInFile::from_args(
            json!({"path": "/x", "block": "# END BOSUN MANAGED BLOCK"})
        )
        .is_err());
        assert!(BlockInFile::from_args(
            json!({"path": "/x", "insertafter": "a", "insertbefore": "b"})
        )
        .is_err());
    }
}
