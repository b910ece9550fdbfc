//! A typed reader over one KDL node: positional arguments, properties and attribute children,
//! each turned into a spanned value or a diagnostic. Whatever the reader was not asked for is
//! reported as unknown (with "did you mean") when the node is finished.

use crate::code::{self, Code};
use crate::diagnostic::{closest, Diagnostic};
use crate::source::{FileId, Span, Spanned};
use crate::value::ValueError;
use kdl::{KdlEntry, KdlNode, KdlValue};

/// Per-file parsing context: where diagnostics go and how spans are built.
pub(crate) struct Cx<'a> {
    pub file: FileId,
    pub text: &'a str,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    pub fn span(&self, s: miette::SourceSpan) -> Span {
        Span::new(self.file, s.offset(), s.offset() + s.len())
    }

    pub fn error(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, message));
        self.diags.last_mut().expect("just pushed")
    }

    /// The span of an entry's value (without `key=` and type annotation).
    fn value_span(&self, entry: &KdlEntry) -> Span {
        let span = self.span(entry.span());
        let text = self.text.get(span.start as usize..span.end as usize).unwrap_or("");
        let mut start = 0;
        if entry.name().is_some() {
            start = text.find('=').map(|i| i + 1).unwrap_or(0);
        }
        let rest = &text[start..];
        if rest.starts_with('(') {
            if let Some(close) = rest.find(')') {
                start += close + 1;
            }
        }
        span.sub(start, text.len())
    }

    /// The span of a string value's contents (inside the quotes), so value errors can point at
    /// exact characters. Falls back to the whole value for strings with escapes.
    fn string_inner_span(&self, value_span: Span, contents: &str) -> Span {
        let text = self.text.get(value_span.start as usize..value_span.end as usize).unwrap_or("");
        let hashes = text.bytes().take_while(|b| *b == b'#').count();
        let body = &text[hashes..];
        if let Some(inner) = body.strip_prefix('"') {
            if inner.starts_with(contents) && !inner.starts_with("\"\"") {
                let start = hashes + 1;
                return value_span.sub(start, start + contents.len());
            }
            return value_span;
        }
        if text == contents {
            return value_span;
        }
        value_span
    }
}

fn value_kind(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a float",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

/// One value found on a node: the KDL value, its span, and (for strings) the contents' span.
#[derive(Clone, Copy)]
pub(crate) struct Val<'n> {
    pub value: &'n KdlValue,
    pub span: Span,
    pub inner: Span,
}

impl<'n> Val<'n> {
    pub fn string(&self, cx: &mut Cx, what: &str) -> Option<Spanned<String>> {
        match self.value {
            KdlValue::String(s) => Some(Spanned::new(s.clone(), self.inner)),
            other => {
                cx.error(
                    code::INVALID_VALUE,
                    self.span,
                    format!("{what} must be a string, found {}", value_kind(other)),
                )
                .help = Some(format!("quote it: `\"{}\"`", display_value(other)));
                None
            }
        }
    }

