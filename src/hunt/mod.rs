//! `refcount-lab hunt`: a refleak hunter that works on release builds of CPython.
//!
//! The child (`hunt.py` and its stages, compiled in) runs the target `warmup + repeat` times in one
//! interpreter and sends what it measured after each run; when something grew, it runs the
//! target more times to confirm, with tracemalloc on, and sends what it found leaked (the
//! objects, their lines, their verdicts, the leaking tests).
//!
//! The stages here: this file runs the child and gathers what it sent; `verdict` decides,
//! with regrtest's rule for `-R`, what leaks (a metric that grew in *every* measured run
//! after the warm-up, and in every confirming run: warm-up runs absorb caches that fill
//! once, confirming runs those that fill over a few); `report` writes the text report and
//! `plot` the SVG.

mod jobs;
mod plot;
mod report;
mod verdict;

pub use jobs::{hunt_in_parts, MOST_JOBS};
pub use plot::plot;
pub use report::render;
pub use verdict::find_leaks;

use crate::faults::Fault;
use crate::python::Python;
use crate::runner::{self, Ending, Job, Run};
use crate::scratch::ScratchDir;
use crate::trace::{Event, Findings, LeakKind, LeakedObject, Repetition};
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::Duration;

/// The child's files, written into a private folder for each hunt: `hunt.py` runs the
/// stages, the others are its stages (the file of each says what it does).
const CHILD_FILES: [(&str, &str); 5] = [
    ("hunt.py", include_str!("hunt.py")),
    ("hunt_targets.py", include_str!("hunt_targets.py")),
    ("hunt_census.py", include_str!("hunt_census.py")),
    ("hunt_naming.py", include_str!("hunt_naming.py")),
    ("hunt_paths.py", include_str!("hunt_paths.py")),
];
/// `hunt.py`'s exit status when a `--watch` name never resolved.
const WATCH_NOT_FOUND: i32 = 3;

/// What to hunt in, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `script` (re-run each time, or `path::function` imported once and called each time),
    /// `module` (`python -m`) or `pytest`.
    pub kind: &'static str,
    /// Paths and arguments as the system gave them (not always UTF-8): shown lossily, and
    /// handed to the child as arguments of its own, not in the JSON.
    #[serde(serialize_with = "lossy")]
    pub target: OsString,
    #[serde(serialize_with = "lossy_all")]
    pub args: Vec<OsString>,
    pub warmup: usize,
    pub repeat: usize,
    /// Extra runs, with tracemalloc on, when something grew in every measured run.
    pub confirm: usize,
    /// Dotted names of objects whose refcount to follow, e.g. `hash`.
    pub watch: Vec<String>,
    /// Known, accepted leaks: type names, or test ids (those tests are not run).
    pub accept: Vec<String>,
    /// Only this part of a suite's tests (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Only this part of the shard (or of the suite): one copy's of `--jobs N`.
    pub job: Option<Shard>,
}

/// Part `index` (from 1) of `count` equal parts of a suite's tests, in the order the suite
/// lists them: how a CI matrix splits one hunt over several machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// The most parts a suite can be split into.
const MOST_SHARDS: usize = 10_000;

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts = text.split_once('/').and_then(|(index, count)| {
            Some((index.trim().parse().ok()?, count.trim().parse().ok()?))
        });
        match parts {
            Some((index, count)) if 1 <= index && index <= count && count <= MOST_SHARDS => {
                Ok(Shard { index, count })
            }
            _ => Err(format!(
                "give it as K/N, part K of N (1 <= K <= N <= {MOST_SHARDS}), e.g. 2/4"
            )),
        }
    }
}

fn lossy<S: serde::Serializer>(text: &OsString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&text.to_string_lossy())
}

fn lossy_all<S: serde::Serializer>(texts: &[OsString], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(texts.iter().map(|text| text.to_string_lossy()))
}

/// A metric that grew in every measured run and every confirming one.
#[derive(Debug, Serialize)]
pub struct Leak {
    /// e.g. `allocated blocks`, `objects: HashTable`, `refcount: hash`.
    pub metric: String,
    /// The metric after every run, warm-up included.
    pub values: Vec<i64>,
    /// Growth in each measured run.
    pub deltas: Vec<i64>,
    /// Growth in each confirming run.
    pub confirming: Vec<i64>,
}

