//! `--format sarif`: SARIF 2.1.0 for code-scanning tools (GitHub code scanning, IDE viewers).
//!
//! One run; the driver lists every code netcfg can report as a rule (parser, resolver, checks,
//! suppressions, backends), sorted by id, each with its summary (`shortDescription`), its
//! spec.md prose (`fullDescription`), its spec.md section as help (text and Markdown) and a
//! `helpUri` to that section (under [`rule_docs::docs_url`], when configured), and its default level. Each result has
//! `ruleId`/`ruleIndex`, `level`, the message (with the help appended, since viewers show only
//! the message), the primary location and the secondary labels as `relatedLocations`, and a
//! `partialFingerprints` entry that survives lines moving (see [`fingerprint`]).
//!
//! Paths below the working directory are relative URIs against `%SRCROOT%`, which
//! `originalUriBaseIds` sets to the working directory; other absolute paths are `file://`
//! URIs. Findings suppressed by `netcfg-allow` comments are results too, with a `suppressions`
//! entry (`kind: inSource`, the comment's reason as justification). Columns are Unicode code
//! points (`columnKind`), like the other formats.

use super::rule_docs::{self, RuleDoc};
use super::{Findings, Location};
use netcfg_lang::{Diagnostic, Label, Severity, SourceMap};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
const SRCROOT: &str = "%SRCROOT%";

/// Every code netcfg reports, with its summary, sorted by code: the SARIF rules.
pub fn rules() -> Vec<netcfg_lang::Code> {
    netcfg_backends::codes::registry().into_iter().map(|(_, c)| c).collect()
}

pub fn render(findings: &Findings) -> String {
    render_in(findings, std::env::current_dir().ok().as_deref())
}

/// [`render`] with `%SRCROOT%` at `root` (`None`: every path as given).
pub fn render_in(findings: &Findings, root: Option<&Path>) -> String {
    let rules = rules();
    let docs = rule_docs::all();
    let cx = Cx { sources: findings.sources, root: root.map(Path::to_path_buf) };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut results: Vec<Value> = findings.shown().iter().map(|d| cx.result(d, &rules, &mut seen)).collect();
    for s in findings.suppressed {
        let mut r = cx.result(&s.diagnostic, &rules, &mut seen);
        r["suppressions"] = json!([{ "kind": "inSource", "justification": s.justification }]);
        results.push(r);
    }
    let mut run = json!({
        "tool": {
            "driver": {
                "name": "netcfg",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|c| rule(c, docs.get(c.id))).collect::<Vec<_>>(),
            }
        },
        "columnKind": "unicodeCodePoints",
        "results": results,
    });
    if let Some(root) = &cx.root {
        run["originalUriBaseIds"] = json!({ SRCROOT: { "uri": file_uri(root, true) } });
    }
    if let Some(url) = rule_docs::docs_url() {
        run["tool"]["driver"]["informationUri"] = json!(url);
    }
    let doc = json!({ "$schema": SCHEMA, "version": "2.1.0", "runs": [run] });
    let mut out = serde_json::to_string_pretty(&doc).expect("plain data serializes");
    out.push('\n');
    out
}

fn rule(c: &netcfg_lang::Code, doc: Option<&RuleDoc>) -> Value {
    let level = match c.severities.first() {
        Some(Severity::Warning) => "warning",
        _ => "error",
    };
    let mut r = json!({
        "id": c.id,
        "shortDescription": { "text": c.summary },
        "defaultConfiguration": { "level": level },
    });
    if let Some(doc) = doc {
        r["fullDescription"] = json!({ "text": doc.description });
        r["help"] = json!({ "text": format!("{}\n\n{}", doc.description, doc.reference()), "markdown": doc.markdown });
        if let Some(uri) = doc.uri() {
            r["helpUri"] = json!(uri);
        }
    }
    r
}

struct Cx<'a> {
    sources: &'a SourceMap,
    root: Option<PathBuf>,
}

