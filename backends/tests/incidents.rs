//! The four incidents of `shared/incidents/`, end to end. For each one: `check` flags the
//! example's `broken.kdl` with the incident's code at the place the incident is about and
//! passes `fixed.kdl` (no root needed); then, as root, in namespaces the test creates, the
//! broken spec is applied past the check and really fails with real TCP traffic, and the fixed
//! spec applies and really works.
//!
//! - 000 ECS awsvpc (`ecs-awsvpc/`): broken, the credentials endpoint times out once the host's
//!   ARP entry for the task expires first; fixed, it keeps working through the same sequence.
//! - 004 service hairpin (`k8s-service-hairpin/`): broken, pod -> VIP -> pod on the same bridge
//!   times out while other paths work; fixed, every path works, the backend's own included.
//! - 001 Fargate (`fargate-task/`): broken, two containers of a task cannot both bind 80;
//!   fixed, localhost between containers, ingress on 80 only, masquerade, port 80 in two tasks.
//! - 002 Linkerd (`linkerd-redirect/`): broken, the redirect to a port nobody listens on
//!   refuses; fixed, the proxy is reached, a flushed redirect is drift, re-apply restores it.

mod common;

use common::*;
use netcfg_backends::netlink::state::LinkKind;
use netcfg_backends::netlink::{self, Desired, DriftKind, Options, Plan, Session};
use netcfg_compiler::ir::Fleet;
use netcfg_lang::diagnostic::sort_diagnostics;
use netcfg_lang::{Diagnostic, FsLoader, Parsed, Severity, Span};
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Helpers

/// An example spec from `examples/`, parsed and checked as `netcfg check` does.
struct Example {
    parsed: Parsed,
    fleet: Fleet,
    diagnostics: Vec<Diagnostic>,
}

fn example(rel: &str) -> Example {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut parsed = Parsed::default();
    parsed.add_file(
        format!("examples/{rel}"),
        Some(path.clone()),
        &bytes,
        &mut FsLoader::for_files([path.as_path()]).expect("examples dir"),
    );
    assert!(parsed.diagnostics.is_empty(), "{rel}: parse: {:#?}", parsed.diagnostics);
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let mut diagnostics = compiled.diagnostics;
    sort_diagnostics(&mut diagnostics);
    Example { parsed, fleet: compiled.fleet, diagnostics }
}

impl Example {
    /// `severity[code]` of every finding, in order.
    fn codes(&self) -> Vec<String> {
        self.diagnostics.iter().map(|d| format!("{}[{}]", d.severity.as_str(), d.code)).collect()
    }

    fn slice(&self, span: Span) -> &str {
        self.parsed.sources.slice(span)
    }

    /// The whole source line the span starts on, without indentation.
    fn line(&self, span: Span) -> &str {
        let text = &self.parsed.sources.get(span.file).text;
        let start = text[..span.start as usize].rfind('\n').map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        text[start..end].trim()
    }

    /// The netlink backend's desired state of the (only) node. The spec may have check
    /// findings (a broken example is applied on purpose); the backend itself must not object.
    fn desired(&self) -> Desired {
        assert_eq!(self.fleet.nodes.len(), 1);
        let mut diags = Vec::new();
        let d = netlink::desired(&self.fleet.nodes[0], &mut diags);
        let errors: Vec<_> = diags.iter().filter(|d| d.severity == Severity::Error).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        d
    }
}

/// Creates the NICs the spec names (`ethernet`, never created by netcfg) other than the node
/// root's `eth0`: a veth whose spec end sits in the right namespace and whose other end
/// (`nicN`, up, no address) sits in the LAN namespace.
fn make_nics(node: &NodeRoot, d: &Desired) {
    let mut n = 0;
    for (ns, st) in &d.state.namespaces {
        for (name, l) in &st.links {
            if !matches!(l.kind, LinkKind::Existing { .. }) || (ns == "@host" && name == "eth0") {
                continue;
            }
            let path = node.path_name(ns);
            if !Path::new("/run/netns").join(&path).exists() {
                sh(&["ip", "netns", "add", &path]);
            }
            n += 1;
            let (peer, lan) = (format!("nic{n}"), node.lan.name.as_str());
            sh(&["ip", "link", "add", name, "netns", &path, "type", "veth", "peer", "name", &peer, "netns", lan]);
            sh(&["ip", "-n", lan, "link", "set", &peer, "up"]);
        }
    }
}

