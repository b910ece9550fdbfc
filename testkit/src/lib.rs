//! netcfg's test support, shared by the test crates of the workspace (the backends' and the
//! CLI's): compile specs, probe root, tools and kernel features, network namespaces owned by a
//! guard that deletes them even when the test panics, traffic between them, the `netcfg`
//! binary as a user runs it, and waits with a deadline. Tests that need root skip with a
//! message off CI and fail on CI.

use netcfg_compiler::ir::Fleet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// True when the test may touch the kernel. Off CI without root: prints why and returns false.
/// On CI (CI=true) without root: panics, because CI must run these.
pub fn require_root(test: &str) -> bool {
    if is_root() && has_tool("nft") && has_tool("ip") {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI must run as root with nft and ip installed");
    }
    eprintln!("skipping {test}: needs root, nft and ip (not available here)");
    false
}

/// True when the running kernel has (built in, loaded or loadable) every feature of `features`.
/// Off the full-kernel lane a missing one skips the caller with a message; in the lane
/// (`NETCFG_KERNEL_LANE=1`, Debian's stock kernel) every feature must be there.
pub fn kernel_has(what: &str, features: impl IntoIterator<Item = netcfg_backends::kernel::Feature>) -> bool {
    use netcfg_backends::kernel::{Availability, KernelModules};
    let modules = KernelModules::read();
    let missing: Vec<String> = features
        .into_iter()
        .filter(|f| {
            modules.availability(*f) == Availability::Absent
                // Without module lists (a kernel without modules) only an attempt tells.
                || (!std::path::Path::new("/proc/modules").exists() && link_kind_works(*f) == Some(false))
        })
        .map(|f| f.module().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("NETCFG_KERNEL_LANE").as_deref() != Ok("1"),
        "{what}: the full-kernel lane lacks {missing:?}"
    );
    eprintln!("skipping {what}: this kernel lacks {missing:?} (the full-kernel lane runs it)");
    false
}

