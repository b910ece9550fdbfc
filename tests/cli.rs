//! The `netcfg` binary from the outside: exit statuses, output formats, stdin, several files,
//! and `fmt`. Specs are small inline texts written to a fresh temporary directory per test.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A spec with one error: `kubernetes-pods0` is 16 bytes, the kernel allows 15.
const LONG_NAME: &str = "node \"n1\" {\n    bridge \"kubernetes-pods0\"\n}\n";
/// A spec with no findings.
const CLEAN: &str = "node \"n1\" {\n    bridge \"br0\" {\n        address \"10.0.0.1/24\"\n    }\n}\n";
/// A spec whose only finding is a warning (overlapping elements in one address set).
const WARNING_ONLY: &str =
    "node \"n1\" {\n    firewall {\n        set \"admins\" \"10.0.0.0/8\" \"10.1.0.0/16\"\n    }\n}\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn netcfg(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netcfg runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("stdin takes the spec");
    drop(input);
    let out = child.wait_with_output().expect("netcfg finishes");
    let run = Run {
        code: out.status.code().expect("netcfg exits normally, not by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    };
    assert!(!run.stdout.contains("panicked") && !run.stderr.contains("panicked"), "netcfg panicked:\n{}", run.stderr);
    run
}

/// A fresh directory, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("netcfg-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> &TempDir {
        std::fs::write(self.0.join(name), text).expect("write spec");
        self
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).expect("read spec")
    }

    fn check(&self, args: &[&str]) -> Run {
        netcfg(&self.0, &[&["check"], args].concat(), None)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

fn codes(doc: &Value) -> Vec<String> {
    doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn clean_spec_exits_0() {
    let t = TempDir::new();
    t.write("clean.kdl", CLEAN);
    let run = t.check(&["clean.kdl"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout, "no findings in 1 file\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn findings_exit_1_with_a_rendered_snippet_and_summary() {
    let t = TempDir::new();
    t.write("long.kdl", LONG_NAME);
    let run = t.check(&["long.kdl"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("interface-name-too-long\n"), "{}", run.stdout);
    assert!(run.stdout.contains("× interface name `kubernetes-pods0` is 16 bytes long"), "{}", run.stdout);
    assert!(run.stdout.contains("[long.kdl:2:13]"), "{}", run.stdout);
    assert!(run.stdout.contains("help: shorten it to 15 bytes or fewer"), "{}", run.stdout);
    assert!(run.stdout.ends_with("\n1 error in 1 file\n"), "{}", run.stdout);
}

#[test]
fn syntax_errors_exit_1() {
    let t = TempDir::new();
    t.write("broken.kdl", "node \"n1\" {\n    bridge \"br0\"\n");
    let run = t.check(&["--format", "json", "broken.kdl"]);
    assert_eq!(run.code, 1);
    assert!(codes(&json(&run)).contains(&"syntax".to_string()));
}

#[test]
fn unreadable_files_and_bad_usage_exit_2() {
    let t = TempDir::new();
    t.write("clean.kdl", CLEAN);
    let missing = t.check(&["clean.kdl", "missing.kdl"]);
    assert_eq!(missing.code, 2);
    assert_eq!(missing.stdout, "", "no verdict on a partial fleet");
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    assert!(missing.stderr.starts_with("error: cannot read `missing.kdl`: "), "{}", missing.stderr);

    std::fs::create_dir(t.0.join("dir.kdl")).unwrap();
    let dir = t.check(&["dir.kdl"]);
    assert_eq!((dir.code, dir.stderr.lines().count()), (2, 1), "{}", dir.stderr);

    assert_eq!(t.check(&["--no-such-flag", "clean.kdl"]).code, 2);
    assert_eq!(t.check(&["--format", "xml", "clean.kdl"]).code, 2);
    assert_eq!(t.check(&[]).code, 2, "FILE is required");
    assert_eq!(netcfg(&t.0, &["frobnicate"], None).code, 2);
    assert_eq!(t.check(&["-", "-"]).code, 2, "stdin can be read once");
}

#[test]
fn deny_warnings_turns_warnings_into_exit_1() {
    let t = TempDir::new();
    t.write("warn.kdl", WARNING_ONLY);
    let run = t.check(&["--format", "json", "warn.kdl"]);
    let doc = json(&run);
    assert_eq!((doc["summary"]["errors"].as_u64(), doc["summary"]["warnings"].as_u64()), (Some(0), Some(1)));
    assert_eq!(run.code, 0);
    assert_eq!(t.check(&["--deny-warnings", "warn.kdl"]).code, 1);
    assert_eq!(t.check(&["--deny-warnings", "warn.kdl"]).stdout.lines().last(), Some("1 warning in 1 file"));
}

#[test]
fn json_has_the_documented_fields() {
    let t = TempDir::new();
    t.write("long.kdl", LONG_NAME);
    let run = t.check(&["--format", "json", "long.kdl"]);
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["summary"], serde_json::json!({ "errors": 1, "warnings": 0, "files": 1, "suppressed": 0 }));
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "interface-name-too-long");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["message"], "interface name `kubernetes-pods0` is 16 bytes long");
    assert_eq!(d["file"], "long.kdl");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(2), Some(13)));
    assert_eq!((d["end_line"].as_u64(), d["end_column"].as_u64()), (Some(2), Some(29)));
    let start = LONG_NAME.find("kubernetes-pods0").unwrap() as u64;
    assert_eq!((d["byte_start"].as_u64(), d["byte_end"].as_u64()), (Some(start), Some(start + 16)));
    assert_eq!(d["label"], "the kernel allows at most 15 bytes");
    assert!(d["help"].as_str().unwrap().starts_with("shorten it"));
    assert_eq!(d["related"], serde_json::json!([]));
}

