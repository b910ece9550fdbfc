//! The spanned AST: what the spec says, with every structured value already parsed (no raw
//! strings for CIDRs, ports, MACs...). Names are still names; the compiler resolves them to ids.

pub use crate::links::{BondMode, IpvlanMode, LacpRate, TunnelKind, VlanProtocol, XmitHashPolicy};
use crate::rare::{Empty, Rare};
use crate::source::{Span, Spanned};
pub use crate::value::Mark;
use crate::value::{Mac, PortSet, SysctlPath};
pub use crate::vocab::*;
use ipnet::IpNet;
use std::net::IpAddr;

pub type Name = Spanned<String>;

/// Everything read from the entry file and the files it includes.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub templates: Vec<TemplateDecl>,
    pub nodes: Vec<NodeDecl>,
    /// Top-level `rules "NAME" { … }`: firewall rule groups firewall blocks pull in.
    pub rule_groups: Vec<RuleGroupDecl>,
}

/// `rules "NAME" { allow … deny … use-rules "OTHER" }`: rules written once and expanded, in
/// order, where a firewall block says `use-rules "NAME"`.
#[derive(Clone, Debug)]
pub struct RuleGroupDecl {
    pub name: Name,
    pub rules: Vec<RuleDecl>,
    /// `use-rules` inside the group (expanded in place, like in a firewall block).
    pub uses: Vec<RulesUse>,
    pub span: Span,
}

