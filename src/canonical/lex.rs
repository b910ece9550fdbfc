//! A KDL v2 tokenizer that keeps everything the formatter must not lose: comments, slashdashed
//! items and the exact text of every value. It only splits text into tokens; it does not check
//! the grammar (the input has already been accepted by the `kdl` parser).

/// What a token is. Whitespace inside a line is [`Kind::Space`]; everything else keeps its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Space,
    Newline,
    /// `// …` up to (not including) the newline.
    LineComment,
    /// `/* … */`, nested comments included.
    BlockComment,
    /// `/-`: comments out the next node, entry or children block.
    Slashdash,
    /// `\` with an optional `// comment`, through the newline: the node continues on the next line.
    Escline,
    Open,
    Close,
    Semicolon,
    Equals,
    TypeOpen,
    TypeClose,
    /// A string (quoted, raw, multi-line or bare), a number or a `#keyword`, exactly as written.
    Value,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset of the token in the source.
    pub start: usize,
    /// For [`Kind::Escline`]: the `// comment` after the backslash, if any.
    pub comment: Option<&'a str>,
}

/// Where and why the text could not be split into tokens.
#[derive(Debug)]
pub(crate) struct LexError {
    pub offset: usize,
    pub message: &'static str,
}

pub(crate) fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// Characters that end a bare identifier, number or keyword.
fn ends_bare(c: char) -> bool {
    is_space(c) || is_newline(c) || "\\/(){};[]\"#=".contains(c)
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token<'_>>, LexError> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        let rest = &src[pos..];
        let c = rest.chars().next().expect("not at the end");
        let (kind, len, comment) = if is_space(c) {
            (Kind::Space, rest.find(|c: char| !is_space(c)).unwrap_or(rest.len()), None)
        } else if is_newline(c) {
            (Kind::Newline, if rest.starts_with("\r\n") { 2 } else { c.len_utf8() }, None)
        } else if rest.starts_with("//") {
            (Kind::LineComment, line_end(rest), None)
        } else if rest.starts_with("/*") {
            (
                Kind::BlockComment,
                block_comment(rest).ok_or(LexError { offset: pos, message: "unclosed comment" })?,
                None,
            )
        } else if rest.starts_with("/-") {
            (Kind::Slashdash, 2, None)
        } else if c == '\\' {
            let (len, comment) = escline(rest).ok_or(LexError { offset: pos, message: "stray backslash" })?;
            (Kind::Escline, len, comment)
        } else if let Some(kind) = punctuation(c) {
            (kind, 1, None)
        } else if c == '"' || (c == '#' && rest.trim_start_matches('#').starts_with('"')) {
            (Kind::Value, string(rest).ok_or(LexError { offset: pos, message: "unclosed string" })?, None)
        } else {
            // Bare identifiers, numbers and `#true`-style keywords.
            let skip = usize::from(c == '#');
            let len = skip + rest[skip..].find(ends_bare).unwrap_or(rest.len() - skip);
            if len == 0 {
                return Err(LexError { offset: pos, message: "unexpected character" });
            }
            (Kind::Value, len, None)
        };
        tokens.push(Token { kind, text: &rest[..len], start: pos, comment });
        pos += len;
    }
    Ok(tokens)
}

fn punctuation(c: char) -> Option<Kind> {
    Some(match c {
        '{' => Kind::Open,
        '}' => Kind::Close,
        ';' => Kind::Semicolon,
        '=' => Kind::Equals,
        '(' => Kind::TypeOpen,
        ')' => Kind::TypeClose,
        _ => return None,
    })
}

fn line_end(s: &str) -> usize {
    s.find(is_newline).unwrap_or(s.len())
}

/// Length of a (possibly nested) block comment at the start of `s`.
fn block_comment(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with("/*") {
            depth += 1;
            i += 2;
        } else if rest.starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += rest.chars().next()?.len_utf8();
        }
    }
    None
}

/// A line continuation: `\`, spaces, an optional line comment, then a newline (or the end).
fn escline(s: &str) -> Option<(usize, Option<&str>)> {
    let mut i = 1 + s[1..].find(|c: char| !is_space(c)).unwrap_or(s.len() - 1);
    let mut comment = None;
    if s[i..].starts_with("//") {
        let len = line_end(&s[i..]);
        comment = Some(&s[i..i + len]);
        i += len;
    }
    let rest = &s[i..];
    if rest.is_empty() {
        return Some((i, comment));
    }
    if rest.starts_with("\r\n") {
        return Some((i + 2, comment));
    }
    let c = rest.chars().next()?;
    is_newline(c).then_some((i + c.len_utf8(), comment))
}

/// Length of a quoted, multi-line or raw string at the start of `s`.
fn string(s: &str) -> Option<usize> {
    let hashes = s.bytes().take_while(|b| *b == b'#').count();
    let body = &s[hashes..];
    let quotes = if body.starts_with("\"\"\"") { 3 } else { 1 };
    let close = format!("{}{}", &body[..quotes], "#".repeat(hashes));
    let mut i = hashes + quotes;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(close.as_str()) {
            return Some(i + close.len());
        }
        let c = rest.chars().next()?;
        i += c.len_utf8();
        if c == '\\' && hashes == 0 {
            // An escape: the next character is part of the string whatever it is.
            i += rest[1..].chars().next()?.len_utf8();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        lex(src).unwrap().into_iter().filter(|t| t.kind != Kind::Space).map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn strings_comments_and_punctuation() {
        use Kind::*;
        assert_eq!(
            kinds("a \"x}\\\"\" #\"r\"# k=(u8)#true /* /* n */ */ /- b; // c\r\n"),
            [
                (Value, "a"),
                (Value, "\"x}\\\"\""),
                (Value, "#\"r\"#"),
                (Value, "k"),
                (Equals, "="),
                (TypeOpen, "("),
                (Value, "u8"),
                (TypeClose, ")"),
                (Value, "#true"),
                (BlockComment, "/* /* n */ */"),
                (Slashdash, "/-"),
                (Value, "b"),
                (Semicolon, ";"),
                (LineComment, "// c"),
                (Newline, "\r\n"),
            ]
        );
    }

    #[test]
    fn multiline_strings_and_line_continuations() {
        let t = lex("a \"\"\"\n  x \"\n  \"\"\" \\ // more\n  b").unwrap();
        assert_eq!(t[2].text, "\"\"\"\n  x \"\n  \"\"\"");
        assert_eq!((t[4].kind, t[4].comment), (Kind::Escline, Some("// more")));
        assert!(lex("a \"open").is_err());
        assert!(lex("a /* open").is_err());
    }
}
