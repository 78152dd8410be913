//! A run in a PID namespace of its own, where the machine allows one.
//!
//! A script runs as the user, so anything it can name by pid it can signal: without a
//! namespace it could `SIGSTOP` refcount-lab and so stop the clock of its own `--timeout`,
//! or `SIGKILL` it and leave its grandchildren running. Inside a new PID namespace it sees
//! only its own processes (refcount-lab has no pid there), and when the namespace's first
//! process dies the kernel kills every process in it: nothing the script started can
//! outlive refcount-lab, however refcount-lab ends.
//!
//! The run's processes, from the outside in:
//! - the **keeper**, refcount-lab's child (it dies with refcount-lab, `PR_SET_PDEATHSIG`):
//!   it makes the namespaces (with a user namespace, mapping the user to themself, when it
//!   is not root), starts init, says init's pid and waits for it;
//! - **init**, pid 1 inside, dies with the keeper: it mounts the namespace's own `/proc`
//!   (so the script's `os.getpid()` and `/proc` agree), starts the script, reaps every
//!   orphan, reports how the script ended and ends when no process is left;
//! - the **script**, pid 2 inside ([`SCRIPT_PID`]), which execs the interpreter.
//!
//! Where namespaces are refused (a kernel or a policy, such as Ubuntu's for unprivileged
//! users; tried once per command, in a child of its own), or turned off ([`OFF_ENV`]),
//! the interpreter is refcount-lab's child and the run is held by `processes.rs` alone.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::sync::OnceLock;

/// The script's pid inside its namespace: init's first child.
pub const SCRIPT_PID: i32 = 2;

/// The keeper's one message: `K` and init's pid (outside), little-endian.
const KEEPER_SAYS: u8 = b'K';
/// Init's one message: `S` and the script's wait status.
const SCRIPT_ENDED: u8 = b'S';
const MESSAGE_LEN: usize = 5;

/// A run inside a namespace: its init, and the pipe on which init reports the script's end.
pub struct Namespace {
    /// Init's pid as refcount-lab sees it.
    pub init: i32,
    status: File,
}

impl Namespace {
    /// Blocks until the script ends; its wait status, or `None` if init died first (it
    /// was killed, with everything in the namespace).
    pub fn wait_for_script(&mut self) -> Option<i32> {
        let mut message = [0u8; MESSAGE_LEN];
        match self.status.read_exact(&mut message) {
            Ok(()) if message[0] == SCRIPT_ENDED => Some(i32::from_le_bytes(
                message[1..].try_into().expect("four bytes"),
            )),
            _ => None,
        }
    }
}

/// The user's ids mapped to themselves inside a user namespace, prepared before the fork
/// (nothing may allocate between fork and exec).
struct IdMaps {
    uid_map: CString,
    gid_map: CString,
}

/// Turns namespaces off (set and not empty), for a machine where they misbehave.
pub const OFF_ENV: &str = "REFCOUNT_LAB_NO_NAMESPACE";

/// Starts `command` inside new PID and mount namespaces when the machine allows it (and
/// [`OFF_ENV`] does not forbid it). The child returned is the keeper, or the script itself
/// when it runs without (`None`).
pub fn spawn(command: &mut Command) -> io::Result<(Child, Option<Namespace>)> {
    let turned_off = std::env::var_os(OFF_ENV).is_some_and(|value| !value.is_empty());
    if turned_off || !available() {
        return Ok((crate::processes::spawn(command)?, None));
    }
    let (reader, writer) = io::pipe()?;
    // Above the runner's fixed descriptors (3 and 4, which its own `dup2` would close),
    // and close-on-exec: the script never holds it.
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one or -1.
    let status = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if status == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `status` was just returned by fcntl and is owned by nothing else.
    let status_writer = unsafe { OwnedFd::from_raw_fd(status) };
    drop(writer);
    let maps = id_maps();
    // SAFETY: `enter` makes only async-signal-safe calls (see there).
    let child =
        crate::processes::spawn_with(command, move || unsafe { enter(status, maps.as_ref()) })?;
    drop(status_writer);
    // The keeper wrote its message before the spawn returned: it closes the standard
    // library's exec-error pipe only after.
    let mut status = File::from(OwnedFd::from(reader));
    let mut message = [0u8; MESSAGE_LEN];
    status.read_exact(&mut message)?;
    let init = i32::from_le_bytes(message[1..].try_into().expect("four bytes"));
    Ok((child, Some(Namespace { init, status })))
}

/// The mapping of the user to themself, for a user other than root (who needs no user
/// namespace to make the others).
fn id_maps() -> Option<IdMaps> {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    (uid != 0).then(|| IdMaps {
        uid_map: CString::new(format!("{uid} {uid} 1")).expect("no NUL in numbers"),
        gid_map: CString::new(format!("{gid} {gid} 1")).expect("no NUL in numbers"),
    })
}

/// Can this process make the namespaces? Tried once, in a child that makes them and
/// exits, so that a run never finds out half-way (inside a user namespace whose ids it
/// may not map).
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let maps = id_maps();
        // SAFETY: the child makes only async-signal-safe calls and leaves by `_exit`.
        match unsafe { libc::fork() } {
            -1 => false,
            // SAFETY: as above; `unshare_and_map` is async-signal-safe.
            0 => unsafe { libc::_exit(i32::from(unshare_and_map(maps.as_ref()).is_err())) },
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child, which exits at once.
                let waited = unsafe { libc::waitpid(child, &mut status, 0) };
                waited == child && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
            }
        }
    })
}

