//! spec.md against the code registry (`netcfg_backends::codes::registry`): the code tables are
//! generated from it, every code has a section with an example, and every example triggers
//! exactly its own code. `UPDATE_SPEC=1 cargo test --test spec` rewrites the generated tables.

use netcfg_backends::codes::{registry, Stage};
use netcfg_lang::{Code, LoadError, Loader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec.md")
}

fn severities(c: &Code) -> String {
    c.severities.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// The anchor of a code's section: its own heading, or the table it is documented in.
fn anchor(stage: Stage, c: &Code) -> String {
    match stage {
        Stage::Backend => "backend-codes".to_string(),
        _ => c.id.to_string(),
    }
}

/// Every code: where it comes from, its severities and what it catches.
fn code_index() -> String {
    let mut s = String::from("| code | reported by | severity | catches |\n|---|---|---|---|\n");
    for (stage, c) in registry() {
        s.push_str(&format!(
            "| [`{}`](#{}) | {} | {} | {} |\n",
            c.id,
            anchor(stage, &c),
            stage.as_str(),
            severities(&c),
            c.summary
        ));
    }
    s
}

/// The checks' table at the head of "Checks".
fn check_table() -> String {
    let mut s = String::from("| code | severity | catches |\n|---|---|---|\n");
    for (_, c) in registry().into_iter().filter(|(stage, _)| *stage == Stage::Check) {
        s.push_str(&format!("| [`{}`](#{}) | {} | {} |\n", c.id, c.id, severities(&c), c.summary));
    }
    s
}

const BEGIN: &str = "<!-- generated from the code registry by tests/spec.rs (UPDATE_SPEC=1): ";
const END: &str = "<!-- end of generated table -->";

/// Replaces the body of every generated block; returns the new text and the blocks it found.
fn regenerate(spec: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut found = Vec::new();
    let mut rest = spec;
    while let Some(i) = rest.find(BEGIN) {
        let name_end = i + rest[i..].find("-->").expect("generated block marker ends") + 3;
        let name = rest[i + BEGIN.len()..name_end - 3].trim().to_string();
        let body = match name.as_str() {
            "code index" => code_index(),
            "checks" => check_table(),
            other => panic!("unknown generated block `{other}` in spec.md"),
        };
        let end = name_end + rest[name_end..].find(END).expect("generated block has an end marker");
        out.push_str(&rest[..name_end]);
        out.push('\n');
        out.push_str(&body);
        found.push(name);
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, found)
}

#[test]
fn code_tables_are_generated_from_the_registry() {
    let spec = std::fs::read_to_string(spec_path()).expect("spec.md");
    let (fresh, blocks) = regenerate(&spec);
    assert_eq!(blocks, ["code index", "checks"], "spec.md must hold both generated tables, in this order");
    if fresh != spec {
        if std::env::var_os("UPDATE_SPEC").is_some() {
            std::fs::write(spec_path(), fresh).expect("write spec.md");
        } else {
            panic!("spec.md's code tables are stale: run `UPDATE_SPEC=1 cargo test --test spec`");
        }
    }
}

/// `### \`code\`` sections of spec.md's "Diagnostics" and "Checks" chapters and the first
/// `kdl` block in each.
fn sections(spec: &str) -> BTreeMap<String, Option<String>> {
    let start = spec.find("\n## Diagnostics\n").expect("spec.md has a Diagnostics chapter");
    let end = start + spec[start..].find("\n## How ").unwrap_or(spec.len() - start);
    let spec = &spec[start..end];
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_block: Option<String> = None;
    for line in spec.lines() {
        if let Some(block) = in_block.as_mut() {
            if line.trim_start().starts_with("```") {
                let code = current.clone().expect("a block inside a section");
                out.entry(code).and_modify(|e: &mut Option<String>| {
                    e.get_or_insert_with(|| block.clone());
                });
                in_block = None;
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("### `") {
            let code = rest.trim_end_matches('`').to_string();
            out.insert(code.clone(), None);
            current = Some(code);
        } else if line.starts_with("## ") || (line.starts_with("### ") && !line.starts_with("### `")) {
            current = None;
        } else if line.trim() == "```kdl" && current.is_some() {
            in_block = Some(String::new());
        }
    }
    out
}

/// Examples that are several files: `// NAME.kdl` lines start each file.
fn files_of(example: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in example.lines() {
        let marker = line.strip_prefix("// ").filter(|n| n.ends_with(".kdl") && !n.contains(' '));
        match marker {
            Some(name) => files.push((name.to_string(), String::new())),
            None => {
                if files.is_empty() {
                    files.push(("spec.kdl".to_string(), String::new()));
                }
                let last = files.last_mut().expect("a file");
                last.1.push_str(line);
                last.1.push('\n');
            }
        }
    }
    files
}

/// The in-memory files of one example, as the loader `include` reads them.
struct Files(BTreeMap<PathBuf, String>);

impl Loader for Files {
    fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError> {
        let path = PathBuf::from(path.to_string_lossy().trim_start_matches("./"));
        if self.0.contains_key(&path) {
            Ok(path)
        } else {
            Err(LoadError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")))
        }
    }

    fn read(&mut self, key: &Path) -> Result<Vec<u8>, LoadError> {
        self.resolve(key).map(|k| self.0[&k].clone().into_bytes())
    }
}

/// The codes `netcfg check` reports for an example (parse, resolve, checks, suppressions).
fn codes_of(example: &str) -> BTreeSet<String> {
    let files = files_of(example);
    let mut loader = Files(files.iter().map(|(n, t)| (PathBuf::from(n), t.clone())).collect());
    let mut parsed = netcfg_lang::Parsed::default();
    let (name, text) = &files[0];
    parsed.add_file(name.clone(), Some(PathBuf::from(name)), text.as_bytes(), &mut loader);
    let compiled = netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics);
    let mut diagnostics = std::mem::take(&mut parsed.diagnostics);
    diagnostics.extend(compiled.diagnostics);
    // Suppression comments apply, as in `netcfg check`.
    let known: Vec<&str> = registry().iter().map(|(_, c)| c.id).collect();
    let outcome = netcfg_lang::suppress::apply(&parsed.sources, diagnostics, &known);
    outcome.diagnostics.iter().map(|d| d.code.id.to_string()).collect()
}

/// Codes whose section cannot hold a triggering example, and why.
const NO_EXAMPLE: &[(&str, &str)] = &[
    ("invalid-utf8", "invalid UTF-8 cannot be written in a Markdown file"),
    ("include-refused", "it needs a file outside the include root: tests/untrusted.rs"),
    ("too-many-diagnostics", "it needs 1000 diagnostics first: tests/untrusted.rs"),
];

#[test]
fn every_code_has_a_section_and_its_example_triggers_exactly_it() {
    let spec = std::fs::read_to_string(spec_path()).expect("spec.md");
    let sections = sections(&spec);
    let mut problems = Vec::new();
    let registered: BTreeSet<&str> = registry().iter().map(|(_, c)| c.id).collect();
    for code in sections.keys() {
        if !registered.contains(code.as_str()) {
            problems.push(format!("spec.md documents `{code}`, which no stage reports"));
        }
    }
    for (stage, c) in registry() {
        if stage == Stage::Backend {
            if !spec.contains(&format!("| `{}` |", c.id)) {
                problems.push(format!("backend code `{}` has no row in spec.md's backend table", c.id));
            }
            continue;
        }
        let Some(example) = sections.get(c.id) else {
            problems.push(format!("`{}` has no section in spec.md", c.id));
            continue;
        };
        match example {
            _ if NO_EXAMPLE.iter().any(|(id, _)| *id == c.id) => {}
            None => problems.push(format!("`{}`'s section has no `kdl` example", c.id)),
            Some(example) => {
                let got = codes_of(example);
                if got != BTreeSet::from([c.id.to_string()]) {
                    problems.push(format!("the example of `{}` reports {got:?}", c.id));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
