//! Storing a shard that arrives as a stream (a PUT body, a rebuild from peers): the stream is
//! read on the async runtime, one block at a time, and each complete block is written on a
//! blocking thread. No thread ever waits on the network, so stalled senders hold only their
//! own request; a sender that sends nothing for the stall timeout loses it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::format::{ShardHeader, ShardSpec};
use crate::store::{ShardStore, ShardWriter, StoreError, blocking};

/// Why a streamed shard was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store refused it (disk full, bad spec, wrong length, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream failed (the sender went away, a rebuild failed).
    #[error("the shard body broke off: {0}")]
    Body(String),
    /// Nothing arrived for the stall timeout.
    #[error("no shard data arrived for {0:?}")]
    Stalled(Duration),
}

/// Stores `body` (exactly the payload `spec` implies) as a shard, durably; waits at most
/// `stall` for each piece of the body.
pub async fn store_stream<S, E>(
    store: Arc<ShardStore>,
    spec: ShardSpec,
    body: S,
    stall: Duration,
) -> Result<ShardHeader, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut body = cairn_transport::stall::stall_guard(body, stall);
    let st = store.clone();
    let mut writer: ShardWriter = blocking(move || st.begin(spec)).await?;
    let expected = writer.spec().geometry().shard_payload_len();
    let mut got = 0u64;
    let mut pending = BytesMut::new();
    let mut ended = false;
    while let Some(len) = writer.next_block_len() {
        let len = len as usize;
        while pending.len() < len && !ended {
            match body.next().await {
                Some(Err(_)) => return Err(IngestError::Stalled(stall)),
                None => ended = true,
                Some(Ok(Err(e))) => return Err(IngestError::Body(e.to_string())),
                Some(Ok(Ok(chunk))) => {
                    got += chunk.len() as u64;
                    if got > expected {
                        return Err(StoreError::WrongLength { expected, got }.into());
                    }
                    pending.extend_from_slice(&chunk);
                }
            }
        }
        if pending.len() < len {
            return Err(StoreError::WrongLength { expected, got }.into());
        }
        let block = pending.split_to(len).freeze();
        writer = blocking(move || {
            writer.write_block(&block)?;
            Ok(writer)
        })
        .await?;
    }
    // Anything after the last block is a wrong length; wait briefly for the stream's end.
    if !ended {
        match body.next().await {
            Some(Err(_)) => return Err(IngestError::Stalled(stall)),
            None => {}
            Some(Ok(Err(e))) => return Err(IngestError::Body(e.to_string())),
            Some(Ok(Ok(chunk))) if chunk.is_empty() => {}
            Some(Ok(Ok(chunk))) => {
                return Err(StoreError::WrongLength {
                    expected,
                    got: got + chunk.len() as u64,
                }
                .into());
            }
        }
    }
    Ok(blocking(move || store.commit(writer)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample_spec;
    use crate::store::StoreOptions;

    fn chunks(bytes: &[u8], size: usize) -> Vec<Result<Bytes, String>> {
        bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    #[tokio::test]
    async fn a_stream_in_any_chunking_is_stored_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ShardStore::open(dir.path(), StoreOptions::default()).unwrap());
        let spec = sample_spec(4, 2, 1000, 2500);
        let len = spec.geometry().shard_payload_len() as usize;
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for size in [1, 7, 250, len] {
            let stream = futures_util::stream::iter(chunks(&payload, size));
            store_stream(store.clone(), spec.clone(), stream, Duration::from_secs(5))
                .await
                .unwrap();
            let f = store.open_shard(spec.object_id, spec.shard_index).unwrap();
            assert_eq!(
                f.read_range(0, len as u64).unwrap(),
                payload,
                "chunks of {size}"
            );
        }
        // Too short, too long, broken: nothing stored, no temporary file left.
        store.delete(spec.object_id, spec.shard_index).unwrap();
        let short = futures_util::stream::iter(chunks(&payload[..len - 1], 100));
        let r = store_stream(store.clone(), spec.clone(), short, Duration::from_secs(5)).await;
        assert!(
            matches!(r, Err(IngestError::Store(StoreError::WrongLength { .. }))),
            "{r:?}"
        );
        let mut long = payload.clone();
        long.push(0);
        let long = futures_util::stream::iter(chunks(&long, 100));
        let r = store_stream(store.clone(), spec.clone(), long, Duration::from_secs(5)).await;
        assert!(
            matches!(r, Err(IngestError::Store(StoreError::WrongLength { .. }))),
            "{r:?}"
        );
        let broken =
            futures_util::stream::iter(vec![Ok(Bytes::from_static(b"x")), Err("gone".to_string())]);
        let r = store_stream(store.clone(), spec.clone(), broken, Duration::from_secs(5)).await;
        assert!(matches!(r, Err(IngestError::Body(_))), "{r:?}");
        assert!(matches!(
            store.open_shard(spec.object_id, spec.shard_index),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_sender_loses_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ShardStore::open(dir.path(), StoreOptions::default()).unwrap());
        let spec = sample_spec(4, 2, 1000, 2500);
        let stalled = futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"abc"))])
            .chain(futures_util::stream::pending());
        let r = store_stream(store, spec, Box::pin(stalled), Duration::from_secs(30)).await;
        assert!(matches!(r, Err(IngestError::Stalled(_))), "{r:?}");
    }
}
