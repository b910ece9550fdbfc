//! Fixture tests for the packet-path model (`netcfg_compiler::trace`) judged by the lowered
//! ruleset (`nftables::eval`): a spec, a packet, and the steps expected, one line per step as
//! `[namespace] stage verdict: what`. Every stage of the model has a case where it decides.

use netcfg_backends::nftables::eval::FleetRuleset;
use netcfg_compiler::model::{LinkRef, Model, NetnsRef};
use netcfg_compiler::trace::{Packet, Start, Trace, TraceConfig, Tracer, Walk};
use netcfg_lang::parse_str;
use netcfg_lang::vocab::Proto;
use std::net::IpAddr;

/// Where a fixture packet starts: `"node/netns"` sends it, `"node/netns%link"` receives it
/// from outside on `link` (netns `@host` for the host namespace).
fn trace_with(src: &str, from: &str, packet: &str, config: TraceConfig) -> Trace {
    let parsed = parse_str("fixture.kdl", src);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let compiled = netcfg_compiler::compile(&parsed.spec);
    let fleet = &compiled.fleet;
    let model = Model::new(fleet);
    let ruleset = FleetRuleset::new(fleet);
    let tracer = Tracer::new(&model, &ruleset, config);
    let (place, link) = from.split_once('%').map(|(a, b)| (a, Some(b))).unwrap_or((from, None));
    let (node_name, ns_name) = place.split_once('/').expect("node/netns");
    let node = fleet.nodes.iter().find(|n| n.name.value == node_name).expect("node");
    let netns = if ns_name == "@host" { node.namespaces[0].id } else { node.find_netns(ns_name).expect("netns").id };
    let ns = NetnsRef { node: node.id, netns };
    // `proto src:sport dst:dport`, or `proto dst:dport` to let the kernel pick the source.
    let words: Vec<&str> = packet.split_whitespace().collect();
    let proto = match words[0] {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => panic!("{other}"),
    };
    let ep = |s: &str| -> (IpAddr, u16) {
        let (a, p) = s.rsplit_once(':').expect("addr:port");
        (a.parse().expect("addr"), p.parse().expect("port"))
    };
    let (dst, dport) = ep(words[words.len() - 1]);
    let (src, sport) = if words.len() == 3 {
        ep(words[1])
    } else {
        (tracer.source_address(ns, dst).expect("a source address"), 40000)
    };
    let start = match link {
        Some(l) => Start::Arrive(LinkRef { node: node.id, link: node.find_link(netns, l).expect("link").id }),
        None => Start::Local(ns),
    };
    tracer.trace(start, Packet { src, dst, proto, sport, dport })
}

fn trace(src: &str, from: &str, packet: &str) -> Trace {
    trace_with(src, from, packet, TraceConfig::default())
}

