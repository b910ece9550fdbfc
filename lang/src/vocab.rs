//! The shared vocabulary: enums the spec's words map to, which the AST, the IR and the backends
//! all speak (a protocol, an address family, a rule's direction, a route type...). They live
//! here, not in the AST, so that the compiler's IR and the backends name them without reaching
//! into the parser's tree; `ast` re-exports them for the parser.

use std::net::IpAddr;

/// A namespace as a reference names it: the node's own (`@host`) or a declared `netns`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NetnsName {
    Host,
    Named(String),
}

impl NetnsName {
    /// How the node's own namespace is written in a spec and shown in plans and findings.
    pub const HOST: &'static str = "@host";

    /// `@host` or a namespace name (not checked: see `value::parse_name`).
    pub fn parse(text: &str) -> NetnsName {
        if text == NetnsName::HOST {
            NetnsName::Host
        } else {
            NetnsName::Named(text.to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            NetnsName::Host => NetnsName::HOST,
            NetnsName::Named(n) => n,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RpFilter {
    Off,
    Strict,
    Loose,
}

impl RpFilter {
    /// The value of the `rp_filter` sysctl.
    pub fn sysctl_value(self) -> u8 {
        match self {
            RpFilter::Off => 0,
            RpFilter::Strict => 1,
            RpFilter::Loose => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    /// Ends the lookup in this table: the next policy rule is tried.
    Throw,
    /// The destination is delivered locally (AnyIP); in table `local` by default.
    Local,
}

impl RouteType {
    pub fn keyword(self) -> &'static str {
        match self {
            RouteType::Unicast => "unicast",
            RouteType::Blackhole => "blackhole",
            RouteType::Unreachable => "unreachable",
            RouteType::Prohibit => "prohibit",
            RouteType::Throw => "throw",
            RouteType::Local => "local",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteScope {
    Global,
    Link,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// `IPv4` / `IPv6`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// To this namespace (nft `input`).
    In,
    /// From this namespace (nft `output`).
    Out,
    /// Routed through this namespace (nft `forward`).
    Forward,
}

impl Direction {
    pub fn keyword(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Forward => "forward",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

impl Verdict {
    pub fn keyword(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// IPv4 multicast group management (IGMP queries and reports).
    Igmp,
}

impl Proto {
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::Igmp => "igmp",
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp | Proto::Sctp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnState {
    New,
    Established,
    Related,
    Invalid,
}

/// Which address of a packet a rule puts into a dynamic set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrKey {
    #[default]
    Source,
    Destination,
}

/// Where a packet's link-layer destination points (`meta pkttype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PktType {
    Unicast,
    Broadcast,
    Multicast,
}

impl PktType {
    pub fn keyword(self) -> &'static str {
        match self {
            PktType::Unicast => "unicast",
            PktType::Broadcast => "broadcast",
            PktType::Multicast => "multicast",
        }
    }
}

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    pub fn keyword(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }

    pub fn seconds(self) -> u32 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86400,
        }
    }
}

/// Syslog levels nft's `log level` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Emerg,
    Alert,
    Crit,
    Err,
    Warn,
    Notice,
    Info,
    Debug,
}

impl LogLevel {
    pub const ALL: [(&'static str, LogLevel); 8] = [
        ("emerg", LogLevel::Emerg),
        ("alert", LogLevel::Alert),
        ("crit", LogLevel::Crit),
        ("err", LogLevel::Err),
        ("warn", LogLevel::Warn),
        ("notice", LogLevel::Notice),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ];

    pub fn keyword(self) -> &'static str {
        LogLevel::ALL.iter().find(|(_, l)| *l == self).map(|(k, _)| *k).unwrap_or("warn")
    }
}
