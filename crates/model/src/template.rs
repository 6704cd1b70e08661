//! Templates (minijinja) for task arguments, `when` expressions and template files.
//!
//! Undefined variables are errors (strict mode), except under `default(...)` and
//! `is defined`, so a typo in a variable name fails the converge before any host changes
//! instead of writing an empty string into a config file.
//!
//! A task string that is exactly one `{{ expression }}` keeps the expression's type:
//! `loop: "{{ packages }}"` yields a list, `port: "{{ pg_port }}"` a number.
//!
//! Every render (`render_str`, `render_value`, `render_file`, `eval`) carries secrecy
//! through: what it derives from a secret of the run's [`SecretSet`] is added to the set
//! (see [`crate::taint`]), so `{{ pw | urlencode }}` is redacted like `pw` itself.

use crate::redact::SecretSet;
use crate::taint::{self, Mapping, Taint};
use base64::Engine;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value as JValue};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one template environment of a run.
pub struct Templates {
    env: Environment<'static>,
    /// The run's secrets; derived values are added as templates make them.
    secrets: SecretSet,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Templates that track no secret.
    pub fn new() -> Self {
        Self::with_secrets(SecretSet::default())
    }

    /// Templates that add to `secrets` every value they derive from one of them.
    pub fn with_secrets(secrets: SecretSet) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Config files are not HTML: minijinja would JSON-escape `.yml`/`.json` templates
        // and HTML-escape `.html` ones by file name. Values go in as written.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // Debug info names the undefined variable in errors, in release builds too.
        env.set_debug(true);
        // A template file's final newline belongs in the file it renders.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Template files are registered by absolute path; the loader reads them on demand
        // so `{% include %}` of a sibling works too.
        env.set_loader(|name| match std::fs::read_to_string(name) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot read template {name}: {e}"),
            )),
        });
        env.add_filter("to_json", to_json);
        env.add_filter("to_nice_json", to_nice_json);
        env.add_filter("to_yaml", to_yaml);
        env.add_filter("b64encode", |s: String| {
            base64::engine::general_purpose::STANDARD.encode(s)
        });
        env.add_filter("b64decode", |s: String| -> Result<String, Error> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
            String::from_utf8(bytes)
                .map_err(|_| Error::new(ErrorKind::InvalidOperation, "b64decode: not UTF-8"))
        });
        env.add_filter("regex_replace", regex_replace);
        // Ansible's `extract`: `groups.db | map('extract', hostvars, 'address')`.
        env.add_filter(
            "extract",
            |key: JValue, container: JValue, attr: Option<String>| -> Result<JValue, Error> {
                let v = container.get_item(&key)?;
                if v.is_undefined() {
                    return Err(Error::new(
                        ErrorKind::UndefinedError,
                        format!("extract: no `{key}` in the container"),
                    ));
                }
                match attr {
                    Some(a) => {
                        let x = v.get_attr(&a)?;
                        if x.is_undefined() {
                            Err(Error::new(
                                ErrorKind::UndefinedError,
                                format!("extract: `{key}` has no `{a}`"),
                            ))
                        } else {
                            Ok(x)
                        }
                    }
                    None => Ok(v),
                }
            },
        );
        env.add_filter("regex_search", regex_search);
        env.add_filter("split", |s: String, sep: Option<String>| -> Vec<String> {
            match sep {
                Some(sep) => s.split(sep.as_str()).map(str::to_string).collect(),
                None => s.split_whitespace().map(str::to_string).collect(),
            }
        });
        env.add_filter("basename", |s: String| {
            Path::new(&s)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        env.add_filter("dirname", |s: String| {
            Path::new(&s)
                .parent()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        env.add_filter("quote", |s: String| crate::shell::quote(&s));
        env.add_filter("env_quote", |s: String| env_quote(&s));
        env.add_filter("sha256", |s: String| {
            crate::digest::sha256_hex(s.as_bytes())
        });
        env.add_filter("bool", |v: JValue| -> bool {
            match v.as_str() {
                Some(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1"),
                None => v.is_true(),
            }
        });
        env.add_filter("mandatory", |v: JValue| -> Result<JValue, Error> {
            if v.is_undefined() {
                Err(Error::new(
                    ErrorKind::UndefinedError,
                    "mandatory variable is undefined",
                ))
            } else {
                Ok(v)
            }
        });
        Templates { env, secrets }
    }

    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    /// Renders with `render`, and when the context holds a secret renders again with
    /// stand-ins for the secrets; what differs is registered as secret (see
    /// [`crate::taint`]). Without secrets in the run this is one render, as before.
    fn tracked<T>(
        &self,
        ctx: &JValue,
        render: impl Fn(&JValue) -> Result<T, Error>,
        derive: impl Fn(&T, &[T]) -> Vec<String>,
        whole: impl Fn(&T) -> Vec<String>,
    ) -> Result<T, Error> {
        let real = render(ctx);
        let matcher = self.secrets.snapshot();
        if matcher.is_empty() {
            return real;
        }
        let first = Taint::new(matcher.clone(), Mapping::All);
        let r1 = render(&first.context(ctx));
        if !first.touched() {
            // No secret was read: the output cannot hold one.
            return real;
        }
        let second = Taint::new(matcher, Mapping::Alnum);
        let r2 = render(&second.context(ctx));
        let real = match real {
            Ok(v) => v,
            Err(e) => {
                // An error message can quote what the template made of a secret: where
                // the stand-in renders fail too, what differs in their messages is secret.
                let msgs: Vec<String> = [&r1, &r2]
                    .into_iter()
                    .filter_map(|r| r.as_ref().err().map(describe))
                    .collect();
                let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
                if !msgs.is_empty() {
                    self.secrets.add(taint::derived(&describe(&e), &msgs));
                }
                return Err(e);
            }
        };
        let outs: Vec<T> = [r1, r2].into_iter().filter_map(Result::ok).collect();
        // No stand-in render worked (the template depends on the secret's exact shape):
        // nothing says which part came from the secret, so all of it is secret.
        let found = if outs.is_empty() {
            whole(&real)
        } else {
            derive(&real, &outs)
        };
        self.secrets.add(found);
        Ok(real)
    }

    fn tracked_str(
        &self,
        ctx: &JValue,
        render: impl Fn(&JValue) -> Result<String, Error>,
    ) -> Result<String, Error> {
        self.tracked(
            ctx,
            render,
            |real, outs| taint::derived(real, &outs.iter().map(String::as_str).collect::<Vec<_>>()),
            |real| taint::whole(real),
        )
    }

    fn tracked_json(
        &self,
        ctx: &JValue,
        render: impl Fn(&JValue) -> Result<Value, Error>,
    ) -> Result<Value, Error> {
        self.tracked(
            ctx,
            render,
            |real, outs| {
                let mut found = Vec::new();
                taint::derived_json(real, &outs.iter().collect::<Vec<_>>(), &mut found);
                found
            },
            |real| {
                let mut found = Vec::new();
                taint::whole_json(real, &mut found);
                found
            },
        )
    }

    /// Renders one string with `ctx`; strings without template syntax are returned as-is.
    pub fn render_str(&self, s: &str, ctx: &JValue) -> Result<String, Error> {
        if !has_syntax(s) {
            return Ok(s.to_string());
        }
        self.tracked_str(ctx, |c| self.env.render_str(s, c))
    }

    /// Renders every string leaf of `v`; a string that is one `{{ expr }}` keeps its type.
    pub fn render_value(&self, v: &Value, ctx: &JValue) -> Result<Value, Error> {
        Ok(match v {
            Value::String(s) => match single_expression(s) {
                Some(expr) => {
                    self.tracked_json(ctx, |c| to_json_value(&self.eval_untracked(expr, c)?))?
                }
                None => Value::String(self.render_str(s, ctx)?),
            },
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_value(x, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => {
                let mut m = serde_json::Map::new();
                for (k, x) in o {
                    m.insert(self.render_str(k, ctx)?, self.render_value(x, ctx)?);
                }
                Value::Object(m)
            }
            other => other.clone(),
        })
    }

    /// Evaluates an expression; `{{ }}` around it is allowed. What it derives from a
    /// secret is registered, compared in its JSON form (or as text when it has none).
    pub fn eval(&self, expr: &str, ctx: &JValue) -> Result<JValue, Error> {
        let as_json =
            |v: &JValue| to_json_value(v).unwrap_or_else(|_| Value::String(v.to_string()));
        self.tracked(
            ctx,
            |c| self.eval_untracked(expr, c),
            |real, outs| {
                let outs: Vec<Value> = outs.iter().map(as_json).collect();
                let mut found = Vec::new();
                taint::derived_json(&as_json(real), &outs.iter().collect::<Vec<_>>(), &mut found);
                found
            },
            |real| {
                let mut found = Vec::new();
                taint::whole_json(&as_json(real), &mut found);
                found
            },
        )
    }

    fn eval_untracked(&self, expr: &str, ctx: &JValue) -> Result<JValue, Error> {
        let e = single_expression(expr).unwrap_or(expr);
        self.env.compile_expression(e)?.eval(ctx)
    }

    /// Evaluates a condition (`when`, `until`, `changed_when`) to a boolean. A boolean is
    /// not printed as a value, so nothing is tracked.
    pub fn test(&self, expr: &str, ctx: &JValue) -> Result<bool, Error> {
        Ok(self.eval_untracked(expr, ctx)?.is_true())
    }

    /// Top-level variable names an expression reads (empty when it does not parse; the
    /// real evaluation reports that error with its place).
    pub fn expression_names(&self, expr: &str) -> Vec<String> {
        let e = single_expression(expr).unwrap_or(expr);
        self.env
            .compile_expression(e)
            .map(|c| c.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default()
    }

    /// Top-level variable names a template string reads.
    pub fn template_names(&self, text: &str) -> Vec<String> {
        self.env
            .template_from_str(text)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default()
    }

    /// Renders a template file.
    pub fn render_file(&self, path: &Path, ctx: &JValue) -> Result<String, Error> {
        let name = path.to_string_lossy();
        let t = self.env.get_template(&name)?;
        self.tracked_str(ctx, |c| t.render(c))
    }
}

/// Any serializable value as a template value.
pub fn jv<T: serde::Serialize>(v: T) -> JValue {
    JValue::from(minijinja::value::Serde(v))
}

/// True when `s` contains template syntax.
pub fn has_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// `"{{ expr }}"` → `Some("expr")` when the whole string is one expression. Text around it,
/// whitespace included (`"{{ key }}\n"`), makes it a string template: the text is kept.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim())
}

/// minijinja value → JSON, for module arguments.
pub fn to_json_value(v: &JValue) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "expression is undefined",
        ));
    }
    if let Some(p) = v.downcast_object_ref::<Pending>() {
        return Ok(Value::String(p.to_string()));
    }
    serde_json::to_value(v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot convert value: {e}"),
        )
    })
}

