//! The dump decoder against netlink_packet_route's, on real dumps: namespaces holding every link
//! kind this kernel makes, with the settings `RawLink` reads set away from their defaults, and
//! every `RTM_NEWLINK` answer decoded both ways (`live::decode_link` from the bytes,
//! `live::raw_link` from the parsed `LinkMessage`) must agree. Kinds the kernel lacks (vlan,
//! bond, vrf) are compared on encoded messages in `live.rs`'s unit tests.

mod common;

use common::*;
use netcfg_backends::netlink::live::{self, RawLink};
use netcfg_backends::netlink::wire::PlainSocket;
use rtnetlink::packet_core::Parseable;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;

const RTM_NEWLINK: u16 = 16;

/// Every link of the namespace `ns`, decoded both ways.
fn dump_both_ways(ns: &str) -> Vec<(RawLink, RawLink)> {
    let mut sock = netcfg_backends::netns::run_in(ns, PlainSocket::open).unwrap().unwrap();
    let mut out = Vec::new();
    sock.dump(RouteNetlinkMessage::GetLink(live::link_request()), |kind, payload| {
        assert_eq!(kind, RTM_NEWLINK);
        let reference = live::raw_link(&LinkMessage::parse(payload).expect("netlink_packet_route parses it"));
        out.push((live::decode_link(payload).expect("a link header"), reference));
    })
    .unwrap();
    out
}

#[test]
fn every_link_kind_decodes_as_netlink_packet_route_decodes_it() {
    if !require_root("every_link_kind_decodes_as_netlink_packet_route_decodes_it") {
        return;
    }
    let a = Netns::new("dec-a");
    let b = Netns::new("dec-b");
    let ip = |ns: &Netns, args: &str| {
        let mut full = vec!["ip", "-n", &ns.name];
        full.extend(args.split_whitespace());
        sh(&full);
    };
    let br0 = "link add br0 type bridge stp_state 1 forward_delay 800 ageing_time 1000 priority 100 vlan_default_pvid 5 mcast_snooping 0";
    // A kernel without VLAN filtering refuses the whole bridge with it (the lane's has it).
    let filtering =
        bridge_vlan_filtering("vlan_filtering in every_link_kind_decodes_as_netlink_packet_route_decodes_it");
    ip(&a, &if filtering { format!("{br0} vlan_filtering 1") } else { br0.to_string() });
    ip(&a, "link add br1 type bridge");
    // A pair across the namespaces (each end's peer is elsewhere), a pair inside `a`.
    sh(&["ip", "link", "add", "va0", "netns", &a.name, "type", "veth", "peer", "name", "vb0", "netns", &b.name]);
    ip(&a, "link add vl0 type veth peer name vl1");
    ip(&a, "link set va0 master br0");
    ip(&a, "link set va0 type bridge_slave hairpin on cost 7 priority 9");
    ip(&a, "link set vl0 master br1");
    ip(&a, "link set vl1 address 02:00:00:00:00:aa addrgenmode none group 28259 txqueuelen 77 mtu 1400");
    ip(&a, "link set va0 addrgenmode eui64 promisc on");
    ip(&a, "link add vx0 type vxlan id 42 dstport 4789 local 10.0.0.1 dev vl1 nolearning ttl 9");
    ip(&a, "link set vx0 arp off");
    ip(&a, "link add mv0 link vl1 type macvlan mode bridge");
    ip(&a, "link set mv0 promisc on");
    // A macvlan whose parent stays behind in `a`.
    ip(&a, "link add mvx link vl1 type macvlan mode private");
    ip(&a, &format!("link set mvx netns {}", b.name));
    for l in ["br0", "br1", "va0", "vl0", "vl1", "vx0", "mv0"] {
        ip(&a, &format!("link set {l} up"));
    }
    ip(&a, "tuntap add tap0 mode tap");
    ip(&a, "tuntap add tun0 mode tun");
    ip(&b, "link set vb0 up");

    let mut seen = Vec::new();
    for ns in [&a, &b] {
        for (light, reference) in dump_both_ways(&ns.name) {
            assert_eq!(light, reference, "{} in {}", reference.name, ns.name);
            seen.push(light);
        }
    }
    // The dumps held what the test set, so the comparison above was not between defaults.
    let link = |name: &str| seen.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{name} dumped"));
    assert_eq!(link("br0").bridge.vlan_filtering, Some(filtering));
    assert_eq!(link("br0").bridge.default_pvid, filtering.then_some(5));
    assert_eq!(link("br0").bridge.priority, Some(100));
    assert_eq!(link("br0").bridge.stp, Some(true));
    let va0 = link("va0");
    assert_eq!((va0.hairpin, va0.port.cost, va0.port.priority, va0.promisc), (Some(true), Some(7), Some(9), true));
    assert!(va0.link_other_ns && link("vb0").link_other_ns);
    let vl1 = link("vl1");
    assert_eq!((vl1.addrgen_none, vl1.group, vl1.txqueuelen, vl1.mtu), (Some(true), 28259, Some(77), Some(1400)));
    assert_eq!(link("va0").addrgen_none, Some(false));
    assert!(link("vx0").noarp);
    assert!(link("mvx").link_other_ns);
    for (name, kind) in [("vx0", "vxlan"), ("mv0", "macvlan"), ("mvx", "macvlan"), ("tap0", "tun"), ("tun0", "tun")] {
        let l = link(name);
        assert_eq!(l.kind.as_deref(), Some(kind));
        assert!(l.data.is_some(), "{name}'s data read through the fallback");
    }
}
