//! `netcfg destroy [--node N] [--netns-root ROOT]`: remove everything netcfg owns on a node —
//! links in its group, routes with its protocol, its nftables table, the namespaces it created
//! for the node (NICs it moved into them go back) — and nothing else. Needs no spec: the
//! desired state is "nothing" ([`netcfg_backends::netlink::desired::nothing`]), planned and
//! applied like any other, so it is shown first, rolled back on failure and verified after.

use crate::exit_status::ExitStatus;
use crate::signals;
use crate::target::{self, NodeArgs, NodeLock};
use netcfg_backends::netlink::journal::{self, Journal};
use netcfg_backends::netlink::{signal_name, ApplyConfig, Options, PlanError};
use netcfg_lang::{FileId, Span};

#[derive(clap::Args)]
pub struct Args {
    /// The node to clear, as named in the spec it was applied from (it owns the namespaces
    /// netcfg created). Default: this machine's host name.
    #[arg(long)]
    node: Option<String>,
    /// Treat the named network namespace as the node (as for apply).
    #[arg(long, value_name = "ROOT")]
    netns_root: Option<String>,
    /// Print what would be removed and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long to wait for another netcfg holding the node's lock before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    lock_timeout: u64,
}

pub const EXAMPLES: &str = "\
Examples:
  netcfg destroy --dry-run                 what netcfg owns on this host
  netcfg destroy --node worker-1           remove it
  netcfg destroy --node n1 --netns-root lab";

pub fn run(args: Args) -> ExitStatus {
    let Some(node) = args.node.clone().or_else(target::host_name) else {
        eprintln!("error: no --node given and this host has no name");
        return ExitStatus::Error;
    };
    if let Err(e) = netcfg_lang::value::parse_name(&node) {
        eprintln!("error: --node `{node}`: {}", e.message);
        return ExitStatus::Error;
    }
    let target = NodeArgs {
        files: Vec::new(),
        node: Some(node.clone()),
        netns_root: args.netns_root.clone(),
        lock_timeout: args.lock_timeout,
        includes: Default::default(),
    };
    if let Some(root) = &args.netns_root {
        if netcfg_lang::value::parse_name(root).is_err() || !std::path::Path::new("/run/netns").join(root).exists() {
            eprintln!("error: no network namespace `{root}` (--netns-root names one under /run/netns)");
            return ExitStatus::Error;
        }
    }
    // Like apply: signals roll back, an unfinished apply is restored first, a journal covers
    // the teardown while it runs.
    signals::install();
    let _lock = match NodeLock::acquire(&target) {
        Ok(lock) => lock,
        Err(status) => return status,
    };
    if let Err(status) = target::recover_locked(&target) {
        return status;
    }
    let desired = netcfg_backends::netlink::desired::nothing(&node, Span { file: FileId(0), start: 0, end: 0 });
    let mut session = match target::open_session(&target) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let (plan, snapshot) = match session.plan_recorded(&desired, Options::default()) {
        Ok(p) => p,
        Err(PlanError::Conflicts(diags) | PlanError::Rejected(diags)) => {
            for d in diags {
                eprintln!("error: {}", d.message);
            }
            return ExitStatus::Failure;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Error;
        }
    };
    if plan.is_empty() {
        eprintln!("nothing to remove: netcfg owns nothing on node `{node}`");
        return ExitStatus::Success;
    }
    if let Err(status) = super::write_stdout(&plan.to_text()) {
        return status;
    }
    if args.dry_run {
        return ExitStatus::Success;
    }
    if let Some(sig) = signals::received() {
        eprintln!("error: interrupted by {} before the first change: nothing was changed", signal_name(sig));
        return ExitStatus::Failure;
    }
    let journal_file = target::journal_path(&target);
    if let Err(e) = journal::write(&journal_file, &Journal::new(snapshot.clone(), plan.journal_record(plan.lines()))) {
        eprintln!("error: cannot write the journal: {e}; nothing was changed");
        return ExitStatus::Error;
    }
    let config = ApplyConfig { interrupt: Some(&signals::RECEIVED), fail_at: None };
    let result = session.apply_recorded(&desired, &plan, Options::default(), &snapshot, config);
    if let Err(e) = journal::remove(&journal_file) {
        eprintln!("warning: cannot remove {}: {e}", journal_file.display());
    }
    if let Err(e) = result {
        eprintln!("error: {}", e.message);
        eprintln!("  {}", e.rollback.describe());
        return ExitStatus::Failure;
    }
    eprintln!("removed everything netcfg owned on node `{node}` ({} operations)", plan.ops.len());
    ExitStatus::Success
}
