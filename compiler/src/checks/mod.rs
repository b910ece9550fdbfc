//! The checks. One check = one file holding its doc (what it does, why it matters, an example),
//! its logic and its tests; registering it is one line in [`CHECKS`]. A check pushes
//! diagnostics and returns: it never prints, panics or stops at the first finding.

use crate::model::Model;
use netcfg_lang::Diagnostic;

mod duplicate_address;
mod duplicate_port;
mod forwarding_disabled;
mod gateway_not_on_link;
mod interface_name_too_long;
mod masquerade_without_egress;
mod missing_bridge_netfilter;
mod missing_hairpin;
mod mtu_mismatch;
mod non_symmetric_routes;
mod overlapping_cidrs;
mod redirect_without_listener;
mod service_without_backends;
mod shadowed_rule;
mod sysctl_for_undeclared_link;
mod unmatchable_rule;

/// A registered check: its stable code, a one-line summary, and the function that runs it.
pub struct Check {
    pub code: &'static str,
    pub summary: &'static str,
    pub run: fn(&Model, &mut Vec<Diagnostic>),
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
    sysctl_for_undeclared_link::CHECK,
];

pub fn run_all(model: &Model, diags: &mut Vec<Diagnostic>) {
    for check in CHECKS {
        (check.run)(model, diags);
    }
}
