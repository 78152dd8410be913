//! The child-process runner: runs one Python script in a fresh child interpreter and
//! collects everything it left behind, whatever way it ended.
//!
//! The child is the chosen interpreter itself (`python -X faulthandler LAUNCHER SCRIPT`,
//! where `LAUNCHER`, in the module folder, imports `lab` and calls `lab._run_main` in
//! `native/lab.py`), with the module importable and the faults of this run handed over
//! privately, under the debug allocator and a fixed hash seed, in its own process group,
//! with stdin closed. Its stdout and stderr are captured up to a cap (the rest is counted,
//! not kept), and trace events arrive on a dedicated pipe (fd 3). A crash, a hang, a flood of output or a closed pipe ends the
//! child, never the parent. Classifying what happened is `outcome.rs`'s job.
//!
//! A run is the script's process and everything it starts: `processes.rs` holds them all
//! (subreaper, parent-death signal, interrupts). When the script ends normally the run
//! waits for what it started too, up to the timeout; then, and after any other ending,
//! every process left is killed by pid, wherever its process group or session went, and
//! the run says which.
//!
//! The trace counts only events from the script's own process (each event carries its
//! sender's pid, signed): a fork that inherited the pipe cannot finish, free or leak
//! anything for it. Everything kept is bounded: output, trace lines and their text, and the
//! native objects' `alloc`/`free` events past the cap, which cancel in pairs.

use crate::faults::Fault;
use crate::namespace::{self, Namespace};
use crate::native;
use crate::printable;
use crate::processes;
use crate::python::Python;
use crate::trace::{self, Checked, Event, Key, KEY_FD, KEY_FD_ENV, TRACE_FD, TRACE_FD_ENV};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of stdout and of stderr kept; the rest is counted.
const OUTPUT_CAP: usize = 256 * 1024;
/// Trace events kept; later ones are counted.
const EVENT_CAP: usize = 100_000;
/// Bytes of trace text kept (a `say` may be long); later lines are counted.
const TEXT_CAP: usize = 16 * 1024 * 1024;
/// Events the outcome is decided by, kept past the caps above; later ones are counted, and
/// the outcome says leaks could not be ruled out.
const DECISIVE_CAP: usize = 1_000_000;
/// Longest trace line read as an event; longer ones are kept as (cut) text.
const LINE_CAP: usize = 1024 * 1024;
/// Characters shown of a line that is not an event.
const SHOWN_CAP: usize = 60;

/// What to run.
pub struct Job<'a> {
    /// The interpreter to run.
    pub python: &'a Python,
    /// The script, as the child will be given it (relative to `dir`, or absolute).
    pub script: &'a Path,
    /// Arguments for the script (its `sys.argv[1:]`).
    pub args: &'a [&'a std::ffi::OsStr],
    /// The child's working directory.
    pub dir: &'a Path,
    pub faults: &'a [Fault],
    pub timeout: Duration,
    /// Run under `PYTHONMALLOC=debug` (freed memory is filled with 0xDD, so use-after-free
    /// crashes at once), as lessons do; benchmarks run with the ordinary allocator.
    pub debug_allocator: bool,
    /// When the script ends well, wait (until the timeout) for what it left running, as
    /// part of the run; otherwise stop it at once (a hunt's work is done when its script's
    /// is).
    pub wait_for_leftovers: bool,
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// The script was still running at the timeout.
    TimedOut,
    /// The script ended, but processes it started were still running at the timeout.
    LeftRunning,
    /// More than this many processes of the run were alive at once, and all were stopped.
    TooManyProcesses(usize),
}

/// Output captured from one stream.
#[derive(Debug, Default)]
pub struct Captured {
    pub text: String,
    /// Bytes beyond [`OUTPUT_CAP`] that were read and dropped.
    pub dropped: usize,
}

/// A line of the trace pipe: an event, or text that was not one.
#[derive(Debug, PartialEq)]
pub enum TraceLine {
    Event(Event),
    /// Signed by the native module but not an event (or cut at [`LINE_CAP`]).
    Unreadable(String),
    /// Not signed by the native module: written by the script (or anything else) itself.
    Forged(String),
}

