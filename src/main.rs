//! The `concord` binary: parses the command line and reports errors.
//!
//! Owns only process concerns (exit code, the one-line error report); the
//! commands live in [`cli`] (`run` and `key` in `cli::run`, `status` in
//! `cli::status`), everything else in the `concord` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    tune_malloc();
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

/// glibc's malloc raises its mmap threshold each time a large mmapped block
/// is freed, so after a burst of multi-MiB response buffers later ones come
/// from the arenas, and a burst of peers reading slowly leaves the process
/// holding that memory long after the responses are gone. A fixed threshold
/// keeps buffers of 256 KiB and more in their own mappings, returned on
/// free; a trim every 10 s returns what the arenas hold free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt and malloc_trim only change allocator parameters or
    // release free pages; both are safe to call at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    let _ = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(10));
            // SAFETY: see above.
            unsafe {
                libc::malloc_trim(0);
            }
        });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
