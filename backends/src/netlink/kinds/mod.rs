//! Link kinds: one module per kind of link netcfg creates, holding what the backend knows about
//! it in one place — its desired-state projection from the IR, the kernel module that provides
//! it, the link it sits on, its `RTM_NEWLINK` encoding and the decoding of a dump. The
//! functions here only dispatch on the kind; the knowledge is in the kind's module.
//!
//! Adding a kind: its syntax (`lang::ast`, `lang::parse`), its IR shape and references
//! (`compiler::ir`, `compiler::resolve`), a module here, and one variant in
//! [`state::LinkKind`](super::state::LinkKind) and in [`Feature`].

pub mod bridge;
pub mod macvlan;
pub mod veth;
pub mod vxlan;

use super::live::RawLink;
use super::state::{LinkKind, LinkRef};
use crate::kernel::Feature;
use netcfg_compiler::ir::{self, Node};
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
    }
}

/// The link a link sits on (a VXLAN's underlay, a macvlan's parent): it must exist before the
/// link is created, and the kernel deletes the link with it. `ns` is the link's namespace.
pub fn lower(kind: &LinkKind, ns: &str) -> Option<LinkRef> {
    match kind {
        LinkKind::Vxlan(v) => vxlan::lower(v, ns),
        LinkKind::Macvlan { parent, .. } => parent.clone(),
        LinkKind::Loopback | LinkKind::Existing { .. } | LinkKind::Bridge | LinkKind::Veth { .. } => None,
    }
}

/// The MTU the kernel gives a new link of this kind when none is set, where that is a fixed
/// rule (a bridge's depends on its ports and a stacked link's on its lower: see the planner).
pub fn fixed_default_mtu(kind: &LinkKind) -> Option<u32> {
    const ETHERNET: u32 = 1500;
    match kind {
        LinkKind::Veth { .. } => Some(ETHERNET),
        LinkKind::Vxlan(v) if v.dev.is_none() => Some(ETHERNET),
        _ => None,
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
        other => LinkKind::Existing { kind: other.map(str::to_string) },
    }
}
