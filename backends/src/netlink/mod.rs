//! The netlink backend: make a node's links, addresses, routes, neighbours, sysctls (and, in
//! the same plan, its nft tables) match the spec, per namespace.
//!
//! ```text
//! IR ──desired::desired──▶ Desired ─┐
//!                                   ├─ diff::diff ──▶ Plan (ordered ops, each with inverse,
//! kernel ──live::read──────▶ Live ──┘                 disruption class and spec span)
//!                                                       │
//!                              Session::apply ◀─────────┘  execute; on failure run inverses
//!                                                          in reverse; re-read and re-diff
//! ```
//!
//! [`Session`] is the whole interface a CLI needs: `plan`, `apply` and `verify` are one call
//! each. It owns a current-thread tokio runtime and one rtnetlink connection per namespace.
//! This module never prints; it returns values, [`Diagnostic`]s and errors carrying spans.

pub mod apply;
pub mod conn;
pub mod desired;
pub mod diff;
pub mod live;
pub mod namespaces;
pub mod plan;
pub mod state;

pub use conn::NlError;
pub use desired::{desired, Desired};
pub use diff::NftState;
pub use live::Live;
pub use namespaces::{Location, NetnsMap};
pub use plan::{Action, Disruption, Op, Plan};

use crate::codes;
use conn::Conn;
use netcfg_lang::{Diagnostic, Span};
use serde_json::{json, Value as Json};
use state::NsName;
use std::collections::{BTreeMap, HashMap};
use std::io;

/// What a plan covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Include each namespace's nft transaction (needs `nft`).
    pub nft: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { nft: true }
    }
}

/// Why no plan could be made.
#[derive(Debug)]
pub enum PlanError {
    /// The kernel (or nft) could not be read.
    Kernel(NlError),
    /// The node cannot be brought to the spec (a NIC is missing, a foreign link holds a name).
    Conflicts(Vec<Diagnostic>),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Kernel(e) => write!(f, "cannot read the live state: {e}"),
            PlanError::Conflicts(d) => {
                let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
                write!(f, "{}", msgs.join("; "))
            }
        }
    }
}

/// Why an apply failed. The node is back in the state before unless `rollback_failures` is
/// non-empty.
#[derive(Debug)]
pub struct ApplyError {
    /// The op that failed; `None` when every op succeeded but the state read back differs.
    pub failed: Option<Box<Op>>,
    pub message: String,
    pub span: Span,
    /// Inverses that failed during rollback (each with the error).
    pub rollback_failures: Vec<(Op, NlError)>,
    /// Post-apply verification: what still differs.
    pub drift: Vec<Drift>,
}

impl ApplyError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        let message = match &self.failed {
            Some(op) => format!("cannot {} `{}`: {}", verb(op), op.describe(), self.message),
            None => format!("the node differs from the spec after apply: {}", self.message),
        };
        let mut d = Diagnostic::error(codes::APPLY_FAILED, self.span, message);
        d = if self.rollback_failures.is_empty() {
            d.with_help("every change was rolled back; the node is as it was before")
        } else {
            let failed: Vec<String> =
                self.rollback_failures.iter().map(|(op, e)| format!("`{}` ({e})", op.describe())).collect();
            d.with_help(format!("rollback was incomplete, these could not be undone: {}", failed.join(", ")))
        };
        d
    }
}

fn verb(op: &Op) -> &'static str {
    match op.sign() {
        '+' => "create",
        '-' => "remove",
        _ => "change",
    }
}

/// One difference between the node and the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub ns: NsName,
    pub kind: DriftKind,
    pub what: String,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DriftKind {
    /// The spec has it, the node does not.
    Missing,
    /// netcfg's (or on a declared link) and not in the spec.
    Extra,
    /// Present with other attributes.
    Changed,
    /// The node holds something that keeps the spec from being applied.
    Conflict,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Extra => "extra",
            DriftKind::Changed => "changed",
            DriftKind::Conflict => "conflict",
        }
    }
}

impl Drift {
    fn from_op(op: &Op) -> Drift {
        let kind = match op.sign() {
            '+' => DriftKind::Missing,
            '-' => DriftKind::Extra,
            _ => DriftKind::Changed,
        };
        Drift { ns: op.ns.clone(), kind, what: op.describe(), span: op.span }
    }

