//! Desired state × live state -> [`Plan`]. The diff walks a copy of the live state and applies
//! each op it emits to that copy, including what the kernel does on its own (deleting a link
//! takes its addresses and routes; deleting the last IPv4 address of a link flushes its IPv4
//! routes; an address adds its connected route), so later decisions see the state the kernel
//! will really be in, and every implicit loss is an explicit op whose inverse restores it.
//!
//! Ownership: only links in netcfg's group, routes, rules and neighbours with netcfg's protocol, and
//! addresses on links the spec declares are ever removed; objects the spec declares are made
//! to match whoever created them.
//!
//! Moves: an `ethernet` link of a named namespace that is not there but in the host namespace
//! (which does not declare it) is moved there; a link netcfg moved into a namespace (per its
//! marker) that the spec no longer puts there is moved back to the host namespace. The kernel
//! takes a moved link down, out of its bridge, and drops its addresses, routes and neighbours:
//! the plan does each of those explicitly before the move, so that a rollback moves the link
//! back and then restores them.
//!
//! Order: kernel modules the spec needs (first: link kinds, `net.bridge.*` sysctls and nft
//! expressions need them); namespaces; removals (neighbours, routes, addresses, then links,
//! ports detached first, then what the moves drop); moves; MTU raises of existing links that
//! links to be created sit on; link creation (bridges, veths, vxlans, macvlans: masters and
//! parents first); sysctls; link settings (what a link depends on first: its bridge, and its
//! lower link when that one's MTU rises, or after it when it falls); addresses; routes (direct
//! before gatewayed); policy rules (after the routes of the tables they send traffic to; their
//! removals come before route removals); neighbours; nft; the modules-load.d file; removal of namespaces netcfg
//! created that the spec dropped.
//!
//! Layout: this file holds the entry point, the phases and the planner's state; `kernel.rs` the
//! modules the spec needs, `links.rs` links (removal, moves, creation, settings, their order),
//! `objects.rs` addresses, routes, rules, neighbours and sysctls, `side_effects.rs` what the
//! kernel removes or adds on its own (made explicit ops), `nft.rs` the nft table; `tests.rs` drives the whole planner on specs and live
//! states written out in the test.

mod kernel;
mod links;
mod nft;
mod objects;
mod side_effects;
#[cfg(test)]
mod tests;

use super::desired::{Desired, Object};
use super::kinds;
use super::live::Live;
use super::plan::{Action, Disruption, Op, Plan};
use super::state::*;
use crate::codes;
use crate::kernel::{modules_load_text, Availability, KernelState};
use crate::nftables::render::Script;
use ipnet::IpNet;
use netcfg_lang::value::SysctlPath;
use netcfg_lang::vocab::{RouteScope, RouteType};
use netcfg_lang::{Diagnostic, Span};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

pub use nft::NftState;

/// The phases of a plan, in the order their ops run. Within a phase, ops run in the order the
/// planner emits them (which the phase's own code decides: masters before ports, direct routes
/// before gatewayed ones...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Kernel modules the spec needs (link kinds, `net.bridge.*` sysctls, nft expressions).
    Modules,
    CreateNetns,
    /// Existing links renamed to the name the spec gives the device with their MAC, before
    /// anything else names them.
    Renames,
    /// Removals: neighbours, routes, addresses, then links (ports detached first).
    Deletes,
    /// Links brought down and out of their bridge before a move, and the moves.
    Moves,
    /// Changes to existing links that links the plan creates depend on (an underlay's MTU).
    EarlySets,
    /// Link creation, masters and lower links first.
    Creates,
    Sysctls,
    /// Link settings, what a link depends on first.
    Settings,
    Addresses,
    Routes,
    Rules,
    Neighbors,
    Nft,
    /// The modules-load.d file, once everything else is done.
    Persist,
    /// Namespaces netcfg created that the spec dropped.
    DeleteNetns,
}

impl Phase {
    const ALL: [Phase; 16] = [
        Phase::Modules,
        Phase::CreateNetns,
        Phase::Renames,
        Phase::Deletes,
        Phase::Moves,
        Phase::EarlySets,
        Phase::Creates,
        Phase::Sysctls,
        Phase::Settings,
        Phase::Addresses,
        Phase::Routes,
        Phase::Rules,
        Phase::Neighbors,
        Phase::Nft,
        Phase::Persist,
        Phase::DeleteNetns,
    ];
}

