//! The verdict: which metrics leaked, by regrtest's rule for `-R`.

use super::{Leak, NotLeak};
use crate::trace::Repetition;
use std::collections::BTreeSet;

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

pub(super) const BLOCKS: &str = "allocated blocks";
pub(super) const FDS: &str = "open file descriptors";
pub(super) const TOTAL: &str = "total refcount";
pub(super) const TABLES: &str = "tables alive (HashTable and SafeHashTable count their own)";

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

pub(super) fn signed(deltas: &[i64]) -> String {
    deltas
        .iter()
        .map(|d| format!("{d:+}"))
        .collect::<Vec<_>>()
        .join(", ")
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
            shard: None,
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
    fn growth_per_run_is_the_median_of_the_runs_after_the_first_of_each_kind() {
        // ujson's suite on 3.11 (issue 22): a leak of 2 blocks a run.
        let leak = Leak {
            metric: BLOCKS.into(),
            values: Vec::new(),
            deltas: vec![6, 2, 2],
            confirming: vec![9, 3, 2],
        };
        assert_eq!(leak.per_run(), 2.0);
        let unconfirmed = Leak {
            deltas: vec![8, 3, 4],
            confirming: Vec::new(),
            ..leak
        };
        assert_eq!(unconfirmed.per_run(), 3.5);
        let one_run = Leak {
            deltas: vec![5],
            ..unconfirmed
        };
        assert_eq!(one_run.per_run(), 5.0);
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
