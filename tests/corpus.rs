//! The corpus: realistic correct specs (`tests/corpus/correct/`) must compile without a single
//! finding, and single-mistake copies of them (`tests/corpus/mistakes/`) must each produce
//! exactly one finding, with the code written on their first line (`// expect: CODE`) and a
//! help line. A false alarm or a follow-on finding fails here.

use netcfg_lang::Diagnostic;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    out.sort();
    out
}

/// Every finding for one file: parse diagnostics and the compiler's.
fn findings(path: &Path) -> (String, Vec<Diagnostic>) {
    let src = std::fs::read_to_string(path).expect("read");
    let name = path.file_name().expect("name").to_string_lossy().into_owned();
    let parsed = netcfg_lang::parse_str(&name, &src);
    let mut diags = parsed.diagnostics.clone();
    diags.extend(netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics).diagnostics);
    (src, diags)
}

fn describe(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("  {} {}: {}\n", d.severity.as_str(), d.code, d.message)).collect()
}

#[test]
fn correct_specs_have_no_findings() {
    let files = files("correct");
    assert!(files.len() >= 7, "the correct corpus shrank to {}", files.len());
    let mut false_alarms = String::new();
    for path in &files {
        let (_, diags) = findings(path);
        if !diags.is_empty() {
            false_alarms.push_str(&format!("{}:\n{}", path.display(), describe(&diags)));
        }
    }
    eprintln!("corpus: {} correct specs", files.len());
    assert!(false_alarms.is_empty(), "false alarms on correct specs:\n{false_alarms}");
}

#[test]
fn each_mistake_gives_exactly_its_one_finding() {
    let files = files("mistakes");
    assert!(files.len() >= 20, "the mistakes corpus shrank to {}", files.len());
    let correct: Vec<String> =
        self::files("correct").iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let mut failures = String::new();
    let mut total = 0;
    for path in &files {
        let (src, diags) = findings(path);
        total += diags.len();
        let expected = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `// expect: CODE`", path.display()))
            .trim();
        // Each mistake is a copy of a correct spec: `<correct stem>__<what>.kdl`.
        let stem = path.file_stem().unwrap().to_string_lossy();
        let base = stem.split("__").next().unwrap_or("");
        assert!(correct.iter().any(|c| c == base), "{}: no correct/{base}.kdl", path.display());
        let ok = diags.len() == 1 && diags[0].code == expected && diags[0].help.is_some();
        if !ok {
            failures.push_str(&format!(
                "{} (expected one `{expected}` with a help line):\n{}",
                path.display(),
                describe(&diags)
            ));
        }
    }
    eprintln!("corpus: {} mistakes, {total} findings", files.len());
    assert!(failures.is_empty(), "{failures}");
}
