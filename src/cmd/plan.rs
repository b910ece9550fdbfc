//! `netcfg plan FILE... --node N`: what netcfg would apply on a node — per namespace the
//! desired state and the nftables transaction. Refuses specs with errors (exit 1); needs no root.

use crate::exit_status::ExitStatus;
use crate::load;
use crate::report::{self, human, Findings, Format};
use crate::saved_plan::{SavedPlan, SpecRecord};
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
    /// Offline: write per-node artifacts for review, PATH/NODE/plan.json and PATH/NODE/NETNS.nft.
    /// With a live plan: save the plan to the file PATH, for `netcfg apply PATH`.
    #[arg(long, value_name = "PATH")]
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
        includes: args.includes.clone(),
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
    let (mut plan, snapshot) = match crate::target::live_plan(&compiled, &mut session, &desired) {
        Ok(p) => p,
        Err(status) => return status,
    };
    // Rule by rule and element by element, on the spec: what a reviewer reads.
    if let Err(e) = session.describe_nft(&desired, &mut plan) {
        return crate::target::plan_error(&compiled, e);
    }
    if let Some(path) = &args.out {
        let spec = match spec_record(&node_args, &compiled) {
            Ok(s) => s,
            Err(status) => return status,
        };
        let saved = SavedPlan::new(spec, node_args.netns_root.clone(), &desired, &plan, &snapshot);
        // Atomic (no half-written plan for a concurrent apply to read), 0600: it holds the node's state.
        let written = std::path::absolute(path)
            .and_then(|p| netcfg_backends::runfs::write_atomic(&p, saved.to_text().as_bytes()));
        if let Err(e) = written {
            eprintln!("error: cannot write the plan to {}: {e}", path.display());
            return ExitStatus::Error;
        }
        eprintln!("saved the plan to {}; apply exactly it with `netcfg apply {}`", path.display(), path.display());
    }
    let text = match args.format {
        PlanFormat::Text if plan.is_empty() => format!("no changes: node `{}` matches the spec\n", plan.node),
        PlanFormat::Text => report::plan::render(&plan, &compiled.parsed.sources, &human::Style::stdout()),
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
            let file = if ns == netcfg_lang::vocab::NetnsName::HOST {
                "host.nft".to_string()
            } else {
                format!("netns-{ns}.nft")
            };
            std::fs::write(node_dir.join(file), &script.text)?;
        }
    }
    Ok(())
}

/// What a saved plan records about its spec: absolute paths (so `apply FILE` works from any
/// directory) and the hash of everything read. A spec on stdin cannot be read again: refused.
fn spec_record(args: &crate::target::NodeArgs, compiled: &crate::target::Compiled) -> Result<SpecRecord, ExitStatus> {
    let absolute = |p: &PathBuf| {
        std::path::absolute(p).map_err(|e| {
            eprintln!("error: cannot resolve {}: {e}", p.display());
            ExitStatus::Error
        })
    };
    if args.files.iter().any(|f| f.as_os_str() == "-") {
        eprintln!("error: a saved plan needs its spec in files: `apply` reads them again (stdin cannot be)");
        return Err(ExitStatus::Error);
    }
    Ok(SpecRecord {
        files: args.files.iter().map(absolute).collect::<Result<_, _>>()?,
        include_roots: args.includes.include_roots.iter().map(absolute).collect::<Result<_, _>>()?,
        sha256: crate::saved_plan::spec_hash(&compiled.parsed.sources),
    })
}
