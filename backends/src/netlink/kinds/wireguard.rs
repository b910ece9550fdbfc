//! `wireguard`: an encrypted L3 tunnel. The link is created over rtnetlink like any other; its
//! keys, port and peers are set and read over generic netlink (the `wireguard` family), on a
//! socket opened inside the link's namespace.
//!
//! Secrets never enter netcfg's state: the spec names the files that hold them, the desired
//! state holds those names, and reading the live device turns "the kernel's key equals the
//! content of that file" into the same file name ([`Key::File`]) — or [`Key::Other`]. Plans,
//! JSON, journals and snapshots therefore carry paths, never keys; the key is read from its file
//! only at the moment it is sent to the kernel.

use super::super::namespaces::{run_at, Location};
use super::super::state::LinkKind;
use ipnet::IpNet;
use netcfg_lang::ast::{KeyFile, WireguardDecl};
use netcfg_lang::value::{parse_wg_key, wg_key_text};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute, WireguardCmd,
    WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use rtnetlink::packet_route::link::{InfoKind, LinkInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr as IpEndpoint;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wireguard {
    pub private_key: Key,
    /// `None` desired: any (the kernel picks one).
    pub listen_port: Option<u16>,
    pub fwmark: u32,
    /// By public key (base64).
    pub peers: BTreeMap<String, Peer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub endpoint: Option<IpEndpoint>,
    pub allowed_ips: BTreeSet<IpNet>,
    pub keepalive: u16,
    pub preshared_key: Option<Key>,
}

/// A secret, by where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// The content of this file.
    File(KeyFile),
    /// Not what the spec's file holds (or the file cannot be read), or not read.
    Other,
}

pub fn project(w: &WireguardDecl) -> LinkKind {
    LinkKind::Wireguard(Wireguard {
        private_key: Key::File(w.private_key_file.value.clone()),
        listen_port: w.listen_port.as_ref().map(|p| p.value),
        fwmark: w.fwmark.as_ref().map_or(0, |m| m.value),
        peers: w
            .peers
            .iter()
            .map(|p| {
                let peer = Peer {
                    endpoint: p.endpoint.as_ref().map(|e| IpEndpoint::new(e.value.0, e.value.1)),
                    allowed_ips: p.allowed_ips.iter().copied().collect(),
                    keepalive: p.keepalive.as_ref().map_or(0, |k| k.value),
                    preshared_key: p.preshared_key_file.as_ref().map(|f| Key::File(f.value.clone())),
                };
                (wg_key_text(&p.public_key.value), peer)
            })
            .collect(),
    })
}

/// Whether a live device is configured as desired (a listen port the spec leaves out is any).
pub fn same(desired: &Wireguard, live: &Wireguard) -> bool {
    desired.private_key == live.private_key
        && desired.listen_port.is_none_or(|p| live.listen_port == Some(p))
        && desired.fwmark == live.fwmark
        && desired.peers == live.peers
}

pub fn encode() -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Wireguard)]
}

/// A device as a dump shows it, before [`read`] fills in its configuration.
pub fn unread() -> LinkKind {
    LinkKind::Wireguard(Wireguard { private_key: Key::Other, listen_port: None, fwmark: 0, peers: BTreeMap::new() })
}

/// How a plan shows the device: where its key comes from, never the key.
pub fn describe(w: &Wireguard) -> String {
    let key = match &w.private_key {
        Key::File(f) => format!(" key from {}", f.written),
        Key::Other => " another key".to_string(),
    };
    let port = w.listen_port.map(|p| format!(", listen-port {p}")).unwrap_or_default();
    let peers: Vec<String> = w
        .peers
        .iter()
        .map(|(k, p)| {
            let ips: Vec<String> = p.allowed_ips.iter().map(|n| n.to_string()).collect();
            let to = p.endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
            format!(
                "{}…{to} for {}",
                &k[..8.min(k.len())],
                if ips.is_empty() { "nothing".into() } else { ips.join(",") }
            )
        })
        .collect();
    format!("{key}{port}, peers [{}]", peers.join("; "))
}

