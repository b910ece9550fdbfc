//! The typed IR: names resolved to ids, values typed, templates expanded, first-class sysctls
//! (forwarding, rp-filter, bridge netfilter) lowered into each namespace's sysctl map. Every item
//! keeps the span it came from. Checks and backends read only this.

use ipnet::IpNet;
/// Marks are the language's type: the firewall sets and matches them, routing rules match them.
pub use netcfg_lang::ast::Mark;
use netcfg_lang::ast::{LinkOptions, RateLimit, SysctlValue};
pub use netcfg_lang::links::{BondMode, IpvlanMode, LacpRate, TunnelKind, VlanProtocol, XmitHashPolicy};
use netcfg_lang::rare::{Empty, Rare};
use netcfg_lang::value::{Mac, PortSet, SysctlPath};
use netcfg_lang::vocab::{
    AddrKey, ConnState, Direction, Family, LogLevel, MacvlanMode, PktType, Proto, RouteScope, RouteType, RpFilter,
    Verdict,
};
use netcfg_lang::{Span, Spanned};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub type Name = Spanned<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);
/// A namespace of one node; `NetnsId::HOST` is the node's own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsId(pub u32);
/// A link of one node (ids are per node, across all its namespaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZoneId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetId(pub u32);

impl NetnsId {
    pub const HOST: NetnsId = NetnsId(0);
}

#[derive(Clone, Debug, Default)]
pub struct Fleet {
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub name: Name,
    pub span: Span,
    /// Index = `NetnsId`; entry 0 is the host namespace.
    pub namespaces: Vec<Netns>,
    /// Index = `LinkId`.
    pub links: Vec<Link>,
}

impl Link {
    /// Whether another agent (a DHCP client, SLAAC, a cloud agent) gives the link addresses
    /// and a default route at run time (`dhcp=#true`).
    pub fn dhcp(&self) -> bool {
        self.options.dhcp.as_ref().is_some_and(|d| d.value)
    }
}

impl Node {
    pub fn netns(&self, id: NetnsId) -> &Netns {
        &self.namespaces[id.0 as usize]
    }

    pub fn link(&self, id: LinkId) -> &Link {
        &self.links[id.0 as usize]
    }

    /// The routing table of the VRF `link` is enslaved to: its connected and local routes live
    /// there, not in main.
    pub fn vrf_table(&self, link: &Link) -> Option<u32> {
        match &self.link(link.master.as_ref()?.value).kind {
            LinkKind::Vrf { table } => Some(table.value),
            _ => None,
        }
    }

    pub fn links_in(&self, ns: NetnsId) -> impl Iterator<Item = &Link> {
        self.links.iter().filter(move |l| l.netns == ns)
    }

    pub fn find_link(&self, ns: NetnsId, name: &str) -> Option<&Link> {
        self.links_in(ns).find(|l| l.name.value == name)
    }

    pub fn find_netns(&self, name: &str) -> Option<&Netns> {
        self.namespaces.iter().find(|n| n.name.as_ref().map(|n| n.value.as_str()) == Some(name))
    }

