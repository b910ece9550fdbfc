//! Kernel features: what a spec needs from the running kernel, named by the module that
//! provides it, and what the running kernel has (built in, loaded, loadable, absent).
//!
//! Distribution kernels build most of networking as modules; the kernel loads some on demand
//! (a link kind on `RTM_NEWLINK`, an nft expression on a ruleset that uses it) but not all:
//! `br_netfilter` is never loaded by writing a `net.bridge.*` sysctl, which does not exist until
//! it is. So the plan loads every module the spec needs explicitly, before the ops that need it,
//! and a feature the kernel can neither have nor load is reported before any change.
//!
//! This module decides nothing about a plan: it names features, reads what the kernel has
//! ([`KernelModules`]), and holds the two effects `apply` runs for the plan's kernel ops
//! ([`load_module`], [`write_modules_load`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A kernel feature a spec can need, named by its module (`Feature::module`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    Bridge,
    Veth,
    Vxlan,
    Macvlan,
    Dummy,
    /// 802.1Q VLANs (`8021q`).
    Vlan,
    Bond,
    Vrf,
    Ipvlan,
    Gre,
    Ipip,
    Sit,
    Ip6tnl,
    Wireguard,
    /// Bridged traffic through the L3 netfilter hooks; the `net.bridge.bridge-nf-*` sysctls.
    BrNetfilter,
    /// Connection tracking itself (`net.netfilter.nf_conntrack_*` sysctls).
    NfConntrack,
    NfTables,
    /// `ct state`, `ct status`.
    NftCt,
    /// `dnat`, `snat`.
    NftNat,
    /// `type nat` base chains.
    NftChainNat,
    NftMasq,
    NftRedir,
    /// `numgen random`.
    NftNumgen,
    /// `reject` in an `inet` table.
    NftRejectInet,
    NftLog,
    /// `limit rate`, also inside a dynamic set (`update @s { ip saddr limit rate … }`).
    NftLimit,
    /// `ct count` (connection limits per source).
    NftConnlimit,
    /// TCP options (`tcp option maxseg`).
    NftExthdr,
    /// Routing facts (`rt mtu`).
    NftRt,
    /// Routing lookups in an `inet` table (`fib daddr type local`).
    NftFib,
    /// Transparent proxying (`tproxy to :PORT`).
    NftTproxy,
}

impl Feature {
    pub const ALL: [Feature; 31] = [
        Feature::Bridge,
        Feature::Veth,
        Feature::Vxlan,
        Feature::Macvlan,
        Feature::Dummy,
        Feature::Vlan,
        Feature::Bond,
        Feature::Vrf,
        Feature::Ipvlan,
        Feature::Gre,
        Feature::Ipip,
        Feature::Sit,
        Feature::Ip6tnl,
        Feature::Wireguard,
        Feature::BrNetfilter,
        Feature::NfConntrack,
        Feature::NfTables,
        Feature::NftCt,
        Feature::NftNat,
        Feature::NftChainNat,
        Feature::NftMasq,
        Feature::NftRedir,
        Feature::NftNumgen,
        Feature::NftRejectInet,
        Feature::NftLog,
        Feature::NftLimit,
        Feature::NftConnlimit,
        Feature::NftExthdr,
        Feature::NftRt,
        Feature::NftFib,
        Feature::NftTproxy,
    ];

