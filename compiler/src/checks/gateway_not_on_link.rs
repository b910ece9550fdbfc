//! `gateway-not-on-link`: a route `via` a gateway that the kernel will not accept as a next hop.
//!
//! **What it does.** For every unicast route of a namespace's main table that has `via`, does
//! what the kernel does when the route is added ([`Fib::lookup_gateway`]): the gateway must be
//! covered by a route without a gateway of its own (a connected prefix, or a link-scope route
//! such as `route "169.254.172.1/32" dev="ecs-eth0"`), over the route's `dev` when it names one.
//! It reports:
//! - a gateway that is not on-link that way (`Nexthop has invalid gateway`), unless the route
//!   says `onlink=#true`;
//! - a gateway that is an address of the namespace itself (IPv6 and `onlink` routes are refused;
//!   an IPv4 route is accepted but sends its traffic nowhere);
//! - a gateway that is the broadcast address of the connected subnet;
//! - a route over a link declared `state="down"` (`Nexthop device is not up`);
//! - `onlink=#true` without `dev`, and an IPv6 link-local gateway without `dev` (the kernel
//!   cannot tell which link the gateway is on).
//!
//! A route in another table is checked the way the kernel does it: its gateway is accepted when
//! a gateway-less unicast route of that same table covers it (over `dev`), else the main-table
//! lookup above decides (the kernel falls back to the ordinary lookup, `fib_lookup`, and
//! connected routes live in main).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `gateway-not-on-link` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{Address, Link, LinkId, Netns, Node, Route, MAIN_TABLE};
use crate::model::{Fib, FibEntry, FibSource, GatewayLookup, GatewayMemo, Lookup, Model, NetnsRef};
use netcfg_lang::vocab::RouteType;
use netcfg_lang::{Code, Diagnostic, Severity, Span, Spanned};
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new("gateway-not-on-link", &[Severity::Error], "a route's gateway the kernel refuses"),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut memo = GatewayMemo::default();
    for (ns, netns) in model.namespaces() {
        let node = model.node(ns.node);
        // The namespace's VRF ports, found once: a scan of every link per route was most of
        // this check's time on a node of 2,000 links and 10,000 routes.
        let vrf_ports: Vec<&Link> = node.links_in(netns.id).filter(|l| node.vrf_table(l).is_some()).collect();
        for route in &netns.routes {
            // Each gateway: the route's own, or each next hop's of a multipath route.
            for (via, dev, onlink) in route.gateways() {
                let hop = Hop { via, dev, onlink };
                if route.route_type != RouteType::Unicast
                    || on_link_in_own_table(netns, route, &hop)
                    || on_link_in_vrf(node, &vrf_ports, route, &hop)
                {
                    continue;
                }
                diags.extend(check_route(model, &mut memo, ns, model.node(ns.node), netns, &hop));
            }
        }
    }
}

/// One gateway of a route: its `via`, the link it names and `onlink`.
struct Hop<'a> {
    via: &'a Spanned<IpAddr>,
    dev: Option<&'a Spanned<LinkId>>,
    onlink: bool,
}

/// A route of a table other than main whose gateway a gateway-less unicast route of the same
/// table covers (over the same `dev` when the route names one): the kernel's first lookup.
fn on_link_in_own_table(netns: &Netns, route: &Route, hop: &Hop) -> bool {
    route.table != MAIN_TABLE
        && netns.routes.iter().any(|r| {
            r.table == route.table
                && r.via.is_none()
                && r.nexthops.is_empty()
                && r.route_type == RouteType::Unicast
                && r.dst.contains(&hop.via.value)
                && hop.dev.is_none_or(|d| r.dev.as_ref().is_some_and(|rd| rd.value == d.value))
        })
}

/// A route of a VRF's table whose gateway is in the connected subnet of one of the VRF's ports
/// (over the same `dev` when the route names one): those connected routes are in that table.
fn on_link_in_vrf(node: &Node, vrf_ports: &[&Link], route: &Route, hop: &Hop) -> bool {
    vrf_ports.iter().any(|l| {
        node.vrf_table(l) == Some(route.table)
            && l.up
            && hop.dev.is_none_or(|d| d.value == l.id)
            && l.addresses.iter().any(|a| a.prefix_route && a.net.trunc().contains(&hop.via.value))
    })
}