#[test]
fn json_related_points_into_the_other_file() {
    let t = TempDir::new();
    t.write("a.kdl", "node \"n1\" {}\n").write("b.kdl", "\nnode \"n1\" {}\n");
    let doc = json(&t.check(&["--fleet", "--format", "json", "a.kdl", "b.kdl"]));
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str(), d["line"].as_u64()),
        (Some("duplicate-name"), Some("b.kdl"), Some(2))
    );
    let r = &d["related"][0];
    assert_eq!(
        (r["message"].as_str(), r["file"].as_str(), r["line"].as_u64(), r["column"].as_u64()),
        (Some("first declared here"), Some("a.kdl"), Some(1), Some(7))
    );
}

#[test]
fn sarif_is_2_1_0_with_rules_and_regions() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME).write("b.kdl", "node \"n1\" {}\n");
    let run = t.check(&["--fleet", "--format", "sarif", "a.kdl", "b.kdl"]);
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["version"], "2.1.0");
    assert!(doc["$schema"].as_str().unwrap().contains("sarif-schema-2.1.0"));
    let run0 = &doc["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "netcfg");
    assert_eq!(run0["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
    let rules: Vec<&str> =
        run0["tool"]["driver"]["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    for (_, code) in netcfg_backends::codes::registry() {
        assert!(rules.contains(&code.id), "rule for {code}");
    }
    let results = run0["results"].as_array().unwrap();
    let long = results.iter().find(|r| r["ruleId"] == "interface-name-too-long").expect("a result per finding");
    assert_eq!(long["level"], "error");
    assert_eq!(rules[long["ruleIndex"].as_u64().unwrap() as usize], "interface-name-too-long");
    assert!(long["message"]["text"].as_str().unwrap().starts_with("interface name `kubernetes-pods0`"));
    let loc = &long["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"], serde_json::json!({ "uri": "a.kdl", "uriBaseId": "%SRCROOT%" }));
    assert_eq!(
        loc["region"],
        serde_json::json!({
            "startLine": 2, "startColumn": 13, "endLine": 2, "endColumn": 29, "byteOffset": 24, "byteLength": 16
        })
    );
    let dup = results.iter().find(|r| r["ruleId"] == "duplicate-name").expect("duplicate node across files");
    let related = &dup["relatedLocations"][0];
    assert_eq!(related["physicalLocation"]["artifactLocation"]["uri"], "a.kdl");
    assert_eq!(related["message"]["text"], "first declared here");
}

#[test]
fn stdin_is_read_for_dash_and_named_stdin() {
    let t = TempDir::new();
    let run = netcfg(&t.0, &["check", "--format", "json", "-"], Some(LONG_NAME));
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["diagnostics"][0]["file"], "<stdin>");
    let clean = netcfg(&t.0, &["check", "-"], Some(CLEAN));
    assert_eq!((clean.code, clean.stdout.as_str()), (0, "no findings in 1 file\n"));
}

#[test]
fn no_color_output_has_no_escape_codes() {
    let t = TempDir::new();
    t.write("long.kdl", LONG_NAME);
    let run = t.check(&["long.kdl"]);
    assert_eq!(run.code, 1);
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
}

