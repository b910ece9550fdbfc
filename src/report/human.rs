//! Human output: each diagnostic as an annotated source snippet, drawn by miette's graphical
//! handler. Our [`Diagnostic`] is adapted to `miette::Diagnostic` here and nowhere else.
//! Secondary labels in the primary's file are drawn in the same snippet; those in other files
//! become related diagnostics, each with its own snippet.
//!
//! Bounded on any input: each file's line starts are indexed once per run, so a snippet costs
//! its own lines, not the file before it; a diagnostic whose snippet would hold a very long line
//! or span many lines (or that miette cannot draw: it panics on columns past 65,535) is drawn
//! plainly as `file:line:col: severity[code]: message`.

use super::Findings;
use miette::{
    GraphicalTheme, LabeledSpan, MietteError, MietteHandlerOpts, MietteSpanContents, ReportHandler, SourceCode,
    SourceSpan, SpanContents,
};
use netcfg_lang::{Diagnostic, FileId, Label, Severity, SourceMap, Span};
use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;

/// A snippet line longer than this (in bytes) is drawn plainly: miette copies and measures every
/// snippet line per label, and pads with widths it cannot format past 65,535.
const MAX_SNIPPET_LINE: usize = 4096;
/// A label spanning more lines than this is drawn plainly: miette draws every line it covers.
const MAX_SNIPPET_LINES: usize = 200;

/// Colour and width of the human output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
    /// Where to wrap lines: `None` does not wrap. Words (identifiers, sysctl paths) are never
    /// broken, so text copied from a log is always what netcfg meant.
    pub width: Option<usize>,
}

impl Style {
    /// The style for a stream, from the usual environment variables (see [`Style::from_env`]).
    pub fn for_stream(is_terminal: bool) -> Style {
        Style::from_env(is_terminal, |name| std::env::var(name).ok())
    }

    /// Colour: `NO_COLOR` (non-empty) turns it off; otherwise `CLICOLOR_FORCE` (non-empty, not
    /// `0`) turns it on; otherwise it is on for a terminal unless `CLICOLOR=0` or `TERM=dumb`.
    /// Width: `COLUMNS` when set; otherwise the terminal's on a terminal, and no wrapping off a
    /// terminal (a CI log or a file).
    pub fn from_env(is_terminal: bool, var: impl Fn(&str) -> Option<String>) -> Style {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let color = if set("NO_COLOR").is_some() {
            false
        } else if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
            true
        } else {
            is_terminal && var("CLICOLOR").as_deref() != Some("0") && var("TERM").as_deref() != Some("dumb")
        };
        let columns = var("COLUMNS").and_then(|c| c.trim().parse().ok()).filter(|w: &usize| *w > 0);
        let width = columns.or_else(|| is_terminal.then(terminal_width).flatten());
        Style { color, width }
    }

    pub fn stdout() -> Style {
        Style::for_stream(std::io::stdout().is_terminal())
    }

    pub fn stderr() -> Style {
        Style::for_stream(std::io::stderr().is_terminal())
    }
}

/// The width of the controlling terminal (stdout, else stderr).
fn terminal_width() -> Option<usize> {
    [libc::STDOUT_FILENO, libc::STDERR_FILENO].into_iter().find_map(|fd| {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
        (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
    })
}

/// Every diagnostic, each followed by a blank line (no summary).
pub fn render(findings: &Findings, style: &Style) -> String {
    let theme = if style.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let mut opts = MietteHandlerOpts::new()
        .graphical_theme(theme)
        .color(style.color)
        .terminal_links(false)
        .force_graphical(true)
        .without_syntax_highlighting()
        .show_related_errors_as_nested();
    opts = match style.width {
        Some(width) => opts.width(width).break_words(false),
        None => opts.wrap_lines(false),
    };
    let handler = opts.build();
    let mut files = Files { sources: findings.sources, indexed: HashMap::new() };
    let mut out = String::new();
    for d in &findings.shown() {
        let drawn = if files.drawable(d) { draw(&handler, &Adapted::new(d, &mut files)) } else { None };
        out.push_str(&drawn.unwrap_or_else(|| plain(d, findings.sources)));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

thread_local! {
    /// Set while this thread draws with miette: a panic there is caught and not printed.
    static DRAWING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// miette's drawing of one diagnostic, or `None` if it panicked (the panic is not printed).
fn draw(handler: &miette::MietteHandler, adapted: &Adapted) -> Option<String> {
    // One hook for the process, installed once, silent only on a thread that is drawing:
    // swapping hooks per call would race with other threads.
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DRAWING.with(|d| d.get()) {
                previous(info);
            }
        }));
    });
    DRAWING.with(|d| d.set(true));
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Rendered(handler, adapted).to_string()));
    DRAWING.with(|d| d.set(false));
    drawn.ok()
}

