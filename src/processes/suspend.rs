//! Ctrl-Z: refcount-lab and everything it started stop together, and go on together.
//!
//! A run lives in a process group (and a namespace) of its own, which the terminal's
//! `SIGTSTP` does not reach: left alone, a suspended refcount-lab would leave its run going
//! with no one to stop it at its time limit. So the interrupt thread takes `SIGTSTP`:
//! it freezes every process the run started (`SIGSTOP`, until all are stopped), tells the
//! copies of refcount-lab to suspend themselves (`hunt --jobs`: each freezes its own), and
//! only then stops this process. When the shell's `fg` or `bg` sends `SIGCONT`, it lets
//! them all go on. The time spent stopped does not count against any time limit
//! ([`clock`]).

use super::{descendants, interrupts, spawn_lock, table};
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The time spent suspended, and since when this process is suspended now, if it is.
static SUSPENDED: Mutex<(Duration, Option<Instant>)> = Mutex::new((Duration::ZERO, None));

fn suspended() -> MutexGuard<'static, (Duration, Option<Instant>)> {
    SUSPENDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a copy is waited for to stop itself.
const COPIES_STOP_WITHIN: Duration = Duration::from_secs(2);

/// The clock time limits are kept by: monotonic time less the time spent suspended, while
/// the runs were frozen too. It stands still from the moment this process stops itself
/// until the time stopped is counted, so no thread that wakes first reads a jump.
pub fn clock() -> Instant {
    let (spent, since) = *suspended();
    let now = since.unwrap_or_else(Instant::now);
    now.checked_sub(spent).unwrap_or(now)
}

/// Freezes the runs, stops this process, and lets them all go on once it is continued.
pub(super) fn suspend() {
    // Nothing starts while suspended, and the clock stands still from now on.
    let _held = spawn_lock();
    let since = Instant::now();
    suspended().1 = Some(since);
    let copies = interrupts::copies_now();
    for &copy in &copies {
        // SAFETY: an unreaped child of ours (see `interrupts::forget`).
        unsafe { libc::kill(copy, libc::SIGTSTP) };
    }
    let frozen = freeze(&copies);
    let started = Instant::now();
    while started.elapsed() < COPIES_STOP_WITHIN && !all_stopped(&copies) {
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: raise only signals this process; SIGSTOP stops all its threads, and returns
    // here once the process is continued.
    unsafe { libc::raise(libc::SIGSTOP) };
    {
        let mut state = suspended();
        state.0 += since.elapsed();
        state.1 = None;
    }
    for pid in copies.iter().chain(&frozen) {
        // SAFETY: our descendants, stopped until now: none could end and be reaped (their
        // parents were stopped too, or are this process), so each pid is still theirs.
        unsafe { libc::kill(*pid, libc::SIGCONT) };
    }
}

/// Stops every live descendant but the copies and theirs (which stop themselves), until a
/// pass finds none running; the pids it stopped (not those already stopped by others).
fn freeze(copies: &[i32]) -> Vec<i32> {
    let mut frozen = HashSet::new();
    for _ in 0..1000 {
        let mut running = false;
        let mut theirs: HashSet<i32> = copies.iter().copied().collect();
        // Parents come before their children in `descendants`.
        for (pid, process) in descendants(None) {
            if theirs.contains(&pid) || theirs.contains(&process.ppid) {
                theirs.insert(pid);
                continue;
            }
            match process.state {
                // Ended, or stopped: by us in an earlier pass, or by someone else (left so).
                'Z' | 'X' | 'T' => {}
                _ => {
                    running = true;
                    frozen.insert(pid);
                    // SAFETY: a live descendant of ours (not reaped: its parent is ours or
                    // a descendant of ours).
                    unsafe { libc::kill(pid, libc::SIGSTOP) };
                }
            }
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    frozen.into_iter().collect()
}

/// Whether every copy has stopped (or ended).
fn all_stopped(copies: &[i32]) -> bool {
    let table = table();
    copies.iter().all(|pid| {
        table
            .get(pid)
            .is_none_or(|process| matches!(process.state, 'T' | 'Z' | 'X'))
    })
}
