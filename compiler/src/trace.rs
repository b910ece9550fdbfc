//! The offline packet-path model behind `netcfg trace` and the reachability checks: one packet
//! walked through the fleet as the kernel would move it — routing ([`Tracer::route_lookup`],
//! the one place a route is chosen), neighbour resolution (ARP/ND: who on the segment owns the
//! next hop, and does it answer), L2 segments (veth pairs across namespaces, bridges, shared
//! LANs and VXLANs between nodes), rp_filter, the netfilter hooks (asked of a [`Netfilter`],
//! which `netcfg_backends::nftables::eval` implements over the lowered ruleset that apply
//! loads), connection tracking's translations and, for the reply, their reversal.
//!
//! Every step names the spec text that decided it (a route, an address, a firewall rule, a
//! sysctl) and says why. What the model cannot know (a rule match it cannot evaluate, a host
//! outside the spec) is a step with [`StepVerdict::Uncertain`] or an explicit assumption in the
//! step's text, never a silent guess.
//!
//! What it must not do: decide findings (checks do, by querying it), print, or keep a second
//! FIB: routes come from [`Model`].

use crate::ir::*;
use crate::model::{Fib, FibEntry, FibSource, LinkRef, Lookup, Model, NetnsRef};
use netcfg_lang::value::{ConfScope, SysctlPath};
use netcfg_lang::vocab::{ConnState, Family, Proto, RouteType, RpFilter};
use netcfg_lang::Span;
use std::net::IpAddr;

/// The packet as the tracer moves it (addresses and ports are rewritten by NAT on the way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
}

impl Packet {
    pub fn family(&self) -> Family {
        Family::of(self.dst)
    }

    fn has_ports(&self) -> bool {
        matches!(self.proto, Proto::Tcp | Proto::Udp | Proto::Sctp)
    }

    /// The packet a reply to this one is, before any translation is undone.
    pub fn reversed(&self) -> Packet {
        Packet { src: self.dst, dst: self.src, proto: self.proto, sport: self.dport, dport: self.sport }
    }
}

impl std::fmt::Display for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = |a: IpAddr, p: u16| match a {
            IpAddr::V6(_) => format!("[{a}]:{p}"),
            IpAddr::V4(_) => format!("{a}:{p}"),
        };
        if self.has_ports() {
            write!(f, "{} {} -> {}", self.proto.keyword(), ep(self.src, self.sport), ep(self.dst, self.dport))
        } else {
            write!(f, "{} {} -> {}", self.proto.keyword(), self.src, self.dst)
        }
    }
}

/// Where the packet starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Sent by a process of this namespace.
    Local(NetnsRef),
    /// Arrives from outside the spec on this link.
    Arrive(LinkRef),
}

/// The netfilter hooks a packet passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn keyword(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// What a [`Netfilter`] is asked about: the packet at one hook.
#[derive(Clone, Copy, Debug)]
pub struct HookPacket<'a> {
    pub packet: &'a Packet,
    pub iif: Option<&'a str>,
    pub oif: Option<&'a str>,
    /// `New` for the first packet of a connection, `Established` for its reply.
    pub state: ConnState,
    /// Whether the connection was DNAT-ed (`ct status dnat`).
    pub dnat: bool,
    /// The random draw (`numgen random mod N`) a service uses to pick a backend.
    pub draw: u32,
    /// Whether the destination is an address of this namespace (`fib daddr type local`).
    pub dst_local: bool,
}

/// What a chain does to the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NfAction {
    Accept,
    Drop,
    Reject,
    Dnat { addr: IpAddr, port: u16 },
    Snat { addr: IpAddr },
    Masquerade,
    Redirect { port: u16 },
}

/// One chain's decision at a hook.
#[derive(Clone, Debug)]
pub struct NfDecision {
    /// The chain, as named in the nft script.
    pub chain: String,
    pub action: NfAction,
    /// The rule that decided, as written in the script; `None`: the chain's policy.
    pub rule: Option<String>,
    /// The spec text behind the rule (`None` for a policy: the tracer knows the policy's span).
    pub span: Option<Span>,
    /// Matches the evaluator could not decide offline and assumed did not match, each with why.
    pub undecided: Vec<String>,
}

/// The netfilter of every namespace of the fleet, asked hook by hook.
pub trait Netfilter {
    /// The decisions of the chains at `hook` in namespace `ns`, in priority order. A chain that
    /// lets the packet pass without doing anything (a NAT chain where nothing matched) may be
    /// left out; NAT chains are asked only for the first packet of a connection.
    fn hook(&self, ns: NetnsRef, hook: Hook, packet: &HookPacket<'_>) -> Vec<NfDecision>;
}

/// No netfilter at all: what a query about routing alone uses.
pub struct NoNetfilter;

impl Netfilter for NoNetfilter {
    fn hook(&self, _: NetnsRef, _: Hook, _: &HookPacket<'_>) -> Vec<NfDecision> {
        Vec::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepVerdict {
    /// The packet goes on.
    Pass,
    /// The packet goes on, but the model could not decide something the kernel will.
    Uncertain,
    /// The packet has arrived (a socket, or it left the spec's world toward a known peer).
    Delivered,
    /// The packet dies here.
    Dropped,
}

impl StepVerdict {
    pub fn keyword(self) -> &'static str {
        match self {
            StepVerdict::Pass => "pass",
            StepVerdict::Uncertain => "uncertain",
            StepVerdict::Delivered => "delivered",
            StepVerdict::Dropped => "dropped",
        }
    }
}

/// What kind of decision a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The packet is sent, or arrives from outside.
    Start,
    RpFilter,
    /// A netfilter hook (filter or NAT).
    Netfilter(Hook),
    Route,
    Forwarding,
    /// ARP / neighbour discovery for the next hop.
    Neighbour,
    /// The frame crosses links (veth, bridge, LAN, VXLAN).
    L2,
    /// Connection tracking undoes a translation for the reply.
    Conntrack,
    /// Local delivery to a socket, or leaving the spec's world.
    Deliver,
}

impl Stage {
    pub fn keyword(self) -> String {
        match self {
            Stage::Start => "start".into(),
            Stage::RpFilter => "rp_filter".into(),
            Stage::Netfilter(h) => format!("nft {}", h.keyword()),
            Stage::Route => "route".into(),
            Stage::Forwarding => "forwarding".into(),
            Stage::Neighbour => "neighbour".into(),
            Stage::L2 => "l2".into(),
            Stage::Conntrack => "conntrack".into(),
            Stage::Deliver => "deliver".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub at: NetnsRef,
    pub stage: Stage,
    pub verdict: StepVerdict,
    /// What happened (`default via 10.0.0.1 dev eth0`).
    pub what: String,
    /// Why, when it is not obvious (`strict rp_filter: the route back to … leaves by …`).
    pub why: Option<String>,
    /// The spec text that decided it.
    pub span: Option<Span>,
}

/// How one direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Dropped,
}

/// One direction of the walk.
#[derive(Clone, Debug)]
pub struct Walk {
    /// The packet as it started.
    pub packet: Packet,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    /// The packet as it was when the walk ended (after every translation on the way).
    pub last: Packet,
}

impl Walk {
    /// The step where the packet died.
    pub fn dropped_at(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.verdict == StepVerdict::Dropped)
    }

