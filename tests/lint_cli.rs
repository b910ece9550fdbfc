//! `netcfg check` as a linter, from the outside: directories and fragments, each file alone or
//! `--fleet`, `--exit-zero`, suppression comments in every format, SARIF rule metadata and
//! fingerprints, the `github` and `concise` formats, wrapping and colour variables.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One node with a 16-byte bridge name: `interface-name-too-long` on line 2.
const LONG_NAME: &str = "node \"n1\" {\n    bridge \"kubernetes-pods0\"\n}\n";
/// A clean node named `n1`; two files with it are a `duplicate-name` only as one fleet.
const CLEAN_N1: &str = "node \"n1\" {\n    bridge \"br0\"\n}\n";

/// The hairpin incident (spec.md, "Suppressing a finding"): `missing-hairpin` on the backend.
const HAIRPIN: &str = r#"node "lab" {
    forwarding #true
    bridge-netfilter #true
    bridge "cni0" {
        address "10.244.1.1/24"
    }
    netns "pod-b" {
        veth "eth0" {
            address "10.244.1.3/24"
            peer "veth-pod-b" netns="@host" master="cni0"
        }
        route "default" via="10.244.1.1" dev="eth0"
        listen "web" port=8080
    }
    SUPPRESS
    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.3:8080"
    }
}
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("netcfg-lint-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> &TempDir {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write spec");
        self
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[("NO_COLOR", "1")])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netcfg"));
        cmd.args(args).current_dir(&self.0);
        for var in ["NO_COLOR", "COLUMNS", "CLICOLOR", "CLICOLOR_FORCE", "TERM"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("netcfg runs");
        let run = Run {
            code: out.status.code().expect("exits normally"),
            stdout: String::from_utf8(out.stdout).expect("UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8"),
        };
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        run
    }

    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(&[&["check", "--format", "json"], args].concat());
        assert!(matches!(run.code, 0 | 1), "{}", run.stderr);
        serde_json::from_str(&run.stdout).expect("JSON")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn codes(doc: &Value, key: &str) -> Vec<String> {
    doc[key].as_array().expect("array").iter().map(|d| d["code"].as_str().expect("code").to_string()).collect()
}