fn check_route<'m>(
    model: &'m Model,
    memo: &mut GatewayMemo<'m>,
    ns: NetnsRef,
    node: &Node,
    netns: &Netns,
    hop: &Hop,
) -> Option<Diagnostic> {
    let via = hop.via;
    let gateway = via.value;
    let dev = hop.dev.map(|d| node.link(d.value));
    if let Some(dev) = dev.filter(|d| !d.up) {
        return Some(
            Diagnostic::error(
                CHECK.code,
                via.span,
                format!("gateway `{gateway}` is on `{}`, which is down", dev.name.value),
            )
            .with_label("the kernel refuses a next hop on a link that is down")
            .with_secondary(dev.name.span, format!("`{}` is declared with `state=\"down\"`", dev.name.value))
            .with_help(format!("bring `{}` up, or remove this route", dev.name.value)),
        );
    }
    let fib = model.fib(ns);
    // What `lookup_gateway` finds first, without a device: an address of the namespace.
    if let Some(l) = fib.local_link(gateway) {
        let owner = node.link(l);
        let mut d = Diagnostic::error(CHECK.code, via.span, format!("gateway `{gateway}` is a local address"))
            .with_label(format!("an address of {}", node.describe_netns(netns.id)));
        if let Some(a) = owner.addresses.iter().find(|a| a.addr() == gateway) {
            d = d.with_secondary(a.span, format!("assigned to `{}` here", owner.name.value));
        }
        return Some(d.with_help(
            "set `via` to the address of the next router on the link, or drop `via` and route with `dev` only",
        ));
    }
    if hop.onlink {
        return dev.is_none().then(|| needs_dev(via, "`onlink=#true` needs the link the gateway is on"));
    }
    if matches!(gateway, IpAddr::V6(g) if g.is_unicast_link_local()) {
        // The kernel takes a link-local gateway on the named link as is.
        return dev.is_none().then(|| needs_dev(via, "a link-local gateway is ambiguous without its link"));
    }
    match memo.lookup_gateway(model, ns, gateway, dev.map(|d| d.id)) {
        GatewayLookup::OnLink(e) => broadcast(node, e, via),
        _ => Some(not_on_link(fib, node, netns, via, dev)),
    }
}

fn needs_dev(via: &Spanned<IpAddr>, label: &str) -> Diagnostic {
    Diagnostic::error(CHECK.code, via.span, format!("route via `{}` names no `dev`", via.value))
        .with_label(label)
        .with_help("add `dev=\"LINK\"` naming the link the gateway is on")
}

/// A gateway equal to the broadcast address of the connected IPv4 subnet it is found in.
fn broadcast(node: &Node, e: &FibEntry, via: &Spanned<IpAddr>) -> Option<Diagnostic> {
    let FibSource::Connected { link, addr } = e.source else { return None };
    let net = e.dst;
    if !net.addr().is_ipv4() || net.prefix_len() >= 31 || net.broadcast() != via.value {
        return None;
    }
    let link = node.link(link);
    Some(
        Diagnostic::error(CHECK.code, via.span, format!("gateway `{}` is the broadcast address of `{net}`", via.value))
            .with_label("the kernel refuses a broadcast address as a next hop")
            .with_secondary(link.addresses[addr].span, format!("`{net}` is connected on `{}` here", link.name.value))
            .with_help(format!("set `via` to the router's own address in `{net}`")),
    )
}

fn not_on_link(fib: &Fib, node: &Node, netns: &Netns, via: &Spanned<IpAddr>, dev: Option<&Link>) -> Diagnostic {
    let gateway = via.value;
    let message = match dev {
        Some(d) => format!("gateway `{gateway}` is not on link `{}`", d.name.value),
        None => format!("gateway `{gateway}` is not on any link"),
    };
    let cause = why(fib, node, netns, gateway, dev);
    let mut d = Diagnostic::error(CHECK.code, via.span, message).with_label(cause.label);
    if let Some(dev) = dev {
        d = d.with_secondary(dev.name.span, format!("`{}` declared here", dev.name.value));
    }
    if let Some((span, note)) = cause.note {
        d = d.with_secondary(span, note);
    }
    let mut fixes = Vec::new();
    if let Some(a) = cause.no_prefix_route {
        fixes.push(format!("drop `prefix-route=#false` from `{}`", a.net));
    }
    let host_len = if gateway.is_ipv4() { 32 } else { 128 };
    match dev {
        Some(dev) => {
            let name = &dev.name.value;
            fixes.push(format!("add an address on `{name}` whose subnet contains `{gateway}`"));
            fixes.push(format!("a link-scope route `route \"{gateway}/{host_len}\" dev=\"{name}\"`"));
            fixes.push("`onlink=#true` if the gateway is on that link anyway".to_string());
        }
        None => {
            fixes.push(format!("add an address whose subnet contains `{gateway}` on the link the gateway is on"));
            fixes.push(format!("a link-scope route `route \"{gateway}/{host_len}\" dev=\"LINK\"`"));
            fixes.push("`dev=\"LINK\" onlink=#true`".to_string());
        }
    }
    let last = fixes.pop().unwrap_or_default();
    d.with_help(format!("{}, or {last}", fixes.join(", ")))
}

