//! `overlapping-cidrs`: subnets that overlap where they must not.
//!
//! **What it does.** Collects every link subnet (the prefix of each address, host-length
//! addresses excluded) across the whole fleet, sorts them, and sweeps once (O(n log n) plus one
//! finding per overlap). It reports:
//! - the same subnet on two links of one namespace (the kernel routes the prefix out of one of
//!   them only);
//! - overlapping subnets on different L2 segments, in any namespace of any node (overlapping
//!   pod CIDRs across nodes, a pod subnet inside the LAN): the fleet cannot route to both;
//! - a subnet nested in a different-length subnet on the same segment (prefix-length mismatch:
//!   hosts disagree on who is on-link);
//! - overlapping elements inside one address set (warning: nft interval sets reject them, netcfg
//!   would merge them, and the author probably meant something else).
//!
//! Equal subnets on one segment are the normal case (a bridge and its pods, nodes on one LAN),
//! and link-local subnets (169.254.0.0/16, fe80::/10) may repeat on different nodes (every ECS
//! host has its own `169.254.172.0/22` bridge).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `overlapping-cidrs` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::LinkKind;
use crate::model::{LinkRef, Model, SegmentId};
use ipnet::IpNet;
use netcfg_lang::{Code, Diagnostic, Severity, Span};
use std::collections::BTreeMap;

pub const CHECK: Check = Check {
    code: Code::new(
        "overlapping-cidrs",
        &[Severity::Error, Severity::Warning],
        "subnets overlap across links, namespaces or nodes",
    ),
    run,
    after_errors: AfterErrors::Run,
};

#[derive(Clone, Copy)]
struct Entry {
    link: LinkRef,
    segment: SegmentId,
    span: Span,
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    // Grouped by exact network; BTreeMap order on IpNet is (address, prefix length), so a
    // network comes after every network that contains it and starts at the same address.
    let mut groups: BTreeMap<(bool, u128, u8), (IpNet, Vec<Entry>)> = BTreeMap::new();
    let mut add = |net: IpNet, entry: Entry| {
        let key = (net.addr().is_ipv6(), addr_bits(net), net.prefix_len());
        groups.entry(key).or_insert_with(|| (net, Vec::new())).1.push(entry);
    };
    for (r, link) in model.links() {
        if matches!(link.kind, LinkKind::Loopback) {
            continue;
        }
        for a in &link.addresses {
            if a.net.prefix_len() < a.net.max_prefix_len() {
                add(a.net.trunc(), Entry { link: r, segment: model.segment_of(r), span: a.span });
            }
        }
    }

    let mut stack: Vec<(IpNet, Vec<Entry>)> = Vec::new();
    for (_, (net, entries)) in groups {
        while stack
            .last()
            .is_some_and(|(outer, _)| !outer.contains(&net) || outer.addr().is_ipv6() != net.addr().is_ipv6())
        {
            stack.pop();
        }
        for (i, e) in entries.iter().enumerate() {
            // Within one network: report against the first entry it conflicts with.
            if let Some(first) = entries[..i].iter().find(|f| conflicts_equal(model, net, f, e)) {
                report(model, diags, net, first, net, e);
            }
        }
        // Against enclosing networks, innermost first: one finding per pair of networks (the
        // pods of a bridge share its subnet; one finding says it).
        for (outer, outer_entries) in stack.iter().rev() {
            let pair = entries
                .iter()
                .find_map(|e| outer_entries.iter().find(|o| conflicts_nested(model, o, e)).map(|o| (o, e)));
            if let Some((o, e)) = pair {
                report(model, diags, *outer, o, net, e);
            }
        }
        stack.push((net, entries));
    }
    address_sets(model, diags);
}

