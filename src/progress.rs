//! The learner's workshop progress: one small JSON file under the XDG state directory
//! (`$XDG_STATE_HOME/refcount-lab/progress.json`, else `~/.local/state/…`;
//! `REFCOUNT_LAB_STATE_DIR` overrides the folder). This module is its only reader and writer.
//!
//! Commands that change it go through `Progress::update`, which holds an exclusive lock
//! (flock(2) on `progress.lock` beside it) from reading the file to writing it back: two
//! commands at once both count, neither overwrites what the other saved. Each write goes to
//! a file in a new private folder beside it (`scratch.rs`: nothing already there, such as a
//! symlink, is ever followed), is flushed to disk, then renamed over the old file: a reader
//! (say, `exercises` beside a running `verify --watch`) sees the old file or the new one,
//! never an empty or half-written one. A failed write, or an interrupt, removes that folder
//! with what it holds. A file that cannot be read is never deleted: `reset` moves it aside.
//!
//! The progress file names a folder whose scripts `verify` runs, so it is trusted only in
//! a state folder of the user's own that no other user may change (nor any folder above
//! it but through the sticky bit, as `scratch.rs` checks its folders), and only if it is
//! the user's own file; `exercises::workdir` checks the folder it names the same way.

use crate::scratch::ScratchDir;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The folder `exercises init` filled with exercise files.
    pub workdir: Option<PathBuf>,
    /// Names of the exercises `verify` has seen done.
    pub done: BTreeSet<String>,
    /// Per exercise done, the stamp of what passed (file, interpreter, build): unchanged,
    /// it is not checked again.
    #[serde(default)]
    pub passed: BTreeMap<String, String>,
}

const FILE: &str = "progress.json";
const LOCK: &str = "progress.lock";

const RESET_ADVICE: &str = "`refcount-lab exercises --reset` moves it aside and starts over";
/// What to do when the state folder cannot be read or written.
const FOLDER_ADVICE: &str = "free space or fix permissions there, or set REFCOUNT_LAB_STATE_DIR \
                             to a folder only you can change";

/// The folder holding the progress file and its lock.
fn state_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("REFCOUNT_LAB_STATE_DIR") {
        Ok(PathBuf::from(dir))
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Ok(PathBuf::from(state).join("refcount-lab"))
    } else {
        let home = std::env::var_os("HOME")
            .context("cannot find a state folder: set XDG_STATE_HOME or HOME")?;
        Ok(PathBuf::from(home).join(".local/state/refcount-lab"))
    }
}

impl Progress {
    /// The saved progress, or none yet. To change it, use `update`.
    pub fn load() -> Result<Progress> {
        let dir = state_dir()?;
        match std::fs::metadata(&dir) {
            // Nothing saved yet (`lock` makes the folder, private, for the first save).
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Progress::default()),
            _ => check_state_dir(&dir)?,
        }
        load_from(&dir)
    }

    /// Reads the progress, applies `change` and saves it, all under the lock: a command
    /// changing it at the same time waits, and keeps this change. `change` should be quick.
    pub fn update(change: impl FnOnce(&mut Progress)) -> Result<()> {
        Progress::update_with(|progress| {
            change(progress);
            Ok(())
        })
    }

    /// `update` with a change that may fail, in which case nothing is saved.
    pub fn update_with<T>(change: impl FnOnce(&mut Progress) -> Result<T>) -> Result<T> {
        update_in(&state_dir()?, change)
    }

    /// `update`, or says on stderr that it could not: results already shown stand either way.
    pub fn update_or_warn(change: impl FnOnce(&mut Progress)) {
        if let Err(error) = Progress::update(change) {
            eprintln!("refcount-lab: warning: your progress was not saved: {error:#}");
        }
    }

    /// Starts over: no exercise done. A readable file keeps its exercise folder; anything
    /// else in its place (a damaged file, a folder) is moved aside, not deleted. Says what
    /// it did.
    pub fn reset() -> Result<String> {
        let dir = state_dir()?;
        let _lock = lock(&dir)?;
        let path = dir.join(FILE);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Ok("Nothing to reset: no progress was saved yet.".into())
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot look at {}", path.display()))
            }
        };
        if metadata.is_file() {
            if let Ok(mut progress) = load_from(&dir) {
                progress.done.clear();
                progress.passed.clear();
                progress.save_in(&dir)?;
                return Ok("Progress reset: every exercise is to do again.".into());
            }
        }
        let what = if metadata.is_dir() {
            "was a folder"
        } else if metadata.uid() != my_uid() {
            "was not yours"
        } else {
            "could not be read"
        };
        let aside = move_aside(&path)?;
        Ok(format!(
            "{} {what}; moved it to {}. No exercise is done, and no exercise folder is \
             known: `refcount-lab exercises init DIR --resume` picks up your folder again (or \
             without --resume, makes a new one).",
            path.display(),
            aside.display()
        ))
    }

    /// Writes the progress file in `dir` through a folder of its own beside it; the caller
    /// holds the lock.
    fn save_in(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let text = serde_json::to_string_pretty(self)?;
        let scratch = ScratchDir::new_in(dir)
            .with_context(|| format!("cannot save your progress; {FOLDER_ADVICE}"))?;
        // Flushed to disk before the rename, so that a crash leaves the old file or the new
        // one, not an empty one.
        let written = scratch.hand_over(|scratch| {
            let temporary = scratch.join(FILE);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        });
        written.with_context(|| format!("cannot write {}; {FOLDER_ADVICE}", path.display()))
    }
}

fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// Refuses a state folder (`dir`, which exists) that is not the user's, or that another
/// user may change, it or a folder above it (see `scratch::shared_folder`): they could put
/// a progress file there naming a folder of theirs, whose scripts `verify` would run as the
/// user. Something else in its place is left to fail on use, with the system's reason.
fn check_state_dir(dir: &Path) -> Result<()> {
    let metadata = std::fs::metadata(dir)
        .with_context(|| format!("cannot open {}; {FOLDER_ADVICE}", dir.display()))?;
    if !metadata.is_dir() {
        return Ok(());
    }
    const WHY: &str = "so one of them could put a progress file there that has refcount-lab \
                       run their scripts as you";
    if let Some(shared) = crate::scratch::shared_folder(dir, true)? {
        bail!(
            "cannot keep your progress in {}: {shared}, {WHY}. Set REFCOUNT_LAB_STATE_DIR to a \
             folder only you can change (or if that folder is yours, take write access from \
             the others: chmod go-w)",
            dir.display()
        );
    }
    if metadata.uid() != my_uid() {
        bail!(
            "cannot keep your progress in {}: it is not yours (owner uid {}), {WHY}. Set \
             REFCOUNT_LAB_STATE_DIR to a folder only you can change",
            dir.display(),
            metadata.uid()
        );
    }
    Ok(())
}

fn load_from(dir: &Path) -> Result<Progress> {
    let path = dir.join(FILE);
    match read_regular(&path, PROGRESS_CAP, "a progress file") {
        Ok((_, metadata)) if metadata.uid() != my_uid() => bail!(
            "{} is not yours (owner uid {}): it may name a folder of someone else's, whose \
             scripts refcount-lab would run as you; {RESET_ADVICE}",
            path.display(),
            metadata.uid()
        ),
        Ok((bytes, _)) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is damaged; {RESET_ADVICE}", path.display())),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Progress::default()),
        Err(error) => {
            // Reset moves a folder in the file's place aside; other reasons are the folder's.
            let advice = match error.kind() {
                // A folder, a link, a pipe or a huge file in its place: not a progress file.
                ErrorKind::IsADirectory | ErrorKind::Other => RESET_ADVICE,
                _ => FOLDER_ADVICE,
            };
            Err(error).with_context(|| format!("cannot read {}; {advice}", path.display()))
        }
    }
}

fn update_in<T>(dir: &Path, change: impl FnOnce(&mut Progress) -> Result<T>) -> Result<T> {
    let _lock = lock(dir)?;
    let mut progress = load_from(dir)?;
    let changed = change(&mut progress)?;
    progress.save_in(dir)?;
    Ok(changed)
}

