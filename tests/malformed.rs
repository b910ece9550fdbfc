//! A corpus of bad inputs (`tests/malformed/*.kdl`, plus a non-UTF-8 file made here): each must
//! be rejected with exit status 1 and a diagnostic of the expected code that points inside the
//! file, in every output format, without a panic. Every corpus file must be in [`CASES`].

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Corpus file -> the code it must be reported with (other findings may come along).
const CASES: &[(&str, &str)] = &[
    ("truncated.kdl", "syntax"),
    ("unclosed_brace.kdl", "syntax"),
    ("unclosed_string.kdl", "syntax"),
    ("overflowing_number.kdl", "syntax"),
    ("mtu_string.kdl", "invalid-value"),
    ("vni_bool.kdl", "invalid-value"),
    ("address_bad_octet.kdl", "invalid-value"),
    ("address_bad_prefix.kdl", "invalid-value"),
    ("route_host_bits.kdl", "invalid-value"),
    ("bad_mac.kdl", "invalid-value"),
    ("port_zero.kdl", "invalid-value"),
    ("port_too_big.kdl", "invalid-value"),
    ("port_range_reversed.kdl", "invalid-value"),
    ("huge_number.kdl", "invalid-value"),
    ("empty_node_name.kdl", "invalid-value"),
    ("unknown_keyword.kdl", "unknown-node"),
    ("unknown_property.kdl", "unknown-property"),
    ("duplicate_property.kdl", "duplicate-property"),
    ("duplicate_link.kdl", "duplicate-name"),
    ("missing_argument.kdl", "missing-argument"),
    ("missing_property.kdl", "missing-property"),
    ("unexpected_argument.kdl", "unexpected-argument"),
    ("missing_include.kdl", "include-failed"),
    ("include_cycle.kdl", "include-cycle"),
    ("include_outside_root.kdl", "include-refused"),
    ("template_cycle.kdl", "template-cycle"),
    ("undefined_reference.kdl", "undefined-reference"),
    ("master_not_a_bridge.kdl", "invalid-reference"),
    ("conflicting_sysctl.kdl", "conflicting-sysctl"),
    ("netmap_prefix_mismatch.kdl", "invalid-value"),
    ("tproxy_without_mark.kdl", "missing-property"),
    ("vlan_out_of_range.kdl", "invalid-value"),
    ("pvid_not_in_vlans.kdl", "invalid-value"),
    ("vlans_without_filtering.kdl", "invalid-value"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn netcfg(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .expect("netcfg runs");
    let code = out.status.code().expect("netcfg exits normally, not by a signal");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!stdout.contains("panicked") && !stderr.contains("panicked"), "netcfg {args:?} panicked:\n{stderr}");
    (code, stdout, stderr)
}

/// Checks one bad file; returns a description of what is wrong, if anything.
fn check_case(path: &str, expected: &str) -> Result<(), String> {
    let (code, stdout, stderr) = netcfg(&["check", "--format", "json", path]);
    if code != 1 {
        return Err(format!("exit status {code}, expected 1\n{stdout}{stderr}"));
    }
    let doc: Value = serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}):\n{stdout}"))?;
    let diags = doc["diagnostics"].as_array().ok_or("no diagnostics array")?;
    if diags.is_empty() {
        return Err("no diagnostic".into());
    }
    if !diags.iter().any(|d| d["code"] == expected) {
        let codes: Vec<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
        return Err(format!("expected `{expected}`, found {codes:?}"));
    }
    for d in diags {
        let mut places = vec![d];
        places.extend(d["related"].as_array().into_iter().flatten());
        for p in places {
            inside_file(p).map_err(|e| format!("{e} in {p}"))?;
        }
    }
    // The other formats render the same findings without trouble.
    for format in ["human", "sarif"] {
        let (c, out, _) = netcfg(&["check", "--format", format, path]);
        if c != 1 || !out.contains(expected) {
            return Err(format!("--format {format}: exit status {c}, output:\n{out}"));
        }
    }
    Ok(())
}

/// A location's line and column (start and end) lie inside the file it names.
fn inside_file(p: &Value) -> Result<(), String> {
    let file = p["file"].as_str().ok_or("no file")?;
    let bytes = std::fs::read(root().join(file)).map_err(|e| format!("`{file}`: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    for (l, c) in [("line", "column"), ("end_line", "end_column")] {
        let (line, column) = (p[l].as_u64().ok_or("no line")? as usize, p[c].as_u64().ok_or("no column")? as usize);
        let Some(text_line) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
            return Err(format!("{l} {line} is outside `{file}` ({} lines)", lines.len()));
        };
        if column == 0 || column > text_line.chars().count() + 1 {
            return Err(format!("{c} {column} is outside line {line} of `{file}`"));
        }
    }
    let end = p["byte_end"].as_u64().ok_or("no byte_end")? as usize;
    if end > bytes.len() || p["byte_start"].as_u64().ok_or("no byte_start")? as usize > end {
        return Err(format!("byte range outside `{file}`"));
    }
    Ok(())
}

#[test]
fn every_malformed_input_is_rejected_with_its_code() {
    let mut failures = Vec::new();
    for (file, code) in CASES {
        if let Err(e) = check_case(&format!("tests/malformed/{file}"), code) {
            failures.push(format!("{file}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn the_table_lists_every_corpus_file() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("tests/malformed"))
        .expect("corpus directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".kdl"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "add new corpus files to CASES (and remove deleted ones)");
    assert!(CASES.len() >= 15);
}

#[test]
fn non_utf8_input_is_rejected_at_the_bad_byte() {
    let dir: PathBuf = std::env::temp_dir().join(format!("netcfg-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.kdl");
    std::fs::write(&path, b"node \"caf\xe9\" {\n    bridge \"br0\"\n}\n").unwrap();
    let path_str = path.to_str().expect("temp paths are UTF-8 here");
    let result = check_case(path_str, "invalid-utf8");
    let (_, json, _) = netcfg(&["check", "--format", "json", path_str]);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64(), d["byte_start"].as_u64()), (Some(1), Some(10), Some(9)));
}
