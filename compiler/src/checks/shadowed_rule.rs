//! `shadowed-rule`: a firewall rule that can never match because the packets it matches are all
//! decided before it (Batfish's "unreachable lines").
//!
//! **What it does.** In each namespace's firewall, compares every rule with the earlier rules of
//! the same direction (through an index: only those that could cover it). An earlier rule shadows a later one when each of its match fields is
//! absent or covers the later rule's: the same protocol; port sets that cover; `from`/`to`
//! networks that contain the later ones (or the same address set); the same interfaces, where a
//! zone covers an interface of the zone; connection states that include the later rule's (none
//! means all). With a `drop`/`reject` policy and `stateful` on (the default), established and
//! related packets are accepted and invalid ones dropped before the rules, so a rule matching
//! only those states is shadowed too.
//!
//! It also finds a rule shadowed by several earlier rules together, none of which covers it
//! alone: earlier rules equal to it in every match but one (`from`, `to` or `port`) whose
//! values together cover its value (`allow from 10.0.0.0/9` and `allow from 10.128.0.0/9`
//! shadow `deny from 10.0.0.0/8`). One pass per chain and dimension, with the earlier rules
//! grouped by their other matches in a hash map and their values merged into sorted ranges, so
//! no rule is compared with every other.
//!
//! Same verdict: warning (the later rule is redundant). Different verdict: error (the later
//! rule's intent is never carried out).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `shadowed-rule` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{AddrMatch, Families, Firewall, LinkId, Rule};
use crate::model::Model;
use foldhash::HashMap;
use hashbrown::HashTable;
use ipnet::IpNet;
use netcfg_lang::value::{PortRange, PortSet};
use netcfg_lang::vocab::{ConnState, Direction, Proto, Verdict};
use netcfg_lang::{Code, Diagnostic, Severity};
use smallvec::{smallvec, SmallVec};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash, Hasher};

pub const CHECK: Check = Check {
    code: Code::new("shadowed-rule", &[Severity::Warning, Severity::Error], "a firewall rule that never matches"),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn state_bit(s: ConnState) -> u8 {
    match s {
        ConnState::New => 1,
        ConnState::Established => 2,
        ConnState::Related => 4,
        ConnState::Invalid => 8,
    }
}

pub(super) const ALL_STATES: u8 = 0b1111;

/// A rule's networks in one dimension: most rules name one, kept inline (a heap block per rule
/// was megabytes of `check`'s peak on 100,000 rules).
type Nets = SmallVec<[IpNet; 1]>;

/// A rule's matches in a form that makes "covers" cheap to ask.
pub(super) struct Matches<'a> {
    rule: &'a Rule,
    proto: Option<Proto>,
    dport: Option<&'a PortSet>,
    sport: Option<&'a PortSet>,
    from: Option<Nets>,
    to: Option<Nets>,
    /// The input interfaces allowed by `iif` and `from-zone` together.
    iif: Option<BTreeSet<LinkId>>,
    oif: Option<BTreeSet<LinkId>>,
    /// The connection states of the packets that reach the rule and that it matches.
    states: u8,
    /// The families it can match (`Firewall::rule_families`); none: no family fits its
    /// addresses and protocol.
    families: Families,
    /// ICMP types and code.
    icmp: Option<(&'a [u8], Option<u8>)>,
    /// A rate or connection limit, a negated match or a mark match (marks are set at run
    /// time, by `mark` rules and other programs): what such a rule matches is not a
    /// plain set of packets this model holds, so it never covers a later rule (as a later
    /// rule its positive matches over-approximate it, which keeps a finding sound).
    opaque: bool,
}

impl<'a> Matches<'a> {
    pub(super) fn new(fw: &Firewall, rule: &'a Rule, reaching: u8) -> Matches<'a> {
        let nets = |m: &Option<netcfg_lang::Spanned<AddrMatch>>| {
            m.as_ref().map(|m| match &m.value {
                AddrMatch::Net(n) => smallvec![*n],
                // A dynamic set's members come at run time: any address, as far as we know.
                AddrMatch::Set(id) if fw.sets.get(id.0 as usize).is_some_and(|s| s.dynamic.is_some()) => {
                    smallvec![IpNet::V4(Default::default()), IpNet::V6(Default::default())]
                }
                AddrMatch::Set(id) => {
                    fw.sets.get(id.0 as usize).map(|s| s.elements.iter().map(|e| e.value).collect()).unwrap_or_default()
                }
            })
        };
        // A zone's pattern (`veth*`) also matches links that appear at run time: each distinct
        // prefix stands for them as one id no declared link has, so a rule of that zone covers a
        // later one of the same pattern, and a rule naming only declared links covers none.
        let unknown = |p: &str| {
            if !fw.zones.iter().any(|z| !z.patterns.is_empty()) {
                return LinkId(u32::MAX);
            }
            let mut prefixes: Vec<&str> =
                fw.zones.iter().flat_map(|z| z.patterns.iter().map(|p| p.value.as_str())).collect();
            prefixes.sort_unstable();
            prefixes.dedup();
            LinkId(u32::MAX - prefixes.binary_search(&p).unwrap_or(0) as u32)
        };
        let links = |link: Option<LinkId>, zone: Option<usize>| {
            if link.is_none() && zone.is_none() {
                return None;
            }
            let by_link = link.map(|l| BTreeSet::from([l]));
            let by_zone = zone.map(|z| {
                fw.zones
                    .get(z)
                    .map(|z| {
                        z.links
                            .iter()
                            .map(|l| l.value)
                            .chain(z.patterns.iter().map(|p| unknown(&p.value)))
                            .collect::<BTreeSet<_>>()
                    })
                    .unwrap_or_default()
            });
            match (by_link, by_zone) {
                (Some(l), Some(z)) => Some(l.intersection(&z).copied().collect()),
                (l, z) => l.or(z),
            }
        };
        let declared =
            if rule.state.is_empty() { ALL_STATES } else { rule.state.iter().fold(0, |bits, s| bits | state_bit(*s)) };
        Matches {
            rule,
            proto: rule.proto.as_ref().map(|p| p.value),
            dport: rule.dport.as_ref().map(|p| &p.value),
            sport: rule.sport.as_ref().map(|p| &p.value),
            from: nets(&rule.from),
            to: nets(&rule.to),
            iif: links(rule.iif.as_ref().map(|l| l.value), rule.from_zone.as_ref().map(|z| z.value.0 as usize)),
            oif: links(rule.oif.as_ref().map(|l| l.value), rule.to_zone.as_ref().map(|z| z.value.0 as usize)),
            states: declared & reaching,
            families: fw.rule_family_set(rule),
            icmp: rule.icmp_types.as_ref().map(|t| (t.value.as_slice(), rule.icmp_code.as_ref().map(|c| c.value))),
            opaque: rule.is_stateful()
                || rule.has_negation()
                || rule.matches_marks()
                || rule.matches_unmodelled()
                || rule.matches_dynamic_set(fw),
        }
    }

    /// A rule whose own matches contradict each other (an empty set or zone, an IPv4 source with
    /// an IPv6 destination) matches nothing: it is another problem than shadowing.
    pub(super) fn matches_nothing(&self) -> bool {
        let empty_links = |l: &Option<BTreeSet<LinkId>>| l.as_ref().is_some_and(|l| l.is_empty());
        self.families.is_empty() || empty_links(&self.iif) || empty_links(&self.oif)
    }

    /// Whether every packet `later` matches is matched by `self`.
    fn covers(&self, later: &Matches) -> bool {
        if self.proto.is_some() && self.proto != later.proto {
            return false;
        }
        if self.opaque {
            return false;
        }
        let icmp_covers = match (self.icmp, later.icmp) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((et, ec)), Some((lt, lc))) => lt.iter().all(|t| et.contains(t)) && (ec.is_none() || ec == lc),
        };
        later.states & !self.states == 0
            && self.families.covers(later.families)
            && icmp_covers
            && ports_cover(self.dport, later.dport)
            && ports_cover(self.sport, later.sport)
            && links_cover(&self.iif, &later.iif)
            && links_cover(&self.oif, &later.oif)
            && nets_cover(&self.from, &later.from)
            && nets_cover(&self.to, &later.to)
    }
}

