//! Real TCP traffic through a compiled ruleset: a service VIP in a router namespace DNATs
//! connections from a client namespace to two backend namespaces, weights honoured; a port the
//! policy rejects is refused and one it drops times out.

mod common;

use common::{compile, connect, require_root, serve, sh, wire, Conn, Netns};
use netcfg_backends::nftables::{self, exec, exec::Target};

#[test]
fn service_vip_balances_over_both_backends_and_policy_holds() {
    if !require_root("service_vip_balances_over_both_backends_and_policy_holds") {
        return;
    }
    let gw = Netns::new("gw");
    let client = Netns::new("cli");
    let b1 = Netns::new("b1");
    let b2 = Netns::new("b2");
    wire(&gw, "to-cli", "10.1.0.1/24", &client, "eth0", "10.1.0.2/24");
    wire(&gw, "to-b1", "10.2.0.1/24", &b1, "eth0", "10.2.0.2/24");
    wire(&gw, "to-b2", "10.3.0.1/24", &b2, "eth0", "10.3.0.2/24");
    for (ns, via) in [(&client, "10.1.0.1"), (&b1, "10.2.0.1"), (&b2, "10.3.0.1")] {
        sh(&["ip", "-n", &ns.name, "route", "add", "default", "via", via]);
    }
    gw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    serve(&b1, "0.0.0.0:8080", "b1", 1000);
    serve(&b2, "0.0.0.0:8080", "b2", 1000);
    serve(&b1, "0.0.0.0:9090", "b1-9090", 10);
    serve(&b1, "0.0.0.0:7070", "b1-7070", 10);

    let spec = r#"
node "gw" {
    ethernet "to-cli" { address "10.1.0.1/24"; }
    ethernet "to-b1" { address "10.2.0.1/24"; }
    ethernet "to-b2" { address "10.3.0.1/24"; }
    forwarding #true
    firewall {
        policy forward="drop"
        allow forward proto="tcp" port=7070 from="10.1.0.0/24"
        reject forward proto="tcp" port=9090
    }
    service "web" vip="10.96.0.10" port=80 {
        backend "10.2.0.2:8080"
        backend "10.3.0.2:8080" weight=3
    }
    service "empty" vip="10.96.0.11" port=80
}
"#;
    let fleet = compile(spec);
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty());

    // Before the ruleset: the VIP leads nowhere (no route), 9090 is open.
    assert_eq!(connect(&client, "10.2.0.2:9090", 2000), Conn::Reply("b1-9090".into()));
    assert_ne!(connect(&client, "10.96.0.10:80", 500), Conn::Reply("b1".into()));

    exec::apply(&Target::Named(gw.name.clone()), &host.script).expect("apply");
    // The client needs a route to the VIP: via the gateway (its default route).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        match connect(&client, "10.96.0.10:80", 2000) {
            Conn::Reply(who) => *seen.entry(who).or_insert(0) += 1,
            other => panic!("connection to the VIP failed: {other:?}"),
        }
    }
    let (n1, n2) = (seen.get("b1").copied().unwrap_or(0), seen.get("b2").copied().unwrap_or(0));
    assert!(n1 > 0 && n2 > 0, "both backends must receive connections: {seen:?}");
    // Weight 1:3 — with 60 draws b2 gets more than b1 with overwhelming probability.
    assert!(n2 > n1, "weights are not honoured: {seen:?}");

    assert_eq!(connect(&client, "10.2.0.2:9090", 2000), Conn::Refused, "rejected port must be refused");
    assert_eq!(connect(&client, "10.2.0.2:7070", 2000), Conn::Reply("b1-7070".into()), "allowed port");
    assert_eq!(connect(&client, "10.2.0.2:22", 700), Conn::TimedOut, "the drop policy drops the rest");
    assert_eq!(connect(&client, "10.96.0.11:80", 2000), Conn::Refused, "a service without backends refuses");

    // Hairpin: a backend reaching its own service, sometimes itself, is masqueraded so the
    // reply comes back through the gateway and is un-NATed.
    let mut hairpin = std::collections::BTreeMap::new();
    for _ in 0..30 {
        match connect(&b1, "10.96.0.10:80", 2000) {
            Conn::Reply(who) => *hairpin.entry(who).or_insert(0) += 1,
            other => panic!("hairpin connection failed: {other:?} after {hairpin:?}"),
        }
    }
    assert!(hairpin.contains_key("b1"), "b1 never reached itself: {hairpin:?}");
}

