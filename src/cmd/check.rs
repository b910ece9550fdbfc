//! `netcfg check FILE...`: parse, resolve and check the specs as one fleet, print every finding.
//! Findings go to stdout (the exit status carries the verdict); unreadable files go to stderr.

use crate::exit_status::ExitStatus;
use crate::load;
use crate::report::{self, human, Findings, Format};
use netcfg_lang::diagnostic::sort_diagnostics;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Spec files; several files form one fleet. `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    includes: load::IncludeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Exit with 1 on warnings too.
    #[arg(long)]
    deny_warnings: bool,
}

pub fn run(args: Args) -> ExitStatus {
    let parsed = match load::load_or_report(&args.files, &args.includes) {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    let mut diagnostics = parsed.diagnostics;
    diagnostics.extend(netcfg_compiler::compile(&parsed.spec).diagnostics);
    sort_diagnostics(&mut diagnostics);
    let findings = Findings { diagnostics: &diagnostics, sources: &parsed.sources };
    if let Err(status) = super::write_stdout(&report::render(args.format, &findings, &human::Style::stdout())) {
        return status;
    }
    if findings.errors() > 0 || (args.deny_warnings && findings.warnings() > 0) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}
