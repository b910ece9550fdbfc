//! Addresses, routes, policy rules, neighbours and sysctls: removals of what netcfg owns and the
//! spec dropped (with what the kernel removes on its own made explicit), then additions and
//! changes.

use super::side_effects::connected_route;
use super::*;

impl Planner<'_> {
    /// Neighbours, routes and addresses that go while their link stays.
    pub(super) fn plan_object_removals(&mut self, orphans: &[NsName]) {
        let namespaces: Vec<NsName> = self.cur.namespaces.keys().cloned().collect();
        for ns in namespaces {
            let Some(desired) = self.d.state.namespaces.get(&ns) else {
                if orphans.contains(&ns) {
                    self.remove_owned_objects(&ns);
                }
                continue;
            };
            let st = self.cur.namespaces[&ns].clone();
            // No name is copied for the question while nothing is deleted.
            let alive = |link: &str, deleted: &BTreeSet<LinkRef>| {
                deleted.is_empty() || !deleted.contains(&LinkRef { ns: ns.clone(), name: link.to_string() })
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
            // The desired routes walked in key order alongside (one pass, not a search each).
            let mut declared = desired.routes.keys().peekable();
            for (key, r) in &st.routes {
                while declared.next_if(|k| *k < key).is_some() {}
                let is_declared = declared.peek() == Some(&key);
                if (r.protocol == NETCFG_PROTO || (exact && !crate::netlink::rollback::is_derived_route(r)))
                    && !is_declared
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

    pub(super) fn remove_owned_objects(&mut self, ns: &str) {
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

    pub(super) fn plan_sysctls(&mut self) {
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
                self.emit(
                    Phase::Sysctls,
                    Op {
                        ns: ns.clone(),
                        action: Action::WriteSysctl { path: path.clone(), value: value.clone(), old },
                        class: Disruption::InPlace,
                        span: self.d.span_of(ns, &Object::Sysctl(path.clone())),
                    },
                );
            }
        }
    }

    pub(super) fn plan_addresses(&mut self) {
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
            let mark = p.ops[Phase::Deletes as usize].len();
            p.delete_address(ns, link, net);
            let ops: Vec<Op> = p.ops[Phase::Deletes as usize].drain(mark..).collect();
            p.ops[Phase::Addresses as usize].extend(ops);
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
                let c = self.cur.namespaces.entry(ns.clone()).or_default().to_mut();
                c.addresses.insert((link.clone(), *net), *a);
                if a.prefix_route && up {
                    let (key, route) = connected_route(link, net);
                    c.routes.entry(key).or_insert(route);
                }
                self.emit(
                    Phase::Addresses,
                    Op {
                        ns: ns.clone(),
                        action,
                        class: Disruption::InPlace,
                        span: self.d.span_of(ns, &Object::Address(link.clone(), *net)),
                    },
                );
            }
        }
        // The others go after the new addresses exist, so a renumbered link is never without an
        // IPv4 address (the kernel flushes a link's IPv4 routes with its last one).
        for (_, ns, link, net) in extra.iter().filter(|e| !e.0) {
            delete(self, ns, link, net);
        }
    }

    pub(super) fn plan_routes(&mut self) {
        let mut direct = Vec::new();
        let mut gatewayed = Vec::new();
        for (ns, st) in &self.d.state.namespaces {
            // Both maps walked in key order together (one pass, not a search per route); a
            // route is compared in place and copied only into an op.
            let mut live = self.cur.namespaces.get(ns).into_iter().flat_map(|c| c.routes.iter()).peekable();
            for (key, r) in &st.routes {
                while live.next_if(|(k, _)| *k < key).is_some() {}
                let cur = live.peek().filter(|(k, _)| *k == key).map(|(_, c)| *c);
                let action = match cur {
                    Some(c) if route_matches(r, c) => continue,
                    Some(old) => Action::ReplaceRoute { key: *key, route: r.clone(), old: old.clone() },
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
        self.ops[Phase::Routes as usize].extend(direct);
        self.ops[Phase::Routes as usize].extend(gatewayed);
    }

    /// Rules the spec has that the node lacks, after the routes of their tables. A rule of the
    /// spec that exists with another protocol (made by hand) is taken over: deleted and added
    /// with netcfg's (the kernel has no "replace" for rules).
    pub(super) fn plan_rules(&mut self) {
        for (ns, st) in &self.d.state.namespaces {
            for (rule, protocol) in &st.rules {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.rules.get(rule)).copied();
                if cur == Some(*protocol) {
                    continue;
                }
                let span = self.d.span_of(ns, &Object::Rule(rule.clone()));
                if let Some(old) = cur {
                    self.emit(
                        Phase::Rules,
                        Op {
                            ns: ns.clone(),
                            action: Action::DeleteRule { rule: rule.clone(), protocol: old },
                            class: Disruption::InPlace,
                            span,
                        },
                    );
                }
                self.emit(
                    Phase::Rules,
                    Op {
                        ns: ns.clone(),
                        action: Action::AddRule { rule: rule.clone(), protocol: *protocol },
                        class: Disruption::InPlace,
                        span,
                    },
                );
                self.cur.namespaces.entry(ns.clone()).or_default().to_mut().rules.insert(rule.clone(), *protocol);
            }
        }
    }

    pub(super) fn plan_neighbors(&mut self) {
        for (ns, st) in &self.d.state.namespaces {
            for ((link, ip), n) in &st.neighbors {
                let cur = self.cur.namespaces.get(ns).and_then(|c| c.neighbors.get(&(link.clone(), *ip))).copied();
                let action = match cur {
                    Some(c) if c == *n => continue,
                    Some(old) => Action::ReplaceNeighbor { link: link.clone(), ip: *ip, neigh: *n, old },
                    None => Action::AddNeighbor { link: link.clone(), ip: *ip, neigh: *n },
                };
                self.emit(
                    Phase::Neighbors,
                    Op {
                        ns: ns.clone(),
                        action,
                        class: Disruption::InPlace,
                        span: self.d.span_of(ns, &Object::Neighbor(link.clone(), *ip)),
                    },
                );
            }
        }
    }
}
