//! `netcfg apply FILE --node N`: make the node match the spec. Refuses specs with check errors
//! (unless `--allow-findings`), prints the plan, executes exactly it, rolls back on any failure
//! and verifies the result. `--confirm SECONDS` reverts unless confirmed in time (by a keypress
//! on the terminal or `netcfg apply --confirm-ok` from another shell), like `netplan try`.
//! `netcfg apply PLAN` applies a plan saved by `plan --live --out PLAN`, refusing (exit 1,
//! nothing changed) when it no longer holds (see `saved_plan`).

use crate::exit_status::ExitStatus;
use crate::saved_plan::SavedPlan;
use crate::signals;
use crate::target::{self, NodeArgs, NodeLock};
use netcfg_backends::netlink::journal::{self, Journal};
use netcfg_backends::netlink::{signal_name, ApplyConfig, Options, Plan, PlanError, Prefetch, Session, Snapshot};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: NodeArgs,
    /// Apply even when `check` reports errors (to reproduce a broken network on purpose).
    #[arg(long)]
    allow_findings: bool,
    /// Revert the change unless it is confirmed within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    confirm: Option<u64>,
    /// Confirm the pending `apply --confirm` on this node (same --netns-root) and exit.
    #[arg(long)]
    confirm_ok: bool,
}

fn confirm_file(args: &NodeArgs) -> PathBuf {
    PathBuf::from(target::RUN_DIR).join(format!("{}.confirm", target::node_key(args)))
}

