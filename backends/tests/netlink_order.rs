//! Plan ordering against the real kernel, as root, in namespaces the test creates: what a link
//! depends on (its underlay's or parent's MTU, its bridge) changes before the link, so a spec
//! that needs both applies in one go, and back again.

mod common;

use common::*;
use netcfg_backends::netlink::{self, Options, Plan, Session};

fn desired(src: &str) -> netlink::Desired {
    let fleet = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&fleet.nodes[0], &mut diags);
    let errors: Vec<_> = diags.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    d
}

fn apply(s: &mut Session, d: &netlink::Desired) -> Plan {
    let p = s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    p
}

fn mtu(node: &NodeRoot, ns: &str, link: &str) -> String {
    let out = node.ip(ns, &["-o", "link", "show", link]);
    out.split_whitespace().skip_while(|w| *w != "mtu").nth(1).unwrap_or("?").to_string()
}

/// Jumbo frames on the underlay, a VXLAN and a macvlan sized for them, and a second NIC that is
/// declared before the bridge it joins.
const JUMBO: &str = r#"
node "n1" {
    ethernet "eth1" master="br0"
    ethernet "eth0" mtu=9000 {
        address "10.0.0.2/24"
    }
    vxlan "vx0" vni=42 local="10.0.0.2" remote="10.0.0.1" dev="eth0" mtu=8950 {
        address "172.16.42.2/24"
    }
    netns "app" {
        macvlan "mv0" parent="eth0" mtu=9000 {
            address "10.0.0.50/24"
        }
    }
    bridge "br0" {
        address "192.168.7.1/24"
    }
}
"#;

const STANDARD: &str = r#"
node "n1" {
    ethernet "eth1" master="br0"
    ethernet "eth0" mtu=1500 {
        address "10.0.0.2/24"
    }
    vxlan "vx0" vni=42 local="10.0.0.2" remote="10.0.0.1" dev="eth0" mtu=1450 {
        address "172.16.42.2/24"
    }
    netns "app" {
        macvlan "mv0" parent="eth0" mtu=1500 {
            address "10.0.0.50/24"
        }
    }
    bridge "br0" {
        address "192.168.7.1/24"
    }
}
"#;

#[test]
fn a_vxlan_over_a_jumbo_underlay_applies_in_one_go_and_back() {
    if !require_root("a_vxlan_over_a_jumbo_underlay_applies_in_one_go_and_back") {
        return;
    }
    let node = NodeRoot::new("nl-order");
    sh(&[
        "ip",
        "link",
        "add",
        "eth1",
        "netns",
        &node.root.name,
        "type",
        "veth",
        "peer",
        "name",
        "lan1",
        "netns",
        &node.lan.name,
    ]);
    let mut s = Session::new(node.map.clone()).expect("runtime");

    let d = desired(JUMBO);
    apply(&mut s, &d);
    assert_eq!(mtu(&node, "@host", "eth0"), "9000");
    assert_eq!(mtu(&node, "@host", "vx0"), "8950");
    assert_eq!(mtu(&node, "app", "mv0"), "9000");
    // The NIC declared above its bridge is in it (the resolver no longer depends on order).
    let eth1 = node.ip("@host", &["-d", "link", "show", "eth1"]);
    assert!(eth1.contains("master br0"), "{eth1}");
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // Back to standard frames: the VXLAN and the macvlan shrink before their lower link.
    let d = desired(STANDARD);
    let p = apply(&mut s, &d);
    assert!(!p.is_empty());
    assert_eq!(mtu(&node, "@host", "eth0"), "1500");
    assert_eq!(mtu(&node, "@host", "vx0"), "1450");
    assert_eq!(mtu(&node, "app", "mv0"), "1500");
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // And up again with everything existing: the underlay grows first.
    let d = desired(JUMBO);
    apply(&mut s, &d);
    assert_eq!(mtu(&node, "@host", "vx0"), "8950");
    assert_eq!(mtu(&node, "app", "mv0"), "9000");
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
}
