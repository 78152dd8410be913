//! The native module the CLI carries, made importable for the interpreter it runs.
//!
//! `hashtable` (the raw-FFI type, the fault switchboard, the trace emitter: `native/`, built
//! by build.rs for CPython's stable ABI, also importable as `_labtrace`) and the `lab` probes
//! (`native/lab.py`) are compiled into this binary as bytes. [`install`] writes them into a
//! new private scratch folder (`scratch.rs`) for each command, so the folder holds exactly
//! these files, written from this binary's bytes: nothing planted beside them can be
//! imported, and nothing can change them between a check and the import.

use crate::scratch::ScratchDir;
use anyhow::{Context, Result};

const HASHTABLE: &[u8] = include_bytes!(env!("REFCOUNT_LAB_NATIVE_MODULE"));
const LAB: &[u8] = include_bytes!("../native/lab.py");

/// The files of the module folder: name and contents. `.abi3.so` is the suffix every CPython
/// (but free-threaded ones) accepts for a stable-ABI extension.
const FILES: [(&str, &[u8]); 2] = [("hashtable.abi3.so", HASHTABLE), ("lab.py", LAB)];
/// `_labtrace` (the lab probes' trace emitter) is the same library under a second name: a
/// symbolic link, so that both modules live in one loaded copy and share one trace sink.
const LAB_TRACE_LINK: (&str, &str) = ("_labtrace.abi3.so", "hashtable.abi3.so");

/// A new module folder holding the module's files, removed when dropped.
pub fn install() -> Result<ScratchDir> {
    let dir = ScratchDir::new()?;
    for (name, contents) in FILES {
        dir.write(name, contents)?;
    }
    let (name, target) = LAB_TRACE_LINK;
    let link = dir.path().join(name);
    std::os::unix::fs::symlink(target, &link)
        .with_context(|| format!("cannot link {} to {target}", link.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_holds_exactly_the_module() {
        let dir = install().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["_labtrace.abi3.so", "hashtable.abi3.so", "lab.py"]);
        assert_eq!(
            std::fs::read(dir.path().join("_labtrace.abi3.so")).unwrap(),
            HASHTABLE
        );
    }
}