#[test]
fn several_files_are_one_fleet_and_all_are_reported() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME)
        .write("b.kdl", "node \"n2\" {\n    brigde \"br0\"\n}\n")
        .write("c.kdl", CLEAN.replace("n1", "n3").as_str());
    let run = t.check(&["--fleet", "--format", "json", "a.kdl", "b.kdl", "c.kdl"]);
    assert_eq!(run.code, 1);
    let doc = json(&run);
    let files: Vec<&str> = doc["diagnostics"].as_array().unwrap().iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["a.kdl", "b.kdl"]);
    assert_eq!(codes(&doc), ["interface-name-too-long", "unknown-node"]);
    assert_eq!(doc["summary"]["files"], 3);
    let human = t.check(&["--fleet", "a.kdl", "b.kdl", "c.kdl"]);
    assert!(human.stdout.contains("[a.kdl:2:13]") && human.stdout.contains("[b.kdl:2:5]"), "{}", human.stdout);
    assert!(human.stdout.ends_with("\n2 errors in 3 files\n"), "{}", human.stdout);
}

const UNFORMATTED: &str = "// fleet of one\nnode   \"n1\"{ bridge  \"br0\"   mtu = 1500 ;  // the pod bridge\n  /* uplink */ ethernet \"eth0\" {\n address \"10.0.0.2/24\" }\n\n\n\n    route \"default\" via=\"10.0.0.1\" dev=\"eth0\"\n}\n";
const FORMATTED: &str = "// fleet of one\nnode \"n1\" {\n    bridge \"br0\" mtu=1500 // the pod bridge\n    /* uplink */ ethernet \"eth0\" {\n        address \"10.0.0.2/24\"\n    }\n\n    route \"default\" via=\"10.0.0.1\" dev=\"eth0\"\n}\n";

#[test]
fn fmt_check_exits_1_on_unformatted_files_and_writes_nothing() {
    let t = TempDir::new();
    t.write("messy.kdl", UNFORMATTED).write("tidy.kdl", FORMATTED);
    let run = netcfg(&t.0, &["fmt", "--check", "messy.kdl", "tidy.kdl"], None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "would reformat: messy.kdl\n");
    assert_eq!(t.read("messy.kdl"), UNFORMATTED);
    assert_eq!(netcfg(&t.0, &["fmt", "--check", "tidy.kdl"], None).code, 0);
}

