//! `redirect-without-listener`: a transparent-proxy `redirect` to a port nothing listens on
//! (incident 002).
//!
//! **What it does.** For each `redirect … to-port=P` of a namespace, looks for a `listen` of the
//! same namespace on port P with the redirect's protocol, bound where the redirected packets
//! arrive: an inbound redirect (`in`, prerouting) rewrites the destination to the address of the
//! interface the packet came in by, so a listener bound to loopback only misses it; an outbound
//! redirect (`out`, output hook) rewrites it to loopback, so a listener bound to another address
//! misses it. Reports the redirect when no listener qualifies. A `tproxy`'s `to-port` is
//! judged as an inbound redirect's (the kernel's socket lookup uses the incoming interface's
//! address, or a listener on every address).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `redirect-without-listener` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::Listener;
use crate::model::Model;
use netcfg_lang::vocab::{Direction, Proto};
use netcfg_lang::{Code, Diagnostic, Severity};

pub const CHECK: Check = Check {
    code: Code::new("redirect-without-listener", &[Severity::Warning], "a redirect to a port nothing listens on"),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

/// What a `redirect` or a `tproxy` sends its packets to.
struct Redirected<'a> {
    direction: Direction,
    proto: Proto,
    to_port: &'a netcfg_lang::Spanned<u16>,
}

fn proto_name(p: Proto) -> String {
    p.keyword().to_ascii_uppercase()
}

