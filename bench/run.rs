//! The benchmark run: every scenario and ceiling in order, and the report.
//!
//! It generates (and caches) chains, starts seeders in-process on 127.0.0.1,
//! runs each scenario's syncing node as a child process (`concord-bench
//! sync-child`, see [`crate::child`]) so its peak RSS and TCP bytes are its
//! own, measures the ceilings ([`crate::ceilings`]) and tip latency
//! ([`crate::tip`]), and writes a table (stdout) and a JSON report.
//! BENCHMARKS.md defines every figure. Must not change what it measures
//! without BENCHMARKS.md saying so: its figures are compared across runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use libp2p::Multiaddr;
use serde::Serialize;

use crate::ceilings::{self, Rate};
use crate::chains::{self, ChainInfo, ChainSpec};
use crate::child::ChildReport;
use crate::tip::{self, start_node, TipLatency};
use concord::chain::Genesis;
use concord::node::RunningNode;
use concord::protocol::limits::RESPONSE_BYTE_BUDGET;

/// How to run the benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// A few thousand blocks and a 3-node tip test (for CI).
    pub quick: bool,
    /// Where generated chains are cached, keyed by their parameters.
    pub chains_dir: PathBuf,
    /// Scratch space (seeder copies, synced stores); removed at the end.
    pub work_dir: PathBuf,
    /// The `concord-bench` binary, to run each syncing node as
    /// `concord-bench sync-child`.
    pub exe: PathBuf,
    /// Repetitions, interleaved: each measures the chain's ceilings, then
    /// runs its scenarios; figures are reported as median and spread.
    pub reps: usize,
    /// Run only the scenarios with these labels (`3 seeders`, ...); all if empty.
    pub only: Vec<String>,
}

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
    fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
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

struct Kind {
    name: &'static str,
    spec: ChainSpec,
    slow: bool,
    liar: bool,
}

fn kinds(quick: bool) -> Vec<Kind> {
    let (small, large) = if quick {
        (3_000, 64)
    } else {
        (200_000, 16_384)
    };
    vec![
        Kind {
            name: "small",
            spec: ChainSpec {
                blocks: small,
                body_bytes: 256,
                seed: 0,
            },
            slow: true,
            liar: true,
        },
        Kind {
            name: "large",
            spec: ChainSpec {
                blocks: large,
                body_bytes: 64 * 1024,
                seed: 0,
            },
            slow: true,
            liar: false,
        },
    ]
}

