//! The checks. One check = one file holding its doc (what it does, why it matters, an example),
//! its logic and its tests; registering it is one line in [`CHECKS`]. A check pushes
//! diagnostics and returns: it never prints, panics or stops at the first finding.

use crate::follow_on::BrokenNamespaces;
use crate::model::Model;
use netcfg_lang::{Code, Diagnostic};

mod duplicate_address;
mod duplicate_port;
mod forwarding_disabled;
mod gateway_not_on_link;
mod interface_name_too_long;
mod masquerade_without_egress;
mod missing_bridge_netfilter;
mod missing_hairpin;
mod mtu_mismatch;
mod non_local_source;
mod non_symmetric_routes;
mod overlapping_cidrs;
mod redirect_without_listener;
mod service_without_backends;
mod shadowed_rule;
mod sysctl_for_undeclared_link;
mod tproxy_without_local_route;
mod unmatchable_rule;
mod unreachable_backend;

/// A registered check: its code (id, severities, summary), the function that runs it, and
/// whether its findings can follow from an error elsewhere.
pub struct Check {
    pub code: Code,
    pub run: fn(&Model, &mut Vec<Diagnostic>),
    pub after_errors: AfterErrors,
}

/// What a check's findings mean in a namespace whose declaration has an error (an unresolved
/// reference, an invalid value): the IR holds what resolved, which is less than was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterErrors {
    /// The check reports what is there (two equal addresses, a long name); a missing piece
    /// cannot make its finding false.
    Run,
    /// The check concludes from what is absent (no route back, no listener, a gateway off-link)
    /// or from a rule's whole set of matches: with a piece missing, its finding would follow
    /// from the error. Findings touching a broken namespace are dropped (one cause, one finding).
    SkipBrokenNamespace,
}

/// Every check, in the order they run (output is sorted afterwards, so order is not visible).
pub const CHECKS: &[Check] = &[
    overlapping_cidrs::CHECK,
    missing_bridge_netfilter::CHECK,
    non_symmetric_routes::CHECK,
    duplicate_address::CHECK,
    gateway_not_on_link::CHECK,
    interface_name_too_long::CHECK,
    duplicate_port::CHECK,
    mtu_mismatch::CHECK,
    service_without_backends::CHECK,
    forwarding_disabled::CHECK,
    shadowed_rule::CHECK,
    unmatchable_rule::CHECK,
    missing_hairpin::CHECK,
    masquerade_without_egress::CHECK,
    redirect_without_listener::CHECK,
    non_local_source::CHECK,
    unreachable_backend::CHECK,
    sysctl_for_undeclared_link::CHECK,
    tproxy_without_local_route::CHECK,
];

pub fn run_all(model: &Model, broken: &BrokenNamespaces, diags: &mut Vec<Diagnostic>) {
    for check in CHECKS {
        let mut found = Vec::new();
        (check.run)(model, &mut found);
        if check.after_errors == AfterErrors::SkipBrokenNamespace && !broken.is_empty() {
            found.retain(|d| !broken.touches(d));
        }
        diags.extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::{AfterErrors, CHECKS};

    /// spec.md names exactly the checks that stay silent in a namespace with an error (that
    /// every code has a section is `tests/spec.rs`'s business).
    #[test]
    fn spec_names_the_checks_that_skip_broken_namespaces() {
        let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec.md")).expect("spec.md");
        let paragraph = spec
            .split("\n\n")
            .find(|p| p.starts_with("One cause, one finding"))
            .expect("the follow-on paragraph in spec.md");
        for check in CHECKS {
            let listed = paragraph.contains(&format!("`{}`", check.code.id));
            assert_eq!(
                listed,
                check.after_errors == AfterErrors::SkipBrokenNamespace,
                "spec.md's follow-on paragraph and `{}`'s `after_errors` disagree",
                check.code.id
            );
        }
    }
}