/// Computes the plan that takes `live` to `desired`. `orphans`: namespaces netcfg created for
/// this node that the spec no longer has (their live state must be in `live`). `nft`: the nft
/// state per namespace, or `None` to leave nftables out of the plan.
pub fn diff(
    desired: &Desired,
    live: &Live,
    orphans: &[NsName],
    nft: Option<&BTreeMap<NsName, NftState>>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut p = Planner {
        d: desired,
        cur: Cur { namespaces: live.state.namespaces.iter().map(|(ns, st)| (ns.clone(), Cow::Borrowed(st))).collect() },
        before: &live.state,
        errors: Vec::new(),
        ops: Default::default(),
        unmatched: BTreeSet::new(),
        deleted: BTreeSet::new(),
        created: BTreeSet::new(),
        marked: &live.moved,
        pending_moves: Vec::new(),
        arrived: BTreeSet::new(),
    };
    p.plan_kernel(&live.kernel);
    for ns in desired.state.namespaces.keys() {
        if live.missing.contains(ns) {
            let span = desired.span_of(ns, &Object::Netns);
            p.emit(
                Phase::CreateNetns,
                Op { ns: ns.clone(), action: Action::CreateNetns, class: Disruption::InPlace, span },
            );
            p.cur.namespaces.insert(ns.clone(), Cow::Owned(new_namespace()));
        }
    }
    p.plan_renames();
    p.plan_link_removals(orphans);
    p.plan_object_removals(orphans);
    p.plan_link_deletes();
    p.plan_moves();
    p.plan_link_creates();
    p.plan_sysctls();
    p.plan_link_settings();
    p.plan_addresses();
    p.plan_routes();
    p.plan_rules();
    p.plan_neighbors();
    if let Some(nft) = nft {
        p.plan_nft(nft);
    }
    for ns in orphans {
        if !desired.state.namespaces.contains_key(ns) && !live.missing.contains(ns) {
            p.emit(
                Phase::DeleteNetns,
                Op {
                    ns: ns.clone(),
                    action: Action::DeleteNetns,
                    class: Disruption::Recreate,
                    span: desired.node_span,
                },
            );
        }
    }
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    let ops = p.ops.into_iter().flatten().collect();
    Ok(Plan { node: desired.node.clone(), ops })
}

/// A namespace as the kernel makes it: `lo`, down.
fn new_namespace() -> NsState {
    let mut st = NsState::default();
    st.links.insert("lo".into(), Link::loopback(false));
    st
}

/// The planner's copy of the live state: a namespace is read from the state as read until an op
/// changes it, and copied then, so a plan with nothing to do in a namespace copies none of it.
struct Cur<'a> {
    namespaces: BTreeMap<NsName, Cow<'a, NsState>>,
}

struct Planner<'a> {
    d: &'a Desired,
    /// The live state as it will be after the ops emitted so far.
    cur: Cur<'a>,
    /// The live state as read.
    before: &'a NodeState,
    errors: Vec<Diagnostic>,
    /// The ops decided so far, by phase; the plan is their concatenation in phase order.
    ops: [Vec<Op>; Phase::ALL.len()],
    /// Links declared with a MAC that [`Planner::plan_renames`] reported as not found.
    unmatched: BTreeSet<LinkRef>,
    /// Links scheduled for deletion (the link deletes come after the object removals).
    deleted: BTreeSet<LinkRef>,
    /// Links the plan creates.
    created: BTreeSet<LinkRef>,
    /// Live links netcfg moved into the namespace they are in (their markers).
    marked: &'a BTreeSet<LinkRef>,
    /// Moves decided on (the link where it is, the namespace it goes to), in order.
    pending_moves: Vec<(LinkRef, NsName)>,
    /// Links the plan moves, where they end up.
    arrived: BTreeSet<LinkRef>,
}

impl Planner<'_> {
    fn span(&self, ns: &str, obj: &Object) -> Span {
        self.d.span_of(ns, obj)
    }

    fn desired_link(&self, r: &LinkRef) -> Option<&Link> {
        self.d.state.namespaces.get(&r.ns)?.links.get(&r.name)
    }

    fn cur_ns(&mut self, ns: &str) -> &mut NsState {
        self.cur.namespaces.entry(ns.to_string()).or_default().to_mut()
    }

    /// Adds an op at the end of its phase.
    fn emit(&mut self, phase: Phase, op: Op) {
        self.ops[phase as usize].push(op);
    }
}

pub const PROTO_KERNEL: u8 = 2;

fn describe_ns(ns: &str) -> String {
    if ns == HOST {
        "the host namespace".to_string()
    } else {
        format!("namespace `{ns}`")
    }
}
