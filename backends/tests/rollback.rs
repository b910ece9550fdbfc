//! A failed apply on the real kernel: nothing is skipped silently (a ruleset nft refuses fails
//! plan, apply and verify with nft's words on the spec), the rollback is a plan back to the
//! recorded state and leaves every namespace exactly as before (the issue's named cases), and
//! namespace ownership is scoped to the node root exactly.

mod common;

use common::*;
use netcfg_backends::netlink::{self, Action, ApplyConfig, Options, PlanError, Session};

fn desired(src: &str) -> netlink::Desired {
    let fleet = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&fleet.nodes[0], &mut diags);
    let errors: Vec<_> = diags.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    d
}

fn apply(s: &mut Session, d: &netlink::Desired) {
    let p = s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    assert!(s.plan(d, Options::default()).expect("plan").is_empty(), "apply did not converge");
}

const SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"];

/// Applies `a`, then `b` with op `k` of its plan failing (`None`: a failing op appended after
/// the whole plan); asserts the rollback says it is complete and every namespace of the node
/// is as after `a`. Returns the length of `b`'s plan.
fn b_fails_and_rolls_back_to_a(node: &NodeRoot, a: &str, b: &str, k: Option<usize>) -> usize {
    let mut s = Session::new(node.map.clone()).expect("session");
    if !a.is_empty() {
        apply(&mut s, &desired(a));
    }
    let before = node.settled_full_dump(SYSCTLS);
    let db = desired(b);
    let (mut plan, snapshot) = s.plan_recorded(&db, Options::default()).expect("plan b");
    let len = plan.ops.len();
    let config = ApplyConfig { fail_at: k, ..ApplyConfig::default() };
    if k.is_none() {
        plan.ops.push(unreachable_route(&plan.ops[0]));
    }
    let err = s.apply_recorded(&db, &plan, Options::default(), &snapshot, config).expect_err("the fault must fail");
    assert!(err.rollback.is_complete(), "{}\nplan:\n{}", err.rollback.describe(), plan.to_text());
    assert!(err.to_diagnostic().help.unwrap_or_default().contains("matches the state recorded before"));
    let mut after = node.full_dump(SYSCTLS);
    for _ in 0..20 {
        if after == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        after = node.full_dump(SYSCTLS);
    }
    assert!(after == before, "k={k:?}: the node differs after rollback:\n{}", dump_difference(&before, &after));
    len
}

#[test]
fn a_ruleset_nft_refuses_fails_plan_apply_and_verify_on_the_spec_line() {
    if !require_root("a_ruleset_nft_refuses_fails_plan_apply_and_verify_on_the_spec_line") {
        return;
    }
    let node = NodeRoot::new("rb-nft");
    let src = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    firewall {
        policy in="drop"
        allow in proto="tcp" port=22
    }
}"#;
    let mut d = desired(src);
    // Make nft refuse the line generated from `allow in proto="tcp" port=22` (same line count,
    // so the script's origins still point at the spec).
    let script = d.nft.get_mut("@host").expect("a script");
    let (line_no, line) = script
        .text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("dport 22"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .expect("rule");
    script.text = script.text.replace(&line, &line.replace("accept", "acceptt"));
    let origin = script.origins[line_no - 1].expect("the rule has a spec origin");
    let mut s = Session::new(node.map.clone()).expect("session");
    let before = node.settled_full_dump(&[]);
    match s.plan(&d, Options::default()) {
        Err(PlanError::Rejected(diags)) => {
            assert_eq!(diags[0].primary.span, origin, "{diags:#?}");
            assert!(diags[0].message.contains("nft rejected"), "{diags:#?}");
        }
        other => panic!("plan must fail with nft's error, got {other:?}"),
    }
    assert!(matches!(s.verify(&d, Options::default()), Err(PlanError::Rejected(_))), "verify must fail");
    let p = s.plan(&desired(src), Options::default()).expect("the untouched spec plans");
    let err = s.apply(&d, &p, Options::default()).expect_err("apply must fail");
    assert!(err.message.contains("nft rejected"), "{err:#?}");
    assert_eq!(node.full_dump(&[]), before, "a refused ruleset changed the node");
}