/// Reads a key file: base64 of 32 bytes, as `wg genkey` writes it. The error names the file,
/// never its content.
fn read_key(f: &KeyFile) -> Result<[u8; 32], String> {
    let text =
        std::fs::read_to_string(&f.path).map_err(|e| format!("cannot read the key file `{}`: {e}", f.written))?;
    parse_wg_key(text.trim())
        .map_err(|_| format!("`{}` does not hold a WireGuard key (44 characters of base64)", f.written))
}

/// Sets the device's keys, port, mark and peers (replacing every peer), in its namespace.
pub fn configure(loc: &Location, name: &str, w: &Wireguard) -> Result<(), String> {
    let private = match &w.private_key {
        Key::File(f) => read_key(f)?,
        Key::Other => return Err(format!("no key file for WireGuard link `{name}`")),
    };
    let mut attributes = vec![
        WireguardAttribute::IfName(name.to_string()),
        WireguardAttribute::PrivateKey(private),
        WireguardAttribute::Fwmark(w.fwmark),
        WireguardAttribute::Flags(WireguardDeviceFlags::ReplacePeers),
    ];
    if let Some(p) = w.listen_port {
        attributes.push(WireguardAttribute::ListenPort(p));
    }
    let mut peers = Vec::new();
    for (key, p) in &w.peers {
        let public = parse_wg_key(key).map_err(|e| e.message)?;
        let mut a = vec![
            WireguardPeerAttribute::PublicKey(public),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
            WireguardPeerAttribute::PersistentKeepalive(p.keepalive),
        ];
        if let Some(e) = p.endpoint {
            a.push(WireguardPeerAttribute::Endpoint(e));
        }
        match &p.preshared_key {
            Some(Key::File(f)) => a.push(WireguardPeerAttribute::PresharedKey(read_key(f)?)),
            Some(Key::Other) => return Err(format!("no preshared key file for a peer of `{name}`")),
            None => {}
        }
        let ips = p
            .allowed_ips
            .iter()
            .map(|n| {
                WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(if n.addr().is_ipv4() {
                        WireguardAddressFamily::Ipv4
                    } else {
                        WireguardAddressFamily::Ipv6
                    }),
                    WireguardAllowedIpAttr::IpAddr(n.addr()),
                    WireguardAllowedIpAttr::Cidr(n.prefix_len()),
                ])
            })
            .collect();
        a.push(WireguardPeerAttribute::AllowedIps(ips));
        peers.push(WireguardPeer(a));
    }
    attributes.push(WireguardAttribute::Peers(peers));
    let msg = WireguardMessage { cmd: WireguardCmd::SetDevice, attributes };
    let loc = loc.clone();
    run_at(&loc, move || request(msg, NLM_F_REQUEST | NLM_F_ACK).map(drop))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot configure WireGuard link `{name}`: {e}"))
}

