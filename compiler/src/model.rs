//! The network model the checks query, computed once from the IR: per-namespace FIBs with
//! longest-prefix match, L2 segments (bridges and their ports, veth peers, shared LANs and
//! VXLAN overlays), who owns which address, and the effective values of the sysctls that
//! decide behaviour (rp_filter, forwarding, bridge netfilter).

use crate::ir::*;
use foldhash::HashMap;
use ipnet::IpNet;
use netcfg_lang::value::{ConfScope, SysctlPath};
use netcfg_lang::vocab::{Family, RouteScope, RouteType, RpFilter};
use netcfg_lang::Spanned;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A link anywhere in the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkRef {
    pub node: NodeId,
    pub link: LinkId,
}

/// A namespace anywhere in the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsRef {
    pub node: NodeId,
    pub netns: NetnsId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

/// Where a FIB entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibSource {
    /// The prefix route the kernel adds for an address (`proto kernel scope link`).
    Connected { link: LinkId, addr: usize },
    /// A `route` of the spec (index into the namespace's routes).
    Static(usize),
    /// The default route a DHCP client or router advertisement installs on a `dhcp` link:
    /// its gateway is known only at run time.
    Dynamic { link: LinkId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FibEntry {
    pub dst: IpNet,
    pub dev: Option<LinkId>,
    pub via: Option<IpAddr>,
    pub route_type: RouteType,
    pub scope: RouteScope,
    pub metric: u32,
    pub source: FibSource,
}

/// The outcome of a route lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The address belongs to this namespace.
    Local(LinkId),
    Route(&'a FibEntry),
    NoRoute,
}

/// The outcome of [`Fib::lookup_gateway`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayLookup<'a> {
    /// The gateway is an address of this namespace.
    Local(LinkId),
    /// The gateway is on-link through this route (a connected prefix or a link-scope route).
    OnLink(&'a FibEntry),
    /// The lookup stops at a route that cannot resolve a gateway (a blackhole-style route, or
    /// for IPv6 a route with a gateway of its own): the kernel rejects the gateway.
    Invalid(&'a FibEntry),
    NoRoute,
}

/// One routing table of one namespace: the main table holds the connected routes and the
/// spec's main-table routes; another table holds the spec's routes of that table. See
/// [`Model::lookup`] for the policy rules that choose between them.
#[derive(Clone, Debug, Default)]
pub struct Fib {
    /// Every entry of the table, in the order they were added.
    entries: Vec<FibEntry>,
    /// Per entry, the next entry of the same prefix by metric ([`NO_ENTRY`] after the last).
    next: Vec<u32>,
    /// Longest prefix first, per prefix length and family: the first and last entry (lowest and
    /// highest metric) of each prefix, keyed by the prefix's address bits ([`addr_bits`]). An
    /// integer key hashes in a few instructions, and the entries are not moved into the maps
    /// (a node of 10,000 routes builds and queries these for each of its routes).
    by_prefix: Vec<(u8, bool, PrefixMap)>,
    local: HashMap<IpAddr, LinkId>,
}

/// The prefixes of one length and family: address bits to first and last entry.
type PrefixMap = HashMap<u128, (u32, u32)>;

const NO_ENTRY: u32 = u32::MAX;

/// An address as an integer (IPv4 in the low 32 bits): the key of a prefix in [`Fib`].
fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

/// An address as a pair that sorts as `IpAddr` does (IPv4 first) and compares in a few
/// instructions.
type AddrKey = (bool, u128);

fn addr_key(a: IpAddr) -> AddrKey {
    (a.is_ipv6(), addr_bits(a))
}

/// The bits of `addr_bits` that a prefix of `len` keeps (the network part).
fn prefix_mask(len: u8, v4: bool) -> u128 {
    let width = if v4 { 32 } else { 128 };
    match u32::from(len) {
        0 => 0,
        len => (u128::MAX >> (128 - width)) & (u128::MAX << (width - len.min(width))),
    }
}

impl Fib {
    fn build(node: &Node, ns: NetnsId) -> Fib {
        Fib::build_table(node, ns, MAIN_TABLE)
    }

    /// The table `table` of a namespace: the addresses and connected routes of the links whose
    /// home it is (main, or a VRF's table for the VRF's ports), and the spec's routes of it.
    fn build_table(node: &Node, ns: NetnsId, table: u32) -> Fib {
        let mut fib = Fib::default();
        let mut entries = Vec::new();
        for link in node.links_in(ns) {
            // A VRF port's addresses and connected routes are in the VRF's table.
            if node.vrf_table(link).unwrap_or(MAIN_TABLE) != table {
                continue;
            }
            for (i, a) in link.addresses.iter().enumerate() {
                fib.local.entry(a.addr()).or_insert(link.id);
                if link.up && a.prefix_route && a.net.prefix_len() < a.net.max_prefix_len() {
                    entries.push(FibEntry {
                        dst: a.net.trunc(),
                        dev: Some(link.id),
                        via: None,
                        route_type: RouteType::Unicast,
                        scope: RouteScope::Link,
                        metric: 0,
                        source: FibSource::Connected { link: link.id, addr: i },
                    });
                }
            }
        }
        // A `dhcp` link's default routes (DHCPv4, router advertisements), behind any declared
        // default: DHCP clients install theirs with a metric (NetworkManager 100, networkd 1024).
        for link in node.links_in(ns).filter(|l| table == MAIN_TABLE && l.up && l.dhcp()) {
            for dst in ["0.0.0.0/0", "::/0"] {
                entries.push(FibEntry {
                    dst: dst.parse().expect("a default route"),
                    dev: Some(link.id),
                    via: None,
                    route_type: RouteType::Unicast,
                    scope: RouteScope::Global,
                    metric: 1024,
                    source: FibSource::Dynamic { link: link.id },
                });
            }
        }
        let routes = &node.netns(ns).routes;
        entries.reserve(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let dev_up = r.dev.as_ref().is_none_or(|d| node.link(d.value).up);
            if r.table == table && dev_up {
                entries.push(FibEntry {
                    dst: r.dst,
                    dev: r.dev.as_ref().map(|d| d.value),
                    via: r.via.as_ref().map(|v| v.value),
                    route_type: r.route_type,
                    scope: r.scope,
                    metric: r.metric,
                    source: FibSource::Static(i),
                });
            }
        }
        // Per family (IPv4 first) and prefix length, how many entries: each map is made once at
        // its size instead of growing through every power of two.
        let mut counts = [[0usize; 129]; 2];
        for e in &entries {
            counts[usize::from(!e.dst.addr().is_ipv4())][usize::from(e.dst.prefix_len())] += 1;
        }
        let mut maps: [Vec<PrefixMap>; 2] = [Vec::new(), Vec::new()];
        for (family, family_counts) in counts.iter().enumerate() {
            maps[family] =
                family_counts.iter().map(|n| HashMap::with_capacity_and_hasher(*n, Default::default())).collect();
        }
        // Chained by metric, equal metrics in the order added: entries taken in that order are
        // appended to their prefix's chain.
        let mut by_metric: Vec<u32> = (0..entries.len() as u32).collect();
        by_metric.sort_by_key(|i| entries[*i as usize].metric);
        let mut next = vec![NO_ENTRY; entries.len()];
        for i in by_metric {
            let e = &entries[i as usize];
            let family = usize::from(!e.dst.addr().is_ipv4());
            // The address as written: a prefix with host bits set matches no lookup, as before.
            let key = addr_bits(e.dst.addr());
            match maps[family][usize::from(e.dst.prefix_len())].entry(key) {
                Entry::Vacant(v) => {
                    v.insert((i, i));
                }
                Entry::Occupied(mut o) => {
                    let (_, last) = o.get_mut();
                    next[*last as usize] = i;
                    *last = i;
                }
            }
        }
        let [mut v4_maps, mut v6_maps] = maps;
        for len in (0..=128u8).rev() {
            for (v4, family_maps) in [(true, &mut v4_maps), (false, &mut v6_maps)] {
                let m = std::mem::take(&mut family_maps[usize::from(len)]);
                if !m.is_empty() {
                    fib.by_prefix.push((len, v4, m));
                }
            }
        }
        fib.entries = entries;
        fib.next = next;
        fib
    }

    /// The entries of one prefix, lowest metric first, from its first entry.
    fn chain(&self, first: u32) -> impl Iterator<Item = &FibEntry> + '_ {
        std::iter::successors(Some(first), |i| Some(self.next[*i as usize]).filter(|n| *n != NO_ENTRY))
            .map(|i| &self.entries[i as usize])
    }

    /// The link of the namespace that holds `addr` as one of its addresses (in this table).
    pub fn local_link(&self, addr: IpAddr) -> Option<LinkId> {
        self.local.get(&addr).copied()
    }

    /// Longest-prefix match in the main table (local addresses first, as the kernel does).
    pub fn lookup(&self, dst: IpAddr) -> Lookup<'_> {
        if let Some(l) = self.local.get(&dst) {
            return Lookup::Local(*l);
        }
        let (v4, bits) = (dst.is_ipv4(), addr_bits(dst));
        for (len, family_v4, m) in &self.by_prefix {
            if *family_v4 != v4 {
                continue;
            }
            if let Some((first, _)) = m.get(&(bits & prefix_mask(*len, v4))) {
                return Lookup::Route(&self.entries[*first as usize]);
            }
        }
        Lookup::NoRoute
    }

    /// What the kernel finds when it validates the gateway of a new route (`fib_check_nh` for
    /// IPv4, `ip6_route_check_nh` for IPv6): local addresses first, then the longest prefix,
    /// restricted to routes over `dev` when the route names one. IPv4 looks only at routes of
    /// scope `link` or `host` (a route via another gateway has scope `global` and is passed
    /// over); IPv6 stops at the best match, so a route with a gateway there rejects it.
    /// IPv6 link-local gateways are not looked up by the kernel (they need `dev` and nothing
    /// else); callers handle them.
    pub fn lookup_gateway(&self, gateway: IpAddr, dev: Option<LinkId>) -> GatewayLookup<'_> {
        if let Some(l) = self.local.get(&gateway) {
            return GatewayLookup::Local(*l);
        }
        let bits = addr_bits(gateway);
        for (len, v4, m) in &self.by_prefix {
            if *v4 != gateway.is_ipv4() {
                continue;
            }
            for e in m.get(&(bits & prefix_mask(*len, *v4))).into_iter().flat_map(|(first, _)| self.chain(*first)) {
                if *v4 && e.scope == RouteScope::Global {
                    continue;
                }
                // The kernel checks the route type before it matches the nexthop's device.
                if *v4 && e.route_type != RouteType::Unicast {
                    return GatewayLookup::Invalid(e);
                }
                if dev.is_some_and(|d| e.dev != Some(d)) {
                    continue;
                }
                if e.route_type != RouteType::Unicast || (!*v4 && e.via.is_some()) {
                    return GatewayLookup::Invalid(e);
                }
                return GatewayLookup::OnLink(e);
            }
        }
        GatewayLookup::NoRoute
    }

    /// The link a packet to `dst` leaves by, if any (resolving one gateway hop).
    pub fn egress(&self, dst: IpAddr) -> Option<LinkId> {
        match self.lookup(dst) {
            Lookup::Local(l) => Some(l),
            Lookup::Route(e) if e.route_type == RouteType::Unicast => {
                e.dev.or_else(|| match e.via.map(|v| self.lookup(v)) {
                    Some(Lookup::Route(g)) if g.via.is_none() => g.dev,
                    _ => None,
                })
            }
            _ => None,
        }
    }

    /// Every entry of the table (connected, DHCP and static routes), in the order they were added.
    pub fn entries(&self) -> impl Iterator<Item = &FibEntry> + '_ {
        self.entries.iter()
    }
}

