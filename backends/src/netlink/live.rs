//! The live state of a node: per namespace, rtnetlink dumps of links, addresses, routes and
//! permanent neighbours, and the sysctls the spec sets read from `/proc/sys` inside the
//! namespace. Links are named; veth peers and macvlan parents in other namespaces are resolved
//! by their ifindex pairs across the namespaces read. Links and routes are read on the
//! connection's dump socket and decoded in place ([`decode_link`], [`decode_route`]; their
//! netlink_packet_route readers [`raw_link`] and [`route_of_message`] are kept as references),
//! the routes sorted by key where they are dumped ([`keyed_routes`]); addresses, neighbours and
//! rules go through netlink_packet_route.

use super::conn::{Conn, Conns, NlError};
use super::kinds;
use super::namespaces::{run_at, Location, NetnsMap};
use super::state::*;
use super::wire;
use ipnet::IpNet;
use netcfg_lang::value::Mac;
use netcfg_lang::value::SysctlPath;
use netcfg_lang::vocab::{RouteScope, RouteType};
use rtnetlink::packet_core::{NlaBuffer, ParseableParametrized};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, BridgeStpState, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHopFlags, RouteScope as NlScope,
    RouteType as NlType,
};
use rtnetlink::packet_route::rule::{RuleAction as NlRuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A link as dumped, before names across namespaces are resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct RawLink {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub flags_loopback: bool,
    pub up: bool,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    /// IFLA_PERM_ADDRESS: the MAC the device came with (a NIC's), when it has one.
    pub perm_mac: Option<Mac>,
    pub master: Option<u32>,
    pub group: u32,
    /// IFLA_LINK: the veth peer or the lower device of a stacked link.
    pub link: Option<u32>,
    /// IFLA_LINK_NETNSID: `link` is in another namespace.
    pub link_other_ns: bool,
    pub hairpin: Option<bool>,
    pub nf_call_iptables: Option<bool>,
    pub addrgen_none: Option<bool>,
    pub promisc: bool,
    pub noarp: bool,
    pub txqueuelen: Option<u32>,
    pub bridge: netcfg_lang::ast::BridgeOptions,
    pub port: netcfg_lang::ast::PortOptions,
    /// The kind's own attributes (`IFLA_INFO_DATA`), decoded by the kind's module.
    pub data: Option<InfoData>,
}

/// The VLANs of every bridge port and bridge of the namespace, by ifindex (empty on a kernel
/// without bridge VLAN filtering).
pub async fn bridge_vlans(conn: &mut Conn) -> Result<BTreeMap<u32, netcfg_lang::links::Vlans>, NlError> {
    let mut out: BTreeMap<u32, netcfg_lang::links::Vlans> = BTreeMap::new();
    for m in conn.dump(kinds::bridge::vlan_dump_request()).await? {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let (index, vlans) = kinds::bridge::decode_vlans(&l);
            out.entry(index).or_default().extend(vlans);
        }
    }
    Ok(out)
}

/// A link request without the counters (`RTEXT_FILTER_SKIP_STATS`: no `IFLA_STATS64`, no
/// per-device IPv6 and ICMPv6 statistics), which netcfg never reads: on a dump of 2,000 links
/// they are most of what the kernel fills and what is parsed.
pub fn link_request() -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

/// Every namespace's links by index, borrowed from the dumps, and the veths by their own and
/// their peer's index, so a veth's peer is one lookup (a scan of every link per veth was 80M
/// instructions of a no-op apply with 1000 pairs, an eighth of it).
struct ByIndex<'a> {
    links: foldhash::HashMap<(&'a str, u32), &'a RawLink>,
    veths: foldhash::HashMap<(u32, u32), Veths<'a>>,
}

/// The veths with one (index, peer index): one, but for indexes repeated across namespaces.
type Veths<'a> = smallvec::SmallVec<[(&'a str, &'a RawLink); 1]>;

impl<'a> ByIndex<'a> {
    fn new(raw: &'a BTreeMap<NsName, NsDump>) -> ByIndex<'a> {
        let mut by = ByIndex { links: Default::default(), veths: Default::default() };
        for (ns, (links, ..)) in raw {
            for l in links {
                by.links.insert((ns.as_str(), l.index), l);
                if let (Some("veth"), Some(peer)) = (l.kind.as_deref(), l.link) {
                    by.veths.entry((l.index, peer)).or_default().push((ns.as_str(), l));
                }
            }
        }
        by
    }
}

impl kinds::Lookup for ByIndex<'_> {
    fn name(&self, ns: &str, index: u32) -> Option<LinkRef> {
        self.links.get(&(ns, index)).map(|l| LinkRef { ns: ns.to_string(), name: l.name.clone() })
    }

    /// A lower device in another namespace is the host's: the language puts parents there.
    fn link_ns(&self, ns: &str, l: &RawLink) -> String {
        if l.link_other_ns {
            HOST.to_string()
        } else {
            ns.to_string()
        }
    }

    /// The one veth whose index is `l`'s peer index and whose peer index is `l`'s, in `l`'s
    /// namespace or (when the kernel says the peer is elsewhere) in another; none when that
    /// is not exactly one.
    fn veth_peer(&self, ns: &str, l: &RawLink) -> Option<LinkRef> {
        let candidates = self.veths.get(&(l.link?, l.index))?;
        let mut found = candidates.iter().filter(|(pns, _)| (*pns == ns) != l.link_other_ns);
        let (pns, p) = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(LinkRef { ns: pns.to_string(), name: p.name.clone() })
    }
}

/// The raw dumps of one namespace: links, addresses, routes, neighbours, rules.
type NsDump = (
    Vec<RawLink>,
    Vec<AddressMessage>,
    Vec<(RouteKey, RawRoute)>,
    Vec<NeighbourMessage>,
    Vec<RuleMessage>,
    Option<BTreeMap<u32, netcfg_lang::links::Vlans>>,
);

/// The live state of the namespaces read, and their ifindexes.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub state: NodeState,
    /// Namespaces that do not exist on the machine.
    pub missing: BTreeSet<NsName>,
    pub index: BTreeMap<(NsName, String), u32>,
    /// Links netcfg moved into the (non-host) namespace they are in, per their markers.
    pub moved: BTreeSet<LinkRef>,
    /// What the kernel has of the features the spec needs, and the modules-load.d file.
    pub kernel: crate::kernel::KernelState,
    /// Namespaces with a bridge whose VLANs were not read (no link there declares any): their
    /// bridges and ports have `vlans: None`, which the planner does not compare.
    pub vlans_unread: BTreeSet<NsName>,
}

/// What to read besides the netlink dumps: the sysctl paths the spec sets, per namespace.
pub type SysctlPaths = BTreeMap<NsName, Vec<String>>;

/// One namespace's netlink dumps: links, addresses, routes, neighbours, policy rules (bridge
/// VLANs are read by [`read`], where the spec asks for them).
pub struct Dump {
    pub(super) links: Vec<RawLink>,
    addrs: Vec<AddressMessage>,
    /// By key, from [`keyed_routes`].
    routes: Vec<(RouteKey, RawRoute)>,
    neighs: Vec<NeighbourMessage>,
    rules: Vec<RuleMessage>,
    /// The routes named already by [`Dump::name_routes`] (`routes` then empty).
    named_routes: Option<BTreeMap<RouteKey, Route>>,
}