fn ports_cover(earlier: Option<&PortSet>, later: Option<&PortSet>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(e), Some(l)) => e.covers(l),
        (Some(e), None) => e.covers(&PortSet(smallvec![PortRange { lo: 1, hi: u16::MAX }])),
    }
}

fn links_cover(earlier: &Option<BTreeSet<LinkId>>, later: &Option<BTreeSet<LinkId>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(e), Some(l)) => l.is_subset(e),
        (Some(_), None) => false,
    }
}

fn nets_cover(earlier: &Option<Nets>, later: &Option<Nets>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(e), Some(l)) => l.iter().all(|l| e.iter().any(|e| e.contains(l))),
        (Some(_), None) => false,
    }
}

/// The earlier rules of a chain, indexed by the values a rule covering a later one must hold, so
/// that each later rule is compared only with the earlier rules that could cover it (instead of
/// all of them: 50,000 rules were 1.25 billion comparisons). Each dimension yields lists of
/// candidates (rule positions, ascending) that hold every covering rule; the later rule is
/// compared with the candidates of its most selective dimension, so the finding (the first
/// covering rule) is the one the all-pairs scan found.
///
/// The rules are first split by protocol (`None`: the rules without one; a handful, scanned
/// rather than hashed), each protocol with its own index: a rule covering a later one has no
/// protocol or the later rule's, so the rules of other protocols are never candidates (with one
/// index for all, 100 `udp` denies without `from` were candidates of every later `tcp` rule
/// with a `from`: 50,000 such rules made `check` grow faster than linearly).
#[derive(Default)]
struct Index {
    by_proto: Vec<(Option<Proto>, ProtoIndex)>,
}

/// The earlier rules of one protocol.
#[derive(Default)]
struct ProtoIndex {
    /// Every rule, in order.
    all: Vec<Pos>,
    from: NetIndex,
    to: NetIndex,
    dport: PortIndex,
    iif: LinkIndex,
    oif: LinkIndex,
}

/// A rule's position in its chain: `u32`, as the index holds several per rule.
type Pos = u32;

/// Rules without the match (they cover any value), and rules by each network they hold.
#[derive(Default)]
struct NetIndex {
    any: Vec<Pos>,
    /// Keyed by the network's address bits and prefix length (`v4_key`): built and hashed for
    /// every prefix length a later rule probes, an `IpNet` was a third of the index's cost.
    /// Most networks are one rule's: its position kept inline, not in a heap block of its own.
    v4: HashMap<u64, SmallVec<[Pos; 2]>>,
    v6: HashMap<(u128, u8), SmallVec<[Pos; 2]>>,
    /// The prefix lengths held (bit `len`), so a later rule probes only those instead of all
    /// 33 (129) supernets of its network.
    lens_v4: u64,
    lens_v6: [u128; 2],
}

/// An IPv4 network as a map key: the prefix length above the network's address.
fn v4_key(addr: std::net::Ipv4Addr, len: u8) -> u64 {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u64::from(len) << 32 | u64::from(u32::from(addr) & mask)
}

fn v6_key(addr: std::net::Ipv6Addr, len: u8) -> (u128, u8) {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    (u128::from(addr) & mask, len)
}

/// Ports: a rule holding few ports is filed under each; wider ones are always candidates.
#[derive(Default)]
struct PortIndex {
    any: Vec<Pos>,
    wide: Vec<Pos>,
    by_port: HashMap<u16, Vec<Pos>>,
}

#[derive(Default)]
struct LinkIndex {
    any: Vec<Pos>,
    by_link: HashMap<LinkId, Vec<Pos>>,
}

/// Ports a rule may hold and still be filed under each of them.
const NARROW_PORTS: u32 = 64;

/// One dimension's candidate lists: a few per rule, kept inline (a vector each was the most
/// frequent allocation of the check).
type Lists<'a> = SmallVec<[&'a [Pos]; 4]>;

