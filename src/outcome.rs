//! What a run's ending, trace and stderr add up to: ok, leaked, crashed, error or timeout.
//!
//! Pure functions over a finished `runner::Run`; nothing here starts processes or prints.

use crate::runner::{Ending, Run};
use crate::trace::{Event, NativeObject};
use std::collections::{BTreeMap, BTreeSet};

/// Something a run left alive that it should not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leak {
    /// A native object created and never freed.
    Object { type_name: String, id: u64 },
    /// A watched object whose refcount ended above its baseline.
    References { obj: String, delta: i64 },
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leak::Object { type_name, id } => write!(f, "{type_name}#{id} was never freed"),
            Leak::References { obj, delta } => write!(
                f,
                "{obj} ended {delta} reference{} above its baseline",
                if *delta == 1 { "" } else { "s" }
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Leaked(Vec<Leak>),
    Crashed {
        signal: i32,
        /// `Fatal Python error: …` and faulthandler's Python stack, addresses removed.
        report: Vec<String>,
    },
    /// The script raised, exited non-zero, or left the interpreter without shutting it down.
    Error {
        /// `None`: refcount-lab stopped it (see the report).
        exit_code: Option<i32>,
        report: Vec<String>,
    },
    Timeout {
        seconds: u64,
        /// The script itself had ended; processes it started were still running.
        script_ended: bool,
    },
}

/// The short name of an outcome, as lessons and snapshots spell it.
impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Leaked(_) => "leaked",
            Outcome::Crashed { .. } => "crashed",
            Outcome::Error { .. } => "error",
            Outcome::Timeout { .. } => "timeout",
        }
    }
}

pub fn classify(run: &Run) -> Outcome {
    let outcome = classify_ending(run);
    // Faulty code that ran where the trace does not reach (a fork, which may have crashed)
    // leaves nothing to vouch for a run that ended well.
    if !run.faults_in_forks.is_empty() && matches!(outcome, Outcome::Ok | Outcome::Leaked(_)) {
        return Outcome::Error {
            exit_code: Some(0),
            report: vec![format!(
                "the faulty code of {} ran in a process the script forked, or before it (its \
                 damage goes along), which refcount-lab does not trace: run it in the \
                 script's own process to see what it does",
                run.faults_in_forks.join(", ")
            )],
        };
    }
    // A trace with holes cannot vouch for a run that ended well.
    if let Some(fault) = &run.sequence_fault {
        if matches!(outcome, Outcome::Ok | Outcome::Leaked(_)) {
            return Outcome::Error {
                exit_code: Some(0),
                report: vec![format!("{fault}: the trace cannot be trusted")],
            };
        }
    }
    // Work the script left behind is part of the run: it cannot have ended well.
    if !run.leftovers.is_empty() && matches!(outcome, Outcome::Ok | Outcome::Leaked(_)) {
        return Outcome::Error {
            exit_code: Some(0),
            report: vec![format!(
                "the script ended, but left {} running ({}), which refcount-lab stopped: a \
                 run ends with everything it started",
                match run.leftovers.len() {
                    1 => "1 process".to_owned(),
                    n => format!("{n} processes"),
                },
                run.leftovers_named()
            )],
        };
    }
    outcome
}

fn classify_ending(run: &Run) -> Outcome {
    match run.ending {
        Ending::TooManyProcesses(count) => Outcome::Error {
            exit_code: None,
            report: vec![format!(
                "the script had more than {count} processes running at once (a fork bomb?): \
                 refcount-lab stopped them all"
            )],
        },
        Ending::TimedOut | Ending::LeftRunning => Outcome::Timeout {
            seconds: run.timeout.as_secs(),
            script_ended: run.ending == Ending::LeftRunning,
        },
        Ending::Signaled(signal) => Outcome::Crashed {
            signal,
            report: crash_report(&run.stderr.text),
        },
        Ending::Exited(0) if !run.events().any(|e| *e == Event::Done) => Outcome::Error {
            exit_code: Some(0),
            report: vec![
                "the trace ended before the interpreter shut down: the script ended the \
                 process without shutting down (os._exit?) or closed refcount-lab's trace \
                 pipe, so nothing after that point was checked"
                    .into(),
            ],
        },
        Ending::Exited(0) => {
            let leaks = leaks(run.events());
            if leaks.is_empty() && run.dropped_decisive > 0 {
                Outcome::Error {
                    exit_code: Some(0),
                    report: vec![format!(
                        "the trace overflowed: {} events about native objects and watched \
                         values came past what refcount-lab keeps, so a leak cannot be ruled \
                         out",
                        run.dropped_decisive
                    )],
                }
            } else if leaks.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Leaked(leaks)
            }
        }
        Ending::Exited(code) => Outcome::Error {
            exit_code: Some(code),
            report: error_report(&run.stderr.text),
        },
    }
}

