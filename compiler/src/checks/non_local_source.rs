//! `non-local-source`: an address the spec uses as this namespace's own source that is not one
//! of its addresses.
//!
//! **What it does.** Looks up, in the namespace that uses it:
//! - (error) a route's `src` (any table): the kernel refuses the route (`Invalid prefsrc
//!   address` from `fib_valid_prefsrc` for IPv4, `Invalid source address` for IPv6);
//! - (error) a VXLAN's `local`: encapsulated frames leave with a source this node does not own,
//!   so the far end's frames go to whoever owns it;
//! - (error) a `snat`'s `to` that lies in a subnet of one of the namespace's links but is not
//!   an address of the namespace: the replies are for an on-link address, the next hop asks ARP
//!   (or ND) for it on that link, and nobody here answers. A `to` outside every local subnet is
//!   left alone: a block routed to this node (a /29 from the ISP) is the usual reason.
//!
//! An address is local when a link of the namespace carries it (whatever its prefix route or
//! link state: the kernel adds the local route either way), when a `type="local"` route of the
//! namespace covers it, or it is in `127.0.0.0/8`.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `non-local-source` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{LinkKind, Node};
use crate::model::{FibSource, Lookup, Model, NetnsRef};
use crate::trace::Tracer;
use netcfg_lang::vocab::RouteType;
use netcfg_lang::{Code, Diagnostic, Severity, Spanned};
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "non-local-source",
        &[Severity::Error],
        "a route `src`, VXLAN `local` or on-link `snat` address the namespace does not own",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        let node = model.node(ns.node);
        for route in &netns.routes {
            let Some(src) = &route.src else { continue };
            if !is_local(model, ns, src.value) {
                diags.push(
                    Diagnostic::error(
                        CHECK.code,
                        src.span,
                        format!("route source `{}` is not an address of {}", src.value, node.describe_netns(ns.netns)),
                    )
                    .with_label("the kernel refuses a route whose `src` is not local")
                    .with_help(fix(model, ns, src, "src")),
                );
            }
        }
        for link in node.links_in(ns.netns) {
            let LinkKind::Vxlan { local: Some(local), .. } = &link.kind else { continue };
            if !is_local(model, ns, local.value) {
                diags.push(
                    Diagnostic::error(
                        CHECK.code,
                        local.span,
                        format!(
                            "vxlan `{}` has `local` `{}`, which is not an address of {}",
                            link.name.value,
                            local.value,
                            node.describe_netns(ns.netns)
                        ),
                    )
                    .with_label("encapsulated frames leave with this source, and the far end answers it")
                    .with_help(fix(model, ns, local, "local")),
                );
            }
        }
        for snat in &netns.snats {
            let to = snat.to.value;
            if is_local(model, ns, to) {
                continue;
            }
            let fib = model.fib(ns);
            let Lookup::Route(e) = fib.lookup(to) else { continue };
            let FibSource::Connected { link, .. } = e.source else { continue };
            let name = &node.link(link).name.value;
            diags.push(
                Diagnostic::error(
                    CHECK.code,
                    snat.to.span,
                    format!("`snat` to `{to}`, an address of the subnet of `{name}` that no link here has"),
                )
                .with_label(format!("replies to `{to}` are resolved on `{name}`, and nothing here answers for it"))
                .with_help(format!(
                    "add `address` `{to}` to `{name}`, or snat to one of its addresses{}",
                    example(node, link, to)
                )),
            );
        }
    }
}

fn is_local(model: &Model, ns: NetnsRef, addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_loopback())
        || matches!(model.fib(ns).lookup(addr), Lookup::Local(_))
        // A `type="local"` route (AnyIP) makes its addresses the namespace's own.
        || model.tables(ns).any(|(_, fib)| matches!(fib.lookup(addr), Lookup::Route(e) if e.route_type == RouteType::Local))
}

