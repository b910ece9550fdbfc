//! Executing a plan: each op becomes one or a few rtnetlink requests (sysctls are file writes
//! inside the namespace, nft ops run `nft`). On the first failure the inverses of the ops done
//! so far run in reverse order, and the error names the failed op and its spec span.

use super::conn::{Conn, Conns, NlError, Pending, CHANGE, CREATE, REPLACE};
use super::kinds;
use super::live::connection;
use super::namespaces::{run_at, NetnsMap};
use super::plan::{Action, Op};
use super::state::*;
use crate::nftables::exec;
use crate::nftables::ruleset::TABLE_NAME;
use ipnet::IpNet;
use netcfg_lang::value::SysctlPath;
use netcfg_lang::vocab::{RouteScope, RouteType};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, BridgeStpState, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, InfoPortKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope as NlScope, RouteType as NlType,
};
use rtnetlink::packet_route::rule::{
    RuleAction as NlRuleAction, RuleAttribute, RuleHeader, RuleMessage, RulePortRange,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Executes ops against the kernel: the namespace map, one connection per namespace, and a
/// cache of ifindexes by name.
pub struct Executor<'a> {
    pub map: &'a NetnsMap,
    pub node: &'a str,
    pub conns: &'a mut Conns,
    index: ByLink<u32>,
    /// Link kinds asked of the kernel (is a master a bond?), forgotten with the ifindex.
    kinds: ByLink<Option<String>>,
    /// Bridges this apply creates that many ports join ([`Executor::prepare`]): made with
    /// multicast snooping off, and given the snooping the spec wants after the op (by index)
    /// with which their last port joins.
    quiet: HashMap<(NsName, String), (usize, bool)>,
}

/// How many ports must join a bridge made in the same apply for it to join them with multicast
/// snooping off. At each port that comes up the kernel re-selects the state of every port of
/// the bridge and, with snooping on, re-arms each one's multicast timers
/// (`br_port_state_selection` → `br_multicast_enable_port`): quadratic in the ports, 10% of the
/// CPU of a first apply of 1000 ports. With snooping off the walk is cheap, and turning it on
/// afterwards arms each port once. A small bridge is not worth the two requests.
pub const QUIET_BRIDGE_PORTS: usize = 64;

/// The bridges `ops` create that at least [`QUIET_BRIDGE_PORTS`] ports join (created with it,
/// or given it as master), by (namespace, name): the index of the op with which the last port
/// joins, and the snooping the spec wants (on when unset, the kernel's default). A bridge whose
/// spec turns snooping off is not among them: it is made as the spec says.
pub fn quiet_bridges(ops: &[Op]) -> HashMap<(NsName, String), (usize, bool)> {
    // (namespace, bridge) -> (ports joining, index of the last op joining one, snooping wanted)
    type Made<'o> = HashMap<(&'o str, &'o str), (usize, usize, bool)>;
    fn join<'o>(made: &mut Made<'o>, ns: &'o str, master: &'o str, k: usize) {
        if let Some((ports, last, _)) = made.get_mut(&(ns, master)) {
            *ports += 1;
            *last = k;
        }
    }
    let mut made: Made = HashMap::new();
    for (k, op) in ops.iter().enumerate() {
        match &op.action {
            Action::CreateLink { name, link, peer } => {
                let snooping = link.opts.bridge.multicast_snooping;
                if matches!(link.kind, LinkKind::Bridge) && snooping != Some(false) {
                    made.insert((op.ns.as_str(), name.as_str()), (0, k, snooping.unwrap_or(true)));
                }
                if let Some(m) = &link.master {
                    join(&mut made, &op.ns, m, k);
                }
                if let Some((p, pl)) = peer {
                    if let Some(m) = &pl.master {
                        join(&mut made, &p.ns, m, k);
                    }
                }
            }
            Action::SetLink { to, .. } => {
                if let Some(Some(m)) = &to.master {
                    join(&mut made, &op.ns, m, k);
                }
            }
            _ => {}
        }
    }
    made.into_iter()
        .filter(|(_, (ports, _, _))| *ports >= QUIET_BRIDGE_PORTS)
        .map(|((ns, name), (_, last, want))| ((ns.to_string(), name.to_string()), (last, want)))
        .collect()
}

/// What an apply learned about links, by namespace and then link name: looked up by `&str`
/// (a key of two `String`s was two allocations per lookup, several per route of a run).
type ByLink<T> = foldhash::HashMap<NsName, foldhash::HashMap<String, T>>;

fn by_link<'m, T>(m: &'m ByLink<T>, ns: &str, name: &str) -> Option<&'m T> {
    m.get(ns)?.get(name)
}

/// How a link request names its link: by ifindex when the apply knows it, else by name (the
/// kernel finds the link by `IFLA_IFNAME` when the index is 0). A link just created is named:
/// asking each new link's index was a request and a full link message per link (2,000 of them
/// in a first apply of 1000 veth pairs); an op that needs the number itself (an address, a
/// route, a master, a rename) asks for it then.
#[derive(Clone)]
enum LinkTarget {
    Index(u32),
    Name(String),
}

