//! The interpreter: which CPython `refcount-lab` runs, and what it is.
//!
//! The tool links no libpython; it runs the Python the user has. The choice, first found
//! wins: `--python PATH_OR_NAME` (a path, or a name looked up on `PATH`), else
//! `$REFCOUNT_LAB_PYTHON`, else the active virtual environment (`$VIRTUAL_ENV/bin/python`),
//! else `python3` on `PATH`. The interpreter is asked once what it is (a CPython 3.10 or
//! newer, not free-threaded, is what the stable-ABI module loads into), and every child is
//! then that executable with the module folder first on its `PYTHONPATH` and nothing else
//! changed.

use crate::native;
use crate::processes;
use crate::scratch::ScratchDir;
use anyhow::{bail, Result};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The oldest CPython the module's stable ABI (`abi3-py310`) loads into.
const OLDEST: (u32, u32) = (3, 10);

/// What the chosen interpreter says about itself: one line per field. Written so that any
/// Python since 2.6 answers (an old one must hear "too old", not "not a Python"), and
/// imports nothing: it runs in `/`, with no site, environment or user folders.
const PROBE: &str = "import sys
i = getattr(sys, 'implementation', None)
name = i.name if i else getattr(sys, 'subversion', ('?',))[0].lower()
fields = [name, sys.version.split()[0], sys.version_info[0], sys.version_info[1],
          int(hasattr(sys, 'gettotalrefcount')), int('t' in getattr(sys, 'abiflags', '')),
          sys.executable]
sys.stdout.write('\\n'.join([str(f) for f in fields]) + '\\n')";

/// How long the interpreter may take to say what it is, and how much of its answer is read.
const PROBE_LIMIT: Duration = Duration::from_secs(30);
const PROBE_CAP: usize = 64 * 1024;

/// A CPython the module loads into, ready to run.
#[derive(Debug)]
pub struct Python {
    /// What the interpreter calls itself (`sys.executable`): a venv's `bin/python` stays
    /// that, so the venv is what runs; a pyenv shim becomes the binary behind it.
    pub executable: PathBuf,
    /// `(major, minor)`, e.g. `(3, 14)`.
    pub version: (u32, u32),
    /// The version as `sys.version` spells it, e.g. `3.14.0` or `3.15.0a2+`.
    pub full_version: String,
    /// A debug build (`--with-pydebug`: `sys.gettotalrefcount` exists).
    pub debug: bool,
    /// The folder holding `hashtable` and `lab` (see `native.rs`), removed with this.
    module_dir: ScratchDir,
}

impl Python {
    /// Finds, checks and prepares the interpreter to run; `flag` is `--python`'s value.
    pub fn choose(flag: Option<&OsStr>) -> Result<Python> {
        let (wanted, from) = if let Some(flag) = flag {
            (flag.to_owned(), "--python")
        } else if let Some(env) = std::env::var_os("REFCOUNT_LAB_PYTHON").filter(|v| !v.is_empty())
        {
            (env, "REFCOUNT_LAB_PYTHON")
        } else if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
            (
                Path::new(&venv).join("bin/python").into_os_string(),
                "active virtual environment (VIRTUAL_ENV)",
            )
        } else {
            (OsString::from("python3"), "default")
        };
        let executable = locate(&wanted).map_err(|cause| {
            anyhow::anyhow!(
                "no Python to run: {cause} (the {from} choice). refcount-lab runs the CPython \
                 you have: install CPython 3.10 or newer (your system's python3 package, \
                 pyenv or python.org), or name one with --python PATH_OR_NAME"
            )
        })?;
        let identity = probe(&executable).map_err(|cause| {
            anyhow::anyhow!(
                "cannot use {} (the {from} choice): {cause}",
                executable.display()
            )
        })?;
        // Its own errors are refcount-lab's (a full disk, say), not the interpreter's.
        let Identity {
            executable,
            version,
            full_version,
            debug,
        } = identity;
        Ok(Python {
            executable,
            version,
            full_version,
            debug,
            module_dir: native::install()?,
        })
    }

    /// `CPython 3.14.0, release build`: the one line headers show.
    pub fn describe(&self) -> String {
        let build = if self.debug { "debug" } else { "release" };
        format!("CPython {}, {build} build", self.full_version)
    }

    /// The folder holding `hashtable` and `lab`.
    pub fn module_dir(&self) -> &Path {
        self.module_dir.path()
    }

    /// A command running this interpreter with the module importable, and no fault on
    /// (a run hands its faults over privately: `runner.rs`).
    pub fn command(&self) -> Command {
        let mut path = OsString::from(self.module_dir.path());
        if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(existing);
        }
        let mut command = Command::new(&self.executable);
        command
            .env("PYTHONPATH", path)
            .env_remove("REFCOUNT_LAB_FAULTS");
        command
    }
}

