//! The nft table of each namespace as one op: replaced whole when the planned script differs
//! from the live table.

use super::*;

/// The nft state of one namespace: the live table and the canonical form of the planned
/// script (both as nft lists them), `None` when there is no table.
#[derive(Clone, Debug, Default)]
pub struct NftState {
    pub live: Option<Json>,
    pub planned: Option<Json>,
    /// The live table as `nft list` prints it: what a rollback loads back.
    pub live_text: Option<String>,
    /// Not listed: the namespace's nf_tables generation and the script are those recorded when
    /// the table was last listed equal to the plan (`nftables::generation`), so it still is.
    pub unchanged_by_generation: bool,
}

impl NftState {
    /// A namespace without a table, before nft is asked: the planned form is the script
    /// itself (the offline plan has no kernel to canonicalise it), `None` when it makes no table.
    pub fn offline(script: &Script) -> NftState {
        NftState {
            live: None,
            planned: script.creates_table.then(|| Json::String(script.text.clone())),
            live_text: None,
            unchanged_by_generation: false,
        }
    }
}

impl Planner<'_> {
    pub(super) fn plan_nft(&mut self, nft: &BTreeMap<NsName, NftState>) {
        for (ns, script) in &self.d.nft {
            // Borrowed: the offline state holds the whole script, a copy per namespace.
            let absent = NftState::default();
            let state = nft.get(ns).unwrap_or(&absent);
            if state.unchanged_by_generation || state.live == state.planned {
                continue;
            }
            self.emit(
                Phase::Nft,
                Op {
                    ns: ns.clone(),
                    action: Action::Nft { script: script.clone(), old: state.live_text.clone(), changes: Vec::new() },
                    class: Disruption::InPlace,
                    span: self.d.span_of(ns, &Object::Nft),
                },
            );
        }
    }
}
