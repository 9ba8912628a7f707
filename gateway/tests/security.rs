//! Attacks on a whole `dev` fleet (gateway and six nodes in one process, as `cairn-gateway dev`
//! runs them): clients that never read what they asked for, clients that stop sending, and the
//! secrets the index keeps.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_and_writers_that_stall_hold_only_their_own_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = dev_args(dir.path().join("data"));
    args.gateway.stall_timeout = Duration::from_secs(3);
    let t = TestFleet::start_with(dir, args).await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let big = random_bytes(16 << 20, 1);
    s3.put_object()
        .bucket("bkt")
        .key("big")
        .body(ByteStream::from(big.clone()))
        .send()
        .await
        .unwrap();
    let url = s3
        .get_object()
        .bucket("bkt")
        .key("big")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_string();
    let addr = t.fleet.gateway.s3_addr.to_string();
    let path = url.trim_start_matches(&format!("http://{addr}"));

    // 300 GETs of a 16 MiB object whose clients read nothing: each would park a blocking thread
    // on every storage node it reads from (4 each; the fleet has 512), and freeze the fleet.
    let mut unread = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        unread.push(s);
    }
    // 100 uploads that announce 1 MiB, send 10 bytes, and stop.
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("stalled")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_string();
    let put_path = put.trim_start_matches(&format!("http://{addr}"));
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT {put_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1048576\r\n\r\n0123456789"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Other clients are served meanwhile, byte-exact.
    let served = async {
        for i in 0..10 {
            let body = random_bytes(300_000 + i, i as u64);
            let key = format!("k{i}");
            s3.put_object()
                .bucket("bkt")
                .key(&key)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
            let got = s3
                .get_object()
                .bucket("bkt")
                .key(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(
                got.body.collect().await.unwrap().into_bytes().as_ref(),
                &body[..]
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(60), served)
        .await
        .expect("the fleet stopped serving while 300 readers did not read");

    // The stalled uploads failed with RequestTimeout after the stall timeout; nothing stored.
    for mut s in stalled {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("a stalled upload still open")
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.is_empty() || answer.contains("RequestTimeout"),
            "{answer}"
        );
    }
    let head = s3.head_object().bucket("bkt").key("stalled").send().await;
    assert!(head.is_err(), "a stalled upload was stored");
    drop(unread);
}
