//! The route dump's decoder against netlink_packet_route's, on real dumps: a namespace holding
//! IPv4 and IPv6 routes of every shape netcfg reads (gateways, `src`, `onlink`, scopes, metrics
//! and route metrics, the route types, protocols, tables past 255, multipath with weights and
//! onlink hops, routes through a veth and a bridge) and some it leaves out (the kernel's local
//! entries, broadcasts, an IPv4 route through an IPv6 gateway), and every `RTM_NEWROUTE` answer
//! read both ways (`live::decode_route` then `live::route_of` from the bytes,
//! `live::route_of_message` from the parsed `RouteMessage`), then the two routing states built
//! from them. Malformed messages are compared in `live.rs`'s unit tests.

mod common;

use common::*;
use netcfg_backends::netlink::live;
use netcfg_backends::netlink::state::{NextHop, Route, RouteKey};
use netcfg_backends::netlink::wire::PlainSocket;
use netcfg_lang::vocab::{RouteScope, RouteType};
use rtnetlink::packet_core::Parseable;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::BTreeMap;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWROUTE: u16 = 24;

type Routes = BTreeMap<RouteKey, Route>;

/// The routes of the namespace `ns` read both ways, message by message (compared here) and as
/// the state each way builds (`live::read`'s, and the old one: inserted in the dump's order,
/// the first of a key kept).
fn dump_both_ways(ns: &str) -> (Routes, Routes, usize) {
    let mut sock = netcfg_backends::netns::run_in(ns, PlainSocket::open).unwrap().unwrap();
    let mut links = Vec::new();
    sock.dump(RouteNetlinkMessage::GetLink(live::link_request()), |kind, payload| {
        assert_eq!(kind, RTM_NEWLINK);
        links.extend(live::decode_link(payload));
    })
    .unwrap();
    let name_of: live::NameOf = links.iter().map(|l| (l.index, l.name.as_str())).collect();
    let (mut raw, mut reference, mut messages) = (Vec::new(), Routes::new(), 0);
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        sock.dump(live::route_request(family), |kind, payload| {
            assert_eq!(kind, RTM_NEWROUTE);
            messages += 1;
            let m = RouteMessage::parse(payload).expect("netlink_packet_route parses it");
            let want = live::route_of_message(&m, &name_of);
            let light = live::decode_route(payload).expect("a route of IPv4 or IPv6");
            assert_eq!(live::route_of(&light, &name_of), want, "{m:?}");
            raw.push(light);
            if let Some((k, r)) = want {
                reference.entry(k).or_insert(r);
            }
        })
        .unwrap();
    }
    (live::routes_state(&live::keyed_routes(raw), &name_of), reference, messages)
}

