//! Human output: each diagnostic as an annotated source snippet, drawn by miette's graphical
//! handler. Our [`Diagnostic`] is adapted to `miette::Diagnostic` here and nowhere else.
//! Secondary labels in the primary's file are drawn in the same snippet; those in other files
//! become related diagnostics, each with its own snippet.

use super::Findings;
use miette::{
    GraphicalTheme, LabeledSpan, MietteError, MietteHandlerOpts, MietteSpanContents, ReportHandler, SourceCode,
    SourceSpan, SpanContents,
};
use netcfg_lang::{Diagnostic, FileId, Label, Severity, SourceMap, Span};
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;

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
    let mut out = String::new();
    for d in findings.diagnostics {
        let adapted = Adapted::new(d, findings.sources);
        out.push_str(&Rendered(&handler, &adapted).to_string());
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out
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
    fn new(d: &Diagnostic, sources: &SourceMap) -> Adapted {
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
                    source: named_source(sources, s.span.file),
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
            source: named_source(sources, file),
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

fn named_source(sources: &SourceMap, file: FileId) -> File {
    let f = sources.get(file);
    File { name: f.name.clone(), text: f.text.clone() }
}

/// A source file for miette. Like `miette::NamedSource`, but it reports how many lines a
/// snippet spans: miette 7.6 reports the number of lines from the start of the file instead,
/// and then merges every label after the middle of a file into one long snippet.
#[derive(Debug)]
struct File {
    name: String,
    text: Arc<str>,
}

impl SourceCode for File {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.as_ref().read_span(span, context_lines_before, context_lines_after)?;
        let data = inner.data();
        let lines = data.iter().filter(|b| **b == b'\n').count() + usize::from(!data.ends_with(b"\n"));
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            data,
            *inner.span(),
            inner.line(),
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
    use super::Style;

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
}
