//! `netcfg lsp`: a language server over stdio for editors. The only module that speaks LSP.
//!
//! What it offers, all computed by the same code as the CLI:
//! - diagnostics as you type: each open document is checked as `netcfg check` checks a file
//!   (with its includes, read from the editor's unsaved buffers first, then from disk, and with
//!   suppression comments), published for the document and every file it includes; a document
//!   that another open document includes is checked through that one (the whole fleet);
//! - go to definition: on a quoted name (`master="br0"`, `dev="eth0"`, `zone="lan"`), the
//!   declaration of that name (`bridge "br0"`, `zone "lan"`, …) — the nearest one above in the
//!   same file, else in the files it includes;
//! - hover: what the line compiles to — the netlink operations `plan` shows for a fresh node
//!   and the nft rules whose spec span holds the cursor, per node;
//! - find references: every quoted occurrence of that name in the document and its includes;
//! - code actions: the fix of a "did you mean `X`?" help, as a quick fix;
//! - completion of node keywords and properties, the vocabulary of spec.md's examples;
//! - formatting: the canonical layout of `netcfg fmt`.
//!
//! Messages are JSON values (`serde_json`), not `lsp-types` structs: the server uses a handful
//! of fields, and `lsp-types` changed its URI type between releases.

use lsp_server::{Connection, Message, Notification, Request, Response};
use netcfg_lang::{Diagnostic, FsLoader, LoadError, Loader, Parsed, Severity, SourceMap, Span};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Runs the server until the client says `exit`. Errors are protocol or I/O failures.
pub fn run() -> Result<(), String> {
    let (connection, io) = Connection::stdio();
    let capabilities = json!({
        "positionEncoding": "utf-16",
        "textDocumentSync": 1,
        "definitionProvider": true,
        "hoverProvider": true,
        "referencesProvider": true,
        "codeActionProvider": { "codeActionKinds": ["quickfix"] },
        "completionProvider": { "triggerCharacters": [] },
        "documentFormattingProvider": true,
    });
    connection.initialize(capabilities).map_err(|e| e.to_string())?;
    let mut server = Server { docs: HashMap::new(), connection: &connection };
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req).map_err(|e| e.to_string())? {
                    break;
                }
                let response = server.request(&req);
                server.send(Message::Response(response));
            }
            Message::Notification(n) => server.notification(&n),
            Message::Response(_) => {}
        }
    }
    drop(server);
    drop(connection);
    io.join().map_err(|e| e.to_string())
}

struct Server<'a> {
    /// Open documents by path.
    docs: HashMap<PathBuf, String>,
    connection: &'a Connection,
}

/// Reads includes from the editor's buffers first, then from the file system confined like the
/// CLI's loader (to the directory of the document being checked).
struct Buffers<'a> {
    docs: &'a HashMap<PathBuf, String>,
    fs: Option<FsLoader>,
}

impl Loader for Buffers<'_> {
    fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError> {
        if self.docs.contains_key(path) {
            return Ok(path.to_path_buf());
        }
        match self.fs.as_mut() {
            Some(fs) => fs.resolve(path),
            None => Err(LoadError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, "no such buffer"))),
        }
    }

    fn read(&mut self, key: &Path) -> Result<Vec<u8>, LoadError> {
        if let Some(text) = self.docs.get(key) {
            return Ok(text.clone().into_bytes());
        }
        match self.fs.as_mut() {
            Some(fs) => fs.read(key),
            None => Err(LoadError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, "no such buffer"))),
        }
    }
}

