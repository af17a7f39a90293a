//! The live terminal view: one line per node (state, height/target, peers,
//! mode, stall reason), redrawn in place about once a second on a TTY, and
//! printed as plain blocks every few seconds otherwise (CI logs).
//!
//! Owns the view's wording only; the runner hands it the rows.

use std::io::{IsTerminal, Write};

/// What one line says about a node.
pub struct Row {
    pub name: String,
    pub role: &'static str,
    /// `running`, `paused`, `waiting`, `killed`, `stopped`, `exited`.
    pub state: String,
    pub height: Option<u64>,
    pub target: Option<u64>,
    pub peers: Option<usize>,
    pub mode: Option<String>,
    pub stalled: Option<String>,
}

pub struct Live {
    tty: bool,
    drawn: usize,
    last_plain: f64,
}

/// Seconds between plain (non-TTY) blocks.
const PLAIN_EVERY_S: f64 = 5.0;

impl Live {
    pub fn new() -> Live {
        Live {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
            last_plain: f64::NEG_INFINITY,
        }
    }

    /// Prints a line that stays (an event), above the live block on a TTY.
    pub fn note(&mut self, t: f64, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
        let _ = writeln!(out, "[{t:6.1}s] {text}");
    }

    pub fn draw(&mut self, t: f64, rows: &[Row]) {
        if !self.tty && t - self.last_plain < PLAIN_EVERY_S {
            return;
        }
        self.last_plain = t;
        let mut out = std::io::stdout().lock();
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let clear = if self.tty { "\x1b[2K" } else { "" };
        let _ = writeln!(out, "{clear}[{t:6.1}s] ---- nodes ----");
        for r in rows {
            let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let mut line = format!(
                "{clear}  {:<12} {:<9} {:<8} height {:>7}/{:<7} peers {:>2}  {}",
                r.name,
                r.role,
                r.state,
                opt(r.height),
                opt(r.target),
                r.peers.map_or("-".to_string(), |p| p.to_string()),
                r.mode.as_deref().unwrap_or("")
            );
            if let Some(s) = &r.stalled {
                line.push_str(&format!(
                    "  stalled: {}",
                    s.chars().take(60).collect::<String>()
                ));
            }
            let _ = writeln!(out, "{line}");
        }
        self.drawn = rows.len() + 1;
        let _ = out.flush();
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}
