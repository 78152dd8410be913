//! Is every fault seen? Runs every lesson demo under every fault (and under none) with
//! `refcount-lab run`, which classifies each run from what happened alone, knowing nothing of
//! the fault. Prints the matrix (`cargo test --test detection_matrix -- --nocapture`) and
//! checks that correct code is `ok` everywhere and that each fault's own lesson shows it.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_refcount-lab");

fn lab(args: &[&str], dir: &Path) -> String {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir);
    if args.first() == Some(&"run") {
        command.args(["--color", "never"]);
    }
    let output = command.output().expect("refcount-lab runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (fault name, its lesson, the outcome it should produce on this interpreter).
fn catalogue(immortal_none: bool) -> Vec<(String, usize, &'static str)> {
    let text = lab(&["faults"], Path::new("."));
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|pair| {
            !pair[0].is_empty() && !pair[0].starts_with(' ') && pair[1].starts_with("    lesson ")
        })
        .map(|pair| {
            let lesson = pair[1].split_whitespace().nth(1).unwrap().parse().unwrap();
            let expected = match pair[1].rsplit("outcome: ").next().unwrap() {
                "crash" => "crashed",
                "leak" => "leaked",
                _ if immortal_none => "ok", // "crash before 3.12, none on 3.12+"
                _ => "crashed",
            };
            (pair[0].to_owned(), lesson, expected)
        })
        .collect()
}

fn demos() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// The outcome kind of `demo.py` in `dir` with `fault` on (or none).
fn outcome(dir: &Path, fault: Option<&str>) -> String {
    let mut args = vec!["run", "demo.py"];
    args.extend(fault.map(|name| ["--fault", name]).iter().flatten());
    let report = lab(&args, dir);
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with("outcome:"))
        .unwrap_or("outcome: ?");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned()
}

#[test]
fn every_fault_is_detected_by_its_lesson_and_correct_code_never_is() {
    let immortal_none = lab(
        &[
            "python",
            "-c",
            "import sys; print(sys.getrefcount(None) >= 2**30)",
        ],
        Path::new("."),
    )
    .trim()
        == "True";
    let faults = catalogue(immortal_none);
    let demos = demos();
    let rows: Vec<Option<&str>> = std::iter::once(None)
        .chain(faults.iter().map(|f| Some(f.0.as_str())))
        .collect();
    // rows × demos, filled by two workers (one per core). In CI's version matrix
    // (`CI_VERSION_MATRIX` set), which runs this again on each further interpreter within its
    // time, only the cells the checks below read: correct code everywhere, each fault in its
    // own lesson. The rest reads "-".
    let every_cell = std::env::var_os("CI_VERSION_MATRIX").is_none();
    let cells: Vec<(usize, usize)> = (0..rows.len())
        .flat_map(|r| (0..demos.len()).map(move |d| (r, d)))
        .filter(|&(r, d)| every_cell || r == 0 || faults[r - 1].1 == d + 1)
        .collect();
    let mut matrix = vec![vec!["-".to_owned(); demos.len()]; rows.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = cells
            .chunks(cells.len().div_ceil(2))
            .map(|chunk| {
                let (rows, demos) = (&rows, &demos);
                scope.spawn(move || {
                    let run = |&(r, d): &(usize, usize)| (r, d, outcome(&demos[d], rows[r]));
                    chunk.iter().map(run).collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (r, d, kind) in worker.join().unwrap() {
                matrix[r][d] = kind;
            }
        }
    });

    println!(
        "\nfault \\ lesson demo          {}",
        (1..=demos.len())
            .map(|n| format!("{n:>8}"))
            .collect::<String>()
    );
    for (r, row) in rows.iter().enumerate() {
        let cells: String = matrix[r].iter().map(|kind| format!("{kind:>8}")).collect();
        println!("{:<28}{cells}", row.unwrap_or("(none: correct code)"));
    }

    assert!(
        matrix[0].iter().all(|kind| kind == "ok"),
        "correct code is not ok: {:?}",
        matrix[0]
    );
    for (i, (name, lesson, expected)) in faults.iter().enumerate() {
        let own = &matrix[i + 1][lesson - 1];
        assert_eq!(own, expected, "{name} in its own lesson {lesson}");
        if *expected != "ok" {
            assert!(
                matrix[i + 1].iter().any(|kind| kind != "ok" && kind != "-"),
                "{name} is never seen"
            );
        }
    }
}
