//! Which namespaces have an error in their declaration, so that checks whose findings would
//! follow from it stay quiet there (one cause, one finding; see `checks::AfterErrors`).
//!
//! A namespace is broken when an error's primary span lies inside its declaration (for the host
//! namespace: inside the node but not inside one of its `netns` blocks) or inside the span of
//! one of its items (a link, route, zone, rule... possibly written in a template).

use crate::ir::{Fleet, NetnsId, NodeId};
use netcfg_lang::{Diagnostic, Severity, Span};
use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct BrokenNamespaces {
    /// Item spans of broken namespaces: a finding touching one of them is a follow-on.
    spans: Vec<Span>,
    broken: HashSet<(NodeId, NetnsId)>,
}

impl BrokenNamespaces {
    pub fn new<'a>(fleet: &Fleet, diagnostics: impl IntoIterator<Item = &'a Diagnostic>) -> BrokenNamespaces {
        let mut errors: Vec<Span> =
            diagnostics.into_iter().filter(|d| d.severity == Severity::Error).map(|d| d.primary.span).collect();
        if errors.is_empty() {
            return BrokenNamespaces::default();
        }
        errors.sort_by_key(|s| (s.file, s.start));
        let contains_error = |item: Span| {
            let i = errors.partition_point(|e| (e.file, e.start) < (item.file, item.start));
            errors.get(i).is_some_and(|e| e.file == item.file && e.start < item.end.max(item.start + 1))
        };
        let mut out = BrokenNamespaces::default();
        for node in &fleet.nodes {
            for ns in &node.namespaces {
                let items = item_spans(node, ns.id);
                // The host namespace's own span is the node's, which holds the `netns` blocks:
                // an error inside one of those is that namespace's, not the host's.
                let own = if ns.is_host() {
                    let children: Vec<Span> = node.namespaces.iter().skip(1).map(|n| n.span).collect();
                    errors.iter().any(|e| within(*e, ns.span) && !children.iter().any(|c| within(*e, *c)))
                } else {
                    contains_error(ns.span)
                };
                if own || items.iter().any(|s| contains_error(*s)) {
                    out.broken.insert((node.id, ns.id));
                    // The host's span is the whole node, `netns` blocks included; its items
                    // (`lo` carries the node's name) stand for it.
                    if !ns.is_host() {
                        out.spans.push(ns.span);
                    }
                    out.spans.extend(items);
                }
            }
        }
        out.spans.sort_by_key(|s| (s.file, s.start));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.broken.is_empty()
    }

    pub fn contains(&self, node: NodeId, ns: NetnsId) -> bool {
        self.broken.contains(&(node, ns))
    }

    /// Whether a finding points (primary or secondary label) into a broken namespace.
    pub fn touches(&self, d: &Diagnostic) -> bool {
        std::iter::once(&d.primary).chain(&d.secondary).any(|l| self.spans.iter().any(|s| within(l.span, *s)))
    }
}

fn within(inner: Span, outer: Span) -> bool {
    inner.file == outer.file && inner.start >= outer.start && inner.end <= outer.end
}

/// The spans of everything declared in one namespace (templates put items outside the node).
fn item_spans(node: &crate::ir::Node, ns: NetnsId) -> Vec<Span> {
    let n = node.netns(ns);
    let mut spans: Vec<Span> = node.links_in(ns).map(|l| l.span).collect();
    spans.extend(n.routes.iter().map(|r| r.span));
    spans.extend(n.neighbors.iter().map(|r| r.span));
    spans.extend(n.firewall.span);
    spans.extend(n.firewall.zones.iter().map(|z| z.span));
    spans.extend(n.firewall.sets.iter().map(|z| z.span));
    spans.extend(n.firewall.rules.iter().map(|z| z.span));
    spans.extend(n.services.iter().map(|z| z.span));
    spans.extend(n.masquerades.iter().map(|z| z.span));
    spans.extend(n.snats.iter().map(|z| z.span));
    spans.extend(n.redirects.iter().map(|z| z.span));
    spans.extend(n.listeners.iter().map(|z| z.span));
    spans
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_mistyped_zone_link_is_one_finding() {
        // Without suppression every rule naming `lan` is also `unmatchable-rule` (its zone has
        // no links) and the broadened rules shadow each other.
        check(
            r#"
node "gw" {
    forwarding #true
    ethernet "wan0" { address "203.0.113.2/24"; }
    ethernet "lan0" { address "192.168.1.1/24"; }
    route "default" via="203.0.113.1" dev="wan0"
    masquerade from="192.168.1.0/24" out="wan0"
    firewall {
        policy in="drop" forward="drop"
        zone "wan" "wan0"
        zone "lan" "lna0"
//                  ^^^^ error undefined-reference
        allow in from-zone="lan" proto="tcp" port=22
        allow in from-zone="lan" proto="udp" port=53
        allow forward from-zone="lan" to-zone="wan"
        allow forward from-zone="wan" to-zone="lan" proto="tcp" port=443
        deny forward from-zone="lan" to-zone="wan" proto="tcp" port=25
    }
}
"#,
        );
    }

    #[test]
    fn a_veth_without_peer_is_one_finding() {
        // Its `address` child is valid and must not be reported as "not allowed".
        check(
            r#"
node "n" {
    veth "v0" {
//  ^^^^^^^^^ error missing-property
        address "10.9.0.1/24"
    }
}
"#,
        );
    }

    #[test]
    fn references_to_a_link_that_could_not_be_built_are_quiet() {
        check(
            r#"
node "n" {
    bridge "br0"
    netns "db" {
        veth "eth0" {
//      ^^^^^^^^^^^ error missing-property
            address "172.17.0.3/16"
        }
        route "default" via="172.17.0.1" dev="eth0"
    }
    route "10.9.0.0/16" dev="eht0"
//                           ^^^^ error undefined-reference
}
"#,
        );
    }

    #[test]
    fn an_invalid_address_is_one_finding() {
        // The gateway would be off-link only because the address was dropped.
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.300/24"; }
//                             ^^^^^^^^^^ error invalid-value
    route "default" via="10.0.0.1" dev="eth0"
}
"#,
        );
    }

    #[test]
    fn findings_elsewhere_are_kept() {
        // The error is in namespace `a`; the off-link gateway of namespace `b` is its own mistake.
        check(
            r#"
node "n" {
    netns "a" {
        ethernet "eth0" { address "10.0.0.300/24"; }
//                                 ^^^^^^^^^^ error invalid-value
        route "default" via="10.0.0.1" dev="eth0"
    }
    netns "b" {
        ethernet "eth1" { address "10.1.0.2/24"; }
        route "default" via="10.2.0.1" dev="eth1"
//                           ^^^^^^^^ error gateway-not-on-link
    }
}
"#,
        );
    }
}
