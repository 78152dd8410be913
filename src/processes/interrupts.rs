//! Taking `SIGINT`, `SIGTERM`, `SIGHUP` and the other ending signals for the whole process.

use super::{ended, spawn_lock, stop_descendants};
use crate::scratch;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set before the interrupt thread stops anything.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Copies of refcount-lab running now (`copies.rs`), unreaped: each is sent the signal
/// first, to stop its own children and remove its own scratch folders.
static COPIES: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// How long a copy is given to clean up after itself before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);

/// Adds our unreaped child `pid`, a copy of refcount-lab, to those told first.
pub(super) fn forward_to(pid: i32) {
    copies().push(pid);
}

/// Takes `pid` out of those told first: call it before reaping it, so that its pid, once
/// free, is never signalled.
pub(super) fn forget(pid: i32) {
    copies().retain(|&copy| copy != pid);
}

/// The copies running now.
pub(super) fn copies_now() -> Vec<i32> {
    copies().clone()
}

fn copies() -> std::sync::MutexGuard<'static, Vec<i32>> {
    COPIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `signal` to every copy and waits up to [`GRACE`] for all of them to end; how
/// many there were.
fn forward(signal: i32) -> usize {
    let copies = copies().clone();
    for &pid in &copies {
        // SAFETY: an unreaped child of ours (see `forget`): its pid cannot be reused.
        unsafe { libc::kill(pid, signal) };
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && !copies.iter().all(|&pid| ended(pid)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    copies.len()
}

/// Every signal whose default action would end refcount-lab, and that it can take:
/// Ctrl-C, Ctrl-\, a hang-up, `kill`, and the rest anyone could send it, the real-time
/// ones too ([`real_time`]). (SIGKILL and SIGSTOP cannot be taken, which is why children
/// also die with their parent. A real fault of refcount-lab's own, SIGSEGV, SIGBUS,
/// SIGFPE, SIGILL or SIGTRAP, is delivered by the kernel whatever the mask; only one
/// sent with `kill` waits here.)
const SIGNALS: [(i32, &str); 21] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGSYS, "SIGSYS"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
];

/// The real-time signals the C library leaves to programs (it keeps the first two).
fn real_time() -> std::ops::RangeInclusive<i32> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// How the signals are taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stop everything, clean up, exit 128 + the signal.
    Stop,
    /// For an interactive child on the same terminal (`refcount-lab python`): Ctrl-C and
    /// Ctrl-\ are the child's to take (the terminal sends them there too); the others
    /// stop everything.
    Interactive,
}

/// Blocks the signals in this thread (call it first in `main`, before any other
/// thread starts, so that every thread inherits the mask) and takes them in a thread
/// of their own. Children start with no signal blocked: [`spawn`](super::spawn) resets
/// the mask.
pub fn install(mode: Mode) {
    // SAFETY: a zeroed sigset_t is filled in by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t of ours; pthread_sigmask changes this thread's
    // mask only.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in SIGNALS
            .map(|(signal, _)| signal)
            .into_iter()
            .chain(real_time())
        {
            libc::sigaddset(&mut set, signal);
        }
        // Ctrl-Z: the runs are in groups of their own, which the terminal does not stop.
        // (The interactive interpreter shares refcount-lab's group: the terminal stops both.)
        if mode == Mode::Stop {
            libc::sigaddset(&mut set, libc::SIGTSTP);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let wait_for = move || loop {
        let mut signal = 0;
        // SAFETY: `set` holds the signals blocked above; sigwait stores one in `signal`.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        if mode == Mode::Interactive && matches!(signal, libc::SIGINT | libc::SIGQUIT) {
            continue;
        }
        if signal == libc::SIGTSTP {
            super::suspend::suspend();
            continue;
        }
        stop(signal);
    };
    std::thread::Builder::new()
        .name("interrupts".into())
        .spawn(wait_for)
        .expect("cannot start the signal thread");
}

/// Ends this process as `signal` would have ended it (the status a shell sees), as
/// `refcount-lab python` does when its interpreter was killed.
pub fn die_of(signal: i32) -> ! {
    // SAFETY: restoring the default action and unblocking `signal` in this thread, then
    // sending it to this thread, which the default action ends.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + signal);
}

/// Waits for the exit if an interrupt is being handled: a child the interrupt killed
/// must not be reported, nor the command end, as if it had died on its own.
pub fn hold_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// Stops every descendant, removes the scratch folders, says so and exits.
fn stop(signal: i32) -> ! {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // Held to the exit: nothing starts after the sweep.
    let _held = spawn_lock();
    let copies = forward(signal);
    let stopped = stop_descendants(None, HashMap::new(), &[]).len() + copies;
    scratch::remove_all();
    let name = match SIGNALS.iter().find(|(number, _)| *number == signal) {
        Some((_, name)) => name.to_string(),
        None => format!("SIGRTMIN+{}", signal - libc::SIGRTMIN()),
    };
    let processes = match stopped {
        0 => String::from("nothing was left running"),
        1 => String::from("1 process it started was stopped"),
        n => format!("{n} processes it started were stopped"),
    };
    // stdout is not flushed: the main thread may hold its lock for good.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\nrefcount-lab: interrupted ({name}): {processes}, scratch folders removed"
    );
    std::process::exit(128 + signal);
}
