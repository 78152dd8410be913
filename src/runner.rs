//! The child-process runner: runs one Python script in a fresh child interpreter and
//! collects everything it left behind, whatever way it ended.
//!
//! The child is the chosen interpreter itself (`python -X faulthandler -c "import lab;
//! lab._run_main()" SCRIPT`: see `lab._run_main` in `native/lab.py`), with the module
//! importable and the faults of this run switched on (`python.rs`), under the debug
//! allocator and a fixed hash seed, in its own process group, with stdin closed. Its stdout and stderr
//! are captured up to a cap (the rest is counted, not kept), and trace events arrive on a
//! dedicated pipe (fd 3). A crash, a hang, a flood of output or a closed pipe ends the
//! child, never the parent. Classifying what happened is `outcome.rs`'s job.

use crate::faults::Fault;
use crate::python::Python;
use crate::trace::{Event, TRACE_FD, TRACE_FD_ENV};
use anyhow::{Context, Result};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Bytes of stdout and of stderr kept; the rest is counted.
const OUTPUT_CAP: usize = 256 * 1024;
/// Trace events kept; later ones are counted.
const EVENT_CAP: usize = 100_000;
/// Longest trace line read as an event; longer ones are kept as (cut) text.
const LINE_CAP: usize = 64 * 1024;

/// What to run.
pub struct Job<'a> {
    /// The interpreter to run.
    pub python: &'a Python,
    /// The script, as the child will be given it (relative to `dir`, or absolute).
    pub script: &'a Path,
    /// Arguments for the script (its `sys.argv[1:]`).
    pub args: &'a [&'a str],
    /// The child's working directory.
    pub dir: &'a Path,
    pub faults: &'a [Fault],
    pub timeout: Duration,
    /// Run under `PYTHONMALLOC=debug` (freed memory is filled with 0xDD, so use-after-free
    /// crashes at once), as lessons do; benchmarks run with the ordinary allocator.
    pub debug_allocator: bool,
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    TimedOut,
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
    Unreadable(String),
}

/// Everything a run left behind.
#[derive(Debug)]
pub struct Run {
    pub ending: Ending,
    pub timeout: Duration,
    pub trace: Vec<TraceLine>,
    /// Trace lines beyond [`EVENT_CAP`] that were read and dropped.
    pub dropped_trace_lines: usize,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Run {
    /// The trace's events, in order, without the lines that were not events.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.trace.iter().filter_map(|line| match line {
            TraceLine::Event(event) => Some(event),
            TraceLine::Unreadable(_) => None,
        })
    }
}

/// Runs `job` to its end, whatever that end is.
pub fn run(job: &Job) -> Result<Run> {
    let (trace_reader, trace_writer) = std::io::pipe().context("cannot create the trace pipe")?;
    let writer_fd = trace_writer.as_raw_fd();

    let faults: Vec<&str> = job.faults.iter().map(|fault| fault.name()).collect();
    let mut command = job.python.command(&faults);
    command
        .args(["-X", "faulthandler", "-c", "import lab; lab._run_main()"])
        .arg(job.script)
        .args(job.args)
        .current_dir(job.dir)
        // The same dict and set orders in every run, so the same trace.
        .env("PYTHONHASHSEED", "0")
        .env(TRACE_FD_ENV, TRACE_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if job.debug_allocator {
        command.env("PYTHONMALLOC", "debug");
    }
    // SAFETY: only async-signal-safe calls (dup2, fcntl) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let status = if writer_fd == TRACE_FD {
                // Already in place: just let it survive exec.
                libc::fcntl(TRACE_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(writer_fd, TRACE_FD)
            };
            if status == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot start a child interpreter for {}",
            job.script.display()
        )
    })?;
    // Our copy of the write end must close, or the trace pipe never reaches end-of-file.
    drop(trace_writer);
    drop(command);

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout = thread::spawn(move || capture(stdout));
    let stderr = thread::spawn(move || capture(stderr));
    let trace = thread::spawn(move || read_trace(trace_reader));

    let pid = child.id() as i32;
    let (exited_tx, exited_rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        // Wait for the exit without reaping, so the process group stays ours to signal.
        // SAFETY: `info` is a plain C struct that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waiting on our own child; WNOWAIT leaves it to `child.wait()` to reap.
        unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        let _ = exited_tx.send(());
    });
    let timed_out = exited_rx.recv_timeout(job.timeout).is_err();
    // The script may have started processes of its own that hold our pipes open: end the
    // whole group (the child itself too, when it timed out).
    // SAFETY: the group leader is our unreaped child, so the group id is still ours.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child
        .wait()
        .context("cannot collect the child's exit status")?;
    let _ = waiter.join();

    let ending = if timed_out {
        Ending::TimedOut
    } else if let Some(signal) = status.signal() {
        Ending::Signaled(signal)
    } else {
        Ending::Exited(status.code().unwrap_or(-1))
    };
    let (trace, dropped_trace_lines) = trace.join().expect("trace reader does not panic");
    let mut stderr = stderr.join().expect("stderr reader does not panic");
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
        trace,
        dropped_trace_lines,
        stdout: stdout.join().expect("stdout reader does not panic"),
        stderr,
    })
}

