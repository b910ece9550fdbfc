//! What `plan`, `apply` and `verify` share: compile the specs, pick the node, report findings
//! (on stderr, so stdout carries the plan), and map the node onto this machine's namespaces.

use crate::exit_status::ExitStatus;
use crate::load;
use crate::report::{self, human, Findings, Format};
use netcfg_compiler::ir::{Fleet, Node};
use netcfg_lang::diagnostic::sort_diagnostics;
use netcfg_lang::{Diagnostic, Parsed, Severity};
use std::path::PathBuf;

/// Where the node lives on this machine.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Spec files; several files form one fleet. `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The node of the spec to work on. Default: the only node, or else the node named like
    /// this machine's host name.
    #[arg(long)]
    pub node: Option<String>,
    /// Treat the named network namespace as the node: its host namespace is /run/netns/ROOT and
    /// `netns "x"` is /run/netns/ROOT-x. Without it the node is this machine.
    #[arg(long, value_name = "ROOT")]
    pub netns_root: Option<String>,
    /// How long to wait for another netcfg holding the node's lock before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub lock_timeout: u64,
    #[command(flatten)]
    pub includes: load::IncludeArgs,
}

/// A compiled spec with one node selected.
pub struct Compiled {
    pub parsed: Parsed,
    pub fleet: Fleet,
    pub node: usize,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn node(&self) -> &Node {
        &self.fleet.nodes[self.node]
    }

    /// Prints diagnostics (findings, apply errors) on stderr.
    pub fn report(&self, diagnostics: &[Diagnostic]) {
        let findings = Findings { diagnostics, sources: &self.parsed.sources, suppressed: &[] };
        eprint!("{}", report::render(Format::Human, &findings, &human::Style::stderr()));
    }
}

pub fn has_errors(d: &[Diagnostic]) -> bool {
    d.iter().any(|d| d.severity == Severity::Error)
}

/// Loads, checks and selects the node. Findings are printed on stderr; with errors (and not
/// `allow_findings`) the command stops with status 1.
pub fn compile(args: &NodeArgs, allow_findings: bool) -> Result<Compiled, ExitStatus> {
    let resolved = resolve(args)?;
    let findings = resolved.check();
    resolved.finish(findings, args, allow_findings)
}

/// A spec loaded and resolved whose checks have not run: [`compile`] is [`resolve`], then
/// [`Resolved::check`], then [`Resolved::finish`]. `apply` runs the checks on a thread of
/// their own while it reads the kernel, and finishes before anything is printed or changed.
pub struct Resolved {
    pub parsed: Parsed,
    pub fleet: Fleet,
    /// Resolve's own findings, which the checks extend.
    resolve_diagnostics: Vec<Diagnostic>,
}

/// Loads and resolves the spec (the first half of [`compile`]); load errors end the command.
pub fn resolve(args: &NodeArgs) -> Result<Resolved, ExitStatus> {
    if args.files.is_empty() {
        eprintln!("error: no FILE given (`-` reads the spec from stdin)");
        return Err(ExitStatus::Error);
    }
    if let Some(root) = &args.netns_root {
        // The name becomes file names under /run: the same alphabet as namespace names.
        if let Err(e) = netcfg_lang::value::parse_name(root) {
            eprintln!("error: --netns-root `{root}`: {}", e.message);
            return Err(ExitStatus::Error);
        }
        if root == "machine" {
            eprintln!("error: --netns-root `machine` is reserved (it names the machine itself in /run/netcfg)");
            return Err(ExitStatus::Error);
        }
        // A typo must not make netcfg create a new node namespace.
        if !std::path::Path::new("/run/netns").join(root).exists() {
            eprintln!("error: no network namespace `{root}` (create it with `ip netns add {root}`)");
            return Err(ExitStatus::Error);
        }
    }
    let parsed = load::load_or_report(&args.files, &args.includes)?;
    let mut resolve_diagnostics = Vec::new();
    let fleet = netcfg_compiler::resolve::resolve(&parsed.spec, &mut resolve_diagnostics);
    Ok(Resolved { parsed, fleet, resolve_diagnostics })
}

