//! `masquerade-without-egress`: a `masquerade` or `snat` whose egress link cannot do the job.
//!
//! **What it does.** For each `masquerade` and `snat` of a namespace:
//! - (error) `out` names a link without an address of the rule's family: masquerade takes the
//!   new source address from the egress link, and there is none (the family is `to`'s for a
//!   `snat`, `from`'s for a `masquerade`; without `from`, any address will do);
//! - (warning) `out` names a link that no route of the namespace's main table leaves by (of the
//!   rule's family): the rule never matches;
//! - (warning) no `out`, in a namespace with more than one link: the rule rewrites traffic
//!   leaving by every link, the bridge to local pods and the overlay to other nodes included;
//! - (warning) `out` names the link the `from` network itself lives on (the LAN) while the
//!   default route leaves by another link, and no other `masquerade`/`snat` of that source
//!   leaves by the default route's link: traffic from the LAN to the internet leaves
//!   unrewritten. A LAN masquerade next to the uplink one is hairpin NAT and stays quiet.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `masquerade-without-egress` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{AddrMatch, Link, LinkId, LinkKind, Netns};
use crate::model::{Model, NetnsRef};
use crate::trace::Tracer;
use netcfg_lang::vocab::{Family, RouteType};
use netcfg_lang::{Code, Diagnostic, Severity, Span, Spanned};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const CHECK: Check = Check {
    code: Code::new(
        "masquerade-without-egress",
        &[Severity::Error, Severity::Warning],
        "a masquerade/snat whose egress link has no address, no route, or is not named",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

/// A `masquerade` or a `snat`, as far as this check cares.
struct SourceNat<'a> {
    keyword: &'static str,
    from: Option<&'a Spanned<AddrMatch>>,
    out: Option<&'a Spanned<LinkId>>,
    to: Option<IpAddr>,
    span: Span,
}

/// The families the rule rewrites, when its matches say (`None`: any family).
fn families(netns: &Netns, nat: &SourceNat) -> Option<BTreeSet<Family>> {
    if let Some(to) = nat.to {
        return Some(BTreeSet::from([Family::of(to)]));
    }
    match &nat.from?.value {
        AddrMatch::Net(n) => Some(BTreeSet::from([Family::of(n.addr())])),
        AddrMatch::Set(id) => netns
            .firewall
            .sets
            .get(id.0 as usize)
            .map(|s| s.elements.iter().map(|e| Family::of(e.value.addr())).collect()),
    }
}

/// The link the default route of a family leaves by, to suggest as `out`.
fn default_egress(model: &Model, ns: NetnsRef, families: Option<&BTreeSet<Family>>) -> Option<LinkId> {
    [Family::Ipv4, Family::Ipv6].into_iter().filter(|f| families.is_none_or(|fs| fs.contains(f))).find_map(|f| {
        let any = match f {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Tracer::routing(model).egress(ns, any)
    })
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        let masquerades = netns.masquerades.iter().map(|m| SourceNat {
            keyword: "masquerade",
            from: m.from.as_ref(),
            out: m.out.as_ref(),
            to: None,
            span: m.span,
        });
        let snats = netns.snats.iter().map(|s| SourceNat {
            keyword: "snat",
            from: s.from.as_ref(),
            out: s.out.as_ref(),
            to: Some(s.to.value),
            span: s.span,
        });
        let nats: Vec<SourceNat> = masquerades.chain(snats).collect();
        for nat in &nats {
            let fams = families(netns, nat);
            if fams.as_ref().is_some_and(|f| f.is_empty()) {
                // An empty address set matches nothing: no egress question to ask.
                continue;
            }
            let d = match nat.out {
                Some(out) => {
                    named_out(model, ns, nat, out, fams.as_ref()).or_else(|| lan_out(model, ns, nat, out, &nats))
                }
                None => no_out(model, ns, nat, fams.as_ref()),
            };
            diags.extend(d);
        }
    }
}

fn named_out(
    model: &Model,
    ns: NetnsRef,
    nat: &SourceNat,
    out: &Spanned<LinkId>,
    fams: Option<&BTreeSet<Family>>,
) -> Option<Diagnostic> {
    let node = model.node(ns.node);
    let link = node.link(out.value);
    // A `dhcp` link gets its addresses at run time.
    let has = |f: Family| link.dhcp() || link.addresses.iter().any(|a| Family::of(a.addr()) == f);
    let suggestion = default_egress(model, ns, fams)
        .filter(|l| *l != out.value)
        .map(|l| format!(", or set `out=\"{}\"`, the link the default route leaves by", node.link(l).name.value))
        .unwrap_or_default();
    let missing = match fams {
        Some(fams) => fams.iter().copied().find(|f| !has(*f)).map(|f| format!("{} address", f.name())),
        None => (link.addresses.is_empty() && !link.dhcp()).then(|| "address".to_string()),
    };
    if let Some(what) = missing {
        let label = if nat.keyword == "masquerade" {
            "masquerade takes the new source address from this link".to_string()
        } else {
            format!("packets rewritten to `{}` leave by this link", nat.to.map(|t| t.to_string()).unwrap_or_default())
        };
        return Some(
            Diagnostic::error(
                CHECK.code,
                out.span,
                format!("`{}` leaves by `{}`, which has no {what}", nat.keyword, link.name.value),
            )
            .with_label(label)
            .with_secondary(link.name.span, format!("`{}` is declared without an {what}", link.name.value))
            .with_help(format!("add an {what} to `{}`{suggestion}", link.name.value)),
        );
    }
    if routes_by(model, ns, out.value, fams) {
        return None;
    }
    let what = match fams {
        Some(f) => {
            let names: Vec<&str> = f.iter().map(|f| f.name()).collect();
            format!("no {} route", names.join(" or "))
        }
        None => "no route".to_string(),
    };
    Some(
        Diagnostic::warning(
            CHECK.code,
            out.span,
            format!("{what} leaves by `{}`, so this `{}` never matches", link.name.value, nat.keyword),
        )
        .with_label(format!("{what} uses this link"))
        .with_secondary(link.name.span, format!("`{}` declared here", link.name.value))
        .with_help(format!("add a route by `{}`{suggestion}", link.name.value)),
    )
}

/// `out` is the link the `from` network lives on, the default route leaves by another link, and
/// no rule of the same source rewrites what leaves by that one.
fn lan_out(
    model: &Model,
    ns: NetnsRef,
    nat: &SourceNat,
    out: &Spanned<LinkId>,
    all: &[SourceNat],
) -> Option<Diagnostic> {
    let AddrMatch::Net(from) = nat.from?.value else { return None };
    let node = model.node(ns.node);
    let link = node.link(out.value);
    let home = link.addresses.iter().find(|a| a.prefix_route && a.net.trunc().contains(&from))?;
    let fams = BTreeSet::from([Family::of(from.addr())]);
    let uplink = default_egress(model, ns, Some(&fams)).filter(|l| *l != out.value)?;
    let covered = all.iter().any(|other| {
        other.out.is_none_or(|o| o.value == uplink)
            && match other.from.map(|f| &f.value) {
                None => true,
                Some(AddrMatch::Net(n)) => n.contains(&from),
                Some(AddrMatch::Set(_)) => true,
            }
    });
    if covered {
        return None;
    }
    let up = &node.link(uplink).name.value;
    Some(
        Diagnostic::warning(
            CHECK.code,
            out.span,
            format!("`{}` of `{from}` leaves by `{}`, the link `{from}` itself is on", nat.keyword, link.name.value),
        )
        .with_label(format!("traffic from `{from}` to other networks leaves by `{up}`, unrewritten"))
        .with_secondary(home.span, format!("`{from}` is on `{}`", link.name.value))
        .with_help(format!("set `out=\"{up}\"`, the link the default route leaves by")),
    )
}

/// Whether a unicast route (of one of `fams`) leaves by `link`, in the main table or a table a
/// policy rule sends traffic to.
fn routes_by(model: &Model, ns: NetnsRef, link: LinkId, fams: Option<&BTreeSet<Family>>) -> bool {
    let main = model.fib(ns);
    model.tables(ns).any(|(_, fib)| {
        fib.entries().any(|e| {
            e.route_type == RouteType::Unicast
                && fams.is_none_or(|f| f.contains(&Family::of(e.dst.addr())))
                && e.dev.or_else(|| e.via.and_then(|v| fib.egress(v).or_else(|| main.egress(v)))) == Some(link)
        })
    })
}

fn no_out(model: &Model, ns: NetnsRef, nat: &SourceNat, fams: Option<&BTreeSet<Family>>) -> Option<Diagnostic> {
    let node = model.node(ns.node);
    let links: Vec<&Link> = node.links_in(ns.netns).filter(|l| !matches!(l.kind, LinkKind::Loopback)).collect();
    if links.len() < 2 {
        // One link: every packet leaves by it anyway.
        return None;
    }
    let egress = default_egress(model, ns, fams);
    let other = links.iter().find(|l| Some(l.id) != egress).map(|l| l.name.value.as_str()).unwrap_or("");
    let help = match egress {
        Some(l) => format!("add `out=\"{}\"`", node.link(l).name.value),
        None => "add `out=\"LINK\"` naming the link towards the network that must see the new address".to_string(),
    };
    Some(
        Diagnostic::warning(
            CHECK.code,
            nat.span,
            format!("`{}` without `out` rewrites traffic leaving by every link", nat.keyword),
        )
        .with_label(format!("also rewrites traffic that leaves by `{other}`"))
        .with_help(help),
    )
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    fn gw(extra_links: &str, nat: &str) -> String {
        format!(
            r#"
node "gw" {{
    forwarding #true
    ethernet "eth0" {{ address "203.0.113.2/24"; }}
    bridge "cni0" {{ address "10.244.1.1/24"; }}
    route "default" via="203.0.113.1" dev="eth0"
{extra_links}
{nat}
}}
"#
        )
    }

    #[test]
    fn out_without_an_address_of_the_family() {
        let d = check(&gw(
            r#"    ethernet "eth1""#,
            r#"    masquerade from="10.244.0.0/16" out="eth1"
//                                       ^^^^ error masquerade-without-egress
    snat from="fd00:244::/64" out="cni0" to="2001:db8::7"
//                                 ^^^^ error masquerade-without-egress
    masquerade out="eth1"
//                  ^^^^ error masquerade-without-egress"#,
        ));
        assert_eq!(d[0].message, "`masquerade` leaves by `eth1`, which has no IPv4 address");
        assert_eq!(
            d[0].help.as_deref(),
            Some("add an IPv4 address to `eth1`, or set `out=\"eth0\"`, the link the default route leaves by")
        );
        assert!(d.iter().any(|d| d.message == "`masquerade` leaves by `eth1`, which has no address"), "{d:?}");
    }

    #[test]
    fn out_that_no_route_leaves_by() {
        let d = check(&gw(
            r#"    ethernet "eth1" state="down" { address "198.51.100.2/24"; }
    ethernet "eth2" { address "192.0.2.2/32"; }
    route "192.0.2.128/25" via="203.0.113.1" dev="eth0""#,
            r#"    masquerade from="10.244.0.0/16" out="eth1"
//                                       ^^^^ warning masquerade-without-egress
    snat from="10.244.0.0/16" out="eth2" to="192.0.2.2"
//                                 ^^^^ warning masquerade-without-egress"#,
        ));
        assert_eq!(d[0].message, "no IPv4 route leaves by `eth1`, so this `masquerade` never matches");
    }

    #[test]
    fn routes_by_the_link_directly_or_through_a_gateway() {
        check(&gw(
            r#"    ethernet "eth1" { address "198.51.100.2/32"; }
    route "198.51.100.1/32" dev="eth1"
    route "192.0.2.0/24" via="198.51.100.1""#,
            r#"    masquerade from="10.244.0.0/16" out="eth0"
    masquerade from="10.245.0.0/16" out="eth1"
    snat from="10.246.0.0/16" out="eth0" to="203.0.113.2""#,
        ));
    }

    #[test]
    fn masquerade_out_of_the_lan_instead_of_the_uplink() {
        let d = check(
            r#"
node "gw" {
    forwarding #true
    ethernet "wan0" { address "203.0.113.2/24"; }
    ethernet "lan0" { address "192.168.1.1/24"; }
    route "default" via="203.0.113.1" dev="wan0"
    masquerade from="192.168.1.0/24" out="lan0"
//                                        ^^^^ warning masquerade-without-egress
}
node "hairpin" {
    forwarding #true
    ethernet "wan0" { address "203.0.113.3/24"; }
    ethernet "lan0" { address "192.168.2.1/24"; }
    route "default" via="203.0.113.1" dev="wan0"
    masquerade from="192.168.2.0/24" out="wan0"
    masquerade from="192.168.2.0/24" out="lan0"
}
node "pods-to-lan" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "cni0" { address "10.244.1.1/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    masquerade from="10.244.0.0/16" out="eth0"
}
"#,
        );
        assert_eq!(d[0].help.as_deref(), Some("set `out=\"wan0\"`, the link the default route leaves by"));
    }

    #[test]
    fn without_out_every_link_is_rewritten() {
        let d = check(&gw(
            "",
            r#"    masquerade from="10.244.0.0/16"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning masquerade-without-egress"#,
        ));
        assert_eq!(d[0].help.as_deref(), Some("add `out=\"eth0\"`"));
        assert_eq!(d[0].primary.message, "also rewrites traffic that leaves by `cni0`");
    }

    #[test]
    fn without_out_in_a_namespace_with_one_link() {
        check(
            r#"
node "h" {
    forwarding #true
    ethernet "eth0" { address "203.0.113.2/24"; }
    route "default" via="203.0.113.1" dev="eth0"
    masquerade
}
"#,
        );
    }
}
