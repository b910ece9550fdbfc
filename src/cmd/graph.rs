//! `netcfg graph FILE... [--node N] [--format dot|svg|png] [--out FILE]`: the topology of a
//! fleet or one node as a picture. DOT is built by [`crate::topology`]; SVG and PNG come from
//! Graphviz's `dot`, run as a child process (there is no maintained Rust Graphviz layout engine
//! to call instead).

use crate::exit_status::ExitStatus;
use crate::load;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz source (needs nothing installed).
    Dot,
    /// SVG, rendered by Graphviz `dot`.
    Svg,
    /// PNG, rendered by Graphviz `dot`.
    Png,
}

#[derive(clap::Args)]
pub struct Args {
    /// Spec files; several files form one fleet. `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    includes: load::IncludeArgs,
    /// Draw only this node (default: every node of the fleet).
    #[arg(long)]
    node: Option<String>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    /// Write the picture here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub const EXAMPLES: &str = "\
Examples:
  netcfg graph fleet.kdl | dot -Tsvg > fleet.svg
  netcfg graph fleet.kdl --node worker-1 --format png --out worker-1.png";

pub fn run(args: Args) -> ExitStatus {
    let (_parsed, compiled) = match load::compile_noting_errors(&args.files, &args.includes, "the graph") {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    if let Some(name) = &args.node {
        if !compiled.fleet.nodes.iter().any(|n| &n.name.value == name) {
            let names: Vec<&str> = compiled.fleet.nodes.iter().map(|n| n.name.value.as_str()).collect();
            eprintln!("error: no node `{name}` in the spec (nodes: {})", names.join(", "));
            return ExitStatus::Error;
        }
    }
    let dot = crate::topology::dot(&compiled.fleet, |n| args.node.as_ref().is_none_or(|want| &n.name.value == want));
    let bytes = match args.format {
        GraphFormat::Dot => dot.into_bytes(),
        GraphFormat::Svg => match render(&dot, "svg") {
            Ok(b) => b,
            Err(status) => return status,
        },
        GraphFormat::Png => match render(&dot, "png") {
            Ok(b) => b,
            Err(status) => return status,
        },
    };
    let written = match &args.out {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write to stdout: {e}")),
                _ => Ok(()),
            }
        }
    };
    match written {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: {e}");
            ExitStatus::Error
        }
    }
}

/// Runs `dot -T<format>` on the DOT text.
fn render(dot: &str, format: &str) -> Result<Vec<u8>, ExitStatus> {
    let child = Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: cannot run Graphviz `dot` ({e}); install it (`apt-get install graphviz`) or use `--format dot`"
            );
            return Err(ExitStatus::Error);
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = dot.to_string();
    // Feed stdin from a thread so a large picture on stdout cannot deadlock the pipe.
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output();
    let _ = feeder.join();
    match out {
        Ok(out) if out.status.success() => Ok(out.stdout),
        Ok(out) => {
            eprintln!("error: Graphviz `dot` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            Err(ExitStatus::Error)
        }
        Err(e) => {
            eprintln!("error: Graphviz `dot` failed: {e}");
            Err(ExitStatus::Error)
        }
    }
}
