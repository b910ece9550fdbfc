//! `interface-name-too-long`: a link name longer than the kernel's 15 bytes.
//!
//! **What it does.** Flags every link (veth peers included) whose name is over 15 bytes.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `interface-name-too-long` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::model::Model;
use netcfg_lang::{Code, Diagnostic, Severity};

pub const CHECK: Check = Check {
    code: Code::new("interface-name-too-long", &[Severity::Error], "a link name over 15 bytes"),
    run,
    after_errors: AfterErrors::Run,
};

const IFNAMSIZ_MAX: usize = 15;

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (_, link) in model.links() {
        let len = link.name.value.len();
        if len > IFNAMSIZ_MAX {
            diags.push(
                Diagnostic::error(
                    CHECK.code,
                    link.name.span,
                    format!("interface name `{}` is {len} bytes long", link.name.value),
                )
                .with_label(format!("the kernel allows at most {IFNAMSIZ_MAX} bytes"))
                .with_help(format!(
                    "shorten it to {IFNAMSIZ_MAX} bytes or fewer, e.g. `{}`",
                    shorten(&link.name.value)
                )),
            );
        }
    }
}

fn shorten(name: &str) -> String {
    name.char_indices().take_while(|(i, c)| i + c.len_utf8() <= IFNAMSIZ_MAX).map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn long_names_are_flagged_on_both_veth_ends() {
        check(
            r#"
node "n" {
    bridge "kubernetes-pods0"
//          ^^^^^^^^^^^^^^^^ error interface-name-too-long
    netns "pod" {
        veth "eth0" {
            peer "veth-0123456789ab" netns="@host"
//                ^^^^^^^^^^^^^^^^^ error interface-name-too-long
        }
    }
    bridge "br-exactly-15ch"
}
"#,
        );
    }
}
