//! The desired state of one node, built from the IR: per namespace, the links netcfg creates or
//! configures, their addresses, routes, static neighbours and sysctls, plus the spec span of
//! every object (so an op that fails can be reported on the KDL that asked for it) and the nft
//! transaction of every namespace. Pure: no kernel access.

use super::state::*;
use crate::kernel::Feature;
use crate::nftables::{self, render::Script};
use ipnet::IpNet;
use netcfg_compiler::ir::{LinkKind as IrKind, NetnsId, Node};
use netcfg_lang::{Diagnostic, Span};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// An object of a namespace, as the spec names it: the key of [`Desired::spans`] and of ops.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    Netns,
    Link(String),
    Address(String, IpNet),
    Route(RouteKey),
    Rule(Rule),
    Neighbor(String, IpAddr),
    Sysctl(String),
    Nft,
    /// A kernel module (the namespace is the host's: modules are the machine's).
    Module(String),
    /// netcfg's modules-load.d file.
    ModulesLoad,
}

#[derive(Clone, Debug)]
pub struct Desired {
    pub node: String,
    pub node_span: Span,
    pub state: NodeState,
    /// Where each desired object of each namespace is declared (looked up, never walked in
    /// order: hashed, as ordered inserts of 10,000 routes were a fifth of a no-op apply's
    /// `desired`; by namespace, so that no entry holds a copy of its namespace's name).
    pub spans: BTreeMap<NsName, foldhash::HashMap<Object, Span>>,
    /// The nft transaction of each namespace.
    pub nft: BTreeMap<NsName, Script>,
    /// A recorded state (a rollback's target) rather than a spec: every attribute is meant,
    /// and on its namespaces what it lacks goes, whoever made it (see `rollback`).
    pub exact: bool,
    /// The kernel features the node needs, each with the first spec text that needs it.
    pub features: BTreeMap<Feature, Span>,
    /// The exact content netcfg's modules-load.d file must have (`Some(None)`: absent), when it
    /// is not derived from `features`: a rollback's recorded file.
    pub modules_load: Option<Option<String>>,
}

impl Desired {
    /// The span of an object, or of its link, or of its namespace, or of the node.
    pub fn span_of(&self, ns: &str, obj: &Object) -> Span {
        let Some(spans) = self.spans.get(ns) else { return self.node_span };
        let link = match obj {
            Object::Address(l, _) | Object::Neighbor(l, _) => Some(Object::Link(l.clone())),
            _ => None,
        };
        spans
            .get(obj)
            .or_else(|| link.and_then(|l| spans.get(&l)))
            .or_else(|| spans.get(&Object::Netns))
            .copied()
            .unwrap_or(self.node_span)
    }
}

/// The IP protocol number of a rule's `ipproto`.
pub fn ip_protocol(p: netcfg_lang::vocab::Proto) -> u8 {
    use netcfg_lang::vocab::Proto;
    match p {
        Proto::Icmp => 1,
        Proto::Igmp => 2,
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Icmpv6 => 58,
        Proto::Sctp => 132,
    }
}

pub fn ns_name(node: &Node, id: NetnsId) -> NsName {
    node.netns(id).display_name().to_string()
}