/// The main-table lookups of a check that asks about each route's gateway, each asked once
/// per (namespace, address, dev): the routes of a node share a handful of gateways (a router of
/// 10,000 routes via one), and the answer depends on nothing else. One per check run.
#[derive(Default)]
pub struct GatewayMemo<'m> {
    gateways: Memo<(NetnsRef, IpAddr, Option<LinkId>), GatewayLookup<'m>>,
    lookups: Memo<(NetnsRef, IpAddr), Lookup<'m>>,
    owners: Memo<(LinkRef, IpAddr), Option<AddrRef>>,
}

impl<'m> GatewayMemo<'m> {
    /// [`Fib::lookup_gateway`] in the main table of `ns`.
    pub fn lookup_gateway(
        &mut self,
        model: &'m Model,
        ns: NetnsRef,
        gateway: IpAddr,
        dev: Option<LinkId>,
    ) -> GatewayLookup<'m> {
        self.gateways.get((ns, gateway, dev), || model.fib(ns).lookup_gateway(gateway, dev))
    }

    /// [`Fib::lookup`] in the main table of `ns`.
    pub fn lookup(&mut self, model: &'m Model, ns: NetnsRef, dst: IpAddr) -> Lookup<'m> {
        self.lookups.get((ns, dst), || model.fib(ns).lookup(dst))
    }

    /// [`Model::owner_on_segment`]: who answers for a gateway on the route's link.
    pub fn owner_on_segment(&mut self, model: &'m Model, link: LinkRef, gateway: IpAddr) -> Option<AddrRef> {
        self.owners.get((link, gateway), || model.owner_on_segment(link, gateway))
    }
}

