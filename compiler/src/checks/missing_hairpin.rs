//! `missing-hairpin`: a service backend (or a published port's) behind a bridge port without
//! hairpin mode, so the backend cannot reach its own service (incident 004) or published port.
//!
//! **What it does.** For each `service`, finds the backends that live in another namespace of
//! the node, on a veth whose peer is a port of a bridge in the service's namespace, and whose
//! route to the VIP goes through a router by that veth. Reports the port when it lacks
//! `hairpin=#true` and the bridge passes bridged traffic to netfilter (`bridge-netfilter`, or the
//! bridge's `netfilter=#true`, as incident 004 requires).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `missing-hairpin` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{LinkId, LinkKind};
use crate::model::{Fib, FibSource, LinkRef, Lookup, Model, NetnsRef};
use netcfg_lang::{Code, Diagnostic, Severity};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "missing-hairpin",
        &[Severity::Warning],
        "a service or published-port backend behind a bridge port without hairpin mode",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        // One finding per port: every service that can pick the pod needs the same fix.
        let mut reported: BTreeSet<LinkRef> = BTreeSet::new();
        // (backend, its span, what it is the backend of, the address the pod connects to: a
        // service's VIP, routed; `None` for a published port, on the node's own addresses,
        // which the pod reaches through the bridge whether routed or on-link).
        let services = netns.services.iter().flat_map(|svc| {
            svc.backends
                .iter()
                .map(move |b| (b.addr, b.span, format!("service `{}`", svc.name.value), Some(svc.vip.value)))
        });
        let published =
            netns.publishes.iter().map(|p| (p.to.value, p.to.span, format!("published port `{}`", p.name.value), None));
        for (addr, span, of, vip) in services.chain(published) {
            for owner in model.owners(addr) {
                let Some((port, bridge)) = bridge_port(model, ns, owner.link) else { continue };
                let port_link = model.link(port);
                if port_link.hairpin.as_ref().is_some_and(|h| h.value) || !model.bridge_netfilter(bridge) {
                    continue;
                }
                let pod_ns = model.netns_of(owner.link);
                let routed = vip.is_none_or(|vip| routed_through(model.fib(pod_ns), vip, owner.link.link));
                if !routed || !reported.insert(port) {
                    continue;
                }
                let pod = model.node(ns.node).netns(pod_ns.netns).display_name();
                let target = of.rsplit_once(' ').map(|(_, name)| name).unwrap_or(&of);
                let mut d = Diagnostic::warning(
                    CHECK.code,
                    span,
                    format!(
                        "backend `{addr}` of {of} sits behind bridge port `{}`, which has no hairpin mode",
                        port_link.name.value
                    ),
                )
                .with_label(format!(
                    "when `{pod}` connects to {target} and is picked, the bridge must send the frame back out of `{}`",
                    port_link.name.value
                ));
                d = match &port_link.hairpin {
                    Some(off) => d.with_secondary(off.span, "hairpin mode is turned off here"),
                    None => d.with_secondary(
                        port_link.name.span,
                        format!("port of bridge `{}` without hairpin mode", model.link(bridge).name.value),
                    ),
                };
                diags.push(d.with_help(format!("set `hairpin=#true` on `{}`", port_link.name.value)));
            }
        }
    }
}

/// For a backend's link in another namespace of the service's node: the veth peer that is a port
/// of a bridge in the service's namespace, and that bridge.
fn bridge_port(model: &Model, service_ns: NetnsRef, backend: LinkRef) -> Option<(LinkRef, LinkRef)> {
    let link = model.link(backend);
    if backend.node != service_ns.node || link.netns == service_ns.netns {
        return None;
    }
    let LinkKind::Veth { peer } = link.kind else { return None };
    let port = LinkRef { node: backend.node, link: peer };
    let bridge = model.bridge_of(backend)?;
    (model.netns_of(bridge) == service_ns && model.netns_of(port) == service_ns).then_some((port, bridge))
}

