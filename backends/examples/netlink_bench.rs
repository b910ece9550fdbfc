//! Benchmark of the netlink backend against `ip -batch` doing the same work, in one run, each
//! in a fresh namespace root: a node with a bridge, PAIRS veth pairs (one end a bridge port, no
//! IPv6 address so `addrgenmode none`) and ROUTES routes; then a no-op re-apply.
//! Needs root. `cargo run --release -p netcfg-backends --example netlink_bench [PAIRS] [ROUTES]`

use netcfg_backends::netlink::{self, NetnsMap, Options, Session};
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A namespace root with an `eth0` (a veth whose other end is in a LAN namespace).
fn root(name: &str) {
    sh(&["ip", "netns", "add", name]);
    sh(&["ip", "netns", "add", &format!("{name}-lan")]);
    sh(&[
        "ip",
        "link",
        "add",
        "eth0",
        "netns",
        name,
        "type",
        "veth",
        "peer",
        "name",
        "lan0",
        "netns",
        &format!("{name}-lan"),
    ]);
}

fn cleanup(name: &str) {
    for n in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let n = n.file_name().to_string_lossy().into_owned();
        if n == name || n.starts_with(&format!("{name}-")) {
            let _ = Command::new("ip").args(["netns", "del", &n]).status();
        }
    }
}

fn route_dst(i: usize) -> String {
    format!("172.{}.{}.0/24", 16 + i / 256, i % 256)
}

fn spec(pairs: usize, routes: usize) -> String {
    let mut s = String::from("node \"bench\" {\n    ethernet \"eth0\" {\n        address \"10.0.0.2/24\"\n    }\n");
    s.push_str("    bridge \"br0\" {\n        address \"10.128.0.1/16\"\n    }\n");
    for i in 0..pairs {
        let _ = writeln!(s, "    veth \"va{i}\" master=\"br0\" {{\n        peer \"vb{i}\"\n    }}");
    }
    for i in 0..routes {
        let _ = writeln!(s, "    route \"{}\" via=\"10.0.0.1\" dev=\"eth0\"", route_dst(i));
    }
    s.push_str("}\n");
    s
}

fn ip_batch(pairs: usize, routes: usize) -> String {
    let mut b = String::new();
    b.push_str("link set eth0 up\naddr add 10.0.0.2/24 dev eth0\nlink set lo up\n");
    b.push_str("link add br0 group 28259 type bridge\nlink set br0 addrgenmode none\nlink set br0 up\n");
    b.push_str("addr add 10.128.0.1/16 dev br0\n");
    for i in 0..pairs {
        let _ = writeln!(b, "link add va{i} group 28259 type veth peer name vb{i} group 28259");
        let _ = writeln!(b, "link set va{i} addrgenmode none\nlink set vb{i} addrgenmode none");
        let _ = writeln!(b, "link set va{i} master br0\nlink set va{i} up\nlink set vb{i} up");
    }
    for i in 0..routes {
        let _ = writeln!(b, "route add {} via 10.0.0.1 dev eth0 proto 110", route_dst(i));
    }
    b
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pairs = args.first().copied().unwrap_or(200);
    let routes = args.get(1).copied().unwrap_or(10_000);
    let pid = std::process::id();

    let src = spec(pairs, routes);
    let parsed = netcfg_lang::parse_str("bench.kdl", &src);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diags = Vec::new();
    let desired = netlink::desired(&compiled.fleet.nodes[0], &mut diags);

    // netcfg
    let ours = format!("ncbench-{pid}-nl");
    root(&ours);
    let mut s = Session::new(NetnsMap::rooted(&ours)).expect("runtime");
    let opts = Options { nft: false };
    let t = Instant::now();
    let plan = s.plan(&desired, opts).expect("plan");
    let t_plan = t.elapsed();
    let t = Instant::now();
    s.apply(&desired, &plan, opts).expect("apply");
    let t_apply = t.elapsed();
    let t = Instant::now();
    let again = s.plan(&desired, opts).expect("plan");
    assert!(again.is_empty(), "{}", again.to_text());
    s.apply(&desired, &again, opts).expect("no-op apply");
    let t_noop = t.elapsed();
    drop(s);
    cleanup(&ours);

    // ip -batch
    let theirs = format!("ncbench-{pid}-ip");
    root(&theirs);
    let file = std::env::temp_dir().join(format!("ncbench-{pid}.batch"));
    std::fs::write(&file, ip_batch(pairs, routes)).expect("write batch");
    let t = Instant::now();
    sh(&["ip", "-n", &theirs, "-batch", file.to_str().expect("utf-8")]);
    let t_ip = t.elapsed();
    let _ = std::fs::remove_file(&file);
    cleanup(&theirs);

    println!("node: {pairs} veth pairs, {routes} routes ({} ops)", plan.ops.len());
    println!("netcfg plan (dump + diff)          {}", secs(t_plan));
    println!("netcfg apply (+ read-back verify)  {}", secs(t_apply));
    println!("netcfg plan + apply                {}", secs(t_plan + t_apply));
    println!("ip -batch                          {}", secs(t_ip));
    println!("ratio netcfg / ip -batch           {:.2}", (t_plan + t_apply).as_secs_f64() / t_ip.as_secs_f64());
    println!("no-op re-apply (plan + apply)      {}", secs(t_noop));
}