    pub fn uncertain(&self) -> bool {
        self.steps.iter().any(|s| s.verdict == StepVerdict::Uncertain)
    }
}

/// A packet's way there and its reply's way back.
#[derive(Clone, Debug)]
pub struct Trace {
    pub forward: Walk,
    /// `None` when the forward packet never arrived (or has no reply: ICMP is not modelled).
    pub reply: Option<Walk>,
}

impl Trace {
    pub fn delivered(&self) -> bool {
        self.forward.outcome == Outcome::Delivered
            && self.reply.as_ref().is_none_or(|r| r.outcome == Outcome::Delivered)
    }
}

/// The outcome of [`Tracer::route_lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteDecision<'m> {
    /// The destination is an address of the namespace (delivered over `link`).
    Local {
        link: LinkId,
    },
    /// Forwarded over `dev` to `next_hop` (the gateway, or the destination itself on-link).
    Unicast {
        entry: &'m FibEntry,
        table: u32,
        dev: LinkId,
        next_hop: IpAddr,
    },
    /// A route that discards (`blackhole`, `unreachable`, `prohibit`).
    Discard {
        entry: &'m FibEntry,
        table: u32,
    },
    /// A route via a gateway the tables cannot resolve to a link.
    Unresolved {
        entry: &'m FibEntry,
        table: u32,
    },
    NoRoute,
}

/// One translation conntrack remembers for the connection, in the namespace that made it.
#[derive(Clone, Copy, Debug)]
struct Translation {
    at: NetnsRef,
    kind: NatKind,
    /// What it was before.
    addr: IpAddr,
    port: u16,
    span: Option<Span>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NatKind {
    /// The destination was rewritten (DNAT, redirect): the reply's source is put back.
    Destination,
    /// The source was rewritten (SNAT, masquerade): the reply's destination is put back.
    Source,
}

/// How a trace runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceConfig {
    /// Follow the packet onto other nodes of the fleet (else it leaves the node).
    pub fleet: bool,
    /// The service backend draw (`0..65536`).
    pub draw: u32,
}

/// Namespaces a walk may enter before it is called a loop.
const MAX_HOPS: usize = 32;

pub struct Tracer<'m, 'f> {
    pub model: &'m Model<'f>,
    pub netfilter: &'m dyn Netfilter,
    pub config: TraceConfig,
}

struct WalkState {
    steps: Vec<Step>,
    packet: Packet,
    state: ConnState,
    translations: Vec<Translation>,
    /// For the reply: the translations to undo, by namespace.
    undo: Vec<Translation>,
}

impl WalkState {
    /// DNAT or redirect: the packet's destination becomes `addr:port`; what it was is recorded
    /// for the reply.
    fn rewrite_dst(&mut self, at: NetnsRef, span: Option<Span>, addr: IpAddr, port: u16) {
        let (old, old_port) = (self.packet.dst, self.packet.dport);
        self.translations.push(Translation { at, kind: NatKind::Destination, addr: old, port: old_port, span });
        self.packet.dst = addr;
        self.packet.dport = port;
    }

    /// SNAT or masquerade: the packet's source becomes `addr`; what it was is recorded for the
    /// reply.
    fn rewrite_src(&mut self, at: NetnsRef, span: Option<Span>, addr: IpAddr) {
        let (old, old_port) = (self.packet.src, self.packet.sport);
        self.translations.push(Translation { at, kind: NatKind::Source, addr: old, port: old_port, span });
        self.packet.src = addr;
    }
}

enum Next {
    /// Arrives at the L3 of a namespace over a link.
    Receive(LinkRef),
    Done(Outcome),
}

impl<'m, 'f> Tracer<'m, 'f> {
    pub fn new(model: &'m Model<'f>, netfilter: &'m dyn Netfilter, config: TraceConfig) -> Tracer<'m, 'f> {
        Tracer { model, netfilter, config }
    }

    /// A tracer that only routes (no netfilter): what checks about routes query.
    pub fn routing(model: &'m Model<'f>) -> Tracer<'m, 'f> {
        Tracer { model, netfilter: &NoNetfilter, config: TraceConfig::default() }
    }

    /// The link a packet from `ns` to `dst` leaves by (its own link when `dst` is local).
    pub fn egress(&self, ns: NetnsRef, dst: IpAddr) -> Option<LinkId> {
        let probe = Packet { src: dst, dst, proto: Proto::Udp, sport: 0, dport: 0 };
        match self.route_lookup(ns, &probe) {
            RouteDecision::Local { link } | RouteDecision::Unicast { dev: link, .. } => Some(link),
            _ => None,
        }
    }

