//! `netcfg check` on hostile input, as a GitOps pipeline runs it on pull requests from anyone:
//! includes confined to the include root (no secrets, devices, FIFOs, symlinks out of the tree,
//! huge files, cycles through `..`), and bounded output. Every run has a deadline, so a hang is
//! a failure, not a stuck test.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A line no diagnostic may ever show: it stands for the content of a secret file.
const MARKER: &str = "SECRET-MARKER-7f3a9c";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs netcfg in `dir`; fails the test if it takes longer than `limit` (it is killed).
fn netcfg_within(dir: &Path, args: &[&str], stdin: &str, limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netcfg runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).expect("stdin takes the spec");
    drop(input);
    // Read the pipes on threads so a large output cannot block the child.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).map(|_| s)
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netcfg {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8(out_t.join().unwrap().unwrap()).expect("stdout is UTF-8");
    let stderr = String::from_utf8(err_t.join().unwrap().unwrap()).expect("stderr is UTF-8");
    let run = Run { code: status.code().expect("netcfg exits normally, not by a signal"), stdout, stderr };
    assert!(!run.stdout.contains("panicked") && !run.stderr.contains("panicked"), "netcfg panicked:\n{}", run.stderr);
    run
}

fn netcfg(dir: &Path, args: &[&str]) -> Run {
    netcfg_within(dir, args, "", Duration::from_secs(60))
}

/// A fresh directory, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("netcfg-untrusted-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> &TempDir {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).expect("parent dir");
        std::fs::write(p, text).expect("write spec");
        self
    }

    fn symlink(&self, rel: &str, target: &str) -> &TempDir {
        std::os::unix::fs::symlink(target, self.path(rel)).expect("symlink");
        self
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn codes(json: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(json).expect("valid JSON");
    doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

/// A secret file outside the repository, written as KDL would be parsed: each line is a bare
/// node name, which an unconfined include would echo as `unknown-node` with a snippet.
fn repo_with_secret() -> TempDir {
    let t = TempDir::new();
    t.write("secret", &format!("{MARKER}\nroot:$6$hash:19000\n"));
    t
}

#[test]
fn includes_outside_the_root_are_refused_and_never_shown() {
    let t = repo_with_secret();
    let abs = t.path("secret").display().to_string();
    t.write(
        "repo/a.kdl",
        &format!(
            "include \"../secret\"\ninclude \"{abs}\"\ninclude \"link.kdl\"\ninclude \"sub/../../secret\"\n\
             include \"/proc/self/environ\"\nnode \"n\" {{}}\n"
        ),
    );
    t.symlink("repo/link.kdl", "../secret");
    for format in ["human", "json", "sarif"] {
        let run = netcfg(&t.0, &["check", "--format", format, "repo/a.kdl"]);
        assert_eq!(run.code, 1, "{format}: {}{}", run.stdout, run.stderr);
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(MARKER) && !text.contains("19000"), "{format} shows the secret:\n{text}");
        }
        if format == "json" {
            assert_eq!(codes(&run.stdout), ["include-refused"; 5], "{}", run.stdout);
            let doc: Value = serde_json::from_str(&run.stdout).unwrap();
            let messages: Vec<&str> =
                doc["diagnostics"].as_array().unwrap().iter().map(|d| d["message"].as_str().unwrap()).collect();
            assert!(messages[0].starts_with("`repo/../secret` is outside the include root `"), "{messages:?}");
            assert!(messages[2].starts_with("`repo/link.kdl` is a symlink to a file outside the include root"));
            assert_eq!(doc["summary"]["files"], 1, "nothing but the spec itself was read");
        }
    }
}

