//! Dynamic sets on a real kernel, through the real apply path: a connection to a trap port
//! puts its source in a ban list and that source's next connection to an allowed port is
//! dropped while another source still gets through; the ban survives a re-apply of a changed
//! spec (the carried elements) and a no-op re-apply plans nothing; new seeds alone re-apply;
//! a change of the set's type drops the ban; a short timeout expires.

mod common;

use common::{compile, connect_in, require_root, serve_in, sh, Conn, NodeRoot};
use netcfg_backends::netlink::{self, Desired, Options, Plan, Session};

fn desired(src: &str) -> Desired {
    let fleet = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&fleet.nodes[0], &mut diags);
    let errors: Vec<_> = diags.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    d
}

fn apply(s: &mut Session, d: &Desired) -> Plan {
    let p = s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    p
}

/// The node's firewall with `extra` rules at the end and `set` as the ban list's declaration.
fn spec(set: &str, extra: &str) -> String {
    format!(
        r#"
node "n" {{
    ethernet "eth0" {{ address "10.0.0.2/24"; }}
    ethernet "eth1" {{ address "10.9.0.1/24"; }}
    firewall {{
        policy in="drop"
        {set}
        deny in from="@banned"
        deny in proto="tcp" port=2323 add-to="@banned" comment="trap"
        allow in proto="tcp" port=8080
        {extra}
    }}
}}
"#
    )
}

/// The addresses `nft list set` shows in the node's set (empty when the set is absent).
fn members(node: &NodeRoot, set: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &node.root.name, "nft", "list", "set", "inet", "netcfg", set])
        .output()
        .expect("nft");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| l.trim_start().starts_with("elements =")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_trap_port_bans_its_source_and_the_ban_survives_a_reapply() {
    if !require_root("a_trap_port_bans_its_source_and_the_ban_survives_a_reapply") {
        return;
    }
    let node = NodeRoot::new("dynset");
    // A second client on another link of the node: a ban is per source.
    let other = common::Netns::new("dynset-b");
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
        "b0",
        "netns",
        &other.name,
    ]);
    sh(&["ip", "-n", &other.name, "link", "set", "b0", "up"]);
    sh(&["ip", "-n", &other.name, "addr", "add", "10.9.0.2/24", "dev", "b0"]);
    serve_in(&node.root.name, "0.0.0.0:8080", 100, |_| "web".into());
    serve_in(&node.root.name, "0.0.0.0:2323", 100, |_| "trap".into());
    serve_in(&node.root.name, "0.0.0.0:9000", 100, |_| "extra".into());
    let lan = node.lan.name.clone();
    let web = || connect_in(&lan, "10.0.0.2:8080", 700);
    let mut s = Session::new(node.map.clone()).expect("runtime");

    let banned = r#"set "banned" dynamic=#true timeout="1h""#;
    apply(&mut s, &desired(&spec(banned, "")));
    assert_eq!(web(), Conn::Reply("web".into()), "not banned yet");
    assert_eq!(members(&node, "set-banned-v4"), "", "the ban list starts empty");

    assert_eq!(connect_in(&lan, "10.0.0.2:2323", 700), Conn::TimedOut, "the trap drops");
    assert!(members(&node, "set-banned-v4").contains("10.0.0.1"), "the trap bans its source");
    assert_eq!(web(), Conn::TimedOut, "a banned source is dropped on an allowed port");
    assert_eq!(connect_in(&other.name, "10.9.0.1:8080", 700), Conn::Reply("web".into()), "another source is not");

    // Traffic filled the set: that is state, not drift.
    let p = s.plan(&desired(&spec(banned, "")), Options::default()).expect("plan");
    assert!(p.ops.is_empty(), "a no-op re-apply must plan nothing:\n{}", p.to_text());

    // A changed spec replaces the table; the ban is carried into the same transaction.
    let changed = spec(banned, r#"allow in proto="tcp" port=9000"#);
    let p = apply(&mut s, &desired(&changed));
    assert!(!p.ops.is_empty(), "the extra rule changes the table");
    assert!(members(&node, "set-banned-v4").contains("10.0.0.1"), "the ban survives the re-apply");
    assert_eq!(web(), Conn::TimedOut, "still banned after the re-apply");
    assert_eq!(connect_in(&lan, "10.0.0.2:9000", 700), Conn::TimedOut, "banned before the new rule");
    assert_eq!(connect_in(&other.name, "10.9.0.1:9000", 700), Conn::Reply("extra".into()), "the new rule works");
    let p = s.plan(&desired(&changed), Options::default()).expect("plan");
    assert!(p.ops.is_empty(), "converged:\n{}", p.to_text());

    // A change of the seeds alone is a change of the table (the comment's digest), applied
    // with the run-time elements kept.
    let seeded = spec(r#"set "banned" dynamic=#true timeout="1h" { element "203.0.113.66"; }"#, "");
    let p = s.plan(&desired(&seeded), Options::default()).expect("plan");
    assert!(!p.ops.is_empty(), "new seeds must change the table");
    apply(&mut s, &desired(&seeded));
    let now = members(&node, "set-banned-v4");
    assert!(now.contains("203.0.113.66") && now.contains("10.0.0.1"), "seed added, ban kept: {now}");
    let p = s.plan(&desired(&seeded), Options::default()).expect("plan");
    assert!(p.ops.is_empty(), "converged:\n{}", p.to_text());

    // The set's type changes (IPv6 only): its IPv4 elements go with the IPv4 set.
    let v6 = r#"set "banned" dynamic=#true timeout="1h" family="ipv6""#;
    apply(&mut s, &desired(&spec(v6, "")));
    assert_eq!(web(), Conn::Reply("web".into()), "the IPv4 ban went with the IPv4 set");
}

#[test]
fn a_dynamic_set_element_expires_after_its_timeout() {
    if !require_root("a_dynamic_set_element_expires_after_its_timeout") {
        return;
    }
    let node = NodeRoot::new("dynexp");
    serve_in(&node.root.name, "0.0.0.0:8080", 100, |_| "web".into());
    let lan = node.lan.name.clone();
    let mut s = Session::new(node.map.clone()).expect("runtime");
    let src = r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    firewall {
        policy in="drop"
        set "banned" dynamic=#true timeout="2s"
        deny in from="@banned"
        deny in proto="tcp" port=2323 add-to="@banned"
        allow in proto="tcp" port=8080
    }
}
"#;
    apply(&mut s, &desired(src));
    assert_eq!(connect_in(&lan, "10.0.0.2:2323", 500), Conn::TimedOut);
    let banned_at = std::time::Instant::now();
    assert!(members(&node, "set-banned-v4").contains("10.0.0.1"), "banned");
    assert_eq!(connect_in(&lan, "10.0.0.2:8080", 500), Conn::TimedOut, "dropped while banned");
    // The element goes by itself: poll the set with a deadline instead of sleeping a fixed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while members(&node, "set-banned-v4").contains("10.0.0.1") {
        assert!(std::time::Instant::now() < deadline, "the element never expired");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(banned_at.elapsed() >= std::time::Duration::from_millis(1000), "expired too early");
    assert_eq!(connect_in(&lan, "10.0.0.2:8080", 700), Conn::Reply("web".into()), "let in after the timeout");
}