/// Reads a stream to its end, keeping the first [`OUTPUT_CAP`] bytes.
fn capture(mut stream: impl Read) -> Captured {
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buffer[..room]);
                dropped += n - room;
            }
        }
    }
    Captured {
        text: String::from_utf8_lossy(&kept).into_owned(),
        dropped,
    }
}

/// Reads trace lines to the end of the pipe; returns them and how many were dropped.
fn read_trace(mut pipe: impl Read) -> (Vec<TraceLine>, usize) {
    let mut lines = Vec::new();
    let mut dropped = 0;
    let mut current = Vec::new();
    let mut overlong = false;
    let mut buffer = [0u8; 64 * 1024];
    let mut finish = |line: &[u8], overlong: bool, lines: &mut Vec<TraceLine>| {
        let text = String::from_utf8_lossy(line);
        let line = match Event::parse(&text) {
            Ok(event) if !overlong => TraceLine::Event(event),
            _ => TraceLine::Unreadable(text.into_owned()),
        };
        // Past the cap, only the events the outcome is decided by are kept.
        let decisive = matches!(
            line,
            TraceLine::Event(Event::Done | Event::Final { .. } | Event::Repetition(_))
        );
        if lines.len() < EVENT_CAP || decisive {
            lines.push(line);
        } else {
            dropped += 1;
        }
    };
    loop {
        let n = match pipe.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buffer[..n] {
            if byte == b'\n' {
                finish(&current, overlong, &mut lines);
                current.clear();
                overlong = false;
            } else if current.len() < LINE_CAP {
                current.push(byte);
            } else {
                overlong = true;
            }
        }
    }
    if !current.is_empty() {
        finish(&current, overlong, &mut lines);
    }
    (lines, dropped)
}

/// A private scratch folder, removed when dropped (for lessons embedded in the binary).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> Result<ScratchDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "refcount-lab-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create a scratch folder at {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    /// A new scratch folder holding one file, `name`, with `contents` (an embedded script).
    pub fn with_file(name: &str, contents: &str) -> Result<ScratchDir> {
        let scratch = ScratchDir::new()?;
        let path = scratch.path().join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(scratch)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_reader_keeps_events_and_marks_junk() {
        let input = b"{\"ev\":\"done\"}\nnot json\n\xff\xfe\n{\"ev\":\"say\",\"text\":\"cut";
        let (lines, dropped) = read_trace(&input[..]);
        assert_eq!(dropped, 0);
        assert_eq!(lines[0], TraceLine::Event(Event::Done));
        assert_eq!(lines[1], TraceLine::Unreadable("not json".into()));
        assert!(matches!(&lines[2], TraceLine::Unreadable(_)));
        assert!(matches!(&lines[3], TraceLine::Unreadable(text) if text.ends_with("cut")));
    }

    #[test]
    fn trace_reader_bounds_line_length() {
        let mut input = vec![b'x'; LINE_CAP * 3];
        input.extend_from_slice(b"\n{\"ev\":\"done\"}\n");
        let (lines, _) = read_trace(&input[..]);
        assert!(matches!(&lines[0], TraceLine::Unreadable(text) if text.len() == LINE_CAP));
        assert_eq!(lines[1], TraceLine::Event(Event::Done));
    }

    #[test]
    fn capture_keeps_the_head_and_counts_the_rest() {
        let input = vec![b'a'; OUTPUT_CAP + 10];
        let captured = capture(&input[..]);
        assert_eq!((captured.text.len(), captured.dropped), (OUTPUT_CAP, 10));
    }
}
