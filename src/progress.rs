//! The learner's workshop progress: one small JSON file under the XDG state directory
//! (`$XDG_STATE_HOME/refcount-lab/progress.json`, else `~/.local/state/…`;
//! `REFCOUNT_LAB_STATE_DIR` overrides the folder). This module is its only reader and writer.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The folder `exercises init` filled with exercise files.
    pub workdir: Option<PathBuf>,
    /// Names of the exercises `verify` has seen done.
    pub done: BTreeSet<String>,
}

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
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged; `refcount-lab exercises --reset` starts over",
                    path.display()
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> Result<()> {
        let path = state_file()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}