/// Reads the device's configuration; its keys are compared with the files `desired` names
/// and reported by those names when they match.
pub fn read(loc: &Location, name: &str, desired: Option<&Wireguard>) -> Result<Wireguard, String> {
    let msg =
        WireguardMessage { cmd: WireguardCmd::GetDevice, attributes: vec![WireguardAttribute::IfName(name.into())] };
    let loc = loc.clone();
    let answers = run_at(&loc, move || request(msg, NLM_F_REQUEST | NLM_F_DUMP))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read WireGuard link `{name}`: {e}"))?;
    let file_holds = |f: Option<&Key>, key: &[u8; 32]| -> Key {
        match f {
            Some(Key::File(f)) if read_key(f).is_ok_and(|k| &k == key) => Key::File(f.clone()),
            _ => Key::Other,
        }
    };
    let mut w = Wireguard { private_key: Key::Other, listen_port: None, fwmark: 0, peers: BTreeMap::new() };
    for m in answers {
        for a in m.attributes {
            match a {
                WireguardAttribute::PrivateKey(k) => {
                    w.private_key = file_holds(desired.map(|d| &d.private_key), &k);
                }
                WireguardAttribute::ListenPort(p) => w.listen_port = Some(p),
                WireguardAttribute::Fwmark(f) => w.fwmark = f,
                WireguardAttribute::Peers(peers) => {
                    for p in peers {
                        let mut public = None;
                        let mut peer =
                            Peer { endpoint: None, allowed_ips: BTreeSet::new(), keepalive: 0, preshared_key: None };
                        let mut psk = None;
                        for a in p.0 {
                            match a {
                                WireguardPeerAttribute::PublicKey(k) => public = Some(wg_key_text(&k)),
                                WireguardPeerAttribute::Endpoint(e) => peer.endpoint = Some(e),
                                WireguardPeerAttribute::PersistentKeepalive(k) => peer.keepalive = k,
                                WireguardPeerAttribute::PresharedKey(k) if k != [0; 32] => psk = Some(k),
                                WireguardPeerAttribute::AllowedIps(ips) => {
                                    for ip in ips {
                                        let (mut addr, mut len) = (None, None);
                                        for x in ip.0 {
                                            match x {
                                                WireguardAllowedIpAttr::IpAddr(a) => addr = Some(a),
                                                WireguardAllowedIpAttr::Cidr(c) => len = Some(c),
                                                _ => {}
                                            }
                                        }
                                        if let Some(n) = addr.zip(len).and_then(|(a, l)| IpNet::new(a, l).ok()) {
                                            peer.allowed_ips.insert(n);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        let Some(public) = public else { continue };
                        let wanted = desired.and_then(|d| d.peers.get(&public)).and_then(|d| d.preshared_key.as_ref());
                        peer.preshared_key = psk.map(|k| file_holds(wanted, &k));
                        w.peers.insert(public, peer);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(w)
}

/// One generic netlink request on a fresh socket in the calling thread's namespace: resolves
/// the `wireguard` family, sends `msg`, and collects the answers until the ACK or the end of
/// the dump.
fn request(msg: WireguardMessage, flags: u16) -> std::io::Result<Vec<WireguardMessage>> {
    let mut sock = Socket::new(NETLINK_GENERIC)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let family = resolve_family(&sock, WireguardMessage::family_name())?;
    let mut genl = GenlMessage::from_payload(msg);
    genl.set_resolved_family_id(family);
    let mut answers = Vec::new();
    exchange(&sock, genl, flags, |m| answers.push(m))?;
    Ok(answers)
}

fn resolve_family(sock: &Socket, name: &str) -> std::io::Result<u16> {
    let ctrl = GenlCtrl { cmd: GenlCtrlCmd::GetFamily, nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())] };
    let mut id = None;
    exchange(sock, GenlMessage::from_payload(ctrl), NLM_F_REQUEST | NLM_F_ACK, |m: GenlCtrl| {
        for a in m.nlas {
            if let GenlCtrlAttrs::FamilyId(i) = a {
                id = Some(i);
            }
        }
    })?;
    id.ok_or_else(|| std::io::Error::other(format!("the kernel has no generic netlink family `{name}`")))
}

/// Sends one message and feeds each answer to `each` until an ACK, an error or `NLMSG_DONE`.
fn exchange<F>(sock: &Socket, payload: GenlMessage<F>, flags: u16, mut each: impl FnMut(F)) -> std::io::Result<()>
where
    F: GenlFamily + std::fmt::Debug + Clone + PartialEq + Eq,
    GenlMessage<F>: netlink_packet_core::NetlinkSerializable + netlink_packet_core::NetlinkDeserializable,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    loop {
        let (data, _) = sock.recv_from_full()?;
        let mut at = 0;
        while at < data.len() {
            let m = NetlinkMessage::<GenlMessage<F>>::deserialize(&data[at..])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::InnerMessage(g) => each(g.payload),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(()),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
            return Ok(());
        }
    }
}
