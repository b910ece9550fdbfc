//! The network state netcfg manages, in one shape for the desired state (built from the IR) and
//! the live state (dumped from the kernel), so that the diff and `verify` compare like with like.
//! A `None` in a desired attribute means "the spec does not say": any live value satisfies it.
//!
//! Ownership marks: links netcfg creates carry the link group [`NETCFG_GROUP`]; routes, policy
//! rules and static neighbours netcfg installs carry the protocol [`NETCFG_PROTO`]. Nothing without a mark
//! is ever deleted unless the spec declares the object it belongs to. Existing links netcfg
//! moved into a namespace are marked by a file (see `namespaces`), read into `Live::moved`.

use ipnet::IpNet;
use netcfg_lang::ast::{BridgeOptions, PortOptions};
use netcfg_lang::links::{describe_vlans, Vlans};
use netcfg_lang::value::Mac;
use netcfg_lang::vocab::{MacvlanMode, RouteScope, RouteType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The link group of every link netcfg creates (`ip link show group 28259`).
pub const NETCFG_GROUP: u32 = 0x6e63;
/// The route (rule, neighbour) protocol of everything netcfg installs (`ip route show proto 110`,
/// `ip rule show protocol 110`).
pub const NETCFG_PROTO: u8 = 110;

/// The name of a namespace inside a node: `@host` or the `netns` name of the spec.
pub type NsName = String;
pub const HOST: &str = netcfg_lang::vocab::NetnsName::HOST;

/// A link in some namespace of the node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkRef {
    pub ns: NsName,
    pub name: String,
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.ns)
    }
}

/// The whole node: every namespace netcfg manages, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub namespaces: BTreeMap<NsName, NsState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsState {
    pub links: BTreeMap<String, Link>,
    /// Key: (link name, address with its prefix length).
    #[serde(with = "pairs")]
    pub addresses: BTreeMap<(String, IpNet), Address>,
    #[serde(with = "pairs")]
    pub routes: BTreeMap<RouteKey, Route>,
    /// Key: (link name, IP). Live: permanent entries only.
    /// Policy rules, by everything the kernel compares; value: the rule's protocol. Live: the
    /// rules netcfg can read whole (see `live`), the kernel's own included.
    #[serde(with = "pairs", default)]
    pub rules: BTreeMap<Rule, u8>,
    #[serde(with = "pairs")]
    pub neighbors: BTreeMap<(String, IpAddr), Neighbor>,
    /// Key: the dotted sysctl path; value with whitespace normalised.
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkKind {
    Loopback,
    /// A device netcfg neither creates nor deletes (a NIC). Live: any kind netcfg does not
    /// create, with the kernel's kind name if it has one.
    Existing {
        kind: Option<String>,
    },
    Bridge,
    /// `peer` is `None` live when the other end is in a namespace netcfg did not read.
    Veth {
        peer: Option<LinkRef>,
    },
    Vxlan(Vxlan),
    /// The parent lives in the host namespace (the language resolves it there).
    Macvlan {
        parent: Option<LinkRef>,
        #[serde(with = "MacvlanModeDef")]
        mode: MacvlanMode,
    },
    Dummy,
    Vlan(Vlan),
    Bond(Bond),
    Vrf {
        table: u32,
    },
    Ipvlan {
        parent: Option<LinkRef>,
        mode: IpvlanMode,
    },
    Tunnel(Tunnel),
    Wireguard(Wireguard),
}

impl LinkKind {
    pub fn keyword(&self) -> &str {
        match self {
            LinkKind::Loopback => "loopback",
            LinkKind::Existing { kind: Some(k) } => k,
            LinkKind::Existing { kind: None } => "ethernet",
            LinkKind::Bridge => "bridge",
            LinkKind::Veth { .. } => "veth",
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Dummy => "dummy",
            LinkKind::Vlan(_) => "vlan",
            LinkKind::Bond(_) => "bond",
            LinkKind::Vrf { .. } => "vrf",
            LinkKind::Ipvlan { .. } => "ipvlan",
            LinkKind::Tunnel(t) => t.kind.keyword(),
            LinkKind::Wireguard(_) => "wireguard",
        }
    }

    /// Whether netcfg creates (and so may delete) links of this kind.
    pub fn is_created(&self) -> bool {
        !matches!(self, LinkKind::Loopback | LinkKind::Existing { .. })
    }
}

