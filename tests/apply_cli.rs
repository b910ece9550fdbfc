//! `netcfg plan --live`, `apply` and `verify` driven as a user would, against a node that is a
//! network namespace the test creates (`--netns-root`): convergence, drift, `--confirm`,
//! the lock, and SIGKILL at random points followed by a plain apply that converges.

use netcfg_testkit::{require_root, sh};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    netcfg_testkit::netcfg(env!("CARGO_BIN_EXE_netcfg"), args).into()
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
    // Wait (with a deadline) until apply says it is waiting for the lock: only then does "it
    // has not changed anything yet" say something.
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (mut pipe, stderr) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                stderr.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let waiting = netcfg_testkit::wait_until(Duration::from_secs(60), || {
        stderr.lock().unwrap().contains("holds the lock of the node")
    });
    assert!(waiting, "apply never reported the held lock: {}", stderr.lock().unwrap());
    assert!(child.try_wait().unwrap().is_none(), "apply ran while another held the node's lock");
    assert!(!node.ip("@host", &["link"]).contains("br0"), "apply changed the node while locked out");
    drop(lock);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", stderr.lock().unwrap());
    assert!(node.ip("@host", &["link"]).contains("br0"), "apply did not run once the lock was free");
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

/// Every namespace of the node (root and `ROOT-*`), normalised to stable text: links with their
/// attributes, addresses, routes of every table, permanent neighbours, the sysctls netcfg
/// sets here, and the whole nft ruleset.
fn dump(node: &Node) -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| *n == node.root || (n.starts_with(&format!("{}-", node.root)) && *n != node.lan))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let json = |args: &[&str]| -> Vec<serde_json::Value> {
                let mut full = vec!["ip", "-j", "-d", "-n", &name];
                full.extend_from_slice(args);
                serde_json::from_str::<serde_json::Value>(&sh(&full))
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
            };
            let mut lines = Vec::new();
            // Carrier (LOWER_UP / NO-CARRIER, `linkdown` routes) is derived, not configured: a
            // port-less bridge has it until its first port leaves, a veth end from its peer's
            // state (which is compared).
            let carrier = |v: &serde_json::Value| -> serde_json::Value {
                let flags = v.as_array().cloned().unwrap_or_default();
                flags.into_iter().filter(|f| f != "LOWER_UP" && f != "NO-CARRIER" && f != "linkdown").collect()
            };
            for l in json(&["link", "show"]) {
                let i = &l["linkinfo"];
                // A bridge's MAC is its lowest port's, or 00:… once its ports left, or random
                // when made anew: the kernel's, unless the spec sets one (the generator does not).
                let mac = if i["info_kind"] == "bridge" { serde_json::Value::Null } else { l["address"].clone() };
                lines.push(format!(
                    "link {} {} {} {} {} {} {} {} {}",
                    l["ifname"],
                    i["info_kind"],
                    carrier(&l["flags"]),
                    l["mtu"],
                    mac,
                    l["master"],
                    l["group"],
                    i["info_slave_data"]["hairpin"],
                    l["inet6_addr_gen_mode"]
                ));
            }
            for l in json(&["addr", "show"]) {
                for a in l["addr_info"].as_array().cloned().unwrap_or_default() {
                    lines
                        .push(format!("addr {} {}/{} {}", l["ifname"], a["local"], a["prefixlen"], a["noprefixroute"]));
                }
            }
            for mut r in json(&["route", "show", "table", "all"]) {
                // The kernel adds and removes these per link as IPv6 on it becomes ready (carrier):
                // derived, never managed.
                let kernel_v6 = r["table"] == "local"
                    && (r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:")) || r["type"] == "multicast");
                if kernel_v6 {
                    continue;
                }
                let flags = carrier(&r["flags"]);
                if let Some(o) = r.as_object_mut() {
                    o.remove("expires");
                    o.remove("pref");
                    o.insert("flags".into(), flags);
                }
                lines.push(format!("route {r}"));
            }
            for n in json(&["neigh", "show", "nud", "permanent"]) {
                lines.push(format!("neigh {n}"));
            }
            for key in ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"] {
                let out = Command::new("ip").args(["netns", "exec", &name, "sysctl", "-n", key]).output().unwrap();
                lines.push(format!("sysctl {key}={}", String::from_utf8_lossy(&out.stdout).trim()));
            }
            lines.sort();
            lines.push(sh(&["ip", "netns", "exec", &name, "nft", "list", "ruleset"]));
            (name, lines.join("\n"))
        })
        .collect()
}

