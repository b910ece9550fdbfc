//! `ipvlan`: links that share their parent's MAC and are told apart by IP address, switched at
//! L2 or routed at L3 by the parent. Like a VLAN, the parent is `IFLA_LINK`.

use super::super::live::RawLink;
use super::super::state::LinkKind;
use super::{link_ref, Lookup};
use netcfg_compiler::ir::{LinkId, Node};
use netcfg_lang::links::IpvlanMode;
use rtnetlink::packet_route::link::{InfoData, InfoIpVlan, InfoKind, IpVlanMode, LinkInfo};

pub fn project(node: &Node, parent: LinkId, mode: IpvlanMode) -> LinkKind {
    LinkKind::Ipvlan { parent: Some(link_ref(node, parent)), mode }
}

pub fn encode(mode: IpvlanMode) -> Vec<LinkInfo> {
    let mode = match mode {
        IpvlanMode::L2 => IpVlanMode::L2,
        IpvlanMode::L3 => IpVlanMode::L3,
        IpvlanMode::L3s => IpVlanMode::L3S,
    };
    vec![LinkInfo::Kind(InfoKind::IpVlan), LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(mode)]))]
}

pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut mode = IpvlanMode::L2;
    if let Some(InfoData::IpVlan(attrs)) = &l.data {
        for a in attrs {
            if let InfoIpVlan::Mode(m) = a {
                mode = match m {
                    IpVlanMode::L3 => IpvlanMode::L3,
                    IpVlanMode::L3S => IpvlanMode::L3s,
                    _ => IpvlanMode::L2,
                };
            }
        }
    }
    let parent = l.link.and_then(|p| lookup.name(&lookup.link_ns(ns, l), p));
    LinkKind::Ipvlan { parent, mode }
}
