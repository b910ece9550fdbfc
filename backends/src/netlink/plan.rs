//! The plan: an ordered list of typed operations on the kernel, as a value. `plan` prints it,
//! `apply` executes exactly it. Every op carries the spec span it came from, its disruption
//! class, and what it replaces (the live state before), from which its inverse is computed.

use super::desired::Object;
use super::state::*;
use crate::nftables::changes::TableChange;
use crate::nftables::render::Script;
use ipnet::IpNet;
use netcfg_lang::vocab::{RouteScope, RouteType};
use netcfg_lang::Span;
use serde_json::{json, Value as Json};
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;

/// How much an op disturbs traffic that is already flowing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disruption {
    /// Nothing that works stops working.
    InPlace,
    /// The link goes down or changes its L2 identity (MAC, master) for a moment.
    LinkFlap,
    /// The link is destroyed (and, for a recreate, made anew).
    Recreate,
}

impl Disruption {
    pub fn as_str(self) -> &'static str {
        match self {
            Disruption::InPlace => "in place",
            Disruption::LinkFlap => "link flap",
            Disruption::Recreate => "recreate",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Loads a kernel module (with what it depends on) that the ops after it need. Not undone by
    /// a rollback: see spec.md, "Kernel features".
    LoadModule {
        module: String,
    },
    /// Writes (or, with `content: None`, removes) netcfg's modules-load.d file, atomically;
    /// `old` is the content before (`None`: there was no file).
    WriteModulesLoad {
        path: PathBuf,
        content: Option<String>,
        old: Option<String>,
    },
    CreateNetns,
    DeleteNetns,
    /// Creates a link (and a veth's peer) with all its attributes.
    CreateLink {
        name: String,
        link: Link,
        peer: Option<(LinkRef, Link)>,
    },
    /// Deletes a link (a veth: both ends); `link`/`peer` are the live state, for the inverse.
    DeleteLink {
        name: String,
        link: Link,
        peer: Option<(LinkRef, Link)>,
    },
    SetLink {
        name: String,
        to: LinkSettings,
        from: LinkSettings,
    },
    /// Moves an existing link (a NIC) from namespace `from` to namespace `to` of the node. The
    /// kernel takes it down and drops its addresses and routes; the plan removes those
    /// explicitly before, so that the inverse (the move back) is followed by their restoring.
    MoveLink {
        name: String,
        from: NsName,
        to: NsName,
    },
    /// Renames an existing link (found by its MAC): down, `IFLA_IFNAME`, up again if it was.
    /// The plan treats what the flap drops (routes, IPv6 addresses) as gone.
    RenameLink {
        from: String,
        to: String,
    },
    AddAddress {
        link: String,
        net: IpNet,
        addr: Address,
    },
    ReplaceAddress {
        link: String,
        net: IpNet,
        addr: Address,
        old: Address,
    },
    DeleteAddress {
        link: String,
        net: IpNet,
        addr: Address,
    },
    AddRoute {
        key: RouteKey,
        route: Route,
    },
    ReplaceRoute {
        key: RouteKey,
        route: Route,
        old: Route,
    },
    DeleteRoute {
        key: RouteKey,
        route: Route,
    },
    /// Adds a policy rule with this protocol.
    AddRule {
        rule: Rule,
        protocol: u8,
    },
    DeleteRule {
        rule: Rule,
        protocol: u8,
    },
    AddNeighbor {
        link: String,
        ip: IpAddr,
        neigh: Neighbor,
    },
    ReplaceNeighbor {
        link: String,
        ip: IpAddr,
        neigh: Neighbor,
        old: Neighbor,
    },
    DeleteNeighbor {
        link: String,
        ip: IpAddr,
        neigh: Neighbor,
    },
    /// `old`: the value before, `None` when the file did not exist yet (a new link's sysctl).
    WriteSysctl {
        path: String,
        value: String,
        old: Option<String>,
    },
    /// Replaces netcfg's nft table; `old` is the live table as `nft list` prints it (a script
    /// nft loads back), `None` when absent.
    Nft {
        script: Script,
        old: Option<String>,
        /// What the replacement changes, rule by rule and element by element (for review;
        /// empty until [`super::Session::describe_nft`] fills it in, never read by apply).
        changes: Vec<TableChange>,
    },
    /// The inverse of `Nft`: loads `table` (nft text) or deletes the table when `None`.
    NftRestore {
        table: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub ns: NsName,
    pub action: Action,
    pub class: Disruption,
    /// The spec text that asked for the op (the node's for deletions of removed objects).
    pub span: Span,
}

impl Op {
    pub fn sign(&self) -> char {
        match &self.action {
            Action::CreateNetns
            | Action::LoadModule { .. }
            | Action::CreateLink { .. }
            | Action::AddAddress { .. }
            | Action::AddRoute { .. }
            | Action::AddRule { .. }
            | Action::AddNeighbor { .. } => '+',
            Action::WriteSysctl { old: None, .. }
            | Action::Nft { old: None, .. }
            | Action::WriteModulesLoad { old: None, .. } => '+',
            Action::WriteModulesLoad { content: None, .. } => '-',
            Action::DeleteNetns
            | Action::DeleteLink { .. }
            | Action::DeleteAddress { .. }
            | Action::DeleteRoute { .. }
            | Action::DeleteRule { .. }
            | Action::DeleteNeighbor { .. } => '-',
            _ => '~',
        }
    }

    /// The object the op is about, as the spec names it.
    pub fn object(&self) -> Object {
        match &self.action {
            Action::LoadModule { module } => Object::Module(module.clone()),
            Action::WriteModulesLoad { .. } => Object::ModulesLoad,
            Action::CreateNetns | Action::DeleteNetns => Object::Netns,
            Action::CreateLink { name, .. }
            | Action::DeleteLink { name, .. }
            | Action::SetLink { name, .. }
            | Action::MoveLink { name, .. } => Object::Link(name.clone()),
            Action::RenameLink { to, .. } => Object::Link(to.clone()),
            Action::AddAddress { link, net, .. }
            | Action::ReplaceAddress { link, net, .. }
            | Action::DeleteAddress { link, net, .. } => Object::Address(link.clone(), *net),
            Action::AddRoute { key, .. } | Action::ReplaceRoute { key, .. } | Action::DeleteRoute { key, .. } => {
                Object::Route(*key)
            }
            Action::AddRule { rule, .. } | Action::DeleteRule { rule, .. } => Object::Rule(rule.clone()),
            Action::AddNeighbor { link, ip, .. }
            | Action::ReplaceNeighbor { link, ip, .. }
            | Action::DeleteNeighbor { link, ip, .. } => Object::Neighbor(link.clone(), *ip),
            Action::WriteSysctl { path, .. } => Object::Sysctl(path.clone()),
            Action::Nft { .. } | Action::NftRestore { .. } => Object::Nft,
        }
    }

    /// The op that undoes this one, computed from the state it replaced; `None` when there is
    /// nothing to undo (a sysctl of a link that did not exist before).
    pub fn inverse(&self) -> Option<Op> {
        let action = match &self.action {
            // A loaded module stays: something else may use it by then, and nf_tables releases
            // its hold on expression modules asynchronously, so an unload would race.
            Action::LoadModule { .. } => return None,
            Action::WriteModulesLoad { path, content, old } => {
                Action::WriteModulesLoad { path: path.clone(), content: old.clone(), old: content.clone() }
            }
            Action::CreateNetns => Action::DeleteNetns,
            Action::DeleteNetns => Action::CreateNetns,
            Action::CreateLink { name, link, peer } => {
                Action::DeleteLink { name: name.clone(), link: link.clone(), peer: peer.clone() }
            }
            Action::DeleteLink { name, link, peer } => {
                Action::CreateLink { name: name.clone(), link: link.clone(), peer: peer.clone() }
            }
            Action::SetLink { name, to, from } => {
                Action::SetLink { name: name.clone(), to: from.clone(), from: to.clone() }
            }
            Action::RenameLink { from, to } => Action::RenameLink { from: to.clone(), to: from.clone() },
            Action::MoveLink { name, from, to } => {
                Action::MoveLink { name: name.clone(), from: to.clone(), to: from.clone() }
            }
            Action::AddAddress { link, net, addr } => {
                Action::DeleteAddress { link: link.clone(), net: *net, addr: *addr }
            }
            Action::ReplaceAddress { link, net, addr, old } => {
                Action::ReplaceAddress { link: link.clone(), net: *net, addr: *old, old: *addr }
            }
            Action::DeleteAddress { link, net, addr } => {
                Action::AddAddress { link: link.clone(), net: *net, addr: *addr }
            }
            Action::AddRoute { key, route } => Action::DeleteRoute { key: *key, route: route.clone() },
            Action::ReplaceRoute { key, route, old } => {
                Action::ReplaceRoute { key: *key, route: old.clone(), old: route.clone() }
            }
            Action::DeleteRoute { key, route } => Action::AddRoute { key: *key, route: route.clone() },
            Action::AddRule { rule, protocol } => Action::DeleteRule { rule: rule.clone(), protocol: *protocol },
            Action::DeleteRule { rule, protocol } => Action::AddRule { rule: rule.clone(), protocol: *protocol },
            Action::AddNeighbor { link, ip, neigh } => {
                Action::DeleteNeighbor { link: link.clone(), ip: *ip, neigh: *neigh }
            }
            Action::ReplaceNeighbor { link, ip, neigh, old } => {
                Action::ReplaceNeighbor { link: link.clone(), ip: *ip, neigh: *old, old: *neigh }
            }
            Action::DeleteNeighbor { link, ip, neigh } => {
                Action::AddNeighbor { link: link.clone(), ip: *ip, neigh: *neigh }
            }
            Action::WriteSysctl { path, value, old } => {
                Action::WriteSysctl { path: path.clone(), value: old.clone()?, old: Some(value.clone()) }
            }
            Action::Nft { old, .. } => Action::NftRestore { table: old.clone() },
            Action::NftRestore { .. } => return None,
        };
        Some(Op { ns: self.ns.clone(), action, class: self.class, span: self.span })
    }

    /// One line: what the op does, in `ip`-like words.
    pub fn describe(&self) -> String {
        match &self.action {
            Action::LoadModule { module } => format!("kernel module {module}"),
            Action::WriteModulesLoad { path, content, .. } => {
                let modules: Vec<&str> =
                    content.iter().flat_map(|c| c.lines()).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
                match content {
                    Some(_) => format!("load at boot: {} ({})", modules.join(" "), path.display()),
                    None => format!("load at boot: {}", path.display()),
                }
            }
            Action::CreateNetns => "namespace".to_string(),
            Action::DeleteNetns => "namespace".to_string(),
            Action::CreateLink { name, link, peer } | Action::DeleteLink { name, link, peer } => {
                let mut s = format!("link {name} ({}", link.kind.keyword());
                s.push_str(&super::kinds::describe(&link.kind));
                if let Some((p, _)) = peer {
                    let _ = write!(s, ", peer {p}");
                }
                describe_settings(&mut s, &link.settable());
                s.push(')');
                s
            }
            Action::SetLink { name, to, from } => {
                let mut s = format!("link {name}:");
                let mut parts = Vec::new();
                let f = |v: Option<String>| v.unwrap_or_else(|| "?".into());
                if let Some(m) = to.mtu {
                    parts.push(format!("mtu {} -> {m}", f(from.mtu.map(|v| v.to_string()))));
                }
                if let Some(m) = to.mac {
                    parts.push(format!("mac {} -> {m}", f(from.mac.map(|v| v.to_string()))));
                }
                if let Some(m) = &to.master {
                    let show = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".into());
                    parts.push(format!(
                        "master {} -> {}",
                        from.master.as_ref().map(show).unwrap_or("?".into()),
                        show(m)
                    ));
                }
                if let Some(h) = to.hairpin {
                    parts.push(format!("hairpin {} -> {h}", f(from.hairpin.map(|v| v.to_string()))));
                }
                if let Some(h) = to.nf_call_iptables {
                    parts.push(format!("nf_call_iptables {} -> {h}", f(from.nf_call_iptables.map(|v| v.to_string()))));
                }
                let was = from.opts.fields();
                for (name, v) in to.opts.fields() {
                    let old = was.iter().find(|(n, _)| *n == name).map_or("?".to_string(), |(_, o)| o.clone());
                    parts.push(format!("{name} {old} -> {v}"));
                }
                if let Some(a) = to.addrgen_none {
                    let show = |n: bool| if n { "none" } else { "eui64" };
                    parts.push(format!("addrgenmode {} -> {}", from.addrgen_none.map(show).unwrap_or("?"), show(a)));
                }
                if let Some(u) = to.up {
                    let show = |u: bool| if u { "up" } else { "down" };
                    parts.push(format!("{} -> {}", from.up.map(show).unwrap_or("?"), show(u)));
                }
                let _ = write!(s, " {}", parts.join(", "));
                s
            }
            Action::MoveLink { name, from, to } => format!("link {name}: move {from} -> {to}"),
            Action::RenameLink { from, to } => format!("link {to}: rename {from} -> {to}"),
            Action::AddAddress { link, net, addr } | Action::DeleteAddress { link, net, addr } => {
                format!("address {net} dev {link}{}", if addr.prefix_route { "" } else { " noprefixroute" })
            }
            Action::ReplaceAddress { link, net, addr, .. } => {
                format!("address {net} dev {link}: {}", if addr.prefix_route { "prefixroute" } else { "noprefixroute" })
            }
            Action::AddRoute { key, route } | Action::DeleteRoute { key, route } => {
                let mut s = String::with_capacity(88);
                s.push_str("route ");
                describe_route_into(&mut s, key, route);
                s
            }
            Action::ReplaceRoute { key, route, old } => {
                format!("route {} (was {})", describe_route(key, route), describe_route(key, old))
            }
            Action::AddRule { rule, protocol } | Action::DeleteRule { rule, protocol } => {
                format!("rule {}", describe_rule(rule, *protocol))
            }
            Action::AddNeighbor { link, ip, neigh } | Action::DeleteNeighbor { link, ip, neigh } => {
                format!("neighbor {ip} lladdr {} dev {link}", neigh.mac)
            }
            Action::ReplaceNeighbor { link, ip, neigh, old } => {
                format!("neighbor {ip} dev {link}: lladdr {} -> {}", old.mac, neigh.mac)
            }
            Action::WriteSysctl { path, value, old } => match old {
                Some(o) => format!("sysctl {path}: {o} -> {value}"),
                None => format!("sysctl {path} = {value}"),
            },
            Action::Nft { .. } => format!("nftables table inet {}", crate::nftables::ruleset::TABLE_NAME),
            Action::NftRestore { .. } => {
                format!("nftables table inet {} (restore)", crate::nftables::ruleset::TABLE_NAME)
            }
        }
    }

    fn kind(&self) -> &'static str {
        match &self.action {
            Action::LoadModule { .. } => "load-module",
            Action::WriteModulesLoad { .. } => "write-modules-load",
            Action::CreateNetns => "create-netns",
            Action::DeleteNetns => "delete-netns",
            Action::CreateLink { .. } => "create-link",
            Action::DeleteLink { .. } => "delete-link",
            Action::SetLink { .. } => "set-link",
            Action::MoveLink { .. } => "move-link",
            Action::RenameLink { .. } => "rename-link",
            Action::AddAddress { .. } => "add-address",
            Action::ReplaceAddress { .. } => "replace-address",
            Action::DeleteAddress { .. } => "delete-address",
            Action::AddRoute { .. } => "add-route",
            Action::ReplaceRoute { .. } => "replace-route",
            Action::DeleteRoute { .. } => "delete-route",
            Action::AddRule { .. } => "add-rule",
            Action::DeleteRule { .. } => "delete-rule",
            Action::AddNeighbor { .. } => "add-neighbor",
            Action::ReplaceNeighbor { .. } => "replace-neighbor",
            Action::DeleteNeighbor { .. } => "delete-neighbor",
            Action::WriteSysctl { .. } => "write-sysctl",
            Action::Nft { .. } => "nft-transaction",
            Action::NftRestore { .. } => "nft-restore",
        }
    }

    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "op": self.kind(),
            "change": self.sign().to_string(),
            "namespace": self.ns,
            "description": self.describe(),
            "disruption": self.class.as_str(),
            "span": {"file": self.span.file.0, "start": self.span.start, "end": self.span.end},
        });
        if let Action::Nft { changes, .. } = &self.action {
            if !changes.is_empty() {
                v["changes"] = changes.iter().map(TableChange::to_json).collect();
            }
        }
        v
    }

    /// The nft changes of an `Nft` op (empty for every other op).
    pub fn table_changes(&self) -> &[TableChange] {
        match &self.action {
            Action::Nft { changes, .. } => changes,
            _ => &[],
        }
    }
}