impl NetIndex {
    fn insert(&mut self, i: Pos, nets: &Option<Nets>) {
        match nets {
            None => self.any.push(i),
            Some(nets) => {
                for n in nets {
                    let list = match n {
                        IpNet::V4(n) => {
                            self.lens_v4 |= 1 << n.prefix_len();
                            self.v4.entry(v4_key(n.addr(), n.prefix_len())).or_default()
                        }
                        IpNet::V6(n) => {
                            let len = n.prefix_len();
                            self.lens_v6[usize::from(len / 128)] |= 1 << (len % 128);
                            self.v6.entry(v6_key(n.addr(), len)).or_default()
                        }
                    };
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
    }

    /// A covering rule has no such match or holds a supernet of the later rule's first network.
    fn candidates(&self, nets: &Option<Nets>) -> Option<Lists<'_>> {
        let mut lists: Lists = smallvec![self.any.as_slice()];
        if let Some(nets) = nets {
            match nets.first()? {
                IpNet::V4(n) => {
                    // The lengths held up to the network's own, shortest first.
                    let mut lens = self.lens_v4 & (u64::MAX >> (63 - n.prefix_len()));
                    while lens != 0 {
                        let len = lens.trailing_zeros() as u8;
                        lens &= lens - 1;
                        if let Some(l) = self.v4.get(&v4_key(n.addr(), len)) {
                            lists.push(l);
                        }
                    }
                }
                IpNet::V6(n) => {
                    let held = |len: &u8| self.lens_v6[usize::from(len / 128)] & (1 << (len % 128)) != 0;
                    for len in (0..=n.prefix_len()).filter(held) {
                        if let Some(l) = self.v6.get(&v6_key(n.addr(), len)) {
                            lists.push(l);
                        }
                    }
                }
            }
        }
        Some(lists)
    }
}

impl PortIndex {
    fn insert(&mut self, i: Pos, ports: Option<&PortSet>) {
        let Some(ports) = ports else {
            self.any.push(i);
            return;
        };
        let width: u32 = ports.0.iter().map(|r| u32::from(r.hi) - u32::from(r.lo) + 1).sum();
        if ports.0.is_empty() || width > NARROW_PORTS {
            self.wide.push(i);
            return;
        }
        for r in &ports.0 {
            for p in r.lo..=r.hi {
                self.by_port.entry(p).or_default().push(i);
            }
        }
    }

    /// A covering rule has no port match, or holds the later rule's first port (a narrow rule
    /// cannot cover a rule without a port match: that needs all 65,535 ports).
    fn candidates(&self, ports: Option<&PortSet>) -> Option<Lists<'_>> {
        let mut lists: Lists = smallvec![self.any.as_slice(), self.wide.as_slice()];
        if let Some(ports) = ports {
            let first = ports.0.first()?.lo;
            if let Some(l) = self.by_port.get(&first) {
                lists.push(l);
            }
        }
        Some(lists)
    }
}

impl LinkIndex {
    fn insert(&mut self, i: Pos, links: &Option<BTreeSet<LinkId>>) {
        match links {
            None => self.any.push(i),
            Some(links) => links.iter().for_each(|l| self.by_link.entry(*l).or_default().push(i)),
        }
    }

    fn candidates(&self, links: &Option<BTreeSet<LinkId>>) -> Option<Lists<'_>> {
        let mut lists: Lists = smallvec![self.any.as_slice()];
        if let Some(links) = links {
            if let Some(l) = self.by_link.get(links.first()?) {
                lists.push(l);
            }
        }
        Some(lists)
    }
}

impl Index {
    fn insert(&mut self, i: Pos, m: &Matches) {
        let sub = match self.by_proto.iter().position(|(p, _)| *p == m.proto) {
            Some(at) => &mut self.by_proto[at].1,
            None => {
                self.by_proto.push((m.proto, ProtoIndex::default()));
                &mut self.by_proto.last_mut().expect("just pushed").1
            }
        };
        sub.insert(i, m);
    }

    /// The position of the first earlier rule that covers `later`: the first among the rules
    /// without a protocol match and those of the later rule's protocol.
    fn first_cover(&self, rules: &[Matches], later: &Matches) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (proto, sub) in &self.by_proto {
            if proto.is_none() || *proto == later.proto {
                if let Some(i) = sub.first_cover(rules, later, best) {
                    best = Some(i);
                }
            }
        }
        best
    }
}

impl ProtoIndex {
    fn insert(&mut self, i: Pos, m: &Matches) {
        self.all.push(i);
        self.from.insert(i, &m.from);
        self.to.insert(i, &m.to);
        self.dport.insert(i, m.dport);
        self.iif.insert(i, &m.iif);
        self.oif.insert(i, &m.oif);
    }

    /// The position of the first rule of this index that covers `later`, if it comes before
    /// `before`.
    fn first_cover(&self, rules: &[Matches], later: &Matches, before: Option<usize>) -> Option<usize> {
        // Every dimension's lists hold every rule that covers `later`: the smallest is scanned,
        // and an empty one means no rule does. Asked one dimension at a time, as most rules
        // stop at an empty one.
        let dims = (0..6).filter_map(|dim| match dim {
            0 => Some(smallvec![self.all.as_slice()]),
            1 => self.from.candidates(&later.from),
            2 => self.to.candidates(&later.to),
            3 => self.dport.candidates(later.dport),
            4 => self.iif.candidates(&later.iif),
            _ => self.oif.candidates(&later.oif),
        });
        let mut smallest: Option<(usize, Lists)> = None;
        for lists in dims {
            let size = lists.iter().map(|l| l.len()).sum();
            if size == 0 {
                return None;
            }
            if smallest.as_ref().is_none_or(|(least, _)| size < *least) {
                smallest = Some((size, lists));
            }
        }
        let (_, lists) = smallest?;
        let mut best: Option<usize> = None;
        for list in lists {
            for &i in list {
                let i = i as usize;
                if best.or(before).is_some_and(|b| i >= b) {
                    break;
                }
                if rules[i].covers(later) {
                    best = Some(i);
                    break;
                }
            }
        }
        best
    }
}

fn keyword(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "allow",
        Verdict::Drop => "deny",
        Verdict::Reject => "reject",
    }
}