    /// The module that provides the feature (as `modprobe`, `/sys/module` and
    /// `modules.builtin` name it).
    pub fn module(self) -> &'static str {
        match self {
            Feature::Bridge => "bridge",
            Feature::Veth => "veth",
            Feature::Vxlan => "vxlan",
            Feature::Macvlan => "macvlan",
            Feature::Dummy => "dummy",
            Feature::Vlan => "8021q",
            Feature::Bond => "bonding",
            Feature::Vrf => "vrf",
            Feature::Ipvlan => "ipvlan",
            Feature::Gre => "ip_gre",
            Feature::Ipip => "ipip",
            Feature::Sit => "sit",
            Feature::Ip6tnl => "ip6_tunnel",
            Feature::Wireguard => "wireguard",
            Feature::BrNetfilter => "br_netfilter",
            Feature::NfConntrack => "nf_conntrack",
            Feature::NfTables => "nf_tables",
            Feature::NftCt => "nft_ct",
            Feature::NftNat => "nft_nat",
            Feature::NftChainNat => "nft_chain_nat",
            Feature::NftMasq => "nft_masq",
            Feature::NftRedir => "nft_redir",
            Feature::NftNumgen => "nft_numgen",
            Feature::NftRejectInet => "nft_reject_inet",
            Feature::NftLog => "nft_log",
            Feature::NftLimit => "nft_limit",
            Feature::NftConnlimit => "nft_connlimit",
            Feature::NftExthdr => "nft_exthdr",
            Feature::NftRt => "nft_rt",
            Feature::NftFib => "nft_fib_inet",
            Feature::NftTproxy => "nft_tproxy",
        }
    }

    /// What the spec uses that needs the feature, for diagnostics.
    pub fn purpose(self) -> &'static str {
        match self {
            Feature::Bridge => "bridges",
            Feature::Veth => "veth pairs",
            Feature::Vxlan => "VXLAN links",
            Feature::Macvlan => "macvlan links",
            Feature::Dummy => "dummy links",
            Feature::Vlan => "VLAN links",
            Feature::Bond => "bonds",
            Feature::Vrf => "VRFs",
            Feature::Ipvlan => "ipvlan links",
            Feature::Gre => "GRE tunnels",
            Feature::Ipip => "IPIP tunnels",
            Feature::Sit => "SIT tunnels",
            Feature::Ip6tnl => "IPv6 tunnels (`ip6tnl`)",
            Feature::Wireguard => "WireGuard links",
            Feature::BrNetfilter => "bridge netfilter (`net.bridge.bridge-nf-call-*`)",
            Feature::NfConntrack => "connection tracking (`net.netfilter.nf_conntrack_*`)",
            Feature::NfTables => "nftables",
            Feature::NftCt => "conntrack matches in nftables (`ct state`)",
            Feature::NftNat => "DNAT and SNAT in nftables",
            Feature::NftChainNat => "NAT chains in nftables",
            Feature::NftMasq => "masquerade in nftables",
            Feature::NftRedir => "redirect in nftables",
            Feature::NftNumgen => "load balancing in nftables (`numgen`)",
            Feature::NftRejectInet => "reject in nftables",
            Feature::NftLog => "logging in nftables",
            Feature::NftLimit => "rate limits in nftables (`limit rate`)",
            Feature::NftConnlimit => "connection limits in nftables (`ct count`)",
            Feature::NftExthdr => "TCP option matches and changes in nftables (`clamp-mss`)",
            Feature::NftRt => "route facts in nftables (`rt mtu`, `clamp-mss`)",
            Feature::NftFib => "local-address matches in nftables (`fib daddr type local`, `publish`)",
            Feature::NftTproxy => "transparent proxying in nftables (`tproxy`)",
        }
    }

    /// The feature a sysctl path belongs to, when a module provides it.
    pub fn of_sysctl(path: &str) -> Option<Feature> {
        if path.starts_with("net.bridge.") {
            Some(Feature::BrNetfilter)
        } else if path.starts_with("net.netfilter.nf_conntrack") {
            Some(Feature::NfConntrack)
        } else {
            None
        }
    }

    /// A file that exists exactly when the feature is active in the current namespace, for
    /// kernels whose modules cannot be listed.
    fn marker(self) -> Option<&'static str> {
        match self {
            Feature::BrNetfilter => Some("/proc/sys/net/bridge"),
            Feature::NfConntrack => Some("/proc/sys/net/netfilter/nf_conntrack_max"),
            _ => None,
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.module())
    }
}

/// What the running kernel has of one feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Compiled into the kernel.
    BuiltIn,
    /// A module that is loaded now.
    Loaded,
    /// A module the kernel can load (in `modules.dep`), not loaded now.
    Loadable,
    /// Neither built in nor loadable.
    Absent,
}

impl Availability {
    pub fn is_present(self) -> bool {
        matches!(self, Availability::BuiltIn | Availability::Loaded)
    }

    /// Whether the feature comes from a module (so that loading it at boot keeps it).
    pub fn is_module(self) -> bool {
        matches!(self, Availability::Loaded | Availability::Loadable)
    }
}

