//! Private scratch folders: where lesson scripts, the harnesses of `hunt` and `bench`, the
//! learner's C module and the native module itself are written for a run.
//!
//! Each folder is new: made by `mkdtemp(3)` (a random name, created exclusively, mode
//! 0700), never reused, and removed when dropped, at an interrupt (`processes.rs`) or at
//! the end of the command. So nothing another local user planted can be in it, and a
//! child's current folder and `sys.path[0]` are folders only the user controls. They go in
//! `$XDG_RUNTIME_DIR` when it is the user's own, else in `$TMPDIR` (else `/tmp`), once
//! every folder above is checked: one that another user may change must be sticky
//! (`/tmp` is), or they could swap our folder for theirs. Files that belong in a folder of
//! the user's (the exercises, the progress file) are written in a hidden scratch folder
//! there instead ([`ScratchDir::new_in`]), and moved into place once whole.
//!
//! Nothing of a command runs after a SIGKILL to clean up, so it keeps each of its folders
//! locked (`flock` on the folder) while it lives; the first new folder of a later command
//! in `$TMPDIR`, and each new hidden one in a folder of the user's, removes the user's
//! folders there whose lock nobody holds any more.

use anyhow::{bail, Context, Result};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The scratch folders alive now, for [`remove_all`].
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A private scratch folder, removed when dropped; its lock held.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Held open, and so locked, for as long as the folder lives.
    _lock: std::fs::File,
}

/// The names of `$TMPDIR` scratch folders, locked while their command lives.
const PREFIX: &str = "refcount-lab-run-";
/// The names of hidden ones in a folder of the user's ([`ScratchDir::new_in`]), locked too:
/// plainly refcount-lab's half-written work, which no one names a folder of their own.
const HIDDEN_PREFIX: &str = ".refcount-lab-partial-";
/// Folders younger than this are never swept: one just made may not be locked yet.
const SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

impl ScratchDir {
    pub fn new() -> Result<ScratchDir> {
        let base = base()?;
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep(&base, PREFIX));
        ScratchDir::make(&base, PREFIX).with_context(|| {
            format!(
                "cannot create a scratch folder in {}; free some space there, or set TMPDIR \
                 to a folder of your own",
                base.display()
            )
        })
    }

    /// A new hidden scratch folder in `parent`, for files that belong there once they are
    /// whole: written here, then moved into place by [`ScratchDir::hand_over`]. The caller
    /// checks `parent`.
    pub fn new_in(parent: &Path) -> Result<ScratchDir> {
        sweep(parent, HIDDEN_PREFIX);
        ScratchDir::make(parent, HIDDEN_PREFIX)
            .with_context(|| format!("cannot create a temporary folder in {}", parent.display()))
    }

    /// Makes the folder and locks it (see the module's doc).
    fn make(base: &Path, prefix: &str) -> std::io::Result<ScratchDir> {
        // Held from mkdtemp until the folder is listed: an interrupt between the two would
        // leave it behind.
        let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let template = base.join(format!("{prefix}XXXXXX"));
        let template = CString::new(template.into_os_string().into_vec())
            .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
        let raw = template.into_raw();
        // SAFETY: `raw` is a NUL-terminated template of ours, which mkdtemp fills in.
        let made = unsafe { libc::mkdtemp(raw) };
        let error = std::io::Error::last_os_error();
        // SAFETY: `raw` came from `CString::into_raw` above and is taken back once.
        let path = unsafe { CString::from_raw(raw) };
        let path = PathBuf::from(OsString::from_vec(path.into_bytes()));
        if made.is_null() {
            return Err(error);
        }
        let lock = match try_lock(&path) {
            Ok(Some(lock)) => lock,
            failed => {
                let _ = std::fs::remove_dir_all(&path);
                return Err(failed.err().unwrap_or_else(|| {
                    std::io::Error::other("a new folder was locked by another process")
                }));
            }
        };
        live.push(path.clone());
        Ok(ScratchDir { path, _lock: lock })
    }

    /// Runs `finish` (which fills the folder and moves what it holds to where it belongs)
    /// while an interrupt cannot remove scratch folders: one that comes meanwhile waits for
    /// `finish` to end, and one that came before has removed the folder, so `finish` fails
    /// and moves nothing. `finish` must not make, write through ([`ScratchDir::write`])
    /// or drop a scratch folder: the lock is held.
    pub fn hand_over<T>(&self, finish: impl FnOnce(&Path) -> T) -> T {
        let _live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        finish(&self.path)
    }

    /// A new scratch folder holding one file, `name`, with `contents`.
    pub fn with_file(name: &str, contents: impl AsRef<[u8]>) -> Result<ScratchDir> {
        let scratch = ScratchDir::new()?;
        scratch.write(name, contents.as_ref())?;
        Ok(scratch)
    }

    /// Writes a new file `name` in the folder (never over an existing one).
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<()> {
        use std::io::Write;
        // An interrupt's removal waits for the file to be whole, and one that came before
        // has removed the folder, so the write fails: removal never races a write.
        let _live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.path.join(name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(contents));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&path);
            return Err(error).with_context(|| {
                format!(
                    "cannot write {} (free some space there, or set TMPDIR to another folder)",
                    path.display()
                )
            });
        }
        Ok(())
    }

    /// Makes `name` in the folder a symbolic link to `target`.
    pub fn link(&self, name: &str, target: &str) -> Result<()> {
        let _live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let link = self.path.join(name);
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("cannot link {} to {target}", link.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symbolic links inside the folder.
        let _ = std::fs::remove_dir_all(&self.path);
        let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|path| *path != self.path);
    }
}