fn to_json(v: JValue) -> Result<String, Error> {
    let j = to_json_value(&v)?;
    serde_json::to_string(&j).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn to_nice_json(v: JValue) -> Result<String, Error> {
    let j = to_json_value(&v)?;
    serde_json::to_string_pretty(&j)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn to_yaml(v: JValue) -> Result<String, Error> {
    let j = to_json_value(&v)?;
    serde_saphyr::to_string(&j).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// Words that read the same unquoted in both readers of an environment file.
fn env_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '=' | ',' | '@')
}

/// `s` as the value of a `KEY=value` line of an environment file that two readers parse
/// back to exactly `s`: systemd (`EnvironmentFile=`) and a POSIX shell
/// (`set -a; . FILE`).
///
/// A plain word (letters, digits, `/._-+:=,@`) is written as it is. Anything else goes in
/// double quotes with `\`, `"`, `$` and `` ` `` preceded by a backslash; every other
/// character, newlines included, is written as it is. The shell's single quotes would
/// not do: systemd reads the `\'` of `'\''` as an unquoted part, after which it takes
/// quotes literally, so `'it'\''s'` comes out as `it''s'`.
///
/// The rules relied on:
/// - sh (POSIX, "Double-Quotes", XCU 2.2.3): inside double quotes only `$`, `` ` `` and
///   `\` are special; a backslash is removed before `$` `` ` `` `"` `\` and newline,
///   kept before anything else. Nothing escaped here reaches a backslash-newline pair.
/// - systemd (systemd.exec(5), `EnvironmentFile=`; the parser is
///   `parse_env_file_internal` in systemd's `src/basic/env-file.c`): a double-quoted
///   value may span lines and holds every character as it is except `"` and `\`; a
///   backslash before one of `"` `\` `` ` `` `$` (its `SHELL_NEED_ESCAPE`) yields that
///   character, before a newline nothing, before anything else both. `$` is never
///   expanded. Values must be valid UTF-8 with no NUL and no Unicode noncharacter
///   (`unichar_is_valid`: U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), or systemd refuses the file.
///
/// Those last ones are refused here, with a message that does not quote the value (it is
/// often a secret).
pub fn env_quote(s: &str) -> Result<String, Error> {
    if let Some(bad) = s.chars().find(|&c| {
        c == '\0' || ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32) & 0xFFFE == 0xFFFE
    }) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "env_quote: the value holds U+{:04X}, which an environment file cannot carry",
                bad as u32
            ),
        ));
    }
    if !s.is_empty() && s.chars().all(env_plain) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

