//! `refcount-lab hunt`: a refleak hunter that works on release builds of CPython.
//!
//! The child (`hunt.py`, compiled in) runs the target `warmup + repeat` times in one
//! interpreter and sends what it measured after each run. This module decides, with
//! regrtest's rule for `-R`, what leaks: a metric leaks when it grew in *every* measured run
//! after the warm-up. Warm-up runs absorb caches that fill once.

use crate::faults::Fault;
use crate::python::Python;
use crate::runner::{self, Ending, Job, Run, ScratchDir};
use crate::trace::{Event, Repetition};
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
    /// Dotted names of objects whose refcount to follow, e.g. `hash`.
    pub watch: Vec<String>,
}

/// A metric that grew in every measured run.
#[derive(Debug, Serialize)]
pub struct Leak {
    /// e.g. `allocated blocks`, `objects: HashTable`, `refcount: hash`.
    pub metric: String,
    /// The metric after every run, warm-up included.
    pub values: Vec<i64>,
    /// Growth in each measured run.
    pub deltas: Vec<i64>,
}

impl Leak {
    pub fn per_run(&self) -> f64 {
        self.deltas.iter().sum::<i64>() as f64 / self.deltas.len() as f64
    }
}

#[derive(Debug, Serialize)]
pub struct Hunt {
    pub config: Config,
    pub repetitions: Vec<Repetition>,
    pub leaks: Vec<Leak>,
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
    })?;
    // Between repetitions, the HashTable type reports every table it makes and frees.
    let mut tables_alive = 0;
    let mut repetitions: Vec<Repetition> = Vec::new();
    for event in run.events() {
        match event {
            Event::Alloc { .. } => tables_alive += 1,
            Event::Free { .. } => tables_alive -= 1,
            Event::Repetition(r) => repetitions.push(Repetition {
                tables_alive,
                ..(**r).clone()
            }),
            _ => {}
        }
    }
    let expected = config.warmup + config.repeat;
    if run.ending == Ending::Exited(WATCH_NOT_FOUND) {
        bail!("{}", run.stderr.text.trim());
    }
    if run.ending != Ending::Exited(0) || repetitions.len() != expected {
        bail!("{}", failure(&run, repetitions.len(), expected));
    }
    let leaks = find_leaks(&repetitions, config.warmup);
    Ok(Hunt {
        config,
        repetitions,
        leaks,
    })
}

/// Why a hunt did not complete, with what the target printed.
fn failure(run: &Run, completed: usize, expected: usize) -> String {
    let how = match run.ending {
        Ending::Exited(code) => format!("exited with status {code}"),
        Ending::Signaled(signal) => format!("crashed (signal {signal})"),
        Ending::TimedOut | Ending::LeftRunning => {
            format!("was stopped after {} s", run.timeout.as_secs())
        }
    };
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

/// Every metric that grew in each run after the warm-up (regrtest's rule).
pub fn find_leaks(repetitions: &[Repetition], warmup: usize) -> Vec<Leak> {
    type Read = Box<dyn Fn(&Repetition) -> Option<i64>>;
    let mut metrics: Vec<(String, Read)> = vec![
        ("allocated blocks".into(), Box::new(|r| Some(r.blocks))),
        ("open file descriptors".into(), Box::new(|r| Some(r.fds))),
        ("total refcount".into(), Box::new(|r| r.total_refcount)),
        (
            "HashTables alive (the type's own alloc/free count)".into(),
            Box::new(|r| Some(r.tables_alive)),
        ),
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
    // The last warm-up run is the baseline of the first measured one.
    let from = warmup.saturating_sub(1);
    metrics
        .into_iter()
        .filter_map(|(metric, read)| {
            let values: Vec<i64> = repetitions.iter().map(&read).collect::<Option<_>>()?;
            let deltas: Vec<i64> = values[from..].windows(2).map(|w| w[1] - w[0]).collect();
            let grew_every_time = !deltas.is_empty() && deltas.iter().all(|&d| d > 0);
            grew_every_time.then_some(Leak {
                metric,
                values,
                deltas,
            })
        })
        .collect()
}

/// The short report.
pub fn render(hunt: &Hunt) -> String {
    let config = &hunt.config;
    let target: Vec<&str> = std::iter::once(config.kind)
        .chain(std::iter::once(config.target.as_str()).filter(|t| !t.is_empty()))
        .chain(config.args.iter().map(String::as_str))
        .collect();
    let mut out = format!(
        "hunt: {}: {} warm-up + {} measured runs\n",
        target.join(" "),
        config.warmup,
        config.repeat
    );
    let last = hunt.repetitions.last().expect("a finished hunt has runs");
    let _ = writeln!(
        out,
        "  after the last run: {} allocated blocks, {} open file descriptors{}",
        last.blocks,
        last.fds,
        last.total_refcount
            .map(|total| format!(", total refcount {total}"))
            .unwrap_or_default()
    );
    if hunt.leaks.is_empty() {
        out.push_str("  no leak: nothing grew in every measured run\n");
    }
    for leak in &hunt.leaks {
        let _ = writeln!(
            out,
            "  LEAK {}: {:+.1} per run (growth per measured run: {})",
            leak.metric,
            leak.per_run(),
            leak.deltas
                .iter()
                .map(|d| format!("{d:+}"))
                .collect::<Vec<_>>()
                .join(", ")
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
    out
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
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "growth since run 1 ({} warm-up runs shaded)",
                hunt.config.warmup
            ),
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(1..runs.max(2), low..high + (high - low) / 10 + 1)?;
    chart.configure_mesh().x_desc("run").draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(1, low), (hunt.config.warmup.max(1), high)],
        BLACK.mix(0.06).filled(),
    )))?;
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
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
            fds: 4,
            census: [("HashTable".to_owned(), tables)].into(),
            refcounts: Default::default(),
            total_refcount: None,
            run_seconds: 1.0,
            measure_seconds: 0.1,
            tables_alive: tables,
        }
    }

    #[test]
    fn only_growth_in_every_measured_run_is_a_leak() {
        // Warm-up fills a cache (blocks jump), then blocks wobble; tables grow every run.
        let runs: Vec<Repetition> = [(100, 0), (500, 1), (501, 2), (499, 3), (502, 4)]
            .iter()
            .enumerate()
            .map(|(i, &(blocks, tables))| repetition(i, blocks, tables))
            .collect();
        let leaks = find_leaks(&runs, 2);
        let names: Vec<&str> = leaks.iter().map(|l| l.metric.as_str()).collect();
        assert_eq!(
            names,
            [
                "HashTables alive (the type's own alloc/free count)",
                "objects: HashTable"
            ]
        );
        assert_eq!(
            (leaks[1].deltas.clone(), leaks[1].per_run()),
            (vec![1, 1, 1], 1.0)
        );
    }

    #[test]
    fn a_cache_filled_during_warm_up_is_not_a_leak() {
        let runs: Vec<Repetition> = [(100, 0), (900, 5), (900, 5), (900, 5), (900, 5)]
            .iter()
            .enumerate()
            .map(|(i, &(blocks, tables))| repetition(i, blocks, tables))
            .collect();
        assert!(find_leaks(&runs, 2).is_empty());
    }
}
