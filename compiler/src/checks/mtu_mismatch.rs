//! `mtu-mismatch`: links that carry the same frames but disagree on how large they may be.
//!
//! **What it does.** Compares effective MTUs (the declared `mtu`, or the kind's default):
//! - (error) the two ends of a veth differ; the end that declares the differing `mtu` gets the
//!   primary span (the later one when both declare one);
//! - (warning) a bridge port differs from its bridge;
//! - (warning) a VXLAN's MTU is larger than its underlay's MTU minus the encapsulation overhead
//!   (50 bytes over IPv4, 70 over IPv6, by the family of `local`/`remote`/`group`, IPv4 when
//!   none is given). The underlay is `dev`, or else the link the FIB sends `remote` out of;
//! - (error) a macvlan whose MTU is larger than its parent's (the kernel refuses to create or
//!   set it: a macvlan's frames leave through its parent).
//!
//! **Why is this bad.** A veth drops every frame larger than the receiving end's MTU, so
//! large packets (TLS handshakes, bulk transfers) vanish while pings work. A bridge takes the
//! smallest MTU of its ports unless told otherwise, and frames larger than a port's MTU are
//! dropped on that port. An encapsulated frame larger than the underlay MTU is dropped or
//! fragmented (and VXLAN sets DF on many setups), the classic "overlay works until the
//! payload is big" failure.
//!
//! **Example.**
//! ```kdl
//! netns "pod" {
//!     veth "eth0" mtu=1450 { peer "veth-pod" netns="@host"; }   // veth-pod stays at 1500
//! }
//! ```

use super::Check;
use crate::ir::{Link, LinkId, LinkKind};
use crate::model::{LinkRef, Model};
use netcfg_lang::{Code, Diagnostic, Severity, Span, Spanned};
use std::net::IpAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "mtu-mismatch",
        &[Severity::Error, Severity::Warning],
        "veth ends, bridge ports, or a VXLAN and its underlay disagree on the MTU",
    ),
    run,
};

/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers.
const VXLAN_OVERHEAD_V4: u32 = 50;
/// The same with a 40-byte IPv6 header.
const VXLAN_OVERHEAD_V6: u32 = 70;

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (r, link) in model.links() {
        match &link.kind {
            // Each pair once, from the end with the lower id.
            LinkKind::Veth { peer } if link.id < *peer => {
                veth(link, model.link(LinkRef { node: r.node, link: *peer }), diags);
            }
            LinkKind::Vxlan { .. } => vxlan(model, r, link, diags),
            LinkKind::Macvlan { parent, .. } => {
                macvlan(link, model.link(LinkRef { node: r.node, link: parent.value }), diags)
            }
            _ => {}
        }
        if let Some(master) = &link.master {
            bridge_port(model, r, link, master, diags);
        }
    }
}

/// The MTU as the user sees it: where it is set, or that it is the default.
fn mtu_note(link: &Link) -> (Span, String) {
    match &link.mtu {
        Some(m) => (m.span, format!("`{}` has MTU {}", link.name.value, m.value)),
        None => (link.name.span, format!("`{}` has the default MTU {}", link.name.value, link.effective_mtu())),
    }
}

fn veth(a: &Link, b: &Link, diags: &mut Vec<Diagnostic>) {
    let (ma, mb) = (a.effective_mtu(), b.effective_mtu());
    if ma == mb {
        return;
    }
    // The end whose explicit `mtu` makes the difference is the one to point at.
    let (primary, other) = match (&a.mtu, &b.mtu) {
        (Some(x), Some(y)) if y.span > x.span => (b, a),
        (Some(_), _) => (a, b),
        (None, Some(_)) => (b, a),
        (None, None) => return,
    };
    let Some(mtu) = &primary.mtu else { return };
    let (small, large) = if ma < mb { (a, b) } else { (b, a) };
    let help = match &other.mtu {
        None => format!("set `mtu={}` on `{}` too", mtu.value, other.name.value),
        Some(_) => format!("use one MTU on both ends, e.g. `mtu={}` on each", ma.min(mb)),
    };
    let (note_span, note) = mtu_note(other);
    diags.push(
        Diagnostic::error(
            CHECK.code,
            mtu.span,
            format!(
                "veth `{}` has MTU {} but its peer `{}` has {}",
                primary.name.value,
                mtu.value,
                other.name.value,
                other.effective_mtu()
            ),
        )
        .with_label(format!(
            "packets over {} bytes from `{}` are dropped by `{}`",
            small.effective_mtu(),
            large.name.value,
            small.name.value
        ))
        .with_secondary(note_span, note)
        .with_help(help),
    );
}

