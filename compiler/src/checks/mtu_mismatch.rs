//! `mtu-mismatch`: links that carry the same frames but disagree on how large they may be.
//!
//! **What it does.** Compares effective MTUs (the declared `mtu`, or what the kernel derives:
//! a bridge without `mtu` takes the smallest MTU of its ports, a VXLAN with `dev` its
//! underlay's minus the overhead, see `Model::mtu`):
//! - (error) the two ends of a veth differ; the end that declares the differing `mtu` gets the
//!   primary span (the later one when both declare one);
//! - (warning) a bridge port differs from its bridge (a bond sets its ports' MTU itself, and a
//!   VRF's MTU does not apply to its ports);
//! - (warning) a VXLAN's MTU is larger than its underlay's MTU minus the encapsulation overhead
//!   (50 bytes over IPv4, 70 over IPv6, by the family of `local`/`remote`/`group`, IPv4 when
//!   none is given). The underlay is `dev`, or else the link the FIB sends `remote` out of;
//! - (error) a macvlan, VLAN or ipvlan whose MTU is larger than its parent's (the kernel
//!   refuses to create or set it: its frames leave through its parent).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `mtu-mismatch` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::ir::{LinkId, LinkKind};
use crate::model::{vxlan_overhead, LinkRef, Model, VXLAN_OVERHEAD_V6};
use crate::trace::Tracer;
use netcfg_lang::{Code, Diagnostic, Severity, Span, Spanned};

pub const CHECK: Check = Check {
    code: Code::new(
        "mtu-mismatch",
        &[Severity::Error, Severity::Warning],
        "veth ends, bridge ports, or a VXLAN and its underlay disagree on the MTU",
    ),
    run,
    after_errors: AfterErrors::Run,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (r, link) in model.links() {
        match &link.kind {
            // Each pair once, from the end with the lower id.
            LinkKind::Veth { peer } if link.id < *peer => {
                veth(model, r, LinkRef { node: r.node, link: *peer }, diags);
            }
            LinkKind::Vxlan { .. } => vxlan(model, r, diags),
            LinkKind::Macvlan { parent, .. } | LinkKind::Vlan { parent, .. } | LinkKind::Ipvlan { parent, .. } => {
                stacked(model, r, LinkRef { node: r.node, link: parent.value }, diags)
            }
            _ => {}
        }
        if let Some(master) = &link.master {
            // A bond sets its ports' MTU itself; a VRF's MTU does not limit its ports' frames.
            if matches!(model.link(LinkRef { node: r.node, link: master.value }).kind, LinkKind::Bridge { .. }) {
                bridge_port(model, r, master, diags);
            }
        }
    }
}

/// The MTU as the user sees it: where it is set, or that it is the default.
fn mtu_note(model: &Model, r: LinkRef) -> (Span, String) {
    let link = model.link(r);
    let (name, mtu) = (&link.name.value, model.mtu(r));
    match (&link.mtu, &link.kind) {
        (Some(m), _) => (m.span, format!("`{name}` has MTU {}", m.value)),
        (None, LinkKind::Bridge { .. }) => {
            (link.name.span, format!("`{name}` has no `mtu` and takes the smallest of its ports', {mtu}"))
        }
        (None, LinkKind::Vxlan { dev: Some(dev), .. }) => (
            link.name.span,
            format!("`{name}` has no `mtu` and takes {mtu} from its underlay `{}`", dev_name(model, r, dev)),
        ),
        (None, _) => (link.name.span, format!("`{name}` has the default MTU {mtu}")),
    }
}

fn dev_name<'m>(model: &'m Model, r: LinkRef, dev: &Spanned<LinkId>) -> &'m str {
    &model.link(LinkRef { node: r.node, link: dev.value }).name.value
}

fn veth(model: &Model, ra: LinkRef, rb: LinkRef, diags: &mut Vec<Diagnostic>) {
    let (a, b) = (model.link(ra), model.link(rb));
    let (ma, mb) = (model.mtu(ra), model.mtu(rb));
    if ma == mb {
        return;
    }
    // The end whose explicit `mtu` makes the difference is the one to point at.
    let ((primary, _), (other, r_other)) = match (&a.mtu, &b.mtu) {
        (Some(x), Some(y)) if y.span > x.span => ((b, rb), (a, ra)),
        (Some(_), _) => ((a, ra), (b, rb)),
        (None, Some(_)) => ((b, rb), (a, ra)),
        (None, None) => return,
    };
    let Some(mtu) = &primary.mtu else { return };
    let (small, large) = if ma < mb { (a, b) } else { (b, a) };
    let help = match &other.mtu {
        None => format!("set `mtu={}` on `{}` too", mtu.value, other.name.value),
        Some(_) => format!("use one MTU on both ends, e.g. `mtu={}` on each", ma.min(mb)),
    };
    let (note_span, note) = mtu_note(model, r_other);
    diags.push(
        Diagnostic::error(
            CHECK.code,
            mtu.span,
            format!(
                "veth `{}` has MTU {} but its peer `{}` has {}",
                primary.name.value,
                mtu.value,
                other.name.value,
                model.mtu(r_other)
            ),
        )
        .with_label(format!(
            "packets over {} bytes from `{}` are dropped by `{}`",
            ma.min(mb),
            large.name.value,
            small.name.value
        ))
        .with_secondary(note_span, note)
        .with_help(help),
    );
}

