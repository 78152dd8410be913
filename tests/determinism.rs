//! Every lesson prints the same thing run after run: crash faults under the debug allocator
//! included. (The snapshots pin one run; this checks that one run stands for all.)

use std::process::Command;

const RUNS: usize = 20;

fn lesson_output(number: u32) -> String {
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
fn twenty_runs_of_every_lesson_are_identical() {
    for number in 1..=5 {
        let first = lesson_output(number);
        for run in 2..=RUNS {
            assert_eq!(
                lesson_output(number),
                first,
                "lesson {number}, run {run} differs"
            );
        }
    }
}
