//! Kernel modules as part of the plan, against the real kernel. Where the spec's features are
//! modules nothing loaded (the full-kernel lane boots Debian's stock kernel), apply loads them
//! before the ops that need them and lists them in the modules-load.d file, a revert restores
//! the file but leaves the modules, and verify reports a module unloaded behind netcfg's back.
//! On a kernel without module support the plan has nothing to load or list, and says so. A file
//! of its own: unloading a module must not race with other tests of the same binary.

mod common;

use common::*;
use netcfg_backends::kernel::{Availability, Feature, KernelModules};
use netcfg_backends::netlink::{self, Action, DriftKind, Options, Session};

const SPEC: &str = r#"
node "n1" {
    bridge-netfilter #true
    bridge "br0" {
        address "10.244.9.1/24"
    }
}
"#;

fn desired() -> netlink::Desired {
    let fleet = compile(SPEC);
    let mut diags = Vec::new();
    let d = netlink::desired(&fleet.nodes[0], &mut diags);
    assert!(diags.is_empty(), "{diags:#?}");
    d
}

#[test]
fn the_modules_a_spec_needs_are_loaded_first_kept_at_boot_and_verified() {
    if !require_root("the_modules_a_spec_needs_are_loaded_first_kept_at_boot_and_verified") {
        return;
    }
    let node = NodeRoot::new("kmod");
    let dir = std::env::temp_dir().join(format!("netcfg-kmod-{}", std::process::id()));
    let file = dir.join("modules-load.d/netcfg.conf");
    let mut map = node.map.clone();
    map.modules_load = Some(file.clone());
    let d = desired();
    assert_eq!(d.features.keys().copied().collect::<Vec<_>>(), [Feature::Bridge, Feature::BrNetfilter]);
    let mut s = Session::new(map).expect("runtime");

    let br_nf = KernelModules::read().availability(Feature::BrNetfilter);
    let (p, snapshot) = s.plan_recorded(&d, Options::default()).expect("plan");
    let text = p.to_text();
    let load = p.ops.iter().position(|o| o.describe() == "kernel module br_netfilter");
    let sysctl = p
        .ops
        .iter()
        .position(|o| matches!(&o.action, Action::WriteSysctl { path, .. } if path.starts_with("net.bridge.")));
    match br_nf {
        Availability::Loadable => {
            assert!(load.expect("a load op") < sysctl.expect("a sysctl op"), "{text}");
            assert!(text.contains("+ @host: sysctl net.bridge.bridge-nf-call-iptables = 1"), "{text}");
        }
        Availability::BuiltIn | Availability::Loaded => assert_eq!(load, None, "{text}"),
        Availability::Absent => panic!("the plan should have refused: {text}"),
    }
    if let Err(e) = s.apply(&d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{text}");
    }
    assert!(s.plan(&d, Options::default()).expect("plan").is_empty(), "converged");
    assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);

    // The file lists exactly the needed features that are modules; none, no file.
    let kernel = KernelModules::read();
    let modules: Vec<&str> =
        d.features.keys().filter(|f| kernel.availability(**f).is_module()).map(|f| f.module()).collect();
    let persisted = std::fs::read_to_string(&file).ok();
    if modules.is_empty() {
        eprintln!("note: this kernel has the features built in: nothing to load or keep at boot");
        assert_eq!(persisted, None);
        assert!(!p.ops.iter().any(|o| matches!(o.action, Action::LoadModule { .. } | Action::WriteModulesLoad { .. })));
    } else {
        let mut listed: Vec<&str> = Vec::new();
        let persisted = persisted.expect("the modules-load.d file");
        listed.extend(persisted.lines().filter(|l| !l.starts_with('#')));
        let mut want = modules.clone();
        want.sort();
        assert_eq!(listed, want, "{persisted}");
    }

    // A revert (`apply --confirm` timing out) restores the file's absence; modules stay.
    let restore = s.restore(&snapshot);
    assert!(restore.is_complete(), "revert: {}", restore.describe());
    assert!(!file.exists(), "the file netcfg wrote is gone with the revert");
    assert!(KernelModules::read().availability(Feature::BrNetfilter).is_present(), "br_netfilter stays");
    let p = s.plan(&d, Options::default()).expect("plan");
    if let Err(e) = s.apply(&d, &p, Options::default()) {
        panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
    }

    // Unloading a module changes the whole machine: only on the lane's throwaway kernel.
    if br_nf == Availability::Loadable && std::env::var("NETCFG_KERNEL_LANE").as_deref() == Ok("1") {
        sh(&["modprobe", "-r", "br_netfilter"]);
        let drift = s.verify(&d, Options::default()).expect("verify");
        assert!(
            drift.iter().any(|x| x.kind == DriftKind::Missing && x.what == "kernel module br_netfilter"),
            "{}",
            netlink::drift_text(&drift)
        );
        let p = s.plan(&d, Options::default()).expect("plan");
        if let Err(e) = s.apply(&d, &p, Options::default()) {
            panic!("apply failed: {e:#?}\nplan:\n{}", p.to_text());
        }
        assert_eq!(s.verify(&d, Options::default()).expect("verify"), vec![]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
