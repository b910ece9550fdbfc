//! The typed nftables ruleset netcfg emits: one `inet` table per namespace with named sets,
//! verdict maps, base and regular chains, and rules built from typed expressions. Nothing here
//! is text; `render.rs` turns it into an nft script. Every rule, set element and map element
//! carries the span of the spec that produced it (its provenance).

use ipnet::IpNet;
use netcfg_lang::value::Mark;
use netcfg_lang::value::PortSet;
use netcfg_lang::vocab::{ConnState, LogLevel, PktType, Proto, RateUnit};
use netcfg_lang::Span;
use std::fmt;
use std::net::IpAddr;

/// The one table netcfg owns in every namespace. Nothing else is ever touched.
pub const TABLE_NAME: &str = "netcfg";

/// The modulus of the random draw that picks a service backend: each backend owns a slice of
/// `0..NUMGEN_MOD` proportional to its weight.
pub const NUMGEN_MOD: u32 = 65536;

/// Set/map elements per `add element` statement: one huge element list in a single statement
/// overflows nft's netlink buffer (ENOBUFS at 20k concatenated interval elements here).
pub const ELEMENT_CHUNK: usize = 1000;

/// An nft identifier (chain, set, map names). nft reads `[a-zA-Z][a-zA-Z0-9/_.-]*` of up to 256
/// bytes (`NFT_NAME_MAXLEN`). Built only through [`Ident::new`], which is **injective**, so two
/// spec names can never become one nft set (`admins.v4` and `admins_v4` stay apart) and no spec
/// can inject nft syntax through a name:
///
/// - letters, digits, `-`, `_` and `.` (all that spec names may hold) are kept as they are;
/// - any other byte becomes `/HH` (upper-case hex); `/` itself is such a byte, so a `/` in an
///   identifier always starts an escape;
/// - a name that does not start with a letter gets the prefix `x//`, which no escape produces;
/// - nothing is truncated: spec names are at most 64 bytes, so the longest identifier netcfg
///   builds (`service-hairpin-…`, `set-NAME-v4`) stays far below 256.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident(String);

impl Ident {
    pub fn new(raw: &str) -> Ident {
        let mut s = String::with_capacity(raw.len() + 3);
        if !raw.starts_with(|c: char| c.is_ascii_alphabetic()) {
            s.push_str("x//");
        }
        for b in raw.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                s.push(b as char);
            } else {
                s.push_str(&format!("/{b:02X}"));
            }
        }
        Ident(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An interface name as it appears in a quoted nft string. `lang` already refuses quotes,
/// backslashes and control characters in link names; this type re-checks at the boundary.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Option<IfName> {
        // `*` is nft's wildcard: `lang` refuses it in link names, this re-checks at the boundary.
        let ok = !name.is_empty()
            && name.len() <= 15
            && name.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'' | '*'));
        ok.then(|| IfName(name.to_string()))
    }

    /// Every interface whose name starts with `prefix` (nft's trailing `*`).
    pub fn prefix(prefix: &str) -> Option<IfName> {
        let ok = prefix.len() < 15 && IfName::new(prefix).is_some();
        ok.then(|| IfName(format!("{prefix}*")))
    }

    /// Whether an interface of this name is matched.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// A free-text comment, reduced to what nft accepts inside quotes (128 bytes, no quotes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comment(String);

impl Comment {
    pub fn new(text: &str) -> Comment {
        let mut s: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect();
        s = s.replace(['"', '\\'], "'");
        s.truncate(128);
        Comment(s)
    }
}

impl fmt::Display for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub comment: Option<Comment>,
    /// Named sets and maps (a map is a set with data).
    pub sets: Vec<Set>,
    pub counters: Vec<Counter>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.chains.is_empty() && self.counters.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    Ifname,
}

impl KeyType {
    pub fn keyword(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::Ifname => "ifname",
        }
    }
}

