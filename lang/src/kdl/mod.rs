//! netcfg's own KDL v2 front end: a hand-written lexer ([`lexer`], shared with `netcfg fmt`) and
//! a parser ([`parse`]) producing a small spanned tree borrowed from the source text.
//!
//! Why not the `kdl` crate: its format-preserving parser reads 0.9 MB/s, overflows the stack
//! near 1,300 nesting levels and stops at the first error. This one keeps its own stack (depth
//! bounded by [`MAX_DEPTH`]), runs in linear time, reports one `syntax` diagnostic per error and
//! resynchronises at the end of the node, so the rest of the file is still read. The `kdl`
//! crate stays as the oracle of the conformance and differential tests.
//!
//! What it must not do: know about netcfg's keywords (that is `parse.rs` and `reader.rs`), or
//! recurse on the input's nesting.

pub mod lexer;
mod parser;
mod text;

use crate::source::Span;
use std::borrow::Cow;

pub use parser::{parse, MAX_DEPTH};

/// A parsed document: its top-level nodes (slashdashed ones removed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document<'a> {
    pub nodes: Vec<Node<'a>>,
}

/// A string as written in the source: its decoded value and the span of its token.
#[derive(Clone, Debug, PartialEq)]
pub struct Str<'a> {
    pub value: Cow<'a, str>,
    pub span: Span,
}

/// One node. `span` runs from its type annotation or name to just before its terminator
/// (newline, `;`, comment, `}` or the end of the file), like the `kdl` crate's node spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Node<'a> {
    /// The type annotation, rare: boxed so every node does not pay for it.
    pub ty: Option<Box<Str<'a>>>,
    pub name: Str<'a>,
    pub entries: Vec<Entry<'a>>,
    pub children: Option<Children<'a>>,
    pub span: Span,
    /// A syntax error was reported in the node's own text (not its children): some of its
    /// entries may be missing, so readers should not also report them as missing.
    pub recovered: bool,
}

/// A `{ … }` block; `span` covers the braces.
#[derive(Clone, Debug, PartialEq)]
pub struct Children<'a> {
    pub nodes: Vec<Node<'a>>,
    pub span: Span,
}

/// An argument (`key` is `None`) or a property.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<'a> {
    pub key: Option<Str<'a>>,
    /// The type annotation, rare: boxed so every entry does not pay for it.
    pub ty: Option<Box<Str<'a>>>,
    pub value: Value<'a>,
    /// The value's token, without `key=` and type annotation.
    pub span: Span,
    /// For a string written without escapes on one line: the span of its contents (inside the
    /// quotes), so value errors can point at exact characters. Otherwise equal to `span`.
    pub inner: Span,
}

/// A KDL value. Integers keep their exact value (out of `i128` range is a syntax error); floats
/// (anything with a `.` or an exponent, and `#inf`, `#-inf`, `#nan`) are `f64`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    String(Cow<'a, str>),
    Integer(Int),
    Float(f64),
    Bool(bool),
    Null,
}

/// An `i128` kept as two 8-byte halves: a bare `i128` is 16-byte aligned and made every
/// [`Entry`] of the tree 16 bytes larger (a fifth of the tree of 100,000 firewall rules).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Int {
    hi: i64,
    lo: u64,
}

impl Int {
    pub fn get(self) -> i128 {
        (i128::from(self.hi) << 64) | i128::from(self.lo)
    }
}

impl From<i128> for Int {
    fn from(v: i128) -> Int {
        Int { hi: (v >> 64) as i64, lo: v as u64 }
    }
}

impl std::fmt::Debug for Int {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl std::fmt::Display for Int {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Value<'_> {
    /// "a string", "an integer", … for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Null => "#null",
        }
    }
}

impl<'a> Node<'a> {
    /// The child nodes (none when there is no children block).
    pub fn child_nodes(&self) -> &[Node<'a>] {
        self.children.as_ref().map_or(&[], |c| &c.nodes)
    }
}