    /// `node` or `node/netns`, for messages.
    pub fn describe_netns(&self, ns: NetnsId) -> String {
        match &self.netns(ns).name {
            None => format!("node `{}`", self.name.value),
            Some(n) => format!("namespace `{}` of node `{}`", n.value, self.name.value),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Netns {
    pub id: NetnsId,
    /// `None` for the host namespace.
    pub name: Option<Name>,
    pub span: Span,
    pub routes: Vec<Route>,
    /// Policy routing rules (`ip rule`), in declaration order.
    pub rules: Vec<PolicyRule>,
    pub neighbors: Vec<Neighbor>,
    /// Every sysctl this namespace sets, first-class properties included.
    pub sysctls: BTreeMap<SysctlPath, Sysctl>,
    pub firewall: Firewall,
    pub services: Vec<Service>,
    pub masquerades: Vec<Masquerade>,
    pub snats: Vec<Snat>,
    pub redirects: Vec<Redirect>,
    pub listeners: Vec<Listener>,
    pub publishes: Vec<Publish>,
    pub netmaps: Vec<Netmap>,
    pub tproxies: Vec<Tproxy>,
}

impl Netns {
    pub fn display_name(&self) -> &str {
        self.name.as_ref().map(|n| n.value.as_str()).unwrap_or(netcfg_lang::vocab::NetnsName::HOST)
    }

    pub fn sysctl(&self, path: &SysctlPath) -> Option<&Sysctl> {
        self.sysctls.get(path)
    }

    /// The integer value of a sysctl this namespace sets.
    pub fn sysctl_int(&self, path: &SysctlPath) -> Option<i64> {
        match &self.sysctl(path)?.value {
            SysctlValue::Int(i) => Some(*i),
            SysctlValue::Str(s) => s.trim().parse().ok(),
        }
    }

    pub fn is_host(&self) -> bool {
        self.id == NetnsId::HOST
    }
}

#[derive(Clone, Debug)]
pub struct Sysctl {
    pub value: SysctlValue,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Link {
    pub id: LinkId,
    pub name: Name,
    pub netns: NetnsId,
    pub kind: LinkKind,
    pub mtu: Option<Spanned<u32>>,
    pub mac: Option<Spanned<Mac>>,
    pub up: bool,
    pub master: Option<Spanned<LinkId>>,
    pub hairpin: Option<Spanned<bool>>,
    pub rp_filter: Option<Spanned<RpFilter>>,
    /// `promisc`, `txqueuelen`, `arp`.
    pub options: LinkOptions,
    pub addresses: Vec<Address>,
    /// The declaration (for the implicit `lo`, the namespace's name).
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum LinkKind {
    /// The namespace's `lo`, always present.
    Loopback,
    /// An existing NIC: configured, never created or deleted.
    Ethernet,
    Bridge {
        netfilter: Option<Spanned<bool>>,
        options: netcfg_lang::ast::BridgeOptions,
    },
    Veth {
        peer: LinkId,
    },
    Vxlan {
        vni: Spanned<u32>,
        local: Option<Spanned<IpAddr>>,
        remote: Option<Spanned<IpAddr>>,
        group: Option<Spanned<IpAddr>>,
        dev: Option<Spanned<LinkId>>,
        port: u16,
        options: netcfg_lang::ast::VxlanOptions,
    },
    Macvlan {
        parent: Spanned<LinkId>,
        mode: MacvlanMode,
    },
    Dummy,
    Vlan {
        /// In the VLAN's namespace, or the node's host namespace.
        parent: Spanned<LinkId>,
        id: Spanned<u16>,
        protocol: VlanProtocol,
    },
    Bond(Bond),
    Vrf {
        table: Spanned<u32>,
    },
    Ipvlan {
        /// In the ipvlan's namespace, or the node's host namespace.
        parent: Spanned<LinkId>,
        mode: IpvlanMode,
    },
    Tunnel(Tunnel),
    /// Keys by file only; peers as declared.
    Wireguard(netcfg_lang::ast::WireguardDecl),
}

#[derive(Clone, Debug)]
pub struct Bond {
    pub mode: BondMode,
    pub miimon: Option<u32>,
    pub lacp_rate: Option<LacpRate>,
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    /// A port of this bond.
    pub primary: Option<Spanned<LinkId>>,
    pub min_links: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub local: Option<Spanned<IpAddr>>,
    pub remote: Spanned<IpAddr>,
    pub ttl: Option<u8>,
    pub key: Option<u32>,
    /// The underlay link, in the tunnel's namespace.
    pub dev: Option<Spanned<LinkId>>,
}

impl LinkKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            LinkKind::Loopback => "loopback",
            LinkKind::Ethernet => "ethernet",
            LinkKind::Bridge { .. } => "bridge",
            LinkKind::Veth { .. } => "veth",
            LinkKind::Vxlan { .. } => "vxlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Dummy => "dummy",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Bond(_) => "bond",
            LinkKind::Vrf { .. } => "vrf",
            LinkKind::Ipvlan { .. } => "ipvlan",
            LinkKind::Tunnel(t) => t.kind.keyword(),
            LinkKind::Wireguard(_) => "wireguard",
        }
    }

    /// The link this one sits on (`parent`, `dev`): it must exist first, and the kernel
    /// deletes this link with it.
    pub fn lower(&self) -> Option<LinkId> {
        match self {
            LinkKind::Vxlan { dev, .. } => dev.as_ref().map(|d| d.value),
            LinkKind::Macvlan { parent, .. } | LinkKind::Vlan { parent, .. } | LinkKind::Ipvlan { parent, .. } => {
                Some(parent.value)
            }
            LinkKind::Tunnel(t) => t.dev.as_ref().map(|d| d.value),
            LinkKind::Loopback
            | LinkKind::Ethernet
            | LinkKind::Bridge { .. }
            | LinkKind::Veth { .. }
            | LinkKind::Dummy
            | LinkKind::Bond(_)
            | LinkKind::Vrf { .. }
            | LinkKind::Wireguard(_) => None,
        }
    }

    /// Whether links join this one with `master`.
    pub fn is_master(&self) -> bool {
        matches!(self, LinkKind::Bridge { .. } | LinkKind::Bond(_) | LinkKind::Vrf { .. })
    }
}

#[derive(Clone, Debug)]
pub struct Address {
    /// Host address with the subnet's prefix length.
    pub net: IpNet,
    /// Whether the kernel installs the connected route for `net.trunc()`.
    pub prefix_route: bool,
    /// The address text.
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub dst: IpNet,
    pub dst_span: Span,
    pub via: Option<Spanned<IpAddr>>,
    pub dev: Option<Spanned<LinkId>>,
    pub src: Option<Spanned<IpAddr>>,
    pub metric: u32,
    /// Routing table id; 254 is `main`.
    pub table: u32,
    pub scope: RouteScope,
    pub onlink: bool,
    pub route_type: RouteType,
    pub metrics: RouteMetrics,
    /// The paths of a multipath route (then `via` and `dev` are `None`); empty otherwise.
    pub nexthops: Vec<NextHop>,
    pub span: Span,
}

impl Route {
    /// Every gateway of the route with its link: `via`/`dev`, or each next hop's.
    pub fn gateways(&self) -> impl Iterator<Item = (&Spanned<IpAddr>, Option<&Spanned<LinkId>>, bool)> + '_ {
        let single = self.via.as_ref().map(|v| (v, self.dev.as_ref(), self.onlink));
        single
            .into_iter()
            .chain(self.nexthops.iter().filter_map(|n| n.via.as_ref().map(|v| (v, n.dev.as_ref(), n.onlink))))
    }
}

/// Route attributes the kernel keeps with a route (RTA_METRICS); `None`: not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteMetrics {
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub initcwnd: Option<u32>,
    pub initrwnd: Option<u32>,
}