/// What is known about the kernel's modules, read from the files the kernel and kmod keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelModules {
    /// Whether the kernel loads modules at all (`/proc/modules` exists).
    pub modular: bool,
    /// Loaded modules (`/proc/modules`).
    pub loaded: BTreeSet<String>,
    /// `modules.builtin` of the running kernel, when installed.
    pub builtin: Option<BTreeSet<String>>,
    /// The modules `modules.dep` of the running kernel lists, when installed.
    pub loadable: Option<BTreeSet<String>>,
    /// Features whose marker file exists (see `Feature::marker`).
    pub marked: BTreeSet<Feature>,
}

/// `kernel/net/bridge/br_netfilter.ko.xz` -> `br_netfilter` (kmod treats `-` and `_` alike).
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (file.contains(".ko") && !stem.is_empty()).then(|| stem.replace('-', "_"))
}

impl KernelModules {
    /// Reads the running kernel's module lists: `/proc/modules` and
    /// `/lib/modules/$(uname -r)/{modules.builtin,modules.dep}`.
    pub fn read() -> KernelModules {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Self::read_from(Path::new("/proc/modules"), &Path::new("/lib/modules").join(release.trim()))
    }

    pub fn read_from(proc_modules: &Path, modules_dir: &Path) -> KernelModules {
        let proc = std::fs::read_to_string(proc_modules).ok();
        let read = |name: &str| std::fs::read_to_string(modules_dir.join(name)).ok();
        KernelModules::parse(
            proc.as_deref(),
            read("modules.builtin").as_deref(),
            read("modules.dep").as_deref(),
            Feature::ALL.iter().copied().filter(|f| f.marker().is_some_and(|m| Path::new(m).exists())).collect(),
        )
    }

    /// From the texts of `/proc/modules`, `modules.builtin` and `modules.dep`.
    pub fn parse(
        proc_modules: Option<&str>,
        builtin: Option<&str>,
        dep: Option<&str>,
        marked: BTreeSet<Feature>,
    ) -> KernelModules {
        let loaded = proc_modules
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|m| m.replace('-', "_"))
            .collect();
        let builtin = builtin.map(|b| b.lines().filter_map(module_name).collect());
        let loadable = dep.map(|d| d.lines().filter_map(|l| l.split(':').next()).filter_map(module_name).collect());
        KernelModules { modular: proc_modules.is_some(), loaded, builtin, loadable, marked }
    }

    /// What the kernel has of `f`. Without module lists to go by (a kernel without module
    /// support, or one whose `/lib/modules` is not installed) a feature is taken as built in
    /// unless its marker says it is not active: the kernel's own error at apply is then the
    /// report, as it would be without netcfg.
    pub fn availability(&self, f: Feature) -> Availability {
        let name = f.module();
        if self.loaded.contains(name) {
            return Availability::Loaded;
        }
        if self.builtin.as_ref().is_some_and(|b| b.contains(name)) {
            return Availability::BuiltIn;
        }
        if self.modular && self.loadable.as_ref().is_some_and(|l| l.contains(name)) {
            return Availability::Loadable;
        }
        let known = self.modular && self.builtin.is_some() && self.loadable.is_some();
        match (known, f.marker()) {
            (true, _) => Availability::Absent,
            (false, Some(_)) if self.marked.contains(&f) => Availability::BuiltIn,
            (false, Some(_)) if !self.modular => Availability::Absent,
            (false, _) => Availability::BuiltIn,
        }
    }
}

/// Where netcfg keeps the modules a node needs loaded at boot, when it configures the machine
/// itself (systemd-modules-load and Debian's kmod service read this directory).
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/netcfg.conf";

/// The content of the modules-load.d file for `modules` (sorted, one a line).
pub fn modules_load_text(modules: &BTreeSet<&str>) -> String {
    let mut s = String::from("# Written by netcfg: kernel modules the node's spec needs, loaded at boot.\n");
    for m in modules {
        s.push_str(m);
        s.push('\n');
    }
    s
}

/// The kernel state a plan depends on besides the netlink dumps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    pub features: BTreeMap<Feature, Availability>,
    /// The modules-load.d file netcfg owns and its content (`None`: absent); `None` when the
    /// node is not the machine itself (`--netns-root`).
    pub modules_load: Option<(PathBuf, Option<String>)>,
}

