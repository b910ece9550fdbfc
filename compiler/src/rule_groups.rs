//! Rule groups (`rules "NAME" { … }` at the top level, `use-rules "NAME"` in a firewall block
//! or another group): the firewall rules of a block with every group expanded in place, in
//! order, each rule paired with the `use-rules` lines it came through (for findings' labels).
//! Names inside a group's rules (sets, zones, links) are resolved later, against the firewall
//! that uses it, exactly as if the rules were written there.
//!
//! Must not: resolve references or judge rules (that is `resolve` and the checks).

use crate::resolve::{duplicate, undefined, RULE_GROUP_CYCLE};
use netcfg_lang::ast::{FirewallDecl, RuleDecl, RuleGroupDecl, RulesUse, Spec};
use netcfg_lang::{Diagnostic, Span};
use std::collections::HashMap;

/// The fleet's rule groups by name (the first of two with one name; the second is
/// `duplicate-name`).
pub struct RuleGroups<'s> {
    by_name: HashMap<&'s str, &'s RuleGroupDecl>,
}

/// A rule of a firewall block after expansion, and the `use-rules` lines (outermost first) it
/// came through.
pub struct Expanded<'a> {
    pub rule: &'a RuleDecl,
    pub via: Vec<Span>,
}

impl<'s> RuleGroups<'s> {
    pub fn new(spec: &'s Spec, diags: &mut Vec<Diagnostic>) -> RuleGroups<'s> {
        let mut by_name: HashMap<&'s str, &'s RuleGroupDecl> = HashMap::new();
        for g in &spec.rule_groups {
            match by_name.get(g.name.value.as_str()) {
                Some(first) => diags.push(duplicate("rule group", &g.name, first.name.span)),
                None => {
                    by_name.insert(&g.name.value, g);
                }
            }
        }
        RuleGroups { by_name }
    }

    /// The filter rules of `fw` in evaluation order, groups expanded. A group that is unknown
    /// (`undefined-reference`) or uses itself (`rule-group-cycle`) contributes nothing.
    pub fn expand<'a>(&'a self, fw: &'a FirewallDecl, diags: &mut Vec<Diagnostic>) -> Vec<Expanded<'a>> {
        let mut out = Vec::new();
        self.expand_into(&fw.rules, &fw.rule_uses, &[], &mut Vec::new(), &mut out, diags);
        out
    }

    fn expand_into<'a>(
        &'a self,
        rules: &'a [RuleDecl],
        uses: &'a [RulesUse],
        via: &[Span],
        stack: &mut Vec<&'a str>,
        out: &mut Vec<Expanded<'a>>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let mut uses = uses.iter().peekable();
        for i in 0..=rules.len() {
            while let Some(u) = uses.next_if(|u| u.at <= i) {
                for name in &u.names {
                    let Some(group) = self.by_name.get(name.value.as_str()) else {
                        diags.push(undefined("rule group", name, self.by_name.keys().copied(), None));
                        continue;
                    };
                    if stack.contains(&group.name.value.as_str()) {
                        diags.push(
                            Diagnostic::error(
                                RULE_GROUP_CYCLE,
                                name.span,
                                format!("rule group `{}` uses itself", name.value),
                            )
                            .with_label("used again here")
                            .with_secondary(group.name.span, "rule group declared here")
                            .with_help("remove the `use-rules` that closes the cycle"),
                        );
                        continue;
                    }
                    stack.push(&group.name.value);
                    let mut inner = via.to_vec();
                    inner.push(u.span);
                    self.expand_into(&group.rules, &group.uses, &inner, stack, out, diags);
                    stack.pop();
                }
            }
            if let Some(rule) = rules.get(i) {
                out.push(Expanded { rule, via: via.to_vec() });
            }
        }
    }
}

/// The labels [`crate::ir::Rule::label_use_sites`] adds.
pub const USED_HERE: &str = "the rule group is used here";
pub const NESTED_USE: &str = "through this nested `use-rules`";