/// The dump once carrier and IPv6 link-local addresses have settled (two equal dumps in a row).
fn settled_dump(node: &Node) -> Vec<(String, String)> {
    let mut last = dump(node);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(300));
        let now = dump(node);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Waits (up to 6 s) for the node's dump to equal `want`, else panics with the difference.
fn assert_dump_settles(node: &Node, want: &[(String, String)], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let now = dump(node);
        if now == want {
            return;
        }
        if Instant::now() > deadline {
            let names: Vec<&String> = want.iter().map(|(n, _)| n).collect();
            let now_names: Vec<&String> = now.iter().map(|(n, _)| n).collect();
            assert_eq!(names, now_names, "{what}: namespaces differ");
            for ((ns, a), (_, b)) in want.iter().zip(&now) {
                let gone: Vec<&str> = a.lines().filter(|l| !b.lines().any(|x| x == *l)).collect();
                let new: Vec<&str> = b.lines().filter(|l| !a.lines().any(|x| x == *l)).collect();
                assert!(
                    gone.is_empty() && new.is_empty(),
                    "{what}: {ns} differs\nbefore only: {gone:#?}\nnow only: {new:#?}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn journal_of(node: &Node) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/netcfg/{}.journal", node.root))
}

/// SIGINT, SIGTERM and SIGHUP at spread-out moments of an apply of thousands of routes: the
/// apply stops, rolls back, says so, and every namespace is as before (compared by dumping
/// them); a second signal right after the first does not cut the rollback short.
#[test]
fn signals_during_apply_roll_back_to_the_state_before() {
    if !require_root("signals_during_apply_roll_back_to_the_state_before") {
        return;
    }
    let node = Node::new("sig");
    let (a, b) = (tmp("sig-a.kdl"), tmp("sig-b.kdl"));
    spec(&a, 2, 40);
    spec(&b, 4, 3000);
    let root = ["--netns-root", node.root.as_str()];
    let run = |f: &std::path::Path| netcfg(&[&["apply", f.to_str().unwrap()][..], &root[..]].concat());
    assert_eq!(run(&a).0, 0);
    let t = Instant::now();
    assert_eq!(run(&b).0, 0);
    let full = t.elapsed();
    assert_eq!(run(&a).0, 0);
    let before = settled_dump(&node);
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let (mut interrupted, mut finished) = (0, 0);
    for i in 0..9u32 {
        let sig = signals[i as usize % 3];
        let child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .args([&["apply", b.to_str().unwrap()][..], &root[..]].concat())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // From the moment its handlers are installed (before that a signal ends the process
        // before any change, as for any program): a faster apply made the first delays shorter
        // than starting the binary on a loaded machine.
        let handles = || catches(pid, libc::SIGINT) && catches(pid, libc::SIGTERM) && catches(pid, libc::SIGHUP);
        assert!(netcfg_testkit::wait_until(Duration::from_secs(30), handles), "run {i}: no signal handlers");
        let delay = full.mul_f64((f64::from(i) + 0.5) / 9.0);
        std::thread::sleep(delay);
        // SAFETY: signals to the child this test spawned.
        unsafe { libc::kill(pid, sig) };
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_millis(30));
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!journal_of(&node).exists(), "run {i}: the journal outlived the apply: {err}");
        match out.status.code() {
            Some(0) => {
                finished += 1;
                assert_eq!(run(&a).0, 0);
            }
            Some(1) => {
                interrupted += 1;
                assert!(err.contains("interrupted by SIG"), "run {i}: {err}");
                let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(
                    flat.contains("matches the state recorded before") || flat.contains("nothing was changed"),
                    "run {i}: {err}"
                );
            }
            other => panic!("run {i}: exit {other:?} after signal {sig} at {delay:?}: {err}"),
        }
        assert_dump_settles(&node, &before, &format!("run {i} (signal {sig} at {delay:?})"));
    }
    eprintln!("signals: {interrupted} applies interrupted and rolled back, {finished} finished first");
    assert!(interrupted >= 3, "only {interrupted} of 9 signals landed during an apply ({finished} finished)");
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

