//! The trace protocol: events a child sends its parent, one JSON object per line.
//!
//! This is the parent's side: the types it reads, and the check of each line's signature.
//! The child's native module (`native/src/trace.rs`) writes each event with a single
//! unbuffered `write` on a dedicated pipe (fd [`TRACE_FD`], named in [`TRACE_FD_ENV`]), so
//! every event written before a crash has already left the process. Each line carries its
//! number and a tag: SipHash-2-4, keyed with a secret of this run ([`Key`], passed on fd
//! [`KEY_FD`] and read by the module before the script runs), of the number and the event's
//! text. A line without a valid tag was written by something else, such as the script
//! itself, and counts for nothing ([`check`]).
//!
//! What a script can still do: call `lab`'s probes (that is their purpose), send `lab`'s
//! kinds of event through `_labtrace._emit` (the same as calling the probes), read the
//! environment (which names the faults of the run), or read the module's memory with
//! `ctypes`. None of that happens by accident, and a learner who does it is solving another
//! puzzle; what cannot happen is a stray or deliberate `os.write` passing for an event.
//!
//! Objects are named by labels the lesson script chooses, or by per-run ids, never by
//! address. Python-side events come from the `lab` probes (`native/lab.py`); `alloc`,
//! `free` and `done` only from native code.

use crate::printable;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher24;
use std::collections::BTreeMap;
use std::hash::Hasher;

/// The file descriptor the child writes trace events to.
pub const TRACE_FD: i32 = 3;
/// Environment variable telling the child where to write trace events.
pub const TRACE_FD_ENV: &str = "REFCOUNT_LAB_TRACE_FD";
/// The file descriptor the child reads the run's key from, once.
pub const KEY_FD: i32 = 4;
/// Environment variable telling the child where to read the key.
pub const KEY_FD_ENV: &str = "REFCOUNT_LAB_KEY_FD";

/// The secret a run's events are signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub u64, pub u64);

impl Key {
    /// A fresh key from the kernel's random source.
    pub fn random() -> std::io::Result<Key> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let (a, b) = bytes.split_at(8);
        Ok(Key(
            u64::from_le_bytes(a.try_into().expect("8 bytes")),
            u64::from_le_bytes(b.try_into().expect("8 bytes")),
        ))
    }

    /// As the child reads it: 32 hex digits.
    pub fn hex(self) -> String {
        format!("{:016x}{:016x}", self.0, self.1)
    }

    /// The tag of event number `seq` from process `pid` with text `body` (the same
    /// computation as the child's).
    fn tag(self, seq: u64, pid: u32, body: &str) -> u64 {
        let mut hasher = SipHasher24::new_with_keys(self.0, self.1);
        hasher.write_u64(seq);
        hasher.write_u32(pid);
        hasher.write(body.as_bytes());
        hasher.finish()
    }
}

/// A line as the child's native module signs it (for tests of the reading side).
#[cfg(test)]
pub fn signed(key: Key, seq: u64, pid: u32, body: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"pid\":{pid},\"tag\":\"{:016x}\",{}",
        key.tag(seq, pid, body),
        &body[1..]
    )
}

/// What one line of the trace pipe is.
#[derive(Debug, PartialEq)]
pub enum Checked {
    /// A signed event, with its number and the process that sent it.
    Event { seq: u64, pid: u32, event: Event },
    /// Signed, but not an event this parent knows.
    Unreadable,
    /// No valid signature: not written by the native module.
    Forged,
}

