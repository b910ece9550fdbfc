//! Canonical layout of spec files (`netcfg fmt`).
//!
//! The layout: one node per line (`;` becomes a line break), four spaces per nesting level,
//! one space between entries, `key=value` without spaces, `{` on the node's line and `}` on its
//! own, `{}` for an empty block, at most one blank line in a row (none right after `{` or
//! before `}`), no trailing whitespace, one newline at the end of the file. Line continuations
//! (`\`) are kept as the author's line breaks.
//!
//! What it must not do: change meaning or drop a comment. It works on tokens, so values keep
//! their exact spelling (quotes, raw strings, number bases) and comments and slashdashed items
//! are copied. The tokens come from the parser's own lexer (`netcfg_lang::kdl::lexer`), so the
//! formatter and the parser agree on every token. `kdl`'s `autoformat` is not used because it drops a line comment that
//! follows a node (`route "default" dev="eth0" // uplink`) and rewrites values. As a safety
//! net every result is checked: same KDL document, same comments in the same order, and
//! formatting the result again changes nothing; otherwise [`format`] returns an error.

mod lex;

use lex::{is_newline, Kind, Token};
use netcfg_lang::kdl::{self, Document, Node, Value};
use netcfg_lang::FileId;
use std::fmt;

const INDENT: &str = "    ";

