//! What differs between two listings of netcfg's table (`nft list table inet netcfg`): the
//! rules missing from or added to each chain, and the sets whose contents differ. Used by
//! `verify` to name the rule a racing tool removed, on the spec span that produced it.

use super::render::Script;
use netcfg_lang::Span;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableDiff {
    /// A rule of the plan is not in the live table (`origin`: the spec text behind it).
    MissingRule {
        chain: String,
        rule: String,
        origin: Option<Span>,
    },
    /// The live table has a rule the plan does not.
    ExtraRule {
        chain: String,
        rule: String,
    },
    MissingChain {
        chain: String,
    },
    ExtraChain {
        chain: String,
    },
    /// A set or map whose definition or elements differ.
    ChangedSet {
        set: String,
        origin: Option<Span>,
    },
}

impl TableDiff {
    pub fn describe(&self) -> String {
        match self {
            TableDiff::MissingRule { chain, rule, .. } => format!("missing rule in chain `{chain}`: `{rule}`"),
            TableDiff::ExtraRule { chain, rule } => format!("extra rule in chain `{chain}`: `{rule}`"),
            TableDiff::MissingChain { chain } => format!("missing chain `{chain}`"),
            TableDiff::ExtraChain { chain } => format!("extra chain `{chain}`"),
            TableDiff::ChangedSet { set, .. } => format!("set `{set}` differs"),
        }
    }

    pub fn origin(&self) -> Option<Span> {
        match self {
            TableDiff::MissingRule { origin, .. } | TableDiff::ChangedSet { origin, .. } => *origin,
            _ => None,
        }
    }
}

/// Blocks of a listing: chain name -> rule lines, set/map name -> its text.
#[derive(Default)]
struct Listing {
    chains: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, String>,
}

fn parse(text: &str) -> Listing {
    let mut out = Listing::default();
    let mut current: Option<(bool, String)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("chain ").and_then(|r| r.strip_suffix(" {")) {
            current = Some((true, rest.to_string()));
            out.chains.entry(rest.to_string()).or_default();
        } else if let Some(rest) =
            t.strip_prefix("set ").or_else(|| t.strip_prefix("map ")).and_then(|r| r.strip_suffix(" {"))
        {
            current = Some((false, rest.to_string()));
            out.sets.entry(rest.to_string()).or_default();
        } else if t == "}" && line.starts_with("\t}") && !line.starts_with("\t\t") {
            current = None;
        } else if let Some((is_chain, name)) = &current {
            if *is_chain {
                if !t.is_empty() && !t.starts_with("type ") {
                    out.chains.get_mut(name).expect("entered").push(t.to_string());
                }
            } else {
                let s = out.sets.get_mut(name).expect("entered");
                s.push_str(t);
                s.push(' ');
            }
        }
    }
    out
}

/// The spec span of the `index`-th rule of `chain` in netcfg's own script (nft keeps rule order).
fn rule_origin(script: &Script, chain: &str, index: usize) -> Option<Span> {
    let header = format!("\tchain {chain} {{");
    let start = script.text.lines().position(|l| l == header)?;
    let mut n = 0;
    for (i, line) in script.text.lines().enumerate().skip(start + 1) {
        if line == "\t}" {
            return None;
        }
        if line.trim_start().starts_with("type ") {
            continue;
        }
        if n == index {
            return script.origin_of_line(i + 1);
        }
        n += 1;
    }
    None
}

fn set_origin(script: &Script, set: &str) -> Option<Span> {
    let line = script.text.lines().position(|l| l == format!("\tset {set} {{") || l == format!("\tmap {set} {{"))?;
    script.origin_of_line(line + 1)
}

/// Differences between the planned table (`planned`: nft's listing of the plan loaded into a
/// scratch namespace) and the live one, with spec spans taken from netcfg's `script`.
pub fn table_differences(script: &Script, planned: &str, live: &str) -> Vec<TableDiff> {
    let (p, l) = (parse(planned), parse(live));
    let mut out = Vec::new();
    for (chain, rules) in &p.chains {
        let Some(live_rules) = l.chains.get(chain) else {
            out.push(TableDiff::MissingChain { chain: chain.clone() });
            continue;
        };
        for (i, r) in rules.iter().enumerate() {
            if !live_rules.contains(r) {
                out.push(TableDiff::MissingRule {
                    chain: chain.clone(),
                    rule: r.clone(),
                    origin: rule_origin(script, chain, i),
                });
            }
        }
        for r in live_rules {
            if !rules.contains(r) {
                out.push(TableDiff::ExtraRule { chain: chain.clone(), rule: r.clone() });
            }
        }
    }
    for chain in l.chains.keys().filter(|c| !p.chains.contains_key(*c)) {
        out.push(TableDiff::ExtraChain { chain: chain.clone() });
    }
    for (set, text) in &p.sets {
        if l.sets.get(set) != Some(text) {
            out.push(TableDiff::ChangedSet { set: set.clone(), origin: set_origin(script, set) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANNED: &str = "table inet netcfg {\n\tset admins {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 }\n\t}\n\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tiifname != \"lo\" tcp dport != { 4190, 4191 } redirect to :4143\n\t}\n}\n";

    #[test]
    fn a_flushed_chain_names_the_missing_rule_and_a_hand_added_element_the_set() {
        let live = PLANNED
            .replace("\t\tiifname != \"lo\" tcp dport != { 4190, 4191 } redirect to :4143\n", "")
            .replace("{ 10.0.0.1 }", "{ 10.0.0.1, 10.9.9.9 }");
        let d = table_differences(&Script::default(), PLANNED, &live);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[0].describe(),
            "missing rule in chain `nat-prerouting`: `iifname != \"lo\" tcp dport != { 4190, 4191 } redirect to :4143`"
        );
        assert_eq!(d[1].describe(), "set `admins` differs");
        assert!(table_differences(&Script::default(), PLANNED, PLANNED).is_empty());
    }
}
