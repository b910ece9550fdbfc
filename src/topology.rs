//! The topology of a fleet as a Graphviz DOT graph, drawn from the IR: nodes and their
//! namespaces as nested clusters, links as boxes (kind and addresses), and edges for what ties
//! links together — bridge ports, veth pairs, macvlans and their parents, VXLAN underlays,
//! VXLANs of different nodes that share a VNI, NICs of different nodes on one subnet — and for
//! services and published ports to their backends. Pure text; running `dot` belongs to the `graph` command.

use netcfg_compiler::ir::{Fleet, LinkKind, Node};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// Colours per link kind, readable on white and in grey print.
fn fill(kind: &LinkKind) -> &'static str {
    match kind {
        LinkKind::Loopback => "#eeeeee",
        LinkKind::Ethernet => "#cfe2f3",
        LinkKind::Bridge { .. } => "#fce5cd",
        LinkKind::Veth { .. } => "#d9ead3",
        LinkKind::Vxlan { .. } => "#d9d2e9",
        LinkKind::Macvlan { .. } | LinkKind::Ipvlan { .. } => "#fff2cc",
        LinkKind::Vlan { .. } => "#d0e0e3",
        LinkKind::Bond(_) => "#f4cccc",
        LinkKind::Vrf { .. } => "#ead1dc",
        LinkKind::Dummy => "#f3f3f3",
        LinkKind::Tunnel(_) | LinkKind::Wireguard(_) => "#d9d2e9",
    }
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn link_id(node: usize, link: u32) -> String {
    format!("n{node}_l{link}")
}

