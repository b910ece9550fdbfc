//! Saved plans: `plan --live --out FILE` writes one, `apply FILE` applies exactly it.
//!
//! A saved plan records what was reviewed — the node, the desired state, the ordered ops (with
//! the nft changes rule by rule) and each namespace's nft script — and what it was computed
//! from: the spec (every file read, includes too, by SHA-256 of names and contents) and the
//! node's live state (SHA-256 of the recorded [`Snapshot`], the same state a rollback restores).
//!
//! `apply FILE` does not trust the file's ops: it loads the recorded spec files, compiles them,
//! reads the node and plans again, and applies only when the spec hash, the live fingerprint,
//! the desired state, the nft scripts and the ops are all equal to the saved ones — so what runs
//! is both what was reviewed and what netcfg would plan now. Any difference refuses the apply
//! before the first change (exit 1), saying which part differs.

use netcfg_backends::netlink::{Desired, Plan, Snapshot};
use netcfg_lang::SourceMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `format` field of every saved plan.
pub const FORMAT: &str = "netcfg-plan";
/// Bumped when the file's meaning changes; a plan of another version is refused.
pub const VERSION: u32 = 1;
/// A plan file larger than this is not read (it would not be one netcfg wrote for one node).
const MAX_FILE: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavedPlan {
    pub format: String,
    pub version: u32,
    /// The netcfg that made it: another version may plan differently, so it is refused.
    pub netcfg_version: String,
    pub node: String,
    /// `--netns-root`, when the node is a namespace.
    pub netns_root: Option<String>,
    pub spec: SpecRecord,
    /// SHA-256 of the live state the plan was computed against.
    pub live_fingerprint: String,
    /// The desired state per namespace (`Desired::state`).
    pub desired: Json,
    /// The nft script per namespace.
    pub nft: BTreeMap<String, String>,
    /// The plan (`Plan::to_json`, nft changes included).
    pub plan: Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SpecRecord {
    /// The spec files given, as absolute paths.
    pub files: Vec<PathBuf>,
    /// `--include-root`s given, as absolute paths (empty: the files' directories).
    pub include_roots: Vec<PathBuf>,
    /// SHA-256 over every file read (given and included): real paths and contents.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the spec as read: each file's real path (its name as given differs between
/// `plan` and `apply FILE`, which reads the recorded absolute paths) and text, length-prefixed,
/// in load order.
pub fn spec_hash(sources: &SourceMap) -> String {
    let mut h = Sha256::new();
    for (_, f) in sources.files() {
        let path = f.path.as_ref().and_then(|p| std::fs::canonicalize(p).ok());
        let name = path.map_or_else(|| f.name.clone(), |p| p.to_string_lossy().into_owned());
        for part in [name.as_bytes(), f.text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    hex(&h.finalize())
}

/// SHA-256 of the node's live state as recorded before an apply (links, addresses, routes,
/// neighbours, sysctls, netcfg's nft tables, missing namespaces, the modules-load.d file).
///
/// Left out: what the kernel derives by itself, when it pleases, from state that is in it —
/// connected, RA and redirect routes (`rollback::is_derived_route`) and IPv6 link-local
/// addresses, which appear a moment after a link comes up. Anything of theirs that a plan
/// would change shows in the ops, which are compared as well.
pub fn live_fingerprint(snapshot: &Snapshot) -> String {
    let mut snapshot = snapshot.clone();
    for ns in snapshot.state.namespaces.values_mut() {
        ns.routes.retain(|_, r| !netcfg_backends::netlink::rollback::is_derived_route(r));
        ns.addresses.retain(|(_, net), _| !matches!(net.addr(), std::net::IpAddr::V6(a) if a.is_unicast_link_local()));
    }
    let json = serde_json::to_vec(&snapshot).expect("a snapshot serializes");
    hex(&Sha256::digest(&json))
}

/// The parts of a plan that must be equal for `apply FILE` to run it.
fn comparable(desired: &Desired, plan: &Plan) -> (Json, BTreeMap<String, String>, Json) {
    let state = serde_json::to_value(&desired.state).expect("a node state serializes");
    let nft = desired.nft.iter().map(|(ns, s)| (ns.clone(), s.text.clone())).collect();
    (state, nft, plan.to_json())
}

impl SavedPlan {
    pub fn new(
        spec: SpecRecord,
        netns_root: Option<String>,
        desired: &Desired,
        plan: &Plan,
        snapshot: &Snapshot,
    ) -> SavedPlan {
        let (desired_json, nft, plan_json) = comparable(desired, plan);
        SavedPlan {
            format: FORMAT.to_string(),
            version: VERSION,
            netcfg_version: env!("CARGO_PKG_VERSION").to_string(),
            node: desired.node.clone(),
            netns_root,
            spec,
            live_fingerprint: live_fingerprint(snapshot),
            desired: desired_json,
            nft,
            plan: plan_json,
        }
    }

    /// Reads a plan file; the error says why the file is not a plan netcfg can apply.
    pub fn read(path: &Path) -> Result<SavedPlan, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        if meta.len() > MAX_FILE {
            return Err(format!("it is larger than {} MiB", MAX_FILE >> 20));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
        let json: Json = serde_json::from_str(&text).map_err(|e| format!("it is not JSON ({e})"))?;
        if json.get("format").and_then(Json::as_str) != Some(FORMAT) {
            return Err(format!("it has no `\"format\": \"{FORMAT}\"`"));
        }
        match json.get("version").and_then(Json::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(format!("it is a plan of format version {v}; this netcfg reads version {VERSION}")),
            None => return Err("it has no format version".into()),
        }
        serde_json::from_value(json).map_err(|e| format!("it is damaged ({e})"))
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("a saved plan serializes") + "\n"
    }

    /// Why the plan made now from the same spec is not the saved one (`None`: it is).
    pub fn mismatch(&self, desired: &Desired, plan: &Plan, snapshot: &Snapshot) -> Option<&'static str> {
        if live_fingerprint(snapshot) != self.live_fingerprint {
            return Some("the node's live state changed since the plan was made");
        }
        let (d, nft, p) = comparable(desired, plan);
        if d != self.desired {
            Some("the desired state differs from the saved plan's")
        } else if nft != self.nft {
            Some("the nftables scripts differ from the saved plan's")
        } else if !same_ops(&p, &self.plan) {
            Some("the operations differ from the saved plan's")
        } else {
            None
        }
    }
}

/// Ops compared without the nft change lists (a description for review, filled in only when
/// the plan was saved).
fn same_ops(now: &Json, saved: &Json) -> bool {
    fn strip(v: &Json) -> Json {
        let mut v = v.clone();
        if let Some(ops) = v.get_mut("ops").and_then(Json::as_array_mut) {
            for op in ops {
                if let Some(o) = op.as_object_mut() {
                    o.remove("changes");
                }
            }
        }
        v
    }
    strip(now) == strip(saved)
}

/// Whether `path` holds a saved plan rather than a spec: its first non-blank byte is `{` (a
/// KDL document cannot start with one).
pub fn looks_like_plan(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut buf = Vec::new();
    if file.take(4096).read_to_end(&mut buf).is_err() {
        return false;
    }
    buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_plan_says_why() {
        let dir = std::env::temp_dir().join(format!("netcfg-saved-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("{ not json", "it is not JSON"),
            ("{\"format\": \"other\"}", "it has no `\"format\": \"netcfg-plan\"`"),
            ("{\"format\": \"netcfg-plan\", \"version\": 99}", "format version 99"),
            ("{\"format\": \"netcfg-plan\", \"version\": 1}", "it is damaged"),
        ];
        for (i, (text, why)) in cases.iter().enumerate() {
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, text).unwrap();
            assert!(looks_like_plan(&path));
            let err = SavedPlan::read(&path).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let spec = dir.join("spec.kdl");
        std::fs::write(&spec, "node \"n\" {}\n").unwrap();
        assert!(!looks_like_plan(&spec));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