/// `use-rules "NAME" ["NAME"...]` in a firewall block or a rule group: the groups' rules go
/// where it stands, before the rules written after it.
#[derive(Clone, Debug)]
pub struct RulesUse {
    pub names: Vec<Name>,
    /// How many of the block's own `allow`/`deny`/`reject` rules come before it.
    pub at: usize,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct TemplateDecl {
    pub name: Name,
    /// The typed body; empty for a template with parameters, whose body is read at each use.
    pub body: NsBody,
    /// `param "NAME" [default=VALUE]`, in order.
    pub params: Vec<ParamDecl>,
    /// The template's KDL, kept when it has parameters (see `template.rs`).
    pub raw: Option<std::sync::Arc<crate::template::RawTemplate>>,
    pub span: Span,
}

/// `param "NAME" [default=VALUE]` in a template.
#[derive(Clone, Debug)]
pub struct ParamDecl {
    pub name: Name,
    pub default: Option<Spanned<crate::template::ParamValue>>,
    pub span: Span,
}

/// `use "NAME" [KEY=VALUE...]`: one template pulled into a body, with its arguments.
#[derive(Clone, Debug)]
pub struct UseDecl {
    pub name: Name,
    pub args: Vec<(Name, Spanned<crate::template::ParamValue>)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct NodeDecl {
    pub name: Name,
    /// The node's host namespace; named namespaces are in `body.netns`.
    pub body: NsBody,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct NetnsDecl {
    pub name: Name,
    pub body: NsBody,
    pub span: Span,
}

/// The body of a node (its host namespace), of a `netns`, or of a `template`.
#[derive(Clone, Debug, Default)]
pub struct NsBody {
    pub uses: Vec<UseDecl>,
    pub links: Vec<LinkDecl>,
    /// Names of links written here that could not be built (a `veth` without `peer`, a `vxlan`
    /// without `vni`...): already reported, so references to them are not reported again.
    pub unbuilt_links: Vec<Name>,
    /// Addresses on the namespace's `lo` (`loopback { address … }`).
    pub loopback: Vec<AddressDecl>,
    pub routes: Vec<RouteDecl>,
    /// Named routing tables (`table "vpn" id=100`).
    pub tables: Vec<TableDecl>,
    /// Policy routing rules (`rule priority=100 from=… table=…`).
    pub rules: Vec<PolicyRuleDecl>,
    pub neighbors: Vec<NeighborDecl>,
    pub sysctls: Vec<SysctlDecl>,
    pub forwarding: Vec<ForwardingDecl>,
    pub rp_filter: Option<Spanned<RpFilter>>,
    pub bridge_netfilter: Option<Spanned<bool>>,
    pub netns: Vec<NetnsDecl>,
    pub firewalls: Vec<FirewallDecl>,
    pub services: Vec<ServiceDecl>,
    pub masquerades: Vec<MasqueradeDecl>,
    pub snats: Vec<SnatDecl>,
    pub redirects: Vec<RedirectDecl>,
    pub listeners: Vec<ListenDecl>,
    /// Published ports (`publish`), 1:1 network mappings (`netmap`), transparent proxying
    /// (`tproxy`).
    pub publishes: Vec<PublishDecl>,
    pub netmaps: Vec<NetmapDecl>,
    pub tproxies: Vec<TproxyDecl>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkState {
    Up,
    Down,
}

#[derive(Clone, Debug)]
pub struct LinkDecl {
    pub name: Name,
    pub kind: LinkKindDecl,
    pub mtu: Option<Spanned<u32>>,
    pub mac: Option<Spanned<Mac>>,
    pub state: Option<Spanned<LinkState>>,
    pub master: Option<Name>,
    pub hairpin: Option<Spanned<bool>>,
    pub rp_filter: Option<Spanned<RpFilter>>,
    pub options: LinkOptions,
    pub addresses: Vec<AddressDecl>,
    pub span: Span,
}

/// Bridge settings compared and set only when given; times in centiseconds, as the kernel
/// keeps them (the language writes seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BridgeOptions {
    pub stp: Option<bool>,
    pub forward_delay: Option<u32>,
    pub ageing: Option<u32>,
    pub priority: Option<u16>,
    pub vlan_filtering: Option<bool>,
    pub default_pvid: Option<u16>,
    pub multicast_snooping: Option<bool>,
}

/// Settings of a link as a bridge port, compared and set only when given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortOptions {
    pub cost: Option<u32>,
    pub priority: Option<u16>,
}

/// VXLAN settings compared and set only when given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VxlanOptions {
    /// Learn remote MACs from received packets (the kernel's default: on).
    pub learning: Option<bool>,
    /// Answer ARP and neighbour solicitations from the forwarding database (`proxy`).
    pub proxy: Option<bool>,
    /// Outer TTL; 0 inherits.
    pub ttl: Option<u8>,
}

/// Settings any link can have besides its kind's own.
#[derive(Clone, Debug, Default)]
pub struct LinkOptions {
    /// Receive every frame, not only those addressed to the link (`promisc`).
    pub promisc: Option<Spanned<bool>>,
    /// Length of the transmit queue (`txqueuelen`).
    pub txqueuelen: Option<Spanned<u32>>,
    /// ARP on the link (`arp=#false` is `ip link set … arp off`).
    pub arp: Option<Spanned<bool>>,
    /// As a bridge port: `port-cost`, `port-priority`.
    pub port: PortOptions,
    /// On a VLAN-filtering bridge, as a port or as the bridge itself: the VLANs carried, from
    /// `vlans`, `pvid` and `untagged` (span: the `vlans` value).
    pub vlans: Option<Spanned<crate::links::Vlans>>,
    /// An `ethernet` only: the NIC is the one with this MAC (permanent, or else current), renamed
    /// to the declared name (`match-mac`).
    pub match_mac: Option<Spanned<crate::value::Mac>>,
    /// Addresses and a default route come from a DHCP client, SLAAC or a cloud agent (`dhcp`).
    pub dhcp: Option<Spanned<bool>>,
}

#[derive(Clone, Debug)]
pub enum LinkKindDecl {
    /// An existing NIC: configured, never created or deleted.
    Ethernet,
    Bridge {
        /// Per-bridge `nf_call_iptables`/`nf_call_ip6tables`.
        netfilter: Option<Spanned<bool>>,
        options: BridgeOptions,
    },
    Veth {
        peer: Box<LinkDecl>,
        /// Namespace of the peer; `None` means the veth's own namespace.
        peer_netns: Option<Spanned<NetnsName>>,
    },
    /// The far end of a veth, declared inside its `veth`.
    VethPeer,
    Vxlan {
        vni: Spanned<u32>,
        local: Option<Spanned<IpAddr>>,
        remote: Option<Spanned<IpAddr>>,
        group: Option<Spanned<IpAddr>>,
        dev: Option<Name>,
        port: Option<Spanned<u16>>,
        options: VxlanOptions,
    },
    Macvlan {
        /// A link of the node's host namespace.
        parent: Name,
        mode: Option<Spanned<MacvlanMode>>,
    },
    /// A link with no device behind it: addresses that belong to the node, not to a wire.
    Dummy,
    /// An 802.1Q (or 802.1ad) VLAN on `parent`.
    Vlan {
        parent: Name,
        id: Spanned<u16>,
        protocol: Option<Spanned<VlanProtocol>>,
    },
    /// Links aggregated into one; ports join with `master`.
    Bond(BondDecl),
    /// An L3 domain bound to a routing table; links join with `master`.
    Vrf {
        table: Spanned<u32>,
    },
    /// Links sharing `parent`'s MAC, told apart by IP address.
    Ipvlan {
        parent: Name,
        mode: Option<Spanned<IpvlanMode>>,
    },
    /// A point-to-point IP tunnel (`gre`, `ipip`, `sit`, `ip6tnl`).
    Tunnel(TunnelDecl),
    Wireguard(WireguardDecl),
}

#[derive(Clone, Debug)]
pub struct WireguardDecl {
    /// Where the private key is read at apply time (never the key itself), resolved against
    /// the directory of the file that names it.
    pub private_key_file: Spanned<KeyFile>,
    pub listen_port: Option<Spanned<u16>>,
    pub fwmark: Option<Spanned<u32>>,
    pub peers: Vec<WgPeerDecl>,
}

/// A file holding a secret: as written in the spec, and resolved.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyFile {
    pub written: String,
    pub path: String,
}