/// One finding per cause. A group used in several places gives the same finding on the same
/// rule text once per use, and a template's firewall once per node that uses it: copies equal
/// but for their use-site labels become one finding that names every use site (in the order
/// found; exact copies simply go).
pub fn merge_copies(diags: &mut Vec<Diagnostic>) {
    let is_use_site = |l: &netcfg_lang::Label| l.message == USED_HERE || l.message == NESTED_USE;
    type Key = (&'static str, Span, String, Option<String>, Vec<(Span, String)>);
    let mut first: HashMap<Key, usize> = HashMap::new();
    let mut keep = vec![true; diags.len()];
    for i in 0..diags.len() {
        let d = &diags[i];
        let others = d.secondary.iter().filter(|l| !is_use_site(l)).map(|l| (l.span, l.message.clone())).collect();
        let key = (d.code.id, d.primary.span, d.message.clone(), d.help.clone(), others);
        match first.get(&key) {
            Some(&j) => {
                let extra: Vec<netcfg_lang::Label> = diags[i]
                    .secondary
                    .iter()
                    .filter(|l| is_use_site(l) && !diags[j].secondary.iter().any(|m| m.span == l.span))
                    .cloned()
                    .collect();
                diags[j].secondary.extend(extra);
                keep[i] = false;
            }
            None => {
                first.insert(key, i);
            }
        }
    }
    let mut keep = keep.into_iter();
    diags.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn groups_expand_in_place_in_order_and_resolve_against_the_using_firewall() {
        let parsed = netcfg_lang::parse_str(
            "t.kdl",
            r#"
rules "ssh" {
    allow in proto="tcp" port=22 from="@admins"
}
rules "base" {
    deny in from="10.66.0.0/16"
    use-rules "ssh"
}
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    firewall {
        policy in="drop"
        set "admins" "192.0.2.0/28"
        allow in proto="udp" port=53
        use-rules "base"
        allow in proto="tcp" port=443
    }
}
"#,
        );
        assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
        let compiled = crate::compile(&parsed.spec);
        assert!(compiled.diagnostics.is_empty(), "{:#?}", compiled.diagnostics);
        let rules = &compiled.fleet.nodes[0].namespaces[0].firewall.rules;
        let ports: Vec<String> =
            rules.iter().map(|r| r.dport.as_ref().map_or("-".into(), |p| p.value.to_string())).collect();
        assert_eq!(ports, ["53", "-", "22", "443"]);
        // The nested rule came through two `use-rules` lines, outermost first.
        assert_eq!(rules[1].via.len(), 1);
        assert_eq!(rules[2].via.len(), 2);
        assert!(rules[0].via.is_empty() && rules[3].via.is_empty());
    }

    #[test]
    fn unknown_cyclic_and_duplicate_groups() {
        let diags = check(
            r#"
rules "web" {
    allow in proto="tcp" port=80
}
rules "web" {
//     ^^^ error duplicate-name
    allow in proto="tcp" port=8080
}
rules "a" {
    use-rules "b"
}
rules "b" {
    use-rules "a"
//             ^ error rule-group-cycle
}
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    firewall {
        use-rules "wbe"
//                 ^^^ error undefined-reference
        use-rules "a"
    }
}
"#,
        );
        let unknown = diags.iter().find(|d| d.code.id == "undefined-reference").unwrap();
        assert_eq!(unknown.help.as_deref(), Some("did you mean `web`?"));
    }

    #[test]
    fn findings_on_a_group_rule_point_into_the_group_and_name_the_use_site() {
        let diags = check(
            r#"
rules "web" {
    allow in proto="tcp" port="80,443"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
    allow out proto="tcp" iif="eth0"
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
//                             ^^^^ warning unmatchable-rule
}
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    firewall {
        policy in="drop"
        use-rules "web"
        use-rules "web"
    }
}
"#,
        );
        // The second use repeats the first: its copy of the rule is shadowed by the first's.
        let shadow = diags.iter().find(|d| d.code.id == "shadowed-rule").unwrap();
        let labels: Vec<&str> = shadow.secondary.iter().map(|l| l.message.as_str()).collect();
        assert!(labels.contains(&"the rule group is used here"), "{labels:?}");
        // One finding per cause, naming both use sites.
        let unmatchable = diags.iter().find(|d| d.code.id == "unmatchable-rule").unwrap();
        let uses: Vec<_> = unmatchable.secondary.iter().filter(|l| l.message == super::USED_HERE).collect();
        assert_eq!(uses.len(), 2, "{unmatchable:#?}");
        assert_ne!(uses[0].span, uses[1].span);
    }

    #[test]
    fn a_name_a_group_rule_gives_is_resolved_where_the_group_is_used() {
        let diags = check(
            r#"
rules "ssh" {
    allow in proto="tcp" port=22 from-zone="lan"
//                                          ^^^ error undefined-reference
}
node "n" {
    ethernet "eth0" { address "192.0.2.10/24"; }
    ethernet "eth1" { address "10.1.0.1/24"; }
    firewall {
        zone "lan" "eth1"
        use-rules "ssh"
    }
    netns "app" {
        firewall { use-rules "ssh"; }
    }
    netns "db" {
        firewall { use-rules "ssh"; }
    }
}
"#,
        );
        let zone = diags.iter().find(|d| d.code.id == "undefined-reference").unwrap();
        assert_eq!(zone.secondary.len(), 2, "one finding naming both use sites without the zone: {zone:#?}");
    }
}
