//! nftables backend against the real `nft`: every generated ruleset is accepted by `nft -c`,
//! apply is one atomic transaction that owns only netcfg's table, and nft errors come back on
//! the KDL spans that produced the offending lines.

mod common;

use common::{compile, require_root, Netns};
use netcfg_backends::nftables::{self, exec, exec::Target};
use std::fmt::Write;

fn rulesets(src: &str) -> Vec<nftables::NetnsRuleset> {
    let fleet = compile(src);
    let mut diags = Vec::new();
    let out = fleet.nodes.iter().flat_map(|n| nftables::compile_node(n, &mut diags)).collect();
    assert!(diags.is_empty(), "{diags:#?}");
    out
}

const POLICY: &str = r#"
node "gw" {
    ethernet "eth0" { address "192.0.2.10/24"; address "2001:db8::10/64"; }
    bridge "cni0" { address "10.244.1.1/24"; address "fd00:244:1::1/64"; }
    forwarding #true
    bridge-netfilter #true
    firewall {
        policy in="drop" forward="drop" out="accept"
        zone "pods" "cni0"
        zone "wan" "eth0"
        set "admins" "10.0.0.0/8" "10.1.0.0/16" "2001:db8:1::/48"
        allow in proto="tcp" port=22 from="@admins" comment="ssh from admins"
        allow in proto="tcp" port="80,443,8000-8100"
        allow in proto="icmp"
        allow in proto="icmpv6"
        reject in proto="tcp" port=23
        deny in from="203.0.113.0/24" log=#true
        allow forward from-zone="pods" to-zone="wan"
        allow forward iif="eth0" oif="cni0" proto="udp" port=53 state="new"
    }
    service "web" vip="10.96.0.10" port=80 {
        backend "10.244.1.2:8080" weight=3
        backend "10.244.1.3:8080"
    }
    service "dns" vip="10.96.0.53" port=53 proto="udp" { backend "10.244.1.4:53"; }
    service "web6" vip="fd00:96::10" port=80 { backend "[fd00:244:1::2]:8080"; }
    service "empty" vip="10.96.0.99" port=80
    masquerade from="10.244.0.0/16" out="eth0"
    snat from="fd00:244::/32" out="eth0" to="2001:db8::10"
    netns "pod" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-pod" netns="@host" master="cni0" hairpin=#true
        }
        route "default" via="10.244.1.1" dev="eth0"
        listen "app" port=8080
        listen "proxy" port=4143
        redirect in proto="tcp" to-port=4143 except-port="4190,4191"
        redirect out proto="tcp" port="80,443" to-port=4140 except-uid=2102
        listen "proxy-out" port=4140
        firewall { policy in="reject"; allow in proto="tcp" port=4143; }
    }
}
"#;

/// Every match and statement of a firewall rule, in both families.
const RULE_FEATURES: &str = r#"
node "fw" {
    ethernet "eth0" { address "192.0.2.10/24"; address "2001:db8::10/64"; }
    ethernet "eth1" { address "10.1.0.1/24"; }
    forwarding #true
    firewall {
        policy in="drop" forward="drop"
        zone "lan" "eth1"
        set "admins" "10.0.0.0/8" "2001:db8:1::/48"
        set "v4only" "198.51.100.0/24"
        allow in proto="icmp" icmp-type="echo-request,echo-reply" limit="10/second" burst=20
        allow in proto="icmp" icmp-type="destination-unreachable" icmp-code=4
        allow in proto="icmpv6" icmp-type="echo-request,packet-too-big,143"
        allow in family="ipv6" proto="udp" port=546
        allow in family="ipv4"
        deny in from="!@admins" proto="tcp" port=22 log-prefix="ssh-outsider: " log-level="warn"
        deny in from="!@v4only" to="!2001:db8::/32" proto="tcp" port="!80,443"
        allow in iif="!eth0" proto="tcp" sport="!1-1023" counter="inside"
        allow in proto="tcp" port=22 limit-per-source="3/minute" burst=5 counter="ssh"
        allow in proto="tcp" port=443 conn-limit=20 counter="ssh"
        allow forward from-zone="!lan" to-zone="lan" state="new" log=#true
        allow forward oif="!eth0" proto="udp" port=53 family="ipv4" limit-per-source="100/second"
        allow forward mark="0x100/0xff00" ct-mark="!0x1"
        allow in proto="igmp" pkttype="multicast"
        allow in proto="udp" port=67 pkttype="broadcast"
        allow out proto="tcp" port=25 uid=101 gid="!0"
        mark in iif="eth1" from="10.1.0.0/24" set-mark="0x100/0xff00" set-ct-mark="0x1"
        mark in iif="eth0" proto="tcp" port=443 set-mark="7"
        mark out proto="udp" port=53 set-mark="0x2"
    }
}
"#;

