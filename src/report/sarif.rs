//! `--format sarif`: SARIF 2.1.0 for code-scanning tools (GitHub code scanning, IDE viewers).
//!
//! One run; the driver lists every code netcfg can report as a rule (parser, resolver and
//! checks), sorted by id. Each result has `ruleId`/`ruleIndex`, `level`, the message (with the
//! help appended, since viewers show only the message), the primary location (artifact URI is
//! the path as given, relative paths stay relative) and the secondary labels as
//! `relatedLocations`. Columns are Unicode code points (`columnKind`), like the other formats.

use super::{Findings, Location};
use netcfg_lang::{Diagnostic, Label, Severity, SourceMap};
use serde_json::{json, Value};

const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// Every code netcfg reports, with its summary, sorted by code: the SARIF rules.
pub fn rules() -> Vec<(&'static str, &'static str)> {
    let mut rules: Vec<(&str, &str)> = netcfg_lang::diagnostic::CODES
        .iter()
        .chain(netcfg_compiler::resolve::CODES)
        .copied()
        .chain(netcfg_compiler::checks::CHECKS.iter().map(|c| (c.code, c.summary)))
        .collect();
    rules.sort_unstable();
    rules.dedup_by_key(|r| r.0);
    rules
}

pub fn render(findings: &Findings) -> String {
    let rules = rules();
    let results: Vec<Value> = findings.shown().iter().map(|d| result(d, &rules, findings.sources)).collect();
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "netcfg",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules
                        .iter()
                        .map(|(id, summary)| json!({ "id": id, "shortDescription": { "text": summary } }))
                        .collect::<Vec<_>>(),
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut out = serde_json::to_string_pretty(&doc).expect("plain data serializes");
    out.push('\n');
    out
}

fn result(d: &Diagnostic, rules: &[(&str, &str)], sources: &SourceMap) -> Value {
    let mut text = d.message.clone();
    if let Some(help) = &d.help {
        text.push_str("\nhelp: ");
        text.push_str(help);
    }
    let mut result = json!({
        "ruleId": d.code,
        "level": match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        "message": { "text": text },
        "locations": [location(sources, &d.primary, None)],
    });
    if let Ok(index) = rules.binary_search_by(|r| r.0.cmp(d.code)) {
        result["ruleIndex"] = json!(index);
    }
    if !d.secondary.is_empty() {
        result["relatedLocations"] =
            d.secondary.iter().enumerate().map(|(i, s)| location(sources, s, Some(i))).collect::<Vec<_>>().into();
    }
    result
}

fn location(sources: &SourceMap, label: &Label, id: Option<usize>) -> Value {
    let l = Location::of(sources, label.span);
    let mut loc = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri(&l.file) },
            "region": {
                "startLine": l.line,
                "startColumn": l.column,
                "endLine": l.end_line,
                "endColumn": l.end_column,
                "byteOffset": l.byte_start,
                "byteLength": l.byte_end - l.byte_start,
            }
        }
    });
    if let Some(id) = id {
        loc["id"] = json!(id);
    }
    if !label.message.is_empty() {
        loc["message"] = json!({ "text": label.message });
    }
    loc
}

/// A relative URI reference for a path: `/` separators, everything outside the unreserved
/// characters percent-encoded.
fn uri(path: &str) -> String {
    let path = if cfg!(windows) { path.replace('\\', "/") } else { path.to_string() };
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_relative_and_encoded() {
        assert_eq!(uri("examples/a b.kdl"), "examples/a%20b.kdl");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
    }

    #[test]
    fn rules_cover_parser_resolver_and_checks_once() {
        let rules = rules();
        for code in ["syntax", "include-cycle", "duplicate-name", "conflicting-sysctl", "interface-name-too-long"] {
            assert_eq!(rules.iter().filter(|r| r.0 == code).count(), 1, "{code}");
        }
        assert!(rules.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
