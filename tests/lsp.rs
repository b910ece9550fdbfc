//! `netcfg lsp` driven by a real LSP client over stdio: a small JSON-RPC client in this test
//! (Content-Length framing) opens documents and asks what an editor asks.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

fn read_message(r: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .env("NETCFG_DOCS_URL", "https://docs.example/netcfg/0.1/spec.md")
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("netcfg lsp starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            while let Some(m) = read_message(&mut stdout) {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Client { child, stdin, messages, next_id: 1 }
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write to the server");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns its result, collecting notifications that come first.
    fn request(&mut self, method: &str, params: Value, notes: &mut Vec<Value>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let m = self.messages.recv_timeout(Duration::from_secs(30)).expect("the server answers");
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            notes.push(m);
        }
    }

    /// The next `publishDiagnostics` for `uri`.
    fn diagnostics_for(&mut self, uri: &str, notes: &mut Vec<Value>) -> Vec<Value> {
        if let Some(i) =
            notes.iter().position(|n| n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri)
        {
            return notes.remove(i)["params"]["diagnostics"].as_array().expect("list").clone();
        }
        loop {
            let m = self.messages.recv_timeout(Duration::from_secs(30)).expect("diagnostics are published");
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                return m["params"]["diagnostics"].as_array().expect("list").clone();
            }
        }
    }
}

const SPEC: &str = "include \"common.kdl\"\nnode \"n1\" {\n    bridge \"br0\"\n    bridge \"kubernetes-pods0\"\n    veth \"v0\" master=\"br0\" {\n        peer \"v1\"\n    }\n    route \"10.9.0.0/16\" dev=\"uplink\"\n}\n";
const COMMON: &str =
    "template \"t\" {\n    ethernet \"uplink\"\n}\nrules \"web\" {\n    allow in proto=\"tcp\" port=80\n}\n";

