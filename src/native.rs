//! The native module the CLI carries, made importable for the interpreter it runs.
//!
//! `hashtable` (the raw-FFI type, the fault switchboard, the trace emitter: `native/`, built
//! by build.rs for CPython's stable ABI, also importable as `_labtrace`) and the `lab` probes (`native/lab.py`) are compiled
//! into this binary as bytes. [`install`] writes them once into a folder of the user's own
//! cache (`$XDG_CACHE_HOME/refcount-lab/module-HASH/`, mode 0700, never a shared place such
//! as `/tmp`, where another local user could plant a library) and, before every use, checks
//! that each file still holds exactly the bytes this binary carries, rewriting it if not.
//! The folder then goes first on the child interpreter's `PYTHONPATH`.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const HASHTABLE: &[u8] = include_bytes!(env!("REFCOUNT_LAB_NATIVE_MODULE"));
const LAB: &[u8] = include_bytes!("../native/lab.py");

/// The files of the module folder: name and contents. `.abi3.so` is the suffix every CPython
/// (but free-threaded ones) accepts for a stable-ABI extension.
const FILES: [(&str, &[u8]); 2] = [("hashtable.abi3.so", HASHTABLE), ("lab.py", LAB)];
/// `_labtrace` (the lab probes' trace emitter) is the same library under a second name: a
/// symbolic link, so that both modules live in one loaded copy and share one trace sink.
const LAB_TRACE_LINK: (&str, &str) = ("_labtrace.abi3.so", "hashtable.abi3.so");
/// A hash of both (computed by build.rs): names the folder, so binaries carrying other
/// modules never share one.
const FINGERPRINT: &str = env!("REFCOUNT_LAB_NATIVE_FINGERPRINT");

/// The module folder, ready: created if needed, every file checked against this binary's.
pub fn install() -> Result<PathBuf> {
    install_into(&cache_home()?)
}

/// [`install`] under the cache folder `cache`.
fn install_into(cache: &Path) -> Result<PathBuf> {
    let base = cache.join("refcount-lab");
    private_dir(&base)?;
    let dir = base.join(format!("module-{FINGERPRINT}"));
    private_dir(&dir)?;
    for (name, contents) in FILES {
        let path = dir.join(name);
        if fs::read(&path).is_ok_and(|found| found == contents) {
            continue;
        }
        // Written beside the file and renamed over it, so a concurrent run never imports a
        // half-written library.
        let partial = dir.join(format!(".{name}.{}", std::process::id()));
        fs::write(&partial, contents)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, &path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
    }
    let (name, target) = LAB_TRACE_LINK;
    let link = dir.join(name);
    if fs::read_link(&link).ok().as_deref() != Some(Path::new(target)) {
        let partial = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = fs::remove_file(&partial);
        std::os::unix::fs::symlink(target, &partial)
            .and_then(|()| fs::rename(&partial, &link))
            .with_context(|| format!("cannot link {} to {target}", link.display()))?;
    }
    Ok(dir)
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
fn cache_home() -> Result<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    if let Some(dir) = xdg.filter(|dir| dir.is_absolute()) {
        return Ok(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cache")),
        _ => bail!(
            "neither XDG_CACHE_HOME nor HOME is set: refcount-lab keeps its Python module in \
             your cache folder; set XDG_CACHE_HOME to a folder of your own"
        ),
    }
}

/// Creates `dir` (mode 0700) or checks that the existing one is ours and closed to others.
fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        bail!(
            "{} belongs to another user (uid {}); refcount-lab loads a library from it and \
             will not trust it: remove it, or set XDG_CACHE_HOME to a folder of your own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o022 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_privately_and_repairs_a_changed_file() {
        let home = std::env::temp_dir().join(format!("refcount-lab-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        let dir = install_into(&home).unwrap();
        assert!(dir.starts_with(&home));
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let library = dir.join("hashtable.abi3.so");
        fs::write(&library, b"planted").unwrap();
        let link = dir.join(LAB_TRACE_LINK.0);
        fs::remove_file(&link).unwrap();
        fs::write(&link, b"planted").unwrap();
        install_into(&home).unwrap();
        assert_eq!(fs::read(&library).unwrap(), HASHTABLE);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(LAB_TRACE_LINK.1));
        fs::remove_dir_all(&home).unwrap();
    }
}
