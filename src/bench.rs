//! `refcount-lab bench`: the talk's performance question, measured with the real type.
//!
//! The measuring happens in child interpreters (`bench.py`, compiled in) with the ordinary
//! allocator: one per round against dict, one for memory and the sweep, one per container
//! for the refill. This module runs them, reads their JSON reports, and turns them into
//! terminal tables, a CSV file and SVG plots. It does not time anything itself.

use crate::python::Python;
use crate::runner::{self, Ending, Job};
use crate::scratch::ScratchDir;
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Deserialize;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("bench.py");

/// Everything `bench` measured: the rounds against dict, memory, the knobs' sweep and the
/// refill.
#[derive(Debug)]
pub struct Report {
    pub entries: usize,
    pub rounds: usize,
    /// Times each operation ran per contender and round; the fastest counts.
    pub repeats: usize,
    pub versus_dict: Vec<Comparison>,
    pub memory: Vec<Memory>,
    pub sweep_entries: usize,
    pub sweep: Vec<SweepRow>,
    /// `timeit`'s pattern, dict's run and HashTable's, each in an interpreter of its own.
    pub refill: [Refill; 2],
}

/// A new table filled with int keys right after the last one was dropped (`bench.py --refill`).
#[derive(Debug, Deserialize)]
pub struct Refill {
    pub entries: usize,
    /// Fills timed; the fastest counts.
    pub runs: usize,
    pub seconds: f64,
    /// Pages the system handed over anew during that fill.
    pub page_faults: i64,
}

/// Throughput ratios for one operation on one kind of key, one per round (each round in
/// an interpreter of its own, all three ratios of a round timed in it).
#[derive(Debug)]
pub struct Comparison {
    pub keys: String,
    pub operation: String,
    /// HashTable / dict.
    pub ratios: Vec<f64>,
    /// SafeHashTable / dict.
    pub safe_ratios: Vec<f64>,
    /// SafeHashTable / HashTable.
    pub safe_vs_raw: Vec<f64>,
}

/// What `bench.py --round K` prints: one round.
#[derive(Debug, Deserialize)]
struct Round {
    entries: usize,
    repeats: usize,
    versus_dict: Vec<RoundRatios>,
}

#[derive(Debug, Deserialize)]
struct RoundRatios {
    keys: String,
    operation: String,
    ratio: f64,
    safe_ratio: f64,
    safe_vs_raw: f64,
}

/// What `bench.py` prints without `--round` or `--refill`.
#[derive(Debug, Deserialize)]
struct Knobs {
    memory: Vec<Memory>,
    sweep_entries: usize,
    sweep: Vec<SweepRow>,
}

/// Container bytes per entry (keys and values not included).
#[derive(Debug, Deserialize)]
pub struct Memory {
    pub entries: usize,
    pub hashtable: f64,
    /// SafeHashTable.
    pub safe: f64,
    pub dict: f64,
    /// HashTable's number of buckets at that size.
    pub buckets: usize,
}

#[derive(Debug, Deserialize)]
pub struct SweepRow {
    pub hash_func: String,
    pub size: usize,
    pub max_load: f64,
    pub final_size: usize,
    pub resizes: usize,
    pub mean_chain: f64,
    pub max_chain: usize,
    pub set_mops: f64,
    pub get_mops: f64,
}

/// Rounds against dict: 7 (3 with `--quick`), each in a fresh interpreter (see `bench.py`).
fn rounds(quick: bool) -> usize {
    if quick {
        3
    } else {
        7
    }
}

/// Runs the measurements in child interpreters, one per round, one for memory and the
/// sweep and one per container for the refill, all within `timeout`, and reads their reports.
pub fn measure(python: &Python, quick: bool, timeout: Duration) -> Result<Report> {
    let parts = Parts {
        python,
        scratch: ScratchDir::with_file("bench.py", SCRIPT)?,
        quick,
        deadline: Instant::now() + timeout,
        timeout,
    };
    let mut versus_dict: Vec<Comparison> = Vec::new();
    let (mut entries, mut repeats) = (0, 0);
    for round_number in 0..rounds(quick) {
        let number = round_number.to_string();
        let round: Round = parts.run(&format!("round {number}"), &["--round", &number])?;
        (entries, repeats) = (round.entries, round.repeats);
        add_round(&mut versus_dict, round.versus_dict, round_number)?;
    }
    let knobs: Knobs = parts.run("measuring of memory and the sweep", &[])?;
    let dict = parts.run("refill of dict", &["--refill", "dict"])?;
    let hashtable = parts.run("refill of HashTable", &["--refill", "HashTable"])?;
    Ok(Report {
        entries,
        rounds: rounds(quick),
        repeats,
        versus_dict,
        memory: knobs.memory,
        sweep_entries: knobs.sweep_entries,
        sweep: knobs.sweep,
        refill: [dict, hashtable],
    })
}

