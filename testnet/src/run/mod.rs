//! One run of a manifest, stage by stage: setup → start (with delays) →
//! timeline of perturbations while sampling every node about once a second
//! → end checks (while the nodes still run) → cleanup (SIGTERM, then
//! SIGKILL) → log scan → assertions → report.
//!
//! Owns the order of the stages and the bookkeeping of what happened when;
//! the stages' details live in `setup`, `process`, `chain_check`,
//! `assertions` and `report`, and three rooms of [`Run`] hold the rest:
//! [`lives`] (starting and stopping nodes), [`perturb`] (timeline events)
//! and [`observe`] (sampling and the live view).

mod lives;
mod observe;
mod perturb;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::assertions::Outcome;
use crate::faults::{self, Faults, ReorgWatch};
use crate::history::{LogFacts, NodeHistory};
use crate::live::Live;
use crate::manifest::{Action, AssertKind, Event, Manifest, Placement};
use crate::netns::{self, Netns};
use crate::process::{self, Children};
use crate::report::{self, TimelineEntry};
use crate::rtt::Periods;
use crate::setup::{self, NodePlan};
use crate::shaper::Shaper;
use crate::{chain_check, evaluate};

/// How often the loop wakes; samples are taken every [`SAMPLE_EVERY`].
const TICK: Duration = Duration::from_millis(200);
const SAMPLE_EVERY: f64 = 1.0;
const API_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setup: {0}")]
    Setup(#[from] setup::SetupError),
    #[error("{0}")]
    Process(#[from] process::ProcessError),
    #[error("namespaces placement: {0}")]
    Netns(#[from] netns::NetnsError),
    #[error("namespaces placement asked for, but `ip netns` does not work here: {0}")]
    NoNetns(String),
    #[error("{0}")]
    NoNetem(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run ended with.
pub struct RunResult {
    pub passed: bool,
    pub interrupted: Option<i32>,
    pub out: PathBuf,
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
}

/// The state of one run while it goes.
struct Run<'a> {
    manifest: &'a Manifest,
    /// The timeline in time order, and the next event to fire.
    events: Vec<&'a Event>,
    next_event: usize,
    plans: Vec<NodePlan>,
    bin: PathBuf,
    children: Children,
    /// After `children`: dropped after every process is gone.
    net: Option<Netns>,
    /// The loopback link shaper's relays, when the manifest shapes links.
    shaper: Option<Shaper>,
    faults: Faults,
    /// The partition in force (for the heal's reorg watch).
    partition: Option<Vec<Vec<String>>>,
    watches: Vec<ReorgWatch>,
    /// Ping round trips between `netem` events.
    periods: Periods,
    hist: Vec<NodeHistory>,
    started: Vec<bool>,
    /// The action whose signal should end the node's current life.
    intent: Vec<Option<&'static str>>,
    timeline: Vec<TimelineEntry>,
    live: Live,
    t0: Instant,
}

impl Run<'_> {
    fn t(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.name == name)
    }

    /// Name and API address of every node running now.
    fn running_apis(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.plans
            .iter()
            .filter(|p| self.children.is_running(&p.name) && !self.children.is_paused(&p.name))
            .map(|p| (p.name.clone(), p.api))
            .collect()
    }

    /// Timeline, starts, sampling and the live view until `until` seconds
    /// (or a stop signal, returned).
    fn drive(&mut self, until: f64) -> Result<Option<i32>, RunError> {
        let mut next_sample = 0.0;
        loop {
            if let Some(s) = process::stop_requested() {
                return Ok(Some(s));
            }
            for (name, exit) in self.children.reap() {
                if let Some(i) = self.index(&name) {
                    self.ended(i, exit);
                }
            }
            let t = self.t();
            for i in 0..self.plans.len() {
                if !self.started[i] && self.plans[i].start_after <= t {
                    self.started[i] = true;
                    self.start(i)?;
                }
            }
            while let Some(e) = self
                .events
                .get(self.next_event)
                .copied()
                .filter(|e| e.at.0.as_secs_f64() <= t)
            {
                self.next_event += 1;
                let height = e
                    .node
                    .as_deref()
                    .and_then(|n| self.index(n))
                    .and_then(|i| self.hist[i].last_height());
                let result = self.perturb(e);
                let t = self.t();
                let note = self
                    .net
                    .as_ref()
                    .filter(|n| !n.has_netem() && e.action == Action::Netem)
                    .and_then(|_| e.loss_note());
                let mut text = format!("{} {} (height {height:?})", e.action.name(), e.target());
                if let Some(note) = &note {
                    text.push_str(&format!(": {note}"));
                }
                match &result {
                    Ok(()) => self.live.note(t, &text),
                    Err(why) => self.live.note(t, &format!("{text} FAILED: {why}")),
                }
                if e.action == Action::Netem && result.is_ok() {
                    let running = self.running_apis();
                    self.periods.cut(t, Some(describe(e)), &running);
                }
                self.timeline.push(TimelineEntry {
                    t,
                    planned_at: e.at.0.as_secs_f64(),
                    action: e.action.name().to_string(),
                    node: e.target(),
                    height_before: height,
                    error: result.err(),
                    note,
                });
            }
            // After the events: one due before `until` fires even when a
            // slow pass (a loaded machine) carried us past it.
            if t >= until {
                return Ok(None);
            }
            if t >= next_sample {
                next_sample = t + SAMPLE_EVERY;
                self.sample();
                if self.watches.iter().any(|w| w.agreed_at.is_none()) {
                    faults::look(&mut self.watches, &self.plans, t);
                }
                let (t, rows) = (self.t(), self.rows());
                self.live.draw(t, &rows);
            }
            std::thread::sleep(TICK);
        }
    }
}

/// Runs `manifest` with the `concord` binary `bin`, writing into `out`.
pub fn run(
    manifest: &Manifest,
    manifest_text: &str,
    manifest_path: &Path,
    out: &Path,
    bin: &Path,
) -> Result<RunResult, RunError> {
    let (out, killed) = setup::prepare_out_dir(out)?;
    if killed > 0 {
        println!(
            "killed {killed} process(es) left by an earlier run in {}",
            out.display()
        );
    }
    let net = match manifest.run.placement {
        Placement::Loopback => None,
        Placement::Namespaces => {
            netns::probe().map_err(RunError::NoNetns)?;
            let mut netem = true;
            if manifest.timeline.iter().any(|e| e.needs_netem()) {
                if let Err(why) = netns::probe_netem() {
                    netem = false;
                    // Loss alone has a fallback (crate::lossmask); delay has none.
                    for e in manifest.timeline.iter().filter(|e| e.needs_netem()) {
                        e.shaping(false).map_err(|refused| {
                            RunError::NoNetem(format!(
                                "timeline at {}: {refused}; this kernel has no netem qdisc (sch_netem): {why}; a rate alone works (tbf), loss alone works as an IP ID mask (htb + u32 + pfifo)",
                                e.at
                            ))
                        })?;
                        if let Some(note) = e.loss_note() {
                            println!("timeline at {} ({}): {note}", e.at, e.target());
                        }
                    }
                }
            }
            let mut net = Netns::create(&out, manifest.nodes.len())?;
            net.set_netem(netem);
            println!(
                "namespaces: ctn{}-0..{} on a bridge in ctn{}-br, nodes at {}..{}, runner at {}",
                net.id(),
                manifest.nodes.len() - 1,
                net.id(),
                net.addr(0),
                net.addr(manifest.nodes.len() - 1),
                net.runner_addr()
            );
            Some(net)
        }
    };
    let copy = out.join("manifest.toml");
    std::fs::write(&copy, manifest_text).map_err(|source| RunError::Io { path: copy, source })?;
    println!(
        "setup: generating chains, keys and ports in {}",
        out.display()
    );
    let setup::Planned { plans, relays } = setup::plan(manifest, &out, bin, net.as_ref())?;
    let shaper = if relays.is_empty() {
        None
    } else {
        let targets = plans.iter().map(|p| p.listen).collect();
        let shaper = Shaper::start(relays, targets, manifest.network.seed).map_err(|source| {
            RunError::Io {
                path: out.clone(),
                source,
            }
        })?;
        println!(
            "loopback shaper: a relay per node on its public port (node listening on a private one), for the timeline's netem"
        );
        Some(shaper)
    };
    let hist = plans
        .iter()
        .zip(&manifest.nodes)
        .map(|(p, node)| {
            let mut h = NodeHistory::new(&p.name, p.role, &p.peer_id);
            h.behaviour = node.behaviour.clone();
            h
        })
        .collect();
    let n = plans.len();
    let mut events: Vec<_> = manifest.timeline.iter().collect();
    events.sort_by_key(|e| e.at);
    let mut run = Run {
        manifest,
        events,
        next_event: 0,
        bin: bin.to_path_buf(),
        children: Children::new(out.join("pids")),
        net,
        shaper,
        faults: Faults::default(),
        partition: None,
        watches: Vec::new(),
        periods: Periods::default(),
        hist,
        started: vec![false; n],
        intent: vec![None; n],
        timeline: Vec::new(),
        live: Live::new(),
        t0: Instant::now(),
        plans,
    };
    let end = manifest.run.duration.0.as_secs_f64();
    let mut outcomes_now = Vec::new();
    // A same_chain with `at` is checked when its time comes (the timeline
    // waits while it settles); the rest is judged from the records at the end.
    let mut checkpoints: Vec<_> = manifest
        .assertions()
        .into_iter()
        .filter(|a| a.kind == AssertKind::SameChain)
        .collect();
    checkpoints.sort_by_key(|a| a.at.unwrap_or(manifest.run.duration));
    let mut interrupted = None;
    for a in &checkpoints {
        let at = a.at.map_or(end, |d| d.0.as_secs_f64());
        interrupted = run.drive(at)?;
        if interrupted.is_some() {
            break;
        }
        let t = run.t();
        run.live.note(t, "checking same_chain");
        outcomes_now.push((
            a.clone(),
            same_chain(&run, &a.nodes, a.min_height, manifest),
        ));
    }
    if interrupted.is_none() {
        interrupted = run.drive(end)?;
    }
    let metrics = report::metrics(&run.plans, &run.children.names());
    if !run.periods.list.is_empty() {
        let (t, running) = (run.t(), run.running_apis());
        run.periods.cut(t, None, &running);
    }
    let t = run.t();
    run.live.note(t, "stopping every node");
    run.cleanup();
    let texts: Vec<String> = manifest
        .asserts
        .iter()
        .filter_map(|a| a.contains.clone())
        .collect();
    for (h, p) in run.hist.iter_mut().zip(&run.plans) {
        h.log = LogFacts::scan(&std::fs::read_to_string(&p.log).unwrap_or_default(), &texts);
    }
    let outcomes = evaluate::all(
        manifest,
        &run.hist,
        outcomes_now,
        &run.timeline,
        &run.watches,
        &run.periods,
    );
    let passed = interrupted.is_none() && outcomes.iter().all(|o| o.pass);
    let seconds = run.t();
    report::write(&report::Report {
        out: &out,
        manifest_path,
        manifest,
        plans: &run.plans,
        hist: &run.hist,
        timeline: &run.timeline,
        outcomes: &outcomes,
        metrics,
        periods: &run.periods.list,
        shaper: run.shaper.as_ref().map(|s| {
            let (accepted, unnamed) = s.counts();
            (accepted, unnamed, s.unnamed())
        }),
        passed,
        interrupted,
        seconds,
    })
    .map_err(|source| RunError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(RunResult {
        passed,
        interrupted,
        out,
        outcomes,
        seconds,
    })
}

/// `same_chain` over the named nodes (or every honest one) that run now.
fn same_chain(run: &Run, names: &[String], min_height: Option<u64>, m: &Manifest) -> Outcome {
    let names = if names.is_empty() {
        m.honest()
    } else {
        names.to_vec()
    };
    let (running, stopped): (Vec<_>, Vec<_>) = names
        .into_iter()
        .partition(|n| run.children.is_running(n) && !run.children.is_paused(n));
    let plans: Vec<&NodePlan> = run
        .plans
        .iter()
        .filter(|p| running.contains(&p.name))
        .collect();
    chain_check::check(&plans, min_height.unwrap_or(1), &stopped, m.run.settle.0)
}

/// `netem NODE delay=… jitter=… loss=… rate=…` (or `clear`).
fn describe(e: &Event) -> String {
    let mut text = format!("netem {}", e.target());
    let mut any = false;
    for (key, value) in [
        ("delay", e.delay.map(|d| format!("{}ms", d.0.as_millis()))),
        ("jitter", e.jitter.map(|d| format!("{}ms", d.0.as_millis()))),
        ("loss", e.loss.map(|l| format!("{l}%"))),
        ("rate", e.rate.clone()),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(" {key}={v}"));
            any = true;
        }
    }
    if !any {
        text.push_str(" clear");
    }
    text
}
