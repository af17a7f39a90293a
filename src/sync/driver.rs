//! The sync driver: the task that connects the pure [`SyncEngine`] to the
//! world. It feeds the engine network events, answers and timer ticks, and
//! carries out its actions: requests through the [`Client`], validation on
//! the blocking pool (with the wall clock for the future-timestamp rule),
//! imports and rollbacks on one store worker ([`super::store_worker`]; in
//! order, so downloads, validation and writes overlap), bans through the client,
//! and every few seconds each peer's standing (score, with the majority or
//! not) to the network for its inbound eviction.
//!
//! The rest of the program talks to it through the cloneable [`SyncHandle`].
//! It decides nothing about sync itself; that is the engine's job. It also
//! saves what should outlive the process (the engine's scores and bans, the
//! network's address book; see [`crate::sync::persist`]), debounced and once
//! more when it stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::chain::{BlockRef, Genesis, Hash};
use crate::metrics::Metrics;
use crate::net::slots::Standing;
use crate::net::{Client, InboundFault, NetEvent, NetEvents, RequestError};
use crate::store::Store;
use crate::sync::batch::ReqId;
use crate::sync::engine::{
    Action, Failure, LocalChain, Request, Response, Stats, StoreFailure, SyncEngine, SyncStatus,
};
use crate::sync::peer_book::{GenesisVerdict, PeerMemory};
use crate::sync::persist::Saver;
use crate::sync::progress::Progress;
use crate::sync::received::Encodings;
use crate::sync::store_worker::{self, store_failure, StoreDone, StoreJob};
use crate::sync::validation::Validations;
use crate::sync::SyncConfig;

/// How often sync's view of each peer is passed on to the network.
const STANDINGS_INTERVAL: Duration = Duration::from_secs(2);

/// One peer as the sync engine sees it (for status output).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSnapshot {
    pub peer: PeerId,
    /// `verified`, `checking` (genesis not known yet) or `wrong_genesis`.
    pub state: &'static str,
    pub height: Option<u64>,
    pub latency_ms: Option<f64>,
    pub score: i32,
    pub in_flight: u32,
    /// From which height it is known to hold another chain than ours.
    pub forked_at: Option<u64>,
}

/// What the driver publishes after every step.
#[derive(Clone, Debug)]
pub struct SyncSnapshot {
    pub status: SyncStatus,
    pub stats: Stats,
    pub peers: Vec<PeerSnapshot>,
    /// Peers banned now, with the reason.
    pub banned: Vec<(PeerId, &'static str)>,
    /// How long each ban has left.
    pub ban_remaining: Vec<(PeerId, Duration)>,
}

enum Command {
    SyncNow,
    Reset,
    LocalTip,
    Snapshot(oneshot::Sender<SyncSnapshot>),
}

/// Cloneable handle to the sync driver.
#[derive(Clone)]
pub struct SyncHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Option<SyncSnapshot>>,
}

impl SyncHandle {
    /// The latest published snapshot (updated after every driver step).
    pub fn status(&self) -> Option<SyncSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// A fresh snapshot taken by the driver now.
    pub async fn snapshot(&self) -> Option<SyncSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Manual sync: ask every peer for its height now and fetch what is missing.
    pub async fn sync_now(&self) {
        let _ = self.commands.send(Command::SyncNow).await;
    }

    /// Drop all in-flight sync work and start over from the stored tip
    /// (also clears a halt after a too-deep fork).
    pub async fn reset(&self) {
        let _ = self.commands.send(Command::Reset).await;
    }

    /// Tell the engine the store's tip moved outside sync (a produced block).
    pub async fn local_tip_changed(&self) {
        let _ = self.commands.send(Command::LocalTip).await;
    }

