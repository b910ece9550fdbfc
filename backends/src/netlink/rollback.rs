//! Rollback as a plan. Before its first change an apply records the state of everything its plan
//! touches (a [`Snapshot`]: every namespace the plan reads, which of them do not exist, and
//! netcfg's nft table in each). Undoing is then planning, with the forward planner and its
//! ordering rules (namespaces first, masters before ports, addresses before the routes that
//! need them, tables last), from the live state to the recorded one, executing that plan, and
//! comparing: the node is "as it was before" only when a fresh restore plan is empty.
//!
//! The recorded state is exact where a spec is partial: every attribute it holds is meant, and
//! on the namespaces it covers, what it lacks goes (routes, policy rules and neighbours of any
//! protocol, addresses on any link, netcfg's links), except what the kernel derives by itself
//! (connected and RA routes, its own rules 0/32766/32767, IPv6 link-local addresses, `lo`'s own
//! addresses while `lo` is up).
//!
//! Sysctls: besides those the spec sets, the snapshot records what a deleted link or namespace
//! would take with it: per link the IPv4 `conf` keys that differ from `conf.default`, per
//! namespace `conf.all`, `ip_forward` and IPv6 forwarding where they differ from a fresh
//! namespace. Not recorded: other sysctls of a namespace the apply deletes, IPv6 per-link keys,
//! and veths whose peer lives in a namespace the plan does not read (netcfg cannot recreate
//! half a pair).

use super::desired::Desired;
use super::diff::{self, NftState};
use super::plan::{Op, Plan};
use super::state::*;
use super::{Drift, NlError, PlanError, Session};
use crate::nftables::exec;
use crate::nftables::render::Script;
use crate::nftables::ruleset::TABLE_NAME;
use netcfg_lang::Span;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// netcfg's nft table of one namespace as it was: what `nft list` printed (loadable back) and
/// its JSON form (to compare with).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedTable {
    pub text: String,
    pub json: Json,
}

/// The state of a node before an apply, as far as its plan reaches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    /// Every namespace read, by spec name, as it was.
    pub state: NodeState,
    /// Namespaces the plan reads that did not exist.
    pub missing: BTreeSet<NsName>,
    /// netcfg's table per namespace (`None`: no table); namespaces not listed were not read.
    pub nft: BTreeMap<NsName, Option<RecordedTable>>,
    /// netcfg's modules-load.d file as it was (`Some(None)`: absent); `None` when the node is not
    /// the machine itself. Modules loaded by the apply stay loaded: unloading one could take
    /// down what others built on it.
    #[serde(default)]
    pub modules_load: Option<Option<String>>,
}

/// Routes the kernel makes and removes by itself: connected routes (`proto kernel`), router
/// advertisements (`proto ra`), redirects. A rollback neither restores nor removes them.
pub fn is_derived_route(r: &Route) -> bool {
    matches!(r.protocol, 1 | 2 | 9)
}

/// Whether the kernel put this address on the link by itself: `lo`'s own ones, and IPv6
/// link-local addresses on links that generate them.
fn is_derived_address(link: &Link, name: &str, net: &ipnet::IpNet) -> bool {
    is_loopback_default(name, net) || (is_link_local_v6(net) && link.addrgen_none != Some(true))
}

impl Snapshot {
    /// The recorded state as a [`Desired`] for the planner, in its exact mode.
    pub fn target(&self) -> Desired {
        let mut state = NodeState::default();
        for (ns, st) in &self.state.namespaces {
            if self.missing.contains(ns) {
                continue;
            }
            let mut out = NsState::default();
            for (name, l) in &st.links {
                let mut l = l.clone();
                // A bridge whose ports all left shows the MAC 00:00:00:00:00:00, which no one can
                // set: its MAC is the kernel's to choose again.
                if l.mac.is_some_and(|m| m.0 == [0; 6]) {
                    l.mac = None;
                }
                // A device netcfg did not create is never recreated: it is configured in place.
                if l.kind.is_created() && !l.owned {
                    l.kind = LinkKind::Existing { kind: Some(l.kind.keyword().to_string()) };
                }
                out.links.insert(name.clone(), l);
            }
            for ((link, net), a) in &st.addresses {
                let derived = st.links.get(link).is_none_or(|l| is_derived_address(l, link, net));
                if !derived {
                    out.addresses.insert((link.clone(), *net), *a);
                }
            }
            out.routes = st.routes.iter().filter(|(_, r)| !is_derived_route(r)).map(|(k, r)| (*k, r.clone())).collect();
            out.rules = st.rules.clone();
            out.neighbors = st.neighbors.clone();
            out.sysctls = st.sysctls.clone();
            state.namespaces.insert(ns.clone(), out);
        }
        let nft = self
            .nft
            .iter()
            .filter(|(ns, _)| state.namespaces.contains_key(*ns))
            .map(|(ns, t)| (ns.clone(), restore_script(t.as_ref())))
            .collect();
        Desired {
            node: self.node.clone(),
            node_span: Span::default(),
            state,
            spans: Default::default(),
            nft,
            exact: true,
            features: BTreeMap::new(),
            modules_load: self.modules_load.clone(),
        }
    }
}

