//! `duplicate-port`: two listeners or two services claiming one port in one namespace
//! (incident 001: "container ports must be unique inside a task").
//!
//! **What it does.** In each namespace, groups `listen`s by protocol and port and reports a
//! later listener whose address overlaps an earlier one's. No address, or `::`, means every
//! address (a dual-stack socket, the Linux default), so it overlaps any listener; `0.0.0.0`
//! overlaps every IPv4 address; two specific addresses overlap when they are equal. It also
//! reports a later `service` with the same VIP, port and protocol as an earlier one, and a
//! later `publish` of a port and protocol an earlier one publishes on an address they share
//! (no `address` is every local address of the backend's family), and a `publish` whose port a
//! `listen` of the namespace binds where the publish translates (the listener never sees those
//! connections). A publish binds nothing itself, so listeners on loopback or on another address,
//! and services, do not clash with it.
//! Different namespaces may reuse ports: two tasks on one host may both listen on 80.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `duplicate-port` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{Listener, Netns, Publish, Service};
use crate::model::{Model, NetnsRef};
use netcfg_lang::vocab::Proto;
use netcfg_lang::{Code, Diagnostic, Severity};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

pub const CHECK: Check = Check {
    code: Code::new(
        "duplicate-port",
        &[Severity::Error],
        "two listeners, two services or two published ports claim one port in a namespace",
    ),
    run,
    after_errors: AfterErrors::Run,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (ns, netns) in model.namespaces() {
        listeners(model, ns, netns, diags);
        services(model, ns, netns, diags);
        publishes(model, ns, netns, diags);
    }
}

/// What a listener binds.
#[derive(Clone, Copy)]
enum Bind {
    /// Every address of both families (no address, or `::`).
    Any,
    /// Every IPv4 address (`0.0.0.0`).
    AnyV4,
    Addr(IpAddr),
}

impl Bind {
    fn of(l: &Listener) -> Bind {
        match l.address.as_ref().map(|a| a.value.to_canonical()) {
            None => Bind::Any,
            Some(a) if a.is_unspecified() && a.is_ipv6() => Bind::Any,
            Some(a) if a.is_unspecified() => Bind::AnyV4,
            Some(a) => Bind::Addr(a),
        }
    }

    fn describe(self) -> String {
        match self {
            Bind::Any => "every address".into(),
            Bind::AnyV4 => "every IPv4 address".into(),
            Bind::Addr(a) => format!("`{a}`"),
        }
    }
}

/// The earliest listener of one (protocol, port) group that each kind of bind collides with,
/// kept as the group is walked in declaration order: one lookup per listener, never all pairs.
#[derive(Default)]
struct Bound<'a> {
    first: Option<&'a Listener>,
    any: Option<&'a Listener>,
    any_v4: Option<&'a Listener>,
    first_v4: Option<&'a Listener>,
    exact: HashMap<IpAddr, &'a Listener>,
}

impl<'a> Bound<'a> {
    fn conflict(&self, bind: Bind) -> Option<&'a Listener> {
        let candidates = match bind {
            Bind::Any => [self.first, None, None],
            Bind::AnyV4 => [self.any, self.first_v4, None],
            Bind::Addr(a) if a.is_ipv4() => [self.any, self.any_v4, self.exact.get(&a).copied()],
            Bind::Addr(a) => [self.any, self.exact.get(&a).copied(), None],
        };
        candidates.into_iter().flatten().min_by_key(|l| l.span)
    }

    fn insert(&mut self, l: &'a Listener, bind: Bind) {
        self.first.get_or_insert(l);
        match bind {
            Bind::Any => {
                self.any.get_or_insert(l);
            }
            Bind::AnyV4 => {
                self.any_v4.get_or_insert(l);
                self.first_v4.get_or_insert(l);
            }
            Bind::Addr(a) => {
                if a.is_ipv4() {
                    self.first_v4.get_or_insert(l);
                }
                self.exact.entry(a).or_insert(l);
            }
        }
    }
}

