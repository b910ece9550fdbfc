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

/// The values of one match as set-element components (a port set is several ranges, `{ tcp,
/// udp }` several protocols); `None` when the value cannot be an element component.
fn components(sel: Selector, value: &Value) -> Option<Values> {
    Some(match (sel, value) {
        (Selector::L4Proto, Value::Proto(p)) => smallvec::smallvec![Value::Proto(*p)],
        (Selector::L4Proto, Value::Protos(ps)) => ps.iter().map(|p| Value::Proto(*p)).collect(),
        (Selector::Dport | Selector::Sport, Value::Ports(ps)) => {
            ps.0.iter().map(|r| Value::Range(u32::from(r.lo), u32::from(r.hi))).collect()
        }
        (Selector::Saddr(_) | Selector::Daddr(_), Value::Net(n)) => smallvec::smallvec![Value::Net(n.trunc())],
        (Selector::IifName | Selector::OifName, Value::If(i)) => smallvec::smallvec![Value::If(i.clone())],
        _ => return None,
    })
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

/// A rule split into what stays in the merged rule and what becomes a key component. Rules of a
/// run with the same `fixed`, `keys` and `tail` (the shape) form a group.
struct Split {
    fixed: SmallVec<[Expr; 1]>,
    keys: Few<Selector>,
    /// Per key component, the values of this rule (their cross product are its elements).
    values: SmallVec<[Values; 3]>,
    /// The rule's statements (log, verdict): the run key.
    tail: SmallVec<[Expr; 1]>,
}

/// One key component's values (one, but for port sets and protocol lists).
type Values = SmallVec<[Value; 1]>;

/// A group's key: the kept matches, the key selectors and the statements.
type Shape<'s> = (&'s [Expr], &'s [Selector], &'s [Expr]);

impl Split {
    fn shape(&self) -> Shape<'_> {
        (&self.fixed, &self.keys, &self.tail)
    }
}

fn split(rule: &Rule) -> Option<Split> {
    if rule.comment.is_some() {
        return None;
    }
    let (mut fixed, mut keys, mut values, mut tail) = (SmallVec::new(), Few::new(), SmallVec::new(), SmallVec::new());
    for e in &rule.exprs {
        match e {
            Expr::Match { sel, op: Op::Eq, value } if varying(*sel) && !keys.contains(sel) => {
                match components(*sel, value) {
                    Some(v) => {
                        keys.push(*sel);
                        values.push(v);
                    }
                    None => fixed.push(e.clone()),
                }
            }
            Expr::Match { .. } | Expr::Lookup { .. } => fixed.push(e.clone()),
            Expr::Log { .. } | Expr::Verdict(_) | Expr::Reject(_) => tail.push(e.clone()),
            // Anything else (NAT statements, verdict maps) is not a filter rule of the spec.
            _ => return None,
        }
    }
    if keys.is_empty() || !matches!(tail.last(), Some(Expr::Verdict(_) | Expr::Reject(_))) {
        return None;
    }
    Some(Split { fixed, keys, values, tail })
}

/// The elements of one rule: the cross product of its components' values.
fn elements(values: &[Values], origin: netcfg_lang::Span) -> Vec<Element> {
    let count: usize = values.iter().map(|v| v.len()).product();
    let mut out: Vec<Vec<Value>> = Vec::with_capacity(count);
    out.push(Vec::with_capacity(values.len()));
    for vs in values {
        if let [v] = vs.as_slice() {
            out.iter_mut().for_each(|key| key.push(v.clone()));
            continue;
        }
        out = out
            .iter()
            .flat_map(|prefix| {
                vs.iter().map(move |v| {
                    let mut key = Vec::with_capacity(values.len());
                    key.extend_from_slice(prefix);
                    key.push(v.clone());
                    key
                })
            })
            .collect();
    }
    out.into_iter().map(|key| Element { key, data: None, origin }).collect()
}

/// An element's interval components.
type Box1 = Vec<(u128, u128)>;

/// The elements that could hold the same packet as another element (exact duplicates are
/// removed before): the same names and protocols, and overlapping addresses and ports in every
/// component. Elements are bucketed by their point components, then swept along the interval
/// component with the most distinct values, each compared with the elements still open there.
fn overlapping(elems: &[Element]) -> Vec<usize> {
    let mut buckets: HashMap<Vec<Span1>, Vec<(Box1, usize)>> = HashMap::default();
    for (i, e) in elems.iter().enumerate() {
        let (mut points, mut ivs) = (Vec::new(), Vec::new());
        for v in &e.key {
            match span1(v) {
                Span1::Interval(lo, hi) => ivs.push((lo, hi)),
                p => points.push(p),
            }
        }
        buckets.entry(points).or_default().push((ivs, i));
    }
    let mut out = Vec::new();
    for mut boxes in buckets.into_values() {
        let dims = boxes[0].0.len();
        if dims == 0 {
            if boxes.len() > 1 {
                out.extend(boxes.iter().map(|b| b.1));
            }
            continue;
        }
        let distinct = |d: usize| boxes.iter().map(|b| b.0[d]).collect::<HashSet<_>>().len();
        let sweep = (0..dims).max_by_key(|d| distinct(*d)).expect("dims > 0");
        boxes.sort_unstable_by_key(|b| b.0[sweep]);
        let mut open: Vec<&(Box1, usize)> = Vec::new();
        for b in &boxes {
            open.retain(|o| o.0[sweep].1 >= b.0[sweep].0);
            for o in &open {
                if o.0.iter().zip(b.0.iter()).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1) {
                    out.extend([o.1, b.1]);
                }
            }
            open.push(b);
        }
    }
    out
}