/// The namespace-wide sysctls a rollback records when they differ from a fresh namespace's.
const NAMESPACE_SYSCTLS: &[&str] = &["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"];

/// Readable and writable values of the files in `dir`, by file name (whitespace normalised).
fn read_writable(dir: &std::path::Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let writable = e.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o200 != 0);
        if let (true, Ok(v)) = (writable, std::fs::read_to_string(e.path())) {
            out.insert(e.file_name().to_string_lossy().into_owned(), normalize_sysctl(&v));
        }
    }
    out
}

/// The sysctls of a namespace as the kernel makes it: `conf.all.*` and [`NAMESPACE_SYSCTLS`],
/// read on a thread that entered a new, empty namespace.
fn fresh_namespace_sysctls() -> std::io::Result<BTreeMap<String, String>> {
    std::thread::spawn(|| -> std::io::Result<BTreeMap<String, String>> {
        // SAFETY: unshare affects this thread only, which ends right after reading.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out: BTreeMap<String, String> = read_writable(std::path::Path::new("/proc/sys/net/ipv4/conf/all"))
            .into_iter()
            .map(|(k, v)| (format!("net.ipv4.conf.all.{k}"), v))
            .collect();
        for p in NAMESPACE_SYSCTLS {
            if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/{p}")) {
                out.insert(p.replace('/', "."), normalize_sysctl(&v));
            }
        }
        Ok(out)
    })
    .join()
    .map_err(|_| std::io::Error::other("sysctl thread panicked"))?
}

/// The sysctls someone set in the namespace at `loc`, which a plan may take away with the link
/// or namespace holding them and a rollback must write back: per link, the IPv4 `conf` keys
/// that differ from `conf.default` (what a link made anew gets); namespace-wide, `conf.all`
/// and [`NAMESPACE_SYSCTLS`] where they differ from a fresh namespace (`fresh`). IPv6 per-link
/// keys are not recorded.
fn set_sysctls(
    loc: &super::namespaces::Location,
    fresh: BTreeMap<String, String>,
) -> std::io::Result<BTreeMap<String, String>> {
    super::namespaces::run_at(loc, move || {
        let conf = std::path::Path::new("/proc/sys/net/ipv4/conf");
        let default = read_writable(&conf.join("default"));
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(conf).into_iter().flatten().flatten() {
            let dir = e.file_name().to_string_lossy().into_owned();
            if dir == "default" {
                continue;
            }
            for (k, v) in read_writable(&e.path()) {
                let path = format!("net.ipv4.conf.{dir}.{k}");
                let base = if dir == "all" { fresh.get(&path) } else { default.get(&k) };
                if base != Some(&v) {
                    out.insert(path, v);
                }
            }
        }
        for p in NAMESPACE_SYSCTLS {
            let path = p.replace('/', ".");
            if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/{p}")) {
                let v = normalize_sysctl(&v);
                if fresh.get(&path) != Some(&v) {
                    out.insert(path, v);
                }
            }
        }
        out
    })
}

/// The transaction that puts netcfg's table back as recorded (or removes it).
fn restore_script(t: Option<&RecordedTable>) -> Script {
    let mut text = format!("table inet {TABLE_NAME} {{}}\ndelete table inet {TABLE_NAME}\n");
    if let Some(t) = t {
        text.push_str(&t.text);
    }
    Script { creates_table: t.is_some(), text, origins: Vec::new(), kept: Vec::new() }
}

/// How a restore ended. The node is as recorded only when `remaining` is empty and `compared`.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    /// Ops of the last pass that failed, with the error.
    pub failures: Vec<(Op, NlError)>,
    /// What still differs from the recorded state (a fresh restore plan, as drift).
    pub remaining: Vec<Drift>,
    /// Whether the node could be read back and compared (else `remaining` means nothing).
    pub compared: bool,
    /// Why it could not be compared.
    pub error: Option<String>,
    /// Nothing had been changed, so there was nothing to restore.
    pub untouched: bool,
}