fn addr_bits(net: IpNet) -> u128 {
    match net.network() {
        std::net::IpAddr::V4(a) => u32::from(a) as u128,
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

fn is_link_local(net: IpNet) -> bool {
    match net {
        IpNet::V4(n) => "169.254.0.0/16".parse::<ipnet::Ipv4Net>().expect("valid").contains(&n),
        IpNet::V6(n) => "fe80::/10".parse::<ipnet::Ipv6Net>().expect("valid").contains(&n),
    }
}

/// Two entries of the same network conflict unless they share a segment, or the network is
/// link-local and they sit on different nodes.
fn conflicts_equal(model: &Model, net: IpNet, a: &Entry, b: &Entry) -> bool {
    if a.segment == b.segment || a.link == b.link {
        return false;
    }
    // Every IPv6 link has its own fe80::/64; IPv6 link-local never conflicts.
    if net.addr().is_ipv6() && is_link_local(net) {
        return false;
    }
    let same_ns = model.netns_of(a.link) == model.netns_of(b.link);
    same_ns || !(is_link_local(net) && a.link.node != b.link.node)
}

/// An entry inside a strictly larger network.
fn conflicts_nested(model: &Model, outer: &Entry, inner: &Entry) -> bool {
    outer.link.node == inner.link.node
        || !(is_link_local_link(model, outer.link) && is_link_local_link(model, inner.link))
}

fn is_link_local_link(model: &Model, l: LinkRef) -> bool {
    model.link(l).addresses.iter().all(|a| is_link_local(a.net))
}

fn describe(model: &Model, link: LinkRef) -> String {
    let node = model.node(link.node);
    format!("link `{}` of {}", model.link(link).name.value, node.describe_netns(model.link(link).netns))
}

fn report(model: &Model, diags: &mut Vec<Diagnostic>, a_net: IpNet, a: &Entry, b_net: IpNet, b: &Entry) {
    // The later declaration gets the primary span, so the first one reads as "declared here".
    let ((p_net, p), (s_net, s)) = if a.span <= b.span { ((b_net, b), (a_net, a)) } else { ((a_net, a), (b_net, b)) };
    let (message, help) = if p_net == s_net && model.netns_of(p.link) == model.netns_of(s.link) {
        (
            format!("subnet `{p_net}` is on two links of the same namespace"),
            format!(
                "keep `{p_net}` on one link (put the others on a bridge), or give `{}` its own subnet",
                model.link(p.link).name.value
            ),
        )
    } else if p.segment == s.segment {
        (
            format!("subnet `{p_net}` disagrees with `{s_net}` on the same segment"),
            "use the same prefix length on every address of one L2 segment".to_string(),
        )
    } else if let (LinkKind::Vxlan { vni: vp, .. }, LinkKind::Vxlan { vni: vs, .. }) =
        (&model.link(p.link).kind, &model.link(s.link).kind)
    {
        // One overlay subnet on two VXLANs that do not share a VNI: the VNI is the mistake.
        (
            format!("subnet `{p_net}` overlaps `{s_net}` on a VXLAN of another VNI"),
            format!(
                "give both VXLANs one `vni` (`{}` has {}, `{}` has {}), or give each its own subnet",
                model.link(p.link).name.value,
                vp.value,
                model.link(s.link).name.value,
                vs.value
            ),
        )
    } else {
        (
            format!("subnet `{p_net}` overlaps `{s_net}`"),
            "give every link a subnet of its own (pod CIDRs must be disjoint across nodes)".to_string(),
        )
    };
    diags.push(
        Diagnostic::error(CHECK.code, p.span, message)
            .with_label(format!("on {}", describe(model, p.link)))
            .with_secondary(s.span, format!("`{s_net}` on {}", describe(model, s.link)))
            .with_help(help),
    );
}

fn address_sets(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (_, ns) in model.namespaces() {
        for set in &ns.firewall.sets {
            let mut elements: Vec<_> = set.elements.iter().collect();
            elements.sort_by_key(|e| (e.value.addr().is_ipv6(), addr_bits(e.value), e.value.prefix_len()));
            let mut open: Option<&netcfg_lang::Spanned<IpNet>> = None;
            for e in elements {
                match open {
                    Some(o) if o.value.contains(&e.value) && o.value.addr().is_ipv6() == e.value.addr().is_ipv6() => {
                        let (p, s) = if o.span <= e.span { (e, o) } else { (o, e) };
                        diags.push(
                            Diagnostic::warning(
                                CHECK.code,
                                p.span,
                                format!("`{}` overlaps `{}` in set `{}`", p.value, s.value, set.name.value),
                            )
                            .with_secondary(s.span, "overlapping element")
                            .with_help("remove the element that is already covered"),
                        );
                    }
                    _ => open = Some(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn pod_cidrs_overlapping_across_nodes() {
        check(
            r#"
node "w2" {
    bridge "cni0" { address "10.244.2.1/24"; }
}
node "w3" {
    bridge "cni0" { address "10.244.2.1/23"; }
//                           ^^^^^^^^^^^^^ error overlapping-cidrs
}
"#,
        );
    }

    #[test]
    fn equal_pod_cidrs_on_two_nodes_conflict() {
        check(
            r#"
node "w1" { bridge "cni0" { address "10.244.1.1/24"; }; }
node "w2" { bridge "cni0" { address "10.244.1.1/24"; }; }
//                                   ^^^^^^^^^^^^^ error overlapping-cidrs
"#,
        );
    }

    #[test]
    fn a_vlan_on_a_trunk_port_is_on_the_vlan_filtering_bridge() {
        check(
            r#"
node "n" {
    bridge "br0" vlan-filtering=#true vlans="10" pvid=10 untagged="10" {
        address "10.10.0.254/24"
    }
    netns "trunk" {
        veth "eth0" { peer "veth-t" netns="@host" master="br0" vlans="10,20"; }
        vlan "eth0.10" parent="eth0" id=10 { address "10.10.0.4/24"; }
    }
    netns "untagged" {
        veth "eth0" { peer "veth-u" netns="@host" master="br0" vlans="20" pvid=20 untagged="20"; }
        vlan "eth0.20" parent="eth0" id=20 { address "10.10.0.5/24"; }
//                                                    ^^^^^^^^^^^^ error overlapping-cidrs
    }
}
"#,
        );
    }

    #[test]
    fn same_segment_and_shared_lan_are_fine() {
        check(
            r#"
node "w1" {
    ethernet "eth0" { address "10.0.0.11/24"; }
    bridge "cni0" { address "10.244.1.1/24"; }
    netns "pod" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-pod" netns="@host" master="cni0"
        }
    }
}
node "w2" { ethernet "eth0" { address "10.0.0.12/24"; }; }
node "ecs-1" { bridge "ecs-bridge" { address "169.254.172.1/22"; }; }
node "ecs-2" { bridge "ecs-bridge" { address "169.254.172.1/22"; }; }
node "v6" {
    bridge "br0" { address "fe80::1/64"; }
    bridge "br1" { address "fe80::1/64"; }
}
"#,
        );
    }

    #[test]
    fn same_subnet_on_two_links_of_one_namespace() {
        check(
            r#"
node "n" {
    bridge "br0" { address "192.168.0.1/24"; }
    bridge "br1" { address "192.168.0.2/24"; }
//                          ^^^^^^^^^^^^^^ error overlapping-cidrs
}
"#,
        );
    }

    #[test]
    fn prefix_mismatch_on_one_segment() {
        check(
            r#"
node "n" {
    forwarding #true
    bridge "cni0" { address "10.244.1.1/24"; }
    netns "pod" {
        veth "eth0" {
            address "10.244.1.2/16"
//                   ^^^^^^^^^^^^^ error overlapping-cidrs
            peer "veth-pod" netns="@host" master="cni0" hairpin=#true
        }
    }
}
"#,
        );
    }

    #[test]
    fn a_service_vip_is_not_a_network() {
        // A port forward on the node's own address, and a VIP inside another node's subnet:
        // neither is an overlap of networks.
        check(
            r#"
node "gw" {
    forwarding #true
    ethernet "eth0" { address "192.168.1.1/24"; }
    ethernet "eth1" { address "10.0.0.1/24"; }
    service "nas" vip="192.168.1.1" port=8080 { backend "10.0.0.5:80"; }
}
node "other" {
    ethernet "eth0" { address "172.16.0.2/16"; }
}
node "k8s" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.7/24"; }
    service "api" vip="172.16.5.1" port=443 { backend "10.0.0.5:6443"; }
}
"#,
        );
    }

    #[test]
    fn one_overlay_subnet_on_two_vnis() {
        let d = check(
            r#"
node "a" { vxlan "vx7" vni=7 { address "172.20.7.1/24"; }; }
node "b" { vxlan "vx7" vni=8 { address "172.20.7.2/24"; }; }
//                                      ^^^^^^^^^^^^^ error overlapping-cidrs
"#,
        );
        assert_eq!(
            d[0].help.as_deref(),
            Some("give both VXLANs one `vni` (`vx7` has 8, `vx7` has 7), or give each its own subnet")
        );
    }

    #[test]
    fn overlapping_set_elements() {
        check(
            r#"
node "n" {
    firewall {
        set "admins" "10.0.0.0/8" "10.1.0.0/16" "192.168.1.0/24"
//                                 ^^^^^^^^^^^ warning overlapping-cidrs
    }
}
"#,
        );
    }
}