impl Cx<'_> {
    fn result(&self, d: &Diagnostic, rules: &[netcfg_lang::Code], seen: &mut BTreeMap<String, usize>) -> Value {
        let mut text = d.message.clone();
        if let Some(help) = &d.help {
            text.push_str("\nhelp: ");
            text.push_str(help);
        }
        // Two findings with the same fingerprint text are told apart by their order, as GitHub
        // does for its own line hashes.
        let base = fingerprint(d, self.sources);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        let mut result = json!({
            "ruleId": d.code.id,
            "level": match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            "message": { "text": text },
            "locations": [self.location(&d.primary, None)],
            "partialFingerprints": { "netcfgFinding/v1": format!("{base}:{n}") },
        });
        if let Ok(index) = rules.binary_search_by(|r| r.id.cmp(d.code.id)) {
            result["ruleIndex"] = json!(index);
        }
        if !d.secondary.is_empty() {
            result["relatedLocations"] =
                d.secondary.iter().enumerate().map(|(i, s)| self.location(s, Some(i))).collect::<Vec<_>>().into();
        }
        result
    }

    fn location(&self, label: &Label, id: Option<usize>) -> Value {
        let l = Location::of(self.sources, label.span);
        let mut loc = json!({
            "physicalLocation": {
                "artifactLocation": self.artifact(&l.file),
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

    /// A relative path (or an absolute one below the root) is a URI against `%SRCROOT%`;
    /// another absolute path is a `file://` URI.
    fn artifact(&self, name: &str) -> Value {
        let path = Path::new(name);
        if path.is_absolute() {
            match self.root.as_deref().and_then(|r| path.strip_prefix(r).ok()) {
                Some(rel) => json!({ "uri": uri(&rel.to_string_lossy()), "uriBaseId": SRCROOT }),
                None => json!({ "uri": file_uri(path, false) }),
            }
        } else if self.root.is_some() {
            json!({ "uri": uri(name), "uriBaseId": SRCROOT })
        } else {
            json!({ "uri": uri(name) })
        }
    }
}

/// A fingerprint that stays the same when lines are added above a finding: a hash of the code,
/// the file and the text of the primary span's line with whitespace collapsed (not its line
/// number). FNV-1a, written out because the value must never change between Rust releases
/// (`DefaultHasher` makes no such promise) and it needs no cryptographic strength.
pub fn fingerprint(d: &Diagnostic, sources: &SourceMap) -> String {
    let file = sources.get(d.primary.span.file);
    let text = &file.text;
    let start = (d.primary.span.start as usize).min(text.len());
    let end = (d.primary.span.end as usize).clamp(start, text.len());
    let line_start = text.get(..start).and_then(|t| t.rfind('\n')).map_or(0, |i| i + 1);
    let line_end = text.get(end..).and_then(|t| t.find('\n')).map_or(text.len(), |i| end + i);
    let snippet = text.get(line_start..line_end).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    let span_text = sources.slice(d.primary.span).split_whitespace().collect::<Vec<_>>().join(" ");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [d.code.id, &file.name, &snippet, &span_text] {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
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

/// `file:///abs/path` (with a trailing `/` for a directory: a base URI must end with one).
fn file_uri(path: &Path, dir: bool) -> String {
    let mut s = format!("file://{}", uri(&path.to_string_lossy()));
    if dir && !s.ends_with('/') {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcfg_lang::{parse_str, Span};

    #[test]
    fn uris_are_relative_and_encoded() {
        assert_eq!(uri("examples/a b.kdl"), "examples/a%20b.kdl");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(file_uri(Path::new("/src/repo"), true), "file:///src/repo/");
    }

    #[test]
    fn rules_cover_parser_resolver_and_checks_once() {
        let rules = rules();
        for code in ["syntax", "include-cycle", "duplicate-name", "conflicting-sysctl", "interface-name-too-long"] {
            assert_eq!(rules.iter().filter(|r| r.id == code).count(), 1, "{code}");
        }
        assert!(rules.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn fingerprints_survive_lines_moving_but_not_edits() {
        let fp = |text: &str| {
            let parsed = parse_str("a.kdl", text);
            let at = text.find("br0").expect("br0") as u32;
            let d = Diagnostic::error(
                netcfg_lang::code::INVALID_VALUE,
                Span { file: netcfg_lang::FileId(0), start: at, end: at + 3 },
                "x",
            );
            fingerprint(&d, &parsed.sources)
        };
        let base = fp("node \"n\" {\n    bridge \"br0\"\n}\n");
        assert_eq!(base, fp("// a comment\n\nnode \"n\" {\n  bridge   \"br0\"\n}\n"));
        assert_ne!(base, fp("node \"n\" {\n    bridge \"br0\" mtu=9000\n}\n"));
    }
}
