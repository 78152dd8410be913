//! The learner's workshop progress: one small JSON file under the XDG state directory
//! (`$XDG_STATE_HOME/refcount-lab/progress.json`, else `~/.local/state/…`;
//! `REFCOUNT_LAB_STATE_DIR` overrides the folder). This module is its only reader and writer.
//!
//! Writes go to a temporary file that is then renamed over the old one, so a reader (say,
//! `exercises` beside a running `verify --watch`) sees the old file or the new one, never a
//! half-written one. A file that cannot be read is never deleted: `reset` moves it aside.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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

const RESET_ADVICE: &str = "`refcount-lab exercises --reset` moves it aside and starts over";

fn state_file() -> Result<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("REFCOUNT_LAB_STATE_DIR") {
        PathBuf::from(dir)
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(state).join("refcount-lab")
    } else {
        let home = std::env::var_os("HOME")
            .context("cannot find a state folder: set XDG_STATE_HOME or HOME")?;
        PathBuf::from(home).join(".local/state/refcount-lab")
    };
    Ok(dir.join("progress.json"))
}

impl Progress {
    /// The saved progress, or none yet.
    pub fn load() -> Result<Progress> {
        let path = state_file()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged; {RESET_ADVICE}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(error) => Err(error)
                .with_context(|| format!("cannot read {}; {RESET_ADVICE}", path.display())),
        }
    }

    pub fn save(&self) -> Result<()> {
        let path = state_file()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Saves, or says on stderr that it could not: results already shown stand either way.
    pub fn save_or_warn(&self) {
        if let Err(error) = self.save() {
            eprintln!("refcount-lab: warning: your progress was not saved: {error:#}");
        }
    }

    /// Starts over: no exercise done. A readable file keeps its exercise folder; anything
    /// else in its place (a damaged file, a folder) is moved aside, not deleted. Says what
    /// it did.
    pub fn reset() -> Result<String> {
        let path = state_file()?;
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok("Nothing to reset: no progress was saved yet.".into())
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot look at {}", path.display()))
            }
        };
        if metadata.is_file() {
            if let Ok(mut progress) = Progress::load() {
                progress.done.clear();
                progress.passed.clear();
                progress.save()?;
                return Ok("Progress reset: every exercise is to do again.".into());
            }
        }
        let what = if metadata.is_dir() {
            "was a folder"
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
