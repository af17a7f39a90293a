//! The `concord-testnet` binary (also reached as `concord testnet …`): the
//! command line, finding the `concord` binary, exit codes.
//!
//! Exit codes: 0 every assertion passed; 1 an assertion failed; 2 the
//! manifest or the command line is wrong, or setup failed; 130/143 stopped
//! by SIGINT/SIGTERM (after cleaning up).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use concord_testnet::manifest::{Manifest, Placement};
use concord_testnet::{process, run};

/// Run a Concord testnet of real `concord` processes from a TOML manifest.
#[derive(Parser, Debug)]
#[command(name = "concord testnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a manifest; exit 0 only if every assertion passed.
    Run {
        /// The manifest (TOML), e.g. testnet/manifests/quick.toml.
        manifest: PathBuf,
        /// Results folder (logs, summary.json, heights.svg); wiped if it
        /// holds an earlier run.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The `concord` binary [default: next to this one, else on PATH].
        #[arg(long, value_name = "PATH")]
        concord: Option<PathBuf>,
        /// Override the manifest's run.placement: loopback or namespaces
        /// (namespaces needs root and `ip netns`; a clear error otherwise).
        #[arg(long, value_name = "loopback|namespaces", value_parser = parse_placement)]
        placement: Option<Placement>,
    },
    /// Parse and validate a manifest, print what it would start, and exit.
    Check { manifest: PathBuf },
}

fn parse_placement(text: &str) -> Result<Placement, String> {
    match text {
        "loopback" => Ok(Placement::Loopback),
        "namespaces" => Ok(Placement::Namespaces),
        _ => Err("loopback or namespaces".into()),
    }
}

fn load(path: &Path, placement: Option<Placement>) -> anyhow::Result<(Manifest, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let manifest = Manifest::parse_placed(&text, placement)
        .with_context(|| format!("manifest {}", path.display()))?;
    Ok((manifest, text))
}

fn find_concord(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--concord {}: no such file", path.display());
        }
        return Ok(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("concord")))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("concord"))
                .find(|c| c.is_file())
        })
    };
    match beside.or_else(on_path) {
        Some(p) => Ok(p),
        None => bail!("no `concord` binary next to concord-testnet or on PATH; build it with `cargo build -p concord` or pass --concord PATH"),
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Check { manifest } => {
            let (m, _) = load(&manifest, None)?;
            println!(
                "{}: ok, {} node(s), {} perturbation(s), {} assertion(s), {} run",
                manifest.display(),
                m.nodes.len(),
                m.timeline.len(),
                m.assertions().len(),
                m.run.duration
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            manifest,
            out,
            concord,
            placement,
        } => {
            let (m, text) = load(&manifest, placement)?;
            let bin = find_concord(concord)?;
            process::install_stop_handler();
            match m.run.placement {
                Placement::Loopback => println!("placement: loopback (every node on 127.0.0.1)"),
                Placement::Namespaces => println!(
                    "placement: namespaces (one network namespace per node on a bridge; mDNS inside them only)"
                ),
            }
            let result = run::run(&m, &text, &manifest, &out, &bin)?;
            println!();
            for o in &result.outcomes {
                let mark = if o.pass { "PASS" } else { "FAIL" };
                println!("{mark} {:<20} {} — {}", o.kind, o.what, o.why);
            }
            println!(
                "{} in {:.1}s; report: {}/summary.json, {}/heights.svg, logs in {}/nodes/*/log",
                if result.passed { "PASSED" } else { "FAILED" },
                result.seconds,
                result.out.display(),
                result.out.display(),
                result.out.display()
            );
            Ok(match result.interrupted {
                Some(signal) => {
                    println!("interrupted by signal {signal}; every node was stopped");
                    ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(2)))
                }
                None if result.passed => ExitCode::SUCCESS,
                None => ExitCode::FAILURE,
            })
        }
    }
}