/// The issue's first named case: a subnet renumbered with its default route; the rollback
/// must put the old address back before the old default route (else "Nexthop has invalid
/// gateway" and the namespace is cut off), at every fault point of the plan.
#[test]
fn rollback_of_a_renumbered_subnet_restores_the_address_before_its_default_route() {
    if !require_root("rollback_of_a_renumbered_subnet_restores_the_address_before_its_default_route") {
        return;
    }
    let a = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    forwarding #true
    bridge "br0" { address "10.1.0.1/24"; }
    netns "pod" {
        veth "eth0" {
            address "10.1.0.2/24"
            peer "vpod" netns="@host" master="br0"
        }
        route "default" via="10.1.0.1" dev="eth0"
    }
}"#;
    let b = a
        .replace("10.1.0.", "10.2.0.")
        .replace("10.0.0.2/24", "10.0.0.3/24")
        .replace("via=\"10.0.0.1\"", "via=\"10.0.0.254\"");
    let node = NodeRoot::new("rb-renum");
    let len = b_fails_and_rolls_back_to_a(&node, a, &b, None);
    for k in 0..len {
        b_fails_and_rolls_back_to_a(&node, "", &b, Some(k));
    }
}

/// A namespace the apply deleted comes back with its firewall table and `lo` up (incident 002:
/// the Linkerd redirect lost by a rollback), its sysctls, and its veth with the IPv6 address
/// generation it had.
#[test]
fn rollback_restores_a_deleted_namespace_with_its_table_and_lo_up() {
    if !require_root("rollback_restores_a_deleted_namespace_with_its_table_and_lo_up") {
        return;
    }
    let a = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    forwarding #true
    bridge "br0" { address "10.1.0.1/24"; }
    netns "mesh" {
        veth "eth0" {
            address "10.1.0.5/24"
            peer "vmesh" netns="@host" master="br0"
        }
        route "default" via="10.1.0.1" dev="eth0"
        redirect in proto="tcp" to-port=4143 except-port="4190,4191"
        listen "proxy" port=4143
        firewall { policy in="drop"; allow in proto="tcp" port=4143; }
        sysctl "net.ipv4.conf.eth0.rp_filter" 2
        forwarding #true
    }
}"#;
    let b = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "br0" { address "10.1.0.1/24"; }
}"#;
    let node = NodeRoot::new("rb-ns");
    b_fails_and_rolls_back_to_a(&node, a, b, None);
    let table = node.ip("mesh", &["link", "show", "lo"]);
    assert!(table.contains("UP"), "{table}");
    let rules = sh(&["ip", "netns", "exec", &node.path_name("mesh"), "nft", "list", "table", "inet", "netcfg"]);
    assert!(rules.contains("redirect to :4143"), "{rules}");
}

/// A bridge and its port both deleted by the apply: the rollback creates the bridge before the
/// port that names it as master.
#[test]
fn rollback_recreates_a_bridge_before_its_port() {
    if !require_root("rollback_recreates_a_bridge_before_its_port") {
        return;
    }
    let a = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    forwarding #true
    bridge "zbr" mtu=1400 { address "10.7.0.1/24"; }
    netns "pod" {
        veth "eth0" mtu=1400 {
            address "10.7.0.2/24"
            peer "avpod" netns="@host" master="zbr" hairpin=#true mtu=1400
        }
        route "default" via="10.7.0.1" dev="eth0"
    }
}"#;
    let b = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
}"#;
    let node = NodeRoot::new("rb-br");
    let len = b_fails_and_rolls_back_to_a(&node, a, b, None);
    for k in 0..len {
        b_fails_and_rolls_back_to_a(&node, "", b, Some(k));
    }
}

/// A fresh node (`lo` down, no address) rolled back is fresh again: `lo` down and without
/// 127.0.0.1/8, which the kernel keeps on a `lo` taken down.
#[test]
fn a_fresh_node_rolled_back_is_fresh_again() {
    if !require_root("a_fresh_node_rolled_back_is_fresh_again") {
        return;
    }
    let node = NodeRoot::new("rb-fresh");
    node.ip("@host", &["link", "set", "lo", "down"]);
    node.ip("@host", &["addr", "flush", "dev", "lo"]);
    let b = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    firewall { policy in="drop"; }
    netns "pod" { bridge "b0"; }
}"#;
    b_fails_and_rolls_back_to_a(&node, "", b, None);
    let lo = node.ip("@host", &["addr", "show", "lo"]);
    assert!(!lo.contains("127.0.0.1") && !lo.contains("UP"), "{lo}");
}

