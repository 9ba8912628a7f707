//! The Helm chart with the real `helm` (lint, template with default values and with everything
//! on), the rendered manifests, the CRDs and the operator's own built objects validated offline
//! against the Kubernetes schemas (`kubernetes-validate`), the chart's ObjectStore and the
//! examples against the CRDs (schema via serde + CEL rules), and every metric the dashboard and
//! the alert rules query checked against what the code exports. Skipped, saying so, when helm or
//! kubernetes-validate is missing (`scripts/setup.sh` installs both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_operator::crd::{self, Bucket, LifecyclePolicy, ObjectStore, ReplicationRule};
use cairn_operator::resources::objectstore as build;
use kube::CustomResourceExt;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubernetes-validate --strict` on a file; fails on any error (unknown kinds only warn).
fn kubernetes_validate(file: &Path) {
    let out = run(Command::new("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict", "--no-warn"])
        .arg(file));
    assert!(!out.contains("ERROR"), "{out}");
}

/// Names a Prometheus query may use for what the processes export: counters with `_total`,
/// histograms with `_bucket`/`_sum`/`_count`.
fn exported_metric_names() -> BTreeSet<String> {
    // Labelled families appear in the exposition once they have a sample.
    let gw = cairn_gateway::metrics::GatewayMetrics::new();
    gw.requests
        .get_or_create(&cairn_gateway::metrics::RequestLabels {
            operation: "GetObject".into(),
            status: 200,
        })
        .inc();
    gw.latency
        .get_or_create(&cairn_gateway::metrics::OperationLabels {
            operation: "GetObject".into(),
        })
        .observe(0.1);
    let partition = cairn_gateway::metrics::PartitionLabels {
        partition: "2".into(),
    };
    gw.partition
        .reads_per_second
        .get_or_create(&partition)
        .set(1.0);
    gw.partition
        .writes_per_second
        .get_or_create(&partition)
        .set(1.0);
    gw.partition
        .splits
        .get_or_create(&cairn_gateway::metrics::SplitLabels {
            reason: "load".into(),
        })
        .inc();
    gw.raft.commit_seconds.observe(0.01);
    gw.raft
        .directory_learns
        .get_or_create(&cairn_gateway::metrics::DirectorySourceLabels {
            source: "meta_group".into(),
        })
        .inc();
    let node = cairn_storage_node::metrics::NodeMetrics::new();
    node.requests
        .get_or_create(&cairn_storage_node::metrics::RequestLabels {
            endpoint: "/v1/status".into(),
            method: "GET".into(),
            status: 200,
        })
        .inc();
    node.latency
        .get_or_create(&cairn_storage_node::metrics::EndpointLabels {
            endpoint: "/v1/status".into(),
        })
        .observe(0.1);
    let op = cairn_operator::metrics::Metrics::default();
    drop(op.reconcile("Bucket"));
    op.error("Bucket", "kube");
    let texts = [gw.encode(), node.encode(), op.encode()];
    let mut names = BTreeSet::new();
    for t in texts {
        for l in t.lines() {
            let Some(rest) = l.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("cairn_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if before_ok {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn dashboard_and_alerts_query_metrics_the_code_exports() {
    let exported = exported_metric_names();
    assert!(exported.contains("cairn_s3_requests_total"), "{exported:?}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/cairn/dashboards/cairn.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 15, "dashboard queries: {}", exprs.len());
    let rules =
        std::fs::read_to_string(root().join("charts/cairn/templates/prometheusrule.yaml")).unwrap();
    for l in rules.lines() {
        if let Some(e) = l.trim().strip_prefix("expr:") {
            exprs.push(e.to_string());
        }
    }
    let mut used = 0;
    for e in &exprs {
        for m in metric_names_in(e) {
            assert!(
                exported.contains(&m),
                "{m} (in `{e}`) is not exported by the gateway, storage node or operator"
            );
            used += 1;
        }
    }
    assert!(used >= 25);
}

fn validate_against_crd(doc: &Value) {
    let kind = doc["kind"].as_str().unwrap();
    let crd = match kind {
        "ObjectStore" => {
            serde_json::from_value::<ObjectStore>(doc.clone()).unwrap();
            ObjectStore::crd()
        }
        "Bucket" => {
            serde_json::from_value::<Bucket>(doc.clone()).unwrap();
            Bucket::crd()
        }
        "LifecyclePolicy" => {
            serde_json::from_value::<LifecyclePolicy>(doc.clone()).unwrap();
            LifecyclePolicy::crd()
        }
        "ReplicationRule" => {
            serde_json::from_value::<ReplicationRule>(doc.clone()).unwrap();
            ReplicationRule::crd()
        }
        _ => return,
    };
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    kube::core::cel::Validator::new()
        .validate(&schema, doc, None)
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
}

#[test]
fn examples_are_valid_resources() {
    let mut kinds = BTreeSet::new();
    for f in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = f.unwrap().path();
        for doc in documents(&std::fs::read_to_string(&path).unwrap()) {
            kinds.insert(doc["kind"].as_str().unwrap().to_string());
            validate_against_crd(&doc);
        }
    }
    for k in [
        "ObjectStore",
        "Bucket",
        "LifecyclePolicy",
        "ReplicationRule",
    ] {
        assert!(kinds.contains(k), "examples/ lacks a {k}");
    }
}

#[test]
fn helm_chart_lints_renders_and_validates() {
    if !have("helm", "version") {
        skipped("SKIPPED: helm not installed (scripts/setup.sh installs it)");
        return;
    }
    let validate = have("kubernetes-validate", "--version");
    if !validate {
        skipped(
            "SKIPPED (schema validation only): kubernetes-validate not installed (scripts/setup.sh installs it)",
        );
    }
    let chart = root().join("charts/cairn");
    let everything = chart.join("ci/everything-values.yaml");
    run(Command::new("helm").args(["lint", "--strict"]).arg(&chart));
    run(Command::new("helm")
        .args(["lint", "--strict"])
        .arg(&chart)
        .arg("-f")
        .arg(&everything));
    let dir = tempfile::tempdir().unwrap();
    for (label, extra) in [("default", None), ("everything", Some(&everything))] {
        let mut cmd = Command::new("helm");
        cmd.args([
            "template",
            "cairn",
            "--namespace",
            "cairn-system",
            "--include-crds",
        ])
        .arg(&chart);
        if let Some(f) = extra {
            cmd.arg("-f").arg(f);
        }
        let rendered = run(&mut cmd);
        let docs = documents(&rendered);
        let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        for k in [
            "Deployment",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "CustomResourceDefinition",
        ] {
            assert!(kinds.contains(k), "{label}: no {k} in {kinds:?}");
        }
        if label == "everything" {
            for k in [
                "ObjectStore",
                "ServiceMonitor",
                "PrometheusRule",
                "ConfigMap",
            ] {
                assert!(kinds.contains(k), "{label}: no {k}");
            }
            let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
            assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
            let _: Value = serde_json::from_str(cm["data"]["cairn.json"].as_str().unwrap())
                .expect("dashboard JSON");
        } else {
            assert!(!kinds.contains("ObjectStore") && !kinds.contains("PrometheusRule"));
        }
        // The gateway cap reaches the operator: none by default (0), 5 in everything-values.
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let cap = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "CAIRN_MAX_GATEWAY_REPLICAS")
            .map(|e| e["value"].clone());
        let want = if label == "everything" { "5" } else { "0" };
        assert_eq!(cap, Some(Value::from(want)), "{label}");
        // The three images come from one registry and tag (`image`), and so does the policy.
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env = |name: &str| {
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
                .unwrap_or(Value::Null)
        };
        let (registry, tag, policy) = if label == "everything" {
            ("registry.example.com:5000/storage", "v0.1.0-rc1", "Never")
        } else {
            (
                "ghcr.io/cairn-io",
                concat!("v", env!("CARGO_PKG_VERSION")),
                "IfNotPresent",
            )
        };
        assert_eq!(
            container["image"],
            format!("{registry}/cairn-operator:{tag}")
        );
        assert_eq!(container["imagePullPolicy"], policy);
        assert_eq!(
            env("CAIRN_GATEWAY_IMAGE"),
            format!("{registry}/cairn-gateway:{tag}")
        );
        assert_eq!(
            env("CAIRN_STORAGE_NODE_IMAGE"),
            format!("{registry}/cairn-storage-node:{tag}")
        );
        assert_eq!(env("CAIRN_IMAGE_PULL_POLICY"), policy);
        if label == "everything" {
            assert_eq!(env("CAIRN_IMAGE_PULL_SECRETS"), "registry");
            assert_eq!(env("CAIRN_LOG_FORMAT"), "json");
        } else {
            assert_eq!(env("CAIRN_IMAGE_PULL_SECRETS"), Value::Null);
        }
        // The operator's own defaults name the chart's images.
        let defaults = build::BuildConfig::default();
        if label == "default" {
            assert_eq!(
                Value::from(defaults.gateway_image),
                env("CAIRN_GATEWAY_IMAGE")
            );
            assert_eq!(
                Value::from(defaults.storage_node_image),
                env("CAIRN_STORAGE_NODE_IMAGE")
            );
        }
        for d in &docs {
            validate_against_crd(d);
        }
        // Secrets: cluster-wide the operator can neither list nor watch them; confined to
        // `watchNamespaces`, it gets a Role in each and nothing cluster-wide but namespaces.
        let rules_of = |d: &Value| -> Vec<Value> { d["rules"].as_array().unwrap().clone() };
        let grants = |rules: &[Value], resource: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|r| {
                    r["resources"]
                        .as_array()
                        .unwrap()
                        .contains(&Value::from(resource))
                })
                .flat_map(|r| r["verbs"].as_array().unwrap().clone())
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let cluster_role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
        let roles: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["kind"] == "Role" && !d["metadata"]["name"].as_str().unwrap().ends_with("-leader")
            })
            .collect();
        if label == "everything" {
            let namespaces: Vec<&str> = roles
                .iter()
                .map(|r| r["metadata"]["namespace"].as_str().unwrap())
                .collect();
            assert_eq!(namespaces, ["storage", "photos"]);
            for r in &roles {
                assert_eq!(
                    grants(&rules_of(r), "secrets"),
                    ["get", "list", "watch", "create", "patch"]
                );
            }
            let cluster = rules_of(cluster_role);
            assert_eq!(
                cluster.len(),
                1,
                "only namespaces cluster-wide: {cluster:?}"
            );
            assert_eq!(grants(&cluster, "namespaces"), ["get", "list", "watch"]);
            assert_eq!(env("CAIRN_WATCH_NAMESPACES"), "storage,photos");
        } else {
            assert!(roles.is_empty());
            assert_eq!(
                grants(&rules_of(cluster_role), "secrets"),
                ["get", "create", "patch"]
            );
            assert_eq!(env("CAIRN_WATCH_NAMESPACES"), Value::Null);
        }
        // Least privilege: no wildcards anywhere in the RBAC rules.
        for d in docs
            .iter()
            .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        {
            let text = d["rules"].to_string();
            assert!(!text.contains("\"*\""), "wildcard in {text}");
        }
        if validate {
            let file = dir.path().join(format!("{label}.yaml"));
            std::fs::write(&file, &rendered).unwrap();
            kubernetes_validate(&file);
        }
    }
}

#[test]
fn operator_built_objects_validate_against_kubernetes_schemas() {
    if !have("kubernetes-validate", "--version") {
        skipped("SKIPPED: kubernetes-validate not installed (scripts/setup.sh installs it)");
        return;
    }
    let mut store: ObjectStore = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("examples/objectstore.yaml")).unwrap(),
    )
    .unwrap();
    store.metadata.namespace = Some("storage".into());
    store.metadata.uid = Some("u".into());
    store.spec.gateway.replicas = 3;
    let config = build::BuildConfig {
        max_gateway_replicas: None,
        ..Default::default()
    };
    let owner = build::owner_ref(&store);
    let mut docs: Vec<Value> = Vec::new();
    let to = |v: &dyn erased::Ser| v.value();
    for z in &store.spec.zones {
        docs.push(to(&build::node_statefulset(&store, z, &config, &owner)));
    }
    docs.push(to(&build::gateway_statefulset(&store, &config, &owner)));
    docs.extend(build::services(&store, &owner).iter().map(|s| to(s)));
    docs.extend(
        build::disruption_budgets(&store, &config, &owner)
            .iter()
            .map(|s| to(s)),
    );
    docs.push(to(
        &build::network_policy(&store, &config, &owner).expect("enabled")
    ));
    docs.push(to(&build::credentials_secret(
        &store,
        &build::FleetSecrets::generate(),
        &owner,
    )));
    let yaml: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_saphyr::to_string(d).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    kubernetes_validate(&file);
    // The CRDs themselves are valid CustomResourceDefinitions.
    for (name, _) in crd::all() {
        kubernetes_validate(&root().join("crds").join(name));
    }
}

mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

/// Every alert of the chart's PrometheusRule, rendered by helm with the default thresholds, run
/// through `promtool test rules` against `tests/promtool/alerts.test.yaml`: series with which each
/// must fire and series with which it must not. Skipped without promtool (Debian's `prometheus`
/// package; `scripts/setup.sh` installs it), except under CI, which must have it.
#[test]
fn every_alert_fires_when_it_must_and_only_then() {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    for (tool, arg) in [("helm", "version"), ("promtool", "--version")] {
        if !have(tool, arg) {
            assert!(
                !ci,
                "{tool} is missing under CI: scripts/setup.sh installs it"
            );
            skipped(&format!(
                "SKIPPED: {tool} not installed (scripts/setup.sh installs it); the alert rules were not tested"
            ));
            return;
        }
    }
    let rendered = run(Command::new("helm")
        .args([
            "template",
            "cairn",
            "--namespace",
            "cairn-system",
            "--set",
            "monitoring.prometheusRule.enabled=true",
            "--show-only",
            "templates/prometheusrule.yaml",
        ])
        .arg(root().join("charts/cairn")));
    let docs = documents(&rendered);
    assert_eq!(docs.len(), 1);
    let groups = &docs[0]["spec"]["groups"];
    let alerts: BTreeSet<String> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads it as its rule file format.
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::json!({"groups": groups}).to_string(),
    )
    .unwrap();
    let tests = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promtool/alerts.test.yaml"),
    )
    .unwrap();
    // Every alert has a test that expects it to fire.
    for a in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - exp_labels"
            )),
            "alert {a} has no firing test in tests/promtool/alerts.test.yaml"
        );
    }
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    std::fs::write(dir.path().join("alerts.test.yaml"), tests).unwrap();
    run(Command::new("promtool")
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path()));
    run(Command::new("promtool")
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(dir.path()));
}

/// `docker/*.Dockerfile` and `scripts/build-images.sh` make the same images: the binary at
/// `/usr/local/bin/cairn-NAME`, user 65532, that entrypoint, the ports, the version and source
/// labels; and the default tag is the chart's appVersion and the operator's default.
#[test]
fn dockerfiles_and_the_daemonless_build_agree() {
    let script = std::fs::read_to_string(root().join("scripts/build-images.sh")).unwrap();
    assert!(script.contains("--user 65532:65532"));
    assert!(script.contains("objcopy --strip-all"));
    assert!(
        script.contains("\"[\\\"/usr/local/bin/cairn-$name\\\"]\""),
        "entrypoint"
    );
    for (name, ports, cmd) in [
        ("gateway", &[9000, 9001][..], Some("serve")),
        ("storage-node", &[7000][..], None),
        ("operator", &[8080][..], None),
    ] {
        let d = std::fs::read_to_string(root().join(format!("docker/{name}.Dockerfile"))).unwrap();
        for want in [
            format!("COPY --from=build /cairn-{name} /usr/local/bin/cairn-{name}"),
            "USER 65532:65532".to_string(),
            format!("ENTRYPOINT [\"/usr/local/bin/cairn-{name}\"]"),
            format!("objcopy --strip-all target/release/cairn-{name}"),
            "org.opencontainers.image.version=".to_string(),
            "org.opencontainers.image.source=\"https://github.com/cairn-io/cairn\"".to_string(),
        ] {
            assert!(d.contains(&want), "docker/{name}.Dockerfile lacks {want}");
        }
        let expose = format!(
            "EXPOSE {}",
            ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(d.contains(&expose), "docker/{name}.Dockerfile: {expose}");
        let line = script
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name})")) && l.contains("args+="))
            .unwrap_or_else(|| panic!("build-images.sh has no settings for {name}"));
        for p in ports {
            assert!(line.contains(&format!("--port {p}")), "{line}");
        }
        match cmd {
            Some(c) => {
                assert!(d.contains(&format!("CMD [\"{c}\"]")));
                assert!(line.contains(&format!("--cmd {c}")), "{line}");
            }
            None => assert!(!d.contains("CMD [") && !line.contains("--cmd")),
        }
    }
    let chart = std::fs::read_to_string(root().join("charts/cairn/Chart.yaml")).unwrap();
    let version = concat!("v", env!("CARGO_PKG_VERSION"));
    assert!(
        chart.contains(&format!("appVersion: \"{version}\"")),
        "Chart.yaml appVersion must be {version}"
    );
    assert!(
        build::BuildConfig::default()
            .gateway_image
            .ends_with(&format!("/cairn-gateway:{version}"))
    );
}

/// Says a test was skipped on the real stderr (libtest captures `println!` of passing tests).
fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}
