//! Typed async client of the storage-node API, used by the gateway, by peers and by tests.
//! Every request is signed with the fleet credential for the node it is meant for, and has a
//! deadline: control calls (status, HEAD, DELETE, listing, scrub) a fixed one, shard transfers
//! one that grows with their size (the fleet client's [`cairn_transport::client::ClientTimeouts`]).

use std::time::Duration;

use bytes::Bytes;
use cairn_transport::FleetClient;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::StatusCode;

use crate::api::{
    ErrorBody, ListReply, NodeStatus, Peers, PutShardReply, StartScrubReply, headers,
    parse_placement, placement_header,
};
use crate::codec::ErasureProfile;
use crate::format::ShardSpec;
use crate::ids::{NodeId, ObjectId, ShardIndex};
use crate::scrubber::ScrubStatus;
use crate::store::ShardKey;

/// Most bytes [`NodeClient::get_shard_bytes`] reads of a whole shard.
pub const MAX_BYTES_READ_WHOLE: u64 = 256 << 20;

/// Why a call to a storage node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or the transfer broke off (including a read aborted because
    /// the node found a corrupt block mid-stream).
    #[error("transport error talking to {endpoint}: {source}")]
    Transport {
        endpoint: String,
        source: reqwest::Error,
    },
    /// The node answered with an error.
    #[error("{endpoint} answered {status} {code}: {message}")]
    Api {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The node's answer could not be understood.
    #[error("bad response from {endpoint}: {detail}")]
    BadResponse { endpoint: String, detail: String },
}

impl ClientError {
    /// The node's error code, if it answered with one (e.g. `NoSuchShard`, `DiskFull`).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Client of one storage node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    fleet: FleetClient,
    node: NodeId,
    endpoint: String,
}

impl NodeClient {
    /// A client for node `node` at `endpoint` (`http://host:port`), sharing `fleet`'s connection
    /// pool and signer. Requests are signed for `node`: another node refuses them.
    pub fn new(fleet: FleetClient, node: NodeId, endpoint: impl Into<String>) -> Self {
        Self {
            fleet,
            node,
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
        }
    }

