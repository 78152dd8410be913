//! The trace emitter: the module's own events for `refcount-lab`, one JSON line each.
//!
//! When `refcount-lab` runs a child, it opens a pipe and names its file descriptor in
//! `REFCOUNT_LAB_TRACE_FD`. Each event is one `write(2)` of one line, unbuffered, so every
//! event written before a crash has already left the process. Outside `refcount-lab` there
//! is no such descriptor and nothing is written. The `lab` probes (`lab.py`) write to the
//! same pipe; the parent's reader is `src/trace.rs` of the CLI.

use std::sync::OnceLock;

/// The environment variable naming the trace pipe's file descriptor.
const TRACE_FD_ENV: &str = "REFCOUNT_LAB_TRACE_FD";

static SINK: OnceLock<Option<i32>> = OnceLock::new();

fn sink() -> Option<i32> {
    *SINK.get_or_init(|| {
        let fd: i32 = std::env::var(TRACE_FD_ENV).ok()?.parse().ok()?;
        // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
        (unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1).then_some(fd)
    })
}

/// Is this process a child of `refcount-lab` with a trace pipe?
pub fn is_traced() -> bool {
    sink().is_some()
}

/// Writes one line; never fails the caller (a script that closed the pipe loses its trace,
/// not its run).
fn emit(line: &str) {
    if let Some(fd) = sink() {
        let line = format!("{line}\n");
        // SAFETY: writing our own buffer to a descriptor the parent opened for us.
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    }
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
    emit(r#"{"ev":"done"}"#);
}
