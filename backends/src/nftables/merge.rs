//! Firewall rules as sets: runs of rules that end in the same statements (same verdict, same
//! log) become one rule per match shape, looking the packet up in a (concatenated, interval)
//! set, so a packet is classified by a few lookups instead of walking one rule per spec rule.
//!
//! Why it keeps the semantics (first match wins): inside a run every rule does the same thing to
//! the packets it matches, so which rule of the run matches first cannot change what happens;
//! the rules of a run may be regrouped freely, and a group's rules become one rule matching
//! their union. Rules are never moved across a rule with other statements. A group stays as it
//! was (one rule per spec rule) when it has one rule, and rules with a `comment` stay rules (a
//! comment belongs to one rule). The kernel's interval sets refuse overlapping elements, so a
//! rule whose elements overlap another rule's of the group stays a rule too, after the set.
//!
//! A rule also moves up past runs it cannot share a packet with — every rule there matches
//! another transport protocol (`meta l4proto`) — to join an earlier run that ends the same way:
//! a packet has one protocol, so at most one of two such rules can match it and their order
//! decides nothing. So `allow tcp …` rules interleaved with `deny udp …` rules become one set of
//! allows and one of denies.
//!
//! What it must not do: change the order of rules that end differently and may match the same
//! packet, or drop a rule's
//! provenance (every element carries the span of the rule it came from).

use super::ruleset::*;
use foldhash::{HashMap, HashSet};
use smallvec::SmallVec;

/// A rule's few expressions of one kind, kept inline: a split or a protocol list per rule was
/// several heap blocks per rule of 10,000.
type Few<T> = SmallVec<[T; 4]>;

/// Whether a match on this selector can become one component of a set key.
fn varying(sel: Selector) -> bool {
    matches!(
        sel,
        Selector::IifName
            | Selector::OifName
            | Selector::L4Proto
            | Selector::Saddr(_)
            | Selector::Daddr(_)
            | Selector::Dport
            | Selector::Sport
    )
}

/// How many set-element components a match on `sel` with `value` gives (a port set is several
/// ranges, `{ tcp, udp }` several protocols); `None` when the value cannot be a component.
fn component_count(sel: Selector, value: &Value) -> Option<usize> {
    match (sel, value) {
        (Selector::L4Proto, Value::Proto(_))
        | (Selector::Saddr(_) | Selector::Daddr(_), Value::Net(_))
        | (Selector::IifName | Selector::OifName, Value::If(_)) => Some(1),
        (Selector::L4Proto, Value::Protos(ps)) => Some(ps.len()),
        (Selector::Dport | Selector::Sport, Value::Ports(ps)) => Some(ps.0.len()),
        _ => None,
    }
}

/// The `i`th component of a match [`component_count`] accepted.
fn component(value: &Value, i: usize) -> Value {
    match value {
        Value::Protos(ps) => Value::Proto(ps[i]),
        Value::Ports(ps) => Value::Range(u32::from(ps.0[i].lo), u32::from(ps.0[i].hi)),
        Value::Net(n) => Value::Net(n.trunc()),
        other => other.clone(),
    }
}

/// A component seen as an interval (addresses, ports) or a point (names, protocols).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Span1<'v> {
    Point(&'v Value),
    Interval(u128, u128),
}

fn span1(v: &Value) -> Span1<'_> {
    match v {
        Value::Net(n) => {
            let (lo, hi) = match n {
                ipnet::IpNet::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
                ipnet::IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
            };
            Span1::Interval(lo, hi)
        }
        Value::Range(lo, hi) => Span1::Interval(u128::from(*lo), u128::from(*hi)),
        other => Span1::Point(other),
    }
}

/// How a rule splits into what stays in the merged rule and what becomes a key component: bit
/// `i` is set when `exprs[i]` is a key component; the other matches stay (`fixed`) and the
/// statements (log, verdict) are the `tail`. A mask rather than copies of the expressions:
/// 10,000 rules' copies were most of the memory a plan touched. `rule_ending` writes about
/// 35 expressions at most, so a rule of more than 64 simply stays a rule.
#[derive(Clone, Copy)]
struct Split {
    keys: u64,
}

/// A rule's expressions seen through its split. Rules of a run with the same `fixed`, key
/// selectors and `tail` (the shape) form a group.
#[derive(Clone, Copy)]
struct Shape<'r> {
    exprs: &'r [Expr],
    keys: u64,
}