impl Server<'_> {
    fn send(&self, msg: Message) {
        let _ = self.connection.sender.send(msg);
    }

    fn notification(&mut self, n: &Notification) {
        let uri = n.params["textDocument"]["uri"].as_str().unwrap_or_default().to_string();
        let Some(path) = uri_to_path(&uri) else { return };
        match n.method.as_str() {
            "textDocument/didOpen" => {
                let text = n.params["textDocument"]["text"].as_str().unwrap_or_default().to_string();
                self.docs.insert(path.clone(), text);
                self.publish(&path);
            }
            "textDocument/didChange" => {
                // Full sync: the last change holds the whole text.
                if let Some(text) =
                    n.params["contentChanges"].as_array().and_then(|c| c.last()).and_then(|c| c["text"].as_str())
                {
                    self.docs.insert(path.clone(), text.to_string());
                    self.publish(&path);
                }
            }
            "textDocument/didClose" => {
                self.docs.remove(&path);
                self.send_diagnostics(&uri, Vec::new());
            }
            _ => {}
        }
    }

    fn request(&mut self, req: &Request) -> Response {
        let uri = req.params["textDocument"]["uri"].as_str().unwrap_or_default();
        let path = uri_to_path(uri);
        let text = path.as_ref().and_then(|p| self.docs.get(p)).cloned();
        let (Some(path), Some(text)) = (path, text) else {
            return match req.method.as_str() {
                "textDocument/definition"
                | "textDocument/formatting"
                | "textDocument/references"
                | "textDocument/hover" => Response::new_ok(req.id.clone(), Value::Null),
                "textDocument/codeAction" => Response::new_ok(req.id.clone(), json!([])),
                "textDocument/completion" => Response::new_ok(req.id.clone(), completions()),
                _ => Response::new_err(req.id.clone(), -32601, format!("unsupported request `{}`", req.method)),
            };
        };
        let result = match req.method.as_str() {
            "textDocument/definition" => {
                let at = position_to_offset(&text, &req.params["position"]);
                self.definition(&path, &text, at).unwrap_or(Value::Null)
            }
            "textDocument/references" => {
                let at = position_to_offset(&text, &req.params["position"]);
                self.references(&path, &text, at).unwrap_or(Value::Null)
            }
            "textDocument/codeAction" => code_actions(&req.params),
            "textDocument/hover" => {
                let at = position_to_offset(&text, &req.params["position"]);
                self.hover(&path, at).unwrap_or(Value::Null)
            }
            "textDocument/completion" => completions(),
            "textDocument/formatting" => match crate::canonical::format(&text) {
                Ok(formatted) if formatted != text => json!([{
                    "range": { "start": { "line": 0, "character": 0 }, "end": offset_to_position(&text, text.len()) },
                    "newText": formatted,
                }]),
                Ok(_) => json!([]),
                // A file that is not valid KDL is not formatted; its diagnostics say why.
                Err(_) => Value::Null,
            },
            other => return Response::new_err(req.id.clone(), -32601, format!("unsupported request `{other}`")),
        };
        Response::new_ok(req.id.clone(), result)
    }

    /// Parses the document as the entry point of a spec.
    fn parse(&self, path: &Path) -> Parsed {
        let text = self.docs.get(path).cloned().unwrap_or_default();
        let mut parsed = Parsed::default();
        parsed.add_file(
            path.display().to_string(),
            Some(path.to_path_buf()),
            text.as_bytes(),
            &mut Buffers { docs: &self.docs, fs: path.parent().and_then(|d| FsLoader::new([d.to_path_buf()]).ok()) },
        );
        parsed
    }

    /// Publishes the findings of `path` — checked through the open documents that include it,
    /// where its names mean something (a fleet file including node fragments), or on its own —
    /// and re-checks those includers, since a change here changes their findings.
    fn publish(&self, path: &Path) {
        let includers: Vec<PathBuf> = self
            .docs
            .keys()
            .filter(|p| p.as_path() != path)
            .filter(|p| self.parse(p).sources.files().skip(1).any(|(_, f)| f.path.as_deref() == Some(path)))
            .cloned()
            .collect();
        if includers.is_empty() {
            self.publish_unit(path);
        }
        for p in includers {
            self.publish_unit(&p);
        }
    }

    /// Checks `path` as an entry point and publishes for it and every file it includes.
    fn publish_unit(&self, path: &Path) {
        let parsed = self.parse(path);
        let mut diagnostics = parsed.diagnostics.clone();
        diagnostics.extend(netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics).diagnostics);
        let diagnostics = crate::lint::suppress(&parsed.sources, diagnostics).diagnostics;
        let docs = crate::report::rule_docs::all();
        let mut by_file: BTreeMap<PathBuf, Vec<Value>> = BTreeMap::new();
        for (_, f) in parsed.sources.files() {
            if let Some(p) = &f.path {
                by_file.entry(p.clone()).or_default();
            }
        }
        for d in &diagnostics {
            let Some(file) = parsed.sources.get(d.primary.span.file).path.clone() else { continue };
            by_file.entry(file).or_default().push(lsp_diagnostic(d, &parsed.sources, &docs));
        }
        for (file, list) in by_file {
            self.send_diagnostics(&path_to_uri(&file), list);
        }
    }

    fn send_diagnostics(&self, uri: &str, diagnostics: Vec<Value>) {
        self.send(Message::Notification(Notification::new(
            "textDocument/publishDiagnostics".to_string(),
            json!({ "uri": uri, "diagnostics": diagnostics }),
        )));
    }

    /// The declaration of the quoted name at `at`.
    fn definition(&self, path: &Path, text: &str, at: usize) -> Option<Value> {
        let name = quoted_at(text, at)?;
        let parsed = self.parse(path);
        // (in this file, declared above the cursor, offset) for every declaration.
        let mut candidates: Vec<(bool, bool, usize, PathBuf, String)> = Vec::new();
        for (id, file) in parsed.sources.files() {
            let Some(file_path) = &file.path else { continue };
            for decl in declarations(&file.text, &name) {
                let here = id.0 == 0;
                candidates.push((here, here && decl <= at, decl, file_path.clone(), file.text.to_string()));
            }
        }
        // The nearest declaration above in this file, else the first in this file, else the
        // first in an included file.
        let (_, _, start, file, file_text) = candidates
            .iter()
            .filter(|c| c.1)
            .max_by_key(|c| c.2)
            .or_else(|| candidates.iter().find(|c| c.0))
            .or_else(|| candidates.first())?;
        Some(json!({
            "uri": path_to_uri(file),
            "range": {
                "start": offset_to_position(file_text, *start),
                "end": offset_to_position(file_text, start + name.len()),
            },
        }))
    }
}

