//! Suppressions written in the spec: `// netcfg-allow(CODE, …): REASON` silences findings of
//! those codes on the commented line or node. This module finds the comments, decides which
//! findings they cover and reports misuse; it never drops a finding silently — every
//! suppressed one is returned with its justification so machine formats can show it.
//!
//! Scope (documented in spec.md, "Suppressing a finding"):
//! - a comment after code on a line covers findings whose primary span starts on that line;
//! - a comment on a line of its own covers the next line that holds code, and when a node
//!   starts there, that whole node with its children (up to its closing `}`).
//!
//! Comments are found by a small scanner that knows KDL's strings (quoted, raw, multi-line) and
//! block comments, so `"// netcfg-allow(x): y"` inside a string is not a suppression. It works
//! on the text, not the AST: suppressions still apply in a file with syntax errors elsewhere.

use crate::code::Code;
use crate::diagnostic::{closest, Diagnostic, Severity};
use crate::source::{FileId, SourceMap, Span};

pub const INVALID_SUPPRESSION: Code =
    Code::error("invalid-suppression", "a `netcfg-allow` comment without a reason, with an unknown code, or malformed");
pub const UNUSED_SUPPRESSION: Code =
    Code::warning("unused-suppression", "a `netcfg-allow` comment that suppresses no finding");

/// Every code this module reports.
pub const CODES: &[Code] = &[INVALID_SUPPRESSION, UNUSED_SUPPRESSION];

const MARKER: &str = "netcfg-allow";

/// A finding silenced by a comment, with the comment's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub diagnostic: Diagnostic,
    pub justification: String,
    /// The code inside the comment that suppressed it.
    pub comment: Span,
}

/// The findings to report and the ones suppressed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Unsuppressed findings, plus `invalid-suppression` and `unused-suppression`.
    pub diagnostics: Vec<Diagnostic>,
    pub suppressed: Vec<Suppressed>,
}

/// One `netcfg-allow` comment, parsed.
#[derive(Debug)]
struct Allow {
    /// Each code named, with its span in the comment.
    codes: Vec<(String, Span)>,
    reason: String,
    /// The bytes of the file whose findings it covers.
    covers: std::ops::Range<u32>,
}

/// Applies every suppression comment in `sources` to `diagnostics`. `known` lists every code
/// netcfg can report (a suppression naming another one is an error: most likely a typo).
pub fn apply(sources: &SourceMap, diagnostics: Vec<Diagnostic>, known: &[&str]) -> Outcome {
    let mut out = Outcome::default();
    let mut allows = Vec::new();
    for (file, source) in sources.files() {
        allows.extend(scan(file, &source.text, known, &mut out.diagnostics));
    }
    let mut used = vec![Vec::new(); allows.len()];
    for (i, a) in allows.iter().enumerate() {
        used[i] = vec![false; a.codes.len()];
    }
    for d in diagnostics {
        let hit = allows.iter().enumerate().find_map(|(i, a)| {
            let file = a.codes.first()?.1.file;
            if file != d.primary.span.file || !a.covers.contains(&d.primary.span.start) {
                return None;
            }
            a.codes.iter().position(|(c, _)| c == d.code.id).map(|j| (i, j))
        });
        match hit {
            Some((i, j)) if !CODES.contains(&d.code) => {
                used[i][j] = true;
                let a = &allows[i];
                out.suppressed.push(Suppressed {
                    diagnostic: d,
                    justification: a.reason.clone(),
                    comment: a.codes[j].1,
                });
            }
            _ => out.diagnostics.push(d),
        }
    }
    for (a, used) in allows.iter().zip(&used) {
        for ((code, span), used) in a.codes.iter().zip(used) {
            if !used {
                out.diagnostics.push(
                    Diagnostic::warning(
                        UNUSED_SUPPRESSION,
                        *span,
                        format!("`{code}` is suppressed here but not reported"),
                    )
                    .with_label("nothing to suppress")
                    .with_help("remove it from the `netcfg-allow` comment"),
                );
            }
        }
    }
    out
}

