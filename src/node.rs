//! Assembles a running node: store, node key, network, sync driver, block
//! producer ([`crate::producer`]) and the HTTP API.
//!
//! [`run`] is what `concord run` executes. [`start`] is the same without the
//! wait, for tests and embedders: it returns a [`RunningNode`] holding the
//! [`Client`] and the tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::{self, ApiContext, ApiError};
use crate::chain::{AuthorityKey, Genesis, Hash};
use crate::metrics::Metrics;
use crate::net::{self, keys, Client, NetConfig};
use crate::producer::{Producer, SignedSlots, SignedSlotsError, SlotSigner};
use crate::store::{Store, StoreError};
use crate::sync::{self, SyncConfig, SyncHandle};

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    /// Holds the chain store (sled files) and the node key (`node.key`).
    pub data_dir: PathBuf,
    pub genesis: Genesis,
    pub net: NetConfig,
    /// Produce blocks in this authority's slots.
    pub produce: Option<AuthorityKey>,
    /// Sync engine tunables (its `seed` is replaced by one derived from the peer id).
    pub sync: SyncConfig,
    /// Serve the HTTP API here (`None`: no API). Port 0 picks a free port;
    /// see [`RunningNode::api_addr`].
    pub api: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the chain store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("cannot produce: key {key} is not an authority of genesis {genesis}")]
    NotAuthority { key: String, genesis: Hash },
    #[error(transparent)]
    SignedSlots(#[from] SignedSlotsError),
    #[error("cannot flush the store: {0}")]
    Flush(StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("background task failed: {0}")]
    Task(String),
}

/// The API server task and the sender that stops it.
type ApiTask = (oneshot::Sender<()>, JoinHandle<Result<(), ApiError>>);

/// A started node.
pub struct RunningNode {
    pub client: Client,
    pub store: Store,
    pub sync: SyncHandle,
    /// Concord's metrics (what `/metrics` serves under `concord_`).
    pub metrics: Arc<Metrics>,
    /// Where the API listens, if enabled.
    pub api_addr: Option<SocketAddr>,
    api: Option<ApiTask>,
    net_task: JoinHandle<()>,
    sync_task: JoinHandle<()>,
    producer_task: Option<JoinHandle<()>>,
}

/// Where the chain store lives: the data dir itself, as for
/// `concord generate --data-dir` (sled ignores the `node.key` next to it).
pub fn store_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.to_path_buf()
}

