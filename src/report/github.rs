//! `--format github`: GitHub Actions workflow commands, one annotation per finding, shown on
//! the pull request's diff:
//! `::error file=F,line=L,col=C,endLine=L2,endColumn=C2,title=CODE::MESSAGE` (`::warning` for
//! warnings). The help follows the message on its own line. Suppressed findings are not shown.

use super::{Findings, Location};
use netcfg_lang::Severity;

pub fn render(findings: &Findings) -> String {
    let mut out = String::new();
    for d in findings.diagnostics {
        let l = Location::of(findings.sources, d.primary.span);
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        out.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            property(&l.file),
            l.line,
            l.column,
            l.end_line,
            l.end_column,
            property(d.code.id),
            data(&message)
        ));
    }
    out
}

/// Escapes a command's message (GitHub's `escapeData`).
fn data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a command property's value (GitHub's `escapeProperty`).
fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(super::property("a:b,c"), "a%3Ab%2Cc");
    }
}
