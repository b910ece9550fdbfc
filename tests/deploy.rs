//! `deploy/`: the systemd units, the Kubernetes DaemonSet and the Ansible playbook, validated
//! offline: unit files by a small parser (sections, known keys, ordering) and by
//! `systemd-analyze verify` where it is installed; YAML by a real parser and the shape each
//! tool needs; and every netcfg command line in them against the real CLI (`--help` of the
//! subcommand lists every flag used), so a renamed flag breaks this test, not a boot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// A unit file as `section -> [(key, value)]`, failing on anything that is not a comment, a
/// section header or `key=value`.
fn parse_unit(path: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).expect("unit file");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) =
            line.split_once('=').unwrap_or_else(|| panic!("{}:{}: not key=value", path.display(), n + 1));
        let section = section.clone().unwrap_or_else(|| panic!("{}:{}: key outside a section", path.display(), n + 1));
        out.entry(section).or_default().push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

fn values<'a>(unit: &'a BTreeMap<String, Vec<(String, String)>>, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section).into_iter().flatten().filter(|(k, _)| k == key).flat_map(|(_, v)| v.split_whitespace()).collect()
}

/// Every `--flag` a netcfg command line uses is one `netcfg SUBCOMMAND --help` lists.
fn assert_cli_accepts(words: &[String], origin: &str) {
    assert_eq!(words.first().map(|w| w.rsplit('/').next().unwrap_or(w)), Some("netcfg"), "{origin}: {words:?}");
    let sub = words.get(1).unwrap_or_else(|| panic!("{origin}: no subcommand"));
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg")).args([sub, "--help"]).output().expect("netcfg runs");
    assert!(out.status.success(), "{origin}: `netcfg {sub}` is not a command");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{origin}: `netcfg {sub}` has no {flag}"
        );
    }
}

const SECTION_KEYS: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "Documentation",
            "DefaultDependencies",
            "ConditionPathExists",
            "Wants",
            "After",
            "Before",
            "Conflicts",
        ],
    ),
    ("Service", &["Type", "RemainAfterExit", "ExecStart", "TimeoutStartSec"]),
    ("Timer", &["OnBootSec", "OnUnitActiveSec", "RandomizedDelaySec"]),
    ("Install", &["WantedBy"]),
];

#[test]
fn systemd_units_parse_and_order_apply_before_the_network_is_online() {
    let dir = deploy().join("systemd");
    let mut units = BTreeMap::new();
    for name in ["netcfg-apply.service", "netcfg-verify.service", "netcfg-verify.timer"] {
        let unit = parse_unit(&dir.join(name));
        for (section, keys) in &unit {
            let known =
                SECTION_KEYS.iter().find(|(s, _)| s == section).unwrap_or_else(|| panic!("{name}: [{section}]"));
            for (key, _) in keys {
                assert!(known.1.contains(&key.as_str()), "{name}: unknown key {key} in [{section}]");
            }
        }
        for (_, exec) in unit.get("Service").into_iter().flatten().filter(|(k, _)| k == "ExecStart") {
            let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
            assert_cli_accepts(&words, name);
        }
        units.insert(name, unit);
    }
    let apply = &units["netcfg-apply.service"];
    assert!(values(apply, "Unit", "Before").contains(&"network-online.target"));
    assert!(values(apply, "Unit", "Before").contains(&"network.target"));
    assert!(values(apply, "Unit", "After").contains(&"network-pre.target"));
    assert!(values(apply, "Unit", "After").contains(&"systemd-udev-trigger.service"), "NICs named first");
    assert_eq!(values(apply, "Service", "Type"), ["oneshot"]);
    assert_eq!(values(apply, "Service", "ExecStart")[1], "apply");
    assert_eq!(values(&units["netcfg-verify.service"], "Service", "ExecStart")[1], "verify");
    assert!(values(&units["netcfg-verify.timer"], "Timer", "OnUnitActiveSec").len() == 1);
    assert_eq!(values(&units["netcfg-verify.timer"], "Install", "WantedBy"), ["timers.target"]);
}