#[derive(Clone, Debug)]
pub struct WgPeerDecl {
    pub public_key: Spanned<[u8; 32]>,
    pub endpoint: Option<Spanned<(IpAddr, u16)>>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: Option<Spanned<u16>>,
    pub preshared_key_file: Option<Spanned<KeyFile>>,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct BondDecl {
    pub mode: Option<Spanned<BondMode>>,
    /// Link monitoring interval, milliseconds.
    pub miimon: Option<Spanned<u32>>,
    pub lacp_rate: Option<Spanned<LacpRate>>,
    pub xmit_hash_policy: Option<Spanned<XmitHashPolicy>>,
    /// The port preferred while it is up (active-backup, balance-tlb, balance-alb).
    pub primary: Option<Name>,
    /// Ports that must be up for the bond to be up.
    pub min_links: Option<Spanned<u32>>,
}

#[derive(Clone, Debug)]
pub struct TunnelDecl {
    pub kind: TunnelKind,
    pub local: Option<Spanned<IpAddr>>,
    pub remote: Spanned<IpAddr>,
    pub ttl: Option<Spanned<u8>>,
    /// GRE key (both directions).
    pub key: Option<Spanned<u32>>,
    /// The underlay link the tunnel is bound to.
    pub dev: Option<Name>,
}

impl LinkKindDecl {
    pub fn keyword(&self) -> &'static str {
        match self {
            LinkKindDecl::Ethernet => "ethernet",
            LinkKindDecl::Bridge { .. } => "bridge",
            LinkKindDecl::Veth { .. } => "veth",
            LinkKindDecl::VethPeer => "peer",
            LinkKindDecl::Vxlan { .. } => "vxlan",
            LinkKindDecl::Macvlan { .. } => "macvlan",
            LinkKindDecl::Dummy => "dummy",
            LinkKindDecl::Vlan { .. } => "vlan",
            LinkKindDecl::Bond(_) => "bond",
            LinkKindDecl::Vrf { .. } => "vrf",
            LinkKindDecl::Ipvlan { .. } => "ipvlan",
            LinkKindDecl::Tunnel(t) => t.kind.keyword(),
            LinkKindDecl::Wireguard(_) => "wireguard",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AddressDecl {
    /// Host address and prefix length, e.g. `169.254.172.15/22`.
    pub net: Spanned<IpNet>,
    /// Whether the kernel adds the connected route for the prefix (`noprefixroute` when false).
    pub prefix_route: Option<Spanned<bool>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteDst {
    /// `default`: 0.0.0.0/0, or ::/0 when the gateway is IPv6.
    Default,
    Net(IpNet),
}

/// A routing table as the spec writes it: an id, or a name (`main`, `local`, `default`, or one
/// declared with `table "NAME" id=N`), resolved to an id by the compiler.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableRef {
    Id(u32),
    Name(String),
}

/// `table "NAME" id=N`: a name for a routing table, usable wherever a table is written.
#[derive(Clone, Debug)]
pub struct TableDecl {
    pub name: Name,
    pub id: Spanned<u32>,
    pub span: Span,
}

/// One path of a multipath route (`nexthop via=… dev=… weight=…`).
#[derive(Clone, Debug, PartialEq)]
pub struct NextHopDecl {
    pub via: Option<Spanned<IpAddr>>,
    pub dev: Option<Name>,
    pub weight: Option<Spanned<u32>>,
    pub onlink: Option<Spanned<bool>>,
    pub span: Span,
}

/// What a policy rule does with a packet it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleActionDecl {
    /// Look the destination up in this table (`table=`).
    Lookup(Spanned<TableRef>),
    /// Look it up in the table of the VRF the packet's device belongs to (`l3mdev=#true`).
    L3mdev,
    /// Continue with the rule of this priority (`goto=`).
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// `rule priority=N …`: a policy routing rule of the namespace (`ip rule`).
#[derive(Clone, Debug)]
pub struct PolicyRuleDecl {
    pub priority: Spanned<u32>,
    pub family: Option<Spanned<Family>>,
    pub from: Option<Spanned<IpNet>>,
    pub to: Option<Spanned<IpNet>>,
    pub iif: Option<Name>,
    pub oif: Option<Name>,
    /// Mark and mask (`0x10/0xff`; no mask: all bits).
    pub fwmark: Option<Spanned<Mark>>,
    pub ipproto: Option<Spanned<Proto>>,
    /// One inclusive port range each.
    pub sport: Option<Spanned<(u16, u16)>>,
    pub dport: Option<Spanned<(u16, u16)>>,
    pub suppress_prefixlength: Option<Spanned<u32>>,
    pub action: Spanned<RuleActionDecl>,
    pub span: Span,
}

/// A route. What most routes write is fields; the rest is in [`RouteDeclMore`] (allocated
/// only when one is set), read through `Deref` as if it were fields here.
#[derive(Clone, Debug)]
pub struct RouteDecl {
    pub dst: Spanned<RouteDst>,
    pub via: Option<Spanned<IpAddr>>,
    pub dev: Option<Name>,
    pub span: Span,
    pub more: Rare<RouteDeclMore>,
}

crate::reads_rare_fields!(RouteDecl => RouteDeclMore);

/// The settings of a [`RouteDecl`] that most routes leave unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteDeclMore {
    pub src: Option<Spanned<IpAddr>>,
    pub metric: Option<Spanned<u32>>,
    pub table: Option<Spanned<TableRef>>,
    pub scope: Option<Spanned<RouteScope>>,
    pub onlink: Option<Spanned<bool>>,
    pub route_type: Option<Spanned<RouteType>>,
    /// Route attributes (RTA_METRICS).
    pub metrics: RouteMetricsDecl,
    /// Paths of a multipath route; empty for a route with one path (`via`/`dev`).
    pub nexthops: Vec<NextHopDecl>,
}

impl Empty for RouteDeclMore {
    const EMPTY: &'static RouteDeclMore = &RouteDeclMore {
        src: None,
        metric: None,
        table: None,
        scope: None,
        onlink: None,
        route_type: None,
        metrics: RouteMetricsDecl { mtu: None, advmss: None, initcwnd: None, initrwnd: None },
        nexthops: Vec::new(),
    };
}

/// Per-route TCP/IP attributes the kernel keeps with the route (`ip route … mtu 1400`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteMetricsDecl {
    pub mtu: Option<Spanned<u32>>,
    pub advmss: Option<Spanned<u32>>,
    pub initcwnd: Option<Spanned<u32>>,
    pub initrwnd: Option<Spanned<u32>>,
}