/// Adds one round's ratios to those of the rounds before, which must have measured the same
/// operations in the same order.
fn add_round(
    versus_dict: &mut Vec<Comparison>,
    rows: Vec<RoundRatios>,
    round_number: usize,
) -> Result<()> {
    if round_number == 0 {
        *versus_dict = (rows.iter())
            .map(|row| Comparison {
                keys: row.keys.clone(),
                operation: row.operation.clone(),
                ratios: Vec::new(),
                safe_ratios: Vec::new(),
                safe_vs_raw: Vec::new(),
            })
            .collect();
    }
    let same_rows = rows.len() == versus_dict.len()
        && (rows.iter().zip(versus_dict.iter()))
            .all(|(row, seen)| row.keys == seen.keys && row.operation == seen.operation);
    if !same_rows {
        bail!("the benchmark's round {round_number} measured other operations than round 0");
    }
    for (row, comparison) in rows.into_iter().zip(versus_dict) {
        comparison.ratios.push(row.ratio);
        comparison.safe_ratios.push(row.safe_ratio);
        comparison.safe_vs_raw.push(row.safe_vs_raw);
    }
    Ok(())
}

/// The parts of one `bench`: the same interpreter, script and options, one deadline.
struct Parts<'a> {
    python: &'a Python,
    scratch: ScratchDir,
    quick: bool,
    deadline: Instant,
    timeout: Duration,
}

impl Parts<'_> {
    /// Runs `bench.py` once with `args` in what is left of the time, and reads its JSON;
    /// `part` names it in errors.
    fn run<T: serde::de::DeserializeOwned>(&self, part: &str, args: &[&str]) -> Result<T> {
        let out_of_time = |when: &str| {
            format!(
                "the benchmark did not finish within {} s: it was stopped {when} its {part} (a \
                 longer --timeout gives it more time)",
                self.timeout.as_secs()
            )
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(out_of_time("before"));
        }
        let quick_flag = self.quick.then_some("--quick");
        let args: Vec<&OsStr> = quick_flag.iter().chain(args).map(OsStr::new).collect();
        let run = runner::run(&Job {
            python: self.python,
            script: Path::new("bench.py"),
            args: &args,
            dir: self.scratch.path(),
            faults: &[],
            timeout: left,
            debug_allocator: false,
            wait_for_leftovers: true,
        })?;
        let said = run.stderr.text.trim_end();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(":\n{said}")
        };
        match run.ending {
            Ending::Exited(0) => {}
            // The run had only what was left of the whole --timeout: name the whole.
            Ending::TimedOut | Ending::LeftRunning => bail!("{}{said}", out_of_time("in")),
            _ => bail!("the benchmark's {part} {}{said}", run.ending_described()),
        }
        serde_json::from_str(run.stdout.text.trim())
            .with_context(|| format!("the benchmark's {part} wrote a report that is not valid"))
    }
}