#[test]
fn rule_features_render_to_scripts_nft_accepts() {
    if !require_root("rule_features_render_to_scripts_nft_accepts") {
        return;
    }
    for rs in rulesets(RULE_FEATURES) {
        if let Err(e) = exec::check(&rs.script) {
            panic!("nft -c rejected:\n{}\n{e}", rs.script.text);
        }
        let text = &rs.script.text;
        for needle in [
            "icmp type { 0, 8 } limit rate 10/second burst 20 packets accept",
            "icmp type 3 icmp code 4 accept",
            "icmpv6 type { 2, 128, 143 } accept",
            "meta nfproto ipv6 meta l4proto udp th dport 546 accept",
            "meta nfproto ipv4 ip saddr != @set-admins-v4 meta l4proto tcp th dport 22 log prefix \"ssh-outsider: \" level warn drop",
            "ip6 saddr != @set-v4only-v6 ip6 daddr != 2001:db8::/32 meta l4proto tcp th dport != { 80, 443 } drop",
            "ip saddr != @set-v4only-v4 meta l4proto tcp th dport != { 80, 443 } drop",
            "iifname != \"eth0\" meta l4proto tcp th sport != 1-1023 counter name \"counter-inside\" accept",
            "update @rule-8-limit-v4 { ip saddr limit rate 3/minute burst 5 packets } counter name \"counter-ssh\" accept",
            "add @rule-9-conns-v6 { ip6 saddr ct count 20 }",
            "oifname @zone-lan iifname != @zone-lan ct state new log prefix \"netcfg: \" accept",
            "flags dynamic,timeout",
            "counter counter-inside {",
            "meta nfproto ipv4 meta l4proto igmp meta pkttype multicast accept",
            "meta l4proto udp th dport 67 meta pkttype broadcast accept",
            "meta l4proto tcp th dport 25 meta skuid 101 meta skgid != 0 accept",
            "meta mark and 0xff00 == 0x100 ct mark != 0x1 accept",
            "iifname \"eth1\" ip saddr 10.1.0.0/24 meta mark set meta mark and 0xffff00ff or 0x100 ct mark set 0x1",
            "type route hook output priority mangle; policy accept;",
            "type filter hook prerouting priority mangle; policy accept;",
            "meta l4proto udp th dport 53 meta mark set 0x2",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }
}

/// Dynamic sets (both families, one family, seeds, with and without a timeout, negated
/// lookups) and rule groups, nested and used in two namespaces.
const DYNAMIC_AND_GROUPS: &str = r#"
rules "ssh" {
    allow in proto="tcp" port=22 from="@admins"
}
rules "base" {
    deny in from="@banned"
    use-rules "ssh"
    allow in proto="icmp"
}
node "fw" {
    ethernet "eth0" { address "192.0.2.10/24"; address "2001:db8::10/64"; }
    firewall {
        policy in="drop"
        set "admins" "10.0.0.0/8"
        set "banned" dynamic=#true timeout="1h" size=1000 {
            element "198.51.100.7"
            element "2001:db8:bad::1"
        }
        set "knocked" dynamic=#true timeout="30s" family="ipv4"
        set "seen" dynamic=#true
        set "contacted" dynamic=#true timeout="10m"
        set "largest" dynamic=#true timeout="365d" size=16777216 family="ipv6"
        deny in from="@largest"
        use-rules "base"
        deny in proto="tcp" port=23 add-to="@banned" log-prefix="trap: "
        allow in proto="tcp" port=7000 add-to="@knocked"
        allow in proto="tcp" port=2222 from="@knocked"
        allow in proto="udp" port=53 from="!@banned" add-to="@seen"
        allow out proto="tcp" port=443 add-to="@contacted" add-to-key="dst"
    }
    netns "app" {
        veth "eth0" {
            address "10.244.1.2/24"
            peer "veth-app" netns="@host"
        }
        firewall {
            policy in="drop"
            set "admins" "10.244.0.0/16"
            set "banned" dynamic=#true
            use-rules "base"
        }
    }
}
"#;