    /// The route the kernel picks for `packet` in `ns`: the namespace's policy rules as
    /// [`Model::lookup`] follows them (the local table, the spec's rules around `lookup main`,
    /// then `default`, 253), the same decision the checks take. Every routing decision of the
    /// tracer (forward, reply, rp_filter's reverse lookup, a gateway's own resolution) goes
    /// through here.
    pub fn route_lookup(&self, ns: NetnsRef, packet: &Packet) -> RouteDecision<'m> {
        let node = self.model.node(ns.node);
        let lo = || node.links_in(ns.netns).find(|l| matches!(l.kind, LinkKind::Loopback)).map(|l| l.id);
        if packet.dst.is_loopback() {
            if let Some(lo) = lo() {
                return RouteDecision::Local { link: lo };
            }
        }
        let e = match self.model.lookup(ns, packet.dst) {
            Lookup::Local(link) => return RouteDecision::Local { link },
            Lookup::NoRoute => return RouteDecision::NoRoute,
            Lookup::Route(e) => e,
        };
        // The table the entry came from: its gateway resolves there first, then in main.
        let table =
            self.model.tables(ns).find(|(_, f)| f.entries().any(|x| std::ptr::eq(x, e))).map_or(MAIN_TABLE, |(t, _)| t);
        match e.route_type {
            RouteType::Unicast => {}
            RouteType::Local => {
                if let Some(link) = e.dev.or_else(lo) {
                    return RouteDecision::Local { link };
                }
                return RouteDecision::Unresolved { entry: e, table };
            }
            _ => return RouteDecision::Discard { entry: e, table },
        }
        let next_hop = e.via.unwrap_or(packet.dst);
        let on_link = |fib: Option<&Fib>, v: IpAddr| match fib.map(|f| f.lookup(v)) {
            Some(Lookup::Route(g)) if g.via.is_none() && g.route_type == RouteType::Unicast => g.dev,
            _ => None,
        };
        let dev = e.dev.or_else(|| {
            e.via.and_then(|v| {
                on_link(self.model.fib_table(ns, table), v).or_else(|| on_link(Some(self.model.fib(ns)), v))
            })
        });
        match dev {
            Some(dev) => RouteDecision::Unicast { entry: e, table, dev, next_hop },
            None => RouteDecision::Unresolved { entry: e, table },
        }
    }

    /// The source address the kernel gives a packet a process of `ns` sends to `dst` without
    /// binding one: the route's `src`, else the first address of the outgoing link of the
    /// family, else any address of the namespace of the family (`inet_select_addr`).
    pub fn source_address(&self, ns: NetnsRef, dst: IpAddr) -> Option<IpAddr> {
        let node = self.model.node(ns.node);
        let probe = Packet { src: dst, dst, proto: Proto::Udp, sport: 0, dport: 0 };
        let fam = Family::of(dst);
        let of_link = |l: LinkId| node.link(l).addresses.iter().map(|a| a.addr()).find(|a| Family::of(*a) == fam);
        let dev = match self.route_lookup(ns, &probe) {
            RouteDecision::Local { .. } => return Some(dst),
            RouteDecision::Unicast { entry, dev, .. } => {
                if let FibSource::Static(i) = entry.source {
                    if let Some(src) = &node.netns(ns.netns).routes[i].src {
                        return Some(src.value);
                    }
                }
                Some(dev)
            }
            _ => None,
        };
        dev.and_then(of_link).or_else(|| {
            node.links_in(ns.netns)
                .filter(|l| !matches!(l.kind, LinkKind::Loopback))
                .flat_map(|l| l.addresses.iter().map(|a| a.addr()))
                .find(|a| Family::of(*a) == fam)
        })
    }

    /// Walks `packet` from `start`, and its reply back when it arrives.
    pub fn trace(&self, start: Start, packet: Packet) -> Trace {
        let forward = self.walk(start, packet, ConnState::New, Vec::new());
        let (fwd, translations, end) = forward;
        let reply = match (fwd.outcome, end) {
            (Outcome::Delivered, Some(end)) if packet.proto != Proto::Icmp && packet.proto != Proto::Icmpv6 => {
                let (mut walk, _, _) =
                    self.walk(end.start, end.packet.reversed(), ConnState::Established, translations);
                if walk.outcome == Outcome::Delivered {
                    self.check_reply(&mut walk, start, &packet);
                }
                Some(walk)
            }
            _ => None,
        };
        Trace { forward: fwd, reply }
    }

    /// The reply must come back as the answer to what the client sent (every translation undone).
    fn check_reply(&self, walk: &mut Walk, start: Start, original: &Packet) {
        let Some(last) = walk.steps.last() else { return };
        let final_packet = walk.last;
        let expected = original.reversed();
        if let Start::Local(origin) = start {
            if last.at != origin {
                let why = format!(
                    "the reply arrives in {}, not in {} that sent the request",
                    self.ns_name(last.at),
                    self.ns_name(origin)
                );
                let step = walk.steps.last_mut().expect("a step");
                step.verdict = StepVerdict::Dropped;
                step.why = Some(why);
                walk.outcome = Outcome::Dropped;
                return;
            }
        }
        if final_packet.src != expected.src || (final_packet.has_ports() && final_packet.sport != expected.sport) {
            let who = match start {
                Start::Local(ns) => self.ns_name(ns),
                Start::Arrive(_) => "the client".to_string(),
            };
            let step = walk.steps.last_mut().expect("a step");
            step.verdict = StepVerdict::Dropped;
            step.why = Some(format!(
                "the reply comes from {} but {who} sent to {}: no connection matches it (TCP answers with a reset)",
                endpoint(final_packet.src, final_packet.sport),
                endpoint(expected.src, expected.sport)
            ));
            walk.outcome = Outcome::Dropped;
        }
    }

    fn ns_name(&self, ns: NetnsRef) -> String {
        let node = self.model.node(ns.node);
        match &node.netns(ns.netns).name {
            Some(n) => format!("`{}`", n.value),
            None => format!("node `{}`", node.name.value),
        }
    }

    fn walk(
        &self,
        start: Start,
        packet: Packet,
        state: ConnState,
        undo: Vec<Translation>,
    ) -> (Walk, Vec<Translation>, Option<EndPoint>) {
        let mut w = WalkState { steps: Vec::new(), packet, state, translations: Vec::new(), undo };
        let mut end = None;
        let mut next = match start {
            Start::Local(ns) => self.originate(&mut w, ns, &mut end),
            Start::Arrive(link) => {
                let ns = self.model.netns_of(link);
                let l = self.model.link(link);
                w.steps.push(Step {
                    at: ns,
                    stage: Stage::Start,
                    verdict: StepVerdict::Pass,
                    what: format!("{} arrives on `{}`", w.packet, l.name.value),
                    why: None,
                    span: Some(l.span),
                });
                Next::Receive(link)
            }
        };
        let mut hops = 0;
        let outcome = loop {
            match next {
                Next::Done(o) => break o,
                Next::Receive(link) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        let at = self.model.netns_of(link);
                        w.steps.push(Step {
                            at,
                            stage: Stage::Route,
                            verdict: StepVerdict::Dropped,
                            what: format!("the packet has crossed {MAX_HOPS} namespaces"),
                            why: Some("a routing loop: the TTL runs out".into()),
                            span: None,
                        });
                        break Outcome::Dropped;
                    }
                    next = self.receive(&mut w, link, &mut end);
                }
            }
        };
        (Walk { packet, steps: w.steps, outcome, last: w.packet }, w.translations, end)
    }

    fn step<'w>(
        &self,
        w: &'w mut WalkState,
        at: NetnsRef,
        stage: Stage,
        verdict: StepVerdict,
        what: String,
    ) -> &'w mut Step {
        w.steps.push(Step { at, stage, verdict, what, why: None, span: None });
        w.steps.last_mut().expect("just pushed")
    }

    fn drop(
        &self,
        w: &mut WalkState,
        at: NetnsRef,
        stage: Stage,
        what: String,
        why: String,
        span: Option<Span>,
    ) -> Next {
        w.steps.push(Step { at, stage, verdict: StepVerdict::Dropped, what, why: Some(why), span });
        Next::Done(Outcome::Dropped)
    }

    /// A process of `ns` sends the packet: output path.
    fn originate(&self, w: &mut WalkState, ns: NetnsRef, end: &mut Option<EndPoint>) -> Next {
        w.steps.push(Step {
            at: ns,
            stage: Stage::Start,
            verdict: StepVerdict::Pass,
            what: if w.state == ConnState::New {
                format!("{} sent by a process of {}", w.packet, self.ns_name(ns))
            } else {
                format!("{} answered from {}", w.packet, self.ns_name(ns))
            },
            why: None,
            span: Some(self.model.node(ns.node).netns(ns.netns).span),
        });
        self.undo_source(w, ns);
        let route = self.route_lookup(ns, &w.packet);
        let oif = match route {
            RouteDecision::Local { link } => link,
            RouteDecision::Unicast { dev, .. } => dev,
            _ => return self.route_step(w, ns, route),
        };
        let oif_name = self.model.node(ns.node).link(oif).name.value.clone();
        if !self.hook(w, ns, Hook::Output, None, Some(&oif_name)) {
            return Next::Done(Outcome::Dropped);
        }
        // A DNAT at output re-routes the packet.
        let route = self.route_lookup(ns, &w.packet);
        self.route_step(w, ns, route);
        match route {
            RouteDecision::Local { link } => {
                if !self.hook(w, ns, Hook::Postrouting, None, Some("lo")) {
                    return Next::Done(Outcome::Dropped);
                }
                self.undo_destination(w, ns);
                if !self.hook(w, ns, Hook::Input, Some("lo"), None) {
                    return Next::Done(Outcome::Dropped);
                }
                self.deliver(w, ns, link, end)
            }
            RouteDecision::Unicast { dev, next_hop, .. } => {
                let dev_name = self.model.node(ns.node).link(dev).name.value.clone();
                if !self.hook(w, ns, Hook::Postrouting, None, Some(&dev_name)) {
                    return Next::Done(Outcome::Dropped);
                }
                self.undo_destination(w, ns);
                self.transmit(w, LinkRef { node: ns.node, link: dev }, next_hop, end)
            }
            _ => Next::Done(Outcome::Dropped),
        }
    }

    /// The packet reaches the L3 of the namespace of `link`.
    fn receive(&self, w: &mut WalkState, link: LinkRef, end: &mut Option<EndPoint>) -> Next {
        let ns = self.model.netns_of(link);
        let iif = self.model.link(link).name.value.clone();
        self.undo_source(w, ns);
        if let Some(next) = self.rp_filter(w, link) {
            return next;
        }
        if !self.hook(w, ns, Hook::Prerouting, Some(&iif), None) {
            return Next::Done(Outcome::Dropped);
        }
        let route = self.route_lookup(ns, &w.packet);
        self.route_step(w, ns, route);
        match route {
            RouteDecision::Local { link: local } => {
                if w.packet.dst.is_loopback() && !self.route_localnet(ns, link) {
                    return self.drop(
                        w,
                        ns,
                        Stage::Route,
                        format!("`{}` is a loopback address, arriving on `{iif}`", w.packet.dst),
                        "the kernel drops it as a martian destination unless `net.ipv4.conf.all.route_localnet` is 1"
                            .into(),
                        None,
                    );
                }
                if !self.hook(w, ns, Hook::Input, Some(&iif), None) {
                    return Next::Done(Outcome::Dropped);
                }
                self.undo_destination(w, ns);
                self.deliver(w, ns, local, end)
            }
            RouteDecision::Unicast { dev, next_hop, .. } => {
                let fam = w.packet.family();
                if !self.model.forwarding(ns, fam) {
                    let netns = self.model.node(ns.node).netns(ns.netns);
                    let key = SysctlPath::forwarding(fam);
                    let span = netns.sysctl(&key).map(|s| s.span);
                    return self.drop(
                        w,
                        ns,
                        Stage::Forwarding,
                        format!("{} would forward the packet", self.ns_name(ns)),
                        format!("forwarding is off (`{key}` is not 1)"),
                        span,
                    );
                }
                let dev_name = self.model.node(ns.node).link(dev).name.value.clone();
                if !self.hook(w, ns, Hook::Forward, Some(&iif), Some(&dev_name)) {
                    return Next::Done(Outcome::Dropped);
                }
                if !self.hook(w, ns, Hook::Postrouting, Some(&iif), Some(&dev_name)) {
                    return Next::Done(Outcome::Dropped);
                }
                self.undo_destination(w, ns);
                self.transmit(w, LinkRef { node: ns.node, link: dev }, next_hop, end)
            }
            _ => Next::Done(Outcome::Dropped),
        }
    }

    /// A route step (and for the routes that end the walk, its verdict).
    fn route_step(&self, w: &mut WalkState, ns: NetnsRef, route: RouteDecision<'_>) -> Next {
        let node = self.model.node(ns.node);
        let netns = node.netns(ns.netns);
        let dst = w.packet.dst;
        let span_of = |e: &FibEntry| match e.source {
            FibSource::Static(i) => Some(netns.routes[i].span),
            FibSource::Connected { link, addr } => Some(node.link(link).addresses[addr].span),
            FibSource::Dynamic { link } => node.link(link).options.dhcp.as_ref().map(|d| d.span),
        };
        let table_name = |t: u32| if t == MAIN_TABLE { "main".to_string() } else { t.to_string() };
        match route {
            RouteDecision::Local { link } => {
                let l = node.link(link);
                let span = l.addresses.iter().find(|a| a.addr() == dst).map(|a| a.span).or(Some(l.span));
                let s =
                    self.step(w, ns, Stage::Route, StepVerdict::Pass, format!("`{dst}` is local (`{}`)", l.name.value));
                s.span = span;
                Next::Done(Outcome::Delivered)
            }
            RouteDecision::Unicast { entry, table, dev, next_hop } => {
                let via = if next_hop == dst { String::new() } else { format!(" via {next_hop}") };
                let what =
                    format!("{}{via} dev {} (table {})", entry.dst, node.link(dev).name.value, table_name(table));
                let s = self.step(w, ns, Stage::Route, StepVerdict::Pass, what);
                s.span = span_of(entry);
                Next::Done(Outcome::Delivered)
            }
            RouteDecision::Discard { entry, table } => {
                let kind = format!("{:?}", entry.route_type).to_lowercase();
                self.drop(
                    w,
                    ns,
                    Stage::Route,
                    format!("`{kind}` route {} (table {})", entry.dst, table_name(table)),
                    format!("the route discards packets to `{dst}`"),
                    span_of(entry),
                )
            }
            RouteDecision::Unresolved { entry, table } => self.drop(
                w,
                ns,
                Stage::Route,
                format!(
                    "{} via {} (table {})",
                    entry.dst,
                    entry.via.map(|v| v.to_string()).unwrap_or_default(),
                    table_name(table)
                ),
                "no route leads to the gateway itself".into(),
                span_of(entry),
            ),
            RouteDecision::NoRoute => self.drop(
                w,
                ns,
                Stage::Route,
                format!("no route to `{dst}` in {}", self.ns_name(ns)),
                "no table the namespace consults has a route covering it (network unreachable)".into(),
                None,
            ),
        }
    }

    /// rp_filter on arrival: the route back to the source must leave by the arriving link
    /// (strict) or exist (loose). `None`: the packet goes on.
    fn rp_filter(&self, w: &mut WalkState, link: LinkRef) -> Option<Next> {
        let l = self.model.link(link);
        if matches!(l.kind, LinkKind::Loopback) || w.packet.family() != Family::Ipv4 {
            return None;
        }
        let mode = self.model.rp_filter(link)?;
        let ns = self.model.netns_of(link);
        let span = self.rp_filter_span(link);
        let reverse = self.route_lookup(ns, &Packet { dst: w.packet.src, ..w.packet.reversed() });
        let back = match reverse {
            RouteDecision::Local { link } | RouteDecision::Unicast { dev: link, .. } => Some(link),
            _ => None,
        };
        let ok = match mode {
            RpFilter::Off => true,
            RpFilter::Loose => back.is_some(),
            RpFilter::Strict => back == Some(link.link),
        };
        let what = format!("{} rp_filter on `{}`", format!("{mode:?}").to_lowercase(), l.name.value);
        if ok {
            let s = self.step(w, ns, Stage::RpFilter, StepVerdict::Pass, what);
            s.span = span;
            return None;
        }
        let node = self.model.node(link.node);
        let why = match back {
            Some(b) => format!(
                "the route back to `{}` leaves by `{}`, not `{}`",
                w.packet.src,
                node.link(b).name.value,
                l.name.value
            ),
            None => format!("there is no route back to `{}`", w.packet.src),
        };
        Some(self.drop(w, ns, Stage::RpFilter, what, why, span))
    }

    fn rp_filter_span(&self, link: LinkRef) -> Option<Span> {
        let l = self.model.link(link);
        let netns = self.model.node(link.node).netns(l.netns);
        l.rp_filter
            .as_ref()
            .map(|r| r.span)
            .or_else(|| netns.sysctl(&SysctlPath::rp_filter(ConfScope::Link(&l.name.value))).map(|s| s.span))
            .or_else(|| netns.sysctl(&SysctlPath::rp_filter(ConfScope::All)).map(|s| s.span))
    }

    fn route_localnet(&self, ns: NetnsRef, link: LinkRef) -> bool {
        let netns = self.model.node(ns.node).netns(ns.netns);
        let dev = SysctlPath::route_localnet(ConfScope::Link(&self.model.link(link).name.value));
        netns.sysctl_int(&SysctlPath::route_localnet(ConfScope::All)).unwrap_or(0) == 1
            || netns.sysctl_int(&dev).unwrap_or(0) == 1
    }

    /// Asks the netfilter of `ns` at `hook`; applies NAT; `false` when the packet dies.
    fn hook(&self, w: &mut WalkState, ns: NetnsRef, hook: Hook, iif: Option<&str>, oif: Option<&str>) -> bool {
        let dnat = w.translations.iter().any(|t| t.at == ns && t.kind == NatKind::Destination)
            || w.undo.iter().any(|t| t.at == ns && t.kind == NatKind::Destination);
        let dst_local = w.packet.dst.is_loopback()
            || matches!(self.model.fib(ns).lookup(w.packet.dst), crate::model::Lookup::Local(_));
        let hp = HookPacket { packet: &w.packet, iif, oif, state: w.state, dnat, draw: self.config.draw, dst_local };
        let decisions = self.netfilter.hook(ns, hook, &hp);
        for d in decisions {
            let netns = self.model.node(ns.node).netns(ns.netns);
            let policy_span = || {
                let dir = match hook {
                    Hook::Input => Some(netcfg_lang::vocab::Direction::In),
                    Hook::Output => Some(netcfg_lang::vocab::Direction::Out),
                    Hook::Forward => Some(netcfg_lang::vocab::Direction::Forward),
                    _ => None,
                };
                dir.and_then(|d| netns.firewall.policy(d).map(|p| p.span)).or(netns.firewall.span)
            };
            let span = d.span.or_else(policy_span);
            let rule = match &d.rule {
                Some(r) => format!("`{r}`"),
                None => "the chain's policy".to_string(),
            };
            let undecided = if d.undecided.is_empty() {
                None
            } else {
                Some(format!("assumed not to match: {}", d.undecided.join("; ")))
            };
            let verdict_if_ok = if undecided.is_some() { StepVerdict::Uncertain } else { StepVerdict::Pass };
            let before = w.packet;
            let (verdict, what) = match d.action {
                NfAction::Accept => (verdict_if_ok, format!("chain `{}`: accept by {rule}", d.chain)),
                NfAction::Drop | NfAction::Reject => {
                    let v = if d.action == NfAction::Drop { "drop" } else { "reject" };
                    (StepVerdict::Dropped, format!("chain `{}`: {v} by {rule}", d.chain))
                }
                NfAction::Dnat { addr, port } => {
                    w.rewrite_dst(ns, span, addr, port);
                    (verdict_if_ok, format!("chain `{}`: DNAT to {} by {rule}", d.chain, endpoint(addr, port)))
                }
                NfAction::Redirect { port } => {
                    // To the primary address of the arriving link; a locally sent packet goes to
                    // the loopback address (`nf_nat_redirect`).
                    let loopback = match before.dst {
                        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    };
                    let addr = match iif {
                        None => loopback,
                        Some(i) => self
                            .model
                            .node(ns.node)
                            .find_link(ns.netns, i)
                            .and_then(|l| l.addresses.iter().find(|a| Family::of(a.addr()) == before.family()))
                            .map(|a| a.addr())
                            .unwrap_or(before.dst),
                    };
                    w.rewrite_dst(ns, span, addr, port);
                    (verdict_if_ok, format!("chain `{}`: redirect to {} by {rule}", d.chain, endpoint(addr, port)))
                }
                NfAction::Snat { addr } => {
                    w.rewrite_src(ns, span, addr);
                    (verdict_if_ok, format!("chain `{}`: SNAT to {addr} by {rule}", d.chain))
                }
                NfAction::Masquerade => {
                    let addr = oif
                        .and_then(|o| self.model.node(ns.node).find_link(ns.netns, o))
                        .and_then(|l| l.addresses.iter().find(|a| Family::of(a.addr()) == before.family()))
                        .map(|a| a.addr());
                    match addr {
                        Some(addr) => {
                            w.rewrite_src(ns, span, addr);
                            (verdict_if_ok, format!("chain `{}`: masquerade to {addr} by {rule}", d.chain))
                        }
                        None => (
                            StepVerdict::Uncertain,
                            format!(
                                "chain `{}`: masquerade by {rule}, but `{}` has no address in the spec",
                                d.chain,
                                oif.unwrap_or("?")
                            ),
                        ),
                    }
                }
            };
            w.steps.push(Step { at: ns, stage: Stage::Netfilter(hook), verdict, what, why: undecided, span });
            if verdict == StepVerdict::Dropped {
                return false;
            }
        }
        true
    }

    /// For a reply: conntrack puts back the destination a source NAT changed (before routing).
    fn undo_source(&self, w: &mut WalkState, ns: NetnsRef) {
        self.undo(w, ns, NatKind::Source);
    }

    /// For a reply: conntrack puts back the source a DNAT or redirect changed.
    fn undo_destination(&self, w: &mut WalkState, ns: NetnsRef) {
        self.undo(w, ns, NatKind::Destination);
    }

    fn undo(&self, w: &mut WalkState, ns: NetnsRef, kind: NatKind) {
        let pending: Vec<usize> =
            (0..w.undo.len()).filter(|i| w.undo[*i].at == ns && w.undo[*i].kind == kind).collect();
        for i in pending.into_iter().rev() {
            let t = w.undo.remove(i);
            let what = match kind {
                NatKind::Destination => {
                    let from = endpoint(w.packet.src, w.packet.sport);
                    w.packet.src = t.addr;
                    w.packet.sport = t.port;
                    format!("reply source {from} -> {} (undoing the destination NAT)", endpoint(t.addr, t.port))
                }
                NatKind::Source => {
                    let from = endpoint(w.packet.dst, w.packet.dport);
                    w.packet.dst = t.addr;
                    w.packet.dport = t.port;
                    format!("reply destination {from} -> {} (undoing the source NAT)", endpoint(t.addr, t.port))
                }
            };
            let s = self.step(w, ns, Stage::Conntrack, StepVerdict::Pass, what);
            s.span = t.span;
        }
    }

    /// Sends the frame out of `dev` toward `next_hop`: neighbour resolution, then the L2 path to
    /// the link that owns the next hop.
    fn transmit(&self, w: &mut WalkState, dev: LinkRef, next_hop: IpAddr, end: &mut Option<EndPoint>) -> Next {
        let ns = self.model.netns_of(dev);
        let node = self.model.node(dev.node);
        let out = self.model.link(dev);
        let owner = self.model.owner_on_segment(dev, next_hop).map(|a| a.link);
        let Some(owner) = owner else {
            if self.segment_leaves_spec(dev) {
                let s = self.step(
                    w,
                    ns,
                    Stage::Deliver,
                    StepVerdict::Delivered,
                    format!("leaves by `{}` toward `{next_hop}`", out.name.value),
                );
                s.why = Some(format!(
                    "`{next_hop}` is not in the spec: assumed to answer on `{}`'s network",
                    out.name.value
                ));
                s.span = Some(out.span);
                *end = None;
                return Next::Done(Outcome::Delivered);
            }
            return self.drop(
                w,
                ns,
                Stage::Neighbour,
                format!("who has `{next_hop}` on `{}`?", out.name.value),
                "no link of the segment has this address: neighbour resolution fails (host unreachable)".into(),
                Some(out.span),
            );
        };
        // The ARP request's sender address: the packet's source when it is local, else the
        // outgoing link's first address (`inet_select_addr`).
        let local_src = self.model.fib(ns).lookup(w.packet.src) == Lookup::Local(dev.link)
            || node.links_in(ns.netns).any(|l| l.addresses.iter().any(|a| a.addr() == w.packet.src));
        let sender = if local_src {
            Some(w.packet.src)
        } else {
            out.addresses.iter().map(|a| a.addr()).find(|a| Family::of(*a) == Family::of(next_hop))
        };
        let owner_link = self.model.link(owner);
        let owner_ns = self.model.netns_of(owner);
        if let (Some(sender), Family::Ipv4) = (sender, Family::of(next_hop)) {
            if let Some(mode) = self.model.rp_filter(owner).filter(|m| *m != RpFilter::Off) {
                let probe = Packet { src: next_hop, dst: sender, proto: Proto::Udp, sport: 0, dport: 0 };
                let back = match self.route_lookup(owner_ns, &probe) {
                    RouteDecision::Local { link } | RouteDecision::Unicast { dev: link, .. } => Some(link),
                    _ => None,
                };
                let ok = match mode {
                    RpFilter::Loose => back.is_some(),
                    _ => back == Some(owner.link),
                };
                if !ok {
                    let why = match back {
                        Some(b) => format!(
                            "{} ignores ARP requests from `{sender}` on `{}`: its {} rp_filter routes `{sender}` back by `{}` (the request works only while {}'s neighbour entry for `{next_hop}` is still valid)",
                            self.ns_name(owner_ns),
                            owner_link.name.value,
                            format!("{mode:?}").to_lowercase(),
                            self.model.node(owner.node).link(b).name.value,
                            self.ns_name(ns),
                        ),
                        None => format!(
                            "{} ignores ARP requests from `{sender}`: rp_filter finds no route back to it",
                            self.ns_name(owner_ns)
                        ),
                    };
                    return self.drop(
                        w,
                        ns,
                        Stage::Neighbour,
                        format!("who has `{next_hop}` on `{}`? (asked by `{sender}`)", out.name.value),
                        why,
                        self.rp_filter_span(owner),
                    );
                }
            }
        }
        let s = self.step(
            w,
            ns,
            Stage::Neighbour,
            StepVerdict::Pass,
            format!("`{next_hop}` is `{}` of {}", owner_link.name.value, self.ns_name(owner_ns)),
        );
        s.span = owner_link.addresses.iter().find(|a| a.addr() == next_hop).map(|a| a.span);
        if let Some(next) = self.l2(w, dev, owner) {
            return next;
        }
        if owner.node != dev.node && !self.config.fleet {
            let s = self.step(
                w,
                ns,
                Stage::Deliver,
                StepVerdict::Delivered,
                format!("leaves node `{}` toward node `{}`", node.name.value, self.model.node(owner.node).name.value),
            );
            s.why = Some("pass `--fleet` to follow it there".into());
            *end = None;
            return Next::Done(Outcome::Delivered);
        }
        Next::Receive(owner)
    }

    /// The frame's way from `from` to `to`: veth peers, bridges (with bridge netfilter when
    /// the bridge passes frames to it), LANs. `Some` when it dies there.
    fn l2(&self, w: &mut WalkState, from: LinkRef, to: LinkRef) -> Option<Next> {
        let ns = self.model.netns_of(from);
        let mut path = vec![from];
        let peer = |l: LinkRef| match self.model.link(l).kind {
            LinkKind::Veth { peer } => Some(LinkRef { node: l.node, link: peer }),
            _ => None,
        };
        if let Some(p) = peer(from) {
            path.push(p);
        }
        let mut tail = vec![to];
        if let Some(p) = peer(to) {
            tail.push(p);
        }
        let bridge_from = self.model.bridge_of(from).filter(|b| *b != from);
        let bridge_to = self.model.bridge_of(to).filter(|b| *b != to);
        let via_bridge = match (bridge_from, bridge_to) {
            (Some(a), Some(b)) if a == b => Some(a),
            (Some(a), None) if a == to => None,
            (None, Some(b)) if b == from => None,
            _ => None,
        };
        if let Some(b) = bridge_from.filter(|b| *b == to) {
            path.push(b);
        } else if let Some(b) = via_bridge {
            path.push(b);
        }
        for l in tail.into_iter().rev() {
            if !path.contains(&l) {
                path.push(l);
            }
        }
        if let Some(b) = bridge_to.filter(|b| *b == from) {
            path.retain(|l| *l != b || *l == from);
        }
        let names: Vec<String> = path
            .iter()
            .map(|l| {
                let link = self.model.link(*l);
                let lns = self.model.netns_of(*l);
                let where_ = if lns == ns { String::new() } else { format!(" ({})", self.short_ns(lns)) };
                format!("`{}`{where_}", link.name.value)
            })
            .collect();
        let s = self.step(w, ns, Stage::L2, StepVerdict::Pass, names.join(" -> "));
        s.span = Some(self.model.link(from).span);
        if let Some(b) = via_bridge {
            let bns = self.model.netns_of(b);
            let bridge = self.model.link(b);
            if self.model.bridge_netfilter(b) {
                let name = bridge.name.value.clone();
                let s =
                    self.step(w, bns, Stage::L2, StepVerdict::Pass, format!("bridged by `{name}` through netfilter"));
                s.span = Some(bridge.span);
                self.undo_source(w, bns);
                if !self.hook(w, bns, Hook::Forward, Some(&name), Some(&name)) {
                    return Some(Next::Done(Outcome::Dropped));
                }
                self.undo_destination(w, bns);
            } else {
                let pending = w.undo.iter().any(|t| t.at == bns);
                let s = self.step(
                    w,
                    bns,
                    Stage::L2,
                    StepVerdict::Pass,
                    format!("bridged by `{}` without netfilter", bridge.name.value),
                );
                s.span = Some(bridge.span);
                if pending {
                    s.why = Some(format!(
                        "{} translated this connection, but bridge netfilter is off: conntrack never sees the reply, so nothing is undone",
                        self.ns_name(bns)
                    ));
                }
            }
        }
        None
    }

    fn short_ns(&self, ns: NetnsRef) -> String {
        let node = self.model.node(ns.node);
        let name = node.netns(ns.netns).display_name().to_string();
        if self.config.fleet {
            format!("{}/{name}", node.name.value)
        } else {
            name
        }
    }

    /// Whether a segment reaches hosts the spec does not describe (a NIC, a VXLAN).
    fn segment_leaves_spec(&self, dev: LinkRef) -> bool {
        let seg = self.model.segment_of(dev);
        self.model.segment_links(seg).iter().any(|l| {
            matches!(self.model.link(*l).kind, LinkKind::Ethernet | LinkKind::Vxlan { .. } | LinkKind::Macvlan { .. })
        })
    }

    /// Local delivery: a declared listener takes it, or nothing listens.
    fn deliver(&self, w: &mut WalkState, ns: NetnsRef, _link: LinkId, end: &mut Option<EndPoint>) -> Next {
        let netns = self.model.node(ns.node).netns(ns.netns);
        let p = w.packet;
        *end = Some(EndPoint { start: Start::Local(ns), packet: p });
        if w.state == ConnState::Established {
            let s =
                self.step(w, ns, Stage::Deliver, StepVerdict::Delivered, format!("{p} reaches the client's socket"));
            s.span = Some(netns.span);
            return Next::Done(Outcome::Delivered);
        }
        if !p.has_ports() {
            let s = self.step(w, ns, Stage::Deliver, StepVerdict::Delivered, format!("{p} is answered by the kernel"));
            s.span = Some(netns.span);
            return Next::Done(Outcome::Delivered);
        }
        if netns.listeners.is_empty() {
            let s = self.step(
                w,
                ns,
                Stage::Deliver,
                StepVerdict::Delivered,
                format!("{p} delivered to {}", self.ns_name(ns)),
            );
            s.why = Some("the namespace declares no `listen`: a listening socket is assumed".into());
            s.span = Some(netns.span);
            return Next::Done(Outcome::Delivered);
        }
        let matching: Vec<&Listener> = netns
            .listeners
            .iter()
            .filter(|l| {
                l.proto == p.proto && l.port.value == p.dport && l.address.as_ref().is_none_or(|a| a.value == p.dst)
            })
            .collect();
        match matching.as_slice() {
            [] => {
                let how = if p.proto == Proto::Tcp {
                    "the kernel answers with a reset (connection refused)"
                } else {
                    "the kernel answers port unreachable"
                };
                let declared: Vec<String> = netns
                    .listeners
                    .iter()
                    .map(|l| format!("`{}` {}/{}", l.name.value, l.port.value, l.proto.keyword()))
                    .collect();
                self.drop(
                    w,
                    ns,
                    Stage::Deliver,
                    format!(
                        "nothing listens on {}/{} in {}",
                        endpoint(p.dst, p.dport),
                        p.proto.keyword(),
                        self.ns_name(ns)
                    ),
                    format!("{how}; the namespace's listeners: {}", declared.join(", ")),
                    Some(netns.span),
                )
            }
            [one] => {
                let (name, span) = (one.name.value.clone(), one.span);
                let s = self.step(w, ns, Stage::Deliver, StepVerdict::Delivered, format!("delivered to `{name}`"));
                s.span = Some(span);
                Next::Done(Outcome::Delivered)
            }
            [first, second, ..] => {
                let why = format!(
                    "`{}` and `{}` both bind port {}/{}: whichever starts second fails (address already in use)",
                    first.name.value,
                    second.name.value,
                    p.dport,
                    p.proto.keyword()
                );
                let span = second.port.span;
                self.drop(w, ns, Stage::Deliver, format!("port {} is bound twice", p.dport), why, Some(span))
            }
        }
    }
}

/// Where the forward packet arrived, from which its reply starts.
#[derive(Clone, Copy, Debug)]
struct EndPoint {
    start: Start,
    packet: Packet,
}

fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V6(_) => format!("[{a}]:{port}"),
        IpAddr::V4(_) => format!("{a}:{port}"),
    }
}
