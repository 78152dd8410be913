//! The trace emitter: events for `refcount-lab`, one signed JSON line each.
//!
//! When `refcount-lab` runs a child, it opens a pipe for events and names its descriptor in
//! `REFCOUNT_LAB_TRACE_FD`, and passes a per-run secret key through a second pipe named in
//! `REFCOUNT_LAB_KEY_FD`. The import of `_labtrace` ([`install`], by `lab`, before the script
//! runs) reads and closes the key pipe and moves the event pipe to a private descriptor, so
//! the script can neither read the key nor lose the trace by closing fd 3. Every event is
//! numbered and tagged with a keyed hash (SipHash-2-4) of its number, the sending process's
//! id and its text, and goes out in one unbuffered `write(2)`, so every event written
//! before a crash has already left the process. A line a script writes itself cannot carry
//! a valid tag: the parent shows it as forged and counts nothing from it (`src/trace.rs` of
//! the CLI checks the tags).
//!
//! `alloc`, `free` and `done` come only from native code. The `lab` probes (`lab.py`) send
//! theirs through [`emit_python`] (`_labtrace._emit`), which accepts only the kinds `lab`
//! sends. Outside `refcount-lab` there is no pipe and nothing is written.

use pyo3_ffi::*;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Where events go, and the key that signs them.
struct Sink {
    fd: i32,
    key: (u64, u64),
}

static SINK: OnceLock<Option<Sink>> = OnceLock::new();
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The event kinds `lab.py` may send through `_labtrace._emit`.
const PYTHON_KINDS: [&str; 9] = [
    "say",
    "refcount",
    "watch",
    "final",
    "repetition",
    "findings",
    "hunt_done",
    "threads",
    "not_used",
];

/// What the parent handed over on the key pipe besides the key: this run's faults.
static HANDED_FAULTS: OnceLock<Option<String>> = OnceLock::new();

/// Takes over the trace and key pipes the parent passed, if any. Once per process.
///
/// The key pipe holds the key (32 hex digits), a newline and the run's faults
/// (comma-separated): read once and closed before the script starts, so no code of the
/// script can read them, as it could the environment (a diagnose exercise hides its fault).
pub fn install() {
    SINK.get_or_init(|| {
        let trace_fd: i32 = std::env::var("REFCOUNT_LAB_TRACE_FD").ok()?.parse().ok()?;
        let key_fd: i32 = std::env::var("REFCOUNT_LAB_KEY_FD").ok()?.parse().ok()?;
        let mut handed = [0u8; 4096];
        let mut filled = 0;
        // SAFETY: the parent opened both descriptors for this process; `handed` is ours;
        // the key pipe is read to its end (the parent wrote it whole and closed it), then
        // closed, whatever came of it.
        unsafe {
            while filled < handed.len() {
                let read = libc::read(
                    key_fd,
                    handed[filled..].as_mut_ptr().cast(),
                    handed.len() - filled,
                );
                if read <= 0 {
                    break;
                }
                filled += read as usize;
            }
            libc::close(key_fd);
        }
        let handed = std::str::from_utf8(&handed[..filled]).ok()?;
        let (hex, faults) = handed.split_once('\n').unwrap_or((handed, ""));
        HANDED_FAULTS.get_or_init(|| Some(faults.to_owned()));
        let key = (
            u64::from_str_radix(hex.get(..16)?, 16).ok()?,
            u64::from_str_radix(hex.get(16..)?, 16).ok()?,
        );
        // A private, close-on-exec copy above the descriptors scripts use; fd 3 stays open
        // (a script writing to it only writes forged lines).
        // SAFETY: duplicating a descriptor the parent opened for us.
        let fd = unsafe { libc::fcntl(trace_fd, libc::F_DUPFD_CLOEXEC, 100) };
        (fd >= 0).then_some(Sink { fd, key })
    });
}

/// The faults the parent handed over on the key pipe (see [`install`]), if it did.
pub fn handed_faults() -> Option<&'static str> {
    install();
    HANDED_FAULTS.get().and_then(Option::as_deref)
}

/// Is this process a child of `refcount-lab` with a trace pipe?
pub fn is_traced() -> bool {
    SINK.get().is_some_and(Option::is_some)
}