impl Resolved {
    /// Runs every check: resolve's findings and the checks' (the parser's are added by
    /// [`Resolved::finish`]).
    pub fn check(&self) -> Vec<Diagnostic> {
        netcfg_compiler::check_fleet(&self.fleet, self.resolve_diagnostics.clone(), &self.parsed.diagnostics)
    }

    /// The spec parsed and resolved without errors, and the node it selects: what work beside
    /// the checks starts from. `None` where [`Resolved::finish`] could stop the command for
    /// another reason than the checks' findings.
    pub fn clean_node(&self, args: &NodeArgs) -> Option<usize> {
        if has_errors(&self.parsed.diagnostics) || has_errors(&self.resolve_diagnostics) {
            return None;
        }
        pick_node(&self.fleet, args).ok()
    }

    /// Reports the findings (`findings` from [`Resolved::check`]) and selects the node: with
    /// errors among them (and not `allow_findings`) the command stops with status 1.
    pub fn finish(
        self,
        findings: Vec<Diagnostic>,
        args: &NodeArgs,
        allow_findings: bool,
    ) -> Result<Compiled, ExitStatus> {
        let Resolved { parsed, fleet, .. } = self;
        let mut diagnostics = parsed.diagnostics.clone();
        diagnostics.extend(findings);
        let mut diagnostics = crate::lint::suppress(&parsed.sources, diagnostics).diagnostics;
        sort_diagnostics(&mut diagnostics);
        let parse_errors = has_errors(&parsed.diagnostics);
        let out = Compiled { parsed, fleet, node: 0, diagnostics };
        if !out.diagnostics.is_empty() {
            out.report(&out.diagnostics);
        }
        // Syntax errors leave no usable spec, even with --allow-findings.
        if parse_errors || (has_errors(&out.diagnostics) && !allow_findings) {
            if has_errors(&out.diagnostics) && !parse_errors {
                eprintln!("error: the spec has errors; nothing was done (--allow-findings overrides check findings)");
            }
            return Err(ExitStatus::Failure);
        }
        match pick_node(&out.fleet, args) {
            Ok(node) => Ok(Compiled { node, ..out }),
            Err(why) => {
                eprintln!("error: {why}");
                Err(ExitStatus::Error)
            }
        }
    }
}

/// The node the command works on: `--node`, the only node, or the node named like this host;
/// or why there is none.
fn pick_node(fleet: &Fleet, args: &NodeArgs) -> Result<usize, String> {
    let names: Vec<&str> = fleet.nodes.iter().map(|n| n.name.value.as_str()).collect();
    match &args.node {
        Some(name) => names.iter().position(|n| n == name).ok_or_else(|| {
            if names.is_empty() {
                format!("no node `{name}`: the spec declares no node")
            } else {
                format!("no node `{name}` in the spec (nodes: {})", names.join(", "))
            }
        }),
        None if names.len() == 1 => Ok(0),
        None if names.is_empty() => Err("the spec declares no node".to_string()),
        None => match host_name() {
            Some(host) if names.contains(&host.as_str()) => Ok(names.iter().position(|n| *n == host).expect("present")),
            host => Err(format!(
                "the spec has {} nodes and none is named like this host ({}); pick one with --node ({})",
                names.len(),
                host.map_or("no host name".to_string(), |h| format!("`{h}`")),
                names.join(", ")
            )),
        },
    }
}

pub fn netns_map(args: &NodeArgs) -> netcfg_backends::netlink::NetnsMap {
    match &args.netns_root {
        Some(root) => netcfg_backends::netlink::NetnsMap::rooted(root),
        None => netcfg_backends::netlink::NetnsMap::machine(),
    }
}

/// Where netcfg keeps its files for the machine's nodes (see `netcfg_backends::runfs`).
pub const RUN_DIR: &str = "/run/netcfg";

/// The name of the node's files under [`RUN_DIR`]: its root, or `machine`.
pub fn node_key(args: &NodeArgs) -> &str {
    args.netns_root.as_deref().unwrap_or("machine")
}

