//! Files written where the user says (`bench --csv` and `--plot`, `hunt --plot`,
//! `exercises --export`): never through a symbolic link (in a folder others can write to,
//! one could point at a file of yours), never in a folder another user may change (they
//! could swap it, or one above it, for a link), never into a pipe or a device (which could
//! hold the command for good), and checked before the work whose result they hold, so that
//! a path that cannot be written costs nothing.

use crate::scratch;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Refuses `path` now if writing it later would fail: its folder missing, or a link, a
/// folder, a pipe or a device in its place.
pub fn check(path: &Path) -> Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist (create it, or name another)",
            crate::printable::path(path),
            crate::printable::path(folder)
        );
    }
    // The file is opened without following a link, but a folder on its way could be
    // swapped for a link to a folder of yours between this check and the write.
    if let Some(why) = swappable(folder)? {
        bail!(
            "cannot write {}: {}, so one of them could point it at a folder of yours \
             (write into a folder only you can change)",
            crate::printable::path(path),
            crate::printable::one_line(&why)
        );
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => bail!(
            "cannot write {}: it is a symbolic link, not followed (remove it, or name another \
             file)",
            crate::printable::path(path)
        ),
        Ok(meta) if !meta.is_file() => bail!(
            "cannot write {}: it is not a plain file (name another)",
            crate::printable::path(path)
        ),
        _ => Ok(()),
    }
}

/// Why another user could redirect what is written in `folder`, if they could: a link on
/// the way to it that they could re-point (see [`scratch::foreign_link`]), or a folder on
/// its real path they may change.
fn swappable(folder: &Path) -> Result<Option<String>> {
    if let Some(link) = scratch::foreign_link(folder)? {
        return Ok(Some(link));
    }
    Ok(scratch::shared_folder(folder, false)?.map(|shared| shared.to_string()))
}

/// Makes `folder` and what is missing above it, for files written there later: once the
/// folder it is made in is one no other user could redirect (see [`check`]). Each missing
/// folder is made one at a time, and one that is there already (made meanwhile, perhaps as
/// a link) is checked again before anything is made in it.
pub fn make_folder(folder: &Path) -> Result<()> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "cannot create {}: {}, so one of them could point it at a folder of yours (write \
             into a folder only you can change)",
            crate::printable::path(folder),
            crate::printable::one_line(&why)
        )
    };
    let missing: Vec<&Path> = folder
        .ancestors()
        .filter(|above| !above.as_os_str().is_empty())
        .take_while(|above| std::fs::symlink_metadata(above).is_err())
        .collect();
    let existing = folder
        .ancestors()
        .nth(missing.len())
        .filter(|above| !above.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(why) = swappable(existing)? {
        return Err(refuse(why));
    }
    for step in missing.into_iter().rev() {
        match std::fs::create_dir(step) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Some(why) = swappable(step)? {
                    return Err(refuse(why));
                }
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot create {}", crate::printable::path(step)))
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path`, a plain file, made or replaced.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("it is a symbolic link, not followed"),
            // A pipe no one reads, opened without waiting for a reader.
            Some(libc::ENXIO) => std::io::Error::other("it is not a plain file"),
            _ => error,
        })
        .and_then(|mut file| {
            // Checked on what was opened: the name may have changed since `check`.
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("it is not a plain file"));
            }
            file.set_len(0)?;
            file.write_all(bytes)
        });
    written.with_context(|| format!("cannot write {}", crate::printable::path(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    #[test]
    fn links_pipes_and_missing_folders_are_refused_plain_files_replaced() {
        let scratch = ScratchDir::new().unwrap();
        let file = scratch.path().join("out.csv");
        check(&file).unwrap();
        write(&file, b"a long first text").unwrap();
        write(&file, b"short").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"short");

        let link = scratch.path().join("link.csv");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for error in [check(&link).unwrap_err(), write(&link, b"x").unwrap_err()] {
            assert!(format!("{error:#}").contains("symbolic link"), "{error:#}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"short");

        let pipe = scratch.path().join("pipe.csv");
        let name = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path of ours.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(format!("{:#}", check(&pipe).unwrap_err()).contains("not a plain file"));
        // With no reader, opening it does not wait for one.
        let error = write(&pipe, b"x").unwrap_err();
        assert!(
            format!("{error:#}").contains("not a plain file"),
            "{error:#}"
        );

        let missing = scratch.path().join("no/such/out.csv");
        assert!(format!("{:#}", check(&missing).unwrap_err()).contains("does not exist"));
    }

    /// A folder others may write in (without the sticky bit) could be swapped for a link
    /// after the check: refused; one with it (as `/tmp`) is not.
    #[test]
    fn a_folder_others_may_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = ScratchDir::new().unwrap();
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = format!("{:#}", check(&open.join("plot.svg")).unwrap_err());
        assert!(error.contains("can be changed by other users"), "{error}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check(&open.join("plot.svg")).unwrap();
        // A link of one's own in a folder only one may change is followed; the same link
        // in a folder others may write in is not (they could re-point it).
        let mine = scratch.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        let link = scratch.path().join("to-mine");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        check(&link.join("plot.svg")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let shared_link = open.join("to-mine");
        std::os::unix::fs::symlink(&mine, &shared_link).unwrap();
        let error = format!("{:#}", check(&shared_link.join("plot.svg")).unwrap_err());
        assert!(error.contains("the link"), "{error}");
        // Nor through a link of one's own that leads to that one.
        let hop = scratch.path().join("hop");
        std::os::unix::fs::symlink(&shared_link, &hop).unwrap();
        let error = format!("{:#}", check(&hop.join("plot.svg")).unwrap_err());
        assert!(error.contains("the link"), "{error}");
        // A folder to make there is refused before it is made.
        let error = format!("{:#}", make_folder(&hop.join("plots")).unwrap_err());
        assert!(error.contains("cannot create"), "{error}");
        assert!(!mine.join("plots").exists());
        make_folder(&link.join("plots")).unwrap();
        assert!(mine.join("plots").is_dir());
    }
}