fn macvlan(link: &Link, parent: &Link, diags: &mut Vec<Diagnostic>) {
    let (m, mp) = (link.effective_mtu(), parent.effective_mtu());
    if m <= mp {
        return;
    }
    let primary = link.mtu.as_ref().map(|m| m.span).unwrap_or(link.name.span);
    let (note_span, note) = mtu_note(parent);
    diags.push(
        Diagnostic::error(
            CHECK.code,
            primary,
            format!("macvlan `{}` has MTU {m} but its parent `{}` has {mp}", link.name.value, parent.name.value),
        )
        .with_label("the kernel refuses a macvlan larger than its parent")
        .with_secondary(note_span, note)
        .with_help(format!("set `mtu={mp}` (or less) on `{}`, or raise the parent's MTU", link.name.value)),
    );
}

fn bridge_port(model: &Model, r: LinkRef, port: &Link, master: &Spanned<LinkId>, diags: &mut Vec<Diagnostic>) {
    let bridge = model.link(LinkRef { node: r.node, link: master.value });
    let (mp, mb) = (port.effective_mtu(), bridge.effective_mtu());
    if mp == mb {
        return;
    }
    // Point at the port's own `mtu` when it has one, else at where it joins the bridge.
    let primary = port.mtu.as_ref().map(|m| m.span).unwrap_or(master.span);
    let peer = match port.kind {
        LinkKind::Veth { peer } => Some(model.link(LinkRef { node: r.node, link: peer })),
        _ => None,
    };
    let help = match (&bridge.mtu, peer) {
        (Some(b), Some(peer)) => {
            format!("set `mtu={}` on `{}` and on its peer `{}`", b.value, port.name.value, peer.name.value)
        }
        (Some(b), None) => format!("set `mtu={}` on `{}`", b.value, port.name.value),
        (None, _) => format!(
            "use one MTU on bridge `{}` and all its ports, e.g. `mtu={}` on `{}`",
            bridge.name.value,
            mp.min(mb),
            bridge.name.value
        ),
    };
    let (note_span, note) = mtu_note(bridge);
    diags.push(
        Diagnostic::warning(
            CHECK.code,
            primary,
            format!("bridge port `{}` has MTU {mp} but bridge `{}` has {mb}", port.name.value, bridge.name.value),
        )
        .with_label(format!(
            "frames larger than {} bytes are dropped between `{}` and the bridge",
            mp.min(mb),
            port.name.value
        ))
        .with_secondary(note_span, note)
        .with_help(help),
    );
}

