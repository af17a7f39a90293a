//! The node's config file (TOML): everything `concord run` takes as flags,
//! plus the network and sync tunables (`[net]`, `[sync]`, durations in ms).
//!
//! Owns the file format and its mapping onto [`NetConfig`] and [`SyncConfig`].
//! Every key is optional: a missing key keeps the default (or the flag).
//! Precedence (flags win) is applied by the command line, not here; this
//! module must not read flags, start anything or touch the store.
//! See `concord.example.toml` for every key with its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::NetConfig;
use crate::sync::SyncConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot print the config: {0}")]
    Print(#[from] toml::ser::Error),
}

/// A tunable whose value cannot work (a zero batch size, a negative factor,
/// a zero interval that would spin). Named by its config-file key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {key} = {value}: {why}")]
pub struct InvalidValue {
    pub key: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn check<T: std::fmt::Debug>(
    key: &'static str,
    value: T,
    ok: bool,
    why: &'static str,
) -> Result<(), InvalidValue> {
    if ok {
        Ok(())
    } else {
        Err(InvalidValue {
            key,
            value: format!("{value:?}"),
            why,
        })
    }
}

/// Largest accepted `sync.max_future_drift_ms`: an hour ahead is no longer
/// clock skew, and a drift that large lets an authority claim slots far ahead.
const MAX_FUTURE_DRIFT: Duration = Duration::from_secs(3600);

/// Checks every sync tunable (keys as in the `[sync]` table).
pub fn validate_sync(c: &SyncConfig) -> Result<(), InvalidValue> {
    const POSITIVE: &str = "must be at least 1";
    const NONZERO_MS: &str = "must be more than 0 ms";
    let ms_positive = |key, d: Duration| check(key, ms(d), !d.is_zero(), NONZERO_MS);
    check(
        "sync.batch_blocks",
        c.batch_blocks,
        c.batch_blocks >= 1,
        POSITIVE,
    )?;
    check(
        "sync.batch_bytes",
        c.batch_bytes,
        c.batch_bytes >= 1,
        POSITIVE,
    )?;
    check(
        "sync.max_batches_in_flight",
        c.max_batches_in_flight,
        c.max_batches_in_flight >= 1,
        POSITIVE,
    )?;
    check("sync.redundancy", c.redundancy, c.redundancy >= 1, POSITIVE)?;
    check(
        "sync.max_requests_per_peer",
        c.max_requests_per_peer,
        c.max_requests_per_peer >= 1,
        POSITIVE,
    )?;
    check(
        "sync.max_buffered_bytes",
        c.max_buffered_bytes,
        c.max_buffered_bytes >= 1,
        POSITIVE,
    )?;
    check(
        "sync.hedge_factor",
        c.hedge_factor,
        c.hedge_factor.is_finite() && c.hedge_factor > 0.0,
        "must be a positive number",
    )?;
    check(
        "sync.vote_quorum",
        c.vote_quorum,
        c.vote_quorum >= 1,
        POSITIVE,
    )?;
    check(
        "sync.ban_threshold",
        c.ban_threshold,
        c.ban_threshold < 0,
        "must be below 0 (scores start at 0)",
    )?;
    ms_positive("sync.request_timeout_ms", c.request_timeout)?;
    ms_positive("sync.small_request_timeout_ms", c.small_request_timeout)?;
    ms_positive("sync.retry_backoff_ms", c.retry_backoff)?;
    ms_positive("sync.vote_timeout_ms", c.vote_timeout)?;
    ms_positive("sync.status_interval_ms", c.status_interval)?;
    ms_positive("sync.consistency_interval_ms", c.consistency_interval)?;
    ms_positive("sync.stall_timeout_ms", c.stall_timeout)?;
    ms_positive("sync.disk_full_retry_ms", c.disk_full_retry)?;
    ms_positive("sync.disk_full_retry_max_ms", c.disk_full_retry_max)?;
    ms_positive("sync.ban_duration_ms", c.ban_duration)?;
    ms_positive("sync.split_backoff_ms", c.split_backoff)?;
    check(
        "sync.max_future_drift_ms",
        ms(c.max_future_drift),
        c.max_future_drift <= MAX_FUTURE_DRIFT,
        "must be at most 3600000 ms (1 hour); more would all but disable the rule",
    )?;
    ms_positive("sync.persist_interval_ms", c.persist_interval)?;
    check(
        "sync.status_ttl_ms",
        ms(c.status_ttl),
        c.status_ttl > c.status_interval,
        "must be longer than sync.status_interval_ms",
    )?;
    Ok(())
}

/// Checks every network tunable (keys as in the `[net]` table).
pub fn validate_net(c: &NetConfig) -> Result<(), InvalidValue> {
    const POSITIVE: &str = "must be at least 1";
    const NONZERO_MS: &str = "must be more than 0 ms";
    let ms_positive = |key, d: Duration| check(key, ms(d), !d.is_zero(), NONZERO_MS);
    check(
        "net.max_established",
        c.max_established,
        c.max_established >= 1,
        POSITIVE,
    )?;
    check(
        "net.max_established_per_peer",
        c.max_established_per_peer,
        c.max_established_per_peer >= 1,
        POSITIVE,
    )?;
    check(
        "net.reserved_outbound",
        c.reserved_outbound,
        c.reserved_outbound < c.max_established,
        "must be less than net.max_established",
    )?;
    check(
        "net.range_prefix_v4",
        c.range_prefix_v4,
        (1..=32).contains(&c.range_prefix_v4),
        "must be 1 to 32",
    )?;
    check(
        "net.range_prefix_v6",
        c.range_prefix_v6,
        (1..=128).contains(&c.range_prefix_v6),
        "must be 1 to 128",
    )?;
    check(
        "net.quota_small_burst",
        c.quota_small_burst,
        c.quota_small_burst >= 1,
        POSITIVE,
    )?;
    check(
        "net.quota_small_per_sec",
        c.quota_small_per_sec,
        c.quota_small_per_sec.is_finite() && c.quota_small_per_sec > 0.0,
        "must be more than 0",
    )?;
    for (key, bytes) in [
        ("net.quota_blocks_burst_bytes", c.quota_blocks_burst_bytes),
        (
            "net.quota_blocks_bytes_per_sec",
            c.quota_blocks_bytes_per_sec,
        ),
        (
            "net.quota_blocks_request_bytes",
            c.quota_blocks_request_bytes,
        ),
    ] {
        check(key, bytes, bytes >= 1, POSITIVE)?;
    }
    check(
        "net.flood_report_after",
        c.flood_report_after,
        c.flood_report_after >= 1,
        POSITIVE,
    )?;
    check(
        "net.inbound_budget_bytes",
        c.inbound_budget_bytes,
        c.inbound_budget_bytes >= crate::protocol::limits::MAX_BLOCKS_RESPONSE_SIZE,
        "must hold at least one largest blocks response (4 MiB)",
    )?;
    ms_positive("net.eviction_verify_grace_ms", c.eviction_verify_grace)?;
    ms_positive("net.eviction_idle_after_ms", c.eviction_idle_after)?;
    check(
        "net.event_channel_capacity",
        c.event_channel_capacity,
        c.event_channel_capacity >= 1,
        POSITIVE,
    )?;
    ms_positive("net.request_timeout_ms", c.request_timeout)?;
    ms_positive("net.blocks_request_timeout_ms", c.blocks_request_timeout)?;
    ms_positive("net.idle_connection_timeout_ms", c.idle_connection_timeout)?;
    ms_positive("net.ping_interval_ms", c.ping_interval)?;
    ms_positive("net.ping_timeout_ms", c.ping_timeout)?;
    check(
        "net.ping_max_failures",
        c.ping_max_failures,
        c.ping_max_failures >= 2,
        "must be at least 2 (libp2p reports a failed ping only from the second in a row)",
    )?;
    ms_positive("net.kad_bootstrap_interval_ms", c.kad_bootstrap_interval)?;
    ms_positive("net.redial_initial_ms", c.redial_initial)?;
    check(
        "net.redial_max_ms",
        ms(c.redial_max),
        c.redial_max >= c.redial_initial,
        "must be at least net.redial_initial_ms",
    )?;
    check(
        "net.address_book_size",
        c.address_book_size,
        c.address_book_size >= 1,
        POSITIVE,
    )?;
    Ok(())
}

/// The whole file. Top-level keys mirror the `concord run` flags.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `dev` or the path of a genesis TOML file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<String>,
    /// Multiaddrs to listen on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<String>>,
    /// Multiaddrs ending in `/p2p/<peer id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produce: Option<bool>,
    /// Authority key file to produce with (made by `concord authority new`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_authority: Option<bool>,
    /// `IP:PORT` or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// `text` or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// `HEIGHT:HASH` blocks the operator vouches for (see [`crate::sync::Checkpoint`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Vec<String>>,
    #[serde(default)]
    pub net: NetSection,
    #[serde(default)]
    pub sync: SyncSection,
}

