//! `missing-bridge-netfilter`: traffic that L3 netfilter must see while it stays inside one
//! bridge, in a namespace where bridged traffic bypasses netfilter (incident 004).
//!
//! **What it does.** Reports, for a bridge whose namespace sets neither
//! `bridge-netfilter #true` (the `net.bridge.bridge-nf-call-iptables` sysctl) nor the bridge's
//! own `netfilter=#true`:
//! - (error) a service whose backend sits behind a port of that bridge while another port of the
//!   same bridge holds a client in the backend's subnet: the client's request is routed and
//!   DNAT-ed, but the backend answers the client directly over the bridge, the reply is never
//!   un-NAT-ed, and the client resets the connection;
//! - (warning) `forward` firewall rules or a non-accept `forward` policy in a namespace with a
//!   bridge of two or more ports: traffic between those ports is bridged and never reaches the
//!   `forward` hook, so the rules do not apply to it. Reported when the firewall is evidently
//!   meant for that traffic: two or more ports are veths to this node's own namespaces
//!   (containers, pods, whose traffic the node's policy governs), or a `forward` rule names a
//!   port (`iif`/`oif`, a zone holding one). A router whose LAN switch ports are bridged, with
//!   a forward policy for routed traffic, is left alone.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `missing-bridge-netfilter` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{LinkKind, NetnsId};
use crate::model::{LinkRef, Model, NetnsRef};
use netcfg_lang::vocab::Verdict;
use netcfg_lang::{Code, Diagnostic, Severity};
use std::collections::BTreeSet;

pub const CHECK: Check = Check {
    code: Code::new(
        "missing-bridge-netfilter",
        &[Severity::Error, Severity::Warning],
        "traffic netfilter must see stays inside a bridge that bypasses netfilter",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    services(model, diags);
    forward_rules(model, diags);
}

/// The links attached to a bridge as ports, each with the far end when the port is a veth.
fn ports(model: &Model, bridge: LinkRef) -> Vec<LinkRef> {
    model
        .node(bridge.node)
        .links
        .iter()
        .filter(|l| l.master.as_ref().is_some_and(|m| m.value == bridge.link))
        .map(|l| LinkRef { node: bridge.node, link: l.id })
        .collect()
}

/// The link behind a port that holds the station's addresses (a veth's far end, or the port).
fn station(model: &Model, port: LinkRef) -> LinkRef {
    match model.link(port).kind {
        LinkKind::Veth { peer } => LinkRef { node: port.node, link: peer },
        _ => port,
    }
}

fn help(model: &Model, bridge: LinkRef) -> String {
    let node = model.node(bridge.node);
    let link = model.link(bridge);
    let place = match &node.netns(link.netns).name {
        None => format!("node `{}`", node.name.value),
        Some(n) => format!("netns `{}`", n.value),
    };
    format!(
        "add `bridge-netfilter #true` to {place} (net.bridge.bridge-nf-call-iptables=1), or `netfilter=#true` on bridge `{}`",
        link.name.value
    )
}

fn services(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        for svc in &netns.services {
            let mut reported: BTreeSet<LinkRef> = BTreeSet::new();
            for backend in &svc.backends {
                for owner in model.owners(backend.addr) {
                    if owner.link.node != ns.node {
                        continue;
                    }
                    let Some(bridge) = model.bridge_of(owner.link) else { continue };
                    if model.netns_of(bridge) != ns || model.bridge_netfilter(bridge) || reported.contains(&bridge) {
                        continue;
                    }
                    let subnet = model.address(*owner).net.trunc();
                    let client = ports(model, bridge).into_iter().map(|p| station(model, p)).find(|s| {
                        *s != owner.link && model.link(*s).addresses.iter().any(|a| subnet.contains(&a.addr()))
                    });
                    let Some(client) = client else { continue };
                    reported.insert(bridge);
                    let b = model.link(bridge);
                    diags.push(
                        Diagnostic::error(
                            CHECK.code,
                            backend.span,
                            format!(
                                "service `{}` DNATs to a backend on bridge `{}`, which does not pass bridged traffic to netfilter",
                                svc.name.value, b.name.value
                            ),
                        )
                        .with_label("replies from this backend to clients on the same bridge are never un-NATed")
                        .with_secondary(b.name.span, "bridge netfilter is off here")
                        .with_secondary(
                            model.link(client).name.span,
                            format!(
                                "a client on the same bridge ({})",
                                model.node(client.node).describe_netns(model.link(client).netns)
                            ),
                        )
                        .with_help(help(model, bridge)),
                    );
                }
            }
        }
    }
}

