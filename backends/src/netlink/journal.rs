//! The apply journal: written before an apply's first change, removed when the apply ends
//! (done, rolled back, or reverted after `--confirm`). It holds the state recorded before the
//! apply (a [`Snapshot`]) and the plan, so that an apply that never ended (SIGKILL, a crash, a
//! power cut of `/run`'s tmpfs aside) is seen by the next command on the node, which restores
//! the recorded state first. Written atomically, root-only and never through a symbolic link
//! (see `runfs`).

use super::rollback::Snapshot;
use crate::runfs;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::io;
use std::path::Path;

/// The format version; a journal of another version is reported, not guessed at.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    /// The process that wrote it.
    pub pid: u32,
    /// Seconds since the epoch when the apply started.
    pub started: u64,
    /// The plan being applied (`Plan::journal_record`: one line per op), for people reading
    /// the file; a restore does not read it.
    pub plan: Json,
    /// What to restore.
    pub snapshot: Snapshot,
}

impl Journal {
    pub fn new(snapshot: Snapshot, plan: Json) -> Journal {
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Journal { version: VERSION, pid: std::process::id(), started, plan, snapshot }
    }
}

/// Writes the journal (temporary file, fsync, rename; mode 0600).
pub fn write(path: &Path, j: &Journal) -> io::Result<()> {
    let text = serde_json::to_vec(j).map_err(io::Error::other)?;
    runfs::write_atomic(path, &text)
}

/// Reads the journal at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> io::Result<Option<Journal>> {
    let Some(text) = runfs::read(path)? else { return Ok(None) };
    let j: Journal = serde_json::from_str(&text)
        .map_err(|e| io::Error::other(format!("{}: not a netcfg journal: {e}", path.display())))?;
    if j.version != VERSION {
        return Err(io::Error::other(format!(
            "{}: journal version {} (this netcfg reads {VERSION})",
            path.display(),
            j.version
        )));
    }
    Ok(Some(j))
}

pub fn remove(path: &Path) -> io::Result<()> {
    runfs::remove(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::state::*;
    use netcfg_lang::vocab::{RouteScope, RouteType};
    use std::collections::BTreeMap;

    /// A journal written before an apply and read after a crash holds the same state: policy
    /// rules, route attributes and multipath routes included (a restore must put them back).
    #[test]
    fn a_snapshot_with_rules_and_multipath_routes_survives_the_journal() {
        let mut ns = NsState::default();
        ns.rules.insert(
            Rule {
                v6: false,
                priority: 100,
                from: Some("10.1.0.0/24".parse().unwrap()),
                to: None,
                iif: Some("eth1".into()),
                oif: None,
                fwmark: Some((0x10, 0xff)),
                ipproto: Some(6),
                sport: None,
                dport: Some((80, 90)),
                suppress_prefixlength: Some(0),
                action: RuleAction::Lookup(200),
            },
            NETCFG_PROTO,
        );
        ns.routes.insert(
            RouteKey::new(200, "0.0.0.0/0".parse().unwrap(), 0),
            Route {
                via: None,
                dev: None,
                src: None,
                scope: RouteScope::Global,
                onlink: false,
                route_type: RouteType::Throw,
                protocol: NETCFG_PROTO,
                metrics: RouteMetrics { mtu: Some(1400), advmss: Some(1360), initcwnd: None, initrwnd: Some(20) },
                nexthops: vec![
                    NextHop {
                        via: Some("10.0.0.1".parse().unwrap()),
                        dev: Some("eth0".into()),
                        weight: 3,
                        onlink: true,
                    },
                    NextHop { via: None, dev: Some("eth1".into()), weight: 1, onlink: false },
                ],
            },
        );
        let mut state = NodeState::default();
        state.namespaces.insert(HOST.into(), ns);
        let snapshot =
            Snapshot { node: "n".into(), state, missing: Default::default(), nft: BTreeMap::new(), modules_load: None };
        let dir = std::env::temp_dir().join(format!("netcfg-journal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.json");
        write(&path, &Journal::new(snapshot.clone(), serde_json::json!({}))).expect("write");
        let back = read(&path).expect("read").expect("a journal");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.snapshot, snapshot);
    }
}
