//! The processes the runner starts, and making sure none outlives it.
//!
//! Owns signals and process lifetimes: spawning a `concord` child with its
//! log appended to a file, sending it SIGKILL/SIGSTOP/SIGCONT/SIGTERM,
//! reaping it, the SIGINT/SIGTERM flag of the runner itself, and the
//! pidfile. Three layers keep a run from leaking processes:
//! 1. [`Children`] kills every child it holds when dropped (normal end,
//!    error, panic) and the main loop stops on SIGINT/SIGTERM;
//! 2. every child gets `PR_SET_PDEATHSIG = SIGKILL`, so even a runner killed
//!    with SIGKILL takes its nodes with it;
//! 3. `DIR/pids` lists the live children; the next run on the same `--out`
//!    kills any that are still there (only if `/proc/PID/cmdline` still
//!    names that run's data dir) before it wipes the directory.
//!
//! Each child runs in its own process group, so a Ctrl-C in the terminal
//! reaches only the runner, which then stops the nodes itself.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program} for {node}: {source}")]
    Spawn {
        node: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot signal {node} (pid {pid}): {source}")]
    Signal {
        node: String,
        pid: u32,
        source: std::io::Error,
    },
}

/// The last SIGINT/SIGTERM the runner received (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to a flag the main loop reads.
pub fn install_stop_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// The signal that asked the runner to stop, if any.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// One running child.
struct Running {
    child: Child,
    /// Sent SIGSTOP and not SIGCONT since.
    paused: bool,
}

/// The live children, by node name.
pub struct Children {
    running: BTreeMap<String, Running>,
    pidfile: PathBuf,
}

impl Children {
    pub fn new(pidfile: PathBuf) -> Children {
        Children {
            running: BTreeMap::new(),
            pidfile,
        }
    }

    /// Starts `program args` for `node`, appending stdout and stderr to `log`.
    pub fn spawn(
        &mut self,
        node: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<u32, ProcessError> {
        let file_err = |source| ProcessError::File {
            path: log.to_path_buf(),
            source,
        };
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(file_err)?;
        let err = out.try_clone().map_err(file_err)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            node: node.to_string(),
            program: program.display().to_string(),
            source,
        })?;
        let pid = child.id();
        self.running.insert(
            node.to_string(),
            Running {
                child,
                paused: false,
            },
        );
        self.write_pidfile()?;
        Ok(pid)
    }

    pub fn is_running(&self, node: &str) -> bool {
        self.running.contains_key(node)
    }

    pub fn is_paused(&self, node: &str) -> bool {
        self.running.get(node).is_some_and(|r| r.paused)
    }

    /// Sends `signal` to `node`'s process (nothing if it does not run).
    pub fn signal(&mut self, node: &str, signal: i32) -> Result<(), ProcessError> {
        let Some(r) = self.running.get_mut(node) else {
            return Ok(());
        };
        let pid = r.child.id();
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return Ok(());
        };
        // SAFETY: kill has no memory effects; the pid is our own unreaped child.
        if unsafe { libc::kill(raw, signal) } != 0 {
            return Err(ProcessError::Signal {
                node: node.to_string(),
                pid,
                source: std::io::Error::last_os_error(),
            });
        }
        match signal {
            libc::SIGSTOP => r.paused = true,
            libc::SIGCONT => r.paused = false,
            _ => {}
        }
        Ok(())
    }

    /// Children that have exited since the last call, with how.
    pub fn reap(&mut self) -> Vec<(String, Exit)> {
        let mut done = Vec::new();
        for (name, r) in &mut self.running {
            if let Ok(Some(status)) = r.child.try_wait() {
                done.push((
                    name.clone(),
                    Exit {
                        code: status.code(),
                        signal: status.signal(),
                    },
                ));
            }
        }
        for (name, _) in &done {
            self.running.remove(name);
        }
        if !done.is_empty() {
            // The pidfile is a best effort for the next run; a write error here
            // only means that run may find a stale pid (it checks cmdline).
            let _ = self.write_pidfile();
        }
        done
    }

    /// Waits up to `timeout` for `node` to exit; its exit if it did.
    pub fn wait(&mut self, node: &str, timeout: Duration) -> Option<Exit> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.running.get_mut(node)?;
            if let Ok(Some(status)) = r.child.try_wait() {
                self.running.remove(node);
                let _ = self.write_pidfile();
                return Some(Exit {
                    code: status.code(),
                    signal: status.signal(),
                });
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Names of the live children.
    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    fn write_pidfile(&self) -> Result<(), ProcessError> {
        let mut text = String::new();
        for r in self.running.values() {
            text.push_str(&format!("{}\n", r.child.id()));
        }
        let mut f = File::create(&self.pidfile).map_err(|source| ProcessError::File {
            path: self.pidfile.clone(),
            source,
        })?;
        f.write_all(text.as_bytes())
            .map_err(|source| ProcessError::File {
                path: self.pidfile.clone(),
                source,
            })
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for r in self.running.values_mut() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

/// Whether `pid` is gone (no such process, or a zombie nobody reaps yet).
fn gone(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Kills what a previous run on this out dir left behind: every pid in its
/// pidfile whose command line still mentions `marker` (the out dir), and
/// waits (up to 5 s) until they are gone, so their ports and data dirs are
/// free. Returns how many it killed.
pub fn kill_leftovers(pidfile: &Path, marker: &str) -> usize {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return 0;
    };
    let mut killed = Vec::new();
    for pid in text
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pid > 1 && String::from_utf8_lossy(&cmdline).contains(marker) {
            // SAFETY: kill has no memory effects.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed.push(pid);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !killed.iter().all(|&p| gone(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.len()
}