/// Builds the desired state of `node`. Diagnostics: nft lowering findings.
pub fn desired(node: &Node, diags: &mut Vec<Diagnostic>) -> Desired {
    let mut out = Desired {
        node: node.name.value.clone(),
        node_span: node.span,
        state: NodeState::default(),
        spans: Default::default(),
        nft: BTreeMap::new(),
        exact: false,
        features: BTreeMap::new(),
        modules_load: None,
    };
    let need = |features: &mut BTreeMap<Feature, Span>, f: Feature, span: Span| {
        features.entry(f).and_modify(|s| *s = (*s).min(span)).or_insert(span);
    };
    for rs in nftables::compile_node(node, diags) {
        for (f, span) in nftables::features::table_features(&rs.table) {
            need(&mut out.features, f, span);
        }
        out.nft.insert(ns_name(node, rs.netns), rs.script);
    }
    for ns in &node.namespaces {
        let name = ns_name(node, ns.id);
        let mut st = NsState::default();
        // A later declaration of an object names it (as before).
        let mut spans = foldhash::HashMap::default();
        // By name, so that the map of links is built in one go (inserted one by one in
        // declaration order, 2,000 links cost a search of names each). Names are unique.
        let mut links: Vec<&netcfg_compiler::ir::Link> = node.links_in(ns.id).collect();
        links.sort_by(|a, b| a.name.value.cmp(&b.name.value));
        let objects = 2 + ns.routes.len() + ns.rules.len() * 2 + ns.neighbors.len() + ns.sysctls.len();
        spans.reserve(objects + links.iter().map(|l| 1 + l.addresses.len()).sum::<usize>());
        spans.insert(Object::Netns, ns.span);
        let mut st_links = Vec::with_capacity(links.len());
        for l in links {
            let has_v6 = l.addresses.iter().any(|a| a.net.addr().is_ipv6());
            let (kind, feature) = super::kinds::project(node, &l.kind);
            if let Some(f) = feature {
                need(&mut out.features, f, l.name.span);
            }
            if let IrKind::Bridge { netfilter: Some(n), .. } = &l.kind {
                if n.value {
                    need(&mut out.features, Feature::BrNetfilter, n.span);
                }
            }
            let created = kind.is_created();
            let link = Link {
                nf_call_iptables: match &l.kind {
                    IrKind::Bridge { netfilter, .. } => netfilter.as_ref().map(|n| n.value),
                    _ => None,
                },
                kind,
                mtu: l.mtu.as_ref().map(|m| m.value),
                mac: l.mac.as_ref().map(|m| m.value),
                master: l.master.as_ref().map(|m| node.link(m.value).name.value.clone()),
                hairpin: l.hairpin.as_ref().map(|h| h.value),
                up: l.up,
                addrgen_none: created.then_some(!has_v6),
                opts: Opts {
                    promisc: l.options.promisc.as_ref().map(|v| v.value),
                    arp: l.options.arp.as_ref().map(|v| v.value),
                    txqueuelen: l.options.txqueuelen.as_ref().map(|v| v.value),
                    bridge: match &l.kind {
                        IrKind::Bridge { options, .. } => *options,
                        _ => Default::default(),
                    },
                    port: if l.master.is_some() { l.options.port } else { Default::default() },
                    vlans: l.options.vlans.as_ref().map(|v| v.value.clone()),
                    dhcp: l.dhcp(),
                },
                owned: created,
                ident: l.options.match_mac.as_ref().map(|m| m.value),
            };
            st_links.push((l.name.value.clone(), link));
            spans.insert(Object::Link(l.name.value.clone()), l.name.span);
            for a in &l.addresses {
                // Declared IPv6 link-local addresses are managed (a gateway `via fe80::1`).
                if is_loopback_default(&l.name.value, &a.net) {
                    continue;
                }
                st.addresses.insert((l.name.value.clone(), a.net), Address { prefix_route: a.prefix_route });
                spans.insert(Object::Address(l.name.value.clone(), a.net), a.span);
            }
        }
        st.links = st_links.into_iter().collect();
        // Gathered, then built sorted in one go: 10,000 inserts in declaration order cost a
        // search each.
        let mut routes = Vec::with_capacity(ns.routes.len());
        for r in &ns.routes {
            let key = RouteKey::new(r.table, r.dst, r.metric);
            let route = Route {
                via: r.via.as_ref().map(|v| v.value),
                dev: r.dev.as_ref().map(|d| node.link(d.value).name.value.clone()),
                src: r.src.as_ref().map(|s| s.value),
                scope: r.scope,
                onlink: r.onlink,
                route_type: r.route_type,
                protocol: NETCFG_PROTO,
                metrics: RouteMetrics {
                    mtu: r.metrics.mtu,
                    advmss: r.metrics.advmss,
                    initcwnd: r.metrics.initcwnd,
                    initrwnd: r.metrics.initrwnd,
                },
                nexthops: r
                    .nexthops
                    .iter()
                    .map(|n| NextHop {
                        via: n.via.as_ref().map(|v| v.value),
                        dev: n.dev.as_ref().map(|d| node.link(d.value).name.value.clone()),
                        weight: n.weight,
                        onlink: n.onlink,
                    })
                    .collect(),
            };
            // Unique: resolve reports `conflicting-routes` and keeps only the first.
            routes.push((key, route));
            spans.insert(Object::Route(key), r.span);
        }
        st.routes = routes.into_iter().collect();
        for r in &ns.rules {
            for family in r.families() {
                let rule = Rule {
                    v6: family == netcfg_lang::vocab::Family::Ipv6,
                    priority: r.priority.value,
                    from: r.from.as_ref().map(|n| n.value),
                    to: r.to.as_ref().map(|n| n.value),
                    iif: r.iif.as_ref().map(|l| node.link(l.value).name.value.clone()),
                    oif: r.oif.as_ref().map(|l| node.link(l.value).name.value.clone()),
                    fwmark: r.fwmark,
                    ipproto: r.ipproto.map(ip_protocol),
                    sport: r.sport,
                    dport: r.dport,
                    suppress_prefixlength: r.suppress_prefixlength,
                    action: match r.action.value {
                        netcfg_compiler::ir::RuleAction::Lookup(t) => RuleAction::Lookup(t),
                        netcfg_compiler::ir::RuleAction::L3mdev => RuleAction::L3mdev,
                        netcfg_compiler::ir::RuleAction::Goto(p) => RuleAction::Goto(p),
                        netcfg_compiler::ir::RuleAction::Blackhole => RuleAction::Blackhole,
                        netcfg_compiler::ir::RuleAction::Unreachable => RuleAction::Unreachable,
                        netcfg_compiler::ir::RuleAction::Prohibit => RuleAction::Prohibit,
                    },
                };
                spans.insert(Object::Rule(rule.clone()), r.span);
                // Unique: resolve reports `duplicate-rule` and keeps only the first.
                st.rules.insert(rule, NETCFG_PROTO);
            }
        }
        for n in &ns.neighbors {
            let dev = node.link(n.dev.value).name.value.clone();
            st.neighbors.insert((dev.clone(), n.ip.value), Neighbor { mac: n.mac.value, protocol: NETCFG_PROTO });
            spans.insert(Object::Neighbor(dev, n.ip.value), n.span);
        }
        for (path, s) in &ns.sysctls {
            if let Some(f) = Feature::of_sysctl(&path.0) {
                need(&mut out.features, f, s.span);
            }
            st.sysctls.insert(path.0.clone(), normalize_sysctl(&s.value.to_string()));
            spans.insert(Object::Sysctl(path.0.clone()), s.span);
        }
        if let Some(f) = ns.firewall.span {
            spans.insert(Object::Nft, f);
        }
        out.spans.insert(name.clone(), spans);
        out.state.namespaces.insert(name, st);
    }
    out
}

/// The desired state "nothing netcfg owns" for `node`: an empty host namespace and a host
/// nft transaction that only deletes netcfg's table. Planned against the live node (like any
/// desired state) it removes every link in netcfg's group, every route with netcfg's
/// protocol, the table, and every namespace netcfg created for the node (moving NICs it had
/// moved there back); what netcfg does not own stays. `netcfg destroy` applies it.
pub fn nothing(node: &str, span: Span) -> Desired {
    let header = format!("netcfg teardown of node {node}");
    let script = nftables::render::render_transaction(&header, &nftables::ruleset::Table::default());
    let mut out = Desired {
        node: node.to_string(),
        node_span: span,
        state: NodeState::default(),
        spans: Default::default(),
        nft: BTreeMap::new(),
        exact: false,
        // No features: the modules-load.d file netcfg wrote goes too (modules stay loaded).
        features: BTreeMap::new(),
        modules_load: None,
    };
    out.state.namespaces.insert(HOST.to_string(), NsState::default());
    out.nft.insert(HOST.to_string(), script);
    out
}
