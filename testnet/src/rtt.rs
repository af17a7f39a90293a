//! Ping round trips while links are shaped: the timeline's `netem` events
//! cut the run into periods (from one `netem` to the next, the last one
//! to the end); for each period and node, the mean round trip of the
//! node's libp2p pings in it, from the node's `/metrics` (the
//! `libp2p_ping_rtt_seconds` histogram's sum and count, read at both ends
//! of the period). A node's mean covers all its connections: a peer of a
//! delayed node sees the delay on that one connection only.
//!
//! Owns the readings; `ping_rtt` in [`crate::assertions`] judges them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::api;

const SUM: &str = "libp2p_ping_rtt_seconds_sum";
const COUNT: &str = "libp2p_ping_rtt_seconds_count";
const TIMEOUT: Duration = Duration::from_millis(1000);

/// One node's pings in one period.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Reading {
    pub pings: u64,
    /// Mean round trip in ms; `None` without pings.
    pub mean_rtt_ms: Option<f64>,
}

/// From one `netem` event to the next (or the end).
#[derive(Clone, Debug, Serialize)]
pub struct Period {
    pub from: f64,
    pub to: Option<f64>,
    /// The event that opened it (`netem NODE …`).
    pub opened_by: String,
    /// Per node running at the end of the period, over its last life
    /// within it (from the period's start or the life's, the later).
    pub nodes: BTreeMap<String, Reading>,
    #[serde(skip)]
    start: BTreeMap<String, (f64, f64)>,
}

/// The periods of a run, the last one open.
#[derive(Debug, Default)]
pub struct Periods {
    pub list: Vec<Period>,
}

/// `(sum, count)` of a node's ping histogram, if it answers.
fn read(api: SocketAddr) -> Option<(f64, f64)> {
    let text = api::get(api, "/metrics", TIMEOUT).ok()?;
    Some((api::metric_sum(&text, SUM), api::metric_sum(&text, COUNT)))
}

/// All nodes at once (one thread each).
fn read_all(nodes: &[(String, SocketAddr)]) -> BTreeMap<String, (f64, f64)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|(name, api)| scope.spawn(move || (name.clone(), read(*api))))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter_map(|(name, r)| r.map(|r| (name, r)))
            .collect()
    })
}

/// The reading between two snapshots; `None` if the counter went back (a
/// new life of the node).
pub fn between(start: (f64, f64), end: (f64, f64)) -> Option<Reading> {
    let (sum, count) = (end.0 - start.0, end.1 - start.1);
    if sum < 0.0 || count < 0.0 {
        return None;
    }
    let pings = count.round() as u64;
    Some(Reading {
        pings,
        mean_rtt_ms: (pings > 0).then(|| sum / count * 1000.0),
    })
}

impl Periods {
    /// Closes the open period at `t` and, with `opened_by`, opens the next.
    /// `running`: the nodes running now (name, API address).
    pub fn cut(&mut self, t: f64, opened_by: Option<String>, running: &[(String, SocketAddr)]) {
        let now = read_all(running);
        if let Some(last) = self.list.last_mut().filter(|p| p.to.is_none()) {
            last.to = Some(t);
            for (name, start) in &last.start {
                if let Some(reading) = now.get(name).and_then(|end| between(*start, *end)) {
                    last.nodes.insert(name.clone(), reading);
                }
            }
        }
        if let Some(opened_by) = opened_by {
            self.list.push(Period {
                from: t,
                to: None,
                opened_by,
                nodes: BTreeMap::new(),
                start: now,
            });
        }
    }

    /// A node started a life (its counters start at zero): the open
    /// period counts its pings from here (a restart drops the life before).
    pub fn started(&mut self, name: &str) {
        if let Some(open) = self.list.last_mut().filter(|p| p.to.is_none()) {
            open.start.insert(name.to_string(), (0.0, 0.0));
        }
    }

    /// The period in force at `t`.
    pub fn at(&self, t: f64) -> Option<&Period> {
        self.list
            .iter()
            .find(|p| p.from <= t && p.to.is_none_or(|to| t < to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_the_difference_and_a_restart_gives_none() {
        let r = between((1.0, 10.0), (2.5, 13.0)).expect("reading");
        assert_eq!(r.pings, 3);
        assert!((r.mean_rtt_ms.expect("mean") - 500.0).abs() < 1e-9);
        assert_eq!(
            between((1.0, 10.0), (1.0, 10.0)),
            Some(Reading {
                pings: 0,
                mean_rtt_ms: None
            })
        );
        assert_eq!(between((1.0, 10.0), (0.1, 1.0)), None);
    }

    #[test]
    fn ping_rtt_judges_the_period_in_force_and_wants_pings() {
        let reading = |pings, mean| Reading {
            pings,
            mean_rtt_ms: mean,
        };
        let mut periods = Periods::default();
        periods.list.push(Period {
            from: 1.0,
            to: Some(25.0),
            opened_by: "netem slow delay=150ms".into(),
            nodes: BTreeMap::from([
                ("slow".to_string(), reading(8, Some(320.0))),
                ("idle".to_string(), reading(0, None)),
            ]),
            start: BTreeMap::new(),
        });
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let judge = |at: f64, who: &[&str], lo, hi| {
            crate::assertions::ping_rtt(periods.at(at), &names(who), at, lo, hi)
        };
        assert!(judge(15.0, &["slow"], Some(250), None).pass);
        assert!(!judge(15.0, &["slow"], Some(350), None).pass);
        assert!(!judge(15.0, &["slow"], None, Some(150)).pass);
        let o = judge(15.0, &["idle"], Some(1), None);
        assert!(!o.pass && o.why.contains("no ping"), "{}", o.why);
        let o = judge(15.0, &["gone"], Some(1), None);
        assert!(!o.pass && o.why.contains("not running"), "{}", o.why);
        let o = judge(30.0, &["slow"], Some(1), None);
        assert!(!o.pass && o.why.contains("no netem period"), "{}", o.why);
    }
}
