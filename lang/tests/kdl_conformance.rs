//! Conformance of netcfg's KDL parser (`netcfg_lang::kdl`).
//!
//! 1. The official KDL v2 test suite, which ships inside the `kdl` crate's package
//!    (`tests/test_cases/{input,expected_kdl}`): every input with an expected file parses and
//!    our tree, printed by the suite's translation rules, equals the expected text; every input
//!    without one is rejected. The directory is found through `cargo metadata` (or the cargo
//!    registry); not finding it is a failure, never a skip.
//! 2. Differential against the `kdl` crate (a dev-dependency kept as the oracle) on every suite
//!    input and on seeded generated and mutated documents: same accept/reject, and on accepted
//!    input the same tree (names, type annotations, entries, values, children) and the same
//!    spans for node, name and value, which is what diagnostics point at.

use netcfg_lang::kdl::{parse, Document, Entry, Node, Value};
use netcfg_lang::FileId;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- locating the suite

fn suite_dir() -> PathBuf {
    fn from_metadata() -> Option<PathBuf> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        // The manifest path of the `kdl` package: ".../kdl-6.x.y/Cargo.toml".
        text.split("\"manifest_path\":\"").skip(1).find_map(|rest| {
            let path = &rest[..rest.find('"')?];
            let dir = Path::new(path).parent()?;
            let name = dir.file_name()?.to_str()?;
            (name.starts_with("kdl-") && name[4..].starts_with(|c: char| c.is_ascii_digit()))
                .then(|| dir.join("tests/test_cases"))
        })
    }
    fn from_registry() -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .flatten()
            .flat_map(|index| std::fs::read_dir(index.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("kdl-6.")))
            .map(|p| p.join("tests/test_cases"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        found.pop()
    }
    let dir = from_metadata().filter(|d| d.is_dir()).or_else(from_registry);
    match dir {
        Some(d) => d,
        None => panic!(
            "the KDL test suite (kdl crate package, tests/test_cases) was not found through `cargo metadata` \
             or $CARGO_HOME/registry/src; run `cargo fetch`"
        ),
    }
}

struct Case {
    name: String,
    input: String,
    expected: Option<String>,
}

fn cases() -> Vec<Case> {
    let dir = suite_dir();
    let mut cases: Vec<Case> = std::fs::read_dir(dir.join("input"))
        .expect("suite input directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let input = std::fs::read_to_string(&p).expect("suite inputs are UTF-8");
            let expected = std::fs::read_to_string(dir.join("expected_kdl").join(&name)).ok();
            Case { name, input, expected }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() > 300, "only {} suite cases found", cases.len());
    cases
}

// ---------------------------------------------------------------- the suite's printed form

fn is_plain_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else { return false };
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let looks_numeric = first.is_ascii_digit()
        || (matches!(first, b'.' | b'-' | b'+') && digit_at(1))
        || (matches!(first, b'-' | b'+') && b.get(1) == Some(&b'.') && digit_at(2));
    let reserved = matches!(s, "true" | "false" | "null" | "inf" | "-inf" | "nan");
    s.chars().all(netcfg_lang::kdl::lexer::is_identifier_char) && !looks_numeric && !reserved
}

fn write_string(out: &mut String, s: &str) {
    if is_plain_identifier(s) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{C}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => write_string(out, s),
        Value::Integer(i) => write!(out, "{i}").unwrap(),
        Value::Float(f) if f.is_nan() => out.push_str("#nan"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { "#inf" } else { "#-inf" }),
        Value::Float(f) => write!(out, "{f:?}").unwrap(),
        Value::Bool(b) => write!(out, "#{b}").unwrap(),
        Value::Null => out.push_str("#null"),
    }
}

fn write_entry_value(out: &mut String, e: &Entry) {
    if let Some(ty) = &e.ty {
        out.push('(');
        write_string(out, &ty.value);
        out.push(')');
    }
    write_value(out, &e.value);
}