/// Answers by key, the last one at hand: routes via one gateway usually follow one another, and
/// comparing a key costs less than hashing it.
struct Memo<K, V> {
    last: Option<(K, V)>,
    seen: HashMap<K, V>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo { last: None, seen: HashMap::default() }
    }
}

impl<K: Copy + Eq + std::hash::Hash, V: Copy> Memo<K, V> {
    fn get(&mut self, key: K, compute: impl FnOnce() -> V) -> V {
        match self.last {
            Some((k, v)) if k == key => v,
            _ => {
                let v = *self.seen.entry(key).or_insert_with(compute);
                self.last = Some((key, v));
                v
            }
        }
    }
}

impl Address {
    pub fn addr(&self) -> IpAddr {
        self.net.addr()
    }
}

/// One address on one link somewhere in the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRef {
    pub link: LinkRef,
    pub index: usize,
}

pub struct Model<'f> {
    pub fleet: &'f Fleet,
    fibs: Vec<Vec<Fib>>,
    /// Per node and namespace, every other table the namespace's routes or rules name.
    tables: Vec<Vec<BTreeMap<u32, Fib>>>,
    /// Per node, index = `LinkId`.
    segment: Vec<Vec<SegmentId>>,
    segments: Vec<Vec<LinkRef>>,
    /// Every declared address (loopbacks excluded) in address order, and who carries it at the
    /// same index; one address's carriers in fleet order. Sorted vectors: a route's lookup of
    /// the addresses in its destination is a binary search, not a tree walk.
    owner_addrs: Vec<AddrKey>,
    owner_refs: Vec<AddrRef>,
    /// Per node, index = `LinkId`.
    mtus: Vec<Vec<u32>>,
}

