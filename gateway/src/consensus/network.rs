//! Raft messages between gateways: JSON over HTTP to the peer's admin port
//! (`/internal/v1/raft/{group}/*`, with the fleet's admin token), answered by [`super::rpc`].

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TypeConfig;
use super::store::GroupId;

type NodeId = u64;

/// Told that a peer has no replica of a group (it answered 404): the group and the peer.
pub type MissingReporter = Arc<dyn Fn(GroupId, NodeId) + Send + Sync>;

/// Makes a client per peer of one Raft group; the HTTP connection pool is shared.
#[derive(Clone)]
pub struct HttpNetwork {
    http: reqwest::Client,
    token: String,
    group: GroupId,
    missing: Option<MissingReporter>,
}

impl HttpNetwork {
    /// Peers of `group` are called with `http` and authenticate with `token`.
    pub fn new(http: reqwest::Client, token: String, group: GroupId) -> Self {
        Self {
            http,
            token,
            group,
            missing: None,
        }
    }

    /// Peers answering that they have no replica of the group are reported to `missing` (the
    /// host, which then gets the group's snapshot to them).
    pub fn reporting_missing(mut self, missing: MissingReporter) -> Self {
        self.missing = Some(missing);
        self
    }
}

/// The connection to one peer.
pub struct HttpPeer {
    target: NodeId,
    addr: String,
    net: HttpNetwork,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpPeer {
        HttpPeer {
            target,
            addr: node.addr.trim_end_matches('/').to_string(),
            net: self.clone(),
        }
    }
}

impl HttpPeer {
    async fn call<Req, Resp, E>(
        &self,
        what: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/internal/v1/raft/{}/{what}", self.addr, self.net.group);
        let sent = self
            .net
            .http
            .post(&url)
            .bearer_auth(&self.net.token)
            .timeout(ttl)
            .json(req)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if resp.status() == reqwest::StatusCode::NOT_FOUND
            && let Some(report) = &self.net.missing
        {
            report(self.net.group, self.target);
        }
        if !resp.status().is_success() {
            let e = std::io::Error::other(format!("{url}: HTTP {}", resp.status()));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let answer: Result<Resp, E> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
