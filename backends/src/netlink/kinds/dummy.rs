//! `dummy`: a link with no device behind it, for addresses that belong to the node rather than
//! to a wire (a router id, a service address announced by BGP).

use rtnetlink::packet_route::link::{InfoKind, LinkInfo};

pub fn encode() -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Dummy)]
}
