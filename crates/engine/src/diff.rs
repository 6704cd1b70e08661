//! The one diff renderer: unified text with before/after headers, for every module.

use crate::event::FileDiff;
use crate::modules::Diff;
use bosun_model::redact::Redactor;
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

/// Masks what removed lines held of a secret's old value.
///
/// Value-based redaction cannot know a secret's *previous* value: when a password is
/// rotated, the `-` line of the diff would show it, whatever the line looks like
/// (`requirepass OLD`, `"password": "OLD"`, `redis://:OLD@host`). So in every change
/// block (removed lines followed by added lines) where an added line carries a secret
/// (or a value derived from one), each removed line is paired with an added line: the
/// one at the same place when the block removes as many lines as it adds. Within a pair
/// whose added line has a secret, the removed line's characters that correspond to the
/// secret (diffed character by character) are masked, grown to whole words. A removed
/// line without a clear partner is masked whole, unless it clearly is an ordinary edit of
/// a line without a secret.
pub fn mask_rotated_secrets(d: &mut FileDiff, redactor: &Redactor) {
    let m = redactor.secrets().snapshot();
    if m.is_empty() {
        return;
    }
    let mut lines: Vec<String> = d
        .unified
        .split_inclusive('\n')
        .map(str::to_string)
        .collect();
    let Some(first_hunk) = lines.iter().position(|l| l.starts_with("@@")) else {
        return;
    };
    let mut changed = false;
    let mut i = first_hunk;
    while i < lines.len() {
        // A change block: `-` lines, then `+` lines (`\ No newline` markers in between).
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut j = i;
        while j < lines.len() && (lines[j].starts_with('-') || lines[j].starts_with('\\')) {
            if lines[j].starts_with('-') {
                removed.push(j);
            }
            j += 1;
        }
        while j < lines.len() && (lines[j].starts_with('+') || lines[j].starts_with('\\')) {
            if lines[j].starts_with('+') {
                added.push(j);
            }
            j += 1;
        }
        if j == i {
            i += 1;
            continue;
        }
        i = j;
        let content = |l: &String| l[1..].trim_end_matches(['\n', '\r']).to_string();
        let adds: Vec<String> = added.iter().map(|&k| content(&lines[k])).collect();
        let secret: Vec<bool> = adds.iter().map(|a| !m.find(a).is_empty()).collect();
        if removed.is_empty() || !secret.contains(&true) {
            continue;
        }
        let paired = removed.len() == added.len();
        // Comparing every removed line with every added one is for small blocks only.
        let small = removed.len() * added.len() <= 400;
        for (n, &k) in removed.iter().enumerate() {
            let old = content(&lines[k]);
            let masked = match paired.then_some(n) {
                Some(p) if secret[p] => mask_against(&old, &adds[p], &m),
                Some(p) if ratio(&old, &adds[p]) >= 0.5 => continue,
                _ => {
                    let ordinary = small
                        && adds
                            .iter()
                            .zip(&secret)
                            .any(|(a, s)| !s && ratio(&old, a) >= 0.8);
                    if ordinary {
                        continue;
                    }
                    bosun_model::redact::MASK.to_string()
                }
            };
            if masked != old {
                let end = &lines[k][1 + old.len()..];
                lines[k] = format!("-{masked}{end}");
                changed = true;
            }
        }
    }
    if changed {
        d.unified = lines.concat();
    }
}

fn ratio(a: &str, b: &str) -> f32 {
    TextDiff::from_chars(a, b).ratio()
}