#[test]
fn every_route_shape_decodes_as_netlink_packet_route_decodes_it() {
    if !require_root("every_route_shape_decodes_as_netlink_packet_route_decodes_it") {
        return;
    }
    let ns = Netns::new("rdec");
    let batch = "\
link add br0 type bridge
link add v0 type veth peer name v1
link set v1 master br0
link set br0 up
link set v0 up
link set v1 up
addr add 10.0.0.2/24 dev v0
addr add 10.1.0.1/24 dev br0
addr add 2001:db8::2/64 dev v0 nodad
addr add 2001:db8:1::1/64 dev br0 nodad
route add default via 10.0.0.1 dev v0 metric 10 proto 110
route add 172.16.0.0/24 via 10.0.0.1 dev v0 src 10.0.0.2 proto static
route add 172.16.1.0/24 via 192.0.2.1 dev v0 onlink proto boot
route add 172.16.2.0/24 dev br0 scope link metric 77 proto 200
route add 172.16.2.0/24 dev v0 scope link metric 78
route add blackhole 172.16.3.0/24 proto 110
route add unreachable 172.16.4.0/24 metric 5
route add prohibit 172.16.5.0/24 table 100
route add throw 172.16.6.0/24 table 100
route add unreachable default table 100 metric 4000
route add local 172.16.7.1 dev v0 table 200
route add local 172.16.7.2 dev br0 table local proto 110
route add 172.16.8.0/24 via 10.0.0.1 table 1000
route add 172.16.8.0/24 via 10.1.0.2 table 4000000000
route add 172.16.8.0/24 via 10.1.0.3 table default
route add 172.16.9.0/24 proto 110 nexthop via 10.0.0.1 dev v0 weight 3 nexthop via 10.1.0.2 dev br0 weight 1
route add 172.16.11.0/24 nexthop via 10.0.0.1 dev v0 nexthop via 192.0.2.9 dev br0 onlink weight 256
route add 172.16.10.0/24 via 10.0.0.1 mtu 1400 advmss 1360 initcwnd 10 initrwnd 20
route add 172.16.12.0/24 via 10.0.0.1 mtu lock 1300 hoplimit 9 window 1000
route add 172.16.13.0/24 dev v0 scope host
route add ::/0 via 2001:db8::1 dev v0 metric 1
route add 2001:db8:10::/48 via 2001:db8::1 dev v0 proto 110 metric 200
route add 2001:db8:11::/48 dev br0 mtu 1300 advmss 1200 initcwnd 7 initrwnd 8
route add 2001:db8:14::/48 via 2001:db8::1 src 2001:db8::2
route add 2001:db8:16::/48 via 2001:db8:1::9 dev br0 onlink
route add blackhole 2001:db8:12::/48
route add unreachable 2001:db8:17::/48 metric 3
route add prohibit 2001:db8:18::/48 table 100
route add throw 2001:db8:19::/48 table 100
route add 2001:db8:13::/48 proto 110 nexthop via 2001:db8::1 dev v0 weight 2 nexthop via 2001:db8:1::2 dev br0
route add ::/0 via fe80::1 dev v0 table 100
route add local 2001:db8:15::1 dev v0 table 200
route add local 2001:db8:15::2 dev br0 table 4000000000 metric 9
";
    let (ok, out) = ns.exec_input(&["ip", "-batch", "-"], batch);
    assert!(ok, "{out}");
    // An IPv4 route through an IPv6 gateway (RTA_VIA, which netcfg does not read), where the
    // kernel has it.
    let _ = ns.exec_input(&["ip", "route", "add", "172.16.20.0/24", "via", "inet6", "fe80::1", "dev", "v0"], "");

    let (light, reference, messages) = dump_both_ways(&ns.name);
    assert_eq!(light, reference);
    assert!(messages > light.len(), "the kernel's own entries were dumped and left out");
    // The dumps held what the test set, so the comparisons above were not between defaults.
    let get = |table: u32, dst: &str, metric: u32| {
        light.get(&RouteKey::new(table, dst.parse().unwrap(), metric)).unwrap_or_else(|| panic!("{dst} in {table}"))
    };
    let hop = |via: &str, dev: &str, weight: u32, onlink: bool| NextHop {
        via: Some(via.parse().unwrap()),
        dev: Some(dev.into()),
        weight,
        onlink,
    };
    let r = get(254, "0.0.0.0/0", 10);
    assert_eq!((r.via, r.dev.as_deref(), r.protocol), (Some("10.0.0.1".parse().unwrap()), Some("v0"), 110));
    assert_eq!(get(254, "172.16.0.0/24", 0).src, Some("10.0.0.2".parse().unwrap()));
    assert!(get(254, "172.16.1.0/24", 0).onlink);
    let r = get(254, "172.16.2.0/24", 77);
    assert_eq!((r.scope, r.dev.as_deref(), r.protocol), (RouteScope::Link, Some("br0"), 200));
    assert_eq!(get(254, "172.16.2.0/24", 78).dev.as_deref(), Some("v0"));
    assert_eq!(get(254, "172.16.13.0/24", 0).scope, RouteScope::Host);
    for (table, dst, metric, t) in [
        (254, "172.16.3.0/24", 0, RouteType::Blackhole),
        (254, "172.16.4.0/24", 5, RouteType::Unreachable),
        (100, "172.16.5.0/24", 0, RouteType::Prohibit),
        (100, "172.16.6.0/24", 0, RouteType::Throw),
        (100, "0.0.0.0/0", 4000, RouteType::Unreachable),
        (200, "172.16.7.1/32", 0, RouteType::Local),
        (255, "172.16.7.2/32", 0, RouteType::Local),
        (254, "2001:db8:12::/48", 1024, RouteType::Blackhole),
        (254, "2001:db8:17::/48", 3, RouteType::Unreachable),
        (100, "2001:db8:18::/48", 1024, RouteType::Prohibit),
        (100, "2001:db8:19::/48", 1024, RouteType::Throw),
        (200, "2001:db8:15::1/128", 0, RouteType::Local),
        (4000000000, "2001:db8:15::2/128", 9, RouteType::Local),
    ] {
        assert_eq!(get(table, dst, metric).route_type, t, "{dst} in {table}");
    }
    for table in [1000, 4000000000, 253] {
        assert!(get(table, "172.16.8.0/24", 0).via.is_some());
    }
    let r = get(254, "172.16.9.0/24", 0);
    assert_eq!(r.nexthops, [hop("10.0.0.1", "v0", 3, false), hop("10.1.0.2", "br0", 1, false)]);
    let r = get(254, "172.16.11.0/24", 0);
    assert_eq!(r.nexthops, [hop("10.0.0.1", "v0", 1, false), hop("192.0.2.9", "br0", 256, true)]);
    let m = get(254, "172.16.10.0/24", 0).metrics;
    assert_eq!((m.mtu, m.advmss, m.initcwnd, m.initrwnd), (Some(1400), Some(1360), Some(10), Some(20)));
    assert_eq!(get(254, "172.16.12.0/24", 0).metrics.mtu, Some(1300));
    let r = get(254, "::/0", 1);
    assert_eq!((r.via, r.dev.as_deref()), (Some("2001:db8::1".parse().unwrap()), Some("v0")));
    assert_eq!(get(254, "2001:db8:10::/48", 200).protocol, 110);
    let m = get(254, "2001:db8:11::/48", 1024).metrics;
    assert_eq!((m.mtu, m.advmss, m.initcwnd, m.initrwnd), (Some(1300), Some(1200), Some(7), Some(8)));
    assert_eq!(get(254, "2001:db8:14::/48", 1024).src, Some("2001:db8::2".parse().unwrap()));
    assert!(get(254, "2001:db8:16::/48", 1024).onlink);
    let r = get(254, "2001:db8:13::/48", 1024);
    assert_eq!(r.nexthops, [hop("2001:db8::1", "v0", 2, false), hop("2001:db8:1::2", "br0", 1, false)]);
    assert_eq!(get(100, "::/0", 1024).via, Some("fe80::1".parse().unwrap()));
}
