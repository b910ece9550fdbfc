//! Running `nft` inside a namespace: validate (`nft -c` in a throwaway namespace), apply one
//! transaction (`nft -f -`), read netcfg's table back as JSON, and turn nft's
//! `file:line:col` errors into diagnostics on the spec spans that produced the lines.

use super::render::Script;
use super::ruleset::TABLE_NAME;
use crate::codes;
use netcfg_lang::{Diagnostic, Span};
use serde_json::Value as Json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where nft runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The namespace of the calling process.
    Current,
    /// A named namespace (`/run/netns/NAME`), entered with `ip netns exec`.
    Named(String),
    /// A fresh, empty namespace that lives only for this one command (`unshare`): used to
    /// validate and canonicalise scripts without touching any real namespace. Works without
    /// root where unprivileged user namespaces are allowed.
    Scratch,
}

/// One error line of nft: `/dev/stdin:LINE:COL-COL: Error: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug)]
pub enum ExecError {
    /// nft (or ip/unshare) could not be started.
    Spawn(String),
    /// nft refused the script; nothing was changed.
    Rejected { errors: Vec<NftError>, stderr: String },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Spawn(s) => write!(f, "{s}"),
            ExecError::Rejected { stderr, .. } => write!(f, "nft rejected the ruleset: {}", stderr.trim()),
        }
    }
}

fn command(target: &Target, script_in_one_process: Option<&str>) -> Command {
    match target {
        Target::Current => Command::new("nft"),
        Target::Named(name) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", name, "nft"]);
            c
        }
        Target::Scratch => {
            let mut c = Command::new("unshare");
            if !is_root() {
                c.arg("--map-root-user");
            }
            c.arg("--net");
            match script_in_one_process {
                Some(sh) => {
                    c.args(["sh", "-c", sh]);
                }
                None => {
                    c.arg("nft");
                }
            }
            c
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn run(mut cmd: Command, stdin: &str) -> Result<String, ExecError> {
    use std::os::unix::process::CommandExt;
    let program = format!("{:?}", cmd.get_program());
    // Its own process group: a Ctrl-C on the terminal goes to netcfg, which rolls back, and
    // must not kill an nft of that rollback halfway.
    cmd.process_group(0);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ExecError::Spawn(format!("cannot run {program}: {e}")))?;
    let written = child.stdin.take().expect("piped").write_all(stdin.as_bytes());
    let out = child.wait_with_output().map_err(|e| ExecError::Spawn(format!("{program} failed: {e}")))?;
    // A program that exits before reading its input closes the pipe: its own error (on
    // stderr) says why, not the broken pipe.
    if let Err(e) = written {
        if out.status.success() || e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(ExecError::Spawn(format!("cannot write to {program}: {e}")));
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let errors = parse_errors(&stderr);
    if errors.is_empty() && !stderr.contains("Error") {
        return Err(ExecError::Spawn(format!("{program} failed: {}", stderr.trim())));
    }
    Err(ExecError::Rejected { errors, stderr })
}

/// Parses nft's `FILE:LINE:COL-COL: Error: MESSAGE` lines.
pub fn parse_errors(stderr: &str) -> Vec<NftError> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Some(idx) = line.find(": Error: ") else { continue };
        let loc = &line[..idx];
        let message = line[idx + ": Error: ".len()..].to_string();
        let mut parts = loc.rsplitn(3, ':');
        let cols = parts.next().unwrap_or("");
        let l = parts.next().unwrap_or("");
        let (Ok(line_no), Some(Ok(col))) = (l.parse::<usize>(), cols.split('-').next().map(|c| c.parse::<usize>()))
        else {
            out.push(NftError { line: 0, column: 0, message });
            continue;
        };
        out.push(NftError { line: line_no, column: col, message });
    }
    out
}

/// Validates a transaction with `nft -c` in a scratch namespace.
pub fn check(script: &Script) -> Result<(), ExecError> {
    let mut cmd = command(&Target::Scratch, None);
    cmd.args(["-c", "-f", "-"]);
    run(cmd, &script.text).map(|_| ())
}

/// Applies a transaction (atomically: nft commits the whole batch or nothing).
pub fn apply(target: &Target, script: &Script) -> Result<(), ExecError> {
    let mut cmd = command(target, None);
    cmd.args(["-f", "-"]);
    run(cmd, &script.text).map(|_| ())
}

/// netcfg's table as nft lists it (JSON, handles removed), or `None` when there is none.
pub fn list_table(target: &Target) -> Result<Option<Json>, ExecError> {
    Ok(list_table_as_is(target)?.map(normalize))
}

