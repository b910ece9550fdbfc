//! Published ports, 1:1 network maps and transparent proxying on real packets: each spec is
//! applied whole (links, addresses, routes, policy rules, nft table) to namespaces the test
//! creates, re-plans empty and verifies clean, then real TCP connections show the translation
//! (the addresses each end sees) and what happens without it.

mod common;

use common::*;
use netcfg_backends::netlink::{self, Options, Session};

fn apply(node: &NodeRoot, src: &str) -> Session {
    let compiled = compile(src);
    let mut diags = Vec::new();
    let d = netlink::desired(&compiled.nodes[0], &mut diags);
    assert!(diags.iter().all(|d| d.severity != netcfg_lang::Severity::Error), "{diags:#?}");
    let mut s = Session::new(node.map.clone()).expect("session");
    let p = s.plan(&d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(&d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    let again = s.plan(&d, Options::default()).expect("plan");
    assert!(again.is_empty(), "re-plan is not empty:\n{}", again.to_text());
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
    s
}

/// What a server answered: the address it saw the connection come from (or arrive at).
fn seen(c: Conn) -> std::net::SocketAddr {
    match c {
        Conn::Reply(p) => p.parse().unwrap_or_else(|_| panic!("not an address: {p}")),
        other => panic!("no answer: {other:?}"),
    }
}

/// A docker-style published port: the node (10.0.0.2 on `eth0`, the LAN at 10.0.0.1) publishes
/// port 8080 to a pod's port 80 behind a bridge, with a forward policy of drop.
#[test]
fn a_published_port_reaches_its_backend_from_outside_the_node_and_the_backend_itself() {
    if !require_root("a_published_port_reaches_its_backend_from_outside_the_node_and_the_backend_itself") {
        return;
    }
    let node = NodeRoot::new("pub");
    let spec = r#"
node "pub" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    firewall { policy forward="drop"; }
    publish "web" port=8080 to="10.244.1.5:80"
    publish "office-only" port=2222 to="10.244.1.5:80" from="198.51.100.0/24"
    netns "web" {
        veth "eth0" {
            address "10.244.1.5/24"
            peer "veth-web" netns="@host" master="br0" hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
}
"#;
    let _s = apply(&node, spec);
    let pod = node.path_name("web");
    serve_in(&pod, "0.0.0.0:80", 16, |peer| peer.to_string());

    // From outside: the client's own address reaches the backend (no masquerade).
    assert_eq!(seen(connect(&node.lan, "10.0.0.2:8080", 3000)).ip().to_string(), "10.0.0.1");
    // From the node itself, to its own address (the output hook).
    let from_node = seen(connect_in(&node.root.name, "10.0.0.2:8080", 3000));
    assert!(["10.0.0.2", "10.244.1.1"].contains(&from_node.ip().to_string().as_str()), "{from_node}");
    // Hairpin: the backend reaching its own published port sees the node as the source, so
    // the reply comes back through the node and is un-NATed. (Where bridge netfilter is on,
    // as it is on this kernel by default, the DNAT-ed frame is bridged back out of the port it
    // came in by: the port needs hairpin mode, as for a service.)
    assert_eq!(seen(connect_in(&pod, "10.244.1.1:8080", 3000)).ip().to_string(), "10.244.1.1");
    // `from`: other sources are not translated; nothing listens on the node's 2222.
    assert_eq!(connect(&node.lan, "10.0.0.2:2222", 2000), Conn::Refused);
    // The forward policy still drops what was not published: the pod's own port, routed.
    node.lan.exec(&["ip", "route", "add", "10.244.1.0/24", "via", "10.0.0.2"]);
    assert_eq!(connect(&node.lan, "10.244.1.5:80", 700), Conn::TimedOut);
}

/// Connects until the addresses' duplicate address detection is over (a few seconds at most).
fn connect_v6(ns: &str, addr: &str) -> Conn {
    let mut last = Conn::TimedOut;
    for _ in 0..20 {
        last = connect_in(ns, addr, 1000);
        if matches!(last, Conn::Reply(_)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    last
}

/// The same published port over IPv6: `fib daddr type local` for the node's IPv6 addresses,
/// `dnat ip6 to [..]:80`, hairpin through the IPv6 set.
#[test]
fn an_ipv6_published_port_reaches_its_backend_and_hairpins() {
    if !require_root("an_ipv6_published_port_reaches_its_backend_and_hairpins") {
        return;
    }
    let node = NodeRoot::new("pub6");
    let spec = r#"
node "pub6" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; address "fd00:1::2/64"; }
    bridge "br0" { address "fd00:244::1/64"; }
    firewall { policy forward="drop"; }
    publish "web6" port=8080 to="[fd00:244::5]:80"
    netns "web" {
        veth "eth0" {
            address "fd00:244::5/64"
            peer "veth-web" netns="@host" master="br0" hairpin=#true
        }
        route "::/0" via="fd00:244::1" dev="eth0"
    }
}
"#;
    node.lan.exec(&["ip", "addr", "add", "fd00:1::1/64", "dev", "lan0", "nodad"]);
    let _s = apply(&node, spec);
    let pod = node.path_name("web");
    serve_in(&pod, "[::]:80", 16, |peer| peer.to_string());
    assert_eq!(seen(connect_v6(&node.lan.name, "[fd00:1::2]:8080")).ip().to_string(), "fd00:1::1");
    assert_eq!(seen(connect_v6(&pod, "[fd00:244::1]:8080")).ip().to_string(), "fd00:244::1");
}

/// `netmap`: a namespace behind the node at 10.8.0.0/24 appears as 192.0.2.0/24 on `eth0`,
/// host by host, in both directions.
#[test]
fn a_netmap_maps_each_host_both_ways() {
    if !require_root("a_netmap_maps_each_host_both_ways") {
        return;
    }
    let node = NodeRoot::new("nmap");
    let spec = r#"
node "nmap" {
    forwarding #true
    ethernet "eth0" { address "10.0.0.2/24"; }
    netmap from="10.8.0.0/24" to="192.0.2.0/24" out="eth0"
    netns "inside" {
        veth "eth0" {
            address "10.8.0.5/24"
            peer "in0" netns="@host" { address "10.8.0.1/24"; }
        }
        route "default" via="10.8.0.1" dev="eth0"
    }
}
"#;
    let _s = apply(&node, spec);
    // The LAN has no route to 10.8.0.0/24, only to the mapped network.
    node.lan.exec(&["ip", "route", "add", "192.0.2.0/24", "via", "10.0.0.2"]);
    let inside = node.path_name("inside");
    serve_in(&node.lan.name, "10.0.0.1:9000", 4, |peer| peer.to_string());
    serve_in(&inside, "0.0.0.0:9000", 4, |peer| peer.to_string());
    // Outbound: 10.8.0.5 leaves as 192.0.2.5.
    assert_eq!(seen(connect_in(&inside, "10.0.0.1:9000", 3000)).ip().to_string(), "192.0.2.5");
    // Inbound: 192.0.2.5 is 10.8.0.5; the LAN's own source is kept.
    assert_eq!(seen(connect(&node.lan, "192.0.2.5:9000", 3000)).ip().to_string(), "10.0.0.1");
    // A host of the mapped network that does not exist inside is not answered.
    assert_ne!(connect(&node.lan, "192.0.2.6:9000", 700), Conn::Reply("10.0.0.1".into()));
}

/// A TCP listener with `IP_TRANSPARENT` (what Envoy and Squid set) in namespace `ns`: it
/// accepts connections addressed to any address the TPROXY rule hands it, and answers each
/// with the address the client connected to.
fn transparent_listener(ns: &str, port: u16) {
    use std::os::fd::FromRawFd;
    let listener = netcfg_backends::netns::run_in(ns, move || -> std::io::Result<std::net::TcpListener> {
        // SAFETY: a fresh socket, options and addresses passed with their sizes; the fd is
        // owned by the listener once built.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let listener = std::net::TcpListener::from_raw_fd(fd);
            let one: libc::c_int = 1;
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::setsockopt(fd, libc::SOL_IP, libc::IP_TRANSPARENT, (&one as *const libc::c_int).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: 0 },
                sin_zero: [0; 8],
            };
            let alen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), alen) != 0 || libc::listen(fd, 16) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(listener)
        }
    })
    .expect("enter netns")
    .expect("transparent listener");
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().take(16).flatten() {
            let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = s.write_all(local.as_bytes());
        }
    });
}