/// The suite's translation rules: no comments, 4-space indents, arguments in order, properties
/// sorted with the rightmost duplicate kept, children only when not empty, normalised strings
/// and numbers.
fn print(doc: &Document) -> String {
    fn node(out: &mut String, n: &Node, depth: usize) {
        out.push_str(&"    ".repeat(depth));
        if let Some(ty) = &n.ty {
            out.push('(');
            write_string(out, &ty.value);
            out.push(')');
        }
        write_string(out, &n.name.value);
        for e in n.entries.iter().filter(|e| e.key.is_none()) {
            out.push(' ');
            write_entry_value(out, e);
        }
        let mut props: Vec<(&str, &Entry)> = Vec::new();
        for e in &n.entries {
            if let Some(k) = &e.key {
                props.retain(|(key, _)| *key != k.value);
                props.push((&k.value, e));
            }
        }
        props.sort_by(|a, b| a.0.cmp(b.0));
        for (k, e) in props {
            out.push(' ');
            write_string(out, k);
            out.push('=');
            write_entry_value(out, e);
        }
        let children = n.child_nodes();
        if !children.is_empty() {
            out.push_str(" {\n");
            for c in children {
                node(out, c, depth + 1);
            }
            out.push_str(&"    ".repeat(depth));
            out.push('}');
        }
        out.push('\n');
    }
    let mut out = String::new();
    for n in &doc.nodes {
        node(&mut out, n, 0);
    }
    out
}

