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

use super::desired::{Desired, Object};
use super::kinds;
use super::live::Live;
use super::plan::{Action, Disruption, Op, Plan};
use super::state::*;
use crate::codes;
use crate::kernel::{modules_load_text, Availability, KernelState};
use crate::nftables::render::Script;
use ipnet::IpNet;
use netcfg_lang::ast::{RouteScope, RouteType};
use netcfg_lang::value::SysctlPath;
use netcfg_lang::{Diagnostic, Span};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// The nft state of one namespace: the live table and the canonical form of the planned
/// script (both as nft lists them), `None` when there is no table.
#[derive(Clone, Debug, Default)]
pub struct NftState {
    pub live: Option<Json>,
    pub planned: Option<Json>,
    /// The live table as `nft list` prints it: what a rollback loads back.
    pub live_text: Option<String>,
}

impl NftState {
    /// A namespace without a table, before nft is asked: the planned form is the script
    /// itself (the offline plan has no kernel to canonicalise it), `None` when it makes no table.
    pub fn offline(script: &Script) -> NftState {
        NftState {
            live: None,
            planned: script.creates_table.then(|| Json::String(script.text.clone())),
            live_text: None,
        }
    }
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
        cur: live.state.clone(),
        before: &live.state,
        errors: Vec::new(),
        modules: Vec::new(),
        persist: Vec::new(),
        create_ns: Vec::new(),
        deletes: Vec::new(),
        renames: Vec::new(),
        unmatched: BTreeSet::new(),
        moves: Vec::new(),
        early_sets: Vec::new(),
        creates: Vec::new(),
        sysctls: Vec::new(),
        sets: Vec::new(),
        addrs: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        neighs: Vec::new(),
        nft: Vec::new(),
        delete_ns: Vec::new(),
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
            p.create_ns.push(Op { ns: ns.clone(), action: Action::CreateNetns, class: Disruption::InPlace, span });
            p.cur.namespaces.insert(ns.clone(), new_namespace());
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
            p.delete_ns.push(Op {
                ns: ns.clone(),
                action: Action::DeleteNetns,
                class: Disruption::Recreate,
                span: desired.node_span,
            });
        }
    }
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    let mut ops = Vec::new();
    for part in [
        p.modules,
        p.create_ns,
        p.renames,
        p.deletes,
        p.moves,
        p.early_sets,
        p.creates,
        p.sysctls,
        p.sets,
        p.addrs,
        p.routes,
        p.rules,
        p.neighs,
        p.nft,
        p.persist,
        p.delete_ns,
    ] {
        ops.extend(part);
    }
    Ok(Plan { node: desired.node.clone(), ops })
}

/// A namespace as the kernel makes it: `lo`, down.
fn new_namespace() -> NsState {
    let mut st = NsState::default();
    st.links.insert("lo".into(), Link::loopback(false));
    st
}

