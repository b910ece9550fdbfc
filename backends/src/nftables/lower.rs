//! IR -> typed ruleset, one table per namespace, in the style of kube-proxy's nftables mode:
//! services through a verdict map keyed on `daddr . l4proto . dport` (O(1) however many
//! services), backend choice by `numgen random mod N` with weights, zones and address sets as
//! named sets, connection-state handling before the rules, hairpin masquerade by packet mark.

use super::ruleset::*;
use crate::nftables::ruleset::Family;
use ipnet::IpNet;
use netcfg_compiler::ir::{self, AddrMatch, Netns, Node};
use netcfg_lang::ast::{Direction, Proto, Verdict as SpecVerdict};
use netcfg_lang::{Diagnostic, Span};

/// Lowers one namespace's firewall and NAT. An empty table means "netcfg has no rules here"
/// (the transaction then only removes a previous table).
pub fn lower_netns(node: &Node, ns: &Netns, diags: &mut Vec<Diagnostic>) -> Table {
    let mut cx = Lower { node, ns, table: Table::default(), diags };
    cx.sets();
    cx.filter(Direction::In);
    cx.filter(Direction::Forward);
    cx.filter(Direction::Out);
    cx.nat();
    if !cx.table.is_empty() {
        cx.table.comment =
            Some(Comment::new(&format!("managed by netcfg: node {} netns {}", node.name.value, ns.display_name())));
    }
    cx.table
}

struct Lower<'a> {
    node: &'a Node,
    ns: &'a Netns,
    table: Table,
    diags: &'a mut Vec<Diagnostic>,
}

fn set_name(set: &ir::AddrSet, fam: Family) -> Ident {
    Ident::new(&format!("set-{}-{}", set.name.value, fam.suffix()))
}

fn zone_name(zone: &ir::Zone) -> Ident {
    Ident::new(&format!("zone-{}", zone.name.value))
}

fn rule(exprs: Vec<Expr>, origin: Span) -> Rule {
    Rule { exprs, comment: None, origin }
}

fn m(sel: Selector, value: Value) -> Expr {
    Expr::Match { sel, op: Op::Eq, value }
}

