//! The benchmark run: every scenario and ceiling in order, and the report.
//!
//! It generates (and caches) chains, starts seeders in-process on 127.0.0.1,
//! runs each scenario's syncing node as a child process (`concord-bench
//! sync-child`, see [`crate::child`]) so its peak RSS and TCP bytes are its
//! own, measures the ceilings ([`crate::ceilings`]) and tip latency
//! ([`crate::tip`]), and writes a table (stdout) and a JSON report (their
//! shapes and formatting are [`crate::report`]'s).
//! BENCHMARKS.md defines every figure. Must not change what it measures
//! without BENCHMARKS.md saying so: its figures are compared across runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use libp2p::Multiaddr;

use crate::ceilings;
use crate::chains::{self, ChainInfo, ChainSpec};
use crate::child::ChildReport;
use crate::report::{
    aggregate, machine, Ceilings, ChainReport, ChainSpread, Report, ScenarioReport, ScenarioSpread,
    Spread,
};
use crate::tip::{self, start_node};
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

/// Seeders dial nobody they discover (see [`run`]).
const SEEDER_PEERS: Option<usize> = Some(0);

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
        // Three honest seeders that dial nobody they discover (target_peers
        // 0). A node syncs from exactly the seeders its scenario names: the
        // others are stopped meanwhile, since earlier nodes' Kademlia has
        // introduced the seeders to each other and a node would otherwise
        // find all of them through any one.
        let mut seeders = Seeders::start(&info, &kind_dir).await?;
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
                let addrs = seeders.only(1).await?;
                let one = ctx.scenario("1 seeder", &addrs, None, false).await?;
                one_rate = one.mb_per_s;
                if wanted("1 seeder") {
                    record(one, "1 seeder");
                }
            }
            if wanted("3 seeders") {
                let addrs = seeders.only(3).await?;
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
                let (slow, slow_addr) =
                    start_node(&d, vec![], false, Some(rate), SEEDER_PEERS).await?;
                let mut set = seeders.only(2).await?;
                set.push(slow_addr);
                record(ctx.scenario(label, &set, Some(rate), false).await?, label);
                let _ = slow.stop().await;
                let _ = std::fs::remove_dir_all(&d);
            }
            let label = "3 seeders + 1 lying";
            if let Some(forged) = forged.as_ref().filter(|_| wanted(label)) {
                let d = kind_dir.join("liar");
                chains::copy_for_node(forged, &d)?;
                let (liar, liar_addr) = start_node(&d, vec![], false, None, SEEDER_PEERS).await?;
                let mut set = seeders.only(3).await?;
                set.push(liar_addr);
                record(ctx.scenario(label, &set, None, true).await?, label);
                let _ = liar.stop().await;
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        seeders.only(0).await?;
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

/// The honest seeders of a chain, of which the first `n` run at a time.
struct Seeders {
    dirs: Vec<PathBuf>,
    running: Vec<(RunningNode, Multiaddr)>,
}

impl Seeders {
    async fn start(info: &ChainInfo, kind_dir: &Path) -> anyhow::Result<Seeders> {
        let mut dirs = Vec::new();
        for i in 0..3 {
            let d = kind_dir.join(format!("seeder{i}"));
            chains::copy_for_node(info, &d)?;
            dirs.push(d);
        }
        let mut s = Seeders {
            dirs,
            running: Vec::new(),
        };
        s.only(3).await?;
        Ok(s)
    }

    /// Runs exactly the first `n` seeders (stopping or restarting the
    /// others) and returns their addresses (a restarted one listens on a
    /// new port).
    async fn only(&mut self, n: usize) -> anyhow::Result<Vec<Multiaddr>> {
        while self.running.len() > n {
            if let Some((node, _)) = self.running.pop() {
                let _ = node.stop().await;
            }
        }
        while self.running.len() < n.min(self.dirs.len()) {
            let d = &self.dirs[self.running.len()];
            self.running
                .push(start_node(d, vec![], false, None, SEEDER_PEERS).await?);
        }
        Ok(self.running.iter().map(|(_, a)| a.clone()).collect())
    }
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
        "bench[{}]: import {:.1} MB/s ({:.4} CPU s/MB), verify {:.1} MB/s, transport {:.1} MB/s ({:.4} CPU s/MB)",
        kind.name,
        local_import.mb_per_s,
        local_import.cpu_per_mb(),
        verify_only.mb_per_s,
        raw_transport.mb_per_s,
        raw_transport.cpu_per_mb()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ceiling_mb_per_s = local_import.mb_per_s.min(raw_transport.mb_per_s);
    let shared_core_bound_mb_per_s =
        cores / (local_import.cpu_per_mb() + raw_transport.cpu_per_mb()).max(1e-9);
    Ok(Ceilings {
        local_import,
        raw_transport,
        verify_only,
        ceiling_mb_per_s,
        shared_core_bound_mb_per_s,
        efficiency_cap: (shared_core_bound_mb_per_s / ceiling_mb_per_s.max(1e-9)).min(1.0),
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
            shared_core_bound_mb_per_s: spread(|c| c.shared_core_bound_mb_per_s),
            efficiency_cap: spread(|c| c.efficiency_cap),
        },
        reps,
    }
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
        crate::settle::settle(self.info.encoded_bytes);
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
        // The seeders serve from this process: its CPU over the child's run
        // is theirs (the harness itself waits).
        let seeders_cpu0 = crate::cpu::process_cpu();
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the sync child")?;
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        let seeders_cpu = crate::cpu::cpu_since(seeders_cpu0);
        let _ = std::fs::remove_dir_all(&data);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let c: ChildReport = serde_json::from_str(line)
            .with_context(|| format!("sync child said {text:?} ({})", out.status))?;
        if c.peers > seeders.len() {
            eprintln!(
                "bench: {name}: the node knew {} peers, {} given (found more through Kademlia)",
                c.peers,
                seeders.len()
            );
        }
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
            cpu_per_mb: Some((c.cpu_secs + seeders_cpu) / (bytes as f64 / 1e6)),
            seeders_cpu_secs: seeders_cpu,
            vs_shared_core_bound: mb_per_s.map(|r| r / self.ceilings.shared_core_bound_mb_per_s),
            spread: ScenarioSpread::default(),
            measurement_defects: Vec::new(),
            child: c,
        })
    }
}