struct Planner<'a> {
    d: &'a Desired,
    /// The live state as it will be after the ops emitted so far.
    cur: NodeState,
    /// The live state as read.
    before: &'a NodeState,
    errors: Vec<Diagnostic>,
    /// Kernel modules to load, before everything (link kinds, sysctls, nft need them).
    modules: Vec<Op>,
    /// The modules-load.d file, once everything else is done.
    persist: Vec<Op>,
    create_ns: Vec<Op>,
    deletes: Vec<Op>,
    /// Existing links renamed to the name the spec gives the device with their MAC, before
    /// anything else names them.
    renames: Vec<Op>,
    /// Links declared with a MAC that [`Planner::plan_renames`] reported as not found.
    unmatched: BTreeSet<LinkRef>,
    /// Bringing links down and out of their bridge before a move, and the moves.
    moves: Vec<Op>,
    /// Changes to existing links that links the plan creates depend on (an underlay's MTU).
    early_sets: Vec<Op>,
    creates: Vec<Op>,
    sysctls: Vec<Op>,
    sets: Vec<Op>,
    addrs: Vec<Op>,
    routes: Vec<Op>,
    rules: Vec<Op>,
    neighs: Vec<Op>,
    nft: Vec<Op>,
    delete_ns: Vec<Op>,
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
        self.cur.namespaces.entry(ns.to_string()).or_default()
    }

    /// Loads the modules the spec needs that the kernel has not loaded; reports those it cannot
    /// have; keeps the modules-load.d file listing every needed feature that is a module.
    fn plan_kernel(&mut self, kernel: &KernelState) {
        let mut at_boot = BTreeSet::new();
        for (f, span) in &self.d.features {
            let have = kernel.features.get(f).copied().unwrap_or(Availability::BuiltIn);
            if have.is_module() {
                at_boot.insert(f.module());
            }
            match have {
                Availability::BuiltIn | Availability::Loaded => {}
                Availability::Loadable => self.modules.push(Op {
                    ns: HOST.to_string(),
                    action: Action::LoadModule { module: f.module().to_string() },
                    class: Disruption::InPlace,
                    span: *span,
                }),
                Availability::Absent => self.errors.push(
                    Diagnostic::error(
                        codes::MISSING_KERNEL_FEATURE,
                        *span,
                        format!("the running kernel has no `{}`, needed for {}", f.module(), f.purpose()),
                    )
                    .with_help(format!(
                        "install the module package of the running kernel (`/lib/modules/$(uname -r)`), or boot a \
                         kernel built with `{}`",
                        f.module()
                    )),
                ),
            }
        }
        let Some((path, old)) = &kernel.modules_load else { return };
        let content = match &self.d.modules_load {
            Some(recorded) => recorded.clone(),
            None => (!at_boot.is_empty()).then(|| modules_load_text(&at_boot)),
        };
        if &content != old {
            self.persist.push(Op {
                ns: HOST.to_string(),
                action: Action::WriteModulesLoad { path: path.clone(), content, old: old.clone() },
                class: Disruption::InPlace,
                span: self.d.node_span,
            });
        }
    }

    /// Decides which live links go: netcfg's links the spec dropped, links that must be
    /// recreated, and netcfg's links in namespaces that go.
    fn plan_link_removals(&mut self, orphans: &[NsName]) {
        let namespaces: Vec<NsName> = self.cur.namespaces.keys().cloned().collect();
        // Links netcfg moved into a namespace that the spec no longer puts there.
        let mut back: Vec<LinkRef> = Vec::new();
        for ns in namespaces {
            let desired = self.d.state.namespaces.get(&ns);
            if desired.is_none() && !orphans.contains(&ns) {
                continue;
            }
            let live_links: Vec<(String, Link)> =
                self.cur.namespaces[&ns].links.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (name, l) in live_links {
                let r = LinkRef { ns: ns.clone(), name: name.clone() };
                match desired.and_then(|d| d.links.get(&name)) {
                    None if l.owned => self.schedule_delete(&r),
                    None if ns != HOST && self.marked.contains(&r) => back.push(r),
                    None => {}
                    Some(d) if !same_device(&d.kind, &l.kind) => {
                        if l.owned {
                            self.schedule_delete(&r);
                        } else {
                            let span = self.span(&ns, &Object::Link(name.clone()));
                            self.errors.push(
                                Diagnostic::error(
                                    codes::FOREIGN_LINK,
                                    span,
                                    format!(
                                        "link `{name}` exists in {} as a {} that netcfg did not create",
                                        describe_ns(&ns),
                                        l.kind.keyword()
                                    ),
                                )
                                .with_help("rename the link in the spec, or delete the existing link by hand"),
                            );
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        self.plan_existing_links(back);
    }

    /// Decides the moves, and reports the desired links that cannot be created and are
    /// nowhere to be found. `back`: links to move back to the host namespace.
    fn plan_existing_links(&mut self, back: Vec<LinkRef>) {
        let host_declares = |d: &Desired, name: &str| {
            d.state.namespaces.get(HOST).and_then(|h| h.links.get(name)).map(|l| l.kind.is_created())
        };
        // Where a link is after the moves decided so far.
        let mut leaving: BTreeSet<LinkRef> = BTreeSet::new();
        let mut arriving: BTreeSet<LinkRef> = BTreeSet::new();
        let there = |p: &Planner, leaving: &BTreeSet<LinkRef>, arriving: &BTreeSet<LinkRef>, r: &LinkRef| {
            arriving.contains(r)
                || (!leaving.contains(r)
                    && !p.deleted.contains(r)
                    && p.cur.namespaces.get(&r.ns).is_some_and(|c| c.links.contains_key(&r.name)))
        };
        for r in back {
            let to = LinkRef { ns: HOST.to_string(), name: r.name.clone() };
            // A link of that name in the host namespace, now or created by the plan, keeps it
            // where it is.
            if there(self, &leaving, &arriving, &to) || host_declares(self.d, &r.name) == Some(true) {
                continue;
            }
            leaving.insert(r.clone());
            arriving.insert(to);
            self.pending_moves.push((r, HOST.to_string()));
        }
        let wanted: Vec<(NsName, String)> = self
            .d
            .state
            .namespaces
            .iter()
            .flat_map(|(ns, st)| {
                st.links
                    .iter()
                    .filter(|(_, l)| !l.kind.is_created() && !matches!(l.kind, LinkKind::Loopback))
                    .map(move |(name, _)| (ns.clone(), name.clone()))
            })
            .collect();
        for (ns, name) in wanted {
            let r = LinkRef { ns: ns.clone(), name: name.clone() };
            if there(self, &leaving, &arriving, &r) || self.unmatched.contains(&r) {
                continue;
            }
            let host = LinkRef { ns: HOST.to_string(), name: name.clone() };
            let declared_in_host = ns != HOST && host_declares(self.d, &name).is_some();
            let nic_in_host = there(self, &leaving, &arriving, &host)
                && self
                    .cur
                    .namespaces
                    .get(HOST)
                    .and_then(|h| h.links.get(&name))
                    .is_none_or(|l| !matches!(l.kind, LinkKind::Loopback));
            if ns != HOST && !declared_in_host && nic_in_host {
                leaving.insert(host.clone());
                arriving.insert(r);
                self.pending_moves.push((host, ns));
                continue;
            }
            let span = self.span(&ns, &Object::Link(name.clone()));
            let (message, help) = if ns == HOST {
                (
                    format!("link `{name}` does not exist in the host namespace"),
                    "netcfg configures existing NICs but does not create them; check the name".to_string(),
                )
            } else if declared_in_host {
                (
                    format!("link `{name}` does not exist in {}", describe_ns(&ns)),
                    format!(
                        "the host namespace declares `{name}` too, so netcfg does not move it; a link is in one \
                         namespace only"
                    ),
                )
            } else {
                (
                    format!("link `{name}` exists neither in {} nor in the host namespace", describe_ns(&ns)),
                    "netcfg configures existing NICs and moves them from the host namespace into the one the \
                     spec puts them in, but does not create them; check the name"
                        .to_string(),
                )
            };
            self.errors.push(Diagnostic::error(codes::MISSING_LINK, span, message).with_help(help));
        }
    }

    /// Marks a link (and everything the kernel deletes with it) for deletion.
    fn schedule_delete(&mut self, r: &LinkRef) {
        if !self.deleted.insert(r.clone()) {
            return;
        }
        let Some(l) = self.cur.namespaces.get(&r.ns).and_then(|s| s.links.get(&r.name)).cloned() else { return };
        if let LinkKind::Veth { peer: Some(p) } = &l.kind {
            self.schedule_delete(&p.clone());
        }
        if matches!(l.kind, LinkKind::Veth { peer: None }) && !self.d.exact {
            // Deleting it deletes its peer too, in a namespace netcfg does not read: a loss the
            // plan could not show, and a pair a rollback could not make again.
            let span = self.span(&r.ns, &Object::Link(r.name.clone()));
            self.errors.push(
                Diagnostic::error(
                    codes::UNREACHABLE_PEER,
                    span,
                    format!(
                        "netcfg would delete veth `{}` in {}, whose peer is in a namespace outside the spec",
                        r.name,
                        describe_ns(&r.ns)
                    ),
                )
                .with_help("keep the veth in the spec, or delete the pair by hand (`ip link del`)"),
            );
        }
        // Macvlans and vxlans on top of it go with it.
        let mut children = Vec::new();
        for (ns, st) in &self.cur.namespaces {
            for (name, c) in &st.links {
                let on_top = kinds::lower(&c.kind, ns).as_ref() == Some(r);
                if on_top {
                    children.push(LinkRef { ns: ns.clone(), name: name.clone() });
                }
            }
        }
        for c in children {
            self.schedule_delete(&c);
        }
    }

    /// Neighbours, routes and addresses that go while their link stays.
    fn plan_object_removals(&mut self, orphans: &[NsName]) {
        let namespaces: Vec<NsName> = self.cur.namespaces.keys().cloned().collect();
        for ns in namespaces {
            let Some(desired) = self.d.state.namespaces.get(&ns) else {
                if orphans.contains(&ns) {
                    self.remove_owned_objects(&ns);
                }
                continue;
            };
            let st = self.cur.namespaces[&ns].clone();
            let alive = |link: &str, deleted: &BTreeSet<LinkRef>| {
                !deleted.contains(&LinkRef { ns: ns.clone(), name: link.to_string() })
            };
            // A recorded state (rollback) is exact: what it lacks goes, whoever made it.
            let exact = self.d.exact;
            for ((link, ip), n) in &st.neighbors {
                if (n.protocol == NETCFG_PROTO || exact)
                    && !desired.neighbors.contains_key(&(link.clone(), *ip))
                    && alive(link, &self.deleted)
                {
                    self.delete_neighbor(&ns, link, *ip);
                }
            }
            // Rules first: traffic stops being steered into a table before its routes go.
            for (rule, protocol) in &st.rules {
                if (*protocol == NETCFG_PROTO || (exact && !is_kernel_rule(rule, *protocol)))
                    && !desired.rules.contains_key(rule)
                {
                    self.delete_rule(&ns, rule);
                }
            }
            for (key, r) in &st.routes {
                if (r.protocol == NETCFG_PROTO || (exact && !super::rollback::is_derived_route(r)))
                    && !desired.routes.contains_key(key)
                    && r.dev.as_ref().is_none_or(|d| alive(d, &self.deleted))
                    && r.nexthops.iter().all(|n| n.dev.as_ref().is_none_or(|d| alive(d, &self.deleted)))
                {
                    self.delete_route(&ns, key);
                }
            }
            // Extra addresses on surviving links are removed in `plan_addresses`, after the
            // new ones are added (so a changed address never leaves the link without one and
            // the kernel does not flush the link's routes with the last IPv4 address).
        }
    }

    fn remove_owned_objects(&mut self, ns: &str) {
        let st = self.cur.namespaces[ns].clone();
        for (rule, protocol) in &st.rules {
            if *protocol == NETCFG_PROTO {
                self.delete_rule(ns, rule);
            }
        }
        for ((link, ip), n) in &st.neighbors {
            if n.protocol == NETCFG_PROTO {
                self.delete_neighbor(ns, link, *ip);
            }
        }
        for (key, r) in &st.routes {
            if r.protocol == NETCFG_PROTO {
                self.delete_route(ns, key);
            }
        }
    }

    fn delete_neighbor(&mut self, ns: &str, link: &str, ip: std::net::IpAddr) {
        let Some(neigh) = self.cur_ns(ns).neighbors.remove(&(link.to_string(), ip)) else { return };
        let span = self.span(ns, &Object::Neighbor(link.to_string(), ip));
        self.deletes.push(Op {
            ns: ns.to_string(),
            action: Action::DeleteNeighbor { link: link.to_string(), ip, neigh },
            class: Disruption::InPlace,
            span,
        });
    }

    fn delete_rule(&mut self, ns: &str, rule: &Rule) {
        let Some(protocol) = self.cur_ns(ns).rules.remove(rule) else { return };
        let span = self.d.span_of(ns, &Object::Netns);
        self.deletes.push(Op {
            ns: ns.to_string(),
            action: Action::DeleteRule { rule: rule.clone(), protocol },
            class: Disruption::InPlace,
            span,
        });
    }

    fn delete_route(&mut self, ns: &str, key: &RouteKey) {
        let Some(route) = self.cur_ns(ns).routes.remove(key) else { return };
        let span = self.d.span_of(ns, &Object::Netns);
        self.deletes.push(Op {
            ns: ns.to_string(),
            action: Action::DeleteRoute { key: *key, route },
            class: Disruption::InPlace,
            span,
        });
    }

    /// Deletes an address, and first the routes the kernel drops with it: routes using it as
    /// source, and every IPv4 route of the link when it was the link's last IPv4 address.
    fn delete_address(&mut self, ns: &str, link: &str, net: &IpNet) {
        let st = self.cur_ns(ns);
        let Some(addr) = st.addresses.get(&(link.to_string(), *net)).copied() else { return };
        if is_link_local_v6(net) {
            // The kernel drops and regenerates link-local addresses with the link (moves,
            // flaps); netcfg never removes one, and an inverse re-adding it would collide.
            st.addresses.remove(&(link.to_string(), *net));
            return;
        }
        let last_v4 =
            net.addr().is_ipv4() && !st.addresses.keys().any(|(l, n)| l == link && n != net && n.addr().is_ipv4());
        let doomed: Vec<RouteKey> = st
            .routes
            .iter()
            .filter(|(k, r)| {
                (r.src == Some(net.addr()) && r.protocol != PROTO_KERNEL)
                    || (last_v4 && k.dst.addr().is_ipv4() && r.uses_dev(link) && r.protocol != PROTO_KERNEL)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            self.delete_route(ns, &k);
        }
        let st = self.cur_ns(ns);
        st.addresses.remove(&(link.to_string(), *net));
        st.routes
            .retain(|k, r| !(r.protocol == PROTO_KERNEL && r.dev.as_deref() == Some(link) && k.dst == net.trunc()));
        let span = self.span(ns, &Object::Address(link.to_string(), *net));
        self.deletes.push(Op {
            ns: ns.to_string(),
            action: Action::DeleteAddress { link: link.to_string(), net: *net, addr },
            class: Disruption::InPlace,
            span,
        });
    }

    /// Emits the link deletions, each preceded by the removal of what lives on the link and
    /// the detaching of its ports.
    fn plan_link_deletes(&mut self) {
        let doomed: Vec<LinkRef> = self.deleted.iter().cloned().collect();
        // Children first (macvlans/vxlans before their lower links), veths once per pair.
        let mut order: Vec<LinkRef> = doomed.iter().filter(|r| self.is_child(r)).cloned().collect();
        order.extend(doomed.iter().filter(|r| !self.is_child(r)).cloned());
        let mut done: BTreeSet<LinkRef> = BTreeSet::new();
        for r in order {
            if done.contains(&r) {
                continue;
            }
            let Some(link) = self.cur.namespaces.get(&r.ns).and_then(|s| s.links.get(&r.name)).cloned() else {
                continue;
            };
            let peer = match &link.kind {
                LinkKind::Veth { peer: Some(p) } => {
                    self.cur.namespaces.get(&p.ns).and_then(|s| s.links.get(&p.name)).cloned().map(|pl| (p.clone(), pl))
                }
                _ => None,
            };
            let mut ends = vec![r.clone()];
            if let Some((p, _)) = &peer {
                ends.push(p.clone());
            }
            for end in &ends {
                self.clear_link(end);
            }
            for end in &ends {
                self.cur_ns(&end.ns).links.remove(&end.name);
                done.insert(end.clone());
            }
            let recreate = ends.iter().any(|e| self.desired_link(e).is_some());
            let span = self.span(&r.ns, &Object::Link(r.name.clone()));
            self.deletes.push(Op {
                ns: r.ns.clone(),
                action: Action::DeleteLink { name: r.name.clone(), link, peer },
                class: if recreate { Disruption::Recreate } else { Disruption::InPlace },
                span,
            });
        }
    }

    fn is_child(&self, r: &LinkRef) -> bool {
        self.cur
            .namespaces
            .get(&r.ns)
            .and_then(|s| s.links.get(&r.name))
            .is_some_and(|l| kinds::lower(&l.kind, &r.ns).is_some())
    }

    /// Removes (as explicit ops) everything the kernel would drop with the link.
    fn clear_link(&mut self, r: &LinkRef) {
        let st = self.cur_ns(&r.ns).clone();
        for (link, ip) in st.neighbors.keys() {
            if *link == r.name {
                self.delete_neighbor(&r.ns, link, *ip);
            }
        }
        for (k, route) in &st.routes {
            if route.uses_dev(&r.name) && route.protocol != PROTO_KERNEL {
                self.delete_route(&r.ns, k);
            }
        }
        for (link, net) in st.addresses.keys() {
            if *link == r.name {
                self.delete_address(&r.ns, link, net);
            }
        }
        let st = self.cur_ns(&r.ns);
        st.routes.retain(|_, route| !route.uses_dev(&r.name));
        let ports: Vec<(String, Link)> = st
            .links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(&r.name))
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect();
        for (name, port) in ports {
            let port_ref = LinkRef { ns: r.ns.clone(), name: name.clone() };
            if self.deleted.contains(&port_ref) {
                continue;
            }
            let to = LinkSettings { master: Some(None), ..Default::default() };
            let from = LinkSettings { master: Some(port.master.clone()), hairpin: port.hairpin, ..Default::default() };
            if let Some(l) = self.cur_ns(&r.ns).links.get_mut(&name) {
                l.master = None;
                l.hairpin = None;
            }
            let span = self.span(&r.ns, &Object::Link(name.clone()));
            self.deletes.push(Op {
                ns: r.ns.clone(),
                action: Action::SetLink { name, to, from },
                class: Disruption::LinkFlap,
                span,
            });
        }
    }

    /// An existing link declared with a MAC to find it by (`match-mac`; a snapshot's links) and
    /// absent under its name is the one link of its namespace with that MAC, renamed. From the
    /// spec, no such link, several, or another link holding the name are errors; in a restore
    /// (exact mode) a link that is not found is left to the other rules.
    fn plan_renames(&mut self) {
        let mut wanted: Vec<(NsName, String, netcfg_lang::value::Mac)> = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            for (name, l) in &st.links {
                if let (LinkKind::Existing { .. }, Some(mac)) = (&l.kind, l.ident) {
                    wanted.push((ns.clone(), name.clone(), mac));
                }
            }
        }
        for (ns, name, mac) in wanted {
            let Some(cur) = self.cur.namespaces.get(&ns) else { continue };
            let span = self.span(&ns, &Object::Link(name.clone()));
            if let Some(l) = cur.links.get(&name) {
                if l.ident != Some(mac) && !self.d.exact {
                    let has = l.ident.map_or("none".to_string(), |m| m.to_string());
                    self.errors.push(
                        Diagnostic::error(
                            codes::MISSING_LINK,
                            span,
                            format!(
                                "link `{name}` in {} is not the NIC with MAC {mac} (its MAC is {has})",
                                describe_ns(&ns)
                            ),
                        )
                        .with_help(format!(
                            "netcfg renames the link with MAC {mac} to `{name}` only while no other link has that \
                             name: rename or remove the other `{name}`, or correct `match-mac`"
                        )),
                    );
                }
                continue;
            }
            let declared = &self.d.state.namespaces[&ns].links;
            let found: Vec<String> = cur
                .links
                .iter()
                .filter(|(n, l)| {
                    l.ident == Some(mac)
                        && !l.owned
                        && !matches!(l.kind, LinkKind::Loopback)
                        && !declared.get(*n).is_some_and(|d| d.ident.is_none() || d.ident == Some(mac))
                })
                .map(|(n, _)| n.clone())
                .collect();
            match found.as_slice() {
                [from] => {
                    let from = from.clone();
                    self.rename_in_cur(&ns, &from, &name);
                    self.renames.push(Op {
                        ns: ns.clone(),
                        action: Action::RenameLink { from, to: name },
                        class: Disruption::LinkFlap,
                        span,
                    });
                }
                [] if self.d.exact => {}
                [] => {
                    self.unmatched.insert(LinkRef { ns: ns.clone(), name: name.clone() });
                    self.errors.push(
                        Diagnostic::error(
                            codes::MISSING_LINK,
                            span,
                            format!("no link in {} has the MAC {mac}, and none is named `{name}`", describe_ns(&ns)),
                        )
                        .with_help(
                            "check `match-mac` against `ip link` (the NIC's permanent MAC, else its current one)",
                        ),
                    )
                }
                many => {
                    self.unmatched.insert(LinkRef { ns: ns.clone(), name: name.clone() });
                    self.errors.push(
                    Diagnostic::error(
                        codes::MISSING_LINK,
                        span,
                        format!(
                            "{} links in {} have the MAC {mac}: {}",
                            many.len(),
                            describe_ns(&ns),
                            many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .with_help("netcfg renames a link found by its MAC only when one link has it; declare the NIC by its name instead"),
                    )
                }
            }
        }
    }

    /// The state after renaming `from` to `to` in namespace `ns`: everything that names it
    /// follows; a link that was up went down for the rename, which took its routes, its IPv6
    /// addresses and its neighbours (the kernel's connected IPv4 routes come back with it).
    fn rename_in_cur(&mut self, ns: &str, from: &str, to: &str) {
        let (old, new) = (
            LinkRef { ns: ns.to_string(), name: from.to_string() },
            LinkRef { ns: ns.to_string(), name: to.to_string() },
        );
        for st in self.cur.namespaces.values_mut() {
            for l in st.links.values_mut() {
                match &mut l.kind {
                    LinkKind::Veth { peer: Some(p) }
                    | LinkKind::Macvlan { parent: Some(p), .. }
                    | LinkKind::Ipvlan { parent: Some(p), .. }
                        if *p == old =>
                    {
                        *p = new.clone();
                    }
                    _ => {}
                }
            }
        }
        let st = self.cur_ns(ns);
        let Some(link) = st.links.remove(from) else { return };
        let was_up = link.up;
        st.links.insert(to.to_string(), link);
        for l in st.links.values_mut() {
            if l.master.as_deref() == Some(from) {
                l.master = Some(to.to_string());
            }
        }
        let rename = |n: &mut Option<String>| {
            if n.as_deref() == Some(from) {
                *n = Some(to.to_string());
            }
        };
        st.addresses = std::mem::take(&mut st.addresses)
            .into_iter()
            .filter(|((l, net), _)| !(was_up && l == from && net.addr().is_ipv6()))
            .map(|((l, net), a)| ((if l == from { to.to_string() } else { l }, net), a))
            .collect();
        st.routes.retain(|_, r| !(was_up && r.uses_dev(from) && r.protocol != PROTO_KERNEL));
        for r in st.routes.values_mut() {
            rename(&mut r.dev);
            for h in &mut r.nexthops {
                rename(&mut h.dev);
            }
        }
        st.neighbors = std::mem::take(&mut st.neighbors)
            .into_iter()
            .filter(|((l, _), _)| !(was_up && l == from))
            .map(|((l, ip), n)| ((if l == from { to.to_string() } else { l }, ip), n))
            .collect();
        st.rules = std::mem::take(&mut st.rules)
            .into_iter()
            .map(|(mut r, p)| {
                rename(&mut r.iif);
                rename(&mut r.oif);
                (r, p)
            })
            .collect();
        st.sysctls = std::mem::take(&mut st.sysctls)
            .into_iter()
            .map(|(path, v)| {
                let typed = netcfg_lang::value::SysctlPath(path.clone());
                match typed.interface() {
                    Some(i) if i == from => (path.replacen(&format!(".{from}."), &format!(".{to}."), 1), v),
                    _ => (path, v),
                }
            })
            .collect();
    }

    /// Emits the moves decided by [`Planner::plan_existing_links`].
    fn plan_moves(&mut self) {
        for (from, to) in std::mem::take(&mut self.pending_moves) {
            self.move_link(&from, &to);
        }
    }

    /// Moves a link to namespace `to`: first removes (as explicit ops) what the kernel drops
    /// with the move, takes it down and out of its bridge, then moves it. The op belongs to the
    /// namespace the spec puts the link in (the one it leaves when it goes back to the host).
    fn move_link(&mut self, from: &LinkRef, to: &str) {
        if self.cur.namespaces.get(&from.ns).and_then(|s| s.links.get(&from.name)).is_none() {
            return;
        }
        self.clear_link(from);
        let Some(link) = self.cur_ns(&from.ns).links.remove(&from.name) else { return };
        let op_ns = if to == HOST { from.ns.clone() } else { to.to_string() };
        let span = self.span(&op_ns, &Object::Link(from.name.clone()));
        let mut down = LinkSettings::default();
        let mut before = LinkSettings::default();
        if link.master.is_some() {
            down.master = Some(None);
            before.master = Some(link.master.clone());
            before.hairpin = link.hairpin;
        }
        if link.up {
            // Its IPv4 routes, which going down flushes, went with `clear_link`.
            down.up = Some(false);
            before.up = Some(true);
        }
        if !down.is_empty() {
            self.moves.push(Op {
                ns: from.ns.clone(),
                action: Action::SetLink { name: from.name.clone(), to: down, from: before },
                class: Disruption::LinkFlap,
                span,
            });
        }
        // In the new namespace the link is down, in no bridge, with that namespace's IPv6
        // address generation.
        let arrived = Link { up: false, master: None, hairpin: None, addrgen_none: None, ..link };
        let new_ref = LinkRef { ns: to.to_string(), name: from.name.clone() };
        self.cur_ns(to).links.insert(from.name.clone(), arrived);
        for st in self.cur.namespaces.values_mut() {
            for l in st.links.values_mut() {
                match &mut l.kind {
                    LinkKind::Veth { peer: Some(p) } | LinkKind::Macvlan { parent: Some(p), .. } if p == from => {
                        *p = new_ref.clone();
                    }
                    _ => {}
                }
            }
        }
        self.arrived.insert(new_ref);
        self.moves.push(Op {
            ns: op_ns,
            action: Action::MoveLink { name: from.name.clone(), from: from.ns.clone(), to: to.to_string() },
            class: Disruption::LinkFlap,
            span,
        });
    }

    /// Creates the desired links that do not exist: masters and links on nothing first
    /// (bridges, bonds, VRFs, dummies), then veths, then each stacked link after the link it
    /// sits on (a VLAN on a bond, a VLAN on that VLAN).
    fn plan_link_creates(&mut self) {
        let desired = &self.d.state;
        let depth = |ns: &str, k: &LinkKind| {
            let mut d = 0;
            let mut lower = kinds::lower(k, ns);
            while let Some(r) = lower.filter(|_| d < 16) {
                d += 1;
                lower = desired
                    .namespaces
                    .get(&r.ns)
                    .and_then(|n| n.links.get(&r.name))
                    .and_then(|l| kinds::lower(&l.kind, &r.ns));
            }
            d
        };
        let rank = |ns: &str, k: &LinkKind| match k {
            LinkKind::Veth { .. } => 1,
            k if kinds::lower(k, ns).is_some() => 1 + depth(ns, k),
            _ => 0,
        };
        let mut todo: Vec<(u32, LinkRef, Link)> = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            for (name, l) in &st.links {
                if !l.kind.is_created() {
                    continue;
                }
                let exists = self.cur.namespaces.get(ns).is_some_and(|c| c.links.contains_key(name));
                if !exists {
                    todo.push((rank(ns, &l.kind), LinkRef { ns: ns.clone(), name: name.clone() }, l.clone()));
                }
            }
        }
        todo.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, r, l) in todo {
            if self.created.contains(&r) {
                continue;
            }
            let peer = match &l.kind {
                LinkKind::Veth { peer: Some(p) } => self.desired_link(p).cloned().map(|pl| (p.clone(), pl)),
                _ => None,
            };
            if let Some((p, _)) = &peer {
                if self.cur.namespaces.get(&p.ns).is_some_and(|c| c.links.contains_key(&p.name)) {
                    // The peer's name is taken by a link that stays (a foreign one): the
                    // kernel would refuse; report it on the spec.
                    let span = self.span(&p.ns, &Object::Link(p.name.clone()));
                    self.errors.push(
                        Diagnostic::error(
                            codes::FOREIGN_LINK,
                            span,
                            format!("link `{}` exists in {} and is not this veth's peer", p.name, describe_ns(&p.ns)),
                        )
                        .with_help("rename the peer in the spec, or delete the existing link by hand"),
                    );
                    continue;
                }
                self.created.insert(p.clone());
                self.cur_ns(&p.ns).links.insert(p.name.clone(), live_like(&peer.as_ref().expect("some").1));
            }
            self.created.insert(r.clone());
            self.cur_ns(&r.ns).links.insert(r.name.clone(), live_like(&l));
            let recreate = self.deleted.contains(&r);
            let span = self.span(&r.ns, &Object::Link(r.name.clone()));
            self.creates.push(Op {
                ns: r.ns.clone(),
                action: Action::CreateLink { name: r.name.clone(), link: l.clone(), peer },
                class: if recreate { Disruption::Recreate } else { Disruption::InPlace },
                span,
            });
        }
    }

    fn plan_sysctls(&mut self) {
        for (ns, st) in &self.d.state.namespaces {
            for (path, value) in &st.sysctls {
                let path_typed = SysctlPath(path.clone());
                let iface = path_typed.interface();
                // A created or moved link gets the namespace's defaults: nothing to restore.
                let fresh = iface.is_some_and(|i| {
                    let r = LinkRef { ns: ns.clone(), name: i.to_string() };
                    self.created.contains(&r) || self.arrived.contains(&r)
                });
                let old =
                    if fresh { None } else { self.cur.namespaces.get(ns).and_then(|c| c.sysctls.get(path)).cloned() };
                if old.as_ref() == Some(value) {
                    continue;
                }
                self.sysctls.push(Op {
                    ns: ns.clone(),
                    action: Action::WriteSysctl { path: path.clone(), value: value.clone(), old },
                    class: Disruption::InPlace,
                    span: self.d.span_of(ns, &Object::Sysctl(path.clone())),
                });
            }
        }
    }

    fn plan_link_settings(&mut self) {
        // Each link's ops (the route flush of going down, then the change), ordered below.
        let mut changes: Vec<LinkChange> = Vec::new();
        let mut todo: Vec<(NsName, String)> = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            for name in st.links.keys() {
                todo.push((ns.clone(), name.clone()));
            }
        }
        for (ns, name) in todo {
            let r = LinkRef { ns: ns.clone(), name: name.clone() };
            if self.created.contains(&r) {
                continue;
            }
            let mut d = self.d.state.namespaces[&ns].links[&name].clone();
            let Some(live) = self.cur.namespaces.get(&ns).and_then(|c| c.links.get(&name)).cloned() else { continue };
            let explicit_mtu = d.mtu;
            if d.mtu.is_none() {
                d.mtu = self.default_mtu(&ns, &name, &d);
            }
            let mut to = link_changes(&d, &live);
            // A bridge's MTU equal to the spec's may still be the kernel's automatic one (the
            // smallest of its ports), which follows the ports as they change: when the ports
            // change, the spec's MTU is set (as the user's) so that it stays.
            if let (LinkKind::Bridge, Some(m), None) = (&d.kind, explicit_mtu, to.mtu) {
                let ports = |links: &BTreeMap<String, Link>| -> BTreeSet<String> {
                    links
                        .iter()
                        .filter(|(_, l)| l.master.as_deref() == Some(name.as_str()))
                        .map(|(n, _)| n.clone())
                        .collect()
                };
                let live_ports = self.before.namespaces.get(&ns).map(|c| ports(&c.links)).unwrap_or_default();
                if ports(&self.d.state.namespaces[&ns].links) != live_ports {
                    to.mtu = Some(m);
                }
            }
            if to.is_empty() {
                continue;
            }
            let from = link_current(&to, &live);
            let flap = to.mac.is_some() || to.master.is_some() || to.up == Some(false);
            let mut ops = Vec::new();
            if to.up == Some(false) {
                // The kernel flushes a link's routes and its IPv6 addresses when it goes down
                // (`lo` too: ::1 goes, 127.0.0.1/8 stays): each is an explicit op first.
                let v6: Vec<IpNet> = self.cur.namespaces[&ns]
                    .addresses
                    .keys()
                    .filter(|(l, n)| *l == name && n.addr().is_ipv6())
                    .map(|(_, n)| *n)
                    .collect();
                for net in v6 {
                    if is_link_local_v6(&net) {
                        self.cur_ns(&ns).addresses.remove(&(name.clone(), net));
                    } else {
                        let mark = self.deletes.len();
                        self.delete_address(&ns, &name, &net);
                        let ops: Vec<Op> = self.deletes.drain(mark..).collect();
                        self.sets.extend(ops);
                    }
                }
                let doomed: Vec<RouteKey> = self.cur.namespaces[&ns]
                    .routes
                    .iter()
                    .filter(|(_, r)| r.uses_dev(&name) && r.protocol != PROTO_KERNEL)
                    .map(|(k, _)| *k)
                    .collect();
                for k in doomed {
                    let Some(route) = self.cur_ns(&ns).routes.remove(&k) else { continue };
                    ops.push(Op {
                        ns: ns.clone(),
                        action: Action::DeleteRoute { key: k, route },
                        class: Disruption::InPlace,
                        span: self.d.span_of(&ns, &Object::Netns),
                    });
                }
            }
            if let Some(l) = self.cur_ns(&ns).links.get_mut(&name) {
                apply_settings(l, &to);
            }
            let mtu_change = to.mtu.map(|new| (live.mtu, new));
            ops.push(Op {
                ns: ns.clone(),
                action: Action::SetLink { name: name.clone(), to, from },
                class: if flap { Disruption::LinkFlap } else { Disruption::InPlace },
                span: self.d.span_of(&ns, &Object::Link(name)),
            });
            changes.push(LinkChange { link: r, ops, mtu_change });
        }
        // A link created by the plan on top of an existing one (a VXLAN over its `dev`, a
        // macvlan on its parent) gets its MTU at creation, which the kernel clamps to what the
        // lower link carries then: a lower link whose MTU rises changes before the creations.
        let uppers_created: BTreeSet<LinkRef> = self
            .created
            .iter()
            .filter_map(|r| lower_of(self.d.state.namespaces.get(&r.ns)?.links.get(&r.name)?, r))
            .collect();
        for c in order_link_changes(changes, &self.d.state) {
            let raises = c.mtu_change.is_some_and(|(old, new)| old.is_none_or(|o| new > o));
            if raises && uppers_created.contains(&c.link) {
                self.early_sets.extend(c.ops);
            } else {
                self.sets.extend(c.ops);
            }
        }
    }

    /// The MTU a link netcfg creates has when the spec does not set one: what the kernel
    /// gives it, where that is a fixed rule: a veth end 1500; a vxlan without an underlay 1500;
    /// a bridge the smallest MTU of the ports the spec gives it (the kernel adjusts a bridge
    /// to its ports), 1500 without ports. A vxlan on an underlay and a macvlan take their
    /// lower device's MTU at creation and keep it: not compared (`None`). So a changed MTU on
    /// such a link is drift even though the spec does not mention MTU.
    fn default_mtu(&self, ns: &str, name: &str, l: &Link) -> Option<u32> {
        const ETHERNET: u32 = 1500;
        if !l.owned {
            return None;
        }
        match &l.kind {
            LinkKind::Bridge => {
                let ports =
                    self.d.state.namespaces.get(ns)?.links.iter().filter(|(_, p)| p.master.as_deref() == Some(name));
                let mut min: Option<u32> = None;
                for (pname, p) in ports {
                    let mtu = match (&p.mtu, &p.kind) {
                        (Some(m), _) => *m,
                        (None, LinkKind::Veth { .. }) => ETHERNET,
                        // A NIC or another device: its live MTU, unknown for one not there.
                        _ => self.cur.namespaces.get(ns).and_then(|c| c.links.get(pname)).and_then(|x| x.mtu)?,
                    };
                    min = Some(min.map_or(mtu, |m| m.min(mtu)));
                }
                Some(min.unwrap_or(ETHERNET))
            }
            kind => kinds::fixed_default_mtu(kind),
        }
    }

    fn plan_addresses(&mut self) {
        // The addresses the spec no longer has, on links netcfg created only: on an existing NIC
        // (`ethernet`) addresses the spec does not list may belong to DHCP, SLAAC or a cloud
        // agent, and netcfg has no mark to tell them from its own. Link-local IPv6 addresses
        // are the kernel's and never removed.
        let mut extra = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            let Some(cur) = self.cur.namespaces.get(ns) else { continue };
            for (link, net) in cur.addresses.keys() {
                // A recorded state (rollback) is exact on every link it has.
                let owned = st.links.get(link).is_some_and(|l| (l.owned && !l.opts.dhcp) || self.d.exact);
                let alive = !self.deleted.contains(&LinkRef { ns: ns.clone(), name: link.clone() });
                // `lo`'s own addresses stay while it is up (the kernel's); a rollback to `lo`
                // down removes 127.0.0.1/8, which the kernel leaves on a `lo` taken down.
                let kernel_lo =
                    is_loopback_default(link, net) && !(self.d.exact && st.links.get(link).is_some_and(|l| !l.up));
                if owned
                    && alive
                    && !kernel_lo
                    && !is_link_local_v6(net)
                    && !st.addresses.contains_key(&(link.clone(), *net))
                {
                    // An old address in the subnet of a new one goes first: the new one would
                    // be its secondary, and the kernel deletes secondaries with their primary.
                    let same_subnet = st.addresses.keys().any(|(l, n)| l == link && n.trunc() == net.trunc());
                    extra.push((same_subnet, ns.clone(), link.clone(), *net));
                }
            }
        }
        let delete = |p: &mut Self, ns: &str, link: &str, net: &IpNet| {
            let mark = p.deletes.len();
            p.delete_address(ns, link, net);
            let ops: Vec<Op> = p.deletes.drain(mark..).collect();
            p.addrs.extend(ops);
        };
        for (_, ns, link, net) in extra.iter().filter(|e| e.0) {
            delete(self, ns, link, net);
        }
        for (ns, st) in &self.d.state.namespaces {
            for ((link, net), a) in &st.addresses {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.addresses.get(&(link.clone(), *net))).copied();
                let action = match cur {
                    Some(c) if c == *a => continue,
                    Some(old) => Action::ReplaceAddress { link: link.clone(), net: *net, addr: *a, old },
                    None => Action::AddAddress { link: link.clone(), net: *net, addr: *a },
                };
                let up = st.links.get(link).is_some_and(|l| l.up);
                let c = self.cur.namespaces.entry(ns.clone()).or_default();
                c.addresses.insert((link.clone(), *net), *a);
                if a.prefix_route && up {
                    let (key, route) = connected_route(link, net);
                    c.routes.entry(key).or_insert(route);
                }
                self.addrs.push(Op {
                    ns: ns.clone(),
                    action,
                    class: Disruption::InPlace,
                    span: self.d.span_of(ns, &Object::Address(link.clone(), *net)),
                });
            }
        }
        // The others go after the new addresses exist, so a renumbered link is never without an
        // IPv4 address (the kernel flushes a link's IPv4 routes with its last one).
        for (_, ns, link, net) in extra.iter().filter(|e| !e.0) {
            delete(self, ns, link, net);
        }
    }

    fn plan_routes(&mut self) {
        let mut direct = Vec::new();
        let mut gatewayed = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            for (key, r) in &st.routes {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.routes.get(key)).cloned();
                let action = match cur {
                    Some(c) if route_matches(r, &c) => continue,
                    Some(old) => Action::ReplaceRoute { key: *key, route: r.clone(), old },
                    None => Action::AddRoute { key: *key, route: r.clone() },
                };
                let op = Op {
                    ns: ns.clone(),
                    action,
                    class: Disruption::InPlace,
                    span: self.d.span_of(ns, &Object::Route(*key)),
                };
                if r.has_gateway() {
                    gatewayed.push(op);
                } else {
                    direct.push(op);
                }
            }
        }
        self.routes.extend(direct);
        self.routes.extend(gatewayed);
    }

    /// Rules the spec has that the node lacks, after the routes of their tables. A rule of the
    /// spec that exists with another protocol (made by hand) is taken over: deleted and added
    /// with netcfg's (the kernel has no "replace" for rules).
    fn plan_rules(&mut self) {
        for (ns, st) in &self.d.state.namespaces {
            for (rule, protocol) in &st.rules {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.rules.get(rule)).copied();
                if cur == Some(*protocol) {
                    continue;
                }
                let span = self.d.span_of(ns, &Object::Rule(rule.clone()));
                if let Some(old) = cur {
                    self.rules.push(Op {
                        ns: ns.clone(),
                        action: Action::DeleteRule { rule: rule.clone(), protocol: old },
                        class: Disruption::InPlace,
                        span,
                    });
                }
                self.rules.push(Op {
                    ns: ns.clone(),
                    action: Action::AddRule { rule: rule.clone(), protocol: *protocol },
                    class: Disruption::InPlace,
                    span,
                });
                self.cur.namespaces.entry(ns.clone()).or_default().rules.insert(rule.clone(), *protocol);
            }
        }
    }

    fn plan_neighbors(&mut self) {
        for (ns, st) in &self.d.state.namespaces {
            for ((link, ip), n) in &st.neighbors {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.neighbors.get(&(link.clone(), *ip))).copied();
                let action = match cur {
                    Some(c) if c == *n => continue,
                    Some(old) => Action::ReplaceNeighbor { link: link.clone(), ip: *ip, neigh: *n, old },
                    None => Action::AddNeighbor { link: link.clone(), ip: *ip, neigh: *n },
                };
                self.neighs.push(Op {
                    ns: ns.clone(),
                    action,
                    class: Disruption::InPlace,
                    span: self.d.span_of(ns, &Object::Neighbor(link.clone(), *ip)),
                });
            }
        }
    }

    fn plan_nft(&mut self, nft: &BTreeMap<NsName, NftState>) {
        for (ns, script) in &self.d.nft {
            let state = nft.get(ns).cloned().unwrap_or_default();
            if state.live == state.planned {
                continue;
            }
            self.nft.push(Op {
                ns: ns.clone(),
                action: Action::Nft { script: script.clone(), old: state.live_text.clone(), changes: Vec::new() },
                class: Disruption::InPlace,
                span: self.d.span_of(ns, &Object::Nft),
            });
        }
    }
}

