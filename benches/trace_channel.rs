//! How fast the trace channel carries events, and where the time goes.
//!
//! The script `fixtures/bench/sends_events.py` sends N `say` events and times its own loop.
//! In interleaved rounds within one run (the machine is shared and noisy):
//! - `alone`: the interpreter runs the script with the trace going to `/dev/null` (the
//!   module signs and writes each event, nobody reads): the child's own cost;
//! - `traced`: `refcount-lab run` runs it, reading, checking and keeping every event: the
//!   child's loop now waits whenever the parent falls behind (the pipe is full), and the
//!   command's wall time includes the parent reading what is left after the loop.
//!
//! `alone` also times formatting only (lab's JSON, in Python), so the child's cost splits
//! into formatting and signing + writing. `traced` runs under the debug allocator, as every
//! `run` does. Prints events per second and the ratios.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const ROUNDS: usize = 5;
const EVENTS: usize = 200_000;
const BIN: &str = env!("CARGO_BIN_EXE_refcount-lab");

fn script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/bench/sends_events.py")
        .display()
        .to_string()
}

/// The script's own figures (loop, formatting only), from the last line that has two.
fn figures(stdout: &[u8]) -> (f64, f64) {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(|c: char| !c.is_ascii_digit());
            let mut numbers = line.split_whitespace().map(str::parse::<f64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(a)), Some(Ok(b))) => Some((a, b)),
                _ => None,
            }
        })
        .next_back()
        .expect("the script printed its figures")
}

/// `alone`: refcount-lab's interpreter, the module importable, the trace pipe's writer
/// given `/dev/null` and a key on fd 4, as refcount-lab would pass them.
fn alone() -> (f64, f64) {
    let key = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-channel-key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["python", &script()])
        .env("REFCOUNT_LAB_BENCH_EVENTS", EVENTS.to_string())
        .env("REFCOUNT_LAB_BENCH_FORMATTING", "1")
        .env("REFCOUNT_LAB_TRACE_FD", "3")
        .env("REFCOUNT_LAB_KEY_FD", "4");
    let null = std::fs::File::options()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let key = std::fs::File::open(&key).unwrap();
    use std::os::fd::AsRawFd;
    let (null_fd, key_fd) = (null.as_raw_fd(), key.as_raw_fd());
    // SAFETY: dup2 is async-signal-safe; the copies on 3 and 4 are inherited by design.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(null_fd, 3) == -1 || libc::dup2(key_fd, 4) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("refcount-lab python runs");
    assert!(output.status.success(), "{output:?}");
    figures(&output.stdout)
}

/// `traced`: the command's wall time and the script's figures.
fn traced() -> (f64, (f64, f64)) {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["run", &script(), "--timeout", "3600", "--color", "never"])
        .env("REFCOUNT_LAB_BENCH_EVENTS", EVENTS.to_string())
        .output()
        .expect("refcount-lab runs");
    let wall = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{output:?}");
    (wall, figures(&output.stdout))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let (mut alone_loop, mut formatting, mut traced_loop, mut traced_wall) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (loop_seconds, format_seconds) = alone();
        alone_loop.push(loop_seconds);
        formatting.push(format_seconds);
        let (wall, (loop_seconds, _)) = traced();
        traced_loop.push(loop_seconds);
        traced_wall.push(wall);
    }
    let rate = |seconds: f64| EVENTS as f64 / seconds;
    let (alone, formatting) = (median(alone_loop), median(formatting));
    let (traced_loop, traced_wall) = (median(traced_loop), median(traced_wall));
    println!("{EVENTS} say events, medians of {ROUNDS} interleaved rounds");
    println!(
        "child alone (trace to /dev/null)   {:>9.0} events/s   formatting {:.0} %, signing and writing {:.0} %",
        rate(alone),
        100.0 * formatting / alone,
        100.0 * (alone - formatting) / alone
    );
    println!(
        "child under refcount-lab run       {:>9.0} events/s   {:.2}x the time alone (waits on the parent)",
        rate(traced_loop),
        traced_loop / alone
    );
    println!(
        "whole command, end to end          {:>9.0} events/s   (start-up, parent reading, report)",
        rate(traced_wall)
    );
}
