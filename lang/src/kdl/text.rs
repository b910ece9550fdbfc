//! The insides of tokens: string escapes, multi-line dedent, numbers, identifiers. Errors carry
//! a byte range relative to the token, a message and a help line.

use super::lexer::{is_disallowed, is_newline, is_space};
use super::Value;
use std::borrow::Cow;
use std::ops::Range;

/// What is wrong inside one token.
#[derive(Debug)]
pub(crate) struct TextError {
    pub range: Range<usize>,
    pub message: String,
    pub help: &'static str,
}

fn err(range: Range<usize>, message: impl Into<String>, help: &'static str) -> TextError {
    TextError { range, message: message.into(), help }
}

/// A decoded string.
pub(crate) struct Decoded<'a> {
    pub value: Cow<'a, str>,
}

/// `"…"` or `"""…"""` (the whole token text).
pub(crate) fn quoted(text: &str) -> Result<Decoded<'_>, TextError> {
    if text.len() >= 6 && text.starts_with("\"\"\"") {
        let body = &text[3..text.len() - 3];
        // Whitespace escapes join lines before the indentation is measured: `\` at the end of a
        // line continues it, and a `\` in the closing line does not count as text.
        let joined = strip_whitespace_escapes(body);
        let dedented = dedent(&joined, 3).map_err(|mut e| {
            if matches!(joined, Cow::Owned(_)) {
                e.range = 0..text.len();
            }
            e
        })?;
        let value = unescape(&dedented, 0).map_err(|mut e| {
            // Offsets into the dedented text do not map back: point at the whole string.
            e.range = 0..text.len();
            e
        })?;
        return Ok(Decoded { value: Cow::Owned(value.into_owned()) });
    }
    let body = &text[1..text.len() - 1];
    // The common case, one pass over the bytes: printable ASCII without escapes is its own value.
    if body.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b'\\') {
        return Ok(Decoded { value: Cow::Borrowed(body) });
    }
    if let Some(c) = body.chars().find(|c| is_disallowed(*c)) {
        let at = 1 + body.find(c).unwrap_or(0);
        return Err(disallowed(at, c));
    }
    match unescape(body, 1)? {
        Cow::Borrowed(s) => Ok(Decoded { value: Cow::Borrowed(s) }),
        Cow::Owned(s) => Ok(Decoded { value: Cow::Owned(s) }),
    }
}

/// `#"…"#` or `#"""…"""#` (the whole token text).
pub(crate) fn raw(text: &str) -> Result<Decoded<'_>, TextError> {
    let hashes = text.bytes().take_while(|b| *b == b'#').count();
    let quoted = &text[hashes..text.len() - hashes];
    if quoted.len() >= 6 && quoted.starts_with("\"\"\"") {
        let body = &quoted[3..quoted.len() - 3];
        let value = dedent(body, hashes + 3)?;
        if let Some(c) = value.chars().find(|c| is_disallowed(*c)) {
            return Err(disallowed(0, c));
        }
        return Ok(Decoded { value: Cow::Owned(value.into_owned()) });
    }
    let body = &quoted[1..quoted.len() - 1];
    if let Some(c) = body.chars().find(|c| is_disallowed(*c)) {
        return Err(disallowed(hashes + 1 + body.find(c).unwrap_or(0), c));
    }
    Ok(Decoded { value: Cow::Borrowed(body) })
}

fn disallowed(at: usize, c: char) -> TextError {
    err(
        at..at + c.len_utf8(),
        format!("the code point U+{:04X} is not allowed in KDL", c as u32),
        "remove it, or write it as an escape `\\u{…}` in a quoted string",
    )
}

