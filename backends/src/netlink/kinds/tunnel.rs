//! Point-to-point IP tunnels: `gre` (`ip_gre`), `ipip`, `sit` and `ip6tnl` (`ip6_tunnel`).
//! GRE takes its endpoints in the GRE attributes, the others in the generic IP tunnel ones. An
//! option the spec leaves out is not compared (the kernel fills in its own: a hop limit of 64
//! for `ip6tnl`, `ttl inherit` for the others).

use super::super::live::RawLink;
use super::super::state::{LinkKind, LinkRef};
use super::Lookup;
use netcfg_compiler::ir::{self, Node};
use netcfg_lang::links::TunnelKind;
use rtnetlink::packet_route::link::{GreIOFlags, InfoData, InfoGre, InfoIpTunnel, InfoKind, LinkInfo};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub local: Option<IpAddr>,
    pub remote: Option<IpAddr>,
    pub ttl: Option<u8>,
    pub key: Option<u32>,
    /// The underlay link, in the tunnel's namespace.
    pub dev: Option<String>,
}

pub fn project(node: &Node, t: &ir::Tunnel) -> LinkKind {
    LinkKind::Tunnel(Tunnel {
        kind: t.kind,
        local: t.local.as_ref().map(|a| a.value),
        remote: Some(t.remote.value),
        ttl: t.ttl,
        key: t.key,
        dev: t.dev.as_ref().map(|d| node.link(d.value).name.value.clone()),
    })
}

pub fn lower(t: &Tunnel, ns: &str) -> Option<LinkRef> {
    t.dev.as_ref().map(|d| LinkRef { ns: ns.to_string(), name: d.clone() })
}

/// Whether a live tunnel is the one desired: the options the spec gives are equal.
pub fn same(desired: &Tunnel, live: &Tunnel) -> bool {
    desired.kind == live.kind
        && desired.remote == live.remote
        && desired.dev == live.dev
        && desired.local.is_none_or(|_| desired.local == live.local)
        && desired.ttl.is_none_or(|_| desired.ttl == live.ttl)
        && desired.key == live.key
}

pub fn kind_of(kind: TunnelKind) -> InfoKind {
    match kind {
        TunnelKind::Gre => InfoKind::GreTun,
        TunnelKind::Ipip => InfoKind::IpIp,
        TunnelKind::Sit => InfoKind::SitTun,
        TunnelKind::Ip6tnl => InfoKind::Ip6Tnl,
    }
}

pub fn encode(t: &Tunnel, dev: Option<u32>) -> Vec<LinkInfo> {
    let data = if t.kind == TunnelKind::Gre {
        let mut d = Vec::new();
        if let Some(IpAddr::V4(a)) = t.remote {
            d.push(InfoGre::Remote(a));
        }
        if let Some(IpAddr::V4(a)) = t.local {
            d.push(InfoGre::Local(a));
        }
        if let Some(ttl) = t.ttl {
            d.push(InfoGre::Ttl(ttl));
        }
        if let Some(k) = t.key {
            d.extend([
                InfoGre::IKey(k),
                InfoGre::OKey(k),
                InfoGre::IFlags(GreIOFlags::Key),
                InfoGre::OFlags(GreIOFlags::Key),
            ]);
        }
        if let Some(i) = dev {
            d.push(InfoGre::Link(i));
        }
        InfoData::GreTun(d)
    } else {
        let mut d = Vec::new();
        if let Some(a) = t.remote {
            d.push(InfoIpTunnel::Remote(a));
        }
        if let Some(a) = t.local {
            d.push(InfoIpTunnel::Local(a));
        }
        if let Some(ttl) = t.ttl {
            d.push(InfoIpTunnel::Ttl(ttl));
        }
        if let Some(i) = dev {
            d.push(InfoIpTunnel::Link(i));
        }
        InfoData::IpTunnel(d)
    };
    vec![LinkInfo::Kind(kind_of(t.kind)), LinkInfo::Data(data)]
}

pub fn decode(kind: TunnelKind, ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut t = Tunnel { kind, local: None, remote: None, ttl: None, key: None, dev: None };
    let set = |slot: &mut Option<IpAddr>, a: IpAddr| {
        if !a.is_unspecified() {
            *slot = Some(a);
        }
    };
    let mut keyed = false;
    let mut link = None;
    match &l.data {
        Some(InfoData::GreTun(attrs)) => {
            for a in attrs {
                match a {
                    InfoGre::Remote(a) => set(&mut t.remote, IpAddr::V4(*a)),
                    InfoGre::Local(a) => set(&mut t.local, IpAddr::V4(*a)),
                    InfoGre::Ttl(v) => t.ttl = Some(*v),
                    InfoGre::IKey(k) => t.key = Some(*k),
                    InfoGre::IFlags(f) => keyed = f.contains(GreIOFlags::Key),
                    InfoGre::Link(i) => link = Some(*i),
                    _ => {}
                }
            }
            if !keyed {
                t.key = None;
            }
        }
        Some(InfoData::IpTunnel(attrs)) => {
            for a in attrs {
                match a {
                    InfoIpTunnel::Remote(a) => set(&mut t.remote, *a),
                    InfoIpTunnel::Local(a) => set(&mut t.local, *a),
                    InfoIpTunnel::Ttl(v) => t.ttl = Some(*v),
                    InfoIpTunnel::Link(i) => link = Some(*i),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    t.dev = link.filter(|i| *i != 0).and_then(|i| lookup.name(ns, i)).map(|r| r.name);
    LinkKind::Tunnel(t)
}
