//! netcfg's compiler: AST -> typed IR -> network model -> checks.
//!
//! Invariants: no raw strings for structured data past `resolve`; checks only read the IR and
//! the model and push diagnostics; nothing here prints or touches the kernel.

pub mod checks;
pub mod follow_on;
pub mod ir;
pub mod model;
pub mod resolve;
pub mod rule_groups;
pub mod trace;

#[cfg(test)]
pub(crate) mod fixture;

use netcfg_lang::{ast, Diagnostic};

/// The result of compiling a spec: the IR (as complete as the errors allowed) and findings.
pub struct Compiled {
    pub fleet: ir::Fleet,
    pub diagnostics: Vec<Diagnostic>,
}

/// Resolves the AST and runs every check. Checks run even when resolution reported errors, on
/// the part of the spec that resolved, so one run shows every problem.
pub fn compile(spec: &ast::Spec) -> Compiled {
    compile_after(spec, &[])
}

/// [`compile`] for an AST that came with `parse_diagnostics` (not repeated in the result): a
/// check's finding that could follow from an error in the same namespace is dropped, so one
/// mistake gives one finding.
pub fn compile_after(spec: &ast::Spec, parse_diagnostics: &[Diagnostic]) -> Compiled {
    let mut diagnostics = Vec::new();
    let fleet = resolve::resolve(spec, &mut diagnostics);
    check(fleet, diagnostics, parse_diagnostics)
}

/// [`compile_after`] for a caller that needs the AST no longer: each node's declaration is
/// dropped once resolved, so the AST does not share the peak with the IR, the model and the
/// checks (`netcfg check` of 100,000
/// rules: ARCHITECTURE.md, "Decisions changed, with evidence").
pub fn compile_owned(spec: ast::Spec, parse_diagnostics: &[Diagnostic]) -> Compiled {
    let mut diagnostics = Vec::new();
    let fleet = resolve::resolve_owned(spec, &mut diagnostics);
    check(fleet, diagnostics, parse_diagnostics)
}

fn check(fleet: ir::Fleet, diagnostics: Vec<Diagnostic>, parse_diagnostics: &[Diagnostic]) -> Compiled {
    let diagnostics = check_fleet(&fleet, diagnostics, parse_diagnostics);
    Compiled { fleet, diagnostics }
}

/// Runs every check on a fleet `resolve` made, adding to `diagnostics` (resolve's own): the
/// second half of [`compile_after`], for a caller that runs the checks beside other work on
/// the same fleet (`apply` reads the kernel meanwhile).
pub fn check_fleet(
    fleet: &ir::Fleet,
    mut diagnostics: Vec<Diagnostic>,
    parse_diagnostics: &[Diagnostic],
) -> Vec<Diagnostic> {
    let broken = follow_on::BrokenNamespaces::new(fleet, parse_diagnostics.iter().chain(&diagnostics));
    let model = model::Model::new(fleet);
    checks::run_all(&model, &broken, &mut diagnostics);
    rule_groups::merge_copies(&mut diagnostics);
    diagnostics
}
