//! The `concord` binary: parses the command line and reports errors.
//!
//! Owns only process concerns (exit code, the one-line error report); the
//! commands live in [`cli`] (`run` and `key` in `cli::run`, `status` in
//! `cli::status`), everything else in the `concord` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            // anyhow's default report for a returned error spans several lines.
            eprintln!("error: {}", one_line(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The context chain joined with ": ", skipping causes that an outer message
/// already quotes (our thiserror messages include their source's text).
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
