//! What `refcount-lab hunt` costs per repetition over running the target once.
//!
//! On the HashTable test-suite (`tests/py`), in one run: the hunt's own account (time running
//! the target vs time measuring after it, per repetition), and wall time of a whole hunt per
//! repetition against one bare `refcount-lab python -m unittest …` (the chosen interpreter
//! itself, which also pays start-up, so that ratio flatters the hunt less than it seems).
//! Goal: ≤ 3×.
//! Run with `cargo bench --bench hunt_overhead`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_refcount-lab");
const SUITE: [&str; 4] = [
    "unittest",
    "test_hashtable",
    "test_mapping_protocol",
    "test_model",
];
const ROUNDS: usize = 5;
const RUNS_PER_HUNT: usize = 5; // the defaults: 2 warm-up + 3 measured

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let (mut bare, mut hunted, mut in_child) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let status = Command::new(BIN)
            .args(["python", "-m"])
            .args(SUITE)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        bare.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let output = Command::new(BIN)
            .args(["hunt", "--format", "json", "-m"])
            .args(SUITE)
            .current_dir(&dir)
            .output()
            .unwrap();
        hunted.push(started.elapsed().as_secs_f64() / RUNS_PER_HUNT as f64);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let sum = |field: &str| -> f64 {
            report["repetitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[field].as_f64().unwrap())
                .sum()
        };
        in_child.push((sum("run_seconds") + sum("measure_seconds")) / sum("run_seconds"));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare, hunted, in_child) = (median(bare), median(hunted), median(in_child));
    println!("medians of {ROUNDS} interleaved rounds, HashTable test-suite");
    println!(
        "  bare run of the suite (with start-up):     {:7.1} ms",
        bare * 1e3
    );
    println!(
        "  hunt, wall time per repetition:            {:7.1} ms",
        hunted * 1e3
    );
    println!(
        "  ratio hunt per repetition / bare run:      {:7.2}×",
        hunted / bare
    );
    println!(
        "  in the child, (run + measuring) / run:     {:7.2}×",
        in_child
    );
}
