//! `netcfg plan FILE... --node N`: what netcfg would apply on a node — per namespace the
//! desired state and the nftables transaction. Refuses specs with errors (exit 1); needs no root.

use crate::exit_status::ExitStatus;
use crate::load;
use crate::report::{self, human, Findings, Format};
use netcfg_backends::plan::{plan_node, NodePlan};
use netcfg_lang::diagnostic::sort_diagnostics;
use netcfg_lang::Severity;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Spec files; several files form one fleet. `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    includes: load::IncludeArgs,
    /// The node to plan. Default: the only node, or the node named like this machine's host
    /// name; with --out, every node.
    #[arg(long)]
    node: Option<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Also write per-node artifacts for review: DIR/NODE/plan.json and DIR/NODE/NETNS.nft.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Diff against the node's live state (needs root): the ops `apply` would run.
    #[arg(long)]
    live: bool,
    /// The node is the namespace /run/netns/ROOT (its namespaces /run/netns/ROOT-NAME);
    /// implies --live.
    #[arg(long, value_name = "ROOT")]
    netns_root: Option<String>,
    /// With a live plan: exit 0 when there is nothing to do, 1 on errors, 2 when there are
    /// changes (terraform's convention).
    #[arg(long)]
    detailed_exitcode: bool,
    /// How long to wait for another netcfg holding the node's lock (only taken to finish an
    /// interrupted apply first).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    lock_timeout: u64,
}

/// The live plan: a terraform-style diff (`+`, `~`, `-` with the disruption class).
fn run_live(args: Args) -> ExitStatus {
    let node_args = crate::target::NodeArgs {
        files: args.files,
        node: args.node,
        netns_root: args.netns_root,
        lock_timeout: args.lock_timeout,
        includes: args.includes,
    };
    let compiled = match crate::target::compile(&node_args, false) {
        Ok(c) => c,
        Err(status) => return status,
    };
    // A plan from the half state of an apply that never ended would be misleading.
    let _lock = match crate::target::recover(&node_args) {
        Ok(lock) => lock,
        Err(status) => return status,
    };
    let desired = match crate::target::desired(&compiled) {
        Ok(d) => d,
        Err(status) => return status,
    };
    let mut session = match crate::target::open_session(&node_args) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let plan = match crate::target::live_plan(&compiled, &mut session, &desired) {
        Ok((p, _)) => p,
        Err(status) => return status,
    };
    let text = match args.format {
        PlanFormat::Text if plan.is_empty() => format!("no changes: node `{}` matches the spec\n", plan.node),
        PlanFormat::Text => plan.to_text(),
        PlanFormat::Json => serde_json::to_string_pretty(&plan.to_json()).expect("JSON values serialize") + "\n",
    };
    if let Err(status) = super::write_stdout(&text) {
        return status;
    }
    match (args.detailed_exitcode, plan.is_empty()) {
        (true, false) => ExitStatus::Changes,
        _ => ExitStatus::Success,
    }
}

pub fn run(args: Args) -> ExitStatus {
    if args.live || args.netns_root.is_some() {
        let detailed = args.detailed_exitcode;
        return match run_live(args) {
            // terraform: 0 no changes, 1 error, 2 changes.
            ExitStatus::Error if detailed => ExitStatus::Failure,
            status => status,
        };
    }
    if args.detailed_exitcode {
        eprintln!("error: --detailed-exitcode needs a live plan (--live or --netns-root)");
        return ExitStatus::Failure;
    }
    let parsed = match load::load_or_report(&args.files, &args.includes) {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    let compiled = netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics);
    let mut diagnostics = parsed.diagnostics.clone();
    diagnostics.extend(compiled.diagnostics);
    let mut diagnostics = crate::lint::suppress(&parsed.sources, diagnostics).diagnostics;
    let nodes: Vec<_> = match &args.node {
        Some(name) => match compiled.fleet.nodes.iter().find(|n| &n.name.value == name) {
            Some(n) => vec![n],
            None if has_errors(&diagnostics) => Vec::new(),
            None => {
                let names: Vec<&str> = compiled.fleet.nodes.iter().map(|n| n.name.value.as_str()).collect();
                eprintln!("error: no node `{name}` in the spec (nodes: {})", names.join(", "));
                return ExitStatus::Error;
            }
        },
        None if compiled.fleet.nodes.len() == 1 || args.out.is_some() => compiled.fleet.nodes.iter().collect(),
        None if has_errors(&diagnostics) => Vec::new(),
        None => {
            let host = crate::target::host_name();
            if let Some(n) = compiled.fleet.nodes.iter().find(|n| Some(&n.name.value) == host.as_ref()) {
                vec![n]
            } else {
                let names: Vec<&str> = compiled.fleet.nodes.iter().map(|n| n.name.value.as_str()).collect();
                if names.is_empty() {
                    eprintln!("error: the spec declares no node");
                } else {
                    eprintln!(
                        "error: the spec has several nodes and none is named like this host ({}); pick one with \
                         --node ({})",
                        host.map_or("no host name".to_string(), |h| format!("`{h}`")),
                        names.join(", ")
                    );
                }
                return ExitStatus::Error;
            }
        }
    };
    let plans: Vec<NodePlan> = nodes.iter().map(|n| plan_node(n, &mut diagnostics)).collect();
    sort_diagnostics(&mut diagnostics);
    if !diagnostics.is_empty() {
        // Findings go to stderr so stdout stays the plan; errors stop here.
        let findings = Findings { diagnostics: &diagnostics, sources: &parsed.sources, suppressed: &[] };
        eprint!("{}", report::render(Format::Human, &findings, &human::Style::stderr()));
        if has_errors(&diagnostics) {
            return ExitStatus::Failure;
        }
    }
    if let Some(dir) = &args.out {
        if let Err(e) = write_artifacts(dir, &plans) {
            eprintln!("error: cannot write to {}: {e}", dir.display());
            return ExitStatus::Error;
        }
    }
    let text = match args.format {
        PlanFormat::Text => plans.iter().map(NodePlan::to_text).collect::<Vec<_>>().join("\n"),
        PlanFormat::Json => {
            let docs: Vec<_> = plans.iter().map(NodePlan::to_json).collect();
            let doc =
                if docs.len() == 1 { docs.into_iter().next().expect("one") } else { serde_json::Value::Array(docs) };
            serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
        }
    };
    match super::write_stdout(&text) {
        Ok(()) => ExitStatus::Success,
        Err(status) => status,
    }
}

fn has_errors(d: &[netcfg_lang::Diagnostic]) -> bool {
    d.iter().any(|d| d.severity == Severity::Error)
}

fn write_artifacts(dir: &std::path::Path, plans: &[NodePlan]) -> std::io::Result<()> {
    for plan in plans {
        let node_dir = dir.join(&plan.node);
        std::fs::create_dir_all(&node_dir)?;
        let json = serde_json::to_string_pretty(&plan.to_json()).expect("JSON values serialize") + "\n";
        std::fs::write(node_dir.join("plan.json"), json)?;
        for (ns, script) in &plan.nft {
            let file = if ns == "@host" { "host.nft".to_string() } else { format!("netns-{ns}.nft") };
            std::fs::write(node_dir.join(file), &script.text)?;
        }
    }
    Ok(())
}