impl<'r> Shape<'r> {
    fn new(rule: &'r Rule, s: Split) -> Shape<'r> {
        Shape { exprs: &rule.exprs, keys: s.keys }
    }

    fn is_key(&self, i: usize) -> bool {
        self.keys & (1 << i) != 0
    }

    /// The key components' matches, in order.
    fn key_matches(self) -> impl Iterator<Item = (Selector, &'r Value)> {
        // The set bits, lowest first.
        let mut bits = self.keys;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                i
            })
        })
        .map(|i| match &self.exprs[i] {
            Expr::Match { sel, value, .. } => (*sel, value),
            _ => unreachable!("only matches are key components"),
        })
    }

    fn key_selectors(self) -> impl Iterator<Item = Selector> + 'r {
        self.key_matches().map(|(sel, _)| sel)
    }

    fn fixed(self) -> impl Iterator<Item = &'r Expr> {
        self.exprs
            .iter()
            .enumerate()
            .filter(move |(i, e)| !self.is_key(*i) && matches!(e, Expr::Match { .. } | Expr::Lookup { .. }))
            .map(|(_, e)| e)
    }

    fn tail(self) -> impl Iterator<Item = &'r Expr> {
        self.exprs.iter().filter(|e| is_statement(e))
    }
}

impl PartialEq for Shape<'_> {
    fn eq(&self, other: &Self) -> bool {
        // The common case: the same expressions but for the key components' values.
        let alike = self.keys == other.keys
            && self.exprs.len() == other.exprs.len()
            && self.exprs.iter().zip(other.exprs).enumerate().all(|(i, (a, b))| match (a, b) {
                (Expr::Match { sel: x, .. }, Expr::Match { sel: y, .. }) if self.is_key(i) => x == y,
                _ => a == b,
            });
        alike
            || self.fixed().eq(other.fixed())
                && self.key_selectors().eq(other.key_selectors())
                && self.tail().eq(other.tail())
    }
}

impl Eq for Shape<'_> {}

impl std::hash::Hash for Shape<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Each part then its length: equal shapes hash alike, and no part runs into the next.
        let mut n = 0usize;
        self.fixed().for_each(|e| {
            e.hash(h);
            n += 1;
        });
        h.write_usize(n);
        n = 0;
        self.key_selectors().for_each(|s| {
            s.hash(h);
            n += 1;
        });
        h.write_usize(n);
        self.tail().for_each(|e| e.hash(h));
    }
}

/// The statements that end a rule (the run key).
fn is_statement(e: &Expr) -> bool {
    matches!(e, Expr::Log { .. } | Expr::Verdict(_) | Expr::Reject(_))
}

fn split(rule: &Rule) -> Option<Split> {
    if rule.comment.is_some() || rule.exprs.len() > 64 {
        return None;
    }
    let mut keys = 0u64;
    let mut seen: Few<Selector> = Few::new();
    for (i, e) in rule.exprs.iter().enumerate() {
        match e {
            Expr::Match { sel, op: Op::Eq, value }
                if varying(*sel) && !seen.contains(sel) && component_count(*sel, value).is_some() =>
            {
                keys |= 1 << i;
                seen.push(*sel);
            }
            Expr::Match { .. } | Expr::Lookup { .. } => {}
            e if is_statement(e) => {}
            // Anything else (NAT statements, verdict maps) is not a filter rule of the spec.
            _ => return None,
        }
    }
    let ends = matches!(rule.exprs.iter().rev().find(|e| is_statement(e)), Some(Expr::Verdict(_) | Expr::Reject(_)));
    (keys != 0 && ends).then_some(Split { keys })
}

/// Appends the elements of one rule to `out`: the cross product of its components' values,
/// the first component varying slowest.
fn elements(shape: Shape, out: &mut Vec<ElementKey>) {
    // One element (no port set or protocol list) is built in place.
    let mut key = ElementKey::new();
    let single = shape.key_matches().all(|(sel, v)| {
        let one = component_count(sel, v) == Some(1);
        if one {
            key.push(component(v, 0));
        }
        one
    });
    if single {
        out.push(key);
        return;
    }
    let matches: Few<(Selector, &Value)> = shape.key_matches().collect();
    let counts: Few<usize> =
        matches.iter().map(|(sel, v)| component_count(*sel, v).expect("a key component")).collect();
    let total: usize = counts.iter().product();
    out.reserve(total);
    for mut n in 0..total {
        // `n` in mixed radix, the last component the fastest digit.
        let mut digits: Few<usize> = smallvec::smallvec![0; counts.len()];
        for (d, c) in digits.iter_mut().zip(&counts).rev() {
            *d = n % c;
            n /= c;
        }
        out.push(matches.iter().zip(&digits).map(|((_, v), d)| component(v, *d)).collect());
    }
}