fn lines(w: &Walk) -> String {
    w.steps
        .iter()
        .map(|s| format!("{} {}: {}", s.stage.keyword(), s.verdict.keyword(), s.what))
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_steps(w: &Walk, expected: &str) {
    let got = lines(w);
    let want: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(got, want.join("\n"), "\n--- got ---\n{got}\n");
}

const ROUTER: &str = r#"
node "r" {
    forwarding #true
    ethernet "wan" { address "192.0.2.2/24"; }
    bridge "lan" { address "10.1.0.1/24"; }
    route "default" via="192.0.2.1" dev="wan"
    masquerade from="10.1.0.0/24" out="wan"
    firewall {
        policy forward="drop"
        stateful #true
        allow forward proto="tcp" port=443 from="10.1.0.0/24"
    }
    netns "pc" {
        veth "eth0" {
            address "10.1.0.10/24"
            peer "lan-pc" netns="@host" master="lan"
        }
        route "default" via="10.1.0.1" dev="eth0"
    }
}
"#;

#[test]
fn a_forwarded_connection_is_masqueraded_and_its_reply_undone() {
    let t = trace(ROUTER, "r/pc", "tcp 198.51.100.7:443");
    assert_steps(
        &t.forward,
        "start pass: tcp 10.1.0.10:40000 -> 198.51.100.7:443 sent by a process of `pc`
         route pass: 0.0.0.0/0 via 10.1.0.1 dev eth0 (table main)
         neighbour pass: `10.1.0.1` is `lan` of node `r`
         l2 pass: `eth0` -> `lan-pc` (@host) -> `lan` (@host)
         route pass: 0.0.0.0/0 via 192.0.2.1 dev wan (table main)
         nft forward pass: chain `forward`: accept by `ip saddr 10.1.0.0/24 meta l4proto tcp th dport 443 accept`
         nft postrouting pass: chain `nat-postrouting`: masquerade to 192.0.2.2 by `oifname \"wan\" ip saddr 10.1.0.0/24 masquerade`
         deliver delivered: leaves by `wan` toward `192.0.2.1`",
    );
    // The reply from outside is not traced: the far side is not in the spec.
    assert!(t.reply.is_none());
    assert!(t.delivered());
}

#[test]
fn a_reply_from_outside_is_un_masqueraded_back_to_the_client() {
    // The reply arrives on `wan` addressed to the masquerade address.
    let t = trace(
        r#"
node "r" {
    forwarding #true
    ethernet "wan" { address "192.0.2.2/24"; }
    bridge "lan" { address "10.1.0.1/24"; }
    route "default" via="192.0.2.1" dev="wan"
    netns "srv" {
        veth "eth0" {
            address "10.1.0.20/24"
            peer "lan-srv" netns="@host" master="lan"
        }
        route "default" via="10.1.0.1" dev="eth0"
        listen "web" port=8080
    }
    service "web" vip="192.0.2.2" port=80 { backend "10.1.0.20:8080"; }
}
"#,
        "r/@host%wan",
        "tcp 203.0.113.9:5555 192.0.2.2:80",
    );
    assert!(t.delivered(), "{t:#?}");
    let reply = t.reply.as_ref().expect("a reply");
    let conntrack: Vec<&str> =
        reply.steps.iter().filter(|s| s.stage.keyword() == "conntrack").map(|s| s.what.as_str()).collect();
    assert_eq!(conntrack, ["reply source 10.1.0.20:8080 -> 192.0.2.2:80 (undoing the destination NAT)"]);
    assert_eq!(reply.steps.last().expect("a step").what, "leaves by `wan` toward `192.0.2.1`");
}

#[test]
fn the_forward_policy_drops_what_no_rule_allows() {
    let t = trace(ROUTER, "r/pc", "tcp 198.51.100.7:22");
    let died = t.forward.dropped_at().expect("dropped");
    assert_eq!(died.stage.keyword(), "nft forward");
    assert_eq!(died.what, "chain `forward`: drop by the chain's policy");
    assert!(died.span.is_some(), "the policy's span");
    assert!(!t.delivered());
}

#[test]
fn without_forwarding_the_router_drops() {
    let src = ROUTER.replace("forwarding #true", "");
    let t = trace(&src, "r/pc", "tcp 198.51.100.7:443");
    let died = t.forward.dropped_at().expect("dropped");
    assert_eq!(died.stage.keyword(), "forwarding");
    assert_eq!(died.why.as_deref(), Some("forwarding is off (`net.ipv4.ip_forward` is not 1)"));
}

#[test]
fn strict_rp_filter_drops_what_arrives_by_the_other_uplink() {
    let t = trace(
        r#"
node "r" {
    rp-filter "strict"
    ethernet "isp1" { address "192.0.2.2/24"; }
    ethernet "isp2" { address "198.51.100.2/24"; }
    route "default" via="192.0.2.1" dev="isp1"
    route "default" via="198.51.100.1" dev="isp2" metric=100
    listen "ssh" port=22
}
"#,
        "r/@host%isp2",
        "tcp 203.0.113.9:5555 198.51.100.2:22",
    );
    assert_steps(
        &t.forward,
        "start pass: tcp 203.0.113.9:5555 -> 198.51.100.2:22 arrives on `isp2`
         rp_filter dropped: strict rp_filter on `isp2`",
    );
    assert_eq!(
        t.forward.dropped_at().and_then(|s| s.why.as_deref()),
        Some("the route back to `203.0.113.9` leaves by `isp1`, not `isp2`")
    );
}

#[test]
fn a_next_hop_nobody_owns_on_an_internal_segment_is_unreachable() {
    let t = trace(ROUTER, "r/@host", "tcp 10.1.0.99:80");
    assert_steps(
        &t.forward,
        "start pass: tcp 10.1.0.1:40000 -> 10.1.0.99:80 sent by a process of node `r`
         route pass: 10.1.0.0/24 dev lan (table main)
         neighbour dropped: who has `10.1.0.99` on `lan`?",
    );
}

#[test]
fn routes_that_discard_and_missing_routes_end_the_walk() {
    let src = r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "10.66.0.0/16" type="blackhole"
    route "10.77.0.0/16" via="10.0.0.1" dev="eth0" table=100
}
"#;
    let t = trace(src, "n/@host", "udp 10.0.0.2:5000 10.66.1.1:53");
    assert_steps(
        &t.forward,
        "start pass: udp 10.0.0.2:5000 -> 10.66.1.1:53 sent by a process of node `n`
         route dropped: `blackhole` route 10.66.0.0/16 (table main)",
    );
    // Table 100 is not consulted without a policy rule that sends packets there.
    let t = trace(src, "n/@host", "udp 10.0.0.2:5000 10.77.1.1:53");
    assert_eq!(t.forward.dropped_at().map(|s| s.what.as_str()), Some("no route to `10.77.1.1` in node `n`"));
}

