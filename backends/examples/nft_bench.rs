//! Benchmark: load time of the generated nftables ruleset for a node with N services (one DNAT
//! map keyed on `daddr . l4proto . dport . numgen`, as netcfg emits it) against two baselines
//! (one rule per service, and kube-proxy's verdict map to per-service chains), all loaded by
//! the real `nft -f` into fresh scratch namespaces in the same run.
//!
//! Run as root: `cargo run --release -p netcfg-backends --example nft_bench -- 10000`

use netcfg_backends::nftables;
use std::fmt::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spec(services: usize) -> String {
    let mut s = String::from("node \"big\" {\n    forwarding #true\n");
    for i in 0..services {
        let _ = writeln!(
            s,
            "    service \"s{i}\" vip=\"10.{}.{}.{}\" port=80 {{ backend \"172.16.{}.{}:8080\"; backend \"172.17.{}.{}:8080\"; }}",
            96 + i / 65536,
            (i / 256) % 256,
            i % 256,
            (i / 250) % 250,
            1 + i % 250,
            (i / 250) % 250,
            1 + i % 250
        );
    }
    s.push_str("}\n");
    s
}

/// Baseline 1, kube-proxy's nftables layout: a verdict map to one chain per service, a
/// `numgen` verdict map to one chain per backend, which DNATs.
fn verdict_map_layout(node: &netcfg_compiler::ir::Node) -> String {
    let mut vmap = Vec::new();
    let mut chains = String::new();
    for (i, svc) in node.namespaces[0].services.iter().enumerate() {
        vmap.push(format!("{} . tcp . {} : goto svc{i}", svc.vip.value, svc.port.value));
        let total: u32 = svc.backends.iter().map(|b| b.weight).sum();
        let mut arms = Vec::new();
        let mut at = 0;
        for (j, b) in svc.backends.iter().enumerate() {
            arms.push(format!("{}-{} : goto svc{i}ep{j}", at, at + b.weight - 1));
            at += b.weight;
            let _ =
                writeln!(chains, "\tchain svc{i}ep{j} {{\n\t\tmeta l4proto tcp dnat ip to {}:{}\n\t}}", b.addr, b.port);
        }
        let _ =
            writeln!(chains, "\tchain svc{i} {{\n\t\tnumgen random mod {total} vmap {{ {} }}\n\t}}", arms.join(", "));
    }
    let mut s = String::from("table inet netcfg {}\ndelete table inet netcfg\ntable inet netcfg {\n");
    s.push_str("\tmap services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n");
    s.push_str(&chains);
    s.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    s.push_str("\t\tip daddr . meta l4proto . th dport vmap @services\n\t}\n}\n");
    for chunk in vmap.chunks(1000) {
        let _ = writeln!(s, "add element inet netcfg services {{ {} }}", chunk.join(", "));
    }
    s
}

/// Baseline 2, the naive form: one rule per service in the prerouting chain, each going to a
/// chain that picks a backend.
fn rule_per_service(node: &netcfg_compiler::ir::Node) -> String {
    let mut s = String::from("table inet netcfg {}\ndelete table inet netcfg\ntable inet netcfg {\n");
    let mut rules = String::new();
    for (i, svc) in node.namespaces[0].services.iter().enumerate() {
        let n = svc.backends.len();
        let targets: Vec<String> =
            svc.backends.iter().enumerate().map(|(j, b)| format!("{j} : {} . {}", b.addr, b.port)).collect();
        let _ = writeln!(
            s,
            "\tchain svc{i} {{\n\t\tmeta l4proto tcp dnat ip addr . port to numgen random mod {n} map {{ {} }}\n\t}}",
            targets.join(", ")
        );
        let _ = writeln!(rules, "\t\tip daddr {} tcp dport {} goto svc{i}", svc.vip.value, svc.port.value);
    }
    s.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    s.push_str(&rules);
    s.push_str("\t}\n}\n");
    s
}

fn load(script: &str) -> Duration {
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", "cat > /tmp/.netcfg-bench.nft && s=$(date +%s%N) && nft -f /tmp/.netcfg-bench.nft && e=$(date +%s%N) && echo $((e - s))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft failed");
    Duration::from_nanos(String::from_utf8_lossy(&out.stdout).trim().parse().expect("nanoseconds"))
}

fn best_of(n: usize, script: &str) -> Duration {
    (0..n).map(|_| load(script)).min().unwrap()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let parsed = netcfg_lang::parse_str("bench.kdl", &spec(n));
    let t = Instant::now();
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diags = Vec::new();
    let rs = nftables::compile_node(&compiled.fleet.nodes[0], &mut diags).remove(0);
    let compile_time = t.elapsed();
    let node = &compiled.fleet.nodes[0];
    let vmap = verdict_map_layout(node);
    let naive = rule_per_service(node);
    let ours = best_of(runs, &rs.script.text);
    let base_vmap = best_of(runs, &vmap);
    let base_naive = best_of(runs, &naive);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("services: {n} (2 backends each), best of {runs} loads into fresh namespaces");
    println!("netcfg check+compile+render:                  {:9.1} ms", ms(compile_time));
    println!("nft -f netcfg (one DNAT map, no per-service chains): {:9.1} ms", ms(ours));
    println!(
        "nft -f verdict map + chain per service/backend:      {:9.1} ms  ({:.1}x netcfg)",
        ms(base_vmap),
        ms(base_vmap) / ms(ours)
    );
    println!(
        "nft -f one rule per service:                         {:9.1} ms  ({:.1}x netcfg)",
        ms(base_naive),
        ms(base_naive) / ms(ours)
    );
}
