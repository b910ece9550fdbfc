//! `non-symmetric-routes`: a next hop that has no way back over the link it is reached by,
//! and routes between namespaces or nodes that exist one way only (incident 000).
//!
//! **What it does.**
//! 1. For every route `via` a gateway over a link (`dev`, or the link the gateway resolves to),
//!    looks the gateway up in the namespace's own FIB: that is the path the kernel checks when
//!    the gateway ARPs for us (`fib_validate_source` in `arp_process`). If the path back leaves
//!    by another link and the link's effective rp_filter (max of `all` and the link's own) is
//!    strict, the namespace silently ignores the gateway's ARP requests: error. With loose
//!    rp_filter only a missing route back fails. With rp_filter unset here (the distribution
//!    decides; many default to strict) an asymmetric path is a warning.
//! 2. For every route to a specific network via a gateway, every namespace of the fleet that
//!    holds an address in that network must have a route back to this namespace's source
//!    address on the link; otherwise replies are dropped there: error.
//! 3. Two uplinks: IPv4 default routes of the main table over two links (a failover pair of
//!    metrics) where a link other than the preferred one has strict rp_filter. A packet that
//!    arrives there from the internet fails the reverse-path check (the route back to its
//!    source is the preferred default, over the other link) and is dropped: error. Only an
//!    explicitly strict setting is reported; unset rp_filter is left to the distribution.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `non-symmetric-routes` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{LinkId, Node, Route};
use crate::model::{GatewayMemo, Lookup, Model, NetnsRef};
use crate::trace::Tracer;
use netcfg_lang::vocab::{RouteType, RpFilter};
use netcfg_lang::{Code, Diagnostic, Severity};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "non-symmetric-routes",
        &[Severity::Error, Severity::Warning],
        "a next hop or a routed peer has no path back over the same link",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        two_uplinks(model, ns, netns, diags);
    }
    let mut memo = GatewayMemo::default();
    for (ns, _, route, via) in model.gateway_routes() {
        let node = model.node(ns.node);
        let Some(dev) = route.dev.as_ref().map(|d| d.value).or_else(|| Tracer::routing(model).egress(ns, via.value))
        else {
            continue;
        };
        gateway_path_back(model, &mut memo, ns, route, via.value, dev, diags);
        one_way(model, ns, node, route, dev, diags);
    }
}

fn two_uplinks(model: &Model, ns: NetnsRef, netns: &crate::ir::Netns, diags: &mut Vec<Diagnostic>) {
    let mut defaults: Vec<(&Route, LinkId)> = netns
        .routes
        .iter()
        .filter(|r| {
            r.table == crate::ir::MAIN_TABLE
                && r.dst.prefix_len() == 0
                && r.dst.addr().is_ipv4()
                && r.route_type == RouteType::Unicast
        })
        .filter_map(|r| {
            Some((
                r,
                r.dev.as_ref().map(|d| d.value).or_else(|| Tracer::routing(model).egress(ns, r.via.as_ref()?.value))?,
            ))
        })
        .collect();
    defaults.sort_by_key(|(r, _)| r.metric);
    let Some(&(best, best_link)) = defaults.first() else { return };
    let node = model.node(ns.node);
    let mut seen = BTreeSet::new();
    for &(route, link) in &defaults[1..] {
        if link == best_link || !seen.insert(link) {
            continue;
        }
        if model.rp_filter(crate::model::LinkRef { node: ns.node, link }) != Some(RpFilter::Strict) {
            continue;
        }
        let (name, preferred) = (&node.link(link).name.value, &node.link(best_link).name.value);
        diags.push(
            Diagnostic::error(
                CHECK.code,
                route.dst_span,
                format!("strict rp_filter drops what arrives on uplink `{name}` from other networks"),
            )
            .with_label(format!(
                "the route back to an internet source is the preferred default route, which leaves by `{preferred}`"
            ))
            .with_secondary(best.dst_span, format!("preferred default route (metric {}) by `{preferred}`", best.metric))
            .with_help(format!(
                "set `rp-filter \"loose\"` in {}, or `rp-filter=\"loose\"` on `{name}`",
                node.describe_netns(ns.netns)
            )),
        );
    }
}

