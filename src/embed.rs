//! The embedded interpreter: a complete CPython with `hashtable` and `lab` built in.
//!
//! `refcount-lab python ARGS…` behaves like the `python3` this binary was built against
//! (REPL, `-c`, `-m`, a script path, `sys.argv`), because it is that interpreter, started
//! with `Py_InitializeFromConfig` + `Py_RunMain`. Its home and `sys.executable` are the ones
//! recorded at build time, so it finds its standard library from any working directory.
//! The child processes of `lesson` and `run` are this same command.

use crate::faults::{self, Fault};
use crate::trace::{self, Event};
use crate::{hashtable, lab};
use pyo3_ffi::*;
use std::ffi::{c_char, CString, OsString};
use std::os::unix::ffi::OsStrExt;

/// Where the interpreter this binary links against lives, and which one it is.
pub const PYTHON_HOME: &str = env!("REFCOUNT_LAB_PYTHON_HOME");
pub const PYTHON_EXECUTABLE: &str = env!("REFCOUNT_LAB_PYTHON_EXECUTABLE");
const PYTHON_VERSION: &str = env!("REFCOUNT_LAB_PYTHON_VERSION");

/// The embedded interpreter's `(major, minor)` version.
pub fn python_version() -> (u32, u32) {
    let mut parts = PYTHON_VERSION.split('.').map(|n| n.parse().unwrap_or(0));
    (parts.next().unwrap_or(3), parts.next().unwrap_or(0))
}

/// Runs CPython with `args` (as given to `python3`), `faults` switched on; returns its exit code.
pub fn run_python(args: &[OsString], active_faults: Vec<Fault>) -> i32 {
    faults::install(active_faults);
    let argv: Vec<CString> = std::iter::once(OsString::from(PYTHON_EXECUTABLE))
        .chain(args.iter().cloned())
        .map(|arg| CString::new(arg.as_bytes()).expect("arguments from argv contain no NUL"))
        .collect();
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    let home = CString::new(PYTHON_HOME).expect("a path from the build contains no NUL");
    let executable = CString::new(PYTHON_EXECUTABLE).expect("a path contains no NUL");
    // SAFETY: the interpreter is not running yet; the inittab entries and config strings are
    // registered/copied before `Py_InitializeFromConfig`, and `argv` outlives the call.
    unsafe {
        PyImport_AppendInittab(c"hashtable".as_ptr(), Some(hashtable::init));
        PyImport_AppendInittab(c"lab".as_ptr(), Some(lab::init));
        let mut config = std::mem::MaybeUninit::<PyConfig>::uninit();
        let config = config.as_mut_ptr();
        PyConfig_InitPythonConfig(config);
        let statuses = [
            PyConfig_SetBytesString(config, &raw mut (*config).home, home.as_ptr()),
            PyConfig_SetBytesString(config, &raw mut (*config).executable, executable.as_ptr()),
            PyConfig_SetBytesArgv(
                config,
                argv_ptrs.len() as Py_ssize_t,
                argv_ptrs.as_mut_ptr(),
            ),
        ];
        for status in statuses {
            if PyStatus_Exception(status) != 0 {
                PyConfig_Clear(config);
                Py_ExitStatusException(status);
            }
        }
        let status = Py_InitializeFromConfig(config);
        PyConfig_Clear(config);
        if PyStatus_Exception(status) != 0 {
            Py_ExitStatusException(status);
        }
        // Runs at the very end of Py_FinalizeEx, also when `sys.exit()` ends the process from
        // inside Python and Py_RunMain never returns.
        Py_AtExit(Some(interpreter_finished));
        Py_RunMain()
    }
}

/// The interpreter ran the program and shut down without crashing.
extern "C" fn interpreter_finished() {
    trace::emit(&Event::Done);
}