/// Opens the store (a store of another network is an error), loads or creates
/// the node key, starts the network and, if configured, the block producer.
pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    let NodeConfig {
        data_dir,
        genesis,
        net: net_config,
        produce,
        sync: mut sync_config,
        api: api_addr,
    } = config;
    let signed_slots = match &produce {
        Some(key) if !genesis.is_authority(&key.public()) => {
            return Err(NodeError::NotAuthority {
                key: key.public().to_hex(),
                genesis: genesis.hash(),
            });
        }
        // Without its record the producer could sign a slot twice: no record, no production.
        Some(_) => Some(SignedSlots::load(&data_dir)?),
        None => None,
    };
    let path = store_path(&data_dir);
    let store = {
        let (p, g) = (path.clone(), genesis.clone());
        tokio::task::spawn_blocking(move || Store::open(&p, &g))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?
            .map_err(|source| NodeError::Store { path, source })?
    };
    let tip = store.tip();
    info!(genesis = %genesis.hash(), network = %genesis.name, height = tip.height, tip = %tip.hash, "chain store opened");
    // Scores, bans and the address book of the last run. Unreadable, they
    // are only lost, not a reason to refuse to start.
    let remembered = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || sync::persist::load(&s, std::time::Instant::now()))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?
            .unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the saved peers; starting without them");
                sync::persist::Loaded::default()
            })
    };

    // Bind the API before starting the network so a taken port fails fast.
    let api_listener = match api_addr {
        Some(addr) => Some(api::bind(addr).await?),
        None => None,
    };
    // One registry: Concord's metrics (`concord_*`) and libp2p's (`libp2p_*`).
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    registry.sub_registry_with_prefix("concord").register(
        "store_damaged_reads",
        "Reads that found a stored block damaged (not served; see `concord check`)",
        store.damaged_reads(),
    );

    // A node with somewhere to dial must not produce without peers (see
    // `SyncConfig::produce_alone_after`).
    let alone = (net_config.bootstrap.is_empty() && remembered.addresses.is_empty())
        .then_some(sync_config.produce_alone_after);
    let node_key = keys::load_or_generate(&data_dir)?;
    let (client, events, event_loop) = net::new_with_metrics(
        node_key,
        net_config,
        store.clone(),
        genesis.hash(),
        &mut registry,
        metrics.clone(),
    )?;
    let net_task = tokio::spawn(event_loop.run());
    if !remembered.addresses.is_empty() {
        client.add_known(remembered.addresses).await;
    }

    // Different nodes make different random choices (voter samples, ties).
    let id = client.local_peer_id().to_bytes();
    let digest = Hash::digest(&id);
    sync_config.seed = u64::from_le_bytes(digest.0[..8].try_into().unwrap_or([0; 8]));
    let (sync, sync_task) = sync::driver::spawn(
        sync_config,
        genesis.clone(),
        store.clone(),
        client.clone(),
        events,
        metrics.clone(),
        remembered.memory,
    );
    let node_metrics = metrics.clone();

    let producer_task = produce.zip(signed_slots).map(|(key, signed)| {
        info!(authority = %key.public(), "block production enabled");
        tokio::spawn(
            Producer {
                signer: SlotSigner {
                    key,
                    genesis,
                    store: store.clone(),
                    metrics,
                    signed,
                },
                client: client.clone(),
                sync: sync.clone(),
                alone,
            }
            .run(),
        )
    });

    let (api_addr, api) = match api_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let ctx = ApiContext {
                client: client.clone(),
                sync: sync.clone(),
                store: store.clone(),
                registry: Arc::new(registry),
            };
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(api::serve(listener, ctx, async {
                let _ = stop_rx.await;
            }));
            (addr, Some((stop_tx, task)))
        }
        None => (None, None),
    };

    Ok(RunningNode {
        client,
        store,
        sync,
        metrics: node_metrics,
        api_addr,
        api,
        net_task,
        sync_task,
        producer_task,
    })
}

impl RunningNode {
    /// Stops the API and block production, stops the network (which ends
    /// the sync driver; an import already handed to the store finishes, as
    /// one atomic batch) and flushes the store.
    pub async fn stop(self) -> Result<(), NodeError> {
        if let Some((stop, task)) = self.api {
            let _ = stop.send(());
            // Open keep-alive connections must not hold the shutdown up.
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(Err(e))) => warn!(error = %e, "API server stopped with an error"),
                Ok(_) => {}
                Err(_) => warn!("API server did not stop within 2 s"),
            }
        }
        if let Some(task) = self.producer_task {
            task.abort();
            let _ = task.await;
        }
        // Taken while the network still runs; the driver saves the scores
        // and bans itself once the network is gone.
        let book = self.client.address_book().await;
        self.client.shutdown().await;
        let _ = self.net_task.await;
        // The network is gone, so the driver's event channel closes and it ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sync_task).await;
        let store = self.store;
        tokio::task::spawn_blocking(move || {
            if !book.is_empty() {
                if let Err(e) = sync::persist::save_addresses(&store, &book) {
                    warn!(error = %e, "cannot save the address book");
                }
            }
            store.flush()
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
        .map_err(NodeError::Flush)?;
        info!("node stopped, store flushed");
        Ok(())
    }
}

/// Runs a node until `shutdown` resolves, then stops it gracefully.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let node = start(config).await?;
    shutdown.await;
    info!("shutdown requested");
    node.stop().await
}