/// A TCP server that holds each connection open until the client closes it.
fn hold_open(ns: &Netns, addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let listener = netcfg_backends::netns::run_in(&ns.name, move || std::net::TcpListener::bind(addr))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    std::thread::spawn(move || {
        for mut s in listener.incoming().take(16).flatten() {
            std::thread::spawn(move || {
                use std::io::Read;
                let _ = s.read_to_end(&mut Vec::new());
            });
        }
    });
}

/// Opens a TCP connection from inside `ns` and returns it open, or `None` when it failed.
fn open(ns: &Netns, addr: &str) -> Option<std::net::TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    netcfg_backends::netns::run_in(&ns.name, move || {
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(700)).ok()
    })
    .expect("enter netns")
}

/// The matches and statements of issue 13 on real packets: negated addresses, ports and links,
/// `family`, marks set before routing and matched, a per-source rate limit, a connection limit,
/// named counters; and a table that has
/// seen traffic (dynamic set elements, counter values) still lists as its plan.
#[test]
fn negations_family_limits_and_counters_decide_real_connections() {
    if !require_root("negations_family_limits_and_counters_decide_real_connections") {
        return;
    }
    let gw = Netns::new("fw");
    let cli = Netns::new("cli");
    let cli2 = Netns::new("cli2");
    wire(&gw, "to-cli", "10.1.0.1/24", &cli, "eth0", "10.1.0.2/24");
    wire(&gw, "to-cli2", "10.2.0.1/24", &cli2, "eth0", "10.2.0.2/24");
    sh(&["ip", "-n", &gw.name, "addr", "add", "fd00:1::1/64", "dev", "to-cli", "nodad"]);
    sh(&["ip", "-n", &cli.name, "addr", "add", "fd00:1::2/64", "dev", "eth0", "nodad"]);
    for port in [8080, 6060, 9090, 6070, 6071] {
        serve(&gw, &format!("0.0.0.0:{port}"), "gw", 100);
    }
    // Dual-stack: answers over IPv4 too, were it let through.
    serve(&gw, "[::]:7070", "gw6", 100);
    serve(&gw, "0.0.0.0:8081", "limited", 100);
    hold_open(&gw, "0.0.0.0:8082");

    let spec = r#"
node "gw" {
    ethernet "to-cli" { address "10.1.0.1/24"; address "fd00:1::1/64"; }
    ethernet "to-cli2" { address "10.2.0.1/24"; }
    firewall {
        policy in="drop"
        reject in proto="tcp" port="!6060-8082"
        deny in proto="tcp" port=8080 from="!10.1.0.0/24" counter="outsiders"
        allow in proto="tcp" port=8080 counter="web"
        allow in iif="!to-cli2" proto="tcp" port=6060
        allow in family="ipv6" proto="tcp" port=7070
        allow in proto="tcp" port=8081 limit-per-source="2/minute" burst=2
        allow in proto="tcp" port=8082 conn-limit=2
        mark in iif="to-cli2" set-mark="0x500/0xff00" set-ct-mark="0x7"
        deny in proto="tcp" port=6070 mark="0x500/0xff00"
        allow in proto="tcp" port=6070
        allow in proto="tcp" port=6071 ct-mark="!0x7"
    }
}
"#;
    let fleet = compile(spec);
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty(), "{diags:#?}");
    let target = Target::Named(gw.name.clone());
    exec::apply(&target, &host.script).expect("apply");

    // `port="!6060-8082"`: every other port is refused, the rest go on to later rules.
    assert_eq!(connect(&cli, "10.1.0.1:9090", 2000), Conn::Refused);
    // `from="!10.1.0.0/24"`: only the other client is denied.
    assert_eq!(connect(&cli, "10.1.0.1:8080", 2000), Conn::Reply("gw".into()));
    assert_eq!(connect(&cli2, "10.2.0.1:8080", 700), Conn::TimedOut);
    // `iif="!to-cli2"`.
    assert_eq!(connect(&cli, "10.1.0.1:6060", 2000), Conn::Reply("gw".into()));
    assert_eq!(connect(&cli2, "10.2.0.1:6060", 700), Conn::TimedOut);
    // `family="ipv6"`: the same port over IPv4 is left to the drop policy.
    assert_eq!(connect(&cli, "[fd00:1::1]:7070", 2000), Conn::Reply("gw6".into()));
    assert_eq!(connect(&cli, "10.1.0.1:7070", 700), Conn::TimedOut);

    // Marks set before routing are seen by the filter: the packet's mark on the SYN, the
    // connection's mark on every packet of it.
    assert_eq!(connect(&cli, "10.1.0.1:6070", 2000), Conn::Reply("gw".into()));
    assert_eq!(connect(&cli2, "10.2.0.1:6070", 700), Conn::TimedOut);
    assert_eq!(connect(&cli, "10.1.0.1:6071", 2000), Conn::Reply("gw".into()));
    assert_eq!(connect(&cli2, "10.2.0.1:6071", 700), Conn::TimedOut);

    // A per-source rate of 2/minute with a burst of 2: the first connections pass, then the
    // source is over its rate and its SYNs fall through to the drop policy; the other client
    // has its own bucket.
    let outcomes: Vec<Conn> = (0..5).map(|_| connect(&cli, "10.1.0.1:8081", 700)).collect();
    assert_eq!(outcomes[0], Conn::Reply("limited".into()), "{outcomes:?}");
    assert_eq!(outcomes[4], Conn::TimedOut, "the limit never bit: {outcomes:?}");
    let passed = outcomes.iter().filter(|c| **c == Conn::Reply("limited".into())).count();
    assert!((1..=3).contains(&passed), "{outcomes:?}");
    assert_eq!(connect(&cli2, "10.2.0.1:8081", 2000), Conn::Reply("limited".into()), "per source, not global");

    // At most 2 open connections per source.
    let first = open(&cli, "10.1.0.1:8082").expect("first connection");
    let _second = open(&cli, "10.1.0.1:8082").expect("second connection");
    assert!(open(&cli, "10.1.0.1:8082").is_none(), "a third connection must not open");
    let _other = open(&cli2, "10.2.0.1:8082").expect("another source has its own count");
    drop(first);
    let reopened = (0..10).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        open(&cli, "10.1.0.1:8082").is_some()
    });
    assert!(reopened, "a closed connection must free its slot");

    // Named counters count their rules' packets.
    let web = gw.exec(&["nft", "list", "counter", "inet", "netcfg", "counter-web"]);
    assert!(!web.contains("packets 0 "), "{web}");
    let outsiders = gw.exec(&["nft", "list", "counter", "inet", "netcfg", "counter-outsiders"]);
    assert!(!outsiders.contains("packets 0 "), "{outsiders}");

    // The dynamic sets hold sources now, and the counters values: the live table still equals
    // the plan, so a re-plan is empty.
    let sets = gw.exec(&["nft", "list", "set", "inet", "netcfg", "rule-5-limit-v4"]);
    assert!(sets.contains("10.1.0.2"), "{sets}");
    let live = exec::list_table(&target).expect("list");
    let planned = exec::canonical(&host.script).expect("canonical");
    assert_eq!(live, planned, "traffic state must not count as drift");
}