/// Removes every whitespace escape (`\` and the run of whitespace and newlines after it),
/// leaving other escapes (including `\\`) for [`unescape`].
fn strip_whitespace_escapes(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some(&n) if is_space(n) || is_newline(n) => {
                while chars.peek().is_some_and(|n| is_space(*n) || is_newline(*n)) {
                    chars.next();
                }
            }
            Some(&n) => {
                out.push('\\');
                out.push(n);
                chars.next();
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Multi-line string body (between the quotes, starting with the newline after the opening
/// quotes): the last line, made of whitespace only, is the indentation every other line must
/// start with; it is removed, whitespace-only lines become empty, newlines become `\n`.
/// `offset` is where `body` starts in the token, for error positions.
fn dedent(body: &str, offset: usize) -> Result<Cow<'_, str>, TextError> {
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut start = 0;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_newline(c) {
            lines.push((start, &body[start..i]));
            let mut end = i + c.len_utf8();
            if c == '\r' && body[end..].starts_with('\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    lines.push((start, &body[start..]));
    // lines[0] is the (empty) rest of the opening line; the last is the closing line.
    let (last_at, prefix) = *lines.last().expect("at least one line");
    if let Some(bad) = prefix.char_indices().find(|(_, c)| !is_space(*c)) {
        let at = offset + last_at + bad.0;
        return Err(err(
            at..at + bad.1.len_utf8(),
            "the closing `\"\"\"` of a multi-line string must be on its own line",
            "put the closing quotes on a line of their own, indented like the text",
        ));
    }
    let mut out = String::with_capacity(body.len());
    for (n, (at, line)) in lines[1..lines.len() - 1].iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if line.chars().all(is_space) {
            continue;
        }
        match line.strip_prefix(prefix) {
            Some(rest) => out.push_str(rest),
            None => {
                let at = offset + at;
                let len = line.len() - line.trim_start_matches(is_space).len();
                return Err(err(
                    at..at + len.max(1),
                    "this line of a multi-line string is not indented like its closing `\"\"\"`",
                    "indent every line at least as much as the closing quotes, with the same whitespace",
                ));
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Resolves escapes; borrows when there are none. `offset` is where `s` starts in the token.
fn unescape(s: &str, offset: usize) -> Result<Cow<'_, str>, TextError> {
    let Some(first) = s.find('\\') else { return Ok(Cow::Borrowed(s)) };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..];
    loop {
        let Some(i) = rest.find('\\') else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i]);
        let at = offset + (s.len() - rest.len()) + i;
        let after = &rest[i + 1..];
        let c = after.chars().next().ok_or_else(|| err(at..at + 1, "a string ends in a backslash", HELP_ESCAPE))?;
        let consumed = match c {
            '"' | '\\' | 'b' | 'f' | 'n' | 'r' | 't' | 's' => {
                out.push(match c {
                    'b' => '\u{8}',
                    'f' => '\u{C}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    's' => ' ',
                    other => other,
                });
                1
            }
            'u' => {
                let close = after.find('}');
                let digits = match (after.strip_prefix("u{"), close) {
                    (Some(_), Some(close)) => &after[2..close],
                    _ => return Err(err(at..at + 2, "a unicode escape is written `\\u{…}`", HELP_UNICODE)),
                };
                let code = if (1..=6).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    u32::from_str_radix(digits, 16).ok().and_then(char::from_u32)
                } else {
                    None
                };
                match code {
                    Some(ch) => out.push(ch),
                    None => {
                        return Err(err(
                            at..at + 1 + close.unwrap_or(1) + 1,
                            format!("`\\u{{{digits}}}` is not a unicode scalar value"),
                            HELP_UNICODE,
                        ))
                    }
                }
                close.unwrap_or(0) + 1
            }
            c if is_space(c) || is_newline(c) => {
                after.find(|c: char| !is_space(c) && !is_newline(c)).unwrap_or(after.len())
            }
            other => {
                return Err(err(at..at + 1 + other.len_utf8(), format!("unknown escape `\\{other}`"), HELP_ESCAPE));
            }
        };
        rest = &after[consumed..];
    }
    Ok(Cow::Owned(out))
}

const HELP_ESCAPE: &str =
    "escapes are `\\\"`, `\\\\`, `\\b`, `\\f`, `\\n`, `\\r`, `\\t`, `\\s` and `\\u{…}`; for a literal backslash write `\\\\` or use a raw string `#\"…\"#`";
const HELP_UNICODE: &str = "write one to six hex digits of a unicode scalar value, e.g. `\\u{1F600}`";

/// True when a bare token is a number (it starts with a digit, or a sign then a digit), as
/// opposed to an identifier.
pub(crate) fn looks_like_number(text: &str) -> bool {
    let b = text.as_bytes();
    match b.first() {
        Some(b'0'..=b'9') => true,
        Some(b'+' | b'-') => matches!(b.get(1), Some(b'0'..=b'9')),
        _ => false,
    }
}

/// Why a bare token is not a valid identifier, if it is not.
#[inline]
pub(crate) fn identifier_problem(text: &str) -> Option<TextError> {
    let b = text.as_bytes();
    // Most identifiers (`allow`, `proto`, `route`) start with no byte a problem starts with.
    if !matches!(b.first(), Some(b'.' | b'+' | b'-' | b't' | b'f' | b'n' | b'i')) {
        return None;
    }
    let dotted_digit = match b {
        [b'.', d, ..] | [b'+' | b'-', b'.', d, ..] => d.is_ascii_digit(),
        _ => false,
    };
    if dotted_digit {
        return Some(err(
            0..text.len(),
            format!("`{text}` is neither a number nor an identifier"),
            "numbers start with a digit (`0.5`); quote it for a string",
        ));
    }
    if matches!(text, "true" | "false" | "null" | "inf" | "-inf" | "nan") {
        return Some(err(
            0..text.len(),
            format!("`{text}` is a reserved word, not an identifier"),
            "write `#true`, `#false`, `#null`, `#inf`, `#-inf` or `#nan` for the value, or quote it for a string",
        ));
    }
    None
}

/// A KDL number: decimal (with `_`, fraction, exponent), hex, octal or binary, signed.
pub(crate) fn number(text: &str) -> Result<Value<'static>, TextError> {
    let bad = || {
        err(
            0..text.len(),
            format!("`{text}` is not a valid number"),
            "write a decimal (`1_500`, `-2.5e3`) or `0x`/`0o`/`0b` integer; quote it for a string",
        )
    };
    // The common case, a short run of decimal digits (`1500`, `22`): no sign, radix, `_`,
    // fraction or exponent to look for, and no overflow possible in 64 bits.
    if text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) {
        let v = text.bytes().fold(0i64, |v, b| v * 10 + i64::from(b - b'0'));
        return Ok(Value::Integer(i128::from(v).into()));
    }
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = match unsigned.get(..2) {
        Some("0x") => 16,
        Some("0o") => 8,
        Some("0b") => 2,
        _ => 10,
    };
    if radix != 10 {
        let digits = &unsigned[2..];
        if !digits.as_bytes().first().is_some_and(|b| (*b as char).is_digit(radix)) {
            return Err(bad());
        }
        return integer(digits, radix, negative, text).ok_or_else(bad)?;
    }
    // decimal := integer ('.' integer)? (('e' | 'E') sign? integer)?
    let b = unsigned.as_bytes();
    let digits_run = |from: usize| -> usize {
        if !b.get(from).is_some_and(u8::is_ascii_digit) {
            return from;
        }
        from + b[from..].iter().take_while(|c| c.is_ascii_digit() || **c == b'_').count()
    };
    let int_end = digits_run(0);
    if int_end == 0 {
        return Err(bad());
    }
    let mut p = int_end;
    let mut float = false;
    if b.get(p) == Some(&b'.') {
        let e = digits_run(p + 1);
        if e == p + 1 {
            return Err(bad());
        }
        p = e;
        float = true;
    }
    if matches!(b.get(p), Some(b'e' | b'E')) {
        let mut q = p + 1;
        if matches!(b.get(q), Some(b'+' | b'-')) {
            q += 1;
        }
        let e = digits_run(q);
        if e == q {
            return Err(bad());
        }
        p = e;
        float = true;
    }
    if p != b.len() {
        return Err(bad());
    }
    if float {
        let clean: String = text.chars().filter(|c| *c != '_').collect();
        return clean.parse::<f64>().map(Value::Float).map_err(|_| bad());
    }
    integer(unsigned, 10, negative, text).ok_or_else(bad)?
}