/// `tproxy`: connections the node forwards toward 203.0.113.50:80 (an address it does not
/// have) are handed to a local transparent socket on 15001 that sees the original destination;
/// the policy rule and the `local` route the spec declares steer the marked packets to it.
#[test]
fn tproxy_hands_connections_to_a_transparent_socket_with_their_destination() {
    if !require_root("tproxy_hands_connections_to_a_transparent_socket_with_their_destination") {
        return;
    }
    if !kernel_has("tproxy", [netcfg_backends::kernel::Feature::NftTproxy]) {
        return;
    }
    let node = NodeRoot::new("tprx");
    let spec = r#"
node "tprx" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    table "tproxy" id=100
    rule priority=100 fwmark="0x1" table="tproxy"
    route "0.0.0.0/0" type="local" dev="lo" table="tproxy"
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"
}
"#;
    node.lan.exec(&["ip", "route", "add", "203.0.113.0/24", "via", "10.0.0.2"]);
    transparent_listener(&node.root.name, 15001);
    // Before: the node neither has nor forwards 203.0.113.50.
    assert_ne!(connect(&node.lan, "203.0.113.50:80", 700), Conn::Reply("203.0.113.50:80".into()));
    let _s = apply(&node, spec);
    assert_eq!(connect(&node.lan, "203.0.113.50:80", 3000), Conn::Reply("203.0.113.50:80".into()));
    // Another port is not proxied.
    assert_ne!(connect(&node.lan, "203.0.113.50:81", 700), Conn::Reply("203.0.113.50:81".into()));
}