    /// The node this client talks to.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.fleet
            .send(self.node.as_str(), request)
            .await
            .map_err(|e| self.transport(e))
    }

    fn http(&self) -> &reqwest::Client {
        self.fleet.http()
    }

    fn control(&self) -> Duration {
        self.fleet.timeouts().control
    }

    /// The node's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("Unknown".to_string(), text),
        };
        Err(ClientError::Api {
            endpoint: self.endpoint.clone(),
            status,
            code,
            message,
        })
    }

    /// Stores a shard; `body` must yield exactly the payload length the spec implies. Paced by
    /// its body: the caller bounds how long a body may stall (the gateway's writer gives up a
    /// node that stops taking data); [`NodeClient::put_shard_within`] adds a deadline.
    pub async fn put_shard(
        &self,
        spec: &ShardSpec,
        body: reqwest::Body,
    ) -> Result<PutShardReply, ClientError> {
        self.put_shard_with(spec, body, None).await
    }

    /// [`NodeClient::put_shard`] within the transfer deadline of the shard's size: for bodies
    /// made here, when only the node can stall the transfer.
    pub async fn put_shard_within(
        &self,
        spec: &ShardSpec,
        body: reqwest::Body,
    ) -> Result<PutShardReply, ClientError> {
        let deadline = self
            .fleet
            .timeouts()
            .transfer(spec.geometry().shard_payload_len());
        self.put_shard_with(spec, body, Some(deadline)).await
    }

    async fn put_shard_with(
        &self,
        spec: &ShardSpec,
        body: reqwest::Body,
        deadline: Option<Duration>,
    ) -> Result<PutShardReply, ClientError> {
        let path = format!("/v1/shards/{}/{}", spec.object_id, spec.shard_index);
        let mut request = self.http().put(self.url(&path));
        if let Some(d) = deadline {
            request = request.timeout(d);
        }
        let request = request
            .header(headers::K, spec.profile.data_shards())
            .header(headers::M, spec.profile.parity_shards())
            .header(headers::STRIPE_SIZE, spec.stripe_size)
            .header(headers::OBJECT_LENGTH, spec.object_length)
            .header(headers::PLACEMENT, placement_header(&spec.placement))
            .body(body);
        let resp = self
            .fleet
            .send_unhashed(self.node.as_str(), request)
            .await
            .map_err(|e| self.transport(e))?;
        let resp = self.check(resp).await?;
        resp.json().await.map_err(|e| self.transport(e))
    }

    /// Streams a shard's payload, or bytes `start..end` of it; every byte was verified by the node.
    pub async fn get_shard(
        &self,
        object: ObjectId,
        index: ShardIndex,
        range: Option<(u64, u64)>,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let mut req = self
            .http()
            .get(self.url(&format!("/v1/shards/{object}/{index}")));
        if let Some((start, end)) = range {
            if start >= end {
                return Ok(futures_util::stream::empty().left_stream());
            }
            req = req.header(reqwest::header::RANGE, format!("bytes={start}-{}", end - 1));
        }
        let resp = self.send(req).await?;
        let resp = self.check(resp).await?;
        let endpoint = self.endpoint.clone();
        Ok(resp
            .bytes_stream()
            .map_err(move |source| ClientError::Transport {
                endpoint: endpoint.clone(),
                source,
            })
            .right_stream())
    }

    /// Reads a shard (or a range of it) into memory, within a deadline that grows with its
    /// size, and never more than the range's length or [`MAX_BYTES_READ_WHOLE`] (a node sending
    /// more gives a bad response); for blocks of a repair, small shards and tests.
    pub async fn get_shard_bytes(
        &self,
        object: ObjectId,
        index: ShardIndex,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>, ClientError> {
        let want = range.map_or(MAX_BYTES_READ_WHOLE, |(start, end)| {
            end.saturating_sub(start)
        });
        let read = async {
            let mut stream = Box::pin(self.get_shard(object, index, range).await?);
            let mut out = Vec::with_capacity(want.min(1 << 20) as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if out.len() as u64 + chunk.len() as u64 > want {
                    return Err(ClientError::BadResponse {
                        endpoint: self.endpoint.clone(),
                        detail: format!("more than the {want} bytes asked for"),
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        };
        tokio::time::timeout(self.fleet.timeouts().transfer(want), read)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::BadResponse {
                    endpoint: self.endpoint.clone(),
                    detail: format!("{want} bytes not read in time"),
                })
            })
    }

    /// The shard's description, or `None` if the node does not hold it.
    pub async fn head_shard(
        &self,
        object: ObjectId,
        index: ShardIndex,
    ) -> Result<Option<ShardSpec>, ClientError> {
        let request = self
            .http()
            .head(self.url(&format!("/v1/shards/{object}/{index}")))
            .timeout(self.control());
        let resp = self.send(request).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                endpoint: self.endpoint.clone(),
                status: resp.status().as_u16(),
                code: if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
                    "CorruptShard".into()
                } else {
                    "Unknown".into()
                },
                message: "HEAD failed".into(),
            });
        }
        let h = resp.headers();
        let bad = |detail: &str| ClientError::BadResponse {
            endpoint: self.endpoint.clone(),
            detail: detail.into(),
        };
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad(name))
        };
        let k: u8 = get(headers::K)?.parse().map_err(|_| bad(headers::K))?;
        let m: u8 = get(headers::M)?.parse().map_err(|_| bad(headers::M))?;
        Ok(Some(ShardSpec {
            object_id: object,
            shard_index: index,
            profile: ErasureProfile::new(k, m).map_err(|e| bad(&e.to_string()))?,
            stripe_size: get(headers::STRIPE_SIZE)?
                .parse()
                .map_err(|_| bad(headers::STRIPE_SIZE))?,
            object_length: get(headers::OBJECT_LENGTH)?
                .parse()
                .map_err(|_| bad(headers::OBJECT_LENGTH))?,
            placement: parse_placement(get(headers::PLACEMENT)?).map_err(|e| bad(&e))?,
        }))
    }

    /// Deletes a shard; `false` if the node did not hold it.
    pub async fn delete_shard(
        &self,
        object: ObjectId,
        index: ShardIndex,
    ) -> Result<bool, ClientError> {
        let request = self
            .http()
            .delete(self.url(&format!("/v1/shards/{object}/{index}")))
            .timeout(self.control());
        let resp = self.send(request).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp).await?;
        Ok(true)
    }

    /// One page of the node's shards after `after`.
    pub async fn list_shards(
        &self,
        after: Option<&ShardKey>,
        limit: usize,
    ) -> Result<ListReply, ClientError> {
        let mut url = format!("{}?limit={limit}", self.url("/v1/shards"));
        if let Some(a) = after {
            url.push_str(&format!("&after={}.{}", a.object_id, a.shard_index));
        }
        let resp = self
            .send(self.http().get(url).timeout(self.control()))
            .await?;
        let resp = self.check(resp).await?;
        resp.json().await.map_err(|e| self.transport(e))
    }

    /// The node's identity and space.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let resp = self
            .send(
                self.http()
                    .get(self.url("/v1/status"))
                    .timeout(self.control()),
            )
            .await?;
        self.check(resp)
            .await?
            .json()
            .await
            .map_err(|e| self.transport(e))
    }

    /// Asks the node to start a scrub pass; `false` if one was already running.
    pub async fn start_scrub(&self) -> Result<bool, ClientError> {
        let resp = self
            .send(
                self.http()
                    .post(self.url("/v1/scrub"))
                    .timeout(self.control()),
            )
            .await?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(false);
        }
        let reply: StartScrubReply = self
            .check(resp)
            .await?
            .json()
            .await
            .map_err(|e| self.transport(e))?;
        Ok(reply.started)
    }

    /// The scrubber's current and last pass.
    pub async fn scrub_status(&self) -> Result<ScrubStatus, ClientError> {
        let resp = self
            .send(
                self.http()
                    .get(self.url("/v1/scrub"))
                    .timeout(self.control()),
            )
            .await?;
        self.check(resp)
            .await?
            .json()
            .await
            .map_err(|e| self.transport(e))
    }

    /// Gives the node the fleet's storage nodes (the only peers its repairs may talk to).
    pub async fn put_peers(&self, peers: &Peers) -> Result<(), ClientError> {
        let body = serde_json::to_vec(peers).expect("peers serialise");
        let request = self
            .http()
            .put(self.url("/v1/peers"))
            .timeout(self.control())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.send(request).await?;
        self.check(resp).await?;
        Ok(())
    }

    /// `true` when the node answers `/readyz` with 200 (unsigned: probes carry no credential).
    pub async fn ready(&self) -> bool {
        let probe = self.http().get(self.url("/readyz")).timeout(self.control());
        matches!(probe.send().await, Ok(r) if r.status().is_success())
    }
}
