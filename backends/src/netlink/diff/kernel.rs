//! Kernel modules: load what the spec needs before anything uses it, report what the kernel
//! cannot have, and keep the modules-load.d file.

use super::*;

impl Planner<'_> {
    /// Loads the modules the spec needs that the kernel has not loaded; reports those it cannot
    /// have; keeps the modules-load.d file listing every needed feature that is a module.
    pub(super) fn plan_kernel(&mut self, kernel: &KernelState) {
        let mut at_boot = BTreeSet::new();
        for (f, span) in &self.d.features {
            let have = kernel.features.get(f).copied().unwrap_or(Availability::BuiltIn);
            if have.is_module() {
                at_boot.insert(f.module());
            }
            match have {
                Availability::BuiltIn | Availability::Loaded => {}
                Availability::Loadable => self.emit(
                    Phase::Modules,
                    Op {
                        ns: HOST.to_string(),
                        action: Action::LoadModule { module: f.module().to_string() },
                        class: Disruption::InPlace,
                        span: *span,
                    },
                ),
                Availability::Absent => self.errors.push(
                    Diagnostic::error(
                        codes::MISSING_KERNEL_FEATURE,
                        *span,
                        format!("the running kernel has no `{}`, needed for {}", f.module(), f.purpose()),
                    )
                    .with_help(format!(
                        "install the module package of the running kernel (`/lib/modules/$(uname -r)`), or boot a \
                         kernel built with `{}`",
                        f.module()
                    )),
                ),
            }
        }
        let Some((path, old)) = &kernel.modules_load else { return };
        let content = match &self.d.modules_load {
            Some(recorded) => recorded.clone(),
            None => (!at_boot.is_empty()).then(|| modules_load_text(&at_boot)),
        };
        if &content != old {
            self.emit(
                Phase::Persist,
                Op {
                    ns: HOST.to_string(),
                    action: Action::WriteModulesLoad { path: path.clone(), content, old: old.clone() },
                    class: Disruption::InPlace,
                    span: self.d.node_span,
                },
            );
        }
    }
}