/// Why a file could not be formatted. Files that are not valid KDL never get here (the caller
/// reports their syntax errors); this is a bug in the formatter, reported instead of writing.
#[derive(Debug)]
pub struct FormatError(String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical layout of `src`, which must be a valid KDL document.
pub fn format(src: &str) -> Result<String, FormatError> {
    let out = layout(src)?;
    verify(src, &out)?;
    let again = layout(&out)?;
    if again != out {
        return Err(FormatError("the formatter is not idempotent on this file".into()));
    }
    Ok(out)
}

fn layout(src: &str) -> Result<String, FormatError> {
    let tokens =
        lex::lex(src).map_err(|e| FormatError(format!("cannot tokenize at byte {}: {}", e.offset, e.message)))?;
    let mut p = Printer::default();
    for (i, t) in tokens.iter().enumerate() {
        p.token(src, t, next_significant(&tokens[i + 1..]));
    }
    if p.line != Line::Empty {
        p.out.push('\n');
    }
    Ok(p.out)
}

fn next_significant(rest: &[Token<'_>]) -> Option<Kind> {
    rest.iter().map(|t| t.kind).find(|k| *k != Kind::Space)
}

/// The state of the output line being written.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
enum Line {
    /// Nothing written on it yet.
    #[default]
    Empty,
    /// Inside a node: the next entry goes on this line after a space.
    Node,
    /// The node ended (`{` opened, `;`, or a trailing comment): only a trailing line comment may
    /// follow on this line.
    Ended,
    /// Right after `}`: a trailing comment, or a further `/- { … }` block of the same node.
    Closed,
}

#[derive(Default)]
struct Printer {
    out: String,
    depth: usize,
    line: Line,
    /// A blank line was seen before the next item.
    blank: bool,
    /// Nothing written since the start of the file or the last `{`.
    block_start: bool,
    /// The previous line ended with a `\`: indent one level deeper.
    continuation: bool,
    /// No space before the next token (after `=`, `(` and `)`).
    glue: bool,
    /// The current line already ends with a line comment.
    has_trailing_comment: bool,
    /// The `{` just opened carries a trailing line comment: the block is not empty, and its `}`
    /// goes on a line of its own (after the comment it would be commented out).
    open_has_comment: bool,
}

impl Printer {
    fn token(&mut self, src: &str, t: &Token<'_>, next: Option<Kind>) {
        match t.kind {
            Kind::Space => {}
            Kind::Newline => {
                if self.line == Line::Empty {
                    self.blank = true;
                } else {
                    self.end_line();
                }
            }
            Kind::LineComment => {
                let text = t.text.trim_end();
                if matches!(self.line, Line::Node | Line::Ended | Line::Closed) && !self.has_trailing_comment {
                    self.out.push(' ');
                    self.out.push_str(text);
                    self.open_has_comment |= self.block_start;
                } else {
                    self.begin_line();
                    self.out.push_str(text);
                }
                self.line = Line::Ended;
                self.has_trailing_comment = true;
            }
            Kind::BlockComment => {
                let glue = self.glue;
                self.item();
                let column = self.out.len() - self.out.rfind('\n').map_or(0, |i| i + 1);
                push_reindented(&mut self.out, t.text, column as isize - source_column(src, t.start) as isize);
                self.glue = glue;
            }
            Kind::Escline => {
                let terminated =
                    matches!(next, None | Some(Kind::Newline | Kind::Semicolon | Kind::Close | Kind::LineComment));
                match (terminated, t.comment) {
                    // A `\` on a line of its own that continues nothing (at the end of the
                    // file, or before a blank line): nothing to write. Ending a line here
                    // would add a blank line that the next run removes (found by fuzz_fmt).
                    (true, None) if self.line == Line::Empty => {}
                    (true, Some(comment)) if self.line == Line::Empty => {
                        self.begin_line();
                        self.out.push_str(comment.trim_end());
                        self.end_line();
                    }
                    // A continuation into nothing: the node ends with this line anyway.
                    (true, None) => self.end_line(),
                    (true, Some(comment)) => {
                        self.out.push(' ');
                        self.out.push_str(comment.trim_end());
                        self.end_line();
                    }
                    (false, comment) => {
                        self.out.push_str(" \\");
                        if let Some(c) = comment {
                            self.out.push(' ');
                            self.out.push_str(c.trim_end());
                        }
                        self.end_line();
                        self.continuation = true;
                    }
                }
            }
            Kind::Open => {
                self.item();
                self.out.push('{');
                self.depth += 1;
                self.line = Line::Ended;
                self.block_start = true;
                self.open_has_comment = false;
                self.blank = false;
            }
            Kind::Close => {
                if self.block_start && !self.open_has_comment {
                    // Nothing but line breaks since `{`: an empty block.
                    let len = self.out.trim_end().len();
                    self.out.truncate(len);
                    self.out.push('}');
                } else {
                    if self.line != Line::Empty {
                        self.out.push('\n');
                    }
                    self.indent(self.depth.saturating_sub(1));
                    self.out.push('}');
                }
                self.depth = self.depth.saturating_sub(1);
                self.line = Line::Closed;
                self.has_trailing_comment = false;
                self.block_start = false;
                self.open_has_comment = false;
                self.blank = false;
                self.continuation = false;
            }
            Kind::Semicolon => {
                if matches!(self.line, Line::Node | Line::Closed) {
                    self.line = Line::Ended;
                }
            }
            Kind::Equals | Kind::TypeClose => {
                self.out.push_str(t.text);
                self.glue = true;
            }
            Kind::TypeOpen => {
                self.item();
                self.out.push('(');
                self.glue = true;
            }
            Kind::Slashdash => {
                self.item();
                self.out.push_str("/-");
            }
            Kind::Value => {
                self.item();
                self.out.push_str(t.text);
            }
        }
    }

    /// Prepares the output for the next token of a node: a new line with indentation, or a
    /// separating space.
    fn item(&mut self) {
        match self.line {
            Line::Node if !self.glue => self.out.push(' '),
            Line::Node => {}
            // After `}` only a further children block of the same node stays on the line.
            Line::Closed if !self.has_trailing_comment => self.out.push(' '),
            Line::Closed | Line::Ended => {
                self.out.push('\n');
                self.line = Line::Empty;
                self.blank = false;
                self.begin_line();
            }
            Line::Empty => self.begin_line(),
        }
        self.glue = false;
        self.line = Line::Node;
    }

    fn begin_line(&mut self) {
        if self.line != Line::Empty {
            self.out.push('\n');
        }
        if self.blank && !self.block_start && !self.continuation {
            self.out.push('\n');
        }
        self.indent(self.depth + usize::from(self.continuation));
        self.blank = false;
        self.block_start = false;
        self.continuation = false;
        self.has_trailing_comment = false;
        self.line = Line::Node;
    }

    fn end_line(&mut self) {
        self.out.push('\n');
        self.line = Line::Empty;
        self.has_trailing_comment = false;
        self.glue = false;
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
    }
}

/// Column (in bytes of the line so far, as the output measures it) where `offset` starts.
fn source_column(src: &str, offset: usize) -> usize {
    let before = &src[..offset];
    offset - before.rfind(is_newline).map_or(0, |i| i + before[i..].chars().next().map_or(1, char::len_utf8))
}

/// Writes a block comment whose first line moved by `delta` columns, moving its other lines by
/// the same amount so that their alignment is kept.
fn push_reindented(out: &mut String, comment: &str, delta: isize) {
    for (i, line) in comment_lines(comment).iter().enumerate() {
        if i == 0 {
            out.push_str(line.trim_end());
            continue;
        }
        out.push('\n');
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if delta >= 0 {
            out.push_str(&" ".repeat(delta as usize));
            out.push_str(line);
        } else {
            let removable = line.len() - line.trim_start_matches([' ', '\t']).len();
            out.push_str(&line[removable.min(delta.unsigned_abs())..]);
        }
    }
}

fn comment_lines(comment: &str) -> Vec<String> {
    comment.replace("\r\n", "\n").split(is_newline).map(str::to_string).collect()
}

/// Checks that `out` says the same as `src`: the same KDL document and the same comments.
fn verify(src: &str, out: &str) -> Result<(), FormatError> {
    let (before, errors) = kdl::parse(src, FileId(0));
    if let Some(e) = errors.first() {
        return Err(FormatError(format!("the input is not valid KDL: {}", e.message)));
    }
    let (after, errors) = kdl::parse(out, FileId(0));
    if let Some(e) = errors.first() {
        return Err(FormatError(format!("formatted text: {}", e.message)));
    }
    if !same_document(&before, &after) {
        return Err(FormatError("formatting would change the document".into()));
    }
    let comments = |text: &str| -> Result<Vec<String>, FormatError> {
        let tokens = lex::lex(text).map_err(|e| FormatError(format!("cannot tokenize at byte {}", e.offset)))?;
        Ok(tokens
            .iter()
            .filter_map(|t| match t.kind {
                Kind::LineComment => Some(t.text.trim_end().to_string()),
                Kind::Escline => t.comment.map(|c| c.trim_end().to_string()),
                Kind::BlockComment => {
                    Some(comment_lines(t.text).iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n"))
                }
                Kind::Slashdash => Some("/-".into()),
                _ => None,
            })
            .collect())
    };
    if comments(src)? != comments(out)? {
        return Err(FormatError("formatting would lose a comment".into()));
    }
    Ok(())
}

fn same_document(a: &Document, b: &Document) -> bool {
    same_nodes(&a.nodes, &b.nodes)
}

/// Same names, type annotations, entries and children; spans are not compared. The parser
/// bounds nesting (`kdl::MAX_DEPTH`), which bounds this recursion.
fn same_nodes(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_node(x, y))
}

fn same_node(a: &Node, b: &Node) -> bool {
    let ty = |n: &Node| n.ty.as_ref().map(|t| t.value.to_string());
    let entries_equal = a.entries.len() == b.entries.len()
        && a.entries.iter().zip(&b.entries).all(|(x, y)| {
            x.key.as_ref().map(|k| &k.value) == y.key.as_ref().map(|k| &k.value)
                && x.ty.as_ref().map(|t| &t.value) == y.ty.as_ref().map(|t| &t.value)
                && same_value(&x.value, &y.value)
        });
    let children_equal = match (&a.children, &b.children) {
        (Some(x), Some(y)) => same_nodes(&x.nodes, &y.nodes),
        (None, None) => true,
        _ => false,
    };
    a.name.value == b.name.value && ty(a) == ty(b) && entries_equal && children_equal
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::format;

    fn fmt(src: &str) -> String {
        format(src).unwrap_or_else(|e| panic!("{e}\n--- input:\n{src}"))
    }

    /// Found by fuzz_fmt: a `\` alone on the last line once formatted to an extra blank line,
    /// which the next run removed.
    #[test]
    fn a_backslash_alone_on_a_line_is_dropped_and_formatting_is_idempotent() {
        for src in ["node \"a\" {\n}\n\\", "node \"a\"\n\\\n", "node \"a\"\n\\ // why\n"] {
            let once = fmt(src);
            assert_eq!(fmt(&once), once, "{src:?}");
        }
        assert_eq!(fmt("node \"a\"\n\\"), "node \"a\"\n");
        assert_eq!(fmt("node \"a\"\n\\ // why\n"), "node \"a\"\n// why\n");
    }

    /// Found by fuzz_fmt in CI: a block holding only the comment on its `{` line was taken for
    /// an empty block, and its `}` went onto the comment's line, commented out.
    #[test]
    fn a_block_holding_only_a_comment_on_its_brace_line_keeps_its_close_brace() {
        assert_eq!(fmt("b \"x\"{ // c\n}\n"), "b \"x\" { // c\n}\n");
        assert_eq!(fmt("a {\n  b \"x\" { // c\n\n  }\n}\n"), "a {\n    b \"x\" { // c\n    }\n}\n");
        assert_eq!(fmt("b { // c\n}\nd {\n}\n"), "b { // c\n}\nd {}\n");
    }

    #[test]
    fn lays_out_nodes_one_per_line() {
        assert_eq!(
            fmt("node   \"a\"{ bridge  \"br0\"   mtu = 1500 ;route \"default\" via=\"10.0.0.1\"\n}\n\n\n"),
            "node \"a\" {\n    bridge \"br0\" mtu=1500\n    route \"default\" via=\"10.0.0.1\"\n}\n"
        );
    }

    #[test]
    fn keeps_every_comment() {
        let src = "// head\n\n\n/* block\n   text */\nnode \"a\" { // after brace\n  a 1; // after semi\n    b /* inline */ 2 /- 3 key=4\n  d {\n     e\n  } // after close\n  /- gone {\n    x\n  }\n  /* before close */\n}\n// end\n";
        assert_eq!(
            fmt(src),
            "// head\n\n/* block\n   text */\nnode \"a\" { // after brace\n    a 1 // after semi\n    b /* inline */ 2 /- 3 key=4\n    d {\n        e\n    } // after close\n    /- gone {\n        x\n    }\n    /* before close */\n}\n// end\n"
        );
    }

    #[test]
    fn block_comments_keep_their_alignment() {
        assert_eq!(
            fmt("a {\n        /* one\n           two */\n    b\n}\n"),
            "a {\n    /* one\n       two */\n    b\n}\n"
        );
    }

    #[test]
    fn empty_blocks_values_and_continuations() {
        assert_eq!(fmt("node b { }\nnode c {\n}\n"), "node b {}\nnode c {}\n");
        assert_eq!(fmt("s 0x10 #\"raw\"# (u8)7 k=(t)#true\n"), "s 0x10 #\"raw\"# (u8)7 k=(t)#true\n");
        assert_eq!(fmt("a 1 \\\n   b=2 \\ // why\n c=3\n"), "a 1 \\\n    b=2 \\ // why\n    c=3\n");
        // A continuation into a blank line ends the node: it must not glue the next node on.
        assert_eq!(fmt("a 1 \\\n\nb 2\n"), "a 1\n\nb 2\n");
        assert_eq!(fmt("a 1 \\ // c\n\nb 2\n"), "a 1 // c\n\nb 2\n");
    }

    #[test]
    fn multiline_strings_are_copied() {
        let src = "a {\n  s \"\"\"\n    x\n      y\n    \"\"\"\n}\n";
        assert_eq!(fmt(src), "a {\n    s \"\"\"\n    x\n      y\n    \"\"\"\n}\n");
    }

    #[test]
    fn is_idempotent_on_odd_inputs() {
        for src in [
            "",
            "\n\n",
            "// only a comment",
            "a;b;c",
            "a { b { c { d 1; }; }; }",
            "a /- { x } { y }",
            "a { } /- { x }",
            "a\r\n\r\n\r\nb\r\n",
            "/- a 1\nb",
            "a // one\n// two\n",
        ] {
            let once = fmt(src);
            assert_eq!(fmt(&once), once, "input: {src:?}");
        }
    }
}
