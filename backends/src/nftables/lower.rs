//! IR -> typed ruleset, one table per namespace: filter chains per direction (connection-state
//! handling first, then the rules in spec order, then the policy), zones and address sets as
//! named sets, services as one DNAT map per family keyed on `daddr . l4proto . dport . numgen`
//! (one lookup however many services; weights are slices of the random draw), hairpin
//! masquerade through a `saddr . daddr` set of backends, masquerade/SNAT/redirect in the NAT
//! chains. See spec.md, "How the firewall and NAT compile to nftables".

use super::ruleset::*;
use crate::codes;
use crate::nftables::ruleset::Family;
use netcfg_compiler::ir::{self, AddrMatch, Netns, Node};
use netcfg_lang::vocab::{AddrKey, Direction, Proto, Verdict as SpecVerdict};
use netcfg_lang::{Diagnostic, Span};

mod nat;

/// Lowers one namespace's firewall and NAT. An empty table means "netcfg has no rules here"
/// (the transaction then only removes a previous table).
pub fn lower_netns(node: &Node, ns: &Netns, diags: &mut Vec<Diagnostic>) -> Table {
    lower_netns_with(node, ns, diags, LowerOptions::default())
}

/// How the firewall is lowered.
#[derive(Clone, Copy, Debug)]
pub struct LowerOptions {
    /// Runs of rules with the same verdict become set lookups (`merge.rs`); off, every spec
    /// rule is one nft rule (the naive form the tests compare against).
    pub merge_runs: bool,
}

impl Default for LowerOptions {
    fn default() -> LowerOptions {
        LowerOptions { merge_runs: true }
    }
}

pub fn lower_netns_with(node: &Node, ns: &Netns, diags: &mut Vec<Diagnostic>, opts: LowerOptions) -> Table {
    let mut cx = Lower { node, ns, table: Table::default(), diags, opts };
    cx.sets();
    cx.filter(Direction::In);
    cx.filter(Direction::Forward);
    cx.filter(Direction::Out);
    cx.marks();
    cx.clamp_mss();
    cx.notracks();
    cx.tproxies();
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
    opts: LowerOptions,
}

fn set_name(set: &ir::AddrSet, fam: Family) -> Ident {
    Ident::new(&format!("set-{}-{}", set.name.value, fam.suffix()))
}

fn zone_name(zone: &ir::Zone) -> Ident {
    Ident::new(&format!("zone-{}", zone.name.value))
}

/// A named counter's nft name: prefixed like sets and zones, so that no spec name is an nft
/// keyword (`counter include` does not parse).
fn counter_ident(name: &str) -> Ident {
    Ident::new(&format!("counter-{name}"))
}

fn nft_family(f: netcfg_lang::vocab::Family) -> Family {
    match f {
        netcfg_lang::vocab::Family::Ipv4 => Family::V4,
        netcfg_lang::vocab::Family::Ipv6 => Family::V6,
    }
}

