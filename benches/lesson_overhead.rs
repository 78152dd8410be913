//! What `refcount-lab lesson N` costs over running its demo bare.
//!
//! For every lesson, in interleaved rounds within one run (the machine is shared and noisy):
//! - `lesson`: `refcount-lab lesson N --color never` (child per variant, debug allocator,
//!   trace pipe, rendering);
//! - `bare`: the same demo run per variant by the interpreter itself, `python demo.py` with the
//!   module importable and the variant's faults switched on, output discarded;
//! - `pass`: `python -c pass` with the same interpreter (its real binary, not a pyenv shim,
//!   whose own start-up would flatter the ratio), start-up alone.
//!
//! The interpreter is the one refcount-lab chooses: `REFCOUNT_LAB_PYTHON=… cargo bench
//! --bench lesson_overhead` measures another. Prints medians, lesson / bare, and
//! lesson / (pass + bare), the figure issue #10 sets at ≤ 1.5×.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;
const BIN: &str = env!("CARGO_BIN_EXE_refcount-lab");

fn time(command: &mut Command) -> Duration {
    let started = Instant::now();
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("benchmark command runs");
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The lesson folder numbered `number`, and the faults of its faulty variant.
fn lesson(number: u32) -> (PathBuf, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    let dir = std::fs::read_dir(&root)
        .expect("lessons/ exists")
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{number:02}-"))
        })
        .expect("lesson folder exists");
    let toml = std::fs::read_to_string(dir.join("lesson.toml")).unwrap();
    let faults = toml
        .lines()
        .find_map(|line| line.strip_prefix("faults = "))
        .map(|list| {
            list.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|name| name.trim().trim_matches('"').to_owned())
                .collect()
        })
        .unwrap_or_default();
    (dir, faults)
}

/// The chosen interpreter's executable, version, and the folder its module is installed in.
/// The interpreter refcount-lab chooses, its version, and a copy of the module folder it
/// would import from (refcount-lab's own folder lives only as long as the command).
fn chosen_python(copy_to: &Path) -> (String, String, String) {
    let _ = std::fs::remove_dir_all(copy_to);
    let output = Command::new(BIN)
        .args([
            "python",
            "-c",
            "import sys, os, shutil, hashtable; print(sys.executable); \
             print(sys.version.split()[0]); \
             shutil.copytree(os.path.dirname(hashtable.__file__), sys.argv[1], symlinks=True)",
        ])
        .arg(copy_to)
        .output()
        .expect("refcount-lab python runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let mut next = || lines.next().expect("two lines");
    (next(), next(), copy_to.display().to_string())
}

fn main() {
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lesson-overhead-module");
    let (python, version, module_dir) = chosen_python(&copy);
    println!("CPython {version} ({python}); medians of {ROUNDS} interleaved rounds");
    println!("lesson   lesson ms   bare ms   pass ms   lesson/bare   lesson/(pass+bare)");
    let count = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons"))
        .expect("lessons/ exists")
        .count() as u32;
    for number in 1..=count {
        let (dir, faults) = lesson(number);
        let mut variants: Vec<Vec<String>> = vec![vec![]];
        if !faults.is_empty() {
            variants.push(faults);
        }
        let (mut lesson_times, mut bare_times, mut pass_times) = (vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            lesson_times.push(time(Command::new(BIN).args([
                "lesson",
                &number.to_string(),
                "--color",
                "never",
            ])));
            bare_times.push(
                variants
                    .iter()
                    .map(|faults| {
                        time(
                            Command::new(&python)
                                .arg("demo.py")
                                .current_dir(&dir)
                                .env("PYTHONPATH", &module_dir)
                                .env("REFCOUNT_LAB_FAULTS", faults.join(",")),
                        )
                    })
                    .sum(),
            );
            pass_times.push(time(Command::new(&python).args(["-c", "pass"])));
        }
        let (lesson, bare, pass) = (median(lesson_times), median(bare_times), median(pass_times));
        println!(
            "{number:>6}   {:>9.1}   {:>7.1}   {:>7.1}   {:>10.2}×   {:>17.2}×",
            lesson.as_secs_f64() * 1e3,
            bare.as_secs_f64() * 1e3,
            pass.as_secs_f64() * 1e3,
            lesson.as_secs_f64() / bare.as_secs_f64(),
            lesson.as_secs_f64() / (pass + bare).as_secs_f64()
        );
    }
}
