//! Templates (minijinja) for task arguments, `when` expressions and template files.
//!
//! Undefined variables are errors (strict mode), except under `default(...)` and
//! `is defined`, so a typo in a variable name fails the converge before any host changes
//! instead of writing an empty string into a config file.
//!
//! A task string that is exactly one `{{ expression }}` keeps the expression's type:
//! `loop: "{{ packages }}"` yields a list, `port: "{{ pg_port }}"` a number.

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
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
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
        env.add_filter("sha256", |s: String| {
            crate::modules::fileops::sha256_hex(s.as_bytes())
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
        Templates { env }
    }

    /// Renders one string with `ctx`; strings without template syntax are returned as-is.
    pub fn render_str(&self, s: &str, ctx: &JValue) -> Result<String, Error> {
        if !has_syntax(s) {
            return Ok(s.to_string());
        }
        self.env.render_str(s, ctx)
    }

    /// Renders every string leaf of `v`; a string that is one `{{ expr }}` keeps its type.
    pub fn render_value(&self, v: &Value, ctx: &JValue) -> Result<Value, Error> {
        Ok(match v {
            Value::String(s) => match single_expression(s) {
                Some(expr) => to_json_value(&self.eval(expr, ctx)?)?,
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

    /// Evaluates an expression (`when`, `until`, `changed_when`); `{{ }}` around it is allowed.
    pub fn eval(&self, expr: &str, ctx: &JValue) -> Result<JValue, Error> {
        let e = single_expression(expr).unwrap_or(expr);
        self.env.compile_expression(e)?.eval(ctx)
    }

    /// Evaluates a condition to a boolean.
    pub fn test(&self, expr: &str, ctx: &JValue) -> Result<bool, Error> {
        Ok(self.eval(expr, ctx)?.is_true())
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
        self.env.get_template(&name)?.render(ctx)
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

/// `"{{ expr }}"` → `Some("expr")` when the whole string is one expression.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
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
}
