//! The benchmark report: its figures per chain and scenario (what the JSON
//! report holds), folding repetitions into medians and spreads, the machine
//! description, and the Markdown table printed at the end.
//!
//! Only shapes and formats figures: it must not measure anything (that is
//! [`crate::run`]'s job). The JSON field names are compared across runs:
//! they change only with BENCHMARKS.md.

use serde::Serialize;

use crate::ceilings::Rate;
use crate::chains::{ChainInfo, ChainSpec};
use crate::child::ChildReport;
use crate::tip::TipLatency;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub mem_total_mib: u64,
    pub loadavg_at_start: String,
    pub build: &'static str,
}

/// Median and spread of one figure over the repetitions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median.
    pub rel_spread: f64,
    /// Every repetition's value, in run order.
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let values: Vec<f64> = values.into_iter().flatten().collect();
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let (min, max) = (sorted[0], sorted[n - 1]);
        Some(Spread {
            median,
            min,
            max,
            rel_spread: if median > 0.0 {
                (max - min) / median
            } else {
                0.0
            },
            values,
        })
    }
}

/// One repetition's ceilings of a chain.
#[derive(Clone, Debug, Serialize)]
pub struct Ceilings {
    pub local_import: Rate,
    pub raw_transport: Rate,
    pub verify_only: Rate,
    /// min(local import, raw transport), MB/s: what efficiency divides by.
    pub ceiling_mb_per_s: f64,
    /// What the cores allow when one machine does both: cores / (CPU
    /// seconds per MB of the local import + of the raw transport), MB/s.
    pub shared_core_bound_mb_per_s: f64,
    /// min(1, shared-core bound / ceiling): the efficiency a sync running at
    /// the shared-core bound would have. Each ceiling had every core to
    /// itself; a sync does both ceilings' work, and here its seeders share
    /// the node's cores, so no sync on this machine can beat this figure.
    pub efficiency_cap: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    pub name: &'static str,
    pub spec: ChainSpec,
    pub info: ChainInfo,
    /// The repetition with the median ceiling (the others are in `reps`).
    pub local_import: Rate,
    pub raw_transport: Rate,
    pub verify_only: Rate,
    /// Median over the repetitions of min(local import, raw transport), MB/s.
    pub ceiling_mb_per_s: f64,
    pub spread: ChainSpread,
    pub reps: Vec<Ceilings>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainSpread {
    pub local_import_mb_per_s: Option<Spread>,
    pub raw_transport_mb_per_s: Option<Spread>,
    pub verify_only_mb_per_s: Option<Spread>,
    pub ceiling_mb_per_s: Option<Spread>,
    pub shared_core_bound_mb_per_s: Option<Spread>,
    pub efficiency_cap: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub chain: &'static str,
    pub honest_seeders: usize,
    pub slow_seeder: bool,
    /// Rate limit of the slow seeder (bytes/s), if any.
    pub slow_seeder_rate: Option<u64>,
    pub lying_seeder: bool,
    /// The node ended on the honest tip at the chain's height.
    pub converged: bool,
    pub blocks: u64,
    pub chain_bytes: u64,
    pub time_to_synced_s: Option<f64>,
    pub sync_secs: Option<f64>,
    pub blocks_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    /// Median over the repetitions of sync MB/s / that repetition's ceiling.
    pub efficiency: Option<f64>,
    /// Median of sync MB/s / that repetition's verification-only rate.
    pub verify_efficiency: Option<f64>,
    pub overhead: Option<f64>,
    pub overhead_app: Option<f64>,
    pub requests_per_1000_blocks: Option<f64>,
    pub block_requests_per_1000_blocks: Option<f64>,
    pub connect_to_first_request_ms: Option<f64>,
    pub ahead_to_first_request_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// CPU seconds per MB synced: the syncing node's from its start, plus
    /// the seeders' over the same time.
    pub cpu_per_mb: Option<f64>,
    pub seeders_cpu_secs: f64,
    /// Sync MB/s / the repetition's shared-core bound.
    pub vs_shared_core_bound: Option<f64>,
    /// Median and spread over the repetitions (`efficiency` etc. above are
    /// the medians; the other single figures are the median-rate repetition's).
    pub spread: ScenarioSpread,
    /// An efficiency above 1 in any repetition: the ceiling was measured in a
    /// bad moment (a noisy machine), not sync beating it. Named here.
    pub measurement_defects: Vec<String>,
    pub child: ChildReport,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioSpread {
    pub reps: usize,
    pub mb_per_s: Option<Spread>,
    pub efficiency: Option<Spread>,
    pub verify_efficiency: Option<Spread>,
    pub vs_shared_core_bound: Option<Spread>,
    pub cpu_per_mb: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub quick: bool,
    pub reps: usize,
    pub machine: Machine,
    pub chains: Vec<ChainReport>,
    pub scenarios: Vec<ScenarioReport>,
    pub tip_latency: TipLatency,
    pub total_secs: f64,
}

/// One scenario over the repetitions: medians, spreads, defects.
pub fn aggregate(reps: Vec<ScenarioReport>) -> ScenarioReport {
    let spread = ScenarioSpread {
        reps: reps.len(),
        mb_per_s: Spread::of(reps.iter().map(|r| r.mb_per_s)),
        efficiency: Spread::of(reps.iter().map(|r| r.efficiency)),
        verify_efficiency: Spread::of(reps.iter().map(|r| r.verify_efficiency)),
        vs_shared_core_bound: Spread::of(reps.iter().map(|r| r.vs_shared_core_bound)),
        cpu_per_mb: Spread::of(reps.iter().map(|r| r.cpu_per_mb)),
    };
    let mut defects = Vec::new();
    for (i, r) in reps.iter().enumerate() {
        for (what, v) in [
            ("efficiency", r.efficiency),
            ("efficiency against verification only", r.verify_efficiency),
        ] {
            if let Some(v) = v.filter(|v| *v > 1.0) {
                defects.push(format!(
                    "rep {}: {what} {v:.2} > 1: the ceiling was measured in a bad moment",
                    i + 1
                ));
            }
        }
    }
    let converged = reps.iter().all(|r| r.converged);
    let median_rate = spread.mb_per_s.as_ref().map(|s| s.median);
    let mut mid = reps
        .iter()
        .min_by(|a, b| {
            let d =
                |r: &ScenarioReport| (r.mb_per_s.unwrap_or(0.0) - median_rate.unwrap_or(0.0)).abs();
            d(a).total_cmp(&d(b))
        })
        .cloned()
        .unwrap_or_else(|| reps[0].clone());
    mid.converged = converged;
    mid.mb_per_s = median_rate.or(mid.mb_per_s);
    mid.efficiency = spread.efficiency.as_ref().map(|s| s.median);
    mid.verify_efficiency = spread.verify_efficiency.as_ref().map(|s| s.median);
    mid.vs_shared_core_bound = spread.vs_shared_core_bound.as_ref().map(|s| s.median);
    mid.cpu_per_mb = spread.cpu_per_mb.as_ref().map(|s| s.median);
    mid.measurement_defects = defects;
    mid.spread = spread;
    mid
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        mem_total_mib,
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn spread(s: &Option<Spread>, digits: usize) -> String {
    match s {
        Some(s) if s.values.len() > 1 => format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            s.median, s.min, s.max
        ),
        Some(s) => format!("{:.digits$}", s.median),
        None => "-".into(),
    }
}

/// The report as Markdown tables (with several repetitions: median (min–max)).
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Repetitions: {} (ceilings and syncs interleaved)\n\n",
        r.reps
    ));
    s.push_str("| chain | local import MB/s (blocks/s) | verification only MB/s (blocks/s) | raw transport MB/s | ceiling MB/s |\n|---|---|---|---|---|\n");
    for c in &r.chains {
        s.push_str(&format!(
            "| {} ({} x {} B, {:.1} MB) | {} ({:.0}) | {} ({:.0}) | {} | {} |\n",
            c.name,
            c.info.height,
            c.spec.body_bytes,
            c.info.encoded_bytes as f64 / 1e6,
            spread(&c.spread.local_import_mb_per_s, 1),
            c.local_import.blocks_per_s,
            spread(&c.spread.verify_only_mb_per_s, 1),
            c.verify_only.blocks_per_s,
            spread(&c.spread.raw_transport_mb_per_s, 1),
            spread(&c.spread.ceiling_mb_per_s, 1),
        ));
    }
    s.push_str("\n| scenario | ok | blocks/s | MB/s | synced in s | efficiency | vs verification only | overhead (tcp / app) | req per 1k blocks (blocks) | connect→1st req ms | ahead→1st req ms | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for x in &r.scenarios {
        let defect = if x.measurement_defects.is_empty() {
            ""
        } else {
            " ⚠"
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}{defect} | {}{defect} | {} / {} | {} ({}) | {} | {} | {} |\n",
            x.name,
            if x.converged { "yes" } else { "NO" },
            opt(x.blocks_per_s, 0),
            spread(&x.spread.mb_per_s, 1),
            opt(x.time_to_synced_s, 2),
            spread(&x.spread.efficiency, 2),
            spread(&x.spread.verify_efficiency, 2),
            opt(x.overhead, 3),
            opt(x.overhead_app, 3),
            opt(x.requests_per_1000_blocks, 2),
            opt(x.block_requests_per_1000_blocks, 2),
            opt(x.connect_to_first_request_ms, 1),
            opt(x.ahead_to_first_request_ms, 1),
            opt(x.peak_rss_mib, 0),
        ));
    }
    s.push_str("\nCPU: what each ceiling and each sync cost the machine (CPU seconds per MB, all threads), and the rate both ceilings' work allows on these cores together; the efficiency cap is the efficiency a sync at that bound would have (each ceiling had the cores to itself, a sync shares them with its seeders).\n\n| chain | local import CPU s/MB | raw transport CPU s/MB | shared-core bound MB/s | efficiency cap (bound / ceiling) |\n|---|---|---|---|---|\n");
    for c in &r.chains {
        s.push_str(&format!(
            "| {} | {:.4} | {:.4} | {} | {} |\n",
            c.name,
            c.local_import.cpu_per_mb(),
            c.raw_transport.cpu_per_mb(),
            spread(&c.spread.shared_core_bound_mb_per_s, 1),
            spread(&c.spread.efficiency_cap, 2),
        ));
    }
    s.push_str("\n| scenario | sync CPU s/MB (node + seeders) | vs shared-core bound | blocks responses per seeder (as given; slow last) |\n|---|---|---|---|\n");
    for x in &r.scenarios {
        let served: Vec<String> = x
            .child
            .per_seeder
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            x.name,
            spread(&x.spread.cpu_per_mb, 4),
            spread(&x.spread.vs_shared_core_bound, 2),
            served.join(" / "),
        ));
    }
    let defects: Vec<String> = r
        .scenarios
        .iter()
        .flat_map(|x| {
            x.measurement_defects
                .iter()
                .map(move |d| format!("- {}: {d}", x.name))
        })
        .collect();
    if !defects.is_empty() {
        s.push_str("\n⚠ Measurement defects (an efficiency above 1 says the ceiling was measured in a bad moment, not that sync beat it):\n");
        for d in defects {
            s.push_str(&d);
            s.push('\n');
        }
    }
    let t = &r.tip_latency;
    s.push_str(&format!(
        "\nTip latency, {} nodes, {} blocks ({} samples, {} missing): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms\n",
        t.nodes, t.blocks_measured, t.samples, t.missing, t.p50_ms, t.p95_ms, t.max_ms
    ));
    s
}