fn listeners(model: &Model, ns: NetnsRef, netns: &Netns, diags: &mut Vec<Diagnostic>) {
    let mut groups: BTreeMap<(Proto, u16), Vec<&Listener>> = BTreeMap::new();
    for l in netns.listeners.iter().filter(|l| l.proto.has_ports()) {
        groups.entry((l.proto, l.port.value)).or_default().push(l);
    }
    for ((proto, port), mut group) in groups {
        if group.len() < 2 {
            continue;
        }
        group.sort_by_key(|l| l.span);
        let mut bound = Bound::default();
        for l in group {
            let bind = Bind::of(l);
            if let Some(first) = bound.conflict(bind) {
                diags.push(
                    Diagnostic::error(
                        CHECK.code,
                        l.port.span,
                        format!(
                            "port `{port}/{}` is bound twice in {}",
                            proto.keyword(),
                            model.node(ns.node).describe_netns(ns.netns)
                        ),
                    )
                    .with_label(format!("`{}` binds it on {}", l.name.value, bind.describe()))
                    .with_secondary(
                        first.port.span,
                        format!("first bound here by `{}`, on {}", first.name.value, Bind::of(first).describe()),
                    )
                    .with_help(format!(
                        "move `{}` to another port (every process of a namespace shares its ports), \
                         or bind `{}` and `{}` to distinct addresses",
                        l.name.value, first.name.value, l.name.value
                    )),
                );
            }
            bound.insert(l, bind);
        }
    }
}

fn services(model: &Model, ns: NetnsRef, netns: &Netns, diags: &mut Vec<Diagnostic>) {
    let mut ordered: Vec<&Service> = netns.services.iter().collect();
    ordered.sort_by_key(|s| s.span);
    let mut first: HashMap<(IpAddr, u16, Proto), &Service> = HashMap::new();
    for s in ordered {
        let key = (s.vip.value.to_canonical(), s.port.value, s.proto);
        let Some(earlier) = first.get(&key) else {
            first.insert(key, s);
            continue;
        };
        let endpoint = SocketAddr::new(s.vip.value, s.port.value);
        diags.push(
            Diagnostic::error(
                CHECK.code,
                s.port.span,
                format!(
                    "`{endpoint}/{}` is served by two services in {}",
                    s.proto.keyword(),
                    model.node(ns.node).describe_netns(ns.netns)
                ),
            )
            .with_label(format!("service `{}` claims it again", s.name.value))
            .with_secondary(earlier.port.span, format!("first claimed here by service `{}`", earlier.name.value))
            .with_help(format!(
                "merge the backends of `{}` into `{}`, or give `{}` another port or VIP",
                s.name.value, earlier.name.value, s.name.value
            )),
        );
    }
}