#[test]
fn systemd_analyze_verifies_the_units() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        // CI installs systemd when it can (.ci/run); the parser test above always runs.
        eprintln!("skipping systemd_analyze_verifies_the_units: systemd-analyze is not installed");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("netcfg-units-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let names = ["netcfg-apply.service", "netcfg-verify.service", "netcfg-verify.timer"];
    for name in names {
        // The units name the installed binary; verify checks ExecStart is executable.
        let text = std::fs::read_to_string(deploy().join("systemd").join(name)).expect("unit");
        std::fs::write(tmp.join(name), text.replace("/usr/local/bin/netcfg", env!("CARGO_BIN_EXE_netcfg")))
            .expect("write unit");
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(names.iter().map(|n| tmp.join(n)))
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&tmp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("netcfg")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

fn load_yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).expect("YAML file");
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec().expect("a list").iter().map(|w| w.as_str().expect("a string").to_string()).collect()
}

/// The netcfg command in a `sh -c` script, `$VARS` and quotes left as words.
fn netcfg_words(script: &str) -> Vec<String> {
    let at = script.find("netcfg ").expect("the script runs netcfg");
    let line = script[at..].lines().next().expect("a line");
    line.split("||").next().expect("the command").split_whitespace().map(|w| w.trim_matches('"').to_string()).collect()
}

#[test]
fn kubernetes_daemonset_runs_netcfg_on_the_host_network_with_verify_as_readiness() {
    let docs = load_yaml(&deploy().join("kubernetes/netcfg.yaml"));
    assert_eq!(docs.len(), 1);
    let ds = &docs[0];
    assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_hash().expect("selector") {
        assert_eq!(&labels[k.as_str().expect("key")], v, "the selector matches the pod labels");
    }
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    assert!(strings(&c["securityContext"]["capabilities"]["add"]).contains(&"NET_ADMIN".to_string()));
    let run = strings(&c["command"]);
    let apply = netcfg_words(&run[2]);
    assert_eq!(apply[1], "apply");
    assert_cli_accepts(&apply, "DaemonSet command");
    let probe = strings(&c["readinessProbe"]["exec"]["command"]);
    let verify = netcfg_words(&probe[2]);
    assert_eq!(verify[1], "verify");
    assert_cli_accepts(&verify, "readiness probe");
    // The spec comes from the ConfigMap, mounted where the commands read it.
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let spec = volumes.iter().find(|v| !v["configMap"].is_badvalue()).expect("a ConfigMap volume");
    let mount =
        c["volumeMounts"].as_vec().expect("mounts").iter().find(|m| m["name"] == spec["name"]).expect("mounted");
    let path = format!("{}/fleet.kdl", mount["mountPath"].as_str().expect("path"));
    assert_eq!(apply[2], path);
    assert_eq!(verify[2], path);
    let cm = load_yaml(&deploy().join("kubernetes/configmap-example.yaml"));
    assert_eq!(cm[0]["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(cm[0]["metadata"]["name"], spec["configMap"]["name"]);
    // The example spec in the ConfigMap is a clean spec.
    let kdl = cm[0]["data"]["fleet.kdl"].as_str().expect("fleet.kdl");
    let tmp = std::env::temp_dir().join(format!("netcfg-cm-{}.kdl", std::process::id()));
    std::fs::write(&tmp, kdl).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_netcfg")).arg("check").arg(&tmp).output().expect("netcfg runs");
    let _ = std::fs::remove_file(&tmp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn ansible_playbook_is_yaml_whose_netcfg_commands_the_cli_accepts() {
    let docs = load_yaml(&deploy().join("ansible/netcfg.yml"));
    let plays = docs[0].as_vec().expect("a list of plays");
    let tasks = plays[0]["tasks"].as_vec().expect("tasks");
    let mut commands = 0;
    for task in tasks {
        assert!(task["name"].as_str().is_some(), "every task is named: {task:?}");
        let argv = &task["ansible.builtin.command"]["argv"];
        if argv.is_badvalue() {
            continue;
        }
        let words: Vec<String> = argv
            .as_vec()
            .expect("argv")
            .iter()
            .map(|w| w.as_str().map(str::to_string).or_else(|| w.as_i64().map(|i| i.to_string())).expect("word"))
            .collect();
        assert_cli_accepts(&words, task["name"].as_str().unwrap_or("task"));
        commands += 1;
    }
    assert!(commands >= 5, "check, plan, apply, confirm and verify");
    // The units it installs are the ones in deploy/systemd.
    for task in tasks {
        if let Some(items) = task["loop"].as_vec() {
            for item in items.iter().filter_map(Yaml::as_str).filter(|i| i.starts_with("netcfg-")) {
                assert!(deploy().join("systemd").join(item).exists(), "{item}");
            }
        }
    }
}