pub fn run(args: Args) -> ExitStatus {
    if args.confirm_ok {
        // The file holds the waiting apply's pid; a file left by a killed apply confirms nothing.
        let file = confirm_file(&args.target);
        let waiting = netcfg_backends::runfs::read(&file)
            .ok()
            .flatten()
            .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
            // SAFETY: signal 0 only checks that the process exists.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !waiting {
            let _ = netcfg_backends::runfs::remove(&file);
            eprintln!("error: no apply is waiting for confirmation on this node");
            return ExitStatus::Error;
        }
        return match std::fs::remove_file(&file) {
            Ok(()) => {
                eprintln!("confirmed");
                ExitStatus::Success
            }
            Err(e) => {
                eprintln!("error: cannot confirm: {e}");
                ExitStatus::Error
            }
        };
    }
    // `apply FILE` with a plan saved by `plan --live --out FILE`: the spec and node come from it.
    let (node_args, saved) = match saved_plan_args(&args) {
        Ok(Some((node_args, saved))) => (node_args, Some(saved)),
        Ok(None) => (args.target.clone(), None),
        Err(status) => return status,
    };
    let args = Args { target: node_args, ..args };
    // From here on a signal rolls back (or, before the first change, stops with nothing done).
    signals::install();
    // With the lock free now and no journal waiting, the host namespace is read while the spec
    // compiles (`Prefetch`): nothing else of netcfg's can change the node before the plan.
    // Otherwise the lock is waited for once the spec has compiled, as always.
    let early = NodeLock::try_acquire(&args.target);
    let prefetch = early
        .as_ref()
        .filter(|_| !target::journal_path(&args.target).exists())
        .map(|_| Prefetch::host(&target::netns_map(&args.target)));
    let resolved = match target::resolve(&args.target) {
        Ok(r) => r,
        Err(status) => return status,
    };
    // With the host read ahead, the checks run on a thread of their own while the desired state
    // is made and the live plan read; nothing is printed before they end, and their findings
    // stop the command as they would before any read. Only where nothing but the findings
    // could stop it before the plan: the spec parsed and resolved, its node found.
    let ahead_node = prefetch.as_ref().and_then(|_| resolved.clean_node(&args.target));
    let (compiled, ahead) = match (prefetch, ahead_node) {
        (Some(prefetch), Some(node)) => {
            let (findings, ahead) = std::thread::scope(|s| {
                let checks = s.spawn(|| resolved.check());
                let ahead = Ahead::read(&resolved.fleet.nodes[node], &args.target, prefetch);
                (checks.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), ahead)
            });
            match resolved.finish(findings, &args.target, args.allow_findings) {
                Ok(c) => (c, Ok(ahead)),
                Err(status) => return status,
            }
        }
        (prefetch, _) => {
            let findings = resolved.check();
            match resolved.finish(findings, &args.target, args.allow_findings) {
                Ok(c) => (c, Err(prefetch)),
                Err(status) => return status,
            }
        }
    };
    if let Some(saved) = &saved {
        if crate::saved_plan::spec_hash(&compiled.parsed.sources) != saved.spec.sha256 {
            return refuse("the spec files changed since the plan was made");
        }
    }
    let _lock = match early {
        Some(lock) => lock,
        None => match NodeLock::acquire(&args.target) {
            Ok(lock) => lock,
            Err(status) => return status,
        },
    };
    // An apply that never ended (SIGKILL) is undone before anything else (with the host read
    // ahead there is none: no journal waited when the lock was taken).
    if let Err(status) = target::recover_locked(&args.target) {
        return status;
    }
    let opts = Options::default();
    let (desired, mut session, (plan, snapshot)) = match ahead {
        Ok(a) => {
            let desired = match target::desired_or_report(&compiled, a.desired, a.desired_findings) {
                Ok(d) => d,
                Err(status) => return status,
            };
            let (session, planned) = match target::session_or_report(a.read) {
                Ok(s) => s,
                Err(status) => return status,
            };
            match planned.map_err(|e| target::plan_error(&compiled, e)) {
                Ok(p) => (desired, session, p),
                Err(status) => return status,
            }
        }
        Err(prefetch) => {
            let desired = match target::desired(&compiled) {
                Ok(d) => d,
                Err(status) => return status,
            };
            let mut session = match target::open_session(&args.target) {
                Ok(s) => s,
                Err(status) => return status,
            };
            if let Some(p) = prefetch {
                session.use_prefetch(p);
            }
            match target::live_plan(&compiled, &mut session, &desired) {
                Ok(p) => (desired, session, p),
                Err(status) => return status,
            }
        }
    };
    if let Some(why) = saved.as_ref().and_then(|s| s.mismatch(&desired, &plan, &snapshot)) {
        return refuse(why);
    }
    if plan.is_empty() {
        eprintln!("no changes: node `{}` matches the spec", compiled.node().name.value);
        // The process ends here: its memory goes with it, not object by object (freeing the
        // compiled spec, the desired and the recorded state was 4% of a no-op apply's CPU on
        // a node of 12,000 objects).
        std::mem::forget((compiled, desired, snapshot));
        return ExitStatus::Success;
    }
    let lines = plan.lines();
    if let Err(status) = super::write_stdout(&crate::report::plan::render_lines(
        &plan,
        &lines,
        &compiled.parsed.sources,
        &crate::report::human::Style::stdout(),
    )) {
        return status;
    }
    if let Some(sig) = signals::received() {
        eprintln!("error: interrupted by {} before the first change: nothing was changed", signal_name(sig));
        return ExitStatus::Failure;
    }
    let journal_file = target::journal_path(&args.target);
    if let Err(e) = journal::write(&journal_file, &Journal::new(snapshot.clone(), plan.journal_record(lines))) {
        eprintln!("error: cannot write the apply journal: {e}; nothing was changed");
        return ExitStatus::Error;
    }
    // The journal goes when the apply ends, whichever way: applied, rolled back, reverted.
    let end = |status: ExitStatus| {
        if let Err(e) = journal::remove(&journal_file) {
            eprintln!("warning: cannot remove {}: {e}", journal_file.display());
        }
        status
    };
    if std::io::stderr().is_terminal() {
        eprintln!("applying {} operations…", plan.ops.len());
    }
    let started = Instant::now();
    let config = ApplyConfig {
        interrupt: Some(&signals::RECEIVED),
        fail_at: std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok()),
    };
    if let Err(e) = session.apply_recorded(&desired, &plan, opts, &snapshot, config) {
        compiled.report(&[e.to_diagnostic()]);
        return end(ExitStatus::Failure);
    }
    // A signal after the last op is still a signal during the apply.
    if let Some(sig) = signals::received() {
        let restore = session.restore(&snapshot);
        eprintln!("error: interrupted by {} at the end of the apply: rolling back", signal_name(sig));
        eprintln!("  {}", restore.describe());
        return end(ExitStatus::Failure);
    }
    if let Some(secs) = args.confirm {
        if !wait_for_confirmation(&args.target, Duration::from_secs(secs)) {
            let restore = session.restore(&snapshot);
            let why = match signals::received() {
                Some(sig) => format!("interrupted by {} before confirmation", signal_name(sig)),
                None => format!("not confirmed within {secs} s"),
            };
            if restore.is_complete() {
                eprintln!("{why}: reverted every change (the node was read back and matches the state before)");
            } else {
                eprintln!("error: {why}; {}", restore.describe());
            }
            return end(ExitStatus::Failure);
        }
    }
    let changes = if plan.ops.len() == 1 { "1 change".to_string() } else { format!("{} changes", plan.ops.len()) };
    eprintln!("applied {changes} to node `{}` in {:.2} s", compiled.node().name.value, started.elapsed().as_secs_f64());
    end(ExitStatus::Success)
}

/// Refuses a saved plan that no longer holds: nothing has been changed yet.
fn refuse(why: &str) -> ExitStatus {
    eprintln!("error: the saved plan is out of date: {why}; nothing was applied");
    eprintln!("  help: make a new plan with `netcfg plan --live --out FILE`, review it, and apply that");
    ExitStatus::Failure
}

