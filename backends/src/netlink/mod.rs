//! The netlink backend: make a node's links, addresses, routes, neighbours, sysctls (and, in
//! the same plan, its nft tables) match the spec, per namespace.
//!
//! ```text
//! IR ──desired::desired──▶ Desired ─┐
//!                                   ├─ diff::diff ──▶ Plan (ordered ops, each with inverse,
//! kernel ──live::read──────▶ Live ──┘                 disruption class and spec span)
//!                                                       │
//!                              Session::apply ◀─────────┘  execute; on failure, a signal or
//!                                                          a state that differs after: plan
//!                                                          back to the recorded state
//!                                                          (`rollback`), execute, compare
//! ```
//!
//! [`Session`] is the whole interface a CLI needs: `plan`, `apply` and `verify` are one call
//! each. It owns a current-thread tokio runtime and one rtnetlink connection per namespace.
//! This module never prints; it returns values, [`Diagnostic`]s and errors carrying spans.

pub mod apply;
pub mod conn;
pub mod desired;
pub mod diff;
pub mod journal;
pub mod kinds;
pub mod live;
pub mod namespaces;
pub mod plan;
pub mod rollback;
pub mod state;
pub mod wire;

pub use conn::NlError;
pub use desired::{desired, Desired};
pub use diff::NftState;
pub use live::Live;
pub use namespaces::{Location, NetnsMap};
pub use plan::{Action, Disruption, Op, Plan};
pub use rollback::{Restore, Snapshot};

use crate::codes;
use crate::nftables::changes::TableChange;
use conn::{Conn, Conns};
use netcfg_lang::{Diagnostic, Span};
use serde_json::{json, Value as Json};
use state::{NsName, HOST};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

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
    /// nft refused a namespace's ruleset (or could not run) where netcfg computes its canonical
    /// form: nft's own errors, on the spec text behind the refused lines.
    Rejected(Vec<Diagnostic>),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Kernel(e) => write!(f, "cannot read the live state: {e}"),
            PlanError::Conflicts(d) | PlanError::Rejected(d) => {
                let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
                write!(f, "{}", msgs.join("; "))
            }
        }
    }
}

/// Why an apply failed. The node was rolled back (planned back to the state recorded before
/// the apply, then compared): `rollback` says whether it matches.
#[derive(Debug)]
pub struct ApplyError {
    /// The op that failed, or that was next when a signal arrived; `None` when every op
    /// succeeded but the state read back differs.
    pub failed: Option<Box<Op>>,
    pub message: String,
    pub span: Span,
    /// The signal that interrupted the apply.
    pub signal: Option<i32>,
    /// Restore ops that failed in the last pass (each with the error).
    pub rollback_failures: Vec<(Op, NlError)>,
    /// How the rollback ended.
    pub rollback: Box<Restore>,
    /// Post-apply verification: what still differs.
    pub drift: Vec<Drift>,
}

impl ApplyError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        let message = match (&self.failed, self.signal) {
            (Some(op), Some(sig)) => {
                format!("interrupted by {} before {} `{}`", signal_name(sig), verb_ing(op), op.describe())
            }
            (Some(op), None) => format!("cannot {} `{}`: {}", verb(op), op.describe(), self.message),
            (None, _) => format!("the node differs from the spec after apply: {}", self.message),
        };
        Diagnostic::error(codes::APPLY_FAILED, self.span, message).with_help(self.rollback.describe())
    }
}

/// `SIGINT` for 2, and so on (the signals apply reacts to).
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

fn verb_ing(op: &Op) -> &'static str {
    match op.sign() {
        '+' => "creating",
        '-' => "removing",
        _ => "changing",
    }
}