#[test]
fn dynamic_sets_and_rule_groups_render_to_scripts_nft_accepts() {
    if !require_root("dynamic_sets_and_rule_groups_render_to_scripts_nft_accepts") {
        return;
    }
    let all = rulesets(DYNAMIC_AND_GROUPS);
    for rs in &all {
        if let Err(e) = exec::check(&rs.script) {
            panic!("nft -c rejected:\n{}\n{e}", rs.script.text);
        }
        // With the elements an apply carries over from a live table.
        let live: serde_json::Value = serde_json::json!({"nftables": rs.script.kept.iter().map(|k| {
            let addr = if k.name.as_str().ends_with("-v4") { "203.0.113.9" } else { "2001:db8::99" };
            serde_json::json!({"set": {"name": k.name.as_str(),
                "type": if k.name.as_str().ends_with("-v4") { "ipv4_addr" } else { "ipv6_addr" },
                "comment": nftables::ruleset::KEPT_SET_COMMENT,
                "elem": [{"elem": {"val": addr, "expires": 30}}]}})
        }).collect::<Vec<_>>()});
        let carried = nftables::carry::append(&rs.script, &nftables::carry::live_elements(&live));
        assert!(carried.text.len() > rs.script.text.len() || rs.script.kept.is_empty());
        if let Err(e) = exec::check(&carried) {
            panic!("nft -c rejected the carried elements:\n{}\n{e}", carried.text);
        }
    }
    let host = &all[0].script.text;
    for needle in [
        "set set-banned-v4 {\n\t\ttype ipv4_addr\n\t\tsize 1000\n\t\tflags dynamic,timeout\n\t\ttimeout 3600s",
        "set set-knocked-v4 {",
        "ip saddr @set-banned-v4 drop",
        "ip6 saddr @set-banned-v6 drop",
        "ip saddr @set-admins-v4 meta l4proto tcp th dport 22 accept",
        "meta nfproto ipv4 meta l4proto tcp th dport 23 update @set-banned-v4 { ip saddr } log prefix \"trap: \" drop",
        "meta nfproto ipv6 meta l4proto tcp th dport 23 update @set-banned-v6 { ip6 saddr } log prefix \"trap: \" drop",
        "meta nfproto ipv4 meta l4proto tcp th dport 7000 update @set-knocked-v4 { ip saddr } accept",
        "meta nfproto ipv6 meta l4proto tcp th dport 7000 accept",
        "ip saddr != @set-banned-v4 meta l4proto udp th dport 53 update @set-seen-v4 { ip saddr } accept",
        "add element inet netcfg set-banned-v6 {\n\t2001:db8:bad::1\n}",
        "meta nfproto ipv6 meta l4proto tcp th dport 443 update @set-contacted-v6 { ip6 daddr } accept",
    ] {
        assert!(host.contains(needle), "missing `{needle}` in:\n{host}");
    }
    assert!(!host.contains("set set-knocked-v6"), "a one-family dynamic set has one nft set");
    // The group's order holds: the ban before ssh before icmp, before the block's own rules.
    let at = |n: &str| host.find(n).unwrap_or_else(|| panic!("no `{n}`"));
    assert!(at("@set-banned-v4 drop") < at("th dport 22 accept") && at("th dport 22 accept") < at("icmp accept"));
    assert!(at("icmp accept") < at("th dport 23"));
    let app = &all[1].script.text;
    assert!(app.contains("ip saddr @set-admins-v4 meta l4proto tcp th dport 22 accept"), "{app}");
    assert!(app.contains("\t\tflags dynamic\n"), "no timeout: {app}");
}

#[test]
fn every_construct_renders_to_a_script_nft_accepts() {
    if !require_root("every_construct_renders_to_a_script_nft_accepts") {
        return;
    }
    for rs in rulesets(POLICY) {
        if let Err(e) = exec::check(&rs.script) {
            panic!("nft -c rejected:\n{}\n{e}", rs.script.text);
        }
    }
}

