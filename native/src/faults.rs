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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable the switchboard is read from outside a run.
pub const FAULTS_ENV: &str = "REFCOUNT_LAB_FAULTS";

/// A fault switched on: how often its faulty branch has run, and the last process that
/// said it ran (a fork inherits the count, and must say so too).
struct Active {
    name: String,
    ran: AtomicU64,
    said_in: AtomicU32,
}

/// The faults switched on.
static ACTIVE: OnceLock<Vec<Active>> = OnceLock::new();

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
            .map(|name| Active {
                name: name.to_owned(),
                ran: AtomicU64::new(0),
                said_in: AtomicU32::new(0),
            })
            .collect()
    });
}

/// Is the fault named `name` switched on in this process? Asked at every fault site, which
/// takes its faulty branch when it is: that branch is counted, so that a report can tell a
/// fault that never ran from one whose damage went unseen (the first time in each process,
/// at once, in case the run does not live to report the count).
pub fn is_on(name: &str) -> bool {
    let Some(fault) = ACTIVE
        .get()
        .and_then(|active| active.iter().find(|fault| fault.name == name))
    else {
        return false;
    };
    fault.ran.fetch_add(1, Ordering::Relaxed);
    let here = std::process::id();
    if fault.said_in.swap(here, Ordering::Relaxed) != here {
        trace::fault_ran(name);
    }
    true
}

/// In a forked child: says which faults ran before the fork, in this process's name. Their
/// damage came along (a table missing a reference), and it is this process that may crash
/// of it, where no fault site runs.
pub fn inherited() {
    let here = std::process::id();
    for fault in ACTIVE.get().into_iter().flatten() {
        if fault.ran.load(Ordering::Relaxed) > 0
            && fault.said_in.swap(here, Ordering::Relaxed) != here
        {
            trace::fault_ran(&fault.name);
        }
    }
}

/// Each fault switched on, with how often its faulty branch ran.
pub fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    ACTIVE
        .get()
        .into_iter()
        .flatten()
        .map(|fault| (fault.name.as_str(), fault.ran.load(Ordering::Relaxed)))
}