/// Takes the lock on the progress in `dir` (made if missing, private), waiting for whoever
/// holds it (and saying so once on stderr); dropping the file lets go.
fn lock(dir: &Path) -> Result<File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}; {FOLDER_ADVICE}", dir.display()))?;
    check_state_dir(dir)?;
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open {}; {FOLDER_ADVICE}", path.display()))?;
    // First without waiting, to say why nothing happens while another command holds it.
    let mut how = libc::LOCK_EX | libc::LOCK_NB;
    loop {
        // SAFETY: flock reads only its two integer arguments; the descriptor is `file`'s,
        // open for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(file);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) if how & libc::LOCK_NB != 0 => {
                eprintln!(
                    "refcount-lab: waiting for another refcount-lab to finish with the \
                     progress file…"
                );
                how = libc::LOCK_EX;
            }
            Some(libc::EINTR) => {}
            _ => {
                return Err(error)
                    .with_context(|| format!("cannot lock {}; {FOLDER_ADVICE}", path.display()))
            }
        }
    }
}

/// Renames `path` to the first free `path.damaged`, `path.damaged.2`, …
fn move_aside(path: &Path) -> Result<PathBuf> {
    let aside = (1..)
        .map(|n| match n {
            1 => path.with_extension("json.damaged"),
            n => path.with_extension(format!("json.damaged.{n}")),
        })
        .find(|candidate| std::fs::symlink_metadata(candidate).is_err())
        .expect("some name is free");
    std::fs::rename(path, &aside)
        .with_context(|| format!("cannot move {} aside", path.display()))?;
    Ok(aside)
}

/// The most a progress file may hold (a real one is a few hundred bytes).
const PROGRESS_CAP: u64 = 1024 * 1024;

/// A progress file's text (the learner's own, or one handed in): see [`read_regular`].
pub fn read_bounded(path: &Path) -> std::io::Result<String> {
    let (bytes, _) = read_regular(path, PROGRESS_CAP, "a progress file")?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8")
    })
}

/// The bytes of a file refcount-lab reads itself (a progress file, an exercise file), and
/// what `fstat` said of it: only a regular file (not a pipe that would hang the reader or
/// a device that never ends, not a symbolic link, which is not followed), of at most `cap`
/// bytes; `what` names such a file in the error for a larger one ("a progress file").
/// The errors read after "… is": "a symbolic link, not followed", "not a regular file (a
/// pipe or a device?)", "N bytes, more than a progress file holds"; a folder is `EISDIR`.
pub fn read_regular(
    path: &Path,
    cap: u64,
    what: &str,
) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("a symbolic link, not followed"),
            _ => error,
        })?;
    let metadata = file.metadata()?;
    if metadata.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !metadata.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a pipe or a device?)",
        ));
    }
    if metadata.len() > cap {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than {what} holds",
            metadata.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(cap).read_to_end(&mut bytes)?;
    Ok((bytes, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh state folder for one test, removed at the end.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let dir = std::env::temp_dir().join(format!(
                "refcount-lab-progress-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn concurrent_updates_all_count_and_readers_see_whole_files() {
        const THREADS: usize = 8;
        const EACH: usize = 25;
        let folder = Folder::new("concurrent");
        let dir = folder.0.as_path();
        let mut reads = 0;
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    scope.spawn(move || {
                        for n in 0..EACH {
                            update_in(dir, |progress| {
                                progress.done.insert(format!("{thread}-{n}"));
                                Ok(())
                            })
                            .unwrap();
                        }
                    })
                })
                .collect();
            while writers.iter().any(|writer| !writer.is_finished()) {
                load_from(dir).expect("a reader saw an empty or partial file");
                reads += 1;
            }
        });
        assert!(reads > 0);
        assert_eq!(load_from(dir).unwrap().done.len(), THREADS * EACH);
        assert_eq!(folder.names(), [FILE, LOCK], "no temporary file is left");
    }

    #[test]
    fn a_failed_save_says_why_and_leaves_no_temporary_file() {
        let folder = Folder::new("failed");
        let dir = folder.0.as_path();
        std::fs::create_dir_all(dir.join(FILE).join("inside")).unwrap();
        let error = format!("{:#}", Progress::default().save_in(dir).unwrap_err());
        assert!(error.contains("cannot write"), "{error}");
        assert!(
            error.contains("Is a directory"),
            "the system's reason: {error}"
        );
        assert!(
            error.contains("REFCOUNT_LAB_STATE_DIR"),
            "what to do: {error}"
        );
        assert_eq!(folder.names(), [FILE]);
    }
}
