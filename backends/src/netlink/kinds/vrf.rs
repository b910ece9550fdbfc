//! `vrf`: an L3 master device bound to a routing table. Links join it with `master`; the kernel
//! adds the `l3mdev` policy rule (priority 1000) when the first VRF appears, and the VRF's
//! local and connected routes go to its table.

use super::super::live::RawLink;
use super::super::state::LinkKind;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVrf, LinkInfo};

pub fn encode(table: u32) -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Vrf), LinkInfo::Data(InfoData::Vrf(vec![InfoVrf::TableId(table)]))]
}

pub fn decode(l: &RawLink) -> LinkKind {
    let mut table = 0;
    if let Some(InfoData::Vrf(attrs)) = &l.data {
        for a in attrs {
            if let InfoVrf::TableId(t) = a {
                table = *t;
            }
        }
    }
    LinkKind::Vrf { table }
}
