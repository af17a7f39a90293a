//! `concord testnet …`: a git-style external subcommand. Runs the
//! `concord-testnet` binary (a separate workspace member, never part of the
//! node) found next to this executable or on `PATH`, with the arguments
//! unchanged, and exits with its exit code. Owns nothing but that lookup.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

const RUNNER: &str = "concord-testnet";

pub fn exec(args: &[OsString]) -> anyhow::Result<ExitCode> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(RUNNER)))
        .filter(|path| path.is_file());
    let program = match beside {
        Some(path) => path,
        None => match on_path() {
            Some(path) => path,
            None => bail!(
                "{RUNNER} not found next to concord or on PATH; build it with `cargo build -p concord-testnet`"
            ),
        },
    };
    let status = Command::new(&program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    // A runner killed by a signal has no code: report a plain failure.
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(RUNNER))
        .find(|p| p.is_file())
}
