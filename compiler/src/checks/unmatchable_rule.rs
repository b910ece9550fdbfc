//! `unmatchable-rule`: a firewall rule whose own matches contradict each other, so it can never
//! match a packet.
//!
//! **What it does.** Reports a rule when no address family fits its addresses and protocol (an
//! IPv4 `from` with an IPv6 `to`, `proto="icmp"` with an IPv6 address, a `@set` without an
//! element of the rule's family, an empty set), or when its interface matches exclude each other
//! (`iif` a link outside `from-zone`, an empty zone).
//!
//! **Why is this bad.** The rule compiles to nothing (netcfg emits no nft rule for it), so the
//! traffic it was written for meets the next rule or the policy instead — silently.
//!
//! **Example.**
//! ```kdl
//! firewall {
//!     allow in proto="icmp" from="fd00::/8"   // ICMP is IPv4; IPv6 needs `icmpv6`
//! }
//! ```

use super::shadowed_rule::{Matches, ALL_STATES};
use super::{AfterErrors, Check};
use crate::model::Model;
use netcfg_lang::Diagnostic;

pub const CHECK: Check = Check {
    code: "unmatchable-rule",
    summary: "a firewall rule whose matches contradict each other",
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (_, ns) in model.namespaces() {
        let fw = &ns.firewall;
        for rule in &fw.rules {
            if !Matches::new(fw, rule, ALL_STATES).matches_nothing() {
                continue;
            }
            let (message, help) = if fw.rule_families(rule).is_empty() {
                (
                    "this rule can never match: its addresses and protocol have no IP family in common",
                    "use addresses of one family (and `icmp` for IPv4, `icmpv6` for IPv6), or split the rule",
                )
            } else {
                (
                    "this rule can never match: its interface and zone matches exclude each other",
                    "make `iif`/`oif` a link of the zone, or give the zone links",
                )
            };
            diags.push(Diagnostic::warning(CHECK.code, rule.span, message).with_help(help));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn contradictory_rules_are_reported() {
        check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "br0" { address "10.1.0.1/24"; }
    firewall {
        zone "lan" "eth0"
        set "v6only" "fd00::/8"
        allow in proto="icmp" from="fd00::/8"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
        allow in from="10.0.0.0/8" to="fd00::1"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
        allow in proto="tcp" port=22 from="@v6only" to="10.0.0.2"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
        allow in iif="br0" from-zone="lan"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
        allow in proto="icmpv6" from="fd00::/8"
        allow in iif="eth0" from-zone="lan" proto="udp" port=53
    }
}
"#,
        );
    }
}
