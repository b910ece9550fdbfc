//! Typed ruleset -> nft script text, with a line table mapping every generated line back to the
//! spec span that produced it (so nft's `file:line:col` errors can be reported on KDL).
//! Output is deterministic: the same ruleset renders to the same bytes.

use super::ruleset::*;
use netcfg_lang::value::Mark;
use netcfg_lang::vocab::{ConnState, Proto};
use netcfg_lang::Span;
use std::fmt::Write;

/// An nft script plus, for each line (0-based), the spec span it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    pub text: String,
    pub origins: Vec<Option<Span>>,
    /// Whether the transaction leaves a table behind (an empty ruleset only deletes netcfg's).
    pub creates_table: bool,
    /// The spec's dynamic sets in the new table: apply adds their live elements to the
    /// transaction (`carry.rs`), so a re-apply does not empty a ban list.
    pub kept: Vec<KeptSet>,
}

/// A dynamic set whose run-time elements a re-apply carries over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSet {
    pub name: Ident,
    pub family: Family,
    /// The new set's timeout (seconds): a carried element never outlives it.
    pub timeout: Option<u32>,
    /// Its declared elements, which the script adds itself (with a full timeout).
    pub seeds: Vec<std::net::IpAddr>,
}

impl Script {
    fn line(&mut self, indent: usize, text: &str, origin: Option<Span>) {
        for _ in 0..indent {
            self.text.push('\t');
        }
        self.text.push_str(text);
        self.text.push('\n');
        self.origins.push(origin);
    }

    /// The span behind a 1-based line number, as nft reports it.
    pub fn origin_of_line(&self, line: usize) -> Option<Span> {
        self.origins.get(line.checked_sub(1)?).copied().flatten()
    }

