//! A typed reader over one KDL node: positional arguments, properties and attribute children,
//! each turned into a spanned value or a diagnostic. Whatever the reader was not asked for is
//! reported as unknown (with "did you mean") when the node is finished.

use crate::code::{self, Code};
use crate::diagnostic::{closest, Diagnostic};
use crate::kdl::{Node as KdlNode, Value as KdlValue};
use crate::source::{Span, Spanned};
use crate::value::ValueError;
use smallvec::SmallVec;

/// Per-file parsing context: where diagnostics go.
pub(crate) struct Cx<'a> {
    pub diags: &'a mut Vec<Diagnostic>,
    /// The directory of the file being read: relative file names in it resolve against it.
    pub dir: Option<std::path::PathBuf>,
}

impl Cx<'_> {
    pub fn error(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, message));
        self.diags.last_mut().expect("just pushed")
    }
}

fn value_kind(v: &KdlValue) -> &'static str {
    v.kind()
}

/// One value found on a node: the KDL value, its span, and (for strings) the contents' span.
#[derive(Clone, Copy)]
pub(crate) struct Val<'n> {
    pub value: &'n KdlValue<'n>,
    pub span: Span,
    pub inner: Span,
}

impl<'n> Val<'n> {
    pub fn string(&self, cx: &mut Cx, what: &str) -> Option<Spanned<String>> {
        match self.value {
            KdlValue::String(s) => Some(Spanned::new(s.to_string(), self.inner)),
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
            KdlValue::Integer(i) if (min..=max).contains(&i.get()) => Some(Spanned::new(i.get(), self.span)),
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
        let mut digits = [0u8; 40];
        let (text, span): (&str, Span) = match self.value {
            KdlValue::String(s) => (s, self.inner),
            KdlValue::Integer(i) => (int_text(i.get(), &mut digits), self.span),
            other => {
                cx.error(
                    code::INVALID_VALUE,
                    self.span,
                    format!("{what} must be a string, found {}", value_kind(other)),
                );
                return None;
            }
        };
        match parser(text) {
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
        // A known keyword is matched on the borrowed text: no string is made for it.
        if let KdlValue::String(s) = self.value {
            if let Some((_, v)) = options.iter().find(|(k, _)| *k == &**s) {
                return Some(Spanned::new(*v, self.inner));
            }
        }
        let s = self.string(cx, what)?;
        let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
        let d = cx.error(code::INVALID_VALUE, s.span, format!("`{}` is not a valid {what}", s.value));
        d.help = Some(match closest(&s.value, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("expected one of: {}", names.join(", ")),
        });
        None
    }
}

/// The decimal text of `v` in `buf`, without an allocation (a port written `port=22` is parsed
/// by the same micro-grammar as `port="22"`).
fn int_text(v: i128, buf: &mut [u8; 40]) -> &str {
    let mut n = v.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        // 128-bit division is a library call: a value that fits in 64 bits (every port and id)
        // is divided in 64.
        let (rest, digit) = match u64::try_from(n) {
            Ok(small) => (u128::from(small / 10), (small % 10) as u8),
            Err(_) => (n / 10, (n % 10) as u8),
        };
        buf[at] = b'0' + digit;
        n = rest;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).expect("ASCII digits")
}

/// A bit standing for a property key in [`Reader`]'s key filter.
fn key_bit(key: &str) -> u64 {
    let b = key.as_bytes();
    let h = b.len().wrapping_mul(31)
        + b.first().map_or(0, |c| usize::from(*c)) * 7
        + b.last().map_or(0, |c| usize::from(*c));
    1 << (h % 64)
}

fn display_value(v: &KdlValue) -> String {
    match v {
        KdlValue::String(s) => s.to_string(),
        KdlValue::Integer(i) => i.to_string(),
        KdlValue::Float(f) => f.to_string(),
        KdlValue::Bool(b) => b.to_string(),
        KdlValue::Null => "null".into(),
    }
}

/// Reads one KDL node. Call [`Reader::finish`] last: it reports everything not read.
pub(crate) struct Reader<'n> {
    pub node: &'n KdlNode<'n>,
    pub span: Span,
    pub name_span: Span,
    // Inline vectors: a reader lives for one node, most nodes have a few entries, and a
    // firewall rule asks for 29 keys.
    args: SmallVec<[Val<'n>; 4]>,
    args_read: usize,
    props: SmallVec<[(&'n str, Span, Val<'n>, bool); 6]>,
    /// One [`key_bit`] per property given: most keys asked for are not there.
    prop_keys: u64,
    children: Vec<(&'n KdlNode<'n>, bool)>,
    known_props: SmallVec<[&'static str; 32]>,
    known_children: Vec<&'static str>,
}

impl<'n> Reader<'n> {
    pub fn new(cx: &mut Cx, node: &'n KdlNode<'n>) -> Reader<'n> {
        // Filled in place: a reader is large (inline lists), and building its lists apart
        // then moving them in was two copies per node.
        let mut r = Reader {
            node,
            span: node.span,
            name_span: node.name.span,
            args: SmallVec::new(),
            args_read: 0,
            props: SmallVec::new(),
            prop_keys: 0,
            children: Vec::new(),
            known_props: SmallVec::new(),
            known_children: Vec::new(),
        };
        for entry in &node.entries {
            let val = Val { value: &entry.value, span: entry.span, inner: entry.inner };
            match &entry.key {
                Some(key) => {
                    let key_span = key.span;
                    // The key filter rules out a duplicate without comparing keys (nearly always).
                    let bit = key_bit(&key.value);
                    let prev = if r.prop_keys & bit == 0 { None } else { r.props.iter().find(|p| p.0 == key.value) };
                    if let Some(prev) = prev {
                        let prev_span = prev.1;
                        cx.error(
                            code::DUPLICATE_PROPERTY,
                            key_span,
                            format!("property `{}` is given twice", key.value),
                        )
                        .with_secondary_mut(prev_span, "first given here")
                        .help = Some("remove one of them".into());
                        continue;
                    }
                    r.prop_keys |= bit;
                    r.props.push((&key.value, key_span, val, false));
                }
                None => r.args.push(val),
            }
        }
        r.children = node.child_nodes().iter().map(|c| (c, false)).collect();
        r
    }

    pub fn keyword(&self) -> &'n str {
        &self.node.name.value
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
            // The node has a syntax error, already reported: its argument may be in it.
            None if self.node.recovered => None,
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

    /// Every property not read yet, in order, marked as read (the arguments of a `use`).
    pub fn rest_props(&mut self) -> Vec<(&'n str, Span, Val<'n>)> {
        let mut out = Vec::new();
        for p in self.props.iter_mut().filter(|p| !p.3) {
            p.3 = true;
            out.push((p.0, p.1, p.2));
        }
        out
    }

    /// A property `key=value`, or an attribute child `key value` (both forms are accepted).
    #[inline]
    pub fn prop(&mut self, cx: &mut Cx, key: &'static str) -> Option<Val<'n>> {
        self.known_props.push(key);
        // Most nodes (a firewall rule asks for 29 keys) have no children: no attribute child to
        // look for, no duplicate to report.
        if self.children.is_empty() {
            if self.prop_keys & key_bit(key) == 0 {
                return None;
            }
            let p = self.props.iter_mut().find(|p| p.0 == key)?;
            p.3 = true;
            return Some(p.2);
        }
        self.prop_or_child(cx, key)
    }

    /// [`Reader::prop`] on a node with children: the key may be an attribute child, or given
    /// twice. Kept out of line so the common case stays a few instructions.
    #[inline(never)]
    fn prop_or_child(&mut self, cx: &mut Cx, key: &'static str) -> Option<Val<'n>> {
        let as_children: Vec<usize> =
            self.children.iter().enumerate().filter(|(_, (c, _))| c.name.value == key).map(|(i, _)| i).collect();
        let prop = self.props.iter().position(|p| p.0 == key);
        // Given twice (property and child, or two children): the first wins, the rest is an error.
        let first_span =
            prop.map(|i| self.props[i].1).or_else(|| as_children.first().map(|i| self.children[*i].0.name.span));
        let skip = usize::from(prop.is_none());
        for &i in as_children.iter().skip(skip) {
            self.children[i].1 = true;
            let span = self.children[i].0.name.span;
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

    /// `keys` found in one walk over the node's properties (instead of one search per key),
    /// when every property given is one of them and no child node may stand for one; `None`
    /// otherwise (ask key by key). On `Some`, every key counts as asked and every property as
    /// read: the node has nothing else, and a caller may skip the keys it would ask after these
    /// (they would all be absent).
    pub fn props_if_only<const N: usize>(&mut self, keys: &[&'static str; N]) -> Option<[Option<Val<'n>>; N]> {
        if !self.children.is_empty() {
            return None;
        }
        let mut found = [None; N];
        for p in &self.props {
            found[keys.iter().position(|k| *k == p.0)?] = Some(p.2);
        }
        for p in &mut self.props {
            p.3 = true;
        }
        self.known_props.extend_from_slice(keys);
        Some(found)
    }

    /// A property that must be present.
    pub fn required(&mut self, cx: &mut Cx, key: &'static str, example: &str) -> Option<Val<'n>> {
        let v = self.prop(cx, key);
        if v.is_none() && !self.node.recovered {
            let kw = self.keyword().to_string();
            cx.error(code::MISSING_PROPERTY, self.head_span(), format!("`{kw}` needs `{key}`")).help =
                Some(format!("add `{key}={example}`"));
        }
        v
    }

    /// Child nodes named `name` (for repeated children like `address`).
    pub fn children(&mut self, name: &'static str) -> Vec<&'n KdlNode<'n>> {
        // The names asked for serve only to report unknown children: a node without children
        // (every route of a routing table) keeps no list, no heap block per node.
        if self.children.is_empty() {
            return Vec::new();
        }
        self.known_children.push(name);
        let mut out = Vec::new();
        for (c, used) in self.children.iter_mut() {
            if c.name.value == name {
                *used = true;
                out.push(*c);
            }
        }
        out
    }

    /// Every child node, in order; each counts as read.
    pub fn all_children(&mut self) -> Vec<&'n KdlNode<'n>> {
        self.children
            .iter_mut()
            .map(|(c, used)| {
                *used = true;
                *c
            })
            .collect()
    }

    /// Reports extra arguments, unknown properties and unknown children. By reference: moving
    /// a reader (large, its lists are inline) into the call was a copy per node.
    pub fn finish(&self, cx: &mut Cx) {
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
                let name = &child.name.value;
                let span = child.name.span;
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