/// Opens the folder `path` and locks it without waiting: `None` when another process
/// holds the lock.
fn try_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: flock on a descriptor `file` owns; it touches no memory of ours.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(None),
        _ => Err(error),
    }
}

/// Removes the user's scratch folders in `base` that a command stopped too hard to clean
/// up (SIGKILL) left behind: older than [`SWEEP_AGE`], with a lock nobody holds. Only
/// folders named with `prefix` ([`PREFIX`], [`HIDDEN_PREFIX`]) are locked by their
/// command, and looked at.
fn sweep(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        // Named as mkdtemp names them: the prefix, then six letters or digits.
        let name = entry.file_name();
        let made_by_mkdtemp = name
            .as_encoded_bytes()
            .strip_prefix(prefix.as_bytes())
            .is_some_and(|rest| rest.len() == 6 && rest.iter().all(u8::is_ascii_alphanumeric));
        if !made_by_mkdtemp {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let age = meta.modified().ok().and_then(|time| time.elapsed().ok());
        if !meta.is_dir() || meta.uid() != my_uid() || age.is_none_or(|age| age < SWEEP_AGE) {
            continue;
        }
        if let Ok(Some(_abandoned)) = try_lock(&path) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Removes every scratch folder alive (at an interrupt, just before exiting), and keeps
/// any from being made or written to until the exit.
pub fn remove_all() {
    let live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for path in live.iter() {
        let _ = std::fs::remove_dir_all(path);
    }
    std::mem::forget(live);
}

/// The folder scratch folders go in, as its real path (no link in it that another user
/// could re-point later): `$XDG_RUNTIME_DIR` when it is private and ours, else `$TMPDIR`
/// (when set to an absolute path) or `/tmp`, if no other user can swap what is made in it.
fn base() -> Result<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && is_private(dir))
        .and_then(|dir| check_ancestors(&dir, "from XDG_RUNTIME_DIR").ok());
    if let Some(dir) = runtime {
        return Ok(dir);
    }
    match std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
    {
        Some(dir) => check_ancestors(&dir, "from TMPDIR"),
        None => check_ancestors(Path::new("/tmp"), "the default"),
    }
}

fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// A folder (not a link) of ours that no one else may enter.
fn is_private(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == my_uid() && meta.mode() & 0o077 == 0)
}