/// Root `X` and root `X-lab` with the same node name: applying `X` never claims `X-lab`'s
/// namespaces (their path names start with `X-`), and a map without a root claims neither.
#[test]
fn namespace_ownership_is_scoped_to_the_root_exactly() {
    if !require_root("namespace_ownership_is_scoped_to_the_root_exactly") {
        return;
    }
    let x = NodeRoot::new("rb-own");
    let lab_root = format!("{}-lab", x.root.name);
    sh(&["ip", "netns", "add", &lab_root]);
    let mut lab = netlink::NetnsMap::rooted(&lab_root);
    lab.marker_dir = x.map.marker_dir.clone();
    let with_pod = r#"node "n1" { netns "pod" { bridge "b0"; } }"#;
    let without = r#"node "n1" { ethernet "eth0"; }"#;
    let mut s_lab = Session::new(lab.clone()).expect("session");
    apply(&mut s_lab, &desired(with_pod));
    assert_eq!(lab.created_namespaces("n1"), vec!["pod".to_string()]);
    // `X` sees none of them, and its apply of a spec without namespaces deletes nothing.
    assert_eq!(x.map.created_namespaces("n1"), Vec::<String>::new());
    let mut s_x = Session::new(x.map.clone()).expect("session");
    let p = s_x.plan(&desired(without), Options::default()).expect("plan");
    assert!(!p.ops.iter().any(|o| matches!(o.action, Action::DeleteNetns)), "{}", p.to_text());
    apply(&mut s_x, &desired(without));
    assert!(std::path::Path::new("/run/netns").join(format!("{lab_root}-pod")).exists());
    // Without a root, the marker of root `X-lab` is not this machine's either.
    let machine = netlink::NetnsMap { root: None, marker_dir: x.map.marker_dir.clone(), modules_load: None };
    assert_eq!(machine.created_namespaces("n1"), Vec::<String>::new());
    // The marker is root's only.
    use std::os::unix::fs::PermissionsExt;
    let marker = x.map.marker_dir.join(format!("{lab_root}-pod"));
    let mode = std::fs::metadata(&marker).expect("marker").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", marker.display());
    let dir_mode = std::fs::metadata(&x.map.marker_dir).expect("dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let _ = std::process::Command::new("ip").args(["netns", "del", &format!("{lab_root}-pod")]).status();
    let _ = std::process::Command::new("ip").args(["netns", "del", &lab_root]).status();
}

/// `verify` compares every attribute the plan shows: an MTU changed by hand on links whose
/// spec leaves the MTU at its default (a veth end: 1500; a bridge: its ports') is drift.
#[test]
fn verify_reports_an_mtu_changed_on_a_link_left_at_its_default() {
    if !require_root("verify_reports_an_mtu_changed_on_a_link_left_at_its_default") {
        return;
    }
    let node = NodeRoot::new("rb-mtu");
    let src = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    forwarding #true
    bridge "br0" { address "10.1.0.1/24"; }
    netns "pod" {
        veth "eth0" {
            address "10.1.0.2/24"
            peer "vpod" netns="@host" master="br0"
        }
    }
}"#;
    let d = desired(src);
    let mut s = Session::new(node.map.clone()).expect("session");
    apply(&mut s, &d);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
    node.ip("pod", &["link", "set", "eth0", "mtu", "1400"]);
    node.ip("@host", &["link", "set", "vpod", "mtu", "1300"]);
    let drift = s.verify(&d, Options::default()).expect("verify");
    let whats: Vec<String> = drift.iter().map(|x| format!("{} {}", x.ns, x.what)).collect();
    for want in
        ["pod link eth0: mtu 1400 -> 1500", "@host link vpod: mtu 1300 -> 1500", "@host link br0: mtu 1300 -> 1500"]
    {
        assert!(whats.iter().any(|w| w == want), "missing `{want}` in {whats:#?}");
    }
    apply(&mut s, &d);
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
}

