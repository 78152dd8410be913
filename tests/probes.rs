//! The `lab` probes read exact counts on the running CPython: `tests/py/probe_counts.py`
//! names known holders and puts the count each must show first in its label, from every
//! context a learner writes probes in. Run on every version of the CI matrix.

use std::path::Path;
use std::process::Command;

#[test]
fn every_probe_reads_the_count_its_label_expects() {
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["run", "probe_counts.py", "--color=never", "--width=200"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py"))
        .output()
        .expect("refcount-lab runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("refcount"))
    {
        // `  refcount  NAME = COUNT      EXPECTED context...`
        let (_, after) = line.split_once(" = ").expect("a count");
        let mut words = after.split_whitespace();
        let read: i64 = words.next().unwrap().parse().expect("a number");
        let expected: i64 = words.next().unwrap().parse().expect("the label's number");
        checked += 1;
        if read != expected {
            mismatches.push(line.trim().to_owned());
        }
    }
    assert!(checked >= 20, "only {checked} probes ran:\n{text}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn immortal_objects_are_named_not_counted() {
    let dir = std::env::temp_dir().join(format!("refcount-lab-immortal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("immortal.py"),
        "import lab, sys\nlab.watch(None, 'None')\nlab.refcount(None, 'None', 'x')\n\
         print(sys.version_info >= (3, 12))\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["run", "immortal.py", "--color=never"])
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let immortal = text.contains("True");
    assert_eq!(
        text.contains("None is immortal: its count never moves"),
        immortal,
        "{text}"
    );
    assert_eq!(text.contains("None = baseline"), !immortal, "{text}");
}