fn forward_rules(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        let fw = &netns.firewall;
        let policy = fw.policy_forward.as_ref().filter(|p| p.value != Verdict::Accept).map(|p| p.span);
        let rule =
            fw.rules.iter().find(|r| r.direction.value == netcfg_lang::vocab::Direction::Forward).map(|r| r.span);
        let Some(span) = policy.or(rule) else { continue };
        for bridge in bridges(model, ns) {
            let ports = ports(model, bridge);
            if model.bridge_netfilter(bridge) || ports.len() < 2 {
                continue;
            }
            let local_stations = ports.iter().filter(|p| matches!(model.link(**p).kind, LinkKind::Veth { .. })).count();
            if local_stations < 2 && !names_a_port(fw, &ports) {
                continue;
            }
            let b = model.link(bridge);
            diags.push(
                Diagnostic::warning(
                    CHECK.code,
                    span,
                    format!("forward filtering does not see traffic between ports of bridge `{}`", b.name.value),
                )
                .with_secondary(b.name.span, "bridged traffic bypasses netfilter here")
                .with_help(help(model, bridge)),
            );
        }
    }
}

/// Whether a `forward` rule matches on a port of the bridge, directly or through a zone.
fn names_a_port(fw: &crate::ir::Firewall, ports: &[LinkRef]) -> bool {
    let is_port = |l: crate::ir::LinkId| ports.iter().any(|p| p.link == l);
    let zone_has_port =
        |z: crate::ir::ZoneId| fw.zones.get(z.0 as usize).is_some_and(|z| z.links.iter().any(|l| is_port(l.value)));
    fw.rules.iter().filter(|r| r.direction.value == netcfg_lang::vocab::Direction::Forward).any(|r| {
        [&r.iif, &r.oif].into_iter().flatten().any(|l| is_port(l.value))
            || [&r.from_zone, &r.to_zone].into_iter().flatten().any(|z| zone_has_port(z.value))
    })
}

fn bridges(model: &Model, ns: NetnsRef) -> Vec<LinkRef> {
    let node = model.node(ns.node);
    let _: NetnsId = ns.netns;
    node.links_in(ns.netns)
        .filter(|l| matches!(l.kind, LinkKind::Bridge { .. }))
        .map(|l| LinkRef { node: ns.node, link: l.id })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    const PODS: &str = r#"
    netns "pod-a" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0" hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
    netns "pod-b" {
        veth "eth0" {
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0" hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
        listen "web" port=8080
    }
"#;

    #[test]
    fn service_backend_sharing_a_bridge_with_a_client() {
        check(&format!(
            r#"
node "worker-1" {{
    forwarding #true
    bridge "cni0" {{ address "10.244.1.1/24"; }}
{PODS}
    service "web" vip="10.96.0.10" port=80 {{
        backend "10.244.1.3:8080"
//               ^^^^^^^^^^^^^^^ error missing-bridge-netfilter
    }}
}}
"#
        ));
    }

    #[test]
    fn fixed_by_the_sysctl_or_the_bridge_option() {
        for fix in ["bridge-netfilter #true", ""] {
            let netfilter = if fix.is_empty() { "netfilter=#true" } else { "" };
            check(&format!(
                r#"
node "worker-1" {{
    forwarding #true
    {fix}
    bridge "cni0" {netfilter} {{ address "10.244.1.1/24"; }}
{PODS}
    service "web" vip="10.96.0.10" port=80 {{ backend "10.244.1.3:8080"; }}
}}
"#
            ));
        }
    }

    #[test]
    fn backend_alone_on_its_bridge_is_fine() {
        check(
            r#"
node "n" {
    forwarding #true
    bridge "br0" { address "10.1.0.1/24"; }
    netns "only" {
        veth "eth0" {
            address "10.1.0.2/24"
            peer "veth-only" netns="@host" master="br0" hairpin=#true
        }
        route "default" via="10.1.0.1" dev="eth0"
        listen "web" port=80
    }
    service "web" vip="10.96.0.1" port=80 { backend "10.1.0.2:80"; }
}
"#,
        );
    }

    #[test]
    fn forward_rules_between_bridge_ports() {
        check(&format!(
            r#"
node "worker-1" {{
    forwarding #true
    bridge "cni0" {{ address "10.244.1.1/24"; }}
{PODS}
    firewall {{
        policy forward="drop"
//                      ^^^^ warning missing-bridge-netfilter
        allow forward proto="tcp" port=8080
    }}
}}
"#
        ));
    }

    #[test]
    fn a_router_with_bridged_lan_ports() {
        // The forward policy is for routed traffic; LAN hosts switching between the ports is
        // what the bridge is for. Quiet, unless a forward rule names a port.
        check(
            r#"
node "edge" {
    forwarding #true
    ethernet "lan1" master="br-lan"
    ethernet "lan2" master="br-lan"
    ethernet "wan0" { address "203.0.113.2/24"; }
    bridge "br-lan" { address "192.168.1.1/24"; }
    firewall {
        policy forward="drop"
        allow forward iif="br-lan" oif="wan0"
    }
}
node "edge-guest" {
    forwarding #true
    ethernet "lan1" master="br-lan"
    ethernet "guest" master="br-lan"
    ethernet "wan0" { address "203.0.113.3/24"; }
    bridge "br-lan" { address "192.168.2.1/24"; }
    firewall {
        policy forward="drop"
//                      ^^^^ warning missing-bridge-netfilter
        deny forward iif="guest" oif="lan1"
    }
}
"#,
        );
    }
}