#[test]
fn an_editor_session() {
    let dir = std::env::temp_dir().join(format!("netcfg-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.canonicalize().expect("canonical");
    std::fs::write(dir.join("common.kdl"), COMMON).expect("write include");
    let uri = format!("file://{}/spec.kdl", dir.display());
    let common_uri = format!("file://{}/common.kdl", dir.display());
    let mut c = Client::start();
    let mut notes = Vec::new();
    let init = c.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }), &mut notes);
    assert_eq!(init["capabilities"]["definitionProvider"], true);
    assert_eq!(init["capabilities"]["documentFormattingProvider"], true);
    c.notify("initialized", json!({}));

    // Diagnostics on open: the 16-byte name, on its span, with a link to its documentation.
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "kdl", "version": 1, "text": SPEC } }),
    );
    let diags = c.diagnostics_for(&uri, &mut notes);
    let long = diags.iter().find(|d| d["code"] == "interface-name-too-long").unwrap_or_else(|| panic!("{diags:?}"));
    assert_eq!(long["severity"], 1);
    assert_eq!(
        long["range"],
        json!({ "start": { "line": 3, "character": 12 }, "end": { "line": 3, "character": 28 } })
    );
    assert_eq!(long["codeDescription"]["href"], "https://docs.example/netcfg/0.1/spec.md#interface-name-too-long");
    assert!(long["message"].as_str().expect("message").contains("\nhelp: "));

    // Diagnostics on change: fixed, then a suppressed finding is gone too.
    let fixed = SPEC.replace("kubernetes-pods0", "pods0");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    let diags = c.diagnostics_for(&uri, &mut notes);
    assert!(diags.iter().all(|d| d["code"] != "interface-name-too-long"), "{diags:?}");

    // Go to definition: `master="br0"` -> `bridge "br0"`; `dev="uplink"` -> the include.
    let line = fixed.lines().position(|l| l.contains("master=")).expect("line");
    let col = fixed.lines().nth(line).expect("line").find("br0").expect("col");
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": col + 1 } }),
        &mut notes,
    );
    assert_eq!(def["uri"], uri);
    assert_eq!(def["range"]["start"], json!({ "line": 2, "character": 12 }));
    let line = fixed.lines().position(|l| l.contains("dev=\"uplink\"")).expect("line");
    let col = fixed.lines().nth(line).expect("line").find("uplink").expect("col");
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": col } }),
        &mut notes,
    );
    assert_eq!(def["uri"], common_uri);
    assert_eq!(def["range"]["start"], json!({ "line": 1, "character": 14 }));

    // `use-rules "web"` -> the rule group in the include.
    let grouped = format!("{fixed}node \"n2\" {{\n    firewall {{\n        use-rules \"web\"\n    }}\n}}\n");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": grouped }] }),
    );
    c.diagnostics_for(&uri, &mut notes);
    let line = grouped.lines().position(|l| l.contains("use-rules")).expect("line");
    let col = grouped.lines().nth(line).expect("line").find("web").expect("col");
    let def = c.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": col } }),
        &mut notes,
    );
    assert_eq!(def["uri"], common_uri);
    assert_eq!(def["range"]["start"], json!({ "line": 3, "character": 7 }));
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    c.diagnostics_for(&uri, &mut notes);

    // References: the declaration and the use of `br0`.
    let line = fixed.lines().position(|l| l.contains("bridge \"br0\"")).expect("line");
    let refs = c.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 13 }, "context": { "includeDeclaration": true } }),
        &mut notes,
    );
    let lines: Vec<u64> = refs
        .as_array()
        .expect("locations")
        .iter()
        .map(|r| r["range"]["start"]["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [2, 4]);

    // A quick fix for a typo, from the diagnostic's "did you mean" help.
    let typo = fixed.replace("bridge \"br0\"", "bridge \"br0\" mut=1500");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": typo }] }),
    );
    let diags = c.diagnostics_for(&uri, &mut notes);
    let unknown = diags.iter().find(|d| d["code"] == "unknown-property").unwrap_or_else(|| panic!("{diags:?}")).clone();
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": unknown["range"], "context": { "diagnostics": [unknown] } }),
        &mut notes,
    );
    assert_eq!(actions[0]["title"], "replace with `mtu`");
    let edit = &actions[0]["edit"]["changes"][uri.as_str()][0];
    assert_eq!(edit["newText"], "mtu");
    assert_eq!(edit["range"]["start"], json!({ "line": 2, "character": 17 }));

    // Hover: what a line compiles to.
    let spec2 = "node \"n1\" {\n    bridge \"br0\" {\n        address \"10.1.0.1/24\"\n    }\n    firewall {\n        allow in proto=\"tcp\" port=22\n    }\n}\n";
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 4 }, "contentChanges": [{ "text": spec2 }] }),
    );
    let hover = |c: &mut Client, notes: &mut Vec<Value>, line: usize, character: usize| {
        let h = c.request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }),
            notes,
        );
        h["contents"]["value"].as_str().unwrap_or_default().to_string()
    };
    let on_address = hover(&mut c, &mut notes, 2, 18);
    assert!(on_address.contains("+ @host: address 10.1.0.1/24 dev br0"), "{on_address}");
    let on_rule = hover(&mut c, &mut notes, 5, 12);
    assert!(
        on_rule.contains("nftables:") && on_rule.contains("@host: meta l4proto tcp th dport 22 accept"),
        "{on_rule}"
    );

    // Completion: node keywords and properties.
    let items = c.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 2, "character": 4 } }),
        &mut notes,
    );
    let labels: Vec<&str> =
        items["items"].as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    for want in ["bridge", "veth", "netns", "firewall", "service", "master", "hairpin", "mtu", "vni"] {
        assert!(labels.contains(&want), "completion lacks `{want}`");
    }

    // Formatting: the same text as `netcfg fmt`.
    let messy = "node   \"n1\"{ bridge  \"br0\"   mtu = 1500 }\n";
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 5 }, "contentChanges": [{ "text": messy }] }),
    );
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
        &mut notes,
    );
    let fmt = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            p.stdin.take().expect("stdin").write_all(messy.as_bytes())?;
            p.wait_with_output()
        })
        .expect("netcfg fmt runs");
    assert_eq!(edits[0]["newText"].as_str(), Some(String::from_utf8_lossy(&fmt.stdout).as_ref()));

    // A fragment open next to the file that includes it is checked through it: a name the
    // fragment uses but the includer declares is fine, and the fragment's own typo shows.
    let fleet_uri = format!("file://{}/fleet.kdl", dir.display());
    let frag_uri = format!("file://{}/frag.kdl", dir.display());
    let fleet = "include \"frag.kdl\"\ntemplate \"w\" {\n    bridge \"cni0\"\n}\n";
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": fleet_uri, "languageId": "kdl", "version": 1, "text": fleet } }),
    );
    let _ = c.diagnostics_for(&fleet_uri, &mut notes);
    let frag = "node \"n1\" {\n    use \"w\"\n    bridge \"kubernetes-pods0\"\n}\n";
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": frag_uri, "languageId": "kdl", "version": 1, "text": frag } }),
    );
    loop {
        let diags = c.diagnostics_for(&frag_uri, &mut notes);
        let codes: Vec<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
        if codes.contains(&"interface-name-too-long") {
            assert_eq!(codes, ["interface-name-too-long"], "no undefined template `w` through the includer");
            break;
        }
    }

    let _ = c.request("shutdown", Value::Null, &mut notes);
    c.notify("exit", Value::Null);
    let status = c.child.wait().expect("the server exits");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
