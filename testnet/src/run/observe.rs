//! Watching the nodes while the run goes: one pass of `/status` and
//! `/peers` over every running node (all at once), and the rows of the
//! live view.
//!
//! Owns nothing but the reading; what is kept is the nodes' histories.

use super::{Run, API_TIMEOUT};
use crate::api;
use crate::history::Sample;
use crate::live::Row;

impl Run<'_> {
    /// Reads every running node's `/status` and `/peers`, all nodes at
    /// once (one thread each), so a pass takes one answer's time, not N.
    pub(super) fn sample(&mut self) {
        let t = self.t();
        let live: Vec<(usize, std::net::SocketAddr)> = (0..self.plans.len())
            .filter(|&i| {
                let name = &self.plans[i].name;
                self.children.is_running(name) && !self.children.is_paused(name)
            })
            .map(|i| (i, self.plans[i].api))
            .collect();
        let answers: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = live
                .iter()
                .map(|&(i, addr)| {
                    scope.spawn(move || {
                        let status = api::status(addr, API_TIMEOUT).ok();
                        let peers = api::peers(addr, API_TIMEOUT).ok();
                        (i, status, peers)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (i, status, peers) in answers {
            if let Some(s) = status {
                self.hist[i].samples.push(Sample::from_status(t, &s));
            }
            if let Some(peers) = peers {
                self.hist[i].record_peers(&peers);
            }
        }
    }

    pub(super) fn rows(&self) -> Vec<Row> {
        self.plans
            .iter()
            .zip(&self.hist)
            .zip(&self.started)
            .map(|((p, h), started)| {
                let state = if self.children.is_paused(&p.name) {
                    "paused"
                } else if self.children.is_running(&p.name) {
                    "running"
                } else if !started {
                    "waiting"
                } else {
                    h.lives
                        .last()
                        .and_then(|l| l.ended_by.as_deref())
                        .map_or(
                            "exited",
                            |by| if by == "kill" { "killed" } else { "stopped" },
                        )
                };
                let last = h
                    .samples
                    .last()
                    .filter(|_| self.children.is_running(&p.name));
                Row {
                    name: p.name.clone(),
                    role: p.role.name(),
                    state: state.to_string(),
                    height: h.last_height(),
                    target: last.and_then(|s| s.target),
                    peers: last.map(|s| s.peers),
                    mode: last.map(|s| s.mode.clone()),
                    stalled: last.and_then(|s| s.stalled.clone()),
                }
            })
            .collect()
    }
}