/// Runs every scenario and ceiling; prints progress on stderr.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let genesis = Genesis::dev();
    let machine = machine();
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    std::fs::create_dir_all(&opts.work_dir)?;
    std::fs::create_dir_all(&opts.chains_dir)?;
    let mut chains = Vec::new();
    let mut scenarios = Vec::new();
    for kind in kinds(opts.quick) {
        let (g, cache, spec) = (genesis.clone(), opts.chains_dir.clone(), kind.spec);
        let info = tokio::task::spawn_blocking(move || chains::ensure(&cache, &g, spec)).await??;
        let forged = if kind.liar {
            let (g, cache) = (genesis.clone(), opts.chains_dir.clone());
            let spec = ChainSpec {
                seed: 1,
                ..kind.spec
            };
            Some(tokio::task::spawn_blocking(move || chains::ensure(&cache, &g, spec)).await??)
        } else {
            None
        };
        let kind_dir = opts.work_dir.join(kind.name);
        // Three honest seeders, not connected to each other, so a fresh node
        // only talks to the ones it is given.
        let mut seeders: Vec<(RunningNode, Multiaddr)> = Vec::new();
        for i in 0..3 {
            let d = kind_dir.join(format!("seeder{i}"));
            chains::copy_for_node(&info, &d)?;
            seeders.push(start_node(&d, vec![], false, None).await?);
        }
        let addrs: Vec<Multiaddr> = seeders.iter().map(|(_, a)| a.clone()).collect();
        let wanted = |label: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == label);
        let mut ceilings_by_rep = Vec::new();
        // Scenario label -> its report in each repetition.
        let mut by_label: Vec<(String, Vec<ScenarioReport>)> = Vec::new();
        let mut record =
            |r: ScenarioReport, label: &str| match by_label.iter_mut().find(|(l, _)| l == label) {
                Some((_, v)) => v.push(r),
                None => by_label.push((label.to_string(), vec![r])),
            };
        for rep in 0..opts.reps.max(1) {
            // Ceilings and syncs interleaved: a noisy moment shows as spread.
            let c = measure_ceilings(&genesis, &kind, &info, &opts.work_dir, rep).await?;
            let ctx = Ctx {
                opts,
                kind: &kind,
                info: &info,
                dir: &kind_dir,
                ceilings: c.clone(),
            };
            ceilings_by_rep.push(c);
            let mut one_rate = None;
            if wanted("1 seeder") || (kind.slow && wanted("3 seeders, 1 slow (10x)")) {
                let one = ctx.scenario("1 seeder", &addrs[..1], None, false).await?;
                one_rate = one.mb_per_s;
                if wanted("1 seeder") {
                    record(one, "1 seeder");
                }
            }
            if wanted("3 seeders") {
                record(
                    ctx.scenario("3 seeders", &addrs, None, false).await?,
                    "3 seeders",
                );
            }
            let label = "3 seeders, 1 slow (10x)";
            if kind.slow && wanted(label) {
                // 10x slower than one honest seeder serving alone.
                let rate = (one_rate.unwrap_or(10.0) * 1e6 / 10.0) as u64;
                let d = kind_dir.join("slow");
                chains::copy_for_node(&info, &d)?;
                let (slow, slow_addr) = start_node(&d, vec![], false, Some(rate)).await?;
                let set = vec![addrs[0].clone(), addrs[1].clone(), slow_addr];
                record(ctx.scenario(label, &set, Some(rate), false).await?, label);
                let _ = slow.stop().await;
                let _ = std::fs::remove_dir_all(&d);
            }
            let label = "3 seeders + 1 lying";
            if let Some(forged) = forged.as_ref().filter(|_| wanted(label)) {
                let d = kind_dir.join("liar");
                chains::copy_for_node(forged, &d)?;
                let (liar, liar_addr) = start_node(&d, vec![], false, None).await?;
                let mut set = addrs.clone();
                set.push(liar_addr);
                record(ctx.scenario(label, &set, None, true).await?, label);
                let _ = liar.stop().await;
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        for (s, _) in seeders {
            let _ = s.stop().await;
        }
        chains.push(chain_report(&kind, &info, ceilings_by_rep));
        for (_, reps) in by_label {
            scenarios.push(aggregate(reps));
        }
        let _ = std::fs::remove_dir_all(&kind_dir);
    }
    eprintln!("bench: tip latency");
    let (nodes, blocks) = if opts.quick { (3, 3) } else { (10, 20) };
    let tip_latency = tip::measure(&opts.work_dir.join("tip"), nodes, blocks).await?;
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    Ok(Report {
        quick: opts.quick,
        reps: opts.reps.max(1),
        machine,
        chains,
        scenarios,
        tip_latency,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

/// One repetition's ceilings of a chain (see [`crate::ceilings`]).
async fn measure_ceilings(
    genesis: &Genesis,
    kind: &Kind,
    info: &ChainInfo,
    work: &Path,
    rep: usize,
) -> anyhow::Result<Ceilings> {
    eprintln!("bench[{} rep {}]: local import ceiling", kind.name, rep + 1);
    let (g, i, w) = (genesis.clone(), info.clone(), work.join("import"));
    let local_import =
        tokio::task::spawn_blocking(move || ceilings::local_import(&g, &i, &w)).await??;
    eprintln!(
        "bench[{} rep {}]: verification-only ceiling",
        kind.name,
        rep + 1
    );
    let (g, i) = (genesis.clone(), info.clone());
    let verify_only = tokio::task::spawn_blocking(move || ceilings::verify_only(&g, &i)).await??;
    eprintln!(
        "bench[{} rep {}]: raw transport ceiling",
        kind.name,
        rep + 1
    );
    let volume = info.encoded_bytes.min(1 << 30);
    let raw_transport = ceilings::raw_transport(volume, RESPONSE_BYTE_BUDGET, 2).await?;
    eprintln!(
        "bench[{}]: import {:.1} MB/s, verify {:.1} MB/s, transport {:.1} MB/s",
        kind.name, local_import.mb_per_s, verify_only.mb_per_s, raw_transport.mb_per_s
    );
    Ok(Ceilings {
        local_import,
        raw_transport,
        verify_only,
        ceiling_mb_per_s: local_import.mb_per_s.min(raw_transport.mb_per_s),
    })
}

fn chain_report(kind: &Kind, info: &ChainInfo, reps: Vec<Ceilings>) -> ChainReport {
    let spread = |f: fn(&Ceilings) -> f64| Spread::of(reps.iter().map(|c| Some(f(c))));
    let ceiling = spread(|c| c.ceiling_mb_per_s);
    let median = ceiling.as_ref().map_or(0.0, |s| s.median);
    // The repetition whose ceiling is nearest the median stands for the chain.
    let mid = reps
        .iter()
        .min_by(|a, b| {
            (a.ceiling_mb_per_s - median)
                .abs()
                .total_cmp(&(b.ceiling_mb_per_s - median).abs())
        })
        .cloned()
        .unwrap_or_else(|| reps[0].clone());
    ChainReport {
        name: kind.name,
        spec: kind.spec,
        info: info.clone(),
        local_import: mid.local_import,
        raw_transport: mid.raw_transport,
        verify_only: mid.verify_only,
        ceiling_mb_per_s: median,
        spread: ChainSpread {
            local_import_mb_per_s: spread(|c| c.local_import.mb_per_s),
            raw_transport_mb_per_s: spread(|c| c.raw_transport.mb_per_s),
            verify_only_mb_per_s: spread(|c| c.verify_only.mb_per_s),
            ceiling_mb_per_s: ceiling,
        },
        reps,
    }
}

/// One scenario over the repetitions: medians, spreads, defects.
fn aggregate(reps: Vec<ScenarioReport>) -> ScenarioReport {
    let spread = ScenarioSpread {
        reps: reps.len(),
        mb_per_s: Spread::of(reps.iter().map(|r| r.mb_per_s)),
        efficiency: Spread::of(reps.iter().map(|r| r.efficiency)),
        verify_efficiency: Spread::of(reps.iter().map(|r| r.verify_efficiency)),
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
    mid.measurement_defects = defects;
    mid.spread = spread;
    mid
}

struct Ctx<'a> {
    opts: &'a BenchOptions,
    kind: &'a Kind,
    info: &'a ChainInfo,
    dir: &'a Path,
    ceilings: Ceilings,
}

impl Ctx<'_> {
    async fn scenario(
        &self,
        label: &str,
        seeders: &[Multiaddr],
        slow_rate: Option<u64>,
        liar: bool,
    ) -> anyhow::Result<ScenarioReport> {
        let name = format!("{} / {label}", self.kind.name);
        eprintln!("bench: scenario {name}");
        let data = self.dir.join("fresh");
        let _ = std::fs::remove_dir_all(&data);
        let timeout = if self.opts.quick { 120 } else { 900 };
        let mut cmd = Command::new(&self.opts.exe);
        cmd.arg(crate::SYNC_CHILD)
            .arg("--data-dir")
            .arg(&data)
            .args(["--height", &self.info.height.to_string()])
            .args(["--tip", &self.info.tip])
            .args(["--timeout-secs", &timeout.to_string()]);
        for a in seeders {
            cmd.args(["--bootstrap", &a.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the sync child")?;
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        let _ = std::fs::remove_dir_all(&data);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let c: ChildReport = serde_json::from_str(line)
            .with_context(|| format!("sync child said {text:?} ({})", out.status))?;
        let blocks = self.info.height;
        let bytes = self.info.encoded_bytes;
        let converged = c.converged && c.tip == self.info.tip && c.height == blocks;
        let sync_secs = match (c.synced_ms, c.first_blocks_request_ms) {
            (Some(s), Some(f)) if s > f => Some((s - f) / 1000.0),
            _ => None,
        };
        let mb_per_s = sync_secs.map(|s| bytes as f64 / s / 1e6);
        let per_k = |n: u64| (blocks > 0).then(|| n as f64 * 1000.0 / blocks as f64);
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        Ok(ScenarioReport {
            name,
            chain: self.kind.name,
            honest_seeders: seeders.len() - usize::from(liar) - usize::from(slow_rate.is_some()),
            slow_seeder: slow_rate.is_some(),
            slow_seeder_rate: slow_rate,
            lying_seeder: liar,
            converged,
            blocks,
            chain_bytes: bytes,
            time_to_synced_s: c.synced_ms.map(|m| m / 1000.0),
            sync_secs,
            blocks_per_s: sync_secs.map(|s| blocks as f64 / s),
            mb_per_s,
            efficiency: mb_per_s.map(|r| r / self.ceilings.ceiling_mb_per_s),
            verify_efficiency: mb_per_s.map(|r| r / self.ceilings.verify_only.mb_per_s),
            overhead: c.tcp_bytes_received.map(|b| b as f64 / bytes as f64),
            overhead_app: Some(c.bytes_downloaded as f64 / bytes as f64),
            requests_per_1000_blocks: per_k(c.requests_sent),
            block_requests_per_1000_blocks: per_k(c.block_requests_sent),
            connect_to_first_request_ms: diff(c.first_blocks_request_ms, c.first_peer_connected_ms),
            ahead_to_first_request_ms: diff(c.first_blocks_request_ms, c.first_peer_ahead_ms),
            peak_rss_mib: c.peak_rss_kib.map(|k| k as f64 / 1024.0),
            spread: ScenarioSpread::default(),
            measurement_defects: Vec::new(),
            child: c,
        })
    }
}

fn machine() -> Machine {
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