/// Checks one line: `{"seq":N,"pid":P,"tag":"16 hex digits",` then the rest of the
/// event's object.
pub fn check(line: &str, key: Key) -> Checked {
    let signed = (|| {
        let rest = line.strip_prefix(r#"{"seq":"#)?;
        let (seq, rest) = rest.split_once(',')?;
        let rest = rest.strip_prefix(r#""pid":"#)?;
        let (pid, rest) = rest.split_once(',')?;
        let rest = rest.strip_prefix(r#""tag":""#)?;
        let (tag, rest) = rest.split_at_checked(16)?;
        let rest = rest.strip_prefix(r#"","#)?;
        Some((
            seq.parse::<u64>().ok()?,
            pid.parse::<u32>().ok()?,
            u64::from_str_radix(tag, 16).ok()?,
            rest,
        ))
    })();
    let Some((seq, pid, tag, rest)) = signed else {
        return Checked::Forged;
    };
    let body = format!("{{{rest}");
    if key.tag(seq, pid, &body) != tag {
        return Checked::Forged;
    }
    match Event::parse(&body) {
        Ok(event) => Checked::Event { seq, pid, event },
        Err(_) => Checked::Unreadable,
    }
}

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
        /// The script's global names holding `obj`, and how many references each holds.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        globals: BTreeMap<String, i64>,
    },
    /// A watched object at interpreter exit: its refcount, or that it was freed.
    Final {
        obj: String,
        rc: Option<i64>,
        freed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<String>,
        /// As for `Watch`, at exit (the script's globals are still alive then).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        globals: BTreeMap<String, i64>,
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
    /// `refcount-lab hunt`: what leaked, once more runs confirmed it (see `hunt.py`).
    Findings(Box<Findings>),
    /// Threads other than the main one still running when the interpreter began to shut
    /// down (daemon threads: CPython does not wait for them), and the native objects whose
    /// every reference something visible held then, which CPython may not free while
    /// they run.
    Threads {
        names: Vec<String>,
        #[serde(default)]
        held: Vec<NativeObject>,
    },
    /// A fault's faulty branch ran for the first time (sent at once: a crash may follow).
    FaultRan { fault: String },
    /// At the end: how often each fault's faulty branch ran.
    FaultCounts { counts: BTreeMap<String, u64> },
    /// Files beside the script named as refcount-lab's modules, which were not imported in
    /// their place: module name to file, as the script's folder has it.
    NotUsed { files: BTreeMap<String, String> },
    /// The script ran to its end.
    Done,
    /// `refcount-lab hunt`: the harness finished every run it meant to make (a target that
    /// exits in a confirming run ends the interpreter before this).
    HuntDone,
}

/// A native object as trace events name it: `HashTable#3`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NativeObject {
    #[serde(rename = "type")]
    pub type_name: String,
    pub id: u64,
}

impl std::fmt::Display for NativeObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.type_name, self.id)
    }
}

/// What `hunt` measured after one run of its target.
/// The tests of a suite a `--shard` hunted in: `first` to `last` of `of`, counted from 1
/// in the order the suite lists them (none when `last < first`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTests {
    pub first: usize,
    pub last: usize,
    pub of: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    pub index: usize,
    /// Allocated blocks, less the strings interned for good (3.12+), as regrtest counts.
    pub blocks: i64,
    /// Those strings (`sys.getunicodeinternedsize`, only the immortal ones on 3.13+).
    #[serde(default)]
    pub interned: i64,
    pub fds: i64,
    /// Live objects per type name (gc-tracked objects only).
    pub census: BTreeMap<String, i64>,
    /// `sys.getrefcount` of each watched object.
    pub refcounts: BTreeMap<String, i64>,
    /// `sys.gettotalrefcount()`, on debug builds of CPython only (on 3.12 less two per
    /// interned string, as regrtest counts).
    pub total_refcount: Option<i64>,
    pub run_seconds: f64,
    pub measure_seconds: f64,
    /// `warm-up`, `measured` or `confirming` (the extra runs after a suspected leak).
    pub phase: String,
    /// Objects whose reference count grew in every measured run so far.
    pub objects_growing: i64,
    /// A test suite's tests that failed in this run (hunted all the same).
    #[serde(default)]
    pub failed: Vec<String>,
    /// Tests not run because `--accept` named them.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// With `--shard`, the suite's tests hunted in (numbered from 1 in its order).
    #[serde(default)]
    pub shard: Option<ShardTests>,
    /// On a debug build, the extension modules loaded from files built for a release build,
    /// whose increfs and decrefs the total refcount never sees (then left out).
    #[serde(default)]
    pub release_built: Vec<String>,
    /// Tables (HashTable, SafeHashTable) alive after this run by their own `alloc`/`free`
    /// events; the parent counts them from the trace (the child does not send this).
    #[serde(default)]
    pub tables_alive: i64,
}

/// The objects, allocation sites and tests behind the leaks `hunt` confirmed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    pub objects: Vec<LeakedObject>,
    /// Where the blocks still alive after the confirming runs were allocated, when that grew
    /// in each of them.
    pub sites: Vec<Site>,
    /// For a test suite: the tests each leak was pinned to.
    #[serde(default)]
    pub tests: Vec<LeakingTests>,
}

/// One leaked object, named.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakedObject {
    #[serde(rename = "type")]
    pub type_name: String,
    pub repr: String,
    pub kind: LeakKind,
    /// References gained (`references`) or objects made and kept (`new objects`) per run.
    pub per_run: f64,
    pub verdict: Verdict,
    /// How a module reaches it (`held`), e.g. `mymodule.CACHE[3]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// References to it that no object shows the collector (`over-counted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess: Option<i64>,
    /// The types of its referrers, up to the first with references that nothing the
    /// collector can see holds (`unreachable`; its `excess` is that one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_by: Option<String>,
    /// `new objects`: how many are alive, made where (`file:line`), and that line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For an over-counted object: the lines of its leaking test (or of the target) whose
    /// run left the references behind, found by one more run followed line by line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_by: Vec<LeftBy>,
}