/// The tag of event number `seq` from process `pid` with text `body`: both sides compute
/// it the same way.
pub fn tag(key: (u64, u64), seq: u64, pid: u32, body: &str) -> u64 {
    let mut hasher = SipHasher24::new_with_keys(key.0, key.1);
    hasher.write_u64(seq);
    hasher.write_u32(pid);
    hasher.write(body.as_bytes());
    hasher.finish()
}

/// Sends `body` (a JSON object) as the next event. Never fails the caller: a script that
/// broke the pipe loses its trace, not its run. The leading newline ends any partial line a
/// script left on the pipe, so it cannot swallow this event.
pub(crate) fn emit(body: &str) -> bool {
    let Some(Some(sink)) = SINK.get() else {
        return false;
    };
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1;
    // The sender's pid, signed: the parent counts only the script's own process, not a
    // fork of it that inherited the pipe and the key.
    let pid = std::process::id();
    let line = format!(
        "\n{{\"seq\":{seq},\"pid\":{pid},\"tag\":\"{:016x}\",{}\n",
        tag(sink.key, seq, pid, body),
        &body[1..]
    );
    // SAFETY: writing our own buffer to the descriptor we own.
    unsafe { libc::write(sink.fd, line.as_ptr().cast(), line.len()) };
    true
}

/// A native object was created: `type_name` is a plain identifier.
pub fn alloc(type_name: &str, id: u64) {
    emit(&format!(
        r#"{{"ev":"alloc","type":"{type_name}","id":{id}}}"#
    ));
}

/// A native object was destroyed.
pub fn free(type_name: &str, id: u64) {
    emit(&format!(
        r#"{{"ev":"free","type":"{type_name}","id":{id}}}"#
    ));
}

/// The interpreter finished: registered with `Py_AtExit`, so it runs at the very end of
/// finalisation, after module globals were cleared (and their tables freed).
pub extern "C" fn done() {
    let counts: Vec<String> = crate::faults::counts()
        .filter(|(name, _)| is_identifier(name))
        .map(|(name, ran)| format!(r#""{name}":{ran}"#))
        .collect();
    if !counts.is_empty() {
        emit(&format!(
            r#"{{"ev":"fault_counts","counts":{{{}}}}}"#,
            counts.join(",")
        ));
    }
    emit(r#"{"ev":"done"}"#);
}

/// A fault's faulty branch ran for the first time in this process.
pub fn fault_ran(name: &str) {
    if is_identifier(name) {
        emit(&format!(r#"{{"ev":"fault_ran","fault":"{name}"}}"#));
    }
}

/// The threads of this process, as the kernel counts them (0 if it cannot tell).
fn threads_running() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
}

/// Fault names go into events as they are: only plain names (as the CLI sends) qualify.
fn is_identifier(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `_labtrace._emit(line)`: sends one of `lab`'s events; `False` when not traced.
///
/// # Safety
/// Called by CPython with the GIL held and a live `line` argument.
pub unsafe extern "C" fn emit_python(_module: *mut PyObject, line: *mut PyObject) -> *mut PyObject {
    // SAFETY: `line` is a live object borrowed from the caller; every call is checked.
    unsafe {
        let mut size: Py_ssize_t = 0;
        let text = PyUnicode_AsUTF8AndSize(line, &mut size);
        if text.is_null() {
            return std::ptr::null_mut();
        }
        let bytes = std::slice::from_raw_parts(text.cast::<u8>(), size as usize);
        let body = std::str::from_utf8(bytes).unwrap_or("");
        let kind_ok = PYTHON_KINDS
            .iter()
            .any(|kind| body.starts_with(&format!(r#"{{"ev": "{kind}""#)));
        if !kind_ok {
            PyErr_SetString(
                PyExc_ValueError,
                c"_emit takes one of lab's events: a JSON object starting with its \"ev\"".as_ptr(),
            );
            return std::ptr::null_mut();
        }
        // Threads running at exit excuse tables from counting as leaks: only with another
        // thread of this process really running.
        if body.starts_with(r#"{"ev": "threads""#) && threads_running() < 2 {
            PyErr_SetString(
                PyExc_ValueError,
                c"_emit: no other thread is running in this process".as_ptr(),
            );
            return std::ptr::null_mut();
        }
        PyBool_FromLong(emit(body).into())
    }
}
