//! The `cairn-gateway` process as Kubernetes runs it: the environment the operator sets parses
//! (an empty `CAIRN_STORAGE_CLASSES` is no class besides STANDARD), and the log on a pipe has no
//! colour codes, or is JSON lines with `--log-format json`.

use std::process::{Command, Output};

fn serve(extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn-gateway"));
    cmd.args(args)
        .args(["serve", "--data"])
        .arg(dir.path())
        .args(["--node", "n1@a=http://127.0.0.1:9"])
        // No credentials: the gateway stops right after parsing its configuration.
        .env_remove("CAIRN_ROOT_ACCESS_KEY")
        .env_remove("CAIRN_ROOT_SECRET_KEY")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .env_remove("CAIRN_STORAGE_CLASSES")
        .env_remove("CAIRN_LOG_FORMAT")
        .env("RUST_LOG", "info");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_empty_storage_class_list_parses_as_none() {
    // What the operator used to set for every fleet with one storage class: the gateway exited
    // with 2 ("invalid value '' for '--storage-class'") and crash-looped.
    let out = serve(&[("CAIRN_STORAGE_CLASSES", "")], &[]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("invalid value"), "{stderr}");
    // Parsed; it stops at the missing credentials (exit 1), not at the arguments (exit 2).
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CAIRN_ROOT_ACCESS_KEY"), "{stderr}");
    // A real list still parses, and a bad one is still refused.
    let out = serve(&[("CAIRN_STORAGE_CLASSES", "COLD=2+1,GLACIER_IR=8+4")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = serve(&[("CAIRN_STORAGE_CLASSES", "cold")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn logs_on_a_pipe_have_no_colours_and_json_is_one_object_per_line() {
    let out = serve(&[], &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cairn-gateway starting"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "ANSI codes on a pipe: {stdout:?}"
    );
    for (env, args) in [
        (vec![], vec!["--log-format", "json"]),
        (vec![("CAIRN_LOG_FORMAT", "json")], vec![]),
    ] {
        let out = serve(&env, &args);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(!lines.is_empty(), "{}", text(&out.stderr));
        for l in lines {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        }
        assert!(stdout.contains("\"cairn-gateway starting\""), "{stdout}");
    }
}
