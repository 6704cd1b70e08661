//! The one diff renderer: unified text with before/after headers, for every module.

use crate::event::FileDiff;
use crate::modules::Diff;
use similar::TextDiff;

/// Renders a module's [`Diff`] as a unified diff (`/dev/null` for an absent side).
pub fn render(d: &Diff) -> FileDiff {
    let before = d.before.as_deref().unwrap_or("");
    let after = d.after.as_deref().unwrap_or("");
    let a = if d.before.is_some() {
        format!("{} (before)", d.path)
    } else {
        "/dev/null".into()
    };
    let b = if d.after.is_some() {
        format!("{} (after)", d.path)
    } else {
        "/dev/null".into()
    };
    let unified = TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string();
    FileDiff {
        path: d.path.clone(),
        unified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_with_headers() {
        let d = Diff {
            path: "/etc/x".into(),
            before: Some("a\nb\nc\n".into()),
            after: Some("a\nB\nc\n".into()),
        };
        let u = render(&d).unified;
        assert!(
            u.starts_with("--- /etc/x (before)\n+++ /etc/x (after)\n"),
            "{u}"
        );
        assert!(u.contains("-b\n+B\n"));
    }

    #[test]
    fn new_file_diffs_against_dev_null() {
        let d = Diff {
            path: "/etc/new".into(),
            before: None,
            after: Some("hello\n".into()),
        };
        let u = render(&d).unified;
        assert!(
            u.starts_with("--- /dev/null\n+++ /etc/new (after)\n"),
            "{u}"
        );
        assert!(u.contains("+hello\n"));
    }
}
