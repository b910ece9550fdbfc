//! The NAT constructs beyond services and source NAT: `publish` (ports published on the
//! node's own addresses), `netmap` (1:1 network mapping) and `tproxy` (transparent proxying to
//! a local socket). Kept apart from the body dispatch so each reads as one unit.

use super::{direction, link_name, name_arg, proto};
use crate::ast::*;
use crate::code;
use crate::reader::{Cx, Reader};
use crate::value::*;
use std::net::IpAddr;

pub(super) fn parse_publish(cx: &mut Cx, r: &mut Reader) -> Option<PublishDecl> {
    let name = name_arg(cx, r, "a name for the published port");
    let port = r.required(cx, "port", "8080").and_then(|v| v.parse(cx, "port", parse_port));
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    let mut ok = true;
    if let Some(p) = &proto {
        if !p.value.has_ports() {
            cx.error(code::INVALID_VALUE, p.span, "a published port needs a protocol with ports").help =
                Some("use `tcp`, `udp` or `sctp`".into());
            ok = false;
        }
    }
    let to = r.required(cx, "to", "\"10.244.1.5:80\"").and_then(|v| v.parse(cx, "backend", parse_target));
    let address = r.prop(cx, "address").and_then(|v| v.parse(cx, "address", parse_ip));
    let from = r.prop(cx, "from").and_then(|v| super::addr_match(cx, v));
    let to = to?;
    let family_of = |a: &IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
    if let Some(a) = &address {
        if a.value.is_ipv4() != to.value.0.is_ipv4() {
            let d = cx.error(
                code::INVALID_VALUE,
                a.span,
                format!("the published address is {}, the backend {}", family_of(&a.value), family_of(&to.value.0)),
            );
            d.help = Some("netcfg does not translate between IPv4 and IPv6; publish once per family".into());
            ok = false;
        }
    }
    if let Some(f) = &from {
        if let AddrMatch::Net(n) = &f.value {
            if n.addr().is_ipv4() != to.value.0.is_ipv4() {
                cx.error(code::INVALID_VALUE, f.span, "`from` and the backend are of different IP families").help =
                    Some("a published port translates one family; publish once per family".into());
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let (addr, to_port) = to.value;
    Some(PublishDecl {
        name: name?,
        port: port?,
        proto,
        to: crate::source::Spanned::new(addr, to.span),
        to_port,
        address,
        from,
        span: r.span,
    })
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`: a bare IPv6 address has colons of its own.
fn parse_target(text: &str) -> Result<(IpAddr, Option<u16>), ValueError> {
    if text.starts_with('[') || text.matches(':').count() == 1 {
        parse_endpoint(text).map(|(a, p)| (a, Some(p)))
    } else {
        parse_ip(text).map(|a| (a, None))
    }
}

pub(super) fn parse_netmap(cx: &mut Cx, r: &mut Reader) -> Option<NetmapDecl> {
    let from = r.required(cx, "from", "\"10.0.0.0/24\"").and_then(|v| v.parse(cx, "network", parse_net));
    let to = r.required(cx, "to", "\"192.0.2.0/24\"").and_then(|v| v.parse(cx, "network", parse_net));
    let out = {
        let v = r.prop(cx, "out");
        link_name(cx, v)
    };
    let (from, to) = (from?, to?);
    if from.value.addr().is_ipv4() != to.value.addr().is_ipv4() {
        let d = cx.error(code::INVALID_VALUE, to.span, "a netmap maps a network onto one of the same family");
        d.secondary.push(crate::diagnostic::Label { span: from.span, message: "the network it maps from".into() });
        d.help = Some("netcfg does not translate between IPv4 and IPv6".into());
        return None;
    }
    if from.value.prefix_len() != to.value.prefix_len() {
        let d = cx.error(
            code::INVALID_VALUE,
            to.span,
            format!(
                "`{}` is a /{}, `{}` a /{}: a 1:1 mapping needs two networks of one size",
                to.value,
                to.value.prefix_len(),
                from.value,
                from.value.prefix_len()
            ),
        );
        d.secondary.push(crate::diagnostic::Label { span: from.span, message: "the network it maps from".into() });
        d.help = Some(format!("write `to` as a /{} network", from.value.prefix_len()));
        return None;
    }
    Some(NetmapDecl { from, to, out, span: r.span })
}

pub(super) fn parse_tproxy(cx: &mut Cx, r: &mut Reader) -> Option<TproxyDecl> {
    let direction = r.arg(cx, 0, "a direction (`in`)").and_then(|v| direction(cx, v, false));
    if let Some(d) = &direction {
        if d.value != Direction::In {
            cx.error(code::INVALID_VALUE, d.span, "transparent proxying applies to arriving connections only").help =
                Some("write `tproxy in`; for connections this namespace opens use `redirect out`".into());
        }
    }
    let proto = r.prop(cx, "proto").and_then(|v| proto(cx, v));
    let proto_ok = proto.as_ref().is_none_or(|p| matches!(p.value, Proto::Tcp | Proto::Udp));
    if let (Some(p), false) = (&proto, proto_ok) {
        cx.error(code::INVALID_VALUE, p.span, "the kernel proxies TCP and UDP transparently").help =
            Some("use `tcp` or `udp`".into());
    }
    let ports = r.prop(cx, "port").and_then(|v| v.parse(cx, "port", parse_port_set));
    let except_ports = r.prop(cx, "except-port").and_then(|v| v.parse(cx, "port", parse_port_set));
    let to_port = r.required(cx, "to-port", "15001").and_then(|v| v.parse(cx, "port", parse_port));
    let mark = r.required(cx, "mark", "\"0x1\"").and_then(|v| v.parse(cx, "mark", super::parse_mark));
    let direction = direction.filter(|d| d.value == Direction::In && proto_ok)?;
    Some(TproxyDecl { direction, proto, ports, except_ports, to_port: to_port?, mark: mark?, span: r.span })
}
