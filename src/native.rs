//! The native module the CLI carries, made importable for the interpreter it runs.
//!
//! `hashtable` (the raw-FFI type, the fault switchboard, the trace emitter: `native/`, built
//! by build.rs for CPython's stable ABI, also importable as `_labtrace`) and the `lab` probes
//! (`native/lab.py`) are compiled into this binary as bytes. [`install`] writes them into a
//! new private scratch folder (`scratch.rs`) for each command, so the folder holds exactly
//! these files, written from this binary's bytes: nothing planted beside them can be
//! imported, and nothing can change them between a check and the import.

use crate::scratch::ScratchDir;
use anyhow::Result;

const HASHTABLE: &[u8] = include_bytes!(env!("REFCOUNT_LAB_NATIVE_MODULE"));
const LAB: &[u8] = include_bytes!("../native/lab.py");

/// The script a run's interpreter starts with (`runner.rs`). Run as a file, not with `-c`:
/// `sys.path[0]` is then this private folder, where `-c` would put the current folder,
/// from which Python (3.14 imports `linecache` at start-up) could import another user's
/// module. The collector stays off until the script starts (`lab._run_main` turns it on),
/// so the first collection happens in the script, at a point that does not move when lab's
/// own code changes: a dangling pointer a collection trips over (lesson 17) trips where the
/// learner can see it.
pub const LAUNCHER: &str = "refcount_lab_launch.py";
const LAUNCHER_SOURCE: &[u8] = b"import gc; gc.disable(); import lab; lab._run_main()\n";

/// The files of the module folder: name and contents. `.abi3.so` is the suffix every CPython
/// (but free-threaded ones) accepts for a stable-ABI extension.
const FILES: [(&str, &[u8]); 3] = [
    ("hashtable.abi3.so", HASHTABLE),
    ("lab.py", LAB),
    (LAUNCHER, LAUNCHER_SOURCE),
];
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
    dir.link(name, target)?;
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
        assert_eq!(
            names,
            [
                "_labtrace.abi3.so",
                "hashtable.abi3.so",
                "lab.py",
                "refcount_lab_launch.py"
            ]
        );
        assert_eq!(
            std::fs::read(dir.path().join("_labtrace.abi3.so")).unwrap(),
            HASHTABLE
        );
    }
}
