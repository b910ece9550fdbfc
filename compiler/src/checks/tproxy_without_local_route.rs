//! `tproxy-without-local-route`: a `tproxy` whose marked packets no policy rule routes to a
//! `local` route, so they never reach the proxy's socket.
//!
//! **What it does.** For each `tproxy` and each IP family the namespace has addresses of
//! (IPv4 when it has none), looks for a policy `rule` before the main table (priority below
//! 32766) whose `fwmark` the tproxy's `mark` satisfies (the rule's mask within the bits the
//! tproxy sets) and that looks up a table holding a `local` default route of that family
//! (`route "0.0.0.0/0" type="local" dev="lo" table=…`). Reports the tproxy's mark when there is
//! none.
//!
//! **Why is this bad.** TPROXY hands the packet to a local socket but leaves its destination
//! alone; the routing decision that follows sees a foreign address and forwards the packet (or
//! drops it where forwarding is off), unless the mark leads to a table that calls every
//! address local. This is the step every TPROXY guide (the kernel's `tproxy.txt`, Istio,
//! Squid) adds by hand with `ip rule add fwmark … lookup 100` and `ip route add local
//! 0.0.0.0/0 dev lo table 100`. A warning, not an error: an agent may install the rule itself
//! (Istio's init container does); declare it, or suppress the finding saying so.
//!
//! **Example.**
//! ```kdl
//! node "n" {
//!     tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"   // nothing routes mark 0x1 to `lo`
//! }
//! ```
//! Fix: `table "tproxy" id=100`, `rule priority=100 fwmark="0x1" table="tproxy"`,
//! `route "0.0.0.0/0" type="local" dev="lo" table="tproxy"`.

use super::{AfterErrors, Check};
use crate::ir::{LinkKind, Netns, PolicyRule, RuleAction, Tproxy};
use crate::model::Model;
use netcfg_lang::vocab::{Family, RouteType};
use netcfg_lang::{Code, Diagnostic, Severity};

pub const CHECK: Check = Check {
    code: Code::new(
        "tproxy-without-local-route",
        &[Severity::Warning],
        "a tproxy whose mark no policy rule routes to a `local` route",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

/// Whether every packet the tproxy marks matches the rule's `fwmark`.
fn rule_takes(rule: &PolicyRule, t: &Tproxy) -> bool {
    let Some((value, mask)) = rule.fwmark else { return false };
    let set = t.mark.value.mask.unwrap_or(u32::MAX);
    mask & !set == 0 && t.mark.value.value & mask == value & mask
}

/// Whether table `table` has a `local` default route of `family`.
fn local_default(netns: &Netns, table: u32, family: Family) -> bool {
    netns.routes.iter().any(|r| {
        r.table == table
            && r.route_type == RouteType::Local
            && r.dst.prefix_len() == 0
            && Family::of(r.dst.addr()) == family
    })
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        if netns.tproxies.is_empty() {
            continue;
        }
        let node = model.node(ns.node);
        let mut families: Vec<Family> = [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .filter(|f| {
                node.links_in(ns.netns)
                    .filter(|l| !matches!(l.kind, LinkKind::Loopback))
                    .any(|l| l.addresses.iter().any(|a| Family::of(a.addr()) == *f))
            })
            .collect();
        if families.is_empty() {
            families.push(Family::Ipv4);
        }
        for t in &netns.tproxies {
            for &family in &families {
                let rules: Vec<&PolicyRule> = netns
                    .rules
                    .iter()
                    .filter(|r| r.priority.value < 32766 && r.families().contains(&family) && rule_takes(r, t))
                    .collect();
                let routed = rules.iter().any(|r| match r.action.value {
                    RuleAction::Lookup(table) => local_default(netns, table, family),
                    _ => false,
                });
                if routed {
                    continue;
                }
                let default = if family == Family::Ipv4 { "0.0.0.0/0" } else { "::/0" };
                let mut d = Diagnostic::warning(
                    CHECK.code,
                    t.mark.span,
                    format!(
                        "no policy rule routes {} packets with this mark to a `local` route in {}",
                        family.name(),
                        node.describe_netns(ns.netns)
                    ),
                )
                .with_label("the proxied packets are routed by their original destination and never reach the socket");
                let help = match rules.first() {
                    Some(r) => {
                        d = d.with_secondary(r.span, "this rule takes the marked packets, but its table has no `local` default route");
                        format!("add `route \"{default}\" type=\"local\" dev=\"lo\"` to the table this rule looks up")
                    }
                    None => format!(
                        "declare `table \"tproxy\" id=100`, `rule priority=100 fwmark=\"{:#x}\" table=\"tproxy\"` and `route \"{default}\" type=\"local\" dev=\"lo\" table=\"tproxy\"`",
                        t.mark.value.value
                    ),
                };
                diags.push(d.with_help(help));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_tproxy_needs_a_rule_to_a_local_route() {
        let d = check(
            r#"
node "routed" {
    ethernet "eth0" { address "10.0.1.2/24"; }
    table "tproxy" id=100
    rule priority=100 fwmark="0x1/0xff" table="tproxy"
    route "0.0.0.0/0" type="local" dev="lo" table="tproxy"
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"
    tproxy in proto="udp" port=53 to-port=15053 mark="0x101/0xffff"
    listen "proxy" port=15001
    listen "dns-proxy" port=15053 proto="udp"
}
node "masked" {
    ethernet "eth0" { address "10.0.2.2/24"; }
    listen "proxy" port=15001
    table "tp" id=100
    rule priority=100 fwmark="0x100/0xff00" table="tp"
    route "0.0.0.0/0" type="local" dev="lo" table="tp"
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x100/0xff00"
    tproxy in proto="tcp" port=81 to-port=15001 mark="0x100/0x0f00"
//                                                    ^^^^^^^^^^^^ warning tproxy-without-local-route
}
node "bare" {
    ethernet "eth0" { address "10.0.3.2/24"; }
    listen "proxy" port=15001
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"
//                                                    ^^^ warning tproxy-without-local-route
}
node "no-route" {
    ethernet "eth0" { address "10.0.4.2/24"; address "fd00::2/64"; }
    listen "proxy" port=15001
    table "tproxy" id=100
    rule priority=100 fwmark="0x1" table="tproxy"
    route "0.0.0.0/0" type="local" dev="lo" table="tproxy"
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"
//                                                    ^^^ warning tproxy-without-local-route
}
"#,
        );
        let bare = d.iter().find(|d| d.message.contains("node `bare`")).expect("bare");
        assert_eq!(bare.message, "no policy rule routes IPv4 packets with this mark to a `local` route in node `bare`");
        let v6 = d.iter().find(|d| d.message.contains("node `no-route`")).expect("no-route");
        assert!(v6.message.contains("IPv6"), "{}", v6.message);
        assert_eq!(
            v6.secondary[0].message,
            "this rule takes the marked packets, but its table has no `local` default route"
        );
    }
}
