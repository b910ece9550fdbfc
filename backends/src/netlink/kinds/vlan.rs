//! `vlan`: an 802.1Q (or 802.1ad) tagged link on a parent (a NIC, a bond, a bridge, another
//! VLAN). The parent is named in `IFLA_LINK`; a parent in the host namespace of a VLAN that
//! lives in a `netns` is handled by the executor (created there, moved in the same request).

use super::super::live::RawLink;
use super::super::state::{LinkKind, LinkRef};
use super::{link_ref, Lookup};
use netcfg_compiler::ir::{LinkId, Node};
use netcfg_lang::links::VlanProtocol;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVlan, LinkInfo, VlanProtocol as NlProtocol};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vlan {
    pub parent: Option<LinkRef>,
    pub id: u16,
    pub protocol: VlanProtocol,
}

pub fn project(node: &Node, parent: LinkId, id: u16, protocol: VlanProtocol) -> LinkKind {
    LinkKind::Vlan(Vlan { parent: Some(link_ref(node, parent)), id, protocol })
}

pub fn encode(v: &Vlan) -> Vec<LinkInfo> {
    let protocol = match v.protocol {
        VlanProtocol::Dot1q => NlProtocol::Ieee8021Q,
        VlanProtocol::Dot1ad => NlProtocol::Ieee8021Ad,
    };
    vec![
        LinkInfo::Kind(InfoKind::Vlan),
        LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(v.id), InfoVlan::Protocol(protocol)])),
    ]
}

pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut v = Vlan { parent: None, id: 0, protocol: VlanProtocol::Dot1q };
    if let Some(InfoData::Vlan(attrs)) = &l.data {
        for a in attrs {
            match a {
                InfoVlan::Id(i) => v.id = *i,
                InfoVlan::Protocol(NlProtocol::Ieee8021Ad) => v.protocol = VlanProtocol::Dot1ad,
                _ => {}
            }
        }
    }
    v.parent = l.link.and_then(|p| lookup.name(&lookup.link_ns(ns, l), p));
    LinkKind::Vlan(v)
}
