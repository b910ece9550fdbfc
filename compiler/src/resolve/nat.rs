//! `publish`, `netmap` and `tproxy` declarations → IR: names unique per namespace, `from` sets
//! and `out` links resolved. Their values were checked by the parser (families, sizes).

use super::{duplicate, NodeBuilder};
use crate::ir::{Netmap, NetnsId, Publish, Tproxy};
use netcfg_lang::ast::{self, NsBody};
use netcfg_lang::Span;
use std::collections::HashMap;

impl NodeBuilder<'_> {
    pub(super) fn published_and_mapped(&mut self, ns: NetnsId, b: &NsBody) {
        let sets = self.node.netns(ns).firewall.sets.clone();
        let mut publishes = Vec::new();
        let mut names: HashMap<&str, Span> = HashMap::new();
        for p in &b.publishes {
            if let Some(first) = names.get(p.name.value.as_str()) {
                self.diags.push(duplicate("published port", &p.name, *first));
                continue;
            }
            names.insert(&p.name.value, p.name.span);
            let from = match &p.from {
                Some(f) => match self.addr_match(&sets, f) {
                    Some(f) => Some(f),
                    None => continue,
                },
                None => None,
            };
            publishes.push(Publish {
                name: p.name.clone(),
                port: p.port.clone(),
                proto: p.proto.as_ref().map(|p| p.value).unwrap_or(ast::Proto::Tcp),
                to: p.to.clone(),
                to_port: p.to_port.unwrap_or(p.port.value),
                address: p.address.clone(),
                from,
                span: p.span,
            });
        }
        let mut netmaps = Vec::new();
        for m in &b.netmaps {
            let out = match &m.out {
                Some(o) => match self.link_ref(ns, o) {
                    Some(o) => Some(o),
                    None => continue,
                },
                None => None,
            };
            netmaps.push(Netmap { from: m.from.clone(), to: m.to.clone(), out, span: m.span });
        }
        let tproxies = b
            .tproxies
            .iter()
            .map(|t| Tproxy {
                proto: t.proto.as_ref().map(|p| p.value).unwrap_or(ast::Proto::Tcp),
                ports: t.ports.as_ref().map(|p| p.value.clone()),
                except_ports: t.except_ports.as_ref().map(|p| p.value.clone()),
                to_port: t.to_port.clone(),
                mark: t.mark.clone(),
                span: t.span,
            })
            .collect();
        let n = &mut self.node.namespaces[ns.0 as usize];
        n.publishes = publishes;
        n.netmaps = netmaps;
        n.tproxies = tproxies;
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn bad_publishes_netmaps_and_tproxies_have_one_finding_each() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    ethernet "eth0" { address "192.0.2.10/24"; }
    netmap from="10.0.0.0/24" to="192.0.2.0/25" out="eth0"
//                                ^^^^^^^^^^^^ error invalid-value
    netmap from="10.0.0.0/24" to="2001:db8::/120"
//                                ^^^^^^^^^^^^^^ error invalid-value
    netmap from="10.0.0.0/24" to="198.51.100.0/24" out="eth9"
//                                                      ^^^^ error undefined-reference
    tproxy out proto="tcp" to-port=15001 mark="0x1"
//         ^^^ error invalid-value
    tproxy in proto="sctp" to-port=15001 mark="0x1"
//                   ^^^^ error invalid-value
    publish "a" port=80 to="10.0.0.5:80" address="2001:db8::1"
//                                                ^^^^^^^^^^^ error invalid-value
    publish "b" port=80 to="10.0.0.5" from="2001:db8::/32"
//                                          ^^^^^^^^^^^^^ error invalid-value
    publish "c" port=80 to="10.0.0.5" proto="icmp"
//                                           ^^^^ error invalid-value
    publish "d" port=81 to="10.0.0.5"
    publish "d" port=82 to="10.0.0.6"
//           ^ error duplicate-name
    publish "e" port=83 to="10.0.0.7" from="@nope"
//                                          ^^^^^ error undefined-reference
    publish "g" port=85 to="10.0.0.300:80"
//                          ^^^^^^^^^^ error invalid-value
}
"#,
        );
        assert_eq!(
            d[0].message,
            "`192.0.2.0/25` is a /25, `10.0.0.0/24` a /24: a 1:1 mapping needs two networks of one size"
        );
        assert_eq!(d[0].help.as_deref(), Some("write `to` as a /24 network"));
    }

    #[test]
    fn a_tproxy_needs_its_mark() {
        let d = check(
            r#"
node "n" {
    tproxy in proto="tcp" to-port=15001
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error missing-property
}
"#,
        );
        assert_eq!(d[0].message, "`tproxy` needs `mark`");
    }
}