fn describe_settings(s: &mut String, l: &LinkSettings) {
    if let Some(m) = l.mtu {
        let _ = write!(s, ", mtu {m}");
    }
    if let Some(m) = l.mac {
        let _ = write!(s, ", mac {m}");
    }
    if let Some(Some(m)) = &l.master {
        let _ = write!(s, ", master {m}");
    }
    if l.hairpin == Some(true) {
        s.push_str(", hairpin");
    }
    if let Some(n) = l.nf_call_iptables {
        let _ = write!(s, ", nf_call_iptables {n}");
    }
    if l.addrgen_none == Some(true) {
        s.push_str(", addrgenmode none");
    }
    for (name, v) in l.opts.fields() {
        let _ = write!(s, ", {name} {v}");
    }
    if l.up == Some(true) {
        s.push_str(", up");
    }
}

pub fn describe_route(key: &RouteKey, r: &Route) -> String {
    let mut s = String::with_capacity(80);
    describe_route_into(&mut s, key, r);
    s
}

/// Writes an address as its `Display` does; IPv4 without the formatter, which cost about as
/// much as the rest of a route's description put together (12,000 routes in a first apply).
fn push_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_u8(s, o);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(s, "{v6}");
        }
    }
}

fn push_u8(s: &mut String, v: u8) {
    if v >= 100 {
        s.push(char::from(b'0' + v / 100));
    }
    if v >= 10 {
        s.push(char::from(b'0' + v / 10 % 10));
    }
    s.push(char::from(b'0' + v % 10));
}