/// One component of a key or of map data, written as the expression it is matched with
/// (`typeof ip daddr . meta l4proto . th dport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyExpr {
    Sel(Selector),
    /// `numgen random mod N`: a random number in `0..N`, drawn per new connection.
    Numgen(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetKey {
    /// `type ipv4_addr` etc.
    Types(Vec<KeyType>),
    /// `typeof EXPR . EXPR`.
    Typeof(Vec<KeyExpr>),
}

/// What a map yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetData {
    Verdict,
    Typeof(Vec<KeyExpr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElemData {
    Verdict(Verdict),
    Values(Vec<Value>),
}

/// One element (a concatenation when the key has several parts), with its provenance.
#[derive(Clone, Debug)]
pub struct Element {
    pub key: ElementKey,
    pub data: Option<ElemData>,
    pub origin: Span,
}

/// An element's key components, inline up to three: a merged firewall set holds one element
/// per spec rule, and a heap block for each was a tenth of a plan's allocations.
pub type ElementKey = smallvec::SmallVec<[Value; 3]>;

/// A named set, or a map when `data` is set.
#[derive(Clone, Debug)]
pub struct Set {
    pub name: Ident,
    pub key: SetKey,
    pub data: Option<SetData>,
    /// `flags interval`: prefixes and ranges. Plain address sets also get `auto-merge`.
    pub interval: bool,
    /// Filled by rules at run time (`flags dynamic`), with this many elements at most.
    pub dynamic: Option<Dynamic>,
    pub elements: Vec<Element>,
    pub origin: Span,
}

/// A set rules add elements to: its bound and how long an element lives unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dynamic {
    pub size: u32,
    /// Seconds; `None`: elements stay until the kernel drops them (`ct count` removes a key
    /// when its last connection ends).
    pub timeout: Option<u32>,
    /// A spec's dynamic set (`dynamic=#true`): its run-time elements are carried into the
    /// transaction that replaces the table (`carry.rs`), and it carries [`KEPT_SET_COMMENT`] so
    /// a listing knows it. Per-source limit sets start empty instead.
    pub kept: bool,
}

/// The comment of a set whose run-time elements survive a re-apply: how the live table tells
/// them apart (nft's JSON does not list the `dynamic` flag).
pub const KEPT_SET_COMMENT: &str = "netcfg: run-time elements kept across applies";

/// A kept set's comment: [`KEPT_SET_COMMENT`], and a digest of its seed elements when it has
/// some. Listings compare such a set without its elements (traffic fills it), so the digest is
/// what makes a change of the seeds alone a change of the table.
pub fn kept_set_comment(seeds: &[IpAddr]) -> String {
    if seeds.is_empty() {
        return KEPT_SET_COMMENT.to_string();
    }
    let mut sorted: Vec<IpAddr> = seeds.to_vec();
    sorted.sort();
    // FNV-1a: stable across Rust versions and runs (goldens and live tables keep it).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in &sorted {
        for b in a.to_string().bytes().chain([b',']) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{KEPT_SET_COMMENT}; seeds {h:016x}")
}

/// Whether a listed set's comment marks it as kept.
pub fn is_kept_set_comment(comment: &str) -> bool {
    comment.starts_with(KEPT_SET_COMMENT)
}

/// A named counter object (`counter NAME { }`).
#[derive(Clone, Debug)]
pub struct Counter {
    pub name: Ident,
    pub origin: Span,
}

/// The netfilter hooks: one vocabulary with the packet model that evaluates these chains.
pub use netcfg_compiler::trace::Hook;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    /// `type route` (output hook): a packet whose mark changes here is routed again.
    Route,
}

/// Base-chain priorities (documented in spec.md, "How netcfg's table coexists").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// 0: after conntrack and DNAT, like iptables' filter table.
    Filter,
    /// -100: destination NAT (prerouting).
    DstNat,
    /// 100: source NAT (postrouting).
    SrcNat,
    /// -150: before DNAT and filtering, where marks for routing are set.
    Mangle,
    /// -300: before connection tracking (`notrack`).
    Raw,
    Num(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Clone, Debug)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: Priority,
    pub policy: Policy,
}

#[derive(Clone, Debug)]
pub struct Chain {
    pub name: Ident,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub exprs: Vec<Expr>,
    pub comment: Option<Comment>,
    pub origin: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
}