/// One path of a multipath route.
#[derive(Clone, Debug)]
pub struct NextHop {
    pub via: Option<Spanned<IpAddr>>,
    pub dev: Option<Spanned<LinkId>>,
    /// 1..=256; the kernel's `rtnh_hops` is this minus one.
    pub weight: u32,
    pub onlink: bool,
    pub span: Span,
}

/// What a policy rule does with a packet it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleAction {
    /// Look the destination up in this table; when it has no route (or a `throw`), go on
    /// with the next rule.
    Lookup(u32),
    /// Look it up in the table of the VRF the packet's device is enslaved to.
    L3mdev,
    /// Go on with the first rule of this priority.
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// A policy routing rule (`ip rule`) of one namespace. The kernel tries rules by priority
/// (local 0, then the spec's, main 32766, default 32767); the first that matches and whose
/// table has a route decides.
#[derive(Clone, Debug)]
pub struct PolicyRule {
    pub priority: Spanned<u32>,
    /// `None`: the rule exists for both families (it matches no address).
    pub family: Option<Family>,
    pub from: Option<Spanned<IpNet>>,
    pub to: Option<Spanned<IpNet>>,
    pub iif: Option<Spanned<LinkId>>,
    pub oif: Option<Spanned<LinkId>>,
    /// Mark and mask.
    pub fwmark: Option<(u32, u32)>,
    pub ipproto: Option<Proto>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub suppress_prefixlength: Option<u32>,
    pub action: Spanned<RuleAction>,
    pub span: Span,
}

impl PolicyRule {
    /// The families the rule is installed for.
    pub fn families(&self) -> Vec<Family> {
        match self.family {
            Some(f) => vec![f],
            None => vec![Family::Ipv4, Family::Ipv6],
        }
    }