/// The fallback: `file:line:col: severity[code]: message`, then the labels and the help, with
/// no source text.
pub fn plain(d: &Diagnostic, sources: &SourceMap) -> String {
    let at = |span: Span| {
        let l = super::Location::of(sources, span);
        format!("{}:{}:{}", l.file, l.line, l.column)
    };
    let mut out = format!("{}: {}[{}]: {}\n", at(d.primary.span), d.severity.as_str(), d.code, d.message);
    if !d.primary.message.is_empty() {
        out.push_str(&format!("  = label: {}\n", d.primary.message));
    }
    for s in &d.secondary {
        out.push_str(&format!("  = {}: {}\n", at(s.span), s.message));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("  help: {help}\n"));
    }
    out
}

/// The files of one run as miette sources, each with its line index built once.
struct Files<'a> {
    sources: &'a SourceMap,
    indexed: HashMap<FileId, File>,
}

impl Files<'_> {
    fn get(&mut self, file: FileId) -> File {
        let sources = self.sources;
        self.indexed
            .entry(file)
            .or_insert_with(|| {
                let f = sources.get(file);
                File { name: f.name.clone(), text: f.text.clone(), line_starts: miette_line_starts(&f.text).into() }
            })
            .clone()
    }

    /// Whether miette can draw `d` in bounded time and output: every label within
    /// [`MAX_SNIPPET_LINES`] lines, and no line it shows (context included) longer than
    /// [`MAX_SNIPPET_LINE`] bytes.
    fn drawable(&mut self, d: &Diagnostic) -> bool {
        std::iter::once(&d.primary).chain(&d.secondary).all(|l| {
            let span = super::whole_chars(self.sources, l.span);
            let f = self.get(span.file);
            let first = f.line_of(span.start as usize);
            let last = f.line_of((span.end as usize).max(span.start as usize + 1) - 1).max(first);
            last - first < MAX_SNIPPET_LINES
                && (first.saturating_sub(1)..=(last + 1).min(f.line_starts.len() - 1))
                    .all(|line| f.line_len(line) <= MAX_SNIPPET_LINE)
        })
    }
}

/// Line starts as miette counts lines: after `\n`, `\r\n` and a lone `\r`.
fn miette_line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                i += 2;
                starts.push(i);
            }
            b'\r' | b'\n' => {
                i += 1;
                starts.push(i);
            }
            _ => i += 1,
        }
    }
    starts
}

struct Rendered<'a>(&'a miette::MietteHandler, &'a Adapted);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(self.1, f)
    }
}

/// One of our diagnostics as miette sees it.
#[derive(Debug)]
struct Adapted {
    code: Option<&'static str>,
    severity: miette::Severity,
    message: String,
    help: Option<String>,
    source: File,
    labels: Vec<LabeledSpan>,
    related: Vec<Adapted>,
}

impl Adapted {
    fn new(d: &Diagnostic, files: &mut Files) -> Adapted {
        let sources = files.sources;
        let file = d.primary.span.file;
        let mut labels =
            vec![LabeledSpan::new_primary_with_span(label_text(&d.primary), source_span(sources, d.primary.span))];
        let mut related = Vec::new();
        for s in &d.secondary {
            if s.span.file == file {
                labels.push(LabeledSpan::new_with_span(label_text(s), source_span(sources, s.span)));
            } else {
                related.push(Adapted {
                    code: None,
                    severity: miette::Severity::Advice,
                    message: s.message.clone(),
                    help: None,
                    source: files.get(s.span.file),
                    labels: vec![LabeledSpan::new_primary_with_span(None, source_span(sources, s.span))],
                    related: Vec::new(),
                });
            }
        }
        Adapted {
            code: Some(d.code.id),
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            message: d.message.clone(),
            help: d.help.clone(),
            source: files.get(file),
            labels,
            related,
        }
    }
}

fn label_text(l: &Label) -> Option<String> {
    (!l.message.is_empty()).then(|| l.message.clone())
}

