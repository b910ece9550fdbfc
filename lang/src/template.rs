//! Template parameters: `param "NAME" [default=VALUE]` in a `template`, `${NAME}` in its
//! strings, `use "NAME" KEY=VALUE...` at the use site.
//!
//! A template with parameters cannot be typed when it is declared (`"${node-ip}/24"` is not an
//! address yet), so the parser keeps its KDL tree ([`RawTemplate`]) and every `use` reads it
//! again with the arguments in place ([`instantiate`]): the same reader, the same diagnostics,
//! spans in the template's own text. A string that is exactly `"${NAME}"` takes the argument's
//! value with its type (`mtu="${mtu}"` with `mtu=9000` is the integer 9000); inside a longer
//! string the argument is written out (`"${node-ip}/24"`). `$${` is a literal `${`.
//!
//! What it must not do: decide whether a `use` names the right parameters (that is
//! `resolve`, which owns `undefined-reference` and the template namespace).

use crate::ast::NsBody;
use crate::diagnostic::{Diagnostic, Label};
use crate::kdl::{Children, Entry, Node, Str, Value};
use crate::reader::{Cx, Reader};
use crate::source::{Span, Spanned};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

/// A value given to a parameter: any KDL value.
pub type ParamValue = Value<'static>;

/// The KDL of a template with parameters, kept to be read again at each use.
#[derive(Clone, Debug)]
pub struct RawTemplate {
    pub node: Node<'static>,
    /// The directory of the file it was declared in (relative key-file paths resolve there).
    pub dir: Option<PathBuf>,
}

/// One `${NAME}` written in a template: the name and the span of the placeholder.
#[derive(Clone, Debug)]
pub struct Placeholder {
    pub name: Spanned<String>,
    /// The string it is written in.
    pub entry: Span,
}

/// A parameter's value for one use: the value and where it was written (the use's argument or
/// the parameter's default; for a string, its contents).
pub struct Binding<'a> {
    pub value: &'a ParamValue,
    pub span: Span,
    /// `given here` or `default`.
    pub origin: &'static str,
}

/// The `${NAME}`s in a string, as (start, end, name) byte offsets; `$${` is skipped.
fn scan(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            if let Some(len) = s[i + 2..].find('}') {
                out.push((i, i + 2 + len + 1, &s[i + 2..i + 2 + len]));
                i += 2 + len + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn owned(s: &Str) -> Str<'static> {
    Str { value: Cow::Owned(s.value.to_string()), span: s.span }
}

/// A copy of a value that owns its text.
pub fn owned_value(v: &Value) -> ParamValue {
    match v {
        Value::String(s) => Value::String(Cow::Owned(s.to_string())),
        Value::Integer(i) => Value::Integer(*i),
        Value::Float(f) => Value::Float(*f),
        Value::Bool(b) => Value::Bool(*b),
        Value::Null => Value::Null,
    }
}

/// A copy of `node` that owns its text.
pub fn to_owned(node: &Node) -> Node<'static> {
    substitute(node, &HashMap::new(), &mut Vec::new(), false)
}

/// Every `${NAME}` in the template's strings (its `param` declarations excluded), with the
/// span of the placeholder where the string was written without escapes, else of the string.
pub fn placeholders(raw: &RawTemplate) -> Vec<Placeholder> {
    let mut out = Vec::new();
    walk(&raw.node, &mut |e: &Entry| {
        if let Value::String(s) = &e.value {
            for (start, end, name) in scan(s) {
                let exact = e.inner.len() == s.len();
                let span = if exact {
                    Span { start: e.inner.start + start as u32, end: e.inner.start + end as u32, ..e.inner }
                } else {
                    e.span
                };
                out.push(Placeholder { name: Spanned::new(name.to_string(), span), entry: e.span });
            }
        }
    });
    out
}

fn walk(node: &Node, f: &mut impl FnMut(&Entry)) {
    for e in &node.entries {
        f(e);
    }
    for c in node.child_nodes() {
        if c.name.value != "param" {
            walk(c, f);
        }
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(true) => "#true".into(),
        Value::Bool(false) => "#false".into(),
        Value::Null => "#null".into(),
    }
}

/// Where a parameter's value went: the template's string (`entry`) and, for a whole-value
/// placeholder, the span the value now carries (`at`: where it was given).
struct Hit {
    name: String,
    entry: Span,
    whole: Option<Span>,
}