/// When the only FILE is a saved plan: the node arguments it records (the spec files, include
/// roots, node and `--netns-root`) and the plan. Node arguments given beside it are refused,
/// since the plan names its node.
fn saved_plan_args(args: &Args) -> Result<Option<(NodeArgs, SavedPlan)>, ExitStatus> {
    let files = &args.target.files;
    let [file] = files.as_slice() else { return Ok(None) };
    if !crate::saved_plan::looks_like_plan(file) {
        return Ok(None);
    }
    let saved = SavedPlan::read(file).map_err(|why| {
        eprintln!("error: `{}` is not a netcfg plan: {why}; nothing was applied", file.display());
        eprintln!("  help: save one with `netcfg plan --live SPEC... --out FILE`, or give spec files");
        ExitStatus::Failure
    })?;
    if args.target.node.is_some() || args.target.netns_root.is_some() || !args.target.includes.include_roots.is_empty()
    {
        eprintln!("error: `{}` is a saved plan: it names its node, namespace root and spec files", file.display());
        eprintln!("  help: drop --node, --netns-root and --include-root");
        return Err(ExitStatus::Error);
    }
    if saved.netcfg_version != env!("CARGO_PKG_VERSION") {
        eprintln!(
            "error: `{}` was made by netcfg {}, this is {}: it may plan differently; nothing was applied",
            file.display(),
            saved.netcfg_version,
            env!("CARGO_PKG_VERSION")
        );
        eprintln!("  help: make a new plan with this netcfg (`netcfg plan --live --out FILE`)");
        return Err(ExitStatus::Failure);
    }
    let node_args = NodeArgs {
        files: saved.spec.files.clone(),
        node: Some(saved.node.clone()),
        netns_root: saved.netns_root.clone(),
        lock_timeout: args.target.lock_timeout,
        includes: crate::load::IncludeArgs { include_roots: saved.spec.include_roots.clone() },
    };
    eprintln!("applying the saved plan `{}` (node `{}`)", file.display(), saved.node);
    Ok(Some((node_args, saved)))
}

/// Test hook (fault injection): `NETCFG_FAULT_OP=K` makes op K (from 0) of the plan fail as if
/// the kernel refused it, to exercise the rollback from every point of a plan.
const FAULT_ENV: &str = "NETCFG_FAULT_OP";

/// Waits for `apply --confirm-ok` (it removes the confirmation file) or, on a terminal, for
/// Enter. Returns false when the time runs out, the terminal closes, or a signal arrives (a
/// dropped SSH session or a Ctrl-C means "not confirmed": the change is reverted).
fn wait_for_confirmation(args: &NodeArgs, timeout: Duration) -> bool {
    let file = confirm_file(args);
    let file_ok = netcfg_backends::runfs::write_atomic(&file, std::process::id().to_string().as_bytes()).is_ok();
    if !file_ok {
        eprintln!("warning: cannot write {}; only a keypress can confirm", file.display());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    if std::io::stdin().is_terminal() {
        eprintln!("press Enter within {} s to keep the change (or run `netcfg apply --confirm-ok`)", timeout.as_secs());
        std::thread::spawn(move || {
            let mut line = String::new();
            // End of input (Ctrl-D, a closed terminal) is not a confirmation.
            if matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
                let _ = tx.send(());
            }
        });
    } else {
        eprintln!("run `netcfg apply --confirm-ok` within {} s to keep the change", timeout.as_secs());
    }
    let deadline = Instant::now() + timeout;
    let mut confirmed = false;
    while Instant::now() < deadline && signals::received().is_none() {
        if (file_ok && !file.exists()) || rx.try_recv().is_ok() {
            confirmed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = netcfg_backends::runfs::remove(&file);
    confirmed
}

/// What `apply` reads while the checks run (see `run`): the desired state with its own
/// findings, and the session with the live plan (or why no session opened), none of it
/// reported yet.
struct Ahead {
    desired: netcfg_backends::netlink::Desired,
    desired_findings: Vec<netcfg_lang::Diagnostic>,
    read: std::io::Result<(Session, Planned)>,
}

/// The live plan with the state it starts from, or why none could be made.
type Planned = Result<(Plan, Snapshot), PlanError>;

impl Ahead {
    fn read(node: &netcfg_compiler::ir::Node, args: &target::NodeArgs, prefetch: Prefetch) -> Ahead {
        let mut desired_findings = Vec::new();
        let desired = netcfg_backends::netlink::desired(node, &mut desired_findings);
        let read = Session::new(target::netns_map(args)).map(|mut s| {
            s.use_prefetch(prefetch);
            let planned = s.plan_recorded(&desired, Options::default());
            (s, planned)
        });
        Ahead { desired, desired_findings, read }
    }
}