pub use super::kinds::bond::Bond;
pub use super::kinds::tunnel::Tunnel;
pub use super::kinds::vlan::Vlan;
pub use super::kinds::vxlan::Vxlan;
pub use super::kinds::wireguard::Wireguard;
use netcfg_lang::links::IpvlanMode;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    #[serde(with = "opt_mac")]
    pub mac: Option<Mac>,
    /// The bridge this link is a port of; `None` is "no master" (the spec is authoritative).
    pub master: Option<String>,
    /// Bridge port hairpin mode; only meaningful with a master.
    pub hairpin: Option<bool>,
    /// Bridge `nf_call_iptables`.
    pub nf_call_iptables: Option<bool>,
    pub up: bool,
    /// IPv6 address generation off (`addrgenmode none`): netcfg sets it on the links it creates
    /// that the spec gives no IPv6 address, which makes creating them ~50x cheaper.
    pub addrgen_none: Option<bool>,
    /// `promisc`, `arp`, `txqueuelen`.
    #[serde(default)]
    pub opts: Opts,
    /// Whether the link carries netcfg's group (desired: whether netcfg creates it).
    pub owned: bool,
    /// The MAC that identifies the device. Live: its permanent MAC, or else its current one.
    /// Desired: the MAC an existing link is found (and renamed) by when no link has its name
    /// (`match-mac`; a snapshot's links, so that a rollback renames them back). Not a setting.
    #[serde(default, with = "opt_mac")]
    pub ident: Option<Mac>,
}

/// Link settings that only matter when the spec names them (desired `None`: leave alone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opts {
    pub promisc: Option<bool>,
    pub arp: Option<bool>,
    pub txqueuelen: Option<u32>,
    /// A bridge's own settings.
    #[serde(default)]
    pub bridge: BridgeOptions,
    /// Settings as a bridge port.
    #[serde(default)]
    pub port: PortOptions,
    /// On a VLAN-filtering bridge: the VLANs of a port, or of the bridge itself. Live: read for
    /// every port and bridge; a change adds and removes VLANs in place.
    #[serde(default)]
    pub vlans: Option<Vlans>,
    /// Desired only: another agent adds addresses to the link (`dhcp`), so netcfg removes
    /// none it did not declare, even on a link it created. Not a kernel setting: never changed.
    #[serde(default)]
    pub dhcp: bool,
}

impl Opts {
    /// The settings `desired` gives that `live` differs in (`None`: leave alone).
    pub fn changes(desired: &Opts, live: &Opts) -> Opts {
        fn want<T: PartialEq + Copy>(d: Option<T>, l: Option<T>) -> Option<T> {
            d.filter(|v| Some(*v) != l)
        }
        let (db, lb, dp, lp) = (&desired.bridge, &live.bridge, &desired.port, &live.port);
        Opts {
            promisc: want(desired.promisc, live.promisc),
            arp: want(desired.arp, live.arp),
            txqueuelen: want(desired.txqueuelen, live.txqueuelen),
            bridge: BridgeOptions {
                stp: want(db.stp, lb.stp),
                forward_delay: want(db.forward_delay, lb.forward_delay),
                ageing: want(db.ageing, lb.ageing),
                priority: want(db.priority, lb.priority),
                vlan_filtering: want(db.vlan_filtering, lb.vlan_filtering),
                default_pvid: want(db.default_pvid, lb.default_pvid),
                multicast_snooping: want(db.multicast_snooping, lb.multicast_snooping),
            },
            port: PortOptions { cost: want(dp.cost, lp.cost), priority: want(dp.priority, lp.priority) },
            vlans: desired.vlans.clone().filter(|v| Some(v) != live.vlans.as_ref()),
            dhcp: false,
        }
    }