fn within(inner: Span, outer: Span) -> bool {
    inner.file == outer.file && outer.start <= inner.start && inner.end <= outer.end
}

/// The node with every `${NAME}` bound in `env` replaced; `hits` says where each value went.
fn substitute(node: &Node, env: &HashMap<&str, Binding>, hits: &mut Vec<Hit>, unescape: bool) -> Node<'static> {
    let entries = node
        .entries
        .iter()
        .map(|e| {
            let (mut span, mut inner) = (e.span, e.inner);
            let value = match &e.value {
                Value::String(s) if unescape && s.contains('$') => {
                    let found = scan(s);
                    match found.as_slice() {
                        // The whole value is the argument: it keeps its type, and what is said
                        // about it points where it was given.
                        [(0, end, name)] if *end == s.len() && env.contains_key(name) => {
                            (span, inner) = (env[name].span, env[name].span);
                            hits.push(Hit { name: name.to_string(), entry: e.span, whole: Some(span) });
                            owned_value(env[name].value)
                        }
                        _ => {
                            let mut out = String::with_capacity(s.len());
                            let mut at = 0;
                            for (start, end, name) in found {
                                if let Some(b) = env.get(name) {
                                    out.push_str(&s[at..start].replace("$${", "${"));
                                    out.push_str(&display(b.value));
                                    at = end;
                                    hits.push(Hit { name: name.to_string(), entry: e.span, whole: None });
                                    // No longer the source character for character: errors
                                    // point at the whole string.
                                    inner = e.span;
                                }
                            }
                            out.push_str(&s[at..].replace("$${", "${"));
                            Value::String(Cow::Owned(out))
                        }
                    }
                }
                other => owned_value(other),
            };
            Entry { key: e.key.as_ref().map(owned), ty: e.ty.as_ref().map(|t| Box::new(owned(t))), value, span, inner }
        })
        .collect();
    Node {
        ty: node.ty.as_ref().map(|t| Box::new(owned(t))),
        name: owned(&node.name),
        entries,
        children: node.children.as_ref().map(|c| Children {
            nodes: c.nodes.iter().map(|n| substitute(n, env, hits, unescape)).collect(),
            span: c.span,
        }),
        span: node.span,
        recovered: node.recovered,
    }
}

/// The body of a template with parameters, read with `env`'s values in place. A diagnostic on a
/// string that spliced a value carries a label at the value given (or the default); one on a
/// whole value is on the value given, with a label where the template uses it; the `use` is
/// labelled when no label shows it yet.
pub fn instantiate(raw: &RawTemplate, env: &HashMap<&str, Binding>, use_span: Span) -> (NsBody, Vec<Diagnostic>) {
    let mut hits = Vec::new();
    let node = substitute(&raw.node, env, &mut hits, true);
    let mut diags = Vec::new();
    let body = {
        let mut cx = Cx { diags: &mut diags, dir: raw.dir.clone() };
        let mut r = Reader::new(&mut cx, &node);
        let _ = r.arg(&mut cx, 0, "a template name");
        let body = crate::parse::parse_template_body(&mut cx, &mut r);
        r.finish(&mut cx);
        body
    };
    for d in &mut diags {
        let primary = d.primary.span;
        for hit in &hits {
            let Some(b) = env.get(hit.name.as_str()) else { continue };
            match hit.whole {
                // The finding is on the value where it was given: show where the template uses it.
                Some(at) if within(primary, at) => d
                    .secondary
                    .push(Label { span: hit.entry, message: format!("`{}` is used here, in the template", hit.name) }),
                None if within(primary, hit.entry) => d.secondary.push(Label {
                    span: b.span,
                    message: format!("`{}` = `{}` ({})", hit.name, display(b.value), b.origin),
                }),
                _ => {}
            }
        }
        // The `use` is already shown when the finding or a label is on one of its arguments.
        if !within(primary, use_span) && !d.secondary.iter().any(|l| within(l.span, use_span)) {
            d.secondary.push(Label { span: use_span, message: "in the template used here".into() });
        }
    }
    (body, diags)
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn placeholders_are_found_and_dollar_dollar_is_literal() {
        assert_eq!(scan("${a}/24"), vec![(0, 4, "a")]);
        assert_eq!(scan("x${a}y${bb}"), vec![(1, 5, "a"), (6, 11, "bb")]);
        assert_eq!(scan("$${a} ${b"), vec![]);
        assert_eq!(scan("cost $5"), vec![]);
    }
}