impl Dump {
    /// Names the routes by the dump's own links ([`routes_state`]) and frees the raw ones: a
    /// dump read ahead does it on its thread, while the spec compiles (on 10,000 routes, 7 M
    /// instructions off the plan's path).
    pub(super) fn name_routes(&mut self) {
        let name_of: NameOf = self.links.iter().map(|l| (l.index, l.name.as_str())).collect();
        self.named_routes = Some(routes_state(&self.routes, &name_of));
        self.routes = Vec::new();
    }
}

/// Dumps one namespace over `conn`.
pub async fn dump(conn: &mut Conn) -> Result<Dump, NlError> {
    let links = dump_links(conn).await?;
    Ok(Dump { links, ..dump_all_but_links(conn).await? })
}

/// Dumps one namespace's links, each decoded in place by [`decode_link`].
pub async fn dump_links(conn: &mut Conn) -> Result<Vec<RawLink>, NlError> {
    let mut links = Vec::new();
    conn.plain.dump(RouteNetlinkMessage::GetLink(link_request()), |kind, payload| {
        if kind == RTM_NEWLINK {
            links.extend(decode_link(payload));
        }
    })?;
    Ok(links)
}

/// Dumps one namespace's addresses, routes, neighbours and policy rules (`links` left empty).
pub async fn dump_all_but_links(conn: &mut Conn) -> Result<Dump, NlError> {
    let addrs = conn
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .await?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })
        .collect();
    let routes = dump_routes(conn)?;
    let neighs = dump_both_families(
        conn,
        |family| {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            RouteNetlinkMessage::GetNeighbour(req)
        },
        |m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(n),
            _ => None,
        },
    )
    .await?;
    let rules = dump_both_families(
        conn,
        |family| {
            let mut req = RuleMessage::default();
            req.header.family = family;
            RouteNetlinkMessage::GetRule(req)
        },
        |m| match m {
            RouteNetlinkMessage::NewRule(r) => Some(r),
            _ => None,
        },
    )
    .await?;
    Ok(Dump { links: Vec::new(), addrs, routes, neighs, rules, named_routes: None })
}

/// Dumps one namespace's IPv4 then IPv6 routes, each decoded in place by [`decode_route`], and
/// sorts those netcfg reads by key ([`keyed_routes`]).
pub fn dump_routes(conn: &mut Conn) -> Result<Vec<(RouteKey, RawRoute)>, NlError> {
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        conn.plain.dump(route_request(family), |kind, payload| {
            if kind == RTM_NEWROUTE {
                routes.extend(decode_route(payload));
            }
        })?;
    }
    Ok(keyed_routes(routes))
}

/// The request for every route of `family`, in every table.
pub fn route_request(family: AddressFamily) -> RouteNetlinkMessage {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    RouteNetlinkMessage::GetRoute(req)
}

/// Dumps IPv4 then IPv6 with the request `ask` makes for a family, keeping what `keep` takes.
async fn dump_both_families<T>(
    conn: &mut Conn,
    ask: impl Fn(AddressFamily) -> RouteNetlinkMessage,
    keep: impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, NlError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        out.extend(conn.dump(ask(family)).await?.into_iter().filter_map(&keep));
    }
    Ok(out)
}

/// Reads the namespaces `names` of the node. A namespace that does not exist is reported in
/// `missing`, not as an error. The bridge VLANs are read only in the namespaces `vlans_of`
/// holds (the others are listed in `Live::vlans_unread`).
/// Frees the raw dumps of a big read on a thread of their own: on 2,000 links and 12,000
/// routes that was 5.6 M instructions of the plan's path (callgrind), and nothing waits for
/// the memory. A small read frees them here (a thread costs more than that).
fn free_elsewhere(raw: BTreeMap<NsName, NsDump>) {
    let items: usize = raw.values().map(|(links, addrs, routes, ..)| links.len() + addrs.len() + routes.len()).sum();
    if items >= 1000 {
        let _ = std::thread::Builder::new().name("free".into()).spawn(move || drop(raw));
    }
}

/// The names of a namespace's links by ifindex (hashed fast: every route looks its links up).
pub type NameOf<'a> = foldhash::HashMap<u32, &'a str>;

pub async fn read(
    map: &NetnsMap,
    conns: &mut Conns,
    names: &[NsName],
    sysctls: &SysctlPaths,
    vlans_of: &BTreeSet<NsName>,
    prefetched: &mut BTreeMap<NsName, Dump>,
) -> Result<Live, NlError> {
    let mut raw: BTreeMap<NsName, NsDump> = BTreeMap::new();
    let mut named: BTreeMap<NsName, BTreeMap<RouteKey, Route>> = BTreeMap::new();
    let mut live = Live::default();
    for ns in names {
        let loc = map.locate(ns);
        if !loc.exists() {
            live.missing.insert(ns.clone());
            continue;
        }
        // Opened even for dumps read ahead: what follows a read (a snapshot's VLANs, the ops)
        // finds every namespace read connected.
        let conn = connection(conns, ns, &loc)?;
        let Dump { links, addrs, routes, neighs, rules, named_routes } = match prefetched.remove(ns) {
            Some(d) => d,
            None => dump(conn).await?,
        };
        let vlans = if !links.iter().any(|l: &RawLink| l.kind.as_deref() == Some("bridge")) {
            Some(BTreeMap::new())
        } else if vlans_of.contains(ns) {
            Some(bridge_vlans(conn).await?)
        } else {
            live.vlans_unread.insert(ns.clone());
            None
        };
        if let Some(r) = named_routes {
            named.insert(ns.clone(), r);
        }
        raw.insert(ns.clone(), (links, addrs, routes, neighs, rules, vlans));
    }
    // Resolve names, then build each namespace's state.
    let by_index = ByIndex::new(&raw);
    // Every link's index by (namespace, name), gathered in that order (the namespaces in
    // order, each one's links by name) and built in one go, as is each namespace's map of
    // links: inserted one by one, 2,000 links cost a search of names each.
    let mut index: Vec<((NsName, String), u32)> = Vec::with_capacity(raw.values().map(|d| d.0.len()).sum());
    for (ns, (links, addrs, routes, neighs, rules, vlans)) in &raw {
        let name_of: NameOf = links.iter().map(|l| (l.index, l.name.as_str())).collect();
        let mut st = NsState::default();
        let mut by_name: Vec<&RawLink> = links.iter().collect();
        by_name.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let first = index.len();
        let mut st_links = Vec::with_capacity(by_name.len());
        for l in by_name {
            index.push(((ns.clone(), l.name.clone()), l.index));
            let kind = kinds::decode(ns, l, &by_index);
            st_links.push((
                l.name.clone(),
                Link {
                    kind,
                    mtu: l.mtu,
                    mac: l.mac,
                    master: l.master.and_then(|m| name_of.get(&m)).map(|n| n.to_string()),
                    hairpin: l.hairpin,
                    nf_call_iptables: l.nf_call_iptables,
                    up: l.up,
                    addrgen_none: l.addrgen_none,
                    opts: Opts {
                        promisc: Some(l.promisc),
                        arp: Some(!l.noarp),
                        txqueuelen: l.txqueuelen,
                        bridge: l.bridge,
                        port: l.port,
                        vlans: None,
                        dhcp: false,
                    },
                    owned: l.group == NETCFG_GROUP,
                    ident: l.perm_mac.or(l.mac),
                },
            ));
        }
        st.links = st_links.into_iter().collect();
        if let Some(vlans) = vlans {
            let own = &index[first..];
            let index_of = |name: &str| own.binary_search_by(|((_, n), _)| n.as_str().cmp(name)).ok().map(|i| own[i].1);
            attach_vlans(&mut st, index_of, vlans);
        }
        for a in addrs {
            let Some(link) = name_of.get(&a.header.index) else { continue };
            let mut ip = None;
            let mut flags = AddressFlags::empty();
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(i) => ip = Some(*i),
                    AddressAttribute::Address(i) if ip.is_none() => ip = Some(*i),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            let Some(net) = ip.and_then(|i| IpNet::new(i, a.header.prefix_len).ok()) else { continue };
            // Link-local IPv6 addresses and `lo`'s own ones are read (a declared one must be
            // seen, a rollback must see `lo` as it was) but the planner never removes them for
            // a spec: see `plan_addresses`.
            st.addresses.insert(
                (link.to_string(), net),
                Address { prefix_route: !flags.contains(AddressFlags::Noprefixroute) },
            );
        }
        st.routes = named.remove(ns).unwrap_or_else(|| routes_state(routes, &name_of));
        for r in rules {
            if let Some((rule, protocol)) = parse_rule(r) {
                st.rules.insert(rule, protocol);
            }
        }
        for n in neighs {
            if n.header.state != NeighbourState::Permanent {
                continue;
            }
            let Some(link) = name_of.get(&n.header.ifindex) else { continue };
            let mut ip = None;
            let mut mac = None;
            let mut protocol = 0;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(*a)),
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some(Mac(l.as_slice().try_into().expect("6 bytes")))
                    }
                    NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                st.neighbors.insert((link.to_string(), ip), Neighbor { mac, protocol });
            }
        }
        live.state.namespaces.insert(ns.clone(), st);
    }
    live.index = index.into_iter().collect();
    drop(by_index);
    free_elsewhere(raw);
    for (ns, paths) in sysctls {
        if live.missing.contains(ns) {
            continue;
        }
        let values = read_sysctls(&map.locate(ns), paths.clone()).map_err(|e| NlError::other(e.to_string()))?;
        if let Some(st) = live.state.namespaces.get_mut(ns) {
            st.sysctls = values;
        }
    }
    Ok(live)
}