/// What becomes of an element of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Kept,
    /// A later exact copy of another element: dropped, the first one stays.
    Duplicate,
    /// It could hold the same packet as another element: its rule stays a rule.
    Overlaps,
}

/// Each element's fate. Elements overlap when they have the same names and protocols and
/// overlapping addresses and ports in every component. Elements are bucketed by their point
/// components, ordered by bucket and by the interval component with the most distinct values,
/// then swept along it, each compared with the elements of its bucket still open there (an
/// exact copy is one of those, so copies are found in the same sweep).
fn fates(keys: &[ElementKey]) -> Vec<Fate> {
    let mut fate = vec![Fate::Kept; keys.len()];
    // Every key of a group has the same selectors, so the same kinds of components.
    let dims = keys.first().map_or(0, |k| k.iter().filter(|v| matches!(span1(v), Span1::Interval(..))).count());
    let mut bucket_of: HashMap<SmallVec<[&Value; 2]>, u32> = HashMap::default();
    let mut buckets: Vec<u32> = Vec::with_capacity(keys.len());
    let mut intervals: Vec<(u128, u128)> = Vec::with_capacity(keys.len() * dims);
    // Consecutive elements mostly share their points (one protocol): looked up once.
    let mut last: Option<(SmallVec<[&Value; 2]>, u32)> = None;
    for key in keys {
        let mut points = SmallVec::new();
        for v in key {
            match span1(v) {
                Span1::Interval(lo, hi) => intervals.push((lo, hi)),
                Span1::Point(p) => points.push(p),
            }
        }
        let bucket = match &last {
            Some((p, b)) if *p == points => *b,
            _ => {
                let next = bucket_of.len() as u32;
                let b = *bucket_of.entry(points.clone()).or_insert(next);
                last = Some((points, b));
                b
            }
        };
        buckets.push(bucket);
    }
    debug_assert_eq!(intervals.len(), keys.len() * dims, "one kind of component per key position");
    let boxes = |i: u32| &intervals[i as usize * dims..(i as usize + 1) * dims];
    // The sweep only decides how fast this goes, not what it finds: the dimension with the
    // most distinct values among a spread sample of the elements.
    let sweep = (0..dims)
        .max_by_key(|d| {
            let stride = (keys.len() / 256).max(1);
            (0..keys.len() as u32).step_by(stride).map(|i| boxes(i)[*d]).collect::<HashSet<_>>().len()
        })
        .unwrap_or(0);
    let swept = |i: u32| if dims == 0 { (0, 0) } else { boxes(i)[sweep] };
    // A stable sort of positions: equal keys stay in order, and the usual input (rules in
    // address order, a few others) is a run or two that it merges in one pass.
    let mut order: Vec<u32> = (0..keys.len() as u32).collect();
    order.sort_by_key(|i| (buckets[*i as usize], swept(*i)));
    let mut open: Vec<u32> = Vec::new();
    let mut bucket = u32::MAX;
    for &i in &order {
        let (b, (lo, _)) = (buckets[i as usize], swept(i));
        if b != bucket {
            open.clear();
            bucket = b;
        }
        open.retain(|o| swept(*o).1 >= lo);
        let this = boxes(i);
        // Copies sort by position, so the first one is open when the others come.
        if open.iter().any(|o| boxes(*o) == this) {
            fate[i as usize] = Fate::Duplicate;
            continue;
        }
        for o in &open {
            if boxes(*o).iter().zip(this).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1) {
                fate[*o as usize] = Fate::Overlaps;
                fate[i as usize] = Fate::Overlaps;
            }
        }
        open.push(i);
    }
    fate
}

