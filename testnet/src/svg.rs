//! The picture of a run: each node's height over time, one line per node,
//! with every perturbation marked by a labelled vertical line.
//!
//! Owns the drawing only (plain SVG text written by hand: a few dozen lines
//! instead of a plotting crate and its build on two shared cores).

use std::fmt::Write;

use crate::history::NodeHistory;

/// A vertical marker: time in seconds and its label.
pub struct Mark {
    pub t: f64,
    pub label: String,
}

const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const W: f64 = 960.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// A gap between samples longer than this breaks the line (node not running or paused).
const GAP_S: f64 = 3.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `nodes` over `0..=end` seconds.
pub fn heights(title: &str, nodes: &[&NodeHistory], marks: &[Mark], end: f64) -> String {
    let end = end.max(1.0);
    let top = nodes
        .iter()
        .flat_map(|n| n.samples.iter().map(|s| s.height))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: f64| LEFT + t.clamp(0.0, end) / end * pw;
    let y = |h: f64| TOP + ph - h / top * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="13">{}</text>"#,
        escape(title)
    );
    // Axes and ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{} H{}" stroke="black" fill="none"/>"#,
        TOP + ph,
        LEFT + pw
    );
    for i in 0..=5 {
        let (t, h) = (end * i as f64 / 5.0, top * i as f64 / 5.0);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}s</text>"#,
            x(t),
            TOP + ph + 16.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{h:.0}</text>"#,
            LEFT - 6.0,
            y(h) + 4.0
        );
        let _ = writeln!(
            s,
            r##"<path d="M{LEFT},{:.1} H{}" stroke="#eee"/>"##,
            y(h),
            LEFT + pw
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">time since start</text>"#,
        LEFT + pw / 2.0,
        H - 4.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">height</text>"#,
        TOP + ph / 2.0
    );
    // Perturbations.
    for (i, m) in marks.iter().enumerate() {
        let mx = x(m.t);
        let _ = writeln!(
            s,
            r##"<path d="M{mx:.1},{TOP} V{}" stroke="#999" stroke-dasharray="4,3"/>"##,
            TOP + ph
        );
        let ly = TOP + 12.0 + (i % 4) as f64 * 12.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{ly:.1}" fill="#555">{}</text>"##,
            mx + 3.0,
            escape(&m.label)
        );
    }
    // One line per node, broken where it was not sampled.
    for (i, n) in nodes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        let mut last_t = f64::NEG_INFINITY;
        for p in &n.samples {
            let cmd = if p.t - last_t > GAP_S { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x(p.t), y(p.height as f64));
            last_t = p.t;
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{d}" stroke="{color}" stroke-width="2" fill="none"/>"#
            );
        }
        let ly = TOP + 10.0 + i as f64 * 16.0;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            s,
            r#"<path d="M{lx},{ly} h18" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            lx + 24.0,
            ly + 4.0,
            escape(&n.name),
            n.role.name()
        );
    }
    s.push_str("</svg>\n");
    s
}