/// Puts the VLANs dumped by [`bridge_vlans`] (by ifindex, `index` of a link's name) into the
/// bridges of `st` and their ports. VLANs belong to those only: other answers (a NIC driver's
/// own bridge mode) are not VLAN membership.
pub fn attach_vlans(
    st: &mut NsState,
    index: impl Fn(&str) -> Option<u32>,
    vlans: &BTreeMap<u32, netcfg_lang::links::Vlans>,
) {
    let bridges: BTreeSet<String> =
        st.links.iter().filter(|(_, l)| matches!(l.kind, LinkKind::Bridge)).map(|(n, _)| n.clone()).collect();
    for (name, link) in st.links.iter_mut() {
        if bridges.contains(name) || link.master.as_ref().is_some_and(|m| bridges.contains(m)) {
            link.opts.vlans = Some(index(name).and_then(|i| vlans.get(&i)).cloned().unwrap_or_default());
        }
    }
}

pub(super) fn connection<'a>(conns: &'a mut Conns, ns: &str, loc: &Location) -> Result<&'a mut Conn, NlError> {
    if !conns.contains_key(ns) {
        let c = Conn::open(loc).map_err(|e| NlError::other(format!("cannot open netlink in {loc}: {e}")))?;
        conns.insert(ns.to_string(), c);
    }
    Ok(conns.get_mut(ns).expect("inserted"))
}

/// Reads sysctls inside a namespace; paths that do not exist are left out.
pub fn read_sysctls(loc: &Location, paths: Vec<String>) -> std::io::Result<BTreeMap<String, String>> {
    run_at(loc, move || {
        paths
            .into_iter()
            .filter_map(|p| {
                let v = std::fs::read_to_string(SysctlPath(p.clone()).proc_path()).ok()?;
                Some((p, normalize_sysctl(&v)))
            })
            .collect()
    })
}

impl RawLink {
    /// A link as its header says: index and the flags loopback, up, promisc, noarp (in that
    /// order); every attribute still unread. Both decoders start here.
    fn blank(index: u32, [loopback, up, promisc, noarp]: [bool; 4]) -> RawLink {
        RawLink {
            index,
            name: String::new(),
            kind: None,
            flags_loopback: loopback,
            up,
            mtu: None,
            mac: None,
            perm_mac: None,
            master: None,
            group: 0,
            link: None,
            link_other_ns: false,
            hairpin: None,
            nf_call_iptables: None,
            addrgen_none: None,
            promisc,
            noarp,
            txqueuelen: None,
            bridge: Default::default(),
            port: Default::default(),
            data: None,
        }
    }
}

