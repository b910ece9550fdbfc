//! Real TCP traffic through a compiled ruleset: a service VIP in a router namespace DNATs
//! connections from a client namespace to two backend namespaces, weights honoured; a port the
//! policy rejects is refused and one it drops times out.

mod common;

use common::{compile, connect, require_root, serve, sh, wire, Conn, Netns};
use netcfg_backends::nftables::{self, exec, exec::Target};

#[test]
fn service_vip_balances_over_both_backends_and_policy_holds() {
    if !require_root("service_vip_balances_over_both_backends_and_policy_holds") {
        return;
    }
    let gw = Netns::new("gw");
    let client = Netns::new("cli");
    let b1 = Netns::new("b1");
    let b2 = Netns::new("b2");
    wire(&gw, "to-cli", "10.1.0.1/24", &client, "eth0", "10.1.0.2/24");
    wire(&gw, "to-b1", "10.2.0.1/24", &b1, "eth0", "10.2.0.2/24");
    wire(&gw, "to-b2", "10.3.0.1/24", &b2, "eth0", "10.3.0.2/24");
    for (ns, via) in [(&client, "10.1.0.1"), (&b1, "10.2.0.1"), (&b2, "10.3.0.1")] {
        sh(&["ip", "-n", &ns.name, "route", "add", "default", "via", via]);
    }
    gw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    serve(&b1, "0.0.0.0:8080", "b1", 1000);
    serve(&b2, "0.0.0.0:8080", "b2", 1000);
    serve(&b1, "0.0.0.0:9090", "b1-9090", 10);
    serve(&b1, "0.0.0.0:7070", "b1-7070", 10);

    let spec = r#"
node "gw" {
    ethernet "to-cli" { address "10.1.0.1/24"; }
    ethernet "to-b1" { address "10.2.0.1/24"; }
    ethernet "to-b2" { address "10.3.0.1/24"; }
    forwarding #true
    firewall {
        policy forward="drop"
        allow forward proto="tcp" port=7070 from="10.1.0.0/24"
        reject forward proto="tcp" port=9090
    }
    service "web" vip="10.96.0.10" port=80 {
        backend "10.2.0.2:8080"
        backend "10.3.0.2:8080" weight=3
    }
    service "empty" vip="10.96.0.11" port=80
}
"#;
    let fleet = compile(spec);
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty());

    // Before the ruleset: the VIP leads nowhere (no route), 9090 is open.
    assert_eq!(connect(&client, "10.2.0.2:9090", 2000), Conn::Reply("b1-9090".into()));
    assert_ne!(connect(&client, "10.96.0.10:80", 500), Conn::Reply("b1".into()));

    exec::apply(&Target::Named(gw.name.clone()), &host.script).expect("apply");
    // The client needs a route to the VIP: via the gateway (its default route).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        match connect(&client, "10.96.0.10:80", 2000) {
            Conn::Reply(who) => *seen.entry(who).or_insert(0) += 1,
            other => panic!("connection to the VIP failed: {other:?}"),
        }
    }
    let (n1, n2) = (seen.get("b1").copied().unwrap_or(0), seen.get("b2").copied().unwrap_or(0));
    assert!(n1 > 0 && n2 > 0, "both backends must receive connections: {seen:?}");
    // Weight 1:3 — with 60 draws b2 gets more than b1 with overwhelming probability.
    assert!(n2 > n1, "weights are not honoured: {seen:?}");

    assert_eq!(connect(&client, "10.2.0.2:9090", 2000), Conn::Refused, "rejected port must be refused");
    assert_eq!(connect(&client, "10.2.0.2:7070", 2000), Conn::Reply("b1-7070".into()), "allowed port");
    assert_eq!(connect(&client, "10.2.0.2:22", 700), Conn::TimedOut, "the drop policy drops the rest");
    assert_eq!(connect(&client, "10.96.0.11:80", 2000), Conn::Refused, "a service without backends refuses");

    // Hairpin: a backend reaching its own service, sometimes itself, is masqueraded so the
    // reply comes back through the gateway and is un-NATed.
    let mut hairpin = std::collections::BTreeMap::new();
    for _ in 0..30 {
        match connect(&b1, "10.96.0.10:80", 2000) {
            Conn::Reply(who) => *hairpin.entry(who).or_insert(0) += 1,
            other => panic!("hairpin connection failed: {other:?} after {hairpin:?}"),
        }
    }
    assert!(hairpin.contains_key("b1"), "b1 never reached itself: {hairpin:?}");
}
