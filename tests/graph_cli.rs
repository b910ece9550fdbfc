//! `netcfg graph`: every example renders to DOT that names each of its nodes and links, and
//! Graphviz accepts it (SVG, and PNG for one example) when `dot` is installed (CI installs
//! it); a two-node spec shows each kind of edge.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn netcfg(args: &[&str], stdin: Option<&str>) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcfg"))
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("netcfg runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("netcfg ends");
    (out.status.code().expect("exit code"), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn have_dot() -> bool {
    let ok = Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI installs graphviz (.ci/run)");
        eprintln!("Graphviz `dot` is not installed: rendering is not checked");
    }
    ok
}

/// Entry-point examples (the rule of `netcfg check DIR`).
fn examples() -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root().join("examples")).expect("examples") {
        let dir = dir.expect("entry").path();
        for f in std::fs::read_dir(&dir).into_iter().flatten() {
            let f = f.expect("entry").path();
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            if name.ends_with(".kdl") && !name.ends_with(".inc.kdl") {
                out.push(f.strip_prefix(root()).expect("below root").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_example_renders() {
    let dot = have_dot();
    let examples = examples();
    assert!(examples.len() >= 10);
    for rel in &examples {
        let (code, out, err) = netcfg(&["graph", rel], None);
        assert_eq!(code, 0, "{rel}: {err}");
        let text = String::from_utf8(out).expect("DOT is UTF-8");
        assert!(text.starts_with("digraph netcfg {") && text.ends_with("}\n"), "{rel}");
        // Every node of the example is a cluster, every declared link a box.
        let spec = std::fs::read_to_string(root().join(rel)).expect("example");
        for line in spec.lines().map(str::trim) {
            let link_kws = netcfg_lang::links::LINK_KEYWORDS.iter().map(|k| format!("{k} \""));
            for kw in ["node \"".to_string(), "peer \"".to_string()].into_iter().chain(link_kws) {
                let kw = kw.strip_suffix('"').expect("quoted");
                if let Some(rest) = line.strip_prefix(kw).filter(|r| r.starts_with('"')) {
                    let name = rest.split('"').nth(1).expect("a quoted name");
                    let want = if kw == "node " { format!("\"node {name}\"") } else { format!("label=\"{name}\\n") };
                    assert!(text.contains(&want), "{rel}: the graph lacks {kw}`{name}`");
                }
            }
        }
        if dot {
            let out = Command::new("sh")
                .args(["-c", "dot -Tsvg 2>&1 >/dev/null"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().expect("stdin").write_all(text.as_bytes())?;
                    c.wait_with_output()
                })
                .expect("dot runs");
            // Font configuration notes of a bare machine aside, dot must not complain.
            let complaints: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.to_lowercase().contains("font"))
                .map(str::to_string)
                .collect();
            assert!(out.status.success() && complaints.is_empty(), "{rel}: dot: {complaints:?}");
            let (code, svg, err) = netcfg(&["graph", rel, "--format", "svg"], None);
            assert_eq!(code, 0, "{rel}: {err}");
            let svg = String::from_utf8(svg).expect("SVG is text");
            assert!(svg.contains("<svg") && svg.contains("</svg>"), "{rel}");
        }
    }
}

#[test]
fn png_to_a_file_and_one_node_only() {
    if !have_dot() {
        return;
    }
    let out = std::env::temp_dir().join(format!("netcfg-graph-{}.png", std::process::id()));
    let (code, stdout, err) = netcfg(
        &[
            "graph",
            "examples/fleet/fleet.kdl",
            "--node",
            "worker-2",
            "--format",
            "png",
            "--out",
            out.to_str().expect("path"),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty());
    let png = std::fs::read(&out).expect("the PNG");
    let _ = std::fs::remove_file(&out);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000, "{} bytes", png.len());
    let (_, dot, _) = netcfg(&["graph", "examples/fleet/fleet.kdl", "--node", "worker-2"], None);
    let dot = String::from_utf8(dot).expect("UTF-8");
    assert!(dot.contains("\"node worker-2\"") && !dot.contains("\"node worker-1\""), "{dot}");
    let (code, _, err) = netcfg(&["graph", "examples/fleet/fleet.kdl", "--node", "nope"], None);
    assert_eq!(code, 2);
    assert!(err.contains("no node `nope`"), "{err}");
}

const TWO_NODES: &str = r#"node "a" {
    ethernet "eth0" {
        address "10.0.0.11/24"
    }
    vxlan "vx42" vni=42 local="10.0.0.11" remote="10.0.0.12" dev="eth0" {
        address "10.200.0.1/24"
    }
    bridge "br0" {
        address "10.1.0.1/24"
    }
    netns "app" {
        macvlan "mv0" parent="eth0" mode="bridge" {
            address "10.0.0.50/24"
        }
        veth "eth1" {
            address "10.1.0.2/24"
            peer "v-app" netns="@host" master="br0"
        }
        listen "web" port=8080
    }
    service "web" vip="10.96.0.1" port=80 {
        backend "10.1.0.2:8080"
        backend "10.2.0.2:8080"
        backend "127.0.0.1:9000"
    }
    publish "web" port=8443 to="10.1.0.2:8080" address="10.0.0.11"
}
node "b" {
    ethernet "eth0" {
        address "10.0.0.12/24"
    }
    vxlan "vx42" vni=42 local="10.0.0.12" remote="10.0.0.11" dev="eth0" {
        address "10.200.0.2/24"
    }
}
"#;

#[test]
fn each_kind_of_edge_is_drawn() {
    let (code, dot, err) = netcfg(&["graph", "-"], Some(TWO_NODES));
    assert_eq!(code, 0, "{err}");
    let dot = String::from_utf8(dot).expect("UTF-8");
    let edge = |from: &str, to: &str, label: &str| {
        let line = dot
            .lines()
            .find(|l| l.contains(&format!("{from} -> {to} ")))
            .unwrap_or_else(|| panic!("no edge {from} -> {to} in\n{dot}"));
        assert!(line.contains(label), "{line}");
    };
    // Link ids are n<node>_l<link index>; find them by label.
    let id = |label: &str, node: usize| {
        dot.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("n{node}_l")) && l.contains(&format!("label=\"{label}\\n")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no link {label} on node {node}:\n{dot}"))
            .to_string()
    };
    edge(&id("v-app", 0), &id("br0", 0), "port");
    let (eth1, vapp) = (id("eth1", 0), id("v-app", 0));
    assert!(dot.contains(&format!("{vapp} -> {eth1} ")) || dot.contains(&format!("{eth1} -> {vapp} ")), "veth pair");
    edge(&id("mv0", 0), &id("eth0", 0), "macvlan bridge");
    edge(&id("vx42", 0), &id("eth0", 0), "underlay");
    edge(&id("vx42", 0), &id("vx42", 1), "VNI 42");
    assert!(dot.contains("label=\"10.0.0.0/24\", shape=note"), "the shared LAN of both nodes");
    assert!(dot.contains("label=\"service web\\n10.96.0.1:80/tcp\""));
    assert!(dot.lines().any(|l| l.contains(&format!("-> {eth1} [label=\":8080\""))), "service to its backend's link");
    assert!(dot.contains("label=\"10.2.0.2\", shape=plaintext"), "a backend outside the fleet");
    assert!(dot.contains("\"netns app\""));
    // A loopback backend is the service namespace's own `lo`, drawn inside it.
    assert!(dot.contains("n0_ns0_lo [label=\"lo\\n127.0.0.1\""), "{dot}");
    assert!(dot.contains("-> n0_ns0_lo [label=\":9000\""), "{dot}");
    // A published port, to its backend's link.
    assert!(dot.contains("n0_ns0_p0 [label=\"publish web\\n10.0.0.11:8443/tcp\""), "{dot}");
    assert!(dot.contains(&format!("n0_ns0_p0 -> {eth1} [label=\":8080\"")), "{dot}");
}
