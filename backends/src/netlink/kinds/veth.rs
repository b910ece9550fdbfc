//! `veth`: a pair of links created in one request, each end possibly in its own namespace. The
//! executor builds the peer's link message (it needs the peer namespace's fd); live, the ends
//! find each other by their `IFLA_LINK` ifindex pairs.

use super::super::state::{LinkKind, LinkRef};
use super::link_ref;
use netcfg_compiler::ir::{LinkId, Node};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkInfo, LinkMessage};

pub fn project(node: &Node, peer: LinkId) -> LinkKind {
    LinkKind::Veth { peer: Some(link_ref(node, peer)) }
}

/// The link info of a veth whose peer is `peer` (a complete link message).
pub fn encode(peer: LinkMessage) -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]
}

/// Both ends of a pair, when the peer is known.
pub fn peer(kind: &LinkKind) -> Option<&LinkRef> {
    match kind {
        LinkKind::Veth { peer } => peer.as_ref(),
        _ => None,
    }
}