/// Makes the PID and mount namespaces, and the user namespace with its id maps if `maps`.
///
/// # Safety
/// Async-signal-safe: callable between fork and exec.
unsafe fn unshare_and_map(maps: Option<&IdMaps>) -> io::Result<()> {
    // SAFETY: system calls on this process's own namespaces and ids.
    unsafe {
        let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
        if maps.is_some() {
            flags |= libc::CLONE_NEWUSER;
        }
        if libc::unshare(flags) == -1 {
            return Err(io::Error::last_os_error());
        }
        if let Some(maps) = maps {
            // `setgroups` must be denied before an unprivileged process may write its gid
            // map.
            write_file(c"/proc/self/setgroups", c"deny")?;
            write_file(c"/proc/self/gid_map", &maps.gid_map)?;
            write_file(c"/proc/self/uid_map", &maps.uid_map)?;
        }
        Ok(())
    }
}

/// The signals a terminal sends its foreground process group from the keyboard that would
/// end the keeper or init, and that every script takes with their default actions.
/// (Ctrl-Z stops the interactive interpreter's group, theirs too, and `fg` lets it go on; a
/// run in a group of its own is frozen by refcount-lab: `processes/suspend.rs`.)
pub(crate) const TERMINAL_SIGNALS: [i32; 2] = [libc::SIGINT, libc::SIGQUIT];

/// In the keeper, between fork and exec: makes the namespaces and starts init. Returns
/// (to exec the interpreter) only in the script.
///
/// # Safety
/// Runs in a forked child of a multi-threaded process: only async-signal-safe calls.
unsafe fn enter(status: RawFd, maps: Option<&IdMaps>) -> io::Result<()> {
    // SAFETY: system calls on this process's own namespaces, ids and descriptors.
    unsafe {
        // A terminal's Ctrl-C and Ctrl-\ reach the keeper and init too when the script
        // shares refcount-lab's process group (`refcount-lab python`): they are the
        // script's, not the end of its run. The script takes the default actions back.
        for signal in TERMINAL_SIGNALS {
            libc::signal(signal, libc::SIG_IGN);
        }
        unshare_and_map(maps)?;
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => init(status),
            init => keep(status, init),
        }
    }
}

/// The keeper after the fork: says init's pid, lets go of every descriptor (the exec-error
/// pipe among them, so the spawn can return) and waits for init.
unsafe fn keep(status: RawFd, init: libc::pid_t) -> ! {
    // SAFETY: system calls on this process's own descriptors and its child `init`.
    unsafe {
        let mut message = [KEEPER_SAYS, 0, 0, 0, 0];
        message[1..].copy_from_slice(&init.to_le_bytes());
        libc::write(status, message.as_ptr().cast(), MESSAGE_LEN);
        libc::syscall(libc::SYS_close_range, 0, libc::c_uint::MAX, 0);
        loop {
            let mut wait_status = 0;
            let waited = libc::waitpid(init, &mut wait_status, 0);
            if waited == init
                || (waited == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                libc::_exit(0);
            }
        }
    }
}

/// Init (pid 1 inside): mounts its `/proc`, starts the script (returning in it), then
/// reaps until no process is left, reporting the script's end.
unsafe fn init(status: RawFd) -> io::Result<()> {
    // SAFETY: system calls on this process's own attributes, mounts and descriptors.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // FREEZE from outside stops every process inside at once (see `freeze_all`); the
        // script's exec resets the handler.
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = freeze_all as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigaction(FREEZE, &action, std::ptr::null_mut());
        // Not dumpable: the script may not open init's descriptors (the status pipe) through
        // `/proc/1/fd`.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Private first, so the new `/proc` cannot propagate to the mounts outside. Without
        // it the script sees the machine's `/proc`: a convenience lost, not a hold.
        let private = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0;
        if private {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
        }
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                // Init died before the prctl: nothing would kill the script with the run.
                if libc::getppid() != 1 {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                libc::close(status);
                for signal in TERMINAL_SIGNALS {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            }
            script => reap(status, script),
        }
    }
}

/// The signal refcount-lab sends init to freeze the namespace before it names and kills
/// what is in it.
pub const FREEZE: i32 = libc::SIGUSR1;

/// Init's handler of [`FREEZE`]: stops every other process of the namespace in one call
/// (the kernel signals them all under one lock, so none forks past it). Only for a sender
/// outside the namespace (whose pid reads 0 here): a script may not freeze its own run.
extern "C" fn freeze_all(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo_t to an SA_SIGINFO handler; kill is
    // async-signal-safe.
    unsafe {
        if (*info).si_pid() == 0 {
            libc::kill(-1, libc::SIGSTOP);
        }
    }
}

/// Init after starting the script: keeps only the status pipe, reaps every process that
/// ends, reports the script's end and exits once none is left.
unsafe fn reap(status: RawFd, script: libc::pid_t) -> ! {
    // SAFETY: system calls on this process's own descriptors and children.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0, status - 1, 0);
        libc::syscall(libc::SYS_close_range, status + 1, libc::c_uint::MAX, 0);
        loop {
            let mut wait_status = 0;
            let waited = libc::waitpid(-1, &mut wait_status, 0);
            if waited == script {
                let mut message = [SCRIPT_ENDED, 0, 0, 0, 0];
                message[1..].copy_from_slice(&wait_status.to_le_bytes());
                libc::write(status, message.as_ptr().cast(), MESSAGE_LEN);
            } else if waited == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
            {
                libc::_exit(0);
            }
        }
    }
}

/// Writes `text` to the file at `path` (one `write`, as `/proc`'s id maps require).
unsafe fn write_file(path: &std::ffi::CStr, text: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: `path` and `text` are valid C strings; the descriptor is ours.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        let bytes = text.to_bytes();
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(error);
        }
        Ok(())
    }
}
