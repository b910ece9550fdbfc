//! Each code's documentation, taken from spec.md (compiled into the binary) so SARIF rules,
//! and anything else that explains a code, say what the language reference says: one source.
//!
//! A code documented by a `### \`code\`` section gets that section's prose as its full
//! description and the whole section (example included) as its help; a backend code, which is
//! a row of the "Backend codes" table, gets the row's "when" and "fix" cells.

use std::collections::BTreeMap;

/// Where spec.md is published; rule help links point at its anchors. One place to change when
/// the project moves.
pub const SPEC_URL: &str = "https://github.com/netcfg/netcfg/blob/main/spec.md";

/// spec.md, compiled in.
pub const SPEC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/spec.md"));

/// The documentation of one code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleDoc {
    /// The anchor in spec.md (without `#`).
    pub anchor: String,
    /// Plain-text prose: what it catches and why.
    pub description: String,
    /// The section as Markdown (prose, example, fix).
    pub markdown: String,
}

impl RuleDoc {
    pub fn uri(&self) -> String {
        format!("{SPEC_URL}#{}", self.anchor)
    }
}

/// Every documented code's documentation, by code.
pub fn all() -> BTreeMap<String, RuleDoc> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut in_backend_table = false;
    let mut in_diagnostics = false;
    let flush = |current: &mut Option<(String, String)>, out: &mut BTreeMap<String, RuleDoc>| {
        if let Some((code, body)) = current.take() {
            let markdown = body.trim().to_string();
            out.insert(code.clone(), RuleDoc { anchor: code, description: prose(&markdown), markdown });
        }
    };
    for line in SPEC.lines() {
        if line.starts_with("## ") {
            flush(&mut current, &mut out);
            in_diagnostics = matches!(line, "## Diagnostics" | "## Checks");
            in_backend_table = false;
            continue;
        }
        if let Some(rest) = line.strip_prefix("### ") {
            flush(&mut current, &mut out);
            in_backend_table = rest == "Backend codes";
            if let Some(code) = rest.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
                if in_diagnostics {
                    current = Some((code.to_string(), String::new()));
                }
            }
            continue;
        }
        if in_backend_table {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            if let [code, when, fix] = cells[..] {
                if let Some(code) = code.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                    let markdown = format!("{}.\n\n**Fix:** {fix}.", capitalize(when));
                    out.insert(
                        code.to_string(),
                        RuleDoc { anchor: "backend-codes".into(), description: prose(&markdown), markdown },
                    );
                }
            }
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&mut current, &mut out);
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The prose of a section as plain text: code blocks dropped, paragraphs joined into lines,
/// emphasis and link targets removed.
fn prose(markdown: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line.trim());
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    // The severity is the rule's level already.
    paragraphs.iter().map(|p| plain(p)).filter(|p| !p.starts_with("Severity:")).collect::<Vec<_>>().join("\n\n")
}

/// `**x**` -> `x`, `[text](#anchor)` -> `text`.
fn plain(s: &str) -> String {
    let s = s.replace("**", "");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("](") {
        let Some(open) = rest[..i].rfind('[') else { break };
        let Some(close) = rest[i..].find(')') else { break };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..i]);
        rest = &rest[i + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_code_is_documented() {
        let docs = all();
        for (_, code) in netcfg_backends::codes::registry() {
            let doc = docs.get(code.id).unwrap_or_else(|| panic!("`{}` has no documentation in spec.md", code.id));
            assert!(!doc.description.is_empty() && !doc.markdown.is_empty(), "{}", code.id);
        }
        let hairpin = &docs["missing-hairpin"];
        assert!(hairpin.description.starts_with("What it catches. A service backend"), "{}", hairpin.description);
        assert!(hairpin.markdown.contains("```kdl"));
        assert_eq!(docs["nft-failed"].anchor, "backend-codes");
    }

    #[test]
    fn plain_text() {
        assert_eq!(plain("see **the** [table](#names) now"), "see the table now");
    }
}