impl Leak {
    /// Growth per run: the median growth of the measured and confirming runs, leaving out
    /// the first of each (the first measured run often still carries a warm-up's growth,
    /// the first confirming one what starting tracemalloc keeps once) unless nothing else
    /// is left. A median, since a run can still carry a one-off of its own (ujson's suite on
    /// 3.11 confirms +9, +3, +2 for a leak of 2 blocks a run).
    pub fn per_run(&self) -> f64 {
        let mut deltas: Vec<i64> = self
            .deltas
            .iter()
            .skip(1)
            .chain(self.confirming.iter().skip(1))
            .copied()
            .collect();
        if deltas.is_empty() {
            deltas = self
                .deltas
                .iter()
                .chain(&self.confirming)
                .copied()
                .collect();
        }
        deltas.sort_unstable();
        match deltas.len() {
            0 => 0.0,
            n if n % 2 == 1 => deltas[n / 2] as f64,
            n => (deltas[n / 2 - 1] + deltas[n / 2]) as f64 / 2.0,
        }
    }
}

/// A metric that moved without leaking by the rule, and why that is fine.
#[derive(Debug, Serialize)]
pub struct NotLeak {
    pub metric: String,
    pub deltas: Vec<i64>,
    pub confirming: Vec<i64>,
    /// Why, in words: "not in every run", …
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Hunt {
    pub config: Config,
    pub repetitions: Vec<Repetition>,
    pub leaks: Vec<Leak>,
    /// Leaks named by `--accept`: reported, but they do not fail the hunt.
    pub accepted: Vec<String>,
    pub not_leaks: Vec<NotLeak>,
    /// What leaked, when a leak was suspected and confirmed.
    pub findings: Option<Findings>,
    /// Threads the target left running at the end, which the hunt did not wait for.
    pub threads_left: Vec<String>,
    /// Processes the target left running at the end, stopped by refcount-lab.
    pub processes_left: Vec<String>,
}

impl Hunt {
    /// Leaks the hunt fails on: metrics, and long-lived objects that gained references.
    pub fn failed(&self) -> bool {
        !self.leaks.is_empty() || self.reference_leaks().next().is_some()
    }

