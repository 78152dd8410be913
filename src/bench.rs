//! `refcount-lab bench`: the talk's performance question, measured with the real type.
//!
//! The measuring happens in a child interpreter (`bench.py`, compiled in) with the ordinary
//! allocator; this module runs it, reads its JSON report, and turns it into a terminal
//! table, a CSV file and SVG plots. It does not time anything itself.

use crate::python::Python;
use crate::runner::{self, Ending, Job, ScratchDir};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCRIPT: &str = include_str!("bench.py");

#[derive(Debug, Deserialize)]
pub struct Report {
    pub entries: usize,
    pub rounds: usize,
    pub versus_dict: Vec<Comparison>,
    pub memory: Vec<Memory>,
    pub sweep_entries: usize,
    pub sweep: Vec<SweepRow>,
}

/// HashTable throughput / dict throughput for one operation on one kind of key, per round.
#[derive(Debug, Deserialize)]
pub struct Comparison {
    pub keys: String,
    pub operation: String,
    pub ratios: Vec<f64>,
}

/// Container bytes per entry (keys and values not included).
#[derive(Debug, Deserialize)]
pub struct Memory {
    pub entries: usize,
    pub hashtable: f64,
    pub dict: f64,
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

/// Runs the measurements in a child interpreter and reads its report.
pub fn measure(python: &Python, quick: bool, timeout: Duration) -> Result<Report> {
    let scratch = ScratchDir::with_file("bench.py", SCRIPT)?;
    let mut args = Vec::new();
    if quick {
        args.push("--quick");
    }
    let run = runner::run(&Job {
        python,
        script: Path::new("bench.py"),
        args: &args,
        dir: scratch.path(),
        faults: &[],
        timeout,
        debug_allocator: false,
    })?;
    if run.ending != Ending::Exited(0) {
        bail!(
            "the benchmark did not finish ({:?}):\n{}",
            run.ending,
            run.stderr.text.trim_end()
        );
    }
    serde_json::from_str(run.stdout.text.trim()).context("the benchmark's report is not valid")
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
        "HashTable against dict: {} keys, {} interleaved rounds, throughput ratio \
         HashTable / dict (above 1: HashTable is faster)\n",
        report.entries, report.rounds
    );
    let _ = writeln!(out, "  keys  operation     min  median     max");
    for row in &report.versus_dict {
        let (min, median, max) = min_median_max(&row.ratios);
        let _ = writeln!(
            out,
            "  {:<5} {:<10} {min:>6.2}× {median:>6.2}× {max:>6.2}×",
            row.keys, row.operation
        );
    }
    let _ = writeln!(
        out,
        "\nMemory per entry (int keys; the container's own memory, keys and values not counted)\n"
    );
    let _ = writeln!(out, "  entries  HashTable      dict  HashTable / dict");
    for memory in &report.memory {
        let _ = writeln!(
            out,
            "  {:>7}  {:>7.1} B  {:>6.1} B  {:>15.2}×",
            memory.entries,
            memory.hashtable,
            memory.dict,
            memory.hashtable / memory.dict
        );
    }
    out.push('\n');
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

/// One panel per hash function: `metric` against max_load, one line per initial size.
fn plot_sweep(report: &Report, path: &Path, title: &str, metric: Metric) -> Result<()> {
    let mut hash_funcs: Vec<&str> = report.sweep.iter().map(|r| r.hash_func.as_str()).collect();
    hash_funcs.dedup();
    let mut sizes: Vec<usize> = report.sweep.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let top = report.sweep.iter().map(metric).fold(0.0, f64::max) * 1.1;

    let root = SVGBackend::new(path, (360 * hash_funcs.len() as u32, 340)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    for (panel, hash_func) in root
        .split_evenly((1, hash_funcs.len()))
        .iter()
        .zip(&hash_funcs)
    {
        let mut chart = ChartBuilder::on(panel)
            .caption(*hash_func, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.2f64..1.05f64, 0.0..top)?;
        chart.configure_mesh().x_desc("max_load").draw()?;
        for (i, size) in sizes.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = report
                .sweep
                .iter()
                .filter(|r| r.hash_func == *hash_func && r.size == *size)
                .map(|r| (r.max_load, metric(r)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(format!("size {size}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes the sweep's plots into `dir`; returns their paths.
pub fn plot(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let plots: [(&str, &str, Metric); 3] = [
        (
            "get-throughput.svg",
            "h[k]: million lookups per second",
            |r| r.get_mops,
        ),
        (
            "set-throughput.svg",
            "h[k] = v: million stores per second",
            |r| r.set_mops,
        ),
        ("max-chain.svg", "longest chain after filling", |r| {
            r.max_chain as f64
        }),
    ];
    let mut written = Vec::new();
    for (file, title, metric) in plots {
        let path = dir.join(file);
        plot_sweep(report, &path, title, metric)
            .with_context(|| format!("cannot draw {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