struct Cause<'a> {
    label: String,
    /// Another place that explains the finding.
    note: Option<(Span, String)>,
    /// An address whose subnet holds the gateway but that installs no connected route.
    no_prefix_route: Option<&'a Address>,
}

/// What the namespace has instead of an on-link route to the gateway: an address without its
/// prefix route or on a link that is down, the subnet on another link, a reject route, a route
/// through another gateway, or nothing at all.
fn why<'a>(fib: &Fib, node: &'a Node, netns: &Netns, gateway: IpAddr, dev: Option<&Link>) -> Cause<'a> {
    let on_dev = |l: &Link| dev.is_none_or(|d| d.id == l.id);
    // Addresses have no FIB entry when they install no connected route or their link is down.
    let mut containing: Vec<(&Link, &Address)> = node
        .links_in(netns.id)
        .filter(|l| on_dev(l))
        .flat_map(|l| l.addresses.iter().map(move |a| (l, a)))
        .filter(|(_, a)| a.net.prefix_len() < a.net.max_prefix_len() && a.net.contains(&gateway))
        .collect();
    containing.sort_by_key(|(_, a)| (std::cmp::Reverse(a.net.prefix_len()), a.span));
    if let Some((l, a)) = containing.iter().find(|(_, a)| !a.prefix_route) {
        return Cause {
            label: format!("no connected route on `{}` covers it", l.name.value),
            note: Some((a.span, format!("`{}` installs no connected route (`prefix-route=#false`)", a.net))),
            no_prefix_route: Some(a),
        };
    }
    if let Some((l, a)) = containing.iter().find(|(l, _)| !l.up) {
        return Cause {
            label: format!("its subnet is on `{}`, which is down", l.name.value),
            note: Some((a.span, format!("`{}` is on `{}`", a.net, l.name.value))),
            no_prefix_route: None,
        };
    }
    let note_for = |e: &FibEntry, text: String| match e.source {
        FibSource::Connected { link, addr } => (node.link(link).addresses[addr].span, text),
        FibSource::Static(i) => (netns.routes[i].dst_span, text),
        FibSource::Dynamic { link } => (node.link(link).name.span, text),
    };
    if let (Some(_), GatewayLookup::OnLink(e)) = (dev, fib.lookup_gateway(gateway, None)) {
        let other = e.dev.map(|l| node.link(l).name.value.as_str()).unwrap_or("another link");
        return Cause {
            label: format!("it is on `{other}`"),
            note: Some(note_for(e, format!("`{}` is on-link over `{other}`", e.dst))),
            no_prefix_route: None,
        };
    }
    if let GatewayLookup::Invalid(e) = fib.lookup_gateway(gateway, dev.map(|d| d.id)) {
        if let Some(kind) = reject_keyword(e.route_type) {
            return Cause {
                label: format!("a `{kind}` route covers it"),
                note: Some(note_for(e, format!("`{kind}` route to `{}`", e.dst))),
                no_prefix_route: None,
            };
        }
    }
    if let Lookup::Route(e) = fib.lookup(gateway) {
        if let Some(other) = e.via {
            return Cause {
                label: "it is reachable only through another gateway; next hops do not resolve recursively".into(),
                note: Some(note_for(e, format!("`{}` is routed via `{other}`", e.dst))),
                no_prefix_route: None,
            };
        }
    }
    Cause { label: "no connected subnet or link-scope route contains it".into(), note: None, no_prefix_route: None }
}