impl Restore {
    /// For an apply that stopped before its first change.
    pub fn untouched() -> Restore {
        Restore { compared: true, untouched: true, ..Restore::default() }
    }

    pub fn is_complete(&self) -> bool {
        self.compared && self.remaining.is_empty()
    }

    /// One sentence for a `help` line or a message.
    pub fn describe(&self) -> String {
        if self.untouched {
            return "nothing was changed".to_string();
        }
        if self.is_complete() {
            return "every change was rolled back: the node was read back and matches the state recorded before \
                    the apply"
                .to_string();
        }
        let mut parts = Vec::new();
        if let Some(e) = &self.error {
            parts.push(format!("the node could not be read back to compare ({e})"));
        }
        if !self.remaining.is_empty() {
            let what: Vec<String> = self.remaining.iter().map(|d| format!("{} {}", d.ns, d.what)).collect();
            parts.push(format!("these still differ from the state before: {}", what.join("; ")));
        }
        if !self.failures.is_empty() {
            let what: Vec<String> = self.failures.iter().map(|(op, e)| format!("`{}` ({e})", op.describe())).collect();
            parts.push(format!("these could not be undone: {}", what.join(", ")));
        }
        format!("rollback was incomplete: {}", parts.join("; "))
    }
}

/// The live view a plan is made from (state, orphans, nft state) and the snapshot of it.
pub(super) type Recorded = (super::Live, Vec<NsName>, Option<BTreeMap<NsName, NftState>>, Snapshot);

impl Session {
    /// Reads the live state and the nft tables `desired`'s plan depends on, returned together
    /// with the live view the plan is made from. The snapshot is complete (with
    /// [`Session::record_set_sysctls`]).
    pub(super) fn record(&mut self, desired: &Desired, opts: super::Options) -> Result<Recorded, PlanError> {
        let (live, orphans, nft, mut snapshot) = self.record_state(desired, opts)?;
        snapshot.state = live.state.clone();
        self.record_set_sysctls(&mut snapshot)?;
        self.record_vlans(&mut snapshot, &live.index, &live.vlans_unread)?;
        self.record_unlisted_tables(&mut snapshot, nft.as_ref())?;
        Ok((live, orphans, nft, snapshot))
    }

    /// [`Session::record`] without the sysctls someone set (`set_sysctls`): what a plan needs.
    /// The snapshot's `state` is left empty for the caller to move the live state into once
    /// the plan is made (a copy of 12,000 objects a plan without ops does not need).
    /// Those are read only for a rollback, so only before a non-empty plan runs: per link they
    /// are some 35 files, 68,000 reads on a node of 2,000 links, most of a no-op apply's time.
    pub(super) fn record_state(&mut self, desired: &Desired, opts: super::Options) -> Result<Recorded, PlanError> {
        let (live, orphans) = self.live(desired).map_err(PlanError::Kernel)?;
        let nft = if opts.nft { Some(self.nft_state(desired, &live)?) } else { None };
        let mut tables = BTreeMap::new();
        if let Some(nft) = &nft {
            for (ns, st) in nft {
                let t = match (&st.live, &st.live_text) {
                    (Some(json), Some(text)) => Some(RecordedTable { text: text.clone(), json: json.clone() }),
                    _ => None,
                };
                tables.insert(ns.clone(), t);
            }
            for ns in &orphans {
                if !live.missing.contains(ns) {
                    let t = self.read_table(ns).map_err(PlanError::Kernel)?;
                    tables.insert(ns.clone(), t);
                }
            }
        }
        let snapshot = Snapshot {
            node: desired.node.clone(),
            state: Default::default(),
            missing: live.missing.clone(),
            nft: tables,
            modules_load: live.kernel.modules_load.as_ref().map(|(_, content)| content.clone()),
        };
        Ok((live, orphans, nft, snapshot))
    }

    /// Adds to `snapshot` the sysctls a deleted link or namespace would take with it (see the
    /// module doc), read from the namespaces it holds.
    pub(super) fn record_set_sysctls(&mut self, snapshot: &mut Snapshot) -> Result<(), PlanError> {
        let fresh = fresh_namespace_sysctls().map_err(|e| PlanError::Kernel(NlError::other(e.to_string())))?;
        for (ns, st) in snapshot.state.namespaces.iter_mut() {
            let set = set_sysctls(&self.map.locate(ns), fresh.clone())
                .map_err(|e| PlanError::Kernel(NlError::other(format!("cannot read the sysctls of {ns}: {e}"))))?;
            for (k, v) in set {
                st.sysctls.entry(k).or_insert(v);
            }
        }
        Ok(())
    }