fn vxlan(model: &Model, r: LinkRef, link: &Link, diags: &mut Vec<Diagnostic>) {
    let LinkKind::Vxlan { local, remote, group, dev, .. } = &link.kind else { return };
    let (underlay, via_route) = match (dev, remote) {
        (Some(d), _) => (d.value, false),
        (None, Some(remote)) => match model.fib(model.netns_of(r)).egress(remote.value) {
            Some(l) => (l, true),
            None => return,
        },
        (None, None) => return,
    };
    let under = model.link(LinkRef { node: r.node, link: underlay });
    if matches!(under.kind, LinkKind::Loopback) {
        return;
    }
    let v6 = [local, remote, group].into_iter().flatten().next().is_some_and(|a| matches!(a.value, IpAddr::V6(_)));
    let (overhead, family) = if v6 { (VXLAN_OVERHEAD_V6, "IPv6") } else { (VXLAN_OVERHEAD_V4, "IPv4") };
    let fits = under.effective_mtu().saturating_sub(overhead);
    let mtu = link.effective_mtu();
    if mtu <= fits {
        return;
    }
    let primary = link.mtu.as_ref().map(|m| m.span).unwrap_or(link.name.span);
    let (note_span, mut note) = mtu_note(under);
    if via_route {
        note = format!("{note}; the FIB sends the VXLAN's `remote` out of it");
    }
    diags.push(
        Diagnostic::warning(
            CHECK.code,
            primary,
            format!(
                "vxlan `{}` has MTU {mtu}, more than its underlay `{}` carries ({fits})",
                link.name.value, under.name.value
            ),
        )
        .with_label(format!(
            "VXLAN over {family} adds {overhead} bytes; larger frames are dropped or fragmented on `{}`",
            under.name.value
        ))
        .with_secondary(note_span, note)
        .with_help(format!(
            "set `mtu={fits}` on `{}`, or raise the MTU of `{}` to {} or more",
            link.name.value,
            under.name.value,
            mtu + overhead
        )),
    );
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn veth_ends_with_different_mtus() {
        let d = check(
            r#"
node "n" {
    netns "pod-a" {
        veth "eth0" mtu=1450 { peer "veth-a" netns="@host"; }
//                      ^^^^ error mtu-mismatch
    }
    netns "pod-b" {
        veth "eth0" { peer "veth-b" netns="@host" mtu=9000; }
//                                                    ^^^^ error mtu-mismatch
    }
    netns "pod-c" {
        veth "eth0" mtu=9000 { peer "veth-c" netns="@host" mtu=1500; }
//                                                             ^^^^ error mtu-mismatch
    }
    netns "pod-d" {
        veth "eth0" mtu=9000 { peer "veth-d" netns="@host" mtu=9000; }
    }
    netns "pod-e" {
        veth "eth0" mtu=1500 { peer "veth-e" netns="@host"; }
    }
}
"#,
        );
        assert_eq!(d[0].message, "veth `eth0` has MTU 1450 but its peer `veth-a` has 1500");
        assert_eq!(d[0].primary.message, "packets over 1450 bytes from `veth-a` are dropped by `eth0`");
        assert_eq!(d[0].secondary[0].message, "`veth-a` has the default MTU 1500");
        assert_eq!(d[0].help.as_deref(), Some("set `mtu=1450` on `veth-a` too"));
        assert_eq!(d[1].help.as_deref(), Some("set `mtu=9000` on `eth0` too"));
        assert_eq!(d[2].secondary[0].message, "`eth0` has MTU 9000");
        assert_eq!(d[2].help.as_deref(), Some("use one MTU on both ends, e.g. `mtu=1500` on each"));
    }

    #[test]
    fn bridge_ports_that_differ_from_their_bridge() {
        let d = check(
            r#"
node "n" {
    bridge "cni0" mtu=1450
    bridge "br-jumbo"
    netns "pod-a" {
        veth "eth0" { peer "veth-a" netns="@host" master="cni0"; }
//                                                        ^^^^ warning mtu-mismatch
    }
    netns "pod-b" {
        veth "eth0" mtu=1450 { peer "veth-b" netns="@host" master="cni0" mtu=1450; }
    }
    netns "pod-c" {
        veth "eth0" mtu=9000 { peer "veth-c" netns="@host" master="br-jumbo" mtu=9000; }
//                                                                               ^^^^ warning mtu-mismatch
    }
}
"#,
        );
        assert_eq!(d[0].message, "bridge port `veth-a` has MTU 1500 but bridge `cni0` has 1450");
        assert_eq!(d[0].secondary[0].message, "`cni0` has MTU 1450");
        assert_eq!(d[0].help.as_deref(), Some("set `mtu=1450` on `veth-a` and on its peer `eth0`"));
        assert_eq!(
            d[1].help.as_deref(),
            Some("use one MTU on bridge `br-jumbo` and all its ports, e.g. `mtu=1500` on `br-jumbo`")
        );
    }

    #[test]
    fn macvlan_larger_than_its_parent() {
        check(
            r#"
node "n" {
    ethernet "eth0" mtu=1500 { address "10.0.0.2/24"; }
    macvlan "mv0" parent="eth0" mtu=9000 { address "10.0.0.3/24"; }
//                                  ^^^^ error mtu-mismatch
    macvlan "mv1" parent="eth0" mtu=1400 { address "10.0.0.4/24"; }
}
"#,
        );
    }

    #[test]
    fn vxlan_larger_than_its_underlay_allows() {
        let d = check(
            r#"
node "n" {
    ethernet "eth0" { address "10.0.0.10/24"; }
    ethernet "eth1" mtu=9001 { address "10.0.1.10/24"; }
    ethernet "eth2" { address "fd00::10/64"; }
    route "default" via="10.0.0.1" dev="eth0"
    vxlan "flannel.1" vni=1 dev="eth0" mtu=1500
//                                         ^^^^ warning mtu-mismatch
    vxlan "vx-default" vni=2 dev="eth0"
    vxlan "vx-jumbo" vni=3 dev="eth1" mtu=8951
    vxlan "vx6" vni=4 dev="eth2" local="fd00::10"
//         ^^^ warning mtu-mismatch
    vxlan "vx-routed" vni=5 remote="192.0.2.7" mtu=1480
//                                                 ^^^^ warning mtu-mismatch
    vxlan "vx-unknown" vni=6 mtu=9000
}
"#,
        );
        assert_eq!(d[0].message, "vxlan `flannel.1` has MTU 1500, more than its underlay `eth0` carries (1450)");
        assert_eq!(
            d[0].help.as_deref(),
            Some("set `mtu=1450` on `flannel.1`, or raise the MTU of `eth0` to 1550 or more")
        );
        assert_eq!(d[1].message, "vxlan `vx6` has MTU 1450, more than its underlay `eth2` carries (1430)");
        assert_eq!(
            d[2].secondary[0].message,
            "`eth0` has the default MTU 1500; the FIB sends the VXLAN's `remote` out of it"
        );
    }
}
