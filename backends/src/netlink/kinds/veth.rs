//! `veth`: a pair of links created in one request, each end possibly in its own namespace. The
//! executor builds the peer's link message (it needs the peer namespace's fd); live, the ends
//! find each other by their `IFLA_LINK` ifindex pairs.

use super::super::state::{LinkKind, LinkRef};
use super::link_ref;
use netcfg_compiler::ir::{LinkId, Node};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};

pub fn project(node: &Node, peer: LinkId) -> LinkKind {
    LinkKind::Veth { peer: Some(link_ref(node, peer)) }
}

/// The link info of a veth whose peer is `peer` (a complete link message).
pub fn encode(peer: LinkMessage) -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]
}

/// Asks for one transmit and one receive queue on a veth end being created: the number the
/// kernel leaves active anyway. Without them the driver allocates a queue per possible CPU,
/// then lowers the active count to one, and lowering waits for an RCU grace period
/// (`netif_set_real_num_tx_queues` → `synchronize_net`) — twice per pair, under the RTNL
/// lock: 80% of the time a first apply of 1000 pairs spent asleep, and `ip link add` pays it
/// too. What differs is only the most queues `ethtool -L` could activate later (1, not one
/// per CPU).
pub fn one_queue(m: &mut LinkMessage) {
    m.attributes.push(LinkAttribute::NumTxQueues(1));
    m.attributes.push(LinkAttribute::NumRxQueues(1));
}

/// Both ends of a pair, when the peer is known.
pub fn peer(kind: &LinkKind) -> Option<&LinkRef> {
    match kind {
        LinkKind::Veth { peer } => peer.as_ref(),
        _ => None,
    }
}
