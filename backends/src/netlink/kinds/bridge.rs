//! `bridge`: a software switch. Its ports join it through their `master`; its own MTU follows
//! its ports unless set (see the planner's default MTU), and `nf_call_iptables` is a link
//! setting applied after creation.

use super::super::state::LinkKind;
use rtnetlink::packet_route::link::{InfoKind, LinkInfo};

pub fn project() -> LinkKind {
    LinkKind::Bridge
}

pub fn encode() -> Vec<LinkInfo> {
    vec![LinkInfo::Kind(InfoKind::Bridge)]
}