/// A spec rule's name in the nft names derived from it (`rule-3`, `mark-0`): written out only
/// when a rule needs a set of its own, not for each of 10,000 rules.
#[derive(Clone, Copy)]
struct RuleId {
    kind: &'static str,
    index: usize,
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.kind, self.index)
    }
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
                    codes::NFT_UNREPRESENTABLE,
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
            if let Some(d) = &set.dynamic {
                self.dynamic_set(set, d);
                continue;
            }
            for fam in [Family::V4, Family::V6] {
                let elements: Vec<Element> = set
                    .elements
                    .iter()
                    .filter(|e| Family::of(e.value.addr()) == fam)
                    .map(|e| Element { key: smallvec::smallvec![Value::Net(e.value)], data: None, origin: e.span })
                    .collect();
                let key = SetKey::Types(vec![if fam == Family::V4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr }]);
                self.table.sets.push(Set {
                    name: set_name(set, fam),
                    key,
                    data: None,
                    interval: true,
                    dynamic: None,
                    elements,
                    origin: set.span,
                });
            }
        }
        for zone in &fw.zones {
            let mut elements = Vec::new();
            let by_pattern = |name: &str| zone.patterns.iter().any(|p| name.starts_with(p.value.as_str()));
            for l in &zone.links {
                // A declared link a pattern matches is in the set through the pattern (an
                // interval set refuses an element inside another's range).
                if by_pattern(&self.node.link(l.value).name.value) {
                    continue;
                }
                if let Some(n) = self.ifname(l.value, l.span) {
                    elements.push(Element { key: smallvec::smallvec![Value::If(n)], data: None, origin: l.span });
                }
            }
            for p in &zone.patterns {
                if let Some(n) = IfName::prefix(&p.value) {
                    elements.push(Element { key: smallvec::smallvec![Value::If(n)], data: None, origin: p.span });
                }
            }
            self.table.sets.push(Set {
                name: zone_name(zone),
                key: SetKey::Types(vec![KeyType::Ifname]),
                data: None,
                interval: !zone.patterns.is_empty(),
                dynamic: None,
                elements,
                origin: zone.span,
            });
        }
    }

    /// A spec's dynamic set: one nft set per family it may hold (rules add single addresses,
    /// so no intervals), its seeds as elements, and the mark that keeps its run-time elements
    /// across a re-apply.
    fn dynamic_set(&mut self, set: &ir::AddrSet, d: &ir::DynamicSet) {
        for fam in set.families() {
            let fam = nft_family(fam);
            let elements = set
                .elements
                .iter()
                .filter(|e| Family::of(e.value.addr()) == fam)
                .map(|e| Element { key: smallvec::smallvec![Value::Addr(e.value.addr())], data: None, origin: e.span })
                .collect();
            self.table.sets.push(Set {
                name: set_name(set, fam),
                key: SetKey::Types(vec![if fam == Family::V4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr }]),
                data: None,
                interval: false,
                dynamic: Some(Dynamic { size: d.size, timeout: d.timeout, kept: true }),
                elements,
                origin: set.span,
            });
        }
    }

    fn filter(&mut self, dir: Direction) {
        let fw = &self.ns.firewall;
        let policy = fw.policy(dir);
        let rules: Vec<(usize, &ir::Rule)> =
            fw.rules.iter().enumerate().filter(|(_, r)| r.direction.value == dir).collect();
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
                            netcfg_lang::vocab::ConnState::Established,
                            netcfg_lang::vocab::ConnState::Related,
                        ]),
                    ),
                    Expr::Verdict(Verdict::Accept),
                ],
                origin,
            ));
            chain.rules.push(rule(
                vec![
                    m(Selector::CtState, Value::States(vec![netcfg_lang::vocab::ConnState::Invalid])),
                    Expr::Verdict(Verdict::Drop),
                ],
                origin,
            ));
        }
        if filtering && dir != Direction::Forward {
            // Without neighbour discovery an IPv6 host with a drop policy is unreachable.
            chain.rules.push(rule(vec![Expr::NeighbourDiscovery], origin));
        }
        let translated = self.ns.services.first().map(|s| s.span).or(self.ns.publishes.first().map(|p| p.span));
        if let (true, Direction::Forward, Some(span)) = (filtering, dir, translated) {
            // Connections DNAT-ed to a service backend or a published port's are admitted by
            // the service or the publish itself.
            chain
                .rules
                .push(rule(vec![m(Selector::CtStatus, Value::DnatStatus), Expr::Verdict(Verdict::Accept)], span));
        }
        let mut lowered = Vec::with_capacity(rules.len());
        for (i, r) in rules {
            self.rule_ending(RuleId { kind: "rule", index: i }, r, None, &mut lowered);
        }
        if self.opts.merge_runs {
            lowered = super::merge::merge_runs(name, lowered, &mut self.table.sets);
        }
        chain.rules.extend(lowered);
        if policy.is_some_and(|p| p.value == SpecVerdict::Reject) {
            chain.rules.push(rule(vec![Expr::Reject(RejectWith::AdminProhibited)], origin));
        }
        self.table.chains.push(chain);
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

    /// A negated address for one family: `!=` on a network of that family (none for the other
    /// family, where every packet is "not from" it), `!= @set-NAME-FAM` for a set.
    fn except_addr_expr(&self, sel: fn(Family) -> Selector, a: &AddrMatch, fam: Family) -> Option<Expr> {
        match a {
            AddrMatch::Net(n) if Family::of(n.addr()) == fam => {
                Some(Expr::Match { sel: sel(fam), op: Op::Ne, value: Value::Net(*n) })
            }
            AddrMatch::Net(_) => None,
            AddrMatch::Set(id) => Some(Expr::Lookup {
                keys: vec![sel(fam)],
                set: set_name(&self.ns.firewall.sets[id.0 as usize], fam),
                op: Op::Ne,
            }),
        }
    }

    /// A dynamic set keyed on source addresses of one family, for a per-source limit of rule `i`.
    fn per_source_set(&mut self, id: RuleId, what: &str, fam: Family, timeout: Option<u32>, origin: Span) -> Ident {
        let name = Ident::new(&format!("{id}-{what}-{}", fam.suffix()));
        if !self.table.sets.iter().any(|s| s.name == name) {
            self.table.sets.push(Set {
                name: name.clone(),
                key: SetKey::Types(vec![if fam == Family::V4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr }]),
                data: None,
                interval: false,
                dynamic: Some(Dynamic { size: PER_SOURCE_SET_SIZE, timeout, kept: false }),
                elements: Vec::new(),
                origin,
            });
        }
        name
    }

    /// `add-to="@SET"` for one family: `update @set-NAME-FAM { ip saddr }`; nothing for a
    /// family the set does not hold (the rule still decides those packets).
    fn add_to_set(&self, id: ir::SetId, key: AddrKey, fam: Family) -> Option<Expr> {
        let set = &self.ns.firewall.sets[id.0 as usize];
        let key = match key {
            AddrKey::Source => Selector::Saddr(fam),
            AddrKey::Destination => Selector::Daddr(fam),
        };
        set.families()
            .into_iter()
            .any(|f| nft_family(f) == fam)
            .then(|| Expr::AddToSet { set: set_name(set, fam), key })
    }

    /// Hairpin: a DNAT-ed connection whose client is also the backend it was sent to is
    /// masqueraded, or the backend would answer itself directly. `pairs` are (backend, backend)
    /// `saddr . daddr` elements; they become the set `KIND-hairpin-v4`/`-v6` and one rule over
    /// it (none when there are no pairs).
    pub(super) fn hairpin_masquerade(
        &mut self,
        kind: &str,
        fam: Family,
        mut pairs: Vec<Element>,
        origin: Span,
    ) -> Option<Rule> {
        pairs.sort_by_key(|e| format!("{:?}", e.key));
        pairs.dedup_by(|a, b| a.key == b.key);
        if pairs.is_empty() {
            return None;
        }
        let (saddr, daddr) = (Selector::Saddr(fam), Selector::Daddr(fam));
        let set = Ident::new(&format!("{kind}-hairpin-{}", fam.suffix()));
        self.table.sets.push(Set {
            name: set.clone(),
            key: SetKey::Typeof(vec![KeyExpr::Sel(saddr), KeyExpr::Sel(daddr)]),
            data: None,
            interval: false,
            dynamic: None,
            elements: pairs,
            origin,
        });
        let exprs = vec![
            m(Selector::CtStatus, Value::DnatStatus),
            Expr::Lookup { keys: vec![saddr, daddr], set, op: Op::Eq },
            Expr::Masquerade,
        ];
        Some(rule(exprs, origin))
    }

    /// Appends a rule's nft rules (one, or one per family) to `out`: its matches, then `ending`
    /// (a `mark` rule's statements) or else its verdict. `id` names its dynamic sets
    /// (`ID-limit-v4`).
    fn rule_ending(&mut self, id: RuleId, r: &ir::Rule, ending: Option<&[Expr]>, out: &mut Vec<Rule>) {
        // Inline, not a vector: one or two families per rule, of 10,000 rules.
        let fams: smallvec::SmallVec<[Family; 2]> = self
            .ns
            .firewall
            .rule_family_set(r)
            .iter()
            .map(|f| if f == netcfg_lang::vocab::Family::Ipv4 { Family::V4 } else { Family::V6 })
            .collect();
        if fams.is_empty() {
            // Contradictory families (an IPv4 source and an IPv6 destination, an empty set):
            // nothing can match; emit nothing, as nft would for an empty match.
            return;
        }
        let single = fams.len() == 1;
        let has_addr = r.from.is_some() || r.to.is_some();
        let per_source =
            r.limit.as_ref().is_some_and(|l| l.value.per_source) || r.conn_limit.is_some() || r.add_to.is_some();
        // Address matches (negated ones too) and per-source state are written per family.
        let per_family = has_addr || r.except.from.is_some() || r.except.to.is_some() || per_source;
        if let Some(c) = &r.counter {
            let name = counter_ident(&c.value);
            if !self.table.counters.iter().any(|k| k.name == name) {
                self.table.counters.push(Counter { name, origin: c.span });
            }
        }
        for fam in fams {
            // Most rules are a few matches and a verdict: allocated once, not grown.
            let mut exprs = Vec::with_capacity(4);
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
            for (l, sel) in [(&r.except.iif, Selector::IifName), (&r.except.oif, Selector::OifName)] {
                if let Some(l) = l {
                    if let Some(n) = self.ifname(l.value, l.span) {
                        exprs.push(Expr::Match { sel, op: Op::Ne, value: Value::If(n) });
                    }
                }
            }
            for (z, sel) in [(&r.except.from_zone, Selector::IifName), (&r.except.to_zone, Selector::OifName)] {
                if let Some(z) = z {
                    let name = zone_name(&self.ns.firewall.zones[z.value.0 as usize]);
                    exprs.push(Expr::Lookup { keys: vec![sel], set: name, op: Op::Ne });
                }
            }
            if !has_addr && (single || per_family) {
                exprs.push(m(Selector::NfProto, Value::Family(fam)));
            }
            if let Some(f) = &r.from {
                exprs.push(self.addr_expr(Selector::Saddr, &f.value, fam));
            }
            if let Some(t) = &r.to {
                exprs.push(self.addr_expr(Selector::Daddr, &t.value, fam));
            }
            if let Some(f) = &r.except.from {
                exprs.extend(self.except_addr_expr(Selector::Saddr, &f.value, fam));
            }
            if let Some(t) = &r.except.to {
                exprs.extend(self.except_addr_expr(Selector::Daddr, &t.value, fam));
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
            for (p, sel) in [(&r.except.sport, Selector::Sport), (&r.except.dport, Selector::Dport)] {
                if let Some(p) = p {
                    exprs.push(Expr::Match { sel, op: Op::Ne, value: Value::Ports(p.value.clone()) });
                }
            }
            if let Some(t) = &r.icmp_types {
                // The parser accepts types only with `proto` icmp or icmpv6, which fixed `fam`.
                exprs.push(m(Selector::IcmpType(fam), Value::Ints(t.value.clone())));
                if let Some(c) = &r.icmp_code {
                    exprs.push(m(Selector::IcmpCode(fam), Value::Ints(vec![c.value])));
                }
            }
            if !r.state.is_empty() {
                exprs.push(m(Selector::CtState, Value::States(r.state.clone())));
            }
            for (mark, sel, op) in [
                (&r.mark, Selector::Mark, Op::Eq),
                (&r.ct_mark, Selector::CtMark, Op::Eq),
                (&r.except.mark, Selector::Mark, Op::Ne),
                (&r.except.ct_mark, Selector::CtMark, Op::Ne),
            ] {
                if let Some(mk) = mark {
                    exprs.push(Expr::Match { sel, op, value: Value::Mark(mk.value) });
                }
            }
            for (id, sel, op) in [
                (&r.uid, Selector::SkUid, Op::Eq),
                (&r.gid, Selector::SkGid, Op::Eq),
                (&r.except.uid, Selector::SkUid, Op::Ne),
                (&r.except.gid, Selector::SkGid, Op::Ne),
            ] {
                if let Some(id) = id {
                    exprs.push(Expr::Match { sel, op, value: Value::Uid(id.value) });
                }
            }
            if let Some(p) = &r.pkttype {
                exprs.push(m(Selector::PktType, Value::PktType(p.value)));
            }
            // Limits come after every other match: only packets the rule matches use them up.
            if let Some(n) = &r.conn_limit {
                let set = self.per_source_set(id, "conns", fam, None, n.span);
                exprs.push(Expr::PerKey { set, key: Selector::Saddr(fam), limit: KeyedLimit::Connections(n.value) });
            }
            if let Some(l) = &r.limit {
                let (rate, unit, burst) = (l.value.count, l.value.unit, r.burst);
                if l.value.per_source {
                    // An idle source's bucket is full again after one unit; keep it that long.
                    let timeout = Some(unit.seconds().max(60));
                    let set = self.per_source_set(id, "limit", fam, timeout, l.span);
                    exprs.push(Expr::PerKey {
                        set,
                        key: Selector::Saddr(fam),
                        limit: KeyedLimit::Rate { rate, unit, burst },
                    });
                } else {
                    exprs.push(Expr::Limit { rate, unit, burst });
                }
            }
            if let Some((set, key)) = &r.add_to {
                exprs.extend(self.add_to_set(set.value, *key, fam));
            }
            if let Some(c) = &r.counter {
                exprs.push(Expr::NamedCounter(counter_ident(&c.value)));
            }
            if let Some(log) = &r.log {
                exprs.push(Expr::Log {
                    prefix: Comment::new(log.prefix.as_deref().unwrap_or("netcfg: ")),
                    level: log.level,
                });
            }
            if let Some(ending) = ending {
                exprs.extend(ending.iter().cloned());
                out.push(Rule { exprs, comment: r.comment.as_deref().map(Comment::new), origin: r.span });
                if !per_family && !single {
                    break;
                }
                continue;
            }
            exprs.push(match r.verdict.value {
                SpecVerdict::Accept => Expr::Verdict(Verdict::Accept),
                SpecVerdict::Drop => Expr::Verdict(Verdict::Drop),
                SpecVerdict::Reject if r.proto.as_ref().is_some_and(|p| p.value == Proto::Tcp) => {
                    Expr::Reject(RejectWith::TcpReset)
                }
                SpecVerdict::Reject => Expr::Reject(RejectWith::AdminProhibited),
            });
            out.push(Rule { exprs, comment: r.comment.as_deref().map(Comment::new), origin: r.span });
            if !per_family && !single {
                // Family-agnostic rule: one rule, no family match.
                break;
            }
        }
    }

    /// `mark in` rules in a prerouting chain at mangle priority (before DNAT, filtering and
    /// the routing decision), `mark out` rules in an output `route` chain (a locally generated
    /// packet whose mark changes there is routed again). They set marks and decide nothing.
    fn marks(&mut self) {
        let ns = self.ns;
        for (dir, name, chain_type, hook) in [
            (Direction::In, "mark-prerouting", ChainType::Filter, Hook::Prerouting),
            (Direction::Out, "mark-output", ChainType::Route, Hook::Output),
        ] {
            let mut rules = Vec::new();
            for (i, mr) in ns.firewall.marks.iter().enumerate().filter(|(_, mr)| mr.matches.direction.value == dir) {
                let mut ending = Vec::new();
                if let Some(mk) = &mr.set_mark {
                    ending.push(Expr::SetMark { ct: false, mark: mk.value });
                }
                if let Some(mk) = &mr.set_ct_mark {
                    ending.push(Expr::SetMark { ct: true, mark: mk.value });
                }
                self.rule_ending(RuleId { kind: "mark", index: i }, &mr.matches, Some(&ending), &mut rules);
            }
            if !rules.is_empty() {
                self.table.chains.push(Chain {
                    name: Ident::new(name),
                    base: Some(BaseChain { chain_type, hook, priority: Priority::Mangle, policy: Policy::Accept }),
                    rules,
                });
            }
        }
    }

    /// `notrack in` rules in a prerouting chain and `notrack out` rules in an output chain, both
    /// at raw priority: before connection tracking sees the packet.
    fn notracks(&mut self) {
        let ns = self.ns;
        for (dir, name, hook) in
            [(Direction::In, "notrack-prerouting", Hook::Prerouting), (Direction::Out, "notrack-output", Hook::Output)]
        {
            let mut rules = Vec::new();
            for (i, r) in ns.firewall.notracks.iter().enumerate().filter(|(_, r)| r.direction.value == dir) {
                self.rule_ending(RuleId { kind: "notrack", index: i }, r, Some(&[Expr::Notrack]), &mut rules);
            }
            if !rules.is_empty() {
                self.table.chains.push(Chain {
                    name: Ident::new(name),
                    base: Some(BaseChain {
                        chain_type: ChainType::Filter,
                        hook,
                        priority: Priority::Raw,
                        policy: Policy::Accept,
                    }),
                    rules,
                });
            }
        }
    }

    /// `clamp-mss`: forwarded TCP SYNs, in a forward chain at mangle priority (before the
    /// filter, so a SYN the filter drops is clamped for nothing, not missed).
    fn clamp_mss(&mut self) {
        let ns = self.ns;
        let mut rules = Vec::new();
        for c in &ns.firewall.clamp_mss {
            let mut exprs = Vec::new();
            if let Some(out) = &c.out {
                let Some(name) = self.ifname(out.value, out.span) else { continue };
                exprs.push(Expr::Match { sel: Selector::OifName, op: Op::Eq, value: Value::If(name) });
            }
            exprs.push(Expr::ClampMss { size: c.size });
            rules.push(Rule { exprs, comment: None, origin: c.span });
        }
        if !rules.is_empty() {
            self.table.chains.push(Chain {
                name: Ident::new("mss-forward"),
                base: Some(BaseChain {
                    chain_type: ChainType::Filter,
                    hook: Hook::Forward,
                    priority: Priority::Mangle,
                    policy: Policy::Accept,
                }),
                rules,
            });
        }
    }

    /// Services, redirects, masquerade and SNAT. Services use one map per family keyed on
    /// `daddr . l4proto . dport . numgen random mod NUMGEN_MOD` (an interval on the draw): one
    /// DNAT rule for any number of services and backends, each backend owning a slice of the
    /// draw proportional to its weight. Hairpin traffic (a backend reaching itself through its
    /// service) is masqueraded through a `saddr . daddr` set of backends.
    fn nat(&mut self) {
        let ns = self.ns;
        let mut pre = Vec::new();
        let mut out = Vec::new();
        let mut post = Vec::new();
        let mut rejects = Vec::new();
        for fam in [Family::V4, Family::V6] {
            let services: Vec<&ir::Service> = ns.services.iter().filter(|s| Family::of(s.vip.value) == fam).collect();
            if services.is_empty() {
                continue;
            }
            let (addr_key, daddr) = (KeyExpr::Sel(Selector::Daddr(fam)), Selector::Daddr(fam));
            let svc_key = vec![addr_key, KeyExpr::Sel(Selector::L4Proto), KeyExpr::Sel(Selector::Dport)];
            let mut backends = Vec::new();
            let mut hairpins = Vec::new();
            let mut empty = Vec::new();
            for svc in &services {
                let key: ElementKey = smallvec::smallvec![
                    Value::Addr(svc.vip.value),
                    Value::Proto(svc.proto),
                    Value::Port(svc.port.value)
                ];
                let bs: Vec<&ir::Backend> = svc.backends.iter().filter(|b| Family::of(b.addr) == fam).collect();
                if bs.is_empty() {
                    empty.push(Element { key, data: None, origin: svc.span });
                    continue;
                }
                for (b, (lo, hi)) in bs.iter().zip(slices(&bs.iter().map(|b| b.weight).collect::<Vec<_>>())) {
                    let mut k = key.clone();
                    k.push(Value::Range(lo, hi));
                    backends.push(Element {
                        key: k,
                        data: Some(ElemData::Values(vec![Value::Addr(b.addr), Value::Port(b.port)])),
                        origin: b.span,
                    });
                    // A loopback backend (route_localnet DNAT to a local agent) cannot hairpin.
                    if !b.addr.is_loopback() {
                        hairpins.push(Element {
                            key: smallvec::smallvec![Value::Addr(b.addr), Value::Addr(b.addr)],
                            data: None,
                            origin: b.span,
                        });
                    }
                }
            }
            let origin = services[0].span;
            if !backends.is_empty() {
                let map = Ident::new(&format!("service-backends-{}", fam.suffix()));
                let mut key = svc_key.clone();
                key.push(KeyExpr::Numgen(NUMGEN_MOD));
                self.table.sets.push(Set {
                    name: map.clone(),
                    key: SetKey::Typeof(key.clone()),
                    data: Some(SetData::Typeof(vec![KeyExpr::Sel(daddr), KeyExpr::Sel(Selector::Dport)])),
                    interval: true,
                    dynamic: None,
                    elements: backends,
                    origin,
                });
                // `th dport` needs a transport protocol match before it.
                let dnat = || {
                    rule(
                        vec![
                            m(Selector::L4Proto, Value::Protos(vec![Proto::Tcp, Proto::Udp, Proto::Sctp])),
                            Expr::DnatMap { family: fam, keys: key.clone(), map: map.clone() },
                        ],
                        origin,
                    )
                };
                pre.push(dnat());
                out.push(dnat());
                post.extend(self.hairpin_masquerade("service", fam, hairpins, origin));
            }
            if !empty.is_empty() {
                let set = Ident::new(&format!("service-no-backends-{}", fam.suffix()));
                let origin = empty[0].origin;
                self.table.sets.push(Set {
                    name: set.clone(),
                    key: SetKey::Typeof(svc_key.clone()),
                    data: None,
                    interval: false,
                    dynamic: None,
                    elements: empty,
                    origin,
                });
                for (protos, with) in [
                    (vec![Proto::Tcp], RejectWith::TcpReset),
                    (vec![Proto::Udp, Proto::Sctp], RejectWith::PortUnreachable),
                ] {
                    let proto = if protos.len() == 1 { Value::Proto(protos[0]) } else { Value::Protos(protos) };
                    rejects.push(rule(
                        vec![
                            m(Selector::L4Proto, proto),
                            Expr::Lookup {
                                keys: vec![daddr, Selector::L4Proto, Selector::Dport],
                                set: set.clone(),
                                op: Op::Eq,
                            },
                            Expr::Reject(with),
                        ],
                        origin,
                    ));
                }
            }
        }
        self.publishes(&mut pre, &mut out, &mut post);
        self.netmaps(&mut pre, &mut post);
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
            if let Some(uid) = r.except_uid {
                exprs.push(Expr::Match { sel: Selector::SkUid, op: Op::Ne, value: Value::Uid(uid) });
            }
            exprs.push(Expr::Redirect { port: r.to_port.value });
            match r.direction {
                Direction::In => pre.push(rule(exprs, r.span)),
                _ => out.push(rule(exprs, r.span)),
            }
        }
        for mq in &ns.masquerades {
            post.extend(self.source_nat(mq.from.as_ref(), mq.out.as_ref(), Expr::Masquerade, None, mq.span));
        }
        for sn in &ns.snats {
            let fam = Family::of(sn.to.value);
            let snat = |ports| Expr::Snat { addr: sn.to.value, last: sn.to_last, ports };
            if sn.ports.is_some() {
                // Ports can be mapped only for protocols that have them: those connections
                // first, the rest by the address alone.
                let mut with_ports =
                    self.source_nat(sn.from.as_ref(), sn.out.as_ref(), snat(sn.ports), Some(fam), sn.span);
                for r in &mut with_ports {
                    let at = r.exprs.len() - 1;
                    r.exprs.insert(at, m(Selector::L4Proto, Value::Protos(vec![Proto::Tcp, Proto::Udp, Proto::Sctp])));
                }
                post.extend(with_ports);
            }
            post.extend(self.source_nat(sn.from.as_ref(), sn.out.as_ref(), snat(None), Some(fam), sn.span));
        }
        let chain = |name: &str, chain_type, hook, priority, rules: Vec<Rule>| Chain {
            name: Ident::new(name),
            base: Some(BaseChain { chain_type, hook, priority, policy: Policy::Accept }),
            rules,
        };
        if !pre.is_empty() {
            self.table.chains.push(chain("nat-prerouting", ChainType::Nat, Hook::Prerouting, Priority::DstNat, pre));
        }
        if !out.is_empty() {
            // The nat output hook takes a numeric priority only.
            self.table.chains.push(chain("nat-output", ChainType::Nat, Hook::Output, Priority::Num(-100), out));
        }
        if !post.is_empty() {
            self.table.chains.push(chain("nat-postrouting", ChainType::Nat, Hook::Postrouting, Priority::SrcNat, post));
        }
        if !rejects.is_empty() {
            // Services without backends are refused before routing (the VIP usually has no
            // route) and for local clients; reject is not allowed in nat chains.
            let pre =
                chain("services-prerouting", ChainType::Filter, Hook::Prerouting, Priority::Num(-100), rejects.clone());
            self.table.chains.push(pre);
            self.table.chains.push(chain(
                "services-output",
                ChainType::Filter,
                Hook::Output,
                Priority::Filter,
                rejects,
            ));
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

/// Elements a per-source dynamic set holds at most: it bounds the kernel memory a flood of
/// spoofed sources can take. When the set is full the kernel cannot add a new source and the
/// rule does not match it (`nft_dynset` breaks), so a new source falls through to later rules.
pub const PER_SOURCE_SET_SIZE: u32 = 65535;

/// Splits `0..NUMGEN_MOD` into consecutive slices proportional to `weights` (each non-empty
/// while there are fewer backends than draws).
pub fn slices(weights: &[u32]) -> Vec<(u32, u32)> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let mut out = Vec::with_capacity(weights.len());
    let mut cum = 0u64;
    let mut start = 0u32;
    for (i, w) in weights.iter().enumerate() {
        cum += u64::from(*w);
        let end =
            if i + 1 == weights.len() { NUMGEN_MOD } else { ((cum * u64::from(NUMGEN_MOD)) / total.max(1)) as u32 };
        let end = end.max(start + 1).min(NUMGEN_MOD);
        out.push((start, end - 1));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_proportional_slices_of_the_draw() {
        assert_eq!(slices(&[1]), [(0, 65535)]);
        assert_eq!(slices(&[3, 1]), [(0, 49151), (49152, 65535)]);
        assert_eq!(slices(&[1, 1, 1]), [(0, 21844), (21845, 43689), (43690, 65535)]);
    }
}
