//! KDL v2 tokens to a [`Document`], with error recovery.
//!
//! Nesting is kept on an explicit stack of open children blocks, so deep input costs heap, not
//! call stack; a block deeper than [`MAX_DEPTH`] is one diagnostic and is skipped. Every syntax
//! error is one `syntax` diagnostic on the smallest span that shows it, with a help line; after
//! it the parser resynchronises (at the end of the token, or of the node: the next newline, `;`
//! or `}` at the same depth), so the nodes after it are still read.

use super::lexer::{LexError, Lexer, Token, TokenKind};
use super::text::{self, TextError};
use super::{Children, Document, Entry, Node, Str, Value};
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use std::borrow::Cow;

/// The deepest nesting of children blocks read; deeper blocks are a syntax error. netcfg specs
/// nest about five levels; this bound keeps every recursive consumer of the tree (readers,
/// comparisons, drop) far from the stack limit.
pub const MAX_DEPTH: usize = 128;

/// Parses `src` (the text of `file`). Never fails: the document holds every node that could be
/// read; the diagnostics say what could not.
pub fn parse(src: &str, file: FileId) -> (Document<'_>, Vec<Diagnostic>) {
    let mut p = Parser {
        src,
        lexer: Lexer::new(src),
        tok: EOF,
        file,
        diags: Vec::new(),
        swallowed_rest: false,
        last_error_end: u32::MAX,
        entries: Vec::new(),
        open_nodes: Vec::new(),
    };
    p.bump();
    if p.tok.kind == TokenKind::Bom {
        p.bump();
    }
    let nodes = p.document();
    (Document { nodes }, p.diags)
}

const EOF: Token = Token { kind: TokenKind::Newline, start: 0, end: 0, error: None, plain: false };

/// A node whose head has been read.
struct Partial<'a> {
    node: Node<'a>,
    /// Slashdashed: parsed for its errors, then dropped.
    discard: bool,
    /// A children block was seen (slashdashed or not): entries may no longer follow.
    after_children: bool,
    /// Diagnostics reported before this node's own text (or its part after the children).
    errors_before: usize,
}

enum Step<'a> {
    /// The node ended; `None` when it is dropped (slashdashed or unreadable).
    Done(Option<Node<'a>>),
    /// A `{` opens the node's children (or, slashdashed, a block to drop).
    Open { partial: Partial<'a>, discard_children: bool },
}

struct Frame<'a> {
    partial: Partial<'a>,
    discard_children: bool,
    open: u32,
    /// Where the block's nodes start in [`Parser::open_nodes`].
    first: usize,
}

struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    tok: Token,
    file: FileId,
    diags: Vec<Diagnostic>,
    /// An unclosed string or comment ran to the end of the file: unclosed braces are a
    /// consequence, not another error.
    swallowed_rest: bool,
    /// Where the last reported error ends: a token right after it is not blamed for missing
    /// space as well.
    last_error_end: u32,
    /// The entries of the node being read, moved into it (exactly sized) when its head ends:
    /// one allocation per node instead of a growing vector and a shrink.
    entries: Vec<Entry<'a>>,
    /// The nodes of every open children block, innermost last: a block's nodes are moved out
    /// (exactly sized) when it closes, so blocks do not each grow and shrink a vector.
    open_nodes: Vec<Node<'a>>,
}

impl<'a> Parser<'a> {
    /// Moves to the next token, reporting its lexical error (once) if it has one.
    fn bump(&mut self) {
        self.tok = match self.lexer.next_token() {
            Some(t) => t,
            None => Token {
                kind: TokenKind::Newline,
                start: self.src.len() as u32,
                end: self.src.len() as u32,
                error: None,
                plain: false,
            },
        };
        if let Some(e) = self.tok.error {
            self.lex_error(e);
        }
    }

    fn eof(&self) -> bool {
        self.tok.start as usize == self.src.len()
    }

    fn span(&self, start: u32, end: u32) -> Span {
        Span::new(self.file, start as usize, end as usize)
    }