impl Server<'_> {
    /// Every quoted occurrence of the name at `at` (declarations and references) in the
    /// document and the files it includes.
    fn references(&self, path: &Path, text: &str, at: usize) -> Option<Value> {
        let name = quoted_at(text, at)?;
        let quoted = format!("\"{name}\"");
        let parsed = self.parse(path);
        let mut out = Vec::new();
        for (_, file) in parsed.sources.files() {
            let Some(file_path) = &file.path else { continue };
            for (i, _) in file.text.match_indices(&quoted) {
                out.push(json!({
                    "uri": path_to_uri(file_path),
                    "range": {
                        "start": offset_to_position(&file.text, i + 1),
                        "end": offset_to_position(&file.text, i + 1 + name.len()),
                    },
                }));
            }
        }
        Some(json!(out))
    }
}

impl Server<'_> {
    /// What the text at `at` compiles to: the netlink operations (as `netcfg plan` shows them
    /// for a fresh node) and the nft lines whose spec span holds `at`, for every node that uses
    /// it (a template line belongs to every node that uses the template).
    fn hover(&self, path: &Path, at: usize) -> Option<Value> {
        let parsed = self.parse(path);
        let compiled = netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics);
        let holds = |span: Span| span.file.0 == 0 && (span.start as usize) <= at && at < span.end as usize;
        let mut sections = Vec::new();
        for node in &compiled.fleet.nodes {
            let plan = netcfg_backends::plan::plan_node(node, &mut Vec::new());
            // Ops that fall back to the node's own span (removals) say nothing about a line.
            let mut ops: Vec<(u32, String)> = plan
                .plan
                .ops
                .iter()
                .filter(|op| op.span != node.span && holds(op.span))
                .map(|op| (op.span.end - op.span.start, format!("{} {}: {}", op.sign(), op.ns, op.describe())))
                .collect();
            ops.sort();
            let mut nft = Vec::new();
            for (ns, script) in &plan.nft {
                for line in 1..=script.text.lines().count() {
                    if script.origin_of_line(line).is_some_and(holds) {
                        nft.push(format!("{ns}: {}", script.line_text(line).unwrap_or_default().trim()));
                    }
                }
            }
            if ops.is_empty() && nft.is_empty() {
                continue;
            }
            let mut md = format!("**node `{}`**\n", node.name.value);
            if !ops.is_empty() {
                md.push_str("\nnetlink (on a fresh node):\n```\n");
                for (_, op) in ops.iter().take(MAX_HOVER_LINES) {
                    md.push_str(op);
                    md.push('\n');
                }
                md.push_str("```\n");
            }
            if !nft.is_empty() {
                md.push_str("\nnftables:\n```\n");
                for line in nft.iter().take(MAX_HOVER_LINES) {
                    md.push_str(line);
                    md.push('\n');
                }
                md.push_str("```\n");
            }
            sections.push(md);
        }
        if sections.is_empty() {
            return None;
        }
        Some(json!({ "contents": { "kind": "markdown", "value": sections.join("\n---\n\n") } }))
    }
}

