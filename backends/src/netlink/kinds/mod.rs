//! Link kinds: one module per kind of link netcfg creates, holding what the backend knows about
//! it in one place — its desired-state projection from the IR, the kernel module that provides
//! it, the link it sits on, its `RTM_NEWLINK` encoding and the decoding of a dump. The
//! functions here only dispatch on the kind; the knowledge is in the kind's module.
//!
//! Adding a kind: its syntax (`lang::ast`, `lang::parse`), its IR shape and references
//! (`compiler::ir`, `compiler::resolve`), a module here, and one variant in
//! [`state::LinkKind`](super::state::LinkKind) and in [`Feature`].

pub mod bond;
pub mod bridge;
pub mod dummy;
pub mod ipvlan;
pub mod macvlan;
pub mod tunnel;
pub mod veth;
pub mod vlan;
pub mod vrf;
pub mod vxlan;
pub mod wireguard;

use super::live::RawLink;
use super::state::{LinkKind, LinkRef, HOST};
use crate::kernel::Feature;
use netcfg_compiler::ir::{self, Node};
use netcfg_lang::links::{BondMode, Keyword, TunnelKind};
use rtnetlink::packet_route::link::LinkInfo;

/// How to find the names of links the IR refers to by id.
pub(crate) fn link_ref(node: &Node, id: ir::LinkId) -> LinkRef {
    let l = node.link(id);
    LinkRef { ns: node.netns(l.netns).display_name().to_string(), name: l.name.value.clone() }
}

/// The desired-state kind of an IR link, and the kernel feature that provides it.
pub fn project(node: &Node, kind: &ir::LinkKind) -> (LinkKind, Option<Feature>) {
    match kind {
        ir::LinkKind::Loopback => (LinkKind::Loopback, None),
        ir::LinkKind::Ethernet => (LinkKind::Existing { kind: None }, None),
        ir::LinkKind::Bridge { .. } => (bridge::project(), Some(Feature::Bridge)),
        ir::LinkKind::Veth { peer } => (veth::project(node, *peer), Some(Feature::Veth)),
        ir::LinkKind::Vxlan { .. } => (vxlan::project(node, kind), Some(Feature::Vxlan)),
        ir::LinkKind::Macvlan { parent, mode } => (macvlan::project(node, parent.value, *mode), Some(Feature::Macvlan)),
        ir::LinkKind::Dummy => (LinkKind::Dummy, Some(Feature::Dummy)),
        ir::LinkKind::Vlan { parent, id, protocol } => {
            (vlan::project(node, parent.value, id.value, *protocol), Some(Feature::Vlan))
        }
        ir::LinkKind::Bond(b) => (bond::project(node, b), Some(Feature::Bond)),
        ir::LinkKind::Vrf { table } => (LinkKind::Vrf { table: table.value }, Some(Feature::Vrf)),
        ir::LinkKind::Ipvlan { parent, mode } => (ipvlan::project(node, parent.value, *mode), Some(Feature::Ipvlan)),
        ir::LinkKind::Wireguard(w) => (wireguard::project(w), Some(Feature::Wireguard)),
        ir::LinkKind::Tunnel(t) => (
            tunnel::project(node, t),
            Some(match t.kind {
                TunnelKind::Gre => Feature::Gre,
                TunnelKind::Ipip => Feature::Ipip,
                TunnelKind::Sit => Feature::Sit,
                TunnelKind::Ip6tnl => Feature::Ip6tnl,
            }),
        ),
    }
}

/// The link a link sits on (a VXLAN's underlay, a macvlan's parent): it must exist before the
/// link is created, and the kernel deletes the link with it. `ns` is the link's namespace.
pub fn lower(kind: &LinkKind, ns: &str) -> Option<LinkRef> {
    match kind {
        LinkKind::Vxlan(v) => vxlan::lower(v, ns),
        LinkKind::Macvlan { parent, .. } | LinkKind::Ipvlan { parent, .. } => parent.clone(),
        LinkKind::Vlan(v) => v.parent.clone(),
        LinkKind::Tunnel(t) => tunnel::lower(t, ns),
        LinkKind::Loopback
        | LinkKind::Existing { .. }
        | LinkKind::Bridge
        | LinkKind::Veth { .. }
        | LinkKind::Dummy
        | LinkKind::Bond(_)
        | LinkKind::Vrf { .. }
        | LinkKind::Wireguard(_) => None,
    }
}

/// The MTU the kernel gives a new link of this kind when none is set, where that is a fixed
/// rule (a bridge's depends on its ports and a stacked link's on its lower: see the planner).
pub fn fixed_default_mtu(kind: &LinkKind) -> Option<u32> {
    const ETHERNET: u32 = 1500;
    match kind {
        LinkKind::Veth { .. } | LinkKind::Dummy => Some(ETHERNET),
        LinkKind::Vxlan(v) if v.dev.is_none() => Some(ETHERNET),
        _ => None,
    }
}

