//! The text report of a hunt.

use super::verdict::{signed, BLOCKS};
use super::{Hunt, Leak};
use crate::trace::{Findings, LeakKind, LeakedObject, Verdict};
use std::collections::BTreeSet;
use std::fmt::Write as _;

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
    let target: Vec<std::borrow::Cow<str>> = std::iter::once(config.kind.into())
        .chain(
            std::iter::once(&config.target)
                .filter(|t| !t.is_empty())
                .map(|t| t.to_string_lossy()),
        )
        .chain(config.args.iter().map(|arg| arg.to_string_lossy()))
        .collect();
    let confirming = confirming_runs(hunt);
    wrapped(
        out,
        "",
        &format!(
            "hunt: {}: {} warm-up + {} measured runs{}",
            crate::printable::one_line(&target.join(" ")),
            config.warmup,
            config.repeat,
            match confirming {
                0 => String::new(),
                n if n > config.confirm => {
                    format!(
                        ", then {n} to confirm (the first {} with tracemalloc on)",
                        config.confirm
                    )
                }
                n => format!(", then {n} with tracemalloc on to confirm"),
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
            "tracemalloc found no line whose live blocks grew in every run (the growth \
             moved from line to line, or is memory allocated before tracing began)",
        );
    }
    for site in &findings.sites {
        let _ = writeln!(
            out,
            "    {:+.1} per run ({:+.0} bytes) allocated at {}",
            site.per_run, site.bytes_per_run, site.allocated
        );
        if !site.source.is_empty() {
            let _ = writeln!(out, "        {}", site.source);
        }
        if !site.made.is_empty() {
            let kinds: Vec<String> = site
                .made
                .iter()
                .map(|kind| format!("{} × {} ({} bytes)", kind.count, kind.type_name, kind.size))
                .collect();
            wrapped(
                out,
                "        ",
                &format!("made in the last run and still alive: {}", kinds.join(", ")),
            );
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
    if let Some(tests) = last.shard {
        let (part, others) = match (hunt.config.shard, hunt.config.job) {
            (Some(shard), None) => (
                format!("shard {shard}"),
                "; the other parts were not hunted",
            ),
            (None, Some(job)) => (format!("part {job} of --jobs"), ""),
            (Some(shard), Some(job)) => (
                format!("part {job} of --jobs in shard {shard}"),
                "; the other shards were not hunted",
            ),
            (None, None) => (String::new(), ""),
        };
        let what = if tests.last < tests.first {
            format!("{part}: no tests (the suite has {})", tests.of)
        } else if tests.last == tests.first {
            format!(
                "{part}: test {} of {}, in the order the suite lists them{others}",
                tests.first, tests.of
            )
        } else {
            format!(
                "{part}: tests {} to {} of {}, in the order the suite lists them{others}",
                tests.first, tests.last, tests.of
            )
        };
        wrapped(out, "  ", &format!("note: {what}"));
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
    for left in &object.left_by {
        let call = match (&left.call, &left.returned) {
            (Some(function), _) => format!(", in its call of {function}"),
            (None, Some(function)) => format!(", as {function} returned and let go of its locals"),
            (None, None) => String::new(),
        };
        wrapped(
            out,
            "      ",
            &format!(
                "left behind by {} ({}{call})",
                left.line,
                count(left.references, "reference")
            ),
        );
        if !left.source.is_empty() {
            let _ = writeln!(out, "          {}", left.source);
        }
    }
    // Where a shared value (a small int, True, an interned string) can be reached says
    // nothing about who took the references.
    let shared = ["int", "bool", "float", "str", "bytes", "NoneType"];
    if let (Verdict::OverCounted, Some(chain)) = (object.verdict, &object.chain) {
        if !shared.contains(&object.type_name.as_str()) {
            wrapped(out, "      ", &format!("(it is reachable as {chain})"));
        }
    }
}