/// The suppression comments of one file; misuse is pushed to `diags`.
fn scan(file: FileId, text: &str, known: &[&str], diags: &mut Vec<Diagnostic>) -> Vec<Allow> {
    // Most files have no suppression: a substring search instead of a second lexing pass.
    if !text.contains(MARKER) {
        return Vec::new();
    }
    let lexed = lex(text);
    let mut allows = Vec::new();
    for &(start, end) in &lexed.line_comments {
        let body = &text[start + 2..end];
        let lead = body.len() - body.trim_start().len();
        let Some(after) = body.trim_start().strip_prefix(MARKER) else { continue };
        let marker_at = start + 2 + lead;
        let args_at = marker_at + MARKER.len();
        let span = |s: usize, e: usize| Span::new(file, s, e);
        let whole = span(marker_at, end);
        let Some(inner) = after.strip_prefix('(').and_then(|r| r.find(')').map(|i| &r[..i])) else {
            diags.push(
                Diagnostic::error(INVALID_SUPPRESSION, whole, "malformed `netcfg-allow` comment")
                    .with_label("expected `(CODE): REASON` after `netcfg-allow`")
                    .with_help("write `// netcfg-allow(CODE): why this finding is fine here`"),
            );
            continue;
        };
        let inner_at = args_at + 1;
        let mut codes = Vec::new();
        let mut offset = 0;
        let mut ok = true;
        for part in inner.split(',') {
            let trimmed = part.trim();
            let s = inner_at + offset + (part.len() - part.trim_start().len());
            let code_span = span(s, s + trimmed.len());
            offset += part.len() + 1;
            if trimmed.is_empty() {
                diags.push(
                    Diagnostic::error(INVALID_SUPPRESSION, whole, "`netcfg-allow` names no code")
                        .with_label("a code is missing here")
                        .with_help("name the codes to allow, separated by commas: `netcfg-allow(CODE, CODE)`"),
                );
                ok = false;
            } else if !known.contains(&trimmed) {
                let mut d = Diagnostic::error(INVALID_SUPPRESSION, code_span, format!("unknown code `{trimmed}`"))
                    .with_label("no finding has this code");
                d = match closest(trimmed, known.iter().copied()) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help("the codes are listed in spec.md, \"Diagnostics\""),
                };
                diags.push(d);
                ok = false;
            } else if CODES.iter().any(|c| c.id == trimmed) {
                diags.push(
                    Diagnostic::error(INVALID_SUPPRESSION, code_span, format!("`{trimmed}` cannot be suppressed"))
                        .with_label("a suppression cannot silence findings about suppressions")
                        .with_help("fix or remove the suppression comment instead"),
                );
                ok = false;
            } else {
                codes.push((trimmed.to_string(), code_span));
            }
        }
        let rest = &after[1 + inner.len() + 1..];
        let reason = rest.trim_start().strip_prefix(':').map(str::trim).unwrap_or("");
        if reason.is_empty() {
            diags.push(
                Diagnostic::error(INVALID_SUPPRESSION, whole, "suppression without a reason")
                    .with_label("no reason after the codes")
                    .with_help(format!(
                        "say why the finding is fine here: `// netcfg-allow({}): REASON`",
                        inner.trim()
                    )),
            );
            ok = false;
        }
        if !ok || codes.is_empty() {
            continue;
        }
        allows.push(Allow { codes, reason: reason.to_string(), covers: covers(text, &lexed, start) });
    }
    allows
}

/// The bytes a comment starting at `at` covers (see the module doc).
fn covers(text: &str, lexed: &Lexed, at: usize) -> std::ops::Range<u32> {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    if lexed.has_code(line_start, at) {
        return line_start as u32..line_end as u32 + 1;
    }
    // The next line with code, then the node that starts there.
    let mut start = line_end + 1;
    while start < text.len() {
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        if lexed.has_code(start, end) {
            break;
        }
        start = end + 1;
    }
    if start >= text.len() {
        return 0..0;
    }
    let mut depth = 0usize;
    let mut i = start;
    let bytes = text.as_bytes();
    while i < text.len() {
        match (bytes[i], lexed.is_code(i)) {
            (b'{', true) => depth += 1,
            (b'}', true) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return start as u32..i as u32 + 1;
                }
            }
            // A newline outside a string (a line continuation `\` aside) or a `;` ends the node.
            (b'\n', false) if depth == 0 && !text[..i].trim_end().ends_with('\\') => {
                return start as u32..i as u32;
            }
            (b';', true) if depth == 0 => return start as u32..i as u32,
            _ => {}
        }
        i += 1;
    }
    start as u32..text.len() as u32
}

/// Which bytes are code (outside strings and comments), and where line comments are.
struct Lexed {
    /// `(start, end)` of each `//` comment, `start` at the slashes, `end` at the newline.
    line_comments: Vec<(usize, usize)>,
    code: Vec<bool>,
}

