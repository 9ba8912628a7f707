//! HTTPS on the S3 port: with `--tls-cert`/`--tls-key` the gateway speaks only TLS there, a
//! client that trusts the certificate gets answers, and boto3 works over it end to end.

mod common;

use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let issued =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.key_pair.serialize_pem()).unwrap();
    (cert, key, issued.cert.pem())
}

/// `GET path` over TLS, trusting only `ca_pem`; the whole response.
async fn https_get(addr: std::net::SocketAddr, ca_pem: &str, path: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_port_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_pem) = certificate(dir.path());
    let mut args = common::dev_args(dir.path().join("data"));
    args.gateway.tls_cert = Some(cert.clone());
    args.gateway.tls_key = Some(key);
    let fleet = common::TestFleet::start_with(dir, args).await;
    let addr = fleet.fleet.gateway.s3_addr;

    let reply = https_get(addr, &ca_pem, "/metrics").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("cairn_storage_nodes_up"), "{reply}");
    // Plain HTTP gets no answer on that port.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // A real SDK over HTTPS: boto3, verifying the certificate.
    let has_boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_boto3 {
        eprintln!(
            "SKIPPED boto3 over HTTPS: python3 with boto3 not found (scripts/setup.sh installs it)"
        );
        return;
    }
    let script = r#"
import boto3, sys
from botocore.config import Config
endpoint, ca, access, secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, verify=ca, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="tls")
body = bytes(range(256)) * 4096
s3.put_object(Bucket="tls", Key="k", Body=body)
assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == body
# Over HTTPS boto3 streams aws-chunked bodies with Transfer-Encoding: chunked and no
# Content-Length (only x-amz-decoded-content-length): single PUTs and multipart parts.
import io
from boto3.s3.transfer import TransferConfig
big = body * 12
s3.upload_fileobj(io.BytesIO(big), "tls", "mp",
                  Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
assert s3.get_object(Bucket="tls", Key="mp")["Body"].read() == big
assert s3.head_object(Bucket="tls", Key="mp")["ETag"].endswith('-3"')
print("boto3 over https ok")
"#;
    let s = &fleet.fleet.secrets;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(format!("https://127.0.0.1:{}", addr.port()))
        .arg(&cert)
        .arg(&s.access_key)
        .arg(&s.secret_key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("boto3 over https ok"), "{text}");
}
