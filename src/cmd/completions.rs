//! `netcfg completions SHELL`: the shell completion script, generated from the argument
//! definitions by `clap_complete` (so it can never disagree with the real flags).

use crate::exit_status::ExitStatus;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: Args, mut command: clap::Command) -> ExitStatus {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "netcfg", &mut out);
    match super::write_stdout(&String::from_utf8_lossy(&out)) {
        Ok(()) => ExitStatus::Success,
        Err(status) => status,
    }
}
