//! `netcfg apply FILE --node N`: make the node match the spec. Refuses specs with check errors
//! (unless `--allow-findings`), prints the plan, executes exactly it, rolls back on any failure
//! and verifies the result. `--confirm SECONDS` reverts unless confirmed in time (by a keypress
//! on the terminal or `netcfg apply --confirm-ok` from another shell), like `netplan try`.

use crate::exit_status::ExitStatus;
use crate::target::{self, NodeArgs, NodeLock};
use netcfg_backends::netlink::Options;
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
        // The file holds the waiting apply's pid; a file left by a killed apply confirms nothing.
        let file = confirm_file(&args.target);
        let waiting = std::fs::read_to_string(&file)
            .ok()
            .and_then(|p| p.trim().parse::<libc::pid_t>().ok())
            // SAFETY: signal 0 only checks that the process exists.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !waiting {
            let _ = std::fs::remove_file(&file);
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
    let desired = match target::desired(&compiled) {
        Ok(d) => d,
        Err(status) => return status,
    };
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

/// Set by SIGHUP/SIGINT/SIGTERM while waiting for confirmation: a dropped SSH session or a
/// Ctrl-C means "not confirmed", so the change is reverted rather than left in place.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Waits for `apply --confirm-ok` (it removes the confirmation file) or, on a terminal, for
/// Enter. Returns false when the time runs out, the terminal closes, or a signal arrives.
fn wait_for_confirmation(args: &NodeArgs, timeout: Duration) -> bool {
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let file = confirm_file(args);
    let file_ok = std::fs::write(&file, std::process::id().to_string()).is_ok();
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
    while Instant::now() < deadline && !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        if (file_ok && !file.exists()) || rx.try_recv().is_ok() {
            confirmed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&file);
    confirmed
}