fn files(doc: &Value) -> Vec<String> {
    doc["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["file"].as_str().expect("file").to_string())
        .collect()
}

#[test]
fn each_file_alone_unless_fleet() {
    let t = TempDir::new();
    t.write("a.kdl", CLEAN_N1).write("b.kdl", CLEAN_N1);
    assert!(codes(&t.json(&["a.kdl", "b.kdl"]), "diagnostics").is_empty());
    assert_eq!(codes(&t.json(&["--fleet", "a.kdl", "b.kdl"]), "diagnostics"), ["duplicate-name"]);
    assert_eq!(codes(&t.json(&["--fleet", "."]), "diagnostics"), ["duplicate-name"]);
}

#[test]
fn directories_are_walked_skipping_fragments_and_hidden_entries() {
    let t = TempDir::new();
    t.write("site/a.kdl", LONG_NAME)
        .write("site/z/b.kdl", LONG_NAME)
        .write("site/part.inc.kdl", LONG_NAME)
        .write("site/common/base.kdl", LONG_NAME)
        .write("site/templates/t.kdl", LONG_NAME)
        .write("site/.hidden/h.kdl", LONG_NAME)
        .write("site/notes.txt", "not a spec");
    let doc = t.json(&["site"]);
    assert_eq!(files(&doc), ["site/a.kdl", "site/z/b.kdl"]);
    // A file named explicitly is checked, fragment or not.
    assert_eq!(files(&t.json(&["site/part.inc.kdl"])), ["site/part.inc.kdl"]);
    t.write("empty/only.inc.kdl", CLEAN_N1);
    let run = t.run(&["check", "empty"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read `empty`: no `*.kdl` spec in this directory"), "{}", run.stderr);
}

#[test]
fn a_named_fragment_is_checked_through_its_includer_only() {
    let t = TempDir::new();
    // Alone, the fragment's reference to `br0` is undefined; through main.kdl it is fine.
    t.write("frag.kdl", "node \"n1\" {\n    route \"10.1.0.0/16\" dev=\"br0\"\n}\n");
    t.write("main.kdl", "include \"frag.kdl\"\nnode \"n1\" {\n    bridge \"br0\"\n}\n");
    let alone = t.json(&["frag.kdl"]);
    assert!(!codes(&alone, "diagnostics").is_empty(), "the fragment alone has findings");
    let both = t.json(&["frag.kdl", "main.kdl"]);
    assert_eq!(both, t.json(&["main.kdl"]));
}

#[test]
fn exit_zero_keeps_findings_but_not_unreadable_files() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME);
    let run = t.run(&["check", "--exit-zero", "a.kdl"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("interface-name-too-long"));
    assert_eq!(t.run(&["check", "--exit-zero", "missing.kdl"]).code, 2);
    assert_eq!(t.run(&["check", "--exit-zero", "--deny-warnings", "a.kdl"]).code, 2, "contradictory flags");
}

#[test]
fn a_suppressed_finding_is_counted_in_human_and_listed_in_json_and_sarif() {
    let t = TempDir::new();
    let reason = "pod-b never connects to its own service";
    t.write("broken.kdl", &HAIRPIN.replace("SUPPRESS", ""));
    t.write("allowed.kdl", &HAIRPIN.replace("SUPPRESS", &format!("// netcfg-allow(missing-hairpin): {reason}")));
    assert_eq!(codes(&t.json(&["broken.kdl"]), "diagnostics"), ["missing-hairpin"]);

    let human = t.run(&["check", "allowed.kdl"]);
    assert_eq!(human.code, 0);
    assert_eq!(human.stdout, "no findings in 1 file (1 suppressed)\n");
    let run = t.run(&["check", "--deny-warnings", "allowed.kdl"]);
    assert_eq!(run.code, 0, "a suppressed warning does not count");

    let doc = t.json(&["allowed.kdl"]);
    assert!(codes(&doc, "diagnostics").is_empty());
    assert_eq!(codes(&doc, "suppressed"), ["missing-hairpin"]);
    assert_eq!(doc["suppressed"][0]["justification"], reason);
    assert_eq!(doc["suppressed"][0]["line"], 17);
    assert_eq!(doc["summary"]["suppressed"], 1);

    let sarif: Value =
        serde_json::from_str(&t.run(&["check", "--format", "sarif", "allowed.kdl"]).stdout).expect("SARIF is JSON");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["ruleId"], "missing-hairpin");
    assert_eq!(results[0]["suppressions"], serde_json::json!([{ "kind": "inSource", "justification": reason }]));
    // Line and human formats leave it out.
    assert_eq!(t.run(&["check", "--format", "concise", "allowed.kdl"]).stdout, "");
    assert_eq!(t.run(&["check", "--format", "github", "allowed.kdl"]).stdout, "");
}

#[test]
fn a_suppressed_error_does_not_block_plan() {
    let t = TempDir::new();
    t.write(
        "a.kdl",
        "node \"n1\" {\n    bridge \"kubernetes-pods0\" // netcfg-allow(interface-name-too-long): lab\n}\n",
    );
    let run = t.run(&["check", "a.kdl"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "no findings in 1 file (1 suppressed)\n"));
    // The backend still refuses the name for nft (the kernel would too): plan reports its own
    // code, which the comment does not name.
    let plan = t.run(&["plan", "a.kdl"]);
    assert!(!plan.stderr.contains("interface-name-too-long"), "{}", plan.stderr);
}

#[test]
fn unused_and_invalid_suppressions_are_reported() {
    let t = TempDir::new();
    t.write("unused.kdl", "node \"n1\" {\n    // netcfg-allow(missing-hairpin): no pods here\n    bridge \"br0\"\n}\n");
    t.write(
        "noreason.kdl",
        "node \"n1\" {\n    bridge \"kubernetes-pods0\" // netcfg-allow(interface-name-too-long)\n}\n",
    );
    t.write("typo.kdl", "node \"n1\" {\n    bridge \"br0\" // netcfg-allow(missing-hairpn): x\n}\n");
    let run = t.run(&["check", "unused.kdl"]);
    assert_eq!(run.code, 0, "a warning");
    assert!(run.stdout.contains("`missing-hairpin` is suppressed here but not reported"), "{}", run.stdout);
    assert_eq!(t.run(&["check", "--deny-warnings", "unused.kdl"]).code, 1);
    let doc = t.json(&["noreason.kdl"]);
    assert_eq!(codes(&doc, "diagnostics"), ["interface-name-too-long", "invalid-suppression"]);
    assert_eq!(doc["diagnostics"][1]["message"], "suppression without a reason");
    let doc = t.json(&["typo.kdl"]);
    assert_eq!(codes(&doc, "diagnostics"), ["invalid-suppression"]);
    assert_eq!(doc["diagnostics"][0]["help"], "did you mean `missing-hairpin`?");
}

#[test]
fn concise_and_github_formats_are_one_line_per_finding() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME);
    let run = t.run(&["check", "--format", "concise", "a.kdl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "a.kdl:2:13: error[interface-name-too-long]: interface name `kubernetes-pods0` is 16 bytes long\n"
    );
    let run = t.run(&["check", "--format", "github", "a.kdl"]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(
            "::error file=a.kdl,line=2,col=13,endLine=2,endColumn=29,title=interface-name-too-long::interface name"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("%0Ahelp: "), "help on a second line: {}", lines[0]);
}

/// `NETCFG_DOCS_URL` says where spec.md is published: rules link to their sections there (and
/// the LSP's `codeDescription`, tested in lsp.rs); a value that is not an absolute URL of a
/// document is refused with a warning and no link is made up.
#[test]
fn sarif_help_links_point_where_netcfg_docs_url_says() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME);
    let url = "https://docs.example.org/netcfg/v0.1.0/spec.md";
    let run = t.run_env(&["check", "--format", "sarif", "a.kdl"], &[("NETCFG_DOCS_URL", url)]);
    let doc: Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
    let driver = &doc["runs"][0]["tool"]["driver"];
    assert_eq!(driver["informationUri"], url);
    let rules = driver["rules"].as_array().expect("rules");
    let hairpin = rules.iter().find(|r| r["id"] == "missing-hairpin").expect("rule");
    assert_eq!(hairpin["helpUri"], format!("{url}#missing-hairpin"));
    assert!(hairpin["help"]["text"].as_str().expect("text").ends_with(&format!("{url}#missing-hairpin")));
    let backend = rules.iter().find(|r| r["id"] == "apply-failed").expect("a backend code");
    assert!(backend["helpUri"].as_str().is_some_and(|u| u.starts_with(&format!("{url}#"))), "{backend}");
    assert!(!run.stderr.contains("NETCFG_DOCS_URL"), "{}", run.stderr);
    for bad in ["spec.md", "https://x.org/spec.md#top", "javascript:alert(1)", "https://"] {
        let run = t.run_env(&["check", "--format", "sarif", "a.kdl"], &[("NETCFG_DOCS_URL", bad)]);
        assert!(run.stderr.contains(&format!("warning: NETCFG_DOCS_URL `{bad}` is not used")), "{bad}: {}", run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
        assert!(doc["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .all(|r| r.get("helpUri").is_none()));
    }
}

#[test]
fn sarif_rules_have_help_and_results_relative_uris_and_fingerprints() {
    let t = TempDir::new();
    t.write("specs/a.kdl", LONG_NAME);
    let sarif = |path: &str| -> Value {
        serde_json::from_str(&t.run(&["check", "--format", "sarif", path]).stdout).expect("SARIF is JSON")
    };
    let doc = sarif("specs/a.kdl");
    let run = &doc["runs"][0];
    for rule in run["tool"]["driver"]["rules"].as_array().expect("rules") {
        let id = rule["id"].as_str().expect("id");
        for field in ["shortDescription", "fullDescription"] {
            assert!(rule[field]["text"].as_str().is_some_and(|t| !t.is_empty()), "{id}: {field}");
        }
        assert!(rule["help"]["text"].as_str().is_some_and(|t| !t.is_empty()), "{id}: help.text");
        assert!(rule["help"]["markdown"].as_str().is_some_and(|t| !t.is_empty()), "{id}: help.markdown");
        // No public home is configured: no link, the section named in the text instead.
        assert!(rule.get("helpUri").is_none(), "{id}: {rule}");
        assert!(rule["help"]["text"].as_str().is_some_and(|t| t.contains(" spec.md#")), "{id}: help.text");
    }
    assert!(run["tool"]["driver"].get("informationUri").is_none());
    let hairpin =
        run["tool"]["driver"]["rules"].as_array().expect("rules").iter().find(|r| r["id"] == "missing-hairpin");
    assert!(hairpin.expect("rule")["help"]["markdown"].as_str().expect("md").contains("```kdl"));
    let cwd = t.0.canonicalize().expect("canonical temp dir");
    assert_eq!(run["originalUriBaseIds"]["%SRCROOT%"]["uri"], format!("file://{}/", cwd.display()));
    let loc = &run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(loc, &serde_json::json!({ "uri": "specs/a.kdl", "uriBaseId": "%SRCROOT%" }));
    // An absolute path below the working directory is relative too.
    let abs = cwd.join("specs/a.kdl");
    let doc_abs = sarif(abs.to_str().expect("UTF-8 path"));
    assert_eq!(&doc_abs["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"], loc);

    // Lines added above keep the fingerprint; an edit of the finding's line changes it.
    let fingerprint = |doc: &Value| doc["runs"][0]["results"][0]["partialFingerprints"]["netcfgFinding/v1"].clone();
    let before = fingerprint(&doc);
    assert!(before.as_str().is_some_and(|f| f.len() > 8), "{before}");
    t.write("specs/a.kdl", &format!("// a new comment\n\n{}", LONG_NAME.replace("    bridge", "  bridge")));
    assert_eq!(fingerprint(&sarif("specs/a.kdl")), before);
    t.write("specs/a.kdl", &LONG_NAME.replace("pods0\"", "pods0\" mtu=1500"));
    assert_ne!(fingerprint(&sarif("specs/a.kdl")), before);
}

/// A help line longer than any terminal: off a terminal it must come out whole.
#[test]
fn human_output_never_breaks_words_off_a_terminal() {
    let t = TempDir::new();
    let long = "x".repeat(120);
    t.write("a.kdl", &format!("node \"n1\" {{\n    bridge \"{long}\"\n}}\n"));
    let run = t.run(&["check", "a.kdl"]);
    assert_eq!(run.code, 1);
    // The source line is never wrapped; the message and the help are what could be.
    let message = format!("× interface name `{long}` is 120 bytes long");
    assert!(run.stdout.lines().any(|l| l.trim_start() == message), "no wrapping off a terminal:\n{}", run.stdout);
    let narrow = t.run_env(&["check", "a.kdl"], &[("NO_COLOR", "1"), ("COLUMNS", "40")]);
    let word = format!("`{long}`");
    assert!(
        narrow.stdout.lines().any(|l| l.trim_start_matches([' ', '│']) == word),
        "COLUMNS wraps between words only:\n{}",
        narrow.stdout
    );
}

#[test]
fn colour_follows_clicolor_force_no_color_and_term() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME);
    let escape = |env: &[(&str, &str)]| t.run_env(&["check", "a.kdl"], env).stdout.contains('\u{1b}');
    assert!(!escape(&[]), "off a terminal: no colour");
    assert!(escape(&[("CLICOLOR_FORCE", "1")]));
    assert!(!escape(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
    assert!(!escape(&[("CLICOLOR_FORCE", "0")]));
}

#[test]
fn paths_as_given_appear_in_findings() {
    let t = TempDir::new();
    t.write("a.kdl", LONG_NAME);
    assert_eq!(files(&t.json(&["./a.kdl"])), ["./a.kdl"]);
    assert!(Path::new(&t.0).exists());
}