fn gateway_path_back<'m>(
    model: &'m Model,
    memo: &mut GatewayMemo<'m>,
    ns: NetnsRef,
    route: &Route,
    gateway: IpAddr,
    dev: LinkId,
    diags: &mut Vec<Diagnostic>,
) {
    let link_ref = crate::model::LinkRef { node: ns.node, link: dev };
    // A gateway the kernel would refuse is `gateway-not-on-link`'s finding, unless `onlink`
    // forces it (the incident-000 shape), in which case the path back is what matters.
    if !route.onlink
        && !matches!(memo.lookup_gateway(model, ns, gateway, Some(dev)), crate::model::GatewayLookup::OnLink(_))
    {
        return;
    }
    let back = match memo.lookup(model, ns, gateway) {
        Lookup::Route(e) if e.route_type == RouteType::Unicast => {
            Some(e.dev.or_else(|| Tracer::routing(model).egress(ns, gateway)))
        }
        Lookup::Local(_) => return, // `gateway-not-on-link` reports a local gateway
        _ => None,
    };
    let back_dev = back.flatten();
    if back_dev == Some(dev) {
        return;
    }
    let node = model.node(ns.node);
    let rp = model.rp_filter(link_ref);
    let link = node.link(dev);
    let via_span = route.via.as_ref().map(|v| v.span).unwrap_or(route.span);
    let path = match back_dev {
        Some(other) => format!("the route back to `{gateway}` leaves by `{}`", node.link(other).name.value),
        None => format!("there is no route back to `{gateway}`"),
    };
    let (severity_error, why) = match (rp, back_dev) {
        (Some(RpFilter::Strict), _) => (true, "strict rp_filter drops its ARP requests and packets"),
        (Some(RpFilter::Loose), None) | (None, None) => (true, "rp_filter drops its ARP requests and packets"),
        (Some(RpFilter::Loose), Some(_)) | (Some(RpFilter::Off), _) => return,
        (None, Some(_)) => (false, "this works only while rp_filter is not strict"),
    };
    let message = format!("gateway `{gateway}` is reached over `{}` but {path}", link.name.value);
    let mut d = if severity_error {
        Diagnostic::error(CHECK.code, via_span, message)
    } else {
        Diagnostic::warning(CHECK.code, via_span, message)
    };
    d = d.with_label(why.to_string());
    if let Some(addr) = link.addresses.iter().find(|a| a.addr().is_ipv4() == gateway.is_ipv4()) {
        let note = if addr.prefix_route {
            format!("`{}` is the address on `{}`", addr.net, link.name.value)
        } else {
            format!("`{}` installs no connected route (`prefix-route=#false`)", addr.net)
        };
        d = d.with_secondary(addr.span, note);
    }
    let host_len = if gateway.is_ipv4() { 32 } else { 128 };
    diags.push(d.with_help(format!(
        "add a link-scoped return route `route \"{gateway}/{host_len}\" dev=\"{}\"`, or a connected route for the link's subnet",
        link.name.value
    )));
}