/// A path as given (made absolute: children run in other folders), or a name on `PATH`.
fn locate(wanted: &OsStr) -> Result<PathBuf> {
    let wanted_path = Path::new(wanted);
    let found = if wanted_path.components().count() > 1 {
        Some(std::path::absolute(wanted_path)?)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(wanted))
                .find(|candidate| is_executable(candidate))
        })
    };
    match found {
        Some(path) if is_executable(&path) => Ok(path),
        Some(path) => bail!("{} is not an executable file", path.display()),
        None => bail!("'{}' is not on PATH", wanted.to_string_lossy()),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What an interpreter says it is, before a module folder is made for it.
struct Identity {
    executable: PathBuf,
    version: (u32, u32),
    full_version: String,
    debug: bool,
}

/// Asks `executable` what it is, and refuses what the module cannot load into.
fn probe(executable: &Path) -> Result<Identity> {
    let output = processes::output(
        Command::new(executable)
            .args(["-E", "-s", "-S", "-c", PROBE])
            .current_dir("/"),
        PROBE_LIMIT,
        PROBE_CAP,
    )
    .map_err(|error| anyhow::anyhow!("it does not run: {error}"))?;
    match output.stopped {
        Some(processes::Stopped::TimeLimit) => bail!(
            "asked what it is, it did not answer within {} s and was stopped",
            PROBE_LIMIT.as_secs()
        ),
        Some(processes::Stopped::OutputCap) => bail!(
            "it is not a Python: asked what it is, it printed more than {} KiB and was \
             stopped. Name a CPython 3.10 or newer with --python PATH_OR_NAME",
            PROBE_CAP / 1024
        ),
        None => {}
    }
    let status = output.status;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = stdout.lines().collect();
    let [implementation, full_version, major, minor, debug, free_threaded, real] = fields[..]
    else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = match stderr.lines().chain(stdout.lines()).next() {
            Some(line) => format!("it said {:?}", shorten(line)),
            None => format!("it printed nothing ({status})"),
        };
        bail!(
            "it is not a Python: asked what it is, {said}. Name a CPython 3.10 or newer with \
             --python PATH_OR_NAME"
        );
    };
    let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
        bail!(
            "asked what it is, it gave a version refcount-lab cannot read ({:?}, {:?}). Name \
             a CPython 3.10 or newer with --python PATH_OR_NAME",
            shorten(major),
            shorten(minor)
        );
    };
    let version = (major, minor);
    let readable = |field: &str| field.chars().all(|c| c.is_ascii_graphic());
    if !readable(implementation) || !readable(full_version) {
        bail!(
            "asked what it is, it gave a name or version refcount-lab cannot read ({:?}, \
             {:?}). Name a CPython 3.10 or newer with --python PATH_OR_NAME",
            shorten(implementation),
            shorten(full_version)
        );
    }
    if implementation != "cpython" {
        bail!(
            "it is {implementation} {full_version}, not CPython: refcount-lab's module is \
             written against CPython's C API. Name a CPython 3.10 or newer with --python"
        );
    }
    if version < OLDEST {
        bail!(
            "it is CPython {full_version}, too old: refcount-lab needs CPython 3.10 or newer (its \
             module is built for the stable ABI of 3.10). Name a newer one with --python, \
             e.g. --python python3.13"
        );
    }
    if free_threaded == "1" {
        bail!(
            "it is a free-threaded CPython {full_version} (no GIL). refcount-lab's module is \
             built for the stable ABI `abi3`, which free-threaded interpreters cannot load \
             (they need a build of their own). Use the same version's default build, e.g. \
             --python python{}.{}",
            version.0,
            version.1
        );
    }
    Ok(Identity {
        // What the interpreter calls itself: a pyenv shim (a shell script that would run
        // before every child) resolves to the real binary; a venv's python stays the venv's.
        executable: Some(PathBuf::from(real))
            .filter(|real| real.is_absolute() && is_executable(real))
            .unwrap_or_else(|| executable.to_owned()),
        version,
        full_version: full_version.to_owned(),
        debug: debug == "1",
    })
}

/// At most 80 characters of what an interpreter said, for an error message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
