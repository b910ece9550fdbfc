//! The CLI around the commands: help examples, shell completions, man pages, and the node
//! chosen by host name when `--node` is omitted (in a UTS namespace the test creates).

use netcfg_testkit::is_root;
use std::path::PathBuf;
use std::process::Command;

fn netcfg(args: &[&str]) -> (i32, String, String) {
    netcfg_testkit::netcfg(env!("CARGO_BIN_EXE_netcfg"), args).into()
}

#[test]
fn help_shows_examples() {
    let (code, out, _) = netcfg(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:\n  netcfg check specs/"), "{out}");
    for cmd in ["check", "fmt", "plan", "apply", "verify", "destroy", "graph", "completions"] {
        let (code, out, _) = netcfg(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}");
        assert!(out.contains("Examples:\n  netcfg "), "`netcfg {cmd} --help` has no examples:\n{out}");
    }
}

#[test]
fn completions_know_every_command_and_flag() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = netcfg(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["check", "verify", "exit-zero", "fleet"] {
            assert!(out.contains(word), "{shell} completion lacks `{word}`");
        }
        // Values of --format: the shells whose generators list them.
        if matches!(shell, "bash" | "zsh" | "fish") {
            assert!(out.contains("concise"), "{shell} completion lacks the `concise` format");
        }
    }
    // bash itself accepts the script.
    if Command::new("bash").arg("--version").output().is_ok() {
        let (_, script, _) = netcfg(&["completions", "bash"]);
        let out = Command::new("bash").args(["-n", "-c", &script]).output().expect("bash runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(netcfg(&["completions", "tcsh"]).0, 2);
}

#[test]
fn man_pages_for_the_tool_and_each_command() {
    let (code, page, _) = netcfg(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH netcfg 1") && page.contains("netcfg\\-check(1)"), "{page}");
    let dir = std::env::temp_dir().join(format!("netcfg-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _, err) = netcfg(&["man", "--out-dir", dir.to_str().expect("UTF-8")]);
    assert_eq!(code, 0, "{err}");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into())
        .collect();
    pages.sort();
    let _ = std::fs::remove_dir_all(&dir);
    for want in ["netcfg.1", "netcfg-check.1", "netcfg-plan.1", "netcfg-apply.1", "netcfg-verify.1"] {
        assert!(pages.iter().any(|p| p == want), "{want} missing from {pages:?}");
    }
    assert!(!pages.iter().any(|p| p == "netcfg-man.1"), "the hidden command has no page");
    // man(1) renders it when installed.
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let file = std::env::temp_dir().join(format!("netcfg-{}.1", std::process::id()));
        std::fs::write(&file, &page).expect("write page");
        let out = Command::new("man").arg("-l").arg(&file).env("MANPAGER", "cat").output().expect("man runs");
        let _ = std::fs::remove_file(&file);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Declarative network config"), "man -l failed");
    }
}

/// Two nodes; with `--node` omitted, the node named like the host is planned.
#[test]
fn node_defaults_to_the_host_name() {
    let dir = std::env::temp_dir().join(format!("netcfg-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let spec: PathBuf = dir.join("fleet.kdl");
    std::fs::write(&spec, "node \"alpha\" {\n    bridge \"br-a\"\n}\nnode \"beta\" {\n    bridge \"br-b\"\n}\n")
        .expect("write");
    let spec_str = spec.to_str().expect("UTF-8").to_string();
    // Outside a namespace of our own the host name is whatever the machine's is: not a node.
    let (code, _, err) = netcfg(&["plan", &spec_str]);
    assert_eq!(code, 2);
    assert!(err.contains("none is named like this host") && err.contains("alpha, beta"), "{err}");
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs as root");
        eprintln!("skipping the UTS namespace half: needs root");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let out = Command::new("unshare")
        .args(["--uts", "sh", "-c", "hostname beta && exec \"$0\" plan \"$1\""])
        .arg(env!("CARGO_BIN_EXE_netcfg"))
        .arg(&spec_str)
        .output()
        .expect("unshare runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("br-b") && !stdout.contains("br-a"), "{stdout}");
}
