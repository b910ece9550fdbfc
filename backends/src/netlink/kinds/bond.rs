//! `bond`: links aggregated into one. Ports join with `master` (the planner takes a port down
//! to enslave it, as the bonding driver requires, and brings it back up). The state holds every
//! option with the kernel's default filled in, so a bond read back compares equal; a change of
//! options recreates the bond (the mode cannot change while it has ports).

use super::super::live::RawLink;
use super::super::state::LinkKind;
use super::Lookup;
use netcfg_compiler::ir::{self, Node};
use netcfg_lang::links::{BondMode, LacpRate, XmitHashPolicy};
use rtnetlink::packet_route::link::{
    BondLacpRate, BondMode as NlMode, BondXmitHashPolicy, InfoBond, InfoData, InfoKind, LinkInfo,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bond {
    pub mode: BondMode,
    pub miimon: u32,
    pub lacp_rate: LacpRate,
    pub xmit_hash_policy: XmitHashPolicy,
    /// The preferred port, in the bond's namespace.
    pub primary: Option<String>,
    pub min_links: u32,
}

pub fn project(node: &Node, b: &ir::Bond) -> LinkKind {
    LinkKind::Bond(Bond {
        mode: b.mode,
        miimon: b.miimon.unwrap_or(0),
        lacp_rate: b.lacp_rate.unwrap_or(LacpRate::Slow),
        xmit_hash_policy: b.xmit_hash_policy.unwrap_or(XmitHashPolicy::Layer2),
        primary: b.primary.as_ref().map(|p| node.link(p.value).name.value.clone()),
        min_links: b.min_links.unwrap_or(0),
    })
}

/// The link info at creation, without `primary` (an index: see [`set_primary`]).
pub fn encode(b: &Bond) -> Vec<LinkInfo> {
    let mut data = vec![
        InfoBond::Mode(match b.mode {
            BondMode::BalanceRr => NlMode::BalanceRr,
            BondMode::ActiveBackup => NlMode::ActiveBackup,
            BondMode::BalanceXor => NlMode::BalanceXor,
            BondMode::Broadcast => NlMode::Broadcast,
            BondMode::Lacp => NlMode::Ieee8023Ad,
            BondMode::BalanceTlb => NlMode::BalanceTlb,
            BondMode::BalanceAlb => NlMode::BalanceAlb,
        }),
        InfoBond::MiiMon(b.miimon),
        InfoBond::MinLinks(b.min_links),
    ];
    if matches!(b.mode, BondMode::BalanceXor | BondMode::Lacp | BondMode::BalanceTlb | BondMode::BalanceAlb) {
        data.push(InfoBond::XmitHashPolicy(match b.xmit_hash_policy {
            XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
            XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
            XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
            XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
            XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
            XmitHashPolicy::VlanSrcMac => BondXmitHashPolicy::VlanSrcMac,
        }));
    }
    if b.mode == BondMode::Lacp {
        data.push(InfoBond::AdLacpRate(match b.lacp_rate {
            LacpRate::Slow => BondLacpRate::Slow,
            LacpRate::Fast => BondLacpRate::Fast,
        }));
    }
    vec![LinkInfo::Kind(InfoKind::Bond), LinkInfo::Data(InfoData::Bond(data))]
}

/// Adds the primary port (its index) to a bond's link info.
pub fn set_primary(info: &mut [LinkInfo], port: u32) {
    for i in info {
        if let LinkInfo::Data(InfoData::Bond(data)) = i {
            data.push(InfoBond::Primary(port));
        }
    }
}

pub fn decode(ns: &str, l: &RawLink, lookup: &dyn Lookup) -> LinkKind {
    let mut b = Bond {
        mode: BondMode::BalanceRr,
        miimon: 0,
        lacp_rate: LacpRate::Slow,
        xmit_hash_policy: XmitHashPolicy::Layer2,
        primary: None,
        min_links: 0,
    };
    if let Some(InfoData::Bond(attrs)) = &l.data {
        for a in attrs {
            match a {
                InfoBond::Mode(m) => {
                    b.mode = match m {
                        NlMode::ActiveBackup => BondMode::ActiveBackup,
                        NlMode::BalanceXor => BondMode::BalanceXor,
                        NlMode::Broadcast => BondMode::Broadcast,
                        NlMode::Ieee8023Ad => BondMode::Lacp,
                        NlMode::BalanceTlb => BondMode::BalanceTlb,
                        NlMode::BalanceAlb => BondMode::BalanceAlb,
                        _ => BondMode::BalanceRr,
                    }
                }
                InfoBond::MiiMon(v) => b.miimon = *v,
                InfoBond::MinLinks(v) => b.min_links = *v,
                InfoBond::AdLacpRate(BondLacpRate::Fast) => b.lacp_rate = LacpRate::Fast,
                InfoBond::XmitHashPolicy(p) => {
                    b.xmit_hash_policy = match p {
                        BondXmitHashPolicy::Layer23 => XmitHashPolicy::Layer23,
                        BondXmitHashPolicy::Layer34 => XmitHashPolicy::Layer34,
                        BondXmitHashPolicy::Encap23 => XmitHashPolicy::Encap23,
                        BondXmitHashPolicy::Encap34 => XmitHashPolicy::Encap34,
                        BondXmitHashPolicy::VlanSrcMac => XmitHashPolicy::VlanSrcMac,
                        _ => XmitHashPolicy::Layer2,
                    }
                }
                InfoBond::Primary(i) => b.primary = lookup.name(ns, *i).map(|r| r.name),
                _ => {}
            }
        }
    }
    // Options the mode does not use read back as their defaults: compare as the spec says them.
    if !matches!(b.mode, BondMode::BalanceXor | BondMode::Lacp | BondMode::BalanceTlb | BondMode::BalanceAlb) {
        b.xmit_hash_policy = XmitHashPolicy::Layer2;
    }
    if b.mode != BondMode::Lacp {
        b.lacp_rate = LacpRate::Slow;
    }
    LinkKind::Bond(b)
}
