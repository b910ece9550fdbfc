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
    /// The node of the spec to work on (may be omitted when the fleet has one node).
    #[arg(long)]
    pub node: Option<String>,
    /// Treat the named network namespace as the node: its host namespace is /run/netns/ROOT and
    /// `netns "x"` is /run/netns/ROOT-x. Without it the node is this machine.
    #[arg(long, value_name = "ROOT")]
    pub netns_root: Option<String>,
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
        let findings = Findings { diagnostics, sources: &self.parsed.sources };
        eprint!("{}", report::render(Format::Human, &findings, &human::Style::stderr()));
    }
}

pub fn has_errors(d: &[Diagnostic]) -> bool {
    d.iter().any(|d| d.severity == Severity::Error)
}

/// Loads, checks and selects the node. Findings are printed on stderr; with errors (and not
/// `allow_findings`) the command stops with status 1.
pub fn compile(args: &NodeArgs, allow_findings: bool) -> Result<Compiled, ExitStatus> {
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
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diagnostics = parsed.diagnostics.clone();
    diagnostics.extend(compiled.diagnostics);
    sort_diagnostics(&mut diagnostics);
    let fleet = compiled.fleet;
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
    let names: Vec<&str> = out.fleet.nodes.iter().map(|n| n.name.value.as_str()).collect();
    let node = match &args.node {
        Some(name) => names.iter().position(|n| n == name).ok_or_else(|| {
            if names.is_empty() {
                eprintln!("error: no node `{name}`: the spec declares no node");
                return ExitStatus::Error;
            }
            eprintln!("error: no node `{name}` in the spec (nodes: {})", names.join(", "));
            ExitStatus::Error
        })?,
        None if names.len() == 1 => 0,
        None if names.is_empty() => {
            eprintln!("error: the spec declares no node");
            return Err(ExitStatus::Error);
        }
        None => {
            eprintln!("error: the spec has {} nodes; pick one with --node ({})", names.len(), names.join(", "));
            return Err(ExitStatus::Error);
        }
    };
    Ok(Compiled { node, ..out })
}

pub fn netns_map(args: &NodeArgs) -> netcfg_backends::netlink::NetnsMap {
    match &args.netns_root {
        Some(root) => netcfg_backends::netlink::NetnsMap::rooted(root),
        None => netcfg_backends::netlink::NetnsMap::machine(),
    }
}

/// A lock so two applies on one node cannot interleave: `flock` on a file under /run/netcfg,
/// released when the process ends (even when it is killed).
pub struct NodeLock {
    _file: std::fs::File,
}

impl NodeLock {
    pub fn acquire(args: &NodeArgs) -> std::io::Result<NodeLock> {
        use std::os::fd::AsRawFd;
        let dir = std::path::Path::new("/run/netcfg");
        std::fs::create_dir_all(dir)?;
        let key = args.netns_root.as_deref().unwrap_or("machine");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{key}.lock")))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("waiting for another netcfg apply on this node to finish…");
            // SAFETY: as above.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(NodeLock { _file: file })
    }
}

/// Opens netlink on the node (one connection per namespace, made lazily).
pub fn open_session(args: &NodeArgs) -> Result<netcfg_backends::netlink::Session, ExitStatus> {
    netcfg_backends::netlink::Session::new(netns_map(args)).map_err(|e| {
        eprintln!("error: cannot open netlink: {e} (this needs root)");
        ExitStatus::Error
    })
}

/// The desired state of the selected node; its own findings (e.g. `conflicting-routes`
/// after `--allow-findings`) are reported, and errors among them stop the command (status 1).
pub fn desired(compiled: &Compiled) -> Result<netcfg_backends::netlink::Desired, ExitStatus> {
    let mut diags = Vec::new();
    let desired = netcfg_backends::netlink::desired(compiled.node(), &mut diags);
    if !diags.is_empty() {
        compiled.report(&diags);
    }
    if has_errors(&diags) {
        return Err(ExitStatus::Failure);
    }
    Ok(desired)
}

/// The live plan for the selected node; conflicts are reported on the spec (status 1), a
/// kernel that cannot be read is status 2.
pub fn live_plan(
    compiled: &Compiled,
    session: &mut netcfg_backends::netlink::Session,
    desired: &netcfg_backends::netlink::Desired,
) -> Result<netcfg_backends::netlink::Plan, ExitStatus> {
    use netcfg_backends::netlink::{Options, PlanError};
    session.plan(desired, Options::default()).map_err(|e| match e {
        PlanError::Conflicts(d) => {
            compiled.report(&d);
            ExitStatus::Failure
        }
        e => {
            eprintln!("error: {e}");
            ExitStatus::Error
        }
    })
}
