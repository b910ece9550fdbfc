//! Firewalls as sets: the compiled form (runs of rules merged into set lookups) decides every
//! generated packet exactly as the naive form (one nft rule per spec rule) does, judged by a
//! small evaluator over the typed ruleset; every emitted ruleset passes the real `nft -c`; and
//! real TCP traffic is admitted or dropped through a merged set as the spec says.

mod common;

use common::{connect, require_root, serve, wire, Conn, Netns};
use netcfg_backends::nftables::{self, exec, lower, ruleset::*};
use netcfg_lang::vocab::{ConnState, Proto};
use std::fmt::Write as _;
use std::net::IpAddr;

/// One packet as the filter chains see it.
#[derive(Clone, Debug)]
struct Packet {
    iif: &'static str,
    oif: &'static str,
    proto: Proto,
    saddr: IpAddr,
    daddr: IpAddr,
    sport: u16,
    dport: u16,
    state: ConnState,
}

impl Packet {
    fn family(&self) -> Family {
        Family::of(self.saddr)
    }
}

fn if_is(v: &IfName, name: &str) -> bool {
    v.to_string() == format!("\"{name}\"")
}

/// Whether the packet's field behind `sel` equals `value` (a set of values: holds).
fn holds(p: &Packet, sel: Selector, value: &Value) -> bool {
    let port = |port: u16| match value {
        Value::Ports(ps) => ps.0.iter().any(|r| r.lo <= port && port <= r.hi),
        Value::Port(q) => *q == port,
        Value::Range(lo, hi) => (*lo..=*hi).contains(&u32::from(port)),
        other => panic!("port compared with {other:?}"),
    };
    let ports_apply = matches!(p.proto, Proto::Tcp | Proto::Udp | Proto::Sctp);
    let addr = |fam: Family, a: IpAddr| {
        fam == p.family()
            && match value {
                Value::Net(n) => n.contains(&a),
                Value::Addr(x) => *x == a,
                other => panic!("address compared with {other:?}"),
            }
    };
    match sel {
        Selector::Iif | Selector::IifName => matches!(value, Value::If(i) if if_is(i, p.iif)),
        Selector::OifName => matches!(value, Value::If(i) if if_is(i, p.oif)),
        Selector::L4Proto => match value {
            Value::Proto(x) => *x == p.proto,
            Value::Protos(xs) => xs.contains(&p.proto),
            other => panic!("protocol compared with {other:?}"),
        },
        Selector::NfProto => matches!(value, Value::Family(f) if *f == p.family()),
        Selector::Saddr(f) => addr(f, p.saddr),
        Selector::Daddr(f) => addr(f, p.daddr),
        Selector::Dport => ports_apply && port(p.dport),
        Selector::Sport => ports_apply && port(p.sport),
        Selector::CtState => matches!(value, Value::States(s) if s.contains(&p.state)),
        Selector::CtStatus | Selector::SkUid => false,
        Selector::IcmpType(_)
        | Selector::IcmpCode(_)
        | Selector::Mark
        | Selector::CtMark
        | Selector::SkGid
        | Selector::PktType
        | Selector::FibDaddrType => {
            panic!("ICMP types, marks and address types are not generated")
        }
    }
}

/// The decision of a filter chain: `accept`, `drop` or `reject …`.
fn decide(table: &Table, chain: &str, p: &Packet) -> String {
    let chain = table.chains.iter().find(|c| c.name.as_str() == chain).expect("chain");
    'rules: for rule in &chain.rules {
        for e in &rule.exprs {
            match e {
                Expr::Match { sel, op, value } => {
                    if holds(p, *sel, value) != (*op == Op::Eq) {
                        continue 'rules;
                    }
                }
                Expr::Lookup { keys, set, op } => {
                    let set = table.sets.iter().find(|s| &s.name == set).expect("set");
                    let found =
                        set.elements.iter().any(|el| keys.iter().zip(&el.key).all(|(sel, v)| holds(p, *sel, v)));
                    if found != (*op == Op::Eq) {
                        continue 'rules;
                    }
                }
                // The packets generated here are never ICMPv6.
                Expr::NeighbourDiscovery => continue 'rules,
                Expr::Log { .. } => {}
                Expr::Verdict(Verdict::Accept) => return "accept".into(),
                Expr::Verdict(Verdict::Drop) => return "drop".into(),
                Expr::Reject(with) => return format!("reject {with:?}"),
                other => panic!("unexpected in a filter chain: {other:?}"),
            }
        }
    }
    match chain.base.as_ref().expect("base chain").policy {
        Policy::Accept => "accept".into(),
        Policy::Drop => "drop".into(),
    }
}

