//! The child-process runner: runs one Python script in a fresh child interpreter and
//! collects everything it left behind, whatever way it ended.
//!
//! The child is the chosen interpreter itself (`python -X faulthandler -c LAUNCHER SCRIPT`,
//! where `LAUNCHER` imports `lab` and calls `lab._run_main` in `native/lab.py`), with the
//! module importable and the faults of this run switched on (`python.rs`), under the debug
//! allocator and a fixed hash seed, in its own process group, with stdin closed. Its stdout
//! and stderr are captured up to a cap (the rest is counted, not kept), and trace events arrive on a
//! dedicated pipe (fd 3). A crash, a hang, a flood of output or a closed pipe ends the
//! child, never the parent. Classifying what happened is `outcome.rs`'s job.
//!
//! A run is the script's process and everything it starts. This process is made the
//! "child subreaper" of its descendants (`PR_SET_CHILD_SUBREAPER`), so a process the script
//! leaves behind, even one that left the process group and session (`setsid`, a double
//! fork), is re-parented here instead of to init, and is found in `/proc`. When the script
//! ends normally the run waits for those processes too, up to the timeout; then, and after
//! any other ending, every process left is killed and reaped, and the run says which.

use crate::faults::Fault;
use crate::python::Python;
use crate::trace::{self, Checked, Event, Key, KEY_FD, KEY_FD_ENV, TRACE_FD, TRACE_FD_ENV};
use anyhow::{Context, Result};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What the child runs before the script. The collector stays off until the script starts
/// (`lab._run_main` turns it on), so the first collection happens in the script, at a
/// point that does not move when lab's own code changes: a dangling pointer that a
/// collection would trip over (lesson 17) trips where the learner can see it.
const LAUNCHER: &str = "import gc; gc.disable(); import lab; lab._run_main()";

/// Bytes of stdout and of stderr kept; the rest is counted.
const OUTPUT_CAP: usize = 256 * 1024;
/// Trace events kept; later ones are counted.
const EVENT_CAP: usize = 100_000;
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
    /// The script was still running at the timeout.
    TimedOut,
    /// The script ended, but processes it started were still running at the timeout.
    LeftRunning,
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
    /// Trace lines beyond [`EVENT_CAP`] that were read and dropped.
    pub dropped_trace_lines: usize,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Names of the processes the script left running, which the runner stopped.
    pub leftovers: Vec<String>,
}

impl Run {
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
    processes::become_subreaper();
    let (trace_reader, trace_writer) = std::io::pipe().context("cannot create the trace pipe")?;
    let writer_fd = trace_writer.as_raw_fd();
    // The run's key goes down a pipe of its own, which the module empties and closes
    // before the script starts.
    let key = Key::random().context("cannot read /dev/urandom for the run's key")?;
    let (key_reader, mut key_writer) = std::io::pipe().context("cannot create the key pipe")?;
    std::io::Write::write_all(&mut key_writer, key.hex().as_bytes())
        .context("cannot write the run's key")?;
    drop(key_writer);
    let key_fd = key_reader.as_raw_fd();

    let faults: Vec<&str> = job.faults.iter().map(|fault| fault.name()).collect();
    let mut command = job.python.command(&faults);
    command
        .args(["-X", "faulthandler", "-c", LAUNCHER])
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
    // SAFETY: only async-signal-safe calls (fcntl, dup2) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
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
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot start a child interpreter for {}",
            job.script.display()
        )
    })?;
    // Our copy of the write end must close, or the trace pipe never reaches end-of-file.
    drop(trace_writer);
    drop(key_reader);
    drop(command);

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout = thread::spawn(move || capture(stdout));
    let stderr = thread::spawn(move || capture(stderr));
    let trace = thread::spawn(move || read_trace(trace_reader, key));

    let pid = child.id() as i32;
    let deadline = Instant::now() + job.timeout;
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
        // SAFETY: waitid filled `info` for an exited child.
        let ended_well = info.si_code == libc::CLD_EXITED && unsafe { info.si_status() } == 0;
        let _ = exited_tx.send(ended_well);
    });
    let mut ending = match exited_rx.recv_timeout(job.timeout) {
        Err(_) => Some(Ending::TimedOut),
        // A script that ended well may have left work running: it is part of the run.
        Ok(true) if !processes::wait_for_descendants(pid, deadline) => Some(Ending::LeftRunning),
        Ok(_) => None,
    };
    let leftovers = processes::stop_all(pid);
    let status = child
        .wait()
        .context("cannot collect the child's exit status")?;
    let _ = waiter.join();

    let ending = ending.take().unwrap_or_else(|| match status.signal() {
        Some(signal) => Ending::Signaled(signal),
        None => Ending::Exited(status.code().unwrap_or(-1)),
    });
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
        leftovers,
    })
}

/// The runner's own descendants, from `/proc`; this process is their subreaper.
mod processes {
    use std::collections::HashMap;
    use std::sync::Once;
    use std::time::{Duration, Instant};