/// Whether redirected packets reach a listener bound where it is bound.
fn reaches(direction: Direction, listener: &Listener) -> bool {
    match &listener.address {
        None => true,
        Some(a) => match direction {
            Direction::Out => a.value.is_loopback(),
            Direction::In | Direction::Forward => !a.value.is_loopback(),
        },
    }
}

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        // A `tproxy` hands packets to a listener found like an inbound redirect's: on the
        // arriving interface's address, or one bound to every address.
        let redirects =
            netns.redirects.iter().map(|r| Redirected { direction: r.direction, proto: r.proto, to_port: &r.to_port });
        let tproxies =
            netns.tproxies.iter().map(|t| Redirected { direction: Direction::In, proto: t.proto, to_port: &t.to_port });
        for redirect in redirects.chain(tproxies) {
            let port = redirect.to_port.value;
            let on_port: Vec<&Listener> = netns.listeners.iter().filter(|l| l.port.value == port).collect();
            let same_proto: Vec<&Listener> = on_port.iter().copied().filter(|l| l.proto == redirect.proto).collect();
            if same_proto.iter().any(|l| reaches(redirect.direction, l)) {
                continue;
            }
            let proto = proto_name(redirect.proto);
            let refused = if redirect.proto == Proto::Tcp {
                "connections redirected here are refused"
            } else {
                "packets redirected here are dropped"
            };
            let mut d = Diagnostic::warning(
                CHECK.code,
                redirect.to_port.span,
                format!("nothing listens on {proto} port {port} in {}", model.node(ns.node).describe_netns(ns.netns)),
            )
            .with_label(refused);
            let proto_prop = if redirect.proto == Proto::Tcp {
                String::new()
            } else {
                format!(" proto=\"{}\"", redirect.proto.keyword())
            };
            let help = if let Some(l) = same_proto.first() {
                let addr = l.address.as_ref().map(|a| (a.span, a.value));
                if let Some((span, addr)) = addr {
                    let which = match redirect.direction {
                        Direction::Out => "outbound redirects go to loopback",
                        _ => "inbound redirects go to the address of the incoming interface",
                    };
                    d = d.with_secondary(span, format!("`{}` listens on `{addr}` only; {which}", l.name.value));
                }
                format!("remove `address` from `listen \"{}\"` so it listens on every address", l.name.value)
            } else if let Some(l) = on_port.first() {
                d = d.with_secondary(
                    l.port.span,
                    format!("`{}` listens on {} port {port}, not {proto}", l.name.value, proto_name(l.proto)),
                );
                format!(
                    "set `proto=\"{}\"` on `listen \"{}\"`, or fix the redirect",
                    redirect.proto.keyword(),
                    l.name.value
                )
            } else {
                format!(
                    "declare the proxy with `listen \"proxy\" port={port}{proto_prop}`, or redirect to the port it listens on"
                )
            };
            diags.push(d.with_help(help));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_tproxy_to_a_port_nothing_listens_on() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.2/24"; }
    table "tproxy" id=100
    rule priority=100 fwmark="0x1" table="tproxy"
    route "0.0.0.0/0" type="local" dev="lo" table="tproxy"
    tproxy in proto="tcp" port=80 to-port=15001 mark="0x1"
    tproxy in proto="tcp" port=443 to-port=15002 mark="0x1"
//                                         ^^^^^ warning redirect-without-listener
    tproxy in proto="udp" port=53 to-port=15003 mark="0x1"
//                                        ^^^^^ warning redirect-without-listener
    listen "envoy" port=15001
    listen "local" port=15002 address="127.0.0.1"
}
"#,
        );
        assert_eq!(d[0].message, "nothing listens on TCP port 15002 in node `n`");
    }

    fn pod(body: &str) -> String {
        format!(
            r#"
node "worker-1" {{
    forwarding #true
    bridge-netfilter #true
    bridge "cni0" {{ address "10.244.1.1/24"; }}
    netns "pod-a" {{
        veth "eth0" {{
            address "10.244.1.2/24"
            peer "veth-a" netns="@host" master="cni0" hairpin=#true
        }}
        route "default" via="10.244.1.1" dev="eth0"
{body}
    }}
}}
"#
        )
    }

    #[test]
    fn linkerd_redirects_with_their_proxy() {
        check(&pod(r#"        redirect in proto="tcp" to-port=4143 except-port="4190,4191"
        redirect out proto="tcp" to-port=4140 except-port="4143,4140"
        listen "proxy-in" port=4143
        listen "proxy-out" port=4140 address="127.0.0.1"
        listen "proxy-admin" port=4191
        listen "app" port=8080"#));
    }

    #[test]
    fn redirect_to_a_port_nothing_listens_on() {
        let d = check(&pod(r#"        redirect in proto="tcp" to-port=4143 except-port="4190,4191"
//                                      ^^^^ warning redirect-without-listener
        listen "proxy" port=4140
        listen "app" port=8080"#));
        assert_eq!(d[0].message, "nothing listens on TCP port 4143 in namespace `pod-a` of node `worker-1`");
        assert_eq!(
            d[0].help.as_deref(),
            Some("declare the proxy with `listen \"proxy\" port=4143`, or redirect to the port it listens on")
        );
    }

    #[test]
    fn listener_of_another_protocol() {
        let d = check(&pod(r#"        redirect in proto="udp" to-port=5353
//                                      ^^^^ warning redirect-without-listener
        listen "dns" port=5353"#));
        assert_eq!(d[0].secondary[0].message, "`dns` listens on TCP port 5353, not UDP");
        assert_eq!(d[0].primary.message, "packets redirected here are dropped");
    }

    #[test]
    fn listener_bound_where_the_redirect_does_not_go() {
        let d = check(&pod(r#"        redirect in to-port=4143
//                          ^^^^ warning redirect-without-listener
        redirect out to-port=4140
//                           ^^^^ warning redirect-without-listener
        listen "proxy-in" port=4143 address="127.0.0.1"
        listen "proxy-out" port=4140 address="10.244.1.2""#));
        assert!(d.iter().all(|d| d.help.as_deref().unwrap().starts_with("remove `address`")), "{d:?}");
    }

    #[test]
    fn redirect_in_the_host_namespace() {
        check(
            r#"
node "edge" {
    ethernet "eth0" { address "203.0.113.2/24"; }
    route "default" via="203.0.113.1" dev="eth0"
    redirect in proto="tcp" port=80 to-port=3129
//                                          ^^^^ warning redirect-without-listener
    listen "squid" port=3128
}
"#,
        );
    }
}
