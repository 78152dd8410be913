//! Every lesson prints the same thing run after run, crash faults under the debug allocator
//! included, in lines of at most 80 columns. (The snapshots pin one run; this checks that one
//! run stands for all.)

use std::path::Path;
use std::process::Command;

/// Runs of each lesson: 20, or 5 in CI's version matrix (`CI_VERSION_MATRIX` set), which runs
/// this again on each further interpreter and must stay within its time.
fn runs() -> usize {
    if std::env::var_os("CI_VERSION_MATRIX").is_some() {
        5
    } else {
        20
    }
}

fn lesson_output(number: usize) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["lesson", &number.to_string(), "--color", "never"])
        .output()
        .expect("refcount-lab runs");
    assert!(
        output.status.success(),
        "lesson {number}: {}",
        output.status
    );
    String::from_utf8(output.stdout).expect("lesson output is UTF-8")
}

#[test]
fn every_run_of_every_lesson_is_identical() {
    let runs = runs();
    let lessons = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    let count = std::fs::read_dir(lessons).unwrap().count();
    // Two workers, one per core: lessons 1, 3, 5, … and 2, 4, 6, …
    std::thread::scope(|scope| {
        for first in [1, 2] {
            scope.spawn(move || {
                for number in (first..=count).step_by(2) {
                    let reference = lesson_output(number);
                    // Not a terminal: 80 columns, for a projector or a printout.
                    for line in reference.lines() {
                        assert!(
                            line.chars().count() <= 80,
                            "lesson {number}: a line over 80 columns:\n{line}"
                        );
                    }
                    for run in 2..=runs {
                        let output = lesson_output(number);
                        assert_eq!(output, reference, "lesson {number}, run {run} differs");
                    }
                }
            });
        }
    });
}
