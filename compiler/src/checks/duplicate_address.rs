//! `duplicate-address`: one host address claimed twice where the claims collide.
//!
//! **What it does.** Groups every declared address by host address (the prefix length does not
//! make two addresses different) and reports a later declaration that collides with an earlier
//! one:
//! - twice on one link;
//! - on two links of one namespace (IPv6 link-local addresses excepted: they are scoped to their
//!   link, and the same `fe80::…` on every host-side veth is normal);
//! - on two links of one L2 segment in different namespaces or nodes (two nodes with the same
//!   `eth0` address on one LAN, a pod with its bridge's address).
//!
//! The same address on separate segments is fine: every ECS host has `169.254.172.1` on its own
//! `ecs-bridge`. The implicit loopback addresses never count.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `duplicate-address` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::model::{AddrRef, Model, NetnsRef, SegmentId};
use netcfg_lang::{Code, Diagnostic, Severity, Span};
use std::collections::HashMap;
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "duplicate-address",
        &[Severity::Error],
        "an address declared twice on one link, namespace or L2 segment",
    ),
    run,
    after_errors: AfterErrors::Run,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    // `Model::owners` already groups addresses (loopbacks excluded); visit each group once, from
    // its first member, so the whole check is linear in the number of addresses.
    for (r, link) in model.links() {
        for (index, a) in link.addresses.iter().enumerate() {
            let owners = model.owners(a.addr());
            if owners.len() > 1 && owners[0] == (AddrRef { link: r, index }) {
                group(model, a.addr(), owners, diags);
            }
        }
    }
}

/// Reports, for every member of one address group in declaration order, the earliest member
/// it collides with: one finding per later declaration, never all pairs.
fn group(model: &Model, addr: IpAddr, owners: &[AddrRef], diags: &mut Vec<Diagnostic>) {
    let mut members: Vec<(Span, AddrRef)> = owners.iter().map(|o| (model.address(*o).span, *o)).collect();
    members.sort_by_key(|(span, _)| *span);
    let scoped_to_link = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
    let mut first_in_ns: HashMap<NetnsRef, (Span, AddrRef)> = HashMap::new();
    let mut first_on_segment: HashMap<SegmentId, (Span, AddrRef)> = HashMap::new();
    for (span, member) in members {
        let ns = model.netns_of(member.link);
        let segment = model.segment_of(member.link);
        let same_ns = if scoped_to_link { None } else { first_in_ns.get(&ns).copied() };
        let same_segment = first_on_segment.get(&segment).copied();
        if let Some((_, first)) = [same_ns, same_segment].into_iter().flatten().min_by_key(|(s, _)| *s) {
            diags.push(report(model, addr, first, member));
        }
        first_in_ns.entry(ns).or_insert((span, member));
        first_on_segment.entry(segment).or_insert((span, member));
    }
}

/// `eth0` of node `a`, or `eth0` in namespace `pod` of node `a`.
fn describe(model: &Model, a: AddrRef) -> String {
    let link = model.link(a.link);
    let node = model.node(a.link.node);
    match &node.netns(link.netns).name {
        None => format!("`{}` of node `{}`", link.name.value, node.name.value),
        Some(ns) => format!("`{}` in namespace `{}` of node `{}`", link.name.value, ns.value, node.name.value),
    }
}

fn report(model: &Model, addr: IpAddr, first: AddrRef, again: AddrRef) -> Diagnostic {
    let again_link = &model.link(again.link).name.value;
    let (message, label, help) = if first.link == again.link {
        (
            format!("address `{addr}` is declared twice on `{again_link}`"),
            "declared again here".to_string(),
            "remove one of the two declarations; a different prefix length does not make a different address"
                .to_string(),
        )
    } else if model.netns_of(first.link) == model.netns_of(again.link) {
        let ns = model.netns_of(again.link);
        (
            format!("address `{addr}` is on two links of {}", model.node(ns.node).describe_netns(ns.netns)),
            format!("also on `{again_link}`"),
            format!("keep `{addr}` on one link and give `{again_link}` an address of its own"),
        )
    } else {
        (
            format!("address `{addr}` is used twice on one L2 segment"),
            format!("also claimed by {}; both answer ARP for it", describe(model, again)),
            format!("give {} an address of its own on the segment", describe(model, again)),
        )
    };
    Diagnostic::error(CHECK.code, model.address(again).span, message)
        .with_label(label)
        .with_secondary(model.address(first).span, format!("first declared here, on {}", describe(model, first)))
        .with_help(help)
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn twice_on_one_link() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" {
        address "10.0.0.5/24"
        address "10.0.0.5/24"
//               ^^^^^^^^^^^ error duplicate-address
        address "fd00::5/64"
        address "fd00::5/64"
//               ^^^^^^^^^^ error duplicate-address
    }
}
"#,
        );
        assert_eq!(d[0].message, "address `10.0.0.5` is declared twice on `eth0`");
        assert_eq!(d[0].secondary[0].message, "first declared here, on `eth0` of node `n`");
    }

    #[test]
    fn on_two_links_of_one_namespace_whatever_the_prefix_length() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "192.0.2.10/32"; }
    ethernet "eth1" { address "192.0.2.10/31"; }
