//! `forwarding-disabled`: a namespace that must route packets for others while forwarding is
//! off for that IP family.
//!
//! **What it does.** For each namespace and IP family whose forwarding is off (`forwarding`, or
//! the `net.ipv4.ip_forward` / `net.ipv6.conf.all.forwarding` sysctls; the kernel default is off),
//! reports what needs it:
//! - (error) a `masquerade` or `snat`: it rewrites traffic the namespace routes for others
//!   (unless it only matches the namespace's own address);
//! - (error) a `service` or `publish` with a backend that is not an address of the namespace:
//!   connections DNAT-ed to it are forwarded;
//! - (error) a `netmap`: it maps networks the namespace routes for;
//! - (error) a route of another namespace, on this node or another, `via` an address of this
//!   namespace reached over the route's link, to a destination that is not just this namespace's
//!   own address (or a service VIP it answers locally);
//! - (warning) `forward` firewall rules, or `policy forward="accept"`: they filter traffic that
//!   never flows. A `drop`/`reject` forward policy alone is hardening and is left alone.
//!
//! One finding per namespace, family and reason: fifty pods routing through one host that does
//! not forward give one finding, on the first pod route, counting the others.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `forwarding-disabled` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{AddrMatch, Link, LinkId, LinkKind, Netns, Rule, MAIN_TABLE};
use crate::model::{GatewayMemo, LinkRef, Lookup, Model, NetnsRef};
use crate::trace::Tracer;
use ipnet::IpNet;
use netcfg_lang::vocab::{Direction, Family, RouteType, Verdict};
use netcfg_lang::{Code, Diagnostic, Severity, Span, Spanned};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "forwarding-disabled",
        &[Severity::Error, Severity::Warning],
        "a namespace must forward but forwarding is off",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

/// Why a namespace must forward; one finding per namespace, family and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    Nat,
    Service,
    Route,
}

impl Reason {
    /// What the other places of one reason are called, one and many.
    fn nouns(self) -> (&'static str, &'static str) {
        match self {
            Reason::Nat => ("source NAT rule", "source NAT rules"),
            Reason::Service => ("backend", "backends"),
            Reason::Route => ("route", "routes"),
        }
    }
}

/// The first place that needs forwarding for one reason, and how many more there are.
struct Need {
    span: Span,
    message: String,
    label: String,
    more: usize,
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut needs: BTreeMap<(NetnsRef, Family, Reason), Need> = BTreeMap::new();
    for (ns, netns) in model.namespaces() {
        nat_needs(model, ns, netns, &mut needs);
        service_needs(model, ns, netns, &mut needs);
        route_needs(model, ns, netns, &mut needs);
    }
    for ((ns, family, reason), need) in needs {
        let label = match (need.more, reason.nouns()) {
            (0, _) => need.label,
            (1, (one, _)) => format!("{} (and 1 more {one})", need.label),
            (n, (_, many)) => format!("{} (and {n} more {many})", need.label),
        };
        let d = Diagnostic::error(CHECK.code, need.span, need.message).with_label(label);
        diags.push(with_place(model, ns, family, d));
    }
    forward_rules(model, diags);
}

/// "node `n`" or "namespace `x` of node `n`", for messages.
fn place(model: &Model, ns: NetnsRef) -> String {
    model.node(ns.node).describe_netns(ns.netns)
}

/// The name of the namespace (the node's name for the host namespace) and how a help names the
/// block to add `forwarding` to.
fn target(model: &Model, ns: NetnsRef) -> (Span, String) {
    let node = model.node(ns.node);
    match &node.netns(ns.netns).name {
        None => (node.name.span, format!("node `{}`", node.name.value)),
        Some(n) => (n.span, format!("netns `{}` of node `{}`", n.value, node.name.value)),
    }
}

