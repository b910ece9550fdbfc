//! The lowered ruleset, evaluated offline: `netcfg trace`'s [`Netfilter`]. It reads the same
//! typed [`Table`]s apply loads (`lower::lower_netns`), so a trace and the kernel decide from
//! one ruleset. Each base chain at a hook is walked rule by rule, first match wins, in
//! priority order.
//!
//! A match is decided three ways: it holds, it does not, or it cannot be known offline (the
//! socket's user for a forwarded packet, a value kind the evaluator does not know). An
//! undecidable match is assumed not to hold and is named in the decision, so the trace says
//! where it guessed; the exhaustive `match` over [`Expr`] makes a new expression kind a
//! compile error here until someone decides what it means for a trace.
//!
//! What it must not do: read the script text, or keep its own idea of what a spec rule means.

use super::lower::lower_netns;
use super::render::rule_text;
use super::ruleset::*;
use netcfg_compiler::ir::Fleet;
use netcfg_compiler::model::NetnsRef;
use netcfg_compiler::trace::{HookPacket, Netfilter, NfAction, NfDecision};
use netcfg_lang::vocab::{ConnState, Proto};
use std::collections::HashMap;
use std::net::IpAddr;

/// Every namespace's lowered table.
pub struct FleetRuleset {
    tables: HashMap<NetnsRef, Table>,
}

impl FleetRuleset {
    /// Lowers every namespace of the fleet (diagnostics of the lowering are `check`'s and
    /// `plan`'s business and are dropped here).
    pub fn new(fleet: &Fleet) -> FleetRuleset {
        let mut tables = HashMap::new();
        let mut ignored = Vec::new();
        for node in &fleet.nodes {
            for ns in &node.namespaces {
                tables.insert(NetnsRef { node: node.id, netns: ns.id }, lower_netns(node, ns, &mut ignored));
            }
        }
        FleetRuleset { tables }
    }

    /// One table, as given (tests evaluate hand-made tables).
    pub fn from_tables(tables: HashMap<NetnsRef, Table>) -> FleetRuleset {
        FleetRuleset { tables }
    }
}

fn priority(b: &BaseChain) -> i32 {
    match b.priority {
        Priority::Mangle => -150,
        Priority::Raw => -300,
        Priority::DstNat => -100,
        Priority::Filter => 0,
        Priority::SrcNat => 100,
        Priority::Num(n) => n,
    }
}

/// Three-valued match result.
enum Tri {
    Yes,
    No,
    Unknown(String),
}

impl Netfilter for FleetRuleset {
    fn hook(&self, ns: NetnsRef, hook: Hook, p: &HookPacket<'_>) -> Vec<NfDecision> {
        let Some(table) = self.tables.get(&ns) else { return Vec::new() };
        let mut chains: Vec<&Chain> =
            table.chains.iter().filter(|c| c.base.as_ref().is_some_and(|b| b.hook == hook)).collect();
        chains.sort_by_key(|c| c.base.as_ref().map(priority).unwrap_or(0));
        let mut out = Vec::new();
        for chain in chains {
            let base = chain.base.as_ref().expect("base chains only");
            // NAT chains see the first packet of a connection only.
            if base.chain_type == ChainType::Nat && p.state != ConnState::New {
                continue;
            }
            if let Some(d) = eval_chain(table, chain, base, p) {
                out.push(d);
            }
        }
        out
    }
}