    pub fn bool(&self, cx: &mut Cx, what: &str) -> Option<Spanned<bool>> {
        match self.value {
            KdlValue::Bool(b) => Some(Spanned::new(*b, self.span)),
            other => {
                cx.error(
                    code::INVALID_VALUE,
                    self.span,
                    format!("{what} must be #true or #false, found {}", value_kind(other)),
                )
                .help = Some("KDL booleans are written `#true` and `#false`".into());
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&self, cx: &mut Cx, what: &str, min: i128, max: i128) -> Option<Spanned<i128>> {
        match self.value {
            KdlValue::Integer(i) if (min..=max).contains(i) => Some(Spanned::new(*i, self.span)),
            KdlValue::Integer(i) => {
                cx.error(code::INVALID_VALUE, self.span, format!("{what} `{i}` is out of range")).help =
                    Some(format!("{what} is a number from {min} to {max}"));
                None
            }
            other => {
                cx.error(
                    code::INVALID_VALUE,
                    self.span,
                    format!("{what} must be an integer, found {}", value_kind(other)),
                )
                .help = Some(format!("{what} is a number from {min} to {max}"));
                None
            }
        }
    }

    /// A string (or an integer, for grammars like ports) parsed with a micro-grammar.
    pub fn parse<T>(
        &self,
        cx: &mut Cx,
        what: &str,
        parser: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Option<Spanned<T>> {
        let (text, span) = match self.value {
            KdlValue::String(s) => (s.clone(), self.inner),
            KdlValue::Integer(i) => (i.to_string(), self.span),
            other => {
                cx.error(
                    code::INVALID_VALUE,
                    self.span,
                    format!("{what} must be a string, found {}", value_kind(other)),
                );
                return None;
            }
        };
        match parser(&text) {
            Ok(v) => Some(Spanned::new(v, span)),
            Err(e) => {
                let at = if span.len() == text.len() { span.sub(e.start, e.end.max(e.start + 1)) } else { span };
                let d = cx.error(code::INVALID_VALUE, at, format!("invalid {what}: {}", e.message));
                d.help = e.help;
                None
            }
        }
    }

    /// One of a fixed set of keywords.
    pub fn keyword<T: Copy>(&self, cx: &mut Cx, what: &str, options: &[(&str, T)]) -> Option<Spanned<T>> {
        let s = self.string(cx, what)?;
        if let Some((_, v)) = options.iter().find(|(k, _)| *k == s.value) {
            return Some(Spanned::new(*v, s.span));
        }
        let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
        let d = cx.error(code::INVALID_VALUE, s.span, format!("`{}` is not a valid {what}", s.value));
        d.help = Some(match closest(&s.value, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("expected one of: {}", names.join(", ")),
        });
        None
    }
}

fn display_value(v: &KdlValue) -> String {
    match v {
        KdlValue::String(s) => s.clone(),
        KdlValue::Integer(i) => i.to_string(),
        KdlValue::Float(f) => f.to_string(),
        KdlValue::Bool(b) => b.to_string(),
        KdlValue::Null => "null".into(),
    }
}

/// Reads one KDL node. Call [`Reader::finish`] last: it reports everything not read.
pub(crate) struct Reader<'n> {
    pub node: &'n KdlNode,
    pub span: Span,
    pub name_span: Span,
    args: Vec<Val<'n>>,
    args_read: usize,
    props: Vec<(&'n str, Span, Val<'n>, bool)>,
    children: Vec<(&'n KdlNode, bool)>,
    known_props: Vec<&'static str>,
    known_children: Vec<&'static str>,
}

impl<'n> Reader<'n> {
    pub fn new(cx: &mut Cx, node: &'n KdlNode) -> Reader<'n> {
        let mut args = Vec::new();
        let mut props: Vec<(&str, Span, Val, bool)> = Vec::new();
        for entry in node.entries() {
            let span = cx.value_span(entry);
            let inner = match entry.value() {
                KdlValue::String(s) => cx.string_inner_span(span, s),
                _ => span,
            };
            let val = Val { value: entry.value(), span, inner };
            match entry.name() {
                Some(key) => {
                    let key_span = cx.span(key.span());
                    if let Some(prev) = props.iter().find(|p| p.0 == key.value()) {
                        let prev_span = prev.1;
                        cx.error(
                            code::DUPLICATE_PROPERTY,
                            key_span,
                            format!("property `{}` is given twice", key.value()),
                        )
                        .with_secondary_mut(prev_span, "first given here")
                        .help = Some("remove one of them".into());
                        continue;
                    }
                    props.push((key.value(), key_span, val, false));
                }
                None => args.push(val),
            }
        }
        let children = node.children().map(|d| d.nodes().iter().map(|c| (c, false)).collect()).unwrap_or_default();
        Reader {
            node,
            span: cx.span(node.span()),
            name_span: cx.span(node.name().span()),
            args,
            args_read: 0,
            props,
            children,
            known_props: Vec::new(),
            known_children: Vec::new(),
        }
    }

    pub fn keyword(&self) -> &'n str {
        self.node.name().value()
    }

    /// Span of the node's first line (name and entries, without its children block), for
    /// diagnostics that are about the node as a whole.
    pub fn head_span(&self) -> Span {
        let mut end = self.name_span.end;
        for a in &self.args {
            end = end.max(a.span.end);
        }
        for p in &self.props {
            end = end.max(p.2.span.end);
        }
        Span { end, ..self.name_span }
    }

    /// The positional argument `i`, reporting `missing-argument` when absent.
    pub fn arg(&mut self, cx: &mut Cx, i: usize, what: &str) -> Option<Val<'n>> {
        self.args_read = self.args_read.max(i + 1);
        match self.args.get(i) {
            Some(v) => Some(*v),
            None => {
                let kw = self.keyword().to_string();
                cx.error(code::MISSING_ARGUMENT, self.head_span(), format!("`{kw}` needs {what}")).help =
                    Some(format!("write it after the node name: `{kw} \"…\"`"));
                None
            }
        }
    }

    pub fn opt_arg(&mut self, i: usize) -> Option<Val<'n>> {
        self.args_read = self.args_read.max(i + 1);
        self.args.get(i).copied()
    }

    /// All positional arguments from `from` on.
    pub fn rest_args(&mut self, from: usize) -> Vec<Val<'n>> {
        self.args_read = self.args_read.max(self.args.len());
        self.args.iter().skip(from).copied().collect()
    }