    /// Adds to `snapshot` the bridge VLANs the plan did not read (`Live::vlans_unread`: no link
    /// of the namespace declares any, so the plan does not compare them), which a rollback
    /// puts back on a port or bridge it recreates: read only when the plan has ops.
    pub(super) fn record_vlans(
        &mut self,
        snapshot: &mut Snapshot,
        index: &BTreeMap<(NsName, String), u32>,
        unread: &BTreeSet<NsName>,
    ) -> Result<(), PlanError> {
        for ns in unread {
            let Some(st) = snapshot.state.namespaces.get_mut(ns) else { continue };
            let loc = self.map.locate(ns);
            let Session { rt, conns, .. } = self;
            let conn = super::live::connection(conns, ns, &loc).map_err(PlanError::Kernel)?;
            let vlans = rt.block_on(super::live::bridge_vlans(conn)).map_err(PlanError::Kernel)?;
            super::live::attach_vlans(st, |name| index.get(&(ns.clone(), name.to_string())).copied(), &vlans);
        }
        Ok(())
    }

    /// Adds to `snapshot` the tables the plan did not list (known unchanged by their
    /// generation): a rollback needs them only when the plan has ops.
    pub(super) fn record_unlisted_tables(
        &self,
        snapshot: &mut Snapshot,
        nft: Option<&BTreeMap<NsName, NftState>>,
    ) -> Result<(), PlanError> {
        for (ns, _) in nft.into_iter().flatten().filter(|(_, st)| st.unchanged_by_generation) {
            let t = self.read_table(ns).map_err(PlanError::Kernel)?;
            snapshot.nft.insert(ns.clone(), t);
        }
        Ok(())
    }

    fn read_table(&self, ns: &str) -> Result<Option<RecordedTable>, NlError> {
        let loc = self.map.locate(ns);
        let json = exec::list_table(&loc.nft_target()).map_err(|e| NlError::other(e.to_string()))?;
        match json {
            Some(json) => Ok(Some(RecordedTable { text: super::apply::list_table_text(&loc)?, json })),
            None => Ok(None),
        }
    }

    /// The plan from the live state back to `snapshot` (empty: the node is as recorded).
    pub fn restore_plan(&mut self, snapshot: &Snapshot) -> Result<Plan, PlanError> {
        let target = snapshot.target();
        let (live, orphans) = self.live(&target).map_err(PlanError::Kernel)?;
        // Namespaces the apply created: gone in the recorded state.
        let orphans: Vec<NsName> = orphans.into_iter().filter(|ns| snapshot.missing.contains(ns)).collect();
        let mut nft = BTreeMap::new();
        for (ns, recorded) in &snapshot.nft {
            if !target.state.namespaces.contains_key(ns) {
                continue;
            }
            let (live_json, live_text) = if live.missing.contains(ns) {
                (None, None)
            } else {
                match self.read_table(ns).map_err(PlanError::Kernel)? {
                    Some(t) => (Some(t.json), Some(t.text)),
                    None => (None, None),
                }
            };
            nft.insert(
                ns.clone(),
                NftState {
                    live: live_json,
                    planned: recorded.as_ref().map(|t| t.json.clone()),
                    live_text,
                    unchanged_by_generation: false,
                },
            );
        }
        diff::diff(&target, &live, &orphans, Some(&nft)).map_err(PlanError::Conflicts)
    }

    /// Brings the node back to `snapshot`: plans, executes (going on past failures), and plans
    /// again, up to three passes; then compares. Signals are not looked at: a restore is
    /// never left halfway.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Restore {
        let mut out = Restore::default();
        // A kill between a namespace's marker and its mount leaves a name no plan sees.
        if let Err(e) = self.map.remove_half_made(&snapshot.node) {
            out.error = Some(format!("cannot remove a namespace left half made: {e}"));
            out.compared = false;
            return out;
        }
        for _ in 0..3 {
            let plan = match self.restore_plan(snapshot) {
                Ok(p) => p,
                Err(e) => {
                    out.error = Some(e.to_string());
                    out.compared = false;
                    return out;
                }
            };
            if plan.is_empty() {
                out.compared = true;
                out.remaining.clear();
                return out;
            }
            out.failures = self.execute_all(&snapshot.node, &plan.ops);
        }
        match self.restore_plan(snapshot) {
            Ok(p) => {
                out.compared = true;
                out.remaining = p.ops.iter().map(Drift::from_op).collect();
            }
            Err(e) => out.error = Some(e.to_string()),
        }
        out
    }
}
