//! Rendering diagnostics: one file per output format. This is the only place that turns a
//! [`Diagnostic`] into text; every format shows the same findings in the same (sorted) order.

pub mod concise;
pub mod github;
pub mod human;
pub mod json;
pub mod plan;
pub mod rule_docs;
pub mod sarif;

use netcfg_lang::suppress::Suppressed;
use netcfg_lang::{Diagnostic, Severity, SourceMap, Span};
use std::collections::BTreeMap;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Annotated source snippets for people.
    Human,
    /// One JSON document with a stable schema (see spec.md).
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// GitHub Actions workflow commands: one `::error file=…::…` annotation per finding.
    Github,
    /// One `file:line:col: severity[code]: message` line per finding (vim/emacs quickfix).
    Concise,
}

/// What a run found: sorted, deduplicated diagnostics and the files they point into, and the
/// findings suppressed by `netcfg-allow` comments (shown by the machine formats, counted by
/// the human one).
pub struct Findings<'a> {
    pub diagnostics: &'a [Diagnostic],
    pub sources: &'a SourceMap,
    pub suppressed: &'a [Suppressed],
}

/// At most this many diagnostics are shown per run; the rest are summed up in one
/// `too-many-diagnostics` (the counts and the exit status still include them).
pub const MAX_SHOWN: usize = 1000;

impl Findings<'_> {
    /// What every format shows: the first [`MAX_SHOWN`] diagnostics, then, if any were cut, one
    /// `too-many-diagnostics` on the first one cut, counting the rest by code.
    pub fn shown(&self) -> Vec<Diagnostic> {
        let mut shown: Vec<Diagnostic> = self.diagnostics.iter().take(MAX_SHOWN).cloned().collect();
        let cut = self.diagnostics.get(MAX_SHOWN..).unwrap_or_default();
        if let Some(first) = cut.first() {
            let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
            for d in cut {
                *by_code.entry(d.code.id).or_default() += 1;
            }
            let mut counts: Vec<(&str, usize)> = by_code.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let list: Vec<String> = counts.iter().map(|(code, n)| format!("{n} `{code}`")).collect();
            let severity = cut.iter().map(|d| d.severity).min().unwrap_or(Severity::Warning);
            let message = format!("{} more diagnostics not shown: {}", cut.len(), list.join(", "));
            let mut d = match severity {
                Severity::Error => {
                    Diagnostic::error(netcfg_lang::code::TOO_MANY_DIAGNOSTICS, first.primary.span, message)
                }
                Severity::Warning => {
                    Diagnostic::warning(netcfg_lang::code::TOO_MANY_DIAGNOSTICS, first.primary.span, message)
                }
            };
            d = d.with_label("the first one not shown").with_help(format!(
                "netcfg shows the first {MAX_SHOWN}; fix those (or check fewer files at once) to see the rest"
            ));
            shown.push(d);
        }
        shown
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Every file read, includes too.
    pub fn files(&self) -> usize {
        self.sources.files().count()
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }

    /// `2 errors, 1 warning in 3 files`, or `no findings in 1 file`; `(1 suppressed)` after
    /// it when comments suppressed findings.
    pub fn summary(&self) -> String {
        let files = plural(self.files(), "file");
        let mut s = match (self.errors(), self.warnings()) {
            (0, 0) => format!("no findings in {files}"),
            (e, 0) => format!("{} in {files}", plural(e, "error")),
            (0, w) => format!("{} in {files}", plural(w, "warning")),
            (e, w) => format!("{}, {} in {files}", plural(e, "error"), plural(w, "warning")),
        };
        if !self.suppressed.is_empty() {
            s.push_str(&format!(" ({} suppressed)", self.suppressed.len()));
        }
        s
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Renders `findings` in `format`; the text ends with a newline.
pub fn render(format: Format, findings: &Findings, style: &human::Style) -> String {
    match format {
        Format::Human => {
            let mut out = human::render(findings, style);
            out.push_str(&findings.summary());
            out.push('\n');
            out
        }
        Format::Json => json::render(findings),
        Format::Sarif => sarif::render(findings),
        Format::Github => github::render(findings),
        Format::Concise => concise::render(findings),
    }
}

/// Where a span is, in the units every machine format uses: 1-based lines and columns
/// (columns count characters), the end exclusive, plus the byte range.
#[derive(serde::Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub byte_start: u32,
    pub byte_end: u32,
}

impl Location {
    pub fn of(sources: &SourceMap, span: Span) -> Location {
        let whole = whole_chars(sources, span);
        let (line, column) = sources.line_col(span.file, whole.start);
        let (end_line, end_column) = sources.line_col(span.file, whole.end);
        Location {
            file: sources.get(span.file).name.clone(),
            line,
            column,
            end_line,
            end_column,
            byte_start: span.start,
            byte_end: span.end,
        }
    }
}

/// `span` widened to whole characters. A span may start or end inside a character:
/// `invalid-utf8` points at the invalid byte, which the source map holds as a three-byte U+FFFD.
pub fn whole_chars(sources: &SourceMap, span: Span) -> Span {
    let text = &sources.get(span.file).text;
    let start = char_boundary(text, span.start, false);
    let end = char_boundary(text, span.end.max(start), true);
    Span { file: span.file, start, end }
}

/// The nearest character boundary at or before (or, with `up`, at or after) `offset`.
fn char_boundary(text: &str, offset: u32, up: bool) -> u32 {
    let mut i = (offset as usize).min(text.len());
    while !text.is_char_boundary(i) {
        if up {
            i += 1;
        } else {
            i -= 1;
        }
    }
    i as u32
}