fn source_span(sources: &SourceMap, span: Span) -> SourceSpan {
    let span = super::whole_chars(sources, span);
    SourceSpan::from((span.start as usize, span.len()))
}

/// A source file for miette. Like `miette::NamedSource`, but it reports how many lines a
/// snippet spans: miette 7.6 reports the number of lines from the start of the file instead,
/// and then merges every label after the middle of a file into one long snippet.
///
/// miette's own `read_span` scans from the start of the file; this one hands it only the lines
/// around the span (found with the line index) and shifts the answer back, which gives the same
/// contents: miette's scan depends on nothing before the first context line.
#[derive(Clone, Debug)]
struct File {
    name: String,
    text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl File {
    /// 0-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|s| *s <= offset).saturating_sub(1)
    }

    fn line_start(&self, line: usize) -> usize {
        self.line_starts.get(line).copied().unwrap_or(self.text.len())
    }

    fn line_len(&self, line: usize) -> usize {
        self.line_start(line + 1) - self.line_start(line)
    }
}

impl SourceCode for File {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let first = self.line_of(span.offset());
        let last = self.line_of((span.offset() + span.len()).saturating_sub(1)).max(first);
        // One line more than the context: miette's scan looks one byte before an empty span.
        let window_line = first.saturating_sub(context_lines_before + 1);
        let start = self.line_start(window_line);
        let end = self.line_start(last + context_lines_after + 2);
        let window = &self.text.as_bytes()[start..end];
        let relative = SourceSpan::from((span.offset() - start, span.len()));
        let inner = window.read_span(&relative, context_lines_before, context_lines_after)?;
        let data = inner.data();
        let lines = data.iter().filter(|b| **b == b'\n').count() + usize::from(!data.ends_with(b"\n"));
        let shifted = SourceSpan::from((inner.span().offset() + start, inner.span().len()));
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            data,
            shifted,
            inner.line() + window_line,
            inner.column(),
            lines,
        )))
    }
}

impl fmt::Display for Adapted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Adapted {}

impl miette::Diagnostic for Adapted {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(is_terminal: bool, vars: &[(&str, &str)]) -> Style {
        Style::from_env(is_terminal, |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn colour_follows_the_usual_variables() {
        assert!(style(true, &[]).color);
        assert!(!style(false, &[]).color);
        assert!(!style(true, &[("NO_COLOR", "1")]).color);
        assert!(style(true, &[("NO_COLOR", "")]).color);
        assert!(!style(true, &[("CLICOLOR", "0")]).color);
        assert!(!style(true, &[("TERM", "dumb")]).color);
        assert!(style(false, &[("CLICOLOR_FORCE", "1")]).color);
        assert!(!style(false, &[("CLICOLOR_FORCE", "0")]).color);
        assert!(!style(false, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).color);
    }

    #[test]
    fn no_wrapping_off_a_terminal() {
        assert_eq!(style(false, &[]).width, None);
        assert_eq!(style(false, &[("COLUMNS", "100")]).width, Some(100));
    }

    /// The windowed `read_span` gives what miette's own scan over the whole text gives.
    #[test]
    fn windowed_read_span_matches_a_whole_file_scan() {
        let texts = [
            "a\nbb\n\nccc dd\ne\n",
            "one\r\ntwo\rthree\n\nfour five six\r\n",
            "no newline at the end",
            "x\n\n\n\ny\n\n\n\nz",
        ];
        for text in texts {
            let file = File { name: "t".into(), text: text.into(), line_starts: miette_line_starts(text).into() };
            for start in 0..=text.len() {
                for len in 0..=(text.len() - start).min(9) {
                    for (before, after) in [(0, 0), (1, 1), (2, 3)] {
                        let span = SourceSpan::from((start, len));
                        let ours = file.read_span(&span, before, after);
                        let theirs = text.read_span(&span, before, after);
                        match (ours, theirs) {
                            (Ok(o), Ok(t)) => {
                                let at = format!("{text:?} {start}+{len} ({before},{after})");
                                assert_eq!(o.data(), t.data(), "{at}");
                                assert_eq!(o.span(), t.span(), "{at}");
                                assert_eq!((o.line(), o.column()), (t.line(), t.column()), "{at}");
                            }
                            (o, t) => assert_eq!(o.is_ok(), t.is_ok(), "{text:?} {start}+{len}"),
                        }
                    }
                }
            }
        }
    }
}
