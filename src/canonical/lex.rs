//! The formatter's view of the KDL tokens: `netcfg_lang::kdl::lexer` (the parser's own lexer,
//! so both agree on every token boundary) with the kinds the layout distinguishes. Values keep
//! their exact text; comments, slashdashes and line continuations are tokens of their own.

use netcfg_lang::kdl::lexer::{Lexer, TokenKind};

pub(crate) use netcfg_lang::kdl::lexer::is_newline;

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
    /// `\` with optional comments, through the newline: the node continues on the next line.
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
    /// For [`Kind::Escline`]: the comments after the backslash, if any.
    pub comment: Option<&'a str>,
}

/// Where the text could not be split into tokens (it is not valid KDL).
#[derive(Debug)]
pub(crate) struct LexError {
    pub offset: usize,
    pub message: &'static str,
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token<'_>>, LexError> {
    let mut tokens = Vec::new();
    for t in Lexer::new(src) {
        let start = t.start as usize;
        if t.error.is_some() {
            return Err(LexError { offset: start, message: "not a valid KDL token" });
        }
        let text = t.text(src);
        let kind = match t.kind {
            // The byte-order mark is dropped, like other whitespace.
            TokenKind::Bom | TokenKind::Space => Kind::Space,
            TokenKind::Newline => Kind::Newline,
            TokenKind::LineComment => Kind::LineComment,
            TokenKind::BlockComment => Kind::BlockComment,
            TokenKind::Escline => Kind::Escline,
            TokenKind::Slashdash => Kind::Slashdash,
            TokenKind::OpenBrace => Kind::Open,
            TokenKind::CloseBrace => Kind::Close,
            TokenKind::Semicolon => Kind::Semicolon,
            TokenKind::Equals => Kind::Equals,
            TokenKind::OpenParen => Kind::TypeOpen,
            TokenKind::CloseParen => Kind::TypeClose,
            TokenKind::Bare | TokenKind::Keyword | TokenKind::QuotedString | TokenKind::RawString => Kind::Value,
            TokenKind::Invalid => return Err(LexError { offset: start, message: "unexpected character" }),
        };
        let comment = (kind == Kind::Escline).then(|| escline_comment(text)).flatten();
        tokens.push(Token { kind, text, start, comment });
    }
    Ok(tokens)
}

/// The comments of a line continuation: its text after `\`, without the newline and the
/// surrounding whitespace.
fn escline_comment(text: &str) -> Option<&str> {
    let body = text[1..].trim_end_matches(is_newline);
    let comment = body.trim_matches(|c: char| c.is_whitespace());
    (!comment.is_empty()).then_some(comment)
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
        let t = lex("a \\ /* why */ // more\n  b").unwrap();
        assert_eq!((t[2].kind, t[2].comment), (Kind::Escline, Some("/* why */ // more")));
        assert!(lex("a \"open").is_err());
        assert!(lex("a /* open").is_err());
    }
}
