//! The offline plan of one node (`netcfg plan` without `--live`): the ops `apply` would run on a
//! freshly booted node, plus the nft transaction of every namespace. It is the live plan's own
//! projection and diff ([`desired`](crate::netlink::desired) then [`diff`](crate::netlink::diff))
//! against a [`fresh_node`], so the offline and the live plan cannot disagree about what a spec
//! means. Pure: no kernel access.

use crate::netlink::diff::{diff, NftState};
use crate::netlink::state::*;
use crate::netlink::{desired, Desired, Live, Plan};
use crate::nftables::render::Script;
use netcfg_compiler::ir::Node;
use netcfg_lang::Diagnostic;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct NodePlan {
    pub node: String,
    /// The ops, in the order `apply` runs them on a fresh node.
    pub plan: Plan,
    /// The nft transaction of each namespace (`@host` first), for review and `--out`.
    pub nft: Vec<(NsName, Script)>,
}

pub fn plan_node(node: &Node, diags: &mut Vec<Diagnostic>) -> NodePlan {
    let desired = desired(node, diags);
    let live = fresh_node(&desired);
    let nft: BTreeMap<NsName, NftState> =
        desired.nft.iter().map(|(ns, script)| (ns.clone(), NftState::offline(script))).collect();
    let plan = diff(&desired, &live, &[], Some(&nft)).unwrap_or_else(|errors| {
        diags.extend(errors);
        Plan { node: desired.node.clone(), ops: Vec::new() }
    });
    let mut scripts: Vec<(NsName, Script)> = desired.nft.into_iter().collect();
    scripts.sort_by_key(|(ns, _)| ns != HOST);
    NodePlan { node: desired.node, plan, nft: scripts }
}

/// A node as it boots, before netcfg: the host namespace with `lo` up and every NIC the spec
/// names (in the host namespace, unconfigured: no addresses, down, attributes unknown); none of
/// the spec's other namespaces. NICs a `netns` declares are therefore moved into it, as on a
/// host whose ENIs or SR-IOV functions are handed to namespaces.
pub fn fresh_node(desired: &Desired) -> Live {
    let mut host = NsState::default();
    host.links.insert("lo".into(), Link::loopback(true));
    for st in desired.state.namespaces.values() {
        for (name, l) in &st.links {
            if matches!(l.kind, LinkKind::Existing { .. }) {
                host.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Existing { kind: None },
                        mtu: None,
                        mac: None,
                        master: None,
                        hairpin: None,
                        nf_call_iptables: None,
                        up: false,
                        addrgen_none: None,
                        opts: Default::default(),
                        owned: false,
                        ident: l.ident,
                    },
                );
            }
        }
    }
    let mut live = Live::default();
    live.state.namespaces.insert(HOST.to_string(), host);
    live.missing = desired.state.namespaces.keys().filter(|ns| ns.as_str() != HOST).cloned().collect();
    live
}

impl NodePlan {
    /// The ops as `plan --live` prints them, then each namespace's nft transaction.
    pub fn to_text(&self) -> String {
        let mut s = self.plan.to_text();
        for (ns, script) in &self.nft {
            if !script.creates_table {
                continue;
            }
            let _ = writeln!(s, "\nnftables {ns}:");
            // Pushed, not formatted: a line of 10,000 rules' script each (`writeln!` per line
            // was 3% of `plan`).
            s.reserve(script.text.len() + script.text.len() / 8);
            for line in script.text.lines() {
                s.push_str("  ");
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    pub fn to_json(&self) -> Json {
        let mut doc = self.plan.to_json();
        doc["nftables"] = self.nft.iter().map(|(ns, script)| (ns.clone(), json!(script.text))).collect();
        doc
    }
}