#[test]
fn rendering_is_deterministic_and_services_use_one_map() {
    let a = rulesets(POLICY);
    let b = rulesets(POLICY);
    assert_eq!(a[0].script, b[0].script);
    let text = &a[0].script.text;
    assert!(
        text.contains("dnat ip addr . port to ip daddr . meta l4proto . th dport . numgen random mod 65536 map @service-backends-v4"),
        "{text}"
    );
    // Weights 3:1 split the draw 3:1.
    assert!(text.contains("10.96.0.10 . tcp . 80 . 0-49151 : 10.244.1.2 . 8080,"), "{text}");
    assert!(text.contains("10.96.0.10 . tcp . 80 . 49152-65535 : 10.244.1.3 . 8080,"), "{text}");
    assert!(text.contains("10.96.0.99 . tcp . 80"), "a service without backends is refused: {text}");
    // The namespace without filtering or NAT only removes an old table.
    assert!(a.iter().all(|r| r.script.text.contains("delete table inet netcfg")));
}

/// A generated family: many services, many zones and sets, both families.
fn generated(services: usize, zones: usize) -> String {
    let mut s = String::from("node \"big\" {\n    forwarding #true\n    bridge-netfilter #true\n");
    for z in 0..zones {
        let _ = writeln!(
            s,
            "    bridge \"br{z}\" {{ address \"10.{}.{}.1/24\"; address \"fd00:{z:x}::1/64\"; }}",
            100 + z / 250,
            z % 250
        );
    }
    s.push_str("    firewall {\n        policy in=\"drop\" forward=\"drop\"\n");
    for z in 0..zones {
        let _ = writeln!(s, "        zone \"z{z}\" \"br{z}\"");
        let _ = writeln!(s, "        set \"s{z}\" \"172.{}.{}.0/24\" \"fd{z:02x}::/16\"", 16 + z / 250 % 16, z % 250);
        let _ = writeln!(s, "        allow forward from-zone=\"z{z}\" to-zone=\"z{}\" from=\"@s{z}\"", (z + 1) % zones);
    }
    s.push_str("    }\n");
    for i in 0..services {
        let _ = writeln!(
            s,
            "    service \"s{i}\" vip=\"10.96.{}.{}\" port={} {{ backend \"10.100.0.{}:8080\"; backend \"10.100.1.{}:8080\" weight=2; }}",
            i / 250,
            i % 250,
            1 + i % 60000,
            1 + i % 250,
            1 + i % 250
        );
        if i % 10 == 0 {
            let _ = writeln!(
                s,
                "    service \"v6-{i}\" vip=\"fd00:96::{i:x}\" port=443 {{ backend \"[fd00:100::{i:x}]:8443\"; }}"
            );
        }
    }
    s.push_str("}\n");
    s
}

#[test]
fn generated_specs_are_accepted_by_nft() {
    if !require_root("generated_specs_are_accepted_by_nft") {
        return;
    }
    for (services, zones) in [(1, 1), (50, 5), (600, 40)] {
        for rs in rulesets(&generated(services, zones)) {
            if let Err(e) = exec::check(&rs.script) {
                panic!("nft -c rejected the generated spec ({services} services, {zones} zones): {e}");
            }
        }
    }
}

#[test]
fn apply_reads_back_as_planned_is_idempotent_and_owns_only_its_table() {
    if !require_root("apply_reads_back_as_planned_is_idempotent_and_owns_only_its_table") {
        return;
    }
    let ns = Netns::new("nft-apply");
    let target = Target::Named(ns.name.clone());
    // A table somebody else owns in the same namespace.
    let (ok, out) = ns.exec_input(
        &["nft", "-f", "-"],
        "table ip docker {\n chain c {\n type filter hook forward priority 0;\n counter\n }\n}\n",
    );
    assert!(ok, "{out}");
    let host = rulesets(POLICY).remove(0);

    exec::apply(&target, &host.script).expect("apply");
    let live = exec::list_table(&target).unwrap().expect("table present");
    assert_eq!(Some(&live), exec::canonical(&host.script).unwrap().as_ref(), "live table differs from the plan");

    // The same spec again: no change.
    exec::apply(&target, &host.script).expect("re-apply");
    assert_eq!(exec::list_table(&target).unwrap().as_ref(), Some(&live));

    // Somebody adds an element by hand; a changed spec is swapped in atomically.
    ns.exec(&["nft", "add", "element", "inet", "netcfg", "set-admins-v4", "{ 198.51.100.7 }"]);
    let changed = rulesets(&POLICY.replace("port=22", "port=2222")).remove(0);
    exec::apply(&target, &changed.script).expect("apply changed");
    let live2 = exec::list_table(&target).unwrap().unwrap();
    assert_eq!(Some(&live2), exec::canonical(&changed.script).unwrap().as_ref());
    let listing = ns.exec(&["nft", "list", "table", "inet", "netcfg"]);
    assert!(!listing.contains("198.51.100.7"), "hand-added element survived:\n{listing}");
    assert!(listing.contains("2222"));
    let docker = ns.exec(&["nft", "list", "table", "ip", "docker"]);
    assert!(docker.contains("counter"), "foreign table changed:\n{docker}");

    // Removing all policy removes netcfg's table and nothing else.
    let empty = rulesets("node \"gw\" {}").remove(0);
    exec::apply(&target, &empty.script).expect("apply empty");
    assert_eq!(exec::list_table(&target).unwrap(), None);
    assert!(ns.exec(&["nft", "list", "tables"]).contains("docker"));
}