/// Everything a run left behind.
#[derive(Debug)]
pub struct Run {
    pub ending: Ending,
    pub timeout: Duration,
    pub trace: Vec<TraceLine>,
    /// Trace lines beyond [`EVENT_CAP`] or [`TEXT_CAP`] that were read and dropped.
    pub dropped_trace_lines: usize,
    /// Events the outcome is decided by, dropped beyond [`DECISIVE_CAP`].
    pub dropped_decisive: usize,
    /// Signed events sent by other processes than the script's (its forks): not counted.
    pub other_process_events: usize,
    /// Events of the script's that never arrived or arrived twice, said in a sentence.
    pub sequence_fault: Option<String>,
    /// Faults whose faulty branch ran in a process the script forked (not traced).
    pub faults_in_forks: Vec<String>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Names of the processes the script left running, which the runner stopped.
    pub leftovers: Vec<String>,
    /// The faults switched on for the run.
    pub faults: Vec<Fault>,
}

impl Run {
    /// How often `fault`'s faulty branch ran: `Some(n)` as counted at the end, `None` if
    /// the run ended before it could count (a crash) but after the branch first ran, and
    /// `Some(0)` if it never ran.
    pub fn fault_ran(&self, fault: Fault) -> Option<u64> {
        let name = fault.name();
        let mut first_seen = false;
        for event in self.events() {
            match event {
                Event::FaultCounts { counts } => {
                    return Some(counts.get(name).copied().unwrap_or(0))
                }
                Event::FaultRan { fault } if fault == name => first_seen = true,
                _ => {}
            }
        }
        if first_seen {
            None
        } else {
            Some(0)
        }
    }

    /// The processes left running, by name: `sleep, python3 ×1500`, at most five names.
    pub fn leftovers_named(&self) -> String {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for name in &self.leftovers {
            match counts.iter_mut().find(|(seen, _)| seen == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
        }
        let mut named: Vec<String> = counts
            .iter()
            .take(5)
            .map(|(name, count)| match count {
                1 => (*name).to_owned(),
                n => format!("{name} ×{n}"),
            })
            .collect();
        if counts.len() > 5 {
            named.push(format!("{} other names", counts.len() - 5));
        }
        named.join(", ")
    }

    /// How the run ended, as the end of a sentence ("the benchmark …").
    pub fn ending_described(&self) -> String {
        let seconds = self.timeout.as_secs();
        match self.ending {
            Ending::Exited(code) => format!("exited with status {code}"),
            Ending::Signaled(signal) => format!("was killed by signal {signal}"),
            Ending::TimedOut => format!("was still running after {seconds} s, and was stopped"),
            Ending::LeftRunning => format!(
                "ended, but what it started was still running after {seconds} s, and was stopped"
            ),
            Ending::TooManyProcesses(count) => {
                format!("had more than {count} processes at once, and was stopped")
            }
        }
    }

    /// The trace's events, in order, without the lines that were not events.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.trace.iter().filter_map(|line| match line {
            TraceLine::Event(event) => Some(event),
            TraceLine::Unreadable(_) | TraceLine::Forged(_) => None,
        })
    }
}

