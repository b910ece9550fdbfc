//! `vxlan`: an L2 overlay over UDP. The underlay `dev` is in the VXLAN's own namespace and is
//! named in the VXLAN's link data (`IFLA_VXLAN_LINK`), not in `IFLA_LINK`. The kernel keeps a
//! unicast remote and a multicast group in one attribute.

use super::super::live::RawLink;
use super::super::state::{LinkKind, LinkRef};
use super::Lookup;
use netcfg_compiler::ir::{self, Node};
use netcfg_lang::ast::VxlanOptions;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkInfo};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    pub vni: u32,
    pub local: Option<IpAddr>,
    pub remote: Option<IpAddr>,
    pub group: Option<IpAddr>,
    /// The underlay link, in the vxlan's own namespace.
    pub dev: Option<String>,
    pub port: u16,
    /// Desired: what the spec sets (the rest is left alone); live: what the kernel has.
    #[serde(default)]
    pub options: VxlanOptions,
}

/// Whether a live VXLAN is the desired one: equal, and equal in the options the spec gives.
pub fn same(desired: &Vxlan, live: &Vxlan) -> bool {
    fn o<T: PartialEq>(d: Option<T>, l: Option<T>) -> bool {
        d.is_none() || d == l
    }
    Vxlan { options: VxlanOptions::default(), ..desired.clone() }
        == Vxlan { options: VxlanOptions::default(), ..live.clone() }
        && o(desired.options.learning, live.options.learning)
        && o(desired.options.proxy, live.options.proxy)
        && o(desired.options.ttl, live.options.ttl)
}

pub fn project(node: &Node, kind: &ir::LinkKind) -> LinkKind {
    let ir::LinkKind::Vxlan { vni, local, remote, group, dev, port, options } = kind else {
        unreachable!("vxlan::project on a {}", kind.keyword())
    };
    LinkKind::Vxlan(Vxlan {
        vni: vni.value,
        local: local.as_ref().map(|v| v.value),
        remote: remote.as_ref().map(|v| v.value),
        group: group.as_ref().map(|v| v.value),
        dev: dev.as_ref().map(|d| node.link(d.value).name.value.clone()),
        port: *port,
        options: *options,
    })
}

pub fn lower(v: &Vxlan, ns: &str) -> Option<LinkRef> {
    v.dev.as_ref().map(|d| LinkRef { ns: ns.to_string(), name: d.clone() })
}

pub fn encode(v: &Vxlan, dev: Option<u32>) -> Vec<LinkInfo> {
    let mut data = vec![InfoVxlan::Id(v.vni), InfoVxlan::Port(v.port)];
    match v.local {
        Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
        Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
        None => {}
    }
    match v.remote.or(v.group) {
        Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
        Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
        None => {}
    }
    if let Some(d) = dev {
        data.push(InfoVxlan::Link(d));
    }
    if let Some(l) = v.options.learning {
        data.push(InfoVxlan::Learning(l));
    }
    if let Some(p) = v.options.proxy {
        data.push(InfoVxlan::Proxy(p));
    }
    if let Some(t) = v.options.ttl {
        data.push(InfoVxlan::Ttl(t));
    }
    vec![LinkInfo::Kind(InfoKind::Vxlan), LinkInfo::Data(InfoData::Vxlan(data))]
}

pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut v = Vxlan {
        vni: 0,
        local: None,
        remote: None,
        group: None,
        dev: None,
        port: 4789,
        options: VxlanOptions::default(),
    };
    if let Some(InfoData::Vxlan(attrs)) = &l.data {
        for a in attrs {
            match a {
                InfoVxlan::Id(i) => v.vni = *i,
                InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(*a)),
                InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(*a)),
                InfoVxlan::Group(a) => set_remote(&mut v, IpAddr::V4(*a)),
                InfoVxlan::Group6(a) => set_remote(&mut v, IpAddr::V6(*a)),
                InfoVxlan::Link(i) => v.dev = lookup.name(ns, *i).map(|r| r.name),
                InfoVxlan::Port(p) => v.port = *p,
                InfoVxlan::Learning(b) => v.options.learning = Some(*b),
                InfoVxlan::Proxy(b) => v.options.proxy = Some(*b),
                InfoVxlan::Ttl(t) => v.options.ttl = Some(*t),
                _ => {}
            }
        }
    }
    LinkKind::Vxlan(v)
}

fn set_remote(v: &mut Vxlan, a: IpAddr) {
    if a.is_unspecified() {
        return;
    }
    if a.is_multicast() {
        v.group = Some(a);
    } else {
        v.remote = Some(a);
    }
}
