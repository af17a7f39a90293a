//! CPU time of this process, so the report can say how much of the machine
//! a ceiling or a sync used, not only how fast it went: on two cores a sync
//! runs the transport's work and the import's work at once, and the sum of
//! what each costs alone bounds it (see `shared_core_bound` in BENCHMARKS.md).

use std::time::Duration;

/// User + system CPU time of this process so far, all threads (`getrusage`).
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given and reads nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it wrote the whole struct.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds spent since `since` (a [`process_cpu`] reading).
pub fn cpu_since(since: Duration) -> f64 {
    process_cpu().saturating_sub(since).as_secs_f64()
}