/// The real path of `dir`, refused if it, or a folder above it, may be changed by another
/// user (but root) without the sticky bit that keeps them from renaming what is ours.
/// `source` says where it came from, for the error.
fn check_ancestors(dir: &Path, source: &str) -> Result<PathBuf> {
    let context = || {
        format!(
            "cannot use the temporary folder {} ({source}); set TMPDIR to a folder of your own",
            dir.display()
        )
    };
    let real = dir.canonicalize().with_context(context)?;
    let shared = shared_folder(&real, false).with_context(context)?;
    if let Some(shared) = shared {
        bail!(
            "{shared}: one of them could swap refcount-lab's private folders there for their \
             own. Set TMPDIR to a folder only you can change"
        );
    }
    Ok(real)
}

/// A folder other users may change (see [`shared_folder`]).
#[derive(Debug)]
pub struct Shared {
    folder: PathBuf,
    uid: u32,
    mode: u32,
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sticky = if self.mode & 0o1000 == 0 {
            ", no sticky bit"
        } else {
            ""
        };
        write!(
            f,
            "{} can be changed by other users (owner uid {}, mode {:o}{sticky})",
            self.folder.display(),
            self.uid,
            self.mode & 0o7777
        )
    }
}

/// The first of `dir` (its real path) and the folders above it that another user (but
/// root) may change: one they own, or one their group or anyone may write in. Above `dir`
/// the sticky bit makes a folder of root's or ours that others may write in safe (it keeps
/// them from renaming what is ours; not its owner); for
/// `dir` itself too unless `with_its_files`, when adding files to it is change enough.
pub fn shared_folder(dir: &Path, with_its_files: bool) -> Result<Option<Shared>> {
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot find {}", dir.display()))?;
    for folder in real.ancestors() {
        let meta = std::fs::metadata(folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        let mode = meta.permissions().mode();
        // Its owner may rename anything in it, the sticky bit notwithstanding.
        let owned_by_another = meta.uid() != my_uid() && meta.uid() != 0;
        let sticky_protects = mode & 0o1000 != 0 && !(with_its_files && folder == real);
        if owned_by_another || (mode & 0o022 != 0 && !sticky_protects) {
            return Ok(Some(Shared {
                folder: folder.to_owned(),
                uid: meta.uid(),
                mode,
            }));
        }
    }
    Ok(None)
}

/// The most links followed on one path (the kernel's own limit is 40).
const MOST_LINKS: usize = 40;

/// A link on the way to `path` (as given, and on through each link's target) that another
/// user could re-point: theirs, or in a folder they may change. Checking the real path
/// alone ([`shared_folder`]) misses it.
pub fn foreign_link(path: &Path) -> Result<Option<String>> {
    // SAFETY: getuid cannot fail and has no preconditions.
    let me = unsafe { libc::getuid() };
    let given = path;
    let mut path = std::path::absolute(given)
        .with_context(|| format!("cannot find {}", crate::printable::path(given)))?;
    let mut links = 0;
    'walk: loop {
        let mut walked = PathBuf::new();
        for (index, part) in path.components().enumerate() {
            walked.push(part);
            let Ok(meta) = std::fs::symlink_metadata(&walked) else {
                break 'walk;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            if meta.uid() != me && meta.uid() != 0 {
                return Ok(Some(format!(
                    "{} is a link of another user's (owner uid {})",
                    walked.display(),
                    meta.uid()
                )));
            }
            let parent = walked.parent().unwrap_or(Path::new("/"));
            if let Some(shared) = shared_folder(parent, false)? {
                return Ok(Some(format!(
                    "the link {} is in {shared}",
                    walked.display()
                )));
            }
            links += 1;
            if links > MOST_LINKS {
                bail!("{}: too many links", crate::printable::path(given));
            }
            // On through the link's target, then what is left of the path.
            let target = std::fs::read_link(&walked)
                .with_context(|| format!("cannot read the link {}", walked.display()))?;
            let mut next = parent.join(target);
            next.extend(path.components().skip(index + 1));
            path = std::path::absolute(next)?;
            continue 'walk;
        }
        break;
    }
    Ok(None)
}