#[test]
fn a_symlink_out_of_the_tree_given_on_the_command_line_is_not_read() {
    let t = repo_with_secret();
    t.write("repo/ok.kdl", "node \"n\" {}\n");
    t.symlink("repo/link.kdl", "../secret");
    let run = netcfg(&t.0, &["check", "--format", "json", "repo/ok.kdl", "repo/link.kdl"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains(MARKER) && !run.stderr.contains(MARKER));
    assert!(run.stderr.contains("`repo/link.kdl` is a symlink to a file outside the include root"), "{}", run.stderr);
    // A symlink that stays in the tree is a file like any other.
    t.symlink("repo/alias.kdl", "ok.kdl");
    let ok = netcfg(&t.0, &["check", "repo/alias.kdl"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
}

#[test]
fn include_root_widens_the_tree_explicitly() {
    let t = TempDir::new();
    t.write("repo/nodes/a.kdl", "include \"../common/t.inc.kdl\"\nnode \"a\" { use \"w\"; }\n");
    t.write("repo/common/t.inc.kdl", "template \"w\" { forwarding #true; }\n");
    let narrow = netcfg(&t.0, &["check", "--format", "json", "repo/nodes/a.kdl"]);
    assert_eq!(codes(&narrow.stdout), ["include-refused", "undefined-reference"], "{}", narrow.stdout);
    let wide = netcfg(&t.0, &["check", "--include-root", "repo", "repo/nodes/a.kdl"]);
    assert_eq!(wide.code, 0, "{}{}", wide.stdout, wide.stderr);
    // Files given on the command line must be inside an explicit root too.
    t.write("elsewhere/b.kdl", "node \"b\" {}\n");
    let outside = netcfg(&t.0, &["check", "--include-root", "repo", "elsewhere/b.kdl"]);
    assert_eq!(outside.code, 2, "{}{}", outside.stdout, outside.stderr);
    assert!(outside.stderr.contains("is outside the include root"), "{}", outside.stderr);
    let missing = netcfg(&t.0, &["check", "--include-root", "nope", "elsewhere/b.kdl"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot use `nope` as an include root"), "{}", missing.stderr);
}

#[test]
fn devices_fifos_and_directories_are_not_opened() {
    let t = TempDir::new();
    let fifo = t.path("repo/pipe.kdl");
    std::fs::create_dir_all(t.path("repo")).unwrap();
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    std::fs::create_dir_all(t.path("repo/dir.kdl")).unwrap();
    t.write("repo/a.kdl", "include \"pipe.kdl\"\ninclude \"dir.kdl\"\ninclude \"/dev/zero\"\nnode \"n\" {}\n");
    // `--include-root /` lets `/dev/zero` past the root rule, so the type rule must stop it.
    let run = netcfg_within(&t.0, &["check", "--include-root", "/", "repo/a.kdl"], "", Duration::from_secs(30));
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("`repo/pipe.kdl` is a FIFO, not a regular file"), "{}", run.stdout);
    assert!(run.stdout.contains("`repo/dir.kdl` is a directory, not a regular file"), "{}", run.stdout);
    assert!(run.stdout.contains("`/dev/zero` is a character device, not a regular file"), "{}", run.stdout);
    // Given on the command line, a FIFO is refused the same way (exit 2), without blocking.
    let direct = netcfg_within(&t.0, &["check", "repo/pipe.kdl"], "", Duration::from_secs(30));
    assert_eq!(direct.code, 2, "{}", direct.stderr);
    assert!(direct.stderr.contains("is a FIFO"), "{}", direct.stderr);
}

#[test]
fn files_over_the_size_cap_are_not_read() {
    let t = TempDir::new();
    t.write("repo/a.kdl", "include \"big.kdl\"\nnode \"n\" {}\n");
    // Sparse: 17 MiB of zero bytes that take no disk.
    let big = std::fs::File::create(t.path("repo/big.kdl")).unwrap();
    big.set_len(17 << 20).unwrap();
    let run = netcfg(&t.0, &["check", "--format", "json", "repo/a.kdl"]);
    assert_eq!(codes(&run.stdout), ["include-refused"], "{}", run.stdout);
    assert!(run.stdout.contains("is larger than 16 MiB"), "{}", run.stdout);
}

#[test]
fn cycles_through_dotdot_are_found_on_the_real_file_system() {
    let t = TempDir::new();
    // Two spellings of itself: before, each spelling was a new file, 2^depth reads.
    t.write("repo/a.kdl", "include \"../repo/a.kdl\"\ninclude \"./sub/../a.kdl\"\nnode \"n\" {}\n");
    std::fs::create_dir_all(t.path("repo/sub")).unwrap();
    let run = netcfg_within(&t.0, &["check", "--format", "json", "repo/a.kdl"], "", Duration::from_secs(20));
    assert_eq!(codes(&run.stdout), ["include-cycle", "include-cycle"], "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["summary"]["files"], 1);
}

#[test]
fn forty_thousand_junk_lines_show_a_thousand_diagnostics_and_count_the_rest() {
    let t = TempDir::new();
    let junk: String = (0..40_000).map(|i| format!("junk{i} 1 2 3\n")).collect();
    t.write("junk.kdl", &junk);
    let json = netcfg(&t.0, &["check", "--format", "json", "junk.kdl"]);
    assert_eq!(json.code, 1);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    let diags = doc["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1001);
    assert!(diags[..1000].iter().all(|d| d["code"] == "unknown-node"));
    let last = &diags[1000];
    assert_eq!(last["code"], "too-many-diagnostics");
    assert_eq!(last["message"], "39000 more diagnostics not shown: 39000 `unknown-node`");
    assert_eq!(last["line"], 1001, "it points at the first diagnostic not shown");
    assert_eq!(doc["summary"]["errors"], 40_000, "the counts include what is not shown");

    let human = netcfg(&t.0, &["check", "junk.kdl"]);
    assert_eq!(human.code, 1);
    assert_eq!(human.stdout.matches("unknown-node").count(), 1000 + 1, "1000 diagnostics and the summary");
    assert!(human.stdout.contains("39000 more diagnostics not shown"));
    assert!(human.stdout.ends_with("40000 errors in 1 file\n"), "{}", &human.stdout[human.stdout.len() - 200..]);

    let few: String = (0..1500).map(|i| format!("junk{i} 1 2 3\n")).collect();
    t.write("few.kdl", &few);
    let sarif = netcfg(&t.0, &["check", "--format", "sarif", "few.kdl"]);
    let doc: Value = serde_json::from_str(&sarif.stdout).unwrap();
    assert_eq!(doc["runs"][0]["results"].as_array().unwrap().len(), 1001);
}

#[test]
fn a_label_past_column_65535_is_drawn_plainly() {
    let t = TempDir::new();
    // miette panics formatting a padding wider than 65,535 ("Formatting argument out of range").
    t.write("long.kdl", &format!("node \"a\" {{ bridge \"br0\" {}mtu=\"x\" }}\n", " ".repeat(70_000)));
    t.write("ok.kdl", "node \"b\" {\n    bridge \"br0\" mtu=\"y\"\n}\n");
    let run = netcfg(&t.0, &["check", "long.kdl", "ok.kdl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("long.kdl:1:70029: error[invalid-value]: mtu must be an integer, found a string\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&" ".repeat(1000)), "the long line is not copied into the output");
    // Other diagnostics keep their snippets.
    assert!(run.stdout.contains("╭─[ok.kdl:2:22]"), "{}", run.stdout);
    assert!(run.stdout.ends_with("2 errors in 2 files\n"));
}

fn can_run_nft() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let nft = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(root && nft) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run this test as root with nft installed");
        eprintln!("skipping the nft -c part: needs root and nft");
    }
    root && nft
}

/// `plan --out` for the one node of `spec`; returns its nft script.
fn planned_script(t: &TempDir, spec: &str) -> String {
    t.write("spec.kdl", spec);
    let run = netcfg(&t.0, &["plan", "spec.kdl", "--out", "out"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let script = t.path("out/n/host.nft");
    if can_run_nft() {
        let out = Command::new("unshare").args(["--net", "nft", "-c", "-f"]).arg(&script).output().expect("unshare");
        assert!(out.status.success(), "nft -c rejected it:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::read_to_string(script).expect("plan wrote the script")
}

#[test]
fn set_names_map_to_distinct_nft_sets() {
    let long = "s".repeat(64);
    let long2 = format!("{}t", "s".repeat(63));
    let t = TempDir::new();
    let script = planned_script(
        &t,
        &format!(
            "node \"n\" {{\n  ethernet \"eth0\" {{ address \"192.0.2.10/24\"; }}\n  firewall {{\n    policy in=\"drop\"\n\
             \x20   set \"admins.v4\" \"10.0.0.0/24\"\n    set \"admins_v4\" \"10.1.0.0/24\"\n\
             \x20   set \"{long}\" \"10.2.0.0/24\"\n    set \"{long2}\" \"10.3.0.0/24\"\n\
             \x20   allow in proto=\"tcp\" port=22 from=\"@admins.v4\"\n    allow in proto=\"tcp\" port=80 from=\"@admins_v4\"\n\
             \x20   allow in proto=\"tcp\" port=81 from=\"@{long}\"\n    allow in proto=\"tcp\" port=82 from=\"@{long2}\"\n  }}\n}}\n"
        ),
    );
    // Before: both became `set-admins_v4-v4`, and the 64-byte names were cut to one.
    for (set, element, port) in [
        ("set-admins.v4-v4".to_string(), "10.0.0.0/24", 22),
        ("set-admins_v4-v4".to_string(), "10.1.0.0/24", 80),
        (format!("set-{long}-v4"), "10.2.0.0/24", 81),
        (format!("set-{long2}-v4"), "10.3.0.0/24", 82),
    ] {
        let add = format!("add element inet netcfg {set} {{");
        let at = script.find(&add).unwrap_or_else(|| panic!("no elements for {set}:\n{script}"));
        let body = &script[at..at + script[at..].find('}').expect("closing brace")];
        assert!(body.contains(element), "{set} holds {element}:\n{script}");
        let rule = format!("ip saddr @{set} meta l4proto tcp th dport {port} accept");
        assert!(script.contains(&rule), "{rule}:\n{script}");
    }
}

#[test]
fn interface_names_that_nft_would_read_as_patterns_are_check_errors() {
    let t = TempDir::new();
    t.write(
        "a.kdl",
        "node \"n\" {\n  bridge \"br*\"\n  bridge \"br0\"\n  ethernet \"eth\u{435}0\"\n  firewall {\n    allow in iif=\"br*\"\n  }\n}\n",
    );
    let run = netcfg(&t.0, &["check", "--format", "json", "a.kdl"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let found: Vec<(String, String, u64)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (d["code"].as_str().unwrap().into(), d["message"].as_str().unwrap().into(), d["column"].as_u64().unwrap())
        })
        .collect();
    let star = "invalid interface name: interface names cannot contain `*`";
    let cyrillic = "invalid interface name: interface names must be ASCII, found 'е'";
    assert_eq!(
        found,
        [
            ("invalid-value".into(), star.into(), 13),
            ("invalid-value".into(), cyrillic.into(), 16),
            ("invalid-value".into(), star.into(), 21),
        ]
    );
    // The exact name is matched exactly: the plan holds `"br0"`, never a pattern.
    let script = planned_script(
        &t,
        "node \"n\" {\n  bridge \"br0\"\n  firewall {\n    policy in=\"drop\"\n    allow in iif=\"br0\" proto=\"tcp\" port=80\n  }\n}\n",
    );
    assert!(script.contains("iifname \"br0\" meta l4proto tcp th dport 80 accept"), "{script}");
    assert!(!script.contains('*'), "{script}");
}

const UNFORMATTED: &str = "node   \"n1\"   {\n  bridge    \"br0\"\n}\n";

#[test]
fn fmt_never_writes_through_a_symlink_out_of_the_tree() {
    let t = TempDir::new();
    t.write("outside/victim.kdl", UNFORMATTED);
    t.write("repo/a.kdl", UNFORMATTED);
    t.symlink("repo/link.kdl", "../outside/victim.kdl");
    let run = netcfg(&t.0, &["fmt", "repo/link.kdl", "repo/a.kdl"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`repo/link.kdl` is a symlink to a file outside the include root"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(t.path("outside/victim.kdl")).unwrap(), UNFORMATTED, "left alone");
    assert_ne!(std::fs::read_to_string(t.path("repo/a.kdl")).unwrap(), UNFORMATTED, "the other file is formatted");
    // Inside the tree a symlink is followed, and stays a symlink.
    t.write("repo/real.kdl", UNFORMATTED);
    t.symlink("repo/alias.kdl", "real.kdl");
    assert_eq!(netcfg(&t.0, &["fmt", "repo/alias.kdl"]).code, 0);
    assert!(std::fs::symlink_metadata(t.path("repo/alias.kdl")).unwrap().file_type().is_symlink());
    assert_ne!(std::fs::read_to_string(t.path("repo/real.kdl")).unwrap(), UNFORMATTED);
}

#[test]
fn fmt_replaces_files_atomically_and_keeps_their_permissions() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = TempDir::new();
    t.write("repo/a.kdl", UNFORMATTED);
    let path = t.path("repo/a.kdl");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let run = netcfg(&t.0, &["fmt", "repo/a.kdl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_ne!(after.ino(), before.ino(), "a new file was renamed into place, not the old one truncated");
    let left: Vec<String> = std::fs::read_dir(t.path("repo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["a.kdl"], "no temporary file is left behind");
}
