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
    /// The plan being applied (`Plan::to_json`), for people reading the file.
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