/// What SafeHashTable pays for its safety, counted in instructions (deterministic, unlike the
/// timings above) by `benches/instructions.sh` on CPython 3.11.7 and 3.14.
const SAFETY_COSTS: &str = "  \
  Where the difference comes from: both run the same table code with the same shortcuts. On
  top, SafeHashTable pays, per operation, in instructions (benches/instructions.sh, CPython
  3.11 and 3.14): PyO3's entry and exit (the trampoline and its panic guard, the GIL count in
  a thread-local, argument extraction) 95 to 127 for h[k], k in h and h[k] = v, and 303 for
  pop (its optional default arrives as a tuple); the borrow flag, an atomic operation per
  borrow, 24 to 36 (no borrow may be held while Python code, hash_func or __eq__, runs);
  reference counts by function call, 10 to 21 on 3.11 and 30 to 59 on 3.14 (HashTable
  writes them inline, as CPython's headers do). These three are 59 to 73 per cent of
  SafeHashTable's extra instructions; the rest is PyO3's other glue, not broken down here.
  In all SafeHashTable runs 1.27 to 2.52 times dict's instructions per operation, HashTable
  0.75 to 0.92 times. Time parts them further than instructions do: see the ratios above.";

/// Why the memory ratio moves with the number of entries.
const MEMORY_MOVES: &str = "  \
  Why the ratio moves: both containers grow in doublings, at different points. HashTable
  doubles its buckets (4 bytes each) when one more entry would pass max_load (0.5: at 2, 4,
  8, ... 2^k entries) and its entry array (32 bytes an entry: hash, key, value, next link)
  at the same powers of two; dict doubles its slots when two thirds are used, and keeps
  entries (24 bytes) for two thirds of its slots, with an index of 1 to 8 bytes a slot. So
  HashTable is at its emptiest just past a power of two (10^4 entries use 16384 entry
  places and 32768 buckets) while dict may then be nearly full (16384 slots, room for
  10922 entries): the ratio peaks where HashTable has just doubled and dict has not.";

/// Why a fill after a dropped table can be slower than the rounds above say.
const REFILL_FAULTS: &str = "  \
  A page fault is a page of memory the system hands over anew: here HashTable's memory went
  back to the system when a table was dropped, and the next fill took it back page by page.
  With glibc's default settings, where this was measured, it did not (no faults a step from
  10^4 to 3*10^5 keys): HashTable keeps its buckets and entries in one block, as dict does,
  which grows in place where the heap has room (benches/results-issue-25.md). Another
  allocator, or other malloc settings, can hand memory back sooner.";

/// "the fastest of 3 runs", or "one run" when there is one.
fn fastest_of(count: usize, what: &str) -> String {
    if count == 1 {
        format!("one {what}")
    } else {
        format!("the fastest of {count} {what}s")
    }
}

/// The geometric mean of ratios (the mean that treats 2× and 0.5× alike).
fn geometric_mean(ratios: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = ratios.fold((0.0, 0), |(sum, count), r| (sum + r.ln(), count + 1));
    (sum / f64::from(count.max(1))).exp()
}

fn min_median_max(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    )
}

/// The report as terminal tables.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "HashTable against dict: {} keys, {} rounds, each in a fresh interpreter (after an \
         untimed pass, {}), throughput ratio HashTable / dict (above 1: HashTable is \
         faster)\n",
        report.entries,
        report.rounds,
        fastest_of(report.repeats, "run")
    );
    ratio_table(&mut out, report, |row| &row.ratios);
    let _ = writeln!(
        out,
        "\nThe same table in safe PyO3 (SafeHashTable), timed in the same rounds: throughput \
         ratio SafeHashTable / dict\n"
    );
    ratio_table(&mut out, report, |row| &row.safe_ratios);
    let _ = writeln!(
        out,
        "\nSafeHashTable against HashTable, the same rounds: throughput ratio \
         SafeHashTable / HashTable (above 1: SafeHashTable is faster)\n"
    );
    ratio_table(&mut out, report, |row| &row.safe_vs_raw);
    let _ = writeln!(out, "\n{SAFETY_COSTS}");
    let [dict, hashtable] = &report.refill;
    let _ = writeln!(
        out,
        "\nWhat a timeit loop of `t = HashTable()` and a fill measures: dropping the last \
         table, making a new one and filling it with {} int keys (each container in an \
         interpreter of its own, {})\n\n  throughput ratio HashTable / dict {:.2}× (above 1: \
         HashTable is faster); page faults a step: HashTable {}, dict {}",
        dict.entries,
        fastest_of(dict.runs, "step"),
        dict.seconds / hashtable.seconds,
        hashtable.page_faults,
        dict.page_faults
    );
    if hashtable.page_faults > 2 * dict.page_faults + 100 {
        let _ = writeln!(out, "\n{REFILL_FAULTS}");
    }
    let _ = writeln!(
        out,
        "\nMemory per entry (int keys; the container's own memory, keys and values not counted)\n"
    );
    let _ = writeln!(
        out,
        "  entries  HashTable  SafeHashTable      dict  HashTable / dict  HashTable buckets"
    );
    for memory in &report.memory {
        let _ = writeln!(
            out,
            "  {:>7}  {:>7.1} B  {:>11.1} B  {:>6.1} B  {:>15.2}×  {:>17}",
            memory.entries,
            memory.hashtable,
            memory.safe,
            memory.dict,
            memory.hashtable / memory.dict,
            memory.buckets
        );
    }
    let _ = writeln!(
        out,
        "  geometric mean of HashTable / dict: {:.2}×\n\n{MEMORY_MOVES}\n",
        geometric_mean(report.memory.iter().map(|m| m.hashtable / m.dict))
    );
    let _ = writeln!(
        out,
        "The talk's three knobs: {} mixed keys (half str, half int) per configuration\n",
        report.sweep_entries
    );
    let _ = writeln!(
        out,
        "  hash_func       size  max_load  final size  resizes  mean chain  max chain  \
         set Mops/s  get Mops/s"
    );
    for row in &report.sweep {
        let _ = writeln!(
            out,
            "  {:<14} {:>5}  {:>8.2}  {:>10}  {:>7}  {:>10.2}  {:>9}  {:>10.2}  {:>10.2}",
            row.hash_func,
            row.size,
            row.max_load,
            row.final_size,
            row.resizes,
            row.mean_chain,
            row.max_chain,
            row.set_mops,
            row.get_mops
        );
    }
    out
}

