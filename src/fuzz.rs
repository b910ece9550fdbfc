//! Fuzzing that runs on the stable toolchain, inside `cargo test`.
//!
//! Why this shape: libFuzzer (cargo-fuzz) needs nightly, which this project cannot fetch, and
//! `cargo afl` needs AFL++ built from source plus a second, instrumented build of the whole
//! workspace: minutes of CI per run before the first execution. An in-process structured
//! mutator needs neither and reaches the code through the same functions the commands call.
//! It is guided by a cheap signal instead of coverage: a mutant whose set of diagnostic codes
//! (or parse outcome) was never seen joins the corpus, so inputs that reach new checks breed.
//!
//! Targets (each a `#[test]`, time-boxed by `NETCFG_FUZZ_SECS`, default 15 s each):
//!
//! - `check`: parse + resolve + checks + all three renderings; no panic, every span inside its
//!   file, JSON and SARIF parse.
//! - `fmt`: on syntax-clean input `canonical::format` succeeds, is idempotent, and the
//!   formatted text has the same findings (code and message) as the original.
//! - `lower`: every spec that checks clean plans without errors, and its nft scripts pass the
//!   real `nft -c` (batched, in a scratch network namespace; needs root and nft).
//!
//! The corpus is seeded from `examples/`, `tests/malformed/`, `spec.md`'s KDL blocks and
//! `tests/fuzz-regressions/`. A failing input is written to `target/fuzz-findings/`; once
//! fixed it belongs in `tests/fuzz-regressions/`, which [`regressions_replay_clean`] replays.
//!
//! Inputs are capped (32 KiB, braces nested at most 32 deep): deep nesting and huge values are
//! the parser's own bounds, tested where the parser is.

use crate::report::{self, human, Findings, Format};
use netcfg_lang::diagnostic::sort_diagnostics;
use netcfg_lang::{parse_str, Diagnostic, Severity};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAX_LEN: usize = 32 << 10;
const MAX_DEPTH: usize = 32;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// xorshift64*: fast, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Tokens worth inserting: keywords, punctuation, edge values, names nft treats specially.
const DICT: &[&str] = &[
    "node",
    "template",
    "include",
    "use",
    "netns",
    "bridge",
    "veth",
    "vxlan",
    "macvlan",
    "ethernet",
    "dummy",
    "vlan",
    "bond",
    "vrf",
    "ipvlan",
    "gre",
    "sit",
    "ip6tnl",
    "parent",
    "master",
    "primary",
    "802.3ad",
    "peer",
    "address",
    "route",
    "table",
    "rule",
    "nexthop",
    "fwmark",
    "priority",
    "neighbor",
    "sysctl",
    "forwarding",
    "rp-filter",
    "firewall",
    "policy",
    "zone",
    "set",
    "allow",
    "deny",
    "reject",
    "service",
    "backend",
    "masquerade",
    "snat",
    "redirect",
    "listen",
    "publish",
    "netmap",
    "tproxy",
    "{",
    "}",
    ";",
    "\"",
    "=",
    "/-",
    "//",
    "/*",
    "*/",
    "\\",
    "#true",
    "#false",
    "#null",
    "@host",
    "@admins",
    "*",
    "..",
    "/",
    "br*",
    "admins.v4",
    "admins_v4",
    "eth0",
    "lo",
    "é",
    "\u{435}",
    "\u{200b}",
    "\r",
    "\t",
    "0",
    "-1",
    "65535",
    "65536",
    "4294967296",
    "1e400",
    "0x10",
    "10.0.0.1",
    "10.0.0.0/8",
    "::",
    "fd00::1/64",
    "0.0.0.0/0",
    "256.1.1.1",
    "1-65535",
    "80,443",
    "tcp",
    "udp",
    "icmp",
    "sctp",
    "in",
    "out",
    "forward",
    "drop",
    "accept",
    "strict",
    "loose",
    "net.ipv4.ip_forward",
    "mtu=",
    "master=",
    "dev=",
    "via=",
    "from=",
    "to=",
    "port=",
    "proto=",
    "iif=",
    "oif=",
    "netns=",
    "weight=",
    "vni=",
    "r#\"x\"#",
    "\"\"\"\n\"\"\"",
];