    // Errors are rare: kept out of line so the hot paths that may report one stay small.
    #[cold]
    #[inline(never)]
    fn error(&mut self, span: Span, message: impl Into<String>, label: &str, help: impl Into<String>) {
        self.last_error_end = span.end;
        self.diags.push(Diagnostic::error(crate::code::SYNTAX, span, message).with_label(label).with_help(help));
    }

    #[cold]
    #[inline(never)]
    fn lex_error(&mut self, e: LexError) {
        let t = self.tok;
        let first = |s: &str| s.chars().next().map_or(1, char::len_utf8) as u32;
        let text = t.text(self.src);
        let (span, message, label, help): (Span, String, &str, &str) = match e {
            LexError::UnclosedString => {
                self.swallowed_rest = true;
                let quote = text.find('"').map_or(1, |i| i + 1) as u32;
                (
                    self.span(t.start, t.start + quote),
                    "unclosed string".into(),
                    "this string is never closed",
                    "close it with the same quotes it opens with",
                )
            }
            LexError::NewlineInString => {
                let quote = text.find('"').map_or(1, |i| i + 1) as u32;
                (
                    self.span(t.start, t.start + quote),
                    "unclosed string".into(),
                    "this string is not closed on its line",
                    "close it before the end of the line; a string over several lines is written `\"\"\"` newline … newline `\"\"\"`",
                )
            }
            LexError::MultilineNoNewline => {
                let quotes = text.find("\"\"\"").map_or(3, |i| i + 3) as u32;
                (
                    self.span(t.start, t.start + quotes),
                    "a multi-line string must start a new line after its opening `\"\"\"`".into(),
                    "text follows the opening quotes",
                    "for a one-line string use single quotes: `\"…\"`",
                )
            }
            LexError::UnclosedComment => {
                self.swallowed_rest = true;
                let at = text.find("/*").unwrap_or(0) as u32;
                (
                    self.span(t.start + at, t.start + at + 2),
                    "unclosed block comment".into(),
                    "this comment is never closed",
                    "close it with `*/` (block comments nest: every `/*` needs its own `*/`)",
                )
            }
            LexError::StrayBackslash => (
                self.span(t.start, t.end),
                "a `\\` outside a string must end its line".into(),
                "text follows the line continuation",
                "a `\\` continues the node on the next line; put the rest on that line, or quote the value",
            ),
            LexError::UnexpectedChar => (
                self.span(t.start, t.start + first(text)),
                format!("unexpected `{}`", &text[..first(text) as usize]),
                "not valid here",
                "quote the value if it is part of a string",
            ),
            LexError::DisallowedChar => {
                let c = text.chars().next().unwrap_or('\0');
                (
                    self.span(t.start, t.end),
                    format!("the code point U+{:04X} is not allowed in KDL", c as u32),
                    "invisible or control character",
                    "remove it, or write it as an escape `\\u{…}` in a quoted string",
                )
            }
        };
        self.error(span, message, label, help);
    }

    #[cold]
    #[inline(never)]
    fn text_error(&mut self, t: Token, e: TextError) {
        let span = self.span(t.start + e.range.start as u32, t.start + e.range.end.max(e.range.start + 1) as u32);
        self.error(span, e.message, "here", e.help);
    }

    /// Skips whitespace, block comments and line continuations; true when any was skipped.
    #[inline]
    fn node_space(&mut self) -> bool {
        let mut any = false;
        while self.tok.is_node_space() && !self.eof() {
            any = true;
            self.bump();
        }
        any
    }

    /// Skips everything that may separate nodes.
    fn line_space(&mut self) {
        while !self.eof()
            && (self.tok.is_node_space() || matches!(self.tok.kind, TokenKind::Newline | TokenKind::LineComment))
        {
            self.bump();
        }
    }

