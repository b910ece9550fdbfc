//! `sysctl-for-undeclared-link`: a per-interface sysctl for a link the namespace does not declare.
//!
//! **What it does.** Flags every `net.ipv4.conf.IFACE.*`, `net.ipv6.conf.IFACE.*` and
//! `net.ipv{4,6}.neigh.IFACE.*` sysctl (first-class ones such as a link's `rp-filter` included)
//! whose `IFACE` is not a link declared in the same namespace (`lo` always is; `all` and
//! `default` are not interfaces).
//!
//! Why it matters, an example and the fix: spec.md, Checks › `sysctl-for-undeclared-link` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::model::Model;
use netcfg_lang::diagnostic::closest;
use netcfg_lang::{Code, Diagnostic, Severity};

pub const CHECK: Check = Check {
    code: Code::new(
        "sysctl-for-undeclared-link",
        &[Severity::Error],
        "a per-interface sysctl for a link its namespace does not declare",
    ),
    run,
    // A link whose declaration has an error is not in the IR: its sysctls would follow from it.
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for node in &model.fleet.nodes {
        for ns in &node.namespaces {
            for (path, sysctl) in &ns.sysctls {
                let Some(iface) = path.interface() else { continue };
                if iface == "lo" || node.find_link(ns.id, iface).is_some() {
                    continue;
                }
                let names: Vec<&str> = node.links_in(ns.id).map(|l| l.name.value.as_str()).collect();
                let help = match closest(iface, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? Otherwise declare the link (e.g. `ethernet \"{iface}\"`)"),
                    None => format!(
                        "declare the link in this namespace (e.g. `ethernet \"{iface}\"`), or remove the sysctl"
                    ),
                };
                diags.push(
                    Diagnostic::error(
                        CHECK.code,
                        sysctl.span,
                        format!(
                            "`{path}` is about link `{iface}`, which {} does not declare",
                            node.describe_netns(ns.id)
                        ),
                    )
                    .with_label("the sysctl exists only while the link does")
                    .with_help(help),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn sysctls_of_links_the_namespace_does_not_declare_are_flagged() {
        check(
            r#"
node "n" {
    ethernet "eth0" rp-filter="loose"
    bridge "br0"
    sysctl "net.ipv4.conf.all.rp_filter" 2
    sysctl "net.ipv6.conf.default.accept_ra" 0
    sysctl "net.ipv4.conf.br0.forwarding" 1
    sysctl "net.ipv4.conf.lo.rp_filter" 0
    sysctl "net.ipv4.conf.eth1.rp_filter" 2
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error sysctl-for-undeclared-link
    sysctl "net.ipv6.neigh.br1.proxy_delay" 0
//  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error sysctl-for-undeclared-link
    netns "pod" {
        veth "eth0" {
            peer "veth-pod" netns="@host" master="br0"
        }
        sysctl "net.ipv6.conf.eth0.disable_ipv6" 1
        sysctl "net.ipv4.conf.veth-pod.proxy_arp" 1
//      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ error sysctl-for-undeclared-link
    }
}
"#,
        );
    }
}
