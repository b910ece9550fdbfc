//! `netcfg trace` through the binary: the four incidents traced broken (the packet dies, at the
//! step the incident is about, exit 1) and fixed (delivered and answered, exit 0), as goldens
//! in `tests/golden-trace/` (text, and JSON for one); usage errors exit 2.
//! `UPDATE_GOLDEN=1 cargo test --test trace_cli` rewrites the goldens.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn netcfg(args: &[&str]) -> (i32, String, String) {
    netcfg_testkit::netcfg_in(env!("CARGO_BIN_EXE_netcfg"), Some(root()), args).into()
}

#[track_caller]
fn golden(name: &str, got: &str) {
    let path = root().join("tests/golden-trace").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{} differs (UPDATE_GOLDEN=1 rewrites it after review)", path.display());
}

/// Each incident: its example directory, the packet that shows it, and what kills the packet
/// in the broken spec (stage and a word of the reason).
const INCIDENTS: &[(&str, &[&str], &str, &str)] = &[
    // 000: the host's ARP request for the task is ignored by the task's strict rp_filter.
    ("ecs-awsvpc", &["--netns", "task-1", "--to", "169.254.170.2:80"], "reply step 4 (neighbour", "rp_filter"),
    // 001: the API was given nginx's port; nginx's request to 127.0.0.1:8080 is refused.
    ("fargate-task", &["--netns", "web-1", "--to", "127.0.0.1:8080"], "forward step 4 (deliver", "nothing listens"),
    // 002: the redirect sends every inbound connection to a port nobody listens on.
    (
        "linkerd-redirect",
        &["--in", "eth0", "--from", "10.0.0.1", "--to", "10.96.0.20:80"],
        "forward step 8 (deliver",
        "4143",
    ),
    // 004: pod-b's reply is bridged past conntrack and reaches pod-a un-NAT-ed.
    ("k8s-service-hairpin", &["--netns", "pod-a", "--to", "10.96.0.10:80"], "reply step 7 (deliver", "reset"),
];

#[test]
fn incidents_traced_broken_die_where_the_incident_did() {
    for (dir, args, step, reason) in INCIDENTS {
        let spec = format!("examples/{dir}/broken.kdl");
        let mut a = vec!["trace", spec.as_str()];
        a.extend_from_slice(args);
        let (code, out, err) = netcfg(&a);
        assert_eq!(code, 1, "{dir}: {out}{err}");
        let result = out.lines().last().expect("a result line");
        assert!(result.starts_with(&format!("result: dropped at {step}")), "{dir}: {result}");
        assert!(result.contains(reason), "{dir}: {result}");
        golden(&format!("{dir}__broken.txt"), &out);
    }
}

#[test]
fn incidents_traced_fixed_are_delivered_and_answered() {
    for (dir, args, _, _) in INCIDENTS {
        let spec = format!("examples/{dir}/fixed.kdl");
        let mut a = vec!["trace", spec.as_str()];
        a.extend_from_slice(args);
        let (code, out, err) = netcfg(&a);
        assert_eq!(code, 0, "{dir}: {out}{err}");
        assert_eq!(out.lines().last(), Some("result: delivered, and the reply comes back"), "{dir}");
        assert!(err.is_empty(), "{dir}: a fixed spec has no findings: {err}");
        golden(&format!("{dir}__fixed.txt"), &out);
    }
}

#[test]
fn json_names_every_step_with_its_span() {
    let (code, out, _) = netcfg(&[
        "trace",
        "examples/ecs-awsvpc/broken.kdl",
        "--netns",
        "task-1",
        "--to",
        "169.254.170.2:80",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["delivered"], false);
    assert_eq!(v["forward"]["outcome"], "delivered");
    let reply = &v["reply"];
    assert_eq!(reply["outcome"], "dropped");
    let died = reply["steps"].as_array().expect("steps").iter().find(|s| s["verdict"] == "dropped").expect("a drop");
    assert_eq!(died["stage"], "neighbour");
    assert_eq!(died["netns"], "@host");
    // The span is the task's `rp-filter "strict"`.
    assert_eq!(died["span"]["file"], "examples/ecs-awsvpc/broken.kdl");
    let line = died["span"]["line"].as_u64().expect("line") as usize;
    let text = std::fs::read_to_string(root().join("examples/ecs-awsvpc/broken.kdl")).expect("example");
    assert!(text.lines().nth(line - 1).expect("the line").contains("rp-filter \"strict\""));
    golden("ecs-awsvpc__broken.json", &out);
}

#[test]
fn usage_errors_exit_2_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["trace", "examples/fleet/fleet.kdl", "--to", "10.0.0.1:80"], "pick one with --node"),
        (&["trace", "examples/ecs-awsvpc/fixed.kdl", "--node", "nope", "--to", "10.0.0.1:80"], "no node `nope`"),
        (&["trace", "examples/ecs-awsvpc/fixed.kdl", "--to", "10.0.0.1"], "give a destination port"),
        (
            &["trace", "examples/ecs-awsvpc/fixed.kdl", "--in", "eth0", "--to", "10.0.0.135:80"],
            "needs a source address",
        ),
        (&["trace", "examples/ecs-awsvpc/fixed.kdl", "--netns", "nope", "--to", "10.0.0.1:80"], "no namespace `nope`"),
        (&["trace", "examples/ecs-awsvpc/fixed.kdl", "--to", "not-an-address"], "is not an address"),
    ];
    for (args, msg) in cases {
        let (code, out, err) = netcfg(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_fleet_trace_follows_the_packet_onto_another_node() {
    // worker-1's pod to worker-2's pod over the host-gw routes of the fleet example.
    let base =
        ["trace", "examples/fleet/fleet.kdl", "--node", "worker-1", "--netns", "web-1", "--to", "10.244.2.2:8080"];
    let (code, out, err) = netcfg(&base);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("leaves node `worker-1` toward node `worker-2`"), "{out}");
    let mut fleet = base.to_vec();
    fleet.push("--fleet");
    let (code, out, err) = netcfg(&fleet);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[worker-2/web-2] deliver: delivered to `web`"), "{out}");
    assert_eq!(out.lines().last(), Some("result: delivered, and the reply comes back"));
}