/// A server in `ns` that answers each connection with its TCP MSS toward the client (the
/// accepted socket's `TCP_MAXSEG`): what the client's SYN announced, as it arrived.
fn serve_mss(ns: &Netns, addr: &str, max: usize) {
    use std::os::fd::AsRawFd;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let listener = netcfg_backends::netns::run_in(&ns.name, move || std::net::TcpListener::bind(addr))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().take(max).flatten() {
            let mut mss: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid socket fd and an int-sized out parameter.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_MAXSEG,
                    (&mut mss as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            let _ = s.write_all(if rc == 0 { mss.to_string() } else { "error".into() }.as_bytes());
        }
    });
}

/// `clamp-mss`: a SYN forwarded onto a link with a smaller MTU has its MSS lowered to what the
/// route carries (1400 - 40), so the server never sends segments the path would drop. Before
/// the ruleset the server sees the client's own MSS (1500 - 40, less TCP options).
#[test]
fn clamp_mss_lowers_the_mss_of_forwarded_syns_to_the_route_mtu() {
    if !require_root("clamp_mss_lowers_the_mss_of_forwarded_syns_to_the_route_mtu") {
        return;
    }
    let gw = Netns::new("mss-gw");
    let client = Netns::new("mss-cli");
    let server = Netns::new("mss-srv");
    wire(&gw, "to-cli", "10.4.0.1/24", &client, "eth0", "10.4.0.2/24");
    wire(&gw, "to-srv", "10.5.0.1/24", &server, "eth0", "10.5.0.2/24");
    sh(&["ip", "-n", &gw.name, "link", "set", "to-srv", "mtu", "1400"]);
    sh(&["ip", "-n", &client.name, "route", "add", "default", "via", "10.4.0.1"]);
    sh(&["ip", "-n", &server.name, "route", "add", "default", "via", "10.5.0.1"]);
    gw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    serve_mss(&server, "0.0.0.0:8080", 4);
    let mss = |c: Conn| match c {
        Conn::Reply(m) => m.parse::<u32>().unwrap_or_else(|_| panic!("not an MSS: {m}")),
        other => panic!("no answer from the server: {other:?}"),
    };
    let before = mss(connect(&client, "10.5.0.2:8080", 2000));
    assert!(before > 1360, "without clamping the client's MSS arrives: {before}");

    let fleet = compile(
        r#"
node "gw" {
    forwarding #true
    ethernet "to-cli" { address "10.4.0.1/24"; }
    ethernet "to-srv" mtu=1400 { address "10.5.0.1/24"; }
    firewall {
        clamp-mss out="to-srv"
    }
}
"#,
    );
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty(), "{diags:#?}");
    exec::apply(&Target::Named(gw.name.clone()), &host.script).expect("apply");
    let after = mss(connect(&client, "10.5.0.2:8080", 2000));
    assert!(after <= 1360, "the forwarded SYN's MSS is clamped to the route MTU: {after}");
}