    /// Whether the rule matches every packet to `dst` whatever its source, mark, interfaces
    /// and ports: only then does it decide for all traffic to `dst`.
    pub fn matches_all_to(&self, dst: IpAddr) -> bool {
        self.families().contains(&Family::of(dst))
            && self.to.as_ref().is_none_or(|t| t.value.contains(&dst))
            && self.from.is_none()
            && self.iif.is_none()
            && self.oif.is_none()
            && self.fwmark.is_none()
            && self.ipproto.is_none()
            && self.sport.is_none()
            && self.dport.is_none()
    }

    /// Whether some packet to `dst` can match the rule.
    pub fn may_match_to(&self, dst: IpAddr) -> bool {
        self.families().contains(&Family::of(dst)) && self.to.as_ref().is_none_or(|t| t.value.contains(&dst))
    }
}

pub const MAIN_TABLE: u32 = 254;
/// The kernel's `local` table: local and broadcast addresses, and `type="local"` routes.
pub const LOCAL_TABLE: u32 = 255;
/// The kernel's `default` table (empty unless someone fills it), looked up last.
pub const DEFAULT_TABLE: u32 = 253;

/// The metric the kernel stores for a route: IPv6 turns metric 0 into 1024 (`IP6_RT_PRIO_USER`).
/// Routes are keyed by (table, destination, this metric) in the kernel and everywhere in netcfg.
pub fn kernel_metric(dst: &IpNet, metric: u32) -> u32 {
    if metric == 0 && dst.addr().is_ipv6() {
        1024
    } else {
        metric
    }
}

#[derive(Clone, Debug)]
pub struct Neighbor {
    pub ip: Spanned<IpAddr>,
    pub mac: Spanned<Mac>,
    pub dev: Spanned<LinkId>,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Firewall {
    pub policy_in: Option<Spanned<Verdict>>,
    pub policy_out: Option<Spanned<Verdict>>,
    pub policy_forward: Option<Spanned<Verdict>>,
    /// Accept established/related and drop invalid before the rules.
    pub stateful: bool,
    /// Index = `ZoneId`.
    pub zones: Vec<Zone>,
    /// Index = `SetId`.
    pub sets: Vec<AddrSet>,
    pub rules: Vec<Rule>,
    /// `mark` rules, in order.
    pub marks: Vec<MarkRule>,
    /// `clamp-mss` statements, in order.
    pub clamp_mss: Vec<ClampMss>,
    /// `notrack` rules (matches only), in order.
    pub notracks: Vec<Rule>,
    /// The first `firewall` block, if any.
    pub span: Option<Span>,
}

impl Firewall {
    pub fn policy(&self, dir: Direction) -> Option<&Spanned<Verdict>> {
        match dir {
            Direction::In => self.policy_in.as_ref(),
            Direction::Out => self.policy_out.as_ref(),
            Direction::Forward => self.policy_forward.as_ref(),
        }
    }

    /// The address families a rule can match: both unless its addresses or protocol narrow
    /// them (an IPv4 source, a set with only IPv6 elements, `icmp`). Empty: it matches nothing.
    /// The nftables lowering emits one rule per family in this list.
    pub fn rule_families(&self, rule: &Rule) -> Vec<Family> {
        self.rule_family_set(rule).iter().collect()
    }

    /// [`Firewall::rule_families`] as a [`Families`] value, without a vector: checks ask it of
    /// every rule.
    pub fn rule_family_set(&self, rule: &Rule) -> Families {
        let mut fams = rule.family.as_ref().map_or(Families::BOTH, |f| Families::of(f.value));
        // Negated addresses do not narrow the families: an IPv6 packet is not from `10.0.0.0/8`.
        for a in [&rule.from, &rule.to].into_iter().flatten() {
            fams = fams.and(match &a.value {
                AddrMatch::Net(n) => Families::of(Family::of(n.addr())),
                AddrMatch::Set(id) => self.sets.get(id.0 as usize).map_or(Families::NONE, AddrSet::family_set),
            });
        }
        match rule.proto.as_ref().map(|p| p.value) {
            Some(Proto::Icmp | Proto::Igmp) => fams.and(Families::of(Family::Ipv4)),
            Some(Proto::Icmpv6) => fams.and(Families::of(Family::Ipv6)),
            _ => fams,
        }
    }