    /// A property `key=value`, or an attribute child `key value` (both forms are accepted).
    pub fn prop(&mut self, cx: &mut Cx, key: &'static str) -> Option<Val<'n>> {
        self.known_props.push(key);
        let as_children: Vec<usize> =
            self.children.iter().enumerate().filter(|(_, (c, _))| c.name().value() == key).map(|(i, _)| i).collect();
        let prop = self.props.iter().position(|p| p.0 == key);
        // Given twice (property and child, or two children): the first wins, the rest is an error.
        let first_span = prop
            .map(|i| self.props[i].1)
            .or_else(|| as_children.first().map(|i| cx.span(self.children[*i].0.name().span())));
        let skip = usize::from(prop.is_none());
        for &i in as_children.iter().skip(skip) {
            self.children[i].1 = true;
            let span = cx.span(self.children[i].0.name().span());
            let d = cx.error(code::DUPLICATE_PROPERTY, span, format!("`{key}` is given twice"));
            if let Some(first) = first_span {
                d.secondary.push(crate::diagnostic::Label { span: first, message: "first given here".into() });
            }
            d.help = Some("remove one of them".into());
        }
        if let Some(i) = prop {
            self.props[i].3 = true;
            return Some(self.props[i].2);
        }
        let idx = *as_children.first()?;
        self.children[idx].1 = true;
        let child = self.children[idx].0;
        let mut r = Reader::new(cx, child);
        let v = r.arg(cx, 0, &format!("a value for `{key}`"));
        r.finish(cx);
        v
    }

    /// A property that must be present.
    pub fn required(&mut self, cx: &mut Cx, key: &'static str, example: &str) -> Option<Val<'n>> {
        let v = self.prop(cx, key);
        if v.is_none() {
            let kw = self.keyword().to_string();
            cx.error(code::MISSING_PROPERTY, self.head_span(), format!("`{kw}` needs `{key}`")).help =
                Some(format!("add `{key}={example}`"));
        }
        v
    }

    /// Child nodes named `name` (for repeated children like `address`).
    pub fn children(&mut self, name: &'static str) -> Vec<&'n KdlNode> {
        self.known_children.push(name);
        let mut out = Vec::new();
        for (c, used) in self.children.iter_mut() {
            if c.name().value() == name {
                *used = true;
                out.push(*c);
            }
        }
        out
    }

    /// Every child node, in order; each counts as read.
    pub fn all_children(&mut self) -> Vec<&'n KdlNode> {
        self.children
            .iter_mut()
            .map(|(c, used)| {
                *used = true;
                *c
            })
            .collect()
    }

    /// Reports extra arguments, unknown properties and unknown children.
    pub fn finish(self, cx: &mut Cx) {
        let kw = self.keyword();
        for extra in self.args.iter().skip(self.args_read) {
            cx.error(code::UNEXPECTED_ARGUMENT, extra.span, format!("`{kw}` takes no further argument here")).help =
                Some("remove it, or write it as a property `key=value`".into());
        }
        for (key, span, _, used) in &self.props {
            if !used {
                let d = cx.error(code::UNKNOWN_PROPERTY, *span, format!("`{kw}` has no property `{key}`"));
                d.help = Some(match closest(key, self.known_props.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if self.known_props.is_empty() => format!("`{kw}` takes no properties"),
                    None => format!("`{kw}` accepts: {}", dedup(&self.known_props).join(", ")),
                });
            }
        }
        for (child, used) in &self.children {
            if !used {
                let name = child.name().value();
                let span = cx.span(child.name().span());
                let known: Vec<&str> = self.known_children.iter().chain(self.known_props.iter()).copied().collect();
                let d = cx.error(code::UNKNOWN_NODE, span, format!("`{name}` is not allowed inside `{kw}`"));
                d.help = Some(match closest(name, known.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if known.is_empty() => format!("`{kw}` takes no children"),
                    None => format!("`{kw}` accepts: {}", dedup(&known).join(", ")),
                });
            }
        }
    }
}

fn dedup(v: &[&'static str]) -> Vec<&'static str> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

trait SecondaryMut {
    fn with_secondary_mut(&mut self, span: Span, message: &str) -> &mut Self;
}

impl SecondaryMut for Diagnostic {
    fn with_secondary_mut(&mut self, span: Span, message: &str) -> &mut Self {
        self.secondary.push(crate::diagnostic::Label { span, message: message.into() });
        self
    }
}
