//! What a replacement of netcfg's table changes, rule by rule and element by element, for a
//! reviewer: the live table and the planned one (both as nft lists them, so nft's own
//! canonicalisation — merged intervals, reordered elements, named priorities — is on both
//! sides) compared chain by chain and set by set, each change on the spec span that produced it.
//!
//! It describes the `Nft` op of a plan; it never decides what is applied (the op replaces the
//! whole table in one transaction, whatever this finds).

use super::render::Script;
use super::ruleset::TABLE_NAME;
use netcfg_lang::Span;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Add,
    Remove,
    Change,
}

impl ChangeKind {
    pub fn sign(self) -> char {
        match self {
            ChangeKind::Add => '+',
            ChangeKind::Remove => '-',
            ChangeKind::Change => '~',
        }
    }
}

/// One change to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChange {
    pub kind: ChangeKind,
    /// What changes, in words: ``rule in chain `filter-input` ``, ``element of map `svc4` ``.
    pub object: String,
    /// The new text (the removed one for a removal).
    pub text: String,
    /// The text before, for a change.
    pub old: Option<String>,
    /// The spec text behind the planned side; `None` for what only the live table has.
    pub span: Option<Span>,
}

impl TableChange {
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "change": self.kind.sign().to_string(),
            "object": self.object,
            "text": self.text,
        });
        if let Some(old) = &self.old {
            v["old"] = json!(old);
        }
        if let Some(s) = self.span {
            v["span"] = json!({"file": s.file.0, "start": s.start, "end": s.end});
        }
        v
    }
}

/// A set or map as listed: its definition lines and its elements.
#[derive(Default, PartialEq, Eq)]
struct SetListing {
    map: bool,
    definition: Vec<String>,
    elements: Vec<String>,
}

/// A chain as listed: its base-chain line (if any) and its rules.
#[derive(Default)]
struct ChainListing {
    base: Option<String>,
    rules: Vec<String>,
}

#[derive(Default)]
struct Listing {
    chains: BTreeMap<String, ChainListing>,
    sets: BTreeMap<String, SetListing>,
}

/// Reads nft's text listing of `table inet netcfg` (other tables, if any, are skipped).
fn parse(text: &str) -> Listing {
    enum In {
        Nothing,
        Chain(String),
        Set(String),
    }
    let mut out = Listing::default();
    let mut in_table = false;
    let mut current = In::Nothing;
    // Elements span lines until their closing brace.
    let mut elements: Option<(String, String, i32)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some((set, buf, depth)) = &mut elements {
            buf.push(' ');
            buf.push_str(t);
            *depth += brace_depth(t);
            if *depth <= 0 {
                let s = out.sets.get_mut(set.as_str()).expect("entered");
                s.elements = split_elements(buf);
                elements = None;
            }
            continue;
        }
        if t.is_empty() {
            continue;
        }
        if !line.starts_with('\t') {
            in_table = t == format!("table inet {TABLE_NAME} {{");
            current = In::Nothing;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(name) = t.strip_prefix("chain ").and_then(|r| r.strip_suffix(" {")) {
            out.chains.entry(name.to_string()).or_default();
            current = In::Chain(name.to_string());
        } else if let Some((map, name)) = t
            .strip_prefix("set ")
            .map(|r| (false, r))
            .or_else(|| t.strip_prefix("map ").map(|r| (true, r)))
            .and_then(|(m, r)| r.strip_suffix(" {").map(|n| (m, n)))
        {
            out.sets.entry(name.to_string()).or_default().map = map;
            current = In::Set(name.to_string());
        } else if t == "}" && !line.starts_with("\t\t") {
            current = In::Nothing;
        } else {
            match &current {
                In::Chain(c) => {
                    let chain = out.chains.get_mut(c).expect("entered");
                    if t.starts_with("type ") {
                        chain.base = Some(t.to_string());
                    } else {
                        chain.rules.push(t.to_string());
                    }
                }
                In::Set(s) => {
                    if let Some(rest) = t.strip_prefix("elements = ") {
                        let depth = brace_depth(rest);
                        if depth <= 0 {
                            out.sets.get_mut(s).expect("entered").elements = split_elements(rest);
                        } else {
                            elements = Some((s.clone(), rest.to_string(), depth));
                        }
                    } else {
                        out.sets.get_mut(s).expect("entered").definition.push(t.to_string());
                    }
                }
                In::Nothing => {}
            }
        }
    }
    // The elements of a set that rules fill (`flags dynamic`: per-source limits and counts)
    // are traffic, not configuration.
    for set in out.sets.values_mut() {
        if set.definition.iter().any(|d| d.starts_with("flags ") && d.contains("dynamic")) {
            set.elements.clear();
        }
    }
    out
}