impl<'f> Model<'f> {
    pub fn new(fleet: &'f Fleet) -> Model<'f> {
        let fibs = fleet.nodes.iter().map(|n| n.namespaces.iter().map(|ns| Fib::build(n, ns.id)).collect()).collect();
        let tables = fleet
            .nodes
            .iter()
            .map(|n| {
                n.namespaces
                    .iter()
                    .map(|ns| {
                        let named =
                            ns.routes.iter().map(|r| r.table).chain(ns.rules.iter().filter_map(
                                |r| match r.action.value {
                                    RuleAction::Lookup(t) => Some(t),
                                    _ => None,
                                },
                            ));
                        // A VRF's table holds its ports' connected routes.
                        let vrfs = n.links_in(ns.id).filter_map(|l| n.vrf_table(l));
                        // Each table built once, not once per route that names it.
                        let ids: std::collections::BTreeSet<u32> =
                            named.chain(vrfs).filter(|t| *t != MAIN_TABLE).collect();
                        ids.into_iter().map(|t| (t, Fib::build_table(n, ns.id, t))).collect::<BTreeMap<u32, Fib>>()
                    })
                    .collect()
            })
            .collect();
        let mut owners: Vec<(IpAddr, AddrRef)> = Vec::new();
        for n in &fleet.nodes {
            for l in &n.links {
                if matches!(l.kind, LinkKind::Loopback) {
                    continue;
                }
                for (i, a) in l.addresses.iter().enumerate() {
                    owners.push((a.addr(), AddrRef { link: LinkRef { node: n.id, link: l.id }, index: i }));
                }
            }
        }
        // Stable: the carriers of one address stay in fleet order.
        owners.sort_by_key(|(addr, _)| *addr);
        let (owner_addrs, owner_refs) = owners.into_iter().map(|(a, r)| (addr_key(a), r)).unzip();
        let (segment, segments) = build_segments(fleet);
        let mtus = fleet.nodes.iter().map(link_mtus).collect();
        Model { fleet, fibs, tables, segment, segments, owner_addrs, owner_refs, mtus }
    }

    pub fn node(&self, id: NodeId) -> &'f Node {
        &self.fleet.nodes[id.0 as usize]
    }