fn past(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accepted",
        Verdict::Drop => "dropped",
        Verdict::Reject => "rejected",
    }
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    let hasher = foldhash::fast::RandomState::default();
    for (_, netns) in model.namespaces() {
        let fw = &netns.firewall;
        for dir in [Direction::In, Direction::Out, Direction::Forward] {
            let policy = fw.policy(dir).filter(|p| p.value != Verdict::Accept);
            // The stateful preamble is emitted only in chains that filter (a non-accept policy).
            let reaching = if fw.stateful && policy.is_some() { state_bit(ConnState::New) } else { ALL_STATES };
            // Sized up front: collecting from a filter doubles, and left room for 31,000 unused
            // entries on 100,000 rules.
            let mut rules: Vec<Matches> =
                Vec::with_capacity(fw.rules.iter().filter(|r| r.direction.value == dir).count());
            rules.extend(
                fw.rules
                    .iter()
                    .filter(|r| r.direction.value == dir)
                    .map(|r| Matches::new(fw, r, reaching))
                    .filter(|m| !m.matches_nothing()),
            );
            let mut unions: [Union; 3] = Default::default();
            let mut index = Index::default();
            for (j, later) in rules.iter().enumerate() {
                let pos = j as Pos;
                let before = diags.len();
                let reported = if later.states == 0 {
                    if let Some(policy) = policy {
                        diags.push(stateful_shadow(later.rule, policy.span));
                    }
                    true
                } else if let Some(i) = index.first_cover(&rules, later) {
                    diags.push(shadow(later.rule, rules[i].rule));
                    true
                } else {
                    false
                };
                let mut hash: Option<KeyHash> = None;
                for (dim, union) in DIMS.iter().zip(unions.iter_mut()) {
                    let Some(mine) = dim.ranges(later) else { continue };
                    let key = hash.get_or_insert_with(|| KeyHash::new(&hasher, later)).of(*dim);
                    match union.slot(key, *dim, later, &rules) {
                        Some(slot) => {
                            if !reported {
                                if let Some(earlier) = slot.covering(mine.clone(), *dim, &rules) {
                                    let earlier: Vec<&Rule> = earlier.into_iter().map(|i| rules[i].rule).collect();
                                    diags.push(shadow_by_union(later.rule, &earlier, dim.name()));
                                    // One finding per rule.
                                    break;
                                }
                            }
                            if !later.opaque {
                                slot.add(mine, pos);
                            }
                        }
                        None if !later.opaque => union.add(key, mine, pos),
                        None => {}
                    }
                }
                // A rule of a rule group is written once: say which use of the group this is.
                for d in &mut diags[before..] {
                    later.rule.label_use_sites(d);
                }
                if !later.opaque {
                    index.insert(pos, later);
                }
            }
        }
    }
}

/// A match dimension along which earlier rules can shadow a later one together.
#[derive(Clone, Copy)]
enum Dim {
    From,
    To,
    Port,
}

const DIMS: [Dim; 3] = [Dim::From, Dim::To, Dim::Port];

/// A closed range of one dimension's values; IPv6 addresses are kept apart from IPv4 ones.
type Range = (bool, u128, u128);

/// A rule's ranges in one dimension, made from its values as they are read (collected, they
/// were a tenth of the check).
#[derive(Clone)]
enum Ranges<'m> {
    Nets(std::slice::Iter<'m, IpNet>),
    Ports(std::slice::Iter<'m, PortRange>),
}

impl Iterator for Ranges<'_> {
    type Item = Range;

    fn next(&mut self) -> Option<Range> {
        match self {
            Ranges::Nets(nets) => nets.next().map(net_range),
            Ranges::Ports(ports) => ports.next().map(|r| (false, u128::from(r.lo), u128::from(r.hi))),
        }
    }
}

/// The network's first and last address.
fn net_range(n: &IpNet) -> Range {
    match n {
        IpNet::V4(n) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            let addr = u32::from(n.addr());
            (false, u128::from(addr & !host), u128::from(addr | host))
        }
        IpNet::V6(n) => {
            let host = u128::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            let addr = u128::from(n.addr());
            (true, addr & !host, addr | host)
        }
    }
}

impl Dim {
    fn name(self) -> &'static str {
        match self {
            Dim::From => "from",
            Dim::To => "to",
            Dim::Port => "port",
        }
    }

    /// The rule's values in this dimension; `None` when it does not restrict it (then one
    /// earlier rule covering the rest would cover it alone).
    fn ranges<'m>(self, m: &'m Matches) -> Option<Ranges<'m>> {
        match self {
            Dim::From => m.from.as_ref().map(|v| Ranges::Nets(v.iter())),
            Dim::To => m.to.as_ref().map(|v| Ranges::Nets(v.iter())),
            Dim::Port => m.dport.map(|p| Ranges::Ports(p.0.iter())),
        }
    }

    /// Every other match of the rule, as a key: rules with equal keys differ in this one only.
    fn key<'m>(self, m: &'m Matches) -> Key<'m> {
        Key {
            proto: m.proto,
            dport: if matches!(self, Dim::Port) { None } else { m.dport },
            sport: m.sport,
            from: if matches!(self, Dim::From) { None } else { m.from.as_deref() },
            to: if matches!(self, Dim::To) { None } else { m.to.as_deref() },
            iif: m.iif.as_ref(),
            oif: m.oif.as_ref(),
            states: m.states,
            families: m.families,
            icmp: m.icmp,
        }
    }
}

/// A rule's matches but one, borrowed: compared as they are (a text key formatted with `Debug`
/// for every rule and dimension was a third of `plan`'s time on 10,000 rules).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key<'m> {
    proto: Option<Proto>,
    dport: Option<&'m PortSet>,
    sport: Option<&'m PortSet>,
    from: Option<&'m [IpNet]>,
    to: Option<&'m [IpNet]>,
    iif: Option<&'m BTreeSet<LinkId>>,
    oif: Option<&'m BTreeSet<LinkId>>,
    states: u8,
    families: Families,
    icmp: Option<(&'m [u8], Option<u8>)>,
}

/// The hashes of one rule's keys: each of its matches hashed once, then combined per dimension
/// (hashing each dimension's whole key hashed the matches they share three times, a tenth of
/// the check). Equal keys hash alike; what is written is chosen to be cheap to write (small
/// fields a byte each, a network one word), not to tell every key apart.
struct KeyHash {
    /// The matches every dimension's key holds.
    shared: u64,
    /// Each dimension's own values, rotated apart so that equal values in two dimensions do not
    /// cancel out.
    from: u64,
    to: u64,
    port: u64,
}

impl KeyHash {
    fn new<S: BuildHasher>(hasher: &S, m: &Matches) -> KeyHash {
        let hash = |write: &mut dyn FnMut(&mut S::Hasher)| {
            let mut h = hasher.build_hasher();
            write(&mut h);
            h.finish()
        };
        let shared = hash(&mut |h| {
            h.write_u8(m.proto.map_or(0, |p| p as u8 + 1));
            h.write_u8(m.states);
            m.families.hash(h);
            hash_ports(h, m.sport);
            for links in [&m.iif, &m.oif] {
                match links {
                    None => h.write_u8(0),
                    Some(links) => links.iter().for_each(|l| h.write_u32(l.0)),
                }
            }
            if let Some((types, code)) = m.icmp {
                h.write(types);
                h.write_u16(code.map_or(256, u16::from));
            }
        });
        KeyHash {
            shared,
            from: hash(&mut |h| hash_nets(h, m.from.as_deref())).rotate_left(16),
            to: hash(&mut |h| hash_nets(h, m.to.as_deref())).rotate_left(32),
            port: hash(&mut |h| hash_ports(h, m.dport)).rotate_left(48),
        }
    }

