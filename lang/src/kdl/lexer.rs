//! The KDL v2 tokenizer shared by the parser and the formatter (`netcfg fmt`).
//!
//! Every byte of the input belongs to exactly one token, trivia included (whitespace, newlines,
//! comments, line continuations), so the formatter can copy comments and values exactly as
//! written. Tokens only delimit text: strings are not decoded and numbers not evaluated here
//! (the parser does that for the tokens it keeps). A malformed token is still a token, with a
//! [`LexError`] the parser reports once; the lexer never stops early and never looks back, so it
//! runs in linear time on any input.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// U+FEFF at the very start of the file.
    Bom,
    /// A run of unicode-space characters (not newlines).
    Space,
    /// One newline (`\r\n` counts as one).
    Newline,
    /// `// …` up to, not including, the newline.
    LineComment,
    /// `/* … */`, nested comments included.
    BlockComment,
    /// `\`, optional whitespace and `// comment`, then the newline (or the end of the file):
    /// the node continues on the next line.
    Escline,
    /// `/-`: comments out the next node, entry or children block.
    Slashdash,
    OpenBrace,
    CloseBrace,
    Semicolon,
    Equals,
    OpenParen,
    CloseParen,
    /// A run of identifier characters: a bare identifier, a number, or a reserved word.
    Bare,
    /// `#` followed by identifier characters: `#true`, `#false`, `#null`, `#inf`, `#-inf`, `#nan`.
    Keyword,
    /// `"…"` or `"""…"""`.
    QuotedString,
    /// `#"…"#`, `##"…"##`, `#"""…"""#`.
    RawString,
    /// A character that starts no token (`[`, `]`, a lone `/` or `#`, a disallowed code point).
    Invalid,
}

/// Why a token is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LexError {
    UnclosedString,
    UnclosedComment,
    /// A single-line string reaches the end of its line.
    NewlineInString,
    /// A `"""` string whose opening quotes are not followed by a newline.
    MultilineNoNewline,
    /// `\` followed by something other than whitespace, a comment or a newline.
    StrayBackslash,
    /// A character that no token starts with.
    UnexpectedChar,
    /// A code point KDL forbids anywhere in a document (controls, direction overrides, BOM).
    DisallowedChar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: u32,
    pub end: u32,
    pub error: Option<LexError>,
    /// A one-line quoted string of printable ASCII without escapes: its value is the text
    /// between its quotes, known from the scan that found its end (checked again, its bytes
    /// were a twentieth of parsing a firewall's rules).
    pub plain: bool,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start as usize..self.end as usize]
    }

    /// Trivia the parser skips inside a node (`node-space`).
    pub fn is_node_space(&self) -> bool {
        matches!(self.kind, TokenKind::Space | TokenKind::BlockComment | TokenKind::Escline)
    }
}

pub fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

pub fn is_space(c: char) -> bool {
    matches!(c, '\t' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}')
}

/// Code points that may not appear anywhere in a KDL document.
pub fn is_disallowed(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{E}'..='\u{1F}'
            | '\u{7F}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Characters that may appear in a bare identifier (and in numbers and keywords).
pub fn is_identifier_char(c: char) -> bool {
    !(is_space(c)
        || is_newline(c)
        || is_disallowed(c)
        || matches!(c, '\\' | '/' | '(' | ')' | '{' | '}' | ';' | '[' | ']' | '"' | '#' | '='))
}

/// ASCII bytes that are identifier characters, as a lookup table for the hot loop.
const IDENT_ASCII: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0x21;
    while b < 0x7F {
        t[b] = !matches!(b as u8, b'\\' | b'/' | b'(' | b')' | b'{' | b'}' | b';' | b'[' | b']' | b'"' | b'#' | b'=');
        b += 1;
    }
    t
};

/// Bytes that end the plain run of a single-line quoted string: its end, an escape, a newline,
/// the lead byte of a non-ASCII character (which may be a newline), or another control
/// character (which makes the string not [`Token::plain`]).
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7F] = true;
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    let mut b = 0x80;
    while b < 256 {
        t[b] = true;
        b += 1;
    }
    t
};

/// [`IDENT_ASCII`] over all bytes, false for non-ASCII (which the slow path decodes).
const IDENT_RUN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = IDENT_ASCII[b];
        b += 1;
    }
    t
};

