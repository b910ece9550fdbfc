//! Published ports, 1:1 network mappings and transparent proxying, lowered next to the other
//! NAT (`Lower::nat` hands them its chains' rule lists): see spec.md, "Published ports,
//! netmap, tproxy".

use super::{m, rule, Lower};
use crate::nftables::ruleset::*;
use ipnet::IpNet;
use netcfg_compiler::ir;

impl Lower<'_> {
    /// `publish`: one DNAT rule per published port in `nat-prerouting` (arriving connections)
    /// and in `nat-output` (the namespace's own connections to its address, loopback left
    /// out: a DNAT-ed `127.0.0.1` source cannot leave the namespace), and hairpin masquerade of
    /// a backend reaching its own published port, through a `saddr . daddr` set.
    pub(super) fn publishes(&mut self, pre: &mut Vec<Rule>, out: &mut Vec<Rule>, post: &mut Vec<Rule>) {
        let ns = self.ns;
        let local: Vec<std::net::IpAddr> =
            self.node.links_in(ns.id).flat_map(|l| l.addresses.iter().map(|a| a.net.addr())).collect();
        for fam in [Family::V4, Family::V6] {
            let publishes: Vec<&ir::Publish> = ns.publishes.iter().filter(|p| Family::of(p.to.value) == fam).collect();
            let mut hairpins: Vec<Element> = Vec::new();
            for p in &publishes {
                for output in [false, true] {
                    let mut exprs = Vec::new();
                    match &p.address {
                        Some(a) => exprs.push(m(Selector::Daddr(fam), Value::Addr(a.value))),
                        None => {
                            exprs.push(m(Selector::NfProto, Value::Family(fam)));
                            exprs.push(m(Selector::FibDaddrType, Value::Local));
                            if output {
                                let lo: IpNet = match fam {
                                    Family::V4 => "127.0.0.0/8".parse().expect("valid"),
                                    Family::V6 => "::1/128".parse().expect("valid"),
                                };
                                exprs.push(Expr::Match {
                                    sel: Selector::Daddr(fam),
                                    op: Op::Ne,
                                    value: Value::Net(lo),
                                });
                            }
                        }
                    }
                    if let Some(f) = &p.from {
                        exprs.push(self.addr_expr(Selector::Saddr, &f.value, fam));
                    }
                    exprs.push(m(Selector::L4Proto, Value::Proto(p.proto)));
                    exprs.push(m(Selector::Dport, Value::Port(p.port.value)));
                    exprs.push(Expr::Dnat { addr: p.to.value, port: p.to_port });
                    if output { &mut *out } else { &mut *pre }.push(rule(exprs, p.span));
                }
                if !p.to.value.is_loopback() && !local.contains(&p.to.value) {
                    hairpins.push(Element {
                        key: smallvec::smallvec![Value::Addr(p.to.value), Value::Addr(p.to.value)],
                        data: None,
                        origin: p.to.span,
                    });
                }
            }
            if let Some(origin) = hairpins.first().map(|h| h.origin) {
                post.extend(self.hairpin_masquerade("publish", fam, hairpins, origin));
            }
        }
    }

    /// `netmap`: sources in `from` leaving by `out` become the same host in `to`
    /// (`snat ip prefix to`), connections to `to` arriving by `out` go to the same host in
    /// `from` (`dnat ip prefix to`).
    pub(super) fn netmaps(&mut self, pre: &mut Vec<Rule>, post: &mut Vec<Rule>) {
        for nm in &self.ns.netmaps {
            let fam = Family::of(nm.from.value.addr());
            let link = match &nm.out {
                Some(o) => match self.ifname(o.value, o.span) {
                    Some(n) => Some(n),
                    None => continue,
                },
                None => None,
            };
            let mut egress = Vec::new();
            let mut ingress = Vec::new();
            if let Some(n) = link {
                egress.push(m(Selector::OifName, Value::If(n.clone())));
                ingress.push(m(Selector::IifName, Value::If(n)));
            }
            egress.push(m(Selector::Saddr(fam), Value::Net(nm.from.value)));
            egress.push(Expr::PrefixNat { source: true, to: nm.to.value });
            ingress.push(m(Selector::Daddr(fam), Value::Net(nm.to.value)));
            ingress.push(Expr::PrefixNat { source: false, to: nm.from.value });
            post.push(rule(egress, nm.span));
            pre.push(rule(ingress, nm.span));
        }
    }

    /// `tproxy in`: a prerouting chain at mangle priority (before conntrack's DNAT and the
    /// routing decision the mark steers) that hands matching packets to the local socket and
    /// marks them, so the policy rule for the mark routes them to `lo`.
    pub(super) fn tproxies(&mut self) {
        let lo = Value::If(IfName::new("lo").expect("valid"));
        let mut rules = Vec::new();
        for t in &self.ns.tproxies {
            let mut exprs = vec![Expr::Match { sel: Selector::IifName, op: Op::Ne, value: lo.clone() }];
            exprs.push(m(Selector::L4Proto, Value::Proto(t.proto)));
            if let Some(p) = &t.ports {
                exprs.push(m(Selector::Dport, Value::Ports(p.clone())));
            }
            if let Some(p) = &t.except_ports {
                exprs.push(Expr::Match { sel: Selector::Dport, op: Op::Ne, value: Value::Ports(p.clone()) });
            }
            exprs.push(Expr::Tproxy { port: t.to_port.value });
            exprs.push(Expr::SetMark { ct: false, mark: t.mark.value });
            exprs.push(Expr::Verdict(Verdict::Accept));
            rules.push(rule(exprs, t.span));
        }
        if !rules.is_empty() {
            self.table.chains.push(Chain {
                name: Ident::new("tproxy-prerouting"),
                base: Some(BaseChain {
                    chain_type: ChainType::Filter,
                    hook: Hook::Prerouting,
                    priority: Priority::Mangle,
                    policy: Policy::Accept,
                }),
                rules,
            });
        }
    }
}