    /// Whether the firewall filters anything at all (a rule or a non-accept policy).
    pub fn is_active(&self) -> bool {
        !self.rules.is_empty()
            || !self.marks.is_empty()
            || !self.clamp_mss.is_empty()
            || !self.notracks.is_empty()
            || [&self.policy_in, &self.policy_out, &self.policy_forward]
                .iter()
                .any(|p| p.as_ref().is_some_and(|p| p.value != Verdict::Accept))
    }
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub id: ZoneId,
    pub name: Name,
    /// The links named, and the declared links a pattern matches.
    pub links: Vec<Spanned<LinkId>>,
    /// Link name prefixes (`"veth*"`): links that may appear at run time, unknown to checks.
    pub patterns: Vec<Spanned<String>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct AddrSet {
    pub id: SetId,
    pub name: Name,
    /// The declared elements (a dynamic set's seeds: addresses only).
    pub elements: Vec<Spanned<IpNet>>,
    /// Rules add to it at run time (`dynamic=#true`): its members are not known offline.
    pub dynamic: Option<DynamicSet>,
    pub span: Span,
}

/// What a dynamic set keeps at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynamicSet {
    /// Seconds an element lives after a rule last added it; `None`: no expiry.
    pub timeout: Option<u32>,
    /// Elements per family at most.
    pub size: u32,
    /// Only this family's addresses; `None`: both (one nft set each).
    pub family: Option<Family>,
}

impl DynamicSet {
    /// A dynamic set's default bound, per family: what the kernel's memory for a flood of
    /// spoofed sources is capped at unless the spec says otherwise.
    pub const DEFAULT_SIZE: u32 = 65535;
}

impl AddrSet {
    /// The families the set can hold: a dynamic set's declared ones (its members come at run
    /// time), a static set's elements' ones.
    pub fn families(&self) -> Vec<Family> {
        self.family_set().iter().collect()
    }

    /// [`AddrSet::families`] as a [`Families`] value.
    pub fn family_set(&self) -> Families {
        match &self.dynamic {
            Some(d) => d.family.map_or(Families::BOTH, Families::of),
            None => self.elements.iter().fold(Families::NONE, |f, e| f.or(Families::of(Family::of(e.value.addr())))),
        }
    }
}

/// A set of address families (a bit each): what a rule or a set can match, computed and
/// compared without a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Families(u8);

impl Families {
    pub const NONE: Families = Families(0);
    pub const BOTH: Families = Families(0b11);

    pub fn of(f: Family) -> Families {
        match f {
            Family::Ipv4 => Families(0b01),
            Family::Ipv6 => Families(0b10),
        }
    }

    pub fn and(self, other: Families) -> Families {
        Families(self.0 & other.0)
    }

    pub fn or(self, other: Families) -> Families {
        Families(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self == Families::NONE
    }

    /// Whether every family of `other` is one of these.
    pub fn covers(self, other: Families) -> bool {
        other.0 & !self.0 == 0
    }

    /// IPv4 first, then IPv6.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        [Family::Ipv4, Family::Ipv6].into_iter().filter(move |f| self.covers(Families::of(*f)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrMatch {
    Net(IpNet),
    Set(SetId),
}

/// A firewall rule. The matches most rules have are fields; the rest are in [`RuleMore`]
/// (allocated only when one is set), read through `Deref` as if they were fields here.
#[derive(Clone, Debug)]
pub struct Rule {
    pub verdict: Spanned<Verdict>,
    pub direction: Spanned<Direction>,
    pub proto: Option<Spanned<Proto>>,
    pub dport: Option<Spanned<PortSet>>,
    pub sport: Option<Spanned<PortSet>>,
    pub from: Option<Spanned<AddrMatch>>,
    pub to: Option<Spanned<AddrMatch>>,
    pub span: Span,
    pub more: Rare<RuleMore>,
}

netcfg_lang::reads_rare_fields!(Rule => RuleMore);

/// The matches and statements of a [`Rule`] that most rules leave unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleMore {
    pub iif: Option<Spanned<LinkId>>,
    pub oif: Option<Spanned<LinkId>>,
    pub from_zone: Option<Spanned<ZoneId>>,
    pub to_zone: Option<Spanned<ZoneId>>,
    /// The `use-rules` lines a rule came through, outermost first (empty: written in the
    /// firewall block itself). Findings on the rule name them.
    pub via: Vec<Span>,
    pub state: Vec<ConnState>,
    /// `family=`: the rule applies to this family only.
    pub family: Option<Spanned<Family>>,
    /// ICMP/ICMPv6 types (sorted) and code; the family is the rule's `proto`.
    pub icmp_types: Option<Spanned<Vec<u8>>>,
    pub icmp_code: Option<Spanned<u8>>,
    /// Negated matches: the rule matches only packets none of them matches.
    pub except: Rare<Except>,
    /// A rate the rule matches within (packets beyond it fall through to later rules).
    pub limit: Option<Spanned<RateLimit>>,
    pub burst: Option<u32>,
    /// Matches while the source address has at most this many connections.
    pub conn_limit: Option<Spanned<u32>>,
    pub log: Option<Log>,
    /// A named counter the rule counts matching packets in.
    pub counter: Option<Name>,
    /// The packet's (`meta mark`) and connection's (`ct mark`) marks.
    pub mark: Option<Spanned<Mark>>,
    pub ct_mark: Option<Spanned<Mark>>,
    /// The local socket's owner (`out` only).
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
    pub pkttype: Option<Spanned<PktType>>,
    /// `add-to="@SET"`: the source (or, with `add-to-key="dst"`, destination) address of a
    /// matching packet goes into this dynamic set.
    pub add_to: Option<(Spanned<SetId>, AddrKey)>,
    pub comment: Option<String>,
}

impl Empty for RuleMore {
    const EMPTY: &'static RuleMore = &RuleMore {
        iif: None,
        oif: None,
        from_zone: None,
        to_zone: None,
        via: Vec::new(),
        state: Vec::new(),
        family: None,
        icmp_types: None,
        icmp_code: None,
        except: Rare::EMPTY,
        limit: None,
        burst: None,
        conn_limit: None,
        log: None,
        counter: None,
        mark: None,
        ct_mark: None,
        uid: None,
        gid: None,
        pkttype: None,
        add_to: None,
        comment: None,
    };
}