/// Two published ports one connection could match: the same port and protocol, on one
/// address, or on every local address of the family and an address of it. Only the first
/// rule would ever translate it.
fn publishes(model: &Model, ns: NetnsRef, netns: &Netns, diags: &mut Vec<Diagnostic>) {
    let mut ordered: Vec<&Publish> = netns.publishes.iter().collect();
    ordered.sort_by_key(|p| p.span);
    for (i, p) in ordered.iter().enumerate() {
        let family = p.to.value.is_ipv4();
        let clash = ordered[..i].iter().find(|e| {
            e.port.value == p.port.value
                && e.proto == p.proto
                && e.to.value.is_ipv4() == family
                && match (&e.address, &p.address) {
                    (Some(a), Some(b)) => a.value == b.value,
                    _ => true,
                }
        });
        if let Some(l) = shadowed_listener(netns, p) {
            let bind = Bind::of(l);
            diags.push(
                Diagnostic::error(
                    CHECK.code,
                    p.port.span,
                    format!(
                        "port `{}/{}` is published and bound in {}",
                        p.port.value,
                        p.proto.keyword(),
                        model.node(ns.node).describe_netns(ns.netns)
                    ),
                )
                .with_label(format!("`{}` sends its connections to `{}`", p.name.value, p.to.value))
                .with_secondary(
                    l.port.span,
                    format!("`{}` listens here on {}, and never sees them", l.name.value, bind.describe()),
                )
                .with_help(format!(
                    "publish `{}` on another port, or bind `{}` to `127.0.0.1` (connections to loopback are not published)",
                    p.name.value, l.name.value
                )),
            );
        }
        let Some(earlier) = clash else { continue };
        let on = |q: &Publish| match &q.address {
            Some(a) => format!("`{}`", a.value),
            None => "every local address".to_string(),
        };
        diags.push(
            Diagnostic::error(
                CHECK.code,
                p.port.span,
                format!(
                    "port `{}/{}` is published twice in {}",
                    p.port.value,
                    p.proto.keyword(),
                    model.node(ns.node).describe_netns(ns.netns)
                ),
            )
            .with_label(format!("`{}` publishes it on {}", p.name.value, on(p)))
            .with_secondary(
                earlier.port.span,
                format!("first published here by `{}`, on {}", earlier.name.value, on(earlier)),
            )
            .with_help(format!("publish `{}` on another port, or give both an `address` of their own", p.name.value)),
        );
    }
}

/// A listener of the namespace the publish takes connections from: same protocol and port,
/// bound where the publish translates (every local address of the publish's family but
/// loopback, or its `address`).
fn shadowed_listener<'a>(netns: &'a Netns, p: &Publish) -> Option<&'a Listener> {
    let v4 = p.to.value.is_ipv4();
    netns.listeners.iter().filter(|l| l.proto == p.proto && l.port.value == p.port.value).find(|l| {
        match (Bind::of(l), &p.address) {
            (Bind::Any, _) => true,
            (Bind::AnyV4, _) => v4,
            (Bind::Addr(a), None) => a.is_ipv4() == v4 && !a.is_loopback(),
            (Bind::Addr(a), Some(pa)) => a == pa.value.to_canonical(),
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn a_port_published_twice_on_a_shared_address() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "192.0.2.10/24"; address "192.0.2.11/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    service "web" vip="192.0.2.10" port=8080 { backend "10.244.1.9:80"; }
    publish "web" port=8080 to="10.244.1.5:80"
    publish "web-udp" port=8080 proto="udp" to="10.244.1.5:80"
    publish "web6" port=8080 to="[fd00::5]:80"
    publish "a" port=9000 to="10.244.1.5" address="192.0.2.10"
    publish "b" port=9000 to="10.244.1.6" address="192.0.2.11"
    publish "c" port=9000 to="10.244.1.7"
//                   ^^^^ error duplicate-port
    publish "d" port=8080 to="10.244.1.8" address="192.0.2.11"
//                   ^^^^ error duplicate-port
}
"#,
        );
        check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "192.0.2.10/24"; address "192.0.2.11/24"; }
    bridge "br0" { address "10.244.1.1/24"; }
    listen "local-only" port=8080 address="127.0.0.1"
    listen "other-address" port=9000 address="192.0.2.11"
    listen "udp" port=9001 proto="udp"
    publish "web" port=8080 to="10.244.1.5:80"
    publish "a" port=9000 to="10.244.1.5" address="192.0.2.10"
    publish "b" port=9001 to="10.244.1.5"
    listen "nginx" port=7000
    publish "c" port=7000 to="10.244.1.5"