/// Rewrites a chain's rules (in order), moving the elements of merged groups into named sets
/// `CHAIN-rules-N` appended to `sets`.
pub fn merge_runs(chain: &str, rules: Vec<Rule>, sets: &mut Vec<Set>) -> Vec<Rule> {
    // Runs hold rule indices: the rules stay where they are until they are emitted.
    let splits: Vec<Option<Split>> = rules.iter().map(split).collect();
    let mut runs: Vec<Run> = Vec::new();
    for (i, (rule, s)) in rules.iter().zip(&splits).enumerate() {
        let protos = protocols(rule);
        let shape = s.map(|s| Shape::new(rule, s));
        // Walk back over runs this rule cannot share a packet with (a packet has one
        // transport protocol), to the nearest run that ends the same way.
        let mut target = None;
        if let Some(shape) = shape {
            for (k, run) in runs.iter().enumerate().rev().take(MAX_HOPS) {
                let ends_alike = run.statements.is_some_and(|j| {
                    let j = j as usize;
                    let other = Shape::new(&rules[j], splits[j].expect("a run's statements come from a split"));
                    other.tail().eq(shape.tail())
                });
                if ends_alike {
                    target = Some(k);
                    break;
                }
                if !disjoint(&protos, &run.protos) {
                    break;
                }
            }
        }
        let k = target.unwrap_or_else(|| {
            runs.push(Run { statements: shape.map(|_| i as u32), protos: Some(Few::new()), rules: Vec::new() });
            runs.len() - 1
        });
        let run = &mut runs[k];
        run.protos = match (run.protos.take(), &protos) {
            (Some(mut a), Some(b)) => {
                // A set of protocols: each once (a run of 10,000 TCP rules holds one).
                for p in b {
                    if !a.contains(p) {
                        a.push(*p);
                    }
                }
                Some(a)
            }
            _ => None,
        };
        run.rules.push(i as u32);
    }
    let mut out = Vec::with_capacity(rules.len().min(runs.len() * 2));
    let mut rules: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    let mut counter = 0usize;
    for run in runs {
        flush(chain, &mut rules, &splits, &run.rules, &mut out, sets, &mut counter);
    }
    out
}

/// How many runs a rule may move up past (bounds the work per rule).
const MAX_HOPS: usize = 16;

/// Consecutive rules that end the same way (the statements of rule `statements`; `None`: a
/// rule that is not split, which nothing joins), and the transport protocols their matches
/// allow (`None`: any).
struct Run {
    statements: Option<u32>,
    protos: Option<Few<netcfg_lang::vocab::Proto>>,
    rules: Vec<u32>,
}

/// The transport protocols a rule can match, from its `meta l4proto` match (`None`: any).
fn protocols(rule: &Rule) -> Option<Few<netcfg_lang::vocab::Proto>> {
    rule.exprs.iter().find_map(|e| match e {
        Expr::Match { sel: Selector::L4Proto, op: Op::Eq, value: Value::Proto(p) } => Some(smallvec::smallvec![*p]),
        Expr::Match { sel: Selector::L4Proto, op: Op::Eq, value: Value::Protos(ps) } => {
            Some(ps.iter().copied().collect())
        }
        _ => None,
    })
}

fn disjoint(a: &Option<Few<netcfg_lang::vocab::Proto>>, b: &Option<Few<netcfg_lang::vocab::Proto>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => !a.iter().any(|p| b.contains(p)),
        _ => false,
    }
}