    /// The hash of [`Dim::key`].
    fn of(&self, dim: Dim) -> u64 {
        match dim {
            Dim::From => self.shared ^ self.to ^ self.port,
            Dim::To => self.shared ^ self.from ^ self.port,
            Dim::Port => self.shared ^ self.from ^ self.to,
        }
    }
}

fn hash_ports(h: &mut impl Hasher, ports: Option<&PortSet>) {
    match ports {
        None => h.write_u8(0),
        Some(ports) => ports.0.iter().for_each(|r| h.write_u32(u32::from(r.lo) << 16 | u32::from(r.hi))),
    }
}

fn hash_nets(h: &mut impl Hasher, nets: Option<&[IpNet]>) {
    match nets {
        None => h.write_u8(0),
        Some(nets) => {
            for n in nets {
                match n {
                    IpNet::V4(n) => h.write_u64(v4_key(n.addr(), n.prefix_len())),
                    IpNet::V6(n) => {
                        h.write_u128(u128::from(n.addr()));
                        h.write_u8(n.prefix_len());
                    }
                }
            }
        }
    }
}

/// Per key, the values of the earlier rules merged into disjoint ranges, and the rules they came
/// from. A slot's key is its first rule's [`Dim::key`]: not stored (a key per slot was ~100
/// bytes, and most rules have a slot of their own in some dimension).
#[derive(Default)]
struct Union {
    slots: HashTable<Slot>,
}

struct Slot {
    /// The key's hash ([`KeyHash`]), so that the table grows without hashing keys again.
    hash: u64,
    merged: Merged,
    /// The rules whose values are merged here, in order; most keys hold one.
    rules: SmallVec<[Pos; 2]>,
}

impl Union {
    /// The slot of `later`'s key in `dim`, for [`Slot::covering`] then [`Slot::add`].
    fn slot(&mut self, hash: u64, dim: Dim, later: &Matches, rules: &[Matches]) -> Option<&mut Slot> {
        let key = dim.key(later);
        self.slots.find_mut(hash, |s| s.hash == hash && dim.key(&rules[s.rules[0] as usize]) == key)
    }

    /// A slot for a key not held yet.
    fn add(&mut self, hash: u64, ranges: Ranges, rule: Pos) {
        let mut valid = ranges.filter(|r| r.1 <= r.2);
        if let Some(first) = valid.next() {
            let mut merged = Merged::One(first);
            valid.for_each(|r| merged.insert(r));
            self.slots.insert_unique(hash, Slot { hash, merged, rules: smallvec![rule] }, |s| s.hash);
        }
    }
}

impl Slot {
    fn add(&mut self, ranges: Ranges, rule: Pos) {
        for r in ranges.filter(|r| r.1 <= r.2) {
            self.merged.insert(r);
        }
        self.rules.push(rule);
    }

    /// The earlier rules whose values together cover every range of `mine`, if they do: those
    /// with a range that overlaps one of `mine`.
    fn covering(&self, mine: Ranges, dim: Dim, rules: &[Matches]) -> Option<Vec<usize>> {
        if !mine.clone().all(|m| self.merged.covers(&m)) {
            return None;
        }
        let overlaps = |r: Range| mine.clone().any(|m| m.0 == r.0 && r.1 <= m.2 && m.1 <= r.2);
        Some(
            self.rules
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| dim.ranges(&rules[i]).is_some_and(|mut theirs| theirs.any(overlaps)))
                .collect(),
        )
    }
}

/// One key's merged ranges, disjoint and not touching, in order.
enum Merged {
    /// Most keys hold one rule's single range.
    One(Range),
    /// While ranges arrive in order (addresses written in order, the common case), each is
    /// appended or grows the last one, and a lookup is a binary search (a `BTreeMap` here was
    /// a tenth of the check).
    Sorted(Vec<Range>),
    /// Once a range arrived out of order, a `BTreeMap` keyed by each range's start: inserting
    /// in the middle of a vector moves all after it, quadratic over a key's rules.
    Tree(BTreeMap<(bool, u128), u128>),
}

impl Merged {
    fn insert(&mut self, r: Range) {
        match self {
            Merged::One(first) => {
                let first = *first;
                *self = if (first.0, first.1) <= (r.0, r.1) {
                    Merged::Sorted(vec![first])
                } else {
                    Merged::Tree(BTreeMap::from([((first.0, first.1), first.2)]))
                };
                self.insert(r);
            }
            Merged::Sorted(ranges) => {
                let last = ranges.last_mut().expect("a sorted union holds a range");
                if (last.0, last.1) > (r.0, r.1) {
                    let mut tree = ranges.iter().map(|&(v6, lo, hi)| ((v6, lo), hi)).collect();
                    insert_range(&mut tree, r);
                    *self = Merged::Tree(tree);
                } else if last.0 == r.0 && last.2.saturating_add(1) >= r.1 {
                    last.2 = last.2.max(r.2);
                } else {
                    ranges.push(r);
                }
            }
            Merged::Tree(set) => insert_range(set, r),
        }
    }

    /// The merged range that starts last at or before `m`'s start, if it is of `m`'s family
    /// and reaches `m`'s end.
    fn covers(&self, m: &Range) -> bool {
        match self {
            Merged::One(r) => r.0 == m.0 && r.1 <= m.1 && r.2 >= m.2,
            Merged::Sorted(ranges) => {
                // A later rule's value mostly comes after every earlier one's (addresses
                // written in order): the last range decides, without a search.
                let last = ranges.last().expect("a sorted union holds a range");
                if (last.0, last.1) <= (m.0, m.1) {
                    return last.0 == m.0 && last.2 >= m.2;
                }
                let after = ranges.partition_point(|r| (r.0, r.1) <= (m.0, m.1));
                after > 0 && ranges[after - 1].0 == m.0 && ranges[after - 1].2 >= m.2
            }
            Merged::Tree(set) => {
                set.range(..=(m.0, m.1)).next_back().is_some_and(|(&(v6, _), &hi)| v6 == m.0 && hi >= m.2)
            }
        }
    }
}