//                   ^^^^ error duplicate-port
}
"#,
        );
        assert_eq!(d[0].message, "port `9000/tcp` is published twice in node `n`");
        assert_eq!(d[0].primary.message, "`c` publishes it on every local address");
        assert_eq!(d[0].secondary[0].message, "first published here by `a`, on `192.0.2.10`");
    }

    #[test]
    fn incident_001_two_containers_of_a_task_on_one_port() {
        let d = check(
            r#"
node "host" {
    netns "task-1" {
        listen "nginx" port=80
        listen "sidecar" port=80 address="127.0.0.1"
//                            ^^ error duplicate-port
        listen "metrics" port=9100
    }
}
"#,
        );
        assert_eq!(d[0].message, "port `80/tcp` is bound twice in namespace `task-1` of node `host`");
        assert_eq!(d[0].primary.message, "`sidecar` binds it on `127.0.0.1`");
        assert_eq!(d[0].secondary[0].message, "first bound here by `nginx`, on every address");
    }

    #[test]
    fn ports_are_per_namespace_and_per_protocol() {
        check(
            r#"
node "host" {
    listen "node-exporter" port=9100
    netns "task-1" {
        listen "nginx" port=80
        listen "dns" port=53 proto="udp"
        listen "dns-tcp" port=53 proto="tcp"
    }
    netns "task-2" {
        listen "nginx" port=80
        listen "exporter" port=9100
    }
}
"#,
        );
    }

    #[test]
    fn addresses_overlap_by_family_and_wildcard() {
        check(
            r#"
node "n" {
    netns "t" {
        listen "a" port=80 address="10.0.0.1"
        listen "b" port=80 address="10.0.0.2"
        listen "c" port=80 address="fd00::1"
        listen "d" port=80 address="0.0.0.0"
//                      ^^ error duplicate-port
        listen "e" port=80 address="10.0.0.2"
//                      ^^ error duplicate-port
        listen "f" port=80 address="fd00::2"
        listen "g" port=80 address="::"
//                      ^^ error duplicate-port
        listen "h" port=81 address="::"
        listen "i" port=81 address="fd00::9"
//                      ^^ error duplicate-port
        listen "j" port=82 address="::ffff:10.0.0.1"
        listen "k" port=82 address="10.0.0.1"
//                      ^^ error duplicate-port
    }
}
"#,
        );
    }

    #[test]
    fn each_later_listener_is_reported_against_the_first_it_collides_with() {
        let d = check(
            r#"
node "n" {
    listen "a" port=443 address="10.0.0.1"
    listen "b" port=443 address="10.0.0.1"
//                  ^^^ error duplicate-port
    listen "c" port=443
//                  ^^^ error duplicate-port
}
"#,
        );
        let firsts: Vec<&str> = d.iter().map(|d| d.secondary[0].message.as_str()).collect();
        assert_eq!(firsts, ["first bound here by `a`, on `10.0.0.1`", "first bound here by `a`, on `10.0.0.1`"]);
    }

    #[test]
    fn two_services_on_one_vip_port_and_protocol() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    service "web" vip="10.96.0.10" port=80 { backend "192.0.2.3:8080"; }
    service "web-v2" vip="10.96.0.10" port=80 { backend "192.0.2.4:8080"; }
//                                         ^^ error duplicate-port
    service "web-tls" vip="10.96.0.10" port=443 { backend "192.0.2.3:8443"; }
    service "dns" vip="10.96.0.53" port=53 proto="udp" { backend "192.0.2.5:53"; }
    service "dns-tcp" vip="10.96.0.53" port=53 proto="tcp" { backend "192.0.2.5:53"; }
    service "v6" vip="fd96::10" port=80 { backend "[fd00::3]:8080"; }
    service "v6-again" vip="fd96::10" port=80 { backend "[fd00::4]:8080"; }
//                                         ^^ error duplicate-port
    netns "other" {
        forwarding #true
        service "web" vip="10.96.0.10" port=80 { backend "127.0.0.1:8080"; }
    }
}
"#,
        );
        assert_eq!(d[0].message, "`10.96.0.10:80/tcp` is served by two services in node `n`");
        assert_eq!(d[0].secondary[0].message, "first claimed here by service `web`");
        assert_eq!(d[1].message, "`[fd96::10]:80/tcp` is served by two services in node `n`");
    }
}