/// Hover shows at most this many operations or nft lines per node.
const MAX_HOVER_LINES: usize = 40;

/// Quick fixes for the diagnostics the client sends back whose help is mechanical:
/// "did you mean `X`?" replaces the underlined text with `X`.
fn code_actions(params: &Value) -> Value {
    let uri = params["textDocument"]["uri"].clone();
    let mut out = Vec::new();
    for d in params["context"]["diagnostics"].as_array().into_iter().flatten() {
        if d["source"] != "netcfg" {
            continue;
        }
        let message = d["message"].as_str().unwrap_or_default();
        let Some(fix) = message
            .split_once("\nhelp: did you mean `")
            .and_then(|(_, rest)| rest.strip_suffix("`?"))
            .filter(|f| !f.contains('`'))
        else {
            continue;
        };
        out.push(json!({
            "title": format!("replace with `{fix}`"),
            "kind": "quickfix",
            "diagnostics": [d],
            "isPreferred": true,
            "edit": { "changes": { uri.as_str().unwrap_or_default(): [{ "range": d["range"], "newText": fix }] } },
        }));
    }
    json!(out)
}

/// Keywords besides the link kinds that declare a name as their first argument.
const DECLARING: &[&str] =
    &["node", "netns", "template", "rules", "peer", "zone", "set", "service", "listen", "publish"];

/// Byte offsets of `name` where a declaring keyword declares it (`bridge "br0"`).
fn declarations(text: &str, name: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        for kw in DECLARING.iter().chain(netcfg_lang::links::LINK_KEYWORDS) {
            if let Some(rest) = body.strip_prefix(kw) {
                let after = rest.trim_start();
                if rest.len() > after.len() && after.starts_with(&format!("\"{name}\"")) {
                    out.push(offset + indent + kw.len() + (rest.len() - after.len()) + 1);
                }
            }
        }
        offset += line.len();
    }
    out
}

/// The content of the `"…"` string around byte `at`, on its line.
fn quoted_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let quotes: Vec<usize> = line.match_indices('"').map(|(i, _)| line_start + i).collect();
    quotes.chunks(2).find(|q| q.len() == 2 && q[0] <= at && at <= q[1]).map(|q| text[q[0] + 1..q[1]].to_string())
}

