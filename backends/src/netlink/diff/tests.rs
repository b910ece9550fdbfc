//! The planner on whole specs and live states.

use super::side_effects::connected_route;
use super::*;
use crate::netlink::desired::desired;
use crate::netlink::plan::Action;

/// Asserts that each of `lines` starts a line of the plan, in this order (other lines may come
/// between); on failure shows the whole plan.
fn assert_in_order(plan: &Plan, lines: &[&str]) {
    let text = plan.to_text();
    let plan_lines: Vec<&str> = text.lines().map(str::trim_start).collect();
    let mut from = 0;
    for want in lines {
        match plan_lines[from..].iter().position(|l| l.starts_with(want)) {
            Some(i) => from += i + 1,
            None if plan_lines.iter().any(|l| l.starts_with(want)) => {
                panic!("`{want}` comes too early in the plan:\n{text}")
            }
            None => panic!("`{want}` is not in the plan:\n{text}"),
        }
    }
}

fn desired_of(src: &str) -> Desired {
    let parsed = netcfg_lang::parse_str("t.kdl", src);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diags = Vec::new();
    desired(&compiled.fleet.nodes[0], &mut diags)
}

fn link(kind: LinkKind, owned: bool) -> Link {
    Link {
        kind,
        mtu: Some(1500),
        mac: None,
        master: None,
        hairpin: None,
        nf_call_iptables: None,
        up: true,
        addrgen_none: Some(false),
        opts: Opts::default(),
        owned,
        ident: None,
    }
}

/// A live host namespace with `lo` and a NIC `eth0`, and nothing else.
fn bare_host() -> Live {
    let mut live = Live::default();
    let mut st = new_namespace();
    st.links.get_mut("lo").unwrap().up = true;
    st.links.insert("eth0".into(), link(LinkKind::Existing { kind: None }, false));
    live.state.namespaces.insert(HOST.into(), st);
    live
}

const SPEC: &str = r#"
node "n" {
ethernet "eth0" { address "10.0.0.2/24" }
bridge "br0" { address "10.1.0.1/24" }
route "default" via="10.0.0.1" dev="eth0"
route "192.0.2.0/24" dev="br0"
netns "pod" {
    veth "eth0" {
        address "10.1.0.2/24"
        peer "veth-pod" netns="@host" master="br0"
    }
    route "default" via="10.1.0.1" dev="eth0"
}
}
"#;

fn position(plan: &Plan, f: impl Fn(&Op) -> bool) -> usize {
    plan.ops.iter().position(f).unwrap_or_else(|| panic!("op not found in\n{}", plan.to_text()))
}

#[test]
fn ops_come_in_dependency_order() {
    let d = desired_of(SPEC);
    let mut live = bare_host();
    live.missing.insert("pod".into());
    let plan = diff(&d, &live, &[], None).expect("plan");
    let ns = position(&plan, |o| matches!(o.action, Action::CreateNetns));
    let br = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "br0"));
    let veth = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "veth-pod"));
    let addr = position(&plan, |o| matches!(&o.action, Action::AddAddress { link, .. } if link == "eth0"));
    let direct = position(&plan, |o| matches!(&o.action, Action::AddRoute { route, .. } if route.via.is_none()));
    let via = position(&plan, |o| matches!(&o.action, Action::AddRoute { route, .. } if route.via.is_some()));
    assert!(ns < br && br < veth && veth < addr && addr < direct && direct < via, "{}", plan.to_text());
    // One op creates both ends of the pair, and the ops are described with their spans.
    assert_eq!(plan.ops.iter().filter(|o| matches!(o.action, Action::CreateLink { .. })).count(), 2);
    assert!(plan.ops.iter().all(|o| o.span.end > o.span.start));
    assert!(plan.to_text().contains("+ @host: link veth-pod (veth, peer eth0@pod, master br0, addrgenmode none, up)"));
    assert_eq!(plan.to_json()["ops"].as_array().unwrap().len(), plan.ops.len());
}