/// A streaming tokenizer: call [`Lexer::next_token`] until it returns `None`.
#[derive(Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, bytes: src.as_bytes(), pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn char_at(&self, pos: usize) -> Option<char> {
        self.src[pos..].chars().next()
    }

    fn newline_len(&self, pos: usize) -> usize {
        match self.bytes.get(pos) {
            Some(b'\r') if self.bytes.get(pos + 1) == Some(&b'\n') => 2,
            Some(b'\n' | b'\r' | 0x0B | 0x0C) => 1,
            // Only U+0085, U+2028 and U+2029 are non-ASCII newlines (lead bytes C2 and E2).
            Some(0xC2 | 0xE2) => match self.char_at(pos) {
                Some(c) if is_newline(c) => c.len_utf8(),
                _ => 0,
            },
            _ => 0,
        }
    }

    fn space_len(&self, pos: usize) -> usize {
        match self.bytes.get(pos) {
            Some(b' ' | b'\t') => 1,
            // Non-ASCII spaces start with C2, E1, E2 or E3.
            Some(0xC2 | 0xE1 | 0xE2 | 0xE3) => match self.char_at(pos) {
                Some(c) if is_space(c) => c.len_utf8(),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// End of a run of whitespace starting at `pos`: plain spaces and tabs (indentation, the
    /// common case) in a byte loop, unicode spaces through [`Lexer::space_len`].
    fn space_end(&self, mut pos: usize) -> usize {
        loop {
            while matches!(self.bytes.get(pos), Some(b' ' | b'\t')) {
                pos += 1;
            }
            // Non-ASCII spaces start with C2, E1, E2 or E3.
            if !matches!(self.bytes.get(pos), Some(0xC2 | 0xE1 | 0xE2 | 0xE3)) {
                return pos;
            }
            let l = self.space_len(pos);
            if l == 0 {
                return pos;
            }
            pos += l;
        }
    }

    /// End of a run of identifier characters starting at `pos`.
    fn ident_end(&self, mut pos: usize) -> usize {
        loop {
            // The ASCII run in one tight loop; a non-ASCII character takes the slow path.
            pos += self.bytes[pos..].iter().position(|&b| !IDENT_RUN[b as usize]).unwrap_or(self.bytes.len() - pos);
            let Some(&b) = self.bytes.get(pos) else { break };
            if b < 0x80 {
                break;
            } else {
                let c = self.char_at(pos).expect("inside the text");
                if !is_identifier_char(c) {
                    break;
                }
                pos += c.len_utf8();
            }
        }
        pos
    }

    #[inline]
    pub fn next_token(&mut self) -> Option<Token> {
        let start = self.pos;
        let &b = self.bytes.get(start)?;
        let (kind, end, error, plain) = if b == b'"' { self.quoted_string(start) } else { self.scan_at(start, b) };
        debug_assert!(end > start);
        self.pos = end;
        Some(Token { kind, start: start as u32, end: end as u32, error, plain })
    }

    // Inlined into `next_token` (its one caller): the token comes back in registers.
    #[inline(always)]
    fn scan_at(&self, start: usize, b: u8) -> (TokenKind, usize, Option<LexError>, bool) {
        let (kind, end, error) = self.scan_other(start, b);
        (kind, end, error, false)
    }

    /// A token that does not start with `"`.
    #[inline(always)]
    fn scan_other(&self, start: usize, b: u8) -> (TokenKind, usize, Option<LexError>) {
        use TokenKind::*;
        let ok = |kind, len: usize| (kind, start + len, None);
        match b {
            b' ' | b'\t' => (Space, self.space_end(start), None),
            b'\n' | b'\r' | 0x0B | 0x0C => ok(Newline, self.newline_len(start)),
            b'{' => ok(OpenBrace, 1),
            b'}' => ok(CloseBrace, 1),
            b';' => ok(Semicolon, 1),
            b'=' => ok(Equals, 1),
            b'(' => ok(OpenParen, 1),
            b')' => ok(CloseParen, 1),
            b'/' => match self.bytes.get(start + 1) {
                Some(b'/') => (LineComment, self.line_end(start), None),
                Some(b'*') => match self.block_comment_end(start) {
                    Some(end) => (BlockComment, end, None),
                    None => (BlockComment, self.bytes.len(), Some(LexError::UnclosedComment)),
                },
                Some(b'-') => ok(Slashdash, 2),
                _ => (Invalid, start + 1, Some(LexError::UnexpectedChar)),
            },
            b'\\' => self.escline(start),
            b'"' => {
                let (kind, end, error, _) = self.quoted_string(start);
                (kind, end, error)
            }
            b'#' => {
                let hashes = self.bytes[start..].iter().take_while(|b| **b == b'#').count();
                if self.bytes.get(start + hashes) == Some(&b'"') {
                    self.raw_string(start, hashes)
                } else if hashes == 1 && self.ident_end(start + 1) > start + 1 {
                    (Keyword, self.ident_end(start + 1), None)
                } else {
                    (Invalid, start + 1, Some(LexError::UnexpectedChar))
                }
            }
            b'[' | b']' => (Invalid, start + 1, Some(LexError::UnexpectedChar)),
            _ if b < 0x80 && IDENT_ASCII[b as usize] => (Bare, self.ident_end(start), None),
            _ => {
                let c = self.char_at(start).expect("inside the text");
                if is_newline(c) {
                    (Newline, start + c.len_utf8(), None)
                } else if is_space(c) {
                    (Space, self.space_end(start), None)
                } else if c == '\u{FEFF}' && start == 0 {
                    (Bom, start + c.len_utf8(), None)
                } else if is_disallowed(c) {
                    (Invalid, start + c.len_utf8(), Some(LexError::DisallowedChar))
                } else {
                    (Bare, self.ident_end(start), None)
                }
            }
        }
    }

    fn line_end(&self, start: usize) -> usize {
        let mut p = start;
        while p < self.bytes.len() {
            let b = self.bytes[p];
            if b == b'\n' || b == b'\r' || b == 0x0B || b == 0x0C {
                return p;
            }
            if b >= 0x80 && self.newline_len(p) > 0 {
                return p;
            }
            p += 1;
        }
        p
    }

    /// End of a (possibly nested) block comment starting at `start`, if it is closed.
    fn block_comment_end(&self, start: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut p = start;
        let bytes = self.bytes;
        while p + 1 < bytes.len() {
            match (bytes[p], bytes[p + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    p += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    p += 2;
                    if depth == 0 {
                        return Some(p);
                    }
                }
                _ => p += 1,
            }
        }
        None
    }

    /// `\` ws* (`// comment`)? (newline | end of file).
    fn escline(&self, start: usize) -> (TokenKind, usize, Option<LexError>) {
        let mut p = start + 1;
        loop {
            let l = self.space_len(p);
            if l > 0 {
                p += l;
                continue;
            }
            if self.bytes.get(p) == Some(&b'/') && self.bytes.get(p + 1) == Some(&b'*') {
                match self.block_comment_end(p) {
                    Some(end) => {
                        p = end;
                        continue;
                    }
                    None => return (TokenKind::Escline, self.bytes.len(), Some(LexError::UnclosedComment)),
                }
            }
            break;
        }
        if self.bytes.get(p) == Some(&b'/') && self.bytes.get(p + 1) == Some(&b'/') {
            p = self.line_end(p);
        }
        if p == self.bytes.len() {
            return (TokenKind::Escline, p, None);
        }
        let nl = self.newline_len(p);
        if nl > 0 {
            (TokenKind::Escline, p + nl, None)
        } else {
            (TokenKind::Invalid, start + 1, Some(LexError::StrayBackslash))
        }
    }

    /// A `"` or `"""` string. Escapes are skipped (a backslash takes the next character, and a
    /// whitespace escape its whole run of whitespace and newlines) so `\"` does not close it.
    fn quoted_string(&self, start: usize) -> (TokenKind, usize, Option<LexError>, bool) {
        let bytes = self.bytes;
        let multi = bytes[start..].starts_with(b"\"\"\"");
        let mut p = start + if multi { 3 } else { 1 };
        if multi && self.newline_len(p) == 0 {
            // Still find the end, so that the rest of the file is read as it was meant.
            let end = self.find_multiline_close(p, 0).unwrap_or(bytes.len());
            return (TokenKind::QuotedString, end, Some(LexError::MultilineNoNewline), false);
        }
        if multi {
            return match self.find_multiline_close(p, 0) {
                Some(end) => (TokenKind::QuotedString, end, None, false),
                None => (TokenKind::QuotedString, bytes.len(), Some(LexError::UnclosedString), false),
            };
        }
        // No stop before the closing quote: printable ASCII without escapes.
        let mut plain = true;
        while p < bytes.len() {
            p += bytes[p..].iter().position(|&b| STRING_STOP[b as usize]).unwrap_or(bytes.len() - p);
            if p == bytes.len() {
                break;
            }
            let b = bytes[p];
            if b != b'"' {
                plain = false;
            }
            match b {
                b'"' => return (TokenKind::QuotedString, p + 1, None, plain),
                b'\\' => {
                    p += 1;
                    if self.space_len(p) > 0 || self.newline_len(p) > 0 {
                        loop {
                            let l = self.space_len(p).max(self.newline_len(p));
                            if l == 0 {
                                break;
                            }
                            p += l;
                        }
                    } else if p < bytes.len() {
                        p += self.char_at(p).map_or(1, char::len_utf8);
                    }
                }
                b'\n' | b'\r' | 0x0B | 0x0C => {
                    return (TokenKind::QuotedString, p, Some(LexError::NewlineInString), false)
                }
                b if b >= 0x80 && self.newline_len(p) > 0 => {
                    return (TokenKind::QuotedString, p, Some(LexError::NewlineInString), false);
                }
                _ => p += 1,
            }
        }
        (TokenKind::QuotedString, p, Some(LexError::UnclosedString), false)
    }

    /// End of `"""` followed by `hashes` `#`s, searching from `p`; escapes are skipped when the
    /// string is not raw.
    fn find_multiline_close(&self, mut p: usize, hashes: usize) -> Option<usize> {
        let bytes = self.bytes;
        while p < bytes.len() {
            match bytes[p] {
                b'"' if bytes[p..].starts_with(b"\"\"\"") && bytes[p + 3..].iter().take(hashes).all(|b| *b == b'#') => {
                    if p + 3 + hashes <= bytes.len() {
                        return Some(p + 3 + hashes);
                    }
                    return None;
                }
                b'\\' if hashes == 0 => {
                    p += 1;
                    if p < bytes.len() {
                        p += self.char_at(p).map_or(1, char::len_utf8);
                    }
                }
                _ => p += 1,
            }
        }
        None
    }

    fn raw_string(&self, start: usize, hashes: usize) -> (TokenKind, usize, Option<LexError>) {
        let bytes = self.bytes;
        let open = start + hashes;
        let multi = bytes[open..].starts_with(b"\"\"\"");
        if multi {
            let p = open + 3;
            let error = (self.newline_len(p) == 0).then_some(LexError::MultilineNoNewline);
            return match self.find_multiline_close(p, hashes) {
                Some(end) => (TokenKind::RawString, end, error),
                None => (TokenKind::RawString, bytes.len(), Some(error.unwrap_or(LexError::UnclosedString))),
            };
        }
        let mut p = open + 1;
        while p < bytes.len() {
            match bytes[p] {
                b'"' if bytes[p + 1..].iter().take(hashes).filter(|b| **b == b'#').count() == hashes => {
                    return (TokenKind::RawString, p + 1 + hashes, None);
                }
                b'\n' | b'\r' | 0x0B | 0x0C => return (TokenKind::RawString, p, Some(LexError::NewlineInString)),
                b if b >= 0x80 && self.newline_len(p) > 0 => {
                    return (TokenKind::RawString, p, Some(LexError::NewlineInString));
                }
                _ => p += 1,
            }
        }
        (TokenKind::RawString, p, Some(LexError::UnclosedString))
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.next_token()
    }
}

/// Every token of `src`, trivia included.
pub fn tokenize(src: &str) -> Vec<Token> {
    Lexer::new(src).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str)> {
        tokenize(src).into_iter().filter(|t| t.kind != TokenKind::Space).map(|t| (t.kind, t.text(src))).collect()
    }

    #[test]
    fn strings_comments_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("a \"x}\\\"\" #\"r\"# k=(u8)#true /* /* n */ */ /- b; // c\r\n"),
            [
                (Bare, "a"),
                (QuotedString, "\"x}\\\"\""),
                (RawString, "#\"r\"#"),
                (Bare, "k"),
                (Equals, "="),
                (OpenParen, "("),
                (Bare, "u8"),
                (CloseParen, ")"),
                (Keyword, "#true"),
                (BlockComment, "/* /* n */ */"),
                (Slashdash, "/-"),
                (Bare, "b"),
                (Semicolon, ";"),
                (LineComment, "// c"),
                (Newline, "\r\n"),
            ]
        );
    }

    #[test]
    fn every_byte_is_in_one_token() {
        for src in ["a \"open", "a /* open", "\\ x", "#[]", "\"\"\"x\"\"\"", "##\"a\"#\"##", "a\u{200E}b", "\u{FEFF}a"]
        {
            let tokens = tokenize(src);
            let mut pos = 0;
            for t in &tokens {
                assert_eq!(t.start as usize, pos, "{src:?}: {tokens:?}");
                pos = t.end as usize;
            }
            assert_eq!(pos, src.len());
        }
    }

    #[test]
    fn malformed_tokens_carry_their_error() {
        let errors = |src: &str| tokenize(src).into_iter().filter_map(|t| t.error).collect::<Vec<_>>();
        assert_eq!(errors("a \"open"), [LexError::UnclosedString]);
        assert_eq!(errors("a \"open\nb"), [LexError::NewlineInString]);
        assert_eq!(errors("a /* open"), [LexError::UnclosedComment]);
        assert_eq!(errors("a \\ b"), [LexError::StrayBackslash]);
        assert_eq!(errors("a [b]"), [LexError::UnexpectedChar, LexError::UnexpectedChar]);
        assert_eq!(errors("a\u{202E}"), [LexError::DisallowedChar]);
        assert_eq!(errors("a \"\"\"x\"\"\""), [LexError::MultilineNoNewline]);
        assert!(errors("a \\ // c\n b \"\"\"\n x\n \"\"\" ##\"y\"#\"##").is_empty());
    }
}
