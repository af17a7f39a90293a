//! Concord's Prometheus metrics: one [`Metrics`] struct, registered once in
//! the node's [`Registry`] (under the `concord_` prefix, next to libp2p's own
//! `libp2p_` metrics) and shared through an `Arc`.
//!
//! Owns metric names, help texts, label sets and buckets. Writers: the sync
//! driver ([`Metrics::observe_sync`] with plain [`SyncFigures`] after each
//! published snapshot,
//! [`Metrics::observe_request`] around each outbound request, and
//! [`Metrics::equivocation`] from its store worker), the block producer
//! ([`Metrics::equivocation`]) and the net event loop (inbound requests
//! served/refused, redials, address book size, silent connections closed). Readers: `/metrics` in
//! [`crate::api`]. It must not hold node state of its own or do I/O, and the
//! pure sync engine must not see it.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set of static names and values.
pub type Labels = Vec<(&'static str, &'static str)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

mod sync_figures;
pub use sync_figures::{SyncCounters, SyncFigures};

/// Inbound streams dropped over a connection's stream cap, in the whole
/// process: libp2p reports the drop only as a log event, which
/// [`crate::net::stream_cap::StreamCapLayer`] counts here.
pub fn streams_over_cap() -> Counter {
    static COUNTER: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);
    COUNTER.clone()
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every Concord metric. Counters mirror the sync engine's cumulative
/// [`crate::sync::engine::Stats`]; gauges mirror its status.
pub struct Metrics {
    height: Gauge,
    target: Gauge,
    best: Gauge,
    syncing: Gauge,
    pending_blocks: Gauge,
    batches_in_flight: Gauge,
    peers: Family<Labels, Gauge>,
    blocks_imported: Counter,
    bytes_imported: Counter,
    bytes_downloaded: Counter,
    requests_sent: Family<Labels, Counter>,
    retries: Counter,
    hedges: Counter,
    votes: Family<Labels, Counter>,
    penalties: Family<Labels, Counter>,
    bans: Family<Labels, Counter>,
    reorgs: Counter,
    mode: Family<Labels, Gauge>,
    fork_peers: Gauge,
    splits: Counter,
    halts: Counter,
    polls: Counter,
    fork_judgments: Counter,
    checkpoint_rejections: Counter,
    future_blocks: Counter,
    store_read_errors: Counter,
    equivocations: Family<Labels, Counter>,
    request_duration: HistogramFamily,
    inbound_served: Family<Labels, Counter>,
    inbound_refused: Family<Labels, Counter>,
    redials: Counter,
    address_book: Gauge,
    disk_full: Gauge,
    inbound_over_quota: Family<Labels, Counter>,
    inbound_over_budget: Family<Labels, Counter>,
    inbound_budget: Gauge,
    quota_peak: Family<Labels, Gauge>,
    streams_over_cap: Counter,
    quota_low_water: Family<Labels, Gauge>,
    inbound_evicted: Counter,
    inbound_slot_refused: Family<Labels, Counter>,
    silent_closed: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under `concord_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            height: Gauge::default(),
            target: Gauge::default(),
            best: Gauge::default(),
            syncing: Gauge::default(),
            pending_blocks: Gauge::default(),
            batches_in_flight: Gauge::default(),
            peers: Family::default(),
            blocks_imported: Counter::default(),
            bytes_imported: Counter::default(),
            bytes_downloaded: Counter::default(),
            requests_sent: Family::default(),
            retries: Counter::default(),
            hedges: Counter::default(),
            votes: Family::default(),
            penalties: Family::default(),
            bans: Family::default(),
            reorgs: Counter::default(),
            mode: Family::default(),
            fork_peers: Gauge::default(),
            splits: Counter::default(),
            halts: Counter::default(),
            polls: Counter::default(),
            fork_judgments: Counter::default(),
            checkpoint_rejections: Counter::default(),
            future_blocks: Counter::default(),
            store_read_errors: Counter::default(),
            equivocations: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            inbound_served: Family::default(),
            inbound_refused: Family::default(),
            redials: Counter::default(),
            address_book: Gauge::default(),
            disk_full: Gauge::default(),
            inbound_over_quota: Family::default(),
            inbound_over_budget: Family::default(),
            inbound_budget: Gauge::default(),
            quota_peak: Family::default(),
            streams_over_cap: streams_over_cap(),
            quota_low_water: Family::default(),
            inbound_evicted: Counter::default(),
            inbound_slot_refused: Family::default(),
            silent_closed: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("concord");
        r.register("height", "Height of the local chain tip", m.height.clone());
        r.register(
            "target",
            "Height the node syncs toward (2/3 of peers agree; 0 while unknown)",
            m.target.clone(),
        );
        r.register(
            "best_peer_height",
            "Best height any peer claims",
            m.best.clone(),
        );
        r.register("syncing", "1 while behind the target", m.syncing.clone());
        r.register(
            "disk_full",
            "1 while imports fail for lack of disk space (downloads paused, retried with backoff)",
            m.disk_full.clone(),
        );
        r.register(
            "pending_blocks",
            "Blocks planned but not yet imported",
            m.pending_blocks.clone(),
        );
        r.register(
            "batches_in_flight",
            "Block batches downloading",
            m.batches_in_flight.clone(),
        );
        r.register(
            "peers",
            "Peers in the sync peer book, by state (verified, checking, wrong_genesis, banned)",
            m.peers.clone(),
        );
        r.register(
            "blocks_imported",
            "Blocks imported by sync",
            m.blocks_imported.clone(),
        );
        r.register(
            "bytes_imported",
            "Encoded bytes of the blocks imported by sync",
            m.bytes_imported.clone(),
        );
        r.register(
            "bytes_downloaded",
            "Encoded bytes of the blocks downloaded by sync",
            m.bytes_downloaded.clone(),
        );
        r.register(
            "requests_sent",
            "Outbound sync requests, by kind",
            m.requests_sent.clone(),
        );
        r.register("retries", "Batch downloads retried", m.retries.clone());
        r.register(
            "hedges",
            "Slow batch downloads duplicated to another peer",
            m.hedges.clone(),
        );
        r.register(
            "votes",
            "Batch hash votes, by outcome (won, lost, inconclusive)",
            m.votes.clone(),
        );
        r.register(
            "penalties",
            "Peer penalties, by reason",
            m.penalties.clone(),
        );
        r.register("bans", "Peer bans, by reason", m.bans.clone());
        r.register("reorgs", "Chain reorganisations", m.reorgs.clone());
        r.register(
            "sync_mode",
            "1 for the sync engine's current mode (normal, searching, rolling_back, halted, split), 0 for the others",
            m.mode.clone(),
        );
        r.register(
            "fork_peers",
            "Connected peers known to hold another chain than ours",
            m.fork_peers.clone(),
        );
        r.register(
            "splits",
            "Times the peers were found split with no 2/3 majority",
            m.splits.clone(),
        );
        r.register(
            "halts",
            "Reorgs refused for being deeper than max_reorg_depth",
            m.halts.clone(),
        );
        r.register(
            "chain_polls",
            "Polls of the peers about a block we hold",
            m.polls.clone(),
        );
        r.register(
            "fork_judgments",
            "Times a peer was newly found to hold another chain than ours",
            m.fork_judgments.clone(),
        );
        r.register(
            "checkpoint_rejections",
            "Peers or blocks refused for contradicting a checkpoint",
            m.checkpoint_rejections.clone(),
        );
        r.register(
            "future_blocks",
            "Downloaded batches put off because a block was too far ahead of the local clock",
            m.future_blocks.clone(),
        );
        r.register(
            "store_read_errors",
            "Reads of our own chain that failed (each stopped the fork decision that needed it)",
            m.store_read_errors.clone(),
        );
        r.register(
            "equivocations",
            "Two different blocks for one slot by the same authority, by where they were seen \
             (reorg: a rollback replaced one with the other; own_slot: our producer was about \
             to sign a second block for a slot and refused)",
            m.equivocations.clone(),
        );
        // Both series exist from the start, so a scrape shows 0 rather than nothing.
        for seen in ["reorg", "own_slot"] {
            let _ = m.equivocations.get_or_create(&vec![("seen", seen)]);
        }
        r.register(
            "request_duration_seconds",
            "Outbound request latency, by protocol and result (ok, error)",
            m.request_duration.clone(),
        );
        r.register(
            "inbound_requests_served",
            "Inbound requests answered, by protocol",
            m.inbound_served.clone(),
        );
        r.register(
            "inbound_requests_refused",
            "Inbound requests refused because of the peer (bad request, stream error, timeout), by protocol",
            m.inbound_refused.clone(),
        );
        r.register(
            "redials",
            "Dials of lost peers (and unreachable bootstrap or address-book peers) on their backoff schedule",
            m.redials.clone(),
        );
        r.register(
            "address_book_peers",
            "Peers in the address book",
            m.address_book.clone(),
        );
        r.register(
            "inbound_requests_over_quota",
            "Inbound requests refused because the peer was over its request quota, by protocol",
            m.inbound_over_quota.clone(),
        );
        r.register(
            "inbound_requests_over_budget",
            "Inbound requests refused because the inbound byte budget was spent, by protocol",
            m.inbound_over_budget.clone(),
        );
        r.register(
            "inbound_streams_over_cap",
            "Inbound streams libp2p dropped because their connection was at its stream cap for the protocol (all protocols and peers: libp2p names neither; counted in the whole process, through the log event it writes)",
            m.streams_over_cap.clone(),
        );
        r.register(
            "inbound_quota_peak_per_second",
            "Most one peer drew from its quota within one second since the start, by protocol (requests; bytes for blocks)",
            m.quota_peak.clone(),
        );
        r.register(
            "inbound_quota_low_water_permille",
            "Lowest fill any peer's quota bucket was left at since the start, per mille of the burst, by protocol (0 or below: a peer reached its quota)",
            m.quota_low_water.clone(),
        );
        r.register(
            "inbound_budget_bytes_in_use",
            "Bytes of the inbound budget held by responses being built or written",
            m.inbound_budget.clone(),
        );
        r.register(
            "inbound_evictions",
            "Inbound peers disconnected to give their slot to a newcomer",
            m.inbound_evicted.clone(),
        );
        r.register(
            "inbound_connections_refused",
            "Inbound connections refused a slot, by reason (full, range_full)",
            m.inbound_slot_refused.clone(),
        );
        r.register(
            "silent_connections_closed",
            "Connections closed because net.ping_max_failures pings in a row went unanswered (a silent link: pulled cable, blackholed route, stopped peer); not a penalty",
            m.silent_closed.clone(),
        );
        m
    }

    /// One outbound request on `protocol` took `elapsed`.
    pub fn observe_request(&self, protocol: &'static str, ok: bool, elapsed: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.request_duration
            .get_or_create(&vec![("protocol", protocol), ("result", result)])
            .observe(elapsed.as_secs_f64());
    }

    /// We answered an inbound request on `protocol`.
    pub fn inbound_served(&self, protocol: &'static str) {
        self.inbound_served
            .get_or_create(&vec![("protocol", protocol)])
            .inc();
    }

    /// An equivocation was seen (`reorg`) or prevented (`own_slot`).
    pub fn equivocation(&self, seen: &'static str) {
        self.equivocations
            .get_or_create(&vec![("seen", seen)])
            .inc();
    }

    /// How many equivocations were counted under `seen` (for tests and status).
    pub fn equivocations(&self, seen: &'static str) -> u64 {
        self.equivocations
            .get_or_create(&vec![("seen", seen)])
            .get()
    }

    /// We refused an inbound request on `protocol` because of the peer.
    pub fn inbound_refused(&self, protocol: &'static str) {
        self.inbound_refused
            .get_or_create(&vec![("protocol", protocol)])
            .inc();
    }
}

impl Metrics {
    /// The event loop redialed a lost peer.
    pub fn redial(&self) {
        self.redials.inc();
    }

    /// An inbound request over its peer's quota was refused.
    pub fn inbound_over_quota(&self, protocol: &'static str) {
        self.inbound_over_quota
            .get_or_create(&vec![("protocol", protocol)])
            .inc();
    }

    /// How many requests on `protocol` were refused over quota (for tests).
    pub fn over_quota(&self, protocol: &'static str) -> u64 {
        self.inbound_over_quota
            .get_or_create(&vec![("protocol", protocol)])
            .get()
    }

    /// An inbound request found the byte budget spent and was refused.
    pub fn inbound_over_budget(&self, protocol: &'static str) {
        self.inbound_over_budget
            .get_or_create(&vec![("protocol", protocol)])
            .inc();
    }

    /// How close peers came to `protocol`'s quota (see [`crate::net`]'s
    /// quotas): the most one peer used in a second, and the lowest fill
    /// (fraction of the burst) a bucket was left at.
    pub fn inbound_quota_peak(&self, protocol: &'static str, per_sec: f64, low_water: f64) {
        let labels = vec![("protocol", protocol)];
        self.quota_peak
            .get_or_create(&labels)
            .set(per_sec.round() as i64);
        self.quota_low_water
            .get_or_create(&labels)
            .set((low_water * 1000.0).round() as i64);
    }

    /// The figures of [`Metrics::inbound_quota_peak`] for `protocol`, as
    /// published (for tests and measurements): per second, and per mille.
    pub fn quota_peak(&self, protocol: &'static str) -> (i64, i64) {
        let labels = vec![("protocol", protocol)];
        (
            self.quota_peak.get_or_create(&labels).get(),
            self.quota_low_water.get_or_create(&labels).get(),
        )
    }

    /// Inbound streams dropped over a connection's stream cap (for tests).
    pub fn streams_over_cap_total(&self) -> u64 {
        self.streams_over_cap.get()
    }

    /// Bytes of the inbound budget in use now.
    pub fn inbound_budget_in_use(&self, bytes: u64) {
        set(&self.inbound_budget, bytes);
    }

    /// An inbound peer was evicted for a newcomer.
    pub fn inbound_evicted(&self) {
        self.inbound_evicted.inc();
    }

    /// A connection was closed as silent (its pings went unanswered).
    pub fn silent_connection_closed(&self) {
        self.silent_closed.inc();
    }

    /// Connections closed as silent so far (for tests).
    pub fn silent_connections_closed(&self) -> u64 {
        self.silent_closed.get()
    }

    /// Inbound peers evicted so far (for tests).
    pub fn evictions(&self) -> u64 {
        self.inbound_evicted.get()
    }

    /// `concord_sync_mode{mode}` and the split and halt counters as exported
    /// (for tests: what an operator's dashboard would read).
    pub fn sync_mode_figures(&self, mode: &'static str) -> (i64, u64, u64) {
        (
            self.mode.get_or_create(&vec![("mode", mode)]).get(),
            self.splits.get(),
            self.halts.get(),
        )
    }

    /// An inbound connection was refused a slot (`reason`: full, range_full).
    pub fn inbound_slot_refused(&self, reason: &'static str) {
        self.inbound_slot_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// The address book now holds `n` peers.
    pub fn address_book_size(&self, n: usize) {
        set(&self.address_book, n as u64);
    }
}

fn set(gauge: &Gauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

fn advance(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_the_concord_prefix() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.observe_request("/concord/height/1", true, Duration::from_millis(3));
        m.inbound_served("/concord/blocks/1");
        advance(&m.blocks_imported, 5);
        advance(&m.blocks_imported, 3); // totals never go back
        m.observe_sync(&SyncFigures {
            counters: SyncCounters {
                store_read_errors: 2,
                ..SyncCounters::default()
            },
            ..SyncFigures::default()
        });
        m.silent_connection_closed();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("concord_blocks_imported_total 5"), "{text}");
        assert!(
            text.contains("concord_silent_connections_closed_total 1"),
            "{text}"
        );
        assert!(text.contains("concord_store_read_errors_total 2"), "{text}");
        assert!(
            text.contains(
                "concord_request_duration_seconds_count{protocol=\"/concord/height/1\",result=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "concord_inbound_requests_served_total{protocol=\"/concord/blocks/1\"} 1"
            ),
            "{text}"
        );
    }
}