/// Secondary labels on the namespace (and on the setting that turns forwarding off) and the help.
fn with_place(model: &Model, ns: NetnsRef, family: Family, d: Diagnostic) -> Diagnostic {
    let netns = model.node(ns.node).netns(ns.netns);
    let (name_span, target) = target(model, ns);
    let fam = family.name();
    let mut d = d.with_secondary(name_span, format!("{fam} forwarding is off in this namespace"));
    match netns.sysctl(&netcfg_lang::value::SysctlPath::forwarding(family)) {
        Some(explicit) => {
            d = d.with_secondary(explicit.span, format!("{fam} forwarding is turned off here"));
            d.with_help(format!("set `forwarding #true` in {target} instead of turning it off"))
        }
        None => d.with_help(format!("add `forwarding #true` to {target}")),
    }
}

fn insert(
    needs: &mut BTreeMap<(NetnsRef, Family, Reason), Need>,
    key: (NetnsRef, Family, Reason),
    need: impl FnOnce() -> Need,
) {
    needs.entry(key).and_modify(|n| n.more += 1).or_insert_with(need);
}

/// Whether `addr` is an address of the namespace itself (the whole loopback range included).
fn is_local(model: &Model, ns: NetnsRef, addr: IpAddr) -> bool {
    addr.is_loopback() || matches!(model.fib(ns).lookup(addr), Lookup::Local(_))
}

/// Whether packets to `dst` end in namespace `ns`: its own address, or the VIP of one of its
/// services whose backends are all its own.
fn terminates_locally(model: &Model, ns: NetnsRef, netns: &Netns, dst: IpNet) -> bool {
    if dst.prefix_len() != dst.max_prefix_len() {
        return false;
    }
    let addr = dst.addr();
    is_local(model, ns, addr)
        || netns.services.iter().any(|s| {
            s.vip.value == addr && !s.backends.is_empty() && s.backends.iter().all(|b| is_local(model, ns, b.addr))
        })
}

/// The families a source NAT rule rewrites. A `from` that is only the namespace's own address
/// rewrites local traffic, which needs no forwarding.
fn nat_families(
    model: &Model,
    ns: NetnsRef,
    netns: &Netns,
    from: Option<&Spanned<AddrMatch>>,
    out: Option<&Spanned<LinkId>>,
) -> BTreeSet<Family> {
    let node = model.node(ns.node);
    match from.map(|f| &f.value) {
        Some(AddrMatch::Net(n)) => {
            if terminates_locally(model, ns, netns, *n) {
                BTreeSet::new()
            } else {
                BTreeSet::from([Family::of(n.addr())])
            }
        }
        Some(AddrMatch::Set(id)) => netns
            .firewall
            .sets
            .get(id.0 as usize)
            .map(|s| s.elements.iter().map(|e| Family::of(e.value.addr())).collect())
            .unwrap_or_default(),
        None => {
            let links: Vec<&Link> = match out {
                Some(o) => vec![node.link(o.value)],
                None => node.links_in(ns.netns).filter(|l| !matches!(l.kind, LinkKind::Loopback)).collect(),
            };
            links.iter().flat_map(|l| l.addresses.iter().map(|a| Family::of(a.addr()))).collect()
        }
    }
}

fn nat_needs(model: &Model, ns: NetnsRef, netns: &Netns, needs: &mut BTreeMap<(NetnsRef, Family, Reason), Need>) {
    let masquerades = netns.masquerades.iter().map(|m| ("masquerade", m.from.as_ref(), m.out.as_ref(), None, m.span));
    let snats = netns.snats.iter().map(|s| ("snat", s.from.as_ref(), s.out.as_ref(), Some(s.to.value), s.span));
    let netmap_from: Vec<Spanned<AddrMatch>> =
        netns.netmaps.iter().map(|m| Spanned::new(AddrMatch::Net(m.from.value), m.from.span)).collect();
    let netmaps =
        netns.netmaps.iter().zip(&netmap_from).map(|(m, f)| ("netmap", Some(f), m.out.as_ref(), None, m.span));
    for (keyword, from, out, to, span) in masquerades.chain(snats).chain(netmaps) {
        let mut families = nat_families(model, ns, netns, from, out);
        if let Some(to) = to {
            families.retain(|f| *f == Family::of(to));
        }
        for family in families {
            if model.forwarding(ns, family) {
                continue;
            }
            insert(needs, (ns, family, Reason::Nat), || Need {
                span,
                message: format!(
                    "`{keyword}` needs {} forwarding, which is off in {}",
                    family.name(),
                    place(model, ns)
                ),
                label: "rewrites traffic routed through this namespace".into(),
                more: 0,
            });
        }
    }
}