impl FileConfig {
    /// Reads and parses `path` (unknown keys are errors).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One table of tunables: plain fields copied as they are, `*_ms` fields
/// mapped to `Duration`s.
macro_rules! section {
    ($(#[$meta:meta])* $name:ident for $target:ty {
        plain { $($f:ident: $t:ty),* $(,)? }
        millis { $($d:ident => $df:ident),* $(,)? }
    }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $f: Option<$t>,
            )*
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $d: Option<u64>,
            )*
        }

        impl $name {
            /// Overwrites the fields this table sets.
            pub fn apply(&self, target: &mut $target) {
                $( if let Some(v) = &self.$f { target.$f = v.clone(); } )*
                $( if let Some(v) = self.$d { target.$df = Duration::from_millis(v); } )*
            }

            /// Every field, from effective values (for `--print-config`).
            pub fn from_values(target: &$target) -> Self {
                $name {
                    $( $f: Some(target.$f.clone()), )*
                    $( $d: Some(ms(target.$df)), )*
                }
            }
        }
    };
}

section! {
    /// `[net]`: see [`NetConfig`] for each field's meaning and default.
    NetSection for NetConfig {
        plain {
            max_established: u32,
            max_established_per_peer: u32,
            reserved_outbound: u32,
            max_inbound_per_range: u32,
            range_prefix_v4: u8,
            range_prefix_v6: u8,
            range_limit_loopback: bool,
            eviction_protect_each: usize,
            quota_small_burst: u32,
            quota_small_per_sec: f64,
            quota_blocks_burst_bytes: u64,
            quota_blocks_bytes_per_sec: u64,
            quota_blocks_request_bytes: u64,
            flood_report_after: u32,
            inbound_budget_bytes: u64,
            target_peers: usize,
            ping_max_failures: u32,
            event_channel_capacity: usize,
            address_book_size: usize,
        }
        millis {
            eviction_verify_grace_ms => eviction_verify_grace,
            eviction_idle_after_ms => eviction_idle_after,
            request_timeout_ms => request_timeout,
            blocks_request_timeout_ms => blocks_request_timeout,
            idle_connection_timeout_ms => idle_connection_timeout,
            ping_interval_ms => ping_interval,
            ping_timeout_ms => ping_timeout,
            kad_bootstrap_interval_ms => kad_bootstrap_interval,
            redial_initial_ms => redial_initial,
            redial_max_ms => redial_max,
        }
    }
}

