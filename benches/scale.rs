//! The scale harness (issue 12): netcfg against its baselines, side by side in one run, printing
//! each ratio with its goal and pass/fail. Goals live here, never in timed tests.
//!
//! `cargo bench --bench scale [-- ROW...]` (rows: plan, check-rules, check-services, apply,
//! noop-firewall, memory, connects, and issue 11's large inputs: large-rules, large-routes,
//! large-value, large-name; default all). The rows that touch the kernel (apply, connects, and the
//! `nft -c` baseline of plan) need root, nft and ip; they create their own namespaces
//! (`ncscale-PID-*`) and delete them, and traffic stays between namespaces the harness created.
//! Sizes: `NETCFG_SCALE=0.1` scales every input down (a quick run). `NETCFG_BENCH_BIN=PATH`
//! measures another netcfg binary (before/after a change). The `check` and `plan` rows
//! compare CPU time (user + system, from `wait4`), the apply and traffic rows wall time.

use netcfg_backends::netns;
use netcfg_backends::nftables::{self, exec};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The netcfg under test: this build's, or `NETCFG_BENCH_BIN` (another build, for before/after
/// figures of one change measured by the same harness in one sitting).
fn netcfg_bin() -> String {
    std::env::var("NETCFG_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_netcfg").to_string())
}

