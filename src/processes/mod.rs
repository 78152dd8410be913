//! Every process refcount-lab starts, held so that none outlives it.
//!
//! Three holds, from the inside out:
//! - **Subreaper.** This process is the "child subreaper" of its descendants
//!   (`PR_SET_CHILD_SUBREAPER`): a process a script leaves behind, even one that left its
//!   process group and session (`setsid`, a double fork), is re-parented here instead of to
//!   init, and is found in `/proc` below this process. [`stop_all`] kills the script's group
//!   in one call, then every descendant by pid, so no `setpgid` escapes it. While a script
//!   runs, its orphans that ended are reaped and its live processes counted
//!   ([`too_many`]): a fork bomb is stopped past [`MAX_PROCESSES`].
//! - **Parent death.** Every child is started by [`spawn`] with `PR_SET_PDEATHSIG`: if
//!   refcount-lab itself is killed (even by `SIGKILL`), the kernel kills its children too.
//!   (Theirs too when a run has a PID namespace: `namespace.rs`.)
//! - **Interrupts.** `SIGINT`, `SIGTERM`, `SIGHUP` and every other signal that would end
//!   refcount-lab are taken by one thread ([`interrupts::install`]) that stops every
//!   descendant, removes the scratch folders (`scratch.rs`), says "interrupted" and exits
//!   128 + the signal's number, whatever the main thread was doing (running a child,
//!   waiting at a prompt, compiling).
//!
//! [`output`] runs a helper program (the interpreter's self-description, the C compiler)
//! with the same holds (in a namespace of its own too, `namespace.rs`), a time limit and
//! capped output.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

pub mod copies;
pub mod interrupts;
mod suspend;

pub use suspend::clock;

/// Held while a child is started, and by the interrupt thread from its sweep to the exit,
/// so no child can start after the sweep.
static SPAWNING: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes orphans of this process's descendants its own children (once per process).
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    ONCE.call_once(|| unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    });
}

/// Starts `command` so that it dies with this process (see the module's docs).
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    spawn_with(command, || Ok(()))
}

/// [`spawn`], running `then` in the child last, after this module's own preparations.
pub fn spawn_with(
    command: &mut Command,
    then: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> std::io::Result<Child> {
    prepare(command, then);
    let _held = spawn_lock();
    command.spawn()
}

/// What every child gets between fork and exec: no signal blocked, Ctrl-C and Ctrl-\ with
/// their default actions, death with this process, then `then`.
fn prepare(
    command: &mut Command,
    then: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) {
    become_subreaper();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (sigprocmask, signal, prctl, getppid) run between fork
    // and exec; `then`'s caller promises the same of it.
    unsafe {
        command.pre_exec(move || {
            // The interrupt signals are blocked here (see `interrupts`); a blocked mask is
            // inherited across exec, and the standard library does not reset it.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // An ignored signal stays ignored across exec, and refcount-lab may have been
            // started ignoring Ctrl-C and Ctrl-\ (a background job of a script does): the
            // child takes them with their default actions, as a script in a namespace does
            // (`namespace.rs`), so the interpreter's own Ctrl-C works either way.
            for signal in crate::namespace::TERMINAL_SIGNALS {
                libc::signal(signal, libc::SIG_DFL);
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nothing would ever signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
        command.pre_exec(then);
    }
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
        // Escaped: a process may name itself with control characters for a terminal.
        let name = crate::printable::one_line(&stat[open + 1..close]);
        table.insert(pid, Process { ppid, state, name });
    }
    table
}

/// This process's descendants, but `child` (a child of ours not yet reaped, whose own
/// children count: they are re-parented here only once it has been reaped).
fn descendants(child: Option<i32>) -> Vec<(i32, Process)> {
    let mut table = table();
    let mut parents = vec![std::process::id() as i32];
    if let Some(child) = child {
        table.remove(&child);
        parents.push(child);
    }
    let mut found = Vec::new();
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

/// The child of `parent` whose pid inside its own PID namespace is `inner` (from the
/// `NSpid` line of `/proc/PID/status`, whose last number is the innermost pid).
pub fn child_with_inner_pid(parent: i32, inner: i32) -> Option<i32> {
    table()
        .into_iter()
        .filter(|(_, process)| process.ppid == parent)
        .map(|(pid, _)| pid)
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("NSpid:"))
                    .and_then(|pids| pids.split_whitespace().last())
                    .and_then(|last| last.parse::<i32>().ok())
                    == Some(inner)
            })
        })
}