fn reject_keyword(t: RouteType) -> Option<&'static str> {
    match t {
        RouteType::Unicast => None,
        RouteType::Blackhole => Some("blackhole"),
        RouteType::Unreachable => Some("unreachable"),
        RouteType::Prohibit => Some("prohibit"),
        RouteType::Throw => Some("throw"),
        RouteType::Local => Some("local"),
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn every_next_hop_of_a_multipath_route_is_checked() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    ethernet "eth1" { address "10.1.0.2/24"; }
    route "10.9.0.0/16" {
        nexthop via="10.0.0.1" dev="eth0" weight=2
        nexthop via="10.2.0.1" dev="eth1"
//                   ^^^^^^^^ error gateway-not-on-link
    }
}
"#,
        );
    }

    #[test]
    fn gateways_of_other_tables() {
        check(
            r#"
node "r" {
    ethernet "wan1" { address "203.0.113.2/24"; }
    ethernet "wan2" { address "198.51.100.2/24"; }
    route "default" via="203.0.113.1" dev="wan1"
    route "default" via="198.51.100.1" dev="wan2" table=200
    route "default" via="198.51.10.1" dev="wan2" table=201
//                       ^^^^^^^^^^^ error gateway-not-on-link
    route "default" via="192.0.2.1" dev="wan2" table=202
    route "192.0.2.0/24" dev="wan2" table=202
}
"#,
        );
    }

    #[test]
    fn gateway_outside_every_subnet() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" {
        address "10.0.0.10/24"
        address "fd00::10/64"
    }
    route "default" via="10.0.0.1" dev="eth0"
    route "default" via="fd00::1" dev="eth0"
    route "10.50.0.0/16" via="10.9.9.1" dev="eth0"
//                            ^^^^^^^^ error gateway-not-on-link
    route "10.60.0.0/16" via="10.9.9.2"
//                            ^^^^^^^^ error gateway-not-on-link
    route "fd30::/64" via="fd99::1" dev="eth0"
//                         ^^^^^^^ error gateway-not-on-link
    route "10.61.0.0/16" via="10.0.0.1" dev="eth0"
    route "fd31::/64" via="fd00::1" dev="eth0"
}
"#,
        );
        assert_eq!(d[0].message, "gateway `10.9.9.1` is not on link `eth0`");
        assert_eq!(d[0].secondary[0].message, "`eth0` declared here");
        assert_eq!(
            d[0].help.as_deref(),
            Some(
                "add an address on `eth0` whose subnet contains `10.9.9.1`, a link-scope route \
                 `route \"10.9.9.1/32\" dev=\"eth0\"`, or `onlink=#true` if the gateway is on that link anyway"
            )
        );
        assert_eq!(d[1].message, "gateway `10.9.9.2` is not on any link");
        assert!(d[1].help.as_deref().unwrap().ends_with("or `dev=\"LINK\" onlink=#true`"), "{:?}", d[1].help);
        // IPv6 stops at the default route, which has a gateway of its own.
        assert!(d[2].primary.message.contains("only through another gateway"), "{:?}", d[2].primary);
        assert_eq!(d[2].secondary[1].message, "`::/0` is routed via `fd00::1`");
    }

    #[test]
    fn incident_000_address_without_its_prefix_route() {
        let d = check(
            r#"
node "ecs" {
    forwarding #true
    bridge "ecs-bridge" { address "169.254.172.1/22"; }
    netns "task-1" {
        veth "ecs-eth0" {
            address "169.254.172.15/22" prefix-route=#false
            peer "veth-t1" netns="@host" master="ecs-bridge"
        }
        route "169.254.170.2/32" via="169.254.172.1" dev="ecs-eth0"
//                                    ^^^^^^^^^^^^^ error gateway-not-on-link
    }
}
"#,
        );
        let d = &d[0];
        assert_eq!(d.secondary[1].message, "`169.254.172.15/22` installs no connected route (`prefix-route=#false`)");
        assert!(d.help.as_deref().unwrap().starts_with("drop `prefix-route=#false` from `169.254.172.15/22`, "));
    }

    #[test]
    fn incident_000_fixed_by_a_link_scope_route() {
        check(
            r#"
node "ecs" {
    forwarding #true
    bridge "ecs-bridge" { address "169.254.172.1/22"; }
    netns "task-1" {
        veth "ecs-eth0" {
            address "169.254.172.15/22" prefix-route=#false
            peer "veth-t1" netns="@host" master="ecs-bridge"
        }
        route "169.254.170.2/32" via="169.254.172.1" dev="ecs-eth0"
        route "169.254.172.1/32" dev="ecs-eth0"
    }
}
"#,
        );
    }

    #[test]
    fn gateway_on_another_link_or_on_a_down_link() {
        // Loose rp_filter keeps `non-symmetric-routes` out of this fixture.
        let d = check(
            r#"
node "n" {
    rp-filter "loose"
    ethernet "eth0" { address "10.0.0.10/24"; }
    ethernet "eth1" { address "10.0.1.10/24"; }
    ethernet "eth2" state="down" { address "10.0.2.10/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    route "10.50.0.0/16" via="10.0.1.1" dev="eth0"
//                            ^^^^^^^^ error gateway-not-on-link
    route "10.51.0.0/16" via="10.0.2.1" dev="eth2"
//                            ^^^^^^^^ error gateway-not-on-link
    route "10.52.0.0/16" via="10.0.2.1"
//                            ^^^^^^^^ error gateway-not-on-link
}
node "m" {
    rp-filter "loose"
    ethernet "eth0" { address "10.1.0.10/24"; }
    ethernet "eth1" { address "10.1.1.10/24"; }
    // The kernel passes over eth1's /24 when the route names eth0, and finds this one.
    route "10.1.0.0/16" dev="eth0"
    route "10.53.0.0/16" via="10.1.1.1" dev="eth0"
}
"#,
        );
        assert_eq!(d[0].primary.message, "it is on `eth1`");
        assert_eq!(d[0].secondary[1].message, "`10.0.1.0/24` is on-link over `eth1`");
        assert_eq!(d[1].message, "gateway `10.0.2.1` is on `eth2`, which is down");
        assert_eq!(d[2].primary.message, "its subnet is on `eth2`, which is down");
    }

    #[test]
    fn local_and_broadcast_gateways() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" {
        address "10.0.0.10/24"
        address "fd00::10/64"
    }
    route "default" via="10.0.0.1" dev="eth0"
    route "10.50.0.0/16" via="10.0.0.10"
