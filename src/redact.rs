//! Secrets never leave the engine: every event is scrubbed here, by value.
//!
//! Matching by value (not by variable name) also catches a secret after a template put it
//! into a config file, a diff line, a command's output or an error message.

use crate::event::Event;
use std::collections::BTreeSet;

pub const MASK: &str = "<redacted>";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(values: &BTreeSet<String>) -> Self {
        let mut secrets: BTreeSet<String> = BTreeSet::new();
        for v in values {
            if v.len() >= crate::inventory::MIN_SECRET_LEN {
                secrets.insert(v.clone());
            }
            // A multi-line secret (a private key) shows up line by line in diffs.
            if v.contains('\n') {
                for l in v.lines().map(str::trim).filter(|l| l.len() >= 8) {
                    secrets.insert(l.to_string());
                }
            }
        }
        let mut secrets: Vec<String> = secrets.into_iter().collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Redactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for sec in &self.secrets {
            if out.contains(sec.as_str()) {
                out = out.replace(sec.as_str(), MASK);
            }
        }
        out
    }

    /// Scrubs every string inside an event.
    pub fn event(&self, ev: Event) -> Event {
        if self.is_empty() {
            return ev;
        }
        let Ok(mut v) = serde_json::to_value(&ev) else {
            return ev;
        };
        self.value(&mut v);
        serde_json::from_value(v).unwrap_or(ev)
    }

    fn value(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.value(x)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_everywhere_in_an_event() {
        let r = Redactor::new(
            &[
                "hunter22".to_string(),
                "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----".to_string(),
            ]
            .into(),
        );
        let ev = Event::HostFailed {
            host: "h".into(),
            play: "p".into(),
            task: "t".into(),
            message: "password=hunter22 and +AAAABBBBCCCC".into(),
        };
        let s = serde_json::to_string(&r.event(ev)).unwrap();
        assert!(!s.contains("hunter22"));
        assert!(!s.contains("AAAABBBBCCCC"));
        assert!(s.contains("password=<redacted>"));
    }
}
