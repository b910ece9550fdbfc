//! The `netcfg` command line. This file only parses arguments and dispatches: each command
//! lives in one file under `cmd/`, and adding one is that file plus one arm below.

mod canonical;
mod cmd;
mod exit_status;
#[cfg(test)]
mod fuzz;
mod heap;
mod lint;
mod load;
mod lsp;
mod report;
mod saved_plan;
mod signals;
mod target;
mod topology;

use clap::{CommandFactory, Parser, Subcommand};
use exit_status::ExitStatus;

/// Declarative network config compiler for Linux nodes.
#[derive(Parser)]
#[command(name = "netcfg", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  netcfg check specs/                          lint every spec under specs/, each on its own
  netcfg check --fleet a.kdl b.kdl             check two files as one fleet
  netcfg plan fleet.kdl --node worker-1        what apply would do on a fresh worker-1
  netcfg plan --live fleet.kdl                 the diff against this machine (node: host name)
  sudo netcfg apply fleet.kdl --confirm 60     apply, revert unless confirmed in 60 s
  netcfg verify fleet.kdl                      exit 1 when the node drifted
  netcfg completions bash > /etc/bash_completion.d/netcfg

The language reference is spec.md; every diagnostic code has a section there.";

#[derive(Subcommand)]
enum Command {
    /// Lint spec files and directories: report every finding (no root, no kernel needed).
    #[command(after_help = cmd::check::EXAMPLES)]
    Check(cmd::check::Args),
    /// Rewrite spec files in the canonical layout.
    #[command(
        after_help = "Examples:\n  netcfg fmt specs/*.kdl\n  netcfg fmt --check specs/*.kdl     exit 1 when a file would change"
    )]
    Fmt(cmd::fmt::Args),
    /// Print what netcfg would apply on a node: desired state and nftables transactions, or
    /// (with --live / --netns-root) the diff against the node's live state.
    #[command(
        after_help = "Examples:\n  netcfg plan fleet.kdl --node worker-1\n  netcfg plan fleet.kdl --out plans/      every node, for review in git\n  netcfg plan --live fleet.kdl --detailed-exitcode   exit 2 when there are changes"
    )]
    Plan(cmd::plan::Args),
    /// Make a node match the spec: one plan, rolled back on any failure.
    #[command(
        after_help = "Examples:\n  netcfg apply fleet.kdl                  the node named like this host\n  netcfg apply fleet.kdl --confirm 60     revert unless `netcfg apply --confirm-ok` in 60 s\n  ip netns add lab && netcfg apply spec.kdl --netns-root lab   try it in a namespace"
    )]
    Apply(cmd::apply::Args),
    /// Compare a node's live state with the spec (exit 1 on drift).
    #[command(
        after_help = "Examples:\n  netcfg verify fleet.kdl                 exit 0 in sync, 1 drift, 2 cannot read the node\n  netcfg verify fleet.kdl --format json"
    )]
    Verify(cmd::verify::Args),
    /// Remove everything netcfg owns on a node (its links, routes, nftables table and the
    /// namespaces it created); nothing else is touched.
    #[command(after_help = cmd::destroy::EXAMPLES)]
    Destroy(cmd::destroy::Args),
    /// Draw the topology of a fleet or node (DOT, or SVG/PNG through Graphviz).
    #[command(after_help = cmd::graph::EXAMPLES)]
    Graph(cmd::graph::Args),
    /// Walk one packet and its reply through the spec offline (routes, neighbours, bridges,
    /// rp_filter, the nftables ruleset, NAT and conntrack), each step on its spec line.
    #[command(after_help = cmd::trace::EXAMPLES)]
    Trace(cmd::trace::Args),
    /// Run the language server on stdin/stdout (for editors: diagnostics, go to definition,
    /// completion, formatting).
    Lsp,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  netcfg completions bash > /etc/bash_completion.d/netcfg\n  netcfg completions zsh > \"${fpath[1]}/_netcfg\"\n  netcfg completions fish > ~/.config/fish/completions/netcfg.fish"
    )]
    Completions(cmd::completions::Args),
    /// Print the man page, or write one per command to a directory.
    #[command(hide = true)]
    Man(cmd::man::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Lsp) {
        heap::tune_for_batch();
    }
    let status: ExitStatus = match cli.command {
        Command::Check(args) => cmd::check::run(args),
        Command::Fmt(args) => cmd::fmt::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Destroy(args) => cmd::destroy::run(args),
        Command::Graph(args) => cmd::graph::run(args),
        Command::Trace(args) => cmd::trace::run(args),
        Command::Lsp => cmd::lsp::run(),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Man(args) => cmd::man::run(args, Cli::command()),
    };
    status.into()
}
