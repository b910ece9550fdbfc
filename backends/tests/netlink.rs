//! The netlink backend against the real kernel, as root, in namespaces each test creates: apply
//! converges and is idempotent, changes do only the difference, foreign objects survive, a
//! failed apply leaves the node exactly as before, and verify sees every kind of drift.

mod common;

use common::*;
use netcfg_backends::netlink::{self, Action, DriftKind, Options, Plan, Session};

/// A host with a NIC, a bridge with two pods on veth pairs, a vxlan over the NIC, a macvlan
/// pod, routes of every shape, a static neighbour and sysctls.
const BASE: &str = r#"
node "n1" {
    ethernet "eth0" {
        address "10.0.0.2/24"
    }
    route "default" via="10.0.0.1" dev="eth0"
    route "192.0.2.0/24" type="blackhole"
    route "198.51.100.0/24" via="10.0.0.1" dev="eth0" table=100 metric=20
    route "203.0.113.0/24" dev="br0" src="10.244.1.1" metric=5
    route "2001:db8:99::/48" via="2001:db8:1::2" dev="br0"
    neighbor "10.0.0.9" mac="02:00:00:00:00:09" dev="eth0"
    forwarding #true

    bridge "br0" mtu=1450 {
        address "10.244.1.1/24"
        address "2001:db8:1::1/64"
    }
    vxlan "vx42" vni=42 local="10.0.0.2" remote="10.0.0.1" dev="eth0" port=4789 {
        address "172.16.42.2/24" prefix-route=#false
    }

    netns "pod-a" {
        veth "eth0" mtu=1450 {
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="br0" mtu=1450 hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
        sysctl "net.ipv4.conf.eth0.rp_filter" 2
    }

    netns "pod-b" {
        veth "eth0" mtu=1450 mac="02:00:00:00:0b:01" {
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="br0" mtu=1450
        }
        route "default" via="10.244.1.1" dev="eth0"
    }

    netns "pod-m" {
        macvlan "mv0" parent="eth0" mode="bridge" {
            address "10.0.0.50/24"
        }
        route "10.9.0.0/16" via="10.0.0.1" dev="mv0"
    }
}
"#;

const SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"];

fn desired(src: &str) -> netlink::Desired {
    let fleet = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&fleet.nodes[0], &mut diags);
    let errors: Vec<_> = diags.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    d
}

fn session(node: &NodeRoot) -> Session {
    Session::new(node.map.clone()).expect("runtime")
}

fn plan(s: &mut Session, d: &netlink::Desired) -> Plan {
    s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"))
}

fn apply(s: &mut Session, d: &netlink::Desired) -> Plan {
    let p = plan(s, d);
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    p
}

