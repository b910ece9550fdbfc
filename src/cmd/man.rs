//! `netcfg man [--out-dir DIR]`: man pages generated from the argument definitions by
//! `clap_mangen`: `netcfg(1)` on stdout, or `netcfg.1` and one `netcfg-COMMAND.1` per command
//! written to DIR (for packagers: `netcfg man --out-dir /usr/share/man/man1`).

use crate::exit_status::ExitStatus;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Write netcfg.1 and netcfg-COMMAND.1 here instead of printing netcfg.1.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn run(args: Args, command: clap::Command) -> ExitStatus {
    let Some(dir) = args.out_dir else {
        let mut out = Vec::new();
        if let Err(e) = clap_mangen::Man::new(command).render(&mut out) {
            eprintln!("error: cannot render the man page: {e}");
            return ExitStatus::Error;
        }
        return match super::write_stdout(&String::from_utf8_lossy(&out)) {
            Ok(()) => ExitStatus::Success,
            Err(status) => status,
        };
    };
    match write_all(&dir, command) {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: cannot write man pages to `{}`: {e}", dir.display());
            ExitStatus::Error
        }
    }
}

fn write_all(dir: &std::path::Path, command: clap::Command) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)
}