/// The global names holding more references to a watched object at exit than at its watch,
/// and how many more: references the script itself still holds, which are not leaks.
pub fn held_since_watch(
    then: &BTreeMap<String, i64>,
    now: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    now.iter()
        .map(|(name, count)| (name, count - then.get(name).copied().unwrap_or(0)))
        .filter(|(_, more)| *more > 0)
        .map(|(name, more)| (name.clone(), more))
        .collect()
}

/// Native objects never freed, then watched objects that ended above their baseline by
/// more than the script's globals account for.
fn leaks<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<Leak> {
    let mut alive: BTreeMap<(String, u64), ()> = BTreeMap::new();
    let mut baselines: BTreeMap<&str, (i64, &BTreeMap<String, i64>)> = BTreeMap::new();
    let mut references = Vec::new();
    let mut held_at_exit = Vec::new();
    for event in events {
        match event {
            Event::Threads { held, .. } => held_at_exit.extend(held),
            Event::Alloc { type_name, id } => {
                alive.insert((type_name.clone(), *id), ());
            }
            Event::Free { type_name, id } => {
                alive.remove(&(type_name.clone(), *id));
            }
            Event::Watch {
                obj, rc, globals, ..
            } => {
                // The first baseline stands (lab watches a name once).
                baselines.entry(obj).or_insert((*rc, globals));
            }
            // An immortal object's count cannot move, so it cannot leak.
            Event::Final {
                obj,
                rc: Some(rc),
                freed: false,
                pinned: None,
                globals,
            } => {
                let (baseline, held_then) = baselines
                    .get(obj.as_str())
                    .copied()
                    .unwrap_or((*rc, globals));
                // References the script's globals took since the watch are the script's own.
                let held_since: i64 = held_since_watch(held_then, globals).values().sum();
                let delta = rc - baseline - held_since;
                if delta > 0 {
                    references.push(Leak::References {
                        obj: obj.clone(),
                        delta,
                    });
                }
            }
            _ => {}
        }
    }
    // With threads running at shutdown, CPython leaves alone what they can reach: an
    // object whose every reference was explained then may stay unfreed without a leak.
    for object in held_at_exit {
        alive.remove(&(object.type_name.clone(), object.id));
    }
    let objects = alive
        .into_keys()
        .map(|(type_name, id)| Leak::Object { type_name, id });
    objects.chain(references).collect()
}

/// The threads still running when the script's interpreter shut down, if any, and the
/// native objects never freed whose every reference something visible held then.
pub fn threads_at_exit(run: &Run) -> Option<(&[String], Vec<&NativeObject>)> {
    // `lab` names the tables in parts, each event naming the threads.
    let parts: Vec<_> = run
        .events()
        .filter_map(|event| match event {
            Event::Threads { names, held } if !names.is_empty() => Some((names, held)),
            _ => None,
        })
        .collect();
    let names = parts.first()?.0;
    let held = parts.iter().flat_map(|(_, held)| held.iter());
    let freed: BTreeSet<_> = run
        .events()
        .filter_map(|event| match event {
            Event::Free { type_name, id } => Some((type_name.as_str(), *id)),
            _ => None,
        })
        .collect();
    let mut unfreed: Vec<_> = held
        .filter(|object| !freed.contains(&(object.type_name.as_str(), object.id)))
        .collect();
    unfreed.sort_by_key(|object| (&object.type_name, object.id));
    Some((names.as_slice(), unfreed))
}