/// Every namespace's dump, once two readings 300 ms apart agree: a link's carrier and operstate
/// follow its peer's through the kernel's link-watch work, which on the emulated kernel lane
/// lagged behind a fast apply (the host's `eth0` read `NO-CARRIER` before a no-op apply, up
/// after).
fn dump_all(node: &NodeRoot) -> Vec<(String, Option<String>)> {
    let read = || -> Vec<(String, Option<String>)> {
        ["@host", "pod-a", "pod-b", "pod-m", "pod-c", "task-1"]
            .iter()
            .map(|ns| (ns.to_string(), node.dump(ns, if *ns == "@host" { SYSCTLS } else { &[] })))
            .collect()
    };
    let mut last = read();
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn apply_converges_and_is_idempotent() {
    if !require_root("apply_converges_and_is_idempotent") {
        return;
    }
    let node = NodeRoot::new("nl-conv");
    let d = desired(BASE);
    let mut s = session(&node);
    let first = apply(&mut s, &d);
    assert!(first.ops.len() > 20, "{}", first.to_text());

    // Read back with `ip`, independently of the backend's own reader.
    let links = node.ip_until("@host", &["-d", "link", "show", "br0"], |l| l.contains("state UP"));
    assert!(links.contains("mtu 1450") && links.contains("group 28259") && links.contains("state UP"), "{links}");
    let port = node.ip("@host", &["-d", "link", "show", "veth-a"]);
    assert!(port.contains("master br0") && port.contains("hairpin on") && port.contains("addrgenmode none"), "{port}");
    // Both ends of a veth with one queue each way, asked at creation (spec.md, `veth`).
    assert!(port.contains("numtxqueues 1 numrxqueues 1"), "{port}");
    let vx = node.ip("@host", &["-d", "link", "show", "vx42"]);
    assert!(vx.contains("vxlan id 42 remote 10.0.0.1 local 10.0.0.2 dev eth0"), "{vx}");
    assert!(node.ip("@host", &["addr", "show", "vx42"]).contains("172.16.42.2/24 scope global noprefixroute"));
    let routes = node.ip("@host", &["route", "show", "proto", "110"]);
    for want in [
        "default via 10.0.0.1 dev eth0",
        "blackhole 192.0.2.0/24",
        "203.0.113.0/24 dev br0 scope link src 10.244.1.1 metric 5",
    ] {
        assert!(routes.contains(want), "missing `{want}` in:\n{routes}");
    }
    let t100 = node.ip("@host", &["route", "show", "table", "100"]);
    assert!(t100.contains("198.51.100.0/24 via 10.0.0.1 dev eth0 proto 110 metric 20"), "{t100}");
    let v6 = node.ip("@host", &["-6", "route", "show", "proto", "110"]);
    assert!(v6.contains("2001:db8:99::/48 via 2001:db8:1::2 dev br0"), "{v6}");
    let neigh = node.ip("@host", &["neigh", "show", "nud", "permanent"]);
    assert!(neigh.contains("10.0.0.9 dev eth0 lladdr 02:00:00:00:00:09 PERMANENT proto 110"), "{neigh}");
    let b = node.ip("pod-b", &["link", "show", "eth0"]);
    assert!(b.contains("02:00:00:00:0b:01") && b.contains("mtu 1450"), "{b}");
    assert!(node.ip("pod-a", &["route"]).contains("default via 10.244.1.1 dev eth0 proto 110"));
    assert!(node.ip("pod-m", &["-d", "link", "show", "mv0"]).contains("macvlan mode bridge"));
    assert_eq!(
        sh(&["ip", "netns", "exec", &node.path_name("@host"), "sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        "1"
    );
    let rp = sh(&["ip", "netns", "exec", &node.path_name("pod-a"), "sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"]);
    assert_eq!(rp.trim(), "2");

    // The pods reach each other over the bridge (TCP from pod-a to pod-b).
    let listener =
        netcfg_backends::netns::run_in(&node.path_name("pod-b"), || std::net::TcpListener::bind("10.244.1.3:8080"))
            .expect("enter pod-b")
            .expect("bind");
    let connected = netcfg_backends::netns::run_in(&node.path_name("pod-a"), || {
        std::net::TcpStream::connect_timeout(&"10.244.1.3:8080".parse().unwrap(), std::time::Duration::from_secs(3))
    })
    .expect("enter pod-a");
    assert!(connected.is_ok(), "{connected:?}");
    drop(listener);

    // Idempotent: nothing left to do, nothing touched.
    let before = dump_all(&node);
    let again = plan(&mut s, &d);
    assert!(again.is_empty(), "second plan not empty:\n{}", again.to_text());
    s.apply(&d, &again, Options::default()).expect("no-op apply");
    assert_eq!(before, dump_all(&node));
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
}

/// BASE with one change of every kind.
const CHANGED: &str = r#"
node "n1" {
    ethernet "eth0" mtu=1400 {
        address "10.0.0.2/24"
    }
    route "default" via="10.0.0.1" dev="eth0" metric=0
    route "198.51.100.0/24" via="10.0.0.3" dev="eth0" table=100 metric=20
    route "203.0.113.0/24" dev="br0" src="10.244.1.1" metric=5
    route "100.64.0.0/10" type="unreachable"
    neighbor "10.0.0.9" mac="02:00:00:00:00:0a" dev="eth0"
    neighbor "10.0.0.10" mac="02:00:00:00:00:10" dev="eth0"
    forwarding #true
    sysctl "net.ipv4.conf.all.log_martians" 1

    bridge "br0" mtu=1450 {
        address "10.244.1.1/24"
        address "10.244.2.1/24"
    }
    vxlan "vx42" vni=43 local="10.0.0.2" remote="10.0.0.1" dev="eth0" port=4789 {
        address "172.16.42.2/24"
    }

    netns "pod-a" {
        veth "eth0" mtu=1450 {
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="br0" mtu=1450 hairpin=#false
        }
        route "default" via="10.244.1.1" dev="eth0"
        sysctl "net.ipv4.conf.eth0.rp_filter" 1
    }

    netns "pod-c" {
        veth "eth0" {
            address "10.244.2.2/24"
            peer "veth-c" netns="@host" master="br0"
        }
        route "default" via="10.244.2.1" dev="eth0"
    }
}
"#;

fn descriptions(p: &Plan) -> Vec<String> {
    p.ops.iter().map(|o| format!("{} {}: {}", o.sign(), o.ns, o.describe())).collect()
}

#[test]
fn a_changed_spec_applies_only_the_difference() {
    if !require_root("a_changed_spec_applies_only_the_difference") {
        return;
    }
    let node = NodeRoot::new("nl-diff");
    let mut s = session(&node);
    apply(&mut s, &desired(BASE));
    let pod_a_link = node.ip("pod-a", &["-o", "link", "show", "eth0"]);

    let d2 = desired(CHANGED);
    let p = apply(&mut s, &d2);
    let text = descriptions(&p);
    let has = |want: &str| text.iter().any(|t| t.contains(want));
    for want in [
        "~ @host: link eth0: mtu 1500 -> 1400",
        "~ @host: route 198.51.100.0/24 via 10.0.0.3 dev eth0 table 100 metric 20",
        "- @host: route blackhole 192.0.2.0/24",
        "+ @host: route unreachable 100.64.0.0/10",
        "~ @host: neighbor 10.0.0.9 dev eth0: lladdr 02:00:00:00:00:09 -> 02:00:00:00:00:0a",
        "+ @host: neighbor 10.0.0.10",
        "~ @host: sysctl net.ipv4.conf.all.log_martians: 0 -> 1",
        "- @host: address 2001:db8:1::1/64 dev br0",
        "- @host: route 2001:db8:99::/48",
        "+ @host: address 10.244.2.1/24 dev br0",
        "- @host: link vx42",
        "+ @host: link vx42",
        "+ @host: address 172.16.42.2/24 dev vx42",
        "~ @host: link veth-a: hairpin true -> false",
        "~ pod-a: sysctl net.ipv4.conf.eth0.rp_filter: 2 -> 1",
        "- pod-b: namespace",
        "- pod-m: namespace",
        "+ pod-c: namespace",
        "+ @host: link veth-c (veth, peer eth0@pod-c",
    ] {
        assert!(has(want), "expected `{want}` in the plan:\n{}", p.to_text());
    }
    // Only the difference: nothing about pod-a's link, br0's kept address, the kept routes.
    for unwanted in ["pod-a: link", "10.244.1.1/24", "203.0.113.0/24", "pod-a: route"] {
        assert!(!has(unwanted), "unexpected `{unwanted}` in the plan:\n{}", p.to_text());
    }
    assert_eq!(pod_a_link, node.ip("pod-a", &["-o", "link", "show", "eth0"]), "pod-a's veth was touched");
    assert!(node.dump("pod-b", &[]).is_none() && node.dump("pod-m", &[]).is_none());
    let vx = node.ip("@host", &["-d", "link", "show", "vx42"]);
    assert!(vx.contains("vxlan id 43"), "{vx}");
    assert!(plan(&mut s, &d2).is_empty());

    // And back.
    let d1 = desired(BASE);
    apply(&mut s, &d1);
    assert!(plan(&mut s, &d1).is_empty());
    assert!(node.dump("pod-c", &[]).is_none());
}

#[test]
fn objects_netcfg_does_not_own_survive_every_apply() {
    if !require_root("objects_netcfg_does_not_own_survive_every_apply") {
        return;
    }
    let node = NodeRoot::new("nl-own");
    let mut s = session(&node);
    apply(&mut s, &desired(BASE));
    // By hand: a route with another protocol (in a table netcfg uses), a foreign bridge with
    // an address and a neighbour, a route over it, and a static route in a pod.
    node.ip("@host", &["route", "add", "10.77.0.0/16", "via", "10.0.0.1", "dev", "eth0", "proto", "static"]);
    node.ip("@host", &["route", "add", "10.78.0.0/16", "via", "10.0.0.1", "table", "100"]);
    node.ip("@host", &["link", "add", "handmade0", "type", "bridge"]);
    node.ip("@host", &["link", "set", "handmade0", "up"]);
    node.ip("@host", &["addr", "add", "192.168.77.1/24", "dev", "handmade0"]);
    node.ip("@host", &["neigh", "add", "192.168.77.9", "lladdr", "02:00:00:00:77:09", "dev", "handmade0"]);
    node.ip("pod-a", &["route", "add", "10.66.0.0/16", "via", "10.244.1.1"]);
    let foreign = |node: &NodeRoot| {
        (
            node.ip("@host", &["route", "show", "10.77.0.0/16"]),
            node.ip("@host", &["route", "show", "table", "100", "10.78.0.0/16"]),
            node.ip("@host", &["-4", "addr", "show", "dev", "handmade0"]),
            node.ip("@host", &["neigh", "show", "dev", "handmade0"]),
            node.ip("pod-a", &["route", "show", "10.66.0.0/16"]),
        )
    };
    let before = foreign(&node);
    assert!(!before.0.is_empty() && !before.1.is_empty() && !before.4.is_empty());
    let d = desired(BASE);
    let p = plan(&mut s, &d);
    assert!(p.is_empty(), "foreign objects must not show up in the plan:\n{}", p.to_text());
    apply(&mut s, &desired(CHANGED));
    assert_eq!(foreign(&node).0, before.0);
    assert_eq!(foreign(&node).1, before.1);
    assert_eq!(foreign(&node).2, before.2);
    assert_eq!(foreign(&node).3, before.3);
    apply(&mut s, &d);
    assert_eq!(foreign(&node), before);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
}

/// The dump once what the kernel derives by itself has settled (two equal dumps in a row).
fn settled_dump(node: &NodeRoot) -> Vec<(String, Option<String>)> {
    let mut last = dump_all(node);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = dump_all(node);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Waits (up to 5 s) for the node's dump to equal `before`: what the kernel derives by itself
/// (carrier, IPv6 link-local addresses after an MTU change) comes back asynchronously.
fn assert_settles(before: &[(String, Option<String>)], node: &NodeRoot) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = dump_all(node);
        if now == before {
            return;
        }
        if std::time::Instant::now() > deadline {
            for ((ns, a), (_, b)) in before.iter().zip(&now) {
                if a != b {
                    let a: Vec<&str> = a.as_deref().unwrap_or("").lines().collect();
                    let b: Vec<&str> = b.as_deref().unwrap_or("").lines().collect();
                    let gone: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
                    let new: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
                    panic!("namespace {ns} differs after rollback\nbefore only: {gone:#?}\nafter only: {new:#?}");
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_failed_apply_leaves_the_node_exactly_as_before() {
    if !require_root("a_failed_apply_leaves_the_node_exactly_as_before") {
        return;
    }
    let node = NodeRoot::new("nl-fail");
    let mut s = session(&node);

    // 1. From scratch: everything is created, then an op the kernel refuses (a route through
    //    a gateway that is not on any link) fails at the very end.
    let before = settled_dump(&node);
    let d = desired(BASE);
    let mut p = plan(&mut s, &d);
    let mut bad = p.ops.iter().find(|o| matches!(o.action, Action::AddRoute { .. })).expect("a route op").clone();
    if let Action::AddRoute { key, route } = &mut bad.action {
        key.dst = "10.123.0.0/16".parse().unwrap();
        route.via = Some("10.200.0.1".parse().unwrap());
        route.dev = None;
    }
    let bad_span = bad.span;
    p.ops.push(bad);
    let err = s.apply(&d, &p, Options::default()).expect_err("the injected op must fail");
    assert!(err.failed.is_some() && err.rollback_failures.is_empty(), "{err:#?}");
    assert_eq!(err.span, bad_span);
    let diag = err.to_diagnostic();
    assert!(diag.message.contains("10.123.0.0/16"), "{}", diag.message);
    assert_settles(&before, &node);

    // 2. From an applied spec to a changed one, with a link that disappears between plan and
    //    apply: the ops before the failure are undone.
    apply(&mut s, &d);
    let d2 = desired(CHANGED);
    let p2 = plan(&mut s, &d2);
    node.ip("pod-a", &["link", "set", "eth0", "down"]);
    node.ip("@host", &["link", "del", "veth-a"]);
    let before = settled_dump(&node);
    let err = s.apply(&d2, &p2, Options::default()).expect_err("veth-a is gone");
    assert!(err.rollback_failures.is_empty(), "{err:#?}");
    assert!(err.failed.is_some(), "{err:#?}");
    assert_settles(&before, &node);
    // A fresh plan repairs it.
    apply(&mut s, &d);
    assert!(plan(&mut s, &d).is_empty());
}

#[test]
fn verify_reports_each_kind_of_drift() {
    if !require_root("verify_reports_each_kind_of_drift") {
        return;
    }
    let node = NodeRoot::new("nl-drift");
    let mut s = session(&node);
    let src = BASE.replace(
        "    forwarding #true\n",
        "    forwarding #true\n    firewall {\n        policy in=\"drop\"\n        allow in proto=\"tcp\" port=22\n    }\n",
    );
    let d = desired(&src);
    apply(&mut s, &d);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    node.ip("pod-a", &["route", "del", "default"]);
    node.ip("@host", &["addr", "add", "10.244.9.9/24", "dev", "br0"]);
    sh(&["ip", "netns", "exec", &node.path_name("@host"), "sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    node.ip("@host", &["link", "set", "veth-a", "type", "bridge_slave", "hairpin", "off"]);
    let drift = s.verify(&d, Options::default()).expect("verify");
    let has = |kind: DriftKind, what: &str| drift.iter().any(|x| x.kind == kind && x.what.contains(what));
    assert!(has(DriftKind::Missing, "route 0.0.0.0/0 via 10.244.1.1"), "{drift:#?}");
    assert!(has(DriftKind::Extra, "address 10.244.9.9/24 dev br0"), "{drift:#?}");
    assert!(has(DriftKind::Changed, "sysctl net.ipv4.ip_forward: 0 -> 1"), "{drift:#?}");
    assert!(has(DriftKind::Changed, "link veth-a: hairpin false -> true"), "{drift:#?}");
    assert_eq!(drift.len(), 4, "{drift:#?}");
    // The drift carries the span of the spec text it is about.
    let route = drift.iter().find(|x| x.kind == DriftKind::Missing).unwrap();
    assert!(route.span.start > 0);

    // nft: the table removed, then modified.
    let host = node.path_name("@host");
    sh(&["ip", "netns", "exec", &host, "nft", "delete", "table", "inet", "netcfg"]);
    let drift = s.verify(&d, Options::default()).expect("verify");
    assert!(drift.iter().any(|x| x.kind == DriftKind::Missing && x.what.contains("nftables")), "{drift:#?}");
    apply(&mut s, &d);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
    sh(&["ip", "netns", "exec", &host, "nft", "add", "chain", "inet", "netcfg", "sneaky"]);
    let drift = s.verify(&d, Options::default()).expect("verify");
    assert!(drift.iter().any(|x| x.kind == DriftKind::Changed && x.what.contains("nftables")), "{drift:#?}");
    // A failed apply after the nft op puts the modified table back (the inverse of the nft
    // transaction), then a good apply restores the spec's table.
    let listed = |node: &NodeRoot| {
        sh(&["ip", "netns", "exec", &node.path_name("@host"), "nft", "list", "table", "inet", "netcfg"])
    };
    let modified = listed(&node);
    let mut p = plan(&mut s, &d);
    assert!(p.ops.iter().any(|o| matches!(o.action, Action::Nft { .. })), "{}", p.to_text());
    let mut bad = p.ops.last().expect("op").clone();
    bad.action = Action::AddRoute {
        key: netlink::state::RouteKey::new(254, "10.123.0.0/16".parse().unwrap(), 0),
        route: netlink::state::Route {
            via: Some("10.200.0.1".parse().unwrap()),
            dev: None,
            src: None,
            scope: netcfg_lang::vocab::RouteScope::Global,
            onlink: false,
            route_type: netcfg_lang::vocab::RouteType::Unicast,
            protocol: netlink::state::NETCFG_PROTO,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    };
    p.ops.push(bad);
    let err = s.apply(&d, &p, Options::default()).expect_err("injected failure");
    assert!(err.rollback_failures.is_empty(), "{err:#?}");
    assert_eq!(listed(&node), modified);
    apply(&mut s, &d);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
}

#[test]
fn namespaces_are_created_like_ip_netns_add_and_only_marked_ones_are_deleted() {
    if !require_root("namespaces_are_created_like_ip_netns_add_and_only_marked_ones_are_deleted") {
        return;
    }
    let node = NodeRoot::new("nl-ns");
    let name = node.path_name("made-by-hand");
    netlink::namespaces::create_named(&name).expect("create");
    assert!(sh(&["ip", "netns", "list"]).contains(&name));
    // It is a real, empty namespace: only `lo`, down.
    let links = sh(&["ip", "-n", &name, "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("state DOWN"), "{links}");
    // Not marked: a spec without it leaves it alone.
    let mut s = session(&node);
    apply(&mut s, &desired(BASE));
    assert!(node.dump("made-by-hand", &[]).is_some());
    assert_eq!(node.map.created_namespaces("n1"), vec!["pod-a".to_string(), "pod-b".into(), "pod-m".into()]);
    netlink::namespaces::delete_named(&name).expect("delete");
    assert!(!sh(&["ip", "netns", "list"]).contains(&name));
}

/// An ECS-like node: the task's ENI `eth14` is declared in `task-1` and found in the host
/// namespace, where netcfg must move it from.
const TASK: &str = r#"
node "n1" {
    ethernet "eth0" {
        address "10.0.0.2/24"
    }
    route "default" via="10.0.0.1" dev="eth0"
    netns "task-1" {
        ethernet "eth14" mtu=1400 {
            address "10.0.254.153/24"
        }
        route "default" via="10.0.254.1" dev="eth14"
        sysctl "net.ipv4.conf.eth14.rp_filter" 1
    }
}
"#;

/// Creates `eth14` in the node's host namespace as the ECS agent would find it: a veth whose
/// other end `vpc0` (10.0.254.1/24) sits in the returned "VPC" namespace; up, a port of a
/// foreign bridge `hostbr`, with an address, a foreign route through it and a static
/// neighbour, all of which a move loses and a rollback must bring back.
fn make_eni(node: &NodeRoot) -> Netns {
    let vpc = Netns::new("nl-vpc");
    let host = node.path_name("@host");
    sh(&["ip", "link", "add", "eth14", "netns", &host, "type", "veth", "peer", "name", "vpc0", "netns", &vpc.name]);
    vpc.exec(&["ip", "addr", "add", "10.0.254.1/24", "dev", "vpc0"]);
    vpc.exec(&["ip", "link", "set", "vpc0", "up"]);
    node.ip("@host", &["link", "add", "hostbr", "address", "02:00:00:00:0e:01", "type", "bridge"]);
    node.ip("@host", &["link", "set", "hostbr", "addrgenmode", "none", "up"]);
    node.ip("@host", &["link", "set", "eth14", "master", "hostbr", "up"]);
    node.ip("@host", &["addr", "add", "10.99.0.2/24", "dev", "eth14"]);
    node.ip("@host", &["route", "add", "10.98.0.0/16", "via", "10.99.0.1", "dev", "eth14"]);
    node.ip("@host", &["neigh", "add", "10.99.0.1", "lladdr", "02:00:00:00:0e:02", "dev", "eth14", "nud", "permanent"]);
    vpc
}

fn moves(p: &Plan) -> Vec<String> {
    p.ops.iter().filter(|o| matches!(o.action, Action::MoveLink { .. })).map(|o| o.describe()).collect()
}

#[test]
fn an_ethernet_link_is_moved_from_the_host_namespace_into_its_netns() {
    if !require_root("an_ethernet_link_is_moved_from_the_host_namespace_into_its_netns") {
        return;
    }
    let node = NodeRoot::new("nl-move");
    let vpc = make_eni(&node);
    let mut s = session(&node);
    let d = desired(TASK);
    let p = apply(&mut s, &d);
    assert_eq!(moves(&p), vec!["link eth14: move @host -> task-1"], "{}", p.to_text());

    // Gone from the host namespace with what it had there; configured in the task's.
    let host = node.ip("@host", &["-o", "link"]);
    assert!(!host.contains("eth14"), "{host}");
    let host_routes = node.ip("@host", &["route", "show", "table", "all"]);
    assert!(!host_routes.contains("10.98.0.0/16") && !host_routes.contains("10.99.0"), "{host_routes}");
    let eni = node.ip_until("task-1", &["-d", "link", "show", "eth14"], |l| l.contains("state UP"));
    assert!(eni.contains("mtu 1400") && eni.contains("state UP") && !eni.contains("master"), "{eni}");
    assert!(node.ip("task-1", &["addr", "show", "eth14"]).contains("inet 10.0.254.153/24"));
    assert!(node.ip("task-1", &["route"]).contains("default via 10.0.254.1 dev eth14 proto 110"));
    let rp = sh(&["ip", "netns", "exec", &node.path_name("task-1"), "sysctl", "-n", "net.ipv4.conf.eth14.rp_filter"]);
    assert_eq!(rp.trim(), "1");
    assert_eq!(node.map.moved_links("n1", "task-1").keys().collect::<Vec<_>>(), vec!["eth14"]);
    // The task reaches the VPC through its ENI.
    serve(&vpc, "10.0.254.1:8080", "vpc", 1);
    assert_eq!(connect_in(&node.path_name("task-1"), "10.0.254.1:8080", 3000), Conn::Reply("vpc".into()));

    // Idempotent, and verify is clean.
    let before = dump_all(&node);
    let again = plan(&mut s, &d);
    assert!(again.is_empty(), "second plan not empty:\n{}", again.to_text());
    s.apply(&d, &again, Options::default()).expect("no-op apply");
    assert_eq!(before, dump_all(&node));
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // The spec drops the ENI: netcfg moved it, so it goes back to the host namespace (down,
    // unconfigured); a link netcfg did not move stays where it is.
    node.ip("task-1", &["link", "add", "eth99", "type", "bridge"]);
    let dropped = desired(
        r#"node "n1" {
            ethernet "eth0" { address "10.0.0.2/24"; }
            route "default" via="10.0.0.1" dev="eth0"
            netns "task-1" { route "10.5.0.0/16" type="blackhole"; }
        }"#,
    );
    let p = apply(&mut s, &dropped);
    assert_eq!(moves(&p), vec!["link eth14: move task-1 -> @host"], "{}", p.to_text());
    assert!(node.ip("@host", &["link", "show", "eth14"]).contains("state DOWN"));
    let task = node.ip("task-1", &["-o", "link"]);
    assert!(!task.contains("eth14") && task.contains("eth99"), "{task}");
    assert!(node.map.moved_links("n1", "task-1").is_empty());
    assert!(plan(&mut s, &dropped).is_empty());
    // And in again.
    let p = apply(&mut s, &d);
    assert_eq!(moves(&p), vec!["link eth14: move @host -> task-1"], "{}", p.to_text());
    assert!(plan(&mut s, &d).is_empty());
}

#[test]
fn a_failed_apply_moves_the_link_back_and_restores_what_it_had() {
    if !require_root("a_failed_apply_moves_the_link_back_and_restores_what_it_had") {
        return;
    }
    let node = NodeRoot::new("nl-mvfail");
    let _vpc = make_eni(&node);
    let mut s = session(&node);
    let d = desired(TASK);
    let before = settled_dump(&node);
    assert!(before.iter().any(|(ns, dump)| ns == "@host" && dump.as_deref().unwrap_or("").contains("10.98.0.0")));
    // The kernel refuses a route through a gateway on no link: once right after the move,
    // once as the last op.
    let p = plan(&mut s, &d);
    let moved = p.ops.iter().position(|o| matches!(o.action, Action::MoveLink { .. })).expect("a move");
    for at in [moved + 1, p.ops.len()] {
        let mut p = p.clone();
        let mut bad = p.ops.iter().find(|o| matches!(o.action, Action::AddRoute { .. })).expect("a route").clone();
        if let Action::AddRoute { key, route } = &mut bad.action {
            key.dst = "10.123.0.0/16".parse().unwrap();
            route.via = Some("10.200.0.1".parse().unwrap());
            route.dev = None;
        }
        p.ops.insert(at, bad);
        let err = s.apply(&d, &p, Options::default()).expect_err("the injected op must fail");
        assert!(err.failed.is_some() && err.rollback_failures.is_empty(), "{err:#?}");
        assert_settles(&before, &node);
        assert!(node.map.moved_links("n1", "task-1").is_empty());
    }
    // The node is as before: a fresh plan is the same plan, and it applies.
    assert_eq!(plan(&mut s, &d), p);
    apply(&mut s, &d);
    assert!(plan(&mut s, &d).is_empty());
}

/// Every example (each fixed incident and every node of the fleet) applies into a fresh node
/// root, converges, verifies clean (nft and kernel modules included) and re-plans empty. NICs
/// the example names are made as veths into the LAN namespace, in the host namespace (netcfg
/// moves those of a `netns` where they belong). On a kernel where networking is modules nothing
/// loaded (the full-kernel lane), the plan loads them first.
#[test]
fn every_example_applies_and_verifies() {
    if !require_root("every_example_applies_and_verifies") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("examples")
        .flatten()
        .map(|e| e.path().join("fixed.kdl"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files.push(root.join("fleet/fleet.kdl"));
    // Hosts built from the link kinds distribution kernels have as modules (bonds, VLANs, VRFs,
    // tunnels): on a kernel without them they run in the full-kernel lane.
    let mut hosts: Vec<_> = std::fs::read_dir(root.join("hosts"))
        .expect("examples/hosts")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    hosts.sort();
    assert!(hosts.len() >= 3, "{hosts:?}");
    files.extend(hosts);
    let mut nodes = 0;
    let mut skipped = 0;
    for file in files {
        let mut parsed = netcfg_lang::Parsed::default();
        let bytes = std::fs::read(&file).expect("read");
        parsed.add_file(
            file.display().to_string(),
            Some(file.clone()),
            &bytes,
            &mut netcfg_lang::FsLoader::new([root.clone()]).expect("examples root"),
        );
        assert!(parsed.diagnostics.is_empty(), "{}: {:#?}", file.display(), parsed.diagnostics);
        let compiled = netcfg_compiler::compile(&parsed.spec);
        let errors: Vec<_> =
            compiled.diagnostics.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        for n in &compiled.fleet.nodes {
            nodes += 1;
            let what = format!("{} node {}", file.display(), n.name.value);
            let mut diags = Vec::new();
            let d = netlink::desired(n, &mut diags);
            assert!(diags.iter().all(|d| d.severity != netcfg_lang::Severity::Error), "{what}: {diags:#?}");
            if !kernel_has(&what, d.features.keys().copied()) {
                skipped += 1;
                continue;
            }
            let node = NodeRoot::new("nl-ex");
            let (mut nic, mut in_netns) = (0, 0);
            for (ns, st) in &d.state.namespaces {
                for (name, l) in &st.links {
                    if !matches!(l.kind, netlink::state::LinkKind::Existing { .. }) || (ns == "@host" && name == "eth0")
                    {
                        continue;
                    }
                    let path = node.path_name("@host");
                    nic += 1;
                    in_netns += usize::from(ns != "@host");
                    let peer = format!("nic{nic}");
                    sh(&[
                        "ip",
                        "link",
                        "add",
                        name,
                        "netns",
                        &path,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        &peer,
                        "netns",
                        &node.lan.name,
                    ]);
                }
            }
            let mut s = session(&node);
            let p = apply(&mut s, &d);
            assert!(!p.is_empty(), "{what}");
            // The offline plan is the same projection and diff against a fresh node: it names
            // the same ops on the same objects as the first live plan, except link settings,
            // sysctls the machine already had at the spec's value, and kernel modules (a fresh
            // node's values and modules are unknown offline).
            let offline = netcfg_backends::plan::plan_node(n, &mut Vec::new()).plan;
            let ops = |p: &Plan| -> Vec<String> {
                let mut v: Vec<String> = p
                    .ops
                    .iter()
                    .filter(|o| {
                        !matches!(
                            o.action,
                            Action::SetLink { .. } | Action::LoadModule { .. } | Action::WriteModulesLoad { .. }
                        )
                    })
                    .map(|o| format!("{} {:?}", o.ns, o.object()))
                    .collect();
                v.sort();
                v
            };
            let (offline, live) = (ops(&offline), ops(&p));
            let missing: Vec<_> = live.iter().filter(|o| !offline.contains(o)).collect();
            let extra: Vec<_> = offline.iter().filter(|o| !live.contains(o) && !o.contains(" Sysctl(")).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{what}: only live {missing:?}, only offline {extra:?}");
            let loaded: Vec<String> =
                p.ops.iter().filter(|o| matches!(o.action, Action::LoadModule { .. })).map(|o| o.describe()).collect();
            eprintln!("{what}: {} ops; loaded first: {loaded:?}", p.ops.len());
            let moved = p.ops.iter().filter(|o| matches!(o.action, Action::MoveLink { .. })).count();
            assert_eq!(moved, in_netns, "{what}:\n{}", p.to_text());
            let again = plan(&mut s, &d);
            assert!(again.is_empty(), "{what}: second plan not empty:\n{}", again.to_text());
            assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![], "{what}");
        }
    }
    assert!(nodes - skipped >= 7, "the four incidents and the fleet's three workers: {nodes}, {skipped} skipped");
}

/// Ports of a VLAN-filtering bridge: two access ports on VLAN 10 and 20, a trunk (10 and 20
/// tagged, to VLAN links in its pod) and the bridge's own VLAN 10 with an address.
fn vlan_bridge(c_vlan: u16) -> String {
    format!(
        r#"
node "n1" {{
    ethernet "eth0" {{
        address "10.0.0.2/24"
    }}
    bridge "br0" vlan-filtering=#true vlans="10" pvid=10 untagged="10" {{
        address "10.10.0.254/24"
    }}
    netns "a" {{
        veth "eth0" {{
            address "10.10.0.1/24"
            peer "veth-a" netns="@host" master="br0" vlans="10" pvid=10 untagged="10"
        }}
    }}
    netns "c" {{
        veth "eth0" {{
            address "10.10.0.3/24"
            address "10.20.0.3/24"
            peer "veth-c" netns="@host" master="br0" vlans="{c_vlan}" pvid={c_vlan} untagged="{c_vlan}"
        }}
    }}
    netns "d" {{
        veth "eth0" {{
            peer "veth-d" netns="@host" master="br0" vlans="10,20,100-199"
        }}
        vlan "eth0.10" parent="eth0" id=10 {{
            address "10.10.0.4/24"
        }}
        vlan "eth0.20" parent="eth0" id=20 {{
            address "10.20.0.4/24"
        }}
    }}
}}
"#
    )
}

/// Whether a TCP connection from the node's namespace `from` reaches a server on `addr` in
/// namespace `to` (three tries when `expect` is true, one otherwise).
fn reaches(node: &NodeRoot, from: &str, to: &str, addr: &str, expect: bool) -> bool {
    serve_in(&node.path_name(to), addr, 3, |_| "vlan".to_string());
    let tries = if expect { 3 } else { 1 };
    (0..tries).any(|_| connect_in(&node.path_name(from), addr, 3000) == Conn::Reply("vlan".into()))
}

/// `bridge vlan show` of the node's host namespace, as JSON text.
fn bridge_vlans(node: &NodeRoot) -> String {
    sh(&["bridge", "-n", &node.root.name, "-j", "vlan", "show"])
}

#[test]
fn bridge_port_vlans_apply_in_place_carry_tagged_traffic_and_roll_back() {
    if !require_root("bridge_port_vlans_apply_in_place_carry_tagged_traffic_and_roll_back") {
        return;
    }
    let what = "bridge port VLANs";
    let d = desired(&vlan_bridge(20));
    if !kernel_has(what, d.features.keys().copied()) || !bridge_vlan_filtering(what) {
        return;
    }
    let node = NodeRoot::new("nl-brvlan");
    let mut s = session(&node);
    apply(&mut s, &d);
    assert!(plan(&mut s, &d).is_empty());
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
    let shown = bridge_vlans(&node);
    // VLAN 1, the default PVID every new port gets, is gone from the ports that list VLANs.
    let ports: serde_json::Value = serde_json::from_str(&shown).expect("bridge -j");
    let vids_of = |port: &str| -> Vec<u64> {
        ports
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["ifname"] == port)
            .flat_map(|p| p["vlans"].as_array().cloned().unwrap_or_default())
            .flat_map(|v| {
                let lo = v["vlan"].as_u64().unwrap();
                lo..=v["vlanEnd"].as_u64().unwrap_or(lo)
            })
            .collect()
    };
    assert_eq!(vids_of("veth-a"), vec![10], "{shown}");
    assert_eq!(vids_of("veth-d").len(), 102, "{shown}");
    assert_eq!(vids_of("br0"), vec![10], "{shown}");
    // Tagged frames from the trunk reach the access port of their VLAN, and the bridge's own
    // address on VLAN 10; nothing crosses from VLAN 10 to VLAN 20, even within one subnet.
    assert!(reaches(&node, "a", "d", "10.10.0.4:7001", true), "access 10 -> trunk 10\n{shown}");
    assert!(reaches(&node, "c", "d", "10.20.0.4:7002", true), "access 20 -> trunk 20\n{shown}");
    assert!(reaches(&node, "a", "@host", "10.10.0.254:7003", true), "access 10 -> the bridge's own VLAN 10\n{shown}");
    assert!(!reaches(&node, "a", "c", "10.10.0.3:7004", false), "VLAN 10 reached a port of VLAN 20\n{shown}");
    assert!(!reaches(&node, "d", "c", "10.10.0.3:7005", false), "trunk 10 reached a port of VLAN 20\n{shown}");

    // Moving port c to VLAN 10 is one in-place change: the bridge and the port stay.
    let index = |n: &str| node.ip("@host", &["-j", "link", "show", n]);
    let (br_before, c_before) = (index("br0"), index("veth-c"));
    let d10 = desired(&vlan_bridge(10));
    let p = plan(&mut s, &d10);
    assert_eq!(p.ops.len(), 1, "{}", p.to_text());
    assert!(matches!(&p.ops[0].action, Action::SetLink { name, .. } if name == "veth-c"), "{}", p.to_text());
    assert!(p.to_text().contains("vlans 20 pvid untagged -> 10 pvid untagged"), "{}", p.to_text());
    apply(&mut s, &d10);
    let ifindex = |j: &str| serde_json::from_str::<serde_json::Value>(j).unwrap()[0]["ifindex"].clone();
    assert_eq!(ifindex(&index("br0")), ifindex(&br_before));
    assert_eq!(ifindex(&index("veth-c")), ifindex(&c_before));
    assert!(plan(&mut s, &d10).is_empty());
    assert_eq!(s.verify(&d10, Options::default()).expect("verify"), vec![]);
    assert!(reaches(&node, "a", "c", "10.10.0.3:7006", true), "c is on VLAN 10 now");
    assert!(!reaches(&node, "c", "d", "10.20.0.4:7007", false), "c left VLAN 20");

    // A failing apply back to VLAN 20 restores the VLANs as they were.
    let before = bridge_vlans(&node);
    let (p, snapshot) = s.plan_recorded(&d, Options::default()).expect("plan");
    fail_at_the_end_and_roll_back(&mut s, &d, p, &snapshot, common::unreachable_route);
    assert_eq!(bridge_vlans(&node), before);
    assert!(plan(&mut s, &d10).is_empty());
}

/// A VLAN-filtering bridge with an access port (`veth-a`, VLAN 10) and a trunk (`veth-d`,
/// 102 VLANs) when `vlans`, and the same bridge with `veth-a` alone and no VLAN declared
/// otherwise.
fn trunk_bridge(vlans: bool) -> String {
    let (br, a) =
        if vlans { (r#" vlans="10" pvid=10 untagged="10""#, r#" vlans="10" pvid=10 untagged="10""#) } else { ("", "") };
    let d = if vlans {
        "    netns \"d\" {\n        veth \"eth0\" {\n            peer \"veth-d\" netns=\"@host\" master=\"br0\" vlans=\"10,20,100-199\"\n        }\n    }\n"
    } else {
        ""
    };
    format!(
        r#"
node "n1" {{
    ethernet "eth0" {{
        address "10.0.0.2/24"
    }}
    bridge "br0" vlan-filtering=#true{br} {{
        address "10.10.0.254/24"
    }}
    netns "a" {{
        veth "eth0" {{
            address "10.10.0.1/24"
            peer "veth-a" netns="@host" master="br0"{a}
        }}
    }}
{d}}}
"#
    )
}

/// A spec that declares no VLAN does not have the bridge VLANs read for its plan (a no-op reads
/// less), yet a plan with ops records them: a rollback recreates a deleted trunk port with its
/// 102 VLANs and puts back the ones the kernel changed.
#[test]
fn vlans_not_declared_are_not_read_for_a_plan_but_a_rollback_restores_them() {
    let name = "vlans_not_declared_are_not_read_for_a_plan_but_a_rollback_restores_them";
    if !require_root(name) {
        return;
    }
    let d = desired(&trunk_bridge(true));
    if !kernel_has(name, d.features.keys().copied()) || !bridge_vlan_filtering(name) {
        return;
    }
    let node = NodeRoot::new("nl-vlanunread");
    let mut s = session(&node);
    apply(&mut s, &d);
    let before = bridge_vlans(&node);
    let bare = desired(&trunk_bridge(false));
    // The plan compares no VLAN, so it did not read them: the live ports hold none.
    let (live, _) = s.live(&bare).expect("live");
    assert!(live.vlans_unread.contains("@host"), "{:?}", live.vlans_unread);
    let port = &live.state.namespaces["@host"].links["veth-a"];
    assert_eq!(port.opts.vlans, None);
    // The spec with VLANs reads them.
    let (live, _) = s.live(&d).expect("live");
    assert!(live.vlans_unread.is_empty());
    assert!(live.state.namespaces["@host"].links["veth-d"].opts.vlans.is_some());
    // A plan with ops records them, and a failed apply puts them back.
    let (p, snapshot) = s.plan_recorded(&bare, Options::default()).expect("plan");
    assert!(p.to_text().contains("veth-d"), "{}", p.to_text());
    let trunk = &snapshot.state.namespaces["@host"].links["veth-d"];
    assert_eq!(trunk.opts.vlans.as_ref().map_or(0, |v| v.len()), 102, "{:?}", trunk.opts.vlans);
    fail_at_the_end_and_roll_back(&mut s, &bare, p, &snapshot, common::unreachable_route);
    assert_eq!(bridge_vlans(&node), before);
    assert!(plan(&mut s, &d).is_empty());
    // Applied, the spec without VLANs is a no-op whose snapshot holds none.
    apply(&mut s, &bare);
    let (p, snapshot) = s.plan_recorded(&bare, Options::default()).expect("plan");
    assert!(p.is_empty(), "{}", p.to_text());
    assert_eq!(snapshot.state.namespaces["@host"].links["br0"].opts.vlans, None);
}

/// A spec that finds a NIC by its MAC: `wan0` is the link with `mac`.
fn by_mac(name: &str, mac: &str) -> String {
    format!(
        r#"
node "n1" {{
    ethernet "eth0" {{
        address "10.0.0.2/24"
    }}
    ethernet "{name}" match-mac="{mac}" mtu=1400 {{
        address "192.0.2.2/24"
    }}
    route "198.51.100.0/24" via="192.0.2.1"
}}
"#
    )
}

/// The messages of a plan that must fail with conflicts.
fn conflicts(s: &mut Session, d: &netlink::Desired) -> Vec<String> {
    match s.plan(d, Options::default()) {
        Err(netlink::PlanError::Conflicts(ds)) => ds.iter().map(|d| format!("{}: {}", d.code.id, d.message)).collect(),
        Err(e) => panic!("{e}"),
        Ok(p) => panic!("planned:\n{}", p.to_text()),
    }
}

#[test]
fn an_ethernet_found_by_its_mac_is_renamed_and_a_failed_apply_renames_it_back() {
    if !require_root("an_ethernet_found_by_its_mac_is_renamed_and_a_failed_apply_renames_it_back") {
        return;
    }
    let node = NodeRoot::new("nl-bymac");
    let mac = "02:5a:00:00:00:07";
    let ip = |args: &[&str]| node.ip("@host", args);
    sh(&[
        "ip",
        "link",
        "add",
        "nic-7f3a",
        "netns",
        &node.root.name,
        "type",
        "veth",
        "peer",
        "name",
        "lan7",
        "netns",
        &node.lan.name,
    ]);
    ip(&["link", "set", "nic-7f3a", "address", mac, "up"]);
    let names = || -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&ip(&["-j", "link", "show"])).unwrap();
        let mut n: Vec<String> =
            v.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let mut s = session(&node);
    let d = desired(&by_mac("wan0", mac));

    // A failed first apply renames the NIC back, with everything as it was.
    let before = node.settled_full_dump(&[]);
    let (p, snapshot) = s.plan_recorded(&d, Options::default()).expect("plan");
    assert!(
        matches!(&p.ops[0].action, Action::RenameLink { from, to } if from == "nic-7f3a" && to == "wan0"),
        "{}",
        p.to_text()
    );
    assert!(p.to_text().contains("link wan0: rename nic-7f3a -> wan0"), "{}", p.to_text());
    fail_at_the_end_and_roll_back(&mut s, &d, p, &snapshot, |last| netlink::Op {
        ns: last.ns.clone(),
        ..common::unreachable_route(last)
    });
    assert!(names().contains(&"nic-7f3a".to_string()), "{:?}", names());
    let after = node.settled_full_dump(&[]);
    assert!(after == before, "the node differs after rollback:\n{}", dump_difference(&before, &after));

    // Applied: renamed, configured under its new name, in sync.
    apply(&mut s, &d);
    assert!(names().contains(&"wan0".to_string()) && !names().contains(&"nic-7f3a".to_string()), "{:?}", names());
    let wan: serde_json::Value = serde_json::from_str(&ip(&["-j", "addr", "show", "wan0"])).unwrap();
    assert_eq!(wan[0]["mtu"], 1400);
    assert_eq!(wan[0]["address"], mac);
    assert_eq!(wan[0]["addr_info"][0]["local"], "192.0.2.2", "{wan}");
    assert!(plan(&mut s, &d).is_empty());
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // Renamed again to another name: one op, then in sync.
    let d1 = desired(&by_mac("uplink", mac));
    let p = plan(&mut s, &d1);
    assert!(
        matches!(&p.ops[0].action, Action::RenameLink { from, to } if from == "wan0" && to == "uplink"),
        "{}",
        p.to_text()
    );
    apply(&mut s, &d1);
    assert!(plan(&mut s, &d1).is_empty());

    // What cannot be decided is an error before any change: no link has the MAC, the name is
    // another device's, two links have the MAC.
    let none = conflicts(&mut s, &desired(&by_mac("wan9", "02:5a:00:00:00:99")));
    assert_eq!(
        none,
        vec!["missing-link: no link in the host namespace has the MAC 02:5a:00:00:00:99, and none is named `wan9`"]
    );
    sh(&[
        "ip",
        "link",
        "add",
        "taken0",
        "netns",
        &node.root.name,
        "type",
        "veth",
        "peer",
        "name",
        "lan9",
        "netns",
        &node.lan.name,
    ]);
    let taken = conflicts(&mut s, &desired(&by_mac("taken0", mac)));
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(
        taken[0]
            .starts_with("missing-link: link `taken0` in the host namespace is not the NIC with MAC 02:5a:00:00:00:07"),
        "{taken:?}"
    );
    sh(&[
        "ip",
        "link",
        "add",
        "nic-dup",
        "netns",
        &node.root.name,
        "type",
        "veth",
        "peer",
        "name",
        "lan8",
        "netns",
        &node.lan.name,
    ]);
    ip(&["link", "set", "nic-dup", "address", mac]);
    let two = conflicts(&mut s, &desired(&by_mac("wan1", mac)));
    assert_eq!(
        two,
        vec!["missing-link: 2 links in the host namespace have the MAC 02:5a:00:00:00:07: `nic-dup`, `uplink`"]
    );
    assert!(names().contains(&"uplink".to_string()), "nothing was applied: {:?}", names());
}

/// Ends `plan` with an op the kernel refuses (`refused`, made from the plan's last op), applies
/// it, and asserts the apply failed and rolled back completely.
fn fail_at_the_end_and_roll_back(
    s: &mut netlink::Session,
    d: &netlink::Desired,
    mut plan: netlink::Plan,
    snapshot: &netlink::Snapshot,
    refused: impl Fn(&netlink::Op) -> netlink::Op,
) {
    let last = plan.ops.last().expect("a plan with ops").clone();
    plan.ops.push(refused(&last));
    let err = s
        .apply_recorded(d, &plan, Options::default(), snapshot, netlink::ApplyConfig::default())
        .expect_err("the route has no way out");
    assert!(err.rollback.is_complete(), "{}", err.rollback.describe());
}

/// A bridge made with many ports joins them with multicast snooping off (with it on, the kernel
/// re-arms every port's multicast timers at each port that comes up: quadratic) and ends with
/// the snooping the spec wants; a bridge the spec keeps quiet, and a small one, are made as the
/// spec says. A fault between the bridge and its last port leaves the node as before.
#[test]
fn a_bridge_made_with_many_ports_ends_with_the_multicast_snooping_the_spec_wants() {
    if !require_root("a_bridge_made_with_many_ports_ends_with_the_multicast_snooping_the_spec_wants") {
        return;
    }
    let node = NodeRoot::new("nl-quiet");
    let n = netlink::apply::QUIET_BRIDGE_PORTS;
    let mut src = String::from(
        "node \"n1\" {\n    ethernet \"eth0\" { address \"10.0.0.2/24\"; }\n    bridge \"br0\"\n    \
         bridge \"br1\" multicast-snooping=#false\n    bridge \"br2\" multicast-snooping=#true\n",
    );
    for i in 0..n {
        src.push_str(&format!("    veth \"qa{i}\" master=\"br0\" {{ peer \"qb{i}\"; }}\n"));
        src.push_str(&format!("    veth \"ra{i}\" master=\"br1\" {{ peer \"rb{i}\"; }}\n"));
    }
    // br2's ports: one made with it, one given it as master from the other end of a pair.
    src.push_str("    veth \"sa0\" master=\"br2\" { peer \"sb0\"; }\n");
    src.push_str("    veth \"sa1\" { peer \"sb1\" master=\"br2\"; }\n}\n");
    let d = desired(&src);
    let mut s = session(&node);

    let (first, snapshot) = s.plan_recorded(&d, Options::default()).expect("plan");
    let quiet = netlink::apply::quiet_bridges(&first.ops);
    let creates = |prefix: &str| {
        first
            .ops
            .iter()
            .rposition(|o| matches!(&o.action, Action::CreateLink { name, .. } if name.starts_with(prefix)))
            .expect("ports")
    };
    let last_br0_port = creates("qa");
    assert_eq!(
        quiet.into_iter().collect::<Vec<_>>(),
        vec![(("@host".to_string(), "br0".to_string()), (last_br0_port, true))],
        "{}",
        first.to_text()
    );

    // A fault halfway through br0's ports: the bridge goes with the rest.
    let before = node.settled_full_dump(SYSCTLS);
    let config = netlink::ApplyConfig { fail_at: Some(last_br0_port - n / 2), ..netlink::ApplyConfig::default() };
    let err = s.apply_recorded(&d, &first, Options::default(), &snapshot, config).expect_err("injected fault");
    assert!(err.rollback.is_complete(), "{}", err.rollback.describe());
    assert_eq!(node.settled_full_dump(SYSCTLS), before);

    apply(&mut s, &d);
    assert!(plan(&mut s, &d).is_empty(), "not converged");
    for (br, want) in [("br0", "mcast_snooping 1"), ("br1", "mcast_snooping 0"), ("br2", "mcast_snooping 1")] {
        let shown = node.ip("@host", &["-d", "link", "show", br]);
        assert!(shown.contains(want), "{br}: want {want}:\n{shown}");
    }
    let ports = node.ip("@host", &["-o", "link", "show", "master", "br0"]);
    assert_eq!(ports.lines().count(), n, "{ports}");
    let ports = node.ip("@host", &["-o", "link", "show", "master", "br2"]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
}