/// The most processes a run may have alive at once: far more than any lesson or test suite
/// needs, far fewer than it takes to fill a shared machine.
pub const MAX_PROCESSES: usize = 1024;
/// How often a running script's processes are counted.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// The limit on processes for a run's child (`RLIMIT_NPROC`, which counts every process of
/// the user): those the user has now, and [`MAX_PROCESSES`] twice over, never above the
/// limit already set. The kernel then refuses the forks of a fork bomb; root is exempt,
/// and counted by [`too_many`] alone.
pub fn process_limit() -> libc::rlim_t {
    let uid = {
        // SAFETY: getuid cannot fail and has no preconditions.
        unsafe { libc::getuid() }
    };
    let mine = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                        && entry
                            .metadata()
                            .is_ok_and(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == uid)
                })
                .count()
        })
        .unwrap_or(0);
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills in `current`; on failure it stays 0 and is not used.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut current) } == 0;
    let wanted = (mine + 2 * MAX_PROCESSES) as libc::rlim_t;
    // Never above the hard limit: only root may raise it.
    if known {
        wanted.min(current.rlim_max)
    } else {
        wanted
    }
}

/// Reaps the run's orphans that have ended (re-parented here, as subreaper: a script that
/// keeps forking and leaving would otherwise fill the machine's process table with
/// zombies), and counts its live processes besides `child`, in one pass over `/proc`.
pub fn reap_and_count(child: i32) -> usize {
    let me = std::process::id() as i32;
    let mut alive = 0;
    for (pid, process) in descendants(Some(child)) {
        if process.state != 'Z' {
            alive += 1;
        } else if process.ppid == me {
            // SAFETY: reaping a zombie child of ours (never `child`, which descendants()
            // leaves out); WNOHANG never blocks.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
    alive
}

/// Has the run of `child` more than [`MAX_PROCESSES`] processes alive, itself included?
/// Reaps its orphans on the way ([`reap_and_count`]).
pub fn too_many(child: i32) -> bool {
    reap_and_count(child) + 1 > MAX_PROCESSES
}

/// Waits until no descendant but zombies is left besides `child`; false if `deadline`
/// came first.
pub fn wait_for_descendants(child: i32, deadline: Instant) -> bool {
    loop {
        if reap_and_count(child) == 0 {
            return true;
        }
        if clock() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills `child` (our unreaped child, wherever its process group now is) and every other
/// descendant, and reaps the ones re-parented here. Returns the names of the processes
/// besides `child` and `own` (the run's own, such as a namespace's init) that were still
/// running.
pub fn stop_all(child: i32, own: &[i32]) -> Vec<String> {
    // Named before the group goes: most of them are in it. In a namespace (whose init
    // takes all with it when it dies), init freezes everything first: a process that forks
    // and exits to hop pids could slip between two entries of one scan and die unnamed.
    // Then the scans go on until they find all of them stopped (or, five times over,
    // none at all).
    let mut stopped = HashMap::new();
    // SAFETY: signalling the namespace's init, a descendant of ours (see
    // namespace::FREEZE): it stops every other process inside.
    let freezing = own
        .first()
        .is_some_and(|&init| unsafe { libc::kill(init, crate::namespace::FREEZE) } == 0);
    let mut empty_scans = 0;
    for _ in 0..1000 {
        let mut running = false;
        let mut found = false;
        for (pid, process) in descendants(Some(child)) {
            if process.state == 'Z' || own.contains(&pid) {
                continue;
            }
            found = true;
            running |= process.state != 'T';
            stopped.insert(pid, process.name);
        }
        empty_scans = if found { 0 } else { empty_scans + 1 };
        if !freezing || (found && !running) || empty_scans == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: `child` is our own unreaped child, so neither its pid nor its process group
    // (which it leads, or led) can have been reused. The group first: one call stops all
    // its members, however fast they fork.
    unsafe {
        libc::kill(-child, libc::SIGKILL);
        libc::kill(child, libc::SIGKILL);
    }
    stop_descendants(Some(child), stopped, own)
}

/// Runs `command` on the terminal, as the user's own interpreter (`refcount-lab python`):
/// in refcount-lab's process group, so that it reads the terminal and Ctrl-C is its own,
/// but in a namespace of its own where there is one, so that nothing it starts outlives
/// refcount-lab, however refcount-lab ends. Returns how it ended and the names of the
/// processes it left running, which are stopped.
pub fn run_interactive(command: &mut Command) -> std::io::Result<(ExitStatus, Vec<String>)> {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, namespace) = crate::namespace::spawn(command)?;
    let Some(mut namespace) = namespace else {
        let status = child.wait();
        interrupts::hold_if_interrupted();
        return Ok((status?, stop_descendants(None, HashMap::new(), &[])));
    };
    // The keeper ends only when every process inside has: the script's end comes from init.
    let status = namespace.wait_for_script();
    interrupts::hold_if_interrupted();
    let left = stop_all(child.id() as i32, &[namespace.init]);
    child.wait()?;
    let status = ExitStatus::from_raw(status.unwrap_or(libc::SIGKILL));
    Ok((status, left))
}

/// Kills every descendant but `child` until none is left; the names of those that were
/// running (`stopped`, and any found now but `own`), in the order of their pids.
fn stop_descendants(
    child: Option<i32>,
    mut stopped: HashMap<i32, String>,
    own: &[i32],
) -> Vec<String> {
    let me = std::process::id() as i32;
    // Rounds: a dying process's children are re-parented here, then killed too.
    for _ in 0..1000 {
        let left = descendants(child);
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
            if !own.contains(&pid) {
                stopped.entry(pid).or_insert(process.name);
            }
            // SAFETY: killing a descendant of this process (its zombie keeps the pid ours).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut stopped: Vec<(i32, String)> = stopped.into_iter().collect();
    stopped.sort_unstable();
    stopped.into_iter().map(|(_, name)| name).collect()
}

/// What a helper program printed, and how it ended.
pub struct Output {
    pub status: ExitStatus,
    /// Why it was stopped before it ended on its own, if it was.
    pub stopped: Option<Stopped>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a helper program was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was still running at its time limit.
    TimeLimit,
    /// It printed more than the cap: what it says next is not read anyway.
    OutputCap,
}

/// Runs `command` (stdin closed) for at most `limit`, keeping at most `cap` bytes of each
/// output stream, and stopping it once it prints more; whatever it started is stopped when
/// it ends.
pub fn output(command: &mut Command, limit: Duration, cap: usize) -> std::io::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // In a namespace of its own where there is one: a compiler's own children (cc1) die
    // with refcount-lab too, however it ends.
    let (mut child, namespace) = crate::namespace::spawn(command)?;
    let streams = [
        OwnedFd::from(child.stdout.take().expect("piped")),
        OwnedFd::from(child.stderr.take().expect("piped")),
    ];
    let pid = child.id() as i32;
    let mut kept = [Capped::new(cap), Capped::new(cap)];
    let full = AtomicBool::new(false);
    let (status, stopped) = std::thread::scope(|scope| {
        let (wake_reader, wake_writer) = std::io::pipe()?;
        let [out, err] = &mut kept;
        let full = &full;
        let collector = scope.spawn(move || {
            collect_until_full(streams, &mut [out, err], wake_reader, full);
        });
        let stopped = wait_without_reaping(pid, clock() + limit, full);
        interrupts::hold_if_interrupted();
        stop_all(pid, &[]);
        let mut status = child.wait()?;
        if let Some(mut namespace) = namespace {
            // The program's own status, reported by init before it ended; none when it
            // was killed with the namespace.
            status = std::os::unix::process::ExitStatusExt::from_raw(
                namespace.wait_for_script().unwrap_or(libc::SIGKILL),
            );
        }
        drop(wake_writer);
        let _ = collector.join();
        Ok::<_, std::io::Error>((status, stopped))
    })?;
    let [stdout, stderr] = kept;
    Ok(Output {
        status,
        stopped,
        stdout: stdout.kept,
        stderr: stderr.kept,
    })
}

/// [`collect`], raising `full` as soon as a sink drops bytes.
fn collect_until_full<const N: usize>(
    streams: [OwnedFd; N],
    sinks: &mut [&mut Capped; N],
    wake: std::io::PipeReader,
    full: &AtomicBool,
) {
    struct Watched<'a> {
        capped: &'a mut Capped,
        full: &'a AtomicBool,
    }
    impl Sink for Watched<'_> {
        fn feed(&mut self, bytes: &[u8]) {
            self.capped.feed(bytes);
            if self.capped.dropped > 0 {
                self.full.store(true, Ordering::SeqCst);
            }
        }
    }
    let mut watched = sinks.each_mut().map(|capped| Watched { capped, full });
    let mut sinks = watched.each_mut().map(|w| w as &mut dyn Sink);
    collect(streams, &mut sinks, wake);
}

/// Whether our child `pid` has ended, leaving it unreaped (so its pid stays ours to
/// signal); true too when it cannot be waited for (it is not our child any more).
fn ended(pid: i32) -> bool {
    // SAFETY: `info` is a plain C struct that waitid fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: polling our own child; WNOWAIT leaves it to be reaped by `Child::wait`.
    let polled = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    // SAFETY: waitid filled `info` in (a zero pid: not ended yet).
    polled == -1 || unsafe { info.si_pid() } != 0
}

/// Waits until the child `pid` ends (left unreaped, so its pid stays ours to signal), its
/// output fills, or `deadline`: why it must be stopped, if it must.
fn wait_without_reaping(pid: i32, deadline: Instant, full: &AtomicBool) -> Option<Stopped> {
    loop {
        if ended(pid) {
            return None;
        }
        if full.load(Ordering::SeqCst) {
            return Some(Stopped::OutputCap);
        }
        if clock() >= deadline {
            return Some(Stopped::TimeLimit);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A reader of one output stream, fed as bytes arrive.
pub trait Sink: Send {
    fn feed(&mut self, bytes: &[u8]);
}

/// The first `cap` bytes of a stream; the rest counted.
pub struct Capped {
    cap: usize,
    pub kept: Vec<u8>,
    pub dropped: usize,
}

impl Capped {
    pub fn new(cap: usize) -> Capped {
        Capped {
            cap,
            kept: Vec::new(),
            dropped: 0,
        }
    }
}

impl Sink for Capped {
    fn feed(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len()).min(bytes.len());
        self.kept.extend_from_slice(&bytes[..room]);
        self.dropped += bytes.len() - room;
    }
}

/// Bytes read from each stream once the run is over: more than the largest pipe holds
/// (`/proc/sys/fs/pipe-max-size` is 1 MiB by default).
const DRAIN_BUDGET: usize = 4 << 20;

/// Reads every stream into its sink until each reaches end-of-file, or until `wake` is
/// closed: then what is already in the pipes is read, and no more is waited for. (Every
/// process of the run is dead by then, so all they wrote is in the pipes; a writer outside
/// the run that holds a pipe open cannot hold up the report.)
pub fn collect<const N: usize>(
    streams: [OwnedFd; N],
    sinks: &mut [&mut dyn Sink; N],
    wake: std::io::PipeReader,
) {
    let mut open: Vec<Option<std::fs::File>> = streams
        .into_iter()
        .map(|fd| Some(std::fs::File::from(fd)))
        .collect();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut draining = false;
    while open.iter().any(Option::is_some) {
        if !draining {
            let mut fds: Vec<libc::pollfd> = open
                .iter()
                .map(|file| libc::pollfd {
                    fd: file.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            fds.push(libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: `fds` is a live array of pollfd of the length given.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                draining = true;
            }
            if fds[N].revents != 0 {
                draining = true;
            }
            if !draining {
                for (i, pollfd) in fds[..N].iter().enumerate() {
                    if pollfd.revents != 0 {
                        read_some(&mut open[i], &mut buffer, sinks[i]);
                    }
                }
                continue;
            }
        }
        for (i, file) in open.iter_mut().enumerate() {
            if let Some(f) = file {
                set_nonblocking(f);
            }
            // What a pipe can hold, and no more: a writer outside the run that keeps
            // writing cannot keep the report waiting either.
            let mut reads_left = DRAIN_BUDGET / buffer.len();
            while file.is_some() {
                if !read_some(file, &mut buffer, sinks[i]) {
                    *file = None; // nothing more there now
                }
                reads_left -= 1;
                if reads_left == 0 {
                    *file = None;
                }
            }
        }
    }
}

/// One read into `sink`; closes the stream at end-of-file or error. False when nothing
/// could be read now.
fn read_some(file: &mut Option<std::fs::File>, buffer: &mut [u8], sink: &mut dyn Sink) -> bool {
    let Some(stream) = file else {
        return false;
    };
    match stream.read(buffer) {
        Ok(0) => {
            *file = None;
            false
        }
        Ok(n) => {
            sink.feed(&buffer[..n]);
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => true,
        Err(_) => {
            *file = None;
            false
        }
    }
}

fn set_nonblocking(file: &std::fs::File) {
    let fd = file.as_raw_fd();
    // SAFETY: changing the status flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}
