//! One module per subcommand: its clap `Args` and a `run(Args) -> ExitStatus`.

pub mod apply;
pub mod check;
pub mod completions;
pub mod destroy;
pub mod fmt;
pub mod graph;
pub mod lsp;
pub mod man;
pub mod plan;
pub mod trace;
pub mod verify;

use crate::exit_status::ExitStatus;
use std::io::Write;

/// Writes command output to stdout. A closed pipe (`netcfg check … | head`) is not an error;
/// any other write failure is reported and ends the command with status 2 instead of a panic.
pub(crate) fn write_stdout(text: &str) -> Result<(), ExitStatus> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            Err(ExitStatus::Error)
        }
    }
}