/// What a match compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    Iif,
    IifName,
    OifName,
    L4Proto,
    NfProto,
    Saddr(Family),
    Daddr(Family),
    Dport,
    Sport,
    CtState,
    CtStatus,
    /// `meta skuid`: the user owning the local socket (output path only).
    SkUid,
    /// `icmp type` / `icmpv6 type`.
    IcmpType(Family),
    /// `icmp code` / `icmpv6 code`.
    IcmpCode(Family),
    /// `meta mark`, compared with a [`Value::Mark`] (under its mask).
    Mark,
    /// `ct mark`.
    CtMark,
    /// `meta skgid`.
    SkGid,
    /// `meta pkttype`.
    PktType,
    /// `fib daddr type`: what kind of address the destination is here (compared with
    /// [`Value::Local`]).
    FibDaddrType,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Net(IpNet),
    Addr(IpAddr),
    Ports(PortSet),
    Proto(Proto),
    /// `{ tcp, udp }`.
    Protos(Vec<Proto>),
    Family(Family),
    If(IfName),
    States(Vec<ConnState>),
    /// `ct status dnat`.
    DnatStatus,
    Port(u16),
    Uid(u32),
    /// An inclusive integer range (`0-32767`), e.g. a slice of a `numgen` draw.
    Range(u32, u32),
    /// Small integers (ICMP types and codes): one, or an anonymous set `{ 0, 8 }`.
    Ints(Vec<u8>),
    /// A mark with its mask: `meta mark and MASK == VALUE`.
    Mark(Mark),
    PktType(PktType),
    /// An address of this namespace (`fib … type local`).
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    Match {
        sel: Selector,
        op: Op,
        value: Value,
    },
    /// `sel . sel ... @set` (negated: `!= @set`).
    Lookup {
        keys: Vec<Selector>,
        set: Ident,
        op: Op,
    },
    /// `dnat ip addr . port to KEY map @map`: address and port from a map lookup.
    DnatMap {
        family: Family,
        keys: Vec<KeyExpr>,
        map: Ident,
    },
    /// ICMPv6 neighbour discovery, which an IPv6 host must accept to be reachable at all.
    NeighbourDiscovery,
    Log {
        prefix: Comment,
        level: Option<LogLevel>,
    },
    /// `limit rate [over] N/UNIT [burst B packets]`: matches packets within the rate.
    Limit {
        rate: u32,
        unit: RateUnit,
        burst: Option<u32>,
    },
    /// `update @SET { KEY limit rate N/UNIT … }` / `add @SET { KEY ct count N }`: a per-key
    /// limit kept in a dynamic set; matches packets whose key is within the limit.
    PerKey {
        set: Ident,
        key: Selector,
        limit: KeyedLimit,
    },
    /// `update @SET { KEY }`: puts the packet's key into a dynamic set (refreshing its
    /// timeout when it is there already); a full set makes the rule stop here, unmatched.
    AddToSet {
        set: Ident,
        key: Selector,
    },
    /// `counter name "NAME"`: counts in a named counter object of the table.
    NamedCounter(Ident),
    /// `meta mark set …` / `ct mark set …`: the bits of the mask become the value, the others
    /// stay (`meta mark set meta mark and ~MASK or VALUE`).
    SetMark {
        ct: bool,
        mark: Mark,
    },
    /// `tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu` (or `set N`): the MSS of
    /// a TCP SYN clamped to what the route's MTU carries.
    ClampMss {
        size: Option<u16>,
    },
    /// `notrack`: connection tracking skips the packet.
    Notrack,
    Verdict(Verdict),
    Reject(RejectWith),
    Dnat {
        addr: IpAddr,
        port: u16,
    },
    /// `snat to A[-B][:P-Q]`: a pool of addresses (`last`), and source ports (after an
    /// `l4proto` match of a protocol that has ports).
    Snat {
        addr: IpAddr,
        last: Option<IpAddr>,
        ports: Option<(u16, u16)>,
    },
    Masquerade,
    Redirect {
        port: u16,
    },
    /// `snat|dnat ip prefix to NET`: the address's network part becomes `to`'s, its host part
    /// stays (`NETMAP`).
    PrefixNat {
        source: bool,
        to: IpNet,
    },
    /// `tproxy to :PORT`: the packet goes to a local socket on `port` (an established one of
    /// its connection first), its destination unchanged. After an `l4proto` match.
    Tproxy {
        port: u16,
    },
}

/// A limit kept per key in a dynamic set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyedLimit {
    Rate {
        rate: u32,
        unit: RateUnit,
        burst: Option<u32>,
    },
    /// `ct count N`: at most N connections tracked for the key.
    Connections(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// For TCP: the client sees "connection refused" at once.
    TcpReset,
    /// A firewall said no.
    AdminProhibited,
    /// Nothing listens there (a service without backends, for non-TCP protocols).
    PortUnreachable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_are_injective_and_never_truncated() {
        let raws = ["admins.v4", "admins_v4", "admins-v4", "a/2E", "a.", "1a", "x//1a", "x/", "", "é", "a b"];
        let idents: Vec<Ident> = raws.iter().map(|r| Ident::new(r)).collect();
        for (i, a) in idents.iter().enumerate() {
            assert!(a.as_str().starts_with(|c: char| c.is_ascii_alphabetic()), "{a}");
            assert!(a.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)), "{a}");
            for b in &idents[i + 1..] {
                assert_ne!(a, b, "two names, one identifier");
            }
        }
        assert_eq!(Ident::new("admins.v4").as_str(), "admins.v4");
        let long = format!("set-{}-v4", "a".repeat(64));
        assert_eq!(Ident::new(&long).as_str(), long);
    }

    #[test]
    fn a_kept_sets_comment_changes_with_its_seeds_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(kept_set_comment(&[]), KEPT_SET_COMMENT);
        let ab = kept_set_comment(&[ip("192.0.2.1"), ip("192.0.2.2")]);
        assert_eq!(ab, kept_set_comment(&[ip("192.0.2.2"), ip("192.0.2.1")]), "order does not matter");
        assert_ne!(ab, kept_set_comment(&[ip("192.0.2.1")]));
        assert!(is_kept_set_comment(&ab) && ab.len() <= 128, "{ab}");
        // Pinned: live tables and goldens hold it, so it must not change between builds.
        assert_eq!(kept_set_comment(&[ip("192.0.2.1")]), format!("{KEPT_SET_COMMENT}; seeds 50afde82dc023e5c"));
    }

    #[test]
    fn interface_names_with_wildcards_or_quotes_are_unrepresentable() {
        assert!(IfName::new("br0").is_some());
        for bad in ["br*", "a\"b", "a\\b", "", "sixteen-bytes-xx", "eth\u{435}"] {
            assert!(IfName::new(bad).is_none(), "{bad}");
        }
    }
}