impl Lexed {
    fn is_code(&self, i: usize) -> bool {
        self.code[i]
    }

    /// Whether `start..end` holds something other than whitespace outside comments.
    fn has_code(&self, start: usize, end: usize) -> bool {
        (start..end).any(|i| self.code[i])
    }
}

fn lex(text: &str) -> Lexed {
    let b = text.as_bytes();
    let mut code = vec![false; b.len()];
    let mut line_comments = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                line_comments.push((i, end));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'#' if matches!(b.get(i + 1), Some(b'"' | b'#')) => {
                // Raw string: `#"…"#`, `##"…"##`; strings are code (a node's arguments).
                let hashes = b[i..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + hashes) != Some(&b'"') {
                    code[i] = true;
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let body = i + hashes + 1;
                let end = text[body..].find(&close).map_or(b.len(), |n| body + n + close.len());
                code[i..end].iter_mut().for_each(|c| *c = true);
                i = end;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                code[start..i].iter_mut().for_each(|c| *c = true);
            }
            c => {
                code[i] = !c.is_ascii_whitespace();
                i += 1;
            }
        }
    }
    Lexed { line_comments, code }
}

/// How many findings of `severity` were suppressed.
pub fn count(suppressed: &[Suppressed], severity: Severity) -> usize {
    suppressed.iter().filter(|s| s.diagnostic.severity == severity).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::INVALID_VALUE;

    const KNOWN: &[&str] = &["invalid-value", "missing-hairpin", "invalid-suppression"];

    fn run(text: &str, findings_at: &[&str]) -> Outcome {
        let mut sources = SourceMap::default();
        let file = sources.add("t.kdl".into(), None, text);
        let diags = findings_at
            .iter()
            .map(|needle| {
                let at = text.find(needle).expect("needle in text");
                Diagnostic::error(INVALID_VALUE, Span::new(file, at, at + needle.len()), "bad")
            })
            .collect();
        apply(&sources, diags, KNOWN)
    }

    fn codes(o: &Outcome) -> Vec<&str> {
        o.diagnostics.iter().map(|d| d.code.id).collect()
    }

    #[test]
    fn same_line_and_line_before() {
        let o = run("a 1 // netcfg-allow(invalid-value): fine\nb 2\n", &["1", "2"]);
        assert_eq!(o.suppressed.len(), 1);
        assert_eq!(o.suppressed[0].justification, "fine");
        assert_eq!(codes(&o), ["invalid-value"]);
        let o = run("// netcfg-allow(invalid-value): fine\n\nb 2\nc 3\n", &["2", "3"]);
        assert_eq!(o.suppressed.len(), 1);
        assert_eq!(o.diagnostics.len(), 1);
    }

    #[test]
    fn node_level_covers_children_only() {
        let text = "// netcfg-allow(invalid-value): lab\nn {\n    x 1\n    y { z 2; }\n}\nw 3\n";
        let o = run(text, &["1", "2", "3"]);
        assert_eq!(o.suppressed.len(), 2);
        assert_eq!(o.diagnostics.len(), 1);
    }

    #[test]
    fn misuse_is_reported() {
        let o = run("a 1 // netcfg-allow(invalid-value)\n", &["1"]);
        assert_eq!(codes(&o), ["invalid-suppression", "invalid-value"]);
        let o = run("a 1 // netcfg-allow(invalid-valeu): x\n", &["1"]);
        assert_eq!(codes(&o), ["invalid-suppression", "invalid-value"]);
        assert_eq!(o.diagnostics[0].help.as_deref(), Some("did you mean `invalid-value`?"));
        let o = run("a 1 // netcfg-allow(missing-hairpin, invalid-value): x\n", &["1"]);
        assert_eq!(codes(&o), ["unused-suppression"]);
        let o = run("a 1 // netcfg-allow(invalid-suppression): x\n", &[]);
        assert_eq!(codes(&o), ["invalid-suppression"]);
    }

    #[test]
    fn strings_and_block_comments_are_not_comments() {
        let o = run("a \"// netcfg-allow(invalid-value): x\" 1\n", &["1"]);
        assert!(o.suppressed.is_empty());
        let o = run("a #\"// netcfg-allow(invalid-value): x\"# 1\n/* // netcfg-allow(x) */ b\n", &["1"]);
        assert!(o.suppressed.is_empty());
        assert_eq!(codes(&o), ["invalid-value"]);
    }
}
