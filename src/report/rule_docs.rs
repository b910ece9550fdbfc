//! Each code's documentation, taken from spec.md (compiled into the binary) so SARIF rules,
//! and anything else that explains a code, say what the language reference says: one source.
//!
//! A code documented by a `### \`code\`` section gets that section's prose as its full
//! description and the whole section (example included) as its help; a backend code, which is
//! a row of the "Backend codes" table, gets the row's "when" and "fix" cells.

use std::collections::BTreeMap;

/// The variable naming where this netcfg's spec.md is published (an absolute `https://`,
/// `http://` or `file://` URL of the document, without a fragment). Read at run time (a CI job
/// points it at the spec.md of the netcfg version it runs), else at build time (a packager's
/// `NETCFG_DOCS_URL=… cargo build`).
pub const DOCS_URL_ENV: &str = "NETCFG_DOCS_URL";

/// Where spec.md is published, if anyone said so. netcfg has no public home of its own (no
/// `repository` or `homepage` in Cargo.toml), so there is no default: a made-up URL would send
/// a reviewer to a page that does not exist. Without one, rule help names the section
/// (`spec.md#anchor`) in its text and carries no link. An unusable value is reported once on
/// stderr and left out.
pub fn docs_url() -> Option<&'static str> {
    static URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let value = std::env::var(DOCS_URL_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| option_env!("NETCFG_DOCS_URL").map(str::to_string))?;
        match check_docs_url(&value) {
            Ok(()) => Some(value),
            Err(why) => {
                eprintln!("warning: {DOCS_URL_ENV} `{value}` is not used: {why}; rule help carries no link");
                None
            }
        }
    })
    .as_deref()
}

/// A usable docs URL: absolute (SARIF's `helpUri` and LSP's `href` must be), of a scheme a
/// browser or editor opens, naming a document (its anchors are appended).
pub fn check_docs_url(url: &str) -> Result<(), &'static str> {
    let rest = ["https://", "http://", "file://"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .ok_or("it must start with https://, http:// or file://")?;
    if rest.is_empty() || rest.starts_with('#') {
        return Err("it names no host or path");
    }
    if url.contains('#') {
        return Err("it must not have a fragment (netcfg appends each code's anchor)");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    Ok(())
}

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
    /// The section's URL under [`docs_url`], when one is configured.
    pub fn uri(&self) -> Option<String> {
        docs_url().map(|u| format!("{u}#{}", self.anchor))
    }

    /// Where the section is, for a reader: its URL, or its place in spec.md.
    pub fn reference(&self) -> String {
        self.uri().unwrap_or_else(|| format!("netcfg {} spec.md#{}", env!("CARGO_PKG_VERSION"), self.anchor))
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
