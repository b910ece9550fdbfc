//! Run-time elements of the spec's dynamic sets across a table replacement. netcfg replaces its
//! table in one transaction (delete, then create), which would empty a ban list at every apply
//! that changes the ruleset. Right before the transaction runs, the live table is listed and
//! each kept set's elements (with what remains of their timeouts) are added to the same
//! transaction, after the new table and its seeds. An element is carried only into a set of
//! the same name and type that the live table also marked as kept; a set whose type changed
//! (its family, or static to dynamic) or that the new spec removed starts without them.
//!
//! Must not: decide what the table holds (the script does), or carry anything but addresses
//! of kept sets (a per-source limit's state starts empty, as spec.md says).

use super::exec::{self, ExecError, Target};
use super::render::{KeptSet, Script};
use super::ruleset::{is_kept_set_comment, Family, ELEMENT_CHUNK, TABLE_NAME};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `script` with the live elements of its kept sets added at the end (the script itself when
/// it keeps no set or there is no live table).
pub fn with_live_elements(target: &Target, script: &Script) -> Result<Script, ExecError> {
    if script.kept.is_empty() || !script.creates_table {
        return Ok(script.clone());
    }
    let Some(live) = exec::list_table_as_is(target)? else { return Ok(script.clone()) };
    Ok(append(script, &live_elements(&live)))
}

/// A live element: its address and the seconds it has left (`None`: no expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveElement {
    pub addr: IpAddr,
    pub expires: Option<u64>,
}

/// The elements of every kept set of a live table's JSON listing, by set name, with the set's
/// element type.
pub fn live_elements(listing: &Json) -> BTreeMap<String, (String, Vec<LiveElement>)> {
    let mut out = BTreeMap::new();
    let objects = listing.get("nftables").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for o in objects {
        let Some(set) = o.get("set") else { continue };
        if !set.get("comment").and_then(Json::as_str).is_some_and(is_kept_set_comment) {
            continue;
        }
        let (Some(name), Some(ty)) = (set.get("name").and_then(Json::as_str), set.get("type").and_then(Json::as_str))
        else {
            continue;
        };
        let mut elements = Vec::new();
        for e in set.get("elem").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            // A plain value, or `{"elem": {"val": …, "timeout": …, "expires": …}}`.
            let (val, expires) = match e {
                Json::String(v) => (v.as_str(), None),
                _ => match e.get("elem") {
                    Some(inner) => (inner.get("val").and_then(Json::as_str).unwrap_or(""), inner.get("expires")),
                    None => continue,
                },
            };
            let Ok(addr) = val.parse::<IpAddr>() else { continue };
            elements.push(LiveElement { addr, expires: expires.and_then(Json::as_u64) });
        }
        out.insert(name.to_string(), (ty.to_string(), elements));
    }
    out
}

/// The script with `add element` statements for the live elements each kept set may take.
pub fn append(script: &Script, live: &BTreeMap<String, (String, Vec<LiveElement>)>) -> Script {
    let mut out = script.clone();
    for kept in &script.kept {
        let Some((ty, elements)) = live.get(kept.name.as_str()) else { continue };
        let want = match kept.family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        if ty != want {
            continue;
        }
        let lines: Vec<String> = elements.iter().filter_map(|e| element(kept, e)).collect();
        for chunk in lines.chunks(ELEMENT_CHUNK) {
            out.text.push_str(&format!("add element inet {TABLE_NAME} {} {{ {} }}\n", kept.name, chunk.join(", ")));
            out.origins.push(None);
        }
    }
    out
}

/// One carried element as nft reads it, or `None` when it does not carry: a seed (the script
/// adds it with a full timeout), another family, or an element about to expire.
fn element(kept: &KeptSet, e: &LiveElement) -> Option<String> {
    if kept.seeds.contains(&e.addr) || Family::of(e.addr) != kept.family {
        return None;
    }
    match (kept.timeout, e.expires) {
        // A shorter new timeout caps what is left.
        (Some(t), Some(left)) => {
            let left = left.min(u64::from(t));
            (left > 0).then(|| format!("{} expires {left}s", e.addr))
        }
        // From a set without timeout into one with: a full timeout from now.
        (Some(_), None) | (None, _) => Some(e.addr.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::ruleset::{Ident, KEPT_SET_COMMENT};

    fn kept(name: &str, family: Family, timeout: Option<u32>, seeds: &[&str]) -> KeptSet {
        KeptSet { name: Ident::new(name), family, timeout, seeds: seeds.iter().map(|s| s.parse().unwrap()).collect() }
    }

    #[test]
    fn live_elements_carry_into_kept_sets_of_their_type_only() {
        let listing: Json = serde_json::json!({"nftables": [
            {"metainfo": {}},
            {"set": {"name": "set-banned-v4", "type": "ipv4_addr", "comment": KEPT_SET_COMMENT, "timeout": 3600,
                "elem": [{"elem": {"val": "10.0.0.1", "expires": 99}}, {"elem": {"val": "10.0.0.2", "expires": 4000}},
                         {"elem": {"val": "10.0.0.3", "expires": 0}}, {"elem": {"val": "10.0.0.9", "expires": 50}}]}},
            {"set": {"name": "set-banned-v6", "type": "ipv6_addr", "comment": KEPT_SET_COMMENT, "elem": ["2001:db8::1"]}},
            {"set": {"name": "rule-3-limit-v4", "type": "ipv4_addr", "elem": [{"elem": {"val": "10.9.9.9", "expires": 5}}]}},
            {"set": {"name": "set-was-v4", "type": "ipv4_addr", "comment": KEPT_SET_COMMENT, "elem": ["10.1.1.1"]}},
        ]});
        let live = live_elements(&listing);
        assert!(!live.contains_key("rule-3-limit-v4"), "per-source limit state is not carried");
        let script = Script {
            text: String::new(),
            origins: Vec::new(),
            creates_table: true,
            kept: vec![
                kept("set-banned-v4", Family::V4, Some(600), &["10.0.0.9"]),
                kept("set-banned-v6", Family::V6, Some(600), &[]),
                // Same name, other type: the family of the set changed.
                kept("set-was-v4", Family::V6, None, &[]),
            ],
        };
        let out = append(&script, &live);
        assert_eq!(
            out.text,
            "add element inet netcfg set-banned-v4 { 10.0.0.1 expires 99s, 10.0.0.2 expires 600s }\n\
             add element inet netcfg set-banned-v6 { 2001:db8::1 }\n"
        );
        assert_eq!(out.origins.len(), 2);
    }
}