/// Whether the pod sends its traffic for `vip` to a router through `link`. A VIP inside the
/// pod's own subnet is resolved on-link, where nobody answers for it (`overlapping-cidrs`).
fn routed_through(fib: &Fib, vip: IpAddr, link: LinkId) -> bool {
    match fib.lookup(vip) {
        Lookup::Route(e) if !matches!(e.source, FibSource::Connected { .. }) => fib.egress(vip) == Some(link),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_published_port_to_a_pod_behind_a_bridge_port_without_hairpin() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    bridge-netfilter #true
    ethernet "eth0" { address "192.0.2.10/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    publish "web" port=8080 to="10.244.1.5:80"
//                              ^^^^^^^^^^^^^ warning missing-hairpin
    publish "api" port=8081 to="10.244.1.6:80"
    netns "web" {
        veth "eth0" {
            address "10.244.1.5/24"
            peer "veth-web" netns="@host" master="br0"
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
    netns "api" {
        veth "eth0" {
            address "10.244.1.6/24"
            peer "veth-api" netns="@host" master="br0" hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
}
"#,
        );
        assert_eq!(
            d[0].message,
            "backend `10.244.1.5` of published port `web` sits behind bridge port `veth-web`, which has no hairpin mode"
        );
        assert_eq!(
            d[0].primary.message,
            "when `web` connects to `web` and is picked, the bridge must send the frame back out of `veth-web`"
        );
    }

    fn worker(hairpin_b: &str, services: &str) -> String {
        format!(
            r#"
node "worker-1" {{
    forwarding #true
    bridge-netfilter #true
    ethernet "eth0" {{ address "10.0.0.11/24"; }}
    route "default" via="10.0.0.1" dev="eth0"
    bridge "cni0" {{ address "10.244.1.1/24"; }}
    netns "pod-a" {{
        veth "eth0" {{
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0" hairpin=#true
        }}
        route "default" via="10.244.1.1" dev="eth0"
        listen "web" port=8080
    }}
    netns "pod-b" {{
        veth "eth0" {{
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0" {hairpin_b}
        }}
        route "default" via="10.244.1.1" dev="eth0"
        listen "web" port=8080
    }}
{services}
}}
"#
        )
    }

    #[test]
    fn backend_behind_a_port_without_hairpin() {
        let d = check(&worker(
            "",
            r#"    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.2:8080"
        backend "10.244.1.3:8080"
//               ^^^^^^^^^^^^^^^ warning missing-hairpin
    }
    service "web-tls" vip="10.96.0.11" port=443 { backend "10.244.1.3:8080"; }"#,
        ));
        assert_eq!(d.len(), 1, "one finding per port: {d:?}");
        assert_eq!(d[0].help.as_deref(), Some("set `hairpin=#true` on `veth-b`"));
        assert_eq!(d[0].secondary[0].message, "port of bridge `cni0` without hairpin mode");
    }

    #[test]
    fn hairpin_turned_off_is_pointed_at() {
        let d = check(&worker(
            "hairpin=#false",
            r#"    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.3:8080"
//               ^^^^^^^^^^^^^^^ warning missing-hairpin
    }"#,
        ));
        assert_eq!(d[0].secondary[0].message, "hairpin mode is turned off here");
    }

    #[test]
    fn hairpin_on_every_backend_port() {
        check(&worker(
            "hairpin=#true",
            r#"    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.2:8080"
        backend "10.244.1.3:8080"
    }"#,
        ));
    }

    #[test]
    fn backends_not_behind_a_bridge_of_the_service_namespace() {
        check(&worker(
            "",
            r#"    service "local" vip="10.96.0.20" port=80 { backend "10.0.0.11:8080"; }
    service "remote" vip="10.96.0.21" port=80 { backend "10.244.2.7:8080"; }
    netns "pod-c" {
        veth "eth0" {
            address "10.244.9.2/24"
            peer "veth-c" netns="@host" { address "10.244.9.1/24"; }
        }
        route "default" via="10.244.9.1" dev="eth0"
    }
    service "routed" vip="10.96.0.22" port=80 { backend "10.244.9.2:8080"; }"#,
        ));
    }

    #[test]
    fn only_with_bridge_netfilter() {
        let spec = |netfilter: &str| {
            format!(
                r#"
node "worker-1" {{
    forwarding #true
    bridge "cni0" {netfilter} {{ address "10.244.1.1/24"; }}
    netns "pod-b" {{
        veth "eth0" {{
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0"
        }}
        route "default" via="10.244.1.1" dev="eth0"
    }}
    service "web" vip="10.96.0.10" port=80 {{ backend "10.244.1.3:8080"; }}
"#
            )
        };
        // The DNAT happens in the routing path: the frame leaves from `cni0` itself.
        check(&(spec("") + "}\n"));
        check(
            &(spec("netfilter=#true")
                + r#"//                                                    ^^^^^^^^^^^^^^^ warning missing-hairpin
}
"#),
        );
    }

    #[test]
    fn a_backend_without_a_route_to_the_vip_never_hairpins() {
        check(
            r#"
node "worker-1" {
    forwarding #true
    bridge-netfilter #true
    bridge "cni0" { address "10.244.1.1/24"; }
    netns "batch" {
        veth "eth0" {
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0"
        }
    }
    service "metrics" vip="10.96.0.10" port=80 { backend "10.244.1.3:9100"; }
}
"#,
        );
    }
}