#[derive(Clone, Debug)]
pub struct NeighborDecl {
    pub ip: Spanned<IpAddr>,
    pub mac: Spanned<Mac>,
    pub dev: Name,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SysctlDecl {
    pub path: Spanned<SysctlPath>,
    pub value: Spanned<SysctlValue>,
    pub span: Span,
}

/// `forwarding #true` (both families) or `forwarding ipv4=#true ipv6=#false`.
#[derive(Clone, Debug)]
pub struct ForwardingDecl {
    pub ipv4: Option<Spanned<bool>>,
    pub ipv6: Option<Spanned<bool>>,
    pub span: Span,
}

/// ICMP message types by the names nft uses (`icmp type echo-request`).
pub const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("info-request", 15),
    ("info-reply", 16),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
];

/// ICMPv6 message types by the names nft uses (`icmpv6 type nd-neighbor-solicit`).
pub const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
    ("router-renumbering", 138),
    ("ind-neighbor-solicit", 141),
    ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143),
];

/// A source/destination match: a network or a named address set (`@admins`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrMatch {
    Net(IpNet),
    Set(String),
}

#[derive(Clone, Debug, Default)]
pub struct FirewallDecl {
    pub policy_in: Option<Spanned<Verdict>>,
    pub policy_out: Option<Spanned<Verdict>>,
    pub policy_forward: Option<Spanned<Verdict>>,
    /// Accept established/related and drop invalid before the rules (default on).
    pub stateful: Option<Spanned<bool>>,
    pub zones: Vec<ZoneDecl>,
    pub sets: Vec<SetDecl>,
    pub rules: Vec<RuleDecl>,
    /// `mark in|out …`: rules that set marks before routing (their `verdict` is unused).
    pub marks: Vec<RuleDecl>,
    /// `clamp-mss`: TCP MSS of forwarded SYNs set to the route's MTU (or a size).
    pub clamp_mss: Vec<ClampMssDecl>,
    /// `notrack in|out …`: packets connection tracking skips (their `verdict` is unused).
    pub notracks: Vec<RuleDecl>,
    /// `use-rules "NAME"`: rule groups expanded among `rules`.
    pub rule_uses: Vec<RulesUse>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct ClampMssDecl {
    /// Only connections forwarded out of this link.
    pub out: Option<Name>,
    /// A fixed MSS instead of the route's MTU less the headers.
    pub size: Option<Spanned<u16>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct ZoneDecl {
    pub name: Name,
    pub links: Vec<Name>,
    /// Link name prefixes (`"veth*"` is `veth`): links that may appear at run time.
    pub patterns: Vec<Name>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct SetDecl {
    pub name: Name,
    pub elements: Vec<Spanned<IpNet>>,
    /// `dynamic=#true`: rules add addresses at run time (`add-to="@NAME"`).
    pub dynamic: Option<DynamicSetDecl>,
    pub span: Span,
}

/// The run-time side of a dynamic set.
#[derive(Clone, Debug)]
pub struct DynamicSetDecl {
    /// `timeout="1h"`: seconds an element lives after a rule last added it; none: until the
    /// set is replaced by a change of its type, or removed.
    pub timeout: Option<Spanned<u32>>,
    /// `size=N`: elements it holds at most per family.
    pub size: Option<Spanned<u32>>,
    /// `family=`: only this family's addresses (one nft set instead of two).
    pub family: Option<Spanned<Family>>,
    /// The `dynamic=#true` entry.
    pub span: Span,
}

/// A firewall rule. The matches most rules write are fields; the rest are in [`RuleDeclMore`]
/// (allocated only when one is set), read through `Deref` as if they were fields here.
#[derive(Clone, Debug)]
pub struct RuleDecl {
    pub verdict: Spanned<Verdict>,
    pub direction: Spanned<Direction>,
    pub proto: Option<Spanned<Proto>>,
    pub dport: Option<Spanned<PortSet>>,
    pub sport: Option<Spanned<PortSet>>,
    pub from: Option<Spanned<AddrMatch>>,
    pub to: Option<Spanned<AddrMatch>>,
    pub span: Span,
    pub more: Rare<RuleDeclMore>,
}

crate::reads_rare_fields!(RuleDecl => RuleDeclMore);

/// The matches and statements of a [`RuleDecl`] that most rules leave unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleDeclMore {
    pub iif: Option<Name>,
    pub oif: Option<Name>,
    pub from_zone: Option<Name>,
    pub to_zone: Option<Name>,
    pub state: Vec<Spanned<ConnState>>,
    /// `family="ipv4"|"ipv6"`: restricts a rule without addresses to one family.
    pub family: Option<Spanned<Family>>,
    /// `icmp-type` / `icmp-code` (need `proto` `icmp` or `icmpv6`).
    pub icmp_types: Option<Spanned<Vec<u8>>>,
    pub icmp_code: Option<Spanned<u8>>,
    /// Matches written with a leading `!` (`from="!10.0.0.0/8"`): the rule matches packets
    /// they do not match.
    pub except: Rare<ExceptDecl>,
    /// `limit="10/second"` (all packets) or `limit-per-source=` (each source address).
    pub limit: Option<Spanned<RateLimit>>,
    pub burst: Option<Spanned<u32>>,
    /// `conn-limit=N`: matches while the source address has at most N connections.
    pub conn_limit: Option<Spanned<u32>>,
    pub log: Option<Spanned<bool>>,
    pub log_prefix: Option<Spanned<String>>,
    pub log_level: Option<Spanned<LogLevel>>,
    /// `counter="NAME"`: a named counter (rules naming the same counter share it).
    pub counter: Option<Spanned<String>>,
    /// `mark=` / `ct-mark=`: the packet's / connection's mark.
    pub mark: Option<Spanned<Mark>>,
    pub ct_mark: Option<Spanned<Mark>>,
    /// `uid=` / `gid=`: the owner of the local socket (`out` only).
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
    /// `pkttype=`: link-layer destination class (`in`, `forward`).
    pub pkttype: Option<Spanned<PktType>>,
    /// `set-mark=` / `set-ct-mark=` (`mark` rules only).
    pub set_mark: Option<Spanned<Mark>>,
    pub set_ct_mark: Option<Spanned<Mark>>,
    /// `add-to="@SET"`: the packet's source address goes into this dynamic set.
    pub add_to: Option<Name>,
    /// `add-to-key="dst"`: the destination address instead.
    pub add_to_key: Option<Spanned<AddrKey>>,
    pub comment: Option<Spanned<String>>,
}

impl Empty for RuleDeclMore {
    const EMPTY: &'static RuleDeclMore = &RuleDeclMore {
        iif: None,
        oif: None,
        from_zone: None,
        to_zone: None,
        state: Vec::new(),
        family: None,
        icmp_types: None,
        icmp_code: None,
        except: Rare::EMPTY,
        limit: None,
        burst: None,
        conn_limit: None,
        log: None,
        log_prefix: None,
        log_level: None,
        counter: None,
        mark: None,
        ct_mark: None,
        uid: None,
        gid: None,
        pkttype: None,
        set_mark: None,
        set_ct_mark: None,
        add_to: None,
        add_to_key: None,
        comment: None,
    };
}

/// The negated matches of a rule (`!` before the value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExceptDecl {
    pub dport: Option<Spanned<PortSet>>,
    pub sport: Option<Spanned<PortSet>>,
    pub from: Option<Spanned<AddrMatch>>,
    pub to: Option<Spanned<AddrMatch>>,
    pub iif: Option<Name>,
    pub oif: Option<Name>,
    pub from_zone: Option<Name>,
    pub to_zone: Option<Name>,
    pub mark: Option<Spanned<Mark>>,
    pub ct_mark: Option<Spanned<Mark>>,
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
}