/// One row per key kind and operation: min, median and max of one ratio over the rounds.
fn ratio_table(out: &mut String, report: &Report, ratios: fn(&Comparison) -> &Vec<f64>) {
    let _ = writeln!(out, "  keys  operation     min  median     max");
    for row in &report.versus_dict {
        let (min, median, max) = min_median_max(ratios(row));
        let _ = writeln!(
            out,
            "  {:<5} {:<10} {min:>6.2}× {median:>6.2}× {max:>6.2}×",
            row.keys, row.operation
        );
    }
}

/// The sweep as CSV, one row per configuration.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "hash_func,size,max_load,final_size,resizes,mean_chain,max_chain,set_mops,get_mops\n",
    );
    for r in &report.sweep {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.4},{},{:.4},{:.4}",
            r.hash_func,
            r.size,
            r.max_load,
            r.final_size,
            r.resizes,
            r.mean_chain,
            r.max_chain,
            r.set_mops,
            r.get_mops
        );
    }
    out
}

/// A number read off a row of the sweep, to plot.
type Metric = fn(&SweepRow) -> f64;

/// Line colours from Okabe and Ito's palette, told apart with every common colour vision
/// deficiency (and none of them pale on white): blue, vermillion, bluish green, reddish
/// purple.
pub const SERIES_COLOURS: [RGBColor; 4] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
];

/// Draws the marker of series `i` at each of `points` (data or pixel coordinates): a hollow
/// circle, a triangle, a filled square, a cross, each smaller than the one before, so that
/// lines lying on top of each other stay visible. `$draw` gets the markers as `$m`.
macro_rules! draw_markers {
    ($i:expr, $points:expr, $colour:expr, |$m:ident| $draw:expr) => {{
        let (style, fill) = ($colour.stroke_width(2), $colour.filled());
        match $i % 4 {
            0 => {
                let $m = $points.map(|at| Circle::new(at, 7, style));
                $draw
            }
            1 => {
                let $m = $points.map(|at| TriangleMarker::new(at, 6, fill));
                $draw
            }
            2 => {
                let $m = $points
                    .map(|at| EmptyElement::at(at) + Rectangle::new([(-3, -3), (3, 3)], fill));
                $draw
            }
            _ => {
                let $m = $points.map(|at| Cross::new(at, 3, style));
                $draw
            }
        }
    }};
}