/// Seeds: every spec the project ships, the malformed corpus, spec.md's examples, regressions.
fn corpus() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "kdl") {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    out.push(text);
                }
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["examples", "tests/malformed", "tests/fuzz-regressions"] {
        walk(&root().join(dir), &mut out);
    }
    let spec = std::fs::read_to_string(root().join("spec.md")).expect("spec.md");
    let mut rest = spec.as_str();
    while let Some(start) = rest.find("```kdl\n") {
        rest = &rest[start + 7..];
        let end = rest.find("```").unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    assert!(out.len() > 20, "the corpus is seeded ({} inputs)", out.len());
    out
}

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn line_ranges(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push((start, s.len()));
    }
    out
}

/// One to four structured mutations of `input`.
fn mutate(rng: &mut Rng, corpus: &[String], input: &str) -> String {
    let mut s = input.to_string();
    for _ in 0..1 + rng.below(4) {
        let at = boundary(&s, rng.below(s.len() + 1));
        match rng.below(10) {
            0 => {
                let end = boundary(&s, at + 1 + rng.below(64));
                s.replace_range(at..end, "");
            }
            1 | 2 => {
                let token: &&str = rng.pick(DICT);
                s.insert_str(at, token);
            }
            3 => {
                let lines = line_ranges(&s);
                if !lines.is_empty() {
                    let (a, b) = *rng.pick(&lines);
                    let line = s[a..b].to_string();
                    s.insert_str(a, &line);
                }
            }
            4 => {
                // Splice a line from another input.
                let other = rng.pick(corpus);
                let lines = line_ranges(other);
                if !lines.is_empty() {
                    let (a, b) = *rng.pick(&lines);
                    let at = line_ranges(&s).first().map_or(0, |_| {
                        let l = line_ranges(&s);
                        rng.pick(&l).0
                    });
                    s.insert_str(at, &other[a..b]);
                }
            }
            5 => {
                // Replace a quoted string's content.
                let quotes: Vec<usize> = s.match_indices('"').map(|(i, _)| i).collect();
                if quotes.len() >= 2 {
                    let k = rng.below(quotes.len() - 1);
                    let (a, b) = (quotes[k] + 1, quotes[k + 1]);
                    let with = rng.pick(DICT).replace('"', "");
                    s.replace_range(a..b, &with);
                }
            }
            6 => {
                // Replace a number.
                let digits: Vec<usize> = s.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
                if !digits.is_empty() {
                    let a = *rng.pick(&digits);
                    let b = a + s[a..].find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len() - a);
                    let n = *rng.pick(&["0", "1", "15", "16", "255", "256", "65535", "65536", "99999999999"]);
                    s.replace_range(a..b, n);
                }
            }
            7 => {
                let lines = line_ranges(&s);
                if lines.len() >= 2 {
                    let (a, b) = *rng.pick(&lines);
                    let line = s[a..b].to_string();
                    let times = 1 + rng.below(50);
                    s.insert_str(a, &line.repeat(times));
                }
            }
            8 => {
                let c = *rng.pick(&['\0', '\u{7f}', 'ß', '\u{feff}', '\u{1F600}', '{', '}', '"', '\n', '#']);
                s.insert(at, c);
            }
            _ => {
                // Swap two lines.
                let lines = line_ranges(&s);
                if lines.len() >= 2 {
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    let (i, j) = (i.min(j), i.max(j));
                    if i != j {
                        let (a, b) = lines[i];
                        let (c, d) = lines[j];
                        let first = s[a..b].to_string();
                        let second = s[c..d].to_string();
                        s.replace_range(c..d, &first);
                        s.replace_range(a..b, &second);
                    }
                }
            }
        }
    }
    s
}