#[test]
fn nothing_listening_refuses_and_a_port_bound_twice_fails() {
    let src = r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    listen "a" port=80
    listen "b" port=80
    listen "c" port=53 proto="udp"
}
"#;
    let t = trace(src, "n/@host%eth0", "tcp 10.0.0.9:5555 10.0.0.2:8080");
    assert_eq!(
        t.forward.dropped_at().map(|s| (s.what.as_str(), s.why.as_deref())),
        Some((
            "nothing listens on 10.0.0.2:8080/tcp in node `n`",
            Some("the kernel answers with a reset (connection refused); the namespace's listeners: `a` 80/tcp, `b` 80/tcp, `c` 53/udp")
        ))
    );
    let t = trace(src, "n/@host%eth0", "tcp 10.0.0.9:5555 10.0.0.2:80");
    assert_eq!(t.forward.dropped_at().map(|s| s.what.as_str()), Some("port 80 is bound twice"));
    let t = trace(src, "n/@host%eth0", "udp 10.0.0.9:5555 10.0.0.2:53");
    assert!(t.delivered(), "{t:#?}");
    assert_eq!(t.forward.steps.last().map(|s| s.what.as_str()), Some("delivered to `c`"));
}

const OVERLAY: &str = r#"
node "a" {
    ethernet "eth0" { address "10.0.0.1/24"; }
    vxlan "vx0" vni=42 local="10.0.0.1" dev="eth0" { address "10.200.0.1/24"; }
}
node "b" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    vxlan "vx0" vni=42 local="10.0.0.2" dev="eth0" { address "10.200.0.2/24"; }
    listen "ssh" port=22
}
"#;

#[test]
fn a_vxlan_carries_the_packet_to_another_node_of_the_fleet() {
    let t = trace_with(OVERLAY, "a/@host", "tcp 10.200.0.2:22", TraceConfig { fleet: true, draw: 0 });
    assert!(t.delivered(), "{t:#?}");
    assert_eq!(t.forward.steps.last().map(|s| s.what.as_str()), Some("delivered to `ssh`"));
    let reply = t.reply.as_ref().expect("a reply");
    assert_eq!(
        reply.steps.last().map(|s| s.what.as_str()),
        Some("tcp 10.200.0.2:22 -> 10.200.0.1:40000 reaches the client's socket")
    );
    // Without --fleet the packet leaves the node and the trace says where it goes.
    let t = trace(OVERLAY, "a/@host", "tcp 10.200.0.2:22");
    assert_eq!(t.forward.steps.last().map(|s| s.what.as_str()), Some("leaves node `a` toward node `b`"));
}