fn brace_depth(s: &str) -> i32 {
    s.chars().map(|c| i32::from(c == '{') - i32::from(c == '}')).sum()
}

/// `{ a, b . c : d, e }` -> `["a", "b . c : d", "e"]` (commas inside nested braces or quotes kept).
fn split_elements(s: &str) -> Vec<String> {
    let inner = s.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(s);
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in inner.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                push_element(&mut out, &cur);
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    push_element(&mut out, &cur);
    out
}

fn push_element(out: &mut Vec<String>, e: &str) {
    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
    if !e.is_empty() {
        out.push(e);
    }
}

/// Spans from netcfg's own script: rules by (chain, index), sets by name, elements by their text.
struct Origins {
    rules: HashMap<String, Vec<Option<Span>>>,
    sets: HashMap<String, Span>,
    elements: HashMap<(String, String), Span>,
}

fn origins(script: &Script) -> Origins {
    let mut o = Origins { rules: HashMap::new(), sets: HashMap::new(), elements: HashMap::new() };
    let (mut chain, mut elements_of): (Option<String>, Option<String>) = (None, None);
    for (i, line) in script.text.lines().enumerate() {
        let span = script.origins.get(i).copied().flatten();
        let t = line.trim();
        if let Some(name) = t.strip_prefix("chain ").and_then(|r| r.strip_suffix(" {")) {
            chain = Some(name.to_string());
            o.rules.entry(name.to_string()).or_default();
        } else if let Some(name) =
            t.strip_prefix("set ").or_else(|| t.strip_prefix("map ")).and_then(|r| r.strip_suffix(" {"))
        {
            if let Some(s) = span {
                o.sets.insert(name.to_string(), s);
            }
        } else if let Some(name) =
            t.strip_prefix(&format!("add element inet {TABLE_NAME} ")).and_then(|r| r.strip_suffix(" {"))
        {
            elements_of = Some(name.to_string());
        } else if t == "}" {
            chain = None;
            elements_of = None;
        } else if let Some(c) = &chain {
            if !t.starts_with("type ") {
                o.rules.get_mut(c).expect("entered").push(span);
            }
        } else if let (Some(set), Some(s)) = (&elements_of, span) {
            let e = t.strip_suffix(',').unwrap_or(t).split_whitespace().collect::<Vec<_>>().join(" ");
            o.elements.insert((set.clone(), e), s);
        }
    }
    o
}

/// Above this many rule pairs a chain is compared as two sets of rules, not aligned in order.
const MAX_ALIGN: usize = 4_000_000;