impl Lower<'_> {
    fn ifname(&mut self, link: ir::LinkId, span: Span) -> Option<IfName> {
        let name = &self.node.link(link).name.value;
        let r = IfName::new(name);
        if r.is_none() {
            self.diags.push(
                Diagnostic::error(
                    "nft-unrepresentable",
                    span,
                    format!("interface name `{name}` cannot be used in nft rules"),
                )
                .with_help("use an interface name of at most 15 printable ASCII bytes"),
            );
        }
        r
    }

    /// Address sets (split per family, interval, auto-merge) and zones (ifname sets).
    fn sets(&mut self) {
        let fw = &self.ns.firewall;
        for set in &fw.sets {
            for fam in [Family::V4, Family::V6] {
                let elements: Vec<Element> = set
                    .elements
                    .iter()
                    .filter(|e| Family::of(e.value.addr()) == fam)
                    .map(|e| Element { key: vec![Value::Net(e.value)], origin: e.span })
                    .collect();
                let key = vec![if fam == Family::V4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr }];
                self.table.sets.push(Set { name: set_name(set, fam), key, interval: true, elements, origin: set.span });
            }
        }
        for zone in &fw.zones {
            let mut elements = Vec::new();
            for l in &zone.links {
                if let Some(n) = self.ifname(l.value, l.span) {
                    elements.push(Element { key: vec![Value::If(n)], origin: l.span });
                }
            }
            self.table.sets.push(Set {
                name: zone_name(zone),
                key: vec![KeyType::Ifname],
                interval: false,
                elements,
                origin: zone.span,
            });
        }
    }

    fn filter(&mut self, dir: Direction) {
        let fw = &self.ns.firewall;
        let policy = fw.policy(dir);
        let rules: Vec<&ir::Rule> = fw.rules.iter().filter(|r| r.direction.value == dir).collect();
        let filtering = policy.is_some_and(|p| p.value != SpecVerdict::Accept);
        if rules.is_empty() && !filtering {
            return;
        }
        let origin = policy.map(|p| p.span).or(fw.span).unwrap_or(self.ns.span);
        let (hook, name) = match dir {
            Direction::In => (Hook::Input, "input"),
            Direction::Out => (Hook::Output, "output"),
            Direction::Forward => (Hook::Forward, "forward"),
        };
        let mut chain = Chain {
            name: Ident::new(name),
            base: Some(BaseChain {
                chain_type: ChainType::Filter,
                hook,
                priority: Priority::Filter,
                policy: if filtering { Policy::Drop } else { Policy::Accept },
            }),
            rules: Vec::new(),
        };
        if filtering {
            match dir {
                Direction::In => chain.rules.push(rule(
                    vec![
                        m(Selector::Iif, Value::If(IfName::new("lo").expect("valid"))),
                        Expr::Verdict(Verdict::Accept),
                    ],
                    origin,
                )),
                Direction::Out => chain.rules.push(rule(
                    vec![
                        Expr::Match {
                            sel: Selector::OifName,
                            op: Op::Eq,
                            value: Value::If(IfName::new("lo").expect("valid")),
                        },
                        Expr::Verdict(Verdict::Accept),
                    ],
                    origin,
                )),
                Direction::Forward => {}
            }
        }
        if fw.stateful && filtering {
            chain.rules.push(rule(
                vec![
                    m(
                        Selector::CtState,
                        Value::States(vec![
                            netcfg_lang::ast::ConnState::Established,
                            netcfg_lang::ast::ConnState::Related,
                        ]),
                    ),
                    Expr::Verdict(Verdict::Accept),
                ],
                origin,
            ));
            chain.rules.push(rule(
                vec![
                    m(Selector::CtState, Value::States(vec![netcfg_lang::ast::ConnState::Invalid])),
                    Expr::Verdict(Verdict::Drop),
                ],
                origin,
            ));
        }
        if filtering && dir != Direction::Forward {
            // Without neighbour discovery an IPv6 host with a drop policy is unreachable.
            chain.rules.push(rule(vec![Expr::NeighbourDiscovery], origin));
        }
        if filtering && dir == Direction::Forward && !self.ns.services.is_empty() {
            // Connections DNAT-ed to a service backend are admitted by the service itself.
            let span = self.ns.services[0].span;
            chain
                .rules
                .push(rule(vec![m(Selector::CtStatus, Value::DnatStatus), Expr::Verdict(Verdict::Accept)], span));
        }
        for r in rules {
            for lowered in self.rule(r) {
                chain.rules.push(lowered);
            }
        }
        if policy.is_some_and(|p| p.value == SpecVerdict::Reject) {
            chain.rules.push(rule(vec![Expr::Reject { tcp: false }], origin));
        }
        self.table.chains.push(chain);
    }

    /// The families a rule applies to, from its address matches (both when it has none).
    fn rule_families(&self, r: &ir::Rule) -> Vec<Family> {
        let mut fams = vec![Family::V4, Family::V6];
        for a in [&r.from, &r.to].into_iter().flatten() {
            match &a.value {
                AddrMatch::Net(n) => fams.retain(|f| *f == Family::of(n.addr())),
                AddrMatch::Set(id) => {
                    let set = &self.ns.firewall.sets[id.0 as usize];
                    fams.retain(|f| set.elements.iter().any(|e| Family::of(e.value.addr()) == *f));
                }
            }
        }
        if let Some(p) = &r.proto {
            match p.value {
                Proto::Icmp => fams.retain(|f| *f == Family::V4),
                Proto::Icmpv6 => fams.retain(|f| *f == Family::V6),
                _ => {}
            }
        }
        fams
    }

    fn addr_expr(&self, sel: fn(Family) -> Selector, a: &AddrMatch, fam: Family) -> Expr {
        match a {
            AddrMatch::Net(n) => m(sel(fam), Value::Net(*n)),
            AddrMatch::Set(id) => Expr::Lookup {
                keys: vec![sel(fam)],
                set: set_name(&self.ns.firewall.sets[id.0 as usize], fam),
                op: Op::Eq,
            },
        }
    }

    fn rule(&mut self, r: &ir::Rule) -> Vec<Rule> {
        let fams = self.rule_families(r);
        if fams.is_empty() {
            // Contradictory families (an IPv4 source and an IPv6 destination, an empty set):
            // nothing can match; emit nothing, as nft would for an empty match.
            return Vec::new();
        }
        let single = fams.len() == 1;
        let mut out = Vec::new();
        for fam in fams {
            let mut exprs = Vec::new();
            if let Some(l) = &r.iif {
                if let Some(n) = self.ifname(l.value, l.span) {
                    exprs.push(m(Selector::IifName, Value::If(n)));
                }
            }
            if let Some(l) = &r.oif {
                if let Some(n) = self.ifname(l.value, l.span) {
                    exprs.push(m(Selector::OifName, Value::If(n)));
                }
            }
            if let Some(z) = &r.from_zone {
                let name = zone_name(&self.ns.firewall.zones[z.value.0 as usize]);
                exprs.push(Expr::Lookup { keys: vec![Selector::IifName], set: name, op: Op::Eq });
            }
            if let Some(z) = &r.to_zone {
                let name = zone_name(&self.ns.firewall.zones[z.value.0 as usize]);
                exprs.push(Expr::Lookup { keys: vec![Selector::OifName], set: name, op: Op::Eq });
            }
            let has_addr = r.from.is_some() || r.to.is_some();
            if !has_addr && !single {
                // Family-agnostic rule: one rule, no family match.
            } else if !has_addr {
                exprs.push(m(Selector::NfProto, Value::Family(fam)));
            }
            if let Some(f) = &r.from {
                exprs.push(self.addr_expr(Selector::Saddr, &f.value, fam));
            }
            if let Some(t) = &r.to {
                exprs.push(self.addr_expr(Selector::Daddr, &t.value, fam));
            }
            if let Some(p) = &r.proto {
                exprs.push(m(Selector::L4Proto, Value::Proto(p.value)));
            }
            if let Some(p) = &r.sport {
                exprs.push(m(Selector::Sport, Value::Ports(p.value.clone())));
            }
            if let Some(p) = &r.dport {
                exprs.push(m(Selector::Dport, Value::Ports(p.value.clone())));
            }
            if !r.state.is_empty() {
                exprs.push(m(Selector::CtState, Value::States(r.state.clone())));
            }
            if r.log {
                exprs.push(Expr::Log { prefix: Comment::new("netcfg: ") });
            }
            exprs.push(match r.verdict.value {
                SpecVerdict::Accept => Expr::Verdict(Verdict::Accept),
                SpecVerdict::Drop => Expr::Verdict(Verdict::Drop),
                SpecVerdict::Reject => Expr::Reject { tcp: r.proto.as_ref().is_some_and(|p| p.value == Proto::Tcp) },
            });
            out.push(Rule { exprs, comment: r.comment.as_deref().map(Comment::new), origin: r.span });
            if !has_addr && !single {
                break;
            }
        }
        out
    }

    fn nat(&mut self) {
        let ns = self.ns;
        let mut pre = Vec::new();
        let mut out = Vec::new();
        let mut post = Vec::new();
        // Services: one verdict map per family, one chain per service, one per backend.
        let mut hairpin = false;
        for fam in [Family::V4, Family::V6] {
            let services: Vec<(usize, &ir::Service)> =
                ns.services.iter().enumerate().filter(|(_, s)| Family::of(s.vip.value) == fam).collect();
            if services.is_empty() {
                continue;
            }
            let map_name = Ident::new(&format!("services-{}", fam.suffix()));
            let mut elements = Vec::new();
            for (i, svc) in services {
                let chain = Ident::new(&format!("svc-{i}-{}", svc.name.value));
                elements.push((
                    Element {
                        key: vec![Value::Addr(svc.vip.value), Value::Proto(svc.proto), Value::Port(svc.port.value)],
                        origin: svc.span,
                    },
                    Verdict::Goto(chain.clone()),
                ));
                let backends: Vec<&ir::Backend> = svc.backends.iter().filter(|b| Family::of(b.addr) == fam).collect();
                let mut svc_chain = Chain { name: chain.clone(), base: None, rules: Vec::new() };
                if backends.is_empty() {
                    // No backend: drop (a reject is not allowed in a nat chain).
                    svc_chain.rules.push(rule(vec![Expr::Verdict(Verdict::Drop)], svc.span));
                } else {
                    let total: u32 = backends.iter().map(|b| b.weight).sum();
                    let mut arms = Vec::new();
                    let mut at = 0;
                    for (j, b) in backends.iter().enumerate() {
                        let ep = Ident::new(&format!("svc-{i}-{}-ep{j}", svc.name.value));
                        arms.push((at, at + b.weight - 1, Verdict::Goto(ep.clone())));
                        at += b.weight;
                        hairpin = true;
                        self.table.chains.push(Chain {
                            name: ep,
                            base: None,
                            rules: vec![
                                rule(
                                    vec![m(Selector::Saddr(fam), Value::Addr(b.addr)), Expr::MarkSet(HAIRPIN_MARK)],
                                    b.span,
                                ),
                                rule(
                                    vec![
                                        m(Selector::L4Proto, Value::Proto(svc.proto)),
                                        Expr::Dnat { addr: b.addr, port: b.port },
                                    ],
                                    b.span,
                                ),
                            ],
                        });
                    }
                    if arms.len() == 1 {
                        let (_, _, v) = arms.remove(0);
                        svc_chain.rules.push(rule(vec![Expr::Verdict(v)], svc.span));
                    } else {
                        svc_chain.rules.push(rule(vec![Expr::NumgenVmap { modulus: total, arms }], svc.span));
                    }
                }
                self.table.chains.push(svc_chain);
            }
            let origin = elements[0].0.origin;
            let key_addr = if fam == Family::V4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr };
            self.table.maps.push(Map {
                name: map_name.clone(),
                key: vec![key_addr, KeyType::InetProto, KeyType::InetService],
                elements,
                origin,
            });
            let keys = vec![Selector::Daddr(fam), Selector::L4Proto, Selector::Dport];
            pre.push(rule(vec![Expr::VerdictMap { keys: keys.clone(), map: map_name.clone() }], origin));
            out.push(rule(vec![Expr::VerdictMap { keys, map: map_name }], origin));
        }
        for r in &ns.redirects {
            let lo = Value::If(IfName::new("lo").expect("valid"));
            let mut exprs = match r.direction {
                Direction::In => vec![Expr::Match { sel: Selector::IifName, op: Op::Ne, value: lo }],
                _ => vec![Expr::Match { sel: Selector::OifName, op: Op::Ne, value: lo }],
            };
            exprs.push(m(Selector::L4Proto, Value::Proto(r.proto)));
            if let Some(p) = &r.ports {
                exprs.push(m(Selector::Dport, Value::Ports(p.clone())));
            }
            if let Some(p) = &r.except_ports {
                exprs.push(Expr::Match { sel: Selector::Dport, op: Op::Ne, value: Value::Ports(p.clone()) });
            }
            exprs.push(Expr::Redirect { port: r.to_port.value });
            match r.direction {
                Direction::In => pre.push(rule(exprs, r.span)),
                _ => out.push(rule(exprs, r.span)),
            }
        }
        if hairpin {
            let span = ns.services[0].span;
            post.push(rule(vec![Expr::HasMark(HAIRPIN_MARK), Expr::Masquerade], span));
        }
        for mq in &ns.masquerades {
            post.extend(self.source_nat(mq.from.as_ref(), mq.out.as_ref(), Expr::Masquerade, None, mq.span));
        }
        for sn in &ns.snats {
            let fam = Family::of(sn.to.value);
            post.extend(self.source_nat(
                sn.from.as_ref(),
                sn.out.as_ref(),
                Expr::Snat { addr: sn.to.value },
                Some(fam),
                sn.span,
            ));
        }
        let nat_chain = |name: &str, hook, priority, rules: Vec<Rule>| Chain {
            name: Ident::new(name),
            base: Some(BaseChain { chain_type: ChainType::Nat, hook, priority, policy: Policy::Accept }),
            rules,
        };
        if !pre.is_empty() {
            self.table.chains.push(nat_chain("nat-prerouting", Hook::Prerouting, Priority::DstNat, pre));
        }
        if !out.is_empty() {
            // The nat output hook takes a numeric priority only.
            self.table.chains.push(nat_chain("nat-output", Hook::Output, Priority::Num(-100), out));
        }
        if !post.is_empty() {
            self.table.chains.push(nat_chain("nat-postrouting", Hook::Postrouting, Priority::SrcNat, post));
        }
    }

    fn source_nat(
        &mut self,
        from: Option<&netcfg_lang::Spanned<AddrMatch>>,
        out: Option<&netcfg_lang::Spanned<ir::LinkId>>,
        action: Expr,
        only: Option<Family>,
        span: Span,
    ) -> Vec<Rule> {
        let mut fams: Vec<Family> = match from.map(|f| &f.value) {
            Some(AddrMatch::Net(n)) => vec![Family::of(n.addr())],
            Some(AddrMatch::Set(id)) => {
                let set = &self.ns.firewall.sets[id.0 as usize];
                [Family::V4, Family::V6]
                    .into_iter()
                    .filter(|f| set.elements.iter().any(|e| Family::of(e.value.addr()) == *f))
                    .collect()
            }
            None => vec![Family::V4, Family::V6],
        };
        if let Some(o) = only {
            fams.retain(|f| *f == o);
        }
        let mut rules = Vec::new();
        for fam in fams {
            let mut exprs = Vec::new();
            if let Some(o) = out {
                if let Some(n) = self.ifname(o.value, o.span) {
                    exprs.push(m(Selector::OifName, Value::If(n)));
                }
            }
            match from {
                Some(f) => exprs.push(self.addr_expr(Selector::Saddr, &f.value, fam)),
                None => exprs.push(m(Selector::NfProto, Value::Family(fam))),
            }
            exprs.push(action.clone());
            rules.push(rule(exprs, span));
        }
        rules
    }
}

#[allow(dead_code)]
fn _net(n: IpNet) -> Value {
    Value::Net(n)
}