struct Rng(u64);

impl Rng {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn of<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.pick(xs.len())]
    }
}

const SOURCES: [&str; 8] =
    ["172.16.0.1", "172.16.0.2", "172.16.0.0/30", "10.1.0.0/16", "10.1.2.3", "fd00::1", "fd00::/64", "@admins"];

/// A firewall of `n` rules drawn from a few shapes, verdicts in runs of random length.
fn generated(seed: u64, n: usize) -> String {
    let mut rng = Rng(seed);
    let mut s = String::from(
        "node \"fw\" {\n    ethernet \"eth0\" {\n        address \"10.77.0.1/24\"\n    }\n    ethernet \"eth1\" {\n        address \"10.78.0.1/24\"\n    }\n    forwarding #true\n    firewall {\n",
    );
    s.push_str("        policy in=\"drop\" forward=\"reject\"\n");
    s.push_str("        set \"admins\" \"192.0.2.0/28\" \"2001:db8:1::/48\"\n        zone \"lan\" \"eth1\"\n");
    let mut verdict = "allow";
    for _ in 0..n {
        if rng.pick(60) == 0 {
            verdict = rng.of(&["allow", "deny", "reject"]);
        }
        let dir = rng.of(&["in", "in", "forward"]);
        let mut r = format!("        {verdict} {dir}");
        let proto = rng.of(&["tcp", "tcp", "tcp", "udp", "udp", "icmp", ""]);
        if !proto.is_empty() {
            let _ = write!(r, " proto=\"{proto}\"");
            if proto != "icmp" && rng.pick(5) > 0 {
                let one = format!("{}", 1000 + rng.pick(16));
                let port = [&one, &one, &one, "22", "53", "1000-1003", "22,53", "2000-3000"][rng.pick(8)];
                let not = if rng.pick(8) == 0 { "!" } else { "" };
                let _ = write!(r, " port=\"{not}{port}\"");
            }
        }
        if rng.pick(4) > 0 && proto != "icmp" {
            let host = format!("172.16.{}.{}", rng.pick(4), rng.pick(16));
            let from = if rng.pick(3) > 0 { host.as_str() } else { rng.of(&SOURCES) };
            let not = if rng.pick(8) == 0 { "!" } else { "" };
            let _ = write!(r, " from=\"{not}{from}\"");
        }
        if rng.pick(8) == 0 {
            r += rng.of(&[
                " iif=\"eth0\"",
                " iif=\"eth1\"",
                " from-zone=\"lan\"",
                " iif=\"!eth0\"",
                " from-zone=\"!lan\"",
            ]);
        }
        if rng.pick(15) == 0 {
            r += rng.of(&[" family=\"ipv4\"", " family=\"ipv6\""]);
        }
        if rng.pick(20) == 0 {
            r += " state=\"new\"";
        }
        if rng.pick(30) == 0 {
            r += " log=#true";
        }
        s += &r;
        s.push('\n');
    }
    s.push_str("    }\n}\n");
    s
}

fn packets(seed: u64, n: usize) -> Vec<Packet> {
    let mut rng = Rng(seed);
    let v4 = ["172.16.0.1", "172.16.0.2", "172.16.0.3", "172.16.0.9", "10.1.2.3", "10.1.9.9", "192.0.2.5", "8.8.8.8"];
    let v6 = ["fd00::1", "fd00::2", "fd01::1", "2001:db8:1::5", "2001:db8:2::1"];
    (0..n)
        .map(|_| {
            let six = rng.pick(3) == 0;
            let host = format!("172.16.{}.{}", rng.pick(4), rng.pick(16));
            let saddr: IpAddr = if six {
                rng.of(&v6)
            } else if rng.pick(2) == 0 {
                &host
            } else {
                rng.of(&v4)
            }
            .parse()
            .unwrap();
            let daddr: IpAddr = if six { "fd00:77::1" } else { "10.77.0.1" }.parse().unwrap();
            let ports = [22, 53, 999, 1000 + rng.pick(16) as u16, 1000 + rng.pick(16) as u16, 1003, 2500, 5201];
            Packet {
                iif: rng.of(&["eth0", "eth1"]),
                oif: rng.of(&["eth0", "eth1"]),
                proto: [Proto::Tcp, Proto::Tcp, Proto::Udp, Proto::Icmp][rng.pick(4)],
                saddr,
                daddr,
                sport: [22, 1000, 40000][rng.pick(3)],
                dport: ports[rng.pick(ports.len())],
                state: [ConnState::New, ConnState::New, ConnState::Established][rng.pick(3)],
            }
        })
        .collect()
}