/// Adds `r` to a set of disjoint, non-adjacent ranges, merging it with those it overlaps or
/// touches. A range that extends the one before it grows that entry in place.
fn insert_range(set: &mut BTreeMap<(bool, u128), u128>, r: Range) {
    let (v6, lo, hi) = r;
    // After every range there: appended, or the last range grown.
    if let Some(mut last) = set.last_entry() {
        if *last.key() <= (v6, lo) {
            if last.key().0 == v6 && last.get().saturating_add(1) >= lo {
                let grown = (*last.get()).max(hi);
                *last.get_mut() = grown;
            } else {
                set.insert((v6, lo), hi);
            }
            return;
        }
    }
    let mut start = (v6, lo);
    match set.range_mut(..=(v6, lo)).next_back() {
        Some((&(pv6, plo), phi)) if pv6 == v6 && phi.saturating_add(1) >= lo => {
            if *phi >= hi {
                return;
            }
            *phi = hi;
            start = (pv6, plo);
        }
        _ => {
            set.insert(start, hi);
        }
    }
    // Absorb the ranges after it that it now overlaps or touches.
    let mut end = hi;
    while let Some((&(nv6, nlo), &nhi)) =
        set.range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded)).next()
    {
        if nv6 != v6 || nlo > end.saturating_add(1) {
            break;
        }
        end = end.max(nhi);
        set.remove(&(nv6, nlo));
    }
    if end != hi {
        set.insert(start, end);
    }
}

fn shadow_by_union(later: &Rule, earlier: &[&Rule], dim: &str) -> Diagnostic {
    let lv = later.verdict.value;
    let message = format!("this `{} {}` rule can never match", keyword(lv), later.direction.value.keyword());
    let d = if earlier.iter().all(|e| e.verdict.value == lv) {
        Diagnostic::warning(CHECK.code, later.span, message)
            .with_label(format!("redundant: earlier rules together already match every `{dim}` of it"))
            .with_help("remove the redundant rule")
    } else {
        Diagnostic::error(CHECK.code, later.span, message)
            .with_label(format!("earlier rules together match every `{dim}` of it first"))
            .with_help("move this rule above the earlier ones, or narrow them so they leave these packets")
    };
    earlier.iter().take(4).fold(d, |d, e| d.with_secondary(e.span, "matches part of its packets first"))
}

fn shadow(later: &Rule, earlier: &Rule) -> Diagnostic {
    let (lv, ev) = (later.verdict.value, earlier.verdict.value);
    let message = format!("this `{} {}` rule can never match", keyword(lv), later.direction.value.keyword());
    let d = if lv == ev {
        Diagnostic::warning(CHECK.code, later.span, message)
            .with_label(format!("redundant: these packets are already {}", past(ev)))
            .with_help("remove the redundant rule")
    } else {
        Diagnostic::error(CHECK.code, later.span, message)
            .with_label(format!("these packets are {} by the earlier rule, never {}", past(ev), past(lv)))
            .with_help("move this rule above the earlier one, or narrow the earlier rule so it leaves these packets")
    };
    let d = d.with_secondary(earlier.span, "matches every packet of the later rule first");
    match earlier.via.first() {
        Some(at) if later.via.first() != Some(at) => {
            d.with_secondary(*at, "the earlier rule comes from the rule group used here")
        }
        _ => d,
    }
}