fn session(node: &NodeRoot) -> Session {
    Session::new(node.map.clone()).expect("runtime")
}

/// Plans and applies `d` (apply verifies the result itself); returns the plan.
fn apply(s: &mut Session, d: &Desired) -> Plan {
    let p = s.plan(d, Options::default()).unwrap_or_else(|e| panic!("plan: {e}"));
    if let Err(e) = s.apply(d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    p
}

fn has_op(p: &Plan, want: &str) -> bool {
    p.ops.iter().any(|o| format!("{} {}: {}", o.sign(), o.ns, o.describe()).contains(want))
}

fn reply(s: &str) -> Conn {
    Conn::Reply(s.to_string())
}

/// `sysctl -n KEY` inside `/run/netns/NS`.
fn sysctl(ns: &str, key: &str) -> String {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-n", key]).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// 000: ECS awsvpc, the credentials endpoint (aws/amazon-ecs-agent#1230)

#[test]
fn incident_000_check_flags_the_missing_return_route() {
    let broken = example("ecs-awsvpc/broken.kdl");
    assert_eq!(broken.codes(), ["error[non-symmetric-routes]", "error[non-symmetric-routes]"]);
    for (d, (task_addr, back)) in
        broken.diagnostics.iter().zip([("169.254.172.15/22", "eth14"), ("169.254.172.16/22", "eth15")])
    {
        // Primary: the gateway of the /32 route to the endpoint.
        assert_eq!(broken.slice(d.primary.span), "169.254.172.1", "{d:#?}");
        assert!(broken.line(d.primary.span).starts_with(r#"route "169.254.170.2/32" via="169.254.172.1""#), "{d:#?}");
        assert!(d.message.contains(&format!("leaves by `{back}`")), "{}", d.message);
        // Secondary: the task's address that installs no connected route.
        assert!(d.secondary.iter().any(|l| broken.slice(l.span) == task_addr), "{d:#?}");
        assert!(d.help.as_deref().is_some_and(|h| h.contains(r#"route "169.254.172.1/32" dev="ecs-eth0""#)), "{d:#?}");
    }
    assert_eq!(example("ecs-awsvpc/fixed.kdl").codes(), Vec::<String>::new());
}

/// The task's entry for the host stays valid while the host's entry for the task is gone: the
/// state the incident describes ("the ARP cache entry for the task's bridge IP expires from the
/// host's ARP cache but the task's cache still has an entry for the host's IP").
fn host_forgets_the_task(node: &NodeRoot, task: &str) {
    let entry: serde_json::Value =
        serde_json::from_str(&node.ip(task, &["-j", "neigh", "show", "169.254.172.1", "dev", "ecs-eth0"])).unwrap();
    let mac =
        entry[0]["lladdr"].as_str().unwrap_or_else(|| panic!("the task does not know the host: {entry}")).to_string();
    node.ip("@host", &["neigh", "flush", "to", "169.254.172.15", "dev", "ecs-bridge"]);
    node.ip(task, &["neigh", "replace", "169.254.172.1", "lladdr", &mac, "dev", "ecs-eth0", "nud", "reachable"]);
    assert_eq!(node.ip("@host", &["neigh", "show", "169.254.172.15", "dev", "ecs-bridge"]), "");
}

/// What the host knows of the task's `ecs-eth0` (`ip neigh` state, e.g. `REACHABLE`, `FAILED`).
fn host_entry_for_task(node: &NodeRoot) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&node.ip("@host", &["-j", "neigh", "show", "169.254.172.15", "dev", "ecs-bridge"]))
            .unwrap();
    v[0]["state"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

#[test]
fn incident_000_ecs_credentials_endpoint_times_out_broken_and_keeps_working_fixed() {
    if !require_root("incident_000_ecs_credentials_endpoint_times_out_broken_and_keeps_working_fixed") {
        return;
    }
    let node = NodeRoot::new("ecs");
    let broken = example("ecs-awsvpc/broken.kdl").desired();
    make_nics(&node, &broken);
    let mut s = session(&node);
    apply(&mut s, &broken);
    let task = node.path_name("task-1");
    assert_eq!(sysctl(&task, "net.ipv4.conf.all.rp_filter"), "1", "strict rp_filter in the task");
    assert_eq!(sysctl(&node.root.name, "net.ipv4.conf.all.route_localnet"), "1");
    // The ECS agent on localhost in the host namespace; 169.254.170.2:80 is DNAT-ed to it.
    serve_in(&node.root.name, "127.0.0.1:51679", 100, |_| "credentials".to_string());

    // Broken, caches empty: the task asks for 169.254.172.1 (forced on-link); the host learns
    // the task's MAC from that request, answers, and the connection works.
    assert_eq!(connect_in(&task, "169.254.170.2:80", 3000), reply("credentials"), "first connection, broken spec");
    assert_ne!(host_entry_for_task(&node), "", "the host learned the task's MAC from its ARP request");
    // The host's entry expires first. Now the host must ask ("who has 169.254.172.15, tell
    // 169.254.172.1"); the task's path back to 169.254.172.1 is the default route over eth14, so
    // strict rp_filter drops the host's ARP requests arriving on ecs-eth0: the SYN gets in, the
    // SYN-ACK never goes out.
    host_forgets_the_task(&node, "task-1");
    assert_eq!(connect_in(&task, "169.254.170.2:80", 4000), Conn::TimedOut, "broken spec, host entry expired");
    let state = host_entry_for_task(&node);
    assert!(state == "FAILED" || state == "INCOMPLETE", "the host cannot resolve the task: {state:?}");

    // Fixed: the same running node, re-applied. The plan adds the link-scoped return route.
    let fixed = example("ecs-awsvpc/fixed.kdl").desired();
    let p = apply(&mut s, &fixed);
    assert!(has_op(&p, "+ task-1: route 169.254.172.1/32 dev ecs-eth0"), "{}", p.to_text());
    assert!(s.verify(&fixed, Options::default()).expect("verify").is_empty());
    node.ip("@host", &["neigh", "flush", "dev", "ecs-bridge"]);
    node.ip("task-1", &["neigh", "flush", "dev", "ecs-eth0"]);
    // The same sequence.
    assert_eq!(connect_in(&task, "169.254.170.2:80", 3000), reply("credentials"), "first connection, fixed spec");
    host_forgets_the_task(&node, "task-1");
    assert_eq!(connect_in(&task, "169.254.170.2:80", 4000), reply("credentials"), "fixed spec, host entry expired");
    // This time the host resolved the task by asking: the task answered its ARP request.
    let state = host_entry_for_task(&node);
    assert!(["REACHABLE", "STALE", "DELAY", "PROBE"].contains(&state.as_str()), "host entry: {state:?}");
}

// ---------------------------------------------------------------------------------------------
// 004: service DNAT between two pods of one bridge

#[test]
fn incident_004_check_flags_missing_bridge_netfilter() {
    let broken = example("k8s-service-hairpin/broken.kdl");
    assert_eq!(broken.codes(), ["error[missing-bridge-netfilter]"]);
    let d = &broken.diagnostics[0];
    assert_eq!(broken.slice(d.primary.span), "10.244.1.3:8080", "{d:#?}");
    assert!(broken.line(d.primary.span).starts_with("backend "), "{d:#?}");
    assert!(d.help.as_deref().is_some_and(|h| h.contains("bridge-netfilter #true")), "{d:#?}");
    assert_eq!(example("k8s-service-hairpin/fixed.kdl").codes(), Vec::<String>::new());
}

/// Whether bridged IPv4 can be passed to netfilter inside the namespace (`br_netfilter`).
fn bridge_netfilter_available(ns: &str) -> bool {
    let path = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    netcfg_backends::netns::run_in(ns, move || Path::new(path).exists()).expect("enter netns")
}

#[test]
fn incident_004_service_hairpin_fails_without_bridge_netfilter_and_works_fixed() {
    if !require_root("incident_004_service_hairpin_fails_without_bridge_netfilter_and_works_fixed") {
        return;
    }
    let node = NodeRoot::new("k8s");
    // A client on another path: the LAN routes the service range to the node.
    node.lan.exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.0.0.11"]);
    let broken = example("k8s-service-hairpin/broken.kdl").desired();
    let mut s = session(&node);
    apply(&mut s, &broken);
    let (pod_a, pod_b) = (node.path_name("pod-a"), node.path_name("pod-b"));
    serve_in(&pod_b, "0.0.0.0:8080", 1000, |_| "pod-b".to_string());

    // Broken: bridge netfilter off in the node's namespace (br_netfilter not loaded, or its
    // sysctl off; a fresh namespace may inherit either).
    let br_nf = bridge_netfilter_available(&node.root.name);
    if br_nf {
        node.root.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
    } else {
        eprintln!("note: br_netfilter is not loaded here: the broken part runs as in the incident");
    }
    assert_eq!(connect_in(&pod_a, "10.244.1.3:8080", 3000), reply("pod-b"), "pod to pod directly");
    assert_eq!(connect_in(&node.lan.name, "10.96.0.10:80", 3000), reply("pod-b"), "LAN client to the VIP");
    // pod-a -> VIP: DNAT-ed on the routed path, but pod-b's SYN-ACK is bridged straight to
    // pod-a, never un-NAT-ed; pod-a resets it and retries until it gives up.
    assert_eq!(connect_in(&pod_a, "10.96.0.10:80", 3000), Conn::TimedOut, "pod-a to the VIP, broken spec");

    // Fixed: the same node, re-applied; the plan turns bridge netfilter on, loading
    // `br_netfilter` first where it is a module nothing loaded (Debian's stock kernel), and sets
    // hairpin.
    let fixed = example("k8s-service-hairpin/fixed.kdl").desired();
    let p = match s.plan(&fixed, Options::default()) {
        Ok(p) => p,
        Err(netlink::PlanError::Conflicts(d))
            if d.iter().all(|d| d.code == "missing-kernel-feature") && std::env::var("CI").as_deref() != Ok("true") =>
        {
            eprintln!("skipping the fixed part of incident_004: this kernel cannot have br_netfilter: {d:#?}");
            return;
        }
        Err(e) => panic!("plan: {e}"),
    };
    if let Err(e) = s.apply(&fixed, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }
    if br_nf {
        assert!(has_op(&p, "~ @host: sysctl net.bridge.bridge-nf-call-iptables: 0 -> 1"), "{}", p.to_text());
    } else {
        assert!(has_op(&p, "+ @host: kernel module br_netfilter"), "{}", p.to_text());
        assert!(has_op(&p, "+ @host: sysctl net.bridge.bridge-nf-call-iptables = 1"), "{}", p.to_text());
    }
    assert!(has_op(&p, "~ @host: link veth-pod-b: hairpin false -> true"), "{}", p.to_text());
    assert_eq!(sysctl(&node.root.name, "net.bridge.bridge-nf-call-iptables"), "1");
    for _ in 0..5 {
        assert_eq!(connect_in(&pod_a, "10.96.0.10:80", 3000), reply("pod-b"), "pod-a to the VIP, fixed spec");
    }
    assert_eq!(connect_in(&pod_a, "10.244.1.3:8080", 3000), reply("pod-b"), "pod to pod directly");
    assert_eq!(connect_in(&node.lan.name, "10.96.0.10:80", 3000), reply("pod-b"), "LAN client to the VIP");
    // The backend reaching its own service and being chosen: DNAT-ed while bridged, out of the
    // port it came in by (hairpin), masqueraded so that the reply comes back to be un-NAT-ed.
    assert_eq!(connect_in(&pod_b, "10.96.0.10:80", 3000), reply("pod-b"), "pod-b to its own VIP, fixed spec");
}

// ---------------------------------------------------------------------------------------------
// 001: Fargate task networking

#[test]
fn incident_001_check_flags_the_duplicate_port() {
    let broken = example("fargate-task/broken.kdl");
    assert_eq!(broken.codes(), ["error[duplicate-port]"]);
    let d = &broken.diagnostics[0];
    assert_eq!(broken.slice(d.primary.span), "80", "{d:#?}");
    assert_eq!(broken.line(d.primary.span), r#"listen "api" port=80"#, "{d:#?}");
    assert!(d.secondary.iter().any(|l| broken.line(l.span) == r#"listen "nginx" port=80"#), "{d:#?}");
    assert_eq!(example("fargate-task/fixed.kdl").codes(), Vec::<String>::new());
}

/// Binds `addr` inside `/run/netns/NS` and keeps the socket; the error kind when it cannot.
fn bind_in(ns: &str, addr: &str) -> Result<std::net::TcpListener, std::io::ErrorKind> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    netcfg_backends::netns::run_in(ns, move || std::net::TcpListener::bind(addr))
        .expect("enter netns")
        .map_err(|e| e.kind())
}

#[test]
fn incident_001_fargate_tasks_share_localhost_open_one_port_and_masquerade() {
    if !require_root("incident_001_fargate_tasks_share_localhost_open_one_port_and_masquerade") {
        return;
    }
    let node = NodeRoot::new("fargate");
    // The VPC side: the node's gateway 10.0.1.1, an "internet" server at 203.0.113.10 that
    // answers with the address it sees, and a client that routes the task subnet to the node.
    let lan = &node.lan;
    lan.exec(&["ip", "addr", "add", "10.0.1.1/24", "dev", "lan0"]);
    lan.exec(&["ip", "addr", "add", "203.0.113.10/32", "dev", "lo"]);
    lan.exec(&["ip", "route", "add", "172.31.0.0/24", "via", "10.0.1.20"]);
    serve_in(&lan.name, "203.0.113.10:9000", 10, |peer| peer.ip().to_string());
    let mut s = session(&node);
    let (web1, web2) = (node.path_name("web-1"), node.path_name("web-2"));

    // Broken: the API container of web-1 was given port 80 too. The namespaces are fine, the
    // containers are not: whichever starts second cannot bind.
    apply(&mut s, &example("fargate-task/broken.kdl").desired());
    let nginx = bind_in(&web1, "0.0.0.0:80").expect("nginx binds 80");
    assert_eq!(bind_in(&web1, "0.0.0.0:80").err(), Some(std::io::ErrorKind::AddrInUse), "api on 80 in web-1");
    assert!(bind_in(&web2, "0.0.0.0:80").is_ok(), "port 80 in another task is free");
    drop(nginx);

    // Fixed.
    let fixed = example("fargate-task/fixed.kdl").desired();
    apply(&mut s, &fixed);
    assert!(s.verify(&fixed, Options::default()).expect("verify").is_empty());
    serve_in(&web1, "0.0.0.0:80", 100, |_| "web-1 nginx".to_string());
    serve_in(&web1, "0.0.0.0:8080", 100, |_| "web-1 api".to_string());
    serve_in(&web2, "0.0.0.0:80", 100, |_| "web-2 nginx".to_string());

    // Containers of one task talk over localhost, the closed port included.
    assert_eq!(connect_in(&web1, "127.0.0.1:8080", 3000), reply("web-1 api"));
    assert_eq!(connect_in(&web1, "127.0.0.1:80", 3000), reply("web-1 nginx"));
    // From outside (the host, the other task, the VPC) only the declared ingress port.
    for (from, who) in [(&node.root.name, "host"), (&web2, "web-2"), (&lan.name, "LAN")] {
        assert_eq!(connect_in(from, "172.31.0.10:80", 3000), reply("web-1 nginx"), "{who} -> web-1:80");
        assert_eq!(connect_in(from, "172.31.0.10:8080", 1000), Conn::TimedOut, "{who} -> web-1:8080 is dropped");
    }
    // Two tasks on one host both serve port 80.
    assert_eq!(connect_in(&web1, "172.31.0.11:80", 3000), reply("web-2 nginx"));
    assert_eq!(connect_in(&lan.name, "172.31.0.11:80", 3000), reply("web-2 nginx"));
    // Egress leaves masqueraded: the far side sees the node's address, not the task's.
    assert_eq!(connect_in(&web1, "203.0.113.10:9000", 3000), reply("10.0.1.20"));
    assert_eq!(connect_in(&web2, "203.0.113.10:9000", 3000), reply("10.0.1.20"));
}

// ---------------------------------------------------------------------------------------------
// 002: Linkerd, rules that silently are not there (linkerd/linkerd2#2219)

#[test]
fn incident_002_check_flags_the_redirect_to_a_port_nobody_listens_on() {
    let broken = example("linkerd-redirect/broken.kdl");
    assert_eq!(broken.codes(), ["warning[redirect-without-listener]"]);
    let d = &broken.diagnostics[0];
    assert_eq!(broken.slice(d.primary.span), "4143", "{d:#?}");
    assert!(broken.line(d.primary.span).starts_with(r#"redirect in proto="tcp" to-port=4143"#), "{d:#?}");
    assert_eq!(example("linkerd-redirect/fixed.kdl").codes(), Vec::<String>::new());
}

#[test]
fn incident_002_linkerd_redirect_drift_is_detected_and_reapply_restores_the_proxy() {
    if !require_root("incident_002_linkerd_redirect_drift_is_detected_and_reapply_restores_the_proxy") {
        return;
    }
    let node = NodeRoot::new("linkerd");
    node.lan.exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.0.0.12"]);
    let pod = node.path_name("web-7d4b9");
    let mut s = session(&node);

    // Broken: the proxy listens where the spec says (4140), the redirect goes to 4143.
    apply(&mut s, &example("linkerd-redirect/broken.kdl").desired());
    serve_in(&pod, "0.0.0.0:8080", 100, |_| "app".to_string());
    serve_in(&pod, "0.0.0.0:4191", 100, |_| "admin".to_string());
    let outbound = bind_in(&pod, "0.0.0.0:4140").expect("the proxy on 4140");
    assert_eq!(connect_in(&node.root.name, "10.244.2.5:8080", 3000), Conn::Refused, "redirected to 4143, nobody there");
    assert_eq!(connect_in(&node.lan.name, "10.96.0.20:80", 3000), Conn::Refused, "the service too");
    assert_eq!(connect_in(&node.root.name, "10.244.2.5:4191", 3000), reply("admin"), "the admin port is exempt");
    drop(outbound);

    // Fixed: the proxy's inbound listener on 4143.
    let fixed = example("linkerd-redirect/fixed.kdl").desired();
    apply(&mut s, &fixed);
    assert_eq!(s.verify(&fixed, Options::default()).expect("verify"), vec![], "in sync after apply");
    serve_in(&pod, "0.0.0.0:4143", 100, |_| "proxy".to_string());
    let through_proxy = |node: &NodeRoot, want: &str| {
        assert_eq!(connect_in(&node.root.name, "10.244.2.5:8080", 3000), reply(want), "host -> pod:8080");
        assert_eq!(connect_in(&node.lan.name, "10.96.0.20:80", 3000), reply(want), "LAN -> service VIP");
        assert_eq!(connect_in(&node.root.name, "10.244.2.5:4191", 3000), reply("admin"), "admin port");
    };
    through_proxy(&node, "proxy");

    // A racing CNI plugin flushes the pod's redirect.
    sh(&["ip", "netns", "exec", &pod, "nft", "flush", "chain", "inet", "netcfg", "nat-prerouting"]);
    let drift = s.verify(&fixed, Options::default()).expect("verify");
    assert_eq!(drift.len(), 2, "{drift:#?}");
    assert_eq!((drift[0].ns.as_str(), drift[0].kind), ("web-7d4b9", DriftKind::Changed), "{drift:#?}");
    assert_eq!(drift[0].what, "nftables table inet netcfg", "{drift:#?}");
    // The missing rule is named, on the spec's `redirect` line.
    assert_eq!((drift[1].ns.as_str(), drift[1].kind), ("web-7d4b9", DriftKind::Missing), "{drift:#?}");
    assert!(drift[1].what.starts_with("nftables: missing rule in chain `nat-prerouting`: `"), "{drift:#?}");
    assert!(drift[1].what.contains("redirect to :4143"), "{drift:#?}");
    assert_ne!(drift[1].span, drift[0].span, "the rule's own span, not the namespace's");
    assert!(netlink::drift_text(&drift)
        .starts_with("changed web-7d4b9: nftables table inet netcfg\nmissing web-7d4b9: nftables: missing rule"));
    // Plaintext straight to the application: exactly what the incident feared.
    through_proxy(&node, "app");

    // Re-apply restores the redirect.
    let p = apply(&mut s, &fixed);
    assert_eq!(p.ops.len(), 1, "only the pod's table is reloaded:\n{}", p.to_text());
    assert_eq!(s.verify(&fixed, Options::default()).expect("verify"), vec![]);
    through_proxy(&node, "proxy");
}