/// A link as netlink_packet_route decodes it: every attribute parsed, then what `RawLink`
/// holds read out. [`decode_link`] reads the same from the bytes; this one is kept as its
/// reference (`backends/tests/link_decode.rs` compares the two on every link of real dumps).
pub fn raw_link(m: &LinkMessage) -> RawLink {
    let f = |flag: LinkFlags| m.header.flags.contains(flag);
    let mut l = RawLink::blank(
        m.header.index,
        [f(LinkFlags::Loopback), f(LinkFlags::Up), f(LinkFlags::Promisc), f(LinkFlags::Noarp)],
    );
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::TxQueueLen(v) => l.txqueuelen = Some(*v),
            LinkAttribute::Address(b) if b.len() == 6 => l.mac = Some(Mac(b.as_slice().try_into().expect("6 bytes"))),
            LinkAttribute::PermAddress(b) if b.len() == 6 => {
                l.perm_mac = Some(Mac(b.as_slice().try_into().expect("6 bytes")))
            }
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::Group(g) => l.group = *g,
            LinkAttribute::Link(i) => l.link = Some(*i),
            LinkAttribute::LinkNetNsId(_) => l.link_other_ns = true,
            LinkAttribute::AfSpecUnspec(specs) => {
                for s in specs {
                    if let AfSpecUnspec::Inet6(v) = s {
                        for x in v {
                            if let AfSpecInet6::AddrGenMode(mode) = x {
                                l.addrgen_none = Some(*mode == In6AddrGenMode::None);
                            }
                        }
                    }
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Bridge(v)) => {
                            for x in v {
                                match x {
                                    InfoBridge::NfCallIpTables(b) => l.nf_call_iptables = Some(*b),
                                    InfoBridge::StpState(s) => l.bridge.stp = Some(*s != BridgeStpState::Disabled),
                                    InfoBridge::ForwardDelay(v) => l.bridge.forward_delay = Some(*v),
                                    InfoBridge::AgeingTime(v) => l.bridge.ageing = Some(*v),
                                    InfoBridge::Priority(v) => l.bridge.priority = Some(*v),
                                    InfoBridge::VlanFiltering(v) => l.bridge.vlan_filtering = Some(*v),
                                    InfoBridge::VlanDefaultPvid(v) => l.bridge.default_pvid = Some(*v),
                                    InfoBridge::MulticastSnooping(v) => l.bridge.multicast_snooping = Some(*v),
                                    _ => {}
                                }
                            }
                        }
                        LinkInfo::Data(d) => l.data = Some(d.clone()),
                        LinkInfo::PortData(InfoPortData::BridgePort(v)) => {
                            for x in v {
                                match x {
                                    InfoBridgePort::HairpinMode(b) => l.hairpin = Some(*b),
                                    InfoBridgePort::Cost(c) => l.port.cost = Some(*c),
                                    InfoBridgePort::Priority(p) => l.port.priority = Some(*p),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if l.kind.as_deref() == Some(&InfoKind::Veth.to_string()) {
        l.kind = Some("veth".into());
    }
    l
}

const RTM_NEWLINK: u16 = 16;

/// `ifinfomsg`'s length: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_NOARP: u32 = 0x80;
const IFF_PROMISC: u32 = 0x100;
const AF_UNSPEC: u8 = 0;
const AF_INET6: u8 = 10;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_TXQLEN: u16 = 13;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_GROUP: u16 = 27;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_PERM_ADDRESS: u16 = 54;

const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_PORT_KIND: u16 = 4;
const IFLA_INFO_PORT_DATA: u16 = 5;

const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

const IFLA_BR_FORWARD_DELAY: u16 = 1;
const IFLA_BR_AGEING_TIME: u16 = 4;
const IFLA_BR_STP_STATE: u16 = 5;
const IFLA_BR_PRIORITY: u16 = 6;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BR_MCAST_SNOOPING: u16 = 23;
const IFLA_BR_NF_CALL_IPTABLES: u16 = 36;
const IFLA_BR_VLAN_DEFAULT_PVID: u16 = 39;
const BR_NO_STP: u32 = 0;

const IFLA_BRPORT_PRIORITY: u16 = 2;
const IFLA_BRPORT_COST: u16 = 3;
const IFLA_BRPORT_MODE: u16 = 4;

/// Decodes an `RTM_NEWLINK` payload (`ifinfomsg` and attributes) into what [`raw_link`] reads
/// from netlink_packet_route's `LinkMessage`, walking only the attributes `RawLink` holds: a
/// bridge's and a bridge port's settings are read here; the `IFLA_INFO_DATA` of the other kinds
/// (vxlan, macvlan, vlan…: few links of a node) is parsed by netlink_packet_route, from that
/// one nest, so `data` is its `InfoData` as before. `None` for a payload shorter than its
/// header; a malformed attribute is skipped (a nest's walk ends at it).
pub fn decode_link(p: &[u8]) -> Option<RawLink> {
    let h = p.get(..IFINFOMSG_LEN)?;
    let family = h[0];
    let index = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
    let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
    let f = |flag: u32| flags & flag != 0;
    let mut l = RawLink::blank(index, [f(IFF_LOOPBACK), f(IFF_UP), f(IFF_PROMISC), f(IFF_NOARP)]);
    let mac = |v: &[u8]| v.try_into().ok().map(Mac);
    for a in wire::attrs(&p[IFINFOMSG_LEN..]) {
        let v = a.value;
        match a.kind {
            IFLA_IFNAME => {
                if let Some(n) = wire::str_of(v) {
                    l.name = n.to_string();
                }
            }
            IFLA_MTU => l.mtu = wire::u32_of(v).or(l.mtu),
            IFLA_TXQLEN => l.txqueuelen = wire::u32_of(v).or(l.txqueuelen),
            IFLA_ADDRESS => l.mac = mac(v).or(l.mac),
            IFLA_PERM_ADDRESS => l.perm_mac = mac(v).or(l.perm_mac),
            IFLA_MASTER => l.master = wire::u32_of(v).or(l.master),
            IFLA_GROUP => l.group = wire::u32_of(v).unwrap_or(l.group),
            IFLA_LINK => l.link = wire::u32_of(v).or(l.link),
            IFLA_LINK_NETNSID => l.link_other_ns |= v.len() == 4,
            IFLA_AF_SPEC if family == AF_UNSPEC => {
                for inet6 in wire::attrs(v).filter(|f| f.kind == u16::from(AF_INET6)) {
                    for x in wire::attrs(inet6.value).filter(|x| x.kind == IFLA_INET6_ADDR_GEN_MODE) {
                        if let Some(mode) = wire::u8_of(x.value) {
                            l.addrgen_none = Some(mode == IN6_ADDR_GEN_MODE_NONE);
                        }
                    }
                }
            }
            IFLA_LINKINFO => decode_link_info(&mut l, a),
            _ => {}
        }
    }
    Some(l)
}

/// `IFLA_LINKINFO`: the kind, a bridge's settings or another kind's data, a bridge port's
/// settings.
fn decode_link_info(l: &mut RawLink, info: wire::Attr) {
    let (mut data, mut port_kind, mut port_data) = (None, None, None);
    for a in wire::attrs(info.value) {
        match a.kind {
            IFLA_INFO_KIND => {
                if let Some(k) = wire::str_of(a.value) {
                    l.kind = Some(k.to_string());
                }
            }
            IFLA_INFO_DATA => data = Some(a.value),
            IFLA_INFO_PORT_KIND => port_kind = wire::str_of(a.value),
            IFLA_INFO_PORT_DATA => port_data = Some(a.value),
            _ => {}
        }
    }
    match (l.kind.as_deref(), data) {
        (_, None) => {}
        (Some("bridge"), Some(data)) => {
            for a in wire::attrs(data) {
                let v = a.value;
                let b = &mut l.bridge;
                match a.kind {
                    IFLA_BR_NF_CALL_IPTABLES => {
                        l.nf_call_iptables = wire::u8_of(v).map(|b| b > 0).or(l.nf_call_iptables)
                    }
                    IFLA_BR_STP_STATE => b.stp = wire::u32_of(v).map(|s| s != BR_NO_STP).or(b.stp),
                    IFLA_BR_FORWARD_DELAY => b.forward_delay = wire::u32_of(v).or(b.forward_delay),
                    IFLA_BR_AGEING_TIME => b.ageing = wire::u32_of(v).or(b.ageing),
                    IFLA_BR_PRIORITY => b.priority = wire::u16_of(v).or(b.priority),
                    IFLA_BR_VLAN_FILTERING => b.vlan_filtering = wire::u8_of(v).map(|f| f > 0).or(b.vlan_filtering),
                    IFLA_BR_VLAN_DEFAULT_PVID => b.default_pvid = wire::u16_of(v).or(b.default_pvid),
                    IFLA_BR_MCAST_SNOOPING => {
                        b.multicast_snooping = wire::u8_of(v).map(|f| f > 0).or(b.multicast_snooping)
                    }
                    _ => {}
                }
            }
        }
        // The rare kinds with data of their own: netlink_packet_route parses this one nest.
        (_, Some(_)) => {
            let parsed = NlaBuffer::new_checked(info.whole)
                .ok()
                .and_then(|b| LinkAttribute::parse_with_param(&b, AddressFamily::Unspec).ok());
            if let Some(LinkAttribute::LinkInfo(infos)) = parsed {
                for i in infos {
                    if let LinkInfo::Data(d) = i {
                        l.data = Some(d);
                    }
                }
            }
        }
    }
    if let (Some("bridge"), Some(data)) = (port_kind, port_data) {
        for a in wire::attrs(data) {
            let v = a.value;
            match a.kind {
                IFLA_BRPORT_MODE => l.hairpin = wire::u8_of(v).map(|m| m > 0).or(l.hairpin),
                IFLA_BRPORT_COST => l.port.cost = wire::u32_of(v).or(l.port.cost),
                IFLA_BRPORT_PRIORITY => l.port.priority = wire::u16_of(v).or(l.port.priority),
                _ => {}
            }
        }
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(i) => Some(IpAddr::V4(*i)),
        RouteAddress::Inet6(i) => Some(IpAddr::V6(*i)),
        _ => None,
    }
}

/// A route as netlink_packet_route decodes it: every attribute parsed, then netcfg's route read
/// out. [`decode_route`] and [`route_of`] do the same from the bytes; this one is kept as their
/// reference (`backends/tests/route_decode.rs` compares the two on every route of real dumps).
pub fn route_of_message(r: &RouteMessage, name_of: &NameOf) -> Option<(RouteKey, Route)> {
    let h = &r.header;
    if h.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let route_type = match h.kind {
        NlType::Unicast => RouteType::Unicast,
        NlType::BlackHole => RouteType::Blackhole,
        NlType::Unreachable => RouteType::Unreachable,
        NlType::Prohibit => RouteType::Prohibit,
        NlType::Throw => RouteType::Throw,
        NlType::Local => RouteType::Local,
        _ => return None,
    };
    let mut table = h.table as u32;
    let mut dst = None;
    let mut via = None;
    let mut dev = None;
    let mut src = None;
    let mut metric = 0;
    let mut metrics = RouteMetrics::default();
    let mut nexthops = Vec::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = ip_of(d),
            RouteAttribute::Gateway(g) => via = ip_of(g),
            RouteAttribute::Oif(i) => dev = Some(name_of.get(i)?.to_string()),
            RouteAttribute::PrefSource(s) => src = ip_of(s),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    match m {
                        RouteMetric::Mtu(v) => metrics.mtu = Some(*v),
                        RouteMetric::Advmss(v) => metrics.advmss = Some(*v),
                        RouteMetric::InitCwnd(v) => metrics.initcwnd = Some(*v),
                        RouteMetric::InitRwnd(v) => metrics.initrwnd = Some(*v),
                        _ => {}
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    let via = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip_of(g),
                        _ => None,
                    });
                    nexthops.push(NextHop {
                        via,
                        dev: Some(name_of.get(&hop.interface_index)?.to_string()),
                        weight: u32::from(hop.hops) + 1,
                        onlink: hop.flags.contains(RouteNextHopFlags::Onlink),
                    });
                }
            }
            _ => {}
        }
    }
    // The kernel's own entries of the local table (addresses, broadcasts) are not netcfg's to
    // read; local routes someone added are.
    if table == 255 && u8::from(h.protocol) == PROTO_KERNEL {
        return None;
    }
    let dst = match (dst, h.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
    let scope = match h.scope {
        NlScope::Link => RouteScope::Link,
        NlScope::Host => RouteScope::Host,
        _ => RouteScope::Global,
    };
    let route = Route {
        via,
        dev,
        src,
        scope,
        onlink: h.flags.contains(RouteFlags::Onlink),
        route_type,
        protocol: u8::from(h.protocol),
        metrics,
        nexthops,
    };
    Some((RouteKey::new(table, dst, metric), route))
}

