//! `bridge`: a software switch. Its ports join it through their `master`; its own MTU follows
//! its ports unless set (see the planner's default MTU), and `nf_call_iptables` is a link
//! setting applied after creation.
//!
//! On a VLAN-filtering bridge, the VLANs of each port and of the bridge itself (`vlans`) are
//! `AF_BRIDGE` messages: read with one `RTM_GETLINK` dump (`RTEXT_FILTER_BRVLAN_COMPRESSED`),
//! changed in place with `RTM_SETLINK` (add, or new flags) and `RTM_DELLINK` (remove).

use super::super::state::LinkKind;
use netcfg_lang::links::{PortVlan, Vlans};
use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoKind, LinkAttribute, LinkExtentMask, LinkInfo,
    LinkMessage,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

pub fn project() -> LinkKind {
    LinkKind::Bridge
}

pub fn encode() -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Bridge)]
}

/// The dump request for the VLANs of every bridge port and bridge of a namespace (ranges
/// compressed, so a trunk of 4094 VLANs is one attribute pair).
pub fn vlan_dump_request() -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::BrvlanCompressed]));
    RouteNetlinkMessage::GetLink(msg)
}

/// One answer of [`vlan_dump_request`]: the link's ifindex and the VLANs it lists. A port may
/// be answered twice (by its bridge, and by its own driver with no VLANs): the caller joins them.
pub fn decode_vlans(m: &LinkMessage) -> (u32, Vlans) {
    let mut out = Vlans::new();
    let mut begin: Option<u16> = None;
    for a in &m.attributes {
        let LinkAttribute::AfSpecBridge(spec) = a else { continue };
        for s in spec {
            let AfSpecBridge::VlanInfo(v) = s else { continue };
            let f = PortVlan {
                pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
            };
            if v.flags.contains(BridgeVlanInfoFlags::RangeBegin) {
                begin = Some(v.vid);
            } else if v.flags.contains(BridgeVlanInfoFlags::RangeEnd) {
                for vid in begin.take().unwrap_or(v.vid)..=v.vid {
                    out.insert(vid, f);
                }
            } else {
                out.insert(v.vid, f);
            }
        }
    }
    (m.header.index, out)
}

/// The requests that take the VLANs of link `index` from `live` to `want`: first one that adds
/// the missing VLANs and gives changed ones their new flags (the kernel moves the PVID and the
/// untagged flag in place), then one that removes the VLANs `want` lacks, so a VLAN that stays
/// never stops forwarding. `own`: the bridge's own VLANs (`BRIDGE_FLAGS_SELF`), not a port's.
pub fn vlan_changes(index: u32, own: bool, live: &Vlans, want: &Vlans) -> Vec<RouteNetlinkMessage> {
    let set: Vlans = want.iter().filter(|(vid, f)| live.get(vid) != Some(f)).map(|(v, f)| (*v, *f)).collect();
    let gone: Vlans =
        live.iter().filter(|(vid, _)| !want.contains_key(vid)).map(|(v, _)| (*v, PortVlan::default())).collect();
    let message = |vlans: &Vlans| {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        let mut spec = Vec::new();
        if own {
            spec.push(AfSpecBridge::Flags(BridgeFlag::LowerDev));
        }
        spec.extend(vlan_infos(vlans).into_iter().map(AfSpecBridge::VlanInfo));
        msg.attributes.push(LinkAttribute::AfSpecBridge(spec));
        msg
    };
    let mut out = Vec::new();
    if !set.is_empty() {
        out.push(RouteNetlinkMessage::SetLink(message(&set)));
    }
    if !gone.is_empty() {
        out.push(RouteNetlinkMessage::DelLink(message(&gone)));
    }
    out
}

/// VLANs as `IFLA_BRIDGE_VLAN_INFO` entries: consecutive ones with the same flags as a range
/// (the kernel takes no PVID in a range).
fn vlan_infos(vlans: &Vlans) -> Vec<BridgeVlanInfo> {
    let mut runs: Vec<(u16, u16, PortVlan)> = Vec::new();
    for (&vid, &f) in vlans {
        match runs.last_mut() {
            Some((_, hi, g)) if *hi + 1 == vid && *g == f && !f.pvid => *hi = vid,
            _ => runs.push((vid, vid, f)),
        }
    }
    let mut out = Vec::new();
    for (lo, hi, f) in runs {
        let mut flags = BridgeVlanInfoFlags::empty();
        flags.set(BridgeVlanInfoFlags::Pvid, f.pvid);
        flags.set(BridgeVlanInfoFlags::Untagged, f.untagged);
        if lo == hi {
            out.push(BridgeVlanInfo { flags, vid: lo });
        } else {
            out.push(BridgeVlanInfo { flags: flags | BridgeVlanInfoFlags::RangeBegin, vid: lo });
            out.push(BridgeVlanInfo { flags: flags | BridgeVlanInfoFlags::RangeEnd, vid: hi });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlans(items: &[(u16, bool, bool)]) -> Vlans {
        items.iter().map(|&(v, pvid, untagged)| (v, PortVlan { pvid, untagged })).collect()
    }

    fn infos(m: &RouteNetlinkMessage) -> Vec<(u16, BridgeVlanInfoFlags)> {
        let (RouteNetlinkMessage::SetLink(l) | RouteNetlinkMessage::DelLink(l)) = m else { panic!("{m:?}") };
        l.attributes
            .iter()
            .flat_map(|a| match a {
                LinkAttribute::AfSpecBridge(s) => s.clone(),
                _ => vec![],
            })
            .filter_map(|s| match s {
                AfSpecBridge::VlanInfo(i) => Some((i.vid, i.flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn changes_add_and_reflag_first_then_remove_and_round_trip_through_decode() {
        let live = vlans(&[(1, true, true), (10, false, false), (11, false, false)]);
        let mut want = vlans(&[(10, true, true)]);
        want.extend((20..=30).map(|v| (v, PortVlan::default())));
        let ms = vlan_changes(7, false, &live, &want);
        assert_eq!(ms.len(), 2);
        assert!(matches!(ms[0], RouteNetlinkMessage::SetLink(_)));
        assert!(matches!(ms[1], RouteNetlinkMessage::DelLink(_)));
        use BridgeVlanInfoFlags as F;
        assert_eq!(infos(&ms[0]), vec![(10, F::Pvid | F::Untagged), (20, F::RangeBegin), (30, F::RangeEnd)]);
        assert_eq!(infos(&ms[1]), vec![(1, F::empty()), (11, F::empty())]);
        let RouteNetlinkMessage::SetLink(l) = &ms[0] else { unreachable!() };
        let (index, decoded) = decode_vlans(l);
        assert_eq!(index, 7);
        assert_eq!(decoded, want);
        assert!(vlan_changes(7, true, &want, &want).is_empty());
    }

    #[test]
    fn the_bridge_own_vlans_carry_the_self_flag() {
        let ms = vlan_changes(3, true, &Vlans::new(), &vlans(&[(5, false, false)]));
        let RouteNetlinkMessage::SetLink(l) = &ms[0] else { panic!() };
        let LinkAttribute::AfSpecBridge(s) = &l.attributes[0] else { panic!() };
        assert_eq!(s[0], AfSpecBridge::Flags(BridgeFlag::LowerDev));
        assert_eq!(l.header.interface_family, AddressFamily::Bridge);
    }
}
