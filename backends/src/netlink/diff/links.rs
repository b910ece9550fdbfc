//! Links: which live links go, stay or move, which are created, and the settings of each, in
//! the order the kernel needs (masters and lower links first; what a removal or a move takes
//! with it is an explicit op before it).

use super::*;

impl Planner<'_> {
    /// Decides which live links go: netcfg's links the spec dropped, links that must be
    /// recreated, and netcfg's links in namespaces that go.
    pub(super) fn plan_link_removals(&mut self, orphans: &[NsName]) {
        let namespaces: Vec<NsName> = self.cur.namespaces.keys().cloned().collect();
        // Links netcfg moved into a namespace that the spec no longer puts there.
        let mut back: Vec<LinkRef> = Vec::new();
        for ns in namespaces {
            let desired = self.d.state.namespaces.get(&ns);
            if desired.is_none() && !orphans.contains(&ns) {
                continue;
            }
            // A copy only of a namespace the plan has changed already (see `Cur`).
            let st = self.cur.namespaces[&ns].clone();
            for (name, l) in &st.links {
                // Named only for a link that goes or moves.
                let r = || LinkRef { ns: ns.clone(), name: name.clone() };
                match desired.and_then(|d| d.links.get(name)) {
                    None if l.owned => self.schedule_delete(&r()),
                    None if ns != HOST && self.marked.contains(&r()) => back.push(r()),
                    None => {}
                    Some(d) if !same_device(&d.kind, &l.kind) => {
                        if l.owned {
                            self.schedule_delete(&r());
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
    pub(super) fn plan_existing_links(&mut self, back: Vec<LinkRef>) {
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
    pub(super) fn schedule_delete(&mut self, r: &LinkRef) {
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

    /// Emits the link deletions, each preceded by the removal of what lives on the link and
    /// the detaching of its ports.
    pub(super) fn plan_link_deletes(&mut self) {
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
            self.emit(
                Phase::Deletes,
                Op {
                    ns: r.ns.clone(),
                    action: Action::DeleteLink { name: r.name.clone(), link, peer },
                    class: if recreate { Disruption::Recreate } else { Disruption::InPlace },
                    span,
                },
            );
        }
    }

    pub(super) fn is_child(&self, r: &LinkRef) -> bool {
        self.cur
            .namespaces
            .get(&r.ns)
            .and_then(|s| s.links.get(&r.name))
            .is_some_and(|l| kinds::lower(&l.kind, &r.ns).is_some())
    }

    /// An existing link declared with a MAC to find it by (`match-mac`; a snapshot's links) and
    /// absent under its name is the one link of its namespace with that MAC, renamed. From the
    /// spec, no such link, several, or another link holding the name are errors; in a restore
    /// (exact mode) a link that is not found is left to the other rules.
    pub(super) fn plan_renames(&mut self) {
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
                    self.emit(
                        Phase::Renames,
                        Op {
                            ns: ns.clone(),
                            action: Action::RenameLink { from, to: name },
                            class: Disruption::LinkFlap,
                            span,
                        },
                    );
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

    /// Emits the moves decided by [`Planner::plan_existing_links`].
    pub(super) fn plan_moves(&mut self) {
        for (from, to) in std::mem::take(&mut self.pending_moves) {
            self.move_link(&from, &to);
        }
    }

    /// Moves a link to namespace `to`: first removes (as explicit ops) what the kernel drops
    /// with the move, takes it down and out of its bridge, then moves it. The op belongs to the
    /// namespace the spec puts the link in (the one it leaves when it goes back to the host).
    pub(super) fn move_link(&mut self, from: &LinkRef, to: &str) {
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
            self.emit(
                Phase::Moves,
                Op {
                    ns: from.ns.clone(),
                    action: Action::SetLink { name: from.name.clone(), to: down, from: before },
                    class: Disruption::LinkFlap,
                    span,
                },
            );
        }
        // In the new namespace the link is down, in no bridge, with that namespace's IPv6
        // address generation.
        let arrived = Link { up: false, master: None, hairpin: None, addrgen_none: None, ..link };
        let new_ref = LinkRef { ns: to.to_string(), name: from.name.clone() };
        self.cur_ns(to).links.insert(from.name.clone(), arrived);
        let names_it = |k: &LinkKind| matches!(k, LinkKind::Veth { peer: Some(p) } | LinkKind::Macvlan { parent: Some(p), .. } if p == from);
        for st in self.cur.namespaces.values_mut() {
            // Only a namespace that holds such a link is copied.
            if !st.links.values().any(|l| names_it(&l.kind)) {
                continue;
            }
            for l in st.to_mut().links.values_mut() {
                match &mut l.kind {
                    LinkKind::Veth { peer: Some(p) } | LinkKind::Macvlan { parent: Some(p), .. } if p == from => {
                        *p = new_ref.clone();
                    }
                    _ => {}
                }
            }
        }
        self.arrived.insert(new_ref);
        self.emit(
            Phase::Moves,
            Op {
                ns: op_ns,
                action: Action::MoveLink { name: from.name.clone(), from: from.ns.clone(), to: to.to_string() },
                class: Disruption::LinkFlap,
                span,
            },
        );
    }

    /// Creates the desired links that do not exist: masters and links on nothing first
    /// (bridges, bonds, VRFs, dummies), then veths, then each stacked link after the link it
    /// sits on (a VLAN on a bond, a VLAN on that VLAN).
    pub(super) fn plan_link_creates(&mut self) {
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
            self.emit(
                Phase::Creates,
                Op {
                    ns: r.ns.clone(),
                    action: Action::CreateLink { name: r.name.clone(), link: l.clone(), peer },
                    class: if recreate { Disruption::Recreate } else { Disruption::InPlace },
                    span,
                },
            );
        }
    }

    pub(super) fn plan_link_settings(&mut self) {
        // Each link's ops (the route flush of going down, then the change), ordered below.
        let mut changes: Vec<LinkChange> = Vec::new();
        // The desired state outlives the planner's borrow: walked in place, each link compared
        // with the live one where it is, neither copied (a no-op compares every link).
        let desired: &Desired = self.d;
        for (ns, name, d) in
            desired.state.namespaces.iter().flat_map(|(ns, st)| st.links.iter().map(move |(n, l)| (ns, n, l)))
        {
            if !self.created.is_empty() && self.created.contains(&LinkRef { ns: ns.clone(), name: name.clone() }) {
                continue;
            }
            let Some(live) = self.cur.namespaces.get(ns).and_then(|c| c.links.get(name)) else { continue };
            let mut to = link_changes(d, live);
            // Without one in the spec, the MTU the kernel gives the link where that is fixed.
            let mtu = d.mtu.or_else(|| self.default_mtu(ns, name, d));
            to.mtu = mtu.filter(|m| Some(*m) != live.mtu);
            // A bridge's MTU equal to the spec's may still be the kernel's automatic one (the
            // smallest of its ports), which follows the ports as they change: when the ports
            // change, the spec's MTU is set (as the user's) so that it stays.
            if let (LinkKind::Bridge, Some(m), None) = (&d.kind, d.mtu, to.mtu) {
                let ports = |links: &BTreeMap<String, Link>| -> BTreeSet<String> {
                    links
                        .iter()
                        .filter(|(_, l)| l.master.as_deref() == Some(name.as_str()))
                        .map(|(n, _)| n.clone())
                        .collect()
                };
                let live_ports = self.before.namespaces.get(ns).map(|c| ports(&c.links)).unwrap_or_default();
                if ports(&desired.state.namespaces[ns].links) != live_ports {
                    to.mtu = Some(m);
                }
            }
            if to.is_empty() {
                continue;
            }
            let from = link_current(&to, live);
            let live_mtu = live.mtu;
            let (ns, name) = (ns.clone(), name.clone());
            let r = LinkRef { ns: ns.clone(), name: name.clone() };
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
                        let mark = self.ops[Phase::Deletes as usize].len();
                        self.delete_address(&ns, &name, &net);
                        let ops: Vec<Op> = self.ops[Phase::Deletes as usize].drain(mark..).collect();
                        self.ops[Phase::Settings as usize].extend(ops);
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
            let mtu_change = to.mtu.map(|new| (live_mtu, new));
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
                self.ops[Phase::EarlySets as usize].extend(c.ops);
            } else {
                self.ops[Phase::Settings as usize].extend(c.ops);
            }
        }
    }

    /// The MTU a link netcfg creates has when the spec does not set one: what the kernel
    /// gives it, where that is a fixed rule: a veth end 1500; a vxlan without an underlay 1500;
    /// a bridge the smallest MTU of the ports the spec gives it (the kernel adjusts a bridge
    /// to its ports), 1500 without ports. A vxlan on an underlay and a macvlan take their
    /// lower device's MTU at creation and keep it: not compared (`None`). So a changed MTU on
    /// such a link is drift even though the spec does not mention MTU.
    pub(super) fn default_mtu(&self, ns: &str, name: &str, l: &Link) -> Option<u32> {
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
}

/// The ops that change one existing link, and its MTU change (live, desired).
pub(super) struct LinkChange {
    link: LinkRef,
    ops: Vec<Op>,
    mtu_change: Option<(Option<u32>, u32)>,
}

/// The link a link sits on (see [`kinds::lower`]).
pub(super) fn lower_of(l: &Link, r: &LinkRef) -> Option<LinkRef> {
    kinds::lower(&l.kind, &r.ns)
}

/// Orders the changes of existing links so that what a link depends on changes first: a bridge
/// before its ports (they join a bridge that is configured); a lower link before the VXLANs and
/// macvlans on it when its MTU rises (the kernel refuses an upper MTU above what the lower
/// carries), after them when it falls. A stable topological sort (Kahn's, ties in (namespace,
/// name) order, bridges first as before); a cycle, which a valid spec cannot make, falls back to
/// that order.
pub(super) fn order_link_changes(mut changes: Vec<LinkChange>, desired: &NodeState) -> Vec<LinkChange> {
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
pub(super) fn live_like(d: &Link) -> Link {
    d.clone()
}

pub(super) fn apply_settings(l: &mut Link, s: &LinkSettings) {
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
