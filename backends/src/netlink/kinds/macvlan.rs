//! `macvlan`: a link with its own MAC on a parent in the node's host namespace. Created in the
//! parent's namespace and moved into its own in the same request (`IFLA_NET_NS_FD`).

use super::super::live::RawLink;
use super::super::state::LinkKind;
use super::{link_ref, Lookup};
use netcfg_compiler::ir::{LinkId, Node};
use netcfg_lang::vocab::MacvlanMode;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoMacVlan, LinkInfo, MacVlanMode};

pub fn project(node: &Node, parent: LinkId, mode: MacvlanMode) -> LinkKind {
    LinkKind::Macvlan { parent: Some(link_ref(node, parent)), mode }
}

pub fn encode(mode: MacvlanMode) -> Vec<LinkInfo> {
    let mode = match mode {
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    };
    vec![LinkInfo::Kind(InfoKind::MacVlan), LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)]))]
}

pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut mode = MacvlanMode::Bridge;
    if let Some(InfoData::MacVlan(attrs)) = &l.data {
        for a in attrs {
            if let InfoMacVlan::Mode(m) = a {
                mode = match m {
                    MacVlanMode::Private => MacvlanMode::Private,
                    MacVlanMode::Vepa => MacvlanMode::Vepa,
                    MacVlanMode::Passthrough => MacvlanMode::Passthru,
                    _ => MacvlanMode::Bridge,
                };
            }
        }
    }
    let parent = l.link.and_then(|p| lookup.name(&lookup.link_ns(ns, l), p));
    LinkKind::Macvlan { parent, mode }
}