/// A veth of netcfg's whose peer sits in a namespace outside the spec: dropping it from the spec
/// is a conflict, not a deletion that takes the unseen peer along (and that no rollback could
/// undo).
#[test]
fn a_veth_whose_peer_is_outside_the_spec_is_not_deleted_silently() {
    if !require_root("a_veth_whose_peer_is_outside_the_spec_is_not_deleted_silently") {
        return;
    }
    let node = NodeRoot::new("rb-peer");
    let outside = Netns::new("rb-outside");
    let host = node.path_name("@host");
    sh(&[
        "ip",
        "link",
        "add",
        "vout",
        "netns",
        &host,
        "group",
        "28259",
        "type",
        "veth",
        "peer",
        "name",
        "vin",
        "netns",
        &outside.name,
    ]);
    let mut s = Session::new(node.map.clone()).expect("session");
    match s.plan(&desired(r#"node "n1" { ethernet "eth0"; }"#), Options::default()) {
        Err(PlanError::Conflicts(d)) => {
            assert_eq!(d.len(), 1, "{d:#?}");
            assert_eq!(d[0].code, "unreachable-peer");
            assert!(d[0].message.contains("`vout`"), "{}", d[0].message);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(outside.exec(&["ip", "link"]).contains("vin"));
}

/// Routes go to the kernel pipelined (a run of route ops is sent before the first ack is read).
/// Differential: the pipelined apply leaves the same routes as the spec (a fresh plan is
/// empty), and a route the kernel refuses in the middle of a run is reported as the op that
/// failed (not a later one, not the run), with every route of the run, those before it and
/// those sent after it, rolled back.
#[test]
fn a_route_refused_inside_a_pipelined_run_is_named_and_rolled_back() {
    if !require_root("a_route_refused_inside_a_pipelined_run_is_named_and_rolled_back") {
        return;
    }
    let mut a = String::from("node \"n1\" {\n    ethernet \"eth0\" { address \"10.0.0.2/24\"; }\n");
    for i in 0..40 {
        a += &format!("    route \"172.16.{i}.0/24\" via=\"10.0.0.1\" dev=\"eth0\"\n");
    }
    a += "}\n";
    let b = a.replace("172.16.", "172.17.");
    let node = NodeRoot::new("rb-pipe");
    let mut s = Session::new(node.map.clone()).expect("session");
    apply(&mut s, &desired(&a));
    let routes = node.ip("@host", &["route", "show", "proto", "110"]);
    assert_eq!(routes.lines().filter(|l| l.starts_with("172.16.")).count(), 40, "{routes}");

    let before = node.settled_full_dump(SYSCTLS);
    let db = desired(&b);
    let (mut plan, snapshot) = s.plan_recorded(&db, Options::default()).expect("plan b");
    let adds: Vec<usize> = plan
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.action, Action::AddRoute { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(adds.len(), 40, "{}", plan.to_text());
    // The refused route sits between two adds of the run.
    let bad = unreachable_route(&plan.ops[adds[20]]);
    plan.ops.insert(adds[20], bad.clone());
    let err = s.apply_recorded(&db, &plan, Options::default(), &snapshot, ApplyConfig::default()).expect_err("refused");
    assert_eq!(err.failed.as_deref().map(|o| o.describe()), Some(bad.describe()), "{}", err.message);
    assert!(err.message.contains("invalid gateway") || err.message.contains("unreachable"), "{}", err.message);
    assert!(err.rollback.is_complete(), "{}", err.rollback.describe());
    let after = node.full_dump(SYSCTLS);
    assert!(after == before, "the node differs after rollback:\n{}", dump_difference(&before, &after));
}

/// The settings of a new link go right behind its create, before the create is answered
/// (`Executor::create_link`). When the kernel refuses the create, the op is named with the
/// create's refusal (not the "no such device" of the settings behind it), the ops before it
/// are rolled back, and the session's connection still serves the rollback (no answer is
/// left unread to be taken for another request's).
#[test]
fn a_refused_create_is_named_by_its_own_refusal_and_rolled_back() {
    if !require_root("a_refused_create_is_named_by_its_own_refusal_and_rolled_back") {
        return;
    }
    // The bridge keeps a port throughout (one that loses its last port loses its carrier).
    let a = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "br0"
    veth "va0" master="br0" { peer "vb0"; }
}"#;
    let b = r#"node "n1" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "br0"
    veth "va0" master="br0" { peer "vb0"; }
    veth "va01" master="br0" { peer "vb01"; }
    veth "va1" master="br0" { peer "vb1"; }
    veth "va2" master="br0" { peer "vb2"; }
}"#;
    let node = NodeRoot::new("rb-create");
    let mut s = Session::new(node.map.clone()).expect("session");
    apply(&mut s, &desired(a));
    let before = node.settled_full_dump(SYSCTLS);
    // A multicast MAC, which no spec can give (the checks refuse it): the kernel refuses the
    // veth's create, after `va01` was made and joined the bridge.
    let mut db = desired(b);
    let host = db.state.namespaces.get_mut("@host").expect("host");
    host.links.get_mut("va1").expect("va1").mac = Some(netcfg_lang::value::Mac([0x01, 0, 0x5e, 0, 0, 1]));
    let (plan, snapshot) = s.plan_recorded(&db, Options::default()).expect("plan b");
    let made: Vec<String> = plan.ops.iter().map(|o| o.describe()).collect();
    let at = |name: &str| made.iter().position(|d| d.split([' ', '`']).any(|w| w == name)).expect("an op per veth");
    assert!(at("va01") < at("va1"), "{made:#?}");
    let err = s.apply_recorded(&db, &plan, Options::default(), &snapshot, ApplyConfig::default()).expect_err("refused");
    let failed = err.failed.as_deref().map(|o| o.describe()).unwrap_or_default();
    assert!(failed.contains("va1"), "failed at `{failed}`: {}", err.message);
    assert!(!err.message.to_lowercase().contains("no such device"), "{}", err.message);
    assert!(err.message.contains("address"), "the create's own refusal: {}", err.message);
    assert!(err.rollback.is_complete(), "{}", err.rollback.describe());
    let after = node.full_dump(SYSCTLS);
    assert!(after == before, "the node differs after rollback:\n{}", dump_difference(&before, &after));
    // The connection is in step: the spec without the bad MAC applies and converges.
    apply(&mut s, &desired(b));
    let links = node.ip("@host", &["-o", "link", "show", "master", "br0"]);
    assert_eq!(links.lines().count(), 4, "{links}");
}

/// A SIGKILL between a namespace's marker and its mount leaves a plain file under
/// `/run/netns` that no plan sees (it is not a namespace); restoring the journal's snapshot
/// removes it and its marker, so the node is as before.
#[test]
fn a_namespace_left_half_made_by_a_kill_is_removed_by_the_restore() {
    if !require_root("a_namespace_left_half_made_by_a_kill_is_removed_by_the_restore") {
        return;
    }
    let node = NodeRoot::new("rb-half");
    let a = r#"node "n1" { ethernet "eth0"; }"#;
    let b = r#"node "n1" { netns "pod" { bridge "b0"; } }"#;
    let mut s = Session::new(node.map.clone()).expect("session");
    apply(&mut s, &desired(a));
    let (_plan, snapshot) = s.plan_recorded(&desired(b), Options::default()).expect("plan b");
    // What the kill leaves: the marker, and the file without the namespace mounted on it.
    node.map.create("n1", "pod").expect("create");
    let path = std::path::Path::new("/run/netns").join(node.path_name("pod"));
    sh(&["umount", path.to_str().expect("utf-8")]);
    assert!(path.is_file(), "the half-made state is a plain file");
    assert_eq!(node.map.created_namespaces("n1"), Vec::<String>::new(), "a plain file is no namespace");
    let restore = s.restore(&snapshot);
    assert!(restore.is_complete(), "{}", restore.describe());
    assert!(!path.exists(), "the restore left {}", path.display());
    let markers: Vec<String> = std::fs::read_dir(&node.map.marker_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-pod"))
        .collect();
    assert!(markers.is_empty(), "markers left: {markers:?}");
}