#[test]
fn official_suite_expected_output() {
    let cases = cases();
    let (mut passed, mut failures) = (0, Vec::new());
    for c in &cases {
        let (doc, diags) = parse(&c.input, FileId(0));
        let outcome = match &c.expected {
            Some(expected) => {
                let expected = expected.replace("\r\n", "\n");
                let actual = print(&doc);
                if !diags.is_empty() {
                    Err(format!("rejected: {}", diags[0].message))
                } else if actual.trim_end() != expected.trim_end() {
                    Err(format!("expected:\n{expected}\nactual:\n{actual}"))
                } else {
                    Ok(())
                }
            }
            None if c.name.ends_with("_fail.kdl") && diags.is_empty() => {
                Err(format!("accepted invalid input as:\n{}", print(&doc)))
            }
            None if c.name.ends_with("_fail.kdl") => Ok(()),
            // The kdl crate dropped the expected file of `hex.kdl` (a value beyond i64); the
            // upstream suite expects it to parse.
            None if diags.is_empty() => Ok(()),
            None => Err(format!("rejected: {}", diags[0].message)),
        };
        match outcome {
            Ok(()) => passed += 1,
            Err(e) => failures.push(format!("--- {}\n{}\n{e}", c.name, c.input)),
        }
    }
    eprintln!("KDL suite: {passed} of {} cases pass", cases.len());
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

// ---------------------------------------------------------------- differential against `kdl`

/// Why our tree differs from the `kdl` crate's, if it does.
fn compare(src: &str) -> Result<(), String> {
    let (doc, diags) = parse(src, FileId(0));
    let mut oracle = src.parse::<kdl::KdlDocument>();
    if oracle.is_err() && diags.is_empty() {
        // kdl 6.7 rejects a slashdashed node ended by `;` (`/- a; b`), which the grammar allows
        // (`node := base-node node-terminator`). A `;` and a newline are the same terminator and
        // the same length, so the oracle gets a second chance with newlines.
        let mut normalized = src.to_string();
        for t in netcfg_lang::kdl::lexer::tokenize(src) {
            if t.kind == netcfg_lang::kdl::lexer::TokenKind::Semicolon {
                normalized.replace_range(t.start as usize..t.end as usize, "\n");
            }
        }
        oracle = normalized.parse::<kdl::KdlDocument>();
    }
    match (&oracle, diags.is_empty()) {
        (Ok(_), false) => {
            return Err(format!("we reject, kdl accepts: {} at {:?}", diags[0].message, diags[0].primary.span))
        }
        (Err(e), true) => return Err(format!("we accept, kdl rejects: {e:?}")),
        (Err(_), false) => return Ok(()),
        (Ok(_), true) => {}
    }
    let oracle = oracle.unwrap();
    same_nodes(src, oracle.nodes(), &doc.nodes, "")
}

fn same_nodes(src: &str, theirs: &[kdl::KdlNode], ours: &[Node], path: &str) -> Result<(), String> {
    if theirs.len() != ours.len() {
        return Err(format!("{path}: {} nodes vs our {}", theirs.len(), ours.len()));
    }
    for (t, o) in theirs.iter().zip(ours) {
        let path = format!("{path}/{}", o.name.value);
        let span = |s: miette::SourceSpan| (s.offset() as u32, (s.offset() + s.len()) as u32);
        let ours_span = |s: netcfg_lang::Span| (s.start, s.end);
        if t.name().value() != o.name.value {
            return Err(format!("{path}: name {:?} vs ours {:?}", t.name().value(), o.name.value));
        }
        if span(t.name().span()) != ours_span(o.name.span) {
            return Err(format!("{path}: name span {:?} vs ours {:?}", t.name().span(), o.name.span));
        }
        if span(t.span()) != ours_span(o.span) {
            return Err(format!("{path}: node span {:?} vs ours {:?}", t.span(), o.span));
        }
        if t.ty().map(|x| x.value()) != o.ty.as_ref().map(|x| &*x.value) {
            return Err(format!("{path}: type {:?} vs ours {:?}", t.ty(), o.ty));
        }
        if t.entries().len() != o.entries.len() {
            return Err(format!("{path}: {} entries vs our {}", t.entries().len(), o.entries.len()));
        }
        for (te, oe) in t.entries().iter().zip(&o.entries) {
            if te.name().map(|k| k.value()) != oe.key.as_ref().map(|k| &*k.value) {
                return Err(format!("{path}: key {:?} vs ours {:?}", te.name(), oe.key));
            }
            if te.ty().map(|x| x.value()) != oe.ty.as_ref().map(|x| &*x.value) {
                return Err(format!("{path}: entry type {:?} vs ours {:?}", te.ty(), oe.ty));
            }
            if !same_value(te.value(), &oe.value) {
                return Err(format!("{path}: value {:?} vs ours {:?}", te.value(), oe.value));
            }
            if let Some(k) = (te.name(), &oe.key).1 {
                if span(te.name().unwrap().span()) != ours_span(k.span) {
                    return Err(format!("{path}: key span {:?} vs ours {:?}", te.name().unwrap().span(), k.span));
                }
            }
            // The entry's value span as the old reader computed it: the entry's text after
            // `key=` and a type annotation.
            let (es, ee) = span(te.span());
            let text = &src[es as usize..ee as usize];
            let mut start = 0;
            if te.name().is_some() {
                start = text.find('=').map_or(0, |i| i + 1);
            }
            start += text[start..].len() - text[start..].trim_start().len();
            if text[start..].starts_with('(') {
                if let Some(close) = text[start..].find(')') {
                    start += close + 1;
                }
            }
            let value_text = text[start..].trim_start();
            let expected_value_span = (ee - value_text.len() as u32, ee);
            // Ours leaves out comments and line continuations before the value.
            let gap = src.get(expected_value_span.0 as usize..oe.span.start as usize).unwrap_or("x");
            let only_space = netcfg_lang::kdl::lexer::tokenize(gap).iter().all(|t| t.is_node_space());
            if expected_value_span != ours_span(oe.span) && !(expected_value_span.1 == oe.span.end && only_space) {
                return Err(format!("{path}: value span {expected_value_span:?} vs ours {:?}", oe.span));
            }
        }
        match (t.children(), &o.children) {
            (None, None) => {}
            (Some(tc), Some(oc)) => same_nodes(src, tc.nodes(), &oc.nodes, &path)?,
            (tc, oc) => return Err(format!("{path}: children {:?} vs ours {:?}", tc.is_some(), oc.is_some())),
        }
    }
    Ok(())
}

fn same_value(a: &kdl::KdlValue, b: &Value) -> bool {
    match (a, b) {
        (kdl::KdlValue::String(x), Value::String(y)) => x == y,
        (kdl::KdlValue::Integer(x), Value::Integer(y)) => *x == y.get(),
        (kdl::KdlValue::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (kdl::KdlValue::Bool(x), Value::Bool(y)) => x == y,
        (kdl::KdlValue::Null, Value::Null) => true,
        _ => false,
    }
}

#[test]
fn official_suite_differential() {
    let cases = cases();
    let (mut failures, mut known) = (Vec::new(), 0);
    for c in &cases {
        if let Err(e) = compare(&c.input) {
            if KNOWN_ORACLE_DIFFERENCES.contains(&c.name.as_str()) {
                known += 1;
            } else {
                failures.push(format!("--- {}\n{}\n{e}", c.name, c.input));
            }
        }
    }
    eprintln!(
        "differential on the suite: {} of {} cases agree, {known} known kdl-crate deviations",
        cases.len() - failures.len() - known,
        cases.len()
    );
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Suite cases where the `kdl` crate itself disagrees with the suite (its own compliance test
/// does not check rejections); on these we follow the suite.
const KNOWN_ORACLE_DIFFERENCES: &[&str] = &[
    // A `#"""` raw string on one line: the suite rejects it, kdl 6.7 accepts it.
    "multiline_raw_string_single_line_err_fail.kdl",
    // A literal U+007F in a node name: the suite rejects it, kdl 6.7 accepts it.
    "unicode_delete_fail.kdl",
];

// ---------------------------------------------------------------- generated documents

/// A small deterministic PRNG (xorshift64*), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const IDENTS: &[&str] =
    &["node", "a", "bridge", "br0", "eth-0", "-x", "+y", "ünï", "a.b", "x_y", "-", ".", "-.x", "a,b<>"];
const BAD_IDENTS: &[&str] = &["true", "null", ".5x", "-.5", "a[b]"];
const STRINGS: &[&str] = &[
    "\"s\"",
    "\"\"",
    "\"a b\"",
    "\"esc \\\" \\\\ \\n \\t \\u{1F600} \\s\"",
    "\"ws \\   \n   cont\"",
    "#\"raw \\n \"# ",
    "##\"a\"#b\"##",
    "\"\"\"\n  multi\n    line\n  \"\"\"",
    "#\"\"\"\n  raw\n  \"\"\"#",
];
const BAD_STRINGS: &[&str] = &["\"\\q\"", "\"open", "\"\"\"x\"\"\"", "\"\"\"\n  a\n b\n  \"\"\"", "\"\\u{D800}\""];
const NUMBERS: &[&str] = &[
    "0", "-1", "+2", "1_000", "1.5", "-2.5e3", "1E+2", "1e-2", "0x1F", "0o17", "0b101", "-0x1_f", "1_", "#inf",
    "#-inf", "#nan", "#true", "#false", "#null", "1e400",
];
const BAD_NUMBERS: &[&str] =
    &["1.", "1abc", "99999999999999999999999999999999999999999", "0x", ".5", "0b2", "-0x_1", "#maybe", "1e"];
const SPACES: &[&str] = &[" ", "  ", "\t", " /* c */ ", " \\\n  ", " \\ // c\n ", "\u{3000}", "/* c */", ""];
const TERMINATORS: &[&str] = &["\n", ";", " // comment\n", "\r\n", "\n\n", "\u{2028}", ";\n"];

impl Rng {
    /// Mostly a valid item, now and then an invalid one.
    fn item<'a>(&mut self, good: &[&'a str], bad: &[&'a str]) -> &'a str {
        if self.below(40) == 0 {
            self.pick(bad)
        } else {
            self.pick(good)
        }
    }
}

fn gen_value(r: &mut Rng, out: &mut String) {
    if r.below(6) == 0 {
        out.push('(');
        out.push_str(r.item(IDENTS, BAD_IDENTS));
        out.push(')');
        if r.below(4) == 0 {
            out.push(' ');
        }
    }
    match r.below(3) {
        0 => out.push_str(r.item(IDENTS, BAD_IDENTS)),
        1 => out.push_str(r.item(STRINGS, BAD_STRINGS)),
        _ => out.push_str(r.item(NUMBERS, BAD_NUMBERS)),
    }
}

fn gen_node(r: &mut Rng, out: &mut String, depth: usize) {
    out.push_str(&"  ".repeat(depth));
    if r.below(10) == 0 {
        out.push_str("/-");
        out.push_str(r.pick(&["", " ", "\n"]));
    }
    if r.below(8) == 0 {
        out.push_str("(t)");
    }
    out.push_str(if r.below(5) == 0 { r.item(STRINGS, BAD_STRINGS) } else { r.item(IDENTS, BAD_IDENTS) });
    for _ in 0..r.below(5) {
        out.push_str(r.pick(SPACES));
        if r.below(10) == 0 {
            out.push_str("/- ");
        }
        if r.below(3) == 0 {
            out.push_str(r.item(IDENTS, BAD_IDENTS));
            out.push_str(r.pick(&["=", " = ", "="]));
        }
        gen_value(r, out);
    }
    if depth < 4 && r.below(3) == 0 {
        if r.below(6) == 0 {
            out.push_str(" /- { x }");
        }
        out.push_str(r.pick(&[" {", "{", " {\n"]));
        for _ in 0..r.below(4) {
            gen_node(r, out, depth + 1);
            out.push_str(r.pick(&["\n", ";", "\n\n"]));
        }
        out.push('}');
    }
    out.push_str(r.pick(TERMINATORS));
}

/// Byte-level damage: delete, duplicate or insert a KDL-significant character.
fn mutate(r: &mut Rng, src: &str) -> String {
    let mut s = src.to_string();
    for _ in 0..1 + r.below(3) {
        let boundaries: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
        let at = boundaries[r.below(boundaries.len())];
        match r.below(3) {
            0 if at < s.len() => {
                let end = boundaries.iter().copied().find(|b| *b > at).unwrap_or(s.len());
                s.replace_range(at..end, "");
            }
            1 => s.insert_str(
                at,
                r.pick(&["{", "}", "\"", "#", "=", "(", ")", "/-", "\\", ";", "\n", "/*", "*/", " ", "1", "x"]),
            ),
            _ => {
                let end = boundaries.iter().copied().find(|b| *b > at + 3).unwrap_or(s.len());
                let piece = s[at..end].to_string();
                s.insert_str(at, &piece);
            }
        }
    }
    s
}

#[test]
fn generated_documents_differential() {
    let mut r = Rng(0x5EED_CAFE_F00D_D00D);
    let (mut failures, mut accepted, mut total) = (Vec::new(), 0, 0);
    for i in 0..1500 {
        let mut doc = String::new();
        for _ in 0..1 + r.below(4) {
            gen_node(&mut r, &mut doc, 0);
        }
        let inputs = [doc.clone(), mutate(&mut r, &doc)];
        for input in inputs {
            total += 1;
            if input.parse::<kdl::KdlDocument>().is_ok() {
                accepted += 1;
            }
            if let Err(e) = compare(&input) {
                if !oracle_bug(&input) {
                    failures.push(format!("--- case {i}: {input:?}\n{e}"));
                }
            }
        }
    }
    eprintln!("generated: {total} documents, {accepted} valid per kdl, {} differ", failures.len());
    assert!(accepted > total / 10, "the generator makes too few valid documents ({accepted} of {total})");
    failures.truncate(20);
    assert!(failures.is_empty(), "differences:\n{}", failures.join("\n"));
}

/// Inputs on which the `kdl` crate is known to deviate from the KDL v2 spec (and the suite):
/// a one-line `#"""` raw string, a literal U+007F, and a keyword glued to what follows it in a
/// property value (`k=#-inf/- 1`, `k=#true-`), which it accepts there and rejects elsewhere.
fn oracle_bug(input: &str) -> bool {
    use netcfg_lang::kdl::lexer::{tokenize, TokenKind};
    let tokens = tokenize(input);
    let glued_keyword = tokens.windows(2).any(|w| {
        w[0].kind == TokenKind::Keyword
            && (!matches!(w[0].text(input), "#true" | "#false" | "#null" | "#inf" | "#-inf" | "#nan")
                || w[1].kind == TokenKind::Slashdash)
    });
    input.contains("#\"\"\"") && !input.contains("#\"\"\"\n") || input.contains('\u{7F}') || glued_keyword
}