/// A macvlan, VLAN or ipvlan larger than its parent: the kernel refuses it.
fn stacked(model: &Model, r: LinkRef, rp: LinkRef, diags: &mut Vec<Diagnostic>) {
    let (link, parent) = (model.link(r), model.link(rp));
    let (m, mp) = (model.mtu(r), model.mtu(rp));
    if m <= mp {
        return;
    }
    let primary = link.mtu.as_ref().map(|m| m.span).unwrap_or(link.name.span);
    let (note_span, note) = mtu_note(model, rp);
    diags.push(
        Diagnostic::error(
            CHECK.code,
            primary,
            format!(
                "{} `{}` has MTU {m} but its parent `{}` has {mp}",
                link.kind.keyword(),
                link.name.value,
                parent.name.value
            ),
        )
        .with_label(format!("the kernel refuses a {} larger than its parent", link.kind.keyword()))
        .with_secondary(note_span, note)
        .with_help(format!("set `mtu={mp}` (or less) on `{}`, or raise the parent's MTU", link.name.value)),
    );
}

fn bridge_port(model: &Model, r: LinkRef, master: &Spanned<LinkId>, diags: &mut Vec<Diagnostic>) {
    let rb = LinkRef { node: r.node, link: master.value };
    let (port, bridge) = (model.link(r), model.link(rb));
    let (mp, mb) = (model.mtu(r), model.mtu(rb));
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
    let (note_span, note) = mtu_note(model, rb);
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

fn vxlan(model: &Model, r: LinkRef, diags: &mut Vec<Diagnostic>) {
    let link = model.link(r);
    let LinkKind::Vxlan { remote, dev, .. } = &link.kind else { return };
    let (underlay, via_route) = match (dev, remote) {
        (Some(d), _) => (d.value, false),
        (None, Some(remote)) => match Tracer::routing(model).egress(model.netns_of(r), remote.value) {
            Some(l) => (l, true),
            None => return,
        },
        (None, None) => return,
    };
    let ru = LinkRef { node: r.node, link: underlay };
    let under = model.link(ru);
    if matches!(under.kind, LinkKind::Loopback) {
        return;
    }
    let overhead = vxlan_overhead(&link.kind);
    let family = if overhead == VXLAN_OVERHEAD_V6 { "IPv6" } else { "IPv4" };
    let fits = model.mtu(ru).saturating_sub(overhead);
    let mtu = model.mtu(r);
    if mtu <= fits {
        return;
    }
    let primary = link.mtu.as_ref().map(|m| m.span).unwrap_or(link.name.span);
    let (note_span, mut note) = mtu_note(model, ru);
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
    }
}
"#,
        );
        // br-jumbo has no `mtu`: the kernel gives it its only port's 9000, so that port is fine.
        assert_eq!(d[0].message, "bridge port `veth-a` has MTU 1500 but bridge `cni0` has 1450");
        assert_eq!(d[0].secondary[0].message, "`cni0` has MTU 1450");
        assert_eq!(d[0].help.as_deref(), Some("set `mtu=1450` on `veth-a` and on its peer `eth0`"));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_bridge_without_mtu_takes_the_smallest_of_its_ports() {
        let d = check(
            r#"
node "n" {
    bridge "br0"
    ethernet "eth1" mtu=9000 master="br0"
    netns "vm" {
        veth "eth0" mtu=9000 { peer "vm-0" netns="@host" master="br0" mtu=9000; }
    }
    bridge "br1"
    ethernet "eth2" mtu=9000 master="br1"
//                      ^^^^ warning mtu-mismatch
    ethernet "eth3" mtu=1400 master="br1"
    ethernet "eth4" mtu=9000 { address "10.0.0.2/24"; }
    vxlan "vx0" vni=9 dev="eth4" master="br2"
    bridge "br2"
}
"#,
        );
        // br0 follows its 9000-byte ports and br2 its VXLAN (8950): equal, silent. br1 follows
        // eth3 down to 1400, so eth2 is the port that differs.
        assert_eq!(d[0].message, "bridge port `eth2` has MTU 9000 but bridge `br1` has 1400");
        assert_eq!(d[0].secondary[0].message, "`br1` has no `mtu` and takes the smallest of its ports', 1400");
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
    vxlan "vx6-big" vni=7 dev="eth2" local="fd00::10" mtu=1450
//                                                        ^^^^ warning mtu-mismatch
    vxlan "vx-routed" vni=5 remote="192.0.2.7" mtu=1480
//                                                 ^^^^ warning mtu-mismatch
    vxlan "vx-unknown" vni=6 mtu=9000
    vxlan "vx-rt-default" vni=8 remote="192.0.2.8"
//         ^^^^^^^^^^^^^ warning mtu-mismatch
}
"#,
        );
        assert_eq!(d[0].message, "vxlan `flannel.1` has MTU 1500, more than its underlay `eth0` carries (1450)");
        assert_eq!(
            d[0].help.as_deref(),
            Some("set `mtu=1450` on `flannel.1`, or raise the MTU of `eth0` to 1550 or more")
        );
        assert_eq!(d[1].message, "vxlan `vx6-big` has MTU 1450, more than its underlay `eth2` carries (1430)");
        assert_eq!(
            d[2].secondary[0].message,
            "`eth0` has the default MTU 1500; the FIB sends the VXLAN's `remote` out of it"
        );
    }
}
