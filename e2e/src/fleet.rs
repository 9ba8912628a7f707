//! The multi-process fleet launcher: real `cairn-storage-node` and `cairn-gateway serve` processes
//! on 127.0.0.1, described by `DIR/fleet.json` (endpoints, pids, credentials) so tests and people
//! can find them and `down` can stop them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why the launcher failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A binary is missing.
    #[error("binary {0} not found (build the workspace first, or pass --bin-dir)")]
    MissingBinary(PathBuf),
    /// A process could not be started or did not become ready.
    #[error("{what}: {detail}")]
    Process { what: String, detail: String },
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The fleet file is unreadable.
    #[error("fleet file {path}: {detail}")]
    BadFleetFile { path: PathBuf, detail: String },
    /// The request cannot be served yet.
    #[error("{0}")]
    Unsupported(String),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Directory for data, logs and `fleet.json`.
    pub dir: PathBuf,
    /// Directory holding `cairn-gateway` and `cairn-storage-node`.
    pub bin_dir: PathBuf,
    /// Gateways.
    pub gateways: usize,
    /// Zones (named a, b, c, ...).
    pub zones: usize,
    /// Storage nodes per zone.
    pub nodes_per_zone: usize,
    /// First port; the fleet uses consecutive ports from here.
    pub base_port: u16,
    /// Extra arguments for every `cairn-gateway serve`.
    pub gateway_args: Vec<String>,
}

/// One storage node of a running fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Node id.
    pub id: String,
    /// Zone.
    pub zone: String,
    /// API base URL.
    pub endpoint: String,
    /// Process id.
    pub pid: u32,
    /// Data directory.
    pub data_dir: PathBuf,
}

/// One gateway of a running fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayEntry {
    /// S3 endpoint URL.
    pub s3: String,
    /// Admin API URL.
    pub admin: String,
    /// Process id.
    pub pid: u32,
    /// Data directory (its index).
    pub data_dir: PathBuf,
    /// The arguments it was started with (to restart it the same way).
    #[serde(default)]
    pub args: Vec<String>,
}

/// `fleet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetFile {
    /// The gateways.
    pub gateways: Vec<GatewayEntry>,
    /// The storage nodes.
    pub nodes: Vec<NodeEntry>,
    /// Root access key id.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// Admin API token.
    pub admin_token: String,
    /// The fleet credential every gateway and node holds (signs their requests to each other).
    #[serde(default)]
    pub fleet_secret: String,
    /// The gateways' index seal key.
    #[serde(default)]
    pub seal_key: String,
}

impl FleetFile {
    /// The environment of a gateway of this fleet.
    fn gateway_env(&self) -> [(&'static str, &str); 5] {
        [
            ("CAIRN_ROOT_ACCESS_KEY", self.access_key.as_str()),
            ("CAIRN_ROOT_SECRET_KEY", self.secret_key.as_str()),
            ("CAIRN_ADMIN_TOKEN", self.admin_token.as_str()),
            ("CAIRN_FLEET_SECRET", self.fleet_secret.as_str()),
            ("CAIRN_INDEX_SEAL_KEY", self.seal_key.as_str()),
        ]
    }
}

/// The directory holding this executable (where cargo puts the workspace's binaries too).
pub fn default_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |source| FleetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn token() -> String {
    (0..40)
        .map(|_| {
            let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rand::random_range(0..36)];
            c as char
        })
        .collect()
}

fn spawn(
    bin: &Path,
    args: &[String],
    envs: &[(&str, &str)],
    log: &Path,
) -> Result<u32, FleetError> {
    // Appended to: a process restarted keeps the log of its earlier runs.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // Its own process group, so a Ctrl-C in the launching shell does not stop the fleet.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|e| FleetError::Process {
        what: bin.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(child.id())
}