section! {
    /// `[sync]`: see [`SyncConfig`] for each field's meaning and default.
    SyncSection for SyncConfig {
        plain {
            batch_blocks: u32,
            batch_bytes: u64,
            max_batches_in_flight: usize,
            max_requests_per_peer: u32,
            validation_threads: usize,
            max_buffered_bytes: u64,
            hedge_factor: f64,
            vote_quorum: usize,
            vote_escalation: usize,
            max_reorg_depth: u64,
            ban_threshold: i32,
        }
        millis {
            verify_grace_ms => verify_grace,
            request_timeout_ms => request_timeout,
            small_request_timeout_ms => small_request_timeout,
            hedge_min_ms => hedge_min,
            retry_backoff_ms => retry_backoff,
            vote_timeout_ms => vote_timeout,
            status_interval_ms => status_interval,
            consistency_interval_ms => consistency_interval,
            stall_timeout_ms => stall_timeout,
            disk_full_retry_ms => disk_full_retry,
            disk_full_retry_max_ms => disk_full_retry_max,
            ban_duration_ms => ban_duration,
            rollback_settle_ms => rollback_settle,
            split_backoff_ms => split_backoff,
            produce_alone_after_ms => produce_alone_after,
            max_future_drift_ms => max_future_drift,
            status_ttl_ms => status_ttl,
            persist_interval_ms => persist_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_holds_the_defaults() {
        let text = include_str!("../concord.example.toml");
        let file = FileConfig::parse(text).expect("concord.example.toml parses");
        let (mut net, mut sync) = (NetConfig::default(), SyncConfig::default());
        file.net.apply(&mut net);
        file.sync.apply(&mut sync);
        assert_eq!(sync, SyncConfig::default());
        assert_eq!(file.net, NetSection::from_values(&NetConfig::default()));
        assert_eq!(file.sync, SyncSection::from_values(&SyncConfig::default()));
    }

    #[test]
    fn tables_apply_and_unknown_keys_are_errors() {
        let file = FileConfig::parse(
            "api = \"off\"\n[sync]\nbatch_blocks = 7\nvote_timeout_ms = 1500\n[net]\ntarget_peers = 3\n",
        )
        .unwrap();
        let mut sync = SyncConfig::default();
        file.sync.apply(&mut sync);
        assert_eq!(sync.batch_blocks, 7);
        assert_eq!(sync.vote_timeout, Duration::from_millis(1500));
        assert_eq!(sync.retry_backoff, SyncConfig::default().retry_backoff);
        let mut net = NetConfig::default();
        file.net.apply(&mut net);
        assert_eq!(net.target_peers, 3);
        assert!(FileConfig::parse("[sync]\nbatch_blockz = 1\n").is_err());
        assert!(FileConfig::parse("colour = 1\n").is_err());
    }

    /// A key and a change to the defaults that makes its value unworkable.
    type Spoil<C> = (&'static str, fn(&mut C));

    /// The keys `validate_sync` and `validate_net` check, read from this
    /// file's source: a check added without a row below fails the test.
    fn validated_keys() -> Vec<&'static str> {
        let src = include_str!("config.rs");
        let from = src.find("pub fn validate_sync").expect("validate_sync");
        let to = src.find("/// The whole file.").expect("end of the checks");
        let mut keys: Vec<&str> = src[from..to]
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                (s.starts_with("sync.") || s.starts_with("net."))
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c))
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    #[test]
    fn the_defaults_are_valid_and_each_unworkable_value_names_its_key() {
        assert_eq!(validate_sync(&SyncConfig::default()), Ok(()));
        assert_eq!(validate_net(&NetConfig::default()), Ok(()));
        let zero = Duration::ZERO;
        // One bad value per key (some keys twice: each way to be wrong).
        let bad_sync: Vec<Spoil<SyncConfig>> = vec![
            ("sync.batch_blocks", |c| c.batch_blocks = 0),
            ("sync.batch_bytes", |c| c.batch_bytes = 0),
            ("sync.max_batches_in_flight", |c| {
                c.max_batches_in_flight = 0
            }),
            ("sync.redundancy", |c| c.redundancy = 0),
            ("sync.max_requests_per_peer", |c| {
                c.max_requests_per_peer = 0
            }),
            ("sync.max_buffered_bytes", |c| c.max_buffered_bytes = 0),
            ("sync.hedge_factor", |c| c.hedge_factor = -1.0),
            ("sync.hedge_factor", |c| c.hedge_factor = 0.0),
            ("sync.hedge_factor", |c| c.hedge_factor = f64::NAN),
            ("sync.hedge_factor", |c| c.hedge_factor = f64::INFINITY),
            ("sync.vote_quorum", |c| c.vote_quorum = 0),
            ("sync.ban_threshold", |c| c.ban_threshold = 0),
            ("sync.ban_threshold", |c| c.ban_threshold = 5),
            ("sync.request_timeout_ms", |c| {
                c.request_timeout = Duration::ZERO
            }),
            ("sync.small_request_timeout_ms", |c| {
                c.small_request_timeout = Duration::ZERO
            }),
            ("sync.retry_backoff_ms", |c| {
                c.retry_backoff = Duration::ZERO
            }),
            ("sync.vote_timeout_ms", |c| c.vote_timeout = Duration::ZERO),
            ("sync.status_interval_ms", |c| {
                c.status_interval = Duration::ZERO
            }),
            ("sync.consistency_interval_ms", |c| {
                c.consistency_interval = Duration::ZERO
            }),
            ("sync.stall_timeout_ms", |c| {
                c.stall_timeout = Duration::ZERO
            }),
            ("sync.disk_full_retry_ms", |c| {
                c.disk_full_retry = Duration::ZERO
            }),
            ("sync.disk_full_retry_max_ms", |c| {
                c.disk_full_retry_max = Duration::ZERO
            }),
            ("sync.ban_duration_ms", |c| c.ban_duration = Duration::ZERO),
            ("sync.split_backoff_ms", |c| {
                c.split_backoff = Duration::ZERO
            }),
            ("sync.max_future_drift_ms", |c| {
                c.max_future_drift = Duration::from_secs(3601)
            }),
            ("sync.persist_interval_ms", |c| {
                c.persist_interval = Duration::ZERO
            }),
            ("sync.status_ttl_ms", |c| c.status_ttl = c.status_interval),
            ("sync.status_ttl_ms", |c| {
                c.status_ttl = Duration::from_secs(5)
            }),
        ];
        let bad_net: Vec<Spoil<NetConfig>> = vec![
            ("net.max_established", |c| c.max_established = 0),
            ("net.max_established_per_peer", |c| {
                c.max_established_per_peer = 0
            }),
            ("net.reserved_outbound", |c| {
                c.reserved_outbound = c.max_established
            }),
            ("net.range_prefix_v4", |c| c.range_prefix_v4 = 0),
            ("net.range_prefix_v4", |c| c.range_prefix_v4 = 33),
            ("net.range_prefix_v6", |c| c.range_prefix_v6 = 0),
            ("net.range_prefix_v6", |c| c.range_prefix_v6 = 129),
            ("net.quota_small_burst", |c| c.quota_small_burst = 0),
            ("net.quota_blocks_burst_bytes", |c| {
                c.quota_blocks_burst_bytes = 0
            }),
            ("net.quota_small_per_sec", |c| c.quota_small_per_sec = 0.0),
            ("net.quota_small_per_sec", |c| {
                c.quota_small_per_sec = f64::NAN
            }),
            ("net.quota_blocks_bytes_per_sec", |c| {
                c.quota_blocks_bytes_per_sec = 0
            }),
            ("net.quota_blocks_request_bytes", |c| {
                c.quota_blocks_request_bytes = 0
            }),
            ("net.flood_report_after", |c| c.flood_report_after = 0),
            ("net.inbound_budget_bytes", |c| {
                c.inbound_budget_bytes = crate::protocol::limits::MAX_BLOCKS_RESPONSE_SIZE - 1
            }),
            ("net.eviction_verify_grace_ms", |c| {
                c.eviction_verify_grace = Duration::ZERO
            }),
            ("net.eviction_idle_after_ms", |c| {
                c.eviction_idle_after = Duration::ZERO
            }),
            ("net.event_channel_capacity", |c| {
                c.event_channel_capacity = 0
            }),
            ("net.request_timeout_ms", |c| {
                c.request_timeout = Duration::ZERO
            }),
            ("net.blocks_request_timeout_ms", |c| {
                c.blocks_request_timeout = Duration::ZERO
            }),
            ("net.idle_connection_timeout_ms", |c| {
                c.idle_connection_timeout = Duration::ZERO
            }),
            ("net.ping_interval_ms", |c| c.ping_interval = Duration::ZERO),
            ("net.ping_timeout_ms", |c| c.ping_timeout = Duration::ZERO),
            ("net.ping_max_failures", |c| c.ping_max_failures = 1),
            ("net.ping_max_failures", |c| c.ping_max_failures = 0),
            ("net.kad_bootstrap_interval_ms", |c| {
                c.kad_bootstrap_interval = Duration::ZERO
            }),
            ("net.redial_initial_ms", |c| {
                c.redial_initial = Duration::ZERO
            }),
            ("net.redial_max_ms", |c| {
                c.redial_initial = Duration::from_secs(90);
                c.redial_max = Duration::from_secs(60)
            }),
            ("net.address_book_size", |c| c.address_book_size = 0),
        ];
        let mut tested = Vec::new();
        for (key, spoil) in bad_sync {
            let mut c = SyncConfig::default();
            spoil(&mut c);
            let e = validate_sync(&c).expect_err(key);
            assert_eq!(e.key, key, "{e}");
            assert!(
                e.to_string().starts_with(&format!("invalid {key} = ")),
                "{e}"
            );
            tested.push(key);
        }
        for (key, spoil) in bad_net {
            let mut c = NetConfig::default();
            spoil(&mut c);
            let e = validate_net(&c).expect_err(key);
            assert_eq!(e.key, key, "{e}");
            assert!(
                e.to_string().starts_with(&format!("invalid {key} = ")),
                "{e}"
            );
            tested.push(key);
        }
        tested.sort_unstable();
        tested.dedup();
        assert_eq!(
            tested,
            validated_keys(),
            "a validated key has no bad value above"
        );
        // Strict but workable: no drift at all (early blocks wait for the clock).
        let strict = SyncConfig {
            max_future_drift: zero,
            ..SyncConfig::default()
        };
        assert_eq!(validate_sync(&strict), Ok(()));
        let e = validate_net(&NetConfig {
            max_established: 0,
            ..NetConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid net.max_established = 0: must be at least 1"
        );
    }

    #[test]
    fn printed_config_parses_back() {
        let file = FileConfig {
            data_dir: Some("d".into()),
            listen: Some(vec!["/ip4/127.0.0.1/tcp/1".into()]),
            net: NetSection::from_values(&NetConfig::default()),
            sync: SyncSection::from_values(&SyncConfig::default()),
            ..FileConfig::default()
        };
        let text = file.to_toml().unwrap();
        assert_eq!(FileConfig::parse(&text).unwrap(), file);
    }
}