/// Whether the input is inside the bounds this fuzzer explores.
fn in_bounds(s: &str) -> bool {
    let mut depth = 0usize;
    for b in s.bytes() {
        match b {
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    s.len() <= MAX_LEN
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Parse, resolve, check and render: the signature of what was found, or what went wrong.
fn target_check(text: &str) -> Result<Vec<&'static str>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let parsed = parse_str("fuzz.kdl", text);
        let mut diags = parsed.diagnostics.clone();
        diags.extend(netcfg_compiler::compile(&parsed.spec).diagnostics);
        sort_diagnostics(&mut diags);
        for d in &diags {
            for l in std::iter::once(&d.primary).chain(&d.secondary) {
                let len = parsed.sources.get(l.span.file).text.len() as u32;
                if l.span.end > len || l.span.start > l.span.end {
                    return Err(format!("`{}` has a span {:?} outside its file ({len} bytes)", d.code, l.span));
                }
            }
        }
        let findings = Findings { diagnostics: &diags, sources: &parsed.sources, suppressed: &[] };
        let style = human::Style { color: false, width: Some(100) };
        report::render(Format::Human, &findings, &style);
        for format in [Format::Json, Format::Sarif] {
            let out = report::render(format, &findings, &style);
            serde_json::from_str::<serde_json::Value>(&out).map_err(|e| format!("{format:?} is not JSON: {e}"))?;
        }
        let mut codes: Vec<&'static str> = diags.iter().map(|d| d.code.id).collect();
        codes.sort_unstable();
        codes.dedup();
        Ok(codes)
    }))
    .map_err(panic_text)?
}

fn findings_of(text: &str) -> Vec<(&'static str, String)> {
    let parsed = parse_str("fuzz.kdl", text);
    let mut diags = parsed.diagnostics.clone();
    diags.extend(netcfg_compiler::compile(&parsed.spec).diagnostics);
    sort_diagnostics(&mut diags);
    let mut out: Vec<(&'static str, String)> = diags.into_iter().map(|d| (d.code.id, d.message)).collect();
    out.sort();
    out
}

/// `fmt` on syntax-clean input: succeeds, idempotent, same findings.
fn target_fmt(text: &str) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let parsed = parse_str("fuzz.kdl", text);
        if parsed.diagnostics.iter().any(|d| matches!(d.code.id, "syntax" | "invalid-utf8")) {
            return Ok(());
        }
        let out = crate::canonical::format(text).map_err(|e| format!("fmt refused valid KDL: {e}"))?;
        let again = crate::canonical::format(&out).map_err(|e| format!("fmt refused its own output: {e}"))?;
        if again != out {
            return Err("fmt is not idempotent".into());
        }
        let (before, after) = (findings_of(text), findings_of(&out));
        if before != after {
            return Err(format!("fmt changed the findings: {before:?} -> {after:?}"));
        }
        Ok(())
    }))
    .map_err(panic_text)?
}

/// A spec that checks clean plans cleanly: its nft scripts (one per namespace), or the problem.
fn target_lower(text: &str) -> Result<Vec<String>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let parsed = parse_str("fuzz.kdl", text);
        let compiled = netcfg_compiler::compile(&parsed.spec);
        let errors = |d: &[Diagnostic]| d.iter().any(|d| d.severity == Severity::Error);
        if errors(&parsed.diagnostics) || errors(&compiled.diagnostics) {
            return Ok(Vec::new());
        }
        let mut scripts = Vec::new();
        for node in &compiled.fleet.nodes {
            let mut diags = Vec::new();
            let plan = netcfg_backends::plan::plan_node(node, &mut diags);
            if let Some(d) = diags.iter().find(|d| d.severity == Severity::Error) {
                return Err(format!("checks clean but planning fails: {} {}", d.code, d.message));
            }
            scripts.extend(plan.nft.into_iter().map(|(_, s)| s.text).filter(|t| !t.is_empty()));
        }
        Ok(scripts)
    }))
    .map_err(panic_text)?
}

fn can_run_nft() -> bool {
    let root_user = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let nft = std::process::Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(root_user && nft) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run the lowering fuzzer as root with nft");
        eprintln!("fuzz lower: no root or no nft; scripts are built but not given to nft -c");
    }
    root_user && nft
}