/// Longest-common-subsequence alignment of two rule lists: for each position of `old` and
/// `new`, whether it is kept. Quadratic, so bounded by [`MAX_ALIGN`].
fn align(old: &[String], new: &[String]) -> (Vec<bool>, Vec<bool>) {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > MAX_ALIGN {
        let (o, w): (HashSet<&String>, HashSet<&String>) = (old.iter().collect(), new.iter().collect());
        return (old.iter().map(|r| w.contains(r)).collect(), new.iter().map(|r| o.contains(r)).collect());
    }
    let mut l = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[at(i, j)] = if old[i] == new[j] { l[at(i + 1, j + 1)] + 1 } else { l[at(i + 1, j)].max(l[at(i, j + 1)]) };
        }
    }
    let (mut ko, mut kn) = (vec![false; n], vec![false; m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if old[i] == new[j] {
            ko[i] = true;
            kn[j] = true;
            i += 1;
            j += 1;
        } else if l[at(i + 1, j)] >= l[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (ko, kn)
}

/// The changes that replacing the `live` listing by the `planned` one makes (both nft's text
/// listings; `live` empty when the namespace has no table), spans from netcfg's `script`.
pub fn table_changes(script: &Script, planned: &str, live: &str) -> Vec<TableChange> {
    let (p, l) = (parse(planned), parse(live));
    let o = origins(script);
    let mut out = Vec::new();
    let mut names: Vec<&String> = p.chains.keys().chain(l.chains.keys()).collect();
    names.sort();
    names.dedup();
    let empty = ChainListing::default();
    for name in names {
        let (new, old) = (p.chains.get(name), l.chains.get(name));
        let rule_spans = o.rules.get(name.as_str());
        let span_of = |i: usize| rule_spans.and_then(|r| r.get(i).copied().flatten());
        let chain_span = rule_spans.and_then(|r| r.iter().flatten().next().copied());
        match (new, old) {
            (Some(_), None) => out.push(change(ChangeKind::Add, format!("chain `{name}`"), name, None, chain_span)),
            (None, Some(_)) => out.push(change(ChangeKind::Remove, format!("chain `{name}`"), name, None, None)),
            (Some(n), Some(o)) if n.base != o.base => out.push(change(
                ChangeKind::Change,
                format!("chain `{name}`"),
                n.base.as_deref().unwrap_or("regular chain"),
                Some(o.base.as_deref().unwrap_or("regular chain")),
                chain_span,
            )),
            _ => {}
        }
        let (new, old) = (new.unwrap_or(&empty), old.unwrap_or(&empty));
        let (keep_old, keep_new) = align(&old.rules, &new.rules);
        let object = format!("rule in chain `{name}`");
        // Walk both lists in order; a run of removed rules followed by added ones at the same
        // place pairs up as changes.
        let (mut i, mut j) = (0, 0);
        while i < old.rules.len() || j < new.rules.len() {
            let mut removed = Vec::new();
            while i < old.rules.len() && !keep_old[i] {
                removed.push(&old.rules[i]);
                i += 1;
            }
            let mut added = Vec::new();
            while j < new.rules.len() && !keep_new[j] {
                added.push(j);
                j += 1;
            }
            let pairs = removed.len().min(added.len());
            for k in 0..pairs {
                let jj = added[k];
                out.push(change(ChangeKind::Change, object.clone(), &new.rules[jj], Some(removed[k]), span_of(jj)));
            }
            for r in &removed[pairs..] {
                out.push(change(ChangeKind::Remove, object.clone(), r, None, None));
            }
            for &jj in &added[pairs..] {
                out.push(change(ChangeKind::Add, object.clone(), &new.rules[jj], None, span_of(jj)));
            }
            if removed.is_empty() && added.is_empty() {
                i += 1;
                j += 1;
            }
        }
    }
    let mut names: Vec<&String> = p.sets.keys().chain(l.sets.keys()).collect();
    names.sort();
    names.dedup();
    let empty = SetListing::default();
    for name in names {
        let (new, old) = (p.sets.get(name), l.sets.get(name));
        let kind_word = |s: &SetListing| if s.map { "map" } else { "set" };
        let word = new.or(old).map_or("set", kind_word);
        let set_span = o.sets.get(name.as_str()).copied();
        let def = |s: &SetListing| s.definition.join("; ");
        match (new, old) {
            (Some(n), None) => out.push(change(ChangeKind::Add, format!("{word} `{name}`"), &def(n), None, set_span)),
            (None, Some(o)) => out.push(change(ChangeKind::Remove, format!("{word} `{name}`"), &def(o), None, None)),
            (Some(n), Some(o)) if n.definition != o.definition || n.map != o.map => {
                out.push(change(ChangeKind::Change, format!("{word} `{name}`"), &def(n), Some(&def(o)), set_span))
            }
            _ => {}
        }
        let (new, old) = (new.unwrap_or(&empty), old.unwrap_or(&empty));
        let object = format!("element of {word} `{name}`");
        let (ns, os): (HashSet<&String>, HashSet<&String>) =
            (new.elements.iter().collect(), old.elements.iter().collect());
        // A map element whose key stays and whose value changes is one change.
        let key = |e: &str| e.split_once(" : ").map(|(k, _)| k.to_string());
        let removed: Vec<&String> = old.elements.iter().filter(|e| !ns.contains(e)).collect();
        let mut removed_by_key: HashMap<String, &String> = HashMap::new();
        for r in &removed {
            if let Some(k) = key(r) {
                removed_by_key.insert(k, r);
            }
        }
        let mut paired = HashSet::new();
        for e in new.elements.iter().filter(|e| !os.contains(e)) {
            let span = o.elements.get(&(name.clone(), e.clone())).copied().or(set_span);
            match key(e).and_then(|k| removed_by_key.get(&k).copied()) {
                Some(was) => {
                    paired.insert(was);
                    out.push(change(ChangeKind::Change, object.clone(), e, Some(was), span));
                }
                None => out.push(change(ChangeKind::Add, object.clone(), e, None, span)),
            }
        }
        for r in removed.into_iter().filter(|r| !paired.contains(r)) {
            out.push(change(ChangeKind::Remove, object.clone(), r, None, None));
        }
    }
    out
}

fn change(kind: ChangeKind, object: String, text: &str, old: Option<&str>, span: Option<Span>) -> TableChange {
    TableChange { kind, object, text: text.to_string(), old: old.map(str::to_string), span }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "table inet netcfg {\n\tcomment \"managed by netcfg\"\n\tset admins {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.0.0.1, 10.0.0.2,\n\t\t\t     10.0.0.3 }\n\t}\n\n\tmap svc4 {\n\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service\n\t\telements = { 10.9.0.1 . 80 : 10.1.0.1 . 8080 }\n\t}\n\n\tchain filter-input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\ttcp dport 22 accept\n\t\ttcp dport 80 accept\n\t}\n}\n";

    #[test]
    fn rules_and_elements_are_compared_one_by_one() {
        let planned = LIVE
            .replace("\t\ttcp dport 22 accept\n", "\t\ttcp dport 2222 accept\n")
            .replace("\t\ttcp dport 80 accept\n", "\t\ttcp dport 80 accept\n\t\ttcp dport 443 accept\n")
            .replace("10.0.0.1, 10.0.0.2,\n\t\t\t     10.0.0.3", "10.0.0.1, 10.0.0.3, 10.0.0.4")
            .replace("10.1.0.1 . 8080", "10.1.0.2 . 8080");
        let c = table_changes(&Script::default(), &planned, LIVE);
        let lines: Vec<String> = c
            .iter()
            .map(|c| match &c.old {
                Some(o) => format!("{} {}: {o} -> {}", c.kind.sign(), c.object, c.text),
                None => format!("{} {}: {}", c.kind.sign(), c.object, c.text),
            })
            .collect();
        assert_eq!(
            lines,
            [
                "~ rule in chain `filter-input`: tcp dport 22 accept -> tcp dport 2222 accept",
                "+ rule in chain `filter-input`: tcp dport 443 accept",
                "+ element of set `admins`: 10.0.0.4",
                "- element of set `admins`: 10.0.0.2",
                "~ element of map `svc4`: 10.9.0.1 . 80 : 10.1.0.1 . 8080 -> 10.9.0.1 . 80 : 10.1.0.2 . 8080",
            ]
        );
        assert!(table_changes(&Script::default(), LIVE, LIVE).is_empty());
    }

    #[test]
    fn a_new_table_is_all_additions_and_an_empty_plan_all_removals() {
        let c = table_changes(&Script::default(), LIVE, "");
        assert!(c.iter().all(|c| c.kind == ChangeKind::Add), "{c:?}");
        assert_eq!(c.iter().filter(|c| c.object == "rule in chain `filter-input`").count(), 3);
        assert_eq!(c.iter().filter(|c| c.object == "element of set `admins`").count(), 3);
        let c = table_changes(&Script::default(), "", LIVE);
        assert!(c.iter().all(|c| c.kind == ChangeKind::Remove), "{c:?}");
    }

    #[test]
    fn elements_split_on_top_level_commas_only() {
        assert_eq!(split_elements("{ a, b . c : d,\n e }"), ["a", "b . c : d", "e"]);
        assert_eq!(split_elements("{ \"x,y\" }"), ["\"x,y\""]);
    }
}
