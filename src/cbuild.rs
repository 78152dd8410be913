//! Compiling a learner's C extension module against the chosen interpreter.
//!
//! No setuptools: the interpreter itself says where its headers are and what suffix its
//! extension modules carry (`sysconfig`), and the system C compiler (`$CC`, else `cc`, `gcc`
//! or `clang`) builds one shared library from one `.c` file. What is missing (a compiler,
//! the headers) is said with the package that brings it. The compiler runs under limits
//! (time, memory, file size, output), as everything refcount-lab starts (`processes.rs`):
//! an `#include` of a FIFO or of `/dev/zero` ends in a clear error, not a hang.

use crate::processes;
use crate::python::Python;
use anyhow::{bail, ensure, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The compiler's limits: wall time, CPU time, address space, size of a file it writes,
/// and the bytes of its messages kept.
const COMPILE_TIME: Duration = Duration::from_secs(120);
const COMPILE_CPU_SECONDS: u64 = 60;
const COMPILE_MEMORY: u64 = 2 << 30;
const COMPILE_FILE_SIZE: u64 = 256 << 20;
const COMPILE_OUTPUT_CAP: usize = 64 * 1024;

/// What compiling produced.
pub enum Built {
    /// The module's shared library is in the output folder.
    Compiled,
    /// The compiler refused the file: its messages, with the scratch folder's path left out.
    Rejected(String),
}

/// Compiles `source` into `out_dir` as the extension module `module` for `python`.
pub fn build(python: &Python, source: &Path, module: &str, out_dir: &Path) -> Result<Built> {
    let paths = HeaderPaths::of(python)?;
    let compiler = compiler()?;
    let library = out_dir.join(format!("{module}{}", paths.suffix));
    let mut command = Command::new(&compiler);
    command.args(["-shared", "-fPIC", "-O0", "-g", "-Wall"]);
    for dir in &paths.include_dirs {
        command.arg("-I").arg(dir);
    }
    // Its temporary files go in the scratch folder too: a compiler stopped at its limit
    // cannot leave them in /tmp.
    command
        .arg("-o")
        .arg(&library)
        .arg(source)
        .env("TMPDIR", out_dir);
    let limits = [
        (libc::RLIMIT_CPU, COMPILE_CPU_SECONDS),
        (libc::RLIMIT_AS, COMPILE_MEMORY),
        (libc::RLIMIT_FSIZE, COMPILE_FILE_SIZE),
    ];
    // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            for (resource, value) in limits {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let output = processes::output(&mut command, COMPILE_TIME, COMPILE_OUTPUT_CAP)
        .with_context(|| format!("cannot run the C compiler {}", compiler.display()))?;
    // They quote the learner's file, whatever it holds.
    let messages = crate::printable::lines(String::from_utf8_lossy(&output.stderr).trim_end());
    use processes::Stopped;
    match (output.stopped, output.status) {
        (None, status) if status.success() => Ok(Built::Compiled),
        (None, status) if status.code().is_some() => Ok(Built::Rejected(messages)),
        (Some(Stopped::OutputCap), _) => Ok(Built::Rejected(format!(
            "{messages}\n… the compiler had more to say, and was stopped: fix these first"
        ))),
        (stopped, _) => {
            let why = if stopped == Some(Stopped::TimeLimit) {
                format!("did not finish within {} s", COMPILE_TIME.as_secs())
            } else {
                format!(
                    "was stopped ({} s of CPU, {} GiB of memory and {} MiB per file are its \
                     limits)",
                    COMPILE_CPU_SECONDS,
                    COMPILE_MEMORY >> 30,
                    COMPILE_FILE_SIZE >> 20
                )
            };
            Ok(Built::Rejected(format!(
                "the C compiler {why}: does the file #include something that never ends, \
                 such as a pipe or a device?\n{messages}"
            )))
        }
    }
}

/// Where `python`'s headers are, and the file suffix of its extension modules.
struct HeaderPaths {
    include_dirs: Vec<PathBuf>,
    suffix: String,
}

impl HeaderPaths {
    fn of(python: &Python) -> Result<HeaderPaths> {
        // The include folder, the platform one, and the include folder's parent: Debian's
        // `pyconfig.h` includes a multiarch copy kept beside it.
        let script = "import sysconfig\n\
                      p = sysconfig.get_paths()\n\
                      print(p['include']); print(p['platinclude'])\n\
                      print(sysconfig.get_config_var('EXT_SUFFIX'))";
        let output = processes::output(
            Command::new(&python.executable)
                .args(["-I", "-S", "-c", script])
                .current_dir("/"),
            Duration::from_secs(30),
            64 * 1024,
        )
        .with_context(|| format!("cannot run {}", python.executable.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        ensure!(
            output.stopped.is_none() && output.status.success() && lines.len() == 3,
            "{} did not say where its C headers are (sysconfig)",
            python.executable.display()
        );
        let include = PathBuf::from(lines[0]);
        if !include.join("Python.h").is_file() {
            bail!(
                "the C headers of CPython {}.{} are not installed (no Python.h in {}). \
                 Install them: on Debian or Ubuntu `sudo apt install python{}.{}-dev`, on \
                 Fedora `sudo dnf install python3-devel`; pyenv and python.org builds have \
                 them. Or pick an interpreter that has them with --python.",
                python.version.0,
                python.version.1,
                include.display(),
                python.version.0,
                python.version.1
            );
        }
        let mut include_dirs = vec![include.clone(), PathBuf::from(lines[1])];
        include_dirs.extend(include.parent().map(Path::to_owned));
        include_dirs.dedup();
        Ok(HeaderPaths {
            include_dirs,
            suffix: lines[2].to_owned(),
        })
    }
}

/// `$CC`, else the first of `cc`, `gcc` and `clang` on `PATH`.
fn compiler() -> Result<PathBuf> {
    let chosen = std::env::var_os("CC").filter(|cc| !cc.is_empty());
    let candidates: Vec<PathBuf> = match &chosen {
        Some(cc) => vec![PathBuf::from(cc)],
        None => ["cc", "gcc", "clang"].iter().map(PathBuf::from).collect(),
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for candidate in &candidates {
        if candidate.components().count() > 1 {
            if candidate.is_file() {
                return Ok(candidate.clone());
            }
            continue;
        }
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(candidate))
            .find(|found| found.is_file())
        {
            return Ok(found);
        }
    }
    let looked = match &chosen {
        Some(cc) => format!("CC is {}, which is not there", cc.to_string_lossy()),
        None => "looked for cc, gcc and clang on PATH".to_owned(),
    };
    bail!(
        "no C compiler found ({looked}). Install one: on Debian or Ubuntu `sudo apt install \
         gcc`, on Fedora `sudo dnf install gcc`, on macOS `xcode-select --install`; or set CC \
         to a compiler"
    )
}
