//! The basic round trip through the official SDK: bucket, small (inline) and large
//! (erasure-coded) objects, ranged read, list.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_round_trip() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("smoke").send().await.unwrap();
    let small = b"hello".to_vec();
    let big = random_bytes(3 * 1024 * 1024 + 17, 7);
    for (k, v) in [("small", &small), ("dir/big", &big)] {
        s3.put_object()
            .bucket("smoke")
            .key(k)
            .body(ByteStream::from(v.clone()))
            .send()
            .await
            .unwrap();
        let got = s3.get_object().bucket("smoke").key(k).send().await.unwrap();
        assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], &v[..]);
    }
    let got = s3
        .get_object()
        .bucket("smoke")
        .key("dir/big")
        .range("bytes=1048570-2097160")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_range(), Some("bytes 1048570-2097160/3145745"));
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        &big[1_048_570..2_097_161]
    );
    let list = s3.list_objects_v2().bucket("smoke").send().await.unwrap();
    let keys: Vec<_> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/big", "small"]);
    t.fleet.stop().await;
}