//                             ^^^^^^^^^^^^^ error duplicate-address
    netns "t" {
        veth "v0" { address "198.51.100.1/32"; peer "v0-host" netns="@host"; }
        veth "v1" { address "198.51.100.1/32"; peer "v1-host" netns="@host"; }
//                           ^^^^^^^^^^^^^^^ error duplicate-address
    }
}
"#,
        );
        assert_eq!(d[0].message, "address `192.0.2.10` is on two links of node `n`");
        assert_eq!(d[1].message, "address `198.51.100.1` is on two links of namespace `t` of node `n`");
        assert_eq!(d[1].help.as_deref(), Some("keep `198.51.100.1` on one link and give `v1` an address of its own"));
    }

    #[test]
    fn two_nodes_with_one_address_on_the_same_lan() {
        let d = check(
            r#"
node "a" { ethernet "eth0" { address "10.0.0.5/24"; }; }
node "b" { ethernet "eth0" { address "10.0.0.6/24"; }; }
node "c" { ethernet "eth0" { address "10.0.0.5/24"; }; }
//                                    ^^^^^^^^^^^ error duplicate-address
"#,
        );
        assert_eq!(d[0].message, "address `10.0.0.5` is used twice on one L2 segment");
        assert_eq!(d[0].secondary[0].message, "first declared here, on `eth0` of node `a`");
        assert_eq!(d[0].help.as_deref(), Some("give `eth0` of node `c` an address of its own on the segment"));
    }

    #[test]
    fn a_pod_with_its_bridge_address() {
        let d = check(
            r#"
node "w1" {
    netns "pod" {
        veth "eth0" {
            address "10.244.1.1/24"
            peer "veth-pod" netns="@host" master="cni0"
        }
    }
    bridge "cni0" { address "10.244.1.1/24"; }
//                           ^^^^^^^^^^^^^ error duplicate-address
}
"#,
        );
        // `cni0` gets the lower link id (host links are numbered first), but the pod's address
        // comes first in the file: "first" means first by position.
        assert_eq!(d[0].secondary[0].message, "first declared here, on `eth0` in namespace `pod` of node `w1`");
        assert_eq!(d[0].primary.message, "also claimed by `cni0` of node `w1`; both answer ARP for it");
    }

    #[test]
    fn one_finding_per_later_declaration_against_the_first() {
        let d = check(
            r#"
node "a" { ethernet "eth0" { address "10.0.0.5/24"; }; }
node "b" { ethernet "eth0" { address "10.0.0.5/24"; }; }
//                                    ^^^^^^^^^^^ error duplicate-address
node "c" { ethernet "eth0" { address "10.0.0.5/24"; }; }
//                                    ^^^^^^^^^^^ error duplicate-address
"#,
        );
        assert!(d.iter().all(|d| d.secondary[0].message.ends_with("of node `a`")), "{d:?}");
    }

    #[test]
    fn separate_segments_may_reuse_an_address() {
        check(
            r#"
node "ecs-1" {
    bridge "ecs-bridge" { address "169.254.172.1/22"; }
    netns "task-1" {
        veth "ecs-eth0" {
            address "169.254.172.2/22"
            peer "veth-t1" netns="@host" master="ecs-bridge"
        }
    }
}
node "ecs-2" {
    bridge "ecs-bridge" { address "169.254.172.1/22"; }
    netns "task-1" {
        veth "ecs-eth0" {
            address "169.254.172.2/22"
            peer "veth-t1" netns="@host" master="ecs-bridge"
        }
    }
}
"#,
        );
    }

    #[test]
    fn implicit_loopback_addresses_never_count() {
        // `lo` of namespace `t` holds 127.0.0.1 and ::1 implicitly.
        check(
            r#"
node "n" {
    netns "t" {
        veth "eth0" {
            address "127.0.0.1/8"
            address "::1/128"
            peer "veth-t" netns="@host"
        }
    }
}
"#,
        );
    }

    #[test]
    fn ipv6_link_local_may_repeat_across_links_of_one_namespace() {
        // Calico-style host-side veths all carry the same link-local address. Other checks may
        // have their own opinion on the shared fe80::/64; this check must stay quiet, except for
        // a link-local address repeated on one segment.
        let src = r#"
node "n" {
    netns "p1" { veth "eth0" { peer "cali1" netns="@host" { address "fe80::ecee:eeff:feee:eeee/64"; }; }; }
    netns "p2" { veth "eth0" { peer "cali2" netns="@host" { address "fe80::ecee:eeff:feee:eeee/64"; }; }; }
    netns "p3" { veth "eth0" { address "fe80::1/64"; peer "cali3" netns="@host" { address "fe80::1/64"; }; }; }
}
"#;
        let parsed = netcfg_lang::parse_str("t.kdl", src);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let found: Vec<String> = crate::compile(&parsed.spec)
            .diagnostics
            .into_iter()
            .filter(|d| d.code == super::CHECK.code)
            .map(|d| d.message)
            .collect();
        assert_eq!(found, ["address `fe80::1` is used twice on one L2 segment"]);
    }
}
