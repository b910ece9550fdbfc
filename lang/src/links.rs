//! The vocabulary of link kinds, shared by the AST, the IR and the backend's state: the
//! keywords that declare links, and each kind's enumerated options with their spellings.
//! One place, so that the parser, completion, the fuzzer and the reporters agree.

use serde::{Deserialize, Serialize};

/// Every keyword that declares a link in a node, netns or template body (`peer` is declared
/// inside a `veth` only).
pub const LINK_KEYWORDS: &[&str] = &[
    "ethernet",
    "bridge",
    "veth",
    "vxlan",
    "macvlan",
    "dummy",
    "vlan",
    "bond",
    "vrf",
    "ipvlan",
    "gre",
    "ipip",
    "sit",
    "ip6tnl",
    "wireguard",
];

/// An enumerated option: its spellings in the language, in the order help lists them.
pub trait Keyword: Copy + Sized + 'static {
    const WHAT: &'static str;
    const KEYWORDS: &'static [(&'static str, Self)];

    fn keyword(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::KEYWORDS.iter().find(|(_, v)| *v == self).map(|(k, _)| *k).expect("every value has a keyword")
    }
}

macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $variant:ident = $kw:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl Keyword for $name {
            const WHAT: &'static str = $what;
            const KEYWORDS: &'static [(&'static str, Self)] = &[$(($kw, $name::$variant)),+];
        }

        impl $name {
            /// The spelling in the language.
            pub fn keyword(self) -> &'static str {
                <Self as Keyword>::keyword(self)
            }
        }
    };
}

keyword_enum!(
    /// How a bond spreads traffic over its ports (`mode`).
    BondMode, "bond mode", {
        BalanceRr = "balance-rr",
        ActiveBackup = "active-backup",
        BalanceXor = "balance-xor",
        Broadcast = "broadcast",
        Lacp = "802.3ad",
        BalanceTlb = "balance-tlb",
        BalanceAlb = "balance-alb",
    }
);

keyword_enum!(
    /// How often an 802.3ad partner sends LACPDUs (`lacp-rate`).
    LacpRate, "LACP rate", { Slow = "slow", Fast = "fast" }
);

keyword_enum!(
    /// What a bond hashes to pick a port (`xmit-hash-policy`).
    XmitHashPolicy, "transmit hash policy", {
        Layer2 = "layer2",
        Layer23 = "layer2+3",
        Layer34 = "layer3+4",
        Encap23 = "encap2+3",
        Encap34 = "encap3+4",
        VlanSrcMac = "vlan+srcmac",
    }
);

keyword_enum!(
    /// The tag a VLAN link adds (`protocol`): 802.1Q, or 802.1ad for the outer tag of QinQ.
    VlanProtocol, "VLAN protocol", { Dot1q = "802.1q", Dot1ad = "802.1ad" }
);

keyword_enum!(
    /// Where an ipvlan's traffic is switched (`mode`).
    IpvlanMode, "ipvlan mode", { L2 = "l2", L3 = "l3", L3s = "l3s" }
);

keyword_enum!(
    /// Point-to-point IP tunnels: the keyword is the kind.
    TunnelKind, "tunnel kind", {
        /// GRE over IPv4 (`ip_gre`); carries IPv4 and IPv6.
        Gre = "gre",
        /// IPv4 in IPv4 (`ipip`).
        Ipip = "ipip",
        /// IPv6 in IPv4 (`sit`).
        Sit = "sit",
        /// IPv4 or IPv6 in IPv6 (`ip6_tunnel`).
        Ip6tnl = "ip6tnl",
    }
);

impl TunnelKind {
    /// The outer (underlay) family: IPv6 for `ip6tnl`, IPv4 for the others.
    pub fn outer_is_v6(self) -> bool {
        self == TunnelKind::Ip6tnl
    }
}

/// A VLAN's flags on one bridge port (or on the bridge itself): whether untagged frames that
/// enter the port belong to it (`pvid`), and whether it leaves the port untagged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortVlan {
    pub pvid: bool,
    pub untagged: bool,
}

/// The VLANs a port of a VLAN-filtering bridge carries, by VLAN id (1..=4094).
pub type Vlans = std::collections::BTreeMap<u16, PortVlan>;

/// `vlans` as the language writes them (`10 pvid untagged, 20-30`): runs of consecutive VLANs
/// with the same flags as one range.
pub fn describe_vlans(v: &Vlans) -> String {
    let mut runs: Vec<(u16, u16, PortVlan)> = Vec::new();
    for (&vid, &f) in v {
        match runs.last_mut() {
            Some((_, hi, g)) if *hi + 1 == vid && *g == f && !f.pvid => *hi = vid,
            _ => runs.push((vid, vid, f)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|(lo, hi, f)| {
            let mut s = if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
            if f.pvid {
                s.push_str(" pvid");
            }
            if f.untagged {
                s.push_str(" untagged");
            }
            s
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_one_spelling() {
        fn check<T: Keyword + PartialEq + std::fmt::Debug>() {
            for (kw, v) in T::KEYWORDS {
                assert_eq!(v.keyword(), *kw);
                assert_eq!(T::KEYWORDS.iter().filter(|(k, _)| k == kw).count(), 1, "{kw}");
            }
        }
        check::<BondMode>();
        check::<LacpRate>();
        check::<XmitHashPolicy>();
        check::<VlanProtocol>();
        check::<IpvlanMode>();
        check::<TunnelKind>();
        assert_eq!(TunnelKind::Sit.keyword(), "sit");
    }

    #[test]
    fn vlans_are_described_as_runs() {
        let mut v = Vlans::new();
        v.insert(10, PortVlan { pvid: true, untagged: true });
        for vid in 11..=13 {
            v.insert(vid, PortVlan::default());
        }
        v.insert(20, PortVlan { pvid: false, untagged: true });
        assert_eq!(describe_vlans(&v), "10 pvid untagged, 11-13, 20 untagged");
        assert_eq!(describe_vlans(&Vlans::new()), "none");
    }
}
