//! `--format concise`: one line per finding, `FILE:LINE:COL: SEVERITY[CODE]: MESSAGE`, the
//! shape compilers print and editors' quickfix lists read (vim's default `errorformat`, emacs'
//! compilation mode). Nothing else is printed: no summary, no suppressed findings.

use super::{Findings, Location};

pub fn render(findings: &Findings) -> String {
    let mut out = String::new();
    for d in findings.diagnostics {
        let l = Location::of(findings.sources, d.primary.span);
        // A message is one line by construction; a newline would break the format's contract.
        let message = d.message.replace('\n', " ");
        out.push_str(&format!(
            "{}:{}:{}: {}[{}]: {message}\n",
            l.file,
            l.line,
            l.column,
            d.severity.as_str(),
            d.code.id
        ));
    }
    out
}