fn eval_chain(table: &Table, chain: &Chain, base: &BaseChain, p: &HookPacket<'_>) -> Option<NfDecision> {
    let mut undecided = Vec::new();
    'rules: for rule in &chain.rules {
        let mut rule_undecided = Vec::new();
        for e in &rule.exprs {
            let action = match e {
                Expr::Match { sel, op, value } => match (holds(p, *sel, value), op) {
                    (Tri::Yes, Op::Eq) | (Tri::No, Op::Ne) => continue,
                    (Tri::Unknown(why), _) => {
                        rule_undecided.push(why);
                        continue;
                    }
                    _ => continue 'rules,
                },
                Expr::Lookup { keys, set, op } => {
                    let Some(set) = table.sets.iter().find(|s| &s.name == set) else { continue 'rules };
                    if set.dynamic.is_some() {
                        rule_undecided
                            .push(format!("membership of the dynamic set `{}` (rules fill it at run time)", set.name));
                        continue;
                    }
                    let mut found = false;
                    for el in &set.elements {
                        let mut all = true;
                        for (sel, v) in keys.iter().zip(&el.key) {
                            match holds(p, *sel, v) {
                                Tri::Yes => {}
                                Tri::No => {
                                    all = false;
                                    break;
                                }
                                Tri::Unknown(why) => rule_undecided.push(why),
                            }
                        }
                        if all {
                            found = true;
                            break;
                        }
                    }
                    if found != (*op == Op::Eq) {
                        continue 'rules;
                    }
                    continue;
                }
                Expr::DnatMap { keys, map, .. } => {
                    let Some(map) = table.sets.iter().find(|s| &s.name == map) else { continue 'rules };
                    let hit = map.elements.iter().find(|el| {
                        keys.iter().zip(&el.key).all(|(k, v)| match k {
                            KeyExpr::Sel(sel) => matches!(holds(p, *sel, v), Tri::Yes),
                            KeyExpr::Numgen(_) => matches!(v, Value::Range(lo, hi) if (*lo..=*hi).contains(&p.draw)),
                        })
                    });
                    match hit.and_then(|el| el.data.as_ref()) {
                        Some(ElemData::Values(vs)) => match vs.as_slice() {
                            [Value::Addr(a), Value::Port(port)] => {
                                return Some(decision(
                                    chain,
                                    rule,
                                    NfAction::Dnat { addr: *a, port: *port },
                                    el_span(hit),
                                    rule_undecided,
                                ));
                            }
                            _ => continue 'rules,
                        },
                        _ => continue 'rules,
                    }
                }
                // ICMPv6 neighbour discovery: the tracer's packets are never ND messages.
                Expr::NeighbourDiscovery => continue 'rules,
                // Adding the source to a dynamic set changes later packets' fate, not this one's.
                Expr::Log { .. } | Expr::NamedCounter(_) | Expr::AddToSet { .. } => continue,
                // Marks are not part of the traced packet; a rule that sets one goes on.
                Expr::SetMark { .. } | Expr::ClampMss { .. } => continue,
                Expr::Notrack => {
                    rule_undecided.push("`notrack` (an untracked packet is not NAT-ed; not modelled)".to_string());
                    continue;
                }
                Expr::Limit { .. } | Expr::PerKey { .. } => {
                    rule_undecided.push("a rate or connection limit (its state exists only at run time)".to_string());
                    continue;
                }
                Expr::Verdict(Verdict::Accept) => NfAction::Accept,
                Expr::Verdict(Verdict::Drop) => NfAction::Drop,
                Expr::Reject(_) => NfAction::Reject,
                Expr::Dnat { addr, port } => NfAction::Dnat { addr: *addr, port: *port },
                Expr::Snat { addr, .. } => NfAction::Snat { addr: *addr },
                Expr::Masquerade => NfAction::Masquerade,
                Expr::Redirect { port } => NfAction::Redirect { port: *port },
                Expr::PrefixNat { source: true, to } => NfAction::Snat { addr: netmapped(p.packet.src, to) },
                Expr::PrefixNat { source: false, to } => {
                    NfAction::Dnat { addr: netmapped(p.packet.dst, to), port: p.packet.dport }
                }
                Expr::Tproxy { .. } => {
                    rule_undecided.push(
                        "`tproxy` (delivery to a transparent socket without rewriting the destination; not modelled)"
                            .to_string(),
                    );
                    continue;
                }
            };
            if !rule_undecided.is_empty() {
                // Conservative: a rule we cannot decide is taken not to match, and said so.
                undecided.push(format!("`{}` ({})", rule_text(rule), rule_undecided.join(", ")));
                continue 'rules;
            }
            return Some(decision(chain, rule, action, Some(rule.origin), undecided));
        }
    }
    let action = match base.policy {
        Policy::Accept if base.chain_type == ChainType::Nat && undecided.is_empty() => return None,
        Policy::Accept => NfAction::Accept,
        Policy::Drop => NfAction::Drop,
    };
    Some(NfDecision { chain: chain.name.to_string(), action, rule: None, span: None, undecided })
}

/// `addr` with its network part replaced by `to`'s (`NETMAP`); the host part kept.
fn netmapped(addr: IpAddr, to: &ipnet::IpNet) -> IpAddr {
    match (addr, to) {
        (IpAddr::V4(a), ipnet::IpNet::V4(n)) => {
            let mask = u32::from(n.netmask());
            IpAddr::V4((u32::from(n.network()) | (u32::from(a) & !mask)).into())
        }
        (IpAddr::V6(a), ipnet::IpNet::V6(n)) => {
            let mask = u128::from(n.netmask());
            IpAddr::V6((u128::from(n.network()) | (u128::from(a) & !mask)).into())
        }
        _ => addr,
    }
}

fn el_span(el: Option<&Element>) -> Option<netcfg_lang::Span> {
    el.map(|e| e.origin)
}

fn decision(
    chain: &Chain,
    rule: &Rule,
    action: NfAction,
    span: Option<netcfg_lang::Span>,
    undecided: Vec<String>,
) -> NfDecision {
    NfDecision { chain: chain.name.to_string(), action, rule: Some(rule_text(rule)), span, undecided }
}

fn if_is(v: &IfName, name: Option<&str>) -> bool {
    name.is_some_and(|n| v.matches(n))
}

/// Whether the packet's field behind `sel` equals `value` (a set of values: holds).
fn holds(hp: &HookPacket<'_>, sel: Selector, value: &Value) -> Tri {
    let p = hp.packet;
    let yes = |b: bool| if b { Tri::Yes } else { Tri::No };
    let ports_apply = matches!(p.proto, Proto::Tcp | Proto::Udp | Proto::Sctp);
    let port = |port: u16| match value {
        Value::Ports(ps) => yes(ports_apply && ps.0.iter().any(|r| r.lo <= port && port <= r.hi)),
        Value::Port(q) => yes(ports_apply && *q == port),
        Value::Range(lo, hi) => yes(ports_apply && (*lo..=*hi).contains(&u32::from(port))),
        other => Tri::Unknown(format!("a port compared with {other:?}")),
    };
    let fam = Family::of(p.dst);
    let addr = |f: Family, a: IpAddr| match value {
        Value::Net(n) => yes(f == fam && n.contains(&a)),
        Value::Addr(x) => yes(f == fam && *x == a),
        other => Tri::Unknown(format!("an address compared with {other:?}")),
    };
    match sel {
        Selector::Iif | Selector::IifName => match value {
            Value::If(i) => yes(if_is(i, hp.iif)),
            other => Tri::Unknown(format!("an interface compared with {other:?}")),
        },
        Selector::OifName => match value {
            Value::If(i) => yes(if_is(i, hp.oif)),
            other => Tri::Unknown(format!("an interface compared with {other:?}")),
        },
        Selector::L4Proto => match value {
            Value::Proto(x) => yes(*x == p.proto),
            Value::Protos(xs) => yes(xs.contains(&p.proto)),
            other => Tri::Unknown(format!("a protocol compared with {other:?}")),
        },
        Selector::NfProto => match value {
            Value::Family(f) => yes(*f == fam),
            other => Tri::Unknown(format!("a family compared with {other:?}")),
        },
        Selector::Saddr(f) => addr(f, p.src),
        Selector::Daddr(f) => addr(f, p.dst),
        Selector::Dport => port(p.dport),
        Selector::Sport => port(p.sport),
        Selector::CtState => match value {
            Value::States(s) => yes(s.contains(&hp.state)),
            other => Tri::Unknown(format!("a connection state compared with {other:?}")),
        },
        Selector::CtStatus => match value {
            Value::DnatStatus => yes(hp.dnat),
            other => Tri::Unknown(format!("a connection status compared with {other:?}")),
        },
        // The user owning the socket: only a locally sent packet has one, and which user sends
        // it is not part of the packet a trace is given.
        Selector::SkUid => Tri::Unknown("`meta skuid` (the sending process's user is not known offline)".into()),
        Selector::SkGid => Tri::Unknown("`meta skgid` (the sending process's group is not known offline)".into()),
        // A traced packet is TCP, UDP or SCTP: an ICMP type or code never matches it.
        Selector::IcmpType(_) | Selector::IcmpCode(_) => {
            if matches!(p.proto, Proto::Icmp | Proto::Icmpv6) {
                Tri::Unknown("an ICMP type (a trace does not carry one)".into())
            } else {
                Tri::No
            }
        }
        Selector::Mark | Selector::CtMark => Tri::Unknown("a packet or connection mark (not modelled)".into()),
        Selector::PktType => Tri::Unknown("the packet type (unicast, broadcast, multicast; not modelled)".into()),
        Selector::FibDaddrType => match value {
            Value::Local => yes(hp.dst_local),
            other => Tri::Unknown(format!("an address type compared with {other:?}")),
        },
    }
}