/// How [`Session::apply_recorded`] runs besides the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyConfig {
    /// Set (to the signal number) by the CLI's handler for SIGINT, SIGTERM and SIGHUP: the
    /// apply stops before its next op and rolls back. Not looked at during the rollback.
    pub interrupt: Option<&'static AtomicI32>,
    /// Test hook (fault injection): op number `k` (from 0) fails as if the kernel refused it.
    pub fail_at: Option<usize>,
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

    /// One change of netcfg's nft table, seen from the spec: what the plan would add is
    /// missing from the node, what it would remove is extra.
    fn from_table_change(ns: &NsName, c: &TableChange, fallback: Span) -> Drift {
        use crate::nftables::changes::ChangeKind;
        let (kind, what) = match (c.kind, &c.old) {
            (ChangeKind::Add, _) => (DriftKind::Missing, format!("missing {}: `{}`", c.object, c.text)),
            (ChangeKind::Remove, _) => (DriftKind::Extra, format!("extra {}: `{}`", c.object, c.text)),
            (ChangeKind::Change, old) => (
                DriftKind::Changed,
                format!("changed {}: `{}` (spec: `{}`)", c.object, old.as_deref().unwrap_or(""), c.text),
            ),
        };
        Drift { ns: ns.clone(), kind, what: format!("nftables: {what}"), span: c.span.unwrap_or(fallback) }
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
    conns: Conns,
    /// Dumps read ahead (`Prefetch`), used by the next `live` read of their namespace.
    prefetched: BTreeMap<NsName, live::Dump>,
}

/// The host namespace's netlink dumps, read on two threads of their own (links on one, the
/// rest on the other) while the spec compiles. `apply` starts them when it holds the node lock
/// and no journal waits: nothing else of netcfg's can change the node before the plan reads
/// them. On a no-op apply of 1000 veth pairs and 10,000 routes the dumps and the compile ran
/// one after the other; overlapped, the wall time fell by about 5% (ARCHITECTURE.md). A read
/// that fails is dropped: the plan reads the namespace itself.
/// The second thread, the links at hand, names the routes too (`Dump::name_routes`).
pub struct Prefetch {
    dump: std::thread::JoinHandle<Option<live::Dump>>,
}

impl Prefetch {
    pub fn host(map: &NetnsMap) -> Prefetch {
        let loc = map.locate(HOST);
        let links = read_on_thread(loc.clone(), |rt, c| rt.block_on(live::dump_links(c)).ok());
        let dump = read_on_thread(loc, move |rt, c| {
            let mut dump = rt.block_on(live::dump_all_but_links(c)).ok()?;
            dump.links = links.join().ok().flatten()?;
            dump.name_routes();
            Some(dump)
        });
        Prefetch { dump }
    }
}

