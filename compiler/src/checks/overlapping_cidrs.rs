//! `overlapping-cidrs`: not written yet.

use super::Check;
use crate::model::Model;
use netcfg_lang::Diagnostic;

pub const CHECK: Check = Check { code: "overlapping-cidrs", summary: "TODO", run };

fn run(_model: &Model, _diags: &mut Vec<Diagnostic>) {}