    /// The text of a 1-based line.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// The transaction that replaces netcfg's table in one namespace: create it if absent, delete
/// it, and (unless `table` is empty) create it anew — applied by `nft -f` as one batch, so the
/// namespace never sees a half-written table and no other table is touched.
pub fn render_transaction(header: &str, table: &Table) -> Script {
    let mut s = Script::default();
    for h in header.lines() {
        s.line(0, &format!("# {h}"), None);
    }
    s.line(0, &format!("table inet {TABLE_NAME} {{}}"), None);
    s.line(0, &format!("delete table inet {TABLE_NAME}"), None);
    if !table.is_empty() {
        render_table(&mut s, table);
        s.creates_table = true;
        s.kept = kept_sets(table);
    }
    s
}

fn kept_sets(table: &Table) -> Vec<KeptSet> {
    let mut out = Vec::new();
    for set in &table.sets {
        let Some(d) = set.dynamic.filter(|d| d.kept) else { continue };
        let family = match set.key {
            SetKey::Types(ref t) if t.as_slice() == [KeyType::Ipv4Addr] => Family::V4,
            SetKey::Types(ref t) if t.as_slice() == [KeyType::Ipv6Addr] => Family::V6,
            _ => continue,
        };
        out.push(KeptSet { name: set.name.clone(), family, timeout: d.timeout, seeds: seeds(set) });
    }
    out
}

/// The addresses a kept set is declared with.
fn seeds(set: &Set) -> Vec<std::net::IpAddr> {
    set.elements
        .iter()
        .filter_map(|e| match e.key.as_slice() {
            [Value::Addr(a)] => Some(*a),
            _ => None,
        })
        .collect()
}

fn render_table(s: &mut Script, t: &Table) {
    s.line(0, &format!("table inet {TABLE_NAME} {{"), None);
    if let Some(c) = &t.comment {
        s.line(1, &format!("comment {c}"), None);
    }
    for c in &t.counters {
        s.line(1, &format!("counter {} {{", c.name), Some(c.origin));
        s.line(1, "}", Some(c.origin));
    }
    for set in &t.sets {
        let kind = if set.data.is_some() { "map" } else { "set" };
        s.line(1, &format!("{kind} {} {{", set.name), Some(set.origin));
        let key = match &set.key {
            SetKey::Types(types) => format!("type {}", key_type(types)),
            SetKey::Typeof(exprs) => format!("typeof {}", key_exprs(exprs)),
        };
        let data = match &set.data {
            None => String::new(),
            Some(SetData::Verdict) => " : verdict".into(),
            Some(SetData::Typeof(exprs)) => format!(" : {}", key_exprs(exprs)),
        };
        s.line(2, &format!("{key}{data}"), Some(set.origin));
        if let Some(d) = &set.dynamic {
            s.line(2, &format!("size {}", d.size), Some(set.origin));
            match d.timeout {
                Some(t) => {
                    s.line(2, "flags dynamic,timeout", Some(set.origin));
                    s.line(2, &format!("timeout {t}s"), Some(set.origin));
                }
                None => s.line(2, "flags dynamic", Some(set.origin)),
            }
            if d.kept {
                s.line(2, &format!("comment \"{}\"", kept_set_comment(&seeds(set))), Some(set.origin));
            }
        }
        if set.interval {
            s.line(2, "flags interval", Some(set.origin));
            if matches!(set.key, SetKey::Types(_)) && set.data.is_none() {
                s.line(2, "auto-merge", Some(set.origin));
            }
        }
        s.line(1, "}", Some(set.origin));
    }
    for chain in &t.chains {
        s.line(1, &format!("chain {} {{", chain.name), None);
        if let Some(b) = &chain.base {
            s.line(2, &base_chain(b), None);
        }
        for rule in &chain.rules {
            s.line(2, &rule_text(rule), Some(rule.origin));
        }
        s.line(1, "}", None);
    }
    s.line(0, "}", None);
    // Elements go in separate statements of the same transaction, a bounded number at a time.
    for set in &t.sets {
        for chunk in set.elements.chunks(ELEMENT_CHUNK) {
            s.line(0, &format!("add element inet {TABLE_NAME} {} {{", set.name), Some(set.origin));
            // One line buffer for the chunk: 10,000 elements were three strings and a vector each.
            let mut line = String::new();
            let concat = |line: &mut String, vs: &[Value]| {
                for (j, v) in vs.iter().enumerate() {
                    if j > 0 {
                        line.push_str(" . ");
                    }
                    push_value(line, v);
                }
            };
            for (i, e) in chunk.iter().enumerate() {
                line.clear();
                concat(&mut line, &e.key);
                match &e.data {
                    None => {}
                    Some(ElemData::Verdict(v)) => {
                        line.push_str(" : ");
                        line.push_str(&verdict(v));
                    }
                    Some(ElemData::Values(vs)) => {
                        line.push_str(" : ");
                        concat(&mut line, vs);
                    }
                }
                if i + 1 < chunk.len() {
                    line.push(',');
                }
                s.line(1, &line, Some(e.origin));
            }
            s.line(0, "}", Some(set.origin));
        }
    }
}

fn key_exprs(k: &[KeyExpr]) -> String {
    k.iter()
        .map(|k| match k {
            KeyExpr::Sel(sel) => selector(*sel).to_string(),
            KeyExpr::Numgen(m) => format!("numgen random mod {m}"),
        })
        .collect::<Vec<_>>()
        .join(" . ")
}

fn key_type(k: &[KeyType]) -> String {
    k.iter().map(|t| t.keyword()).collect::<Vec<_>>().join(" . ")
}

fn base_chain(b: &BaseChain) -> String {
    let ty = match b.chain_type {
        ChainType::Filter => "filter",
        ChainType::Nat => "nat",
        ChainType::Route => "route",
    };
    let prio = match b.priority {
        Priority::Filter => "filter".to_string(),
        Priority::DstNat => "dstnat".to_string(),
        Priority::SrcNat => "srcnat".to_string(),
        Priority::Mangle => "mangle".to_string(),
        Priority::Raw => "raw".to_string(),
        Priority::Num(n) => n.to_string(),
    };
    let policy = match b.policy {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    };
    format!("type {ty} hook {} priority {prio}; policy {policy};", b.hook.keyword())
}

/// One rule as it appears in the script (what `netcfg trace` quotes for a matching rule).
pub fn rule_text(rule: &Rule) -> String {
    let mut text = rule.exprs.iter().map(expr).collect::<Vec<_>>().join(" ");
    if let Some(c) = &rule.comment {
        let _ = write!(text, " comment {c}");
    }
    text
}

fn selector(sel: Selector) -> &'static str {
    match sel {
        Selector::Iif => "iif",
        Selector::IifName => "iifname",
        Selector::OifName => "oifname",
        Selector::L4Proto => "meta l4proto",
        Selector::NfProto => "meta nfproto",
        Selector::Saddr(Family::V4) => "ip saddr",
        Selector::Saddr(Family::V6) => "ip6 saddr",
        Selector::Daddr(Family::V4) => "ip daddr",
        Selector::Daddr(Family::V6) => "ip6 daddr",
        Selector::Dport => "th dport",
        Selector::Sport => "th sport",
        Selector::CtState => "ct state",
        Selector::CtStatus => "ct status",
        Selector::SkUid => "meta skuid",
        Selector::IcmpType(Family::V4) => "icmp type",
        Selector::IcmpType(Family::V6) => "icmpv6 type",
        Selector::IcmpCode(Family::V4) => "icmp code",
        Selector::IcmpCode(Family::V6) => "icmpv6 code",
        Selector::Mark => "meta mark",
        Selector::CtMark => "ct mark",
        Selector::SkGid => "meta skgid",
        Selector::PktType => "meta pkttype",
        Selector::FibDaddrType => "fib daddr type",
    }
}