fn wait_for_port(addr: &str, what: &str) -> Result<(), FleetError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(FleetError::Process {
                what: what.into(),
                detail: format!("did not listen on {addr} within 30 s (see its log)"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts storage node `id` of `zone` listening on 127.0.0.1:`port`, its data and log in `dir`.
fn start_node(
    node_bin: &Path,
    dir: &Path,
    id: &str,
    zone: &str,
    port: u16,
    fleet_secret: &str,
) -> Result<NodeEntry, FleetError> {
    let data_dir = dir.join("nodes").join(id);
    let addr = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "--node-id",
        id,
        "--zone",
        zone,
        "--listen",
        &addr,
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data_dir.display().to_string()])
    .collect();
    let log = dir.join("logs").join(format!("{id}.log"));
    let pid = spawn(
        node_bin,
        &args,
        &[("CAIRN_FLEET_SECRET", fleet_secret)],
        &log,
    )?;
    Ok(NodeEntry {
        id: id.to_string(),
        zone: zone.to_string(),
        endpoint: format!("http://{addr}"),
        pid,
        data_dir,
    })
}

fn write_fleet_file(dir: &Path, fleet: &FleetFile) -> Result<(), FleetError> {
    let path = dir.join("fleet.json");
    std::fs::write(&path, serde_json::to_vec_pretty(fleet).expect("serialises")).map_err(io(&path))
}

/// Starts one more storage node (`id`, in `zone`, on 127.0.0.1:`port`) for the fleet in `dir`,
/// waits until it listens and records it in `fleet.json` (so `down` stops it). The gateways do
/// not know it until it is registered (`PUT /admin/v1/nodes/{id}` on any gateway).
pub fn add_node(
    dir: &Path,
    fleet: &mut FleetFile,
    id: &str,
    zone: &str,
    port: u16,
) -> Result<NodeEntry, FleetError> {
    let node = start_node(
        &default_bin_dir().join("cairn-storage-node"),
        dir,
        id,
        zone,
        port,
        &fleet.fleet_secret,
    )?;
    fleet.nodes.push(node.clone());
    write_fleet_file(dir, fleet)?;
    wait_for_port(node.endpoint.trim_start_matches("http://"), id)?;
    Ok(node)
}

/// Registers storage node `node` through the admin API of gateway `g` (`PUT
/// /admin/v1/nodes/{id}`): every gateway of the fleet writes to it within seconds.
pub async fn register_node(
    fleet: &FleetFile,
    g: usize,
    node: &NodeEntry,
) -> Result<(), FleetError> {
    let url = format!("{}/admin/v1/nodes/{}", fleet.gateways[g].admin, node.id);
    let failed = |detail: String| FleetError::Process {
        what: format!("registering {}", node.id),
        detail,
    };
    let resp = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&fleet.admin_token)
        .json(&serde_json::json!({"zone": node.zone, "endpoint": node.endpoint}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(failed(format!("{url}: HTTP {status}: {body}")));
    }
    Ok(())
}

/// The first unused id `node-{zone}{n}` of the fleet, and the port after every port it uses.
pub fn next_node(fleet: &FleetFile, zone: &str) -> (String, u16) {
    let id = (1..)
        .map(|n| format!("node-{zone}{n}"))
        .find(|id| fleet.nodes.iter().all(|n| &n.id != id))
        .expect("some id is free");
    let port_of = |url: &str| url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let used = fleet
        .nodes
        .iter()
        .map(|n| n.endpoint.as_str())
        .chain(
            fleet
                .gateways
                .iter()
                .flat_map(|g| [g.s3.as_str(), g.admin.as_str()]),
        )
        .filter_map(port_of);
    (id, used.max().unwrap_or(9200) + 1)
}

/// Starts the fleet and writes `DIR/fleet.json`.
pub fn up(spec: &FleetSpec) -> Result<FleetFile, FleetError> {
    if spec.gateways == 0 {
        return Err(FleetError::Unsupported("a fleet needs a gateway".into()));
    }
    let node_bin = spec.bin_dir.join("cairn-storage-node");
    let gw_bin = spec.bin_dir.join("cairn-gateway");
    for b in [&node_bin, &gw_bin] {
        if !b.exists() {
            return Err(FleetError::MissingBinary(b.clone()));
        }
    }
    let logs = spec.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let mut port = spec.base_port;
    let mut nodes = Vec::new();
    let (fleet_secret, seal_key) = (token(), token());
    for z in 0..spec.zones {
        let zone = ((b'a' + z as u8) as char).to_string();
        for i in 0..spec.nodes_per_zone {
            let id = format!("node-{zone}{}", i + 1);
            nodes.push(start_node(
                &node_bin,
                &spec.dir,
                &id,
                &zone,
                port,
                &fleet_secret,
            )?);
            port += 1;
        }
    }
    for n in &nodes {
        wait_for_port(n.endpoint.trim_start_matches("http://"), &n.id)?;
    }
    let mut fleet = FleetFile {
        gateways: Vec::new(),
        nodes,
        access_key: format!("CF{}", &token()[..18]),
        secret_key: token(),
        admin_token: token(),
        fleet_secret,
        seal_key,
    };
    // Every gateway's ports first: with more than one, each is told all of its peers.
    let addrs: Vec<(String, String)> = (0..spec.gateways)
        .map(|g| {
            let p = port + 2 * g as u16;
            (format!("127.0.0.1:{p}"), format!("127.0.0.1:{}", p + 1))
        })
        .collect();
    for (g, (s3, admin)) in addrs.iter().cloned().enumerate() {
        let data_dir = spec.dir.join("gateways").join(format!("gw-{g}"));
        let mut args = vec![
            "serve".to_string(),
            "--data".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            s3.clone(),
            "--admin-listen".into(),
            admin.clone(),
        ];
        for n in &fleet.nodes {
            args.push("--node".into());
            args.push(format!("{}@{}={}", n.id, n.zone, n.endpoint));
        }
        args.extend(spec.gateway_args.iter().cloned());
        if spec.gateways > 1 {
            // Gateways take the zones in turn, as a zone-spread StatefulSet places them.
            args.push("--zone".into());
            args.push(((b'a' + (g % spec.zones.max(1)) as u8) as char).to_string());
            args.push("--gateway-id".into());
            args.push((g + 1).to_string());
            for (p, (_, peer_admin)) in addrs.iter().enumerate() {
                args.push("--peer".into());
                args.push(format!("{}=http://{peer_admin}", p + 1));
            }
        }
        let pid = spawn(
            &gw_bin,
            &args,
            &fleet.gateway_env(),
            &logs.join(format!("gw-{g}.log")),
        )?;
        fleet.gateways.push(GatewayEntry {
            s3: format!("http://{s3}"),
            admin: format!("http://{admin}"),
            pid,
            data_dir,
            args,
        });
    }
    for (s3, _) in &addrs {
        wait_for_port(s3, "gateway")?;
    }
    write_fleet_file(&spec.dir, &fleet)?;
    Ok(fleet)
}

/// Starts gateway `g` of the fleet in `dir` again with its original arguments (after it was
/// killed), waits until it listens, and records its new pid in `fleet.json`.
///
/// First waits for the gateway's previous process (its recorded pid; 0 for none) to be gone: a
/// process sent SIGKILL a moment ago may still hold its index's lock and its listening socket,
/// so the new one would fail to open the index while the old socket made it seem to listen.
pub fn restart_gateway(dir: &Path, fleet: &mut FleetFile, g: usize) -> Result<u32, FleetError> {
    let gw_bin = default_bin_dir().join("cairn-gateway");
    let entry = &fleet.gateways[g];
    let deadline = Instant::now() + Duration::from_secs(20);
    while entry.pid != 0 && alive(entry.pid) {
        if Instant::now() > deadline {
            return Err(FleetError::Process {
                what: format!("gateway {g}"),
                detail: format!("its previous process {} is still running", entry.pid),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = dir.join("logs").join(format!("gw-{g}.restarted.log"));
    let pid = spawn(&gw_bin, &entry.args, &fleet.gateway_env(), &log)?;
    wait_for_port(entry.s3.trim_start_matches("http://"), "gateway")?;
    fleet.gateways[g].pid = pid;
    write_fleet_file(dir, fleet)?;
    Ok(pid)
}

/// Reads `DIR/fleet.json`.
pub fn read(dir: &Path) -> Result<FleetFile, FleetError> {
    let path = dir.join("fleet.json");
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| FleetError::BadFleetFile {
        path,
        detail: e.to_string(),
    })
}

/// Whether process `pid` still runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Sends `signal` (e.g. "TERM", "KILL") to a process.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Stops every process of the fleet in `dir`: SIGTERM, then SIGKILL after `grace`.
pub fn down(dir: &Path, grace: Duration) -> Result<(), FleetError> {
    let fleet = read(dir)?;
    let pids: Vec<u32> = fleet
        .gateways
        .iter()
        .map(|g| g.pid)
        .chain(fleet.nodes.iter().map(|n| n.pid))
        .collect();
    for &p in &pids {
        signal(p, "TERM");
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        signal(p, "KILL");
    }
    Ok(())
}