const PROTO_KERNEL: u8 = 2;

/// A route as dumped, before link names: what [`route_of`] reads of an `RTM_NEWROUTE`, the
/// header's fields as the kernel gives them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawRoute {
    pub family: u8,
    pub dst_len: u8,
    /// The header's table, or RTA_TABLE's (the one that holds tables past 255).
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    /// `RTN_*`.
    pub kind: u8,
    /// `RTM_F_*` and `RTNH_F_*`.
    pub flags: u32,
    pub dst: Option<IpAddr>,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub src: Option<IpAddr>,
    /// RTA_PRIORITY.
    pub metric: u32,
    pub metrics: RouteMetrics,
    /// RTA_MULTIPATH's `rtnexthop`s.
    pub nexthops: Vec<RawNextHop>,
}

/// One `rtnexthop` of a multipath route and its gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RawNextHop {
    /// `RTNH_F_*`.
    pub flags: u8,
    /// The weight less one.
    pub hops: u8,
    pub ifindex: u32,
    pub via: Option<IpAddr>,
}

const RTM_NEWROUTE: u16 = 24;
/// `rtmsg`'s length: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
const RTMSG_LEN: usize = 12;
/// `rtnexthop`'s length: len, flags, hops, ifindex.
const RTNH_LEN: usize = 8;
const AF_INET: u8 = 2;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;

const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
const RTAX_INITCWND: u16 = 11;
const RTAX_INITRWND: u16 = 14;

const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTN_BLACKHOLE: u8 = 6;
const RTN_UNREACHABLE: u8 = 7;
const RTN_PROHIBIT: u8 = 8;
const RTN_THROW: u8 = 9;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RTM_F_CLONED: u32 = 0x200;
const RTNH_F_ONLINK: u8 = 4;

/// Decodes an `RTM_NEWROUTE` payload (`rtmsg` and attributes) into what [`route_of_message`]
/// reads from netlink_packet_route's `RouteMessage`, walking only those attributes. `None` for
/// a family other than IPv4 and IPv6 (netcfg reads no other), and for a message
/// netlink_packet_route would have refused (its dump then skipped it): a header cut short, an
/// attribute netcfg reads whose value has the wrong size, a walk that ends at a malformed
/// attribute; and for one with two RTA_OIF. Never a part of a route taken for the whole.
pub fn decode_route(p: &[u8]) -> Option<RawRoute> {
    let h = p.get(..RTMSG_LEN)?;
    let family = h[0];
    let ip = match family {
        AF_INET => ipv4_of,
        AF_INET6 => ipv6_of,
        _ => return None,
    };
    let mut r = RawRoute {
        family,
        dst_len: h[1],
        table: u32::from(h[4]),
        protocol: h[5],
        scope: h[6],
        kind: h[7],
        flags: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
        ..RawRoute::default()
    };
    let mut walk = wire::attrs(&p[RTMSG_LEN..]);
    for a in &mut walk {
        let v = a.value;
        match a.kind {
            RTA_TABLE => r.table = wire::u32_of(v)?,
            RTA_DST => r.dst = Some(ip(v)?),
            RTA_GATEWAY => r.via = Some(ip(v)?),
            // The kernel writes one; of two, netlink_packet_route's reader took the last unless
            // the first named a link the dump lacks. Such a route is left out.
            RTA_OIF if r.oif.is_some() => return None,
            RTA_OIF => r.oif = Some(wire::u32_of(v)?),
            RTA_PREFSRC => r.src = Some(ip(v)?),
            RTA_PRIORITY => r.metric = wire::u32_of(v)?,
            RTA_METRICS => decode_route_metrics(&mut r.metrics, v)?,
            RTA_MULTIPATH => decode_nexthops(&mut r.nexthops, v, ip)?,
            _ => {}
        }
    }
    walk.ended_whole().then_some(r)
}

fn ipv4_of(v: &[u8]) -> Option<IpAddr> {
    let b: [u8; 4] = v.try_into().ok()?;
    Some(IpAddr::from(b))
}

fn ipv6_of(v: &[u8]) -> Option<IpAddr> {
    let b: [u8; 16] = v.try_into().ok()?;
    Some(IpAddr::from(b))
}

/// RTA_METRICS: the four netcfg sets.
fn decode_route_metrics(m: &mut RouteMetrics, v: &[u8]) -> Option<()> {
    let mut walk = wire::attrs(v);
    for a in &mut walk {
        let field = match a.kind {
            RTAX_MTU => &mut m.mtu,
            RTAX_ADVMSS => &mut m.advmss,
            RTAX_INITCWND => &mut m.initcwnd,
            RTAX_INITRWND => &mut m.initrwnd,
            _ => continue,
        };
        *field = Some(wire::u32_of(a.value)?);
    }
    walk.ended_whole().then_some(())
}