/// `snat` to a pool with a port range: connections leave from an address of the pool and a
/// source port in the range; before the ruleset the server sees the client itself.
#[test]
fn snat_pools_and_port_ranges_rewrite_real_connections() {
    if !require_root("snat_pools_and_port_ranges_rewrite_real_connections") {
        return;
    }
    let gw = Netns::new("snat-gw");
    let client = Netns::new("snat-cli");
    let server = Netns::new("snat-srv");
    wire(&gw, "to-cli", "10.8.0.1/24", &client, "eth0", "10.8.0.2/24");
    wire(&gw, "to-srv", "203.0.113.1/24", &server, "eth0", "203.0.113.100/24");
    for a in ["203.0.113.7/24", "203.0.113.8/24"] {
        sh(&["ip", "-n", &gw.name, "addr", "add", a, "dev", "to-srv"]);
    }
    sh(&["ip", "-n", &client.name, "route", "add", "default", "via", "10.8.0.1"]);
    gw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    common::serve_in(&server.name, "0.0.0.0:8080", 8, |peer| peer.to_string());
    let peer = |c: Conn| match c {
        Conn::Reply(p) => p.parse::<std::net::SocketAddr>().unwrap_or_else(|_| panic!("not an address: {p}")),
        other => panic!("no answer from the server: {other:?}"),
    };
    // The server has no route back to the client's network: only a rewritten source returns.
    assert_eq!(connect(&client, "203.0.113.100:8080", 700), Conn::TimedOut);

    let fleet = compile(
        r#"
node "gw" {
    forwarding #true
    ethernet "to-cli" { address "10.8.0.1/24"; }
    ethernet "to-srv" {
        address "203.0.113.1/24"
        address "203.0.113.7/24"
        address "203.0.113.8/24"
    }
    snat from="10.8.0.0/24" out="to-srv" to="203.0.113.7-203.0.113.8" ports="20000-20099"
}
"#,
    );
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty(), "{diags:#?}");
    exec::apply(&Target::Named(gw.name.clone()), &host.script).expect("apply");
    for _ in 0..4 {
        let p = peer(connect(&client, "203.0.113.100:8080", 2000));
        assert!(["203.0.113.7", "203.0.113.8"].contains(&p.ip().to_string().as_str()), "source {p} is not of the pool");
        assert!((20000..=20099).contains(&p.port()), "source port {} is not in the range", p.port());
    }
}

