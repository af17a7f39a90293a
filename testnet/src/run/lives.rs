//! A node's lives: starting it (and waiting until it listens), noting how
//! each life ended, and stopping every node at the end (SIGTERM, then
//! SIGKILL after the grace).
//!
//! Owns only the process side of a run; what ended a life is the
//! `intent` the perturbation or cleanup set before signalling.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Run, RunError, API_TIMEOUT};
use crate::api;
use crate::history::Life;
use crate::process::Exit;

/// How long a started node may take to listen, and how often to look.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const READY_POLL: Duration = Duration::from_millis(25);
/// How long a node may take to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Run<'_> {
    pub(super) fn start(&mut self, i: usize) -> Result<(), RunError> {
        let p = &self.plans[i];
        let log = self.manifest.run.log.as_str();
        let (program, args) = if p.exec_prefix.is_empty() {
            (self.bin.clone(), p.args.clone())
        } else {
            let mut args = p.exec_prefix.clone();
            args.push(self.bin.display().to_string());
            args.extend(p.args.iter().cloned());
            (PathBuf::from("ip"), args)
        };
        let pid = self.children.spawn(
            &p.name,
            &program,
            &args,
            &[("RUST_LOG", log), ("NO_COLOR", "1")],
            &p.log,
        )?;
        if let Some(shaper) = &self.shaper {
            shaper.set_pid(i, Some(pid));
        }
        self.periods.started(&p.name);
        let t = self.t();
        self.hist[i].lives.push(Life {
            started: t,
            ended: None,
            exit_code: None,
            signal: None,
            ended_by: None,
        });
        self.intent[i] = None;
        let name = p.name.clone();
        let ready = self.wait_ready(i);
        let t = self.t();
        match ready {
            Some(after) => self.live.note(
                t,
                &format!("started {name} (pid {pid}, listening after {after:.2}s)"),
            ),
            None => self.live.note(
                t,
                &format!(
                    "started {name} (pid {pid}) but it is NOT listening after {READY_TIMEOUT:?}"
                ),
            ),
        }
        Ok(())
    }

    /// Polls the node's `/status` until its p2p listener is up (its
    /// `listen_addrs` is not empty), so that the nodes started next can dial
    /// it: a node's bootstrap dial to a peer that is not listening yet is
    /// not retried soon. Seconds it took, or `None` (exited or timed out).
    fn wait_ready(&mut self, i: usize) -> Option<f64> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        while Instant::now() < deadline {
            let status = api::status(self.plans[i].api, API_TIMEOUT);
            if status.is_ok_and(|s| !s.listen_addrs.is_empty()) {
                return Some(started.elapsed().as_secs_f64());
            }
            let mut gone = false;
            for (name, exit) in self.children.reap() {
                if let Some(j) = self.index(&name) {
                    gone |= j == i;
                    self.ended(j, exit);
                }
            }
            if gone {
                return None;
            }
            std::thread::sleep(READY_POLL);
        }
        None
    }

    pub(super) fn ended(&mut self, i: usize, exit: Exit) {
        let t = self.t();
        let by = self.intent[i].take();
        if let Some(shaper) = &self.shaper {
            shaper.set_pid(i, None);
        }
        if let Some(life) = self.hist[i].lives.last_mut() {
            life.ended = Some(t);
            life.exit_code = exit.code;
            life.signal = exit.signal;
            life.ended_by = by.map(str::to_string);
        }
        if by.is_none() {
            let name = self.plans[i].name.clone();
            self.live.note(
                t,
                &format!(
                    "{name} EXITED on its own (code {:?}, signal {:?})",
                    exit.code, exit.signal
                ),
            );
        }
    }

    /// SIGTERM to every live node (SIGCONT first), SIGKILL after the grace.
    pub(super) fn cleanup(&mut self) {
        for name in self.children.names() {
            let Some(i) = self.index(&name) else { continue };
            self.intent[i] = Some("cleanup");
            let _ = self.children.signal(&name, libc::SIGTERM);
            let _ = self.children.signal(&name, libc::SIGCONT);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for name in self.children.names() {
            let Some(i) = self.index(&name) else { continue };
            let left = deadline.saturating_duration_since(Instant::now());
            let exit = match self.children.wait(&name, left) {
                Some(exit) => exit,
                None => {
                    self.intent[i] = Some("cleanup_timeout");
                    let _ = self.children.signal(&name, libc::SIGKILL);
                    self.children.wait(&name, STOP_GRACE).unwrap_or(Exit {
                        code: None,
                        signal: Some(libc::SIGKILL),
                    })
                }
            };
            self.ended(i, exit);
        }
    }
}
