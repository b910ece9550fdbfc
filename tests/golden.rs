//! Golden files: what `netcfg check` prints for every example spec, reviewed as diffs.
//!
//! Entry points are every `examples/**/*.kdl` except fragments meant to be included: files
//! whose name ends in `.inc.kdl`, and files below a directory named `common` or `templates`.
//! Fragments are checked through the files that include them.
//!
//! For `examples/<dir>/<name>.kdl` the goldens are `tests/golden/<dir>__<name>.txt` (human
//! output, no colour, 100 columns) and `tests/golden/<dir>__<name>.json` (`--format json`).
//! The binary runs from the workspace root with the relative path, so paths in goldens are
//! relative. `UPDATE_GOLDEN=1 cargo test --test golden` writes missing or changed goldens and
//! deletes those whose example is gone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn is_fragment(rel: &str) -> bool {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let name = parts.pop().unwrap_or("");
    name.ends_with(".inc.kdl") || parts.iter().any(|p| matches!(*p, "common" | "templates"))
}

/// `examples/incident-000/broken.kdl` -> `incident-000__broken`.
fn golden_stem(rel: &str) -> String {
    let below = rel.strip_prefix("examples/").unwrap_or(rel);
    below.strip_suffix(".kdl").unwrap_or(below).replace('/', "__")
}

/// Entry-point examples as `/`-separated paths relative to the workspace root, sorted.
fn entry_points() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let e = e.expect("directory entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}/{name}");
            if e.file_type().expect("file type").is_dir() {
                walk(&e.path(), &rel, out);
            } else if name.ends_with(".kdl") && !is_fragment(&rel) {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("examples"), "examples", &mut out);
    out.sort();
    out
}

fn check(rel: &str, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["check", "--format", format, rel])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .expect("netcfg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "netcfg check {rel} failed to run:\n{stderr}");
    assert!(stderr.is_empty(), "netcfg check {rel} wrote to stderr:\n{stderr}");
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

/// `netcfg plan` of every node of an example (text), or `None` when the example has errors.
/// The per-namespace nft scripts land in `out`.
fn plan(rel: &str, out: &Path) -> Option<String> {
    let result = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["plan", rel, "--out"])
        .arg(out)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("netcfg runs");
    match result.status.code() {
        Some(0) => Some(String::from_utf8(result.stdout).expect("output is UTF-8")),
        Some(1) => None,
        _ => panic!("netcfg plan {rel} failed to run:\n{}", String::from_utf8_lossy(&result.stderr)),
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netcfg-golden-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The first line where two texts differ, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            let show = |l: Option<&&str>| l.map_or("<end>".to_string(), |l| l.to_string());
            return format!("line {}:\n  golden: {}\n  actual: {}", i + 1, show(x), show(y));
        }
    }
    "the line endings".into()
}

