//! The `netcfg` command line. This file only parses arguments and dispatches: each command
//! lives in one file under `cmd/`, and adding one is that file plus one arm below.

mod canonical;
mod cmd;
mod exit_status;
#[cfg(test)]
mod fuzz;
mod load;
mod report;
mod target;

use clap::{Parser, Subcommand};
use exit_status::ExitStatus;

/// Declarative network config compiler for Linux nodes.
#[derive(Parser)]
#[command(name = "netcfg", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check spec files and report every finding (no root, no kernel needed).
    Check(cmd::check::Args),
    /// Rewrite spec files in the canonical layout.
    Fmt(cmd::fmt::Args),
    /// Print what netcfg would apply on a node: desired state and nftables transactions, or
    /// (with --live / --netns-root) the diff against the node's live state.
    Plan(cmd::plan::Args),
    /// Make a node match the spec: one plan, rolled back on any failure.
    Apply(cmd::apply::Args),
    /// Compare a node's live state with the spec (exit 1 on drift).
    Verify(cmd::verify::Args),
}

fn main() -> std::process::ExitCode {
    let status: ExitStatus = match Cli::parse().command {
        Command::Check(args) => cmd::check::run(args),
        Command::Fmt(args) => cmd::fmt::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Verify(args) => cmd::verify::run(args),
    };
    status.into()
}