fn service_needs(model: &Model, ns: NetnsRef, netns: &Netns, needs: &mut BTreeMap<(NetnsRef, Family, Reason), Need>) {
    let services = netns
        .services
        .iter()
        .flat_map(|svc| svc.backends.iter().map(move |b| (format!("service `{}`", svc.name.value), b.addr, b.span)));
    let published =
        netns.publishes.iter().map(|p| (format!("published port `{}`", p.name.value), p.to.value, p.to.span));
    for (what, addr, span) in services.chain(published) {
        let family = Family::of(addr);
        if is_local(model, ns, addr) || model.forwarding(ns, family) {
            continue;
        }
        insert(needs, (ns, family, Reason::Service), || Need {
            span,
            message: format!("{what} needs {} forwarding, which is off in {}", family.name(), place(model, ns)),
            label: format!("`{addr}` is not an address of this namespace: connections to it are routed on"),
            more: 0,
        });
    }
}

/// Routes of `ns` whose gateway is an address of another namespace on the route's segment.
fn route_needs(model: &Model, ns: NetnsRef, netns: &Netns, needs: &mut BTreeMap<(NetnsRef, Family, Reason), Need>) {
    let mut memo = GatewayMemo::default();
    for route in &netns.routes {
        if route.table != MAIN_TABLE || route.route_type != RouteType::Unicast {
            continue;
        }
        let Some(via) = &route.via else { continue };
        let Some(dev) = route.dev.as_ref().map(|d| d.value).or_else(|| Tracer::routing(model).egress(ns, via.value))
        else {
            continue;
        };
        let Some(owner) = memo.owner_on_segment(model, LinkRef { node: ns.node, link: dev }, via.value) else {
            continue;
        };
        let gateway = model.netns_of(owner.link);
        let family = Family::of(via.value);
        if gateway == ns || model.forwarding(gateway, family) {
            continue;
        }
        let gateway_netns = model.node(gateway.node).netns(gateway.netns);
        if terminates_locally(model, gateway, gateway_netns, route.dst) {
            continue;
        }
        insert(needs, (gateway, family, Reason::Route), || Need {
            span: via.span,
            message: format!(
                "route via `{}` needs {} forwarding, which is off in {}",
                via.value,
                family.name(),
                place(model, gateway)
            ),
            label: format!("{} must forward packets to `{}`", place(model, gateway), route.dst),
            more: 0,
        });
    }
}

/// The families a firewall rule can match (`Firewall::rule_families`: addresses, protocol,
/// `family`).
fn rule_families(netns: &Netns, rule: &Rule) -> BTreeSet<Family> {
    netns.firewall.rule_families(rule).into_iter().collect()
}