    /// Waits until `pred` holds for a published snapshot or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&SyncSnapshot) -> bool) -> bool {
        let mut rx = self.snapshot.clone();
        let wait = async {
            loop {
                if rx.borrow().as_ref().is_some_and(&pred) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

struct StoreView(Store);

impl LocalChain for StoreView {
    fn tip(&self) -> BlockRef {
        self.0.tip()
    }
    fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreFailure> {
        self.0.hash_at(height).map_err(store_failure)
    }
}

/// Starts the driver. It stops when the network's event channel closes.
/// `memory` is what an earlier run saved about peers (scores, bans).
pub fn spawn(
    config: SyncConfig,
    genesis: Genesis,
    store: Store,
    client: Client,
    events: NetEvents,
    metrics: Arc<Metrics>,
    memory: Vec<PeerMemory>,
) -> (SyncHandle, JoinHandle<()>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (snap_tx, snap_rx) = watch::channel(None);
    let now = Instant::now();
    let persist_interval = config.persist_interval;
    let genesis = Arc::new(genesis);
    let validations = Validations::new(
        genesis.clone(),
        config.validation_threads,
        ms(config.max_future_drift),
    );
    let mut engine = SyncEngine::new(
        config,
        genesis.hash(),
        genesis.slot_ms,
        Box::new(StoreView(store.clone())),
        now,
    );
    engine.restore(memory, now);
    let (job_tx, done_rx) = store_worker::spawn(store.clone(), genesis.slot_ms, metrics.clone());
    let driver = Driver {
        engine,
        store,
        client,
        events,
        commands: cmd_rx,
        snapshot: snap_tx,
        jobs: job_tx,
        done: done_rx,
        inflight: FuturesUnordered::new(),
        encodings: Encodings::default(),
        validations,
        progress: Progress::new(now),
        metrics,
        saver: Saver::new(persist_interval, now),
        standings_at: now,
    };
    let task = tokio::spawn(driver.run());
    (
        SyncHandle {
            commands: cmd_tx,
            snapshot: snap_rx,
        },
        task,
    )
}

/// An answer, with the blocks' encodings as received when it has them.
type Answer = (ReqId, Result<Response, Failure>, Option<bytes::Bytes>);

struct Driver {
    engine: SyncEngine,
    store: Store,
    client: Client,
    events: NetEvents,
    commands: mpsc::Receiver<Command>,
    snapshot: watch::Sender<Option<SyncSnapshot>>,
    jobs: mpsc::UnboundedSender<StoreJob>,
    done: mpsc::UnboundedReceiver<StoreDone>,
    inflight: FuturesUnordered<futures::future::BoxFuture<'static, Answer>>,
    /// Received encodings of the blocks in the engine's batches.
    encodings: Encodings,
    validations: Validations,
    progress: Progress,
    metrics: Arc<Metrics>,
    saver: Saver,
    /// When the peers' standings are next passed on to the network.
    standings_at: Instant,
}

impl Driver {
    async fn run(mut self) {
        info!(height = self.store.tip().height, "sync driver started");
        loop {
            self.execute().await;
            self.publish();
            let now = Instant::now();
            let engine = &self.engine;
            self.saver
                .tick(|| engine.peer_memory(now), &self.store, &self.client, now);
            self.pass_on_standings(now);
            let wake = self
                .engine
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let progress_at = self.progress.next;
            let mut wake = wake.min(progress_at);
            if self.progress.publish_pending {
                // A step was not published (rate limit): publish it soon, not
                // at the next unrelated wake-up (up to `status_interval` away).
                wake = wake.min(self.progress.next_publish);
            }
            let wake = tokio::time::Instant::from_std(wake);
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev),
                    None => break,
                },
                Some((id, result, encoded)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if let (Ok(Response::Blocks(blocks)), Some(encoded)) = (&result, encoded) {
                        self.encodings.handing(blocks, encoded);
                    }
                    self.engine.handle_response(id, result, Instant::now());
                }
                Some((batch, result)) = self.validations.next(), if !self.validations.is_idle() => {
                    self.engine.handle_validated(batch, result, Instant::now());
                }
                Some(done) = self.done.recv() => self.on_store_done(done),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    self.engine.handle_timeout(now);
                    if now >= self.progress.next {
                        self.progress.report(&self.engine, now);
                    }
                }
            }
        }
        self.saver
            .save_now(self.engine.peer_memory(Instant::now()), &self.store)
            .await;
        debug!("sync driver stopped");
    }

    /// Tells the network what sync thinks of each peer (scores change slowly;
    /// the inbound eviction only needs them when the slots are full).
    fn pass_on_standings(&mut self, now: Instant) {
        if now < self.standings_at {
            return;
        }
        self.standings_at = now + STANDINGS_INTERVAL;
        let standings = self
            .engine
            .peer_standings()
            .into_iter()
            .map(|(peer, score, with_majority)| {
                (
                    peer,
                    Standing {
                        score,
                        with_majority,
                    },
                )
            })
            .collect();
        let client = self.client.clone();
        tokio::spawn(async move { client.peer_standings(standings).await });
    }

    fn on_net_event(&mut self, ev: NetEvent) {
        let now = Instant::now();
        match ev {
            NetEvent::PeerConnected { peer, .. } => self.engine.handle_peer_connected(peer, now),
            NetEvent::PeerDisconnected { peer } => self.engine.handle_peer_disconnected(peer, now),
            NetEvent::TipAnnounced { peer, height, tip } => {
                self.engine.handle_tip_announced(peer, height, tip, now)
            }
            // Only bytes the peer alone can have sent are proof (garbage, or
            // hundreds of requests over its quota within a minute); a failed
            // or slow stream may be the network's doing, or ours.
            NetEvent::BadRequest {
                peer,
                fault: InboundFault::Malformed | InboundFault::Flooding,
                ..
            } => self.engine.handle_bad_request(peer, now),
            NetEvent::NewListenAddr { .. } | NetEvent::BadRequest { .. } => {}
        }
    }

    fn on_store_done(&mut self, done: StoreDone) {
        let now = Instant::now();
        match done {
            StoreDone::Imported(batch, result) => {
                if let Ok(tip) = &result {
                    self.progress.imported(&self.engine, tip);
                    // Once caught up, pass new tips on at once so blocks
                    // spread through the network in one hop per node.
                    let caught_up = self
                        .engine
                        .status(now)
                        .target
                        .is_none_or(|t| tip.height >= t);
                    if caught_up {
                        let client = self.client.clone();
                        let (h, hash) = (tip.height, tip.hash);
                        tokio::spawn(async move { client.announce_tip(h, hash).await });
                    }
                }
                self.engine.handle_imported(batch, result, now);
            }
            StoreDone::RolledBack(result) => self.engine.handle_rolled_back(result, now),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::SyncNow => {
                info!("manual sync requested");
                self.engine.sync_now(now)
            }
            Command::Reset => {
                info!("sync reset requested");
                self.engine.reset(now)
            }
            Command::LocalTip => self.engine.handle_local_tip(now),
            Command::Snapshot(reply) => {
                let _ = reply.send(self.take_snapshot(now));
            }
        }
    }

    /// Carries out every queued action without waiting on any of them.
    async fn execute(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { id, peer, request } => {
                    let client = self.client.clone();
                    let metrics = self.metrics.clone();
                    self.inflight
                        .push(send(client, metrics, id, peer, request).boxed());
                }
                Action::Validate { batch, blocks } => {
                    self.encodings.validating(batch, &blocks);
                    self.validations.queue(batch, blocks);
                }
                Action::Import { batch, blocks } => {
                    let encoded = self.encodings.take(batch, &blocks);
                    let _ = self.jobs.send(StoreJob::Import(batch, blocks, encoded));
                }
                Action::Rollback { height } => {
                    let _ = self.jobs.send(StoreJob::Rollback(height));
                }
                Action::Ban {
                    peer,
                    duration,
                    reason,
                } => {
                    warn!(%peer, reason = reason.name(), secs = duration.as_secs(), "banning peer");
                    self.client.ban(peer, duration).await;
                }
            }
        }
        self.encodings.settle();
        // The engine reads no clock; the wall clock for the future-timestamp
        // rule is read here, as each validation starts.
        self.validations.start(clock_ms);
    }

    fn take_snapshot(&self, now: Instant) -> SyncSnapshot {
        let mut peers: Vec<PeerSnapshot> = self
            .engine
            .peer_book()
            .iter()
            .map(|(peer, p)| PeerSnapshot {
                peer: *peer,
                state: match p.genesis {
                    GenesisVerdict::Verified => "verified",
                    GenesisVerdict::Unknown => "checking",
                    GenesisVerdict::Mismatch => "wrong_genesis",
                },
                height: p.height,
                latency_ms: p.latency.map(|l| l.as_secs_f64() * 1e3),
                score: p.score,
                in_flight: p.in_flight,
                forked_at: p.forked_at,
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        SyncSnapshot {
            status: self.engine.status(now),
            stats: self.engine.stats().clone(),
            peers,
            banned: self
                .engine
                .peer_book()
                .banned(now)
                .map(|(p, r)| (p, r.name()))
                .collect(),
            ban_remaining: self
                .engine
                .peer_book()
                .banned(now)
                .filter_map(|(p, _)| {
                    let (until, _) = self.engine.peer_book().ban_of(&p)?;
                    Some((p, until.saturating_duration_since(now)))
                })
                .collect(),
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        if now < self.progress.next_publish {
            self.progress.publish_pending = true;
            return;
        }
        self.progress.publish_pending = false;
        self.progress.next_publish = now + Duration::from_millis(50);
        let snap = self.take_snapshot(now);
        self.metrics
            .observe_sync(&crate::sync::progress::figures(&snap));
        self.snapshot.send_replace(Some(snap));
    }
}

/// Carries out one request; its latency goes to the per-protocol histogram.
async fn send(
    client: Client,
    metrics: Arc<Metrics>,
    id: ReqId,
    peer: PeerId,
    request: Request,
) -> Answer {
    use crate::protocol::{
        BLOCKS_PROTOCOL, BLOCK_HASH_PROTOCOL, GENESIS_PROTOCOL, HEIGHT_PROTOCOL,
    };
    let protocol = match request {
        Request::Genesis => GENESIS_PROTOCOL,
        Request::Height => HEIGHT_PROTOCOL,
        Request::BlockHash { .. } => BLOCK_HASH_PROTOCOL,
        Request::Blocks { .. } => BLOCKS_PROTOCOL,
    };
    let started = Instant::now();
    let mut encoded = None;
    let result = match request {
        Request::Genesis => client
            .request_genesis(peer)
            .await
            .map(|r| Response::Genesis(r.genesis)),
        Request::Height => client.request_height(peer).await.map(|r| Response::Height {
            height: r.height,
            tip: r.tip,
        }),
        Request::BlockHash { height } => {
            client
                .request_block_hash(peer, height)
                .await
                .map(|r| Response::BlockHash {
                    height: r.height,
                    hash: r.hash,
                })
        }
        Request::Blocks { start, count } => client
            .request_blocks_received(peer, start, count)
            .await
            .map(|r| {
                encoded = r.encoded;
                Response::Blocks(r.blocks)
            }),
    };
    metrics.observe_request(protocol, result.is_ok(), started.elapsed());
    (id, result.map_err(failure), encoded)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ms)
}

/// The clock received blocks' timestamps are judged by: the wall clock,
/// moved by a testnet's clock offset (the producer reads the same one).
#[cfg(feature = "testnet")]
fn clock_ms() -> u64 {
    crate::testnet::offset_now_ms(now_ms())
}
#[cfg(not(feature = "testnet"))]
fn clock_ms() -> u64 {
    now_ms()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn failure(e: RequestError) -> Failure {
    match e {
        RequestError::Timeout => Failure::Timeout,
        // A refusal (the peer busy, over our quota there) is retried
        // elsewhere like a lost connection, never penalized.
        RequestError::Unreachable
        | RequestError::ConnectionClosed
        | RequestError::Shutdown
        | RequestError::Refused => Failure::Disconnected,
        RequestError::UnsupportedProtocol => Failure::Unsupported,
        RequestError::BadResponse(_) => Failure::Malformed,
    }
}
