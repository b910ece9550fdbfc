//! `netcfg verify FILE --node N`: compare the live node (links, addresses, routes, neighbours,
//! sysctls and nftables table of every namespace) with the spec. Exit 0 in sync, 1 drift, 2
//! when the node cannot be read: usable as a readiness probe or a node gate.

use crate::exit_status::ExitStatus;
use crate::target::{self, NodeArgs};
use netcfg_backends::netlink::{drift_text, Options, PlanError};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: NodeArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

pub fn run(args: Args) -> ExitStatus {
    // A spec applied with --allow-findings can still be verified: findings are printed only.
    // A spec that cannot be used (syntax errors, no such node) is "cannot verify" (2), which a
    // readiness probe must not mistake for drift (1).
    let compiled = match target::compile(&args.target, true) {
        Ok(c) => c,
        Err(_) => return ExitStatus::Error,
    };
    let desired = match target::desired(&compiled) {
        Ok(d) => d,
        Err(_) => return ExitStatus::Error,
    };
    // The half state of an apply that never ended is restored first (and said so).
    let _lock = match target::recover(&args.target) {
        Ok(lock) => lock,
        Err(_) => return ExitStatus::Error,
    };
    let mut session = match target::open_session(&args.target) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let drift = match session.verify(&desired, Options::default()) {
        Ok(d) => d,
        // nft refused the spec's ruleset: the node cannot match this spec; nft's own words on
        // the spec text, and "cannot verify" (never "in sync").
        Err(PlanError::Rejected(d)) => {
            compiled.report(&d);
            eprintln!("error: cannot verify node `{}`: nft refuses its ruleset", compiled.node().name.value);
            return ExitStatus::Error;
        }
        Err(e) => {
            eprintln!("error: cannot read node `{}`: {e}", compiled.node().name.value);
            return ExitStatus::Error;
        }
    };
    let node = &compiled.node().name.value;
    let text = match args.format {
        VerifyFormat::Text if drift.is_empty() => format!("node `{node}` matches the spec\n"),
        VerifyFormat::Text => {
            let places = if drift.len() == 1 { "1 place".to_string() } else { format!("{} places", drift.len()) };
            format!("node `{node}` differs from the spec in {places}:\n{}", drift_text(&drift))
        }
        VerifyFormat::Json => {
            let doc = json!({
                "version": 1,
                "node": node,
                "in_sync": drift.is_empty(),
                "drift": drift.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
        }
    };
    if let Err(status) = super::write_stdout(&text) {
        return status;
    }
    if drift.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}
