//! Test fixtures: a spec with the expected findings written under the offending text.
//!
//! ```text
//! bridge "kubernetes-pods0"
//! //      ^^^^^^^^^^^^^^^^ error interface-name-too-long
//! ```
//! An annotation line is `//` followed by carets; the carets' columns mark the primary span on
//! the nearest line above that is not an annotation, then the severity and the code. Every
//! finding must be annotated and every annotation found (parse errors included).

use netcfg_lang::{parse_str, Diagnostic, Severity};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Expected {
    line: usize,
    start: usize,
    end: usize,
    severity: String,
    code: String,
}

/// Compiles `src` and asserts that its findings are exactly the annotated ones.
pub fn check(src: &str) -> Vec<Diagnostic> {
    let parsed = parse_str("fixture.kdl", src);
    let mut diags = parsed.diagnostics.clone();
    diags.extend(crate::compile_after(&parsed.spec, &parsed.diagnostics).diagnostics);
    let mut expected = Vec::new();
    let mut target = 0;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("//") && t.trim_start_matches('/').trim_start().starts_with('^') {
            let start = line.find('^').expect("caret");
            let end = start + line[start..].chars().take_while(|c| *c == '^').count();
            let mut words = line[end..].split_whitespace();
            let severity = words.next().unwrap_or("").to_string();
            let code = words.next().unwrap_or("").to_string();
            expected.push(Expected { line: target, start, end, severity, code });
        } else {
            target = i;
        }
    }
    let mut actual = Vec::new();
    for d in &diags {
        let (line, col) = parsed.sources.line_col(d.primary.span.file, d.primary.span.start);
        let text_line = src.lines().nth(line - 1).unwrap_or("");
        let start = text_line.char_indices().nth(col - 1).map(|(b, _)| b).unwrap_or(text_line.len());
        // Multi-line spans are marked to the end of their first line.
        let end = (start + d.primary.span.len()).min(text_line.len());
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        actual.push(Expected { line: line - 1, start, end, severity: severity.into(), code: d.code.id.into() });
    }
    expected.sort();
    actual.sort();
    if expected != actual {
        let mut msg = String::from("findings differ from the annotations\n--- findings:\n");
        for d in &diags {
            let (l, c) = parsed.sources.line_col(d.primary.span.file, d.primary.span.start);
            msg.push_str(&format!("{l}:{c} {} {}: {} (help: {:?})\n", d.severity.as_str(), d.code, d.message, d.help));
        }
        msg.push_str(&format!("--- expected: {expected:#?}\n--- actual: {actual:#?}"));
        panic!("{msg}");
    }
    diags
}