fn set_mtu_of(plan: &Plan, link_name: &str) -> usize {
    position(plan, |o| matches!(&o.action, Action::SetLink { name, to, .. } if name == link_name && to.mtu.is_some()))
}

#[test]
fn what_a_link_sits_on_changes_first() {
    // Jumbo frames: the NIC goes 1500 -> 9000 and a VXLAN of 8950 is created on it, and a
    // macvlan of 9000 on a second NIC. The kernel clamps (or refuses) an upper MTU above
    // the lower link's, so the NICs change first.
    let d = desired_of(
        r#"
node "n" {
ethernet "eth0" mtu=9000 { address "10.0.0.2/24"; }
ethernet "eth1" mtu=9000
vxlan "vx0" vni=42 local="10.0.0.2" remote="10.0.0.3" dev="eth0" mtu=8950
netns "app" { macvlan "mv0" parent="eth1" mtu=9000; }
}
"#,
    );
    let mut live = bare_host();
    live.state
        .namespaces
        .get_mut(HOST)
        .unwrap()
        .links
        .insert("eth1".into(), link(LinkKind::Existing { kind: None }, false));
    live.missing.insert("app".into());
    let plan = diff(&d, &live, &[], None).expect("plan");
    let vx = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "vx0"));
    let mv = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "mv0"));
    assert!(set_mtu_of(&plan, "eth0") < vx && set_mtu_of(&plan, "eth1") < mv, "{}", plan.to_text());

    // Both exist: raising, the NIC first; lowering, the VXLAN first (names sort the other way
    // on purpose: `a-nic` before `vx0`, `z-nic` after).
    for (nic, from, to, vx_from, vx_to) in [("z-nic", 1500, 9000, 1450, 8950), ("a-nic", 9000, 1500, 8950, 1450)] {
        let d = desired_of(&format!(
            r#"
node "n" {{
ethernet "{nic}" mtu={to}
vxlan "vx0" vni=42 remote="10.0.0.3" dev="{nic}" mtu={vx_to}
}}
"#
        ));
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        let mut n = link(LinkKind::Existing { kind: None }, false);
        n.mtu = Some(from);
        host.links.insert(nic.into(), n);
        let desired_vx = d.state.namespaces[HOST].links["vx0"].clone();
        host.links.insert("vx0".into(), Link { mtu: Some(vx_from), ..desired_vx });
        let plan = diff(&d, &live, &[], None).expect("plan");
        let (nic_at, vx_at) = (set_mtu_of(&plan, nic), set_mtu_of(&plan, "vx0"));
        if to > from {
            assert!(nic_at < vx_at, "{}", plan.to_text());
        } else {
            assert!(vx_at < nic_at, "{}", plan.to_text());
        }
    }
}

