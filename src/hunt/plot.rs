//! The leaking metrics of a hunt, drawn as an SVG plot.

use super::Hunt;
use crate::bench::SERIES_COLOURS;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// Every metric that leaked, as growth since the first run, one line each, written to
/// `path`.
pub fn plot(hunt: &Hunt, path: &Path) -> Result<()> {
    let svg = draw(hunt)?;
    crate::outputs::write(path, svg.as_bytes())
}

fn draw(hunt: &Hunt) -> Result<String> {
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
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
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
    drop(chart);
    drop(root);
    Ok(svg)
}
