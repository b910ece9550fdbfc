//! `netcfg apply FILE --node N`: make the node match the spec. Refuses specs with check errors
//! (unless `--allow-findings`), prints the plan, executes exactly it, rolls back on any failure
//! and verifies the result. `--confirm SECONDS` reverts unless confirmed in time (by a keypress
//! on the terminal or `netcfg apply --confirm-ok` from another shell), like `netplan try`.

use crate::exit_status::ExitStatus;
use crate::target::{self, NodeArgs, NodeLock};
use netcfg_backends::netlink::{self, Options};
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
    PathBuf::from("/run/netcfg").join(format!("{}.confirm", args.netns_root.as_deref().unwrap_or("machine")))
}

pub fn run(args: Args) -> ExitStatus {
    if args.confirm_ok {
        return match std::fs::remove_file(confirm_file(&args.target)) {
            Ok(()) => {
                eprintln!("confirmed");
                ExitStatus::Success
            }
            Err(e) => {
                eprintln!("error: no apply is waiting for confirmation on this node ({e})");
                ExitStatus::Error
            }
        };
    }
    let compiled = match target::compile(&args.target, args.allow_findings) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let _lock = match NodeLock::acquire(&args.target) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: cannot lock the node: {e}");
            return ExitStatus::Error;
        }
    };
    let mut diags = Vec::new();
    let desired = netlink::desired(compiled.node(), &mut diags);
    if target::has_errors(&diags) {
        compiled.report(&diags);
        return ExitStatus::Failure;
    }
    let mut session = match target::open_session(&args.target) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let opts = Options::default();
    let plan = match target::live_plan(&compiled, &mut session, &desired) {
        Ok(p) => p,
        Err(status) => return status,
    };
    if plan.is_empty() {
        eprintln!("no changes: node `{}` matches the spec", compiled.node().name.value);
        return ExitStatus::Success;
    }
    if let Err(status) = super::write_stdout(&plan.to_text()) {
        return status;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("applying {} operations…", plan.ops.len());
    }
    let started = Instant::now();
    if let Err(e) = session.apply(&desired, &plan, opts) {
        compiled.report(&[e.to_diagnostic()]);
        return ExitStatus::Failure;
    }
    if let Some(secs) = args.confirm {
        if !wait_for_confirmation(&args.target, Duration::from_secs(secs)) {
            let failures = session.revert(&desired, &plan);
            if failures.is_empty() {
                eprintln!("not confirmed within {secs} s: reverted every change");
            } else {
                for (op, e) in &failures {
                    eprintln!("error: could not revert `{}`: {e}", op.describe());
                }
            }
            return ExitStatus::Failure;
        }
    }
    let changes = if plan.ops.len() == 1 { "1 change".to_string() } else { format!("{} changes", plan.ops.len()) };
    eprintln!("applied {changes} to node `{}` in {:.2} s", compiled.node().name.value, started.elapsed().as_secs_f64());
    ExitStatus::Success
}

/// Waits for `apply --confirm-ok` (it removes the confirmation file) or, on a terminal, for
/// Enter. Returns false when the time runs out.
fn wait_for_confirmation(args: &NodeArgs, timeout: Duration) -> bool {
    let file = confirm_file(args);
    if std::fs::write(&file, std::process::id().to_string()).is_err() {
        eprintln!("warning: cannot write {}; only a keypress can confirm", file.display());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    if std::io::stdin().is_terminal() {
        eprintln!("press Enter within {} s to keep the change (or run `netcfg apply --confirm-ok`)", timeout.as_secs());
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_ok() {
                let _ = tx.send(());
            }
        });
    } else {
        eprintln!("run `netcfg apply --confirm-ok` within {} s to keep the change", timeout.as_secs());
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !file.exists() || rx.try_recv().is_ok() {
            let _ = std::fs::remove_file(&file);
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&file);
    false
}