impl LinkTarget {
    fn put(&self, msg: &mut LinkMessage) {
        match self {
            LinkTarget::Index(i) => msg.header.index = *i,
            LinkTarget::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.clone())),
        }
    }
}

impl<'a> Executor<'a> {
    pub fn new(map: &'a NetnsMap, node: &'a str, conns: &'a mut Conns) -> Executor<'a> {
        Executor { map, node, conns, index: ByLink::default(), kinds: ByLink::default(), quiet: HashMap::new() }
    }

    /// Looks at the ops about to run ([`quiet_bridges`]); [`Executor::after_op`] then gives
    /// each quiet bridge its snooping after its last port. An apply that stops in between
    /// removes the bridge with everything else it made.
    pub fn prepare(&mut self, ops: &[Op]) {
        self.quiet = quiet_bridges(ops);
    }

    /// After op `k`: the multicast snooping of each quiet bridge whose last port joined with it.
    pub async fn after_op(&mut self, k: usize) -> Result<(), NlError> {
        if self.quiet.is_empty() {
            return Ok(());
        }
        let done: Vec<(NsName, String, bool)> = self
            .quiet
            .iter()
            .filter(|(_, (last, _))| *last == k)
            .map(|((ns, name), (_, want))| (ns.clone(), name.clone(), *want))
            .collect();
        for (ns, name, want) in done {
            self.quiet.remove(&(ns.clone(), name.clone()));
            let mut msg = LinkMessage::default();
            self.target(&ns, &name).put(&mut msg);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(want)])),
            ]));
            self.conn(&ns)?.execute(RouteNetlinkMessage::NewLink(msg), CHANGE).await?;
        }
        Ok(())
    }

    fn conn(&mut self, ns: &str) -> Result<&mut Conn, NlError> {
        // Asked several times per op: an open connection is found without locating its
        // namespace (a path made anew each time).
        if self.conns.contains_key(ns) {
            return Ok(self.conns.get_mut(ns).expect("just found"));
        }
        let loc = self.map.locate(ns);
        connection(self.conns, ns, &loc)
    }

    async fn index_of(&mut self, ns: &str, name: &str) -> Result<u32, NlError> {
        if let Some(i) = by_link(&self.index, ns, name) {
            return Ok(*i);
        }
        let mut msg = super::live::link_request();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answer = self
            .conn(ns)?
            .get(RouteNetlinkMessage::GetLink(msg), 0)
            .await
            .map_err(|e| NlError { message: format!("link `{name}`: {}", e.message), ..e })?;
        let idx = answer
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| NlError::other(format!("link `{name}` not found")))?;
        self.index.entry(ns.to_string()).or_default().insert(name.to_string(), idx);
        Ok(idx)
    }

    /// How a request names link `name`: by the ifindex this apply knows, else by name.
    fn target(&self, ns: &str, name: &str) -> LinkTarget {
        match by_link(&self.index, ns, name) {
            Some(i) => LinkTarget::Index(*i),
            None => LinkTarget::Name(name.to_string()),
        }
    }

    fn forget(&mut self, ns: &str, name: &str) {
        if let Some(m) = self.index.get_mut(ns) {
            m.remove(name);
        }
        if let Some(m) = self.kinds.get_mut(ns) {
            m.remove(name);
        }
    }

    /// A link's kind, asked once per apply (a link made anew is forgotten first).
    async fn kind_of(&mut self, ns: &str, name: &str) -> Result<Option<String>, NlError> {
        if let Some(k) = by_link(&self.kinds, ns, name) {
            return Ok(k.clone());
        }
        let kind = self.get_link(ns, name).await?.0;
        self.kinds.entry(ns.to_string()).or_default().insert(name.to_string(), kind.clone());
        Ok(kind)
    }

    pub async fn execute(&mut self, op: &Op) -> Result<(), NlError> {
        let ns = op.ns.as_str();
        match &op.action {
            Action::LoadModule { module } => crate::kernel::load_module(module).map_err(NlError::other),
            Action::WriteModulesLoad { path, content, .. } => {
                crate::kernel::write_modules_load(path, content.as_deref())
                    .map_err(|e| NlError::other(format!("cannot write `{}`: {e}", path.display())))
            }
            Action::CreateNetns => {
                self.conns.remove(ns);
                self.map.create(self.node, ns).map_err(|e| NlError::other(e.to_string()))
            }
            Action::DeleteNetns => {
                self.conns.remove(ns);
                self.index.remove(ns);
                self.kinds.remove(ns);
                self.map.delete(ns).map_err(|e| NlError::other(e.to_string()))
            }
            Action::CreateLink { name, link, peer } => self.create_link(ns, name, link, peer.as_ref()).await,
            Action::DeleteLink { name, peer, .. } => {
                let mut msg = LinkMessage::default();
                msg.header.index = self.index_of(ns, name).await?;
                self.conn(ns)?.execute(RouteNetlinkMessage::DelLink(msg), CHANGE).await?;
                self.forget(ns, name);
                if let Some((p, _)) = peer {
                    self.forget(&p.ns, &p.name);
                }
                Ok(())
            }
            Action::SetLink { name, to, .. } => self.set_link(ns, name, to).await,
            Action::MoveLink { name, from, to } => self.move_link(name, from, to).await,
            Action::RenameLink { from, to } => self.rename_link(ns, from, to).await,
            Action::AddAddress { link, net, addr } => self.address(ns, link, net, addr, Some(CREATE)).await,
            Action::ReplaceAddress { link, net, addr, .. } => self.address(ns, link, net, addr, Some(REPLACE)).await,
            Action::DeleteAddress { link, net, addr } => self.address(ns, link, net, addr, None).await,
            Action::AddRoute { key, route } => self.route(ns, key, route, Some(CREATE)).await,
            Action::ReplaceRoute { key, route, .. } => self.route(ns, key, route, Some(REPLACE)).await,
            Action::DeleteRoute { key, route } => self.route(ns, key, route, None).await,
            Action::AddRule { rule, protocol } => self.rule(ns, rule, *protocol, true).await,
            Action::DeleteRule { rule, protocol } => self.rule(ns, rule, *protocol, false).await,
            Action::AddNeighbor { link, ip, neigh } => self.neighbor(ns, link, *ip, neigh, Some(CREATE)).await,
            Action::ReplaceNeighbor { link, ip, neigh, .. } => self.neighbor(ns, link, *ip, neigh, Some(REPLACE)).await,
            Action::DeleteNeighbor { link, ip, neigh } => self.neighbor(ns, link, *ip, neigh, None).await,
            Action::WriteSysctl { path, value, .. } => {
                let file = SysctlPath(path.clone()).proc_path();
                let value = value.clone();
                run_at(&self.map.locate(ns), move || std::fs::write(&file, value.as_bytes()))
                    .and_then(|r| r)
                    .map_err(|e| NlError::other(format!("cannot write sysctl `{path}`: {e}")))
            }
            Action::Nft { script, .. } => {
                let target = self.map.locate(ns).nft_target();
                // The dynamic sets' run-time elements go into the same transaction (carry.rs):
                // state, not configuration, so the plan's script does not hold them.
                crate::nftables::carry::with_live_elements(&target, script)
                    .and_then(|full| exec::apply(&target, &full))
                    .map_err(|e| {
                        // nft's own words, on the spec text behind the line it refused.
                        let d = exec::diagnostics(script, &e, op.span).into_iter().next();
                        NlError { errno: 0, message: e.to_string(), span: d.map(|d| d.primary.span) }
                    })
            }
            Action::NftRestore { table } => self.restore_nft(ns, table.as_ref()),
        }
    }

    async fn create_link(
        &mut self,
        ns: &str,
        name: &str,
        link: &Link,
        peer: Option<&(LinkRef, Link)>,
    ) -> Result<(), NlError> {
        let mut msg = base_link_message(name, link);
        // Keeps namespace fds open until the request is answered.
        let mut fds: Vec<File> = Vec::new();
        let mut request_ns = ns.to_string();
        let kind = match &link.kind {
            LinkKind::Veth { .. } => {
                let (p, pl) = peer.ok_or_else(|| NlError::other(format!("veth `{name}` has no peer")))?;
                let mut pm = base_link_message(&p.name, pl);
                kinds::veth::one_queue(&mut msg);
                kinds::veth::one_queue(&mut pm);
                if p.ns != ns {
                    let f = self.map.locate(&p.ns).open().map_err(|e| NlError::other(e.to_string()))?;
                    pm.attributes.push(LinkAttribute::NetNsFd(f.as_raw_fd()));
                    fds.push(f);
                }
                kinds::veth::encode(pm)
            }
            kind => {
                let lower = kinds::lower(kind, ns);
                let index = match &lower {
                    Some(r) => Some(self.index_of(&r.ns, &r.name).await?),
                    None => None,
                };
                let mut encoded = kinds::encode(kind, index).map_err(NlError::other)?;
                // A bond's primary port, by index: the driver keeps its name until it joins.
                if let LinkKind::Bond(b) = kind {
                    if let Some(p) = &b.primary {
                        if let Ok(i) = self.index_of(ns, p).await {
                            kinds::bond::set_primary(&mut encoded.info, i);
                        }
                    }
                }
                if let Some(i) = encoded.link {
                    msg.attributes.push(LinkAttribute::Link(i));
                }
                // A link on a lower device in another namespace (a macvlan on a host NIC) is
                // created next to its lower device and moved in the same request.
                if let Some(r) = lower.filter(|r| r.ns != ns) {
                    let f = self.map.locate(ns).open().map_err(|e| NlError::other(e.to_string()))?;
                    msg.attributes.push(LinkAttribute::NetNsFd(f.as_raw_fd()));
                    fds.push(f);
                    request_ns = r.ns;
                }
                encoded.info
            }
        };
        msg.attributes.push(LinkAttribute::LinkInfo(kind));
        // A bridge port joins in the request that makes it (`IFLA_MASTER` at creation, as
        // `ip link add … master BR`): a request and a link notification fewer per port.
        let mut joined = false;
        if let (Some(m), true) = (&link.master, request_ns == ns) {
            if self.kind_of(ns, m).await?.as_deref() == Some("bridge") {
                msg.attributes.push(LinkAttribute::Controller(self.index_of(ns, m).await?));
                joined = true;
            }
        }
        let created = self.conn(&request_ns)?.send(RouteNetlinkMessage::NewLink(msg), CREATE)?;
        // The new links' ifindexes are not asked: later requests name them (`LinkTarget`), and
        // an op that needs the number asks then.
        // Attributes the kernel takes only on an existing link: address generation (before the
        // link is up), master, hairpin, bridge netfilter, up. They go right behind the create,
        // before its answer is read: the kernel handles one socket's requests in order, so
        // they find the link made, and when the create is refused they are refused after it
        // (its answer is the one reported). A veth pair was three round trips, now one. A
        // bridge with an MTU and a WireGuard device wait for the create (their settings go
        // first, or over another socket), and so does a link whose requests go to another
        // namespace's socket (a veth's peer elsewhere): two sockets keep no order between them.
        let mut settings = after_create(link);
        if joined {
            settings.master = None;
        }
        if self.quiet.contains_key(&(ns.to_string(), name.to_string())) {
            settings.opts.bridge.multicast_snooping = Some(false);
        }
        let one_socket = request_ns == ns && peer.is_none_or(|(p, _)| p.ns == ns);
        let behind =
            one_socket && !matches!((&link.kind, link.mtu), (LinkKind::Bridge, Some(_)) | (LinkKind::Wireguard(_), _));
        let mut sent = Vec::new();
        let mut queued = Ok(());
        if behind {
            queued = self.link_requests(ns, name, &settings, &mut sent).await;
            if let (Ok(()), Some((p, pl))) = (&queued, peer) {
                queued = self.link_requests(&p.ns, &p.name, &after_create(pl), &mut sent).await;
            }
        }
        let res = created.ack().await;
        drop(fds);
        if res.is_err() {
            self.forget(ns, name);
            if let Some((p, _)) = peer {
                self.forget(&p.ns, &p.name);
            }
            // The requests behind it are answered (refused) too: read, so none is left over.
            let _ = ack_all(sent).await;
            return res;
        }
        if behind {
            let acked = ack_all(sent).await;
            return queued.and(acked);
        }
        if let (LinkKind::Bridge, Some(mtu)) = (&link.kind, link.mtu) {
            // An MTU given at creation is not "set by the user" for the kernel, which then
            // lowers the bridge to its smallest port (`br_mtu_auto_adjust`). Changing it marks
            // it so; a change to the same value is no change: `set_link` steps aside first.
            self.set_link(ns, name, &LinkSettings { mtu: Some(mtu), ..LinkSettings::default() }).await?;
        }
        if let LinkKind::Wireguard(w) = &link.kind {
            kinds::wireguard::configure(&self.map.locate(ns), name, w).map_err(NlError::other)?;
        }
        self.set_link(ns, name, &settings).await?;
        if let Some((p, pl)) = peer {
            self.set_link(&p.ns, &p.name, &after_create(pl)).await?;
        }
        Ok(())
    }

    /// Moves link `name` from namespace `from` to `to`: RTM_SETLINK with IFLA_NET_NS_FD on the
    /// source namespace's connection. The marker of a link moved out of the host namespace is
    /// written before the move and the marker of one moved back is removed before, so that
    /// the op either fully happens or leaves no trace (the marker is put back if the move fails).
    async fn move_link(&mut self, name: &str, from: &str, to: &str) -> Result<(), NlError> {
        let marker = |e: std::io::Error| NlError::other(format!("cannot record the move of `{name}`: {e}"));
        let index = self.index_of(from, name).await?;
        let target = self.map.locate(to).open().map_err(|e| NlError::other(e.to_string()))?;
        let had = self.map.moved_links(self.node, from).get(name).copied();
        let restore = |map: &NetnsMap| {
            if let Some(i) = had {
                let _ = map.mark_moved(self.node, from, name, i);
            }
        };
        self.map.unmark_moved(from, name).map_err(marker)?;
        if let Err(e) = self.map.mark_moved(self.node, to, name, index) {
            restore(self.map);
            return Err(marker(e));
        }
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(target.as_raw_fd()));
        let res = match self.conn(from) {
            Ok(conn) => conn.execute(RouteNetlinkMessage::SetLink(msg), CHANGE).await,
            Err(e) => Err(e),
        };
        drop(target);
        self.forget(from, name);
        self.forget(to, name);
        if let Err(e) = res {
            // Best effort: the markers as they were (a missing marker only means netcfg will
            // not move the link back by itself).
            let _ = self.map.unmark_moved(to, name);
            restore(self.map);
            return Err(e);
        }
        // The kernel keeps the ifindex unless the target namespace uses it already.
        if let Ok(new) = self.index_of(to, name).await {
            if new != index {
                let _ = self.map.mark_moved(self.node, to, name, new);
            }
        }
        Ok(())
    }

    /// Renames link `from` to `to` by ifindex; the kernel renames only a link that is down, so
    /// one that is up goes down for the rename and comes back up.
    async fn rename_link(&mut self, ns: &str, from: &str, to: &str) -> Result<(), NlError> {
        let index = self.index_of(ns, from).await?;
        let up = self.get_link(ns, from).await?.1;
        if up {
            self.send_flags(ns, &LinkTarget::Index(index), false)?.ack().await?;
        }
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(to.to_string()));
        let res = self.conn(ns)?.execute(RouteNetlinkMessage::SetLink(msg), CHANGE).await;
        self.forget(ns, from);
        self.forget(ns, to);
        if up {
            self.send_flags(ns, &LinkTarget::Index(index), true)?.ack().await?;
        }
        res
    }

    /// Sets a link's attributes: every request sent before the acks are read (the kernel
    /// handles them in order; the reads in between see the state after the requests before).
    async fn set_link(&mut self, ns: &str, name: &str, s: &LinkSettings) -> Result<(), NlError> {
        let mut sent: Vec<Pending> = Vec::new();
        let queued = self.link_requests(ns, name, s, &mut sent).await;
        let acked = ack_all(sent).await;
        queued.and(acked)
    }

    /// Sends the requests of [`Executor::set_link`], adding what is to be answered to `sent`
    /// (the answers of the reads among them are awaited here).
    async fn link_requests(
        &mut self,
        ns: &str,
        name: &str,
        s: &LinkSettings,
        sent: &mut Vec<Pending>,
    ) -> Result<(), NlError> {
        let target = self.target(ns, name);
        let header = |msg: &mut LinkMessage| target.put(msg);
        if s.up == Some(false) {
            sent.push(self.send_flags(ns, &target, false)?);
        }
        let mut msg = LinkMessage::default();
        header(&mut msg);
        if let Some(m) = s.mtu {
            // A bridge's MTU counts as the user's only when it changes (`br_mtu_auto_adjust`):
            // a value equal to the automatic one is set by way of a step aside.
            if self.get_link(ns, name).await?.0.as_deref() == Some("bridge") {
                let aside = if m > 68 { m - 1 } else { m + 1 };
                let mut step = LinkMessage::default();
                header(&mut step);
                step.attributes.push(LinkAttribute::Mtu(aside));
                sent.push(self.conn(ns)?.send(RouteNetlinkMessage::SetLink(step), CHANGE)?);
            }
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = s.mac {
            msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        if let Some(q) = s.opts.txqueuelen {
            msg.attributes.push(LinkAttribute::TxQueueLen(q));
        }
        let mut flags = LinkFlags::empty();
        let mut mask = LinkFlags::empty();
        if let Some(p) = s.opts.promisc {
            mask |= LinkFlags::Promisc;
            flags.set(LinkFlags::Promisc, p);
        }
        if let Some(a) = s.opts.arp {
            mask |= LinkFlags::Noarp;
            flags.set(LinkFlags::Noarp, !a);
        }
        msg.header.flags = flags;
        msg.header.change_mask = mask;
        if let Some(n) = s.addrgen_none {
            let mode = if n { In6AddrGenMode::None } else { In6AddrGenMode::Eui64 };
            msg.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(mode)])]));
        }
        if !msg.attributes.is_empty() || !mask.is_empty() {
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::SetLink(msg), CHANGE)?);
        }
        // Kind-specific data changes go through RTM_NEWLINK on the existing link (changelink).
        if let Some(n) = s.nf_call_iptables {
            let mut msg = LinkMessage::default();
            header(&mut msg);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::NfCallIpTables(n)])),
            ]));
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::NewLink(msg), CHANGE)?);
        }
        if let Some(m) = &s.master {
            let master = match m {
                Some(m) => self.index_of(ns, m).await?,
                None => 0,
            };
            // The bonding driver enslaves only a link that is down; it comes back up after.
            let mut was_up = false;
            if let Some(m) = m {
                if self.kind_of(ns, m).await?.as_deref() == Some("bond") {
                    was_up = self.get_link(ns, name).await?.1;
                    if was_up {
                        sent.push(self.send_flags(ns, &target, false)?);
                    }
                }
            }
            let mut msg = LinkMessage::default();
            header(&mut msg);
            msg.attributes.push(LinkAttribute::Controller(master));
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::SetLink(msg), CHANGE)?);
            if was_up && s.up != Some(false) && s.up != Some(true) {
                sent.push(self.send_flags(ns, &target, true)?);
            }
        }
        let b = &s.opts.bridge;
        if *b != Default::default() {
            let mut data = Vec::new();
            if let Some(stp) = b.stp {
                data.push(InfoBridge::StpState(if stp { BridgeStpState::KernelStp } else { BridgeStpState::Disabled }));
            }
            data.extend(b.forward_delay.map(InfoBridge::ForwardDelay));
            data.extend(b.ageing.map(InfoBridge::AgeingTime));
            data.extend(b.priority.map(InfoBridge::Priority));
            data.extend(b.vlan_filtering.map(InfoBridge::VlanFiltering));
            data.extend(b.default_pvid.map(InfoBridge::VlanDefaultPvid));
            data.extend(b.multicast_snooping.map(InfoBridge::MulticastSnooping));
            let mut msg = LinkMessage::default();
            header(&mut msg);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(data)),
            ]));
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::NewLink(msg), CHANGE)?);
        }
        if let Some(h) = s.hairpin {
            let mut msg = LinkMessage::default();
            header(&mut msg);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(h)])),
            ]));
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::NewLink(msg), CHANGE)?);
        }
        let p = &s.opts.port;
        if *p != Default::default() {
            let mut data = Vec::new();
            data.extend(p.cost.map(InfoBridgePort::Cost));
            data.extend(p.priority.map(InfoBridgePort::Priority));
            let mut msg = LinkMessage::default();
            header(&mut msg);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(data)),
            ]));
            sent.push(self.conn(ns)?.send(RouteNetlinkMessage::NewLink(msg), CHANGE)?);
        }
        if let Some(want) = &s.opts.vlans {
            // From the VLANs the link has now: joining a bridge gave it the default PVID.
            let own = self.get_link(ns, name).await?.0.as_deref() == Some("bridge");
            let index = self.index_of(ns, name).await?;
            let live = super::live::bridge_vlans(self.conn(ns)?).await?.remove(&index).unwrap_or_default();
            for m in kinds::bridge::vlan_changes(index, own, &live, want) {
                self.conn(ns)?.execute(m, CHANGE).await?;
            }
        }
        if s.up == Some(true) {
            sent.push(self.send_flags(ns, &target, true)?);
        }
        Ok(())
    }

    /// A link's kind (`IFLA_INFO_KIND`) and whether it is up.
    async fn get_link(&mut self, ns: &str, name: &str) -> Result<(Option<String>, bool), NlError> {
        let mut msg = super::live::link_request();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answer = self.conn(ns)?.get(RouteNetlinkMessage::GetLink(msg), 0).await?;
        for m in answer {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let kind = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(k) => Some(k.to_string()),
                        _ => None,
                    }),
                    _ => None,
                });
                return Ok((kind, l.header.flags.contains(LinkFlags::Up)));
            }
        }
        Err(NlError::other(format!("link `{name}` not found")))
    }

    fn send_flags(&mut self, ns: &str, target: &LinkTarget, up: bool) -> Result<Pending, NlError> {
        let mut msg = LinkMessage::default();
        target.put(&mut msg);
        msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        msg.header.change_mask = LinkFlags::Up;
        self.conn(ns)?.send(RouteNetlinkMessage::SetLink(msg), CHANGE)
    }

    /// Adds (`flags` = create/replace) or deletes (`None`) an address.
    async fn address(
        &mut self,
        ns: &str,
        link: &str,
        net: &IpNet,
        a: &Address,
        flags: Option<u16>,
    ) -> Result<(), NlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(net.addr());
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = self.index_of(ns, link).await?;
        msg.attributes.push(AddressAttribute::Address(net.addr()));
        if net.addr().is_ipv4() {
            msg.attributes.push(AddressAttribute::Local(net.addr()));
        }
        let conn = self.conn(ns)?;
        match flags {
            Some(flags) => {
                let mut f = AddressFlags::empty();
                if !a.prefix_route {
                    f |= AddressFlags::Noprefixroute;
                }
                if net.addr().is_ipv6() {
                    // Without DAD the address is usable at once (routes may name it as source).
                    f |= AddressFlags::Nodad;
                }
                msg.attributes.push(AddressAttribute::Flags(f));
                conn.execute(RouteNetlinkMessage::NewAddress(msg), flags).await
            }
            None => conn.execute(RouteNetlinkMessage::DelAddress(msg), CHANGE).await,
        }
    }

    async fn route(&mut self, ns: &str, key: &RouteKey, r: &Route, flags: Option<u16>) -> Result<(), NlError> {
        let (msg, flags) = self.route_message(ns, key, r, flags).await?;
        self.conn(ns)?.execute(msg, flags).await
    }

    /// Executes a run of route ops of one namespace in a few datagrams, answered only where
    /// refused ([`PlainSocket::run`](super::wire::PlainSocket::run)); the kernel handles them in
    /// order. On failure, the position of the first op that failed in `ops` order; ops after it
    /// may have been done too, which the rollback (a plan back from what it reads, not a list
    /// of inverses) covers.
    pub async fn execute_routes(&mut self, ops: &[Op]) -> Result<(), (usize, NlError)> {
        let mut requests = Vec::with_capacity(ops.len());
        let mut encode_error = None;
        for (i, op) in ops.iter().enumerate() {
            let (key, route, flags) = match &op.action {
                Action::AddRoute { key, route } => (key, route, Some(CREATE)),
                Action::ReplaceRoute { key, route, .. } => (key, route, Some(REPLACE)),
                Action::DeleteRoute { key, route } => (key, route, None),
                _ => {
                    encode_error = Some((i, NlError::other("not a route op")));
                    break;
                }
            };
            match self.route_message(&op.ns, key, route, flags).await {
                Ok(r) => requests.push(r),
                Err(e) => {
                    encode_error = Some((i, e));
                    break;
                }
            }
        }
        // The requests made before an op that could not be made are sent all the same, as
        // when each was sent as it was made.
        if !requests.is_empty() {
            let ns = &ops[0].ns;
            self.conn(ns).map_err(|e| (0, e))?.plain.run(requests)?;
        }
        encode_error.map_or(Ok(()), Err)
    }

    /// The request that adds (`flags` = create/replace) or deletes (`None`) a route.
    async fn route_message(
        &mut self,
        ns: &str,
        key: &RouteKey,
        r: &Route,
        flags: Option<u16>,
    ) -> Result<(RouteNetlinkMessage, u16), NlError> {
        let mut msg = RouteMessage::default();
        let h = &mut msg.header;
        h.address_family = family(key.dst.addr());
        h.destination_prefix_length = key.dst.prefix_len();
        h.table = if key.table < 256 { key.table as u8 } else { 0 };
        h.protocol = RouteProtocol::from(r.protocol);
        h.kind = match r.route_type {
            RouteType::Unicast => NlType::Unicast,
            RouteType::Blackhole => NlType::BlackHole,
            RouteType::Unreachable => NlType::Unreachable,
            RouteType::Prohibit => NlType::Prohibit,
            RouteType::Throw => NlType::Throw,
            RouteType::Local => NlType::Local,
        };
        h.scope = match (flags, r.scope) {
            (None, _) => NlScope::NoWhere,
            (_, RouteScope::Global) => NlScope::Universe,
            (_, RouteScope::Link) => NlScope::Link,
            (_, RouteScope::Host) => NlScope::Host,
        };
        if r.onlink {
            h.flags |= RouteFlags::Onlink;
        }
        msg.attributes.push(RouteAttribute::Table(key.table));
        if key.dst.prefix_len() > 0 {
            msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(key.dst.addr())));
        }
        msg.attributes.push(RouteAttribute::Priority(key.metric));
        if flags.is_some() {
            if let Some(v) = r.via {
                msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(v)));
            }
            if let Some(d) = &r.dev {
                let idx = self.index_of(ns, d).await?;
                msg.attributes.push(RouteAttribute::Oif(idx));
            }
            if let Some(s) = r.src {
                msg.attributes.push(RouteAttribute::PrefSource(RouteAddress::from(s)));
            }
            let m = &r.metrics;
            let metrics: Vec<RouteMetric> = [
                m.mtu.map(RouteMetric::Mtu),
                m.advmss.map(RouteMetric::Advmss),
                m.initcwnd.map(RouteMetric::InitCwnd),
                m.initrwnd.map(RouteMetric::InitRwnd),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !metrics.is_empty() {
                msg.attributes.push(RouteAttribute::Metrics(metrics));
            }
            if !r.nexthops.is_empty() {
                let mut hops = Vec::new();
                for n in &r.nexthops {
                    let mut hop = RouteNextHop::default();
                    if let Some(d) = &n.dev {
                        hop.interface_index = self.index_of(ns, d).await?;
                    }
                    hop.hops = u8::try_from(n.weight.saturating_sub(1)).unwrap_or(u8::MAX);
                    if n.onlink {
                        hop.flags |= RouteNextHopFlags::Onlink;
                    }
                    if let Some(v) = n.via {
                        hop.attributes.push(RouteAttribute::Gateway(RouteAddress::from(v)));
                    }
                    hops.push(hop);
                }
                msg.attributes.push(RouteAttribute::MultiPath(hops));
            }
        }
        Ok(match flags {
            Some(flags) => (RouteNetlinkMessage::NewRoute(msg), flags),
            None => (RouteNetlinkMessage::DelRoute(msg), CHANGE),
        })
    }

    /// Adds or deletes a policy rule; a delete names every attribute, so it removes exactly it.
    async fn rule(&mut self, ns: &str, r: &Rule, protocol: u8, add: bool) -> Result<(), NlError> {
        let mut msg = RuleMessage::default();
        let mut h = RuleHeader {
            family: if r.v6 { AddressFamily::Inet6 } else { AddressFamily::Inet },
            ..RuleHeader::default()
        };
        let mut attrs = vec![RuleAttribute::Priority(r.priority)];
        if let Some(f) = r.from {
            h.src_len = f.prefix_len();
            attrs.push(RuleAttribute::Source(f.addr()));
        }
        if let Some(t) = r.to {
            h.dst_len = t.prefix_len();
            attrs.push(RuleAttribute::Destination(t.addr()));
        }
        if let Some(i) = &r.iif {
            attrs.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &r.oif {
            attrs.push(RuleAttribute::Oifname(o.clone()));
        }
        if let Some((mark, mask)) = r.fwmark {
            attrs.push(RuleAttribute::FwMark(mark));
            attrs.push(RuleAttribute::FwMask(mask));
        }
        if let Some(p) = r.ipproto {
            attrs.push(RuleAttribute::IpProtocol(p.into()));
        }
        if let Some((start, end)) = r.sport {
            attrs.push(RuleAttribute::SourcePortRange(RulePortRange { start, end }));
        }
        if let Some((start, end)) = r.dport {
            attrs.push(RuleAttribute::DestinationPortRange(RulePortRange { start, end }));
        }
        if let Some(p) = r.suppress_prefixlength {
            attrs.push(RuleAttribute::SuppressPrefixLen(p));
        }
        h.action = match r.action {
            RuleAction::Lookup(t) => {
                h.table = if t < 256 { t as u8 } else { 0 };
                attrs.push(RuleAttribute::Table(t));
                NlRuleAction::ToTable
            }
            RuleAction::L3mdev => {
                attrs.push(RuleAttribute::L3MDev(true));
                NlRuleAction::ToTable
            }
            RuleAction::Goto(p) => {
                attrs.push(RuleAttribute::Goto(p));
                NlRuleAction::Goto
            }
            RuleAction::Blackhole => NlRuleAction::Blackhole,
            RuleAction::Unreachable => NlRuleAction::Unreachable,
            RuleAction::Prohibit => NlRuleAction::Prohibit,
        };
        attrs.push(RuleAttribute::Protocol(RouteProtocol::from(protocol)));
        msg.header = h;
        msg.attributes = attrs;
        let conn = self.conn(ns)?;
        if add {
            conn.execute(RouteNetlinkMessage::NewRule(msg), CREATE).await
        } else {
            conn.execute(RouteNetlinkMessage::DelRule(msg), CHANGE).await
        }
    }

    async fn neighbor(
        &mut self,
        ns: &str,
        link: &str,
        ip: IpAddr,
        n: &Neighbor,
        flags: Option<u16>,
    ) -> Result<(), NlError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(ip);
        msg.header.ifindex = self.index_of(ns, link).await?;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        let conn = self.conn(ns)?;
        match flags {
            Some(flags) => {
                msg.attributes.push(NeighbourAttribute::LinkLayerAddress(n.mac.0.to_vec()));
                msg.attributes.push(NeighbourAttribute::Protocol(RouteProtocol::from(n.protocol)));
                conn.execute(RouteNetlinkMessage::NewNeighbour(msg), flags).await
            }
            None => conn.execute(RouteNetlinkMessage::DelNeighbour(msg), CHANGE).await,
        }
    }

    /// Puts back netcfg's nft table as it was listed, or removes it, in one transaction.
    fn restore_nft(&mut self, ns: &str, table: Option<&String>) -> Result<(), NlError> {
        let mut text = format!("table inet {TABLE_NAME} {{}}\ndelete table inet {TABLE_NAME}\n");
        if let Some(t) = table {
            text.push_str(t);
        }
        let script = crate::nftables::render::Script {
            creates_table: table.is_some(),
            text,
            origins: Vec::new(),
            kept: Vec::new(),
        };
        exec::apply(&self.map.locate(ns).nft_target(), &script).map_err(|e| NlError::other(e.to_string()))
    }
}

