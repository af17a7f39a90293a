//! `concord-bench --quick` (the CI mode) runs end to end and its JSON report
//! has every figure for every scenario, and every scenario converged on the
//! seeders' tip. Speed is not asserted.

use std::process::Command;

/// Built for this test because the self dev-dependency turns on `bench`.
const BENCH_BIN: &str = env!("CARGO_BIN_EXE_concord-bench");

#[test]
fn quick_bench_reports_every_figure_and_every_scenario_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench.json");
    let run = Command::new(BENCH_BIN)
        .args(["--quick", "--out"])
        .arg(&out)
        .arg("--chains-dir")
        .arg(tmp.path().join("chains"))
        .arg("--work-dir")
        .arg(tmp.path().join("work"))
        .output()
        .expect("run concord-bench --quick");
    assert!(
        run.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("| scenario |"), "no table: {table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    for chain in report["chains"].as_array().unwrap() {
        for rate in ["local_import", "raw_transport"] {
            assert!(
                chain[rate]["mb_per_s"].as_f64().unwrap() > 0.0,
                "{rate} of {chain}"
            );
        }
        // The cap is what a sync at the shared-core bound would score:
        // min(1, bound / ceiling), in every repetition.
        for rep in chain["reps"].as_array().unwrap() {
            let f = |k: &str| rep[k].as_f64().unwrap_or_else(|| panic!("no {k}: {rep}"));
            let (bound, ceiling, cap) = (
                f("shared_core_bound_mb_per_s"),
                f("ceiling_mb_per_s"),
                f("efficiency_cap"),
            );
            assert!(bound > 0.0 && ceiling > 0.0, "{rep}");
            assert!(
                (cap - (bound / ceiling).min(1.0)).abs() < 1e-9,
                "cap {cap} is not min(1, {bound} / {ceiling})"
            );
        }
    }
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "small / 1 seeder",
        "small / 3 seeders",
        "large / 1 seeder",
        "large / 3 seeders",
        "small / 3 seeders, 1 slow (10x)",
        "large / 3 seeders, 1 slow (10x)",
        "small / 3 seeders + 1 lying",
    ] {
        assert!(
            names.contains(&want),
            "scenario {want} missing from {names:?}"
        );
    }
    let figures = [
        "blocks_per_s",
        "mb_per_s",
        "time_to_synced_s",
        "efficiency",
        "overhead",
        "overhead_app",
        "requests_per_1000_blocks",
        "connect_to_first_request_ms",
        "ahead_to_first_request_ms",
        "peak_rss_mib",
        "cpu_per_mb",
        "vs_shared_core_bound",
    ];
    for s in scenarios {
        assert_eq!(s["converged"], true, "scenario did not converge: {s}");
        let chain = report["chains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == s["chain"])
            .unwrap();
        assert_eq!(
            s["child"]["tip"], chain["info"]["tip"],
            "synced tip differs from the seeders' in {}",
            s["name"]
        );
        for f in figures {
            assert!(s[f].as_f64().is_some(), "{} has no {f}: {s}", s["name"]);
        }
    }
    let liar = scenarios
        .iter()
        .find(|s| s["lying_seeder"] == true)
        .unwrap();
    // Its forged chain is validly signed: a fork, not a lie. It is known as
    // such and not synced from; nobody is banned for it.
    assert_eq!(
        liar["child"]["fork_peers"].as_u64(),
        Some(1),
        "liar not judged on another fork: {liar}"
    );
    assert_eq!(liar["child"]["banned"].as_u64(), Some(0), "{liar}");
    let tip = &report["tip_latency"];
    assert_eq!(tip["missing"], 0, "tip latency samples missing: {tip}");
    for f in ["p50_ms", "p95_ms", "max_ms"] {
        assert!(tip[f].as_f64().is_some(), "tip latency has no {f}: {tip}");
    }
}