    /// The values of `live` for the settings `changes` has: what an inverse restores.
    pub fn current(changes: &Opts, live: &Opts) -> Opts {
        fn had<T: Copy>(c: Option<T>, l: Option<T>) -> Option<T> {
            c.and(l)
        }
        let (cb, lb, cp, lp) = (&changes.bridge, &live.bridge, &changes.port, &live.port);
        Opts {
            promisc: had(changes.promisc, live.promisc),
            arp: had(changes.arp, live.arp),
            txqueuelen: had(changes.txqueuelen, live.txqueuelen),
            bridge: BridgeOptions {
                stp: had(cb.stp, lb.stp),
                forward_delay: had(cb.forward_delay, lb.forward_delay),
                ageing: had(cb.ageing, lb.ageing),
                priority: had(cb.priority, lb.priority),
                vlan_filtering: had(cb.vlan_filtering, lb.vlan_filtering),
                default_pvid: had(cb.default_pvid, lb.default_pvid),
                multicast_snooping: had(cb.multicast_snooping, lb.multicast_snooping),
            },
            port: PortOptions { cost: had(cp.cost, lp.cost), priority: had(cp.priority, lp.priority) },
            vlans: changes.vlans.as_ref().and(live.vlans.clone()),
            dhcp: false,
        }
    }

    /// Each setting given, as `(name, value)` in the language's words (times in seconds).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let secs = |cs: u32| {
            if cs.is_multiple_of(100) {
                format!("{}s", cs / 100)
            } else {
                format!("{}.{:02}s", cs / 100, cs % 100)
            }
        };
        let (b, p) = (&self.bridge, &self.port);
        let mut out = Vec::new();
        let mut push = |name, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        push("promisc", self.promisc.map(|v| v.to_string()));
        push("arp", self.arp.map(|v| v.to_string()));
        push("txqueuelen", self.txqueuelen.map(|v| v.to_string()));
        push("stp", b.stp.map(|v| v.to_string()));
        push("forward-delay", b.forward_delay.map(secs));
        push("ageing", b.ageing.map(secs));
        push("priority", b.priority.map(|v| v.to_string()));
        push("vlan-filtering", b.vlan_filtering.map(|v| v.to_string()));
        push("default-pvid", b.default_pvid.map(|v| v.to_string()));
        push("multicast-snooping", b.multicast_snooping.map(|v| v.to_string()));
        push("port-cost", p.cost.map(|v| v.to_string()));
        push("port-priority", p.priority.map(|v| v.to_string()));
        push("vlans", self.vlans.as_ref().map(describe_vlans));
        out
    }

    /// `s` applied over `self`.
    pub fn apply(&mut self, s: &Opts) {
        fn set<T: Copy>(slot: &mut Option<T>, v: Option<T>) {
            if v.is_some() {
                *slot = v;
            }
        }
        set(&mut self.promisc, s.promisc);
        set(&mut self.arp, s.arp);
        set(&mut self.txqueuelen, s.txqueuelen);
        let (b, sb) = (&mut self.bridge, &s.bridge);
        set(&mut b.stp, sb.stp);
        set(&mut b.forward_delay, sb.forward_delay);
        set(&mut b.ageing, sb.ageing);
        set(&mut b.priority, sb.priority);
        set(&mut b.vlan_filtering, sb.vlan_filtering);
        set(&mut b.default_pvid, sb.default_pvid);
        set(&mut b.multicast_snooping, sb.multicast_snooping);
        set(&mut self.port.cost, s.port.cost);
        set(&mut self.port.priority, s.port.priority);
        if let Some(v) = &s.vlans {
            self.vlans = Some(v.clone());
        }
    }
}

impl Link {
    /// `lo` as the kernel makes it: down in a new namespace, up in a booted host namespace.
    pub fn loopback(up: bool) -> Link {
        Link {
            kind: LinkKind::Loopback,
            mtu: Some(65536),
            mac: None,
            master: None,
            hairpin: None,
            nf_call_iptables: None,
            up,
            addrgen_none: Some(false),
            opts: Opts::default(),
            owned: false,
            ident: None,
        }
    }

    /// The attributes netcfg can change on a live link without recreating it.
    pub fn settable(&self) -> LinkSettings {
        LinkSettings {
            mtu: self.mtu,
            mac: self.mac,
            master: Some(self.master.clone()),
            hairpin: self.hairpin,
            nf_call_iptables: self.nf_call_iptables,
            up: Some(self.up),
            addrgen_none: self.addrgen_none,
            opts: self.opts.clone(),
        }
    }
}

/// A partial set of link attributes: what a `SetLink` changes (`None` = leave alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkSettings {
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub master: Option<Option<String>>,
    pub hairpin: Option<bool>,
    pub nf_call_iptables: Option<bool>,
    pub up: Option<bool>,
    pub addrgen_none: Option<bool>,
    pub opts: Opts,
}