/// The fatal error line and the Python stack faulthandler printed, without addresses, and
/// without the frames of the launcher that runs the script (`lab._run_main`).
fn crash_report(stderr: &str) -> Vec<String> {
    let launcher = |line: &str| {
        line.contains("File \"refcount_lab_launch.py\"") || line.contains("File \"lab.py\"")
    };
    stderr
        .lines()
        .filter(|line| {
            line.starts_with("Fatal Python error:")
                || (line.trim_start().starts_with("File \"") && !launcher(line))
        })
        .map(|line| line.trim().to_owned())
        .collect()
}

/// The traceback of the exception that ended the script (or the last lines of stderr).
fn error_report(stderr: &str) -> Vec<String> {
    stderr[error_report_start(stderr)..]
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Where in `stderr` [`error_report`] starts quoting: the last traceback, else the tenth
/// line from the end.
fn error_report_start(stderr: &str) -> usize {
    let starts = line_starts(stderr);
    starts
        .iter()
        .rev()
        .find(|&&at| stderr[at..].starts_with("Traceback (most recent call last):"))
        .or_else(|| starts.get(starts.len().saturating_sub(10)))
        .copied()
        .unwrap_or(stderr.len())
}

/// Where [`crash_report`]'s source starts: the interpreter's `Fatal Python error:` line.
fn crash_report_start(stderr: &str) -> Option<usize> {
    line_starts(stderr)
        .into_iter()
        .find(|&at| stderr[at..].starts_with("Fatal Python error:"))
}

/// The byte offset of each line of `text`.
fn line_starts(text: &str) -> Vec<usize> {
    text.split_inclusive('\n')
        .scan(0, |at, line| {
            let start = *at;
            *at += line.len();
            Some(start)
        })
        .collect()
}

/// What the script wrote to stderr that `outcome`'s report does not quote: all of it, but
/// the interpreter's crash report (from its `Fatal Python error:` line on, which the
/// outcome sums up) and the traceback or last lines an error report shows.
pub fn unquoted_stderr<'a>(run: &'a Run, outcome: &Outcome) -> &'a str {
    let stderr = run.stderr.text.as_str();
    let quoted_from = match (outcome, run.ending) {
        (Outcome::Crashed { .. }, _) => crash_report_start(stderr),
        // Only an exit with a status of its own is reported from stderr.
        (Outcome::Error { .. }, Ending::Exited(code)) if code != 0 => {
            Some(error_report_start(stderr))
        }
        _ => None,
    };
    &stderr[..quoted_from.unwrap_or(stderr.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Captured, TraceLine};
    use std::time::Duration;

    fn run(ending: Ending, events: Vec<Event>, stderr: &str) -> Run {
        Run {
            ending,
            timeout: Duration::from_secs(10),
            trace: events.into_iter().map(TraceLine::Event).collect(),
            dropped_trace_lines: 0,
            dropped_decisive: 0,
            other_process_events: 0,
            sequence_fault: None,
            faults_in_forks: Vec::new(),
            stdout: Captured::default(),
            stderr: Captured {
                text: stderr.into(),
                dropped: 0,
            },
            leftovers: Vec::new(),
            faults: Vec::new(),
        }
    }

    fn alloc(id: u64) -> Event {
        Event::Alloc {
            type_name: "HashTable".into(),
            id,
        }
    }

    fn free(id: u64) -> Event {
        Event::Free {
            type_name: "HashTable".into(),
            id,
        }
    }

    #[test]
    fn balanced_run_is_ok() {
        let events = vec![alloc(1), free(1), Event::Done];
        assert_eq!(classify(&run(Ending::Exited(0), events, "")), Outcome::Ok);
    }

    fn watch(obj: &str, rc: i64, globals: &[(&str, i64)]) -> Event {
        Event::Watch {
            obj: obj.into(),
            rc,
            pinned: None,
            globals: globals.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        }
    }

    fn last(obj: &str, rc: i64, globals: &[(&str, i64)]) -> Event {
        Event::Final {
            obj: obj.into(),
            rc: Some(rc),
            freed: false,
            pinned: None,
            globals: globals.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        }
    }

    #[test]
    fn unfreed_objects_and_grown_refcounts_are_leaks() {
        let events = vec![
            watch("hash", 5, &[]),
            alloc(1),
            alloc(2),
            free(1),
            last("hash", 8, &[]),
            Event::Watch {
                obj: "None".into(),
                rc: 0,
                pinned: Some("immortal".into()),
                globals: BTreeMap::new(),
            },
            Event::Final {
                obj: "None".into(),
                rc: Some(0),
                freed: false,
                pinned: Some("immortal".into()),
                globals: BTreeMap::new(),
            },
            Event::Done,
        ];
        let expected = Outcome::Leaked(vec![
            Leak::Object {
                type_name: "HashTable".into(),
                id: 2,
            },
            Leak::References {
                obj: "hash".into(),
                delta: 3,
            },
        ]);
        assert_eq!(classify(&run(Ending::Exited(0), events, "")), expected);
    }

    #[test]
    fn references_the_scripts_globals_took_since_the_watch_are_not_leaks() {
        // `key` was bound to one global name at its watch; at exit a global table holds it
        // too, and a global list twice: 3 more, all the script's own.
        let held = vec![
            watch("key", 1, &[("key", 1)]),
            last("key", 4, &[("key", 1), ("h", 1), ("pairs", 2)]),
            Event::Done,
        ];
        assert_eq!(classify(&run(Ending::Exited(0), held, "")), Outcome::Ok);
        // What the globals do not account for is still a leak.
        let leaked = vec![
            watch("key", 1, &[("key", 1)]),
            last("key", 6, &[("key", 1), ("h", 1)]),
            Event::Done,
        ];
        assert_eq!(
            classify(&run(Ending::Exited(0), leaked, "")),
            Outcome::Leaked(vec![Leak::References {
                obj: "key".into(),
                delta: 4
            }])
        );
    }

    #[test]
    fn signals_are_crashes_with_addresses_left_out() {
        let stderr = "Fatal Python error: Segmentation fault\n\n\
                      Current thread 0x00007f12 (most recent call first):\n  \
                      File \"demo.py\", line 20 in <module>\n";
        let outcome = classify(&run(Ending::Signaled(11), vec![], stderr));
        let report = vec![
            "Fatal Python error: Segmentation fault".to_string(),
            "File \"demo.py\", line 20 in <module>".to_string(),
        ];
        assert_eq!(outcome, Outcome::Crashed { signal: 11, report });
    }

    #[test]
    fn stderr_the_report_does_not_quote_is_the_scripts_own() {
        let crash = "mine\nFatal Python error: Segmentation fault\n\n  File \"x.py\"\n";
        let crashed = run(Ending::Signaled(11), vec![], crash);
        assert_eq!(unquoted_stderr(&crashed, &classify(&crashed)), "mine\n");
        let raised = "mine\nTraceback (most recent call last):\n  File \"x.py\"\nValueError\n";
        let raised = run(Ending::Exited(1), vec![], raised);
        assert_eq!(unquoted_stderr(&raised, &classify(&raised)), "mine\n");
        // Without a traceback the report quotes the last ten lines.
        let many: String = (0..12).map(|n| format!("{n}\n")).collect();
        let exited = run(Ending::Exited(3), vec![], &many);
        assert_eq!(unquoted_stderr(&exited, &classify(&exited)), "0\n1\n");
        // A report that quotes nothing of stderr (os._exit(0)) leaves all of it.
        let left = run(Ending::Exited(0), vec![], "mine\n");
        assert_eq!(unquoted_stderr(&left, &classify(&left)), "mine\n");
    }

    #[test]
    fn exceptions_exits_and_hangs() {
        let stderr = "noise\nTraceback (most recent call last):\n  File \"x.py\"\nValueError: no\n";
        let outcome = classify(&run(Ending::Exited(1), vec![], stderr));
        assert!(
            matches!(outcome, Outcome::Error { exit_code: Some(1), ref report } if report.len() == 3)
        );
        let early_exit = classify(&run(Ending::Exited(0), vec![], ""));
        assert_eq!(early_exit.kind(), "error");
        let hang = classify(&run(Ending::TimedOut, vec![], ""));
        assert_eq!(
            hang,
            Outcome::Timeout {
                seconds: 10,
                script_ended: false
            }
        );
    }
}