/// Whether process `pid` has a handler for `sig` (`SigCgt` in `/proc/PID/status`).
fn catches(pid: libc::pid_t, sig: libc::c_int) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

/// SIGKILL leaves the journal (root-only); the next `verify` (or `plan --live`) finds it,
/// restores the state recorded before the killed apply and says so, before doing its job.
#[test]
fn a_killed_apply_is_restored_by_the_next_command_from_its_journal() {
    if !require_root("a_killed_apply_is_restored_by_the_next_command_from_its_journal") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new("jrnl");
    let (a, b) = (tmp("jrnl-a.kdl"), tmp("jrnl-b.kdl"));
    spec(&a, 2, 40);
    spec(&b, 5, 3000);
    let root = ["--netns-root", node.root.as_str()];
    let fa = a.to_str().unwrap();
    assert_eq!(netcfg(&[&["apply", fa][..], &root[..]].concat()).0, 0);
    let before = settled_dump(&node);
    let mut restored = 0;
    for (i, next) in ["verify", "plan", "apply"].iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .args([&["apply", b.to_str().unwrap()][..], &root[..]].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the journal is there (the plan is made and the first change is next).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !journal_of(&node).exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Soon after: a faster apply left only the first kill inside its window at 100 ms steps.
        std::thread::sleep(Duration::from_millis([0, 10, 40][i]));
        let _ = child.kill();
        let _ = child.wait();
        if !journal_of(&node).exists() {
            continue;
        }
        let mode = std::fs::metadata(journal_of(&node)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the journal must be root's only");
        let dir = std::fs::metadata("/run/netcfg").unwrap().permissions().mode() & 0o777;
        assert_eq!(dir, 0o700);
        let args: Vec<&str> = match *next {
            "plan" => vec!["plan", fa, "--detailed-exitcode"],
            other => vec![other, fa],
        };
        let (code, out, err) = netcfg(&[&args[..], &root[..]].concat());
        assert!(err.contains("found the journal of an apply"), "{next}: {err}");
        assert!(err.contains("restored: the node was read back and matches"), "{next}: {err}");
        assert_eq!(code, 0, "{next} after the restore: {out}{err}");
        assert!(!journal_of(&node).exists(), "{next} left the journal");
        assert_dump_settles(&node, &before, &format!("{next} after SIGKILL"));
        restored += 1;
    }
    assert!(restored >= 2, "the apply was never killed with its journal in place");
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

/// The lock: another holder makes apply give up after --lock-timeout naming the holder; a
/// symbolic link planted in /run/netcfg is never followed; files are 0600 under umask 000.
#[test]
fn the_lock_times_out_naming_its_holder_and_run_files_are_root_only() {
    if !require_root("the_lock_times_out_naming_its_holder_and_run_files_are_root_only") {
        return;
    }
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new("lockto");
    let file = tmp("lockto.kdl");
    spec(&file, 1, 1);
    let f = file.to_str().unwrap();
    let lock_path = format!("/run/netcfg/{}.lock", node.root);
    std::fs::create_dir_all("/run/netcfg").unwrap();
    {
        let mut lock = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&lock_path).unwrap();
        writeln!(lock, "4242\nnetcfg apply other.kdl").unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let t = Instant::now();
        let (code, _, err) = netcfg(&["apply", f, "--netns-root", &node.root, "--lock-timeout", "1"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("is locked by pid 4242 (`netcfg apply other.kdl`); gave up after 1 s"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(!node.ip("@host", &["link"]).contains("br0"), "apply changed the node while locked out");
    }
    // A symbolic link where the lock goes: refused, its target untouched.
    std::fs::remove_file(&lock_path).unwrap();
    let victim = tmp("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    std::os::unix::fs::symlink(&victim, &lock_path).unwrap();
    let (code, _, err) = netcfg(&["apply", f, "--netns-root", &node.root]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644);
    std::fs::remove_file(&lock_path).unwrap();
    // Under umask 000 every file netcfg makes is still 0600.
    let status = Command::new("sh")
        .args(["-c", &format!("umask 000; exec {} apply {f} --netns-root {}", env!("CARGO_BIN_EXE_netcfg"), node.root)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mode = |p: &str| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lock_path), 0o600);
    assert_eq!(mode("/run/netcfg"), 0o700);
    assert_eq!(mode("/run/netcfg/netns"), 0o700);
    assert_eq!(mode(&format!("/run/netcfg/netns/{}-p0", node.root)), 0o600);
    let _ = std::fs::remove_file(victim);
    let _ = std::fs::remove_file(file);
}

/// terraform's exit codes for `plan --detailed-exitcode` (0 none, 1 error, 2 changes), and a
/// ruleset nft cannot load where netcfg computes its canonical form (here: `unshare` fails)
/// fails plan, apply and verify instead of passing for "no table" (examples/fargate-task).
#[test]
fn detailed_exit_codes_and_an_nft_failure_is_never_no_table() {
    if !require_root("detailed_exit_codes_and_an_nft_failure_is_never_no_table") {
        return;
    }
    let node = Node::new("codes");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fargate-task/fixed.kdl");
    let root = ["--netns-root", node.root.as_str()];
    let with_env = |args: &[&str], path: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("PATH", path)
            // The canonical form must really be computed in the (broken) scratch namespace.
            .env("NETCFG_NFT_CACHE", "0")
            .output()
            .expect("netcfg runs");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let shim = tmp("shim");
    std::fs::create_dir_all(&shim).unwrap();
    let unshare = shim.join("unshare");
    std::fs::write(&unshare, "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&unshare, std::fs::Permissions::from_mode(0o755)).unwrap();
    let broken_path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap_or_default());
    let (code, err) = with_env(&[&["plan", example, "--detailed-exitcode"][..], &root[..]].concat(), &broken_path);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unshare failed"), "{err}");
    let (code, err) = with_env(&[&["apply", example][..], &root[..]].concat(), &broken_path);
    assert_eq!(code, 1, "{err}");
    assert!(!node.ip("@host", &["link"]).contains("task-br"), "apply changed the node: {err}");
    let (code, err) = with_env(&[&["verify", example][..], &root[..]].concat(), &broken_path);
    assert_eq!(code, 2, "verify must not pass: {err}");
    // With nft working: changes (2), applied, no changes (0), every namespace has its table.
    let path = std::env::var("PATH").unwrap_or_default();
    let (code, err) = with_env(&[&["plan", example, "--detailed-exitcode"][..], &root[..]].concat(), &path);
    assert_eq!(code, 2, "{err}");
    assert_eq!(with_env(&[&["apply", example][..], &root[..]].concat(), &path).0, 0);
    assert_eq!(with_env(&[&["plan", example, "--detailed-exitcode"][..], &root[..]].concat(), &path).0, 0);
    for ns in ["@host", "web-1", "web-2"] {
        let name = if ns == "@host" { node.root.clone() } else { format!("{}-{ns}", node.root) };
        sh(&["ip", "netns", "exec", &name, "nft", "list", "table", "inet", "netcfg"]);
    }
    // An error is 1, not 2.
    let (code, err) =
        with_env(&[&["plan", example, "--detailed-exitcode", "--node", "nope"][..], &root[..]].concat(), &path);
    assert_eq!(code, 1, "{err}");
    let _ = std::fs::remove_dir_all(shim);
}

/// A small deterministic generator (xorshift64*), seeded per run so a failure can be replayed
/// with `NETCFG_PROPTEST_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random spec over the language: bridges with renumbered subnets, pods on veths (some with
/// an MTU, a firewall, a redirect), host routes via a changing gateway, a static neighbour,
/// sysctls and a host firewall.
fn random_spec(rng: &mut Rng) -> String {
    let gw = if rng.chance(50) { "10.0.0.1" } else { "10.0.0.254" };
    let mut s = format!(
        "node \"n1\" {{\n    ethernet \"eth0\" {{ address \"10.0.0.2/24\"; }}\n    route \"default\" via=\"{gw}\" dev=\"eth0\"\n    forwarding #true\n"
    );
    if rng.chance(50) {
        s.push_str("    sysctl \"net.ipv4.conf.all.rp_filter\" 2\n");
    }
    if rng.chance(50) {
        s.push_str(&format!(
            "    neighbor \"10.0.0.{}\" mac=\"02:00:00:00:00:0{}\" dev=\"eth0\"\n",
            20 + rng.below(3),
            rng.below(9)
        ));
    }
    if rng.chance(50) {
        s.push_str("    firewall { policy in=\"drop\"; allow in proto=\"tcp\" port=22; }\n");
    }
    for r in 0..rng.below(5) {
        s.push_str(&format!("    route \"10.200.{}.0/24\" via=\"{gw}\" dev=\"eth0\"\n", r * 2 + rng.below(2)));
    }
    let bridges = 1 + rng.below(2);
    let subnet: Vec<u64> = (0..bridges).map(|_| rng.below(2)).collect();
    for b in 0..bridges {
        let mtu = if rng.chance(30) { " mtu=1400" } else { "" };
        s.push_str(&format!(
            "    bridge \"br{b}\"{mtu} {{ address \"10.{}.{}.1/24\"; }}\n",
            10 + b,
            subnet[b as usize]
        ));
    }
    for p in 0..rng.below(4) {
        if rng.chance(25) {
            continue;
        }
        let b = rng.below(bridges);
        let net = format!("10.{}.{}", 10 + b, subnet[b as usize]);
        let mtu = if rng.chance(30) { " mtu=1400" } else { "" };
        s.push_str(&format!(
            "    netns \"p{p}\" {{\n        veth \"eth0\"{mtu} {{\n            address \"{net}.{}/24\"\n            peer \"vp{p}\" netns=\"@host\" master=\"br{b}\"{mtu}\n        }}\n        route \"default\" via=\"{net}.1\" dev=\"eth0\"\n",
            10 + p
        ));
        if rng.chance(50) {
            s.push_str("        firewall { policy in=\"drop\"; allow in proto=\"tcp\" port=8080; }\n        listen \"app\" port=8080\n");
        }
        if rng.chance(30) {
            s.push_str("        redirect in proto=\"tcp\" to-port=4143\n        listen \"proxy\" port=4143\n");
        }
        if rng.chance(40) {
            s.push_str("        sysctl \"net.ipv4.conf.eth0.rp_filter\" 2\n");
        }
        if rng.chance(30) {
            s.push_str("        forwarding #true\n");
        }
        s.push_str("    }\n");
    }
    s.push_str("}\n");
    s
}

/// The property: on a real kernel, for generated pairs of specs (A, B), with A applied, an
/// apply of B that fails at any op k (injected with `NETCFG_FAULT_OP`), is interrupted by
/// SIGINT/SIGTERM/SIGHUP at a random moment, or is SIGKILLed and followed by the next command,
/// leaves every namespace of the node exactly as A left it (links with attributes, addresses,
/// routes, neighbours, sysctls, the nft ruleset). Bounded here; `NETCFG_PROPTEST_CASES=N` runs
/// N pairs (the long run), `NETCFG_PROPTEST_SEED` replays one.
#[test]
fn property_a_failed_or_interrupted_apply_leaves_the_node_as_before() {
    if !require_root("property_a_failed_or_interrupted_apply_leaves_the_node_as_before") {
        return;
    }
    let cases: u64 = std::env::var("NETCFG_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("NETCFG_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    eprintln!("property: seed {seed} (replay with NETCFG_PROPTEST_SEED={seed}), {cases} cases");
    let mut rng = Rng(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let node = Node::new("prop");
    let root = ["--netns-root", node.root.as_str()];
    let (fa, fb) = (tmp("prop-a.kdl"), tmp("prop-b.kdl"));
    let (sa, sb) = (fa.to_str().unwrap().to_string(), fb.to_str().unwrap().to_string());
    let apply = |f: &str, env: &[(&str, String)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netcfg"));
        cmd.args([&["apply", f][..], &root[..]].concat()).env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("netcfg runs");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (mut faults, mut signals, mut kills, mut identical) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    for case in 0..cases {
        let (a, b) = (random_spec(&mut rng), random_spec(&mut rng));
        std::fs::write(&fa, &a).unwrap();
        std::fs::write(&fb, &b).unwrap();
        let ctx = |what: &str| format!("case {case} (seed {seed}) {what}\n--- A ---\n{a}--- B ---\n{b}");
        let (code, err) = apply(&sa, &[]);
        assert_eq!(code, 0, "{}: {err}", ctx("apply A"));
        let mut before = settled_dump(&node);
        let (code, out, err) = netcfg(&[&["plan", &sb, "--format", "json"][..], &root[..]].concat());
        assert_eq!(code, 0, "{}: {err}", ctx("plan B"));
        let ops = serde_json::from_str::<serde_json::Value>(&out).unwrap()["ops"].as_array().map_or(0, Vec::len);
        // Every fault point (in CI at most 12 of them, spread over the plan).
        let points: Vec<usize> = if std::env::var("NETCFG_PROPTEST_CASES").is_ok() || ops <= 12 {
            (0..ops).collect()
        } else {
            (0..12).map(|i| i * ops / 12).collect()
        };
        for k in points {
            let (code, err) = apply(&sb, &[("NETCFG_FAULT_OP", k.to_string())]);
            assert_eq!(code, 1, "{}: {err}", ctx(&format!("fault at op {k}")));
            let flat = err.split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ");
            assert!(flat.contains(&format!("injected fault at op {k}")), "{err}");
            assert!(flat.contains("matches the state recorded before"), "{}: {err}", ctx(&format!("fault at op {k}")));
            assert_dump_settles(&node, &before, &ctx(&format!("fault at op {k} of {ops}")));
            faults += 1;
            identical += 1;
        }
        // Signals at random moments, then SIGKILL followed by the next command (verify A).
        let t = Instant::now();
        assert_eq!(apply(&sb, &[]).0, 0, "{}", ctx("apply B"));
        let full = t.elapsed();
        assert_eq!(apply(&sa, &[]).0, 0);
        before = settled_dump(&node);
        for round in 0..3 {
            let kill = round == 2;
            let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGKILL]
                [if kill { 3 } else { rng.below(3) as usize }];
            let delay = full.mul_f64(rng.below(1000) as f64 / 1000.0);
            let child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
                .args([&["apply", &sb][..], &root[..]].concat())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            // SAFETY: a signal to the child this test spawned.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
            let out = child.wait_with_output().unwrap();
            let what = ctx(&format!("signal {sig} at {delay:?} of {full:?}"));
            if kill {
                kills += 1;
                let (code, out, err) = netcfg(&[&["verify", &sa][..], &root[..]].concat());
                if err.contains("found the journal") {
                    assert_eq!(code, 0, "{what}: {out}{err}");
                    assert_dump_settles(&node, &before, &what);
                    identical += 1;
                } else if code != 0 {
                    // Killed after the journal was removed: B was applied.
                    assert_eq!(apply(&sa, &[]).0, 0, "{what}");
                    before = settled_dump(&node);
                }
                continue;
            }
            signals += 1;
            match out.status.code() {
                Some(1) => {
                    assert_dump_settles(&node, &before, &what);
                    identical += 1;
                }
                Some(0) => {
                    assert_eq!(apply(&sa, &[]).0, 0, "{what}");
                    before = settled_dump(&node);
                }
                // Killed before netcfg's handler was installed (a signal within the first
                // milliseconds of the process): nothing may have changed.
                None if !journal_of(&node).exists() => {
                    assert_dump_settles(&node, &before, &what);
                    identical += 1;
                }
                other => panic!("{what}: exit {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
            }
        }
    }
    eprintln!(
        "property: {cases} cases, {faults} faults injected, {signals} signals, {kills} kills; {identical} states \
         identical to A's, 0 different, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(fa);
    let _ = std::fs::remove_file(fb);
}

/// `plan --live --out FILE` saves a plan that `apply FILE` applies exactly, the review shows the
/// nft change rule by rule and element by element on its spec line, and a saved plan is
/// refused (exit 1, nothing applied) once the node or the spec changed, or when the file is
/// not a plan.
#[test]
fn saved_plan_applies_exactly_and_is_refused_after_the_node_changed() {
    if !require_root("saved_plan_applies_exactly_and_is_refused_after_the_node_changed") {
        return;
    }
    let node = Node::new("saved");
    let path = tmp("saved.kdl");
    let saved = tmp("saved.plan");
    let write = |port: u16, backend: &str| {
        let text = format!(
            "node \"n1\" {{\n    ethernet \"eth0\" {{ address \"10.0.0.2/24\"; }}\n    forwarding #true\n    firewall {{\n        policy in=\"drop\"\n        allow in proto=\"tcp\" port={port}\n    }}\n    service \"web\" vip=\"10.96.0.1\" port=80 {{\n        backend \"{backend}:8080\"\n    }}\n}}\n"
        );
        std::fs::write(&path, text).unwrap();
    };
    let table = || sh(&["ip", "netns", "exec", &node.root, "nft", "list", "table", "inet", "netcfg"]);
    let p = path.to_str().unwrap();
    let s = saved.to_str().unwrap();
    write(22, "10.0.0.7");
    assert_eq!(netcfg(&["apply", p, "--netns-root", &node.root]).0, 0);

    // The review: one line per rule and per map element, each on the spec line behind it.
    write(2222, "10.0.0.8");
    let (code, out, err) = netcfg(&["plan", "--live", p, "--netns-root", &node.root, "--out", s]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("~ rule in chain `input`: `tcp dport 22 accept` -> `tcp dport 2222 accept`"), "{out}");
    assert!(out.contains(&format!("({p}:6:9)")), "the rule's spec line: {out}");
    assert!(out.contains("element of map `") && out.contains("10.0.0.8 . 8080"), "{out}");
    assert!(out.contains(&format!("({p}:9:")), "the element's backend line: {out}");
    let (_, json, _) = netcfg(&["plan", "--live", p, "--netns-root", &node.root, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let changes = json["ops"].as_array().unwrap().iter().find_map(|o| o["changes"].as_array()).expect("nft changes");
    assert!(changes.iter().any(|c| c["change"] == "~" && c["old"] == "tcp dport 22 accept" && c["span"].is_object()));

    // Applied exactly, from another directory, and verified.
    let (code, out, err) = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["apply", s])
        .current_dir("/")
        .env("NO_COLOR", "1")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(table().contains("tcp dport 2222 accept"));
    assert_eq!(netcfg(&["verify", p, "--netns-root", &node.root]).0, 0);

    // A plan made, then the node changed behind it: refused, nothing applied.
    write(2200, "10.0.0.8");
    assert_eq!(netcfg(&["plan", "--live", p, "--netns-root", &node.root, "--out", s]).0, 0);
    node.ip("@host", &["addr", "add", "10.0.0.9/24", "dev", "eth0"]);
    let (code, _, err) = netcfg(&["apply", s]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the node's live state changed since the plan was made; nothing was applied"), "{err}");
    assert!(table().contains("tcp dport 2222 accept") && !table().contains("2200"), "nothing applied");
    assert!(node.ip("@host", &["addr", "show", "dev", "eth0"]).contains("10.0.0.9/24"), "nothing undone either");

    // A plan made, then the spec changed: refused.
    node.ip("@host", &["addr", "del", "10.0.0.9/24", "dev", "eth0"]);
    assert_eq!(netcfg(&["plan", "--live", p, "--netns-root", &node.root, "--out", s]).0, 0);
    write(2201, "10.0.0.8");
    let (code, _, err) = netcfg(&["apply", s]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the spec files changed since the plan was made"), "{err}");
    assert!(!table().contains("2200") && !table().contains("2201"), "nothing applied");

    // Not a plan.
    let bad = tmp("bad.plan");
    for text in ["{ \"format\": \"terraform\" }", "{ truncated"] {
        std::fs::write(&bad, text).unwrap();
        let (code, _, err) = netcfg(&["apply", bad.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("is not a netcfg plan") && err.contains("nothing was applied"), "{err}");
    }
    for f in [&path, &saved, &bad] {
        let _ = std::fs::remove_file(f);
    }
}

/// `netcfg` with a `PATH` that has neither `nft` nor `ip`: whatever it still plans, it
/// planned without listing a table.
fn netcfg_without_nft(args: &[String]) -> (i32, String, String) {
    let empty = tmp("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("PATH", &empty)
        .output()
        .expect("run netcfg");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A no-op plan knows netcfg's table is unchanged from the namespace's nf_tables generation
/// (no `nft` runs: without `nft` on the PATH it still plans "no changes"), and any commit since
/// — another table, a chain a racing tool flushed, the namespace made anew with a table of the
/// same name loaded by hand — sends it back to the listing, which names the difference.
#[test]
fn an_unchanged_table_is_known_by_its_generation_and_any_commit_lists_it_again() {
    if !require_root("an_unchanged_table_is_known_by_its_generation_and_any_commit_lists_it_again") {
        return;
    }
    let node = Node::new("gen");
    let file = tmp("gen.kdl");
    spec(&file, 1, 0);
    let f = file.to_str().unwrap();
    let root = ["--netns-root", node.root.as_str()];
    let with = |cmd: &[&'static str]| -> Vec<String> {
        cmd.iter().copied().chain([f]).chain(root).map(str::to_string).collect()
    };
    let nft = |args: &[&str]| sh(&[&["ip", "netns", "exec", node.root.as_str(), "nft"][..], args].concat());
    assert_eq!(netcfg(&strs(&with(&["apply"]))).0, 0);
    let (code, out, err) = netcfg_without_nft(&with(&["plan", "--detailed-exitcode"]));
    assert_eq!(code, 0, "an applied table needs no listing: {out}{err}");
    assert_eq!(netcfg_without_nft(&with(&["verify"])).0, 0);

    // Another table: a commit in the namespace, so the table is listed again (which fails
    // without nft: an error, never "no changes"); once listed equal, it is remembered again.
    nft(&["add", "table", "inet", "other"]);
    let (code, _, err) = netcfg_without_nft(&with(&["verify"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nft") || err.contains("ip"), "{err}");
    assert_eq!(netcfg(&strs(&with(&["verify"]))).0, 0, "another table is not netcfg's");
    assert_eq!(netcfg_without_nft(&with(&["verify"])).0, 0);

    // A racing tool flushes netcfg's input chain: named by verify, put back by apply.
    let listing = nft(&["list", "table", "inet", "netcfg"]);
    nft(&["flush", "chain", "inet", "netcfg", "input"]);
    let (code, out, _) = netcfg(&strs(&with(&["verify"])));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("iif \"lo\" accept"), "the flushed rules are named: {out}");
    assert_eq!(netcfg(&strs(&with(&["apply"]))).0, 0);
    assert_eq!(netcfg_without_nft(&with(&["verify"])).0, 0);

    // A plan with ops on a node whose table was not listed: its snapshot lists it, so the
    // rollback of a failed apply keeps the table (a snapshot without it would delete it).
    let more = tmp("gen-more.kdl");
    spec(&more, 1, 2);
    assert_eq!(netcfg_without_nft(&with(&["verify"])).0, 0, "the table is known unchanged");
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(["apply", more.to_str().unwrap(), "--netns-root", &node.root])
        .env("NETCFG_FAULT_OP", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every change was rolled back"));
    assert_eq!(netcfg(&strs(&with(&["verify"]))).0, 0, "the rollback kept netcfg's table");
    let _ = std::fs::remove_file(more);

    // The node's namespace made anew (same name), with netcfg's table loaded by hand minus
    // one rule: another namespace, whatever its generation, so the table is listed.
    sh(&["ip", "netns", "del", &node.root]);
    sh(&["ip", "netns", "add", &node.root]);
    // The old pair goes with the old namespace, which the kernel cleans up a little later.
    let gone =
        || !Command::new("ip").args(["-n", &node.lan, "link", "show", "lan0"]).output().unwrap().status.success();
    assert!(netcfg_testkit::wait_until(Duration::from_secs(10), gone), "the old `lan0` stays");
    sh(&["ip", "link", "add", "eth0", "netns", &node.root, "type", "veth", "peer", "name", "lan0", "netns", &node.lan]);
    let edited: String =
        listing.lines().filter(|l| !l.contains("iif \"lo\" accept")).map(|l| format!("{l}\n")).collect();
    let table = tmp("gen.nft");
    std::fs::write(&table, edited).unwrap();
    nft(&["-f", table.to_str().unwrap()]);
    let _ = std::fs::remove_file(table);
    let (code, out, _) = netcfg(&strs(&with(&["verify"])));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("iif \"lo\" accept"), "the rule missing in the new namespace is named: {out}");
    let _ = std::fs::remove_file(file);
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
