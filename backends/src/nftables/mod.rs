//! The nftables backend: IR -> typed ruleset -> nft script; apply and read back with `nft`
//! inside the target namespace. netcfg owns exactly one table, `inet netcfg`, per namespace.

pub mod carry;
pub mod changes;
pub mod eval;
pub mod exec;
pub mod features;
pub mod generation;
pub mod lower;
pub mod merge;
pub mod probe;
pub mod render;
pub mod ruleset;

use netcfg_compiler::ir::{NetnsId, Node};
use netcfg_lang::Diagnostic;
use render::Script;

/// The nft transaction for one namespace of a node.
#[derive(Clone, Debug)]
pub struct NetnsRuleset {
    pub netns: NetnsId,
    /// `None` for the node's host namespace.
    pub netns_name: Option<String>,
    pub table: ruleset::Table,
    pub script: Script,
}

/// Compiles every namespace of a node, host first, then namespaces in declaration order.
pub fn compile_node(node: &Node, diags: &mut Vec<Diagnostic>) -> Vec<NetnsRuleset> {
    node.namespaces
        .iter()
        .map(|ns| {
            let table = lower::lower_netns(node, ns, diags);
            let header = format!("netcfg ruleset for node {} namespace {}", node.name.value, ns.display_name());
            let script = render::render_transaction(&header, &table);
            NetnsRuleset { netns: ns.id, netns_name: ns.name.as_ref().map(|n| n.value.clone()), table, script }
        })
        .collect()
}
