//! `--format json`: one JSON document per run, for editors and pipelines.
//!
//! The schema is stable: fields are only ever added, and `version` changes if one is removed
//! or changes meaning.
//!
//! ```text
//! {
//!   "version": 1,
//!   "diagnostics": [                      sorted by file, position, code, message; at most
//!                                         1000, then one "too-many-diagnostics" counting
//!                                         the rest by code
//!     {
//!       "code": "interface-name-too-long",  stable code, documented in spec.md
//!       "severity": "error",                "error" | "warning"
//!       "message": "...",                   what is wrong
//!       "file": "examples/a.kdl",           the path as given on the command line (or as
//!                                           reached through `include`), "<stdin>" for `-`
//!       "line": 3, "column": 13,            1-based; columns count characters
//!       "end_line": 3, "end_column": 29,    the end is exclusive
//!       "byte_start": 42, "byte_end": 58,   byte offsets in the file, end exclusive
//!       "label": "..." | null,              text under the primary span
//!       "help": "..." | null,               how to fix it
//!       "related": [                        other places involved, e.g. "first declared here"
//!         { "message": "...", "file": "...", "line": 1, "column": 6,
//!           "end_line": 1, "end_column": 9, "byte_start": 5, "byte_end": 8 }
//!       ]
//!     }
//!   ],
//!   "suppressed": [                       findings silenced by `netcfg-allow` comments:
//!     { ...the fields above...,           the same fields as a diagnostic, plus
//!       "justification": "..." }          the reason the comment gives
//!   ],
//!   "summary": { "errors": 1, "warnings": 0, "files": 1,    files: every file read, includes too;
//!                "suppressed": 0 }
//!                                         errors/warnings count every finding, shown or not
//! }
//! ```

use super::{Findings, Location};
use netcfg_lang::{Diagnostic, Label, SourceMap};
use serde::Serialize;

pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    suppressed: Vec<JsonSuppressed<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct JsonSuppressed<'a> {
    #[serde(flatten)]
    diagnostic: JsonDiagnostic<'a>,
    justification: &'a str,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: &'a str,
    message: &'a str,
    #[serde(flatten)]
    location: Location,
    label: Option<&'a str>,
    help: Option<&'a str>,
    related: Vec<Related<'a>>,
}

#[derive(Serialize)]
struct Related<'a> {
    message: &'a str,
    #[serde(flatten)]
    location: Location,
}

#[derive(Serialize)]
struct Summary {
    errors: usize,
    warnings: usize,
    files: usize,
    suppressed: usize,
}

pub fn render(findings: &Findings) -> String {
    let shown = findings.shown();
    let doc = Document {
        version: VERSION,
        diagnostics: shown.iter().map(|d| diagnostic(d, findings.sources)).collect(),
        suppressed: findings
            .suppressed
            .iter()
            .map(|s| JsonSuppressed {
                diagnostic: diagnostic(&s.diagnostic, findings.sources),
                justification: &s.justification,
            })
            .collect(),
        summary: Summary {
            errors: findings.errors(),
            warnings: findings.warnings(),
            files: findings.files(),
            suppressed: findings.suppressed.len(),
        },
    };
    let mut out = serde_json::to_string_pretty(&doc).expect("plain data serializes");
    out.push('\n');
    out
}

fn diagnostic<'a>(d: &'a Diagnostic, sources: &SourceMap) -> JsonDiagnostic<'a> {
    JsonDiagnostic {
        code: d.code.id,
        severity: d.severity.as_str(),
        message: &d.message,
        location: location(sources, &d.primary),
        label: (!d.primary.message.is_empty()).then_some(d.primary.message.as_str()),
        help: d.help.as_deref(),
        related: d.secondary.iter().map(|s| Related { message: &s.message, location: location(sources, s) }).collect(),
    }
}

fn location(sources: &SourceMap, label: &Label) -> Location {
    Location::of(sources, label.span)
}