/// Emits one run (indices into `rules`, which gives up each rule it emits): its groups in the
/// order of their first rule.
fn flush(
    chain: &str,
    rules: &mut [Option<Rule>],
    splits: &[Option<Split>],
    run: &[u32],
    out: &mut Vec<Rule>,
    sets: &mut Vec<Set>,
    n: &mut usize,
) {
    // Each rule's group, by shape; then the run's rules ordered by group (a counting sort,
    // stable: a group's rules keep their order).
    let mut slots = Vec::with_capacity(run.len());
    let mut count = 0;
    {
        let mut by_shape: HashMap<Shape, usize> = HashMap::default();
        // Consecutive rules mostly have one shape: compared with the last, not hashed.
        let mut last: Option<(Shape, usize)> = None;
        for &i in run {
            let i = i as usize;
            let slot = match (&rules[i], splits[i]) {
                (Some(rule), Some(s)) => {
                    let shape = Shape::new(rule, s);
                    match last {
                        Some((l, slot)) if l == shape => slot,
                        _ => {
                            let slot = *by_shape.entry(shape).or_insert_with(|| {
                                count += 1;
                                count - 1
                            });
                            last = Some((shape, slot));
                            slot
                        }
                    }
                }
                _ => {
                    count += 1;
                    count - 1
                }
            };
            slots.push(slot as u32);
        }
    }
    let mut starts = vec![0u32; count + 1];
    for &slot in &slots {
        starts[slot as usize + 1] += 1;
    }
    for g in 0..count {
        starts[g + 1] += starts[g];
    }
    let mut grouped = vec![0u32; run.len()];
    let mut next = starts.clone();
    for (&i, &slot) in run.iter().zip(&slots) {
        grouped[next[slot as usize] as usize] = i;
        next[slot as usize] += 1;
    }
    drop((slots, next));
    let take = |rules: &mut [Option<Rule>], i: u32| rules[i as usize].take().expect("each rule is emitted once");
    for g in 0..count {
        let group = &grouped[starts[g] as usize..starts[g + 1] as usize];
        if group.len() < 2 {
            out.extend(group.iter().map(|&i| take(rules, i)));
            continue;
        }
        // Rules whose elements overlap another's stay rules of their own, after the set
        // (the kernel refuses overlapping elements; the run's order does not matter).
        let mut keys: Vec<ElementKey> = Vec::with_capacity(group.len());
        let mut owner: Vec<u32> = Vec::with_capacity(group.len());
        for (k, &i) in group.iter().enumerate() {
            let rule = rules[i as usize].as_ref().expect("not emitted yet");
            elements(Shape::new(rule, splits[i as usize].expect("grouped rules split")), &mut keys);
            owner.resize(keys.len(), k as u32);
        }
        let fate = fates(&keys);
        let mut apart = vec![false; group.len()];
        for (f, k) in fate.iter().zip(&owner) {
            if *f == Fate::Overlaps {
                apart[*k as usize] = true;
            }
        }
        let apart_count = apart.iter().filter(|a| **a).count();
        if group.len() - apart_count < 2 {
            out.extend(group.iter().map(|&i| take(rules, i)));
            continue;
        }
        let stays = |k: u32, f: Fate| f == Fate::Kept && !apart[k as usize];
        // Sized first: grown by doubling, 10,000 elements were copied over a dozen times.
        let mut elements = Vec::with_capacity(owner.iter().zip(&fate).filter(|(k, f)| stays(**k, **f)).count());
        elements.extend(keys.into_iter().zip(&owner).zip(&fate).filter(|((_, k), f)| stays(**k, **f)).map(
            |((key, k), _)| Element {
                key,
                data: None,
                origin: rules[group[*k as usize] as usize].as_ref().expect("not emitted yet").origin,
            },
        ));
        let first = rules[group[0] as usize].as_ref().expect("not emitted yet");
        let shape = Shape::new(first, splits[group[0] as usize].expect("grouped rules split"));
        let name = Ident::new(&format!("{chain}-rules-{n}"));
        *n += 1;
        let interval =
            elements.iter().flat_map(|e| e.key.iter()).any(|v| matches!(span1(v), Span1::Interval(lo, hi) if lo < hi));
        let mut exprs: Vec<Expr> = shape.fixed().cloned().collect();
        exprs.push(Expr::Lookup { keys: shape.key_selectors().collect(), set: name.clone(), op: Op::Eq });
        exprs.extend(shape.tail().cloned());
        let origin = first.origin;
        sets.push(Set {
            name,
            key: SetKey::Typeof(shape.key_selectors().map(KeyExpr::Sel).collect()),
            data: None,
            interval,
            dynamic: None,
            elements,
            origin,
        });
        out.push(Rule { exprs, comment: None, origin });
        for (&i, apart) in group.iter().zip(&apart) {
            let rule = take(rules, i);
            if *apart {
                out.push(rule);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcfg_lang::vocab::Proto;

    fn key(net: &str, proto: Proto, ports: (u32, u32)) -> ElementKey {
        smallvec::smallvec![Value::Net(net.parse().unwrap()), Value::Proto(proto), Value::Range(ports.0, ports.1)]
    }

    #[test]
    fn copies_are_dropped_and_overlaps_found_in_one_sweep() {
        let keys = [
            key("10.0.0.1/32", Proto::Tcp, (22, 22)),
            key("10.0.0.0/24", Proto::Tcp, (80, 80)),
            // A copy of the first: dropped, and no overlap with it.
            key("10.0.0.1/32", Proto::Tcp, (22, 22)),
            // Inside the /24 on a port of its range: both overlap.
            key("10.0.0.7/32", Proto::Tcp, (70, 90)),
            // The same address and port in another protocol: apart.
            key("10.0.0.7/32", Proto::Udp, (80, 80)),
            key("10.0.0.1/32", Proto::Tcp, (23, 23)),
        ];
        let fate = fates(&keys);
        use Fate::*;
        assert_eq!(fate, [Kept, Overlaps, Duplicate, Overlaps, Kept, Kept]);
    }

    #[test]
    fn keys_without_intervals_are_copies_or_apart() {
        let names = |n: &str| -> ElementKey { smallvec::smallvec![Value::If(IfName::new(n).unwrap())] };
        let fate = fates(&[names("eth0"), names("eth1"), names("eth0")]);
        assert_eq!(fate, [Fate::Kept, Fate::Kept, Fate::Duplicate]);
    }
}