#[test]
fn a_match_the_model_cannot_decide_is_uncertain_and_named() {
    // `except-uid` becomes `meta skuid != 2102`: which user sends is not known offline.
    let t = trace(
        r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    redirect out proto="tcp" port=80 to-port=15001 except-uid=2102
}
"#,
        "n/@host",
        "tcp 93.184.216.34:80",
    );
    let step = t.forward.steps.iter().find(|s| s.verdict.keyword() == "uncertain").expect("an uncertain step");
    assert_eq!(step.stage.keyword(), "nft output");
    assert!(step.why.as_deref().is_some_and(|w| w.contains("meta skuid")), "{step:?}");
    assert!(t.forward.uncertain());
}

#[test]
fn bridged_replies_skip_conntrack_without_bridge_netfilter() {
    let src = |nf: &str| {
        format!(
            r#"
node "w" {{
    forwarding #true
    {nf}
    bridge "cni0" {{ address "10.244.1.1/24"; }}
    netns "a" {{
        veth "eth0" {{
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0"
        }}
        route "default" via="10.244.1.1" dev="eth0"
    }}
    netns "b" {{
        veth "eth0" {{
            address "10.244.1.3/24"
            peer "veth-b" netns="@host" master="cni0"
        }}
        route "default" via="10.244.1.1" dev="eth0"
    }}
    service "web" vip="10.96.0.10" port=80 {{ backend "10.244.1.3:8080"; }}
}}
"#
        )
    };
    let broken = trace(&src(""), "w/a", "tcp 10.96.0.10:80");
    let reply = broken.reply.as_ref().expect("a reply");
    assert!(reply.steps.iter().any(|s| s.what == "bridged by `cni0` without netfilter"));
    assert_eq!(reply.dropped_at().map(|s| s.stage.keyword()), Some("deliver".into()));
    let fixed = trace(&src("bridge-netfilter #true"), "w/a", "tcp 10.96.0.10:80");
    assert!(fixed.delivered(), "{fixed:#?}");
    let reply = fixed.reply.as_ref().expect("a reply");
    assert_steps(
        reply,
        "start pass: tcp 10.244.1.3:8080 -> 10.244.1.2:40000 answered from `b`
         route pass: 10.244.1.0/24 dev eth0 (table main)
         neighbour pass: `10.244.1.2` is `eth0` of `a`
         l2 pass: `eth0` -> `veth-b` (@host) -> `cni0` (@host) -> `veth-a` (@host) -> `eth0` (a)
         l2 pass: bridged by `cni0` through netfilter
         conntrack pass: reply source 10.244.1.3:8080 -> 10.96.0.10:80 (undoing the destination NAT)
         route pass: `10.244.1.2` is local (`eth0`)
         deliver delivered: tcp 10.96.0.10:80 -> 10.244.1.2:40000 reaches the client's socket",
    );
}

#[test]
fn an_outbound_redirect_goes_to_the_local_proxy_and_the_reply_looks_like_the_server() {
    let t = trace(
        r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    route "default" via="10.0.0.1" dev="eth0"
    redirect out proto="tcp" port=80 to-port=15001
    listen "proxy" port=15001
}
"#,
        "n/@host",
        "tcp 93.184.216.34:80",
    );
    assert!(t.delivered(), "{t:#?}");
    assert_eq!(t.forward.steps.last().map(|s| s.what.as_str()), Some("delivered to `proxy`"));
    assert!(t.forward.steps.iter().any(|s| s.what.starts_with("chain `nat-output`: redirect to 127.0.0.1:15001")));
    let reply = t.reply.as_ref().expect("a reply");
    assert!(reply
        .steps
        .iter()
        .any(|s| s.what == "reply source 127.0.0.1:15001 -> 93.184.216.34:80 (undoing the destination NAT)"));
}