pub const PROTO_KERNEL: u8 = 2;

/// The route the kernel adds for an address with a prefix route.
fn connected_route(link: &str, net: &IpNet) -> (RouteKey, Route) {
    let v4 = net.addr().is_ipv4();
    let key = RouteKey::new(netcfg_compiler::ir::MAIN_TABLE, net.trunc(), if v4 { 0 } else { 256 });
    let route = Route {
        via: None,
        dev: Some(link.to_string()),
        src: v4.then_some(net.addr()),
        scope: if v4 { RouteScope::Link } else { RouteScope::Global },
        onlink: false,
        route_type: RouteType::Unicast,
        protocol: PROTO_KERNEL,
        metrics: Default::default(),
        nexthops: Vec::new(),
    };
    (key, route)
}

/// The ops that change one existing link, and its MTU change (live, desired).
struct LinkChange {
    link: LinkRef,
    ops: Vec<Op>,
    mtu_change: Option<(Option<u32>, u32)>,
}

/// The link a link sits on (see [`kinds::lower`]).
fn lower_of(l: &Link, r: &LinkRef) -> Option<LinkRef> {
    kinds::lower(&l.kind, &r.ns)
}

/// Orders the changes of existing links so that what a link depends on changes first: a bridge
/// before its ports (they join a bridge that is configured); a lower link before the VXLANs and
/// macvlans on it when its MTU rises (the kernel refuses an upper MTU above what the lower
/// carries), after them when it falls. A stable topological sort (Kahn's, ties in (namespace,
/// name) order, bridges first as before); a cycle, which a valid spec cannot make, falls back to
/// that order.
fn order_link_changes(mut changes: Vec<LinkChange>, desired: &NodeState) -> Vec<LinkChange> {
    let link_of = |r: &LinkRef| desired.namespaces.get(&r.ns).and_then(|n| n.links.get(&r.name));
    let is_bridge = |r: &LinkRef| link_of(r).is_some_and(|l| matches!(l.kind, LinkKind::Bridge));
    changes.sort_by(|a, b| (!is_bridge(&a.link), &a.link).cmp(&(!is_bridge(&b.link), &b.link)));
    let index: BTreeMap<LinkRef, usize> = changes.iter().enumerate().map(|(i, c)| (c.link.clone(), i)).collect();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    let mut before_count = vec![0usize; changes.len()];
    let mut edge = |first: usize, then: usize| {
        if first != then && !after[first].contains(&then) {
            after[first].push(then);
            before_count[then] += 1;
        }
    };
    for (i, c) in changes.iter().enumerate() {
        let Some(l) = link_of(&c.link) else { continue };
        if let Some(m) = l.master.as_ref().and_then(|m| index.get(&LinkRef { ns: c.link.ns.clone(), name: m.clone() }))
        {
            edge(*m, i);
        }
        if let Some(&lower) = lower_of(l, &c.link).as_ref().and_then(|r| index.get(r)) {
            let falls = changes[lower].mtu_change.is_some_and(|(old, new)| old.is_some_and(|o| new < o));
            if falls {
                edge(i, lower);
            } else {
                edge(lower, i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..changes.len()).filter(|i| before_count[*i] == 0).collect();
    let mut order = Vec::with_capacity(changes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &after[i] {
            before_count[j] -= 1;
            if before_count[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() < changes.len() {
        let placed: BTreeSet<usize> = order.iter().copied().collect();
        order.extend((0..changes.len()).filter(|i| !placed.contains(i)));
    }
    let mut slots: Vec<Option<LinkChange>> = changes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// What a freshly created link looks like live.
fn live_like(d: &Link) -> Link {
    d.clone()
}

fn apply_settings(l: &mut Link, s: &LinkSettings) {
    if let Some(v) = s.mtu {
        l.mtu = Some(v);
    }
    if let Some(v) = s.mac {
        l.mac = Some(v);
    }
    if let Some(v) = &s.master {
        l.master = v.clone();
    }
    if let Some(v) = s.hairpin {
        l.hairpin = Some(v);
    }
    if let Some(v) = s.nf_call_iptables {
        l.nf_call_iptables = Some(v);
    }
    if let Some(v) = s.up {
        l.up = v;
    }
    if let Some(v) = s.addrgen_none {
        l.addrgen_none = Some(v);
    }
    l.opts.apply(&s.opts);
}

fn describe_ns(ns: &str) -> String {
    if ns == HOST {
        "the host namespace".to_string()
    } else {
        format!("namespace `{ns}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::desired::desired;
    use crate::netlink::plan::Action;

    fn desired_of(src: &str) -> Desired {
        let parsed = netcfg_lang::parse_str("t.kdl", src);
        assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
        let compiled = netcfg_compiler::compile(&parsed.spec);
        let mut diags = Vec::new();
        desired(&compiled.fleet.nodes[0], &mut diags)
    }

    fn link(kind: LinkKind, owned: bool) -> Link {
        Link {
            kind,
            mtu: Some(1500),
            mac: None,
            master: None,
            hairpin: None,
            nf_call_iptables: None,
            up: true,
            addrgen_none: Some(false),
            opts: Opts::default(),
            owned,
            ident: None,
        }
    }

    /// A live host namespace with `lo` and a NIC `eth0`, and nothing else.
    fn bare_host() -> Live {
        let mut live = Live::default();
        let mut st = new_namespace();
        st.links.get_mut("lo").unwrap().up = true;
        st.links.insert("eth0".into(), link(LinkKind::Existing { kind: None }, false));
        live.state.namespaces.insert(HOST.into(), st);
        live
    }

    const SPEC: &str = r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24" }
    bridge "br0" { address "10.1.0.1/24" }
    route "default" via="10.0.0.1" dev="eth0"
    route "192.0.2.0/24" dev="br0"
    netns "pod" {
        veth "eth0" {
            address "10.1.0.2/24"
            peer "veth-pod" netns="@host" master="br0"
        }
        route "default" via="10.1.0.1" dev="eth0"
    }
}
"#;

    fn position(plan: &Plan, f: impl Fn(&Op) -> bool) -> usize {
        plan.ops.iter().position(f).unwrap_or_else(|| panic!("op not found in\n{}", plan.to_text()))
    }

    #[test]
    fn ops_come_in_dependency_order() {
        let d = desired_of(SPEC);
        let mut live = bare_host();
        live.missing.insert("pod".into());
        let plan = diff(&d, &live, &[], None).expect("plan");
        let ns = position(&plan, |o| matches!(o.action, Action::CreateNetns));
        let br = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "br0"));
        let veth = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "veth-pod"));
        let addr = position(&plan, |o| matches!(&o.action, Action::AddAddress { link, .. } if link == "eth0"));
        let direct = position(&plan, |o| matches!(&o.action, Action::AddRoute { route, .. } if route.via.is_none()));
        let via = position(&plan, |o| matches!(&o.action, Action::AddRoute { route, .. } if route.via.is_some()));
        assert!(ns < br && br < veth && veth < addr && addr < direct && direct < via, "{}", plan.to_text());
        // One op creates both ends of the pair, and the ops are described with their spans.
        assert_eq!(plan.ops.iter().filter(|o| matches!(o.action, Action::CreateLink { .. })).count(), 2);
        assert!(plan.ops.iter().all(|o| o.span.end > o.span.start));
        assert!(plan
            .to_text()
            .contains("+ @host: link veth-pod (veth, peer eth0@pod, master br0, addrgenmode none, up)"));
        assert_eq!(plan.to_json()["ops"].as_array().unwrap().len(), plan.ops.len());
    }

    fn set_mtu_of(plan: &Plan, link_name: &str) -> usize {
        position(
            plan,
            |o| matches!(&o.action, Action::SetLink { name, to, .. } if name == link_name && to.mtu.is_some()),
        )
    }

    #[test]
    fn what_a_link_sits_on_changes_first() {
        // Jumbo frames: the NIC goes 1500 -> 9000 and a VXLAN of 8950 is created on it, and a
        // macvlan of 9000 on a second NIC. The kernel clamps (or refuses) an upper MTU above
        // the lower link's, so the NICs change first.
        let d = desired_of(
            r#"
node "n" {
    ethernet "eth0" mtu=9000 { address "10.0.0.2/24"; }
    ethernet "eth1" mtu=9000
    vxlan "vx0" vni=42 local="10.0.0.2" remote="10.0.0.3" dev="eth0" mtu=8950
    netns "app" { macvlan "mv0" parent="eth1" mtu=9000; }
}
"#,
        );
        let mut live = bare_host();
        live.state
            .namespaces
            .get_mut(HOST)
            .unwrap()
            .links
            .insert("eth1".into(), link(LinkKind::Existing { kind: None }, false));
        live.missing.insert("app".into());
        let plan = diff(&d, &live, &[], None).expect("plan");
        let vx = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "vx0"));
        let mv = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "mv0"));
        assert!(set_mtu_of(&plan, "eth0") < vx && set_mtu_of(&plan, "eth1") < mv, "{}", plan.to_text());

        // Both exist: raising, the NIC first; lowering, the VXLAN first (names sort the other way
        // on purpose: `a-nic` before `vx0`, `z-nic` after).
        for (nic, from, to, vx_from, vx_to) in [("z-nic", 1500, 9000, 1450, 8950), ("a-nic", 9000, 1500, 8950, 1450)] {
            let d = desired_of(&format!(
                r#"
node "n" {{
    ethernet "{nic}" mtu={to}
    vxlan "vx0" vni=42 remote="10.0.0.3" dev="{nic}" mtu={vx_to}
}}
"#
            ));
            let mut live = bare_host();
            let host = live.state.namespaces.get_mut(HOST).unwrap();
            let mut n = link(LinkKind::Existing { kind: None }, false);
            n.mtu = Some(from);
            host.links.insert(nic.into(), n);
            let desired_vx = d.state.namespaces[HOST].links["vx0"].clone();
            host.links.insert("vx0".into(), Link { mtu: Some(vx_from), ..desired_vx });
            let plan = diff(&d, &live, &[], None).expect("plan");
            let (nic_at, vx_at) = (set_mtu_of(&plan, nic), set_mtu_of(&plan, "vx0"));
            if to > from {
                assert!(nic_at < vx_at, "{}", plan.to_text());
            } else {
                assert!(vx_at < nic_at, "{}", plan.to_text());
            }
        }
    }

    /// A Debian-like kernel: `bridge` loaded, `veth` and `br_netfilter` loadable modules.
    #[test]
    fn modules_load_first_persist_last_and_an_absent_one_stops_the_plan_on_its_spec_text() {
        use crate::kernel::{Availability::*, Feature};
        let d = desired_of(&SPEC.replace("bridge \"br0\"", "bridge-netfilter #true\n    bridge \"br0\""));
        assert_eq!(
            d.features.keys().copied().collect::<Vec<_>>(),
            [Feature::Bridge, Feature::Veth, Feature::BrNetfilter]
        );
        let mut live = bare_host();
        live.missing.insert("pod".into());
        live.kernel.features =
            [(Feature::Bridge, Loaded), (Feature::Veth, Loadable), (Feature::BrNetfilter, Loadable)].into();
        let file = std::path::PathBuf::from("/etc/modules-load.d/netcfg.conf");
        live.kernel.modules_load = Some((file.clone(), None));
        let plan = diff(&d, &live, &[], None).expect("plan");
        let text = plan.to_text();
        assert!(
            text.starts_with(
                "node n\n  + @host: kernel module veth  [in place]\n  + @host: kernel module br_netfilter"
            ),
            "{text}"
        );
        let sysctl = position(
            &plan,
            |o| matches!(&o.action, Action::WriteSysctl { path, .. } if path.starts_with("net.bridge.")),
        );
        let veth = position(&plan, |o| matches!(&o.action, Action::CreateLink { name, .. } if name == "veth-pod"));
        assert!(1 < sysctl && 1 < veth, "{text}");
        let nf_span = d.span_of(HOST, &Object::Sysctl("net.bridge.bridge-nf-call-iptables".into()));
        assert_eq!(plan.ops[1].span, nf_span, "the load is on the text that needs it");
        assert_eq!(plan.ops[0].inverse(), None, "a rollback leaves modules loaded");
        let last = plan.ops.last().expect("ops");
        let Action::WriteModulesLoad { path, content: Some(content), old: None } = &last.action else {
            panic!("the modules-load.d file comes last:\n{text}")
        };
        assert_eq!(
            (path, content.lines().skip(1).collect::<Vec<_>>()),
            (&file, vec!["br_netfilter", "bridge", "veth"])
        );
        assert!(
            matches!(
                &last.inverse().expect("inverse").action,
                Action::WriteModulesLoad { content: None, old: Some(_), .. }
            ),
            "a rollback removes the file it created"
        );

        // Everything loaded and the file as it should be: nothing to do for the kernel.
        live.kernel.features =
            [(Feature::Bridge, Loaded), (Feature::Veth, Loaded), (Feature::BrNetfilter, Loaded)].into();
        live.kernel.modules_load = Some((file, Some(content.clone())));
        let plan = diff(&d, &live, &[], None).expect("plan");
        assert!(!plan
            .ops
            .iter()
            .any(|o| matches!(o.action, Action::LoadModule { .. } | Action::WriteModulesLoad { .. })));
        // Not the machine itself (`--netns-root`): no file.
        live.kernel.features.insert(Feature::Veth, Loadable);
        live.kernel.modules_load = None;
        let plan = diff(&d, &live, &[], None).expect("plan");
        assert_eq!(plan.ops.iter().filter(|o| matches!(o.action, Action::LoadModule { .. })).count(), 1);
        assert!(!plan.ops.iter().any(|o| matches!(o.action, Action::WriteModulesLoad { .. })));

        // A kernel that cannot have br_netfilter: one diagnostic, on `bridge-netfilter #true`.
        live.kernel.features.insert(Feature::BrNetfilter, Absent);
        let errors = diff(&d, &live, &[], None).expect_err("no plan");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!((errors[0].code.id, errors[0].primary.span), ("missing-kernel-feature", nf_span));
        assert!(errors[0].message.contains("`br_netfilter`"), "{}", errors[0].message);
    }

    #[test]
    fn only_owned_objects_are_removed() {
        let d = desired_of(SPEC);
        let mut live = bare_host();
        live.missing.insert("pod".into());
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        let route = |proto: u8| Route {
            via: Some("10.0.0.1".parse().unwrap()),
            dev: Some("eth0".into()),
            src: None,
            scope: RouteScope::Global,
            onlink: false,
            route_type: RouteType::Unicast,
            protocol: proto,
            metrics: Default::default(),
            nexthops: Vec::new(),
        };
        host.routes.insert(RouteKey::new(254, "10.50.0.0/16".parse().unwrap(), 0), route(4));
        host.routes.insert(RouteKey::new(254, "10.60.0.0/16".parse().unwrap(), 0), route(NETCFG_PROTO));
        host.links.insert("handmade".into(), link(LinkKind::Bridge, false));
        host.links.insert("old-br".into(), link(LinkKind::Bridge, true));
        host.addresses.insert(("handmade".into(), "10.70.0.1/24".parse().unwrap()), Address { prefix_route: true });
        host.addresses.insert(("eth0".into(), "10.80.0.1/24".parse().unwrap()), Address { prefix_route: true });
        host.addresses.insert(("eth0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
        let plan = diff(&d, &live, &[], None).expect("plan");
        let text = plan.to_text();
        assert!(text.contains("- @host: route 10.60.0.0/16"), "{text}");
        assert!(text.contains("- @host: link old-br"), "{text}");
        // An extra address on an existing NIC may be DHCP's or a cloud agent's: it stays.
        assert!(!text.contains("10.80.0.1/24"), "{text}");
        assert!(!text.contains("10.50.0.0/16") && !text.contains("handmade") && !text.contains("10.70.0.1"), "{text}");
    }

    #[test]
    fn a_foreign_link_of_another_kind_is_a_conflict_and_a_missing_nic_too() {
        let d = desired_of(SPEC);
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.links.remove("eth0");
        host.links.insert(
            "br0".into(),
            link(
                LinkKind::Vxlan(Vxlan {
                    vni: 1,
                    local: None,
                    remote: None,
                    group: None,
                    dev: None,
                    port: 4789,
                    options: Default::default(),
                }),
                false,
            ),
        );
        let errors = diff(&d, &live, &[], None).expect_err("conflicts");
        let codes: Vec<&str> = errors.iter().map(|e| e.code.id).collect();
        assert_eq!(codes, vec!["foreign-link", "missing-link"], "{errors:#?}");
    }

    #[test]
    fn every_op_has_an_inverse_that_undoes_it() {
        let d = desired_of(SPEC);
        let mut live = bare_host();
        live.missing.insert("pod".into());
        let plan = diff(&d, &live, &[], None).expect("plan");
        for op in &plan.ops {
            let inv = op.inverse().expect("inverse");
            assert_eq!(inv.inverse().as_ref(), Some(op), "inverse of the inverse of {}", op.describe());
            let flipped = match op.sign() {
                '+' => '-',
                '-' => '+',
                c => c,
            };
            assert_eq!(inv.sign(), flipped, "{}", op.describe());
        }
    }

    /// A bridge at its automatic MTU (the smallest of its ports) that equals the spec's `mtu`
    /// still gets the MTU set when its ports change, or it would follow them (found by the
    /// apply property test, seed 1796173984).
    #[test]
    fn a_bridge_mtu_equal_to_the_automatic_one_is_set_when_the_ports_change() {
        let d = desired_of(
            r#"node "n" {
                ethernet "eth0"
                bridge "br0" mtu=1400
                ethernet "eth1" master="br0"
            }"#,
        );
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        let mut br = link(LinkKind::Bridge, true);
        br.mtu = Some(1400);
        host.links.insert("br0".into(), br);
        let mut port = link(LinkKind::Bridge, true);
        port.mtu = Some(1400);
        port.master = Some("br0".into());
        host.links.insert("old-port".into(), port);
        let mut eth1 = link(LinkKind::Existing { kind: None }, false);
        eth1.master = Some("br0".into());
        host.links.insert("eth1".into(), eth1);
        let text = diff(&d, &live, &[], None).expect("plan").to_text();
        assert!(text.contains("~ @host: link br0: mtu 1400 -> 1400"), "{text}");
        // The same bridge whose ports stay: nothing to do about its MTU.
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.links.remove("old-port");
        let text = diff(&d, &live, &[], None).expect("plan").to_text();
        assert!(!text.contains("link br0: mtu"), "{text}");
    }

    #[test]
    fn deleting_the_last_ipv4_address_removes_the_links_routes_explicitly_first() {
        let d = desired_of(
            r#"node "n" {
                ethernet "eth0"
                bridge "br0"
            }"#,
        );
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.links.insert("br0".into(), link(LinkKind::Bridge, true));
        host.addresses.insert(("br0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
        host.routes.insert(
            RouteKey::new(254, "10.9.0.0/16".parse().unwrap(), 0),
            Route {
                via: Some("10.0.0.1".parse().unwrap()),
                dev: Some("br0".into()),
                src: None,
                scope: RouteScope::Global,
                onlink: false,
                route_type: RouteType::Unicast,
                protocol: 4,
                metrics: Default::default(),
                nexthops: Vec::new(),
            },
        );
        let plan = diff(&d, &live, &[], None).expect("plan");
        let text = plan.to_text();
        let route = text.find("- @host: route 10.9.0.0/16").unwrap_or_else(|| panic!("{text}"));
        let addr = text.find("- @host: address 10.0.0.2/24").unwrap_or_else(|| panic!("{text}"));
        assert!(route < addr, "{text}");
    }

    #[test]
    fn a_changed_address_is_added_before_the_old_one_goes_so_no_route_is_flushed() {
        let d = desired_of(
            r#"node "n" {
                ethernet "eth0"
                bridge "br0" { address "10.1.0.3/24"; }
            }"#,
        );
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.links.insert("br0".into(), link(LinkKind::Bridge, true));
        host.addresses.insert(("br0".into(), "10.0.0.2/24".parse().unwrap()), Address { prefix_route: true });
        host.routes.insert(
            RouteKey::new(254, "172.16.0.0/16".parse().unwrap(), 0),
            Route {
                via: None,
                dev: Some("br0".into()),
                src: None,
                scope: RouteScope::Link,
                onlink: false,
                route_type: RouteType::Unicast,
                protocol: 4,
                metrics: Default::default(),
                nexthops: Vec::new(),
            },
        );
        let text = diff(&d, &live, &[], None).expect("plan").to_text();
        let add = text.find("+ @host: address 10.1.0.3/24").unwrap_or_else(|| panic!("{text}"));
        let del = text.find("- @host: address 10.0.0.2/24").unwrap_or_else(|| panic!("{text}"));
        assert!(add < del, "{text}");
        assert!(!text.contains("172.16.0.0/16"), "a foreign route must not be flushed: {text}");
    }

    const TASK: &str = r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24" }
    netns "task-1" {
        ethernet "eth14" mtu=9001 { address "10.0.254.153/24" }
        route "default" via="10.0.254.1" dev="eth14"
        sysctl "net.ipv4.conf.eth14.rp_filter" 1
    }
}
"#;

    /// [`bare_host`] with `eth14` in the host namespace as the ECS agent finds it: up, a port
    /// of a foreign bridge, with an address, a foreign route through it and a static neighbour.
    fn host_with_eni() -> Live {
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.links.insert("hostbr".into(), link(LinkKind::Bridge, false));
        let mut eni = link(LinkKind::Existing { kind: Some("veth".into()) }, false);
        eni.master = Some("hostbr".into());
        eni.hairpin = Some(false);
        host.links.insert("eth14".into(), eni);
        let net: IpNet = "10.99.0.2/24".parse().unwrap();
        host.addresses.insert(("eth14".into(), net), Address { prefix_route: true });
        let (key, route) = connected_route("eth14", &net);
        host.routes.insert(key, route);
        host.routes.insert(
            RouteKey::new(254, "10.98.0.0/16".parse().unwrap(), 0),
            Route {
                via: Some("10.99.0.1".parse().unwrap()),
                dev: Some("eth14".into()),
                src: None,
                scope: RouteScope::Global,
                onlink: false,
                route_type: RouteType::Unicast,
                protocol: 4,
                metrics: Default::default(),
                nexthops: Vec::new(),
            },
        );
        host.neighbors.insert(
            ("eth14".into(), "10.99.0.1".parse().unwrap()),
            Neighbor { mac: netcfg_lang::value::Mac([2, 0, 0, 0, 0, 1]), protocol: 0 },
        );
        live.missing.insert("task-1".into());
        live
    }

    #[test]
    fn an_ethernet_link_in_the_host_namespace_is_moved_into_its_namespace_in_order() {
        let d = desired_of(TASK);
        let plan = diff(&d, &host_with_eni(), &[], None).expect("plan");
        let text = plan.to_text();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("`{s}` not in\n{text}"));
        let order = [
            "+ task-1: namespace",
            "- @host: neighbor 10.99.0.1 lladdr 02:00:00:00:00:01 dev eth14",
            "- @host: route 10.98.0.0/16 via 10.99.0.1 dev eth14 table 254 metric 0 proto 4",
            "- @host: address 10.99.0.2/24 dev eth14",
            "~ @host: link eth14: master hostbr -> none, up -> down  [link flap]",
            "~ task-1: link eth14: move @host -> task-1  [link flap]",
            "+ task-1: sysctl net.ipv4.conf.eth14.rp_filter = 1",
            "~ task-1: link eth14: mtu 1500 -> 9001, down -> up",
            "+ task-1: address 10.0.254.153/24 dev eth14",
            "+ task-1: route 0.0.0.0/0 via 10.0.254.1 dev eth14",
        ];
        for w in order.windows(2) {
            assert!(at(w[0]) < at(w[1]), "`{}` must come before `{}` in\n{text}", w[0], w[1]);
        }
        // One move, the op on the spec's `ethernet "eth14"`, and every op undone by its inverse.
        let moves: Vec<&Op> = plan.ops.iter().filter(|o| matches!(o.action, Action::MoveLink { .. })).collect();
        assert_eq!(moves.len(), 1, "{text}");
        assert_eq!(moves[0].span, d.span_of("task-1", &Object::Link("eth14".into())));
        assert_eq!(moves[0].to_json()["op"], "move-link");
        for op in &plan.ops {
            match op.inverse() {
                Some(inv) => assert_eq!(inv.inverse().as_ref(), Some(op), "{}", op.describe()),
                // The moved link's sysctl: the move back resets it, nothing to restore.
                None => assert!(matches!(&op.action, Action::WriteSysctl { old: None, .. }), "{}", op.describe()),
            }
        }
        let back = moves[0].inverse().expect("inverse");
        assert_eq!(back.describe(), "link eth14: move task-1 -> @host");
        // The foreign bridge stays, and the connected route goes with the address (no op).
        assert!(!text.contains("link hostbr") && !text.contains("10.99.0.0/24"), "{text}");
    }

    #[test]
    fn a_nic_in_neither_namespace_or_declared_in_the_host_too_is_missing() {
        let d = desired_of(TASK);
        let mut live = bare_host();
        live.missing.insert("task-1".into());
        let errors = diff(&d, &live, &[], None).expect_err("missing");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].code, "missing-link");
        assert_eq!(errors[0].message, "link `eth14` exists neither in namespace `task-1` nor in the host namespace");

        let both = TASK.replace("ethernet \"eth0\" {", "ethernet \"eth14\"\n    ethernet \"eth0\" {");
        let d = desired_of(&both);
        let errors = diff(&d, &host_with_eni(), &[], None).expect_err("declared in the host namespace");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].help.as_deref().unwrap_or("").contains("host namespace declares `eth14`"), "{errors:#?}");
    }

    #[test]
    fn a_link_netcfg_moved_goes_back_when_the_spec_drops_it_and_a_foreign_one_stays() {
        let d = desired_of(
            r#"node "n" {
                ethernet "eth0"
                netns "task-1" { route "10.5.0.0/16" type="blackhole" }
            }"#,
        );
        let mut live = bare_host();
        let mut task = new_namespace();
        let mut eni = link(LinkKind::Existing { kind: None }, false);
        eni.mtu = Some(9001);
        task.links.insert("eth14".into(), eni.clone());
        task.links.insert("eth15".into(), eni);
        task.addresses.insert(("eth14".into(), "10.0.254.153/24".parse().unwrap()), Address { prefix_route: true });
        live.state.namespaces.insert("task-1".into(), task);
        live.moved.insert(LinkRef { ns: "task-1".into(), name: "eth14".into() });
        let plan = diff(&d, &live, &[], None).expect("plan");
        let text = plan.to_text();
        let addr = text.find("- task-1: address 10.0.254.153/24 dev eth14").unwrap_or_else(|| panic!("{text}"));
        let down = text.find("~ task-1: link eth14: up -> down").unwrap_or_else(|| panic!("{text}"));
        let back = text.find("~ task-1: link eth14: move task-1 -> @host").unwrap_or_else(|| panic!("{text}"));
        assert!(addr < down && down < back, "{text}");
        assert!(!text.contains("eth15"), "{text}");

        // The spec drops the whole namespace netcfg created: the link goes back first.
        let d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
        let plan = diff(&d, &live, &["task-1".to_string()], None).expect("plan");
        let text = plan.to_text();
        let back = text.find("~ task-1: link eth14: move task-1 -> @host").unwrap_or_else(|| panic!("{text}"));
        let gone = text.find("- task-1: namespace").unwrap_or_else(|| panic!("{text}"));
        assert!(back < gone && !text.contains("eth15"), "{text}");

        // A link of that name in the host namespace keeps it where it is.
        live.state.namespaces.get_mut(HOST).unwrap().links.insert("eth14".into(), link(LinkKind::Bridge, false));
        let plan = diff(&d, &live, &["task-1".to_string()], None).expect("plan");
        assert!(!plan.ops.iter().any(|o| matches!(o.action, Action::MoveLink { .. })), "{}", plan.to_text());
    }

    fn rule(priority: u32, from: Option<&str>, action: RuleAction) -> Rule {
        Rule {
            v6: false,
            priority,
            from: from.map(|f| f.parse().unwrap()),
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            ipproto: None,
            sport: None,
            dport: None,
            suppress_prefixlength: None,
            action,
        }
    }

    /// [`bare_host`] with the kernel's rules, a rule someone added by hand, and netcfg's rule and
    /// route into table 200 from an earlier spec.
    fn host_with_rules() -> Live {
        let mut live = bare_host();
        let host = live.state.namespaces.get_mut(HOST).unwrap();
        host.rules.insert(rule(0, None, RuleAction::Lookup(255)), PROTO_KERNEL);
        host.rules.insert(rule(32766, None, RuleAction::Lookup(254)), PROTO_KERNEL);
        host.rules.insert(rule(32767, None, RuleAction::Lookup(253)), PROTO_KERNEL);
        host.rules.insert(rule(500, Some("10.77.0.0/16"), RuleAction::Lookup(200)), 0);
        host.rules.insert(rule(100, Some("10.1.0.0/24"), RuleAction::Lookup(200)), NETCFG_PROTO);
        host.routes.insert(
            RouteKey::new(200, "0.0.0.0/0".parse().unwrap(), 0),
            Route {
                via: None,
                dev: Some("eth0".into()),
                src: None,
                scope: RouteScope::Link,
                onlink: false,
                route_type: RouteType::Unicast,
                protocol: NETCFG_PROTO,
                metrics: Default::default(),
                nexthops: Vec::new(),
            },
        );
        live
    }

    #[test]
    fn only_netcfgs_rules_go_and_before_the_routes_of_their_table() {
        let d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
        let text = diff(&d, &host_with_rules(), &[], None).expect("plan").to_text();
        let rule_at = text.find("- @host: rule 100: from 10.1.0.0/24 lookup 200").unwrap_or_else(|| panic!("{text}"));
        let route_at = text.find("- @host: route 0.0.0.0/0 dev eth0 table 200").unwrap_or_else(|| panic!("{text}"));
        assert!(rule_at < route_at, "{text}");
        for kept in ["rule 0:", "rule 32766:", "rule 32767:", "rule 500:"] {
            assert!(!text.contains(kept), "`{kept}` is not netcfg's:\n{text}");
        }
    }

    #[test]
    fn new_rules_come_after_the_routes_of_their_table_and_a_hand_made_one_is_taken_over() {
        let d = desired_of(
            r#"node "n" {
                ethernet "eth0" { address "10.0.0.2/24"; }
                route "default" via="10.0.0.1" dev="eth0" table=200
                rule priority=100 from="10.1.0.0/24" table=200
                rule priority=500 from="10.77.0.0/16" table=200
            }"#,
        );
        let mut live = host_with_rules();
        live.state.namespaces.get_mut(HOST).unwrap().routes.clear();
        live.state.namespaces.get_mut(HOST).unwrap().rules.remove(&rule(
            100,
            Some("10.1.0.0/24"),
            RuleAction::Lookup(200),
        ));
        let plan = diff(&d, &live, &[], None).expect("plan");
        let text = plan.to_text();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("`{s}` not in\n{text}"));
        assert!(at("+ @host: route 0.0.0.0/0 via 10.0.0.1 dev eth0 table 200") < at("+ @host: rule 100:"), "{text}");
        assert!(at("- @host: rule 500: from 10.77.0.0/16 lookup 200 proto 0") < at("+ @host: rule 500:"), "{text}");
        for op in &plan.ops {
            let inv = op.inverse().expect("inverse");
            assert_eq!(inv.inverse().as_ref(), Some(op), "{}", op.describe());
        }
    }

    #[test]
    fn a_rollback_target_keeps_the_kernels_rules_even_if_it_lacks_them() {
        let mut d = desired_of(r#"node "n" { ethernet "eth0"; }"#);
        d.exact = true;
        let text = diff(&d, &host_with_rules(), &[], None).expect("plan").to_text();
        assert!(text.contains("- @host: rule 500:") && text.contains("- @host: rule 100:"), "{text}");
        assert!(!text.contains("rule 0:") && !text.contains("rule 32766:") && !text.contains("rule 32767:"), "{text}");
    }
}
