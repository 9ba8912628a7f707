//! The `cairn-operator` process's log: no colour codes on a pipe, JSON lines with
//! `--log-format json` (or `CAIRN_LOG_FORMAT=json`). Without a cluster it logs that it starts
//! and exits (no kubeconfig).

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn-operator"));
    cmd.args(args)
        .env("KUBECONFIG", dir.path().join("none"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("CAIRN_LOG_FORMAT")
        .env("CAIRN_OPERATOR_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "no cluster, yet it ran");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn logs_on_a_pipe_have_no_colours_and_json_is_one_object_per_line() {
    let text = run(&[], &[]);
    assert!(text.contains("cairn-operator starting"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes on a pipe: {text:?}");
    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("CAIRN_LOG_FORMAT", "json")]),
    ] {
        let out = run(&args, &env);
        assert!(out.contains("\"cairn-operator starting\""), "{out}");
        for l in out.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        }
    }
}