    fn document(&mut self) -> Vec<Node<'a>> {
        let mut root: Vec<Node<'a>> = Vec::new();
        let mut stack: Vec<Frame<'a>> = Vec::new();
        let mut step: Option<Step<'a>> = None;
        loop {
            match step.take() {
                Some(Step::Done(node)) => {
                    if let Some(node) = node {
                        match stack.last() {
                            Some(_) => self.open_nodes.push(node),
                            None => root.push(node),
                        }
                    }
                    continue;
                }
                Some(Step::Open { mut partial, discard_children }) => {
                    let open = self.tok.start;
                    if stack.len() >= MAX_DEPTH {
                        self.error(
                            self.span(open, open + 1),
                            format!("children blocks nest deeper than {MAX_DEPTH} levels"),
                            "too deep",
                            "flatten the structure; netcfg specs need only a few levels",
                        );
                        self.skip_block();
                        partial.after_children = true;
                        step = Some(self.node_rest(partial));
                        continue;
                    }
                    self.bump();
                    stack.push(Frame { partial, discard_children, open, first: self.open_nodes.len() });
                    continue;
                }
                None => {}
            }
            self.line_space();
            if self.eof() {
                if !self.swallowed_rest {
                    for f in stack.iter().rev() {
                        let name = f.partial.node.name.value.clone();
                        self.error(
                            self.span(f.open, f.open + 1),
                            "unclosed `{`",
                            "this block is never closed",
                            format!("add a `}}` to close the children of `{name}`"),
                        );
                    }
                }
                // Close the open blocks so their nodes are still read.
                while let Some(f) = stack.pop() {
                    let end = self.src.len() as u32;
                    let node = self.close_frame(f, end);
                    match (node, stack.last()) {
                        (Some(n), Some(_)) => self.open_nodes.push(n),
                        (Some(n), None) => root.push(n),
                        (None, _) => {}
                    }
                }
                return root;
            }
            match self.tok.kind {
                TokenKind::CloseBrace => match stack.pop() {
                    Some(f) => {
                        let close = self.tok.end;
                        let errors_before = self.diags.len();
                        self.bump();
                        let mut partial = self.close_frame_partial(f, close);
                        partial.after_children = true;
                        partial.errors_before = errors_before;
                        step = Some(self.node_rest(partial));
                    }
                    None => {
                        self.error(
                            self.span(self.tok.start, self.tok.end),
                            "unexpected `}`",
                            "no block to close",
                            "remove it, or add the `{` it was meant to close",
                        );
                        self.bump();
                    }
                },
                TokenKind::Semicolon => {
                    // `;` ends a node; a stray one is harmless but not KDL.
                    self.error(
                        self.span(self.tok.start, self.tok.end),
                        "unexpected `;`",
                        "no node to end",
                        "remove it",
                    );
                    self.bump();
                }
                TokenKind::Slashdash => {
                    self.bump();
                    self.line_space();
                    step = Some(self.node(true));
                }
                _ => step = Some(self.node(false)),
            }
        }
    }

    /// Pops a frame into the node it belongs to, with its children set.
    fn close_frame_partial(&mut self, f: Frame<'a>, close: u32) -> Partial<'a> {
        let mut partial = f.partial;
        if f.discard_children {
            self.open_nodes.truncate(f.first);
        } else {
            let nodes = self.open_nodes.drain(f.first..).collect();
            partial.node.children = Some(Children { nodes, span: self.span(f.open, close) });
        }
        partial
    }

    /// Closes a frame at the end of the file: the node is complete as far as it goes.
    fn close_frame(&mut self, f: Frame<'a>, end: u32) -> Option<Node<'a>> {
        let mut partial = self.close_frame_partial(f, end);
        partial.node.span.end = end;
        (!partial.discard).then_some(partial.node)
    }

    /// Skips a `{ … }` block lexically (depth-limited or unreadable content).
    fn skip_block(&mut self) {
        let open = self.tok.start;
        let mut depth = 0usize;
        loop {
            match self.tok.kind {
                TokenKind::OpenBrace => depth += 1,
                TokenKind::CloseBrace => {
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            if self.eof() {
                if !self.swallowed_rest {
                    self.error(
                        self.span(open, open + 1),
                        "unclosed `{`",
                        "this block is never closed",
                        "add the missing `}`",
                    );
                }
                return;
            }
            self.bump();
        }
    }

    /// Skips to the end of the current node after an error: the next newline, `;` or line
    /// comment, or the `}` closing the enclosing block; nested blocks are skipped whole.
    fn skip_node(&mut self) {
        loop {
            if self.eof() {
                return;
            }
            match self.tok.kind {
                TokenKind::Newline | TokenKind::Semicolon | TokenKind::LineComment => {
                    self.bump();
                    return;
                }
                TokenKind::CloseBrace => return,
                TokenKind::OpenBrace => self.skip_block(),
                _ => self.bump(),
            }
        }
    }

    /// A node from its type annotation or name.
    fn node(&mut self, discard: bool) -> Step<'a> {
        let start = self.tok.start;
        let errors_before = self.diags.len();
        let ty = if self.tok.kind == TokenKind::OpenParen {
            let ty = self.type_annotation();
            self.node_space();
            ty
        } else {
            None
        };
        let name = match self.string_token() {
            Some(Ok(name)) => name,
            Some(Err(())) => {
                self.skip_node();
                return Step::Done(None);
            }
            None => {
                let t = self.tok;
                if t.error.is_none() {
                    let (what, help) = self.describe(t);
                    self.error(
                        self.span(t.start, t.end),
                        format!("expected a node name, found {what}"),
                        "not a node name",
                        help,
                    );
                }
                match t.kind {
                    _ if self.eof() => {}
                    TokenKind::CloseBrace => {}
                    TokenKind::Newline | TokenKind::Semicolon | TokenKind::LineComment => self.bump(),
                    TokenKind::OpenBrace => self.skip_node(),
                    _ => {
                        self.bump();
                        self.skip_node();
                    }
                }
                return Step::Done(None);
            }
        };
        let node = Node {
            ty: ty.map(Box::new),
            name,
            entries: Vec::new(),
            children: None,
            span: self.span(start, start),
            recovered: false,
        };
        self.node_rest(Partial { node, discard, after_children: false, errors_before })
    }

    /// What a token is, for "expected …, found …" messages, and a help line.
    fn describe(&self, t: Token) -> (String, &'static str) {
        let text = t.text(self.src);
        if self.eof() && t.start == self.tok.start {
            return ("the end of the file".into(), "complete the node, or remove what is left of it");
        }
        match t.kind {
            TokenKind::Newline | TokenKind::LineComment | TokenKind::Semicolon => {
                ("the end of the node".into(), "complete the node, or remove what is left of it")
            }
            TokenKind::Bare if text::looks_like_number(text) => {
                (format!("the number `{text}`"), "a node name is an identifier or a quoted string")
            }
            TokenKind::Keyword => (format!("`{text}`"), "a node name is an identifier or a quoted string"),
            TokenKind::OpenBrace => ("`{`".into(), "a `{` opens the children of a node: write the node name before it"),
            TokenKind::CloseBrace => ("`}`".into(), "remove it, or add the `{` it was meant to close"),
            TokenKind::Equals => ("`=`".into(), "a property is written `key=value` after the node name"),
            TokenKind::OpenParen | TokenKind::CloseParen => {
                (format!("`{text}`"), "a type annotation is written `(type)` right before a name or value")
            }
            TokenKind::Slashdash => ("`/-`".into(), "`/-` comments out the node, entry or block right after it"),
            _ => (format!("`{text}`"), "see spec.md for the KDL syntax netcfg reads"),
        }
    }

    /// The current token as a string (identifier, quoted or raw), consumed. `None` (nothing
    /// consumed) when it is no string; `Some(Err)` when it is a malformed one (reported).
    fn string_token(&mut self) -> Option<Result<Str<'a>, ()>> {
        let t = self.tok;
        let src: &'a str = self.src;
        let text = t.text(src);
        let decoded = match t.kind {
            TokenKind::Bare => {
                if text::looks_like_number(text) {
                    return None;
                }
                self.bump();
                if let Some(e) = text::identifier_problem(text) {
                    self.text_error(t, e);
                    return Some(Err(()));
                }
                return Some(Ok(Str { value: Cow::Borrowed(text), span: self.span(t.start, t.end) }));
            }
            TokenKind::QuotedString | TokenKind::RawString => {
                self.bump();
                if t.error.is_some() {
                    return Some(Err(()));
                }
                if t.plain {
                    Ok(text::Decoded { value: Cow::Borrowed(&text[1..text.len() - 1]) })
                } else if t.kind == TokenKind::QuotedString {
                    text::quoted(text)
                } else {
                    text::raw(text)
                }
            }
            _ => return None,
        };
        match decoded {
            Ok(d) => Some(Ok(Str { value: d.value, span: self.span(t.start, t.end) })),
            Err(e) => {
                self.text_error(t, e);
                Some(Err(()))
            }
        }
    }

    /// `(` node-space* string node-space* `)`; the current token is `(`.
    fn type_annotation(&mut self) -> Option<Str<'a>> {
        let open = self.tok.start;
        self.bump();
        self.node_space();
        let ty = match self.string_token() {
            Some(Ok(s)) => Some(s),
            Some(Err(())) => None,
            None => {
                let t = self.tok;
                if t.error.is_none() {
                    self.error(
                        self.span(open, t.start.max(open + 1)),
                        "expected a type name after `(`",
                        "empty or invalid type annotation",
                        "a type annotation is an identifier or string in parentheses, e.g. `(u8)`",
                    );
                }
                if t.kind == TokenKind::CloseParen {
                    self.bump();
                }
                return None;
            }
        };
        self.node_space();
        if self.tok.kind == TokenKind::CloseParen {
            self.bump();
        } else {
            self.error(
                self.span(open, open + 1),
                "unclosed `(`",
                "this type annotation is never closed",
                "close it with `)` right after the type name",
            );
        }
        ty
    }

    /// The rest of a node: entries, children blocks, terminator.
    fn node_rest(&mut self, mut p: Partial<'a>) -> Step<'a> {
        loop {
            let spaced = self.node_space();
            let t = self.tok;
            if self.eof() {
                return self.finish(p, t.start);
            }
            match t.kind {
                TokenKind::Newline | TokenKind::Semicolon | TokenKind::LineComment => {
                    self.bump();
                    return self.finish(p, t.start);
                }
                TokenKind::CloseBrace => return self.finish(p, t.start),
                TokenKind::OpenBrace => {
                    let discard_children = p.node.children.is_some();
                    if discard_children {
                        self.error(
                            self.span(t.start, t.end),
                            "a node has at most one children block",
                            "second children block",
                            "merge the blocks, or comment one out with `/-`",
                        );
                    }
                    p.node.recovered |= self.diags.len() > p.errors_before;
                    self.take_entries(&mut p);
                    return Step::Open { partial: p, discard_children };
                }
                TokenKind::Slashdash => {
                    if !spaced {
                        self.error(
                            self.span(t.start, t.end),
                            "missing space before `/-`",
                            "needs a space before it",
                            "separate the entries of a node with spaces",
                        );
                    }
                    self.bump();
                    self.line_space();
                    if self.tok.kind == TokenKind::OpenBrace {
                        p.node.recovered |= self.diags.len() > p.errors_before;
                        self.take_entries(&mut p);
                        return Step::Open { partial: p, discard_children: true };
                    }
                    let before = self.tok;
                    let after_children = p.after_children;
                    if self.entry().is_some() && after_children {
                        self.entry_after_children(before);
                    }
                }
                TokenKind::Bare
                | TokenKind::QuotedString
                | TokenKind::RawString
                | TokenKind::Keyword
                | TokenKind::OpenParen => {
                    if !spaced && t.error.is_none() && t.start != self.last_error_end {
                        self.error(
                            self.span(t.start, t.end.min(t.start + 1)),
                            "missing space before this entry",
                            "needs a space before it",
                            "separate the entries of a node with spaces",
                        );
                    }
                    if let Some(entry) = self.entry() {
                        if p.after_children {
                            self.entry_after_children(t);
                        } else {
                            self.entries.push(entry);
                        }
                    }
                }
                _ => {
                    // `=`, `)` without their other half, stray characters.
                    if t.error.is_none() {
                        let what = t.text(self.src);
                        let help = match t.kind {
                            TokenKind::Equals => "a property is written `key=value`, with a string key",
                            TokenKind::CloseParen => "a type annotation is written `(type)`",
                            _ => "see spec.md for the KDL syntax netcfg reads",
                        };
                        self.error(self.span(t.start, t.end), format!("unexpected `{what}`"), "not valid here", help);
                    }
                    self.bump();
                }
            }
        }
    }

    fn entry_after_children(&mut self, t: Token) {
        self.error(
            self.span(t.start, t.end),
            "an entry after the children block",
            "after `}`",
            "move arguments and properties before the `{`",
        );
    }

    /// Moves the entries read so far into the node (the tree lives until the AST is built: no
    /// room is left over per node).
    fn take_entries(&mut self, p: &mut Partial<'a>) {
        if !self.entries.is_empty() {
            debug_assert!(p.node.entries.is_empty());
            // One exactly sized allocation and one copy (a `drain` and `collect` moved each
            // entry on its own).
            p.node.entries = Vec::with_capacity(self.entries.len());
            p.node.entries.append(&mut self.entries);
        }
    }

    fn finish(&mut self, mut p: Partial<'a>, end: u32) -> Step<'a> {
        self.take_entries(&mut p);
        p.node.span.end = end;
        p.node.recovered |= self.diags.len() > p.errors_before;
        Step::Done((!p.discard).then_some(p.node))
    }

    /// One argument or property. `None` when nothing usable was read (errors reported).
    fn entry(&mut self) -> Option<Entry<'a>> {
        let start = self.tok;
        let ty = if start.kind == TokenKind::OpenParen {
            let ty = self.type_annotation();
            self.node_space();
            ty
        } else {
            None
        };
        let t = self.tok;
        // A string followed (after optional space) by `=` is a property key.
        if matches!(t.kind, TokenKind::Bare | TokenKind::QuotedString | TokenKind::RawString)
            && self.followed_by_equals()
        {
            {
                if let Some(ty) = &ty {
                    self.error(
                        ty.span,
                        "a property key cannot have a type annotation",
                        "annotates the key",
                        "annotate the value instead: `key=(type)value`",
                    );
                }
                let key = if t.kind == TokenKind::Bare && text::looks_like_number(t.text(self.src)) {
                    self.error(
                        self.span(t.start, t.end),
                        format!("a property key must be a string, found the number `{}`", t.text(self.src)),
                        "number as key",
                        "quote the key: `\"1\"=…`",
                    );
                    self.bump();
                    None
                } else {
                    self.string_token()
                };
                self.node_space();
                let eq = self.tok;
                self.bump(); // `=`
                self.node_space();
                let vt = self.tok;
                let value_ty = if vt.kind == TokenKind::OpenParen {
                    let ty = self.type_annotation();
                    self.node_space();
                    ty
                } else {
                    None
                };
                let value = self.value();
                let key = match key {
                    Some(Ok(k)) => Some(k),
                    _ => None,
                };
                return match value {
                    Some(Ok((value, span, inner))) => {
                        key.map(|key| Entry { key: Some(key), ty: value_ty.map(Box::new), value, span, inner })
                    }
                    Some(Err(())) => None,
                    None => {
                        let at = self.tok;
                        if at.error.is_none() {
                            self.error(
                                self.span(eq.start, eq.end),
                                "a property needs a value after `=`",
                                "no value",
                                "write the value right after `=`, e.g. `mtu=1500`",
                            );
                        }
                        if !self.ends_node(at) {
                            self.bump();
                        }
                        None
                    }
                };
            }
        }
        match self.value() {
            Some(Ok((value, span, inner))) => Some(Entry { key: None, ty: ty.map(Box::new), value, span, inner }),
            Some(Err(())) => None,
            None => {
                if t.error.is_none() {
                    let (what, help) = self.describe(t);
                    self.error(
                        self.span(t.start, t.end),
                        format!("expected a value, found {what}"),
                        "not a value",
                        help,
                    );
                }
                if !self.ends_node(t) {
                    self.bump();
                }
                None
            }
        }
    }

    fn ends_node(&self, t: Token) -> bool {
        self.eof()
            || matches!(
                t.kind,
                TokenKind::Newline
                    | TokenKind::Semicolon
                    | TokenKind::LineComment
                    | TokenKind::CloseBrace
                    | TokenKind::OpenBrace
            )
    }

    /// Looks past node-space for `=` without consuming anything.
    fn followed_by_equals(&self) -> bool {
        let bytes = self.src.as_bytes();
        let mut end = self.tok.end as usize;
        // Plain spaces are skipped here; comments, continuations and unicode spaces (rare)
        // take the lexer.
        while matches!(bytes.get(end), Some(b' ' | b'\t')) {
            end += 1;
        }
        match bytes.get(end) {
            Some(b'=') => return true,
            Some(b'\\' | b'/') => {}
            Some(b) if *b >= 0x80 => {}
            _ => return false,
        }
        let mut look = self.lexer.clone();
        while let Some(t) = look.next_token() {
            if t.is_node_space() && t.error.is_none() {
                continue;
            }
            return t.kind == TokenKind::Equals;
        }
        false
    }

    /// A value token (string, number or keyword), consumed. `None` when the token is not a
    /// value (nothing consumed); `Some(Err)` when it is a malformed one (reported).
    #[allow(clippy::type_complexity)]
    fn value(&mut self) -> Option<Result<(Value<'a>, Span, Span), ()>> {
        let t = self.tok;
        let span = self.span(t.start, t.end);
        let text = t.text(self.src);
        match t.kind {
            TokenKind::Bare if text::looks_like_number(text) => {
                self.bump();
                Some(match text::number(text) {
                    Ok(v) => Ok((v, span, span)),
                    Err(e) => {
                        self.text_error(t, e);
                        Err(())
                    }
                })
            }
            TokenKind::Keyword => {
                self.bump();
                let v = match text {
                    "#true" => Value::Bool(true),
                    "#false" => Value::Bool(false),
                    "#null" => Value::Null,
                    "#inf" => Value::Float(f64::INFINITY),
                    "#-inf" => Value::Float(f64::NEG_INFINITY),
                    "#nan" => Value::Float(f64::NAN),
                    _ => {
                        self.error(
                            span,
                            format!("unknown keyword `{text}`"),
                            "not a KDL keyword",
                            "the keywords are `#true`, `#false`, `#null`, `#inf`, `#-inf` and `#nan`; quote it for a string",
                        );
                        return Some(Err(()));
                    }
                };
                Some(Ok((v, span, span)))
            }
            TokenKind::Bare | TokenKind::QuotedString | TokenKind::RawString => {
                let kind = t.kind;
                let s = self.string_token()?;
                Some(s.map(|s| {
                    let inner = match (kind, &s.value) {
                        (TokenKind::Bare, _) => span,
                        // Borrowed: the contents are exactly the text between the quotes.
                        (_, Cow::Borrowed(v)) => {
                            let at = (v.as_ptr() as usize - self.src.as_ptr() as usize) as u32;
                            self.span(at, at + v.len() as u32)
                        }
                        _ => inner_range(self.src, t, &s.value).map_or(span, |(a, b)| self.span(a, b)),
                    };
                    (Value::String(s.value), span, inner)
                }))
            }
            _ => None,
        }
    }
}

/// Where a string's contents lie when they are exactly the text between its quotes.
fn inner_range(src: &str, t: Token, value: &str) -> Option<(u32, u32)> {
    let text = t.text(src);
    let hashes = text.bytes().take_while(|b| *b == b'#').count();
    let body = text[hashes..].strip_prefix('"')?;
    if body.starts_with("\"\"") {
        return None;
    }
    let start = t.start as usize + hashes + 1;
    (body.get(..value.len()) == Some(value) && body.len() == value.len() + 1 + hashes)
        .then_some((start as u32, (start + value.len()) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<(String, &str)> {
        let (_, diags) = parse(src, FileId(0));
        diags
            .iter()
            .map(|d| (d.message.clone(), &src[d.primary.span.start as usize..d.primary.span.end as usize]))
            .collect()
    }

    fn names(doc: &Document) -> Vec<String> {
        doc.nodes.iter().map(|n| n.name.value.to_string()).collect()
    }

    #[test]
    fn one_diagnostic_per_error_and_the_rest_is_read() {
        let src = "a 1abc\nb \"open\nc #maybe k=\nd (t x\ne 2 }\nf [x]\ng true\nh 1 { } 2\nz ok=1\n";
        let (doc, diags) = parse(src, FileId(0));
        let found: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            found,
            [
                "`1abc` is not a valid number",
                "unclosed string",
                "unknown keyword `#maybe`",
                "a property needs a value after `=`",
                "unclosed `(`",
                "unexpected `}`",
                "unexpected `[`",
                "unexpected `]`",
                "`true` is a reserved word, not an identifier",
                "an entry after the children block",
            ]
        );
        assert!(diags.iter().all(|d| d.code == "syntax" && d.help.is_some()));
        assert_eq!(names(&doc), ["a", "b", "c", "d", "e", "f", "g", "h", "z"]);
        assert_eq!(doc.nodes[8].entries[0].value, Value::Integer(1.into()));
    }

    #[test]
    fn spans_are_the_smallest_that_show_the_error() {
        assert_eq!(errors("a \"x\\q\""), [("unknown escape `\\q`".to_string(), "\\q")]);
        assert_eq!(errors("n {\n  a 1\n"), [("unclosed `{`".to_string(), "{")]);
        assert_eq!(errors("a\"b\""), [("missing space before this entry".to_string(), "\"")]);
        // An unclosed string to the end of the file explains the unclosed blocks too.
        assert_eq!(errors("n {\n m {\n  a \"x"), [("unclosed string".to_string(), "\"")]);
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let depth = 5000;
        let src = format!("{}x{}\nafter 1\n", "a {".repeat(depth), "}".repeat(depth));
        let (doc, diags) = parse(&src, FileId(0));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("deeper than 128"));
        assert_eq!(names(&doc), ["a", "after"]);
        let mut n = &doc.nodes[0];
        let mut levels = 1;
        while let Some(c) = n.child_nodes().first() {
            n = c;
            levels += 1;
        }
        assert_eq!(levels, MAX_DEPTH + 1, "the top node and 128 nested blocks");
        // Unclosed deep nesting: still one report per missing brace, no overflow.
        let (_, diags) = parse(&"a {".repeat(depth), FileId(0));
        assert_eq!(diags.iter().filter(|d| d.message.contains("deeper")).count(), 1);
    }

    #[test]
    fn huge_tokens_are_read_in_one_piece() {
        let name = "x".repeat(10 << 20);
        let src = format!("{name} \"{name}\" 1\n");
        let (doc, diags) = parse(&src, FileId(0));
        assert!(diags.is_empty());
        assert_eq!(doc.nodes[0].name.value.len(), 10 << 20);
        assert!(matches!(&doc.nodes[0].entries[0].value, Value::String(s) if s.len() == 10 << 20));
    }

    #[test]
    fn many_nodes_and_many_errors() {
        let n = 30_000;
        let routes = "route \"10.0.0.0/8\" via=\"10.0.0.1\" metric=1\n".repeat(n);
        let (doc, diags) = parse(&routes, FileId(0));
        assert!(diags.is_empty());
        assert_eq!(doc.nodes.len(), n);
        // One error per line, each line still read.
        let errors = "a 1x; b ]\n".repeat(n);
        let (doc, diags) = parse(&errors, FileId(0));
        assert_eq!(diags.len(), 2 * n);
        assert_eq!(doc.nodes.len(), 2 * n);
        // Unclosed comments and strings swallow the rest once, not once per line.
        let (_, diags) = parse(&format!("a /*{}", "b {\n".repeat(n)), FileId(0));
        assert_eq!(diags.len(), 1);
    }

    #[test]
    fn node_spans_match_the_kdl_crate() {
        let src = "(t)a 1 k=(u8)2 { c; }  // x\nb;c";
        let (doc, _) = parse(src, FileId(0));
        let text = |s: Span| &src[s.start as usize..s.end as usize];
        assert_eq!(text(doc.nodes[0].span), "(t)a 1 k=(u8)2 { c; }  ");
        assert_eq!(text(doc.nodes[0].entries[1].span), "2");
        assert_eq!(text(doc.nodes[0].children.as_ref().unwrap().span), "{ c; }");
        assert_eq!(text(doc.nodes[1].span), "b");
    }
}
