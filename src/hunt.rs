//! `refcount-lab hunt`: a refleak hunter that works on release builds of CPython.
//!
//! The child (`hunt.py`, compiled in) runs the target `warmup + repeat` times in one
//! interpreter and sends what it measured after each run; when something grew, it runs the
//! target more times to confirm, with tracemalloc on, and sends what it found leaked (the
//! objects, their lines, their verdicts, the leaking tests). This module decides, with
//! regrtest's rule for `-R`, what leaks: a metric leaks when it grew in *every* measured run
//! after the warm-up, and in every confirming run. Warm-up runs absorb caches that fill
//! once; confirming runs, those that fill over a few runs.

use crate::bench::SERIES_COLOURS;
use crate::faults::Fault;
use crate::python::Python;
use crate::runner::{self, Ending, Job, Run};
use crate::scratch::ScratchDir;
use crate::trace::{Event, Findings, LeakKind, LeakedObject, Repetition, Verdict};
use anyhow::{bail, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

const SCRIPT: &str = include_str!("hunt.py");
/// `hunt.py`'s exit status when a `--watch` name never resolved.
const WATCH_NOT_FOUND: i32 = 3;

/// What to hunt in, and how.
#[derive(Debug, Serialize)]
pub struct Config {
    /// `script` (re-run each time, or `path::function` imported once and called each time),
    /// `module` (`python -m`) or `pytest`.
    pub kind: &'static str,
    pub target: String,
    pub args: Vec<String>,
    pub warmup: usize,
    pub repeat: usize,
    /// Extra runs, with tracemalloc on, when something grew in every measured run.
    pub confirm: usize,
    /// Dotted names of objects whose refcount to follow, e.g. `hash`.
    pub watch: Vec<String>,
    /// Known, accepted leaks: type names, or test ids (those tests are not run).
    pub accept: Vec<String>,
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
    /// Growth per run: in the confirming runs when there were some (the first measured
    /// run often still carries a warm-up's growth), else in the measured runs.
    pub fn per_run(&self) -> f64 {
        let deltas = if self.confirming.is_empty() {
            &self.deltas
        } else {
            &self.confirming
        };
        deltas.iter().sum::<i64>() as f64 / deltas.len() as f64
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
    let scratch = ScratchDir::with_file("hunt.py", SCRIPT)?;
    let script = scratch.path().join("hunt.py");
    let config_json = serde_json::to_string(&config)?;
    let run = runner::run(&Job {
        python,
        script: &script,
        args: &[&config_json],
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
    for event in run.events() {
        match event {
            Event::Alloc { .. } => tables_alive += 1,
            Event::Free { .. } => tables_alive -= 1,
            Event::Repetition(r) => repetitions.push(Repetition {
                tables_alive,
                ..(**r).clone()
            }),
            Event::Findings(found) => findings = Some((**found).clone()),
            Event::Threads { names } => threads_left.clone_from(names),
            _ => {}
        }
    }
    let expected = config.warmup + config.repeat;
    if run.ending == Ending::Exited(WATCH_NOT_FOUND) {
        bail!("{}", run.stderr.text.trim());
    }
    if run.ending != Ending::Exited(0) || repetitions.len() < expected {
        bail!("{}", failure(&run, repetitions.len(), expected));
    }
    let (leaks, not_leaks) = find_leaks(&repetitions, config.warmup, config.repeat);
    let mut hunt = Hunt {
        config,
        repetitions,
        leaks,
        accepted: Vec::new(),
        not_leaks,
        findings,
        threads_left,
        processes_left: run.leftovers.clone(),
    };
    accept(&mut hunt);
    Ok(hunt)
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
    format!(
        "the hunted target {how} after {completed} of {expected} runs\n{}",
        without_harness_frames(&run.stderr.text)
    )
}

/// A traceback without the frames of the hunt's own harness (`hunt.py`, `runpy`).
fn without_harness_frames(stderr: &str) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in stderr.lines() {
        if line.starts_with("  File ") {
            // runpy is frozen from 3.11 on, a file before.
            skipping = line.contains("hunt.py\"")
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

/// regrtest's rule for one metric's growth per run: file descriptors leak on any change,
/// everything else when it grew in every run.
fn leaks_by_rule(metric: &str, deltas: &[i64]) -> bool {
    if metric == FDS {
        deltas.iter().any(|&d| d != 0)
    } else {
        !deltas.is_empty() && deltas.iter().all(|&d| d > 0)
    }
}

/// Whether confirming runs of the total refcount (debug builds) grew in all but one run, and
/// grew overall: one dip (the collector, tracemalloc's own books) does not clear a leak
/// that `regrtest -R 3:3`, which has no confirming runs, reports from the measured ones.
fn steady_but_one_dip(deltas: &[i64]) -> bool {
    deltas.len() >= 3
        && deltas.iter().filter(|&&d| d <= 0).count() <= 1
        && deltas.iter().sum::<i64>() > 0
}

const BLOCKS: &str = "allocated blocks";
const FDS: &str = "open file descriptors";
const TOTAL: &str = "total refcount";
const TABLES: &str = "tables alive (HashTable and SafeHashTable count their own)";

/// The metrics that leaked in the measured runs (`warmup` runs, then `repeat`) and, when the
/// child ran more to confirm, in those too; and the ones that moved but are fine.
pub fn find_leaks(
    repetitions: &[Repetition],
    warmup: usize,
    repeat: usize,
) -> (Vec<Leak>, Vec<NotLeak>) {
    type Read = Box<dyn Fn(&Repetition) -> Option<i64>>;
    let mut metrics: Vec<(String, Read)> = vec![
        (BLOCKS.into(), Box::new(|r| Some(r.blocks))),
        (FDS.into(), Box::new(|r| Some(r.fds))),
        (TOTAL.into(), Box::new(|r| r.total_refcount)),
        (TABLES.into(), Box::new(|r| Some(r.tables_alive))),
    ];
    let types: BTreeSet<&String> = repetitions.iter().flat_map(|r| r.census.keys()).collect();
    for name in types {
        let key = name.clone();
        metrics.push((
            format!("objects: {name}"),
            Box::new(move |r| Some(r.census.get(&key).copied().unwrap_or(0))),
        ));
    }
    let watched: BTreeSet<&String> = repetitions
        .iter()
        .flat_map(|r| r.refcounts.keys())
        .collect();
    for name in watched {
        let key = name.clone();
        metrics.push((
            format!("refcount: {name}"),
            Box::new(move |r| r.refcounts.get(&key).copied()),
        ));
    }
    // The last warm-up run is the baseline of the first measured one, the last measured run
    // that of the first confirming one.
    let from = warmup.saturating_sub(1);
    let measured_end = (warmup + repeat).min(repetitions.len());
    let confirm_from = repetitions
        .iter()
        .position(|r| r.phase == "confirming")
        .map_or(repetitions.len(), |first| first - 1);
    let mut leaks = Vec::new();
    let mut not_leaks = Vec::new();
    for (metric, read) in metrics {
        let Some(values) = repetitions.iter().map(&read).collect::<Option<Vec<i64>>>() else {
            continue;
        };
        let growth = |range: &[i64]| range.windows(2).map(|w| w[1] - w[0]).collect::<Vec<i64>>();
        let deltas = growth(&values[from..measured_end]);
        let confirming = growth(&values[confirm_from.min(values.len())..]);
        let suspected = leaks_by_rule(&metric, &deltas);
        let confirmed = confirming.is_empty()
            || leaks_by_rule(&metric, &confirming)
            || (metric == TOTAL && steady_but_one_dip(&confirming));
        if suspected && confirmed {
            leaks.push(Leak {
                metric,
                values,
                deltas,
                confirming,
            });
        } else if suspected
            || ([BLOCKS, FDS, TOTAL].contains(&metric.as_str()) && deltas.iter().any(|&d| d != 0))
        {
            let reason = if suspected {
                format!("not in the confirming runs ({})", signed(&confirming))
            } else {
                "not in every run".to_owned()
            };
            not_leaks.push(NotLeak {
                metric,
                deltas,
                confirming,
                reason,
            });
        }
    }
    (leaks, not_leaks)
}

fn signed(deltas: &[i64]) -> String {
    deltas
        .iter()
        .map(|d| format!("{d:+}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The short report.
pub fn render(hunt: &Hunt) -> String {
    let mut out = String::new();
    header(&mut out, hunt);
    let empty = Findings::default();
    let findings = hunt.findings.as_ref().unwrap_or(&empty);
    let (objects, totals): (Vec<&Leak>, Vec<&Leak>) = hunt
        .leaks
        .iter()
        .partition(|leak| leak.metric.starts_with("objects: "));
    // The totals, then the objects that gained references (often the cause), then the types
    // that pile up, those with an over-counted object first.
    for leak in totals {
        leak_line(&mut out, leak);
        if leak.metric == BLOCKS {
            blocks_sites(&mut out, hunt, findings);
        }
    }
    let mut explained = BTreeSet::new();
    let mut gained: Vec<&LeakedObject> = hunt.reference_leaks().collect();
    gained.sort_by(|a, b| b.per_run.total_cmp(&a.per_run));
    for object in gained.iter().take(SHOWN) {
        wrapped(
            &mut out,
            "  ",
            &format!(
                "LEAK references to {} ({}): {:+.1} per run",
                object.repr, object.type_name, object.per_run
            ),
        );
        verdict(&mut out, object, &mut explained);
    }
    more(
        &mut out,
        gained.len(),
        "objects gained references in every run",
    );
    let made = |leak: &Leak| -> Vec<&LeakedObject> {
        let name = &leak.metric["objects: ".len()..];
        let mut made: Vec<&LeakedObject> = findings
            .objects
            .iter()
            .filter(|o| o.kind == LeakKind::NewObjects && o.type_name == name)
            .collect();
        made.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.per_run.total_cmp(&a.per_run)));
        made
    };
    let mut objects: Vec<(&Leak, Vec<&LeakedObject>)> =
        objects.into_iter().map(|leak| (leak, made(leak))).collect();
    objects.sort_by_key(|(_, made)| made.first().map_or(3, |o| rank(o)));
    for (leak, made) in objects.iter().take(SHOWN) {
        leak_line(&mut out, leak);
        for object in made.iter().take(SHOWN) {
            describe_object(&mut out, object, &mut explained);
        }
        more(&mut out, made.len(), "places that made them");
    }
    if objects.len() > SHOWN {
        let _ = writeln!(
            out,
            "  ... and {} more types that pile up (all in --format json)",
            objects.len() - SHOWN
        );
    }
    // Every leaking test: the line a maintainer acts on.
    for found in &findings.tests {
        let what = if found.together {
            "leaks only when these run together:"
        } else {
            "leaking test:"
        };
        let _ = writeln!(out, "  {what} {}", shown(&found.tests));
        let metrics: Vec<String> = found.metrics.iter().map(|m| plain(m)).collect();
        wrapped(&mut out, "    ", &format!("({})", metrics.join("; ")));
    }
    notes(&mut out, hunt);
    out
}

/// The first line (what was run, how often) and the totals after the last run.
fn header(out: &mut String, hunt: &Hunt) {
    let config = &hunt.config;
    let target: Vec<&str> = std::iter::once(config.kind)
        .chain(std::iter::once(config.target.as_str()).filter(|t| !t.is_empty()))
        .chain(config.args.iter().map(String::as_str))
        .collect();
    let confirming = confirming_runs(hunt);
    wrapped(
        out,
        "",
        &format!(
            "hunt: {}: {} warm-up + {} measured runs{}",
            target.join(" "),
            config.warmup,
            config.repeat,
            match confirming {
                0 => String::new(),
                n => format!(", then 1 to warm tracemalloc up and {n} to confirm"),
            }
        ),
    );
    let last = hunt.repetitions.last().expect("a finished hunt has runs");
    wrapped(
        out,
        "  ",
        &format!(
            "after the last run: {} allocated blocks{}, {} open file descriptors{}",
            last.blocks,
            match last.interned {
                0 => String::new(),
                n => format!(
                    " (less {n} strings interned for good, which regrtest does not count \
                     either)"
                ),
            },
            last.fds,
            last.total_refcount
                .map(|total| format!(", total refcount {total}"))
                .unwrap_or_default()
        ),
    );
    if !hunt.failed() {
        out.push_str(if !hunt.accepted.is_empty() {
            "  no leak but the accepted ones\n"
        } else if confirming == 0 {
            "  no leak: nothing grew in every measured run\n"
        } else {
            "  no leak: what grew in every measured run did not in every confirming run\n"
        });
    }
}

fn confirming_runs(hunt: &Hunt) -> usize {
    hunt.repetitions
        .iter()
        .filter(|r| r.phase == "confirming")
        .count()
}

/// `LEAK metric: +N per run (growth per run: …)`.
fn leak_line(out: &mut String, leak: &Leak) {
    wrapped(
        out,
        "  ",
        &format!(
            "LEAK {}: {:+.1} per run (growth per run: {}{})",
            leak.metric,
            leak.per_run(),
            signed(&leak.deltas),
            if leak.confirming.is_empty() {
                String::new()
            } else {
                format!("; confirming: {}", signed(&leak.confirming))
            }
        ),
    );
}

/// The lines whose live blocks grew in every confirming run, or why none is shown.
fn blocks_sites(out: &mut String, hunt: &Hunt, findings: &Findings) {
    if findings.sites.is_empty() && hunt.findings.is_some() {
        wrapped(
            out,
            "    ",
            "tracemalloc found no line that left blocks alive in every run (an object taken \
             from a free list, a float for one, keeps the trace of where its memory was \
             first allocated)",
        );
    }
    for site in &findings.sites {
        let _ = writeln!(
            out,
            "    {:+.1} per run allocated at {}",
            site.per_run, site.allocated
        );
        if !site.source.is_empty() {
            let _ = writeln!(out, "        {}", site.source);
        }
    }
}

/// A metric's name as a sentence would say it: `objects: dict` is `dict objects`.
fn plain(metric: &str) -> String {
    match metric.strip_prefix("objects: ") {
        Some(name) => format!("{name} objects"),
        None => metric.replace("refcount: ", "references to "),
    }
}

/// Failed and skipped tests, accepted leaks, what moved without leaking, and the timing.
fn notes(out: &mut String, hunt: &Hunt) {
    let last = hunt.repetitions.last().expect("a finished hunt has runs");
    if !last.failed.is_empty() {
        wrapped(
            out,
            "  ",
            &format!(
                "note: {} failed in the last run, hunted all the same: {}",
                count(last.failed.len() as i64, "test"),
                shown(&last.failed)
            ),
        );
    }
    if !last.skipped.is_empty() {
        wrapped(
            out,
            "  ",
            &format!("not run (--accept): {}", shown(&last.skipped)),
        );
    }
    for name in &hunt.accepted {
        wrapped(out, "  ", &format!("accepted (--accept): {name}"));
    }
    if !last.release_built.is_empty() {
        wrapped(
            out,
            "  ",
            &format!(
                "note: total refcount left out: {} built for a release build of CPython, \
                 whose Py_INCREF and Py_DECREF it never sees, so it drifts without a leak: {}",
                match last.release_built.len() {
                    1 => "1 extension module was".to_owned(),
                    n => format!("{n} extension modules were"),
                },
                shown(&last.release_built)
            ),
        );
    }
    if !hunt.threads_left.is_empty() {
        wrapped(
            out,
            "  ",
            &format!(
                "note: the target left {} running; the hunt ended without waiting: {}",
                count(hunt.threads_left.len() as i64, "thread"),
                shown(&hunt.threads_left)
            ),
        );
    }
    if !hunt.processes_left.is_empty() {
        wrapped(
            out,
            "  ",
            &format!(
                "note: the target left {} running, stopped at the hunt's end: {}",
                match hunt.processes_left.len() {
                    1 => "1 process".to_owned(),
                    n => format!("{n} processes"),
                },
                shown(&hunt.processes_left)
            ),
        );
    }
    for name in &hunt.config.accept {
        let used = last.skipped.contains(name)
            || hunt
                .accepted
                .iter()
                .any(|a| a.split([' ', ':']).any(|word| word == name));
        if !used {
            wrapped(
                out,
                "  ",
                &format!("note: --accept {name} matched no test and no type that leaked (a typo?)"),
            );
        }
    }
    for fine in &hunt.not_leaks {
        wrapped(
            out,
            "  ",
            &format!(
                "not a leak: {} moved ({}), {}",
                fine.metric,
                signed(&fine.deltas),
                fine.reason
            ),
        );
    }
    let runs = hunt.repetitions.len() as f64;
    let run_ms: f64 = hunt.repetitions.iter().map(|r| r.run_seconds).sum::<f64>() * 1e3 / runs;
    let measure_ms: f64 = hunt
        .repetitions
        .iter()
        .map(|r| r.measure_seconds)
        .sum::<f64>()
        * 1e3
        / runs;
    let _ = writeln!(
        out,
        "  per run: the target {run_ms:.1} ms, measuring after it {measure_ms:.1} ms"
    );
}

/// "1 test", "2 tests".
fn count(n: i64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// How many findings of one kind the text report shows (`--format json` has them all).
const SHOWN: usize = 3;

/// The first [`SHOWN`] names, and how many more there are.
fn shown(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(text, " and {} more", names.len() - SHOWN);
    }
    text
}

/// "… and N more", for what the text report leaves out.
fn more(out: &mut String, total: usize, what: &str) {
    if total > SHOWN {
        let _ = writeln!(
            out,
            "    ... and {} more {what} (all in --format json)",
            total - SHOWN
        );
    }
}

/// Causes first: what is over-counted or held, then what they keep alive.
fn rank(object: &LeakedObject) -> u8 {
    match object.verdict {
        Verdict::OverCounted => 0,
        Verdict::Held => 1,
        Verdict::Unreachable => 2,
    }
}

/// Words of `text` on lines of at most [`WIDTH`] columns, the first after `indent`, the
/// others two columns further in.
fn wrapped(out: &mut String, indent: &str, text: &str) {
    let mut line = indent.to_owned();
    for word in text.split_whitespace() {
        let start = line.trim().is_empty();
        if !start && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{indent}  ");
        } else if !start {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

const WIDTH: usize = 80;

/// A group of new leaked objects: how many, where they were made, what holds them.
fn describe_object(
    out: &mut String,
    object: &LeakedObject,
    explained: &mut BTreeSet<&'static str>,
) {
    let count = object.count.unwrap_or(0);
    let place = match &object.allocated {
        Some(site) => format!("allocated at {site}"),
        None => "where tracemalloc cannot tell".to_owned(),
    };
    wrapped(
        out,
        "    ",
        &format!(
            "{count} made in the traced runs and still alive ({:+.1} per run), {place}",
            object.per_run
        ),
    );
    if let Some(line) = object.source.as_deref().filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "        {line}");
    }
    wrapped(out, "      ", &format!("newest: {}", object.repr));
    verdict(out, object, explained);
}

/// What holds a leaked object, in words.
///
/// Why a verdict can come about is said the first time it is given (`explained` keeps
/// track); later ones say "as above".
fn verdict(out: &mut String, object: &LeakedObject, explained: &mut BTreeSet<&'static str>) {
    let why = |key: &'static str, text: &'static str, explained: &mut BTreeSet<&str>| {
        if explained.insert(key) {
            text
        } else {
            "as above"
        }
    };
    const UNSEEN: &str = "C code keeps a reference it never releases (a Py_INCREF without its \
                          Py_DECREF) or never shows the collector (a tp_traverse that skips \
                          it)";
    let text = match (object.verdict, object.kind) {
        (Verdict::Held, _) => match &object.chain {
            Some(chain) => format!("held: reachable as {chain}"),
            None => "held by objects the collector can see, none of them reachable from a \
                     module: leaked objects themselves"
                .to_owned(),
        },
        (Verdict::OverCounted, LeakKind::References) => format!(
            "over-counted: nothing the collector can see took the new references: {}",
            why("unseen", UNSEEN, explained)
        ),
        (Verdict::OverCounted, LeakKind::NewObjects) => format!(
            "over-counted: no module reaches it, and {} to it held by nothing the collector \
             can see: {}",
            count(object.excess.unwrap_or(0), "reference"),
            why("unseen", UNSEEN, explained)
        ),
        (Verdict::Unreachable, _) => format!(
            "unreachable: no module reaches it, and the collector sees every reference to \
             it, yet did not free it. Its chain of referrers, {}, ends in an object with {} \
             nothing the collector can see holds: {}",
            object.kept_by.as_deref().unwrap_or("?"),
            count(object.excess.unwrap_or(0), "reference"),
            why(
                "cycle",
                "a cycle through an object whose tp_traverse hides references, or a \
                 reference C code never released, keeps them all alive",
                explained
            )
        ),
    };
    wrapped(out, "      ", &text);
    // Where a shared value (a small int, True, an interned string) can be reached says
    // nothing about who took the references.
    let shared = ["int", "bool", "float", "str", "bytes", "NoneType"];
    if let (Verdict::OverCounted, Some(chain)) = (object.verdict, &object.chain) {
        if !shared.contains(&object.type_name.as_str()) {
            wrapped(out, "      ", &format!("(it is reachable as {chain})"));
        }
    }
}

/// Every metric that leaked, as growth since the first run, one line each.
pub fn plot(hunt: &Hunt, path: &Path) -> Result<()> {
    let growth = |values: &[i64]| values.iter().map(|v| v - values[0]).collect::<Vec<i64>>();
    let blocks: Vec<i64> = hunt.repetitions.iter().map(|r| r.blocks).collect();
    let mut series = vec![("allocated blocks".to_owned(), growth(&blocks))];
    for leak in hunt.leaks.iter().filter(|l| l.metric != "allocated blocks") {
        series.push((leak.metric.clone(), growth(&leak.values)));
    }
    let (low, high) = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold((0, 1), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let runs = hunt.repetitions.len();
    // Runs after the measured ones were made to confirm, tracemalloc on from the first.
    let traced_from = hunt.config.warmup + hunt.config.repeat + 1;
    let caption = if runs >= traced_from {
        format!(
            "growth since run 1 (grey: {} warm-up runs; blue: runs {traced_from}-{runs}, to confirm)",
            hunt.config.warmup
        )
    } else {
        format!(
            "growth since run 1 (grey: {} warm-up runs)",
            hunt.config.warmup
        )
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(1..runs.max(2), low..high + (high - low) / 10 + 1)?;
    chart.configure_mesh().x_desc("run").draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(1, low), (hunt.config.warmup.max(1), high)],
        BLACK.mix(0.06).filled(),
    )))?;
    if runs >= traced_from {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(traced_from - 1, low), (runs, high)],
            SERIES_COLOURS[0].mix(0.08).filled(),
        )))?;
    }
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()].to_rgba();
        let points: Vec<(usize, i64)> = values
            .iter()
            .enumerate()
            .map(|(x, &y)| (x + 1, y))
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repetition(index: usize, blocks: i64, tables: i64) -> Repetition {
        Repetition {
            index,
            blocks,
            interned: 0,
            fds: 4,
            census: [("HashTable".to_owned(), tables)].into(),
            refcounts: Default::default(),
            total_refcount: None,
            run_seconds: 1.0,
            measure_seconds: 0.1,
            phase: String::new(),
            objects_growing: 0,
            failed: Vec::new(),
            skipped: Vec::new(),
            release_built: Vec::new(),
            tables_alive: tables,
        }
    }

    fn runs(values: &[(i64, i64)]) -> Vec<Repetition> {
        values
            .iter()
            .enumerate()
            .map(|(i, &(blocks, tables))| repetition(i, blocks, tables))
            .collect()
    }

    fn names(leaks: &[Leak]) -> Vec<&str> {
        leaks.iter().map(|l| l.metric.as_str()).collect()
    }

    #[test]
    fn only_growth_in_every_measured_run_is_a_leak() {
        // Warm-up fills a cache (blocks jump), then blocks wobble; tables grow every run.
        let (leaks, fine) = find_leaks(
            &runs(&[(100, 0), (500, 1), (501, 2), (499, 3), (502, 4)]),
            2,
            3,
        );
        assert_eq!(names(&leaks), [TABLES, "objects: HashTable"]);
        assert_eq!(
            (leaks[1].deltas.clone(), leaks[1].per_run()),
            (vec![1, 1, 1], 1.0)
        );
        assert_eq!(fine.len(), 1);
        assert_eq!(
            (fine[0].metric.as_str(), &fine[0].deltas[..]),
            (BLOCKS, &[1, -2, 3][..])
        );
    }

    #[test]
    fn a_cache_filled_during_warm_up_is_not_a_leak() {
        let (leaks, fine) = find_leaks(
            &runs(&[(100, 0), (900, 5), (900, 5), (900, 5), (900, 5)]),
            2,
            3,
        );
        assert!(leaks.is_empty() && fine.is_empty());
    }

    #[test]
    fn growth_the_confirming_runs_do_not_repeat_is_not_a_leak() {
        // A cache that fills over four runs: it grows in the measured runs, then stops.
        let values = [
            (100, 0),
            (200, 1),
            (203, 2),
            (204, 3),
            (205, 4),
            (205, 5),
            (205, 6),
            (205, 7),
        ];
        let mut values = runs(&values);
        for run in &mut values[5..] {
            run.phase = "confirming".into();
        }
        let (leaks, fine) = find_leaks(&values, 2, 3);
        assert_eq!(names(&leaks), [TABLES, "objects: HashTable"]);
        assert_eq!(leaks[1].confirming, [1, 1, 1]);
        assert_eq!(fine[0].metric, BLOCKS);
        assert_eq!(fine[0].confirming, [0, 0, 0]);
    }

    #[test]
    fn one_dip_in_the_confirming_runs_does_not_clear_a_steady_total_refcount_leak() {
        // Measured on python3.11-dbg (issue 22): +15, +6, +6, then confirming with a dip.
        let totals = [0, 15, 21, 27, 42, 50, 56, 51, 57, 63, 69, 75, 81];
        let mut values = runs(&vec![(100, 0); totals.len()]);
        for (run, total) in values.iter_mut().zip(totals) {
            run.total_refcount = Some(total);
        }
        for run in &mut values[5..] {
            run.phase = "confirming".into();
        }
        let (leaks, _) = find_leaks(&values, 1, 3);
        assert_eq!(names(&leaks), [TOTAL]);
        // Two dips, or no growth overall, and it is not confirmed.
        values[10].total_refcount = Some(60);
        let (leaks, _) = find_leaks(&values, 1, 3);
        assert!(leaks.is_empty());
    }

    #[test]
    fn any_change_in_file_descriptors_leaks() {
        let mut values = runs(&[(1, 0), (1, 0), (1, 0), (1, 0), (1, 0)]);
        values[3].fds = 5;
        let (leaks, _) = find_leaks(&values, 2, 3);
        assert_eq!(names(&leaks), [FDS]);
    }
}
