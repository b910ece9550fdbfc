//! What the kernel does on its own, made explicit: deleting a link takes its addresses, routes
//! and neighbours; deleting an address takes the routes that use it as source, and the last
//! IPv4 address of a link takes the link's IPv4 routes; an address with a prefix route adds its
//! connected route; renaming a link that is up takes it down. The planner removes each such
//! object by an op of its own before the change that would take it, and updates its copy of
//! the live state the same way, so every loss is an op whose inverse brings it back.

use super::*;

impl Planner<'_> {
    /// Removes (as explicit ops) everything the kernel would drop with the link.
    pub(super) fn clear_link(&mut self, r: &LinkRef) {
        // Decided on the state before any of these removals (each may take others with it),
        // without copying the namespace.
        let (mut neighbors, mut routes, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(st) = self.cur.namespaces.get(&r.ns) {
            neighbors.extend(st.neighbors.keys().filter(|(link, _)| *link == r.name).map(|(_, ip)| *ip));
            routes.extend(
                st.routes
                    .iter()
                    .filter(|(_, route)| route.uses_dev(&r.name) && route.protocol != PROTO_KERNEL)
                    .map(|(k, _)| *k),
            );
            addresses.extend(st.addresses.keys().filter(|(link, _)| *link == r.name).map(|(_, net)| *net));
        }
        for ip in neighbors {
            self.delete_neighbor(&r.ns, &r.name, ip);
        }
        for k in &routes {
            self.delete_route(&r.ns, k);
        }
        for net in &addresses {
            self.delete_address(&r.ns, &r.name, net);
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
            self.emit(
                Phase::Deletes,
                Op { ns: r.ns.clone(), action: Action::SetLink { name, to, from }, class: Disruption::LinkFlap, span },
            );
        }
    }

    /// The state after renaming `from` to `to` in namespace `ns`: everything that names it
    /// follows; a link that was up went down for the rename, which took its routes, its IPv6
    /// addresses and its neighbours (the kernel's connected IPv4 routes come back with it).
    pub(super) fn rename_in_cur(&mut self, ns: &str, from: &str, to: &str) {
        let (old, new) = (
            LinkRef { ns: ns.to_string(), name: from.to_string() },
            LinkRef { ns: ns.to_string(), name: to.to_string() },
        );
        let names_it = |k: &LinkKind| {
            matches!(k, LinkKind::Veth { peer: Some(p) }
                | LinkKind::Macvlan { parent: Some(p), .. }
                | LinkKind::Ipvlan { parent: Some(p), .. } if *p == old)
        };
        for st in self.cur.namespaces.values_mut() {
            // Only a namespace that holds such a link is copied.
            if !st.links.values().any(|l| names_it(&l.kind)) {
                continue;
            }
            for l in st.to_mut().links.values_mut() {
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

    pub(super) fn delete_neighbor(&mut self, ns: &str, link: &str, ip: std::net::IpAddr) {
        let Some(neigh) = self.cur_ns(ns).neighbors.remove(&(link.to_string(), ip)) else { return };
        let span = self.span(ns, &Object::Neighbor(link.to_string(), ip));
        self.emit(
            Phase::Deletes,
            Op {
                ns: ns.to_string(),
                action: Action::DeleteNeighbor { link: link.to_string(), ip, neigh },
                class: Disruption::InPlace,
                span,
            },
        );
    }

    pub(super) fn delete_rule(&mut self, ns: &str, rule: &Rule) {
        let Some(protocol) = self.cur_ns(ns).rules.remove(rule) else { return };
        let span = self.d.span_of(ns, &Object::Netns);
        self.emit(
            Phase::Deletes,
            Op {
                ns: ns.to_string(),
                action: Action::DeleteRule { rule: rule.clone(), protocol },
                class: Disruption::InPlace,
                span,
            },
        );
    }

    pub(super) fn delete_route(&mut self, ns: &str, key: &RouteKey) {
        let Some(route) = self.cur_ns(ns).routes.remove(key) else { return };
        let span = self.d.span_of(ns, &Object::Netns);
        self.emit(
            Phase::Deletes,
            Op {
                ns: ns.to_string(),
                action: Action::DeleteRoute { key: *key, route },
                class: Disruption::InPlace,
                span,
            },
        );
    }

    /// Deletes an address, and first the routes the kernel drops with it: routes using it as
    /// source, and every IPv4 route of the link when it was the link's last IPv4 address.
    pub(super) fn delete_address(&mut self, ns: &str, link: &str, net: &IpNet) {
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
        self.emit(
            Phase::Deletes,
            Op {
                ns: ns.to_string(),
                action: Action::DeleteAddress { link: link.to_string(), net: *net, addr },
                class: Disruption::InPlace,
                span,
            },
        );
    }
}

/// The route the kernel adds for an address with a prefix route.
pub(super) fn connected_route(link: &str, net: &IpNet) -> (RouteKey, Route) {
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