/// The nfnetlink probe (`probe::table_exists`) says whether `inet netcfg` is there, as nft's
/// own listing does: not for another family's or another name's table; and a listing through
/// it finds a table exactly when nft does.
#[test]
fn the_table_probe_agrees_with_nft() {
    if !require_root("the_table_probe_agrees_with_nft") {
        return;
    }
    let ns = Netns::new("nft-probe");
    let target = Target::Named(ns.name.clone());
    let nft_lists = |ns: &Netns| ns.exec_input(&["nft", "list", "table", "inet", "netcfg"], "").0;
    assert_eq!(nftables::probe::table_exists(&target), Some(false));
    for other in ["table ip netcfg { }", "table inet netcfg2 { }", "table inet netcf { }"] {
        let (ok, out) = ns.exec_input(&["nft", "-f", "-"], &format!("{other}\n"));
        assert!(ok, "{out}");
        assert_eq!(nftables::probe::table_exists(&target), Some(false), "after `{other}`");
        assert!(!nft_lists(&ns));
    }
    assert_eq!(exec::list_table(&target).unwrap(), None);
    assert_eq!(exec::list_table_text(&target).unwrap(), "");
    let host = rulesets(POLICY).remove(0);
    exec::apply(&target, &host.script).expect("apply");
    assert_eq!(nftables::probe::table_exists(&target), Some(true));
    assert!(nft_lists(&ns));
    assert!(exec::list_table(&target).unwrap().is_some());
    assert!(exec::list_table_text(&target).unwrap().contains("table inet netcfg"));
    let empty = rulesets("node \"gw\" {}").remove(0);
    exec::apply(&target, &empty.script).expect("apply empty");
    assert_eq!(nftables::probe::table_exists(&target), Some(false));
    assert!(!nft_lists(&ns));
}

#[test]
fn a_rejected_script_changes_nothing_and_is_reported_on_the_spec() {
    if !require_root("a_rejected_script_changes_nothing_and_is_reported_on_the_spec") {
        return;
    }
    let ns = Netns::new("nft-fail");
    let target = Target::Named(ns.name.clone());
    let good = rulesets(POLICY).remove(0);
    exec::apply(&target, &good.script).unwrap();
    let before = exec::list_table(&target).unwrap();

    // Make the rule generated from the `reject in proto="tcp" port=23` line fail in the kernel:
    // jump to a chain that does not exist.
    let mut bad = good.clone();
    let line = bad.script.text.lines().position(|l| l.contains("reject with tcp reset")).expect("reject rule");
    let mut lines: Vec<String> = bad.script.text.lines().map(String::from).collect();
    lines[line] = lines[line].replace("reject with tcp reset", "jump no-such-chain");
    bad.script.text = lines.join("\n") + "\n";

    let err = exec::apply(&target, &bad.script).expect_err("nft must refuse");
    assert_eq!(exec::list_table(&target).unwrap(), before, "a failed transaction changed the table");
    let diags = exec::diagnostics(&bad.script, &err, netcfg_lang::Span::default());
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let origin = bad.script.origin_of_line(line + 1).unwrap();
    assert_eq!(diags[0].primary.span, origin);
    let spec_line = &POLICY[origin.start as usize..origin.end as usize];
    assert!(spec_line.starts_with("reject in proto=\"tcp\" port=23"), "{spec_line}");
}