/// RTA_MULTIPATH: `rtnexthop`s one after the other, each with its attributes; a hop's gateway
/// is its first RTA_GATEWAY.
fn decode_nexthops(out: &mut Vec<RawNextHop>, mut v: &[u8], ip: fn(&[u8]) -> Option<IpAddr>) -> Option<()> {
    while !v.is_empty() {
        let h = v.get(..RTNH_LEN)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        if len < RTNH_LEN || len > v.len() {
            return None;
        }
        let mut hop =
            RawNextHop { flags: h[2], hops: h[3], ifindex: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]), via: None };
        let mut walk = wire::attrs(&v[RTNH_LEN..len]);
        for a in &mut walk {
            if a.kind == RTA_GATEWAY {
                let g = ip(a.value)?;
                hop.via = hop.via.or(Some(g));
            }
        }
        if !walk.ended_whole() {
            return None;
        }
        out.push(hop);
        v = v.get(wire::align(len)..).unwrap_or(&[]);
    }
    Some(())
}

/// The routes netcfg reads of a dump (see [`route_key`]), by key: a stable sort, so of
/// routes with one key the dump's first comes first. Runs where the dump is read (its own
/// thread when read ahead), so that [`routes_state`] builds the map in one go.
pub fn keyed_routes(raw: Vec<RawRoute>) -> Vec<(RouteKey, RawRoute)> {
    let mut routes: Vec<(RouteKey, RawRoute)> = raw.into_iter().filter_map(|r| Some((route_key(&r)?, r))).collect();
    routes.sort_by_key(|(k, _)| *k);
    routes
}

/// A namespace's routes from [`keyed_routes`], their links named by `name_of`: of routes with
/// one key, the first whose links the dump of links has (as inserting them one by one in the
/// dump's order, keeping the first, did). Built from sorted keys, without a search per route
/// (those searches were most of the routes' share of a live read of 10,000).
pub fn routes_state(routes: &[(RouteKey, RawRoute)], name_of: &NameOf) -> BTreeMap<RouteKey, Route> {
    let mut taken: Vec<(RouteKey, Route)> = Vec::with_capacity(routes.len());
    for (key, r) in routes {
        if taken.last().is_some_and(|(k, _)| k == key) {
            continue;
        }
        if let Some(route) = route_named(r, name_of) {
            taken.push((*key, route));
        }
    }
    taken.into_iter().collect()
}

/// netcfg's route from a dumped one, its links named by `name_of`: [`route_key`] and
/// [`route_named`] at once.
pub fn route_of(r: &RawRoute, name_of: &NameOf) -> Option<(RouteKey, Route)> {
    Some((route_key(r)?, route_named(r, name_of)?))
}

fn route_type_of(kind: u8) -> Option<RouteType> {
    Some(match kind {
        RTN_UNICAST => RouteType::Unicast,
        RTN_BLACKHOLE => RouteType::Blackhole,
        RTN_UNREACHABLE => RouteType::Unreachable,
        RTN_PROHIBIT => RouteType::Prohibit,
        RTN_THROW => RouteType::Throw,
        RTN_LOCAL => RouteType::Local,
        _ => return None,
    })
}

/// The key of a dumped route netcfg reads; `None` for what it does not read: a cached clone, a
/// type netcfg does not make (broadcast, multicast…), the kernel's own entries of the local
/// table (addresses, broadcasts; local routes someone added are read).
pub fn route_key(r: &RawRoute) -> Option<RouteKey> {
    if r.flags & RTM_F_CLONED != 0 || route_type_of(r.kind).is_none() {
        return None;
    }
    if r.table == 255 && r.protocol == PROTO_KERNEL {
        return None;
    }
    let dst = match (r.dst, r.family) {
        (Some(d), _) => d,
        (None, AF_INET) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, AF_INET6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    Some(RouteKey::new(r.table, IpNet::new(dst, r.dst_len).ok()?, r.metric))
}

/// The route of a dumped one, its links named by `name_of`; `None` for a type netcfg does not
/// read, or a route through a link the dump of links lacks.
fn route_named(r: &RawRoute, name_of: &NameOf) -> Option<Route> {
    let dev = match r.oif {
        Some(i) => Some(name_of.get(&i)?.to_string()),
        None => None,
    };
    let mut nexthops = Vec::with_capacity(r.nexthops.len());
    for hop in &r.nexthops {
        nexthops.push(NextHop {
            via: hop.via,
            dev: Some(name_of.get(&hop.ifindex)?.to_string()),
            weight: u32::from(hop.hops) + 1,
            onlink: hop.flags & RTNH_F_ONLINK != 0,
        });
    }
    let scope = match r.scope {
        RT_SCOPE_LINK => RouteScope::Link,
        RT_SCOPE_HOST => RouteScope::Host,
        _ => RouteScope::Global,
    };
    Some(Route {
        via: r.via,
        dev,
        src: r.src,
        scope,
        onlink: r.flags & u32::from(RTNH_F_ONLINK) != 0,
        route_type: route_type_of(r.kind)?,
        protocol: r.protocol,
        metrics: r.metrics,
        nexthops,
    })
}

/// A policy rule as netcfg models it, with its protocol; `None` for a rule with a match or
/// action netcfg does not model (tos, uid range, tunnel id, `not`, `nop`…): such a rule is
/// left out of the live state, so netcfg neither compares, removes nor restores it.
fn parse_rule(r: &RuleMessage) -> Option<(Rule, u8)> {
    let h = &r.header;
    let v6 = match h.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    if h.tos != 0 || h.flags.contains(RuleFlags::Invert) {
        return None;
    }
    let mut rule = Rule {
        v6,
        priority: 0,
        from: None,
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        ipproto: None,
        sport: None,
        dport: None,
        suppress_prefixlength: None,
        action: RuleAction::Lookup(u32::from(h.table)),
    };
    let (mut table, mut goto, mut l3mdev, mut protocol) = (u32::from(h.table), None, false, 0u8);
    let (mut mark, mut mask) = (None, None);
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(ip) => rule.from = IpNet::new(*ip, h.src_len).ok(),
            RuleAttribute::Destination(ip) => rule.to = IpNet::new(*ip, h.dst_len).ok(),
            RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => rule.oif = Some(n.clone()),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::IpProtocol(p) => rule.ipproto = Some(u8::from(*p)),
            RuleAttribute::SourcePortRange(p) => rule.sport = Some((p.start, p.end)),
            RuleAttribute::DestinationPortRange(p) => rule.dport = Some((p.start, p.end)),
            RuleAttribute::SuppressPrefixLen(p) if *p != u32::MAX => rule.suppress_prefixlength = Some(*p),
            RuleAttribute::SuppressPrefixLen(_) | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Goto(g) => goto = Some(*g),
            RuleAttribute::L3MDev(l) => l3mdev = *l,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            // Matches netcfg does not model (uid range, tunnel id, realm, interface groups).
            RuleAttribute::UidRange(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::Realm(_)
            | RuleAttribute::SuppressIfGroup(_) => return None,
            _ => {}
        }
    }
    if mark.is_some() || mask.is_some() {
        rule.fwmark = Some((mark.unwrap_or(0), mask.unwrap_or(u32::MAX)));
    }
    rule.action = match h.action {
        NlRuleAction::ToTable if l3mdev => RuleAction::L3mdev,
        NlRuleAction::ToTable => RuleAction::Lookup(table),
        NlRuleAction::Goto => RuleAction::Goto(goto?),
        NlRuleAction::Blackhole => RuleAction::Blackhole,
        NlRuleAction::Unreachable => RuleAction::Unreachable,
        NlRuleAction::Prohibit => RuleAction::Prohibit,
        _ => return None,
    };
    Some((rule, protocol))
}