/// A rule that matches only established, related or invalid packets behind the stateful preamble.
fn stateful_shadow(rule: &Rule, policy: netcfg_lang::Span) -> Diagnostic {
    let preamble = |s: ConnState| if s == ConnState::Invalid { Verdict::Drop } else { Verdict::Accept };
    let same = rule.state.iter().all(|s| preamble(*s) == rule.verdict.value);
    let message =
        format!("this `{} {}` rule can never match", keyword(rule.verdict.value), rule.direction.value.keyword());
    let d = if same {
        Diagnostic::warning(CHECK.code, rule.span, message)
            .with_label("redundant: the stateful firewall already decides these connection states")
            .with_help("remove the redundant rule")
    } else {
        Diagnostic::error(CHECK.code, rule.span, message)
            .with_label("the stateful firewall decides these connection states before the rules")
            .with_help("add `stateful #false` to the firewall to decide these connection states in the rules")
    };
    d.with_secondary(
        policy,
        "with this policy, established and related packets are accepted and invalid ones dropped first",
    )
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    fn host(firewall: &str) -> String {
        format!(
            r#"
node "h" {{
    forwarding #true
    ethernet "eth0" {{ address "10.0.0.5/24"; }}
    ethernet "eth1" {{ address "192.168.1.5/24"; }}
    route "default" via="10.0.0.1" dev="eth0"
    firewall {{
{firewall}
    }}
}}
"#
        )
    }

    #[test]
    fn a_broad_allow_shadows_a_later_deny() {
        let d = check(&host(
            r#"        policy in="drop"
        allow in proto="tcp" from="10.0.0.0/8"
        deny in proto="tcp" port=22 from="10.1.0.0/16"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule"#,
        ));
        assert_eq!(d[0].message, "this `deny in` rule can never match");
        assert_eq!(d[0].primary.message, "these packets are accepted by the earlier rule, never dropped");
        assert_eq!(d[0].secondary[0].message, "matches every packet of the later rule first");
    }

    #[test]
    fn earlier_rules_together_shadow_a_deny() {
        let d = check(&host(
            r#"        policy in="drop" forward="drop"
        allow in proto="tcp" from="10.0.0.0/9"
        allow in proto="tcp" from="10.128.0.0/9"
        deny in proto="tcp" from="10.0.0.0/8"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        allow in proto="udp" port="1-1000"
        allow in proto="udp" port="1001-2000"
        allow in proto="udp" port="900-1100"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
        allow forward proto="tcp" to="192.168.0.0/25"
        allow forward proto="tcp" to="192.168.0.128/26"
        deny forward proto="tcp" to="192.168.0.0/24"
        allow in proto="tcp" port=22 from="172.16.0.0/13"
        allow in proto="tcp" port=22 from="172.24.0.0/13" iif="eth0"
        deny in proto="tcp" port=22 from="172.16.0.0/12""#,
        ));
        assert_eq!(d[0].secondary.len(), 2, "{:#?}", d[0]);
        assert_eq!(d[0].primary.message, "earlier rules together match every `from` of it first");
    }

    #[test]
    fn limits_and_negations_never_cover_a_later_rule() {
        // A limited rule lets packets beyond its rate through to the next; a negated match
        // leaves out what it names: neither shadows the deny after it, alone or together.
        check(&host(
            r#"        policy in="drop"
        allow in proto="tcp" port=22 limit="10/minute"
        deny in proto="tcp" port=22
        allow in proto="tcp" port=80 limit-per-source="10/second"
        allow in proto="tcp" port=80 conn-limit=5
        reject in proto="tcp" port=80
        allow in proto="udp" from="!10.1.0.0/16"
        deny in proto="udp" from="10.0.0.0/8"
        allow in proto="udp" port="!53" to="192.168.0.0/25"
        allow in proto="udp" port="!53" to="192.168.0.128/25"
        deny in proto="udp" to="192.168.0.0/24"
        allow in iif="!eth0" proto="sctp"
        deny in iif="eth1" proto="sctp"
        allow in proto="igmp" pkttype="multicast"
        deny in proto="igmp"
        allow out proto="tcp" uid=1000
        deny out proto="tcp" port=25"#,
        ));
    }

    #[test]
    fn a_limited_or_negated_later_rule_is_still_found_behind_a_plain_one() {
        check(&host(
            r#"        policy in="drop"
        allow in proto="tcp" port=22
        deny in proto="tcp" port=22 limit="1/second"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        deny in proto="udp"
        allow in proto="udp" from="!10.0.0.0/8" port="!53"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule"#,
        ));
    }

    #[test]
    fn icmp_types_and_families_narrow_what_a_rule_covers() {
        check(&host(
            r#"        policy in="drop"
        allow in proto="icmp" icmp-type="echo-request"
        deny in proto="icmp" icmp-type="echo-request,echo-reply"
        allow in proto="icmp" icmp-type="echo-reply" icmp-code=0
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        allow in proto="icmp" icmp-type="time-exceeded" icmp-code=0
        deny in proto="icmp" icmp-type="time-exceeded" icmp-code=1
        allow in family="ipv6" proto="tcp"
        deny in proto="tcp"
        deny in family="ipv6" proto="tcp" port=22
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        allow in family="ipv4" proto="sctp"
        allow in family="ipv6" proto="sctp"
        deny in proto="sctp" from="192.168.0.0/16"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule"#,
        ));
    }

    #[test]
    fn same_verdict_is_redundant() {
        check(&host(
            r#"        policy in="drop"
        allow in proto="tcp" port="80,443,8000-8100"
        allow in proto="tcp" port="8080" iif="eth0"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
        allow in proto="tcp" port="8080-8200"
        allow in proto="udp" port=53
        allow in proto="udp" port=53
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule"#,
        ));
    }

    #[test]
    fn narrower_or_disjoint_earlier_rules_do_not_shadow() {
        check(&host(
            r#"        policy in="drop" out="accept"
        deny in proto="tcp" port=22 from="10.1.0.0/16"
        allow in proto="tcp" from="10.0.0.0/8"
        allow in proto="tcp" port=22
        allow in proto="udp" port=53 iif="eth0"
        allow in proto="udp" port=53 iif="eth1"
        allow in proto="udp" port=53
        allow in proto="udp" port=53 sport=53
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
        allow in proto="icmp" from="10.0.0.0/8"
        reject in proto="icmp"
        allow in from="10.0.0.0/8"
        allow in from="fd00::/8"
        deny out proto="tcp" port=22 to="10.1.0.0/16"
        allow out proto="tcp" port=22"#,
        ));
    }

    #[test]
    fn directions_are_separate_chains() {
        check(&host(
            r#"        allow out proto="tcp"
        deny in proto="tcp" port=22
        deny forward proto="tcp" port=22"#,
        ));
    }

    #[test]
    fn sets_and_zones_cover_their_members() {
        check(&host(
            r#"        policy in="drop"
        set "admins" "10.1.0.0/16" "10.2.0.0/16"
        set "ops" "10.1.2.0/24"
        zone "lan" "eth0" "eth1"
        allow in proto="tcp" port=22 from="@admins"
        deny in proto="tcp" port=22 from="@ops"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        deny in proto="tcp" port=22 from="10.2.3.0/24"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        deny in proto="tcp" port=22 from="10.0.0.0/8"
        allow in from-zone="lan" proto="udp"
        allow in iif="eth1" proto="udp" port=53
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule"#,
        ));
    }

    #[test]
    fn zone_patterns_cover_their_declared_links_and_stand_for_links_unknown_until_run_time() {
        check(&host(
            r#"        zone "uplinks" "eth*"
        zone "pods" "veth*"
        zone "pods-too" "veth*" "eth1"
        allow in from-zone="uplinks" proto="udp"
        allow in iif="eth1" proto="udp" port=53
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
        allow in iif="eth0" proto="tcp"
        allow in from-zone="uplinks" proto="tcp" port=22
        allow in from-zone="pods-too" proto="sctp"
        allow in from-zone="pods" proto="sctp" port=9
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule"#,
        ));
    }

    #[test]
    fn connection_states() {
        // Without a filtering policy there is no stateful preamble: every state reaches the rules.
        check(&host(
            r#"        allow in state="established,related"
        deny in state="established"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        deny in state="new,invalid"
        deny in
        allow in state="new"
//      ^^^^^^^^^^^^^^^^^^^^ error shadowed-rule"#,
        ));
        // A state listed twice is still one state.
        check(&host(
            r#"        allow in proto="udp" state="related,related"
        deny in proto="udp" state="invalid""#,
        ));
    }

    #[test]
    fn the_stateful_preamble_decides_before_the_rules() {
        let d = check(&host(
            r#"        policy in="drop"
        allow in state="established,related"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning shadowed-rule
        deny in state="established" proto="tcp"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule
        allow in proto="tcp" port=22 state="new"
        deny in proto="tcp" port=22
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule"#,
        ));
        let preamble = d.iter().find(|d| d.severity == netcfg_lang::Severity::Warning).unwrap();
        assert!(preamble.secondary[0].message.starts_with("with this policy"), "{preamble:?}");
        // With `stateful #false` the rules decide every state themselves.
        check(&host(
            r#"        policy in="drop"
        stateful #false
        deny in state="established" proto="tcp"
        allow in state="established,related"
        allow in proto="tcp" port=22 state="new"
        deny in proto="tcp" port=22"#,
        ));
    }

    #[test]
    fn rules_that_match_nothing_shadow_nothing() {
        check(&host(
            r#"        policy in="drop"
        allow in from="10.0.0.0/8" to="fd00::/8"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule
        deny in from="10.1.0.0/16" to="fd00::/16"
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ warning unmatchable-rule"#,
        ));
    }

    /// A union's ranges are every range so far, sorted and merged where they overlap or touch,
    /// whatever order they came in (in order, out of order, in order but one), and it covers what
    /// one of them holds whole.
    #[test]
    fn the_interval_set_merges_like_sorting_all_ranges() {
        use super::{Merged, Range};
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut pick = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut kinds = [0; 3];
        for round in 0..300 {
            let mut ranges: Vec<Range> = (0..1 + pick(40))
                .map(|_| {
                    let lo = u128::from(pick(200));
                    (pick(2) == 0, lo, lo + u128::from(pick(12)))
                })
                .collect();
            if round % 3 != 0 {
                ranges.sort();
            }
            if round % 3 == 2 {
                let (a, b) = (pick(ranges.len() as u64) as usize, pick(ranges.len() as u64) as usize);
                ranges.swap(a, b);
            }
            let mut merged = Merged::One(ranges[0]);
            for (n, r) in ranges.iter().enumerate() {
                if n > 0 {
                    merged.insert(*r);
                }
                let mut all = ranges[..=n].to_vec();
                all.sort();
                let mut naive: Vec<Range> = Vec::new();
                for r in &all {
                    match naive.last_mut() {
                        Some(last) if last.0 == r.0 && r.1 <= last.2 + 1 => last.2 = last.2.max(r.2),
                        _ => naive.push(*r),
                    }
                }
                let got: Vec<Range> = match &merged {
                    Merged::One(r) => vec![*r],
                    Merged::Sorted(ranges) => ranges.clone(),
                    Merged::Tree(set) => set.iter().map(|(&(v6, lo), &hi)| (v6, lo, hi)).collect(),
                };
                assert_eq!(got, naive, "round {round}");
                for _ in 0..8 {
                    let lo = u128::from(pick(220));
                    let m = (pick(2) == 0, lo, lo + u128::from(pick(6)));
                    let held = naive.iter().any(|r| r.0 == m.0 && r.1 <= m.1 && m.2 <= r.2);
                    assert_eq!(merged.covers(&m), held, "round {round}: {m:?} in {naive:?}");
                }
            }
            kinds[match merged {
                Merged::One(_) => 0,
                Merged::Sorted(_) => 1,
                Merged::Tree(_) => 2,
            }] += 1;
        }
        assert!(kinds.iter().all(|k| *k > 0), "every form is tried: {kinds:?}");
    }

    /// The index finds, for every rule, the same first covering rule as comparing all pairs.
    #[test]
    fn the_index_agrees_with_all_pairs_on_generated_rules() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut rules =
            String::from("        set \"s\" \"10.1.0.0/16\" \"10.2.3.0/24\"\n        zone \"z\" \"eth0\" \"eth1\"\n");
        for _ in 0..600 {
            let verdict = ["allow", "deny", "reject"][pick(3)];
            let mut r = format!("        {verdict} in");
            // Broad rules (no protocol, no source) are rare, or they would shadow everything.
            let proto = if pick(20) == 0 { "" } else { ["tcp", "udp"][pick(2)] };
            if !proto.is_empty() {
                r += &format!(" proto=\"{proto}\"");
                let one = format!("{}", 1000 + pick(150));
                let port = ["", "22", "80,443", "1000-1100", "1-65535", "1050", "443", &one, &one][pick(9)];
                if !port.is_empty() {
                    r += &format!(" port=\"{port}\"");
                }
            }
            let host = format!("10.1.{}.{}", pick(4), pick(8));
            let from = if pick(20) == 0 {
                ""
            } else {
                ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", &host, &host, "@s", "192.168.0.0/16"][pick(7)]
            };
            if !from.is_empty() {
                r += &format!(" from=\"{from}\"");
            }
            let to = ["", "", "172.16.0.0/12", "172.16.1.0/24"][pick(4)];
            if !to.is_empty() {
                r += &format!(" to=\"{to}\"");
            }
            r += ["", "", " iif=\"eth0\"", " iif=\"eth1\"", " from-zone=\"z\""][pick(5)];
            r += ["", "", "", " state=\"new\"", " state=\"established,related\""][pick(5)];
            rules += &r;
            rules.push('\n');
        }
        let parsed = netcfg_lang::parse_str("gen.kdl", &host(&rules));
        let fleet = crate::resolve::resolve(&parsed.spec, &mut Vec::new());
        let fw = &fleet.nodes[0].namespaces[0].firewall;
        let matches: Vec<super::Matches> = fw
            .rules
            .iter()
            .map(|r| super::Matches::new(fw, r, super::ALL_STATES))
            .filter(|m| !m.matches_nothing())
            .collect();
        let mut index = super::Index::default();
        let mut found = 0;
        for (j, later) in matches.iter().enumerate() {
            let all_pairs = matches[..j].iter().position(|e| e.covers(later));
            assert_eq!(index.first_cover(&matches, later), all_pairs, "rule {j}");
            found += usize::from(all_pairs.is_some());
            index.insert(j as super::Pos, later);
        }
        assert!(found > 100 && found + 100 < matches.len(), "a test that can tell: {found} of {}", matches.len());
    }

    #[test]
    fn found_among_thousands_of_rules() {
        let mut rules = String::from("        policy in=\"drop\"\n");
        for i in 0..3000u32 {
            rules.push_str(&format!(
                "        allow in proto=\"tcp\" port={} from=\"10.{}.{}.0/24\"\n",
                1000 + i,
                i / 256,
                i % 256
            ));
        }
        rules.push_str("        deny in proto=\"tcp\" port=3999 from=\"10.11.183.7\"\n");
        rules.push_str("//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error shadowed-rule");
        let src = host(&rules);
        let d = check(&src);
        let earlier = src.find(r#"allow in proto="tcp" port=3999 from="10.11.183.0/24""#).unwrap();
        assert_eq!(d[0].secondary[0].span.start as usize, earlier, "shadowed by the rule just above");
    }
}
