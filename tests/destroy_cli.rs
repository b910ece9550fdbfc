//! `netcfg destroy` on the real kernel: a node (a namespace the test creates, `--netns-root`)
//! gets a spec applied, next to objects netcfg does not own; destroy removes exactly what
//! netcfg owns (its links, routes, table and created namespaces) and a second run has nothing
//! to do.

use netcfg_testkit::{is_root, sh};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn netcfg(args: &[&str]) -> (i32, String, String) {
    netcfg_testkit::netcfg(env!("CARGO_BIN_EXE_netcfg"), args).into()
}

/// The node's namespace, its `ROOT-*` namespaces and a LAN namespace, deleted on drop (also on
/// panic), with the markers and lock the CLI leaves under /run/netcfg.
struct Node {
    root: String,
}

impl Node {
    fn new() -> Node {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = format!("ncd-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let node = Node { root };
        sh(&["ip", "netns", "add", &node.root]);
        sh(&["ip", "netns", "add", &format!("{}-lan", node.root)]);
        let lan = format!("{}-lan", node.root);
        sh(&["ip", "link", "add", "eth0", "netns", &node.root, "type", "veth", "peer", "name", "lan0", "netns", &lan]);
        node
    }

    fn namespaces(&self) -> Vec<String> {
        sh(&["ip", "netns", "list"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.root)) && !n.ends_with("-lan"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for line in list.unwrap_or_default().lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name == self.root || name.starts_with(&format!("{}-", self.root)) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
        for dir in ["/run/netcfg/netns", "/run/netcfg"] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == self.root
                    || name.starts_with(&format!("{}-", self.root))
                    || name.starts_with(&format!("{}.", self.root))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

const SPEC: &str = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "10.9.0.0/16" via="10.0.0.1" dev="eth0"
    bridge "br0" { address "10.10.0.1/16"; }
    forwarding #true
    firewall { policy in="drop"; allow in proto="tcp" port=22; }
    netns "p0" {
        veth "eth0" {
            address "10.10.1.1/16"
            peer "vp0" netns="@host" master="br0"
        }
        route "default" via="10.10.0.1" dev="eth0"
    }
}
"#;

#[test]
fn destroy_removes_what_netcfg_owns_and_nothing_else() {
    let tools = ["nft", "ip"].iter().all(|t| Command::new(t).arg("-V").output().is_ok_and(|o| o.status.success()));
    if !(is_root() && tools) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run this test as root with nft and ip");
        eprintln!("skipping destroy_removes_what_netcfg_owns_and_nothing_else: needs root, nft and ip");
        return;
    }
    let node = Node::new();
    let root = node.root.as_str();
    let ip = |args: &[&str]| sh(&[&["ip", "-n", root][..], args].concat());
    // Not netcfg's: a bridge and a static route of another tool.
    ip(&["link", "add", "foreign0", "type", "bridge"]);
    ip(&["link", "set", "eth0", "up"]);
    ip(&["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    ip(&["route", "add", "192.0.2.0/24", "via", "10.0.0.1", "proto", "static"]);
    let spec = std::env::temp_dir().join(format!("{root}.kdl"));
    std::fs::write(&spec, SPEC).expect("write spec");
    let (code, _, err) = netcfg(&["apply", spec.to_str().expect("UTF-8"), "--netns-root", root]);
    let _ = std::fs::remove_file(&spec);
    assert_eq!(code, 0, "{err}");
    assert_eq!(node.namespaces(), [format!("{root}-p0")]);
    assert!(ip(&["link"]).contains("br0"));
    let tables = sh(&["ip", "netns", "exec", root, "nft", "list", "tables"]);
    assert!(tables.contains("inet netcfg"), "{tables}");

    // --dry-run shows the removals and changes nothing.
    let (code, out, err) = netcfg(&["destroy", "--node", "n1", "--netns-root", root, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    for line in ["- @host: link br0", "- @host: link vp0", "- @host: route 10.9.0.0/16", "- p0: namespace"] {
        assert!(out.contains(line), "dry run lacks `{line}`:\n{out}");
    }
    assert!(ip(&["link"]).contains("br0"), "a dry run removes nothing");

    let (code, _, err) = netcfg(&["destroy", "--node", "n1", "--netns-root", root]);
    assert_eq!(code, 0, "{err}");
    assert!(node.namespaces().is_empty(), "created namespaces are gone: {:?}", node.namespaces());
    let links = ip(&["-br", "link"]);
    assert!(!links.contains("br0") && !links.contains("vp0"), "{links}");
    assert!(links.contains("foreign0") && links.contains("eth0"), "what netcfg does not own stays: {links}");
    let routes = ip(&["route"]);
    assert!(!routes.contains("10.9.0.0/16"), "{routes}");
    assert!(routes.contains("192.0.2.0/24"), "a foreign route stays: {routes}");
    let tables = sh(&["ip", "netns", "exec", root, "nft", "list", "tables"]);
    assert!(!tables.contains("netcfg"), "{tables}");

    let (code, out, err) = netcfg(&["destroy", "--node", "n1", "--netns-root", root]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("nothing to remove"), "{err}");
}

#[test]
fn destroy_refuses_bad_arguments() {
    let (code, _, err) = netcfg(&["destroy", "--node", "n1", "--netns-root", "no-such-root-netcfg-test"]);
    assert_eq!(code, 2);
    assert!(err.contains("no network namespace `no-such-root-netcfg-test`"), "{err}");
    let (code, _, err) = netcfg(&["destroy", "--node", "bad name!"]);
    assert_eq!(code, 2, "{err}");
}
