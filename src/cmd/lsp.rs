//! `netcfg lsp`: the language server over stdio (see [`crate::lsp`]).

use crate::exit_status::ExitStatus;

pub fn run() -> ExitStatus {
    match crate::lsp::run() {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: language server: {e}");
            ExitStatus::Error
        }
    }
}