/// A Debian-like kernel: `bridge` loaded, `veth` and `br_netfilter` loadable modules.
#[test]
fn modules_load_first_persist_last_and_an_absent_one_stops_the_plan_on_its_spec_text() {
    use crate::kernel::{Availability::*, Feature};
    let d = desired_of(&SPEC.replace("bridge \"br0\"", "bridge-netfilter #true\n    bridge \"br0\""));
    assert_eq!(d.features.keys().copied().collect::<Vec<_>>(), [Feature::Bridge, Feature::Veth, Feature::BrNetfilter]);
    let mut live = bare_host();
    live.missing.insert("pod".into());
    live.kernel.features =
        [(Feature::Bridge, Loaded), (Feature::Veth, Loadable), (Feature::BrNetfilter, Loadable)].into();
    let file = std::path::PathBuf::from("/etc/modules-load.d/netcfg.conf");
    live.kernel.modules_load = Some((file.clone(), None));
    let plan = diff(&d, &live, &[], None).expect("plan");
    let text = plan.to_text();
    assert!(
        text.starts_with("node n\n  + @host: kernel module veth  [in place]\n  + @host: kernel module br_netfilter"),
        "{text}"
    );
    let sysctl =
        position(&plan, |o| matches!(&o.action, Action::WriteSysctl { path, .. } if path.starts_with("net.bridge.")));
    let veth = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "veth-pod"));
    assert!(1 < sysctl && 1 < veth, "{text}");
    let nf_span = d.span_of(HOST, &Object::Sysctl("net.bridge.bridge-nf-call-iptables".into()));
    assert_eq!(plan.ops[1].span, nf_span, "the load is on the text that needs it");
    assert_eq!(plan.ops[0].inverse(), None, "a rollback leaves modules loaded");
    let last = plan.ops.last().expect("ops");
    let Action::WriteModulesLoad { path, content: Some(content), old: None } = &last.action else {
        panic!("the modules-load.d file comes last:\n{text}")
    };
    assert_eq!((path, content.lines().skip(1).collect::<Vec<_>>()), (&file, vec!["br_netfilter", "bridge", "veth"]));
    assert!(
        matches!(
            &last.inverse().expect("inverse").action,
            Action::WriteModulesLoad { content: None, old: Some(_), .. }
        ),
        "a rollback removes the file it created"
    );

    // Everything loaded and the file as it should be: nothing to do for the kernel.
    live.kernel.features = [(Feature::Bridge, Loaded), (Feature::Veth, Loaded), (Feature::BrNetfilter, Loaded)].into();
    live.kernel.modules_load = Some((file, Some(content.clone())));
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert!(!plan.ops.iter().any(|o| matches!(o.action, Action::LoadModule { .. } | Action::WriteModulesLoad { .. })));
    // Not the machine itself (`--netns-root`): no file.
    live.kernel.features.insert(Feature::Veth, Loadable);
    live.kernel.modules_load = None;
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert_eq!(plan.ops.iter().filter(|o| matches!(o.action, Action::LoadModule { .. })).count(), 1);
    assert!(!plan.ops.iter().any(|o| matches!(o.action, Action::WriteModulesLoad { .. })));

    // A kernel that cannot have br_netfilter: one diagnostic, on `bridge-netfilter #true`.
    live.kernel.features.insert(Feature::BrNetfilter, Absent);
    let errors = diff(&d, &live, &[], None).expect_err("no plan");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].code.id, errors[0].primary.span), ("missing-kernel-feature", nf_span));
    assert!(errors[0].message.contains("`br_netfilter`"), "{}", errors[0].message);
}

