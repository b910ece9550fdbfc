//! Incidents 004 and 002 driven through the `netcfg` binary, as `examples/README.md` shows
//! them: `apply` refuses a spec with check errors unless forced, and `verify` is the runtime
//! validator the Linkerd incident asked for (exit 0 in sync, 1 with the drift named, back to 0
//! after `apply`), with real TCP traffic through the pod's redirect. The library-level versions
//! of all four incidents are `backends/tests/incidents.rs`.

use netcfg_testkit::{connect_in, require_root, serve_in, sh, Conn, NodeRoot};
use std::path::Path;
use std::process::{Command, Output};

fn example(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(rel).display().to_string()
}

fn netcfg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netcfg")).args(args).env("NO_COLOR", "1").output().expect("run netcfg")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// What the CLI keeps for a node under `/run/netcfg` (namespace markers, the node lock),
/// removed on drop. `NodeRoot` removes the namespaces themselves.
struct CliState(String);

impl Drop for CliState {
    fn drop(&mut self) {
        if let Ok(dir) = std::fs::read_dir("/run/netcfg/netns") {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&format!("{}-", self.0)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(format!("/run/netcfg/{}.lock", self.0));
    }
}

#[test]
fn apply_refuses_the_broken_hairpin_spec_unless_forced() {
    if !require_root("apply_refuses_the_broken_hairpin_spec_unless_forced") {
        return;
    }
    let node = NodeRoot::new("cli-k8s");
    let _state = CliState(node.root.name.clone());
    let spec = example("k8s-service-hairpin/broken.kdl");
    let out = netcfg(&["apply", &spec, "--netns-root", &node.root.name]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("missing-bridge-netfilter") && stderr.contains("nothing was done"), "{stderr}");
    assert!(stdout.is_empty(), "no plan is printed: {stdout}");
    assert!(node.dump("pod-a", &[]).is_none(), "nothing was created");

    let out = netcfg(&["apply", &spec, "--netns-root", &node.root.name, "--allow-findings"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("missing-bridge-netfilter"), "the findings are still reported: {stderr}");
    assert!(stdout.contains("+ pod-a: namespace"), "{stdout}");
    assert!(node.dump("pod-a", &[]).is_some());
}

#[test]
fn verify_catches_a_flushed_linkerd_redirect_and_apply_restores_it() {
    if !require_root("verify_catches_a_flushed_linkerd_redirect_and_apply_restores_it") {
        return;
    }
    // `check` flags the broken example only as a warning: CI must deny warnings.
    let out = netcfg(&["check", "--deny-warnings", &example("linkerd-redirect/broken.kdl")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("redirect-without-listener"), "{stdout}{stderr}");

    let node = NodeRoot::new("cli-linkerd");
    let _state = CliState(node.root.name.clone());
    node.lan.exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.0.0.12"]);
    let spec = example("linkerd-redirect/fixed.kdl");
    let root = node.root.name.as_str();
    let verify = |format: &str| {
        let out = netcfg(&["verify", &spec, "--netns-root", root, "--format", format]);
        (out.status.code(), text(&out).0)
    };

    let out = netcfg(&["apply", &spec, "--netns-root", root]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let pod = node.path_name("web-7d4b9");
    serve_in(&pod, "0.0.0.0:4143", 100, |_| "proxy".to_string());
    serve_in(&pod, "0.0.0.0:8080", 100, |_| "app".to_string());
    let via_service = || connect_in(&node.lan.name, "10.96.0.20:80", 3000);
    assert_eq!(via_service(), Conn::Reply("proxy".into()));
    assert_eq!(verify("text"), (Some(0), "node `worker-2` matches the spec\n".to_string()));

    // A racing CNI plugin flushes the redirect.
    sh(&["ip", "netns", "exec", &pod, "nft", "flush", "chain", "inet", "netcfg", "nat-prerouting"]);
    let (code, stdout) = verify("text");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("changed web-7d4b9: nftables table inet netcfg"), "{stdout}");
    assert!(stdout.contains("missing web-7d4b9: nftables: missing rule in chain `nat-prerouting`"), "{stdout}");
    assert!(stdout.contains("redirect to :4143"), "{stdout}");
    let (code, stdout) = verify("json");
    assert_eq!(code, Some(1), "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["in_sync"], false, "{doc}");
    assert_eq!(doc["drift"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(doc["drift"][1]["kind"], "missing", "{doc}");
    assert_eq!(doc["drift"][0]["namespace"], "web-7d4b9", "{doc}");
    assert_eq!(doc["drift"][0]["kind"], "changed", "{doc}");
    assert_eq!(via_service(), Conn::Reply("app".into()), "plaintext straight to the application");

    let out = netcfg(&["apply", &spec, "--netns-root", root]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("~ web-7d4b9: nftables table inet netcfg"), "{stdout}");
    assert_eq!(verify("text").0, Some(0));
    assert_eq!(via_service(), Conn::Reply("proxy".into()));
}