/// One panel per hash function: `metric` against max_load, one line per initial size. Each
/// panel has its own scale (the longest chains of `hash` and of `terrible_hash` differ a
/// hundredfold), and one legend below the panels keeps the data clear.
fn plot_sweep(report: &Report, title: &str, metric: Metric) -> Result<String> {
    let mut hash_funcs: Vec<&str> = report.sweep.iter().map(|r| r.hash_func.as_str()).collect();
    hash_funcs.dedup();
    let mut sizes: Vec<usize> = report.sweep.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();

    let mut svg = String::new();
    let size = (360 * hash_funcs.len() as u32, 380);
    // Drawn in a block of its own: the drawing areas borrow `svg` until they go.
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 18))?;
        let (panels, legend) = root.split_vertically(310);
        for (panel, hash_func) in panels
            .split_evenly((1, hash_funcs.len()))
            .iter()
            .zip(&hash_funcs)
        {
            let rows = || report.sweep.iter().filter(|r| r.hash_func == *hash_func);
            let top = rows().map(metric).fold(0.0, f64::max).max(1.0) * 1.15;
            let mut chart = ChartBuilder::on(panel)
                .caption(*hash_func, ("sans-serif", 15))
                .margin(12)
                .x_label_area_size(30)
                .y_label_area_size(45)
                .build_cartesian_2d(0.2f64..1.05f64, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("max_load")
                .y_label_formatter(&|y| tick(*y))
                .draw()?;
            for (i, size) in sizes.iter().enumerate() {
                let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
                let points: Vec<(f64, f64)> = rows()
                    .filter(|r| r.size == *size)
                    .map(|r| (r.max_load, metric(r)))
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
                draw_markers!(i, points.iter().copied(), colour, |markers| chart
                    .draw_series(markers)
                    .map(|_| ()))?;
            }
        }
        // The legend: a line and a marker per initial size, in a row under the panels.
        for (i, size) in sizes.iter().enumerate() {
            let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
            let x = 60 + 170 * i as i32;
            legend.draw(&PathElement::new(
                [(x, 20), (x + 30, 20)],
                colour.stroke_width(2),
            ))?;
            draw_markers!(i, std::iter::once((x + 15, 20)), colour, |markers| markers
                .into_iter()
                .try_for_each(|m| legend.draw(&m)))?;
            legend.draw(&Text::new(
                format!("initial size {size}"),
                (x + 40, 13),
                ("sans-serif", 14),
            ))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// An axis label: at most two decimals, no trailing zeros (`0.6`, not `0.6000000000000001`).
fn tick(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The files `--plot DIR` writes.
pub const PLOTS: [&str; 3] = ["get-throughput.svg", "set-throughput.svg", "max-chain.svg"];

/// Writes the sweep's plots into `dir` (which exists); returns their paths.
pub fn plot(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let plots: [(&str, Metric); 3] = [
        ("h[k]: million lookups per second", |r| r.get_mops),
        ("h[k] = v: million stores per second", |r| r.set_mops),
        ("longest chain after filling", |r| r.max_chain as f64),
    ];
    let mut written = Vec::new();
    for (file, (title, metric)) in PLOTS.into_iter().zip(plots) {
        let path = dir.join(file);
        let svg = plot_sweep(report, title, metric)
            .with_context(|| format!("cannot draw {}", path.display()))?;
        crate::outputs::write(&path, svg.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(operations: &[&str], ratio: f64) -> Vec<RoundRatios> {
        (operations.iter())
            .map(|operation| RoundRatios {
                keys: "int".into(),
                operation: (*operation).into(),
                ratio,
                safe_ratio: ratio / 4.0,
                safe_vs_raw: 0.25,
            })
            .collect()
    }

    #[test]
    fn rounds_add_up_only_when_they_measured_the_same_operations() {
        let mut versus_dict = Vec::new();
        add_round(&mut versus_dict, rows(&["h[k]", "pop(k)"], 1.0), 0).unwrap();
        add_round(&mut versus_dict, rows(&["h[k]", "pop(k)"], 2.0), 1).unwrap();
        assert_eq!(versus_dict.len(), 2);
        assert_eq!(versus_dict[1].ratios, [1.0, 2.0]);
        assert_eq!(versus_dict[1].safe_ratios, [0.25, 0.5]);
        for other in [
            &["h[k]"][..],
            &["pop(k)", "h[k]"],
            &["h[k]", "pop(k)", "k in h"],
        ] {
            let refused = add_round(&mut versus_dict, rows(other, 3.0), 2).unwrap_err();
            assert!(refused
                .to_string()
                .contains("round 2 measured other operations"));
        }
        assert_eq!(
            versus_dict[0].ratios,
            [1.0, 2.0],
            "a refused round adds nothing"
        );
    }

    #[test]
    fn geometric_mean_treats_a_ratio_and_its_inverse_alike() {
        assert!((geometric_mean([2.0, 0.5].into_iter()) - 1.0).abs() < 1e-12);
        assert!((geometric_mean([1.4, 1.4, 1.4].into_iter()) - 1.4).abs() < 1e-12);
    }

    #[test]
    fn axis_labels_have_at_most_two_decimals() {
        assert_eq!(tick(0.6000000000000001), "0.6");
        assert_eq!(tick(35.0), "35");
        assert_eq!(tick(1.25), "1.25");
        assert_eq!(tick(0.0), "0");
    }
}