//                            ^^^^^^^^^ error gateway-not-on-link
    route "10.51.0.0/16" via="10.0.0.10" dev="eth0" onlink=#true
//                            ^^^^^^^^^ error gateway-not-on-link
    route "fd50::/64" via="fd00::10" dev="eth0"
//                         ^^^^^^^^ error gateway-not-on-link
    route "10.52.0.0/16" via="10.0.0.255" dev="eth0"
//                            ^^^^^^^^^^ error gateway-not-on-link
    route "10.53.0.0/16" via="10.0.0.0" dev="eth0"
}
"#,
        );
        assert_eq!(d[0].message, "gateway `10.0.0.10` is a local address");
        assert_eq!(d[0].secondary[0].message, "assigned to `eth0` here");
        assert_eq!(d[3].message, "gateway `10.0.0.255` is the broadcast address of `10.0.0.0/24`");
    }

    #[test]
    fn dev_is_required_for_onlink_and_ipv6_link_local_gateways() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" {
        address "10.0.0.10/24"
        address "fd00::10/64"
    }
    route "default" via="10.0.0.1" dev="eth0"
    route "default" via="fd00::1" dev="eth0"
    route "10.50.0.0/16" via="10.9.9.4" onlink=#true
//                            ^^^^^^^^ error gateway-not-on-link
    route "fd10::/64" via="fe80::1"
//                         ^^^^^^^ error gateway-not-on-link
    route "fd20::/64" via="fe80::1" dev="eth0"
    route "10.51.0.0/16" via="10.9.9.5" dev="eth0" onlink=#true
}
"#,
        );
        assert_eq!(d[0].message, "route via `10.9.9.4` names no `dev`");
        assert_eq!(d[1].help.as_deref(), Some("add `dev=\"LINK\"` naming the link the gateway is on"));
    }

    #[test]
    fn routes_the_kernel_accepts() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.10/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    // A route with a gateway has scope global: the kernel passes over it and uses the /24.
    route "10.0.0.50/32" via="10.0.0.1" dev="eth0"
    route "10.50.0.0/16" via="10.0.0.50" dev="eth0"
    // Another table: on-link through the main table's connected route (the kernel falls back).
    route "10.51.0.0/16" via="10.0.0.9" table=100
    route "10.52.0.0/16" type="blackhole"
}
"#,
        );
    }

    #[test]
    fn reject_route_covering_the_gateway() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.10/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    route "10.9.8.0/24" type="blackhole" scope="link"
    route "10.50.0.0/16" via="10.9.8.1"
//                            ^^^^^^^^ error gateway-not-on-link
}
"#,
        );
        assert_eq!(d[0].primary.message, "a `blackhole` route covers it");
    }
}
