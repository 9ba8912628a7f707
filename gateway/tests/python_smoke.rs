//! The Python smoke test (`e2e/python/smoke.py`: the aws CLI and boto3) against an in-process dev
//! fleet. Skipped, saying so, when boto3 or the aws CLI is missing (`scripts/setup.sh` installs
//! them).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The whole script must finish within this.
const LIMIT: Duration = Duration::from_secs(300);

fn tools_present() -> bool {
    let quiet = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    quiet(Command::new("python3").args(["-c", "import boto3"]))
        && quiet(Command::new("aws").arg("--version"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_boto3_smoke() {
    if !tools_present() {
        println!(
            "SKIPPED python smoke: boto3/aws CLI not installed (scripts/setup.sh installs them)"
        );
        return;
    }
    let t = TestFleet::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/python/smoke.py");
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("aws-config");
    std::fs::write(&config, "").unwrap();
    let out_path = home.path().join("smoke.out");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(t.endpoint())
        .arg(&t.fleet.secrets.access_key)
        .arg(&t.fleet.secrets.secret_key);
    // No user or machine AWS configuration may leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(home.path().join("smoke.err")).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("python3 starts");
    // The fleet serves on this runtime's workers; wait for the script off them.
    let status = tokio::task::spawn_blocking(move || {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(home.path().join("smoke.err")).unwrap_or_default();
    println!("{stdout}");
    eprintln!("{stderr}");
    t.fleet.stop().await;
    match status {
        None => panic!("smoke.py did not finish within {LIMIT:?}"),
        Some(s) => assert!(s.success(), "smoke.py failed ({s}): {stderr}"),
    }
    println!("python smoke took {:?}", started.elapsed());
}