/// True when the kernel's bridges filter by VLAN (`CONFIG_BRIDGE_VLAN_FILTERING`, not a module of
/// its own: asked by creating such a bridge in a scratch namespace). Off the full-kernel lane a
/// kernel without it skips the caller with a message; in the lane it must be there.
pub fn bridge_vlan_filtering(what: &str) -> bool {
    let ns = format!("netcfg-probe-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let run = |a: &[&str]| Command::new("ip").args(a).output().is_ok_and(|o| o.status.success());
    let ok =
        run(&["netns", "add", &ns]) && run(&["-n", &ns, "link", "add", "br0", "type", "bridge", "vlan_filtering", "1"]);
    let _ = run(&["netns", "del", &ns]);
    if ok {
        return true;
    }
    assert!(
        std::env::var("NETCFG_KERNEL_LANE").as_deref() != Ok("1"),
        "{what}: the full-kernel lane's bridges do not filter by VLAN"
    );
    eprintln!("skipping {what}: this kernel's bridges do not filter by VLAN (the full-kernel lane runs it)");
    false
}

/// For a link-kind feature: whether the kernel creates such a link (tried in a scratch
/// namespace, on a veth where the kind needs a parent). A kernel without module lists cannot
/// say what it has built in; this asks it. `None` for features that are not link kinds.
pub fn link_kind_works(f: netcfg_backends::kernel::Feature) -> Option<bool> {
    use netcfg_backends::kernel::Feature;
    let args: &[&str] = match f {
        Feature::Dummy => &["type", "dummy"],
        Feature::Vlan => &["link", "p0", "type", "vlan", "id", "5"],
        Feature::Bond => &["type", "bond"],
        Feature::Vrf => &["type", "vrf", "table", "10"],
        Feature::Ipvlan => &["link", "p0", "type", "ipvlan"],
        Feature::Gre => &["type", "gre", "remote", "192.0.2.1"],
        Feature::Ipip => &["type", "ipip", "remote", "192.0.2.1"],
        Feature::Sit => &["type", "sit", "remote", "192.0.2.1"],
        Feature::Ip6tnl => &["type", "ip6tnl", "remote", "2001:db8::1"],
        Feature::Wireguard => &["type", "wireguard"],
        _ => return None,
    };
    let ns = format!("netcfg-probe-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let run = |a: &[&str]| Command::new("ip").args(a).output().is_ok_and(|o| o.status.success());
    if !run(&["netns", "add", &ns]) {
        return None;
    }
    let ok = run(&["-n", &ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        && run(&[&["-n", &ns, "link", "add", "probe0"][..], args].concat());
    run(&["netns", "del", &ns]);
    Some(ok)
}

pub fn has_tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
        || Command::new(name).arg("-V").output().is_ok_and(|o| o.status.success())
}

pub fn compile(src: &str) -> Fleet {
    let parsed = netcfg_lang::parse_str("test.kdl", src);
    assert!(parsed.diagnostics.is_empty(), "parse: {:#?}", parsed.diagnostics);
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let errors: Vec<_> = compiled.diagnostics.iter().filter(|d| d.severity == netcfg_lang::Severity::Error).collect();
    assert!(errors.is_empty(), "check: {errors:#?}");
    compiled.fleet
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nct-{tag}-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs a command inside the namespace and returns its stdout; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace, feeding `stdin`; returns (success, stdout+stderr).
    pub fn exec_input(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "pids", &self.name]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Connects a veth pair between two namespaces and addresses both ends (`a_addr`/`b_addr` with
/// prefix), bringing them up.
pub fn wire(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    sh(&["ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    sh(&["ip", "-n", &a.name, "addr", "add", a_addr, "dev", a_if]);
    sh(&["ip", "-n", &b.name, "addr", "add", b_addr, "dev", b_if]);
    sh(&["ip", "-n", &a.name, "link", "set", a_if, "up"]);
    sh(&["ip", "-n", &b.name, "link", "set", b_if, "up"]);
}

/// A TCP server inside a namespace that answers every connection with `reply` and closes.
/// It stops by itself after `max` connections or when the namespace goes away.
pub fn serve(ns: &Netns, addr: &str, reply: &'static str, max: usize) {
    serve_in(&ns.name, addr, max, move |_| reply.to_string());
}

/// A TCP server inside the namespace `/run/netns/NS` (any named namespace, also one netcfg
/// created) that answers every connection with `reply(peer address)` and closes. It stops by
/// itself after `max` connections.
pub fn serve_in(ns: &str, addr: &str, max: usize, reply: impl Fn(std::net::SocketAddr) -> String + Send + 'static) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let listener = netcfg_backends::netns::run_in(ns, move || std::net::TcpListener::bind(addr))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().take(max).flatten() {
            let peer = s.peer_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
            let _ = s.write_all(reply(peer).as_bytes());
        }
    });
}

/// Outcome of one TCP connection attempt from inside a namespace.
#[derive(Debug, PartialEq, Eq)]
pub enum Conn {
    Reply(String),
    Refused,
    TimedOut,
    Other(String),
}

pub fn connect(ns: &Netns, addr: &str, timeout_ms: u64) -> Conn {
    connect_in(&ns.name, addr, timeout_ms)
}

/// [`connect`] from inside the namespace `/run/netns/NS`.
pub fn connect_in(ns: &str, addr: &str, timeout_ms: u64) -> Conn {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    netcfg_backends::netns::run_in(ns, move || {
        use std::io::Read;
        let t = std::time::Duration::from_millis(timeout_ms);
        match std::net::TcpStream::connect_timeout(&addr, t) {
            Ok(mut s) => {
                s.set_read_timeout(Some(t)).unwrap();
                let mut buf = String::new();
                match s.read_to_string(&mut buf) {
                    Ok(_) => Conn::Reply(buf),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Conn::Refused,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        Conn::TimedOut
                    }
                    Err(e) => Conn::Other(e.to_string()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Conn::Refused,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Conn::TimedOut
            }
            Err(e) => Conn::Other(e.to_string()),
        }
    })
    .expect("enter netns")
}

/// A node root for the netlink backend: `/run/netns/ROOT` (the node's host namespace) with
/// an `eth0` whose other end sits in a second namespace (the "LAN"), and everything the node
/// creates (`ROOT-*`, creation markers) deleted on drop, even when the test panics.
pub struct NodeRoot {
    pub root: Netns,
    pub lan: Netns,
    pub map: netcfg_backends::netlink::NetnsMap,
}

impl NodeRoot {
    pub fn new(tag: &str) -> NodeRoot {
        let root = Netns::new(tag);
        let lan = Netns::new(&format!("{tag}-lan"));
        sh(&[
            "ip", "link", "add", "eth0", "netns", &root.name, "type", "veth", "peer", "name", "lan0", "netns",
            &lan.name,
        ]);
        sh(&["ip", "-n", &lan.name, "link", "set", "lan0", "up"]);
        sh(&["ip", "-n", &lan.name, "addr", "add", "10.0.0.1/24", "dev", "lan0"]);
        let mut map = netcfg_backends::netlink::NetnsMap::rooted(&root.name);
        map.marker_dir = std::path::PathBuf::from(format!("/run/netcfg-test/{}", root.name));
        NodeRoot { root, lan, map }
    }

    /// `ip -n NS ARGS` in the node's namespace `ns` (`@host` for the root).
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let name = self.path_name(ns);
        let mut full = vec!["ip", "-n", &name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip` as above, asked again until `want` holds of its output or 10 s pass; the last output.
    /// For what the kernel settles after the request returns: a link's operational state follows
    /// its flags through the link watch, which runs up to a second later (more in an emulated VM).
    pub fn ip_until(&self, ns: &str, args: &[&str], want: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        wait_until(std::time::Duration::from_secs(10), || {
            out = self.ip(ns, args);
            want(&out)
        });
        out
    }

    pub fn path_name(&self, ns: &str) -> String {
        if ns == "@host" {
            self.root.name.clone()
        } else {
            format!("{}-{ns}", self.root.name)
        }
    }

    /// Everything `ip` shows of a namespace that netcfg could touch, normalised to stable text:
    /// links (kind, flags, mtu, MAC, master, group, hairpin, addrgenmode), addresses, routes of
    /// every table, policy rules of both families, permanent neighbours, and `sysctls`. `None` if the namespace does not exist.
    pub fn dump(&self, ns: &str, sysctls: &[&str]) -> Option<String> {
        let name = self.path_name(ns);
        if !std::path::Path::new("/run/netns").join(&name).exists() {
            return None;
        }
        let json = |args: &[&str]| -> serde_json::Value {
            let mut full = vec!["ip", "-j", "-d", "-n", &name];
            full.extend_from_slice(args);
            serde_json::from_str(&sh(&full)).unwrap_or(serde_json::Value::Null)
        };
        let mut lines = Vec::new();
        for l in json(&["link", "show"]).as_array().cloned().unwrap_or_default() {
            let info = &l["linkinfo"];
            lines.push(format!(
                "link {} kind={} flags={} mtu={} mac={} master={} group={} hairpin={} addrgen={} nf={}",
                l["ifname"],
                info["info_kind"],
                l["flags"],
                l["mtu"],
                l["address"],
                l["master"],
                l["group"],
                info["info_slave_data"]["hairpin"],
                l["inet6_addr_gen_mode"],
                info["info_data"]["nf_call_iptables"],
            ));
        }
        for l in json(&["addr", "show"]).as_array().cloned().unwrap_or_default() {
            for a in l["addr_info"].as_array().cloned().unwrap_or_default() {
                lines.push(format!(
                    "addr {} {}/{} noprefixroute={}",
                    l["ifname"], a["local"], a["prefixlen"], a["noprefixroute"]
                ));
            }
        }
        for mut r in json(&["route", "show", "table", "all"]).as_array().cloned().unwrap_or_default() {
            // The kernel adds and removes the local-table routes of IPv6 link-local addresses
            // by itself as carrier comes and goes (asynchronously); netcfg never manages them.
            let kernel_link_local = r["table"] == "local"
                && r["protocol"] == "kernel"
                && r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:"));
            if kernel_link_local {
                continue;
            }
            if let Some(o) = r.as_object_mut() {
                o.remove("expires");
                o.remove("pref");
            }
            lines.push(format!("route {r}"));
        }
        for family in ["-4", "-6"] {
            let full = ["ip", "-j", family, "-n", &name, "rule", "show"];
            for r in serde_json::from_str::<serde_json::Value>(&sh(&full))
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
            {
                lines.push(format!("rule {family} {r}"));
            }
        }
        for n in json(&["neigh", "show", "nud", "permanent"]).as_array().cloned().unwrap_or_default() {
            lines.push(format!("neigh {n}"));
        }
        for s in sysctls {
            let v = sh(&["ip", "netns", "exec", &name, "sysctl", "-n", s]);
            lines.push(format!("sysctl {s}={}", v.trim()));
        }
        lines.sort();
        Some(lines.join("\n"))
    }
}

impl NodeRoot {
    /// The spec names of the node's namespaces that exist now (`@host` and `ROOT-NAME`s).
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.root.name);
        let mut out = vec!["@host".to_string()];
        for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(ns) = n.strip_prefix(&prefix) {
                out.push(ns.to_string());
            }
        }
        out.sort();
        out
    }

    /// Every namespace of the node, fully: [`NodeRoot::dump`] (links with attributes,
    /// addresses, routes of every table, permanent neighbours), the `sysctls` given, and the
    /// whole nft ruleset.
    pub fn full_dump(&self, sysctls: &[&str]) -> Vec<(String, String)> {
        self.namespaces()
            .into_iter()
            .filter_map(|ns| {
                let mut text = self.dump(&ns, &[])?;
                let name = self.path_name(&ns);
                for s in sysctls {
                    // Paths of links that are not there are left out.
                    let out = Command::new("ip").args(["netns", "exec", &name, "sysctl", "-n", s]).output().ok()?;
                    if out.status.success() {
                        text.push_str(&format!("\nsysctl {s}={}", String::from_utf8_lossy(&out.stdout).trim()));
                    }
                }
                text.push('\n');
                text.push_str(&sh(&["ip", "netns", "exec", &name, "nft", "list", "ruleset"]));
                Some((ns, text))
            })
            .collect()
    }

    /// [`NodeRoot::full_dump`] once it has settled: two equal dumps 300 ms apart (carrier and
    /// IPv6 link-local addresses come back asynchronously).
    pub fn settled_full_dump(&self, sysctls: &[&str]) -> Vec<(String, String)> {
        let mut last = self.full_dump(sysctls);
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = self.full_dump(sysctls);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

/// What differs between two full dumps, line by line, for an assertion message (empty: none).
pub fn dump_difference(before: &[(String, String)], after: &[(String, String)]) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = before.iter().chain(after).map(|(n, _)| n).collect();
    for ns in names {
        let a = before.iter().find(|(n, _)| n == ns).map(|(_, t)| t.as_str());
        let b = after.iter().find(|(n, _)| n == ns).map(|(_, t)| t.as_str());
        match (a, b) {
            (Some(a), Some(b)) if a != b => {
                let al: Vec<&str> = a.lines().collect();
                let bl: Vec<&str> = b.lines().collect();
                for l in al.iter().filter(|l| !bl.contains(l)) {
                    out.push_str(&format!("{ns}: before only: {l}\n"));
                }
                for l in bl.iter().filter(|l| !al.contains(l)) {
                    out.push_str(&format!("{ns}: after only: {l}\n"));
                }
            }
            (Some(_), None) => out.push_str(&format!("{ns}: namespace gone\n")),
            (None, Some(_)) => out.push_str(&format!("{ns}: namespace new\n")),
            _ => {}
        }
    }
    out
}

impl Drop for NodeRoot {
    fn drop(&mut self) {
        let prefix = format!("{}-", self.root.name);
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for e in dir.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    let _ = Command::new("ip").args(["netns", "del", &n]).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.map.marker_dir);
    }
}

/// What a run of the `netcfg` binary returned: exit code (-1 when killed by a signal), stdout,
/// stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Run> for (i32, String, String) {
    fn from(r: Run) -> Self {
        (r.code, r.stdout, r.stderr)
    }
}

/// Runs the `netcfg` binary at `bin` (a test passes `env!("CARGO_BIN_EXE_netcfg")`) with
/// `args`, without colours, in the current directory.
pub fn netcfg(bin: &str, args: &[&str]) -> Run {
    netcfg_in(bin, None, args)
}

/// [`netcfg`] in the directory `dir` (relative paths in `args` and in the output are relative
/// to it).
pub fn netcfg_in(bin: &str, dir: Option<&std::path::Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("NO_COLOR", "1");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{bin}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `ready` until it returns true or `deadline` passes; returns whether it became true.
/// Every wait in the tests goes through here or has its own deadline: none loops forever,
/// none passes because a fixed sleep happened to be long enough.
pub fn wait_until(deadline: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An op the kernel refuses, in `@host` and otherwise like `like`: a route through a gateway
/// on no link (the failing op the rollback tests end a plan with).
pub fn unreachable_route(like: &netcfg_backends::netlink::Op) -> netcfg_backends::netlink::Op {
    let mut op = like.clone();
    op.ns = "@host".into();
    op.action = netcfg_backends::netlink::Action::AddRoute {
        key: netcfg_backends::netlink::state::RouteKey::new(254, "10.123.0.0/16".parse().unwrap(), 0),
        route: netcfg_backends::netlink::state::Route {
            via: Some("10.200.0.1".parse().unwrap()),
            dev: None,
            src: None,
            scope: netcfg_lang::vocab::RouteScope::Global,
            onlink: false,
            route_type: netcfg_lang::vocab::RouteType::Unicast,
            protocol: netcfg_backends::netlink::state::NETCFG_PROTO,
            metrics: Default::default(),
            nexthops: Vec::new(),
        },
    };
    op
}