    fn reference_leaks(&self) -> impl Iterator<Item = &LeakedObject> {
        let objects = self.findings.iter().flat_map(|f| &f.objects);
        objects.filter(|o| o.kind == LeakKind::References)
    }
}

/// Runs the hunt in a child interpreter.
pub fn hunt(python: &Python, config: Config, faults: &[Fault], timeout: Duration) -> Result<Hunt> {
    let scratch = ScratchDir::new()?;
    for (name, text) in CHILD_FILES {
        scratch.write(name, text.as_bytes())?;
    }
    let script = scratch.path().join("hunt.py");
    let config_json = serde_json::to_string(&config)?;
    // The target and its arguments after the JSON, as they are (see `Config`).
    let mut args = vec![OsStr::new(&config_json), &config.target];
    args.extend(config.args.iter().map(OsString::as_os_str));
    let run = runner::run(&Job {
        python,
        script: &script,
        args: &args,
        dir: Path::new("."),
        faults,
        timeout,
        debug_allocator: false,
        wait_for_leftovers: false,
    })?;
    // Between repetitions, HashTable and SafeHashTable report every table they make and free.
    let mut tables_alive = 0;
    let mut repetitions: Vec<Repetition> = Vec::new();
    let mut findings = None;
    let mut threads_left = Vec::new();
    let mut finished = false;
    for event in run.events() {
        match event {
            Event::Alloc { .. } => tables_alive += 1,
            Event::Free { .. } => tables_alive -= 1,
            Event::Repetition(r) => repetitions.push(Repetition {
                tables_alive,
                ..(**r).clone()
            }),
            Event::Findings(found) => findings = Some((**found).clone()),
            Event::Threads { names, .. } => threads_left.clone_from(names),
            Event::HuntDone => finished = true,
            _ => {}
        }
    }
    let expected = config.warmup + config.repeat;
    // hunt.py's own last words, not a target that exited with the same status.
    let watch_message = run.stderr.text.trim_end().lines().last();
    if run.ending == Ending::Exited(WATCH_NOT_FOUND)
        && watch_message.is_some_and(|line| line.starts_with("--watch "))
    {
        bail!("{}", watch_message.unwrap_or_default());
    }
    if let Some(fault) = &run.sequence_fault {
        bail!("{fault}: the hunt's measurements cannot be trusted");
    }
    if run.ending != Ending::Exited(0) || repetitions.len() < expected || !finished {
        bail!("{}", failure(&run, repetitions.len(), expected));
    }
    Ok(assemble(
        config,
        repetitions,
        findings,
        threads_left,
        run.leftovers.clone(),
    ))
}

/// The hunt's verdicts on what its runs measured.
fn assemble(
    config: Config,
    repetitions: Vec<Repetition>,
    findings: Option<Findings>,
    threads_left: Vec<String>,
    processes_left: Vec<String>,
) -> Hunt {
    let (leaks, not_leaks) = find_leaks(&repetitions, config.warmup, config.repeat);
    let mut hunt = Hunt {
        config,
        repetitions,
        leaks,
        accepted: Vec::new(),
        not_leaks,
        findings,
        threads_left,
        processes_left,
    };
    accept(&mut hunt);
    hunt
}

/// Moves the leaks `--accept` names (by type) out of the failing ones. When every named
/// leak (objects of a type, references to an object) was accepted, the totals that grew with
/// them (blocks, the total refcount, the tables alive) are taken to be theirs and go too.
fn accept(hunt: &mut Hunt) {
    let accepted_types: BTreeSet<&str> = hunt.config.accept.iter().map(String::as_str).collect();
    let mut accepted = Vec::new();
    if let Some(findings) = &mut hunt.findings {
        findings.objects.retain(|object| {
            let keep = !accepted_types.contains(object.type_name.as_str());
            if !keep {
                accepted.push(match object.kind {
                    LeakKind::References => format!("references to {}", object.repr),
                    LeakKind::NewObjects => format!(
                        "{} objects{}",
                        object.type_name,
                        object
                            .allocated
                            .as_ref()
                            .map(|site| format!(" made at {site}"))
                            .unwrap_or_default()
                    ),
                });
            }
            keep
        });
    }
    hunt.leaks.retain(|leak| {
        let keep = !leak
            .metric
            .strip_prefix("objects: ")
            .is_some_and(|name| accepted_types.contains(name));
        let objects_named = accepted.iter().any(|a| {
            leak.metric
                .strip_prefix("objects: ")
                .is_some_and(|name| a.starts_with(&format!("{name} objects")))
        });
        if !keep && !objects_named {
            accepted.push(leak.metric.clone());
        }
        keep
    });
    let named =
        |leak: &Leak| leak.metric.starts_with("objects: ") || leak.metric.starts_with("refcount: ");
    if !accepted.is_empty()
        && !hunt.leaks.iter().any(named)
        && hunt.reference_leaks().next().is_none()
    {
        accepted.extend(hunt.leaks.drain(..).map(|leak| {
            format!(
                "{} ({:+.1} per run), counted as the accepted objects' memory",
                leak.metric,
                leak.per_run()
            )
        }));
    }
    hunt.accepted = accepted;
}

/// Why a hunt did not complete, with what the target printed.
fn failure(run: &Run, completed: usize, expected: usize) -> String {
    let how = run.ending_described();
    let when = if completed < expected {
        format!("after {completed} of {expected} runs")
    } else {
        // Past the measured runs, in those made to confirm a leak.
        format!(
            "after {expected} measured runs and {} more to confirm what they showed",
            completed - expected
        )
    };
    format!(
        "the hunted target {how} {when}\n{}",
        without_harness_frames(&run.stderr.text)
    )
}

/// A traceback without the frames of the hunt's own harness (its files, `runpy`).
fn without_harness_frames(stderr: &str) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in stderr.lines() {
        if line.starts_with("  File ") {
            // runpy is frozen from 3.11 on, a file before.
            skipping = CHILD_FILES
                .iter()
                .any(|(name, _)| line.contains(&format!("/{name}\"")))
                || line.contains("<frozen runpy>")
                || line.contains("/runpy.py\"");
        } else if !line.starts_with("    ") {
            skipping = false;
        }
        if !skipping {
            kept.push(line);
        }
    }
    kept.join("\n")
}
