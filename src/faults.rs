//! The fault switchboard: which refcounting mistakes the `hashtable` type makes in this process.
//!
//! This is the one process-wide setting of the child interpreter. `refcount-lab python
//! --fault NAME` installs it once at start-up, before Python starts, and it is read-only
//! after that: fault sites in `hashtable/` ask [`is_on`] and take the faulty branch. The catalogue below is the
//! single list of faults; the CLI, the lessons and the tests all read it.

use std::sync::OnceLock;

/// A refcounting mistake the `hashtable` type can be told to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// `set` returns `self` without `Py_INCREF`.
    SetMissingIncref,
    /// Dealloc never releases the table's reference to `hash_func`.
    DeallocMissingDecref,
    /// The int returned by `hash_func` is never released.
    HashResultLeak,
}

/// What a fault does to a run when a demo exercises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Crash,
    Leak,
}

/// One row of the catalogue.
#[derive(Debug)]
pub struct FaultInfo {
    pub fault: Fault,
    /// The lesson that demonstrates it.
    pub lesson: u32,
    /// The function the fault site lives in.
    pub site: &'static str,
    pub expected: Expected,
    pub summary: &'static str,
}

pub const CATALOGUE: &[FaultInfo] = &[
    FaultInfo {
        fault: Fault::SetMissingIncref,
        lesson: 3,
        site: "HashTable.set",
        expected: Expected::Crash,
        summary: "set() returns self without Py_INCREF: each call steals one reference \
                  to the table, which is freed while still in use",
    },
    FaultInfo {
        fault: Fault::DeallocMissingDecref,
        lesson: 4,
        site: "HashTable dealloc",
        expected: Expected::Leak,
        summary: "dealloc forgets Py_XDECREF(hash_func): every table ever made keeps \
                  its hash function alive forever",
    },
    FaultInfo {
        fault: Fault::HashResultLeak,
        lesson: 5,
        site: "hashing a key (set, get, pop, in, ...)",
        expected: Expected::Leak,
        summary: "the new reference returned by calling hash_func is never released: \
                  every hash leaks the int it returned",
    },
];

impl Fault {
    /// The CLI spelling, e.g. `set-missing-incref`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SetMissingIncref => "set-missing-incref",
            Fault::DeallocMissingDecref => "dealloc-missing-decref",
            Fault::HashResultLeak => "hash-result-leak",
        }
    }

    pub fn from_name(name: &str) -> Result<Fault, UnknownFault> {
        CATALOGUE
            .iter()
            .map(|info| info.fault)
            .find(|fault| fault.name() == name)
            .ok_or_else(|| UnknownFault(name.to_owned()))
    }
}

/// A fault name that is not in the catalogue; its message lists the valid ones.
#[derive(Debug)]
pub struct UnknownFault(pub String);

impl std::fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let valid: Vec<&str> = CATALOGUE.iter().map(|info| info.fault.name()).collect();
        write!(
            f,
            "unknown fault '{}'; valid faults: {}",
            self.0,
            valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownFault {}

static ACTIVE: OnceLock<Vec<Fault>> = OnceLock::new();

/// Switches faults on for the rest of this process. Call once, before Python starts.
pub fn install(faults: Vec<Fault>) {
    assert!(
        ACTIVE.set(faults).is_ok(),
        "the fault switchboard is set once per process"
    );
}

/// Is `fault` switched on in this process? Asked at every fault site.
pub fn is_on(fault: Fault) -> bool {
    ACTIVE.get().is_some_and(|active| active.contains(&fault))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for info in CATALOGUE {
            assert_eq!(Fault::from_name(info.fault.name()).unwrap(), info.fault);
        }
        let message = Fault::from_name("nope").unwrap_err().to_string();
        assert!(message.contains("set-missing-incref"), "{message}");
    }

    #[test]
    fn clap_spelling_matches_the_catalogue() {
        use clap::ValueEnum;
        for fault in Fault::value_variants() {
            let clap_name = fault.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(clap_name, fault.name());
        }
    }
}