/// Node keywords and properties, from the examples of spec.md (the language reference).
fn completions() -> Value {
    let mut keywords = BTreeSet::new();
    let mut properties = BTreeSet::new();
    let mut in_kdl = false;
    for line in crate::report::rule_docs::SPEC.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_kdl = t == "```kdl";
            continue;
        }
        if !in_kdl || t.starts_with("//") || t.is_empty() {
            continue;
        }
        let word: String = t.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
        if !word.is_empty() {
            keywords.insert(word);
        }
        for (i, _) in t.match_indices('=') {
            let key: String = t[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !key.is_empty() {
                properties.insert(key);
            }
        }
    }
    let items: Vec<Value> = keywords
        .iter()
        .map(|k| json!({ "label": k, "kind": 14, "detail": "node" }))
        .chain(
            properties
                .iter()
                .map(|p| json!({ "label": p, "kind": 10, "detail": "property", "insertText": format!("{p}=") })),
        )
        .collect();
    json!({ "isIncomplete": false, "items": items })
}

fn lsp_diagnostic(
    d: &Diagnostic,
    sources: &SourceMap,
    docs: &BTreeMap<String, crate::report::rule_docs::RuleDoc>,
) -> Value {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let mut v = json!({
        "range": range(sources, d.primary.span),
        "severity": match d.severity { Severity::Error => 1, Severity::Warning => 2 },
        "code": d.code.id,
        "source": "netcfg",
        "message": message,
    });
    if let Some(uri) = docs.get(d.code.id).and_then(|doc| doc.uri()) {
        v["codeDescription"] = json!({ "href": uri });
    }
    let related: Vec<Value> = d
        .secondary
        .iter()
        .filter_map(|s| {
            let path = sources.get(s.span.file).path.as_ref()?;
            Some(json!({ "location": { "uri": path_to_uri(path), "range": range(sources, s.span) }, "message": s.message }))
        })
        .collect();
    if !related.is_empty() {
        v["relatedInformation"] = json!(related);
    }
    v
}

fn range(sources: &SourceMap, span: Span) -> Value {
    let span = crate::report::whole_chars(sources, span);
    let text = &sources.get(span.file).text;
    json!({ "start": offset_to_position(text, span.start as usize), "end": offset_to_position(text, span.end as usize) })
}

/// A byte offset as an LSP position (line, UTF-16 code units).
fn offset_to_position(text: &str, offset: usize) -> Value {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let character: usize = before[line_start..].chars().map(char::len_utf16).sum();
    json!({ "line": line, "character": character })
}

/// An LSP position as a byte offset (clamped to the line and the text).
fn position_to_offset(text: &str, pos: &Value) -> usize {
    let line = pos["line"].as_u64().unwrap_or(0) as usize;
    let character = pos["character"].as_u64().unwrap_or(0) as usize;
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == line {
            let mut units = 0;
            for (b, c) in l.char_indices() {
                if units >= character || c == '\n' {
                    return offset + b;
                }
                units += c.len_utf16();
            }
            return offset + l.len();
        }
        offset += l.len();
    }
    text.len()
}

fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8(out).ok()?))
}

fn path_to_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
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
    fn positions_count_utf16_units() {
        let text = "a\né𝄞x\n";
        let at = text.find('x').expect("x");
        assert_eq!(offset_to_position(text, at), json!({ "line": 1, "character": 3 }));
        assert_eq!(position_to_offset(text, &json!({ "line": 1, "character": 3 })), at);
    }

    #[test]
    fn uris_round_trip() {
        let p = Path::new("/tmp/a b/c.kdl");
        assert_eq!(path_to_uri(p), "file:///tmp/a%20b/c.kdl");
        assert_eq!(uri_to_path(&path_to_uri(p)).as_deref(), Some(p));
    }

    #[test]
    fn names_and_declarations() {
        let text = "node \"n\" {\n    bridge \"br0\"\n    veth \"v\" master=\"br0\"\n}\n";
        let at = text.rfind("br0").expect("ref");
        assert_eq!(quoted_at(text, at).as_deref(), Some("br0"));
        assert_eq!(declarations(text, "br0"), [text.find("br0").expect("decl")]);
    }
}