impl LinkSettings {
    pub fn is_empty(&self) -> bool {
        *self == LinkSettings::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `false` is `noprefixroute` (IFA_F_NOPREFIXROUTE).
    pub prefix_route: bool,
}

/// What identifies a route in the kernel: two routes with the same key cannot coexist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    pub table: u32,
    pub dst: IpNet,
    /// The effective metric (IPv6 turns 0 into 1024).
    pub metric: u32,
}

impl RouteKey {
    pub fn new(table: u32, dst: IpNet, metric: u32) -> RouteKey {
        RouteKey { table, dst: dst.trunc(), metric: netcfg_compiler::ir::kernel_metric(&dst, metric) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub via: Option<IpAddr>,
    /// `None` in the desired state: the kernel picks the link.
    pub dev: Option<String>,
    pub src: Option<IpAddr>,
    #[serde(with = "RouteScopeDef")]
    pub scope: RouteScope,
    pub onlink: bool,
    #[serde(with = "RouteTypeDef")]
    pub route_type: RouteType,
    pub protocol: u8,
    /// RTA_METRICS the spec can set.
    #[serde(default)]
    pub metrics: RouteMetrics,
    /// The paths of a multipath route (`via` and `dev` are then `None`).
    #[serde(default)]
    pub nexthops: Vec<NextHop>,
}

impl Route {
    /// Whether the route goes through `link` (its `dev` or a next hop's).
    pub fn uses_dev(&self, link: &str) -> bool {
        self.dev.as_deref() == Some(link) || self.nexthops.iter().any(|n| n.dev.as_deref() == Some(link))
    }

    /// Whether the route has a gateway (its own or a next hop's): it needs its gateways'
    /// link-scope routes first.
    pub fn has_gateway(&self) -> bool {
        self.via.is_some() || self.nexthops.iter().any(|n| n.via.is_some())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMetrics {
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub initcwnd: Option<u32>,
    pub initrwnd: Option<u32>,
}

impl RouteMetrics {
    pub fn is_empty(&self) -> bool {
        *self == RouteMetrics::default()
    }
}

/// One path of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// 1..=256.
    pub weight: u32,
    pub onlink: bool,
}

/// A policy routing rule: every attribute the kernel compares when it looks for a rule (to
/// refuse a duplicate or to delete one). The protocol is kept beside it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// Mark and mask.
    pub fwmark: Option<(u32, u32)>,
    /// IP protocol number.
    pub ipproto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub suppress_prefixlength: Option<u32>,
    pub action: RuleAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    Lookup(u32),
    L3mdev,
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// The kernel's own rules of every namespace (local 0, main 32766, default 32767): never
/// removed by a spec; a rollback finds them where they were.
pub fn is_kernel_rule(r: &Rule, protocol: u8) -> bool {
    protocol == 2
        && matches!(
            (r.priority, r.action),
            (0, RuleAction::Lookup(255)) | (32766, RuleAction::Lookup(254)) | (32767, RuleAction::Lookup(253))
        )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    #[serde(with = "mac")]
    pub mac: Mac,
    pub protocol: u8,
}

/// Whether a live route satisfies a desired one.
pub fn route_matches(desired: &Route, live: &Route) -> bool {
    desired.via == live.via
        && (desired.dev.is_none() || desired.dev == live.dev)
        && desired.src == live.src
        && desired.scope == live.scope
        && desired.onlink == live.onlink
        && desired.route_type == live.route_type
        && desired.protocol == live.protocol
        && desired.metrics == live.metrics
        && desired.nexthops.len() == live.nexthops.len()
        && (desired.nexthops.is_empty() || {
            // The kernel may list the paths of an IPv6 route in another order.
            let sorted = |v: &[NextHop]| {
                let mut v = v.to_vec();
                v.sort_by(|a, b| (a.via, &a.dev).cmp(&(b.via, &b.dev)));
                v
            };
            sorted(&desired.nexthops).iter().zip(&sorted(&live.nexthops)).all(|(d, l)| {
                d.via == l.via && (d.dev.is_none() || d.dev == l.dev) && d.weight == l.weight && d.onlink == l.onlink
            })
        })
}

/// The settings a live link must change to satisfy a desired one (empty: it does).
pub fn link_changes(desired: &Link, live: &Link) -> LinkSettings {
    fn want<T: PartialEq + Clone>(d: &Option<T>, l: &Option<T>) -> Option<T> {
        match d {
            Some(v) if d != l => Some(v.clone()),
            _ => None,
        }
    }
    let is_port = desired.master.is_some();
    LinkSettings {
        mtu: want(&desired.mtu, &live.mtu),
        mac: want(&desired.mac, &live.mac),
        master: (desired.master != live.master).then(|| desired.master.clone()),
        hairpin: if is_port { want(&desired.hairpin, &live.hairpin) } else { None },
        nf_call_iptables: want(&desired.nf_call_iptables, &live.nf_call_iptables),
        up: (desired.up != live.up).then_some(desired.up),
        addrgen_none: want(&desired.addrgen_none, &live.addrgen_none),
        opts: Opts::changes(&desired.opts, &live.opts),
    }
}

/// The live values of the settings `changes` touches: what an inverse must restore.
pub fn link_current(changes: &LinkSettings, live: &Link) -> LinkSettings {
    LinkSettings {
        mtu: changes.mtu.and(live.mtu),
        mac: changes.mac.and(live.mac),
        master: changes.master.as_ref().map(|_| live.master.clone()),
        hairpin: changes.hairpin.and(live.hairpin),
        nf_call_iptables: changes.nf_call_iptables.and(live.nf_call_iptables),
        up: changes.up.map(|_| live.up),
        addrgen_none: changes.addrgen_none.and(live.addrgen_none),
        opts: Opts::current(&changes.opts, &live.opts),
    }
}

/// Whether a live link is the same device as a desired one (else it must be recreated).
pub fn same_device(desired: &LinkKind, live: &LinkKind) -> bool {
    match (desired, live) {
        (LinkKind::Existing { .. }, k) => !matches!(k, LinkKind::Loopback),
        (LinkKind::Veth { peer: d }, LinkKind::Veth { peer: l }) => d == l,
        (LinkKind::Tunnel(d), LinkKind::Tunnel(l)) => super::kinds::tunnel::same(d, l),
        (LinkKind::Vxlan(d), LinkKind::Vxlan(l)) => super::kinds::vxlan::same(d, l),
        (LinkKind::Wireguard(d), LinkKind::Wireguard(l)) => super::kinds::wireguard::same(d, l),
        (d, l) => d == l,
    }
}

/// Sysctl values as compared: whitespace runs are one space (`net.ipv4.ip_local_port_range`).
pub fn normalize_sysctl(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Addresses the kernel puts on links by itself; netcfg neither adds nor removes them.
pub fn is_kernel_address(link: &str, net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => {
            n.addr().segments()[0] & 0xffc0 == 0xfe80
                || (link == "lo" && n.addr().is_loopback() && n.prefix_len() == 128)
        }
        IpNet::V4(n) => link == "lo" && n.addr().is_loopback() && n.prefix_len() == 8 && n.addr().octets()[3] == 1,
    }
}

/// `lo`'s own addresses (127.0.0.1/8, ::1/128): present in every namespace, never managed.
pub fn is_loopback_default(link: &str, net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => link == "lo" && n.addr().is_loopback() && n.prefix_len() == 128,
        IpNet::V4(n) => link == "lo" && n.addr().is_loopback() && n.prefix_len() == 8 && n.addr().octets()[3] == 1,
    }
}

/// An IPv6 link-local address (fe80::/10): the kernel makes one per link; netcfg adds the ones
/// the spec declares and never removes any.
pub fn is_link_local_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 == 0xfe80)
}

// Serde forms of the language's own types (the journal stores states as JSON), and maps with
// composite keys as lists of pairs (JSON object keys are strings).

#[derive(Serialize, Deserialize)]
#[serde(remote = "MacvlanMode")]
enum MacvlanModeDef {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RouteScope")]
enum RouteScopeDef {
    Global,
    Link,
    Host,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RouteType")]
enum RouteTypeDef {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Local,
}

mod mac {
    use netcfg_lang::value::Mac;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Mac, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&m.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 6];
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 6 {
            return Err(serde::de::Error::custom(format!("bad MAC `{text}`")));
        }
        for (o, p) in out.iter_mut().zip(parts) {
            *o = u8::from_str_radix(p, 16).map_err(|_| serde::de::Error::custom(format!("bad MAC `{text}`")))?;
        }
        Ok(Mac(out))
    }
}

mod opt_mac {
    use netcfg_lang::value::Mac;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => super::mac::serialize(m, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::mac")] Mac);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(m: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