/// Rewrites a chain's rules (in order), moving the elements of merged groups into named sets
/// `CHAIN-rules-N` appended to `sets`.
pub fn merge_runs(chain: &str, rules: Vec<Rule>, sets: &mut Vec<Set>) -> Vec<Rule> {
    let mut runs: Vec<Run> = Vec::new();
    for rule in rules {
        let s = split(&rule);
        let protos = protocols(&rule);
        // Walk back over runs this rule cannot share a packet with (a packet has one
        // transport protocol), to the nearest run that ends the same way.
        let mut target = None;
        if let Some(st) = s.as_ref().map(|s| s.tail.as_slice()) {
            for (k, run) in runs.iter().enumerate().rev().take(MAX_HOPS) {
                if run.statements.as_deref() == Some(st) {
                    target = Some(k);
                    break;
                }
                if !disjoint(&protos, &run.protos) {
                    break;
                }
            }
        }
        let k = target.unwrap_or_else(|| {
            runs.push(Run {
                statements: s.as_ref().map(|s| s.tail.to_vec()),
                protos: Some(Few::new()),
                rules: Vec::new(),
            });
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
        run.rules.push((rule, s));
    }
    let mut out = Vec::new();
    let mut counter = 0usize;
    for run in runs {
        flush(chain, run.rules, &mut out, sets, &mut counter);
    }
    out
}

/// How many runs a rule may move up past (bounds the work per rule).
const MAX_HOPS: usize = 16;

/// Consecutive rules that end the same way (`statements`), and the transport protocols their
/// matches allow (`None`: any).
struct Run {
    statements: Option<Vec<Expr>>,
    protos: Option<Few<netcfg_lang::vocab::Proto>>,
    rules: Vec<(Rule, Option<Split>)>,
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

/// Emits one run: its groups in the order of their first rule.
fn flush(chain: &str, run: Vec<(Rule, Option<Split>)>, out: &mut Vec<Rule>, sets: &mut Vec<Set>, n: &mut usize) {
    // Each rule's group, by shape (borrowed from the splits), then the rules moved into them.
    let mut slots = Vec::with_capacity(run.len());
    let mut count = 0;
    {
        let mut by_shape: HashMap<Shape, usize> = HashMap::default();
        for (_, s) in &run {
            let slot = match s {
                Some(s) => *by_shape.entry(s.shape()).or_insert_with(|| {
                    count += 1;
                    count - 1
                }),
                None => {
                    count += 1;
                    count - 1
                }
            };
            slots.push(slot);
        }
    }
    let mut groups: Vec<Vec<(Rule, Option<Split>)>> = (0..count).map(|_| Vec::new()).collect();
    for ((rule, s), slot) in run.into_iter().zip(slots) {
        groups[slot].push((rule, s));
    }
    for group in groups {
        if group.len() < 2 {
            out.extend(group.into_iter().map(|(r, _)| r));
            continue;
        }
        // Rules whose elements overlap another's stay rules of their own, after the set
        // (the kernel refuses overlapping elements; the run's order does not matter).
        let mut elems: Vec<Element> = Vec::with_capacity(group.len());
        let mut owner: Vec<usize> = Vec::with_capacity(group.len());
        for (k, (rule, s)) in group.iter().enumerate() {
            for e in elements(&s.as_ref().expect("grouped rules split").values, rule.origin) {
                elems.push(e);
                owner.push(k);
            }
        }
        // Exact duplicates: the first one stays.
        let keep: Vec<bool> = {
            let mut seen: HashSet<&[Value]> = HashSet::default();
            seen.reserve(elems.len());
            elems.iter().map(|e| seen.insert(e.key.as_slice())).collect()
        };
        if keep.contains(&false) {
            let mut k = keep.iter();
            owner.retain(|_| *k.next().expect("one flag per element"));
            let mut k = keep.iter();
            elems.retain(|_| *k.next().expect("one flag per element"));
        }
        let apart: HashSet<usize> = overlapping(&elems).into_iter().map(|i| owner[i]).collect();
        if group.len() - apart.len() < 2 {
            out.extend(group.into_iter().map(|(r, _)| r));
            continue;
        }
        let elems: Vec<Element> =
            elems.into_iter().zip(&owner).filter(|(_, k)| !apart.contains(k)).map(|(e, _)| e).collect();
        let (first, s) = &group[0];
        let s = s.as_ref().expect("grouped rules split");
        let name = Ident::new(&format!("{chain}-rules-{n}"));
        *n += 1;
        let interval =
            elems.iter().flat_map(|e| e.key.iter()).any(|v| matches!(span1(v), Span1::Interval(lo, hi) if lo < hi));
        sets.push(Set {
            name: name.clone(),
            key: SetKey::Typeof(s.keys.iter().map(|k| KeyExpr::Sel(*k)).collect()),
            data: None,
            interval,
            dynamic: None,
            elements: elems,
            origin: first.origin,
        });
        let mut exprs = s.fixed.to_vec();
        exprs.push(Expr::Lookup { keys: s.keys.to_vec(), set: name, op: Op::Eq });
        exprs.extend(s.tail.iter().cloned());
        out.push(Rule { exprs, comment: None, origin: first.origin });
        out.extend(group.into_iter().enumerate().filter(|(k, _)| apart.contains(k)).map(|(_, (r, _))| r));
    }
}
