//! The one diff renderer: unified text with before/after headers, for every module.

use crate::event::FileDiff;
use crate::modules::Diff;
use crate::redact::Redactor;
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

/// Masks removed lines that held an old value of a secret.
///
/// Value-based redaction cannot know a secret's *previous* value: when a password is
/// rotated, the diff's `-password = old` line would show it. A removed line whose key
/// (text before the first `=` or `:`) matches an added line that carries a secret is
/// masked as a whole.
pub fn mask_rotated_secrets(d: &mut FileDiff, redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    fn key(l: &str) -> Option<&str> {
        let i = l.find(['=', ':'])?;
        Some(l[..i].trim())
    }
    let secret_keys: Vec<&str> = d
        .unified
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .filter(|l| redactor.redact(l) != *l)
        .filter_map(|l| key(&l[1..]))
        .filter(|k| !k.is_empty())
        .collect();
    if secret_keys.is_empty() {
        return;
    }
    let masked: Vec<String> = d
        .unified
        .lines()
        .map(|l| {
            match (
                l.starts_with('-') && !l.starts_with("---"),
                key(l.get(1..).unwrap_or("")),
            ) {
                (true, Some(k)) if secret_keys.contains(&k) => {
                    format!("-{k} {}", crate::redact::MASK)
                }
                _ => l.to_string(),
            }
        })
        .collect();
    d.unified = masked.join("\n") + "\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_secret_old_value_is_masked() {
        let r = Redactor::new(&["new-secret-value".to_string()].into());
        let mut d = render(&Diff {
            path: "/etc/app.env".into(),
            before: Some("USER=app\nPASSWORD=old-secret-value\n".into()),
            after: Some("USER=app\nPASSWORD=new-secret-value\n".into()),
        });
        mask_rotated_secrets(&mut d, &r);
        assert!(!d.unified.contains("old-secret-value"), "{}", d.unified);
        assert!(d.unified.contains("-PASSWORD <redacted>"));
        assert!(d.unified.contains("USER=app"));
    }

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
