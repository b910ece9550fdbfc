//! `unmatchable-rule`: a firewall rule whose own matches contradict each other, so it can never
//! match a packet.
//!
//! **What it does.** Reports a rule when no address family fits its addresses and protocol (an
//! IPv4 `from` with an IPv6 `to`, `proto="icmp"` with an IPv6 address, a `@set` without an
//! element of the rule's family, an empty set), or when its interface matches exclude each other
//! (`iif` a link outside `from-zone`, an empty zone). Separately, an interface match the rule's
//! direction never has: `iif`/`from-zone` on an `out` rule (a packet the namespace sends has no
//! incoming link: the output hook sees `iif` 0) or `oif`/`to-zone` on an `in` rule (the input
//! hook runs before any outgoing link exists).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `unmatchable-rule` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::shadowed_rule::{Matches, ALL_STATES};
use super::{AfterErrors, Check};
use crate::model::Model;
use netcfg_lang::vocab::Direction;
use netcfg_lang::{Code, Diagnostic, Severity, Span};

pub const CHECK: Check = Check {
    code: Code::new(
        "unmatchable-rule",
        &[Severity::Warning],
        "a firewall rule whose own matches contradict each other, or an interface match its direction never has",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (_, ns) in model.namespaces() {
        let fw = &ns.firewall;
        for rule in &fw.rules {
            let before = diags.len();
            check_rule(fw, rule, diags);
            // A rule of a rule group is written once: say which use of the group this is.
            for d in &mut diags[before..] {
                rule.label_use_sites(d);
            }
        }
    }
}

fn check_rule(fw: &crate::ir::Firewall, rule: &crate::ir::Rule, diags: &mut Vec<Diagnostic>) {
    wrong_direction(rule, diags);
    // Without interface or zone matches, only the families can be contradictory: asked
    // directly, without building the rule's matches (a tenth of `check` on 10,000 rules).
    let no_links = rule.iif.is_none() && rule.oif.is_none() && rule.from_zone.is_none() && rule.to_zone.is_none();
    if no_links && !fw.rule_family_set(rule).is_empty() {
        return;
    }
    if !Matches::new(fw, rule, ALL_STATES).matches_nothing() {
        return;
    }
    let (message, help) = if fw.rule_families(rule).is_empty() {
        (
            "this rule can never match: its addresses, protocol and `family` have no IP family in common",
            "use addresses of one family (and `icmp` for IPv4, `icmpv6` for IPv6, and the same `family`), or split the rule",
        )
    } else {
        (
            "this rule can never match: its interface and zone matches exclude each other",
            "make `iif`/`oif` a link of the zone, or give the zone links",
        )
    };
    diags.push(Diagnostic::warning(CHECK.code, rule.span, message).with_help(help));
}

/// `iif`/`from-zone` on `out`, `oif`/`to-zone` on `in`: one finding per rule, on the first
/// such match.
fn wrong_direction(rule: &crate::ir::Rule, diags: &mut Vec<Diagnostic>) {
    // (the first match the direction never has, its key, the key of the other side)
    let (bad, what, dir, other) = match rule.direction.value {
        Direction::Out => {
            let bad = match (&rule.iif, &rule.from_zone) {
                (Some(l), _) => Some((l.span, "iif", "oif")),
                (None, Some(z)) => Some((z.span, "from-zone", "to-zone")),
                (None, None) => None,
            };
            (bad, "incoming link", "out", "`in` or `forward`")
        }
        Direction::In => {
            let bad = match (&rule.oif, &rule.to_zone) {
                (Some(l), _) => Some((l.span, "oif", "iif")),
                (None, Some(z)) => Some((z.span, "to-zone", "from-zone")),
                (None, None) => None,
            };
            (bad, "outgoing link", "in", "`out` or `forward`")
        }
        Direction::Forward => return,
    };
    let Some((at, key, swap)): Option<(Span, &str, &str)> = bad else { return };
    diags.push(
        Diagnostic::warning(CHECK.code, at, format!("this rule can never match: an `{dir}` packet has no {what}"))
            .with_label(format!("`{key}` never matches in the `{dir}` direction"))
            .with_secondary(rule.direction.span, format!("the rule is `{dir}`"))
            .with_help(format!("use `{swap}` if you meant the other side of this namespace, or make the rule {other}")),
    );
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

    #[test]
    fn interface_matches_the_direction_never_has() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    ethernet "wan0" { address "203.0.113.2/24"; }
    ethernet "lan0" { address "192.168.1.1/24"; }
    firewall {
        policy in="drop" out="drop" forward="drop"
        zone "lan" "lan0"
        zone "wan" "wan0"
        allow out from-zone="lan" proto="udp" port=53
//                           ^^^ warning unmatchable-rule
        allow out iif="lan0" proto="tcp" port=443
//                     ^^^^ warning unmatchable-rule
        allow in to-zone="wan" proto="tcp" port=22
//                        ^^^ warning unmatchable-rule
        allow in oif="lan0" proto="tcp" port=80
//                    ^^^^ warning unmatchable-rule
        allow in iif="lo"
        allow in from-zone="lan" proto="tcp" port=22
        allow out oif="wan0" proto="udp" port=123
        allow out to-zone="wan" proto="tcp" port=443
        allow forward from-zone="lan" to-zone="wan"
        allow forward iif="wan0" oif="lan0" proto="tcp" port=443
    }
}
"#,
        );
        assert_eq!(d[0].message, "this rule can never match: an `out` packet has no incoming link");
        assert_eq!(
            d[0].help.as_deref(),
            Some("use `to-zone` if you meant the other side of this namespace, or make the rule `in` or `forward`")
        );
    }
}