/// A line whose run left references to an over-counted object that nothing explains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeftBy {
    /// `file:line`.
    pub line: String,
    #[serde(default)]
    pub source: String,
    pub references: i64,
    /// The C function that line was calling when the references were left, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// The function that had just returned from that line, its locals freed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<String>,
}

/// How an object leaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeakKind {
    /// One long-lived object gains references in every run.
    #[serde(rename = "references")]
    References,
    /// New objects made in every run stay alive.
    #[serde(rename = "new objects")]
    NewObjects,
}

/// What keeps a leaked object alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Reachable from a module: something keeps it on purpose or by mistake.
    Held,
    /// More references than anything the collector can see accounts for.
    OverCounted,
    /// Not reachable, every reference accounted for: a cycle through an object that hides
    /// references from the collector.
    Unreachable,
}

/// An allocation site whose live blocks grew in each confirming run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub allocated: String,
    pub source: String,
    /// Blocks a run.
    pub per_run: f64,
    /// Their bytes a run (what tracemalloc counts: the blocks' requested sizes).
    #[serde(default)]
    pub bytes_per_run: f64,
    /// What the blocks it made in the last confirming run, still alive, are: the most
    /// frequent kinds first.
    #[serde(default)]
    pub made: Vec<BlockKind>,
}

/// Blocks of one type and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockKind {
    #[serde(rename = "type")]
    pub type_name: String,
    pub size: u64,
    pub count: u64,
}

/// Tests a leak was pinned to: one test, or a group that leaks only when run together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakingTests {
    pub tests: Vec<String>,
    pub metrics: Vec<String>,
    #[serde(default)]
    pub together: bool,
}

impl Event {
    /// Parses one line of the pipe; a line that is not an event is kept as text. Control
    /// characters in its strings (a script's `say`, its labels) come out escaped, so that
    /// printing an event cannot drive the terminal.
    pub fn parse(line: &str) -> Result<Event, String> {
        // Without a backslash, no string can hold an escaped control character.
        let plain = !line.contains('\\') && printable::lines(line).len() == line.len();
        let parsed = if plain {
            serde_json::from_str(line)
        } else {
            serde_json::from_str(line).and_then(|mut value| {
                escape_strings(&mut value, false);
                serde_json::from_value(value)
            })
        };
        parsed.map_err(|_| line.to_owned())
    }
}

/// Escapes the control characters of every string in `value` (keys too). Only a `text`
/// (what `lab.say` says) keeps its line breaks: a name with one could forge a line of the
/// report.
fn escape_strings(value: &mut serde_json::Value, several_lines: bool) {
    use serde_json::Value;
    match value {
        Value::String(text) if several_lines => *text = printable::lines(text),
        Value::String(text) => *text = printable::one_line(text),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| escape_strings(item, false)),
        Value::Object(map) => {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(key, mut item)| {
                    escape_strings(&mut item, key == "text");
                    (printable::one_line(&key), item)
                })
                .collect();
        }
        _ => {}
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
        // A name breaks no line: it could forge one of the report's.
        let forged = r#"{"ev":"threads","names":["t\n  outcome:  ok"]}"#;
        assert_eq!(
            Event::parse(forged).unwrap(),
            Event::Threads {
                names: vec!["t\\n  outcome:  ok".into()],
                held: vec![]
            }
        );
        let say = Event::parse(r#"{"ev":"say","text":"a\nb\u001b[2J\u009b"}"#).unwrap();
        assert_eq!(
            say,
            Event::Say {
                text: "a\nb\\x1b[2J\\x9b".into()
            }
        );
    }

    #[test]
    fn only_lines_signed_with_the_runs_key_are_events() {
        let key = Key(1, 2);
        let done = r#"{"ev":"done"}"#;
        assert_eq!(
            check(&signed(key, 7, 42, done), key),
            Checked::Event {
                seq: 7,
                pid: 42,
                event: Event::Done
            }
        );
        assert_eq!(check(done, key), Checked::Forged);
        assert_eq!(check(&signed(Key(1, 3), 7, 42, done), key), Checked::Forged);
        let replayed = signed(key, 7, 42, done).replace("\"seq\":7", "\"seq\":8");
        assert_eq!(check(&replayed, key), Checked::Forged);
        let other_process = signed(key, 7, 42, done).replace("\"pid\":42", "\"pid\":43");
        assert_eq!(check(&other_process, key), Checked::Forged);
        let duplicate_kind = r#"{"ev": "say", "ev": "done"}"#;
        assert_eq!(
            check(&signed(key, 1, 42, duplicate_kind), key),
            Checked::Unreadable
        );
    }
}
