//! `netcfg plan --live`, `apply` and `verify` driven as a user would, against a node that is a
//! network namespace the test creates (`--netns-root`): convergence, drift, `--confirm`,
//! the lock, and SIGKILL at random points followed by a plain apply that converges.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

fn require_root(test: &str) -> bool {
    let tools = ["nft", "ip"].iter().all(|t| Command::new(t).arg("-V").output().is_ok_and(|o| o.status.success()));
    if is_root() && tools {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: CI must run as root with nft and ip");
    eprintln!("skipping {test}: needs root, nft and ip");
    false
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A node in a namespace (`ROOT`), its namespaces `ROOT-*`, and a LAN namespace behind its
/// `eth0`. Everything is deleted on drop, also when the test panics.
struct Node {
    root: String,
    lan: String,
}

impl Node {
    fn new(tag: &str) -> Node {
        let root = format!("nca-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let lan = format!("{root}-lan");
        sh(&["ip", "netns", "add", &root]);
        sh(&["ip", "netns", "add", &lan]);
        sh(&["ip", "link", "add", "eth0", "netns", &root, "type", "veth", "peer", "name", "lan0", "netns", &lan]);
        sh(&["ip", "-n", &lan, "link", "set", "lan0", "up"]);
        sh(&["ip", "-n", &lan, "addr", "add", "10.0.0.1/24", "dev", "lan0"]);
        Node { root, lan }
    }

    fn ip(&self, ns: &str, args: &[&str]) -> String {
        let name = if ns == "@host" { self.root.clone() } else { format!("{}-{ns}", self.root) };
        let mut full = vec!["ip", "-n", &name];
        full.extend_from_slice(args);
        sh(&full)
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
        let _ = Command::new("ip").args(["netns", "del", &self.lan]).status();
        // What the CLI leaves for this node: creation markers, the lock, a confirmation file.
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

fn spec(path: &std::path::Path, pods: usize, routes: usize) {
    let mut s = String::from(
        "node \"n1\" {\n    ethernet \"eth0\" { address \"10.0.0.2/24\"; }\n    route \"default\" via=\"10.0.0.1\" dev=\"eth0\"\n    bridge \"br0\" { address \"10.10.0.1/16\"; }\n    forwarding #true\n    firewall { policy in=\"drop\"; allow in proto=\"tcp\" port=22; }\n",
    );
    for p in 0..pods {
        s.push_str(&format!(
            "    netns \"p{p}\" {{\n        veth \"eth0\" {{\n            address \"10.10.{}.{}/16\"\n            peer \"vp{p}\" netns=\"@host\" master=\"br0\" hairpin=#true\n        }}\n        route \"default\" via=\"10.10.0.1\" dev=\"eth0\"\n    }}\n",
            1 + p / 200,
            1 + p % 200
        ));
    }
    for r in 0..routes {
        s.push_str(&format!("    route \"10.{}.{}.0/24\" via=\"10.0.0.1\" dev=\"eth0\"\n", 100 + r / 250, r % 250));
    }
    s.push_str("}\n");
    std::fs::write(path, s).unwrap();
}

fn netcfg(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg")).args(args).env("NO_COLOR", "1").output().expect("netcfg runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("netcfg-apply-cli-{}-{name}", std::process::id()))
}

#[test]
fn apply_converges_verify_detects_drift_and_plan_reports_changes() {
    if !require_root("apply_converges_verify_detects_drift_and_plan_reports_changes") {
        return;
    }
    let node = Node::new("conv");
    let file = tmp("conv.kdl");
    spec(&file, 2, 3);
    let f = file.to_str().unwrap();
    let root = ["--netns-root", node.root.as_str()];
    let plan = |extra: &[&str]| netcfg(&[&["plan", f, "--detailed-exitcode"][..], &root[..], extra].concat());

    let (code, out, _) = plan(&[]);
    assert_eq!(code, 2, "changes pending: {out}");
    assert!(out.contains("+ @host: link br0"), "{out}");
    let (code, _, err) = netcfg(&[&["apply", f][..], &root[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0);
    assert_eq!(plan(&[]).0, 0, "nothing to do after apply");

    // Drift: a route removed by hand, a sysctl changed, the nft table flushed.
    node.ip("@host", &["route", "del", "10.100.1.0/24"]);
    sh(&["ip", "netns", "exec", &node.root, "sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    sh(&["ip", "netns", "exec", &node.root, "nft", "flush", "table", "inet", "netcfg"]);
    let (code, out, _) = netcfg(&[&["verify", f, "--format", "json"][..], &root[..]].concat());
    assert_eq!(code, 1, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["in_sync"], false);
    let what = doc["drift"].to_string();
    for needle in ["10.100.1.0/24", "ip_forward", "nftables"] {
        assert!(what.contains(needle), "drift must name {needle}: {what}");
    }
    assert_eq!(netcfg(&[&["apply", f][..], &root[..]].concat()).0, 0);
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0);

    // A spec with check errors is refused, and nothing changes.
    let bad = tmp("bad.kdl");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&file).unwrap().replace("bridge \"br0\"", "bridge \"a-name-way-too-long\""),
    )
    .unwrap();
    let (code, _, err) = netcfg(&[&["apply", bad.to_str().unwrap()][..], &root[..]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("interface-name-too-long"), "{err}");
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0, "a refused apply changed the node");
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(file);
}

#[test]
fn confirm_reverts_unless_confirmed() {
    if !require_root("confirm_reverts_unless_confirmed") {
        return;
    }
    let node = Node::new("confirm");
    let file = tmp("confirm.kdl");
    spec(&file, 1, 2);
    let f = file.to_str().unwrap();
    let root = ["--netns-root", node.root.as_str()];

    let (code, _, err) = netcfg(&[&["apply", f, "--confirm", "1"][..], &root[..]].concat());
    assert_eq!(code, 1, "unconfirmed apply must fail: {err}");
    assert!(err.contains("reverted"), "{err}");
    assert!(!node.ip("@host", &["link"]).contains("br0"), "the bridge must be gone after the revert");

    let child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args([&["apply", f, "--confirm", "20"][..], &root[..]].concat())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let confirm_file = format!("/run/netcfg/{}.confirm", node.root);
    let t = Instant::now();
    while !std::path::Path::new(&confirm_file).exists() {
        assert!(t.elapsed() < Duration::from_secs(15), "apply never asked for confirmation");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(netcfg(&["apply", "--confirm-ok", "--netns-root", &node.root]).0, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0, "a confirmed change stays");
    let _ = std::fs::remove_file(file);
}

/// SIGKILL at spread-out moments of an apply, 20 times, alternating between two specs so every
/// run has work to do; after each kill a plain apply converges, verify passes, and what netcfg
/// does not own (a foreign link and a foreign route) is still there.
#[test]
fn sigkill_at_random_points_then_apply_converges() {
    if !require_root("sigkill_at_random_points_then_apply_converges") {
        return;
    }
    let node = Node::new("kill");
    let (a, b) = (tmp("kill-a.kdl"), tmp("kill-b.kdl"));
    spec(&a, 12, 150);
    spec(&b, 6, 60);
    let root = ["--netns-root", node.root.as_str()];
    // Foreign objects in the node's namespace.
    node.ip("@host", &["link", "add", "foreign0", "type", "bridge"]);
    node.ip("@host", &["link", "set", "eth0", "up"]);
    node.ip("@host", &["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    node.ip("@host", &["route", "add", "192.0.2.0/24", "via", "10.0.0.1", "proto", "static"]);

    // How long one full apply takes, to spread the kills over it.
    let t = Instant::now();
    assert_eq!(netcfg(&[&["apply", a.to_str().unwrap()][..], &root[..]].concat()).0, 0);
    let full = t.elapsed().max(Duration::from_millis(50));
    for run in 0..20u32 {
        let file = if run % 2 == 0 { &b } else { &a };
        let f = file.to_str().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .args([&["apply", f][..], &root[..]].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread over 0..1.2x the apply time (some kills land after the end).
        let delay = full.mul_f64(f64::from(run) / 16.0);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let (code, _, err) = netcfg(&[&["apply", f][..], &root[..]].concat());
        assert_eq!(code, 0, "run {run}: apply after SIGKILL at {delay:?} failed: {err}");
        let (code, out, _) = netcfg(&[&["verify", f][..], &root[..]].concat());
        assert_eq!(code, 0, "run {run}: verify after SIGKILL at {delay:?}: {out}");
        let links = node.ip("@host", &["link"]);
        assert!(links.contains("foreign0"), "run {run}: a foreign link was deleted");
        let routes = node.ip("@host", &["route"]);
        assert!(routes.contains("192.0.2.0/24"), "run {run}: a foreign route was deleted");
    }
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

#[test]
fn two_applies_on_one_node_do_not_interleave() {
    if !require_root("two_applies_on_one_node_do_not_interleave") {
        return;
    }
    use std::os::fd::AsRawFd;
    let node = Node::new("lock");
    let file = tmp("lock.kdl");
    spec(&file, 1, 1);
    std::fs::create_dir_all("/run/netcfg").unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("/run/netcfg/{}.lock", node.root))
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["apply", file.to_str().unwrap(), "--netns-root", &node.root])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "apply ran while another held the node's lock");
    assert!(!node.ip("@host", &["link"]).contains("br0"), "apply changed the node while locked out");
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds the lock of the node"), "{out:?}");
    let _ = std::fs::remove_file(file);
}

/// What the review found: a NIC's DHCP address and routes survive a spec that declares the NIC,
/// a declared IPv6 link-local address is really added (and converges), a changed address does
/// not flush foreign routes, and a mistyped --netns-root creates nothing.
#[test]
fn foreign_addresses_on_nics_survive_and_link_local_addresses_are_managed() {
    if !require_root("foreign_addresses_on_nics_survive_and_link_local_addresses_are_managed") {
        return;
    }
    let node = Node::new("own");
    node.ip("@host", &["link", "set", "eth0", "up"]);
    node.ip("@host", &["addr", "add", "10.0.0.77/24", "dev", "eth0", "valid_lft", "3600", "preferred_lft", "3600"]);
    node.ip("@host", &["route", "add", "default", "via", "10.0.0.1", "proto", "dhcp"]);
    let file = tmp("own.kdl");
    let write = |br_addr: &str| {
        std::fs::write(
            &file,
            format!(
                "node \"d\" {{\n    ethernet \"eth0\" mtu=1400\n    bridge \"br0\" {{\n        address \"{br_addr}\"\n        address \"fd00:1::1/64\"\n        address \"fe80::1/64\"\n    }}\n}}\n"
            ),
        )
        .unwrap();
    };
    write("10.20.0.1/24");
    let f = file.to_str().unwrap();
    let root = ["--netns-root", node.root.as_str()];
    let (code, _, err) = netcfg(&[&["apply", f][..], &root[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        node.ip("@host", &["addr", "show", "dev", "eth0"]).contains("10.0.0.77/24"),
        "the DHCP address was removed"
    );
    assert!(node.ip("@host", &["route"]).contains("default via 10.0.0.1"), "the DHCP route was removed");
    assert!(
        node.ip("@host", &["-6", "addr", "show", "dev", "br0"]).contains("fe80::1/64"),
        "declared link-local missing"
    );
    let (code, out, _) = netcfg(&[&["plan", f, "--detailed-exitcode"][..], &root[..]].concat());
    assert_eq!(code, 0, "the plan must converge: {out}");
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0);

    // br0 renumbered to another subnet while a foreign route leaves through it: the new address
    // is added before the old one goes, so the kernel never flushes the link's routes.
    node.ip("@host", &["route", "add", "172.16.0.0/16", "dev", "br0", "proto", "static"]);
    write("10.30.0.1/24");
    let (code, _, err) = netcfg(&[&["apply", f][..], &root[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(node.ip("@host", &["route"]).contains("172.16.0.0/16"), "a foreign route was flushed");
    assert_eq!(netcfg(&[&["verify", f][..], &root[..]].concat()).0, 0);

    let (code, _, err) = netcfg(&["plan", f, "--netns-root", "no-such-ns-here"]);
    assert_eq!(code, 2, "{err}");
    assert!(!std::path::Path::new("/run/netns/no-such-ns-here").exists());
    let _ = std::fs::remove_file(file);
}