fn tables(src: &str) -> (Table, Table) {
    let parsed = netcfg_lang::parse_str("gen.kdl", src);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let mut diags = Vec::new();
    let fleet = netcfg_compiler::resolve::resolve(&parsed.spec, &mut diags);
    assert!(diags.is_empty(), "{diags:#?}");
    let (node, ns) = (&fleet.nodes[0], &fleet.nodes[0].namespaces[0]);
    let naive = lower::lower_netns_with(node, ns, &mut diags, lower::LowerOptions { merge_runs: false });
    let merged = lower::lower_netns(node, ns, &mut diags);
    (naive, merged)
}

fn rule_count(t: &Table) -> usize {
    t.chains.iter().map(|c| c.rules.len()).sum()
}

#[test]
fn merged_and_naive_forms_decide_every_packet_alike() {
    let mut merged_rules = 0;
    let mut naive_rules = 0;
    let mut decided_by_rules = 0;
    for seed in 1..=12u64 {
        let (naive, merged) = tables(&generated(seed * 7919, 300));
        naive_rules += rule_count(&naive);
        merged_rules += rule_count(&merged);
        for p in packets(seed, 2000) {
            for chain in ["input", "forward"] {
                let (a, b) = (decide(&naive, chain, &p), decide(&merged, chain, &p));
                assert_eq!(a, b, "seed {seed}, chain {chain}, {p:?}");
                decided_by_rules += usize::from(a == "accept");
            }
        }
    }
    // The comparison means something: rules merge, and packets are accepted by rules (the
    // policies only drop or reject).
    assert!(merged_rules * 10 < naive_rules * 8, "{merged_rules} rules merged from {naive_rules}");
    assert!(decided_by_rules > 1000, "only {decided_by_rules} packets matched an accepting rule");
}

#[test]
fn rules_with_other_verdicts_between_stay_in_order() {
    let src = r#"node "fw" {
    ethernet "eth0" {
        address "10.77.0.1/24"
    }
    firewall {
        policy in="drop"
        allow in proto="tcp" port=22 from="10.1.0.0/16"
        allow in proto="tcp" port=80 from="10.2.0.0/16"
        deny in proto="tcp" port=22 from="10.0.0.0/8"
        allow in proto="tcp" port=22 from="10.3.0.0/16"
        allow in proto="tcp" port=443 from="10.4.0.0/16" comment="kept as it is"
        allow in proto="tcp" port=443 from="10.5.0.0/16"
    }
}
"#;
    let (_, merged) = tables(src);
    let script = nftables::render::render_transaction("t", &merged).text;
    let input = script.split("chain input").nth(1).unwrap();
    let lookup = input.find("ip saddr . meta l4proto . th dport @input-rules-0 accept").expect(&script);
    let deny = input.find("ip saddr 10.0.0.0/8 meta l4proto tcp th dport 22 drop").expect(&script);
    let after = input.find("ip saddr 10.3.0.0/16 meta l4proto tcp th dport 22 accept").expect(&script);
    let commented = input.find("comment \"kept as it is\"").expect(&script);
    assert!(lookup < deny && deny < after && after < commented, "{script}");
    // Each element carries the span of the rule it came from.
    let set = merged.sets.iter().find(|s| s.name.as_str() == "input-rules-0").unwrap();
    let spans: Vec<&str> = set.elements.iter().map(|e| &src[e.origin.start as usize..e.origin.end as usize]).collect();
    assert!(spans[0].contains("port=22 from=\"10.1.0.0/16\""), "{spans:?}");
    assert!(spans[1].contains("port=80 from=\"10.2.0.0/16\""), "{spans:?}");
}