/// Why a file refcount-lab would run as the user may hold another user's code, if it may:
/// it is not theirs, or their group or anyone may write to it (a shared group and a umask
/// of 002 are enough).
pub fn foreign_file(metadata: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail and has no preconditions.
    let me = unsafe { libc::getuid() };
    if metadata.uid() != me {
        Some(format!("is not yours (owner uid {})", metadata.uid()))
    } else if metadata.mode() & 0o022 != 0 {
        Some(format!(
            "can be changed by other users (mode {:o})",
            metadata.mode() & 0o777
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_folder_is_new_private_and_removed() {
        let first = ScratchDir::new().unwrap();
        let second = ScratchDir::new().unwrap();
        assert_ne!(first.path(), second.path());
        assert!(first.path().starts_with(base().unwrap()));
        let meta = std::fs::symlink_metadata(first.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        first.write("a.py", b"x").unwrap();
        assert!(
            first.write("a.py", b"y").is_err(),
            "never over an existing file"
        );
        let path = first.path().to_owned();
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn a_folder_made_in_place_is_hidden_and_one_an_interrupt_removes() {
        let parent = ScratchDir::new().unwrap();
        let scratch = ScratchDir::new_in(parent.path()).unwrap();
        assert_eq!(scratch.path().parent(), Some(parent.path()));
        let name = scratch.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".refcount-lab-partial-"), "{name}");
        let live = || LIVE.lock().unwrap().contains(&scratch.path().to_owned());
        assert!(live(), "remove_all (an interrupt) removes it");
        // While it hands over, an interrupt's removal waits for the lock.
        assert!(scratch.hand_over(|_| LIVE.try_lock().is_err()));
        let path = scratch.path().to_owned();
        drop(scratch);
        assert!(!path.exists());
    }

    /// Makes `folder` older than the sweep's age.
    fn backdate(folder: &Path) {
        let touched = std::process::Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(folder)
            .status()
            .unwrap();
        assert!(touched.success());
    }

    /// A hidden folder that a SIGKILL left in a folder of the user's (a progress save cut
    /// short) goes with the next one made there; one its command still holds stays.
    #[test]
    fn a_hidden_folder_a_sigkill_left_goes_when_the_next_is_made_there() {
        let parent = ScratchDir::new().unwrap();
        let left = parent.path().join(".refcount-lab-partial-cutOff");
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("progress.json"), "{}").unwrap();
        let held = ScratchDir::new_in(parent.path()).unwrap();
        backdate(&left);
        backdate(held.path());
        let _next = ScratchDir::new_in(parent.path()).unwrap();
        assert!(!left.exists(), "what the SIGKILL left is removed");
        assert!(held.path().exists(), "what a live command holds stays");
        // A folder of the user's that only begins the same way is not refcount-lab's.
        let theirs = [".refcount-lab-backup", ".refcount-lab-partial-notes"];
        for name in theirs {
            std::fs::create_dir(parent.path().join(name)).unwrap();
            backdate(&parent.path().join(name));
        }
        let _another = ScratchDir::new_in(parent.path()).unwrap();
        for name in theirs {
            assert!(
                parent.path().join(name).exists(),
                "the user's own {name} stays"
            );
        }
    }

    #[test]
    fn a_folder_others_may_change_without_the_sticky_bit_is_refused() {
        let scratch = ScratchDir::new().unwrap();
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_ancestors(&open.join("."), "from TMPDIR")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no sticky bit"), "{error}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_ancestors(&open, "from TMPDIR").unwrap();
        // Others may still add files to it, and to a folder of it that is not sticky.
        let shared = shared_folder(&open, true).unwrap().unwrap();
        assert!(shared.to_string().ends_with("mode 1777)"), "{shared}");
        std::fs::create_dir(open.join("mine")).unwrap();
        assert!(shared_folder(&open.join("mine"), true).unwrap().is_none());
    }

    #[test]
    fn a_linked_temporary_folder_is_used_by_its_real_path() {
        // Whoever owns the link may re-point it after the check; its target is what was
        // checked, so that is what is used.
        let scratch = ScratchDir::new().unwrap();
        let mine = scratch.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        let used = check_ancestors(&link, "from TMPDIR").unwrap();
        assert_eq!(used, mine.canonicalize().unwrap());
        assert!(!used.starts_with(&link));
    }
}
