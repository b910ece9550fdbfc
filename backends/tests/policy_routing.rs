//! Policy routing on the real kernel, as root, in namespaces the test creates: rules, named
//! tables, throw/local routes, route attributes and multipath routes apply, read back (with
//! `ip`, independently of netcfg's reader), verify and re-plan empty; real packets take the
//! path the rules choose; a failed apply leaves the rules as they were; only netcfg's rules go.

mod common;

use common::*;
use netcfg_backends::netlink::{self, ApplyConfig, Options, Session};

/// The node: `eth1` to upstream A (its main-table default route), `eth2` to upstream B (table
/// `isp-b`), and a client namespace behind `cl0` whose forwarded traffic the rules send to B.
const SPEC: &str = r#"
node "pr" {
    table "isp-b" id=200
    ethernet "eth0" { address "10.0.0.2/24"; }
    ethernet "eth1" {
        address "10.1.0.2/24"
        address "fd00:1::2/64"
    }
    ethernet "eth2" {
        address "10.2.0.2/24"
        address "fd00:2::2/64"
    }
    forwarding #true
    rp-filter "loose"
    route "default" via="10.1.0.1" dev="eth1"
    route "default" via="10.2.0.1" dev="eth2" table="isp-b" mtu=1400 advmss=1360 initcwnd=10 initrwnd=20
    route "10.8.0.0/16" type="throw" table="isp-b"
    route "10.9.0.0/16" {
        nexthop via="10.1.0.1" dev="eth1" weight=3
        nexthop via="10.2.0.1" dev="eth2"
    }
    route "192.0.2.10" type="local" dev="lo"
    route "fd00:9::/48" {
        nexthop via="fd00:1::1" dev="eth1" weight=2
        nexthop via="fd00:2::1" dev="eth2"
    }
    route "fd00:8::/48" via="fd00:2::1" dev="eth2" table="isp-b" mtu=1300
    route "fd00:6::1" type="local" dev="lo"
    rule priority=100 from="10.50.0.0/24" table="isp-b"
    rule priority=110 fwmark="0x10/0xff" table="isp-b"
    rule priority=120 to="198.51.100.0/24" action="prohibit"
    rule priority=130 iif="eth1" ipproto="tcp" dport="8000-8100" table="main"
    rule priority=140 oif="eth2" suppress-prefixlength=0 table="main"
    rule priority=150 goto=160
    rule priority=160 l3mdev=#true
    rule priority=170 family="ipv6" to="fd00:99::/64" action="unreachable"
    netns "client" {
        veth "eth0" {
            address "10.50.0.2/24"
            peer "cl0" netns="@host" { address "10.50.0.1/24"; }
        }
        route "default" via="10.50.0.1" dev="eth0"
    }
}
"#;

fn desired(src: &str) -> netlink::Desired {
    let compiled = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&compiled.nodes[0], &mut diags);
    assert!(diags.iter().all(|d| d.severity != netcfg_lang::Severity::Error), "{diags:#?}");
    d
}

fn apply(s: &mut Session, d: &netlink::Desired) -> netlink::Plan {
    let p = s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    p
}

