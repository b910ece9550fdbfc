//! `unreachable-backend`: a service backend, or the backend of a published port, that its
//! namespace has no route to.
//!
//! **What it does.** After DNAT the connection is routed in the service's namespace to the
//! backend's address. For every backend, asks the packet-path model
//! ([`Tracer::route_lookup`], the route `netcfg trace` shows for the DNAT-ed packet): no route
//! at all, or a `blackhole`, `unreachable` or `prohibit` route, is an error. A local backend
//! (an address of the namespace, `127.0.0.0/8`) and one behind the default route are reachable
//! as far as the spec can tell and are left alone.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `unreachable-backend` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::model::{FibSource, Lookup, Model};
use netcfg_lang::vocab::RouteType;
use netcfg_lang::{Code, Diagnostic, Severity};
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "unreachable-backend",
        &[Severity::Error],
        "a service or published-port backend the namespace has no route to",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        let backends = netns.services.iter().flat_map(|svc| {
            svc.backends
                .iter()
                .map(move |b| (b.addr, b.span, format!("backend `{}` of service `{}`", b.addr, svc.name.value)))
        });
        let published = netns
            .publishes
            .iter()
            .map(|p| (p.to.value, p.to.span, format!("backend `{}` of published port `{}`", p.to.value, p.name.value)));
        for (addr, span, what) in backends.chain(published) {
            if let Some(d) = unreachable(model, ns, netns, addr, span, &what) {
                diags.push(d);
            }
        }
    }
}

/// The finding for a DNAT target `addr` the namespace cannot route to, if it cannot.
fn unreachable(
    model: &Model,
    ns: crate::model::NetnsRef,
    netns: &crate::ir::Netns,
    addr: IpAddr,
    span: netcfg_lang::Span,
    what: &str,
) -> Option<Diagnostic> {
    if matches!(addr, IpAddr::V4(a) if a.is_loopback()) {
        return None;
    }
    let node = model.node(ns.node);
    let (label, secondary) = match model.lookup(ns, addr) {
        Lookup::Local(_) => return None,
        Lookup::Route(e) if matches!(e.route_type, RouteType::Unicast | RouteType::Local) => return None,
        Lookup::Route(e) => {
            let kind = e.route_type.keyword();
            let span = match e.source {
                FibSource::Static(i) => Some(netns.routes[i].dst_span),
                FibSource::Connected { .. } | FibSource::Dynamic { .. } => None,
            };
            (format!("a `{kind}` route covers `{addr}`"), span.map(|s| (s, format!("`{kind}` route to `{}`", e.dst))))
        }
        Lookup::NoRoute if netns.is_host() && !declares_routes(netns, addr) => return None,
        Lookup::NoRoute => (format!("no route in {} leads to `{addr}`", node.describe_netns(ns.netns)), None),
    };
    let mut d = Diagnostic::error(CHECK.code, span, format!("{what} is unreachable")).with_label(label);
    if let Some((span, note)) = secondary {
        d = d.with_secondary(span, note);
    }
    Some(d.with_help(format!("add a route to `{addr}` (or a default route), or remove the backend")))
}

/// Whether the namespace routes `addr`'s family itself (else its routes come from outside).
fn declares_routes(netns: &crate::ir::Netns, addr: std::net::IpAddr) -> bool {
    netns.routes.iter().any(|r| r.dst.addr().is_ipv4() == addr.is_ipv4())
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_published_port_to_a_backend_without_a_route() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "cni0" { address "10.244.1.1/24"; }
    route "10.66.0.0/16" type="blackhole"
    publish "web" port=8080 to="10.244.1.5:80"
    publish "local" port=8081 to="10.0.0.2:80"
    publish "lost" port=8082 to="10.66.1.1:80"
//                               ^^^^^^^^^^^^ error unreachable-backend
}
"#,
        );
        assert_eq!(d[0].message, "backend `10.66.1.1` of published port `lost` is unreachable");
    }

    #[test]
    fn backends_without_a_route() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "cni0" { address "10.244.1.1/24"; }
    route "10.244.2.0/24" via="10.0.0.3" dev="eth0"
    route "10.66.0.0/16" type="blackhole"
    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.5:8080"
        backend "10.244.2.5:8080"
        backend "10.0.0.2:8080"
        backend "127.0.0.1:8080"
        backend "10.244.7.5:8080"
//               ^^^^^^^^^^^^^^^ error unreachable-backend
        backend "10.66.1.1:8080"
//               ^^^^^^^^^^^^^^ error unreachable-backend
    }
}
node "with-default" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.9/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    service "web" vip="10.96.0.10" port=80 { backend "10.244.7.5:8080"; }
}
node "routes-from-dhcp" {
    forwarding #true
    ethernet "eth0"
    service "web" vip="10.96.0.10" port=80 { backend "10.244.7.5:8080"; }
}
node "pod" {
    netns "p" {
        forwarding #true
        veth "eth0" { address "10.244.9.2/24"; peer "veth-p" netns="@host"; }
        service "web" vip="10.96.0.10" port=80 { backend "10.245.0.5:8080"; }
//                                                        ^^^^^^^^^^^^^^^ error unreachable-backend
    }
}
"#,
        );
        assert_eq!(d[0].message, "backend `10.244.7.5` of service `web` is unreachable");
        assert_eq!(d[0].primary.message, "no route in node `n` leads to `10.244.7.5`");
    }

    /// The routing the check asks follows the kernel's default policy rules: `main`, then
    /// table 253; a route in another table is not consulted without a policy rule.
    #[test]
    fn backends_are_routed_by_the_kernels_default_rules() {
        check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "10.50.0.0/16" via="10.0.0.3" dev="eth0" table=253
    route "10.60.0.0/16" via="10.0.0.3" dev="eth0" table=100
    service "web" vip="10.96.0.10" port=80 {
        backend "10.50.1.1:8080"
        backend "10.60.1.1:8080"
//               ^^^^^^^^^^^^^^ error unreachable-backend
    }
}
"#,
        );
    }

    #[test]
    fn a_backend_routed_by_a_policy_rule_is_reachable() {
        check(
            r#"
node "n" {
    forwarding #true
    table "pods" id=100
    ethernet "eth0" { address "10.0.0.2/24"; }
    ethernet "eth1" { address "10.1.0.2/24"; }
    route "10.244.0.0/16" via="10.1.0.1" dev="eth1" table="pods"
    route "10.245.0.0/16" type="throw" table="pods"
    rule priority=100 to="10.244.0.0/16" table="pods"
    rule priority=110 fwmark="0x1" table="pods"
    rule priority=120 to="10.246.0.0/16" action="prohibit"
    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.7.5:8080"
        backend "10.245.7.5:8080"
//               ^^^^^^^^^^^^^^^ error unreachable-backend
        backend "10.246.7.5:8080"
//               ^^^^^^^^^^^^^^^ error unreachable-backend
    }
}
"#,
        );
    }
}
