//! The `cairn-storage-node` process's log: no colour codes on a pipe, JSON lines with
//! `--log-format json` (or `CAIRN_LOG_FORMAT=json`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The first log lines of a node started with `args`/`env`, up to the one saying it listens.
fn first_lines(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn-storage-node"));
    cmd.args(["--node-id", "n1", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("CAIRN_LOG_FORMAT")
        .env("CAIRN_FLEET_SECRET", "logging-test-fleet-secret-0123456789")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = Vec::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        let done = l.contains("storage node listening");
        lines.push(l);
        if done || lines.len() > 50 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("storage node listening")),
        "{lines:?}"
    );
    lines
}

#[test]
fn logs_on_a_pipe_have_no_colours_and_json_is_one_object_per_line() {
    for l in first_lines(&[], &[]) {
        assert!(!l.contains('\u{1b}'), "ANSI codes on a pipe: {l:?}");
    }
    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("CAIRN_LOG_FORMAT", "json")]),
    ] {
        for l in first_lines(&args, &env) {
            let v: serde_json::Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        }
    }
}