/// `forward` rules (and an explicit accept policy) in a namespace that forwards none of the
/// families they match.
fn forward_rules(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        let off =
            |families: &BTreeSet<Family>| !families.is_empty() && families.iter().all(|f| !model.forwarding(ns, *f));
        let describe = |families: &BTreeSet<Family>| {
            let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
            names.join(" or ")
        };
        let fw = &netns.firewall;
        let rule = fw.rules.iter().filter(|r| r.direction.value == Direction::Forward).find_map(|r| {
            let families = rule_families(netns, r);
            off(&families).then_some((r.direction.span, families))
        });
        let all = BTreeSet::from([Family::Ipv4, Family::Ipv6]);
        let policy = fw
            .policy_forward
            .as_ref()
            .filter(|p| p.value == Verdict::Accept && off(&all))
            .map(|p| (p.span, all.clone()));
        let Some((span, families)) = rule.or(policy) else { continue };
        let (name_span, target) = target(model, ns);
        diags.push(
            Diagnostic::warning(
                CHECK.code,
                span,
                format!("`forward` filtering in {} never sees a packet", place(model, ns)),
            )
            .with_label(format!("no {} traffic is routed through this namespace", describe(&families)))
            .with_secondary(name_span, format!("{} forwarding is off in this namespace", describe(&families)))
            .with_help(format!(
                "add `forwarding #true` to {target} if it routes traffic, or remove the `forward` filtering"
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn published_ports_and_netmaps_need_forwarding() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    publish "web" port=8080 to="10.244.1.5:80"
//                              ^^^^^^^^^^^^^ error forwarding-disabled
    publish "self" port=8081 to="192.0.2.10:80"
    netmap from="10.244.1.0/24" to="198.51.100.0/24" out="eth0"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error forwarding-disabled
}
"#,
        );
        assert!(d.iter().any(|d| d.message == "published port `web` needs IPv4 forwarding, which is off in node `n`"));
    }

    #[test]
    fn masquerade_and_snat_need_forwarding() {
        let d = check(
            r#"
node "gw" {
    ethernet "eth0" { address "203.0.113.2/24"; }
    bridge "br0" { address "10.0.0.1/24"; }
    route "default" via="203.0.113.1" dev="eth0"
    masquerade from="10.0.0.0/24" out="eth0"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error forwarding-disabled
    snat from="10.0.1.0/24" out="eth0" to="203.0.113.2"
}
"#,
        );
        assert_eq!(d.len(), 1, "one finding per namespace, family and reason: {d:?}");
        assert_eq!(d[0].message, "`masquerade` needs IPv4 forwarding, which is off in node `gw`");
        assert_eq!(d[0].help.as_deref(), Some("add `forwarding #true` to node `gw`"));
        assert_eq!(d[0].secondary[0].message, "IPv4 forwarding is off in this namespace");
        assert_eq!(d[0].primary.message, "rewrites traffic routed through this namespace (and 1 more source NAT rule)");
    }

    #[test]
    fn forwarding_on_for_the_family_that_needs_it() {
        check(
            r#"
node "gw" {
    forwarding ipv4=#true
    ethernet "eth0" { address "203.0.113.2/24"; }
    bridge "br0" { address "10.0.0.1/24"; }
    route "default" via="203.0.113.1" dev="eth0"
    masquerade from="10.0.0.0/24" out="eth0"
    snat from="10.0.0.5/32" out="eth0" to="203.0.113.2"
}
"#,
        );
        // IPv6 stays off: an IPv6 masquerade needs it, an IPv4-only one does not.
        check(
            r#"
node "gw" {
    forwarding ipv4=#true
    ethernet "eth0" {
        address "203.0.113.2/24"
        address "2001:db8::2/64"
    }
    bridge "br0" {
        address "10.0.0.1/24"
        address "fd00::1/64"
    }
    route "default" via="203.0.113.1" dev="eth0"
    route "default" via="2001:db8::1" dev="eth0"
    masquerade from="fd00::/64" out="eth0"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error forwarding-disabled
    masquerade from="10.0.0.0/24" out="eth0"
}
"#,
        );
    }

    #[test]
    fn nat_of_the_namespace_own_address_needs_no_forwarding() {
        check(
            r#"
node "h" {
    ethernet "eth0" {
        address "203.0.113.2/24"
        address "203.0.113.9/24"
    }
    route "default" via="203.0.113.1" dev="eth0"
    snat from="203.0.113.9" out="eth0" to="203.0.113.2"
}
"#,
        );
    }

    #[test]
    fn forwarding_turned_off_explicitly_is_pointed_at() {
        let d = check(
            r#"
node "gw" {
    forwarding #false
    ethernet "eth0" { address "203.0.113.2/24"; }
    route "default" via="203.0.113.1" dev="eth0"
    masquerade out="eth0"
//  ^^^^^^^^^^^^^^^^^^^^^ error forwarding-disabled
}
"#,
        );
        assert_eq!(d[0].secondary.len(), 2, "{:?}", d[0].secondary);
        assert_eq!(d[0].secondary[1].message, "IPv4 forwarding is turned off here");
        assert_eq!(d[0].help.as_deref(), Some("set `forwarding #true` in node `gw` instead of turning it off"));
    }

    #[test]
    fn pods_routing_through_a_host_that_does_not_forward() {
        let d = check(
            r#"
node "worker-1" {
    ethernet "eth0" { address "10.0.0.11/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    bridge "cni0" { address "10.244.1.1/24"; }
    netns "pod-a" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0"
        }
        route "default" via="10.244.1.1" dev="eth0"
//                           ^^^^^^^^^^ error forwarding-disabled
    }
    netns "pod-b" {
        veth "eth0" {
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0"
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
}
"#,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "route via `10.244.1.1` needs IPv4 forwarding, which is off in node `worker-1`");
        assert_eq!(d[0].primary.message, "node `worker-1` must forward packets to `0.0.0.0/0` (and 1 more route)");
        assert_eq!(d[0].help.as_deref(), Some("add `forwarding #true` to node `worker-1`"));
    }

    #[test]
    fn routes_to_the_gateway_itself_need_no_forwarding() {
        check(
            r#"
node "worker-1" {
    ethernet "eth0" { address "10.0.0.11/24"; }
    bridge "cni0" { address "10.244.1.1/24"; }
    service "creds" vip="169.254.170.2" port=80 { backend "127.0.0.1:51679"; }
    netns "pod-a" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0"
        }
        route "10.0.0.11/32" via="10.244.1.1" dev="eth0"
        route "169.254.170.2/32" via="10.244.1.1" dev="eth0"
    }
}
"#,
        );
    }

    #[test]
    fn route_via_another_node() {
        let d = check(
            r#"
node "a" {
    ethernet "eth0" { address "10.0.0.1/24"; }
    route "10.20.0.0/16" via="10.0.0.2" dev="eth0"
//                            ^^^^^^^^ error forwarding-disabled
}
node "b" {
    ethernet "eth0" { address "10.0.0.2/24"; }
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
        assert_eq!(d.len(), 1, "both routes need node `b` to forward: {d:?}");
        assert_eq!(d[0].primary.message, "node `b` must forward packets to `10.20.0.0/16` (and 1 more route)");
    }

    #[test]
    fn service_backends_elsewhere_need_forwarding() {
        check(
            r#"
node "lb" {
    ethernet "eth0" { address "10.0.0.5/24"; }
    service "web" vip="10.96.0.10" port=80 {
        backend "10.0.0.7:8080"
//               ^^^^^^^^^^^^^ error forwarding-disabled
        backend "10.0.0.8:8080"
    }
    service "local" vip="10.96.0.11" port=80 {
        backend "10.0.0.5:8080"
        backend "127.0.0.1:8080"
    }
}
"#,
        );
    }

    #[test]
    fn forward_rules_where_nothing_is_forwarded() {
        let d = check(
            r#"
node "h" {
    forwarding ipv4=#true
    ethernet "eth0" { address "10.0.0.5/24"; }
    firewall {
        policy in="drop" forward="drop"
        allow in proto="tcp" port=22
        allow forward from="10.1.0.0/16"
        allow forward from="fd00::/64"
//            ^^^^^^^ warning forwarding-disabled
    }
    netns "quiet" {
        firewall {
            policy forward="drop"
        }
    }
    netns "open" {
        firewall {
            policy forward="accept"
//                          ^^^^^^ warning forwarding-disabled
        }
    }
}
"#,
        );
        let v6 = d.iter().find(|d| d.message.contains("node `h`")).unwrap();
        assert_eq!(v6.primary.message, "no IPv6 traffic is routed through this namespace");
    }
}
