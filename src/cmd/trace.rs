//! `netcfg trace FILE... --to ADDR[:PORT] [--node N] [--netns NS] [--in LINK --from ADDR]`:
//! walks one packet (and its reply) through the spec offline with `netcfg_compiler::trace`,
//! judged by the nftables ruleset apply would load (`nftables::eval`), and prints each step on
//! the spec text that decided it. Exit 0 when the packet and its reply arrive, 1 when one dies.

use crate::exit_status::ExitStatus;
use crate::load;
use netcfg_backends::nftables::eval::FleetRuleset;
use netcfg_compiler::model::{LinkRef, Model, NetnsRef};
use netcfg_compiler::trace::{Packet, Start, Step, StepVerdict, Trace, TraceConfig, Tracer, Walk};
use netcfg_lang::vocab::Proto;
use netcfg_lang::SourceMap;
use serde_json::json;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceProto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
}

#[derive(clap::Args)]
pub struct Args {
    /// Spec files; several files form one fleet. `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    includes: load::IncludeArgs,
    /// The node the packet starts on (default: the only node of the spec).
    #[arg(long)]
    node: Option<String>,
    /// The namespace it starts in (default: the node's host namespace).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// The packet arrives from outside on this link of the namespace (default: a process of
    /// the namespace sends it).
    #[arg(long = "in", value_name = "LINK")]
    in_link: Option<String>,
    /// Source address (default: the one the kernel would pick; required with --in).
    #[arg(long, value_name = "ADDR")]
    from: Option<IpAddr>,
    /// Destination: ADDR or ADDR:PORT (`[v6]:PORT`).
    #[arg(long, value_name = "ADDR[:PORT]")]
    to: String,
    #[arg(long, value_enum, default_value_t = TraceProto::Tcp)]
    proto: TraceProto,
    /// Destination port (overrides the one in --to).
    #[arg(long)]
    port: Option<u16>,
    /// Source port.
    #[arg(long, default_value_t = 40000)]
    sport: u16,
    /// Follow the packet onto other nodes of the fleet.
    #[arg(long)]
    fleet: bool,
    /// The random draw (0-65535) that picks a service backend by weight.
    #[arg(long, default_value_t = 0)]
    draw: u32,
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    format: TraceFormat,
}

pub const EXAMPLES: &str = "\
Examples:
  netcfg trace spec.kdl --netns pod-a --to 10.96.0.10:80          from a pod to a service
  netcfg trace spec.kdl --in eth0 --from 192.0.2.7 --to 10.0.0.11:22
  netcfg trace fleet.kdl --node worker-1 --fleet --to 10.244.2.2:8080 --format json";

fn parse_to(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some((a, None));
    }
    let (a, p) = s.rsplit_once(':')?;
    let a = a.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(a);
    Some((a.parse().ok()?, Some(p.parse().ok()?)))
}

pub fn run(args: Args) -> ExitStatus {
    let (parsed, compiled) = match load::compile_noting_errors(&args.files, &args.includes, "the trace") {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let fleet = &compiled.fleet;
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitStatus::Error
    };
    let node = match &args.node {
        Some(name) => fleet.nodes.iter().find(|n| &n.name.value == name),
        None if fleet.nodes.len() == 1 => fleet.nodes.first(),
        None => None,
    };
    let names = || fleet.nodes.iter().map(|n| n.name.value.as_str()).collect::<Vec<_>>().join(", ");
    let Some(node) = node else {
        return match &args.node {
            Some(name) => usage(format!("no node `{name}` in the spec (nodes: {})", names())),
            None => usage(format!("the spec has several nodes: pick one with --node ({})", names())),
        };
    };
    let netns = match &args.netns {
        None => node.namespaces.first().map(|n| n.id),
        Some(name) if name == netcfg_lang::vocab::NetnsName::HOST => node.namespaces.first().map(|n| n.id),
        Some(name) => node.find_netns(name).map(|n| n.id),
    };
    let Some(netns) = netns else {
        return usage(format!("no namespace `{}` on node `{}`", args.netns.as_deref().unwrap_or(""), node.name.value));
    };
    let ns = NetnsRef { node: node.id, netns };
    let Some((dst, port_in_to)) = parse_to(&args.to) else {
        return usage(format!("`{}` is not an address or ADDR:PORT", args.to));
    };
    let proto = match args.proto {
        TraceProto::Tcp => Proto::Tcp,
        TraceProto::Udp => Proto::Udp,
        TraceProto::Sctp => Proto::Sctp,
        TraceProto::Icmp => Proto::Icmp,
        TraceProto::Icmpv6 => Proto::Icmpv6,
    };
    let dport = args.port.or(port_in_to).unwrap_or(0);
    if dport == 0 && matches!(proto, Proto::Tcp | Proto::Udp | Proto::Sctp) {
        return usage("give a destination port (`--to ADDR:PORT` or `--port`)".into());
    }
    let model = Model::new(fleet);
    let ruleset = FleetRuleset::new(fleet);
    let tracer = Tracer::new(&model, &ruleset, TraceConfig { fleet: args.fleet, draw: args.draw % 65536 });
    let (start, src) = match &args.in_link {
        Some(name) => {
            let Some(link) = node.find_link(netns, name) else {
                return usage(format!("no link `{name}` in {}", node.describe_netns(netns)));
            };
            let Some(src) = args.from else {
                return usage("a packet arriving from outside (--in) needs a source address (--from)".into());
            };
            (Start::Arrive(LinkRef { node: node.id, link: link.id }), src)
        }
        None => match args.from.or_else(|| tracer.source_address(ns, dst)) {
            Some(src) => (Start::Local(ns), src),
            None => {
                return usage(format!(
                    "{} has no address to send from toward `{dst}` (give one with --from)",
                    node.describe_netns(netns)
                ))
            }
        },
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return usage("--from and --to must be of one address family".into());
    }
    let packet = Packet { src, dst, proto, sport: args.sport, dport };
    let trace = tracer.trace(start, packet);
    let out = match args.format {
        TraceFormat::Text => text(&trace, &model, &parsed.sources),
        TraceFormat::Json => {
            let mut s = serde_json::to_string_pretty(&to_json(&trace, &model, &parsed.sources)).expect("json");
            s.push('\n');
            s
        }
    };
    if let Err(status) = super::write_stdout(&out) {
        return status;
    }
    if trace.delivered() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}