#[test]
fn examples_match_their_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let golden_dir = root().join("tests/golden");
    let mut failures = Vec::new();
    let mut expected_files: Vec<PathBuf> = Vec::new();
    let out_dir = scratch_dir("plan");
    // The examples' key files (WireGuard): what they hold must never reach an output.
    let mut secrets = Vec::new();
    for dir in std::fs::read_dir(root().join("examples")).expect("examples").flatten() {
        for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|e| e == "key") {
                secrets.push(std::fs::read_to_string(f.path()).expect("key file").trim().to_string());
            }
        }
    }
    assert!(!secrets.is_empty(), "examples/hosts/wireguard.kdl has a key file");
    for rel in entry_points() {
        let stem = golden_stem(&rel);
        for (format, ext) in [("human", "txt"), ("json", "json"), ("plan", "plan.txt")] {
            let actual = if format == "plan" {
                // Only examples without errors have a plan.
                match plan(&rel, &out_dir.join(&stem)) {
                    Some(p) => p,
                    None => continue,
                }
            } else {
                check(&rel, format)
            };
            if secrets.iter().any(|s| actual.contains(s.as_str())) {
                failures.push(format!("{rel} ({format}): output contains a key"));
            }
            let abs = root().display().to_string();
            if actual.contains(&abs) {
                failures.push(format!("{rel} ({format}): output contains the absolute path `{abs}`"));
            }
            let path = golden_dir.join(format!("{stem}.{ext}"));
            expected_files.push(path.clone());
            match std::fs::read_to_string(&path) {
                Ok(golden) if golden == actual => {}
                _ if update => {
                    std::fs::create_dir_all(&golden_dir).expect("create tests/golden");
                    std::fs::write(&path, &actual).expect("write golden");
                }
                Ok(golden) => failures.push(format!(
                    "{rel} ({format}) differs from tests/golden/{stem}.{ext} at {}",
                    first_difference(&golden, &actual)
                )),
                Err(_) => failures.push(format!(
                    "{rel} ({format}): no golden tests/golden/{stem}.{ext}; \
                     create it with `UPDATE_GOLDEN=1 cargo test --test golden` and review it"
                )),
            }
        }
    }
    for e in std::fs::read_dir(&golden_dir).into_iter().flatten() {
        let path = e.expect("directory entry").path();
        if !expected_files.contains(&path) {
            if update {
                std::fs::remove_file(&path).expect("remove stale golden");
            } else {
                failures.push(format!(
                    "{} belongs to no example; delete it (UPDATE_GOLDEN=1 does)",
                    path.strip_prefix(root()).unwrap_or(&path).display()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(failures.is_empty(), "{}\n(UPDATE_GOLDEN=1 rewrites goldens; review the diff)", failures.join("\n"));
}

/// Every nftables transaction the examples compile to is accepted by the real `nft -c`
/// (in a throwaway namespace, so no real ruleset is touched).
#[test]
fn example_rulesets_are_accepted_by_nft() {
    let root_user = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let nft = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(root_user && nft) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run this test as root with nft installed");
        eprintln!("skipping example_rulesets_are_accepted_by_nft: needs root and nft");
        return;
    }
    let out_dir = scratch_dir("nft");
    let mut scripts = 0;
    for rel in entry_points() {
        let dir = out_dir.join(golden_stem(&rel));
        if plan(&rel, &dir).is_none() {
            continue;
        }
        for node in std::fs::read_dir(&dir).expect("plan wrote its artifacts") {
            for file in std::fs::read_dir(node.expect("entry").path()).expect("node dir") {
                let path = file.expect("entry").path();
                if path.extension().is_some_and(|e| e == "nft") {
                    let out = Command::new("unshare")
                        .args(["--net", "nft", "-c", "-f"])
                        .arg(&path)
                        .output()
                        .expect("unshare");
                    assert!(
                        out.status.success(),
                        "{rel}: nft -c rejected {}:\n{}",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    scripts += 1;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(scripts >= 10, "expected the examples to produce rulesets, found {scripts}");
}

#[test]
fn fragments_and_golden_names() {
    assert!(is_fragment("examples/k8s/common/templates.kdl"));
    assert!(is_fragment("examples/templates/worker.kdl"));
    assert!(is_fragment("examples/k8s/base.inc.kdl"));
    assert!(!is_fragment("examples/k8s/fleet.kdl"));
    assert!(!is_fragment("examples/common-sense.kdl"));
    assert_eq!(golden_stem("examples/incident-000/broken.kdl"), "incident-000__broken");
    assert_eq!(golden_stem("examples/fargate.kdl"), "fargate");
    assert!(first_difference("a\nb\n", "a\nc\n").contains("line 2"));
}

/// Lint mode: checking the whole `examples/` directory, or every file by a shell glob (which
/// also names the fragment `fleet/worker.inc.kdl`), prints exactly what checking each entry
/// point alone prints (its golden), entry point after entry point, a finding reported twice
/// through a shared include kept once.
#[test]
fn checking_a_directory_is_checking_each_entry_point_alone() {
    let mut expected: Vec<serde_json::Value> = Vec::new();
    let mut files = 0;
    for rel in entry_points() {
        let golden = std::fs::read_to_string(root().join(format!("tests/golden/{}.json", golden_stem(&rel))))
            .expect("every entry point has a JSON golden");
        let doc: serde_json::Value = serde_json::from_str(&golden).expect("golden is JSON");
        for d in doc["diagnostics"].as_array().expect("diagnostics") {
            if !expected.contains(d) {
                expected.push(d.clone());
            }
        }
        files += 1;
    }
    assert!(files >= 10 && expected.len() >= 5, "the examples have findings to compare");
    let mut globbed: Vec<String> = Vec::new();
    for dir in std::fs::read_dir(root().join("examples")).expect("examples").map(|e| e.expect("entry").path()) {
        for f in std::fs::read_dir(&dir).into_iter().flatten().map(|e| e.expect("entry").path()) {
            if f.extension().is_some_and(|e| e == "kdl") {
                globbed.push(f.strip_prefix(root()).expect("below root").display().to_string());
            }
        }
    }
    globbed.sort();
    assert!(globbed.iter().any(|f| f.ends_with(".inc.kdl")), "the glob names a fragment");
    for args in [vec!["examples".to_string()], globbed] {
        let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .args(["check", "--format", "json"])
            .args(&args)
            .current_dir(root())
            .output()
            .expect("netcfg runs");
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let got = doc["diagnostics"].as_array().expect("diagnostics");
        let codes = |v: &[serde_json::Value]| v.iter().map(|d| d["code"].to_string()).collect::<Vec<_>>();
        assert!(!codes(got).contains(&"\"duplicate-name\"".to_string()), "files are not one fleet");
        assert_eq!(got, &expected, "check {:?}:\n got {:?}\nwant {:?}", args, codes(got), codes(&expected));
    }
}