impl Empty for ExceptDecl {
    const EMPTY: &'static ExceptDecl = &ExceptDecl {
        dport: None,
        sport: None,
        from: None,
        to: None,
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

/// A packet rate: `count` packets per `unit`, for all packets or per source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub count: u32,
    pub unit: RateUnit,
    pub per_source: bool,
}

#[derive(Clone, Debug)]
pub struct ServiceDecl {
    pub name: Name,
    pub vip: Spanned<IpAddr>,
    pub port: Spanned<u16>,
    pub proto: Option<Spanned<Proto>>,
    pub backends: Vec<BackendDecl>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct BackendDecl {
    pub addr: Spanned<IpAddr>,
    pub port: Spanned<u16>,
    pub weight: Option<Spanned<u32>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct MasqueradeDecl {
    pub from: Option<Spanned<AddrMatch>>,
    pub out: Option<Name>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct SnatDecl {
    pub from: Option<Spanned<AddrMatch>>,
    pub out: Option<Name>,
    /// The new source address, or the first of a pool (`to="A-B"`).
    pub to: Spanned<IpAddr>,
    /// The last address of a pool.
    pub to_last: Option<IpAddr>,
    /// New source ports for TCP, UDP and SCTP (`ports="N-M"`).
    pub ports: Option<Spanned<(u16, u16)>>,
    pub span: Span,
}

/// Transparent-proxy style redirect of TCP/UDP to a local port (e.g. a service-mesh sidecar).
#[derive(Clone, Debug)]
pub struct RedirectDecl {
    pub direction: Spanned<Direction>,
    pub proto: Option<Spanned<Proto>>,
    pub ports: Option<Spanned<PortSet>>,
    pub except_ports: Option<Spanned<PortSet>>,
    /// `out` only: connections of this user id (the proxy itself) are not redirected.
    pub except_uid: Option<Spanned<u32>>,
    pub to_port: Spanned<u16>,
    pub span: Span,
}

/// A process that listens in a namespace (a container port in a task).
#[derive(Clone, Debug)]
pub struct ListenDecl {
    pub name: Name,
    pub address: Option<Spanned<IpAddr>>,
    pub port: Spanned<u16>,
    pub proto: Option<Spanned<Proto>>,
    pub span: Span,
}

/// A port published on the node's own addresses (docker `-p 8080:80`, a Kubernetes NodePort, a
/// router's port forward): connections to `[address]:port` are DNAT-ed to `to`.
#[derive(Clone, Debug)]
pub struct PublishDecl {
    pub name: Name,
    pub port: Spanned<u16>,
    pub proto: Option<Spanned<Proto>>,
    /// The backend's address (the `to` text's span).
    pub to: Spanned<IpAddr>,
    /// The backend's port; `None`: the published port.
    pub to_port: Option<u16>,
    /// Only this local address; `None`: every local address of the namespace.
    pub address: Option<Spanned<IpAddr>>,
    /// Only these sources.
    pub from: Option<Spanned<AddrMatch>>,
    pub span: Span,
}

/// A 1:1 mapping of one network onto another of the same size (`NETMAP`): sources in `from`
/// leaving by `out` take the same host part in `to`; connections to `to` arriving by `out`
/// go to the same host part in `from`.
#[derive(Clone, Debug)]
pub struct NetmapDecl {
    pub from: Spanned<IpNet>,
    pub to: Spanned<IpNet>,
    pub out: Option<Name>,
    pub span: Span,
}

/// Transparent proxying (`TPROXY`): arriving connections go to a local socket on `to_port`
/// without their destination being rewritten; `mark` routes them locally.
#[derive(Clone, Debug)]
pub struct TproxyDecl {
    pub direction: Spanned<Direction>,
    pub proto: Option<Spanned<Proto>>,
    pub ports: Option<Spanned<PortSet>>,
    pub except_ports: Option<Spanned<PortSet>>,
    pub to_port: Spanned<u16>,
    pub mark: Spanned<Mark>,
    pub span: Span,
}
