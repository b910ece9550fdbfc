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