fn location(sources: &SourceMap, span: Option<netcfg_lang::Span>) -> Option<(String, usize, usize)> {
    let span = span?;
    let (line, col) = sources.line_col(span.file, span.start);
    Some((sources.get(span.file).name.clone(), line, col))
}

fn ns_label(model: &Model, ns: NetnsRef) -> String {
    let node = model.node(ns.node);
    let name = node.netns(ns.netns).display_name();
    if model.fleet.nodes.len() > 1 {
        format!("{}/{name}", node.name.value)
    } else {
        name.to_string()
    }
}

fn text(trace: &Trace, model: &Model, sources: &SourceMap) -> String {
    let mut out = String::new();
    let walk = |title: &str, w: &Walk, out: &mut String| {
        out.push_str(&format!("{title}: {}\n", w.packet));
        for (i, s) in w.steps.iter().enumerate() {
            let mark = match s.verdict {
                StepVerdict::Pass => "",
                StepVerdict::Uncertain => " (uncertain)",
                StepVerdict::Delivered => " -> delivered",
                StepVerdict::Dropped => " -> DROPPED",
            };
            out.push_str(&format!(
                "  {:>2}. [{}] {}: {}{mark}\n",
                i + 1,
                ns_label(model, s.at),
                s.stage.keyword(),
                s.what
            ));
            if let Some(why) = &s.why {
                out.push_str(&format!("      why: {why}\n"));
            }
            if let Some((file, line, col)) = location(sources, s.span) {
                out.push_str(&format!("      at {file}:{line}:{col}\n"));
            }
        }
    };
    walk("forward", &trace.forward, &mut out);
    if let Some(r) = &trace.reply {
        out.push('\n');
        walk("reply", r, &mut out);
    }
    out.push('\n');
    out.push_str(&summary(trace, model));
    out.push('\n');
    out
}

fn summary(trace: &Trace, model: &Model) -> String {
    let died = |dir: &str, w: &Walk| {
        let (i, s) = w.steps.iter().enumerate().find(|(_, s)| s.verdict == StepVerdict::Dropped)?;
        Some(format!(
            "result: dropped at {dir} step {} ({} in `{}`): {}",
            i + 1,
            s.stage.keyword(),
            ns_label(model, s.at),
            match &s.why {
                Some(why) => format!("{}: {why}", s.what),
                None => s.what.clone(),
            }
        ))
    };
    if let Some(s) = died("forward", &trace.forward) {
        return s;
    }
    if let Some(s) = trace.reply.as_ref().and_then(|r| died("reply", r)) {
        return s;
    }
    let uncertain = trace.forward.uncertain() || trace.reply.as_ref().is_some_and(|r| r.uncertain());
    match (&trace.reply, uncertain) {
        (Some(_), false) => "result: delivered, and the reply comes back".into(),
        (Some(_), true) => "result: delivered, and the reply comes back (with uncertain steps, see above)".into(),
        (None, false) => "result: delivered (the reply is not traced beyond the spec)".into(),
        (None, true) => "result: delivered (with uncertain steps, see above)".into(),
    }
}

fn step_json(s: &Step, model: &Model, sources: &SourceMap) -> serde_json::Value {
    let node = model.node(s.at.node);
    let loc = location(sources, s.span);
    json!({
        "node": node.name.value,
        "netns": node.netns(s.at.netns).display_name(),
        "stage": s.stage.keyword(),
        "verdict": s.verdict.keyword(),
        "what": s.what,
        "why": s.why,
        "span": loc.map(|(file, line, column)| json!({"file": file, "line": line, "column": column})),
    })
}

fn walk_json(w: &Walk, model: &Model, sources: &SourceMap) -> serde_json::Value {
    json!({
        "packet": w.packet.to_string(),
        "outcome": match w.outcome {
            netcfg_compiler::trace::Outcome::Delivered => "delivered",
            netcfg_compiler::trace::Outcome::Dropped => "dropped",
        },
        "steps": w.steps.iter().map(|s| step_json(s, model, sources)).collect::<Vec<_>>(),
    })
}

fn to_json(trace: &Trace, model: &Model, sources: &SourceMap) -> serde_json::Value {
    json!({
        "delivered": trace.delivered(),
        "summary": summary(trace, model),
        "forward": walk_json(&trace.forward, model, sources),
        "reply": trace.reply.as_ref().map(|r| walk_json(r, model, sources)),
    })
}