/// Loads `module` and its dependencies with `modprobe` (kmod): it resolves `modules.dep` and
/// soft dependencies, decompresses, and honours the administrator's `modprobe.d` options and
/// blacklists, none of which a bare `finit_module` would.
/// Parameters netcfg loads a module with: `bonding` and `dummy` otherwise make a `bond0` /
/// `dummy0` of their own on load, which netcfg does not own and which would take the name of a
/// declared link (systemd's `modprobe.d/systemd.conf` sets the same options for boot).
pub fn module_params(module: &str) -> &'static [&'static str] {
    match module {
        "bonding" => &["max_bonds=0"],
        "dummy" => &["numdummies=0"],
        _ => &[],
    }
}

pub fn load_module(module: &str) -> Result<(), String> {
    let out = std::process::Command::new("modprobe")
        .arg("--")
        .arg(module)
        .args(module_params(module))
        .output()
        .map_err(|e| format!("cannot run `modprobe`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!("modprobe {module}: {}", err.trim()))
}

/// Writes `content` to `path` atomically (a temporary file in the same directory, synced, then
/// renamed over it), or removes `path` when `content` is `None`.
pub fn write_modules_load(path: &Path, content: Option<&str>) -> std::io::Result<()> {
    use std::io::Write;
    let Some(content) = content else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads netcfg's modules-load.d file (`None`: it does not exist).
pub fn read_modules_load(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/llc/llc.ko\n\
                       kernel/net/bridge/bridge.ko: kernel/net/llc/llc.ko\n\
                       kernel/net/netfilter/nft_ct.ko.xz: kernel/net/netfilter/nf_tables.ko\n";

    #[test]
    fn a_distribution_kernel_is_read_from_its_module_lists() {
        let k = KernelModules::parse(
            Some("bridge 311296 0 - Live 0x0000000000000000\nllc 16384 1 bridge, Live 0x0\n"),
            Some("kernel/drivers/net/veth.ko\n"),
            Some(DEP),
            BTreeSet::new(),
        );
        assert_eq!(k.availability(Feature::Bridge), Availability::Loaded);
        assert_eq!(k.availability(Feature::Veth), Availability::BuiltIn);
        assert_eq!(k.availability(Feature::BrNetfilter), Availability::Loadable);
        assert_eq!(k.availability(Feature::NftCt), Availability::Loadable, "compressed modules count");
        assert_eq!(k.availability(Feature::Vxlan), Availability::Absent);
    }

    #[test]
    fn a_kernel_without_module_support_has_what_is_built_in() {
        let marked = BTreeSet::from([Feature::BrNetfilter]);
        let k = KernelModules::parse(None, None, None, marked);
        assert_eq!(k.availability(Feature::BrNetfilter), Availability::BuiltIn);
        assert_eq!(k.availability(Feature::Vxlan), Availability::BuiltIn, "cannot tell: the kernel will say");
        let k = KernelModules::parse(None, None, None, BTreeSet::new());
        assert_eq!(k.availability(Feature::BrNetfilter), Availability::Absent);
        assert_eq!(k.availability(Feature::NfConntrack), Availability::Absent);
    }

    #[test]
    fn module_names_from_paths() {
        assert_eq!(module_name("kernel/net/bridge/br_netfilter.ko").as_deref(), Some("br_netfilter"));
        assert_eq!(module_name("kernel/net/x/nft-ct.ko.zst").as_deref(), Some("nft_ct"));
        assert_eq!(module_name("kernel/net/x/README"), None);
    }

    #[test]
    fn the_modules_load_file_is_replaced_whole_and_removed() {
        let dir = std::env::temp_dir().join(format!("netcfg-modules-load-{}", std::process::id()));
        let path = dir.join("modules-load.d/netcfg.conf");
        write_modules_load(&path, Some("a\n")).expect("write");
        write_modules_load(&path, Some("b\n")).expect("replace");
        assert_eq!(read_modules_load(&path).expect("read").as_deref(), Some("b\n"));
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir")).expect("ls").flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        write_modules_load(&path, None).expect("remove");
        write_modules_load(&path, None).expect("removing an absent file is fine");
        assert_eq!(read_modules_load(&path).expect("read"), None);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_modules_load_file_lists_one_module_a_line() {
        let text = modules_load_text(&BTreeSet::from(["nft_nat", "br_netfilter"]));
        assert!(text.ends_with("br_netfilter\nnft_nat\n"), "{text}");
    }
}