/// The help: an address of the namespace of the same family to use instead, preferring the
/// link the address's subnet or the route leads to.
fn fix(model: &Model, ns: NetnsRef, addr: &Spanned<IpAddr>, key: &str) -> String {
    let node = model.node(ns.node);
    let candidate = Tracer::routing(model)
        .egress(ns, addr.value)
        .and_then(|l| first_of_family(node, l, addr.value))
        .or_else(|| {
            node.links_in(ns.netns)
                .filter(|l| !matches!(l.kind, LinkKind::Loopback))
                .find_map(|l| first_of_family(node, l.id, addr.value))
        });
    match candidate {
        Some(c) => format!("set `{key}=\"{c}\"` (an address of this namespace), or add `{}` to a link", addr.value),
        None => format!("add `{}` as an `address` of a link of this namespace, or remove `{key}`", addr.value),
    }
}

fn first_of_family(node: &Node, link: crate::ir::LinkId, like: IpAddr) -> Option<IpAddr> {
    node.link(link).addresses.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == like.is_ipv4())
}

fn example(node: &Node, link: crate::ir::LinkId, like: IpAddr) -> String {
    first_of_family(node, link, like).map(|a| format!(" (`{a}`)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn an_address_of_a_local_route_is_local() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "192.0.2.0/24" type="local" dev="lo"
    route "10.9.0.0/16" via="10.0.0.1" src="192.0.2.7"
    route "10.8.0.0/16" via="10.0.0.1" src="192.0.3.7"
//                                          ^^^^^^^^^ error non-local-source
}
"#,
        );
    }

    #[test]
    fn route_src_that_is_not_local() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; address "10.0.0.3/32" prefix-route=#false; }
    ethernet "eth1" state="down" { address "192.168.5.1/24"; }
    route "10.9.0.0/16" via="10.0.0.1" src="10.0.0.20"
//                                          ^^^^^^^^^ error non-local-source
    route "10.8.0.0/16" via="10.0.0.1" src="10.0.0.2" table=100
    route "10.7.0.0/16" via="10.0.0.1" src="10.0.0.3"
    route "10.6.0.0/16" via="10.0.0.1" src="192.168.5.1"
    route "10.5.0.0/16" via="10.0.0.1" src="10.0.0.99" table=100
//                                          ^^^^^^^^^ error non-local-source
    route "10.4.0.0/16" dev="lo" src="127.0.0.1"
}
"#,
        );
        assert_eq!(d[0].message, "route source `10.0.0.20` is not an address of node `n`");
        assert_eq!(
            d[0].help.as_deref(),
            Some("set `src=\"10.0.0.2\"` (an address of this namespace), or add `10.0.0.20` to a link")
        );
    }

    #[test]
    fn vxlan_local_that_is_not_local() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.11/24"; }
    vxlan "vx0" vni=42 local="10.0.0.12" remote="10.0.0.13" dev="eth0"
//                            ^^^^^^^^^ error non-local-source
    vxlan "vx1" vni=43 local="10.0.0.11" remote="10.0.0.13" dev="eth0"
    netns "t" {
        vxlan "vx2" vni=44 local="10.0.0.11" remote="10.0.0.13"
//                                ^^^^^^^^^ error non-local-source
    }
}
"#,
        );
    }

    #[test]
    fn snat_to_an_on_link_address_nobody_here_has() {
        check(
            r#"
node "gw" {
    forwarding #true
    ethernet "wan0" { address "203.0.113.2/24"; }
    ethernet "lan0" { address "192.168.1.1/24"; }
    route "default" via="203.0.113.1" dev="wan0"
    snat from="192.168.1.0/24" out="wan0" to="203.0.113.9"
//                                            ^^^^^^^^^^^ error non-local-source
    snat from="192.168.1.0/24" out="wan0" to="203.0.113.2"
    snat from="192.168.1.0/24" out="wan0" to="198.51.100.5"
}
"#,
        );
    }
}