/// Two upstreams, each with a server on the same address 203.0.113.10 (and on 10.8.0.1) that
/// names itself, and a route back to the client's subnet through the node.
fn upstreams(node: &NodeRoot) -> (Netns, Netns) {
    let mut out = Vec::new();
    for (tag, nic, subnet) in [("pr-a", "eth1", "10.1.0"), ("pr-b", "eth2", "10.2.0")] {
        let up = Netns::new(tag);
        sh(&[
            "ip",
            "link",
            "add",
            nic,
            "netns",
            &node.root.name,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &up.name,
        ]);
        up.exec(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", "up0"]);
        up.exec(&["ip", "link", "set", "up0", "up"]);
        up.exec(&["ip", "link", "set", "lo", "up"]);
        up.exec(&["ip", "addr", "add", "203.0.113.10/32", "dev", "lo"]);
        up.exec(&["ip", "addr", "add", "10.8.0.1/32", "dev", "lo"]);
        up.exec(&["ip", "route", "add", "10.50.0.0/24", "via", &format!("{subnet}.2")]);
        out.push(up);
    }
    let b = out.pop().expect("b");
    let a = out.pop().expect("a");
    (a, b)
}

#[test]
fn rules_tables_and_route_attributes_apply_verify_and_steer_real_packets() {
    if !require_root("rules_tables_and_route_attributes_apply_verify_and_steer_real_packets") {
        return;
    }
    let node = NodeRoot::new("pr");
    let (a, b) = upstreams(&node);
    // A rule netcfg does not own, in a table the spec uses.
    node.ip("@host", &["rule", "add", "priority", "500", "from", "10.77.0.0/16", "table", "200"]);
    let d = desired(SPEC);
    let mut s = Session::new(node.map.clone()).expect("session");
    let p = apply(&mut s, &d);
    let text = p.to_text();
    // Rules come after the routes of the tables they use.
    let route = text.find("route 0.0.0.0/0 via 10.2.0.1").unwrap_or_else(|| panic!("{text}"));
    let rule = text.find("rule 100: from 10.50.0.0/24 lookup 200").unwrap_or_else(|| panic!("{text}"));
    assert!(route < rule, "{text}");

    // Read back with `ip`.
    let rules = node.ip("@host", &["rule", "show"]);
    let rules6 = node.ip("@host", &["-6", "rule", "show"]);
    for want in [
        "100:\tfrom 10.50.0.0/24 lookup 200 proto 110",
        "110:\tfrom all fwmark 0x10/0xff lookup 200 proto 110",
        "120:\tfrom all to 198.51.100.0/24 prohibit proto 110",
        "130:\tfrom all iif eth1 ipproto tcp dport 8000-8100 lookup main proto 110",
        "140:\tfrom all oif eth2 lookup main suppress_prefixlength 0 proto 110",
        "150:\tfrom all goto 160 proto 110",
        "160:\tfrom all lookup [l3mdev-table] proto 110",
        "500:\tfrom 10.77.0.0/16 lookup 200",
        "32766:\tfrom all lookup main",
    ] {
        assert!(rules.contains(want), "missing `{want}` in:\n{rules}");
    }
    assert!(rules6.contains("170:\tfrom all to fd00:99::/64 unreachable proto 110"), "{rules6}");
    assert!(rules6.contains("110:\tfrom all fwmark 0x10/0xff lookup 200 proto 110"), "{rules6}");
    assert!(!rules6.contains("10.50.0.0"), "an IPv4 rule is IPv4 only:\n{rules6}");
    let t200 = node.ip("@host", &["route", "show", "table", "200"]);
    assert!(
        t200.contains("default via 10.2.0.1 dev eth2 proto 110 mtu 1400 advmss 1360 initcwnd 10 initrwnd 20"),
        "{t200}"
    );
    assert!(t200.contains("throw 10.8.0.0/16 proto 110"), "{t200}");
    let mp = node.ip("@host", &["route", "show", "10.9.0.0/16"]);
    assert!(
        mp.contains("nexthop via 10.1.0.1 dev eth1 weight 3") && mp.contains("nexthop via 10.2.0.1 dev eth2 weight 1"),
        "{mp}"
    );
    let mp6 = node.ip("@host", &["-6", "route", "show", "fd00:9::/48"]);
    assert!(
        mp6.contains("nexthop via fd00:1::1 dev eth1 weight 2")
            && mp6.contains("nexthop via fd00:2::1 dev eth2 weight 1"),
        "{mp6}"
    );
    let t200v6 = node.ip("@host", &["-6", "route", "show", "table", "200"]);
    assert!(t200v6.contains("fd00:8::/48 via fd00:2::1 dev eth2 proto 110 metric 1024 mtu 1300"), "{t200v6}");
    assert!(node
        .ip("@host", &["-6", "route", "show", "table", "local", "fd00:6::1"])
        .contains("local fd00:6::1 dev lo proto 110"));
    let local = node.ip("@host", &["route", "show", "table", "local", "192.0.2.10"]);
    assert!(local.contains("local 192.0.2.10 dev lo proto 110 scope host"), "{local}");

    // Idempotent, verify clean.
    assert!(s.plan(&d, Options::default()).expect("plan").is_empty());
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // Real packets: the node's own traffic takes main (A); the client's, by its source, takes
    // table isp-b (B); a destination thrown out of isp-b falls back to main (A); a local route
    // delivers an address no link has; a prohibit rule refuses.
    serve(&a, "203.0.113.10:80", "a", 10);
    serve(&b, "203.0.113.10:80", "b", 10);
    serve(&a, "10.8.0.1:80", "a", 10);
    serve(&b, "10.8.0.1:80", "b", 10);
    serve_in(&node.root.name, "192.0.2.10:80", 10, |_| "node".into());
    let client = node.path_name("client");
    assert_eq!(connect_in(&node.root.name, "203.0.113.10:80", 3000), Conn::Reply("a".into()));
    assert_eq!(connect_in(&client, "203.0.113.10:80", 3000), Conn::Reply("b".into()));
    assert_eq!(connect_in(&client, "10.8.0.1:80", 3000), Conn::Reply("a".into()));
    assert_eq!(connect_in(&client, "192.0.2.10:80", 3000), Conn::Reply("node".into()));
    match connect_in(&node.root.name, "198.51.100.1:80", 3000) {
        Conn::Other(e) => assert!(e.contains("ermission denied"), "{e}"),
        other => panic!("a prohibit rule must refuse at once: {other:?}"),
    }

    // A failed apply of a changed spec (a rule moved, another gone, the table's route
    // changed) leaves the rules and routes exactly as they were.
    let changed = SPEC
        .replace("rule priority=100 from=\"10.50.0.0/24\"", "rule priority=105 from=\"10.50.0.0/25\"")
        .replace("    rule priority=120 to=\"198.51.100.0/24\" action=\"prohibit\"\n", "")
        .replace("mtu=1400", "mtu=1300");
    let d2 = desired(&changed);
    let before = node.settled_full_dump(&[]);
    let (plan, snapshot) = s.plan_recorded(&d2, Options::default()).expect("plan");
    let describe: Vec<String> = plan.ops.iter().map(|o| o.describe()).collect();
    for want in ["rule 100: from 10.50.0.0/24 lookup 200", "rule 105: from 10.50.0.0/25 lookup 200", "rule 120:"] {
        assert!(describe.iter().any(|d| d.starts_with(want)), "`{want}` not in {describe:#?}");
    }
    for k in [1, plan.ops.len() - 1] {
        let config = ApplyConfig { fail_at: Some(k), ..ApplyConfig::default() };
        let err = s.apply_recorded(&d2, &plan, Options::default(), &snapshot, config).expect_err("fault");
        assert!(err.rollback.is_complete(), "{}", err.rollback.describe());
        let after = node.full_dump(&[]);
        assert!(after == before, "k={k}: differs after rollback:\n{}", dump_difference(&before, &after));
    }
    apply(&mut s, &d2);
    assert!(s.plan(&d2, Options::default()).expect("plan").is_empty());
    assert_eq!(connect_in(&client, "203.0.113.10:80", 3000), Conn::Reply("b".into()));

    // A spec without policy routing removes netcfg's rules and table routes; the kernel's
    // rules and the hand-made one stay.
    let plain = changed
        .lines()
        .filter(|l| !l.trim_start().starts_with("rule ") && !l.contains("table=\"isp-b\""))
        .collect::<Vec<_>>()
        .join("\n");
    apply(&mut s, &desired(&plain));
    let rules = node.ip("@host", &["rule", "show"]);
    assert!(!rules.contains("proto 110"), "{rules}");
    for want in [
        "0:\tfrom all lookup local",
        "500:\tfrom 10.77.0.0/16 lookup 200",
        "32766:\tfrom all lookup main",
        "32767:\tfrom all lookup default",
    ] {
        assert!(rules.contains(want), "missing `{want}`:\n{rules}");
    }
    assert!(node.ip("@host", &["route", "show", "table", "200"]).trim().is_empty());
    assert_eq!(connect_in(&client, "203.0.113.10:80", 3000), Conn::Reply("a".into()));
}

/// A rule the spec declares that exists already, made by hand (another protocol), is taken
/// over: deleted and added with netcfg's protocol, so that netcfg owns it from then on.
#[test]
fn a_declared_rule_made_by_hand_is_taken_over() {
    if !require_root("a_declared_rule_made_by_hand_is_taken_over") {
        return;
    }
    let node = NodeRoot::new("pr-own");
    node.ip("@host", &["rule", "add", "priority", "100", "from", "10.60.0.0/16", "table", "300"]);
    let spec = r#"node "n" {
        ethernet "eth0" { address "10.0.0.2/24"; }
        rule priority=100 from="10.60.0.0/16" table=300
    }"#;
    let d = desired(spec);
    let mut s = Session::new(node.map.clone()).expect("session");
    let p = apply(&mut s, &d);
    let ops: Vec<String> = p.ops.iter().map(|o| format!("{} {}", o.sign(), o.describe())).collect();
    assert!(ops.contains(&"- rule 100: from 10.60.0.0/16 lookup 300 proto 0".to_string()), "{ops:#?}");
    assert!(ops.contains(&"+ rule 100: from 10.60.0.0/16 lookup 300".to_string()), "{ops:#?}");
    let rules = node.ip("@host", &["rule", "show"]);
    assert_eq!(rules.matches("10.60.0.0/16").count(), 1, "{rules}");
    assert!(rules.contains("100:\tfrom 10.60.0.0/16 lookup 300 proto 110"), "{rules}");
    assert!(s.plan(&d, Options::default()).expect("plan").is_empty());
}