/// `nft -c` on several scripts at once (each replaces the table, so they chain); `Err` with the
/// nft output when the batch is refused.
fn nft_check(scripts: &[String]) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("unshare")
        .args(["--net", "nft", "-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let mut stdin = child.stdin.take().expect("piped");
    for s in scripts {
        stdin.write_all(s.as_bytes()).expect("nft reads its script");
        stdin.write_all(b"\n").expect("nft reads its script");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("nft finishes");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn budget() -> Duration {
    let secs = std::env::var("NETCFG_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    std::env::var("NETCFG_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    })
}

/// Keeps a failing input for a person to look at and, once fixed, to move to the regressions.
fn keep(target: &str, input: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let dir = root().join("target/fuzz-findings");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{:016x}.kdl", h.finish()));
    let _ = std::fs::write(&path, input);
    path
}

/// Runs `target` on mutants until the budget is spent, on a thread with a large stack (the
/// parser's recursion is bounded elsewhere; this keeps the fuzzer from testing the stack).
fn fuzz<F>(name: &'static str, mut target: F)
where
    F: FnMut(&str) -> Result<Vec<String>, String> + Send + 'static,
{
    let seed = seed();
    let handle = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut rng = Rng(seed);
            let mut corpus = corpus();
            let mut seen: HashSet<Vec<String>> = HashSet::new();
            for c in corpus.clone() {
                if let Ok(sig) = target(&c) {
                    seen.insert(sig);
                }
            }
            let start = Instant::now();
            let (mut execs, mut failures) = (0u64, Vec::new());
            while start.elapsed() < budget() {
                let base = rng.pick(&corpus).clone();
                let input = mutate(&mut rng, &corpus, &base);
                if !in_bounds(&input) {
                    continue;
                }
                execs += 1;
                match target(&input) {
                    Ok(sig) => {
                        if seen.insert(sig) {
                            corpus.push(input);
                        }
                    }
                    Err(why) => failures.push(format!("{}: {why}", keep(name, &input).display())),
                }
            }
            eprintln!(
                "fuzz {name}: seed {seed}, {execs} executions in {:.1} s, corpus {} inputs, {} failures",
                start.elapsed().as_secs_f64(),
                corpus.len(),
                failures.len()
            );
            failures
        })
        .expect("fuzz thread");
    let failures = handle.join().expect("the fuzz thread itself does not panic");
    assert!(failures.is_empty(), "fuzz {name} found (seed {seed}):\n{}", failures.join("\n"));
}

#[test]
fn fuzz_check() {
    fuzz("check", |t| target_check(t).map(|codes| codes.into_iter().map(String::from).collect()));
}

#[test]
fn fuzz_fmt() {
    fuzz("fmt", |t| {
        target_fmt(t)?;
        // The signature: which findings, so inputs reaching new checks join the corpus.
        let mut codes: Vec<String> = findings_of(t).into_iter().map(|(c, _)| c.to_string()).collect();
        codes.dedup();
        Ok(codes)
    });
}

#[test]
fn fuzz_lower() {
    let nft = can_run_nft();
    let mut batch: Vec<(String, String)> = Vec::new();
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = checked.clone();
    fuzz("lower", move |t| {
        let scripts = target_lower(t)?;
        let sig = vec![scripts.len().min(3).to_string()];
        if nft && !scripts.is_empty() {
            batch.extend(scripts.into_iter().map(|s| (t.to_string(), s)));
            if batch.len() >= 40 {
                let texts: Vec<String> = batch.iter().map(|(_, s)| s.clone()).collect();
                counter.fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
                if nft_check(&texts).is_err() {
                    // Find the scripts nft refuses, one by one.
                    let bad: Vec<String> = batch
                        .iter()
                        .filter_map(|(input, s)| {
                            nft_check(std::slice::from_ref(s))
                                .err()
                                .map(|e| format!("{}: nft -c: {e}", keep("lower", input).display()))
                        })
                        .collect();
                    batch.clear();
                    if !bad.is_empty() {
                        return Err(bad.join("\n"));
                    }
                }
                batch.clear();
            }
        }
        Ok(sig)
    });
    eprintln!("fuzz lower: {} scripts accepted by nft -c", checked.load(std::sync::atomic::Ordering::Relaxed));
}

/// Inputs that once broke a target: each must now pass all of them.
#[test]
fn regressions_replay_clean() {
    let dir = root().join("tests/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz-regressions exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "kdl") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("readable")).into_owned();
        let name = path.display();
        target_check(&text).unwrap_or_else(|e| panic!("{name}: check: {e}"));
        target_fmt(&text).unwrap_or_else(|e| panic!("{name}: fmt: {e}"));
        let scripts = target_lower(&text).unwrap_or_else(|e| panic!("{name}: lower: {e}"));
        if !scripts.is_empty() && can_run_nft() {
            nft_check(&scripts).unwrap_or_else(|e| panic!("{name}: nft -c: {e}"));
        }
        n += 1;
    }
    assert!(n > 0, "the regression corpus is not empty");
}