    pub fn link(&self, r: LinkRef) -> &'f Link {
        self.node(r.node).link(r.link)
    }

    pub fn address(&self, a: AddrRef) -> &'f Address {
        &self.link(a.link).addresses[a.index]
    }

    /// The main table of a namespace.
    pub fn fib(&self, ns: NetnsRef) -> &Fib {
        &self.fibs[ns.node.0 as usize][ns.netns.0 as usize]
    }

    /// Table `table` of a namespace (main included); `None` for a table nothing names.
    pub fn table(&self, ns: NetnsRef, table: u32) -> Option<&Fib> {
        if table == MAIN_TABLE {
            return Some(self.fib(ns));
        }
        self.tables[ns.node.0 as usize][ns.netns.0 as usize].get(&table)
    }

    /// Routing table `table` of a namespace, as the trace names it (see [`Model::table`]).
    pub fn fib_table(&self, ns: NetnsRef, table: u32) -> Option<&Fib> {
        self.table(ns, table)
    }

    /// Every table of a namespace the spec fills or a rule names, main first.
    pub fn tables(&self, ns: NetnsRef) -> impl Iterator<Item = (u32, &Fib)> + '_ {
        std::iter::once((MAIN_TABLE, self.fib(ns)))
            .chain(self.tables[ns.node.0 as usize][ns.netns.0 as usize].iter().map(|(t, f)| (*t, f)))
    }

    /// Where a packet to `dst` goes, following the namespace's policy rules as the kernel does
    /// (local addresses, then the rules by priority around `32766: lookup main`). A rule that
    /// matches only some packets to `dst` (by source, mark, interface, port) counts when its
    /// table has a unicast route: checks that conclude from a missing route must not report
    /// one that some traffic has. A rule that drops matches only when it holds for all traffic.
    pub fn lookup(&self, ns: NetnsRef, dst: IpAddr) -> Lookup<'_> {
        let main = self.fib(ns);
        if let Lookup::Local(l) = main.lookup(dst) {
            return Lookup::Local(l);
        }
        let netns = self.node(ns.node).netns(ns.netns);
        let mut rules: Vec<&PolicyRule> = netns.rules.iter().collect();
        rules.sort_by_key(|r| r.priority.value);
        let (before, after): (Vec<&PolicyRule>, Vec<&PolicyRule>) =
            rules.into_iter().partition(|r| r.priority.value < 32766);
        let mut skip_to: Option<u32> = None;
        for r in before.iter().copied() {
            if skip_to.is_some_and(|p| r.priority.value < p) || !r.may_match_to(dst) {
                continue;
            }
            let all = r.matches_all_to(dst);
            match r.action.value {
                RuleAction::Lookup(t) => {
                    if let Some(Lookup::Route(e)) = self.table(ns, t).map(|f| f.lookup(dst)) {
                        let delivers = matches!(e.route_type, RouteType::Unicast | RouteType::Local);
                        if (all && e.route_type != RouteType::Throw) || delivers {
                            return Lookup::Route(e);
                        }
                    }
                }
                RuleAction::Goto(p) if all => skip_to = Some(p),
                RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit if all => {
                    return Lookup::NoRoute;
                }
                _ => {}
            }
        }
        match main.lookup(dst) {
            Lookup::Route(e) if e.route_type != RouteType::Throw => return Lookup::Route(e),
            _ => {}
        }
        for r in after {
            if let (true, RuleAction::Lookup(t)) = (r.may_match_to(dst), r.action.value) {
                if let Some(Lookup::Route(e)) = self.table(ns, t).map(|f| f.lookup(dst)) {
                    if matches!(e.route_type, RouteType::Unicast | RouteType::Local) {
                        return Lookup::Route(e);
                    }
                }
            }
        }
        // The kernel's own last rule, `32767: lookup default`.
        match self.table(ns, DEFAULT_TABLE).map(|f| f.lookup(dst)) {
            Some(Lookup::Route(e)) if e.route_type != RouteType::Throw => Lookup::Route(e),
            _ => Lookup::NoRoute,
        }
    }

    pub fn netns_of(&self, l: LinkRef) -> NetnsRef {
        NetnsRef { node: l.node, netns: self.link(l).netns }
    }

    /// The MTU the kernel gives a link: the declared `mtu`, else what the kernel derives (see
    /// [`link_mtus`]).
    pub fn mtu(&self, l: LinkRef) -> u32 {
        self.mtus[l.node.0 as usize][l.link.0 as usize]
    }

    /// Every namespace of the fleet.
    pub fn namespaces(&self) -> impl Iterator<Item = (NetnsRef, &'f Netns)> + '_ {
        self.fleet
            .nodes
            .iter()
            .flat_map(|n| n.namespaces.iter().map(move |ns| (NetnsRef { node: n.id, netns: ns.id }, ns)))
    }

    /// Every unicast route of a main table that has a gateway, with its namespace: what the
    /// gateway checks reason about (other tables are not modelled).
    pub fn gateway_routes(&self) -> impl Iterator<Item = (NetnsRef, &'f Netns, &'f Route, &'f Spanned<IpAddr>)> + '_ {
        self.namespaces().flat_map(|(ns, netns)| {
            netns.routes.iter().filter_map(move |route| {
                let via = route.via.as_ref()?;
                (route.table == MAIN_TABLE && route.route_type == RouteType::Unicast).then_some((ns, netns, route, via))
            })
        })
    }

    /// Every link of the fleet, loopbacks included.
    pub fn links(&self) -> impl Iterator<Item = (LinkRef, &'f Link)> + '_ {
        self.fleet.nodes.iter().flat_map(|n| n.links.iter().map(move |l| (LinkRef { node: n.id, link: l.id }, l)))
    }

    pub fn segment_of(&self, l: LinkRef) -> SegmentId {
        self.segment[l.node.0 as usize][l.link.0 as usize]
    }

    /// The links attached to one L2 segment.
    pub fn segment_links(&self, s: SegmentId) -> &[LinkRef] {
        &self.segments[s.0 as usize]
    }

    /// The links (not loopbacks) that carry `addr` as one of their addresses.
    pub fn owners(&self, addr: IpAddr) -> &[AddrRef] {
        self.owners_between(addr, addr)
    }

    /// Every declared address inside `net` (loopbacks excluded), in address order.
    pub fn addresses_in(&self, net: IpNet) -> impl Iterator<Item = AddrRef> + '_ {
        self.owners_between(net.network(), net.broadcast()).iter().copied()
    }

    /// The carriers of the addresses from `first` to `last`, both included.
    fn owners_between(&self, first: IpAddr, last: IpAddr) -> &[AddrRef] {
        let (first, last) = (addr_key(first), addr_key(last));
        let from = self.owner_addrs.partition_point(|a| *a < first);
        let to = from + self.owner_addrs[from..].partition_point(|a| *a <= last);
        &self.owner_refs[from..to]
    }

    /// Who answers for `addr` on the L2 segment of `link` (a next hop, an on-link peer).
    pub fn owner_on_segment(&self, link: LinkRef, addr: IpAddr) -> Option<AddrRef> {
        let seg = self.segment_of(link);
        self.owners(addr).iter().copied().find(|o| o.link != link && self.segment_of(o.link) == seg)
    }

    /// Effective rp_filter of a link: the kernel uses max(conf.all, conf.IFACE).
    /// `None` when the spec sets neither (the distribution decides).
    pub fn rp_filter(&self, l: LinkRef) -> Option<RpFilter> {
        let link = self.link(l);
        let ns = self.node(l.node).netns(link.netns);
        let all = ns.sysctl_int(&SysctlPath::rp_filter(ConfScope::All));
        let dev = ns.sysctl_int(&SysctlPath::rp_filter(ConfScope::Link(&link.name.value)));
        let v = match (all, dev) {
            (None, None) => return None,
            (a, d) => a.unwrap_or(0).max(d.unwrap_or(0)),
        };
        Some(match v {
            0 => RpFilter::Off,
            1 => RpFilter::Strict,
            _ => RpFilter::Loose,
        })
    }

    /// Whether a namespace forwards packets of a family (kernel default: off).
    pub fn forwarding(&self, ns: NetnsRef, family: Family) -> bool {
        let n = self.node(ns.node).netns(ns.netns);
        n.sysctl_int(&SysctlPath::forwarding(family)).unwrap_or(0) != 0
    }

    /// Whether bridged IPv4 traffic on `bridge` passes through the L3 netfilter hooks:
    /// the namespace-wide sysctl or the bridge's own `nf_call_iptables`.
    pub fn bridge_netfilter(&self, bridge: LinkRef) -> bool {
        let link = self.link(bridge);
        let ns = self.node(bridge.node).netns(link.netns);
        let per_bridge = matches!(&link.kind, LinkKind::Bridge { netfilter: Some(n), .. } if n.value);
        per_bridge || ns.sysctl_int(&SysctlPath::bridge_nf_call(Family::Ipv4)).unwrap_or(0) != 0
    }

    /// The bridge a link is a port of, following a veth to its peer (`pod eth0 -> vethX -> cni0`).
    pub fn bridge_of(&self, l: LinkRef) -> Option<LinkRef> {
        let link = self.link(l);
        if let Some(m) = &link.master {
            return Some(LinkRef { node: l.node, link: m.value });
        }
        if let LinkKind::Veth { peer } = link.kind {
            let p = self.node(l.node).link(peer);
            return p.master.as_ref().map(|m| LinkRef { node: l.node, link: m.value });
        }
        None
    }
}

/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// The same with a 40-byte IPv6 header.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// The encapsulation overhead of a VXLAN, by the family of its `local`/`remote`/`group`
/// (IPv4 when none is given), as the kernel's `vxlan_config_apply` picks its headroom.
/// The outer headers a tunnel adds: the outer IP header, plus GRE's 4 bytes.
pub fn tunnel_overhead(kind: TunnelKind) -> u32 {
    match kind {
        TunnelKind::Gre => 24,
        TunnelKind::Ipip | TunnelKind::Sit => 20,
        TunnelKind::Ip6tnl => 40,
    }
}

pub fn vxlan_overhead(kind: &LinkKind) -> u32 {
    let LinkKind::Vxlan { local, remote, group, .. } = kind else { return 0 };
    let v6 = [local, remote, group].into_iter().flatten().next().is_some_and(|a| a.value.is_ipv6());
    if v6 {
        VXLAN_OVERHEAD_V6
    } else {
        VXLAN_OVERHEAD_V4
    }
}

/// Every link's MTU as the kernel sets it when the spec gives none, index = `LinkId` (checked
/// against Linux 6.x with `ip link`): `lo` 65536; a bridge the smallest MTU of its ports
/// (`br_mtu_auto_adjust`; 1500 without ports); a VXLAN with `dev` its underlay's MTU minus the
/// encapsulation overhead, without `dev` 1500; everything else 1500. netcfg
/// itself sets only a declared `mtu`; this is what the checks assume the kernel does otherwise.
pub fn link_mtus(node: &Node) -> Vec<u32> {
    fn mtu(node: &Node, ports: &HashMap<LinkId, Vec<LinkId>>, id: LinkId, depth: u32) -> u32 {
        let link = node.link(id);
        if let Some(m) = &link.mtu {
            return m.value;
        }
        // A bridge that is a port of itself (through a VXLAN) is nonsense the kernel refuses;
        // stop rather than recurse forever.
        if depth > 8 {
            return 1500;
        }
        match &link.kind {
            LinkKind::Loopback => 65536,
            LinkKind::Bridge { .. } => {
                ports.get(&id).and_then(|ps| ps.iter().map(|p| mtu(node, ports, *p, depth + 1)).min()).unwrap_or(1500)
            }
            LinkKind::Vxlan { dev: Some(dev), .. } => {
                mtu(node, ports, dev.value, depth + 1).saturating_sub(vxlan_overhead(&link.kind))
            }
            // A VLAN or ipvlan starts with its parent's MTU.
            LinkKind::Vlan { parent, .. } | LinkKind::Ipvlan { parent, .. } => {
                mtu(node, ports, parent.value, depth + 1)
            }
            LinkKind::Vrf { .. } => 65575,
            // 1500 less the outer IPv6, UDP and WireGuard headers.
            LinkKind::Wireguard(_) => 1420,
            LinkKind::Tunnel(t) => {
                let under = t.dev.as_ref().map_or(1500, |d| mtu(node, ports, d.value, depth + 1));
                under.saturating_sub(tunnel_overhead(t.kind))
            }
            _ => 1500,
        }
    }
    let mut ports: HashMap<LinkId, Vec<LinkId>> = HashMap::default();
    for l in &node.links {
        if let Some(m) = &l.master {
            ports.entry(m.value).or_default().push(l.id);
        }
    }
    node.links.iter().map(|l| mtu(node, &ports, l.id, 0)).collect()
}

/// The VLAN-filtering bridge that `wire` (or its veth peer) is a port of, when that port
/// carries VLAN `vid` tagged. The segments do not split such a bridge by VLAN.
fn tagged_bridge(node: &Node, wire: LinkId, vid: u16) -> Option<LinkId> {
    let l = node.link(wire);
    let port = match (&l.kind, l.master.is_some()) {
        (_, true) => l,
        (LinkKind::Veth { peer }, false) => node.link(*peer),
        _ => return None,
    };
    let vlans = port.options.vlans.as_ref()?;
    let bridge = port.master.as_ref()?.value;
    let tagged = vlans.value.get(&vid).is_some_and(|f| !f.untagged);
    let filtering =
        matches!(&node.link(bridge).kind, LinkKind::Bridge { options, .. } if options.vlan_filtering == Some(true));
    (tagged && filtering).then_some(bridge)
}

/// Union-find over links: bridge ports join their bridge, veth ends join, macvlans join their
/// parent, VXLANs with one VNI join across nodes, and NICs whose connected subnets are equal
/// join across nodes (they are taken to share a LAN).
fn build_segments(fleet: &Fleet) -> (Vec<Vec<SegmentId>>, Vec<Vec<LinkRef>>) {
    // Links are numbered across the fleet node after node: a node's first link, then its
    // `LinkId` (ids are indices into `Node::links`).
    let mut first_of_node = Vec::with_capacity(fleet.nodes.len());
    let mut refs = Vec::new();
    for n in &fleet.nodes {
        first_of_node.push(refs.len());
        refs.extend(n.links.iter().map(|l| LinkRef { node: n.id, link: l.id }));
    }
    let index = |r: LinkRef| first_of_node[r.node.0 as usize] + r.link.0 as usize;
    let mut parent: Vec<usize> = (0..refs.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let union = |p: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(p, a), find(p, b));
        if ra != rb {
            p[ra.max(rb)] = ra.min(rb);
        }
    };
    let mut by_vni: HashMap<u32, usize> = HashMap::default();
    let mut by_lan: HashMap<IpNet, usize> = HashMap::default();
    for n in &fleet.nodes {
        for l in &n.links {
            let me = index(LinkRef { node: n.id, link: l.id });
            if let Some(m) = &l.master {
                union(&mut parent, me, index(LinkRef { node: n.id, link: m.value }));
            }
            match &l.kind {
                LinkKind::Veth { peer } => union(&mut parent, me, index(LinkRef { node: n.id, link: *peer })),
                LinkKind::Macvlan { parent: p, .. } | LinkKind::Ipvlan { parent: p, .. } => {
                    union(&mut parent, me, index(LinkRef { node: n.id, link: p.value }))
                }
                LinkKind::Vxlan { vni, .. } => {
                    let first = *by_vni.entry(vni.value).or_insert(me);
                    union(&mut parent, me, first);
                }
                // A VLAN on a link whose wire is a port of a VLAN-filtering bridge carrying its
                // id tagged (the link itself or its veth peer) is on that bridge.
                LinkKind::Vlan { parent: p, id, .. } if tagged_bridge(n, p.value, id.value).is_some() => {
                    let b = tagged_bridge(n, p.value, id.value).expect("matched");
                    union(&mut parent, me, index(LinkRef { node: n.id, link: b }));
                }
                // NICs, and what stands for one on the wire, meet by their connected subnets.
                LinkKind::Ethernet | LinkKind::Vlan { .. } | LinkKind::Bond(_) | LinkKind::Tunnel(_) => {
                    for a in &l.addresses {
                        if a.net.prefix_len() < a.net.max_prefix_len() {
                            let first = *by_lan.entry(a.net.trunc()).or_insert(me);
                            union(&mut parent, me, first);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut seg_of_root: HashMap<usize, SegmentId> = HashMap::default();
    let mut segments: Vec<Vec<LinkRef>> = Vec::new();
    let mut segment: Vec<Vec<SegmentId>> = fleet.nodes.iter().map(|n| Vec::with_capacity(n.links.len())).collect();
    for (i, r) in refs.iter().enumerate() {
        let root = find(&mut parent, i);
        let id = *seg_of_root.entry(root).or_insert_with(|| {
            segments.push(Vec::new());
            SegmentId((segments.len() - 1) as u32)
        });
        segments[id.0 as usize].push(*r);
        segment[r.node.0 as usize].push(id);
    }
    (segment, segments)
}