#[test]
fn only_owned_objects_are_removed() {
    let d = desired_of(SPEC);
    let mut live = bare_host();
    live.missing.insert("pod".into());
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    let route = |proto: u8| Route {
        via: Some("10.0.0.1".parse().unwrap()),
        dev: Some("eth0".into()),
        src: None,
        scope: RouteScope::Global,
        onlink: false,
        route_type: RouteType::Unicast,
        protocol: proto,
        metrics: Default::default(),
        nexthops: Vec::new(),
    };
    host.routes.insert(RouteKey::new(254, "10.50.0.0/16".parse().unwrap(), 0), route(4));
    host.routes.insert(RouteKey::new(254, "10.60.0.0/16".parse().unwrap(), 0), route(NETCFG_PROTO));
    host.links.insert("handmade".into(), link(LinkKind::Bridge, false));
    host.links.insert("old-br".into(), link(LinkKind::Bridge, true));
    host.addresses.insert(("handmade".into(), "10.70.0.1/24".parse().unwrap()), Address { prefix_route: true });
    host.addresses.insert(("eth0".into(), "10.80.0.1/24".parse().unwrap()), Address { prefix_route: true });
    host.addresses.insert(("eth0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
    let plan = diff(&d, &live, &[], None).expect("plan");
    let text = plan.to_text();
    assert!(text.contains("- @host: route 10.60.0.0/16"), "{text}");
    assert!(text.contains("- @host: link old-br"), "{text}");
    // An extra address on an existing NIC may be DHCP's or a cloud agent's: it stays.
    assert!(!text.contains("10.80.0.1/24"), "{text}");
    assert!(!text.contains("10.50.0.0/16") && !text.contains("handmade") && !text.contains("10.70.0.1"), "{text}");
}

#[test]
fn a_foreign_link_of_another_kind_is_a_conflict_and_a_missing_nic_too() {
    let d = desired_of(SPEC);
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.links.remove("eth0");
    host.links.insert(
        "br0".into(),
        link(
            LinkKind::Vxlan(Vxlan {
                vni: 1,
                local: None,
                remote: None,
                group: None,
                dev: None,
                port: 4789,
                options: Default::default(),
            }),
            false,
        ),
    );
    let errors = diff(&d, &live, &[], None).expect_err("conflicts");
    let codes: Vec<&str> = errors.iter().map(|e| e.code.id).collect();
    assert_eq!(codes, vec!["foreign-link", "missing-link"], "{errors:#?}");
}

#[test]
fn every_op_has_an_inverse_that_undoes_it() {
    let d = desired_of(SPEC);
    let mut live = bare_host();
    live.missing.insert("pod".into());
    let plan = diff(&d, &live, &[], None).expect("plan");
    for op in &plan.ops {
        let inv = op.inverse().expect("inverse");
        assert_eq!(inv.inverse().as_ref(), Some(op), "inverse of the inverse of {}", op.describe());
        let flipped = match op.sign() {
            '+' => '-',
            '-' => '+',
            c => c,
        };
        assert_eq!(inv.sign(), flipped, "{}", op.describe());
    }
}

/// A bridge at its automatic MTU (the smallest of its ports) that equals the spec's `mtu`
/// still gets the MTU set when its ports change, or it would follow them (found by the
/// apply property test, seed 1796173984).
#[test]
fn a_bridge_mtu_equal_to_the_automatic_one_is_set_when_the_ports_change() {
    let d = desired_of(
        r#"node "n" {
            ethernet "eth0"
            bridge "br0" mtu=1400
            ethernet "eth1" master="br0"
        }"#,
    );
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    let mut br = link(LinkKind::Bridge, true);
    br.mtu = Some(1400);
    host.links.insert("br0".into(), br);
    let mut port = link(LinkKind::Bridge, true);
    port.mtu = Some(1400);
    port.master = Some("br0".into());
    host.links.insert("old-port".into(), port);
    let mut eth1 = link(LinkKind::Existing { kind: None }, false);
    eth1.master = Some("br0".into());
    host.links.insert("eth1".into(), eth1);
    let text = diff(&d, &live, &[], None).expect("plan").to_text();
    assert!(text.contains("~ @host: link br0: mtu 1400 -> 1400"), "{text}");
    // The same bridge whose ports stay: nothing to do about its MTU.
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.links.remove("old-port");
    let text = diff(&d, &live, &[], None).expect("plan").to_text();
    assert!(!text.contains("link br0: mtu"), "{text}");
}

#[test]
fn deleting_the_last_ipv4_address_removes_the_links_routes_explicitly_first() {
    let d = desired_of(
        r#"node "n" {
            ethernet "eth0"
            bridge "br0"
        }"#,
    );
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.links.insert("br0".into(), link(LinkKind::Bridge, true));
    host.addresses.insert(("br0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
    host.routes.insert(
        RouteKey::new(254, "10.9.0.0/16".parse().unwrap(), 0),
        Route {
            via: Some("10.0.0.1".parse().unwrap()),
            dev: Some("br0".into()),
            src: None,
            scope: RouteScope::Global,
            onlink: false,
            route_type: RouteType::Unicast,
            protocol: 4,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    );
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert_in_order(&plan, &["- @host: route 10.9.0.0/16", "- @host: address 10.0.0.2/24"]);
}

#[test]
fn a_changed_address_is_added_before_the_old_one_goes_so_no_route_is_flushed() {
    let d = desired_of(
        r#"node "n" {
            ethernet "eth0"
            bridge "br0" { address "10.1.0.3/24"; }
        }"#,
    );
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.links.insert("br0".into(), link(LinkKind::Bridge, true));
    host.addresses.insert(("br0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
    host.routes.insert(
        RouteKey::new(254, "172.16.0.0/16".parse().unwrap(), 0),
        Route {
            via: None,
            dev: Some("br0".into()),
            src: None,
            scope: RouteScope::Link,
            onlink: false,
            route_type: RouteType::Unicast,
            protocol: 4,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    );
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert_in_order(&plan, &["+ @host: address 10.1.0.3/24", "- @host: address 10.0.0.2/24"]);
    let text = plan.to_text();
    assert!(!text.contains("172.16.0.0/16"), "a foreign route must not be flushed: {text}");
}

const TASK: &str = r#"
node "n" {
ethernet "eth0" { address "10.0.0.2/24" }
netns "task-1" {
    ethernet "eth14" mtu=9001 { address "10.0.254.153/24" }
    route "default" via="10.0.254.1" dev="eth14"
    sysctl "net.ipv4.conf.eth14.rp_filter" 1
}
}
"#;

/// [`bare_host`] with `eth14` in the host namespace as the ECS agent finds it: up, a port
/// of a foreign bridge, with an address, a foreign route through it and a static neighbour.
fn host_with_eni() -> Live {
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.links.insert("hostbr".into(), link(LinkKind::Bridge, false));
    let mut eni = link(LinkKind::Existing { kind: Some("veth".into()) }, false);
    eni.master = Some("hostbr".into());
    eni.hairpin = Some(false);
    host.links.insert("eth14".into(), eni);
    let net: IpNet = "10.99.0.2/24".parse().unwrap();
    host.addresses.insert(("eth14".into(), net), Address { prefix_route: true });
    let (key, route) = connected_route("eth14", &net);
    host.routes.insert(key, route);
    host.routes.insert(
        RouteKey::new(254, "10.98.0.0/16".parse().unwrap(), 0),
        Route {
            via: Some("10.99.0.1".parse().unwrap()),
            dev: Some("eth14".into()),
            src: None,
            scope: RouteScope::Global,
            onlink: false,
            route_type: RouteType::Unicast,
            protocol: 4,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    );
    host.neighbors.insert(
        ("eth14".into(), "10.99.0.1".parse().unwrap()),
        Neighbor { mac: netcfg_lang::value::Mac([2, 0, 0, 0, 0, 1]), protocol: 0 },
    );
    live.missing.insert("task-1".into());
    live
}

#[test]
fn an_ethernet_link_in_the_host_namespace_is_moved_into_its_namespace_in_order() {
    let d = desired_of(TASK);
    let plan = diff(&d, &host_with_eni(), &[], None).expect("plan");
    let text = plan.to_text();
    assert_in_order(
        &plan,
        &[
            "+ task-1: namespace",
            "- @host: neighbor 10.99.0.1 lladdr 02:00:00:00:00:01 dev eth14",
            "- @host: route 10.98.0.0/16 via 10.99.0.1 dev eth14 table 254 metric 0 proto 4",
            "- @host: address 10.99.0.2/24 dev eth14",
            "~ @host: link eth14: master hostbr -> none, up -> down  [link flap]",
            "~ task-1: link eth14: move @host -> task-1  [link flap]",
            "+ task-1: sysctl net.ipv4.conf.eth14.rp_filter = 1",
            "~ task-1: link eth14: mtu 1500 -> 9001, down -> up",
            "+ task-1: address 10.0.254.153/24 dev eth14",
            "+ task-1: route 0.0.0.0/0 via 10.0.254.1 dev eth14",
        ],
    );
    // One move, the op on the spec's `ethernet "eth14"`, and every op undone by its inverse.
    let moves: Vec<&Op> = plan.ops.iter().filter(|o| matches!(o.action, Action::MoveLink { .. })).collect();
    assert_eq!(moves.len(), 1, "{text}");
    assert_eq!(moves[0].span, d.span_of("task-1", &Object::Link("eth14".into())));
    assert_eq!(moves[0].to_json()["op"], "move-link");
    for op in &plan.ops {
        match op.inverse() {
            Some(inv) => assert_eq!(inv.inverse().as_ref(), Some(op), "{}", op.describe()),
            // The moved link's sysctl: the move back resets it, nothing to restore.
            None => assert!(matches!(&op.action, Action::WriteSysctl { old: None, .. }), "{}", op.describe()),
        }
    }
    let back = moves[0].inverse().expect("inverse");
    assert_eq!(back.describe(), "link eth14: move task-1 -> @host");
    // The foreign bridge stays, and the connected route goes with the address (no op).
    assert!(!text.contains("link hostbr") && !text.contains("10.99.0.0/24"), "{text}");
}

#[test]
fn a_nic_in_neither_namespace_or_declared_in_the_host_too_is_missing() {
    let d = desired_of(TASK);
    let mut live = bare_host();
    live.missing.insert("task-1".into());
    let errors = diff(&d, &live, &[], None).expect_err("missing");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, "missing-link");
    assert_eq!(errors[0].message, "link `eth14` exists neither in namespace `task-1` nor in the host namespace");

    let both = TASK.replace("ethernet \"eth0\" {", "ethernet \"eth14\"\n    ethernet \"eth0\" {");
    let d = desired_of(&both);
    let errors = diff(&d, &host_with_eni(), &[], None).expect_err("declared in the host namespace");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].help.as_deref().unwrap_or("").contains("host namespace declares `eth14`"), "{errors:#?}");
}

#[test]
fn a_link_netcfg_moved_goes_back_when_the_spec_drops_it_and_a_foreign_one_stays() {
    let d = desired_of(
        r#"node "n" {
            ethernet "eth0"
            netns "task-1" { route "10.5.0.0/16" type="blackhole" }
        }"#,
    );
    let mut live = bare_host();
    let mut task = new_namespace();
    let mut eni = link(LinkKind::Existing { kind: None }, false);
    eni.mtu = Some(9001);
    task.links.insert("eth14".into(), eni.clone());
    task.links.insert("eth15".into(), eni);
    task.addresses.insert(("eth14".into(), "10.0.254.153/24".parse().unwrap()), Address { prefix_route: true });
    live.state.namespaces.insert("task-1".into(), task);
    live.moved.insert(LinkRef { ns: "task-1".into(), name: "eth14".into() });
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert_in_order(
        &plan,
        &[
            "- task-1: address 10.0.254.153/24 dev eth14",
            "~ task-1: link eth14: up -> down",
            "~ task-1: link eth14: move task-1 -> @host",
        ],
    );
    let text = plan.to_text();
    assert!(!text.contains("eth15"), "{text}");

    // The spec drops the whole namespace netcfg created: the link goes back first.
    let d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
    let plan = diff(&d, &live, &["task-1".to_string()], None).expect("plan");
    assert_in_order(&plan, &["~ task-1: link eth14: move task-1 -> @host", "- task-1: namespace"]);
    let text = plan.to_text();
    assert!(!text.contains("eth15"), "{text}");

    // A link of that name in the host namespace keeps it where it is.
    live.state.namespaces.get_mut(HOST).unwrap().links.insert("eth14".into(), link(LinkKind::Bridge, false));
    let plan = diff(&d, &live, &["task-1".to_string()], None).expect("plan");
    assert!(!plan.ops.iter().any(|o| matches!(o.action, Action::MoveLink { .. })), "{}", plan.to_text());
}

fn rule(priority: u32, from: Option<&str>, action: RuleAction) -> Rule {
    Rule {
        v6: false,
        priority,
        from: from.map(|f| f.parse().unwrap()),
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        ipproto: None,
        sport: None,
        dport: None,
        suppress_prefixlength: None,
        action,
    }
}

/// [`bare_host`] with the kernel's rules, a rule someone added by hand, and netcfg's rule and
/// route into table 200 from an earlier spec.
fn host_with_rules() -> Live {
    let mut live = bare_host();
    let host = live.state.namespaces.get_mut(HOST).unwrap();
    host.rules.insert(rule(0, None, RuleAction::Lookup(255)), PROTO_KERNEL);
    host.rules.insert(rule(32766, None, RuleAction::Lookup(254)), PROTO_KERNEL);
    host.rules.insert(rule(32767, None, RuleAction::Lookup(253)), PROTO_KERNEL);
    host.rules.insert(rule(500, Some("10.77.0.0/16"), RuleAction::Lookup(200)), 0);
    host.rules.insert(rule(100, Some("10.1.0.0/24"), RuleAction::Lookup(200)), NETCFG_PROTO);
    host.routes.insert(
        RouteKey::new(200, "0.0.0.0/0".parse().unwrap(), 0),
        Route {
            via: None,
            dev: Some("eth0".into()),
            src: None,
            scope: RouteScope::Link,
            onlink: false,
            route_type: RouteType::Unicast,
            protocol: NETCFG_PROTO,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    );
    live
}

#[test]
fn only_netcfgs_rules_go_and_before_the_routes_of_their_table() {
    let d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
    let plan = diff(&d, &host_with_rules(), &[], None).expect("plan");
    assert_in_order(
        &plan,
        &["- @host: rule 100: from 10.1.0.0/24 lookup 200", "- @host: route 0.0.0.0/0 dev eth0 table 200"],
    );
    let text = plan.to_text();
    for kept in ["rule 0:", "rule 32766:", "rule 32767:", "rule 500:"] {
        assert!(!text.contains(kept), "`{kept}` is not netcfg's:\n{text}");
    }
}

#[test]
fn new_rules_come_after_the_routes_of_their_table_and_a_hand_made_one_is_taken_over() {
    let d = desired_of(
        r#"node "n" {
            ethernet "eth0" { address "10.0.0.2/24"; }
            route "default" via="10.0.0.1" dev="eth0" table=200
            rule priority=100 from="10.1.0.0/24" table=200
            rule priority=500 from="10.77.0.0/16" table=200
        }"#,
    );
    let mut live = host_with_rules();
    live.state.namespaces.get_mut(HOST).unwrap().routes.clear();
    live.state.namespaces.get_mut(HOST).unwrap().rules.remove(&rule(100, Some("10.1.0.0/24"), RuleAction::Lookup(200)));
    let plan = diff(&d, &live, &[], None).expect("plan");
    assert_in_order(&plan, &["+ @host: route 0.0.0.0/0 via 10.0.0.1 dev eth0 table 200", "+ @host: rule 100:"]);
    assert_in_order(&plan, &["- @host: rule 500: from 10.77.0.0/16 lookup 200 proto 0", "+ @host: rule 500:"]);
    for op in &plan.ops {
        let inv = op.inverse().expect("inverse");
        assert_eq!(inv.inverse().as_ref(), Some(op), "{}", op.describe());
    }
}

#[test]
fn a_rollback_target_keeps_the_kernels_rules_even_if_it_lacks_them() {
    let mut d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
    d.exact = true;
    let text = diff(&d, &host_with_rules(), &[], None).expect("plan").to_text();
    assert!(text.contains("- @host: rule 500:") && text.contains("- @host: rule 100:"), "{text}");
    assert!(!text.contains("rule 0:") && !text.contains("rule 32766:") && !text.contains("rule 32767:"), "{text}");
}
