//! The process exit status every command returns, and its numeric code.

/// How a command ended. The numeric codes are part of the CLI's contract (CI pipelines and
/// readiness probes read them), so they live in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: nothing to report (no findings; files already formatted).
    Success,
    /// 1: the command worked and found something: errors (or warnings with `--deny-warnings`),
    /// or files that `fmt --check` would change.
    Failure,
    /// 2: the command could not do its job: bad usage, unreadable files, internal errors.
    /// (clap exits with 2 on usage errors by itself.)
    Error,
    /// 2 as well, for `plan --detailed-exitcode` only (terraform's convention): the plan has
    /// changes.
    Changes,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error | ExitStatus::Changes => 2,
        })
    }
}