/// The DOT graph of every node of `fleet` (or only those `keep` accepts).
pub fn dot(fleet: &Fleet, keep: impl Fn(&Node) -> bool) -> String {
    let mut out = String::new();
    out.push_str("digraph netcfg {\n");
    out.push_str("    graph [rankdir=LR, fontname=\"Helvetica\", fontsize=12, compound=true, newrank=true];\n");
    out.push_str("    node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("    edge [fontname=\"Helvetica\", fontsize=9];\n");
    let nodes: Vec<(usize, &Node)> = fleet.nodes.iter().enumerate().filter(|(_, n)| keep(n)).collect();
    let mut edges = String::new();
    // Fleet-wide: VXLANs by VNI, NIC addresses by subnet, every address to its link.
    let mut by_vni: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut by_subnet: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    let mut owner: BTreeMap<(usize, IpAddr), String> = BTreeMap::new();
    // Loopback backends, per node and namespace.
    let mut local: BTreeMap<(usize, u32, IpAddr), String> = BTreeMap::new();
    for &(n, node) in &nodes {
        let _ = writeln!(out, "    subgraph cluster_n{n} {{");
        let _ = writeln!(
            out,
            "        label={}; style=\"rounded,bold\"; color=\"#444444\";",
            quote(&format!("node {}", node.name.value))
        );
        for ns in &node.namespaces {
            let inner = !ns.is_host();
            if inner {
                let _ = writeln!(out, "        subgraph cluster_n{n}_ns{} {{", ns.id.0);
                let _ = writeln!(
                    out,
                    "            label={}; style=\"rounded,dashed\"; color=\"#888888\";",
                    quote(&format!("netns {}", ns.display_name()))
                );
            } else {
                let _ = writeln!(out, "        subgraph cluster_n{n}_host {{");
                let _ = writeln!(out, "            label=\"host namespace\"; style=\"rounded\"; color=\"#bbbbbb\";");
            }
            let mut empty = true;
            for link in node.links_in(ns.id) {
                // `lo` only when the spec gives it more than its usual loopback addresses.
                if matches!(link.kind, LinkKind::Loopback) && link.addresses.iter().all(|a| a.net.addr().is_loopback())
                {
                    continue;
                }
                empty = false;
                let id = link_id(n, link.id.0);
                let mut label = format!("{}\n{}", link.name.value, link.kind.keyword());
                if let LinkKind::Vxlan { vni, .. } = &link.kind {
                    let _ = write!(label, " {}", vni.value);
                    by_vni.entry(vni.value).or_default().push(id.clone());
                }
                for a in &link.addresses {
                    let _ = write!(label, "\n{}", a.net);
                    owner.insert((n, a.net.addr()), id.clone());
                    if matches!(link.kind, LinkKind::Ethernet) {
                        by_subnet.entry(a.net.trunc().to_string()).or_default().push((n, id.clone()));
                    }
                }
                let _ =
                    writeln!(out, "            {id} [label={}, fillcolor=\"{}\"];", quote(&label), fill(&link.kind));
                edges_of(&mut edges, n, node, link);
            }
            for (i, s) in ns.services.iter().enumerate() {
                empty = false;
                let id = format!("n{n}_ns{}_s{i}", ns.id.0);
                let label = format!("service {}\n{}:{}/{}", s.name.value, s.vip.value, s.port.value, s.proto.keyword());
                let _ =
                    writeln!(out, "            {id} [label={}, shape=ellipse, fillcolor=\"#f4cccc\"];", quote(&label));
                // A loopback backend is this namespace's own `lo`: draw it here.
                for b in s.backends.iter().filter(|b| b.addr.is_loopback()) {
                    let lo = format!("n{n}_ns{}_lo", ns.id.0);
                    if local.insert((n, ns.id.0, b.addr), lo.clone()).is_none() {
                        let label = format!("lo\n{}", b.addr);
                        let _ = writeln!(
                            out,
                            "            {lo} [label={}, fillcolor=\"{}\"];",
                            quote(&label),
                            fill(&LinkKind::Loopback)
                        );
                    }
                }
            }
            for (i, p) in ns.publishes.iter().enumerate() {
                empty = false;
                let id = format!("n{n}_ns{}_p{i}", ns.id.0);
                let on = p.address.as_ref().map(|a| a.value.to_string()).unwrap_or_else(|| "*".into());
                let label = format!("publish {}\n{on}:{}/{}", p.name.value, p.port.value, p.proto.keyword());
                let _ =
                    writeln!(out, "            {id} [label={}, shape=ellipse, fillcolor=\"#fce5cd\"];", quote(&label));
            }
            if empty {
                // Graphviz drops empty clusters; keep the namespace visible.
                let _ = writeln!(
                    out,
                    "            n{n}_ns{}_empty [label=\"(no links)\", shape=plaintext, style=\"\"];",
                    ns.id.0
                );
            }
            out.push_str("        }\n");
        }
        out.push_str("    }\n");
    }
    // Services to backends: the link holding the backend's address on the same node, else
    // anywhere in the fleet, else a bare address.
    let mut bare = 0;
    for &(n, node) in &nodes {
        for ns in &node.namespaces {
            for (i, s) in ns.services.iter().enumerate() {
                let from = format!("n{n}_ns{}_s{i}", ns.id.0);
                for b in &s.backends {
                    let target = local
                        .get(&(n, ns.id.0, b.addr))
                        .or_else(|| owner.get(&(n, b.addr)))
                        .or_else(|| owner.iter().find(|((_, ip), _)| *ip == b.addr).map(|(_, id)| id))
                        .cloned();
                    let to = target.unwrap_or_else(|| {
                        bare += 1;
                        let id = format!("backend_{bare}");
                        let _ = writeln!(
                            out,
                            "    {id} [label={}, shape=plaintext, style=\"\"];",
                            quote(&b.addr.to_string())
                        );
                        id
                    });
                    let _ = writeln!(
                        edges,
                        "    {from} -> {to} [label={}, color=\"#cc0000\"];",
                        quote(&format!(":{}", b.port))
                    );
                }
            }
        }
    }
    // Published ports to their backends, found like a service's.
    for &(n, node) in &nodes {
        for ns in &node.namespaces {
            for (i, p) in ns.publishes.iter().enumerate() {
                let from = format!("n{n}_ns{}_p{i}", ns.id.0);
                let addr = p.to.value;
                let target = owner
                    .get(&(n, addr))
                    .or_else(|| owner.iter().find(|((_, ip), _)| *ip == addr).map(|(_, id)| id))
                    .cloned();
                let to = target.unwrap_or_else(|| {
                    bare += 1;
                    let id = format!("backend_{bare}");
                    let _ =
                        writeln!(out, "    {id} [label={}, shape=plaintext, style=\"\"];", quote(&addr.to_string()));
                    id
                });
                let _ = writeln!(
                    edges,
                    "    {from} -> {to} [label={}, color=\"#e69138\"];",
                    quote(&format!(":{}", p.to_port))
                );
            }
        }
    }
    for (vni, ids) in &by_vni {
        for w in ids.windows(2) {
            let _ = writeln!(
                edges,
                "    {} -> {} [dir=none, style=dashed, color=\"#674ea7\", penwidth=2, label={}];",
                w[0],
                w[1],
                quote(&format!("VNI {vni}"))
            );
        }
    }
    for (subnet, members) in &by_subnet {
        let distinct_nodes = members.iter().map(|(n, _)| n).collect::<std::collections::BTreeSet<_>>();
        if distinct_nodes.len() < 2 {
            continue;
        }
        let id = format!("subnet_{}", subnet.replace(['.', '/', ':'], "_"));
        let _ = writeln!(out, "    {id} [label={}, shape=note, fillcolor=\"#ffffff\"];", quote(subnet));
        for (_, link) in members {
            let _ = writeln!(edges, "    {link} -> {id} [dir=none, color=\"#3d85c6\"];");
        }
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}

/// The edges one link brings: to its bridge, its veth peer (once per pair), its macvlan
/// parent, its VXLAN underlay.
fn edges_of(edges: &mut String, n: usize, node: &Node, link: &netcfg_compiler::ir::Link) {
    let id = link_id(n, link.id.0);
    if let Some(master) = &link.master {
        let _ = writeln!(edges, "    {id} -> {} [label=\"port\", color=\"#e69138\"];", link_id(n, master.value.0));
    }
    match &link.kind {
        LinkKind::Veth { peer } if link.id.0 < peer.0 => {
            let _ = writeln!(
                edges,
                "    {id} -> {} [dir=none, penwidth=2, color=\"#6aa84f\", label=\"veth\"];",
                link_id(n, peer.0)
            );
        }
        LinkKind::Macvlan { parent, mode } => {
            let _ = writeln!(
                edges,
                "    {id} -> {} [style=dotted, label={}];",
                link_id(n, parent.value.0),
                quote(&format!("macvlan {}", format!("{mode:?}").to_lowercase()))
            );
        }
        LinkKind::Vxlan { dev: Some(dev), .. } => {
            let _ = writeln!(edges, "    {id} -> {} [style=dotted, label=\"underlay\"];", link_id(n, dev.value.0));
        }
        LinkKind::Vlan { parent, id: vid, .. } => {
            let _ = writeln!(
                edges,
                "    {id} -> {} [style=dotted, label={}];",
                link_id(n, parent.value.0),
                quote(&format!("vlan {}", vid.value))
            );
        }
        LinkKind::Ipvlan { parent, mode } => {
            let _ = writeln!(
                edges,
                "    {id} -> {} [style=dotted, label={}];",
                link_id(n, parent.value.0),
                quote(&format!("ipvlan {}", mode.keyword()))
            );
        }
        LinkKind::Tunnel(t) => {
            if let Some(dev) = &t.dev {
                let _ = writeln!(edges, "    {id} -> {} [style=dotted, label=\"underlay\"];", link_id(n, dev.value.0));
            }
        }
        _ => {}
    }
    let _ = node;
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
