//! The trace protocol: events a child sends its parent, one JSON object per line.
//!
//! This is the parent's side: the types it reads. The child writes each event with a single
//! unbuffered `write` on a dedicated pipe (fd [`TRACE_FD`], named in [`TRACE_FD_ENV`]), so
//! every event written before a crash has already left the process. Objects are named by
//! labels the lesson script chooses, or by per-run ids, never by address. Python-side events
//! come from the `lab` probes (`native/lab.py`); `alloc`, `free` and `done` from the native
//! module's emitter (`native/src/trace.rs`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file descriptor the child writes trace events to.
pub const TRACE_FD: i32 = 3;
/// Environment variable telling the child where to write trace events.
pub const TRACE_FD_ENV: &str = "REFCOUNT_LAB_TRACE_FD";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The refcount of `obj` at a point the script labelled, not counting the lab call itself.
    Refcount {
        label: String,
        obj: String,
        rc: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<String>,
    },
    /// A sentence from the lesson script.
    Say { text: String },
    /// `obj` is watched from here on; `rc` is its baseline.
    Watch {
        obj: String,
        rc: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<String>,
    },
    /// A watched object at interpreter exit: its refcount, or that it was freed.
    Final {
        obj: String,
        rc: Option<i64>,
        freed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<String>,
    },
    /// A native object was created or destroyed.
    Alloc {
        #[serde(rename = "type")]
        type_name: String,
        id: u64,
    },
    Free {
        #[serde(rename = "type")]
        type_name: String,
        id: u64,
    },
    /// `refcount-lab hunt`: the measurements after one run of the target (see `hunt.py`).
    Repetition(Box<Repetition>),
    /// The script ran to its end.
    Done,
}

/// What `hunt` measured after one run of its target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    pub index: usize,
    pub blocks: i64,
    pub fds: i64,
    /// Live objects per type name (gc-tracked objects only).
    pub census: BTreeMap<String, i64>,
    /// `sys.getrefcount` of each watched object.
    pub refcounts: BTreeMap<String, i64>,
    /// `sys.gettotalrefcount()`, on debug builds of CPython only.
    pub total_refcount: Option<i64>,
    pub run_seconds: f64,
    pub measure_seconds: f64,
    /// HashTables alive after this run by the type's own `alloc`/`free` events; the parent
    /// counts them from the trace (the child does not send this).
    #[serde(default)]
    pub tables_alive: i64,
}

impl Event {
    /// Parses one line of the pipe; a line that is not an event is kept as text.
    pub fn parse(line: &str) -> Result<Event, String> {
        serde_json::from_str(line).map_err(|_| line.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_matches_the_design() {
        let event = Event::Refcount {
            label: "main".into(),
            obj: "hash".into(),
            rc: 3,
            pinned: None,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(
            line,
            r#"{"ev":"refcount","label":"main","obj":"hash","rc":3}"#
        );
        assert_eq!(Event::parse(&line).unwrap(), event);
        let alloc = Event::parse(r#"{"ev":"alloc","type":"HashTable","id":1}"#).unwrap();
        assert_eq!(
            alloc,
            Event::Alloc {
                type_name: "HashTable".into(),
                id: 1
            }
        );
        assert_eq!(Event::parse("not json").unwrap_err(), "not json");
    }
}