/// Digits (with `_`) in `radix`; `None` when a character is not a digit, a syntax error when the
/// value does not fit in `i128`.
fn integer(digits: &str, radix: u32, negative: bool, text: &str) -> Option<Result<Value<'static>, TextError>> {
    let mut v: i128 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)? as i128;
        let next =
            v.checked_mul(radix as i128).and_then(|v| if negative { v.checked_sub(d) } else { v.checked_add(d) });
        match next {
            Some(n) => v = n,
            None => {
                return Some(Err(err(
                    0..text.len(),
                    format!("the integer `{text}` is too large"),
                    "integers must fit in 128 bits",
                )))
            }
        }
    }
    Some(Ok(Value::Integer(v.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let ok = |s: &str| number(s).unwrap_or_else(|e| panic!("{s}: {}", e.message));
        assert_eq!(ok("1_000"), Value::Integer(1000.into()));
        assert_eq!(ok("-0xf_f"), Value::Integer((-255).into()));
        assert_eq!(ok("0o17"), Value::Integer(15.into()));
        assert_eq!(ok("+0b1_01"), Value::Integer(5.into()));
        assert_eq!(ok("1.5e3"), Value::Float(1500.0));
        assert_eq!(ok("1E-2"), Value::Float(0.01));
        assert_eq!(ok("1e400"), Value::Float(f64::INFINITY));
        assert_eq!(ok("-170141183460469231731687303715884105728"), Value::Integer(i128::MIN.into()));
        for bad in ["1.", "1._5", "1e", "0x", "0x_1", "1abc", "0b2", "1.5.5", "170141183460469231731687303715884105728"]
        {
            assert!(number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings() {
        assert_eq!(quoted(r#""a\tb\u{41}\s""#).unwrap().value, "a\tbA ");
        assert_eq!(quoted("\"a\\   \n  b\"").unwrap().value, "ab");
        assert!(quoted(r#""\q""#).is_err());
        assert!(quoted(r#""\u{D800}""#).is_err());
        let d = quoted("\"plain\"").unwrap();
        assert!(matches!(d.value, Cow::Borrowed("plain")));
        assert_eq!(quoted("\"\"\"\n    a\n      b\n\n    \"\"\"").unwrap().value, "a\n  b\n");
        assert!(quoted("\"\"\"\n  a\n b\n  \"\"\"").is_err());
        assert_eq!(raw("##\"a\"#b\"##").unwrap().value, "a\"#b");
        assert_eq!(raw("#\"\"\"\n  a\\n\n  \"\"\"#").unwrap().value, "a\\n");
    }
}