#[test]
fn canonical_forms_are_cached_only_for_the_same_script() {
    if !require_root("canonical_forms_are_cached_only_for_the_same_script") {
        return;
    }
    let tag = format!("cache-{}", std::process::id());
    let src = format!(
        "node \"{tag}\" {{\n    firewall {{\n        policy in=\"drop\"\n        allow in proto=\"tcp\" port=22\n    }}\n}}\n"
    );
    let rs = rulesets(&src).remove(0);
    let first = exec::canonical(&rs.script).unwrap();
    assert!(first.is_some());
    let entries = || {
        std::fs::read_dir("/run/netcfg/nft-canonical")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&tag)))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let cached = entries();
    assert_eq!(cached.len(), 1, "one entry for the script");
    let rewrite = |script: &str| {
        let mut entry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cached[0]).unwrap()).unwrap();
        entry["script"] = script.into();
        entry["canonical"] = "marker".into();
        std::fs::write(&cached[0], entry.to_string()).unwrap();
    };
    rewrite(&rs.script.text);
    assert_eq!(exec::canonical(&rs.script).unwrap(), Some("marker".into()), "served from the cache");
    // An entry that holds another script under this script's name is not used.
    rewrite(&rs.script.text.replace("dport 22", "dport 23"));
    assert_eq!(exec::canonical(&rs.script).unwrap(), first, "recomputed, not the other script's form");
    let _ = std::fs::remove_file(&cached[0]);
}

/// Published ports (with and without an address, `from` networks and sets, both families),
/// 1:1 network maps both ways, transparent proxying.
const PUBLISH_NETMAP_TPROXY: &str = r#"
node "edge" {
    forwarding #true
    ethernet "eth0" { address "192.0.2.10/24"; address "2001:db8::10/64"; }
    bridge "br0" { address "10.244.1.1/24"; address "fd00:244:1::1/64"; }
    table "tproxy" id=100
    rule fwmark="0x1" table="tproxy" priority=100
    route "0.0.0.0/0" type="local" dev="lo" table="tproxy"
    firewall {
        policy forward="drop"
        set "office" "198.51.100.0/24"
    }
    publish "web" port=8080 to="10.244.1.5:80"
    publish "dns" port=53 proto="udp" to="10.244.1.6" address="192.0.2.10"
    publish "sctp" port=3868 proto="sctp" to="10.244.1.6"
    publish "admin" port=8443 to="[fd00:244:1::5]:443" from="2001:db8:1::/48"
    publish "office" port=2222 to="10.244.1.7:22" from="@office"
    netmap from="10.244.1.0/24" to="203.0.113.0/24" out="eth0"
    netmap from="fd00:244:1::/64" to="2001:db8:1::/64"
    tproxy in proto="tcp" port="80,443" to-port=15001 mark="0x1"
    tproxy in proto="udp" except-port=53 to-port=15006 mark="0x100/0xff00"
}
"#;

#[test]
fn publish_netmap_and_tproxy_render_to_scripts_nft_accepts() {
    if !require_root("publish_netmap_and_tproxy_render_to_scripts_nft_accepts") {
        return;
    }
    for rs in rulesets(PUBLISH_NETMAP_TPROXY) {
        if let Err(e) = exec::check(&rs.script) {
            panic!("nft -c rejected:\n{}\n{e}", rs.script.text);
        }
        let text = &rs.script.text;
        for needle in [
            "meta nfproto ipv4 fib daddr type local meta l4proto tcp th dport 8080 dnat ip to 10.244.1.5:80",
            "meta nfproto ipv4 fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8080 dnat ip to 10.244.1.5:80",
            "ip daddr 192.0.2.10 meta l4proto udp th dport 53 dnat ip to 10.244.1.6:53",
            "ip6 saddr 2001:db8:1::/48 meta l4proto tcp th dport 8443 dnat ip6 to [fd00:244:1::5]:443",
            "ip saddr @set-office-v4 meta l4proto tcp th dport 2222 dnat ip to 10.244.1.7:22",
            "ct status dnat ip saddr . ip daddr @publish-hairpin-v4 masquerade",
            "ct status dnat accept",
            "oifname \"eth0\" ip saddr 10.244.1.0/24 snat ip prefix to 203.0.113.0/24",
            "iifname \"eth0\" ip daddr 203.0.113.0/24 dnat ip prefix to 10.244.1.0/24",
            "ip6 daddr 2001:db8:1::/64 dnat ip6 prefix to fd00:244:1::/64",
            "type filter hook prerouting priority mangle; policy accept;",
            "iifname != \"lo\" meta l4proto tcp th dport { 80, 443 } tproxy to :15001 meta mark set 0x1 accept",
            "iifname != \"lo\" meta l4proto udp th dport != 53 tproxy to :15006 meta mark set meta mark and 0xffff00ff or 0x100 accept",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }
}
