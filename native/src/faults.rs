//! The fault switchboard: which refcounting mistakes the `hashtable` type makes in this process.
//!
//! This is the one process-wide setting of the module. It is read once, when the module is
//! first imported, and is read-only after that: from what `refcount-lab` handed over on its
//! key pipe for a run (`trace.rs`; comma-separated fault names, which the script cannot
//! read), else from `REFCOUNT_LAB_FAULTS` (what `refcount-lab python --fault NAME` sets for
//! an interpreter you drive yourself). Fault sites ask [`is_on`] with their own name and
//! take the faulty branch. The catalogue of faults (which lesson shows each, what it should
//! do) belongs to the CLI; a site is named only here, at the `if` that switches it.

use crate::trace;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable the switchboard is read from outside a run.
pub const FAULTS_ENV: &str = "REFCOUNT_LAB_FAULTS";

/// The faults switched on, each with how often its faulty branch has run.
static ACTIVE: OnceLock<Vec<(String, AtomicU64)>> = OnceLock::new();

/// Reads the switchboard; later calls change nothing.
pub fn install() {
    ACTIVE.get_or_init(|| {
        let listed = match trace::handed_faults() {
            Some(handed) => handed.to_owned(),
            None => std::env::var(FAULTS_ENV).unwrap_or_default(),
        };
        listed
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| (name.to_owned(), AtomicU64::new(0)))
            .collect()
    });
}

/// Is the fault named `name` switched on in this process? Asked at every fault site, which
/// takes its faulty branch when it is: that branch is counted, so that a report can tell a
/// fault that never ran from one whose damage went unseen (the first time, at once, in case
/// the run does not live to report the count).
pub fn is_on(name: &str) -> bool {
    let Some((_, ran)) = ACTIVE
        .get()
        .and_then(|active| active.iter().find(|(n, _)| n == name))
    else {
        return false;
    };
    if ran.fetch_add(1, Ordering::Relaxed) == 0 {
        trace::fault_ran(name);
    }
    true
}

/// Each fault switched on, with how often its faulty branch ran.
pub fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    ACTIVE
        .get()
        .into_iter()
        .flatten()
        .map(|(name, ran)| (name.as_str(), ran.load(Ordering::Relaxed)))
}