    pub fn to_json(&self) -> Json {
        json!({
            "namespace": self.ns,
            "kind": self.kind.as_str(),
            "what": self.what,
            "span": {"file": self.span.file.0, "start": self.span.start, "end": self.span.end},
        })
    }
}

/// Text form of a drift list, one line each.
pub fn drift_text(drift: &[Drift]) -> String {
    drift.iter().map(|d| format!("{} {}: {}\n", d.kind.as_str(), d.ns, d.what)).collect()
}

/// A connection to the kernel for one node: the namespace map, a runtime, one rtnetlink
/// connection per namespace (opened on first use).
pub struct Session {
    pub map: NetnsMap,
    rt: tokio::runtime::Runtime,
    conns: HashMap<NsName, Conn>,
}

impl Session {
    pub fn new(map: NetnsMap) -> io::Result<Session> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        Ok(Session { map, rt, conns: HashMap::new() })
    }

    /// The live state of every namespace the spec has and every namespace netcfg created for
    /// this node before; the second value lists the latter that the spec no longer has.
    pub fn live(&mut self, desired: &Desired) -> Result<(Live, Vec<NsName>), NlError> {
        let orphans: Vec<NsName> = self
            .map
            .created_namespaces(&desired.node)
            .into_iter()
            .filter(|n| !desired.state.namespaces.contains_key(n))
            .collect();
        let mut names: Vec<NsName> = desired.state.namespaces.keys().cloned().collect();
        names.extend(orphans.iter().cloned());
        let sysctls: live::SysctlPaths = desired
            .state
            .namespaces
            .iter()
            .map(|(ns, st)| (ns.clone(), st.sysctls.keys().cloned().collect()))
            .collect();
        let Session { map, rt, conns } = self;
        // A connection into a namespace that was deleted and made anew would read the old one.
        conns.retain(|ns, c| map.locate(ns) == c.location && c.location.exists());
        let mut live = rt.block_on(live::read(map, conns, &names, &sysctls))?;
        for ns in &names {
            for (name, index) in map.moved_links(&desired.node, ns) {
                if live.index.get(&(ns.clone(), name.clone())) == Some(&index) {
                    live.moved.insert(state::LinkRef { ns: ns.clone(), name });
                }
            }
        }
        Ok((live, orphans))
    }

    /// The live nft table and the canonical form of the planned one, per namespace.
    pub fn nft_state(&self, desired: &Desired, live: &Live) -> Result<BTreeMap<NsName, NftState>, NlError> {
        use crate::nftables::exec;
        let mut out = BTreeMap::new();
        for (ns, script) in &desired.nft {
            let live_table = if live.missing.contains(ns) {
                None
            } else {
                exec::list_table(&self.map.locate(ns).nft_target()).map_err(|e| NlError::other(e.to_string()))?
            };
            let planned = exec::canonical(script).map_err(|e| NlError::other(e.to_string()))?;
            // The text listing is only needed to restore a table that will be replaced.
            let live_text = match &live_table {
                Some(t) if Some(t) != planned.as_ref() => Some(apply::list_table_text(&self.map.locate(ns))?),
                _ => None,
            };
            out.insert(ns.clone(), NftState { live: live_table, planned, live_text });
        }
        Ok(out)
    }

    /// For a namespace whose nft table differs: which rules and sets, each on the spec text
    /// that produced it (the Linkerd incident: name the redirect that a racing tool removed).
    fn nft_details(&self, desired: &Desired, ns: &NsName) -> Result<Vec<Drift>, NlError> {
        use crate::nftables::{drift, exec};
        let Some(script) = desired.nft.get(ns) else { return Ok(Vec::new()) };
        let err = |e: exec::ExecError| NlError::other(e.to_string());
        let planned = exec::canonical_text(script).map_err(err)?;
        let live = exec::list_table_text(&self.map.locate(ns).nft_target()).map_err(err)?;
        if live.trim().is_empty() {
            return Ok(Vec::new());
        }
        Ok(drift::table_differences(script, &planned, &live)
            .into_iter()
            .map(|d| Drift {
                ns: ns.clone(),
                kind: match d {
                    drift::TableDiff::MissingRule { .. } | drift::TableDiff::MissingChain { .. } => DriftKind::Missing,
                    drift::TableDiff::ExtraRule { .. } | drift::TableDiff::ExtraChain { .. } => DriftKind::Extra,
                    drift::TableDiff::ChangedSet { .. } => DriftKind::Changed,
                },
                what: format!("nftables: {}", d.describe()),
                span: d.origin().unwrap_or(desired.node_span),
            })
            .collect())
    }

    /// The plan that brings the node to `desired`.
    pub fn plan(&mut self, desired: &Desired, opts: Options) -> Result<Plan, PlanError> {
        let (live, orphans) = self.live(desired).map_err(PlanError::Kernel)?;
        let nft = if opts.nft { Some(self.nft_state(desired, &live).map_err(PlanError::Kernel)?) } else { None };
        diff::diff(desired, &live, &orphans, nft.as_ref()).map_err(PlanError::Conflicts)
    }

    /// Executes `plan` (made by [`Session::plan`] for `desired`). On a failed op, runs the
    /// inverses of the ops done, newest first. After success, re-reads the node: if it still
    /// differs from `desired`, rolls back too and reports the difference.
    pub fn apply(&mut self, desired: &Desired, plan: &Plan, opts: Options) -> Result<(), ApplyError> {
        let (failed, done) = self.execute(&desired.node, &plan.ops);
        if let Some((op, err)) = failed {
            let rollback_failures = self.rollback(&desired.node, &done);
            return Err(ApplyError {
                span: op.span,
                message: err.message,
                failed: Some(Box::new(op)),
                rollback_failures,
                drift: Vec::new(),
            });
        }
        let outcome = match self.plan(desired, opts) {
            Ok(p) if p.is_empty() => return Ok(()),
            Ok(p) => (p.ops.iter().map(Drift::from_op).collect::<Vec<_>>(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let rollback_failures = self.rollback(&desired.node, &done);
        let (drift, err) = outcome;
        Err(ApplyError {
            failed: None,
            message: err.unwrap_or_else(|| drift.iter().map(|d| d.what.clone()).collect::<Vec<_>>().join("; ")),
            span: drift.first().map(|d| d.span).unwrap_or(desired.node_span),
            rollback_failures,
            drift,
        })
    }

    /// Runs ops in order until one fails; returns the failure and the ops done.
    fn execute(&mut self, node: &str, ops: &[Op]) -> (Option<(Op, NlError)>, Vec<Op>) {
        let Session { map, rt, conns } = self;
        rt.block_on(async {
            let mut ex = apply::Executor::new(map, node, conns);
            let mut done = Vec::new();
            for op in ops {
                if let Err(e) = ex.execute(op).await {
                    return (Some((op.clone(), e)), done);
                }
                done.push(op.clone());
            }
            (None, done)
        })
    }

    /// Undoes a plan that was applied successfully (`apply --confirm` timing out): the
    /// inverses of its ops, newest first. Returns the inverses that failed.
    pub fn revert(&mut self, desired: &Desired, plan: &Plan) -> Vec<(Op, NlError)> {
        self.rollback(&desired.node, &plan.ops)
    }

    /// Undoes `done`, newest first; returns the inverses that failed (and keeps going).
    fn rollback(&mut self, node: &str, done: &[Op]) -> Vec<(Op, NlError)> {
        let Session { map, rt, conns } = self;
        rt.block_on(async {
            let mut ex = apply::Executor::new(map, node, conns);
            let mut failures = Vec::new();
            for op in done.iter().rev() {
                if let Some(inv) = op.inverse() {
                    if let Err(e) = ex.execute(&inv).await {
                        failures.push((inv, e));
                    }
                }
            }
            failures
        })
    }

    /// The differences between the node and the spec (empty: the node is as specified).
    pub fn verify(&mut self, desired: &Desired, opts: Options) -> Result<Vec<Drift>, NlError> {
        match self.plan(desired, opts) {
            Ok(p) => {
                let mut out = Vec::new();
                for op in &p.ops {
                    out.push(Drift::from_op(op));
                    if matches!(op.action, Action::Nft { .. }) {
                        out.extend(self.nft_details(desired, &op.ns)?);
                    }
                }
                Ok(out)
            }
            Err(PlanError::Kernel(e)) => Err(e),
            Err(PlanError::Conflicts(diags)) => Ok(diags
                .into_iter()
                .map(|d| Drift {
                    ns: String::new(),
                    kind: DriftKind::Conflict,
                    what: d.message.clone(),
                    span: d.primary.span,
                })
                .collect()),
        }
    }
}
