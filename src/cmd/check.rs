//! `netcfg check PATH...`: lint mode. Each spec file (a file argument, or a `*.kdl` entry point
//! found in a directory argument) is checked as its own spec with its includes; `--fleet`
//! checks them all as one fleet instead. Findings go to stdout (the exit status carries the
//! verdict); unreadable files go to stderr.

use crate::exit_status::ExitStatus;
use crate::lint;
use crate::load;
use crate::report::{self, human, Findings, Format};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  netcfg check specs/                      every *.kdl under specs/, each file on its own
  netcfg check --fleet nodes/*.kdl         the files as one fleet (cross-node checks)
  netcfg check --format sarif --exit-zero specs/ > netcfg.sarif
  netcfg check --format github specs/      annotations on a GitHub pull request
  netcfg check --format concise spec.kdl   file:line:col lines for vim/emacs quickfix

Silence one finding in the spec, with a reason:
  // netcfg-allow(missing-hairpin): pod-b never connects to its own service";

#[derive(clap::Args)]
pub struct Args {
    /// Spec files or directories (searched recursively for `*.kdl`, skipping fragments:
    /// `*.inc.kdl` and anything below a `common` or `templates` directory). `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Check all the files as one fleet (cross-node checks see every node), instead of each
    /// file as its own spec.
    #[arg(long)]
    fleet: bool,
    #[command(flatten)]
    includes: load::IncludeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Exit with 1 on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Exit with 0 even when there are findings (unreadable files still exit 2): for CI jobs
    /// that upload the report in a later step.
    #[arg(long, conflicts_with = "deny_warnings")]
    exit_zero: bool,
}

pub fn run(args: Args) -> ExitStatus {
    let files = match lint::entry_points(&args.paths) {
        Ok(files) => files,
        Err(errors) => return report_load_errors(errors),
    };
    let specs: Vec<Vec<PathBuf>> = if args.fleet { vec![files] } else { files.into_iter().map(|f| vec![f]).collect() };
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for spec in &specs {
        match lint::check(spec, &args.includes) {
            Ok(unit) => units.push(unit),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return report_load_errors(errors);
    }
    let all = lint::join(lint::drop_included(units));
    let findings = Findings { diagnostics: &all.diagnostics, sources: &all.sources, suppressed: &all.suppressed };
    if let Err(status) = super::write_stdout(&report::render(args.format, &findings, &human::Style::stdout())) {
        return status;
    }
    if args.exit_zero {
        ExitStatus::Success
    } else if findings.errors() > 0 || (args.deny_warnings && findings.warnings() > 0) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

fn report_load_errors(errors: Vec<crate::load::LoadError>) -> ExitStatus {
    for e in errors {
        eprintln!("error: {e}");
    }
    ExitStatus::Error
}