fn proto(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
        Proto::Icmp => "icmp",
        Proto::Icmpv6 => "ipv6-icmp",
        Proto::Igmp => "igmp",
    }
}

fn value(v: &Value) -> String {
    let mut s = String::new();
    push_value(&mut s, v);
    s
}

/// Appends a value as nft writes it: a set element's values go straight into its line, not
/// through a string each (10,000 elements of three values were 30,000 strings).
fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Net(n) => {
            push_addr(out, n.addr());
            if n.prefix_len() != n.max_prefix_len() {
                out.push('/');
                push_uint(out, u32::from(n.prefix_len()));
            }
        }
        Value::Addr(a) => push_addr(out, *a),
        Value::Ports(p) if p.0.len() == 1 => push_range(out, u32::from(p.0[0].lo), u32::from(p.0[0].hi)),
        Value::Ports(p) => {
            let _ = write!(out, "{{ {} }}", p.0.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
        }
        Value::Port(p) => push_uint(out, u32::from(*p)),
        Value::Uid(u) => push_uint(out, *u),
        Value::Proto(p) => out.push_str(proto(*p)),
        Value::Protos(ps) => {
            let _ = write!(out, "{{ {} }}", ps.iter().map(|p| proto(*p)).collect::<Vec<_>>().join(", "));
        }
        Value::Family(Family::V4) => out.push_str("ipv4"),
        Value::Family(Family::V6) => out.push_str("ipv6"),
        Value::If(i) => {
            let _ = write!(out, "{i}");
        }
        Value::States(st) => out.push_str(
            &st.iter()
                .map(|s| match s {
                    ConnState::New => "new",
                    ConnState::Established => "established",
                    ConnState::Related => "related",
                    ConnState::Invalid => "invalid",
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::DnatStatus => out.push_str("dnat"),
        Value::Range(lo, hi) => push_range(out, *lo, *hi),
        Value::Ints(v) if v.len() == 1 => push_uint(out, u32::from(v[0])),
        Value::Ints(v) => {
            let _ = write!(out, "{{ {} }}", v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        }
        Value::Mark(m) => {
            let _ = write!(out, "{:#x}", m.value);
        }
        Value::PktType(p) => out.push_str(p.keyword()),
        Value::Local => out.push_str("local"),
    }
}

/// `lo`, or `lo-hi`.
fn push_range(out: &mut String, lo: u32, hi: u32) {
    push_uint(out, lo);
    if lo != hi {
        out.push('-');
        push_uint(out, hi);
    }
}

/// A number in decimal, without `fmt`'s machinery (two per set element).
fn push_uint(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// An address as nft writes it. IPv4 by hand: `Display` through `fmt::write` was 3% of `plan`
/// on 10,000 rules (one address per set element).
fn push_addr(out: &mut String, a: std::net::IpAddr) {
    let std::net::IpAddr::V4(a) = a else {
        let _ = write!(out, "{a}");
        return;
    };
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
}

/// `10/minute burst 5 packets`.
fn rate_text(rate: u32, unit: netcfg_lang::vocab::RateUnit, burst: Option<u32>) -> String {
    match burst {
        Some(b) => format!("{rate}/{} burst {b} packets", unit.keyword()),
        None => format!("{rate}/{}", unit.keyword()),
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
    }
}

fn keys(k: &[Selector]) -> String {
    k.iter().map(|s| selector(*s)).collect::<Vec<_>>().join(" . ")
}

fn expr(e: &Expr) -> String {
    match e {
        Expr::Match { sel, op, value: Value::Mark(Mark { value, mask: Some(mask) }) } => {
            let op = match op {
                Op::Eq => "==",
                Op::Ne => "!=",
            };
            format!("{} and {mask:#x} {op} {value:#x}", selector(*sel))
        }
        Expr::Match { sel, op, value: v } => {
            let op = match op {
                Op::Eq => "",
                Op::Ne => "!= ",
            };
            format!("{} {op}{}", selector(*sel), value(v))
        }
        Expr::Lookup { keys: k, set, op } => {
            let op = match op {
                Op::Eq => "",
                Op::Ne => "!= ",
            };
            format!("{} {op}@{set}", keys(k))
        }
        Expr::DnatMap { family, keys, map } => {
            let fam = match family {
                Family::V4 => "ip",
                Family::V6 => "ip6",
            };
            format!("dnat {fam} addr . port to {} map @{map}", key_exprs(keys))
        }
        Expr::NeighbourDiscovery => {
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept".into()
        }
        Expr::Log { prefix, level: None } => format!("log prefix {prefix}"),
        Expr::Log { prefix, level: Some(l) } => format!("log prefix {prefix} level {}", l.keyword()),
        Expr::Limit { rate, unit, burst } => format!("limit rate {}", rate_text(*rate, *unit, *burst)),
        Expr::PerKey { set, key, limit: KeyedLimit::Rate { rate, unit, burst } } => {
            format!("update @{set} {{ {} limit rate {} }}", selector(*key), rate_text(*rate, *unit, *burst))
        }
        Expr::PerKey { set, key, limit: KeyedLimit::Connections(n) } => {
            format!("add @{set} {{ {} ct count {n} }}", selector(*key))
        }
        Expr::AddToSet { set, key } => format!("update @{set} {{ {} }}", selector(*key)),
        Expr::NamedCounter(name) => format!("counter name \"{name}\""),
        Expr::SetMark { ct, mark } => {
            let sel = if *ct { "ct mark" } else { "meta mark" };
            match mark.mask {
                None | Some(u32::MAX) => format!("{sel} set {:#x}", mark.value),
                Some(mask) => format!("{sel} set {sel} and {:#x} or {:#x}", !mask, mark.value),
            }
        }
        Expr::ClampMss { size: None } => "tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu".into(),
        Expr::ClampMss { size: Some(n) } => format!("tcp flags & (syn | rst) == syn tcp option maxseg size set {n}"),
        Expr::Notrack => "notrack".into(),
        Expr::Verdict(v) => verdict(v),
        Expr::Reject(RejectWith::TcpReset) => "reject with tcp reset".into(),
        Expr::Reject(RejectWith::AdminProhibited) => "reject with icmpx admin-prohibited".into(),
        Expr::Reject(RejectWith::PortUnreachable) => "reject with icmpx port-unreachable".into(),
        Expr::Dnat { addr: std::net::IpAddr::V4(a), port } => format!("dnat ip to {a}:{port}"),
        Expr::Dnat { addr: std::net::IpAddr::V6(a), port } => format!("dnat ip6 to [{a}]:{port}"),
        Expr::Snat { addr, last, ports } => {
            let show = |a: &std::net::IpAddr| match a {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) if ports.is_some() => format!("[{a}]"),
                std::net::IpAddr::V6(a) => a.to_string(),
            };
            let mut to = show(addr);
            if let Some(l) = last {
                to = format!("{to}-{}", show(l));
            }
            if let Some((lo, hi)) = ports {
                to = if lo == hi { format!("{to}:{lo}") } else { format!("{to}:{lo}-{hi}") };
            }
            let fam = if addr.is_ipv4() { "ip" } else { "ip6" };
            format!("snat {fam} to {to}")
        }
        Expr::Masquerade => "masquerade".into(),
        Expr::Redirect { port } => format!("redirect to :{port}"),
        Expr::PrefixNat { source, to } => {
            let nat = if *source { "snat" } else { "dnat" };
            let fam = if to.addr().is_ipv4() { "ip" } else { "ip6" };
            format!("{nat} {fam} prefix to {to}")
        }
        Expr::Tproxy { port } => format!("tproxy to :{port}"),
    }
}
