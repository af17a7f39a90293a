//! Counting the inbound streams libp2p drops for being over a connection's
//! stream cap (`with_max_concurrent_streams` of each protocol).
//!
//! libp2p-request-response 0.30 drops such a stream inside its connection
//! handler (`on_fully_negotiated_inbound`: the `FuturesMap` of the
//! connection's streams is full) before our codec sees a byte, and reports it
//! to nobody: no behaviour event, no `InboundFailure` (the request never
//! existed for the behaviour). All it does is log one WARN event,
//! "Dropping inbound stream because we are at capacity", on target
//! `libp2p_request_response::handler`, naming no peer nor protocol. That
//! event is the only place the drop is visible, so [`StreamCapLayer`], a
//! tracing layer, counts it into the process-wide counter
//! [`crate::metrics::streams_over_cap`] (`concord_inbound_streams_over_cap_total`).
//! The node's logging installs it (`src/cli/run.rs`), and keeps the event
//! itself out of the default log: a flooder would write a line per stream.
//!
//! Owns only that match; must not log or touch the swarm. If a libp2p
//! upgrade rewords the event, the count stays at 0; the test
//! `tests/net_abuse.rs` (`streams_over_the_cap_are_counted`) catches that.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};

/// Where libp2p-request-response logs the drop.
pub const TARGET: &str = "libp2p_request_response::handler";
/// What it logs.
const MESSAGE: &str = "Dropping inbound stream because we are at capacity";

/// A tracing layer that counts libp2p's over-cap stream drops.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamCapLayer;

impl StreamCapLayer {
    /// The layer with the filter it needs: it must see [`TARGET`]'s WARN
    /// events whatever the log filter shows, so give it its own.
    pub fn filtered<S>() -> tracing_subscriber::filter::Filtered<StreamCapLayer, Targets, S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        StreamCapLayer.with_filter(Targets::new().with_target(TARGET, Level::WARN))
    }
}

struct IsDrop(bool);

impl Visit for IsDrop {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && value == MESSAGE {
            self.0 = true;
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}") == MESSAGE {
            self.0 = true;
        }
    }
}

impl<S: Subscriber> Layer<S> for StreamCapLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != TARGET || *meta.level() != Level::WARN {
            return;
        }
        let mut is_drop = IsDrop(false);
        event.record(&mut is_drop);
        if is_drop.0 {
            crate::metrics::streams_over_cap().inc();
        }
    }
}