/// Runs `read` on a new thread with a runtime and a connection of its own to `loc`.
fn read_on_thread<T: Send + 'static>(
    loc: Location,
    read: impl FnOnce(&tokio::runtime::Runtime, &mut Conn) -> Option<T> + Send + 'static,
) -> std::thread::JoinHandle<Option<T>> {
    std::thread::spawn(move || {
        if !loc.exists() {
            return None;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().ok()?;
        // `Conn::open` hands its connection to the runtime it runs in.
        let _in = rt.enter();
        let mut conn = Conn::open(&loc).ok()?;
        read(&rt, &mut conn)
    })
}

impl Session {
    /// Hands the session dumps read ahead; its next read of the host namespace uses them.
    pub fn use_prefetch(&mut self, p: Prefetch) {
        if let Ok(Some(dump)) = p.dump.join() {
            self.prefetched.insert(HOST.to_string(), dump);
        }
    }

    pub fn new(map: NetnsMap) -> io::Result<Session> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        Ok(Session { map, rt, conns: Conns::default(), prefetched: BTreeMap::new() })
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
        // Bridge VLANs are compared only where a link declares some; elsewhere a snapshot reads
        // them when the plan has ops (`Session::record_vlans`).
        let vlans_of: BTreeSet<NsName> = desired
            .state
            .namespaces
            .iter()
            .filter(|(_, st)| st.links.values().any(|l| l.opts.vlans.is_some()))
            .map(|(ns, _)| ns.clone())
            .collect();
        let Session { map, rt, conns, prefetched } = self;
        // A connection into a namespace that was deleted and made anew would read the old one.
        conns.retain(|ns, c| map.locate(ns) == c.location && c.location.exists());
        let read = rt.block_on(live::read(map, conns, &names, &sysctls, &vlans_of, prefetched));
        // A dump read ahead serves one read only: never a later one, which would see the past.
        prefetched.clear();
        let mut live = read?;
        // WireGuard devices: their configuration over generic netlink, keys by the spec's files.
        for (ns, st) in live.state.namespaces.iter_mut() {
            for (name, l) in st.links.iter_mut() {
                if !matches!(l.kind, state::LinkKind::Wireguard(_)) {
                    continue;
                }
                let want =
                    desired.state.namespaces.get(ns).and_then(|d| d.links.get(name)).and_then(|d| match &d.kind {
                        state::LinkKind::Wireguard(w) => Some(w),
                        _ => None,
                    });
                let read = kinds::wireguard::read(&map.locate(ns), name, want).map_err(NlError::other)?;
                l.kind = state::LinkKind::Wireguard(read);
            }
        }
        let modules = crate::kernel::KernelModules::read();
        live.kernel.features = desired.features.keys().map(|f| (*f, modules.availability(*f))).collect();
        if let Some(path) = &map.modules_load {
            let content = crate::kernel::read_modules_load(path)
                .map_err(|e| NlError::other(format!("cannot read `{}`: {e}", path.display())))?;
            live.kernel.modules_load = Some((path.clone(), content));
        }
        for ns in &names {
            for (name, index) in map.moved_links(&desired.node, ns) {
                if live.index.get(&(ns.clone(), name.clone())) == Some(&index) {
                    live.moved.insert(state::LinkRef { ns: ns.clone(), name });
                }
            }
        }
        Ok((live, orphans))
    }

    /// The live nft table and the canonical form of the planned one, per namespace. A ruleset
    /// nft refuses (or an nft that cannot run) is an error with nft's words on the spec text.
    /// A namespace whose nf_tables generation and script are the ones recorded when its table
    /// was last listed equal to the plan is not listed at all (`nftables::generation`): its
    /// state says so, and a snapshot lists it only when the plan has ops.
    pub fn nft_state(&self, desired: &Desired, live: &Live) -> Result<BTreeMap<NsName, NftState>, PlanError> {
        use crate::nftables::{exec, generation};
        let mut out = BTreeMap::new();
        for (ns, script) in &desired.nft {
            let kernel = |e: exec::ExecError| PlanError::Kernel(NlError::other(e.to_string()));
            let loc = self.map.locate(ns);
            let present = !live.missing.contains(ns);
            let digest = generation::digest(&script.text);
            let before = if present { read_generation(&loc) } else { None };
            if before.is_some_and(|g| generation::unchanged(g, &digest)) {
                out.insert(ns.clone(), NftState { unchanged_by_generation: true, ..NftState::default() });
                continue;
            }
            let live_table = if present { exec::list_table(&loc.nft_target()).map_err(kernel)? } else { None };
            let planned = exec::canonical(script).map_err(|e| {
                PlanError::Rejected(exec::diagnostics(script, &e, desired.span_of(ns, &diff_object_nft())))
            })?;
            // The listing is what a rollback loads back: the snapshot records it whether or not
            // this plan replaces the table (a restore of a namespace may have to put it back).
            let live_text = match &live_table {
                Some(_) => Some(apply::list_table_text(&loc).map_err(PlanError::Kernel)?),
                None => None,
            };
            // Equal at one generation (nothing committed while it was listed): remembered.
            if let Some(g) = before.filter(|g| live_table == planned && read_generation(&loc) == Some(*g)) {
                generation::remember(g, &digest);
            }
            out.insert(ns.clone(), NftState { live: live_table, planned, live_text, unchanged_by_generation: false });
        }
        Ok(out)
    }

    /// For a namespace whose nft table differs: which rules, chains, sets and elements, each
    /// on the spec text that produced it (the Linkerd incident: name the redirect that a racing
    /// tool removed). The planned side is nft's listing of the script loaded in a scratch
    /// namespace, so both sides carry nft's canonicalisation.
    /// `live`: the live table as nft listed it when the plan was made (empty: none; a
    /// namespace that does not exist yet has none).
    fn nft_changes(&self, desired: &Desired, ns: &NsName, live: &str) -> Result<Vec<TableChange>, PlanError> {
        use crate::nftables::{changes, exec};
        let Some(script) = desired.nft.get(ns) else { return Ok(Vec::new()) };
        let planned = exec::canonical_text(script)
            .map_err(|e| PlanError::Rejected(exec::diagnostics(script, &e, desired.span_of(ns, &diff_object_nft()))))?;
        Ok(changes::table_changes(script, &planned, live))
    }

    /// Fills in what each nft op of `plan` changes, rule by rule and element by element (one
    /// scratch load of the planned script per changed namespace). Only for review: apply
    /// replaces the whole table whatever this finds.
    pub fn describe_nft(&self, desired: &Desired, plan: &mut Plan) -> Result<(), PlanError> {
        for op in &mut plan.ops {
            if let Action::Nft { changes, old, .. } = &mut op.action {
                *changes = self.nft_changes(desired, &op.ns, old.as_deref().unwrap_or(""))?;
            }
        }
        Ok(())
    }

    /// The plan that brings the node to `desired`.
    pub fn plan(&mut self, desired: &Desired, opts: Options) -> Result<Plan, PlanError> {
        let (live, orphans, nft, _) = self.record_state(desired, opts)?;
        diff::diff(desired, &live, &orphans, nft.as_ref()).map_err(PlanError::Conflicts)
    }

    /// The plan that brings the node to `desired`, and the state it starts from (what a
    /// rollback restores), from one reading of the node. An empty plan changes nothing, so
    /// its snapshot leaves out the set sysctls only a rollback reads
    /// ([`Session::record_set_sysctls`]).
    pub fn plan_recorded(&mut self, desired: &Desired, opts: Options) -> Result<(Plan, Snapshot), PlanError> {
        let (live, orphans, nft, mut snapshot) = self.record_state(desired, opts)?;
        let plan = diff::diff(desired, &live, &orphans, nft.as_ref()).map_err(PlanError::Conflicts)?;
        snapshot.state = live.state;
        if plan.is_empty() {
            // Nothing to roll back: the same snapshot whether or not the tables were listed.
            snapshot.nft.clear();
        } else {
            self.record_set_sysctls(&mut snapshot)?;
            self.record_vlans(&mut snapshot, &live.index, &live.vlans_unread)?;
            self.record_unlisted_tables(&mut snapshot, nft.as_ref())?;
        }
        Ok((plan, snapshot))
    }

    /// Executes `plan` (made by [`Session::plan`] for `desired`), recording the node's state
    /// first; see [`Session::apply_recorded`].
    pub fn apply(&mut self, desired: &Desired, plan: &Plan, opts: Options) -> Result<(), ApplyError> {
        let snapshot = match self.record(desired, opts) {
            Ok((.., s)) => s,
            Err(e) => {
                return Err(ApplyError {
                    failed: None,
                    message: format!("cannot record the state before the apply: {e}"),
                    span: desired.node_span,
                    signal: None,
                    rollback_failures: Vec::new(),
                    rollback: Box::new(Restore::untouched()),
                    drift: Vec::new(),
                })
            }
        };
        self.apply_recorded(desired, plan, opts, &snapshot, ApplyConfig::default())
    }

    /// Executes `plan`, whose starting state is `snapshot`. On a failed op, a signal (see
    /// [`ApplyConfig`]) or a node that still differs from `desired` afterwards, the node is
    /// restored to `snapshot` (a plan back, executed, then compared) and the error says how
    /// that ended.
    pub fn apply_recorded(
        &mut self,
        desired: &Desired,
        plan: &Plan,
        opts: Options,
        snapshot: &Snapshot,
        config: ApplyConfig,
    ) -> Result<(), ApplyError> {
        let failed = self.execute(&desired.node, &plan.ops, config);
        if let Some((op, err, signal)) = failed {
            let rollback = self.restore(snapshot);
            return Err(ApplyError {
                span: err.span.unwrap_or(op.span),
                message: err.message,
                failed: Some(Box::new(op)),
                signal,
                rollback_failures: rollback.failures.clone(),
                rollback: Box::new(rollback),
                drift: Vec::new(),
            });
        }
        // The read-back dumps the host namespace on two threads, links and the rest, as
        // `apply`'s first read does (on 2,000 links and 10,000 routes the two take about as long).
        if desired.state.namespaces.contains_key(HOST) {
            let p = Prefetch::host(&self.map);
            self.use_prefetch(p);
        }
        let outcome = match self.plan(desired, opts) {
            Ok(p) if p.is_empty() => return Ok(()),
            Ok(p) => (p.ops.iter().map(Drift::from_op).collect::<Vec<_>>(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let rollback = self.restore(snapshot);
        let (drift, err) = outcome;
        Err(ApplyError {
            failed: None,
            message: err.unwrap_or_else(|| drift.iter().map(|d| d.what.clone()).collect::<Vec<_>>().join("; ")),
            span: drift.first().map(|d| d.span).unwrap_or(desired.node_span),
            signal: None,
            rollback_failures: rollback.failures.clone(),
            rollback: Box::new(rollback),
            drift,
        })
    }

    /// Runs ops in order until one fails or a signal arrives; returns the op that failed (or
    /// was next), the error, and the signal.
    fn execute(&mut self, node: &str, ops: &[Op], config: ApplyConfig) -> Option<(Op, NlError, Option<i32>)> {
        let Session { map, rt, conns, .. } = self;
        rt.block_on(async {
            let mut ex = apply::Executor::new(map, node, conns);
            ex.prepare(ops);
            let mut k = 0;
            while k < ops.len() {
                let op = &ops[k];
                if let Some(sig) = config.interrupt.map(|s| s.load(Ordering::SeqCst)).filter(|s| *s != 0) {
                    let e = NlError::other(format!("interrupted by {}", signal_name(sig)));
                    return Some((op.clone(), e, Some(sig)));
                }
                if config.fail_at == Some(k) {
                    return Some((op.clone(), NlError::other(format!("injected fault at op {k}")), None));
                }
                // A run of route ops in one namespace goes pipelined, up to the injected fault.
                let run = route_run(ops, k, config.fail_at);
                if run > 1 {
                    if let Err((i, e)) = ex.execute_routes(&ops[k..k + run]).await {
                        return Some((ops[k + i].clone(), e, None));
                    }
                    k += run;
                    continue;
                }
                if let Err(e) = ex.execute(op).await {
                    return Some((op.clone(), e, None));
                }
                if let Err(e) = ex.after_op(k).await {
                    return Some((op.clone(), e, None));
                }
                k += 1;
            }
            None
        })
    }

    /// Runs every op, going on past failures; returns the failures.
    fn execute_all(&mut self, node: &str, ops: &[Op]) -> Vec<(Op, NlError)> {
        let Session { map, rt, conns, .. } = self;
        rt.block_on(async {
            let mut ex = apply::Executor::new(map, node, conns);
            let mut failures = Vec::new();
            for op in ops {
                if let Err(e) = ex.execute(op).await {
                    failures.push((op.clone(), e));
                }
            }
            failures
        })
    }

    /// The differences between the node and the spec (empty: the node is as specified). A
    /// ruleset nft refuses is an error ([`PlanError::Rejected`]), never "no table".
    pub fn verify(&mut self, desired: &Desired, opts: Options) -> Result<Vec<Drift>, PlanError> {
        match self.plan(desired, opts) {
            Ok(p) => {
                let mut out = Vec::new();
                for op in &p.ops {
                    out.push(Drift::from_op(op));
                    // A missing table is one finding, not one per rule.
                    if let Action::Nft { old: Some(live), .. } = &op.action {
                        let changes = self.nft_changes(desired, &op.ns, live)?;
                        out.extend(changes.iter().map(|c| Drift::from_table_change(&op.ns, c, desired.node_span)));
                    }
                }
                Ok(out)
            }
            Err(PlanError::Conflicts(diags)) => Ok(diags
                .into_iter()
                .map(|d| Drift {
                    ns: String::new(),
                    kind: DriftKind::Conflict,
                    what: d.message.clone(),
                    span: d.primary.span,
                })
                .collect()),
            Err(e) => Err(e),
        }
    }
}

/// Route ops sent as one run at most (`Executor::execute_routes`): bounds how long a signal
/// waits.
const ROUTE_RUN: usize = 512;

/// How many ops from `k` on are route ops of one namespace that can go pipelined (stopping
/// before an injected fault, so that a test fault leaves exactly the ops before it done).
fn route_run(ops: &[Op], k: usize, fail_at: Option<usize>) -> usize {
    let is_route = |op: &Op| {
        matches!(op.action, Action::AddRoute { .. } | Action::ReplaceRoute { .. } | Action::DeleteRoute { .. })
    };
    let end = fail_at.filter(|f| *f > k).unwrap_or(usize::MAX).min(k + ROUTE_RUN).min(ops.len());
    ops[k..end].iter().take_while(|op| is_route(op) && op.ns == ops[k].ns).count()
}

/// The nf_tables generation of the namespace at `loc`; `None` when it cannot be read (the
/// table is then listed, as without it).
fn read_generation(loc: &Location) -> Option<crate::nftables::generation::Generation> {
    namespaces::run_at(loc, crate::nftables::generation::read_current).ok()?.ok()?
}

fn diff_object_nft() -> desired::Object {
    desired::Object::Nft
}