#[test]
fn fmt_rewrites_in_place_keeps_comments_and_is_idempotent() {
    let t = TempDir::new();
    t.write("messy.kdl", UNFORMATTED);
    let run = netcfg(&t.0, &["fmt", "messy.kdl"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let once = t.read("messy.kdl");
    assert_eq!(once, FORMATTED);
    for comment in ["// fleet of one", "// the pod bridge", "/* uplink */"] {
        assert!(once.contains(comment), "lost {comment}");
    }
    assert_eq!(netcfg(&t.0, &["fmt", "messy.kdl"], None).code, 0);
    assert_eq!(t.read("messy.kdl"), once, "formatting formatted text changes nothing");
    assert_eq!(netcfg(&t.0, &["fmt", "--check", "messy.kdl"], None).code, 0);
    // Same meaning: both check the same.
    t.write("orig.kdl", UNFORMATTED);
    let before = json(&t.check(&["--format", "json", "orig.kdl"]));
    let after = json(&t.check(&["--format", "json", "messy.kdl"]));
    assert_eq!(before["summary"], after["summary"]);
}

#[test]
fn fmt_leaves_files_with_syntax_errors_alone() {
    let t = TempDir::new();
    let broken = "node   \"n1\" {\n    bridge \"br0\n";
    t.write("broken.kdl", broken);
    let run = netcfg(&t.0, &["fmt", "broken.kdl"], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("syntax") && run.stderr.contains("left unchanged"), "{}", run.stderr);
    assert_eq!(t.read("broken.kdl"), broken);
    assert_eq!(netcfg(&t.0, &["fmt", "nope.kdl"], None).code, 2);
}

#[test]
fn fmt_dash_formats_stdin_to_stdout() {
    let t = TempDir::new();
    let run = netcfg(&t.0, &["fmt", "-"], Some(UNFORMATTED));
    assert_eq!((run.code, run.stdout.as_str()), (0, FORMATTED));
    let check = netcfg(&t.0, &["fmt", "--check", "-"], Some(UNFORMATTED));
    assert_eq!((check.code, check.stdout.as_str()), (1, "would reformat: <stdin>\n"));
}

/// Peak resident memory (KiB) of the largest child process this test binary has waited for.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss
}

#[test]
fn deep_nesting_is_one_diagnostic_in_check_plan_and_fmt() {
    let t = TempDir::new();
    let depth = 5000;
    let deep = format!("node \"n1\" {{\n{}{}}}\n", "bridge \"b\" {\n".repeat(depth), "}\n".repeat(depth));
    t.write("deep.kdl", &deep);
    let run = t.check(&["--format", "json", "deep.kdl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = json(&run);
    let syntax: Vec<&Value> = doc["diagnostics"].as_array().unwrap().iter().filter(|d| d["code"] == "syntax").collect();
    assert_eq!(syntax.len(), 1, "{}", run.stdout);
    assert!(syntax[0]["message"].as_str().unwrap().contains("deeper than 128"));
    let plan = netcfg(&t.0, &["plan", "deep.kdl"], None);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    let fmt = netcfg(&t.0, &["fmt", "deep.kdl"], None);
    assert_eq!(fmt.code, 1, "{}", fmt.stderr);
    assert!(fmt.stderr.contains("left unchanged"), "{}", fmt.stderr);
    assert_eq!(t.read("deep.kdl"), deep);
}

#[test]
fn a_ten_megabyte_name_is_read_in_bounded_memory() {
    let t = TempDir::new();
    let size = 10 << 20;
    t.write("huge.kdl", &format!("node {} {{\n    bridge \"br0\" mtu=\"x\"\n}}\n", "x".repeat(size)));
    let run = t.check(&["--format", "json", "huge.kdl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = json(&run);
    // The name is read whole (and is too long for a node name); the body is still read.
    assert_eq!(codes(&doc), ["invalid-value", "invalid-value"], "{}", run.stdout);
    assert!(doc["diagnostics"][0]["message"].as_str().unwrap().contains("at most 64 bytes"));
    assert_eq!(doc["diagnostics"][0]["byte_end"], size + 5);
    assert_eq!(doc["diagnostics"][1]["line"], 2);
    // The kdl crate needed 1.8 GB here; a linear parser holds a few copies of the input at most.
    let peak = children_peak_rss_kib();
    assert!(peak < 200 * 1024, "peak RSS of netcfg children {peak} KiB");
}

/// "did you mean" on a 10 MB unknown name (a node keyword) and a 5 MB property key: one finding
/// each, no suggestion (no keyword is that long), and no distance table of 10M x keyword-length
/// cells (the old edit distance allocated 1.6 GB here).
#[test]
fn a_ten_megabyte_unknown_name_gets_no_suggestion_in_bounded_memory() {
    let t = TempDir::new();
    // 10 MB + 5 MB: under the 16 MiB file cap.
    let (name, key) = ("b".repeat(10 << 20), "m".repeat(5 << 20));
    t.write("name.kdl", &format!("node \"n1\" {{\n    {name} \"x\"\n    bridge \"br0\" {key}=1\n}}\n"));
    let run = t.check(&["--format", "json", "name.kdl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = json(&run);
    assert_eq!(codes(&doc), ["unknown-node", "unknown-property"], "{}", &run.stdout[..run.stdout.len().min(2000)]);
    for d in doc["diagnostics"].as_array().unwrap() {
        let help = d["help"].as_str().unwrap_or("");
        assert!(!help.contains("did you mean"), "no suggestion for a 10 MB name: {help:.200}");
    }
    let peak = children_peak_rss_kib();
    assert!(peak < 200 * 1024, "peak RSS of netcfg children {peak} KiB");
}

#[test]
fn every_syntax_error_is_reported_and_the_valid_nodes_are_still_checked() {
    let t = TempDir::new();
    let mut spec = String::from("node \"n1\" {\n");
    for i in 0..40 {
        // A syntax error, then a node with a semantic error on the next line.
        spec.push_str(&format!("    bridge \"a{i}\" mtu=15x{i}\n"));
        spec.push_str(&format!("    bridge \"kubernetes-pods{i:02}\"\n"));
    }
    spec.push_str("    route \"default\" dev=\"a0\" {\n}\n");
    t.write("many.kdl", &spec);
    let run = t.check(&["--format", "json", "many.kdl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = json(&run);
    let diags = doc["diagnostics"].as_array().unwrap();
    let at = |code: &str| -> Vec<u64> {
        diags.iter().filter(|d| d["code"] == code).map(|d| d["line"].as_u64().unwrap()).collect()
    };
    let odd: Vec<u64> = (0..40).map(|i| 2 + 2 * i).collect();
    let even: Vec<u64> = (0..40).map(|i| 3 + 2 * i).collect();
    // The unclosed `{` of `node` (line 1) and the forty bad numbers.
    assert_eq!(at("syntax"), [vec![1], odd].concat(), "{}", run.stdout);
    assert_eq!(at("interface-name-too-long"), even, "{}", run.stdout);
}