/// netcfg's nft table in `loc` as `nft list` prints it (a script nft can load back).
pub fn list_table_text(loc: &super::namespaces::Location) -> Result<String, NlError> {
    let mut cmd = match loc {
        super::namespaces::Location::Named(n) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", n, "nft"]);
            c
        }
        super::namespaces::Location::Current => std::process::Command::new("nft"),
    };
    let out = cmd
        .args(["list", "table", "inet", TABLE_NAME])
        .output()
        .map_err(|e| NlError::other(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        return Err(NlError::other(format!("nft list failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The settings a new link gets right after creation (the rest went into the create request).
fn after_create(l: &Link) -> LinkSettings {
    let port = l.master.is_some();
    LinkSettings {
        mtu: None,
        mac: None,
        master: port.then(|| l.master.clone()),
        hairpin: l.hairpin.filter(|_| port),
        nf_call_iptables: l.nf_call_iptables,
        up: Some(l.up),
        addrgen_none: l.addrgen_none,
        opts: l.opts.clone(),
    }
}

/// Reads the acks of requests sent together, all of them (none is left for a later request);
/// the first refusal in the order they were sent.
async fn ack_all(sent: Vec<Pending>) -> Result<(), NlError> {
    let mut first = None;
    for p in sent {
        if let Err(e) = p.ack().await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The attributes a link takes at creation: name, group, MTU, MAC.
fn base_link_message(name: &str, l: &Link) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    if l.owned {
        msg.attributes.push(LinkAttribute::Group(NETCFG_GROUP));
    }
    if let Some(m) = l.mtu {
        msg.attributes.push(LinkAttribute::Mtu(m));
    }
    if let Some(m) = l.mac {
        msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
    }
    msg
}