/// Packets of one connection the counted allow rule sees: the firewall accepts established
/// packets before its rules, so a tracked connection shows only its first packet there, an
/// untracked one every packet.
fn packets_counted(ns: &Netns) -> u64 {
    let out = ns.exec(&["nft", "list", "counter", "inet", "netcfg", "counter-web"]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {out}"))
}

/// `notrack`: connection tracking skips the packets it matches. A stateful firewall then sees
/// every packet of such a connection at its rules (none is `established`), while a tracked
/// connection passes its rules with the first packet only.
#[test]
fn notrack_takes_connections_out_of_connection_tracking() {
    if !require_root("notrack_takes_connections_out_of_connection_tracking") {
        return;
    }
    let server = Netns::new("nt-srv");
    let client = Netns::new("nt-cli");
    wire(&server, "eth0", "10.6.0.1/24", &client, "eth0", "10.6.0.2/24");
    serve(&server, "0.0.0.0:8080", "hello", 4);
    let apply = |spec: &str| {
        let fleet = compile(spec);
        let mut diags = Vec::new();
        let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
        assert!(diags.is_empty(), "{diags:#?}");
        exec::apply(&Target::Named(server.name.clone()), &host.script).expect("apply");
    };
    let tracked = r#"
node "srv" {
    ethernet "eth0" { address "10.6.0.1/24"; }
    firewall {
        policy in="drop" out="drop"
        allow in proto="tcp" port=8080 counter="web"
        allow out proto="tcp" sport=8080
    }
}
"#;
    apply(tracked);
    assert_eq!(connect(&client, "10.6.0.1:8080", 2000), Conn::Reply("hello".into()));
    assert_eq!(packets_counted(&server), 1, "a tracked connection passes the rules with its SYN only");

    apply(&tracked.replace(
        "allow in proto=\"tcp\" port=8080",
        "notrack in proto=\"tcp\" port=8080\n        notrack out proto=\"tcp\" sport=8080\n        allow in proto=\"tcp\" port=8080",
    ));
    assert_eq!(connect(&client, "10.6.0.1:8080", 2000), Conn::Reply("hello".into()));
    let n = packets_counted(&server);
    assert!(n >= 3, "an untracked connection meets the rules with every packet: {n}");
}

/// A zone with a link pattern (`"vp*"`) admits links that appear after the apply, which the
/// spec never declares (container veths); a link outside the pattern stays behind the policy.
#[test]
fn a_zone_pattern_admits_links_created_after_the_apply() {
    if !require_root("a_zone_pattern_admits_links_created_after_the_apply") {
        return;
    }
    let node = Netns::new("zpn");
    let pod = Netns::new("zpp");
    let other = Netns::new("zpo");
    serve(&node, "0.0.0.0:8080", "node", 10);
    let spec = r#"
node "n" {
    ethernet "vp-static"
    firewall {
        policy in="drop"
        zone "pods" "vp-static" "vp*"
        allow in from-zone="pods" proto="tcp" port=8080
    }
}
"#;
    let fleet = compile(spec);
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    assert!(diags.is_empty(), "{diags:#?}");
    assert!(host.script.text.contains("\"vp*\""), "{}", host.script.text);
    exec::apply(&Target::Named(node.name.clone()), &host.script).expect("apply");
    // Created after the apply, as a container runtime would.
    wire(&node, "vp-1a2b", "10.7.0.1/24", &pod, "eth0", "10.7.0.2/24");
    wire(&node, "other0", "10.8.0.1/24", &other, "eth0", "10.8.0.2/24");
    assert_eq!(connect(&pod, "10.7.0.1:8080", 2000), Conn::Reply("node".into()));
    assert_eq!(connect(&other, "10.8.0.1:8080", 500), Conn::TimedOut);
}
