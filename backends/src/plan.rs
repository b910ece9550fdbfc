//! The plan for one node, as a value: per namespace, the nft transaction netcfg would apply and
//! the desired link/address/route/neighbour/sysctl state. `plan` prints it; `apply` executes
//! exactly it. Until the netlink diff lands (issue 4) the netlink part is the full desired
//! state rather than a diff against the live kernel.

use crate::nftables::{self, render::Script};
use netcfg_compiler::ir::{LinkKind, Node};
use netcfg_lang::ast::{RouteScope, RouteType};
use netcfg_lang::Diagnostic;
use serde_json::{json, Value as Json};
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct NodePlan {
    pub node: String,
    pub namespaces: Vec<NetnsPlan>,
}

#[derive(Clone, Debug)]
pub struct NetnsPlan {
    /// `@host` for the node's own namespace.
    pub name: String,
    pub nft: Script,
    pub links: Vec<LinkState>,
    pub routes: Vec<String>,
    pub neighbors: Vec<String>,
    pub sysctls: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct LinkState {
    pub name: String,
    pub kind: String,
    pub attrs: Vec<(String, String)>,
    pub addresses: Vec<String>,
}

pub fn plan_node(node: &Node, diags: &mut Vec<Diagnostic>) -> NodePlan {
    let rulesets = nftables::compile_node(node, diags);
    let mtus = netcfg_compiler::model::link_mtus(node);
    let namespaces = node
        .namespaces
        .iter()
        .zip(rulesets)
        .map(|(ns, rs)| {
            let links = node
                .links_in(ns.id)
                .filter(|l| !matches!(l.kind, LinkKind::Loopback) || l.addresses.len() > 2)
                .map(|l| {
                    let mut attrs = Vec::new();
                    match &l.kind {
                        LinkKind::Veth { peer } => {
                            let p = node.link(*peer);
                            attrs.push((
                                "peer".into(),
                                format!("{}@{}", p.name.value, node.netns(p.netns).display_name()),
                            ));
                        }
                        LinkKind::Vxlan { vni, local, remote, group, dev, port } => {
                            attrs.push(("vni".into(), vni.value.to_string()));
                            for (k, v) in [("local", local), ("remote", remote), ("group", group)] {
                                if let Some(v) = v {
                                    attrs.push((k.into(), v.value.to_string()));
                                }
                            }
                            if let Some(d) = dev {
                                attrs.push(("dev".into(), node.link(d.value).name.value.clone()));
                            }
                            attrs.push(("port".into(), port.to_string()));
                        }
                        LinkKind::Macvlan { parent, mode } => {
                            attrs.push(("parent".into(), node.link(parent.value).name.value.clone()));
                            attrs.push(("mode".into(), format!("{mode:?}").to_lowercase()));
                        }
                        LinkKind::Bridge { netfilter: Some(n) } => {
                            attrs.push(("netfilter".into(), n.value.to_string()))
                        }
                        _ => {}
                    }
                    attrs.push(("mtu".into(), mtus[l.id.0 as usize].to_string()));
                    if let Some(m) = &l.mac {
                        attrs.push(("mac".into(), m.value.to_string()));
                    }
                    if let Some(m) = &l.master {
                        attrs.push(("master".into(), node.link(m.value).name.value.clone()));
                    }
                    if let Some(h) = &l.hairpin {
                        attrs.push(("hairpin".into(), h.value.to_string()));
                    }
                    attrs.push(("state".into(), if l.up { "up" } else { "down" }.into()));
                    LinkState {
                        name: l.name.value.clone(),
                        kind: l.kind.keyword().into(),
                        attrs,
                        addresses: l
                            .addresses
                            .iter()
                            .map(
                                |a| if a.prefix_route { a.net.to_string() } else { format!("{} noprefixroute", a.net) },
                            )
                            .collect(),
                    }
                })
                .collect();
            let routes = ns
                .routes
                .iter()
                .map(|r| {
                    let mut s = match r.route_type {
                        RouteType::Unicast => String::new(),
                        RouteType::Blackhole => "blackhole ".into(),
                        RouteType::Unreachable => "unreachable ".into(),
                        RouteType::Prohibit => "prohibit ".into(),
                    };
                    let _ = write!(s, "{}", r.dst);
                    if let Some(v) = &r.via {
                        let _ = write!(s, " via {}", v.value);
                    }
                    if let Some(d) = &r.dev {
                        let _ = write!(s, " dev {}", node.link(d.value).name.value);
                    }
                    if let Some(src) = &r.src {
                        let _ = write!(s, " src {}", src.value);
                    }
                    if r.metric != 0 {
                        let _ = write!(s, " metric {}", r.metric);
                    }
                    if r.table != netcfg_compiler::ir::MAIN_TABLE {
                        let _ = write!(s, " table {}", r.table);
                    }
                    let _ = write!(
                        s,
                        " scope {}",
                        match r.scope {
                            RouteScope::Global => "global",
                            RouteScope::Link => "link",
                            RouteScope::Host => "host",
                        }
                    );
                    if r.onlink {
                        s.push_str(" onlink");
                    }
                    s
                })
                .collect();
            let neighbors = ns
                .neighbors
                .iter()
                .map(|n| format!("{} lladdr {} dev {}", n.ip.value, n.mac.value, node.link(n.dev.value).name.value))
                .collect();
            let sysctls = ns.sysctls.iter().map(|(k, v)| (k.0.clone(), v.value.to_string())).collect();
            NetnsPlan { name: ns.display_name().to_string(), nft: rs.script, links, routes, neighbors, sysctls }
        })
        .collect();
    NodePlan { node: node.name.value.clone(), namespaces }
}

impl NodePlan {
    /// Human-readable plan: per namespace, the desired state then the nft transaction.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "node {}", self.node);
        for ns in &self.namespaces {
            let _ = writeln!(s, "\nnamespace {}", ns.name);
            for l in &ns.links {
                let attrs = l.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                let _ = writeln!(s, "  link {} {} {attrs}", l.kind, l.name);
                for a in &l.addresses {
                    let _ = writeln!(s, "    address {a}");
                }
            }
            for r in &ns.routes {
                let _ = writeln!(s, "  route {r}");
            }
            for n in &ns.neighbors {
                let _ = writeln!(s, "  neighbor {n}");
            }
            for (k, v) in &ns.sysctls {
                let _ = writeln!(s, "  sysctl {k} = {v}");
            }
            let _ = writeln!(s, "  nftables:");
            for line in ns.nft.text.lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
        s
    }

    pub fn to_json(&self) -> Json {
        json!({
            "version": 1,
            "node": self.node,
            "namespaces": self.namespaces.iter().map(|ns| json!({
                "name": ns.name,
                "links": ns.links.iter().map(|l| json!({
                    "name": l.name,
                    "kind": l.kind,
                    "attributes": l.attrs.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                    "addresses": l.addresses,
                })).collect::<Vec<_>>(),
                "routes": ns.routes,
                "neighbors": ns.neighbors,
                "sysctls": ns.sysctls.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "nftables": ns.nft.text,
            })).collect::<Vec<_>>(),
        })
    }
}