/// The node's apply journal.
pub fn journal_path(args: &NodeArgs) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{}.journal", node_key(args)))
}

/// How the node is named in messages.
fn node_words(args: &NodeArgs) -> String {
    match &args.netns_root {
        Some(r) => format!("the node in namespace `{r}`"),
        None => "this machine".to_string(),
    }
}

/// A lock so two netcfg commands that change one node cannot interleave: `flock` on a
/// root-only file under /run/netcfg (0600 in a 0700 directory: no other user can open it, so
/// none can hold it), released when the process ends (even when it is killed). The holder
/// writes its pid and command line into it, so that a waiting command can say who holds it.
pub struct NodeLock {
    _file: std::fs::File,
}

impl NodeLock {
    /// The lock if it is free now, without a word when it is not (or cannot be opened):
    /// the caller goes on and [`NodeLock::acquire`]s it later, which says why.
    pub fn try_acquire(args: &NodeArgs) -> Option<NodeLock> {
        use std::os::fd::AsRawFd;
        let file = netcfg_backends::runfs::open_private(&lock_path(args)).ok()?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return None;
        }
        Some(NodeLock::held(file))
    }

    /// The lock taken on `file`: says who holds it, in it.
    fn held(mut file: std::fs::File) -> NodeLock {
        use std::io::Write;
        let cmdline: Vec<String> = std::env::args().collect();
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}\n{}", std::process::id(), cmdline.join(" "));
        NodeLock { _file: file }
    }

    pub fn acquire(args: &NodeArgs) -> Result<NodeLock, ExitStatus> {
        use std::os::fd::AsRawFd;
        let path = lock_path(args);
        let file = netcfg_backends::runfs::open_private(&path).map_err(|e| {
            eprintln!("error: cannot open the lock of {}: {e}", node_words(args));
            ExitStatus::Error
        })?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.lock_timeout);
        let mut said = false;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                eprintln!("error: cannot lock {}: {err}", node_words(args));
                return Err(ExitStatus::Error);
            }
            let holder = holder(&path);
            if let Some(sig) = crate::signals::received() {
                eprintln!(
                    "error: interrupted by {} while waiting for {holder}: nothing was changed",
                    netcfg_backends::netlink::signal_name(sig)
                );
                return Err(ExitStatus::Failure);
            }
            if std::time::Instant::now() >= deadline {
                eprintln!("error: {} is locked by {holder}; gave up after {} s", node_words(args), args.lock_timeout);
                eprintln!("  help: wait for it to finish, or raise --lock-timeout");
                return Err(ExitStatus::Error);
            }
            if !said {
                eprintln!("waiting for {holder}, which holds the lock of {}…", node_words(args));
                said = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(NodeLock::held(file))
    }
}

/// The node's lock file.
fn lock_path(args: &NodeArgs) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{}.lock", node_key(args)))
}

/// Who holds the lock, as written in the lock file: `pid N (`COMMAND`)`.
fn holder(path: &std::path::Path) -> String {
    let text = netcfg_backends::runfs::read(path).ok().flatten().unwrap_or_default();
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(pid), Some(cmd)) if !pid.is_empty() => format!("pid {pid} (`{cmd}`)"),
        _ => "another process".to_string(),
    }
}

/// Restores the state recorded by an apply that did not finish (its journal is still there),
/// and says so. Takes the node lock when there is a journal (an apply that is still running
/// holds it: then this waits for it). Returns the lock when it took it.
pub fn recover(args: &NodeArgs) -> Result<Option<NodeLock>, ExitStatus> {
    let path = journal_path(args);
    if !path.exists() {
        return Ok(None);
    }
    let lock = NodeLock::acquire(args)?;
    recover_locked(args)?;
    Ok(Some(lock))
}