    /// Makes orphans of this process's descendants its own children (once per process).
    pub fn become_subreaper() {
        static ONCE: Once = Once::new();
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
        ONCE.call_once(|| unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        });
    }

    /// A process: its parent, its state letter (`Z` for a zombie) and its name.
    struct Process {
        ppid: i32,
        state: char,
        name: String,
    }

    fn table() -> HashMap<i32, Process> {
        let mut table = HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return table;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // `pid (name) state ppid …`; the name may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next().and_then(|f| f.chars().next()).unwrap_or('?');
            let ppid = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
            let name = stat[open + 1..close].to_owned();
            table.insert(pid, Process { ppid, state, name });
        }
        table
    }

    /// This process's descendants but `script` (the run's own child, not yet reaped).
    fn descendants(script: i32) -> Vec<(i32, Process)> {
        let mut table = table();
        table.remove(&script);
        let mut found = Vec::new();
        // Below this process, and below the script: its children are re-parented here only
        // once it has been reaped.
        let mut parents = vec![std::process::id() as i32, script];
        while let Some(parent) = parents.pop() {
            let children: Vec<i32> = table
                .iter()
                .filter(|(_, process)| process.ppid == parent)
                .map(|(pid, _)| *pid)
                .collect();
            for pid in children {
                parents.push(pid);
                found.push((pid, table.remove(&pid).expect("listed above")));
            }
        }
        found
    }

    /// Waits until no descendant but zombies is left; false if `deadline` came first.
    pub fn wait_for_descendants(script: i32, deadline: Instant) -> bool {
        loop {
            if descendants(script).iter().all(|(_, p)| p.state == 'Z') {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the script's process group (the script itself too, if it still runs), then
    /// every other descendant, and reaps the ones re-parented here. Returns the names of the
    /// processes besides the script that were still running.
    pub fn stop_all(script: i32) -> Vec<String> {
        let me = std::process::id() as i32;
        let mut stopped: Vec<(i32, String)> = descendants(script)
            .into_iter()
            .filter(|(_, process)| process.state != 'Z')
            .map(|(pid, process)| (pid, process.name))
            .collect();
        // SAFETY: the group leader is our unreaped child, so the group id is still ours.
        unsafe { libc::kill(-script, libc::SIGKILL) };
        // A few rounds: a dying process's children are re-parented here, then killed too.
        for _ in 0..100 {
            let left = descendants(script);
            if left.is_empty() {
                break;
            }
            for (pid, process) in left {
                if process.state == 'Z' {
                    if process.ppid == me {
                        // SAFETY: reaping a zombie child of ours; WNOHANG never blocks.
                        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                    }
                    continue;
                }
                if !stopped.iter().any(|(seen, _)| *seen == pid) {
                    stopped.push((pid, process.name));
                }
                // SAFETY: killing a descendant of this process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stopped.into_iter().map(|(_, name)| name).collect()
    }
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
fn read_trace(mut pipe: impl Read, key: Key) -> (Vec<TraceLine>, usize) {
    let mut lines = Vec::new();
    let mut dropped = 0;
    let mut current = Vec::new();
    let mut overlong = false;
    let mut buffer = [0u8; 64 * 1024];
    let mut finish = |line: &[u8], overlong: bool, lines: &mut Vec<TraceLine>| {
        if line.is_empty() {
            return; // the separator the module writes before each event
        }
        let text = String::from_utf8_lossy(line);
        let shown = || match text.char_indices().nth(SHOWN_CAP) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        };
        let line = match trace::check(&text, key) {
            Checked::Event(_, event) if !overlong => TraceLine::Event(event),
            Checked::Event(..) | Checked::Unreadable => TraceLine::Unreadable(shown()),
            Checked::Forged => TraceLine::Forged(shown()),
        };
        // Past the cap, only the events the outcome is decided by are kept.
        let decisive = matches!(
            line,
            TraceLine::Event(
                Event::Done
                    | Event::Final { .. }
                    | Event::Repetition(_)
                    | Event::Findings(_)
                    | Event::Alloc { .. }
                    | Event::Free { .. }
            )
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
    fn trace_reader_keeps_signed_events_and_marks_the_rest() {
        let key = Key(3, 4);
        let done = trace::signed(key, 1, r#"{"ev":"done"}"#);
        let say = trace::signed(key, 2, r#"{"ev":"say","text":"cut"#);
        let input = format!("\n{done}\nnot json\n{{\"ev\":\"done\"}}\n\n{say}");
        let (lines, dropped) = read_trace(input.as_bytes(), key);
        assert_eq!(dropped, 0);
        assert_eq!(lines[0], TraceLine::Event(Event::Done));
        assert_eq!(lines[1], TraceLine::Forged("not json".into()));
        assert_eq!(lines[2], TraceLine::Forged(r#"{"ev":"done"}"#.into()));
        assert!(matches!(&lines[3], TraceLine::Unreadable(text) if text.ends_with("cut")));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn a_line_left_open_cannot_swallow_the_next_event() {
        let key = Key(5, 6);
        let mut input = vec![b'x'; LINE_CAP * 3];
        input.extend_from_slice(
            format!("\n{}\n", trace::signed(key, 1, r#"{"ev":"done"}"#)).as_bytes(),
        );
        let (lines, _) = read_trace(&input[..], key);
        assert!(
            matches!(&lines[0], TraceLine::Forged(text) if text.chars().count() == SHOWN_CAP + 1)
        );
        assert_eq!(lines[1], TraceLine::Event(Event::Done));
    }

    #[test]
    fn capture_keeps_the_head_and_counts_the_rest() {
        let input = vec![b'a'; OUTPUT_CAP + 10];
        let captured = capture(&input[..]);
        assert_eq!((captured.text.len(), captured.dropped), (OUTPUT_CAP, 10));
    }
}
