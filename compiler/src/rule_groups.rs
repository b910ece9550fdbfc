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