/// Runs `job` to its end, whatever that end is.
pub fn run(job: &Job) -> Result<Run> {
    let (trace_reader, trace_writer) = std::io::pipe().context("cannot create the trace pipe")?;
    let writer_fd = trace_writer.as_raw_fd();
    // The run's key and faults go down a pipe of their own, which the module empties and
    // closes before the script starts: the script can read neither (not in its
    // environment, where a diagnose exercise's hidden fault would be one print away).
    let key = Key::random().context("cannot read /dev/urandom for the run's key")?;
    let faults: Vec<&str> = job.faults.iter().map(|fault| fault.name()).collect();
    let (key_reader, mut key_writer) = std::io::pipe().context("cannot create the key pipe")?;
    let handed = format!("{}\n{}", key.hex(), faults.join(","));
    std::io::Write::write_all(&mut key_writer, handed.as_bytes())
        .context("cannot write the run's key")?;
    drop(key_writer);
    let key_fd = key_reader.as_raw_fd();

    let mut command = job.python.command();
    command
        .args(["-X", "faulthandler"])
        .arg(job.python.module_dir().join(native::LAUNCHER))
        .arg(job.script)
        .args(job.args)
        .current_dir(job.dir)
        // The same dict and set orders in every run, so the same trace.
        .env("PYTHONHASHSEED", "0")
        .env(TRACE_FD_ENV, TRACE_FD.to_string())
        .env(KEY_FD_ENV, KEY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if job.debug_allocator {
        command.env("PYTHONMALLOC", "debug");
    }
    let process_limit = processes::process_limit();
    // SAFETY: only async-signal-safe calls (setrlimit, fcntl, dup2) run between fork and
    // exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: process_limit,
                rlim_max: process_limit,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Out of the way first (either may sit on 3 or 4), then into place; dup2's
            // copies survive exec.
            let trace = libc::fcntl(writer_fd, libc::F_DUPFD_CLOEXEC, 10);
            let key = libc::fcntl(key_fd, libc::F_DUPFD_CLOEXEC, 10);
            if trace == -1
                || key == -1
                || libc::dup2(trace, TRACE_FD) == -1
                || libc::dup2(key, KEY_FD) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (mut child, namespace) = namespace::spawn(&mut command).with_context(|| {
        format!(
            "cannot start a child interpreter for {}",
            job.script.display()
        )
    })?;
    // Our copy of the write end must close, or the trace pipe never reaches end-of-file.
    drop(trace_writer);
    drop(key_reader);
    drop(command);

    let pid = child.id() as i32;
    // Inside a namespace the script has pid 2 there (what its events carry), and the run
    // has processes of its own besides the script: init, and the keeper (`pid`).
    let (script, own) = match &namespace {
        Some(namespace) => {
            let mut own = vec![namespace.init];
            own.extend(processes::child_with_inner_pid(
                namespace.init,
                namespace::SCRIPT_PID,
            ));
            (namespace::SCRIPT_PID, own)
        }
        None => (pid, Vec::new()),
    };
    let streams = [
        OwnedFd::from(child.stdout.take().expect("stdout is piped")),
        OwnedFd::from(child.stderr.take().expect("stderr is piped")),
        OwnedFd::from(trace_reader),
    ];
    let mut stdout = processes::Capped::new(OUTPUT_CAP);
    let mut stderr = processes::Capped::new(OUTPUT_CAP);
    let mut trace = TraceReader::new(key, script as u32);
    let deadline = processes::clock() + job.timeout;
    let (ending, leftovers, status) = thread::scope(|scope| {
        let (wake_reader, wake_writer) =
            std::io::pipe().context("cannot create the collector's pipe")?;
        let sinks = (&mut stdout, &mut stderr, &mut trace);
        let collector = scope.spawn(move || {
            let (out, err, trace) = sinks;
            let mut sinks: [&mut dyn processes::Sink; 3] = [out, err, trace];
            processes::collect(streams, &mut sinks, wake_reader);
        });
        let mut reported = None;
        let ending = match wait_for_exit(pid, namespace, deadline) {
            Waited::TimedOut => Some(Ending::TimedOut),
            Waited::TooManyProcesses => Some(Ending::TooManyProcesses(processes::MAX_PROCESSES)),
            Waited::Exited { status } => {
                reported = Some(status);
                // A script that ended well may have left work running: it is part of the run.
                (status.success()
                    && job.wait_for_leftovers
                    && !processes::wait_for_descendants(pid, deadline))
                .then_some(Ending::LeftRunning)
            }
            // Init ended without a word: the namespace was killed, the script with it.
            Waited::Unreported => Some(Ending::Signaled(libc::SIGKILL)),
        };
        processes::interrupts::hold_if_interrupted();
        let leftovers = processes::stop_all(pid, &own);
        let status = child.wait().map(|keeper| reported.unwrap_or(keeper));
        // Every process of the run is dead: what they wrote is in the pipes.
        drop(wake_writer);
        collector.join().expect("the collector does not panic");
        anyhow::Ok((ending, leftovers, status))
    })?;
    let status = status.context("cannot collect the child's exit status")?;

    let ending = ending.unwrap_or_else(|| match status.signal() {
        Some(signal) => Ending::Signaled(signal),
        None => Ending::Exited(status.code().unwrap_or(-1)),
    });
    let trace = trace.finish();
    let mut stderr = Captured::from(stderr);
    // Tracebacks name the script and `lab.py` by absolute path: show them relative to the
    // run's folder and the module folder.
    for dir in [job.dir, job.python.module_dir()] {
        if let Ok(dir) = dir.canonicalize() {
            stderr.text = stderr.text.replace(&format!("{}/", dir.display()), "");
        }
    }
    Ok(Run {
        ending,
        timeout: job.timeout,
        trace: trace.lines,
        dropped_trace_lines: trace.dropped,
        dropped_decisive: trace.dropped_decisive,
        other_process_events: trace.other_processes,
        sequence_fault: trace.sequence_fault,
        faults_in_forks: trace.faults_in_forks,
        stdout: Captured::from(stdout),
        stderr,
        leftovers,
        faults: job.faults.to_vec(),
    })
}

/// How waiting for the script ended.
enum Waited {
    /// It ended, as `status` says.
    Exited {
        status: ExitStatus,
    },
    /// Init ended without reporting the script's end.
    Unreported,
    TimedOut,
    TooManyProcesses,
}

/// Waits until `deadline` for the script to end, counting the run's processes as it goes:
/// a fork bomb is stopped before it fills the machine. Outside a namespace the script is
/// `pid`, waited for without reaping (so its pid stays ours to signal); inside one, init
/// reports its end.
fn wait_for_exit(pid: i32, namespace: Option<Namespace>, deadline: Instant) -> Waited {
    let (ended_tx, ended_rx) = mpsc::channel();
    // Not joined: at the timeout it ends when the run is killed.
    thread::spawn(move || {
        let waited = match namespace {
            Some(mut namespace) => match namespace.wait_for_script() {
                Some(raw) => Waited::Exited {
                    status: ExitStatus::from_raw(raw),
                },
                None => Waited::Unreported,
            },
            None => {
                // SAFETY: `info` is a plain C struct that waitid fills in.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: waiting on our own child; WNOWAIT leaves it to `child.wait()`
                // to reap.
                unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                // SAFETY: waitid filled `info` for an exited child.
                let status = unsafe { info.si_status() };
                // In the encoding of a wait status: the code in the second byte, or the
                // signal in the first.
                let raw = if info.si_code == libc::CLD_EXITED {
                    status << 8
                } else {
                    status
                };
                Waited::Exited {
                    status: ExitStatus::from_raw(raw),
                }
            }
        };
        let _ = ended_tx.send(waited);
    });
    loop {
        let slice = deadline
            .saturating_duration_since(processes::clock())
            .min(processes::WATCH_INTERVAL);
        match ended_rx.recv_timeout(slice) {
            Ok(waited) => return waited,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Unreported,
            Err(mpsc::RecvTimeoutError::Timeout) if processes::clock() >= deadline => {
                return Waited::TimedOut
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if processes::too_many(pid) {
            return Waited::TooManyProcesses;
        }
    }
}

impl From<processes::Capped> for Captured {
    fn from(capped: processes::Capped) -> Captured {
        Captured {
            text: printable::lines(&String::from_utf8_lossy(&capped.kept)),
            dropped: capped.dropped,
        }
    }
}

/// The trace pipe's reader: splits lines, checks signatures, keeps what the caps allow.
struct TraceReader {
    key: Key,
    /// The script's process: only its events count.
    pid: u32,
    lines: Vec<TraceLine>,
    /// Bytes of text of the lines kept under the caps.
    text: usize,
    /// Decisive events kept past the caps, `alloc`s waiting in `tail` included.
    past_caps: usize,
    /// Past the caps: `alloc`/`free` events since the last other decisive event, in order.
    /// An `alloc` whose `free` arrives here cancels with it (`None`), so making and freeing
    /// tables costs nothing, while counts between decisive events stay as they were.
    tail: Vec<Option<TraceLine>>,
    /// Where each `alloc` in `tail` sits, by type and id.
    pending: HashMap<(String, u64), usize>,
    dropped: usize,
    dropped_decisive: usize,
    other_processes: usize,
    /// Faults whose faulty branch ran in a fork of the script.
    faults_in_forks: std::collections::BTreeSet<String>,
    sequence: Sequence,
    current: Vec<u8>,
    overlong: bool,
    /// Events cut at [`LINE_CAP`].
    overlong_lines: usize,
}

/// The numbers of the script's events seen so far: each must come once, none may be
/// missing. A process the script forked can hold the pipe's other end and relay the
/// module's signed lines; dropping one (a table's `alloc`) would hide a leak.
#[derive(Default)]
struct Sequence {
    /// The lowest number not seen yet (numbers start at 1).
    next: u64,
    /// Numbers seen above `next`: threads may write their events out of order.
    ahead: std::collections::BTreeSet<u64>,
    /// Numbers seen twice.
    repeated: usize,
    /// Too far out of order to keep track of: not a run of the module's own.
    lost_track: bool,
}

impl Sequence {
    /// The most numbers kept waiting for a lower one.
    const AHEAD_CAP: usize = 100_000;

    fn saw(&mut self, seq: u64) {
        self.next = self.next.max(1);
        if self.lost_track {
            return;
        }
        if seq < self.next || self.ahead.contains(&seq) {
            self.repeated += 1;
        } else if seq == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
        } else if self.ahead.len() < Self::AHEAD_CAP {
            self.ahead.insert(seq);
        } else {
            self.ahead.clear();
            self.lost_track = true;
        }
    }

    /// How many numbers below the highest seen never came.
    fn missing(&self) -> u64 {
        match self.ahead.last() {
            Some(&highest) => highest + 1 - self.next - self.ahead.len() as u64,
            None => 0,
        }
    }

    /// What is wrong with the numbers seen, if anything.
    fn fault(&self) -> Option<String> {
        if self.lost_track {
            return Some("the script's trace events came too far out of order".into());
        }
        match (self.missing(), self.repeated) {
            (0, 0) => None,
            (missing, 0) => Some(format!(
                "{missing} of the script's trace events never arrived (held back by a process \
                 that holds the trace pipe?)"
            )),
            (_, repeated) => Some(format!(
                "{repeated} of the script's trace events arrived twice (replayed by a process \
                 that holds the trace pipe?)"
            )),
        }
    }
}

/// What a [`TraceReader`] kept.
struct Trace {
    lines: Vec<TraceLine>,
    dropped: usize,
    dropped_decisive: usize,
    other_processes: usize,
    /// What is wrong with the numbering of the script's events, if anything.
    sequence_fault: Option<String>,
    faults_in_forks: Vec<String>,
}

impl TraceReader {
    fn new(key: Key, pid: u32) -> TraceReader {
        TraceReader {
            key,
            pid,
            lines: Vec::new(),
            text: 0,
            past_caps: 0,
            tail: Vec::new(),
            pending: HashMap::new(),
            dropped: 0,
            dropped_decisive: 0,
            other_processes: 0,
            faults_in_forks: Default::default(),
            sequence: Sequence::default(),
            current: Vec::new(),
            overlong: false,
            overlong_lines: 0,
        }
    }

    fn line(&mut self, bytes: &[u8], overlong: bool) {
        if bytes.is_empty() {
            return; // the separator the module writes before each event
        }
        // A line of the module's own, cut at the cap, has lost its signature with its end.
        let cut_event = overlong && bytes.starts_with(br#"{"seq":"#);
        self.overlong_lines += usize::from(cut_event);
        let text = String::from_utf8_lossy(bytes);
        let shown = || match text.char_indices().nth(SHOWN_CAP) {
            Some((cut, _)) => format!("{}…", printable::one_line(&text[..cut])),
            None => printable::one_line(&text),
        };
        let checked = trace::check(&text, self.key);
        if let Checked::Event { seq, pid, .. } = checked {
            if pid == self.pid {
                self.sequence.saw(seq);
            }
        }
        let line = match checked {
            Checked::Event { pid, event, .. } if pid != self.pid => {
                self.other_processes += 1;
                if let Event::FaultRan { fault } = event {
                    self.faults_in_forks.insert(fault);
                }
                return;
            }
            Checked::Event { event, .. } if !overlong => TraceLine::Event(event),
            _ if cut_event => TraceLine::Unreadable(shown()),
            Checked::Event { .. } | Checked::Unreadable => TraceLine::Unreadable(shown()),
            Checked::Forged => TraceLine::Forged(shown()),
        };
        if self.lines.len() < EVENT_CAP && self.text + bytes.len() <= TEXT_CAP {
            self.text += bytes.len();
            self.lines.push(line);
            return;
        }
        let decisive = matches!(
            line,
            TraceLine::Event(
                Event::Done
                    | Event::Final { .. }
                    | Event::Repetition(_)
                    | Event::Findings(_)
                    | Event::HuntDone
                    | Event::Alloc { .. }
                    | Event::Free { .. }
            )
        );
        if !decisive {
            self.dropped += 1;
            return;
        }
        if let TraceLine::Event(Event::Free { type_name, id }) = &line {
            if let Some(at) = self.pending.remove(&(type_name.clone(), *id)) {
                self.tail[at] = None;
                self.past_caps -= 1;
                self.compact_tail();
                return;
            }
        }
        if self.past_caps >= DECISIVE_CAP {
            self.dropped_decisive += 1;
            return;
        }
        self.past_caps += 1;
        match line {
            TraceLine::Event(Event::Alloc { ref type_name, id }) => {
                self.pending
                    .insert((type_name.clone(), id), self.tail.len());
                self.tail.push(Some(line));
            }
            TraceLine::Event(Event::Free { .. }) => self.tail.push(Some(line)),
            _ => {
                self.flush_tail();
                self.lines.push(line);
            }
        }
    }

    /// Drops the cancelled pairs from `tail` once they are most of it.
    fn compact_tail(&mut self) {
        if self.tail.len() < 1024 || self.pending.len() * 2 > self.tail.len() {
            return;
        }
        self.tail.retain(Option::is_some);
        self.pending.clear();
        for (at, line) in self.tail.iter().enumerate() {
            if let Some(TraceLine::Event(Event::Alloc { type_name, id })) = line {
                self.pending.insert((type_name.clone(), *id), at);
            }
        }
    }

    fn flush_tail(&mut self) {
        self.lines.extend(self.tail.drain(..).flatten());
        self.pending.clear();
    }

    fn finish(mut self) -> Trace {
        if !self.current.is_empty() {
            let current = std::mem::take(&mut self.current);
            self.line(&current, self.overlong);
        }
        self.flush_tail();
        Trace {
            lines: self.lines,
            dropped: self.dropped,
            dropped_decisive: self.dropped_decisive,
            other_processes: self.other_processes,
            // A line cut at the cap loses its signature: not a process holding it back.
            sequence_fault: self
                .sequence
                .fault()
                .map(|fault| match self.overlong_lines {
                    0 => fault,
                    cut => format!(
                        "{cut} of the script's trace events were longer than {} MiB, more than \
                     refcount-lab reads as one event, and were cut",
                        LINE_CAP >> 20
                    ),
                }),
            faults_in_forks: self.faults_in_forks.into_iter().collect(),
        }
    }
}

impl processes::Sink for TraceReader {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                let current = std::mem::take(&mut self.current);
                self.line(&current, self.overlong);
                self.current = current;
                self.current.clear();
                self.overlong = false;
            } else if self.current.len() < LINE_CAP {
                self.current.push(byte);
            } else {
                self.overlong = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processes::Sink;

    const PID: u32 = 42;

    fn read(input: &[u8], key: Key) -> Trace {
        let mut reader = TraceReader::new(key, PID);
        // In two pieces, as a pipe may deliver them.
        let (first, second) = input.split_at(input.len() / 2);
        reader.feed(first);
        reader.feed(second);
        reader.finish()
    }

    #[test]
    fn trace_reader_keeps_signed_events_and_marks_the_rest() {
        let key = Key(3, 4);
        let done = trace::signed(key, 1, PID, r#"{"ev":"done"}"#);
        let say = trace::signed(key, 2, PID, r#"{"ev":"say","text":"cut"#);
        let input = format!("\n{done}\nnot json\n{{\"ev\":\"done\"}}\n\n{say}");
        let trace = read(input.as_bytes(), key);
        assert_eq!(trace.dropped, 0);
        let lines = trace.lines;
        assert_eq!(lines[0], TraceLine::Event(Event::Done));
        assert_eq!(lines[1], TraceLine::Forged("not json".into()));
        assert_eq!(lines[2], TraceLine::Forged(r#"{"ev":"done"}"#.into()));
        assert!(
            matches!(&lines[3], TraceLine::Unreadable(text) if text.starts_with(r#"{"seq":2,"#))
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn event_numbers_may_come_out_of_order_but_none_missing_or_twice() {
        let seen = |numbers: &[u64]| {
            let mut sequence = Sequence::default();
            for &seq in numbers {
                sequence.saw(seq);
            }
            sequence.fault()
        };
        assert_eq!(seen(&[1, 2, 4, 3, 5]), None);
        assert_eq!(seen(&[]), None);
        let missing = seen(&[2, 3, 5]).unwrap();
        assert!(missing.starts_with("2 of the script's trace events never arrived"));
        let twice = seen(&[1, 2, 2, 3]).unwrap();
        assert!(twice.starts_with("1 of the script's trace events arrived twice"));
    }

    #[test]
    fn events_of_other_processes_do_not_count() {
        let key = Key(3, 4);
        let fork_done = trace::signed(key, 1, PID + 1, r#"{"ev":"done"}"#);
        let trace = read(format!("{fork_done}\n").as_bytes(), key);
        assert!(trace.lines.is_empty());
        assert_eq!(trace.other_processes, 1);
    }

    #[test]
    fn a_line_left_open_cannot_swallow_the_next_event() {
        let key = Key(5, 6);
        let mut input = vec![b'x'; LINE_CAP * 3];
        input.extend_from_slice(
            format!("\n{}\n", trace::signed(key, 1, PID, r#"{"ev":"done"}"#)).as_bytes(),
        );
        let lines = read(&input[..], key).lines;
        // Not the module's: forged, and shown shortened.
        assert!(
            matches!(&lines[0], TraceLine::Forged(text) if text.chars().count() == SHOWN_CAP + 1)
        );
        assert_eq!(lines[1], TraceLine::Event(Event::Done));
    }

    #[test]
    fn past_the_caps_tables_made_and_freed_cancel_and_what_is_left_keeps_its_place() {
        let key = Key(7, 8);
        let mut input = String::new();
        let mut seq = 0;
        let mut event = |body: String| {
            seq += 1;
            input.push_str(&trace::signed(key, seq, PID, &body));
            input.push('\n');
        };
        let table = |ev: &str, id: u64| format!(r#"{{"ev":"{ev}","type":"HashTable","id":{id}}}"#);
        for _ in 0..EVENT_CAP + 5 {
            event(r#"{"ev":"say","text":"filler"}"#.into());
        }
        event(table("alloc", 1));
        for id in 2..50_000 {
            event(table("alloc", id));
            event(table("free", id));
        }
        event(r#"{"ev":"done"}"#.into());
        event(table("free", 1));
        let trace = read(input.as_bytes(), key);
        assert_eq!(trace.dropped, 5);
        assert_eq!(trace.dropped_decisive, 0);
        let tail: Vec<&TraceLine> = trace.lines[EVENT_CAP..].iter().collect();
        let alloc = TraceLine::Event(Event::Alloc {
            type_name: "HashTable".into(),
            id: 1,
        });
        let free = TraceLine::Event(Event::Free {
            type_name: "HashTable".into(),
            id: 1,
        });
        assert_eq!(tail, [&alloc, &TraceLine::Event(Event::Done), &free]);
    }

    #[test]
    fn say_text_is_capped_in_bytes() {
        let key = Key(9, 9);
        let long = "x".repeat(LINE_CAP - 100);
        let mut input = String::new();
        for seq in 1..=40 {
            let body = format!(r#"{{"ev":"say","text":"{long}"}}"#);
            input.push_str(&trace::signed(key, seq, PID, &body));
            input.push('\n');
        }
        let trace = read(input.as_bytes(), key);
        assert_eq!(trace.lines.len(), TEXT_CAP / LINE_CAP);
        assert_eq!(trace.dropped, 40 - TEXT_CAP / LINE_CAP);
    }
}
