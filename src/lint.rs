//! Lint mode: which files of `netcfg check`'s arguments are specs, checking each as its own
//! spec (or all as one fleet), applying suppression comments, and joining the results into one
//! set of findings. What counts as a finding stays in the compiler; this module only decides
//! what is checked together.

use crate::load::{self, LoadError};
use netcfg_lang::diagnostic::sort_diagnostics;
use netcfg_lang::suppress::{self, Outcome, Suppressed};
use netcfg_lang::{Diagnostic, FileId, SourceMap, Span};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether a file met while walking a directory is a fragment meant to be included rather
/// than a spec of its own: its name ends in `.inc.kdl`, or it sits below a directory named
/// `common` or `templates` (relative to the directory given on the command line).
pub fn is_fragment(rel: &Path) -> bool {
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.ends_with(".inc.kdl")
        || rel
            .parent()
            .is_some_and(|p| p.components().any(|c| matches!(c.as_os_str().to_str(), Some("common" | "templates"))))
}

/// The spec files named by the arguments: files as given (`-` too), directories walked
/// recursively for `*.kdl` entry points in sorted order (hidden entries, fragments and
/// symlinked directories skipped). A directory without any spec is an error.
pub fn entry_points(args: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<LoadError>> {
    if args.iter().filter(|a| a.as_os_str() == "-").count() > 1 {
        return Err(vec![LoadError::StdinTwice]);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for arg in args {
        if arg.as_os_str() != "-" && arg.is_dir() {
            let before = out.len();
            walk(arg, Path::new(""), &mut out, &mut errors);
            if out.len() == before && errors.is_empty() {
                errors.push(LoadError::Io {
                    name: arg.display().to_string(),
                    error: std::io::Error::new(std::io::ErrorKind::NotFound, "no `*.kdl` spec in this directory"),
                });
            }
        } else {
            out.push(arg.clone());
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => return errors.push(LoadError::Io { name: dir.display().to_string(), error }),
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = rel.join(&name);
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(&e.path(), &rel, out, errors);
        } else if name.to_string_lossy().ends_with(".kdl") && !is_fragment(&rel) && e.path().is_file() {
            out.push(e.path());
        }
    }
}

/// The findings of one spec (a file with its includes, or a fleet of files).
pub struct Unit {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    pub suppressed: Vec<Suppressed>,
}

/// Loads, checks and applies suppressions to one spec.
pub fn check(files: &[PathBuf], includes: &load::IncludeArgs) -> Result<Unit, Vec<LoadError>> {
    let netcfg_lang::Parsed { spec, sources, mut diagnostics, .. } = load::load(files, includes)?;
    let compiled = netcfg_compiler::compile_owned(spec, &diagnostics);
    drop(compiled.fleet);
    diagnostics.extend(compiled.diagnostics);
    let Outcome { mut diagnostics, mut suppressed } = suppress(&sources, diagnostics);
    sort_diagnostics(&mut diagnostics);
    suppressed.sort_by(|a, b| a.diagnostic.sort_key().cmp(&b.diagnostic.sort_key()));
    Ok(Unit { sources, diagnostics, suppressed })
}

/// Applies the spec's `netcfg-allow` comments to `diagnostics` (every command that reports
/// findings does, so a suppressed error does not block `apply` either).
pub fn suppress(sources: &SourceMap, diagnostics: Vec<Diagnostic>) -> Outcome {
    let registry = netcfg_backends::codes::registry();
    let known: Vec<&str> = registry.iter().map(|(_, c)| c.id).collect();
    suppress::apply(sources, diagnostics, &known)
}

/// Drops the specs whose file another spec of the run includes: a fragment named on the
/// command line (`netcfg check *.kdl`) is checked through the files that include it, where its
/// names mean something, not alone. Two files that include each other are both kept (their
/// `include-cycle` is reported).
pub fn drop_included(units: Vec<Unit>) -> Vec<Unit> {
    let canonical = |f: &netcfg_lang::source::SourceFile| f.path.as_ref().and_then(|p| p.canonicalize().ok());
    let files: Vec<(Option<PathBuf>, Vec<PathBuf>)> = units
        .iter()
        .map(|u| {
            let mut all = u.sources.files().map(|(_, f)| canonical(f));
            let top = all.next().flatten();
            (top, all.flatten().collect())
        })
        .collect();
    let includes = |j: usize, i: usize| files[i].0.as_ref().is_some_and(|top| files[j].1.contains(top));
    units
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(0..files.len()).any(|j| j != *i && includes(j, *i) && !includes(*i, j)))
        .map(|(_, u)| u)
        .collect()
}

/// Joins the findings of several specs. A file shared by several specs (an include) appears
/// once; a finding reported identically by several specs is kept once, where it came first.
/// Otherwise the order is each spec's own, spec after spec, so checking a directory prints
/// what checking each of its files alone prints, one after the other.
pub fn join(units: Vec<Unit>) -> Unit {
    let mut out = Unit { sources: SourceMap::default(), diagnostics: Vec::new(), suppressed: Vec::new() };
    let mut seen: BTreeMap<(String, std::sync::Arc<str>), FileId> = BTreeMap::new();
    type FindingKey = (Span, &'static str, String);
    let mut seen_diags: std::collections::HashMap<FindingKey, Vec<usize>> = std::collections::HashMap::new();
    let mut seen_suppressed: std::collections::HashMap<FindingKey, Vec<usize>> = std::collections::HashMap::new();
    for unit in units {
        let ids: Vec<FileId> = unit
            .sources
            .files()
            .map(|(_, f)| {
                *seen
                    .entry((f.name.clone(), f.text.clone()))
                    .or_insert_with(|| out.sources.add(f.name.clone(), f.path.clone(), f.text.clone()))
            })
            .collect();
        let remap = |span: Span| Span { file: ids[span.file.0 as usize], ..span };
        let remap_diag = |mut d: Diagnostic| {
            d.primary.span = remap(d.primary.span);
            for s in &mut d.secondary {
                s.span = remap(s.span);
            }
            d
        };
        // Candidates for "the same finding" are looked up by sort key, then compared whole:
        // `contains` over everything kept so far made 40,000 findings take minutes.
        for d in unit.diagnostics {
            let d = remap_diag(d);
            let key = (d.primary.span, d.code.id, d.message.clone());
            let same = seen_diags.entry(key).or_default();
            if !same.iter().any(|i: &usize| out.diagnostics[*i] == d) {
                same.push(out.diagnostics.len());
                out.diagnostics.push(d);
            }
        }
        for s in unit.suppressed {
            let s = Suppressed { diagnostic: remap_diag(s.diagnostic), comment: remap(s.comment), ..s };
            let key = (s.diagnostic.primary.span, s.diagnostic.code.id, s.diagnostic.message.clone());
            let same = seen_suppressed.entry(key).or_default();
            if !same.iter().any(|i: &usize| out.suppressed[*i] == s) {
                same.push(out.suppressed.len());
                out.suppressed.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_fragment;
    use std::path::Path;

    #[test]
    fn fragments() {
        assert!(is_fragment(Path::new("fleet/worker.inc.kdl")));
        assert!(is_fragment(Path::new("site/common/base.kdl")));
        assert!(is_fragment(Path::new("templates/x.kdl")));
        assert!(!is_fragment(Path::new("fleet/fleet.kdl")));
        assert!(!is_fragment(Path::new("commons/a.kdl")));
    }
}