#[cfg(test)]
mod decode_tests {
    //! [`decode_link`] against [`raw_link`] on messages encoded by netlink_packet_route: the
    //! kinds this machine's kernel cannot make (vlan, bond, vrf), whose data goes through the
    //! fallback, and a bridge and a bridge port, whose settings the decoder reads itself.
    //! `backends/tests/link_decode.rs` compares the two on real dumps.

    use super::*;
    use rtnetlink::packet_core::{Emitable, Parseable};
    use rtnetlink::packet_route::link::{
        AfSpecInet, BondMode, InfoBond, InfoPortKind, InfoVlan, InfoVrf, VlanProtocol,
    };

    fn encode(m: &LinkMessage) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    fn link(kind: InfoKind, mut infos: Vec<LinkInfo>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::Promisc;
        infos.insert(0, LinkInfo::Kind(kind));
        m.attributes = vec![
            LinkAttribute::IfName("x0".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::TxQueueLen(77),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Group(28259),
            LinkAttribute::Link(3),
            LinkAttribute::LinkNetNsId(1),
            LinkAttribute::AfSpecUnspec(vec![
                AfSpecUnspec::Inet(vec![AfSpecInet::Other(rtnetlink::packet_core::DefaultNla::new(1, vec![0; 8]))]),
                AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)]),
            ]),
            LinkAttribute::LinkInfo(infos),
        ];
        m
    }

    /// Both decodings of `m`'s bytes, the reference parsed back from them as a dump's would be.
    fn both(m: &LinkMessage) -> (RawLink, RawLink) {
        let bytes = encode(m);
        let parsed = LinkMessage::parse(bytes.as_slice()).unwrap();
        (decode_link(&bytes).unwrap(), raw_link(&parsed))
    }

    #[test]
    fn kinds_with_data_of_their_own_are_decoded_by_the_fallback_alike() {
        let vlan = InfoData::Vlan(vec![InfoVlan::Id(42), InfoVlan::Protocol(VlanProtocol::Ieee8021Ad)]);
        let bond = InfoData::Bond(vec![InfoBond::Mode(BondMode::ActiveBackup), InfoBond::MiiMon(100)]);
        let vrf = InfoData::Vrf(vec![InfoVrf::TableId(10)]);
        for (kind, data) in [(InfoKind::Vlan, vlan), (InfoKind::Bond, bond), (InfoKind::Vrf, vrf)] {
            let (light, reference) = both(&link(kind.clone(), vec![LinkInfo::Data(data.clone())]));
            assert_eq!(light, reference, "{kind}");
            assert_eq!(light.data, Some(data), "{kind}");
            assert_eq!(light.kind.as_deref(), Some(kind.to_string().as_str()));
            assert_eq!((light.addrgen_none, light.link, light.link_other_ns), (Some(true), Some(3), true));
        }
    }

    #[test]
    fn a_bridge_and_a_bridge_port_are_read_alike() {
        let bridge = InfoData::Bridge(vec![
            InfoBridge::ForwardDelay(800),
            InfoBridge::HelloTime(200),
            InfoBridge::AgeingTime(1000),
            InfoBridge::StpState(BridgeStpState::KernelStp),
            InfoBridge::Priority(100),
            InfoBridge::VlanFiltering(true),
            InfoBridge::MulticastSnooping(false),
            InfoBridge::NfCallIpTables(true),
            InfoBridge::VlanDefaultPvid(5),
        ]);
        let (light, reference) = both(&link(InfoKind::Bridge, vec![LinkInfo::Data(bridge)]));
        assert_eq!(light, reference);
        assert_eq!(light.bridge.default_pvid, Some(5));
        assert_eq!(light.nf_call_iptables, Some(true));
        assert_eq!(light.data, None);
        let port = vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::State(rtnetlink::packet_route::link::BridgePortState::Forwarding),
                InfoBridgePort::Priority(9),
                InfoBridgePort::Cost(7),
                InfoBridgePort::HairpinMode(true),
                InfoBridgePort::Guard(false),
            ])),
        ];
        let (light, reference) = both(&link(InfoKind::Veth, port));
        assert_eq!(light, reference);
        assert_eq!((light.hairpin, light.port.cost, light.port.priority), (Some(true), Some(7), Some(9)));
    }

    #[test]
    fn a_truncated_or_corrupted_message_does_not_panic() {
        let vlan = InfoData::Vlan(vec![InfoVlan::Id(42)]);
        let bytes = encode(&link(InfoKind::Vlan, vec![LinkInfo::Data(vlan)]));
        assert_eq!(decode_link(&bytes[..15]), None);
        for cut in 16..bytes.len() {
            decode_link(&bytes[..cut]).expect("a header");
        }
        for at in 16..bytes.len() {
            for v in [0u8, 1, 3, 0xff] {
                let mut b = bytes.clone();
                b[at] = v;
                decode_link(&b).expect("a header");
            }
        }
    }
}

#[cfg(test)]
mod route_decode_tests {
    //! [`decode_route`] then [`route_of`] against [`route_of_message`] on routes encoded by
    //! netlink_packet_route, then every cut and many overwritten bytes of them.
    //! `backends/tests/route_decode.rs` compares the two on real dumps.

    use super::*;
    use rtnetlink::packet_core::{Emitable, Parseable};
    use rtnetlink::packet_route::route::{RouteNextHop, RouteProtocol, RouteVia};