const PUBLISHING: &str = r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "192.0.2.10/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    bridge "lab" { address "10.20.0.1/24"; }
    firewall {
        policy forward="drop"
        allow forward iif="lab" oif="eth0"
    }
    publish "web" port=8080 to="10.244.1.5:80"
    publish "office" port=2222 to="10.244.1.5:22" from="198.51.100.0/24"
    netmap from="10.20.0.0/24" to="203.0.113.0/24" out="eth0"
    netns "web" {
        veth "eth0" {
            address "10.244.1.5/24"
            peer "veth-web" netns="@host" master="br0"
        }
        route "default" via="10.244.1.1" dev="eth0"
    }
    netns "lab-7" {
        veth "eth0" {
            address "10.20.0.7/24"
            peer "veth-lab7" netns="@host" master="lab"
        }
        route "default" via="10.20.0.1" dev="eth0"
    }
}
"#;

#[test]
fn a_published_port_is_dnated_on_arrival_and_for_the_node_itself() {
    let t = trace(PUBLISHING, "n/@host%eth0", "tcp 192.0.2.7:40000 192.0.2.10:8080");
    assert!(t.delivered(), "{}", lines(&t.forward));
    let forward = lines(&t.forward);
    assert!(
        forward.contains("nft prerouting pass: chain `nat-prerouting`: DNAT to 10.244.1.5:80 by `meta nfproto ipv4 fib daddr type local meta l4proto tcp th dport 8080 dnat ip to 10.244.1.5:80`"),
        "{forward}"
    );
    assert!(forward.contains("nft forward pass: chain `forward`: accept by `ct status dnat accept`"), "{forward}");
    let reply = lines(t.reply.as_ref().expect("a reply"));
    assert!(reply.contains("reply source 10.244.1.5:80 -> 192.0.2.10:8080 (undoing the destination NAT)"), "{reply}");
    // The node's own connection to its address, through the output hook.
    let local = trace(PUBLISHING, "n/@host", "tcp 192.0.2.10:8080");
    assert!(lines(&local.forward).contains("nft output pass: chain `nat-output`: DNAT to 10.244.1.5:80"));
    assert!(local.delivered());
    // `from`: another source is not translated; the node itself has nothing on 2222.
    let other = trace(PUBLISHING, "n/@host%eth0", "tcp 192.0.2.7:40000 192.0.2.10:2222");
    assert!(!lines(&other.forward).contains("DNAT"), "{}", lines(&other.forward));
}

#[test]
fn a_netmap_keeps_the_host_part_both_ways() {
    let out = trace(PUBLISHING, "n/lab-7", "tcp 192.0.2.7:443");
    let forward = lines(&out.forward);
    assert!(
        forward.contains("chain `nat-postrouting`: SNAT to 203.0.113.7 by `oifname \"eth0\" ip saddr 10.20.0.0/24 snat ip prefix to 203.0.113.0/24`"),
        "{forward}"
    );
    let inbound = trace(PUBLISHING, "n/@host%eth0", "tcp 192.0.2.7:40000 203.0.113.7:22");
    let forward = lines(&inbound.forward);
    assert!(forward.contains("DNAT to 10.20.0.7:22"), "{forward}");
    assert!(inbound.delivered(), "{forward}");
}

#[test]
fn membership_of_a_dynamic_set_is_uncertain_and_named() {
    // What a ban list holds is known only at run time: the trace names the rule it cannot
    // decide and goes on as if it did not match.
    let t = trace(
        r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    firewall {
        policy in="drop"
        set "banned" dynamic=#true timeout="1h"
        deny in from="@banned"
        deny in proto="tcp" port=23 add-to="@banned"
        allow in proto="tcp" port=443
    }
    listen "web" port=443
}
"#,
        "n/@host%eth0",
        "tcp 10.0.0.9:40000 10.0.0.2:443",
    );
    let step = t.forward.steps.iter().find(|s| s.verdict.keyword() == "uncertain").expect("an uncertain step");
    assert!(step.why.as_deref().is_some_and(|w| w.contains("dynamic set `set-banned-v4`")), "{step:?}");
    assert!(t.forward.uncertain());
}