/// The kind's own settings as a plan shows them after the kind (`, id 100 on eth0`).
pub fn describe(kind: &LinkKind) -> String {
    let on = |r: &Option<LinkRef>| match r {
        Some(r) if r.ns == HOST => format!(" on {}", r.name),
        Some(r) => format!(" on {} in {}", r.name, r.ns),
        None => String::new(),
    };
    match kind {
        LinkKind::Vlan(v) => format!(" {} {}{}", v.protocol.keyword(), v.id, on(&v.parent)),
        LinkKind::Ipvlan { parent, mode } => format!(" {}{}", mode.keyword(), on(parent)),
        LinkKind::Vrf { table } => format!(" table {table}"),
        LinkKind::Wireguard(w) => wireguard::describe(w),
        LinkKind::Bond(b) => {
            let mut s = format!(" {}, miimon {}", b.mode.keyword(), b.miimon);
            if b.mode == BondMode::Lacp {
                s.push_str(&format!(", lacp-rate {}", b.lacp_rate.keyword()));
            }
            if let Some(p) = &b.primary {
                s.push_str(&format!(", primary {p}"));
            }
            s
        }
        LinkKind::Tunnel(t) => {
            let mut s = String::new();
            if let Some(l) = t.local {
                s.push_str(&format!(" {l}"));
            }
            if let Some(r) = t.remote {
                s.push_str(&format!(" -> {r}"));
            }
            if let Some(k) = t.key {
                s.push_str(&format!(", key {k}"));
            }
            s
        }
        _ => String::new(),
    }
}

/// The `IFLA_LINKINFO` of a new link and, for kinds that name their lower device in the link
/// message itself (`IFLA_LINK`), that device's index. `lower` is the index of [`lower`]'s link.
/// Veth pairs are encoded by the executor (their peer is a whole link message).
pub fn encode(kind: &LinkKind, lower: Option<u32>) -> Result<Encoded, String> {
    match kind {
        LinkKind::Bridge => Ok(Encoded { info: bridge::encode(), link: None }),
        LinkKind::Vxlan(v) => Ok(Encoded { info: vxlan::encode(v, lower), link: None }),
        LinkKind::Macvlan { mode, .. } => Ok(Encoded { info: macvlan::encode(*mode), link: lower }),
        LinkKind::Dummy => Ok(Encoded { info: dummy::encode(), link: None }),
        LinkKind::Vlan(v) => Ok(Encoded { info: vlan::encode(v), link: lower }),
        LinkKind::Bond(b) => Ok(Encoded { info: bond::encode(b), link: None }),
        LinkKind::Vrf { table } => Ok(Encoded { info: vrf::encode(*table), link: None }),
        LinkKind::Ipvlan { mode, .. } => Ok(Encoded { info: ipvlan::encode(*mode), link: lower }),
        LinkKind::Tunnel(t) => Ok(Encoded { info: tunnel::encode(t, lower), link: None }),
        LinkKind::Wireguard(_) => Ok(Encoded { info: wireguard::encode(), link: None }),
        LinkKind::Veth { .. } | LinkKind::Loopback | LinkKind::Existing { .. } => {
            Err(format!("netcfg does not create {} links this way", kind.keyword()))
        }
    }
}

/// What [`encode`] produces.
pub struct Encoded {
    pub info: Vec<LinkInfo>,
    /// `IFLA_LINK`: the lower device, for kinds that take it in the link message.
    pub link: Option<u32>,
}

/// Resolves a dumped link's references to other links by ifindex.
pub trait Lookup {
    /// The link with this index in namespace `ns`.
    fn name(&self, ns: &str, index: u32) -> Option<LinkRef>;
    /// The namespace an `IFLA_LINK` of link `l` (dumped in `ns`) points into.
    fn link_ns(&self, ns: &str, l: &RawLink) -> String;
    /// The veth at the other end of `l`.
    fn veth_peer(&self, ns: &str, l: &RawLink) -> Option<LinkRef>;
}

/// The kind of a dumped link. `lo` and kinds netcfg does not create are `Existing`.
pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    match l.kind.as_deref() {
        _ if l.flags_loopback => LinkKind::Loopback,
        Some("bridge") => bridge::project(),
        Some("veth") => LinkKind::Veth { peer: lookup.veth_peer(ns, l) },
        Some("vxlan") => vxlan::decode(ns, l, lookup),
        Some("macvlan") => macvlan::decode(ns, l, lookup),
        Some("dummy") => LinkKind::Dummy,
        Some("vlan") => vlan::decode(ns, l, lookup),
        Some("bond") => bond::decode(ns, l, lookup),
        Some("vrf") => vrf::decode(l),
        Some("wireguard") => wireguard::unread(),
        Some("ipvlan") => ipvlan::decode(ns, l, lookup),
        Some(k @ ("gre" | "ipip" | "sit" | "ip6tnl")) => {
            let kind = TunnelKind::KEYWORDS.iter().find(|(w, _)| *w == k).map(|(_, t)| *t).expect("a tunnel");
            match tunnel::decode(kind, ns, l, lookup) {
                // The fallback device the module makes in every namespace (`gre0`, `tunl0`…).
                LinkKind::Tunnel(t) if t.remote.is_none() => LinkKind::Existing { kind: Some(k.to_string()) },
                t => t,
            }
        }
        other => LinkKind::Existing { kind: other.map(str::to_string) },
    }
}
