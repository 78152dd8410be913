//! `refcount-lab bench --quick` runs, writes its CSV and plots, and its sweep is the same run
//! after run in everything but the timings. (Timings themselves are never asserted: these
//! machines are shared; the figures go in the report, as ratios measured in one run.)

use std::process::Command;

/// The sweep's CSV without its two timing columns.
fn bench_quick(dir: &std::path::Path) -> Vec<String> {
    let csv = dir.join("sweep.csv");
    let plots = dir.join("plots");
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["bench", "--quick", "--csv"])
        .arg(&csv)
        .arg("--plot")
        .arg(&plots)
        .output()
        .expect("refcount-lab runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("HashTable against dict") && stdout.contains("Memory per entry"));
    assert!(stdout.contains("SafeHashTable / HashTable"), "{stdout}");
    assert!(stdout.contains("\nSafeHashTable against HashTable, the same rounds"));
    assert!(
        stdout.contains("What a timeit loop of `t = HashTable()` and a fill measures"),
        "{stdout}"
    );
    assert!(
        stdout.contains("; page faults a step: HashTable "),
        "{stdout}"
    );
    assert!(stdout.contains("geometric mean of HashTable / dict") && stdout.contains("1000000"));
    for plot in ["get-throughput.svg", "set-throughput.svg", "max-chain.svg"] {
        let svg = std::fs::read_to_string(plots.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("terrible_hash"),
            "{plot}"
        );
    }
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .map(|line| line.rsplitn(3, ',').nth(2).unwrap().to_owned())
        .collect()
}

#[test]
fn quick_bench_is_deterministic_but_for_timings() {
    let scratch = std::env::temp_dir().join(format!("refcount-lab-bench-{}", std::process::id()));
    let first = bench_quick(&scratch.join("1"));
    let second = bench_quick(&scratch.join("2"));
    std::fs::remove_dir_all(&scratch).unwrap();
    assert_eq!(first.len(), 1 + 3 * 3 * 3, "a header and 27 configurations");
    assert_eq!(first, second);
    // The lesson of the sweep: the terrible hash's longest chain dwarfs the built-in one's.
    let max_chain = |hash_func: &str| -> usize {
        first
            .iter()
            .filter(|row| row.starts_with(&format!("{hash_func},")))
            .map(|row| row.rsplit(',').next().unwrap().parse::<usize>().unwrap())
            .max()
            .unwrap()
    };
    assert!(max_chain("terrible_hash") > 50 * max_chain("hash"));
}

/// `--plot DIR` never writes through a link named as DIR (another user's link could choose
/// which folder of yours gets the plots): refused before anything is measured.
#[test]
fn a_plot_folder_that_is_a_link_is_refused() {
    let scratch =
        std::env::temp_dir().join(format!("refcount-lab-bench-link-{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("real")).unwrap();
    std::os::unix::fs::symlink(scratch.join("real"), scratch.join("link")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["bench", "--quick", "--plot"])
        .arg(scratch.join("link"))
        .output()
        .expect("refcount-lab runs");
    let written = std::fs::read_dir(scratch.join("real")).unwrap().count();
    std::fs::remove_dir_all(&scratch).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it is a symbolic link, not followed"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty() && written == 0);
}