/// [`recover`] for a caller that holds the lock.
pub fn recover_locked(args: &NodeArgs) -> Result<(), ExitStatus> {
    use netcfg_backends::netlink::journal;
    let path = journal_path(args);
    let j = match journal::read(&path) {
        Ok(Some(j)) => j,
        Ok(None) => return Ok(()),
        Err(e) => {
            eprintln!("error: cannot read the journal of an unfinished apply: {e}");
            eprintln!("  help: netcfg cannot tell what to restore; inspect the node, then remove {}", path.display());
            return Err(ExitStatus::Error);
        }
    };
    eprintln!(
        "found the journal of an apply on {} that did not finish (pid {}, node `{}`): restoring the state \
         recorded before it",
        node_words(args),
        j.pid,
        j.snapshot.node
    );
    let mut session = open_session(args)?;
    let restore = session.restore(&j.snapshot);
    if let Err(e) = journal::remove(&path) {
        eprintln!("warning: cannot remove {}: {e}", path.display());
    }
    if restore.is_complete() {
        eprintln!("restored: the node was read back and matches the state recorded before the unfinished apply");
        Ok(())
    } else {
        eprintln!("error: the node could not be restored to the state before the unfinished apply");
        eprintln!("  help: {}", restore.describe());
        Err(ExitStatus::Failure)
    }
}

/// Opens netlink on the node (one connection per namespace, made lazily).
pub fn open_session(args: &NodeArgs) -> Result<netcfg_backends::netlink::Session, ExitStatus> {
    session_or_report(netcfg_backends::netlink::Session::new(netns_map(args)))
}

/// A session opened (and what came with it), or why not (status 2).
pub fn session_or_report<T>(s: std::io::Result<T>) -> Result<T, ExitStatus> {
    s.map_err(|e| {
        eprintln!("error: cannot open netlink: {e} (this needs root)");
        ExitStatus::Error
    })
}

/// The desired state of the selected node; its own findings (e.g. `conflicting-routes`
/// after `--allow-findings`) are reported, and errors among them stop the command (status 1).
pub fn desired(compiled: &Compiled) -> Result<netcfg_backends::netlink::Desired, ExitStatus> {
    let mut diags = Vec::new();
    let desired = netcfg_backends::netlink::desired(compiled.node(), &mut diags);
    desired_or_report(compiled, desired, diags)
}

/// [`desired`] for a desired state made earlier with its findings `diags`.
pub fn desired_or_report(
    compiled: &Compiled,
    desired: netcfg_backends::netlink::Desired,
    diags: Vec<Diagnostic>,
) -> Result<netcfg_backends::netlink::Desired, ExitStatus> {
    if !diags.is_empty() {
        compiled.report(&diags);
    }
    if has_errors(&diags) {
        return Err(ExitStatus::Failure);
    }
    Ok(desired)
}

/// The live plan for the selected node, with the state it starts from; conflicts and
/// rulesets nft refuses are reported on the spec (status 1), a kernel that cannot be read is
/// status 2.
pub fn live_plan(
    compiled: &Compiled,
    session: &mut netcfg_backends::netlink::Session,
    desired: &netcfg_backends::netlink::Desired,
) -> Result<(netcfg_backends::netlink::Plan, netcfg_backends::netlink::Snapshot), ExitStatus> {
    use netcfg_backends::netlink::Options;
    session.plan_recorded(desired, Options::default()).map_err(|e| plan_error(compiled, e))
}

/// Reports why no plan could be made: conflicts and refused rulesets on the spec (status 1),
/// a kernel that cannot be read (status 2).
pub fn plan_error(compiled: &Compiled, e: netcfg_backends::netlink::PlanError) -> ExitStatus {
    use netcfg_backends::netlink::PlanError;
    match e {
        PlanError::Conflicts(d) | PlanError::Rejected(d) => {
            compiled.report(&d);
            ExitStatus::Failure
        }
        e => {
            eprintln!("error: {e}");
            ExitStatus::Error
        }
    }
}

/// This machine's host name (`gethostname(2)`): the node `plan`, `apply` and `verify` work on
/// when the spec has several nodes and `--node` is not given, as with nmstate's and netplan's
/// one-file-per-host layouts.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is ours and its length is passed; the result is NUL-terminated or we
    // stop at the buffer's end.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..len]).ok().filter(|h| !h.is_empty()).map(str::to_string)
}