#[test]
fn every_merged_ruleset_passes_nft_check() {
    if !require_root("every_merged_ruleset_passes_nft_check") {
        return;
    }
    for seed in 1..=6u64 {
        let src = generated(seed * 104_729, 400);
        let (naive, merged) = tables(&src);
        for t in [&naive, &merged] {
            let script = nftables::render::render_transaction("t", t);
            if let Err(e) = exec::check(&script) {
                panic!("nft refused the ruleset of seed {seed}: {e:?}\n{}", script.text);
            }
        }
    }
}

#[test]
fn real_traffic_through_a_merged_set() {
    if !require_root("real_traffic_through_a_merged_set") {
        return;
    }
    let srv = Netns::new("fwset-srv");
    let cli = Netns::new("fwset-cli");
    wire(&srv, "eth0", "10.77.0.1/24", &cli, "eth0", "10.77.0.2/24");
    for port in 7070..=7073 {
        serve(&srv, &format!("10.77.0.1:{port}"), ["7070", "7071", "7072", "7073"][port - 7070], 10);
    }
    let mut spec = String::from(
        "node \"fw\" {\n    ethernet \"eth0\" {\n        address \"10.77.0.1/24\"\n    }\n    firewall {\n        policy in=\"drop\"\n",
    );
    for i in 0..500 {
        let _ = writeln!(
            spec,
            "        allow in proto=\"tcp\" port={} from=\"172.16.{}.{}\"",
            1000 + i % 7,
            i / 256,
            i % 256
        );
    }
    spec.push_str("        allow in proto=\"tcp\" port=7070 from=\"10.77.0.2\"\n");
    spec.push_str("        allow in proto=\"tcp\" port=7073 from=\"10.77.0.3\"\n");
    spec.push_str("        deny in proto=\"tcp\" port=7072 from=\"10.77.0.2\"\n");
    spec.push_str("        allow in proto=\"tcp\" port=\"7071-7072\" from=\"10.77.0.0/24\"\n    }\n}\n");
    let fleet = common::compile(&spec);
    let mut diags = Vec::new();
    let host = nftables::compile_node(&fleet.nodes[0], &mut diags).remove(0);
    let rules = host.table.chains.iter().find(|c| c.name.as_str() == "input").unwrap().rules.len();
    assert!(rules < 20, "the 500 allows must become a set lookup, got {rules} rules");
    exec::apply(&exec::Target::Named(srv.name.clone()), &host.script).expect("apply");
    assert_eq!(connect(&cli, "10.77.0.1:7070", 2000), Conn::Reply("7070".into()), "allowed by the set");
    assert_eq!(connect(&cli, "10.77.0.1:7073", 700), Conn::TimedOut, "allowed for another host only");
    assert_eq!(connect(&cli, "10.77.0.1:7072", 700), Conn::TimedOut, "denied before it is allowed");
    assert_eq!(connect(&cli, "10.77.0.1:7071", 2000), Conn::Reply("7071".into()), "allowed after the deny");
}

#[test]
fn rules_of_other_protocols_do_not_split_a_run() {
    let mut src = String::from(
        "node \"fw\" {\n    ethernet \"eth0\" {\n        address \"10.77.0.1/24\"\n    }\n    firewall {\n        policy in=\"drop\"\n",
    );
    for i in 0..60 {
        if i % 10 == 9 {
            let _ = writeln!(src, "        deny in proto=\"udp\" port={}", 20000 + i);
        } else {
            let _ = writeln!(src, "        allow in proto=\"tcp\" port={} from=\"172.16.0.{i}\"", 1000 + i);
        }
    }
    // A rule without a protocol may share packets with both: it stays between them.
    src.push_str("        deny in from=\"192.0.2.0/24\"\n");
    src.push_str("        allow in proto=\"tcp\" port=22 from=\"172.16.1.1\"\n        allow in proto=\"tcp\" port=23 from=\"172.16.1.2\"\n    }\n}\n");
    let (naive, merged) = tables(&src);
    let input = |t: &Table| t.chains.iter().find(|c| c.name.as_str() == "input").unwrap().rules.len();
    // lo, established, invalid, neighbour discovery; the allows; the denies; the deny without a
    // protocol; the two allows after it.
    assert_eq!(input(&merged), 4 + 1 + 1 + 1 + 1, "{:#?}", merged.chains);
    assert_eq!(input(&naive), 4 + 63);
    for p in packets(5, 3000) {
        assert_eq!(decide(&naive, "input", &p), decide(&merged, "input", &p), "{p:?}");
    }
}