fn describe_route_into(s: &mut String, key: &RouteKey, r: &Route) {
    if r.route_type != RouteType::Unicast {
        s.push_str(r.route_type.keyword());
        s.push(' ');
    }
    push_ip(s, key.dst.addr());
    s.push('/');
    push_u8(s, key.dst.prefix_len());
    if let Some(v) = r.via {
        s.push_str(" via ");
        push_ip(s, v);
    }
    if let Some(d) = &r.dev {
        s.push_str(" dev ");
        s.push_str(d);
    }
    if let Some(src) = r.src {
        s.push_str(" src ");
        push_ip(s, src);
    }
    let _ = write!(s, " table {} metric {}", key.table, key.metric);
    match r.scope {
        RouteScope::Global => {}
        RouteScope::Link => s.push_str(" scope link"),
        RouteScope::Host => s.push_str(" scope host"),
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    let m = &r.metrics;
    for (name, v) in [("mtu", m.mtu), ("advmss", m.advmss), ("initcwnd", m.initcwnd), ("initrwnd", m.initrwnd)] {
        if let Some(v) = v {
            let _ = write!(s, " {name} {v}");
        }
    }
    for n in &r.nexthops {
        s.push_str(" nexthop");
        if let Some(v) = n.via {
            let _ = write!(s, " via {v}");
        }
        if let Some(d) = &n.dev {
            let _ = write!(s, " dev {d}");
        }
        let _ = write!(s, " weight {}", n.weight);
        if n.onlink {
            s.push_str(" onlink");
        }
    }
    if r.protocol != NETCFG_PROTO {
        let _ = write!(s, " proto {}", r.protocol);
    }
}

/// A policy rule in `ip rule` words: `100: from 10.0.0.0/24 lookup 100`, `-6` first for IPv6.
pub fn describe_rule(r: &Rule, protocol: u8) -> String {
    let mut s = String::new();
    if r.v6 {
        s.push_str("-6 ");
    }
    let _ = write!(s, "{}:", r.priority);
    match (&r.from, &r.to) {
        (None, None) => s.push_str(" from all"),
        (from, to) => {
            if let Some(f) = from {
                let _ = write!(s, " from {f}");
            }
            if let Some(t) = to {
                let _ = write!(s, " to {t}");
            }
        }
    }
    if let Some(i) = &r.iif {
        let _ = write!(s, " iif {i}");
    }
    if let Some(o) = &r.oif {
        let _ = write!(s, " oif {o}");
    }
    if let Some((mark, mask)) = r.fwmark {
        if mask == u32::MAX {
            let _ = write!(s, " fwmark {mark:#x}");
        } else {
            let _ = write!(s, " fwmark {mark:#x}/{mask:#x}");
        }
    }
    if let Some(p) = r.ipproto {
        let _ = write!(s, " ipproto {p}");
    }
    for (name, range) in [("sport", r.sport), ("dport", r.dport)] {
        match range {
            Some((lo, hi)) if lo == hi => {
                let _ = write!(s, " {name} {lo}");
            }
            Some((lo, hi)) => {
                let _ = write!(s, " {name} {lo}-{hi}");
            }
            None => {}
        }
    }
    match r.action {
        RuleAction::Lookup(t) => {
            let _ = write!(s, " lookup {t}");
        }
        RuleAction::L3mdev => s.push_str(" lookup [l3mdev-table]"),
        RuleAction::Goto(p) => {
            let _ = write!(s, " goto {p}");
        }
        RuleAction::Blackhole => s.push_str(" blackhole"),
        RuleAction::Unreachable => s.push_str(" unreachable"),
        RuleAction::Prohibit => s.push_str(" prohibit"),
    }
    if let Some(p) = r.suppress_prefixlength {
        let _ = write!(s, " suppress_prefixlength {p}");
    }
    if protocol != NETCFG_PROTO {
        let _ = write!(s, " proto {protocol}");
    }
    s
}

/// The netlink plan of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub node: String,
    pub ops: Vec<Op>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Terraform-style text: one line per op, in execution order.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "node {}", self.node);
        if self.ops.is_empty() {
            s.push_str("  no changes\n");
            return s;
        }
        for op in &self.ops {
            let _ = writeln!(s, "  {} {}: {}  [{}]", op.sign(), op.ns, op.describe(), op.class.as_str());
            for c in op.table_changes() {
                match &c.old {
                    Some(old) => {
                        let _ = writeln!(s, "      {} {}: `{old}` -> `{}`", c.kind.sign(), c.object, c.text);
                    }
                    None => {
                        let _ = writeln!(s, "      {} {}: `{}`", c.kind.sign(), c.object, c.text);
                    }
                }
            }
        }
        let count = |c: char| self.ops.iter().filter(|o| o.sign() == c).count();
        let _ = writeln!(s, "{} to add, {} to change, {} to remove", count('+'), count('~'), count('-'));
        s
    }

    pub fn to_json(&self) -> Json {
        json!({
            "version": 1,
            "node": self.node,
            "ops": self.ops.iter().map(Op::to_json).collect::<Vec<_>>(),
        })
    }

    /// One line per op, `SIGN NAMESPACE: DESCRIPTION`: what `apply` prints and what its journal
    /// keeps of the plan. Described once and shared: describing 12,000 ops twice, and building
    /// the whole JSON plan for the journal, was a third of a big first apply's own CPU.
    pub fn lines(&self) -> Vec<String> {
        let line = |op: &Op| {
            let d = op.describe();
            let mut s = String::with_capacity(op.ns.len() + d.len() + 4);
            s.push(op.sign());
            s.push(' ');
            s.push_str(&op.ns);
            s.push_str(": ");
            s.push_str(&d);
            s
        };
        // A big plan is described in two halves, one on a second thread.
        if self.ops.len() < 4096 {
            return self.ops.iter().map(line).collect();
        }
        let (a, b) = self.ops.split_at(self.ops.len() / 2);
        std::thread::scope(|t| {
            let second = t.spawn(|| b.iter().map(line).collect::<Vec<_>>());
            let mut out: Vec<String> = a.iter().map(line).collect();
            out.extend(second.join().expect("describing ops does not panic"));
            out
        })
    }

    /// The plan as the journal keeps it, for people reading the file: the node and the op
    /// lines of [`Plan::lines`] (a restore reads only the journal's snapshot).
    pub fn journal_record(&self, lines: Vec<String>) -> Json {
        json!({ "version": 1, "node": self.node, "ops": lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written address writer says what `Display` says, every octet width included.
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut octets: Vec<u8> = vec![0, 1, 9, 10, 42, 99, 100, 101, 199, 200, 249, 250, 255];
        octets.extend((0..=255u8).step_by(7));
        for &o in &octets {
            for ip in [IpAddr::from([o, 0, 255, o]), IpAddr::from([10, o, 100, 9]), IpAddr::from([255, 255, 255, o])] {
                let mut s = String::new();
                push_ip(&mut s, ip);
                assert_eq!(s, ip.to_string());
            }
        }
        for v6 in ["::", "2001:db8::1", "fe80::1:2:3:4", "::ffff:10.0.0.1"] {
            let ip: IpAddr = v6.parse().expect("an address");
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
