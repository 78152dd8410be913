//! Copies of refcount-lab run side by side (`hunt --jobs`), each on a part of the work,
//! each sending its report back on its stdout.
//!
//! A copy holds its own children as this process holds its own (subreaper, namespaces,
//! parent death) and cleans up after itself when it is told to stop. So it is started as
//! any child is ([`prepare`]), but told before it is killed: at an interrupt the signal
//! is forwarded to it first (`interrupts`), and a copy past its time limit or its output
//! cap gets SIGTERM (and SIGCONT, should its target have stopped it), then SIGKILL after
//! [`GRACE`]. Whatever the copies left behind is stopped once they have all ended.

use super::interrupts::{self, GRACE};
use super::{collect_until_full, ended, prepare, spawn_lock, stop_descendants, Capped, Stopped};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How one copy ended, and what it printed.
pub struct Output {
    pub status: ExitStatus,
    /// Why it was stopped before it ended on its own, if it was.
    pub stopped: Option<Stopped>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What the copies did, each in the order of `commands`, and the names of the processes
/// they left running (stopped now).
pub struct Outputs {
    pub each: Vec<Output>,
    pub left_running: Vec<String>,
}

/// The most a copy may write on stderr (its error, if it fails); more stops it.
const STDERR_CAP: usize = 1 << 20;

/// Runs every command of `commands` (copies of refcount-lab) at once, each for at most
/// `limit`, keeping at most `stdout_cap` bytes of its stdout and [`STDERR_CAP`] of its
/// stderr (a copy that writes more is stopped).
pub fn run(
    commands: &mut [Command],
    limit: Duration,
    stdout_cap: usize,
) -> std::io::Result<Outputs> {
    let mut children: Vec<Child> = Vec::new();
    for command in commands.iter_mut() {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(command, || Ok(()));
        let started = {
            let _held = spawn_lock();
            command
                .spawn()
                .inspect(|child| interrupts::forward_to(child.id() as i32))
        };
        match started {
            Ok(child) => children.push(child),
            Err(error) => {
                for child in &mut children {
                    kill(child.id() as i32);
                    interrupts::forget(child.id() as i32);
                    let _ = child.wait();
                }
                return Err(error);
            }
        }
    }
    let mut kept: Vec<[Capped; 2]> = children
        .iter()
        .map(|_| [Capped::new(stdout_cap), Capped::new(STDERR_CAP)])
        .collect();
    let full: Vec<AtomicBool> = children.iter().map(|_| AtomicBool::new(false)).collect();
    let deadline = super::clock() + limit;
    let ends = std::thread::scope(|scope| {
        let mut wakes = Vec::new();
        for ((child, [out, err]), full) in children.iter_mut().zip(&mut kept).zip(&full) {
            let streams = [
                OwnedFd::from(child.stdout.take().expect("piped")),
                OwnedFd::from(child.stderr.take().expect("piped")),
            ];
            let (wake_reader, wake_writer) = std::io::pipe()?;
            wakes.push(wake_writer);
            scope.spawn(move || collect_until_full(streams, &mut [out, err], wake_reader, full));
        }
        let stopped = wait_for_all(&children, &full, deadline);
        interrupts::hold_if_interrupted();
        let mut ends = Vec::new();
        for (child, stopped) in children.iter_mut().zip(stopped) {
            interrupts::forget(child.id() as i32);
            ends.push((child.wait()?, stopped));
        }
        // Every copy is dead: what they wrote is in the pipes, and no more is waited for.
        drop(wakes);
        Ok::<_, std::io::Error>(ends)
    })?;
    let each = ends
        .into_iter()
        .zip(kept)
        .map(|((status, stopped), [stdout, stderr])| Output {
            status,
            stopped,
            stdout: stdout.kept,
            stderr: stderr.kept,
        })
        .collect();
    Ok(Outputs {
        each,
        left_running: stop_descendants(None, HashMap::new(), &[]),
    })
}

/// Waits until every child has ended (unreaped); one past `deadline` or its output cap
/// is told to stop (SIGTERM), and killed [`GRACE`] later. Why each was stopped, if it was.
fn wait_for_all(
    children: &[Child],
    full: &[AtomicBool],
    deadline: Instant,
) -> Vec<Option<Stopped>> {
    let mut stopped: Vec<Option<Stopped>> = vec![None; children.len()];
    let mut told: Vec<Option<Instant>> = vec![None; children.len()];
    loop {
        let mut all_ended = true;
        for (i, child) in children.iter().enumerate() {
            let pid = child.id() as i32;
            if ended(pid) {
                continue;
            }
            all_ended = false;
            if stopped[i].is_none() {
                if full[i].load(Ordering::SeqCst) {
                    stopped[i] = Some(Stopped::OutputCap);
                } else if super::clock() >= deadline {
                    stopped[i] = Some(Stopped::TimeLimit);
                }
            }
            if stopped[i].is_some() {
                let first_told = *told[i].get_or_insert_with(|| {
                    // SAFETY: an unreaped child of ours: its pid cannot be reused. A copy
                    // its target stopped is continued, to take the SIGTERM and clean up.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                        libc::kill(pid, libc::SIGCONT);
                    }
                    super::clock()
                });
                if super::clock() >= first_told + GRACE {
                    kill(pid);
                }
            }
        }
        if all_ended {
            return stopped;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(pid: i32) {
    // SAFETY: an unreaped child of ours: its pid cannot be reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