    fn encode(m: &RouteMessage) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    fn names() -> NameOf<'static> {
        [(2, "eth0"), (3, "br0"), (4, "va0")].into_iter().collect()
    }

    fn route(family: AddressFamily, kind: NlType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = if family == AddressFamily::Inet { 24 } else { 64 };
        m.header.table = 254;
        m.header.protocol = RouteProtocol::from(110);
        m.header.kind = kind;
        m.attributes = attributes;
        m
    }

    fn v4(s: &str) -> RouteAddress {
        RouteAddress::Inet(s.parse().unwrap())
    }

    fn v6(s: &str) -> RouteAddress {
        RouteAddress::Inet6(s.parse().unwrap())
    }

    fn hop(index: u32, hops: u8, onlink: bool, via: Option<RouteAddress>) -> RouteNextHop {
        let mut h = RouteNextHop::default();
        h.interface_index = index;
        h.hops = hops;
        if onlink {
            h.flags |= RouteNextHopFlags::Onlink;
        }
        h.attributes.extend(via.map(RouteAttribute::Gateway));
        h
    }

    /// Routes of the shapes netcfg reads, and some it leaves out.
    fn samples() -> Vec<RouteMessage> {
        use AddressFamily::{Inet, Inet6};
        let metrics = RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(1400),
            RouteMetric::Hoplimit(9),
            RouteMetric::Advmss(1360),
            RouteMetric::InitCwnd(10),
            RouteMetric::InitRwnd(20),
        ]);
        let mut out = vec![
            route(
                Inet,
                NlType::Unicast,
                vec![
                    RouteAttribute::Table(254),
                    RouteAttribute::Destination(v4("10.1.2.0")),
                    RouteAttribute::Gateway(v4("10.0.0.1")),
                    RouteAttribute::Oif(2),
                    RouteAttribute::PrefSource(v4("10.0.0.2")),
                    RouteAttribute::Priority(50),
                    metrics.clone(),
                ],
            ),
            route(
                Inet,
                NlType::Unicast,
                vec![
                    RouteAttribute::Table(1000),
                    RouteAttribute::Destination(v4("10.9.0.0")),
                    RouteAttribute::MultiPath(vec![
                        hop(2, 0, false, Some(v4("10.0.0.1"))),
                        hop(3, 4, true, Some(v4("192.0.2.1"))),
                        hop(4, 255, false, None),
                    ]),
                ],
            ),
            route(
                Inet6,
                NlType::Unicast,
                vec![
                    RouteAttribute::Table(254),
                    RouteAttribute::Destination(v6("2001:db8:1::")),
                    RouteAttribute::Priority(1024),
                    RouteAttribute::Gateway(v6("fe80::1")),
                    RouteAttribute::Oif(3),
                    RouteAttribute::Preference(rtnetlink::packet_route::route::RoutePreference::Medium),
                    RouteAttribute::Mark(7),
                    metrics,
                ],
            ),
            route(
                Inet6,
                NlType::Unicast,
                vec![
                    RouteAttribute::Table(7),
                    RouteAttribute::Destination(v6("2001:db8:9::")),
                    RouteAttribute::MultiPath(vec![
                        hop(2, 1, false, Some(v6("fe80::1"))),
                        hop(3, 0, true, Some(v6("2001:db8::1"))),
                    ]),
                ],
            ),
            // A default route (no RTA_DST), an IPv4 route through an IPv6 gateway (RTA_VIA).
            route(Inet, NlType::Unicast, vec![RouteAttribute::Gateway(v4("10.0.0.1")), RouteAttribute::Oif(2)]),
            route(
                Inet,
                NlType::Unicast,
                vec![
                    RouteAttribute::Destination(v4("10.3.0.0")),
                    RouteAttribute::Via(RouteVia::Inet6("fe80::1".parse().unwrap())),
                    RouteAttribute::Oif(2),
                ],
            ),
            route(Inet, NlType::BlackHole, vec![RouteAttribute::Destination(v4("10.66.0.0"))]),
            route(Inet6, NlType::Unreachable, vec![RouteAttribute::Destination(v6("2001:db8:66::"))]),
            route(Inet, NlType::Prohibit, vec![RouteAttribute::Table(100)]),
            route(Inet, NlType::Throw, vec![RouteAttribute::Destination(v4("10.7.0.0"))]),
            route(Inet, NlType::Local, vec![RouteAttribute::Table(255), RouteAttribute::Destination(v4("10.8.0.0"))]),
            // Left out: broadcast, a link the dump of links lacks, a hop through one.
            route(Inet, NlType::Broadcast, vec![RouteAttribute::Destination(v4("10.1.2.255"))]),
            route(Inet, NlType::Unicast, vec![RouteAttribute::Oif(99)]),
            route(Inet, NlType::Unicast, vec![RouteAttribute::MultiPath(vec![hop(99, 0, false, None)])]),
        ];
        // Onlink, link and host scope; a cached clone; the kernel's own local entry.
        let mut onlink = route(Inet, NlType::Unicast, vec![RouteAttribute::Gateway(v4("192.0.2.1"))]);
        onlink.header.flags |= RouteFlags::Onlink;
        onlink.header.scope = NlScope::Link;
        let mut host = route(Inet, NlType::Local, vec![RouteAttribute::Destination(v4("10.0.0.9"))]);
        host.header.scope = NlScope::Host;
        host.header.destination_prefix_length = 32;
        let mut cloned = route(Inet6, NlType::Unicast, vec![RouteAttribute::Destination(v6("2001:db8::"))]);
        cloned.header.flags |= RouteFlags::Cloned;
        let mut kernel = route(Inet, NlType::Local, vec![RouteAttribute::Table(255)]);
        kernel.header.protocol = RouteProtocol::Kernel;
        out.extend([onlink, host, cloned, kernel]);
        out
    }

    fn reference(bytes: &[u8]) -> Option<Option<(RouteKey, Route)>> {
        let m = RouteMessage::parse(bytes).ok()?;
        Some(route_of_message(&m, &names()))
    }

    #[test]
    fn routes_of_every_shape_decode_as_netlink_packet_route_decodes_them() {
        let mut read = 0;
        for m in samples() {
            let bytes = encode(&m);
            let want = reference(&bytes).expect("netlink_packet_route parses what it encoded");
            let got = decode_route(&bytes).and_then(|r| route_of(&r, &names()));
            assert_eq!(got, want, "{m:?}");
            read += usize::from(got.is_some());
        }
        // The comparisons above were not all between two `None`s.
        assert_eq!(read, 13);
        let mut twice = samples()[0].clone();
        twice.attributes.push(RouteAttribute::Oif(3));
        assert_eq!(decode_route(&encode(&twice)), None);
        let multipath = decode_route(&encode(&samples()[1])).unwrap();
        assert_eq!((multipath.table, multipath.nexthops.len()), (1000, 3));
        assert!(multipath.nexthops[1].flags & RTNH_F_ONLINK != 0);
    }

    #[test]
    fn of_routes_with_one_key_the_first_whose_links_are_named_is_kept_as_before() {
        let through = |oif: u32| {
            let mut m = samples()[0].clone();
            for a in m.attributes.iter_mut() {
                if let RouteAttribute::Oif(i) = a {
                    *i = oif;
                }
            }
            m
        };
        // Reversed: one through a link the dump lacks (left out), then through br0 (kept), va0
        // and eth0 (the sample's own), among routes of other keys; the same again at the end.
        let mut messages = samples();
        messages.splice(1..1, [through(4), through(3), through(99)]);
        messages.reverse();
        messages.extend([through(99), through(3), through(4)]);
        let mut reference = BTreeMap::new();
        let mut raw = Vec::new();
        for m in &messages {
            if let Some((k, r)) = route_of_message(m, &names()) {
                reference.entry(k).or_insert(r);
            }
            raw.extend(decode_route(&encode(m)));
        }
        let state = routes_state(&keyed_routes(raw), &names());
        assert_eq!(state, reference);
        let (key, _) = route_of(&decode_route(&encode(&through(3))).unwrap(), &names()).unwrap();
        assert_eq!(state[&key].dev.as_deref(), Some("br0"));
    }

    #[test]
    fn a_truncated_or_corrupted_route_does_not_panic_and_is_never_read_in_part() {
        for m in samples() {
            let bytes = encode(&m);
            for cut in 0..bytes.len() {
                // A cut inside an attribute leaves the message out; a cut between two reads a
                // shorter message, as netlink_packet_route does.
                let got = decode_route(&bytes[..cut]).and_then(|r| route_of(&r, &names()));
                if let Some(want) = reference(&bytes[..cut]) {
                    assert_eq!(got, want, "{m:?} cut at {cut}");
                } else {
                    assert_eq!(got, None, "{m:?} cut at {cut}");
                }
            }
            for at in 0..bytes.len() {
                for v in [0u8, 1, 3, 4, 7, 0x80, 0xff] {
                    let mut b = bytes.clone();
                    b[at] = v;
                    let got = decode_route(&b).and_then(|r| route_of(&r, &names()));
                    if let Some(want) = reference(&b) {
                        assert_eq!(got, want, "{m:?} byte {at} = {v}");
                    }
                }
            }
        }
    }
}
