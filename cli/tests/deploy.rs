//! The deployment files are checked, not just shipped: the KServe manifest parses and has the
//! fields KServe requires (and its container runs `sfumato serve` with flags the command
//! takes, its probes pointed at the protocol's health endpoints on the served port), and the
//! container build file exposes the ports the manifest uses.

use serde_yaml::Value;
use std::path::Path;
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn docs() -> Vec<Value> {
    let text = std::fs::read_to_string(workspace().join("deploy/kserve/sfumato.yaml"))
        .expect("the manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect()
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[k],
        };
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {cur:?}"))
}

/// DNS-1123 label: what Kubernetes requires of these names.
fn dns_label(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

#[test]
fn the_kserve_manifest_has_what_kserve_requires() {
    let docs = docs();
    let rt = docs
        .iter()
        .find(|d| s(d, "kind") == "ServingRuntime")
        .expect("a ServingRuntime");
    let isvc = docs
        .iter()
        .find(|d| s(d, "kind") == "InferenceService")
        .expect("an InferenceService");
    assert_eq!(s(rt, "apiVersion"), "serving.kserve.io/v1alpha1");
    assert_eq!(s(isvc, "apiVersion"), "serving.kserve.io/v1beta1");
    for d in [rt, isvc] {
        assert!(dns_label(s(d, "metadata.name")), "{:?}", d["metadata"]);
    }
    // The InferenceService names the runtime, a format it supports, and protocol v2.
    let model = &isvc["spec"]["predictor"]["model"];
    assert_eq!(s(model, "runtime"), s(rt, "metadata.name"));
    assert_eq!(s(model, "protocolVersion"), "v2");
    assert!(s(model, "storageUri").contains("://"));
    let format = s(model, "modelFormat.name");
    let formats: Vec<&str> = rt["spec"]["supportedModelFormats"]
        .as_sequence()
        .expect("supportedModelFormats")
        .iter()
        .map(|f| s(f, "name"))
        .collect();
    assert!(formats.contains(&format), "{format} not in {formats:?}");
    let protocols: Vec<&str> = rt["spec"]["protocolVersions"]
        .as_sequence()
        .expect("protocolVersions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(protocols.contains(&"v2"), "{protocols:?}");
    // KServe finds the model server by this container name.
    let c = &rt["spec"]["containers"][0];
    assert_eq!(s(c, "name"), "kserve-container");
    assert!(!s(c, "image").is_empty());
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("{flag} not in {args:?}"))
    };
    // The storage initializer puts the model at /mnt/models; the server binds every interface
    // in the pod, on the port the probes and the Service use.
    assert_eq!(after("--model-repository"), "/mnt/models");
    let http_port: i64 = after("--http")
        .strip_prefix("0.0.0.0:")
        .expect("--http binds 0.0.0.0 in a pod")
        .parse()
        .expect("a port");
    assert_eq!(c["ports"][0]["containerPort"].as_i64(), Some(http_port));
    for (probe, path) in [
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
    ] {
        assert_eq!(s(&c[probe], "httpGet.path"), path);
        assert_eq!(
            c[probe]["httpGet"]["port"].as_i64(),
            Some(http_port),
            "{probe}"
        );
    }
    // Every flag is one `sfumato serve` takes.
    let help = Command::new(env!("CARGO_BIN_EXE_sfumato"))
        .args(["serve", "--help"])
        .output()
        .expect("sfumato serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(a), "`sfumato serve` has no {a}");
    }
}

#[test]
fn the_container_build_exposes_the_manifests_ports() {
    let text =
        std::fs::read_to_string(workspace().join("deploy/Dockerfile")).expect("the Dockerfile");
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(
        exposed.contains(&"8080") && exposed.contains(&"8081"),
        "{exposed:?}"
    );
    assert!(text.contains("ENTRYPOINT [\"sfumato\", \"serve\"]"));
    assert!(text.contains("0.0.0.0:8080") && text.contains("0.0.0.0:8081"));
    assert!(text.contains("--bin sfumato"));
}