/// `old` with what corresponds to a secret of `new` masked.
fn mask_against(old: &str, new: &str, m: &bosun_model::redact::Matcher) -> String {
    let oc: Vec<char> = old.chars().collect();
    let nc: Vec<char> = new.chars().collect();
    // The secret's characters in `new` (byte ranges to char positions).
    let mut secret = vec![false; nc.len()];
    let starts: Vec<usize> = new.char_indices().map(|(b, _)| b).collect();
    for r in m.find(new) {
        for (ci, b) in starts.iter().enumerate() {
            if r.contains(b) {
                secret[ci] = true;
            }
        }
    }
    let near = |p: usize| (p > 0 && secret[p - 1]) || secret.get(p).copied().unwrap_or(false);
    let mut mark = vec![false; oc.len()];
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &oc, &nc) {
        let (tag, o, n) = op.as_tag_tuple();
        match tag {
            similar::DiffTag::Equal => {
                for (a, b) in o.zip(n) {
                    mark[a] = secret[b];
                }
            }
            similar::DiffTag::Delete | similar::DiffTag::Replace => {
                // What replaced it is (or touches) the secret: it was the old value.
                if n.clone().any(|b| secret[b]) || near(n.start) || near(n.end) {
                    o.for_each(|a| mark[a] = true);
                }
            }
            similar::DiffTag::Insert => {}
        }
    }
    bosun_model::taint::widen(&oc, &mut mark);
    let mut out = String::with_capacity(old.len());
    let mut in_mask = false;
    for (c, m) in oc.iter().zip(&mark) {
        if *m {
            if !in_mask {
                out.push_str(bosun_model::redact::MASK);
            }
            in_mask = true;
        } else {
            out.push(*c);
            in_mask = false;
        }
    }
    out
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
        assert!(
            d.unified.contains("-PASSWORD=<redacted>\n"),
            "{}",
            d.unified
        );
        assert!(d.unified.contains("USER=app"));
    }

    /// The old value of `secret` in `before` → `after`, with `new` as the new secret.
    fn rotate(before: &str, after: &str, new: &str) -> String {
        let r = Redactor::new(&[new.to_string()].into());
        let mut d = render(&Diff {
            path: "/etc/x".into(),
            before: Some(before.into()),
            after: Some(after.into()),
        });
        mask_rotated_secrets(&mut d, &r);
        d.unified
    }

    #[test]
    fn rotated_secret_is_masked_in_any_line_shape() {
        let u = rotate(
            "bind 0.0.0.0\nrequirepass 0ldPass-2024\nmaxmemory 1gb\n",
            "bind 0.0.0.0\nrequirepass N3wSecret-2025\nmaxmemory 1gb\n",
            "N3wSecret-2025",
        );
        assert!(!u.contains("0ldPass"), "{u}");
        assert!(u.contains("-requirepass <redacted>\n"), "{u}");
        let u = rotate(
            "{\n  \"user\": \"app\",\n  \"password\": \"hunter2-old\"\n}\n",
            "{\n  \"user\": \"app\",\n  \"password\": \"s3cr3t-new!\"\n}\n",
            "s3cr3t-new!",
        );
        assert!(!u.contains("hunter2"), "{u}");
        assert!(u.contains("-  \"password\": \"<redacted>\"\n"), "{u}");
        let u = rotate(
            "REDIS_URL=redis://:oldredispw@10.0.0.5:6379/0\n",
            "REDIS_URL=redis://:Fr3shRedisPw@10.0.0.5:6379/0\n",
            "Fr3shRedisPw",
        );
        assert!(!u.contains("oldredispw"), "{u}");
        assert!(
            u.contains("-REDIS_URL=redis://:<redacted>@10.0.0.5:6379/0\n"),
            "{u}"
        );
    }

    #[test]
    fn unclear_pairing_masks_the_whole_removed_line() {
        // Two lines became three, one of them with the new secret.
        let u = rotate(
            "a\npw oldvalue99 x\nb\n",
            "a\nnew line\npw zz-NEWSECRET-zz\nanother\nb\n",
            "NEWSECRET",
        );
        assert!(!u.contains("oldvalue99"), "{u}");
        assert!(u.contains("\n-<redacted>\n"), "{u}");
        // A removed line that is an ordinary edit of a line without a secret stays.
        let u = rotate(
            "listen 8080\npass oldvalue99\n",
            "listen 8081\npass NEWSECRET\nextra\n",
            "NEWSECRET",
        );
        assert!(u.contains("-listen 8080\n"), "{u}");
        assert!(!u.contains("oldvalue99"), "{u}");
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