impl Rule {
    /// Whether the rule's matches depend on more than the packet: a rate or connection limit
    /// matches a packet on one occasion and not on another. Checks never let such a rule
    /// decide for a later one.
    pub fn is_stateful(&self) -> bool {
        // Adding to a full dynamic set fails and the rule does not match (nft_dynset breaks).
        self.limit.is_some() || self.conn_limit.is_some() || self.add_to.is_some()
    }

    /// Whether it matches membership of a dynamic set (known only at run time), negated or not.
    pub fn matches_dynamic_set(&self, fw: &Firewall) -> bool {
        [&self.from, &self.to, &self.except.from, &self.except.to].into_iter().flatten().any(|a| match &a.value {
            AddrMatch::Set(id) => fw.sets.get(id.0 as usize).is_some_and(|s| s.dynamic.is_some()),
            AddrMatch::Net(_) => false,
        })
    }

    /// Adds "through `use-rules` here" labels to a finding on this rule: the rule is written
    /// once in a group, and the use site says which expansion the finding is about.
    pub fn label_use_sites(&self, d: &mut netcfg_lang::Diagnostic) {
        for (i, at) in self.via.iter().enumerate() {
            let message = if i == 0 { crate::rule_groups::USED_HERE } else { crate::rule_groups::NESTED_USE };
            d.secondary.push(netcfg_lang::diagnostic::Label { span: *at, message: message.into() });
        }
    }

    /// Whether any match is negated.
    pub fn has_negation(&self) -> bool {
        let e = &self.except;
        e.from.is_some()
            || e.to.is_some()
            || e.dport.is_some()
            || e.sport.is_some()
            || e.iif.is_some()
            || e.oif.is_some()
            || e.from_zone.is_some()
            || e.to_zone.is_some()
            || e.mark.is_some()
            || e.ct_mark.is_some()
            || e.uid.is_some()
            || e.gid.is_some()
    }

    /// Whether it matches what the check model does not hold: socket owners, packet types.
    pub fn matches_unmodelled(&self) -> bool {
        self.uid.is_some() || self.gid.is_some() || self.pkttype.is_some()
    }

    /// Whether it matches marks, which other rules (and other programs) set at run time.
    pub fn matches_marks(&self) -> bool {
        self.mark.is_some() || self.ct_mark.is_some() || self.except.mark.is_some() || self.except.ct_mark.is_some()
    }
}

