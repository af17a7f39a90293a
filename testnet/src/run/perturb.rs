//! Applying one timeline event: signals to a node's process (kill,
//! pause, resume, stop, restart) or a link fault through [`faults`]
//! (blackhole rules and tc in namespaces, deny lists and the relay shaper
//! on loopback), and arming the reorg watch when a partition heals.
//!
//! Owns no state of its own; an error says why the event could not apply.

use super::Run;
use crate::faults;
use crate::manifest::{Action, Event};

impl Run<'_> {
    /// Applies one perturbation; an error says why it could not apply.
    pub(super) fn perturb(&mut self, e: &Event) -> Result<(), String> {
        let action = e.action;
        if action.is_link_fault() {
            return self.link_fault(e);
        }
        let Some(i) = e.node.as_deref().and_then(|n| self.index(n)) else {
            return Err("no such node".into());
        };
        let name = self.plans[i].name.clone();
        let running = self.children.is_running(&name);
        let signal =
            |run: &mut Self, s: i32| run.children.signal(&name, s).map_err(|e| e.to_string());
        match action {
            Action::Kill | Action::Stop | Action::Pause if !running => Err("not running".into()),
            Action::Resume if !self.children.is_paused(&name) => Err("not paused".into()),
            Action::Restart if running => Err("still running".into()),
            Action::Restart => self.start(i).map_err(|e| e.to_string()),
            Action::Kill => {
                self.intent[i] = Some("kill");
                signal(self, libc::SIGKILL)
            }
            Action::Stop => {
                self.intent[i] = Some("stop");
                // A paused node must run to handle SIGTERM.
                signal(self, libc::SIGTERM)?;
                signal(self, libc::SIGCONT)
            }
            Action::Pause => signal(self, libc::SIGSTOP),
            Action::Resume => signal(self, libc::SIGCONT),
            _ => Err("not a process action".into()),
        }
    }

    fn link_fault(&mut self, e: &Event) -> Result<(), String> {
        let plans = &self.plans;
        let links = match self.net.as_mut() {
            Some(net) => faults::Links::Netns(net),
            None => faults::Links::Loopback {
                plans,
                shaper: self.shaper.as_ref(),
            },
        };
        let index = |n: &str| plans.iter().position(|p| p.name == n);
        self.faults.apply(e, links, plans.len(), index)?;
        match e.action {
            Action::Partition => self.partition = Some(e.groups.clone()),
            Action::Heal => {
                if let Some(groups) = self.partition.take() {
                    let t = self.t();
                    let mut w = faults::watch_heal(&groups, &self.plans, t);
                    self.watches.append(&mut w);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