fn one_way(model: &Model, ns: NetnsRef, node: &Node, route: &Route, dev: LinkId, diags: &mut Vec<Diagnostic>) {
    if route.dst.prefix_len() == 0 {
        return;
    }
    let link = node.link(dev);
    let family_v4 = route.dst.addr().is_ipv4();
    let source = route
        .src
        .as_ref()
        .map(|s| s.value)
        .or_else(|| link.addresses.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == family_v4));
    let Some(source) = source else { return };
    let mut seen: BTreeSet<NetnsRef> = BTreeSet::new();
    for target in model.addresses_in(route.dst) {
        let target_ns = model.netns_of(target.link);
        if target_ns == ns || !seen.insert(target_ns) {
            continue;
        }
        let back = model.fib(target_ns).lookup(source);
        let ok = match back {
            Lookup::Local(_) => true,
            Lookup::Route(e) => e.route_type == RouteType::Unicast,
            Lookup::NoRoute => false,
        };
        if ok {
            continue;
        }
        let target_node = model.node(target_ns.node);
        let where_ = target_node.describe_netns(target_ns.netns);
        diags.push(
            Diagnostic::error(
                CHECK.code,
                route.dst_span,
                format!("route to `{}` goes one way: {where_} has no route back to `{source}`", route.dst),
            )
            .with_label(format!("replies from `{}` are dropped", model.address(target).addr()))
            .with_secondary(model.address(target).span, format!("`{}` lives here", model.address(target).addr()))
            .with_help(format!("add a route to `{source}` (or a default route) in {where_}")),
        );
        // One finding per route is enough to show the asymmetry.
        break;
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn strict_rp_filter_on_the_second_uplink() {
        let d = check(
            r#"
node "r" {
    forwarding #true
    rp-filter "strict"
    ethernet "wan1" { address "203.0.113.2/24"; }
    ethernet "wan2" { address "198.51.100.2/24"; }
    route "default" via="203.0.113.1" dev="wan1" metric=100
    route "default" via="198.51.100.1" dev="wan2" metric=200
//         ^^^^^^^ error non-symmetric-routes
}
node "loose" {
    forwarding #true
    rp-filter "loose"
    ethernet "wan1" { address "203.0.113.3/24"; }
    ethernet "wan2" { address "198.51.100.3/24"; }
    route "default" via="203.0.113.1" dev="wan1" metric=100
    route "default" via="198.51.100.1" dev="wan2" metric=200
}
node "strict-but-loose-on-wan2" {
    forwarding #true
    rp-filter "strict"
    ethernet "wan1" { address "203.0.113.4/24"; }
    ethernet "wan2" rp-filter="loose" { address "198.51.100.4/24"; }
    route "default" via="203.0.113.1" dev="wan1" metric=100
    route "default" via="198.51.100.1" dev="wan2" metric=200
}
node "one-uplink" {
    rp-filter "strict"
    ethernet "wan1" { address "203.0.113.5/24"; }
    route "default" via="203.0.113.1" dev="wan1"
}
"#,
        );
        assert_eq!(
            d[0].help.as_deref(),
            Some("set `rp-filter \"loose\"` in node `r`, or `rp-filter=\"loose\"` on `wan2`")
        );
    }

    fn ecs(task_extra: &str, route_extra: &str) -> String {
        format!(
            r#"
node "ip-10-0-0-135" {{
    ethernet "eth0" {{ address "10.0.0.135/24"; }}
    route "default" via="10.0.0.1" dev="eth0"
    bridge "ecs-bridge" {{
        address "169.254.172.1/22"
        address "169.254.170.2/32"
    }}
    netns "task-1" {{
        {task_extra}
        ethernet "eth14" {{ address "10.0.254.153/24"; }}
        veth "ecs-eth0" {{
            address "169.254.172.15/22" prefix-route=#false
            peer "veth-task1" netns="@host" master="ecs-bridge"
        }}
        route "default" via="10.0.254.1" dev="eth14"
        route "169.254.170.2/32" via="169.254.172.1" dev="ecs-eth0" {route_extra}
"#
        )
    }

    #[test]
    fn incident_000_strict_rp_filter() {
        let spec = ecs(r#"rp-filter "strict""#, "onlink=#true")
            + r#"//                                    ^^^^^^^^^^^^^ error non-symmetric-routes
    }
}
"#;
        let d = check(&spec);
        assert!(d[0].help.as_deref().unwrap().contains(r#"route "169.254.172.1/32" dev="ecs-eth0""#));
        assert_eq!(d[0].secondary.len(), 1, "points at the address without connected route");
    }

    #[test]
    fn incident_000_rp_filter_unset_is_a_warning() {
        let spec = ecs("", "onlink=#true")
            + r#"//                                    ^^^^^^^^^^^^^ warning non-symmetric-routes
    }
}
"#;
        check(&spec);
    }

    #[test]
    fn incident_000_fixed_by_a_link_scoped_return_route() {
        let spec = ecs(r#"rp-filter "strict""#, "")
            + r#"
        route "169.254.172.1/32" dev="ecs-eth0"
    }
}
"#;
        check(&spec);
    }

    #[test]
    fn loose_rp_filter_with_a_default_route_is_fine() {
        let spec = ecs(r#"rp-filter "loose""#, "onlink=#true") + "\n    }\n}\n";
        check(&spec);
    }

    #[test]
    fn routes_between_nodes_that_exist_one_way() {
        check(
            r#"
node "a" {
    ethernet "eth0" { address "10.0.0.1/24"; }
    route "10.20.0.0/16" via="10.0.0.2" dev="eth0"
//         ^^^^^^^^^^^^ error non-symmetric-routes
}
node "b" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    forwarding #true
    netns "inner" {
        veth "eth0" {
            address "10.20.0.5/24"
            peer "veth-inner" netns="@host"
        }
    }
}
"#,
        );
    }

    #[test]
    fn routes_between_nodes_both_ways() {
        check(
            r#"
node "a" {
    ethernet "eth0" { address "10.0.0.1/24"; }
    route "10.20.0.0/16" via="10.0.0.2" dev="eth0"
}
node "b" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    forwarding #true
    bridge "br0" { address "10.20.0.1/24"; }
    netns "inner" {
        veth "eth0" {
            address "10.20.0.5/24"
            peer "veth-inner" netns="@host" master="br0"
        }
        route "default" via="10.20.0.1" dev="eth0"
    }
}
"#,
        );
    }
}
