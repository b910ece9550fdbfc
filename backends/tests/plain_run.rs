//! `PlainSocket::run` on a real kernel: a run of route requests goes several to a datagram and
//! only the last of each asks for an ack, so the kernel answers refusals and that last one. The
//! run must name the first refused request by its position (in the first datagram, in a later
//! one, at the acked last place of a datagram, the first of two in one), send no datagram after
//! one with a refusal, and leave the socket fit for the next dump or run.

mod common;

use common::*;
use netcfg_backends::netlink::live;
use netcfg_backends::netlink::wire::PlainSocket;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
const RTM_NEWROUTE: u16 = 24;
/// The requests of one datagram (`wire::RUN_DATAGRAM`).
const PER_DATAGRAM: usize = 64;

/// A request adding `dst`/24 through the link `oif`, with the protocol the test counts by.
fn add(dst: Ipv4Addr, oif: u32) -> (RouteNetlinkMessage, u16) {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = 24;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Other(99);
    m.header.scope = RouteScope::Link;
    m.header.kind = rtnetlink::packet_route::route::RouteType::Unicast;
    m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    m.attributes.push(RouteAttribute::Oif(oif));
    (RouteNetlinkMessage::NewRoute(m), CREATE)
}

/// The destinations of the test's routes in the namespace, read on `sock` (which must still
/// tell its dump's answers from anything a run left).
fn routes(sock: &mut PlainSocket) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    sock.dump(live::route_request(AddressFamily::Inet), |kind, payload| {
        assert_eq!(kind, RTM_NEWROUTE);
        let m = <RouteMessage as rtnetlink::packet_core::Parseable<_>>::parse(payload).expect("a route");
        if m.header.protocol == RouteProtocol::Other(99) {
            for a in &m.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(d)) = a {
                    out.push(*d);
                }
            }
        }
    })
    .expect("dump");
    out.sort();
    out
}

fn dst(block: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, block, i as u8, 0)
}

#[test]
fn a_run_names_its_first_refusal_and_sends_nothing_after_its_datagram() {
    if !require_root("a_run_names_its_first_refusal_and_sends_nothing_after_its_datagram") {
        return;
    }
    let ns = Netns::new("prun");
    let (ok, out) = ns.exec_input(&["ip", "-batch", "-"], "link add v0 type veth peer name v1\nlink set v0 up\n");
    assert!(ok, "{out}");
    let oif: u32 = ns.exec(&["cat", "/sys/class/net/v0/ifindex"]).trim().parse().expect("ifindex");
    let mut sock = netcfg_backends::netns::run_in(&ns.name, PlainSocket::open).unwrap().unwrap();

    // Every request done, over several datagrams (the last one short).
    let n = 3 * PER_DATAGRAM + 10;
    sock.run((0..n).map(|i| add(dst(20, i), oif)).collect()).expect("no refusal");
    let mut have: std::collections::BTreeSet<Ipv4Addr> = (0..n).map(|i| dst(20, i)).collect();
    assert_eq!(routes(&mut sock), have.iter().copied().collect::<Vec<_>>());

    // A route that exists (EEXIST) at position `bad`, in blocks of their own; `then` another.
    let cases = [
        (21, 5, None),
        (22, PER_DATAGRAM + 36, None),
        (23, PER_DATAGRAM - 1, None),
        (24, PER_DATAGRAM + 3, Some(PER_DATAGRAM + 9)),
    ];
    for (block, bad, then) in cases {
        let mut reqs: Vec<_> = (0..n).map(|i| add(dst(block, i), oif)).collect();
        reqs[bad] = add(dst(20, 0), oif);
        if let Some(t) = then {
            reqs[t] = add(dst(20, 1), oif);
        }
        let (at, err) = sock.run(reqs).expect_err("a refusal");
        assert_eq!(at, bad, "block {block}: {err}");
        assert_eq!(err.errno, libc::EEXIST, "block {block}: {err}");
        // The refused request's datagram was done whole but for it (the kernel goes on past
        // a refusal); no later datagram was sent.
        let sent = (bad / PER_DATAGRAM + 1) * PER_DATAGRAM;
        have.extend((0..sent).filter(|i| *i != bad && Some(*i) != then).map(|i| dst(block, i)));
        assert_eq!(routes(&mut sock), have.iter().copied().collect::<Vec<_>>(), "block {block}");
    }

    // A run of one request, refused: its own ack is the refusal.
    let (at, err) = sock.run(vec![add(dst(20, 3), oif)]).expect_err("exists");
    assert_eq!((at, err.errno), (0, libc::EEXIST));
    sock.run(vec![add(dst(25, 0), oif)]).expect("a run after refusals");
    assert!(routes(&mut sock).contains(&dst(25, 0)));
}
