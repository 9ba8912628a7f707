//! Raft messages between gateways: JSON over HTTP to the peer's admin port
//! (`/internal/v1/raft/{group}/*`, signed with the fleet credential for that peer), answered by
//! [`super::rpc`].

use std::sync::Arc;
use std::time::Duration;

use cairn_transport::FleetClient;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
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
    fleet: FleetClient,
    group: GroupId,
    missing: Option<MissingReporter>,
}

impl HttpNetwork {
    /// Peers of `group` are called with `fleet`.
    pub fn new(fleet: FleetClient, group: GroupId) -> Self {
        Self {
            fleet,
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
        let request = self.net.fleet.http().post(&url).timeout(ttl).json(req);
        let sent = self.net.fleet.send(&self.target.to_string(), request).await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            // The peer runs no replica of the group (yet: a split it has not applied, a
            // replica being added): unreachable for this group, so openraft backs off
            // ([`RaftNetwork::backoff`]) instead of resending at once, hundreds of times a
            // second, until the group starts there or its leader sends a snapshot.
            if let Some(report) = &self.net.missing {
                report(self.net.group, self.target);
            }
            let e = std::io::Error::other(format!("{url}: no replica of the group there"));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
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

/// First wait before resending to a peer that was unreachable; doubled on each failure up to
/// [`RETRY_AT_MOST`]. Short: a split's new group is refused by its followers until they apply
/// the split, usually a heartbeat after its leader.
const RETRY_FIRST: Duration = Duration::from_millis(20);

/// Longest wait before resending to an unreachable peer (openraft's default).
const RETRY_AT_MOST: Duration = Duration::from_millis(500);

/// The waits before resending to an unreachable peer: [`RETRY_FIRST`], doubling, at most
/// [`RETRY_AT_MOST`].
fn retry_waits() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..).map(|i| {
        RETRY_FIRST
            .saturating_mul(1 << i.min(10))
            .min(RETRY_AT_MOST)
    })
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    fn backoff(&self) -> Backoff {
        Backoff::new(retry_waits())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_without_the_group_is_unreachable_for_it_and_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let routes = axum::Router::new().fallback(|| async { axum::http::StatusCode::NOT_FOUND });
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = reported.clone();
        let secret = cairn_transport::Secret::new("t", &"s".repeat(32), 32).unwrap();
        let mut net = HttpNetwork::new(FleetClient::with_secret(&secret), 7).reporting_missing(
            Arc::new(move |group, peer| seen.lock().unwrap().push((group, peer))),
        );
        let mut peer = net.new_client(2, &BasicNode { addr }).await;
        let vote = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let sent = peer
            .vote(vote, RPCOption::new(Duration::from_secs(5)))
            .await;
        assert!(matches!(sent, Err(RPCError::Unreachable(_))), "{sent:?}");
        assert_eq!(*reported.lock().unwrap(), vec![(7, 2)]);
    }

    #[test]
    fn resends_to_an_unreachable_peer_wait_longer_each_time_up_to_half_a_second() {
        let ms: Vec<u128> = retry_waits().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![20, 40, 80, 160, 320, 500, 500, 500]);
    }
}