/// Negated matches of a rule (`from="!10.0.0.0/8"`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Except {
    pub from: Option<Spanned<AddrMatch>>,
    pub to: Option<Spanned<AddrMatch>>,
    pub dport: Option<Spanned<PortSet>>,
    pub sport: Option<Spanned<PortSet>>,
    pub iif: Option<Spanned<LinkId>>,
    pub oif: Option<Spanned<LinkId>>,
    pub from_zone: Option<Spanned<ZoneId>>,
    pub to_zone: Option<Spanned<ZoneId>>,
    pub mark: Option<Spanned<Mark>>,
    pub ct_mark: Option<Spanned<Mark>>,
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
}

impl Empty for Except {
    const EMPTY: &'static Except = &Except {
        from: None,
        to: None,
        dport: None,
        sport: None,
        iif: None,
        oif: None,
        from_zone: None,
        to_zone: None,
        mark: None,
        ct_mark: None,
        uid: None,
        gid: None,
    };
}

/// `clamp-mss`: forwarded TCP SYNs (out of `out`, or any) get the MSS the route's MTU allows,
/// or `size`.
#[derive(Clone, Debug)]
pub struct ClampMss {
    pub out: Option<Spanned<LinkId>>,
    pub size: Option<u16>,
    pub span: Span,
}

/// A `mark in|out` rule: its matches (a [`Rule`] whose verdict is unused) and the marks it sets
/// on the packets they match, before routing (`in`: prerouting) or for re-routing (`out`).
/// Policy routing rules (`fwmark`) read these.
#[derive(Clone, Debug)]
pub struct MarkRule {
    pub matches: Rule,
    pub set_mark: Option<Spanned<Mark>>,
    pub set_ct_mark: Option<Spanned<Mark>>,
}

/// How a rule logs: nft's `log prefix "…" level …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub prefix: Option<String>,
    pub level: Option<LogLevel>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: Name,
    pub vip: Spanned<IpAddr>,
    pub port: Spanned<u16>,
    pub proto: Proto,
    pub backends: Vec<Backend>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Backend {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// The `ip:port` text.
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Masquerade {
    pub from: Option<Spanned<AddrMatch>>,
    pub out: Option<Spanned<LinkId>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Snat {
    pub from: Option<Spanned<AddrMatch>>,
    pub out: Option<Spanned<LinkId>>,
    /// The new source address, or the first of the pool.
    pub to: Spanned<IpAddr>,
    /// The last address of a pool.
    pub to_last: Option<IpAddr>,
    /// New source ports (TCP, UDP, SCTP).
    pub ports: Option<(u16, u16)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Redirect {
    pub direction: Direction,
    pub proto: Proto,
    pub ports: Option<PortSet>,
    pub except_ports: Option<PortSet>,
    /// `out` only: the user id whose connections are left alone (the proxy's own).
    pub except_uid: Option<u32>,
    pub to_port: Spanned<u16>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Listener {
    pub name: Name,
    /// `None` listens on every address of the namespace.
    pub address: Option<Spanned<IpAddr>>,
    pub port: Spanned<u16>,
    pub proto: Proto,
    pub span: Span,
}

/// A port published on the namespace's own addresses: new connections to `address` (or any
/// local address) on `port` are DNAT-ed to `to:to_port`, from outside and from the namespace
/// itself; a backend reaching its own published port is masqueraded (hairpin).
#[derive(Clone, Debug)]
pub struct Publish {
    pub name: Name,
    pub port: Spanned<u16>,
    pub proto: Proto,
    pub to: Spanned<IpAddr>,
    pub to_port: u16,
    pub address: Option<Spanned<IpAddr>>,
    pub from: Option<Spanned<AddrMatch>>,
    pub span: Span,
}

/// A 1:1 mapping between two networks of one size: outbound sources `from` → `to`, inbound
/// destinations `to` → `from`, host part kept, on `out` (or any link).
#[derive(Clone, Debug)]
pub struct Netmap {
    pub from: Spanned<IpNet>,
    pub to: Spanned<IpNet>,
    pub out: Option<Spanned<LinkId>>,
    pub span: Span,
}

/// Transparent proxying of arriving TCP or UDP connections to a local socket on `to_port`,
/// their destination untouched; `mark` is what the policy rule to a `local` route matches.
#[derive(Clone, Debug)]
pub struct Tproxy {
    pub proto: Proto,
    pub ports: Option<PortSet>,
    pub except_ports: Option<PortSet>,
    pub to_port: Spanned<u16>,
    pub mark: Spanned<Mark>,
    pub span: Span,
}