fn scale(n: usize) -> usize {
    let f: f64 = std::env::var("NETCFG_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    ((n as f64 * f) as usize).max(10)
}

// ---------------------------------------------------------------------------------------------
// Generators

/// A node whose input firewall has `n` rules: allows of TCP ports from single hosts, a deny of a
/// UDP port every 500 rules, and last the rule that admits the harness's own traffic (so a
/// connection walks the whole chain when the firewall is one rule per spec rule).
fn firewall_spec(n: usize) -> String {
    let mut s = String::from("node \"fw\" {\n    ethernet \"eth0\" {\n        address \"10.77.0.1/24\"\n    }\n");
    s.push_str("    firewall {\n        policy in=\"drop\"\n");
    for i in 0..n.saturating_sub(1) {
        if i % 500 == 499 {
            let _ = writeln!(s, "        deny in proto=\"udp\" port={}", 20000 + i / 500);
        } else {
            let _ = writeln!(
                s,
                "        allow in proto=\"tcp\" port={} from=\"172.{}.{}.{}\"",
                1000 + i % 7,
                16 + i / 65536,
                (i / 256) % 256,
                i % 256
            );
        }
    }
    s.push_str("        allow in proto=\"tcp\" port=5201 from=\"10.77.0.0/24\"\n    }\n}\n");
    s
}

fn services_spec(n: usize) -> String {
    let mut s = String::from("node \"svc\" {\n    forwarding #true\n");
    for i in 0..n {
        let _ = writeln!(
            s,
            "    service \"s{i}\" vip=\"10.{}.{}.{}\" port=80 {{\n        backend \"172.16.{}.{}:8080\"\n        backend \"172.17.{}.{}:8080\"\n    }}",
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

fn route_dst(i: usize) -> String {
    format!("172.{}.{}.0/24", 16 + i / 256, i % 256)
}

/// A bridge with `pairs` veth pairs (one end a bridge port) and `routes` routes via `eth0`.
fn links_spec(pairs: usize, routes: usize) -> String {
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

/// The `ip -batch` file that creates what `links_spec` declares, with netcfg's ownership marks.
fn links_batch(pairs: usize, routes: usize) -> String {
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

/// A fleet of `n` nodes, each a small router: a NIC, a bridge with four veth ports, a namespace,
/// routes, a firewall with zones, sets and rules, two services and masquerade.
fn fleet_spec(n: usize) -> String {
    let mut s = String::new();
    for k in 0..n {
        let (a, b) = (k / 256, k % 256);
        let _ = write!(
            s,
            r#"node "n{k}" {{
    ethernet "eth0" {{
        address "10.{a}.{b}.2/24"
        mtu 1500
    }}
    bridge "br0" {{
        address "100.{a}.{b}.1/24"
    }}
    forwarding #true
    bridge-netfilter #true
"#
        );
        for v in 0..4 {
            let _ = writeln!(
                s,
                "    netns \"ns{v}\" {{\n        veth \"eth0\" {{\n            address \"100.{a}.{b}.{}/24\"\n            peer \"p{v}\" netns=\"@host\" master=\"br0\" hairpin=#true\n        }}\n        route \"default\" via=\"100.{a}.{b}.1\" dev=\"eth0\"\n    }}",
                10 + v
            );
        }
        let _ = writeln!(s, "    route \"default\" via=\"10.{a}.{b}.1\" dev=\"eth0\"");
        for r in 0..8 {
            let _ = writeln!(s, "    route \"192.168.{r}.0/24\" via=\"10.{a}.{b}.1\" dev=\"eth0\"");
        }
        s.push_str("    firewall {\n        policy in=\"drop\" forward=\"drop\"\n");
        s.push_str("        zone \"lan\" \"br0\"\n        zone \"wan\" \"eth0\"\n");
        s.push_str("        set \"admins\" \"192.0.2.0/28\" \"2001:db8:1::/48\"\n");
        s.push_str("        allow in proto=\"tcp\" port=22 from=\"@admins\"\n");
        for r in 0..16 {
            let _ = writeln!(s, "        allow in proto=\"tcp\" port={} from=\"198.51.{r}.0/24\"", 8000 + r);
        }
        s.push_str("        allow forward from-zone=\"lan\" to-zone=\"wan\"\n    }\n");
        for v in 0..2 {
            let _ = writeln!(
                s,
                "    service \"web{v}\" vip=\"10.96.{a}.{}\" port=80 {{\n        backend \"100.{a}.{b}.{}:8080\"\n    }}",
                b * 2 % 256 + v,
                10 + v
            );
        }
        let _ = writeln!(s, "    masquerade from=\"100.{a}.{b}.0/24\" out=\"eth0\"\n}}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Running things

struct Run {
    time: Duration,
    /// User + system CPU time of the child and the children it waited for: the figure used
    /// for netcfg's own work, far less disturbed than wall time on a shared machine.
    cpu: Duration,
    /// Peak resident set of the child, KiB.
    max_rss_kib: i64,
    status: i32,
}

/// Runs a command to completion, timing it and reading its peak RSS from `wait4`'s rusage.
fn run(cmd: &mut Command) -> Run {
    let t = Instant::now();
    // Reaped by `wait4` below (which `Child::wait` cannot do: it returns no rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 reaps exactly our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(rc > 0, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Run { time: t.elapsed(), cpu, max_rss_kib: usage.ru_maxrss, status: libc::WEXITSTATUS(status) }
}

fn netcfg(args: &[&str]) -> Run {
    let r = run(Command::new(netcfg_bin()).args(args));
    assert!(r.status <= 1, "netcfg {args:?} exited {}", r.status);
    r
}

/// Best (shortest) of `n` runs.
fn best(n: usize, mut f: impl FnMut() -> Run) -> Run {
    (0..n).map(|_| f()).min_by_key(|r| r.time).expect("n > 0")
}

/// How many runs a short row takes the least of, per side: the machine this was measured on
/// ran the same `check` of 50,000 rules in 96 to 248 ms of CPU within a minute (and of 10,000
/// in 22 to 34 ms), so ten runs often missed a quiet spell on one side.
const SHORT_RUNS: usize = 25;

/// Least CPU of `n` runs of each of two commands, taking turns: both sides of a ratio sample
/// the same spells of the machine (run one after the other, a slow spell during either side's
/// ten runs moved the ratio by a third).
fn best_cpu_pair(n: usize, mut a: impl FnMut() -> Run, mut b: impl FnMut() -> Run) -> (Run, Run) {
    let (mut best_a, mut best_b): (Option<Run>, Option<Run>) = (None, None);
    for _ in 0..n {
        let r = a();
        if best_a.as_ref().is_none_or(|x| r.cpu < x.cpu) {
            best_a = Some(r);
        }
        let r = b();
        if best_b.as_ref().is_none_or(|x| r.cpu < x.cpu) {
            best_b = Some(r);
        }
    }
    (best_a.expect("n > 0"), best_b.expect("n > 0"))
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
        && Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success())
}

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("ncscale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Network namespaces created by the harness, all deleted on drop (also on panic).
struct Namespaces {
    prefix: String,
}

impl Namespaces {
    fn new(tag: &str) -> Namespaces {
        Namespaces { prefix: format!("ncscale-{}-{tag}", std::process::id()) }
    }

    fn add(&self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &full]);
        sh(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        full
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let n = n.file_name().to_string_lossy().into_owned();
            if n == self.prefix || n.starts_with(&format!("{}-", self.prefix)) {
                let _ = Command::new("ip").args(["netns", "del", &n]).status();
            }
        }
        // The node locks netcfg took for roots of ours (a lock file outlives its node: netcfg
        // never removes one, as another process may be waiting on it).
        for l in std::fs::read_dir("/run/netcfg").into_iter().flatten().flatten() {
            let l = l.file_name().to_string_lossy().into_owned();
            if l.starts_with(&format!("{}-", self.prefix)) && l.ends_with(".lock") {
                let _ = std::fs::remove_file(Path::new("/run/netcfg").join(&l));
            }
        }
    }
}

/// Waits (at most a minute) until the machine is quiet: less than a tenth of its CPU time busy
/// in each of three seconds running, as `/proc/stat` counts it (a namespace's teardown runs in
/// bursts).
fn settle() {
    fn busy_idle() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal
        let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
        (f.iter().take(8).sum::<u64>() - idle, idle)
    }
    let (start, mut quiet) = (Instant::now(), 0);
    while quiet < 3 && start.elapsed() < Duration::from_secs(60) {
        let (b0, i0) = busy_idle();
        std::thread::sleep(Duration::from_secs(1));
        let (b1, i1) = busy_idle();
        let (busy, total) = (b1 - b0, (b1 - b0) + (i1 - i0));
        quiet = if total > 0 && busy * 10 < total { quiet + 1 } else { 0 };
    }
}

/// `nft -c -f FILE` in a fresh scratch namespace (the CPU of `unshare` and of nft).
fn nft_check(file: &Path) -> Run {
    let r = run(Command::new("unshare").args(["--net", "nft", "-c", "-f"]).arg(file));
    assert_eq!(r.status, 0, "nft -c refused netcfg's output");
    r
}

// ---------------------------------------------------------------------------------------------
// The table

struct Row {
    what: String,
    netcfg: String,
    baseline: String,
    ratio: f64,
    goal: Goal,
}

#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, r: f64) -> bool {
        match self {
            Goal::AtMost(g) => r <= g,
            Goal::AtLeast(g) => r >= g,
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn row_plan(s: &Scratch, rows: &mut Vec<Row>) {
    let n = scale(10_000);
    let spec = s.file("fw.kdl", &firewall_spec(n));
    let spec = spec.to_str().expect("utf-8");
    if !is_root() {
        println!("plan: skipped the nft -c baseline (needs root, nft)");
        return;
    }
    let out = s.dir.join("out");
    netcfg(&["plan", spec, "--out", out.to_str().expect("utf-8")]);
    let script = out.join("fw").join("host.nft");
    // Runs of 20-140 ms: the least of `SHORT_RUNS` on both sides, taking turns (of 3, or of
    // 10 with one side's runs after the other's, the machine's noise decided).
    let (plan, nft) = best_cpu_pair(SHORT_RUNS, || netcfg(&["plan", spec]), || nft_check(&script));
    rows.push(Row {
        what: format!("`plan` of a node with {n} firewall rules / `nft -c` of its output (CPU)"),
        netcfg: secs(plan.cpu),
        baseline: secs(nft.cpu),
        ratio: ratio(plan.cpu, nft.cpu),
        goal: Goal::AtMost(0.3),
    });
}

fn row_check_rules(s: &Scratch, rows: &mut Vec<Row>) {
    let (small, big) = (scale(10_000), scale(50_000));
    let a = s.file("rules-small.kdl", &firewall_spec(small));
    let b = s.file("rules-big.kdl", &firewall_spec(big));
    let (ta, tb) = best_cpu_pair(
        SHORT_RUNS,
        || netcfg(&["check", a.to_str().expect("utf-8")]),
        || netcfg(&["check", b.to_str().expect("utf-8")]),
    );
    rows.push(Row {
        what: format!("`check` of {big} rules / of {small} rules (CPU)"),
        netcfg: secs(tb.cpu),
        baseline: secs(ta.cpu),
        ratio: ratio(tb.cpu, ta.cpu),
        goal: Goal::AtMost(6.0),
    });
}

fn row_check_services(s: &Scratch, rows: &mut Vec<Row>) {
    let (small, big) = (scale(10_000), scale(40_000));
    let a = s.file("svc-small.kdl", &services_spec(small));
    let b = s.file("svc-big.kdl", &services_spec(big));
    let (ta, tb) = best_cpu_pair(
        SHORT_RUNS,
        || netcfg(&["check", a.to_str().expect("utf-8")]),
        || netcfg(&["check", b.to_str().expect("utf-8")]),
    );
    rows.push(Row {
        what: format!("`check` of {big} services / of {small} (CPU)"),
        netcfg: secs(tb.cpu),
        baseline: secs(ta.cpu),
        ratio: ratio(tb.cpu, ta.cpu),
        goal: Goal::AtMost(5.0),
    });
}

fn row_memory(s: &Scratch, rows: &mut Vec<Row>) {
    let n = scale(1000);
    let text = fleet_spec(n);
    let f = s.file("fleet.kdl", &text);
    let r = netcfg(&["check", f.to_str().expect("utf-8")]);
    let size_kib = text.len() as f64 / 1024.0;
    rows.push(Row {
        what: format!("peak memory of `check` on a {n}-node fleet / spec size"),
        netcfg: format!("{:.1} MiB", r.max_rss_kib as f64 / 1024.0),
        baseline: format!("{:.1} MiB", size_kib / 1024.0),
        ratio: r.max_rss_kib as f64 / size_kib,
        goal: Goal::AtMost(20.0),
    });
}

/// Issue 11's large inputs: one spec each, as an attacker or a big site would write it.
fn large_input(row: &str, n: usize) -> (String, String) {
    match row {
        "large-rules" => (format!("{n} firewall rules"), firewall_spec(n)),
        "large-routes" => {
            let mut s = String::from("node \"r\" {\n    ethernet \"eth0\" {\n        address \"10.0.0.2/24\"\n    }\n");
            for i in 0..n {
                let dst = format!("{}.{}.{}.0/24", 20 + i / 65536, (i / 256) % 256, i % 256);
                let _ = writeln!(s, "    route \"{dst}\" via=\"10.0.0.1\" dev=\"eth0\"");
            }
            s.push_str("}\n");
            (format!("{n} routes"), s)
        }
        // A 10 MB string value where a number belongs: read whole, one `invalid-value`.
        "large-value" => {
            let v = "9".repeat(n);
            (format!("a {} MB value", n >> 20), format!("node \"v\" {{\n    bridge \"br0\" mtu=\"{v}\"\n}}\n"))
        }
        // A 10 MB unknown node name: one `unknown-node`, and no "did you mean" table of
        // 10M x 8 cells (1.6 GB with the old edit distance).
        "large-name" => {
            (format!("a {} MB unknown name", n >> 20), format!("node \"n\" {{\n    {} \"x\"\n}}\n", "b".repeat(n)))
        }
        _ => unreachable!("a large-input row"),
    }
}

/// `check` of a large input against parsing it alone (`fmt --check`: the lexer and parser, no
/// resolve, checks or rendering of findings), CPU and peak memory, and memory per input byte.
fn row_large(s: &Scratch, row: &str, rows: &mut Vec<Row>) {
    let n = match row {
        "large-value" | "large-name" => scale(10 << 20),
        _ => scale(100_000),
    };
    let (what, text) = large_input(row, n);
    let f = s.file(&format!("{row}.kdl"), &text);
    let f = f.to_str().expect("utf-8");
    let (check, parse) = best_cpu_pair(2, || netcfg(&["check", f]), || netcfg(&["fmt", "--check", f]));
    eprintln!(
        "{row}: {what} ({:.1} MiB): check {} CPU, {:.1} MiB peak; fmt --check {} CPU, {:.1} MiB peak",
        text.len() as f64 / (1 << 20) as f64,
        secs(check.cpu),
        check.max_rss_kib as f64 / 1024.0,
        secs(parse.cpu),
        parse.max_rss_kib as f64 / 1024.0
    );
    rows.push(Row {
        what: format!("`check` of {what} / `fmt --check` of it (parse only) (CPU)"),
        netcfg: secs(check.cpu),
        baseline: secs(parse.cpu),
        ratio: ratio(check.cpu, parse.cpu),
        goal: Goal::AtMost(if row.starts_with("large-r") { 15.0 } else { 3.0 }),
    });
    let size_kib = text.len() as f64 / 1024.0;
    rows.push(Row {
        what: format!("peak memory of `check` of {what} / spec size"),
        netcfg: format!("{:.1} MiB", check.max_rss_kib as f64 / 1024.0),
        baseline: format!("{:.1} MiB", size_kib / 1024.0),
        ratio: check.max_rss_kib as f64 / size_kib,
        goal: Goal::AtMost(20.0),
    });
}

/// A namespace root with an `eth0` (a veth whose other end is in a LAN namespace).
fn node_root(nss: &Namespaces, tag: &str) -> String {
    let root = nss.add(tag);
    let lan = nss.add(&format!("{tag}-lan"));
    sh(&["ip", "link", "add", "eth0", "netns", &root, "type", "veth", "peer", "name", "lan0", "netns", &lan]);
    root
}

/// Keeps in `least` the shorter of it and `r`.
fn keep_least(least: &mut Option<Run>, r: Run) {
    if least.as_ref().is_none_or(|l| r.time < l.time) {
        *least = Some(r);
    }
}

/// A first apply of `spec` to a node of its own (namespaces named after `tag`): the run, and
/// the node's namespace root.
fn first_apply(nss: &Namespaces, tag: &str, spec: &str) -> (Run, String) {
    let root = node_root(nss, tag);
    let r = netcfg(&["apply", spec, "--netns-root", &root]);
    assert_eq!(r.status, 0, "first apply failed");
    (r, root)
}

/// A no-op re-apply of `spec` on the node at `root`: on a quiet machine, as its baseline (the
/// first apply) is measured (a compiler build running beside it moved the least of five from
/// 0.036 to 0.062 s), and over a span of time like the baseline's rounds: the least of 20 runs,
/// two a second for ten seconds. The least of ten runs in a row (half a second) read 0.036 to
/// 0.050 s between harness runs minutes apart, the machine's slow spells outlasting the ten.
fn noop_apply(spec: &str, root: &str) -> Run {
    settle();
    best(10, || {
        std::thread::sleep(Duration::from_secs(1));
        best(2, || netcfg(&["apply", spec, "--netns-root", root]))
    })
}

fn row_apply(s: &Scratch, rows: &mut Vec<Row>) {
    if !is_root() {
        println!("apply: skipped (needs root, nft, ip)");
        return;
    }
    let (pairs, routes) = (scale(1000), scale(10_000));
    // Kernel-bound rows: they start on a quiet machine.
    settle();
    let spec = s.file("links.kdl", &links_spec(pairs, routes));
    let spec = spec.to_str().expect("utf-8");
    let nss = Namespaces::new("apply");
    let batch = s.file("links.batch", &links_batch(pairs, routes));
    // Five rounds, netcfg and `ip -batch` taking turns, each in namespaces of its own kept
    // until the end (deleting 2,000 links runs on in the kernel's background and would slow
    // the next round); the best of each. One run of each was the machine's noise, and the best
    // of three still moved the ratio from 0.60 to 0.77 between two runs minutes apart.
    let (mut first, mut ip, mut ours) = (None::<Run>, None::<Run>, None::<String>);
    for round in 0..5 {
        let (r, root) = first_apply(&nss, &format!("nc{round}"), spec);
        keep_least(&mut first, r);
        ours.get_or_insert(root);
        let theirs = node_root(&nss, &format!("ip{round}"));
        let r = run(Command::new("ip").args(["-n", &theirs, "-batch"]).arg(&batch));
        assert_eq!(r.status, 0, "ip -batch failed");
        keep_least(&mut ip, r);
    }
    let (first, ip, ours) = (first.expect("5 rounds"), ip.expect("5 rounds"), ours.expect("5 rounds"));
    let noop = noop_apply(spec, &ours);
    drop(nss);
    // Deleting 20,000 links goes on in the kernel's background for a while: the rows after
    // this one (a TCP rate among them) start once it is done.
    settle();
    rows.push(Row {
        what: format!("no-op re-apply / first apply, {pairs} veth pairs on a bridge + {routes} routes"),
        netcfg: secs(noop.time),
        baseline: secs(first.time),
        ratio: ratio(noop.time, first.time),
        goal: Goal::AtMost(0.05),
    });
    rows.push(Row {
        what: "apply of that node / `ip -batch` creating the same objects".into(),
        netcfg: secs(first.time),
        baseline: secs(ip.time),
        ratio: ratio(first.time, ip.time),
        goal: Goal::AtMost(0.67),
    });
}

/// The firewall node: a no-op re-apply against the first apply (the nft side of a no-op).
fn row_noop_firewall(s: &Scratch, rows: &mut Vec<Row>) {
    if !is_root() {
        println!("noop-firewall: skipped (needs root, nft, ip)");
        return;
    }
    let n = scale(10_000);
    let spec = s.file("fw-apply.kdl", &firewall_spec(n));
    let spec = spec.to_str().expect("utf-8");
    let nss = Namespaces::new("fwapply");
    // Measured as the link node's row is: the least of three first applies, each into
    // namespaces of its own, against [`noop_apply`] (one first apply against the least of
    // three no-ops in a row compared a typical run with a lucky one).
    settle();
    let (mut first, mut ours) = (None::<Run>, None::<String>);
    for round in 0..3 {
        let (r, root) = first_apply(&nss, &format!("nc{round}"), spec);
        keep_least(&mut first, r);
        ours.get_or_insert(root);
    }
    let (first, root) = (first.expect("3 rounds"), ours.expect("3 rounds"));
    let noop = noop_apply(spec, &root);
    drop(nss);
    rows.push(Row {
        what: format!("no-op re-apply / first apply, a node with {n} firewall rules"),
        netcfg: secs(noop.time),
        baseline: secs(first.time),
        ratio: ratio(noop.time, first.time),
        goal: Goal::AtMost(0.05),
    });
}

/// Connections per second from `client` to `addr` for `dur`. The server closes first (it keeps
/// the TIME_WAIT), the client reads to the end and closes, so client ports are reused at once.
fn connect_rate(client: &str, addr: SocketAddr, dur: Duration) -> f64 {
    netns::run_in(client, move || {
        let start = Instant::now();
        let mut n = 0u64;
        let mut buf = [0u8; 16];
        while start.elapsed() < dur {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
            while c.read(&mut buf).is_ok_and(|r| r > 0) {}
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
    .expect("client namespace")
}

fn row_connects(rows: &mut Vec<Row>) {
    if !is_root() {
        println!("connects: skipped (needs root, nft, ip)");
        return;
    }
    let n = scale(10_000);
    let parsed = netcfg_lang::parse_str("fw.kdl", &firewall_spec(n));
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diags = Vec::new();
    let ruleset = nftables::compile_node(&compiled.fleet.nodes[0], &mut diags).remove(0);

    // Two pairs of namespaces, the same addresses in each: the server of one has the
    // ruleset. Connections go to each in turn, half a second at a time, so both sides sample
    // the same spells of the machine (measured one after the other, three seconds each, a
    // busy spell during either moved the ratio from 0.87 to 0.75).
    let nss = Namespaces::new("tcp");
    let addr: SocketAddr = "10.77.0.1:5201".parse().expect("addr");
    let mut clients = Vec::new();
    for side in ["open", "fw"] {
        let srv = nss.add(&format!("srv-{side}"));
        let cli = nss.add(&format!("cli-{side}"));
        sh(&["ip", "link", "add", "eth0", "netns", &srv, "type", "veth", "peer", "name", "eth0", "netns", &cli]);
        sh(&["ip", "-n", &srv, "addr", "add", "10.77.0.1/24", "dev", "eth0"]);
        sh(&["ip", "-n", &cli, "addr", "add", "10.77.0.2/24", "dev", "eth0"]);
        sh(&["ip", "-n", &srv, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &cli, "link", "set", "eth0", "up"]);
        let listener = netns::run_in(&srv, move || TcpListener::bind(addr)).expect("server namespace").expect("bind");
        std::thread::spawn(move || {
            for c in listener.incoming() {
                drop(c);
            }
        });
        if side == "fw" {
            exec::apply(&exec::Target::Named(srv.clone()), &ruleset.script).expect("load the ruleset");
        }
        connect_rate(&cli, addr, Duration::from_millis(300)); // warm-up (neighbour entries)
        clients.push(cli);
    }
    let slice = Duration::from_millis(500);
    let (mut without, mut with) = (0.0, 0.0);
    for _ in 0..6 {
        without += connect_rate(&clients[0], addr, slice) / 6.0;
        with += connect_rate(&clients[1], addr, slice) / 6.0;
    }
    drop(nss);
    rows.push(Row {
        what: format!("TCP connects/s through the compiled {n}-rule firewall / without a ruleset"),
        netcfg: format!("{with:.0}/s"),
        baseline: format!("{without:.0}/s"),
        ratio: with / without,
        goal: Goal::AtLeast(0.8),
    });
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let on = |row: &str| wanted.is_empty() || wanted.iter().any(|w| w == row);
    let s = Scratch::new();
    let mut rows = Vec::new();
    type Step<'a> = (&'a str, &'a dyn Fn(&mut Vec<Row>));
    let steps: [Step; 11] = [
        ("plan", &|r| row_plan(&s, r)),
        ("check-rules", &|r| row_check_rules(&s, r)),
        ("check-services", &|r| row_check_services(&s, r)),
        ("apply", &|r| row_apply(&s, r)),
        ("noop-firewall", &|r| row_noop_firewall(&s, r)),
        ("memory", &|r| row_memory(&s, r)),
        ("connects", &|r| row_connects(r)),
        ("large-rules", &|r| row_large(&s, "large-rules", r)),
        ("large-routes", &|r| row_large(&s, "large-routes", r)),
        ("large-value", &|r| row_large(&s, "large-value", r)),
        ("large-name", &|r| row_large(&s, "large-name", r)),
    ];
    for (name, step) in steps {
        if on(name) {
            let before = rows.len();
            step(&mut rows);
            for r in &rows[before..] {
                eprintln!("{name}: {} = {:.3}", r.what, r.ratio);
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "\n| what | netcfg | baseline | ratio | goal | met |\n|---|---|---|---|---|---|");
    for r in &rows {
        let goal = match r.goal {
            Goal::AtMost(g) => format!("<= {g}"),
            Goal::AtLeast(g) => format!(">= {g}"),
        };
        let met = if r.goal.met(r.ratio) { "pass" } else { "FAIL" };
        let _ = writeln!(out, "| {} | {} | {} | {:.3} | {goal} | {met} |", r.what, r.netcfg, r.baseline, r.ratio);
    }
    std::io::stdout().write_all(out.as_bytes()).expect("stdout");
}