/// netcfg's table as nft lists it, run-time state (set elements, counter values) included.
pub(crate) fn list_table_as_is(target: &Target) -> Result<Option<Json>, ExecError> {
    if super::probe::table_exists(target) == Some(false) {
        return Ok(None);
    }
    let mut cmd = command(target, None);
    cmd.args(["-j", "list", "table", "inet", TABLE_NAME]);
    match run(cmd, "") {
        Ok(out) => Ok(Some(
            serde_json::from_str(&out).map_err(|e| ExecError::Spawn(format!("nft printed invalid JSON: {e}")))?,
        )),
        Err(ExecError::Rejected { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// What nft would list after applying `script` to an empty namespace: the canonical form to
/// compare a live table with (nft merges intervals, reorders set elements, names priorities).
/// `None` when the script leaves no table (a script that only deletes it). Every failure is an
/// error: a script nft refuses here would be refused on the node too, and taking a failed
/// load for "no table" once let an apply succeed without its firewall.
///
/// Served from [`CanonicalCache`] when this exact script was canonicalised before by this nft.
pub fn canonical(script: &Script) -> Result<Option<Json>, ExecError> {
    // A transaction that only deletes netcfg's table (a namespace without firewall) leaves
    // none: known without running nft (or asking its version for the cache).
    if !script.creates_table {
        return Ok(None);
    }
    let cache = CanonicalCache::open();
    if let Some(hit) = cache.as_ref().and_then(|c| c.get(&script.text)) {
        return Ok(hit);
    }
    let form = canonical_uncached(script)?;
    if let Some(c) = &cache {
        c.put(&script.text, &form);
    }
    Ok(form)
}

/// Canonical forms of scripts, under `/run/netcfg/nft-canonical/` (root only; a tmpfs, empty
/// after boot). The canonical form is a function of the script and of nft alone, so a no-op
/// apply or a verify need not load the same script into a scratch namespace again (for 10,000
/// set elements that load is most of a no-op apply). A digest of the script names the entry
/// file; the entry holds nft's version, the whole script and its form, and is used only when
/// both are equal, so neither a digest collision nor an nft upgrade can return another form.
/// It caches only the planned side: the live table is listed and compared every time, so a
/// hand-edited table is always seen.
pub struct CanonicalCache {
    dir: std::path::PathBuf,
    nft_version: String,
}

impl CanonicalCache {
    const DIR: &'static str = "/run/netcfg/nft-canonical";

    /// Set to `0` to bypass the cache (tests that make the scratch namespace fail).
    pub const ENV: &'static str = "NETCFG_NFT_CACHE";

    pub fn open() -> Option<CanonicalCache> {
        if !is_root() || std::env::var(Self::ENV).as_deref() == Ok("0") {
            return None;
        }
        static VERSION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let nft_version = VERSION
            .get_or_init(|| {
                let out = Command::new("nft").arg("--version").output().ok()?;
                out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            })
            .clone()?;
        crate::runfs::ensure_dir(Path::new(Self::DIR)).ok()?;
        Some(CanonicalCache { dir: Self::DIR.into(), nft_version })
    }

    fn path(&self, script: &str) -> std::path::PathBuf {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        script.hash(&mut h);
        self.dir.join(format!("{:016x}-{}.json", h.finish(), script.len()))
    }

    fn get(&self, script: &str) -> Option<Option<Json>> {
        let text = crate::runfs::read(&self.path(script)).ok()??;
        let mut entry: Json = serde_json::from_str(&text).ok()?;
        let same = entry.get("nft").and_then(Json::as_str) == Some(self.nft_version.as_str())
            && entry.get("script").and_then(Json::as_str) == Some(script);
        same.then(|| match entry.get_mut("canonical").map(Json::take) {
            Some(Json::Null) | None => None,
            Some(form) => Some(form),
        })
    }

    fn put(&self, script: &str, form: &Option<Json>) {
        let entry = serde_json::json!({ "nft": self.nft_version, "script": script, "canonical": form });
        // Written aside and renamed (0600, no symlink followed), so a reader never sees half an
        // entry; a cache that cannot be written only costs the next plan a scratch load.
        let _ = crate::runfs::write_atomic(&self.path(script), entry.to_string().as_bytes());
    }
}

fn canonical_uncached(script: &Script) -> Result<Option<Json>, ExecError> {
    // `list ruleset` rather than `list table`: it does not fail when the script leaves no
    // table, so a failure of the listing is never mistaken for an absent table.
    let out = run(command(&Target::Scratch, Some("nft -f - && nft -j list ruleset")), &script.text)?;
    let json: Json =
        serde_json::from_str(&out).map_err(|e| ExecError::Spawn(format!("nft printed invalid JSON: {e}")))?;
    let has_table = json["nftables"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["table"]["name"] == TABLE_NAME && x["table"]["family"] == "inet"));
    Ok(has_table.then(|| normalize(json)))
}

/// nft's text listing of netcfg's table after applying `script` to an empty namespace (empty
/// when the script leaves no table). Every failure is an error, as for [`canonical`].
pub fn canonical_text(script: &Script) -> Result<String, ExecError> {
    run(command(&Target::Scratch, Some("nft -f - && nft list ruleset")), &script.text)
}

/// netcfg's table as nft lists it (text), or an empty string when there is none.
pub fn list_table_text(target: &Target) -> Result<String, ExecError> {
    if super::probe::table_exists(target) == Some(false) {
        return Ok(String::new());
    }
    let mut cmd = command(target, None);
    cmd.args(["list", "table", "inet", TABLE_NAME]);
    match run(cmd, "") {
        Ok(out) => Ok(out),
        Err(ExecError::Rejected { stderr, .. }) if stderr.contains("No such file or directory") => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Drops what differs between two loads of the same ruleset: metainfo and handles, and what
/// traffic changes at run time (the elements rules add to dynamic sets, the elements of the
/// spec's dynamic sets, which other programs may fill too, counter values), so a table that
/// has seen traffic still equals its plan.
fn normalize(mut v: Json) -> Json {
    fn strip(v: &mut Json) {
        match v {
            Json::Object(m) => {
                m.remove("handle");
                if let Some(counter) = m.get_mut("counter").and_then(Json::as_object_mut) {
                    if counter.contains_key("name") {
                        counter.remove("packets");
                        counter.remove("bytes");
                    }
                }
                for x in m.values_mut() {
                    strip(x);
                }
            }
            Json::Array(a) => {
                a.retain(|x| x.get("metainfo").is_none());
                for x in a.iter_mut() {
                    strip(x);
                }
            }
            _ => {}
        }
    }
    /// The sets rules add elements to (`update @s { … }`, `add @s { … }`): nft lists them
    /// without a `dynamic` flag, so they are known by the statements that fill them.
    fn filled_by_rules(v: &Json, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Json::Object(m) => {
                if let Some(Json::Object(stmt)) = m.get("set") {
                    if let (Some(_), Some(name)) = (stmt.get("op"), stmt.get("set").and_then(Json::as_str)) {
                        out.insert(name.trim_start_matches('@').to_string());
                    }
                }
                m.values().for_each(|x| filled_by_rules(x, out));
            }
            Json::Array(a) => a.iter().for_each(|x| filled_by_rules(x, out)),
            _ => {}
        }
    }
    strip(&mut v);
    let mut dynamic = std::collections::BTreeSet::new();
    filled_by_rules(&v, &mut dynamic);
    if let Some(objects) = v.get_mut("nftables").and_then(Json::as_array_mut) {
        for o in objects {
            if let Some(set) = o.get_mut("set").and_then(Json::as_object_mut) {
                let kept = set.get("comment").and_then(Json::as_str).is_some_and(super::ruleset::is_kept_set_comment);
                if kept || set.get("name").and_then(Json::as_str).is_some_and(|n| dynamic.contains(n)) {
                    set.remove("elem");
                }
            }
        }
    }
    v
}

/// Reports nft's errors on the spec spans behind the offending lines; lines without a spec
/// origin (table scaffolding) are reported on `fallback`.
pub fn diagnostics(script: &Script, err: &ExecError, fallback: Span) -> Vec<Diagnostic> {
    match err {
        ExecError::Spawn(msg) => vec![Diagnostic::error(codes::NFT_FAILED, fallback, msg.clone())
            .with_help("install nftables (`apt-get install nftables`) and run as root")],
        ExecError::Rejected { errors, stderr } => {
            if errors.is_empty() {
                return vec![Diagnostic::error(
                    codes::NFT_REJECTED,
                    fallback,
                    format!("nft rejected the ruleset: {}", stderr.trim()),
                )];
            }
            errors
                .iter()
                .map(|e| {
                    let span = script.origin_of_line(e.line).unwrap_or(fallback);
                    let generated = script.line_text(e.line).unwrap_or("").trim();
                    Diagnostic::error(codes::NFT_REJECTED, span, format!("nft rejected the rule generated from here: {}", e.message.trim_end_matches('.')))
                        .with_label(format!("generated line {}: `{generated}`", e.line))
                        .with_help("this is a netcfg bug or a kernel without the needed nftables feature; please report it with the spec")
                })
                .collect()
        }
    }
}