fn regex_replace(s: String, pat: String, rep: String) -> Result<String, Error> {
    let re = regex::Regex::new(&pat)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("regex_replace: {e}")))?;
    // Ansible writes backreferences as \1; the regex crate as ${1}.
    let rep = regex::Regex::new(r"\\(\d+)")
        .map(|r| r.replace_all(&rep, "$${$1}").into_owned())
        .unwrap_or(rep);
    Ok(re.replace_all(&s, rep.as_str()).into_owned())
}

fn regex_search(s: String, pat: String) -> Result<JValue, Error> {
    let re = regex::Regex::new(&pat)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("regex_search: {e}")))?;
    Ok(re
        .find(&s)
        .map(|m| JValue::from(m.as_str()))
        .unwrap_or(JValue::from(())))
}

/// A value that will only exist at run time (a registered result, a fact), used to check
/// templates before any host is contacted. Any attribute of it is pending too.
#[derive(Debug)]
pub struct Pending(pub String);

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} at run time>", self.0)
    }
}

impl Object for Pending {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        Some(JValue::from_object(Pending(format!("{}.{key}", self.0))))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_ref(), f)
    }
}

/// One line describing a template error: the message and, for files, the line in them.
pub fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let (Some(name), Some(line)) = (e.name(), e.line()) {
        if name != "<string>" && name != "<expression>" {
            s.push_str(&format!(" (at {name}:{line})"));
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// The file and line of an error inside a template file, when it has one.
pub fn file_place(e: &Error) -> Option<(PathBuf, usize)> {
    let name = e.name()?;
    if name.starts_with('<') {
        return None;
    }
    Some((PathBuf::from(name), e.line().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ctx(v: Value) -> JValue {
        jv(&v)
    }

    #[test]
    fn single_expression_keeps_type() {
        let t = Templates::new();
        let c = ctx(json!({"pkgs": ["a", "b"], "port": 5432}));
        assert_eq!(
            t.render_value(&json!("{{ pkgs }}"), &c).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            t.render_value(&json!("{{ port }}"), &c).unwrap(),
            json!(5432)
        );
        assert_eq!(
            t.render_value(&json!("p={{ port }}"), &c).unwrap(),
            json!("p=5432")
        );
        // A key file's final newline is text around the expression: kept.
        assert_eq!(
            t.render_value(&json!("{{ port }}\n"), &c).unwrap(),
            json!("5432\n")
        );
    }

    #[test]
    fn undefined_is_an_error_but_default_works() {
        let t = Templates::new();
        let c = ctx(json!({}));
        let e = t.render_str("{{ nope }}", &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UndefinedError);
        assert_eq!(t.render_str("{{ nope | default('x') }}", &c).unwrap(), "x");
        assert!(!t.test("nope is defined", &c).unwrap());
    }

    #[test]
    fn filters() {
        let t = Templates::new();
        let c = ctx(json!({"m": {"a": 1}, "s": "a-b-c"}));
        assert_eq!(t.render_str("{{ m | to_json }}", &c).unwrap(), r#"{"a":1}"#);
        assert_eq!(t.render_str("{{ 'hi' | b64encode }}", &c).unwrap(), "aGk=");
        assert_eq!(
            t.render_str("{{ s | regex_replace('-(\\\\w)', '_\\\\1') }}", &c)
                .unwrap(),
            "a_b_c"
        );
        assert_eq!(
            t.render_str("{{ s | split('-') | join(',') }}", &c)
                .unwrap(),
            "a,b,c"
        );
        assert_eq!(
            t.render_str("{{ m | to_yaml }}", &c).unwrap().trim(),
            "a: 1"
        );
    }

    #[test]
    fn yaml_templates_are_not_escaped() {
        let dir = std::env::temp_dir().join(format!("bosun-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.yml.j2");
        std::fs::write(&f, "a: {{ s }}\nb: {{ l | to_json }}\n").unwrap();
        let out = Templates::new()
            .render_file(&f, &ctx(json!({"s": "10.0.0.1", "l": ["x"]})))
            .unwrap();
        assert_eq!(out, "a: 10.0.0.1\nb: [\"x\"]\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pending_values_render_and_nest() {
        let t = Templates::new();
        let c = JValue::from(std::collections::BTreeMap::from([(
            "r".to_string(),
            JValue::from_object(Pending("r".into())),
        )]));
        assert_eq!(
            t.render_str("{{ r.stdout }}", &c).unwrap(),
            "<r.stdout at run time>"
        );
        assert!(t.test("r.rc == 0 or true", &c).unwrap());
    }

    const PW: &str = "p@ss+w/rd=Zq9";

    /// Templates and a redactor sharing one set of secrets, and a context holding them.
    fn tracking() -> (Templates, crate::redact::Redactor, JValue) {
        let set = SecretSet::new(
            &[PW, "q\"uo\\te-Pw", "it's-Secret", "1234"]
                .map(String::from)
                .into(),
        );
        let c = ctx(json!({
            "pw": PW, "jpw": "q\"uo\\te-Pw", "apos": "it's-Secret", "pin": 1234,
            "host": "db1", "port": 51234, "l": ["a", PW],
            "nested": {"db": {"password": PW, "user": "app"}},
        }));
        let r = crate::redact::Redactor::shared(set.clone());
        (Templates::with_secrets(set), r, c)
    }

    /// Renders `expr` between non-secret text; the value it derives must be registered
    /// (so it is redacted), and the text around it must survive redaction.
    fn assert_tracked(expr: &str) {
        let (t, r, c) = tracking();
        let tpl = format!("host={{{{ host }}}} v={expr} end");
        // What the expression prints, computed without tracking.
        let plain = Templates::new().render_str(expr, &c).unwrap();
        let out = t.render_str(&tpl, &c).unwrap();
        assert_eq!(out, format!("host=db1 v={plain} end"));
        let red = r.redact(&out);
        assert!(
            red.starts_with("host=db1 v=") && red.ends_with(" end"),
            "{expr}: {red}"
        );
        assert!(red.contains(crate::redact::MASK), "{expr}: {red}");
        assert!(!red.contains(&plain), "{expr}: `{plain}` leaks in {red}");
        // Nothing of more than two characters of the derived value is left in the clear
        // but what the expression itself wrote around the secret.
        let visible = red
            .trim_start_matches("host=db1 v=")
            .trim_end_matches(" end");
        for piece in visible.split(crate::redact::MASK) {
            assert!(piece.len() <= 5, "{expr}: `{piece}` left in {red}");
        }
    }

    #[test]
    fn values_derived_from_a_secret_are_redacted() {
        for expr in [
            "{{ pw | urlencode }}",
            "{{ jpw | to_json }}",
            "{{ pw | to_json }}",
            "{{ apos | quote }}",
            "{{ pw | b64encode }}",
            "{{ pw | upper }}",
            "{{ pw | lower }}",
            "{{ pw | replace('@', '-at-') }}",
            "{{ pw | regex_replace('[a-z]', '') }}",
            "{{ pw[1:5] }}",
            "{{ pw[::-1] }}",
            "{{ 'pre-' ~ pw ~ '-post' }}",
            "{{ '%s!' | format(pw) }}",
            "{{ l | join(',') }}",
            "{{ nested.db.password | b64encode | upper }}",
            "{{ pw | sha256 }}",
            "{{ apos | env_quote }}",
            "{{ jpw | env_quote }}",
            "{{ ('x$ ' ~ pw) | env_quote }}",
            "{% filter env_quote %}u:{{ jpw | urlencode }}@h{% endfilter %}",
            "{{ pw | list | reverse | join }}",
            "{% for c in pw %}{{ c }}.{% endfor %}",
        ] {
            assert_tracked(expr);
        }
        let (t, r, c) = tracking();
        let out = t.render_str("{{ nested | to_json }}", &c).unwrap();
        assert_eq!(
            r.redact(&out),
            r#"{"db":{"password":"<redacted>","user":"app"}}"#
        );
    }

    #[test]
    fn forms_printed_together_are_redacted_alone_too() {
        let (t, r, c) = tracking();
        let out = t
            .render_str("echo {{ pw | urlencode }} {{ pw | upper }}", &c)
            .unwrap();
        assert_eq!(r.redact(&out), "echo <redacted>");
        // A host that prints one of them alone.
        assert_eq!(r.redact("got P@SS+W/RD=ZQ9"), "got <redacted>");
        assert_eq!(r.redact("p%40ss%2Bw/rd%3DZq9\n"), "<redacted>\n");
    }

    #[test]
    fn numeric_secrets_and_what_comes_of_them() {
        let (t, r, c) = tracking();
        let out = t
            .render_str(
                "pin={{ pin }} next={{ pin + 1 }} id=PIN{{ pin }} port={{ port }}",
                &c,
            )
            .unwrap();
        assert_eq!(out, "pin=1234 next=1235 id=PIN1234 port=51234");
        assert_eq!(
            r.redact(&out),
            "pin=<redacted> next=<redacted> id=<redacted> port=51234"
        );
        // A typed value keeps its type and is registered too.
        let v = t.render_value(&json!({"n": "{{ pin * 2 }}"}), &c).unwrap();
        assert_eq!(v, json!({"n": 2468}));
        assert_eq!(r.redact("2468"), "<redacted>");
    }

    #[test]
    fn taint_follows_chains_of_variables() {
        let (t, r, c) = tracking();
        // A variable rendered first (as Scope::resolve does), then used by another render.
        let url = t
            .render_value(&json!("postgres://app:{{ pw | urlencode }}@db1/app"), &c)
            .unwrap();
        let c2 = ctx(json!({"url": url, "host": "db1"}));
        let out = t
            .render_str("{{ url | b64encode }}|{{ host }}", &c2)
            .unwrap();
        let red = r.redact(&out);
        assert!(red.ends_with("|db1"), "{red}");
        assert!(!red.contains(&out[..out.len() - 4]), "{red}");
        assert_eq!(
            r.redact(url.as_str().unwrap()),
            "postgres://app:<redacted>@db1/app"
        );
    }

    #[test]
    fn files_and_expressions_are_tracked_too() {
        let (t, r, c) = tracking();
        let dir = std::env::temp_dir().join(format!("bosun-taint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("redis.conf.j2");
        std::fs::write(&f, "bind {{ host }}\nrequirepass {{ pw | upper }}\n").unwrap();
        let out = t.render_file(&f, &c).unwrap();
        assert_eq!(
            r.redact(&out),
            "bind db1\nrequirepass <redacted>\n",
            "{out}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // Base64 padding depends on the length only; it stays.
        let v = t.eval("pw | b64encode", &c).unwrap();
        assert_eq!(r.redact(&v.to_string()), "<redacted>==");
    }

    #[test]
    fn output_without_secrets_is_untouched_and_registers_nothing() {
        let (t, r, c) = tracking();
        let before = t.secrets().snapshot().len();
        let out = t
            .render_str(
                "{{ host | upper }}:{{ port }} {{ nested.db.user }} {{ l[0] }}",
                &c,
            )
            .unwrap();
        assert_eq!(out, "DB1:51234 app a");
        assert_eq!(r.redact(&out), out);
        assert_eq!(t.secrets().snapshot().len(), before);
        // Reading a secret without printing it registers nothing either.
        let out = t
            .render_str(
                "{% if pw | length > 3 %}long{% endif %} {{ nested.db | length }}",
                &c,
            )
            .unwrap();
        assert_eq!(out, "long 2");
        assert_eq!(t.secrets().snapshot().len(), before);
    }

    #[test]
    fn errors_that_quote_a_derived_value_are_tracked_too() {
        let (t, r, c) = tracking();
        // The regex crate quotes the bad pattern in its error.
        let e = t
            .render_str("{{ 'x' | regex_replace('(' ~ (pw | upper), 'y') }}", &c)
            .unwrap_err();
        let msg = describe(&e);
        assert!(msg.contains("P@SS+W/RD=ZQ9"), "{msg}");
        // Whatever the message says of the value is registered; the rest stays readable.
        let red = r.redact(&msg);
        assert!(
            red.contains("regex_replace") && red.contains("unclosed"),
            "{red}"
        );
        assert!(!red.contains("P@SS"), "{red}");
    }

    #[test]
    fn a_template_that_fails_on_stand_ins_makes_its_whole_output_secret() {
        let (t, r, c) = tracking();
        // Only the real secret parses as base64-free JSON... here: splits on `@`, `+`
        // and `=` into exactly 3 parts, which both stand-ins cannot do at once.
        let tpl = "{% set p = pw | split('@') %}{{ p[1] | upper }}";
        let out = t.render_str(tpl, &c).unwrap();
        assert_eq!(out, "SS+W/RD=ZQ9");
        assert_eq!(r.redact(&out), "<redacted>");
    }

    /// Values an environment file must carry through both of its readers.
    const ENV_VALUES: &[&str] = &[
        "plain-Value_1.2:3/x@y,z+=",
        "$HOME and ${HOME} and $(id) and `id`",
        "say \"hi\"",
        "it's",
        "back\\slash\\",
        "trailing backslash then newline\\\nnext",
        "two\nlines\n",
        "\n",
        "  spaced   out  ",
        "#not a comment",
        "semi;colon & amp | pipe > gt < lt * star ? q [a] ~tilde !bang",
        "tab\there\rcr",
        "",
        "ünï-cødé ✓",
        "postgres://saleor:p%40ss%2Bw@127.0.0.1:5432/saleor",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQ+/=\nAbC$d`e\"f\\g'h\n-----END PRIVATE KEY-----",
    ];

    /// The variables systemd reads from an environment file: a port of the state machine
    /// of `parse_env_file_internal` (systemd `src/basic/env-file.c`), which is what
    /// `EnvironmentFile=` hands a service. systemd itself cannot run in a unit test.
    fn systemd_env(text: &str) -> BTreeMap<String, String> {
        #[derive(PartialEq)]
        enum St {
            PreKey,
            Key,
            PreValue,
            Value,
            ValueEsc,
            Single,
            Double,
            DoubleEsc,
            Comment,
            CommentEsc,
        }
        let nl = |c: char| c == '\n' || c == '\r';
        let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
        let mut out = BTreeMap::new();
        let (mut st, mut key, mut val) = (St::PreKey, String::new(), String::new());
        let (mut key_ws, mut val_ws) = (None::<usize>, None::<usize>);
        let mut push = |key: &mut String, val: &mut String, kw: Option<usize>| {
            if let Some(n) = kw {
                key.truncate(n);
            }
            out.insert(std::mem::take(key), std::mem::take(val));
        };
        for c in text.chars() {
            match st {
                St::PreKey if c == '#' || c == ';' => st = St::Comment,
                St::PreKey if ws(c) => {}
                St::PreKey => {
                    st = St::Key;
                    key_ws = None;
                    key.push(c);
                }
                St::Key if nl(c) => {
                    st = St::PreKey;
                    key.clear();
                }
                St::Key if c == '=' => {
                    st = St::PreValue;
                    val_ws = None;
                }
                St::Key => {
                    if !ws(c) {
                        key_ws = None;
                    } else if key_ws.is_none() {
                        key_ws = Some(key.len());
                    }
                    key.push(c);
                }
                St::PreValue if nl(c) => {
                    st = St::PreKey;
                    push(&mut key, &mut val, key_ws);
                }
                St::PreValue if c == '\'' => st = St::Single,
                St::PreValue if c == '"' => st = St::Double,
                St::PreValue if c == '\\' => st = St::ValueEsc,
                St::PreValue if ws(c) => {}
                St::PreValue => {
                    st = St::Value;
                    val.push(c);
                }
                St::Value if nl(c) => {
                    st = St::PreKey;
                    if let Some(n) = val_ws {
                        val.truncate(n);
                    }
                    push(&mut key, &mut val, key_ws);
                }
                St::Value if c == '\\' => {
                    st = St::ValueEsc;
                    val_ws = None;
                }
                St::Value => {
                    if !ws(c) {
                        val_ws = None;
                    } else if val_ws.is_none() {
                        val_ws = Some(val.len());
                    }
                    val.push(c);
                }
                St::ValueEsc => {
                    st = St::Value;
                    if !nl(c) {
                        val.push(c);
                    }
                }
                St::Single if c == '\'' => st = St::PreValue,
                St::Single => val.push(c),
                St::Double if c == '"' => st = St::PreValue,
                St::Double if c == '\\' => st = St::DoubleEsc,
                St::Double => val.push(c),
                St::DoubleEsc => {
                    st = St::Double;
                    if matches!(c, '"' | '\\' | '`' | '$') {
                        val.push(c);
                    } else if c != '\n' {
                        val.push('\\');
                        val.push(c);
                    }
                }
                St::Comment if c == '\\' => st = St::CommentEsc,
                St::Comment if nl(c) => st = St::PreKey,
                St::Comment => {}
                St::CommentEsc => st = if nl(c) { St::PreKey } else { St::Comment },
            }
        }
        if matches!(
            st,
            St::PreValue | St::Value | St::ValueEsc | St::Single | St::Double | St::DoubleEsc
        ) {
            if st == St::Value {
                if let Some(n) = val_ws {
                    val.truncate(n);
                }
            }
            push(&mut key, &mut val, key_ws);
        }
        out
    }

    /// The variables `sh` reads from an environment file (`set -a; . FILE`), as the roles
    /// read them, without anything from the caller's environment.
    fn sh_env(file: &Path) -> BTreeMap<String, String> {
        let o = std::process::Command::new("/usr/bin/env")
            .args(["-i", "HOME=/home/nobody", "/bin/sh", "-c"])
            .arg("set -a; . \"$1\"; set +a; exec /usr/bin/env -0")
            .arg("sh")
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout)
            .unwrap()
            .split('\0')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| !matches!(*k, "HOME" | "PWD" | "OLDPWD" | "SHLVL" | "_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_quote_round_trips_through_sh_and_systemd() {
        let dir = std::env::temp_dir().join(format!("bosun-envq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tpl = dir.join("app.env.j2");
        std::fs::write(&tpl, "# a comment\nK={{ v | env_quote }}\nAFTER=ok\n").unwrap();
        let t = Templates::new();
        for (i, v) in ENV_VALUES.iter().enumerate() {
            let out = t.render_file(&tpl, &ctx(json!({ "v": v }))).unwrap();
            let file = dir.join(format!("{i}.env"));
            std::fs::write(&file, &out).unwrap();
            let want = BTreeMap::from([("K".into(), v.to_string()), ("AFTER".into(), "ok".into())]);
            assert_eq!(sh_env(&file), want, "sh reads {out:?}");
            assert_eq!(systemd_env(&out), want, "systemd reads {out:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // Plain words stay readable (and as `quote` wrote them); numbers are words too.
        let c = ctx(json!({"n": 5432, "u": "https://api.example.com/graphql/"}));
        assert_eq!(
            t.render_str("{{ n | env_quote }} {{ u | env_quote }}", &c)
                .unwrap(),
            "5432 https://api.example.com/graphql/"
        );
        assert_eq!(env_quote("a b").unwrap(), "\"a b\"");
        assert_eq!(env_quote("$`\"\\").unwrap(), "\"\\$\\`\\\"\\\\\"");
        // What neither reader can carry is refused, without quoting the value.
        for bad in ["\0", "\u{FDD0}", "\u{FFFE}", "\u{1FFFF}"] {
            let e = env_quote(&format!("Qzv-{bad}")).unwrap_err();
            assert!(!describe(&e).contains("Qzv"), "{}", describe(&e));
        }
        assert!(env_quote("\u{FEFF}ok").is_ok());
        // Why not the shell's own quoting: systemd reads no escape inside single quotes,
        // and keeps a backslash before what the shell would not escape.
        assert_eq!(systemd_env("K='it'\\''s'\n")["K"], "it''s'");
        assert_eq!(systemd_env("K=\"a$b\\n\"\n")["K"], "a$b\\n");
    }

    /// The repository's environment files, rendered with values that broke them before
    /// (`KEY="{{ v }}"`), read back the same by sh and systemd.
    #[test]
    fn the_roles_env_files_read_back_exactly() {
        let nasty = "k$HOME`id`\"q\"\\b'a #c";
        let rsa = "-----BEGIN PRIVATE KEY-----\nMIIEvQ+/=\n-----END PRIVATE KEY-----";
        let c = ctx(json!({
            "saleor_db_user": "saleor", "saleor_db_password": nasty, "saleor_db_host": "10.0.0.5",
            "saleor_db_port": 5432, "saleor_db_name": "saleor", "redis_password": nasty,
            "saleor_redis_host": "10.0.0.6", "saleor_redis_port": 6379,
            "saleor_secret_key": nasty, "saleor_rsa_private_key": format!("{rsa}\n"),
            "saleor_allowed_hosts": "*", "saleor_allowed_client_hosts": "*",
            "saleor_public_url": "http://lb/", "saleor_dashboard_url": "http://lb:9000/",
            "saleor_default_from_email": "Shop <noreply@example.com>",
            "saleor_static_root": "/opt/saleor/static", "saleor_extra_env": {"EXTRA": nasty},
            "storefront_env": {"NEXT_PUBLIC_X": nasty, "PLAIN": "http://a:3000"},
            "dashboard_api_url": "http://lb/graphql/", "dashboard_build_env": {"Y": nasty},
        }));
        // The model crate sits in crates/model; the templates are the repository's.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = std::env::temp_dir().join(format!("bosun-envf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Templates::new();
        let mut read = BTreeMap::new();
        for (i, f) in [
            "templates/saleor/saleor.env.j2",
            "templates/storefront/build-env.j2",
            "templates/dashboard/build-env.j2",
        ]
        .iter()
        .enumerate()
        {
            let out = t.render_file(&repo.join(f), &c).unwrap();
            let file = dir.join(format!("{i}.env"));
            std::fs::write(&file, &out).unwrap();
            let sh = sh_env(&file);
            // Only the Saleor file is read by systemd too; the others must still parse.
            assert_eq!(sh, systemd_env(&out), "{f}:\n{out}");
            read.extend(sh);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let pct = "k%24HOME%60id%60%22q%22%5Cb%27a%20%23c";
        for (k, v) in [
            ("SECRET_KEY", nasty.to_string()),
            ("RSA_PRIVATE_KEY", rsa.to_string()),
            ("EXTRA", nasty.to_string()),
            ("NEXT_PUBLIC_X", nasty.to_string()),
            ("Y", nasty.to_string()),
            ("PLAIN", "http://a:3000".to_string()),
            ("API_URL", "http://lb/graphql/".to_string()),
            (
                "DEFAULT_FROM_EMAIL",
                "Shop <noreply@example.com>".to_string(),
            ),
            ("DEBUG", "False".to_string()),
            (
                "DATABASE_URL",
                format!("postgres://saleor:{pct}@10.0.0.5:5432/saleor?sslmode=require"),
            ),
            (
                "CELERY_BROKER_URL",
                format!("redis://:{pct}@10.0.0.6:6379/2"),
            ),
        ] {
            assert_eq!(read.get(k), Some(&v), "{k}");
        }
    }

    #[test]
    fn env_quoted_multi_line_secrets_are_redacted_line_by_line() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq+hkiG9w0\nAbCdEfGh$IjKl`MnOp\n-----END PRIVATE KEY-----";
        let set = SecretSet::new(&[key.to_string()].into());
        let t = Templates::with_secrets(set.clone());
        let r = crate::redact::Redactor::shared(set);
        let out = t
            .render_str(
                "A=1\nKEY={{ k | env_quote }}\nB=2\n",
                &ctx(json!({ "k": key })),
            )
            .unwrap();
        assert!(out.contains("AbCdEfGh\\$IjKl\\`MnOp"), "{out}");
        let red = r.redact(&out);
        assert!(
            red.starts_with("A=1\nKEY=") && red.ends_with("\nB=2\n"),
            "{red}"
        );
        for piece in ["MIIEvQIBADANBgkq", "AbCdEfGh", "IjKl", "MnOp"] {
            assert!(!red.contains(piece), "`{piece}` left in {red}");
        }
    }
}
