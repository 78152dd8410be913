//! Terminal output: lessons, runs, traces, outcomes, fault sites and catalogues as text.
//!
//! Everything is built as a `String` and printed by the caller. Plain output (`--color
//! never`, `NO_COLOR`, or not a terminal) is stable across runs and Python versions: no
//! addresses, no timings, refcounts of watched objects as deltas from their baseline.

use crate::compiler;
use crate::faults::{self, Expected, Fault, InSafePyO3, CATALOGUE};
use crate::lessons::{Lesson, Observation, Question, Shown};
use crate::markdown;
use crate::outcome::{self, Leak, Outcome};
use crate::printable;
use crate::runner::{Run, TraceLine};
use crate::sites;
use crate::trace::Event;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Lines of a script's own output shown before the rest is summarised.
const OUTPUT_LINES_SHOWN: usize = 40;
/// Characters shown of one line of output; the rest is counted.
const OUTPUT_LINE_CHARS: usize = 200;
/// Characters shown of one trace line (a long `say`); the rest is counted.
const TRACE_LINE_CHARS: usize = 1000;
/// Trace lines shown from the start and from the end of a very long trace (the end matters
/// most after a crash).
const TRACE_HEAD: usize = 300;
const TRACE_TAIL: usize = 100;
/// Tables named in the note on threads at exit; the rest are counted.
const HELD_NAMED: usize = 20;
/// Larger refcounts are not counts at all (immortal objects on 3.12+ are not watched here).
const PLAUSIBLE_REFCOUNT: i64 = 1 << 40;

/// Writes to stdout; a closed pipe (`refcount-lab lesson 3 | head`) is not an error.
pub fn show(text: &str) {
    use std::io::Write;
    if let Err(error) = std::io::stdout().lock().write_all(text.as_bytes()) {
        note_write_error(error);
    }
}

/// The first error writing the report to stdout (but a closed pipe: `| head` has read
/// enough), for `main` to end with: a report lost to a full disk must not exit 0.
static WRITE_ERROR: std::sync::OnceLock<std::io::Error> = std::sync::OnceLock::new();

fn note_write_error(error: std::io::Error) {
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        let _ = WRITE_ERROR.set(error);
    }
}

/// Flushes stdout; the first error any write of the report met, if one did.
pub fn write_error() -> Option<&'static std::io::Error> {
    use std::io::Write;
    if let Err(error) = std::io::stdout().flush() {
        note_write_error(error);
    }
    WRITE_ERROR.get()
}

/// Applies ANSI styles (or nothing when colour is off) and knows how wide the text may be.
#[derive(Clone, Copy)]
pub struct Painter {
    pub color: bool,
    /// Columns for prose and wrapped trace lines: the terminal's, else 80, or `--width`.
    pub width: usize,
}

#[derive(Clone, Copy)]
enum Style {
    Heading,
    Dim,
    Good,
    Bad,
    Warn,
}

impl Painter {
    fn paint(self, style: Style, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match style {
            Style::Heading => "1",
            Style::Dim => "2",
            Style::Good => "32",
            Style::Bad => "31",
            Style::Warn => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn section(self, out: &mut String, title: &str) {
        // Padded to 60 columns; a longer title still gets a short rule after it, and one
        // too long for the width goes on under itself.
        let lines = wrap(title, self.width.saturating_sub(7).max(20));
        let last = lines.last().map_or(0, |line| line.chars().count());
        let rule = "─".repeat(60usize.saturating_sub(last + 4).max(3));
        let heading = format!("── {} {rule}", lines.join("\n   "));
        let _ = writeln!(out, "\n{}", self.paint(Style::Heading, &heading));
    }
}

/// The lesson's title, the interpreter it runs in, its prose, and (unless the learner is
/// about to answer them one by one) its questions.
pub fn lesson_intro(p: Painter, lesson: &Lesson, python: &str, with_questions: bool) -> String {
    let title = format!("Lesson {} · {}", lesson.number, lesson.title);
    let underline = "═".repeat(title.chars().count());
    let mut text = lesson.prose.trim_end().to_owned();
    if with_questions && !lesson.questions.is_empty() {
        text.push_str("\n\n");
        for question in &lesson.questions {
            let _ = writeln!(text, "- {}", question.ask);
        }
    }
    format!(
        "{}\n{}\n{}\n{}\n",
        p.paint(Style::Heading, &title),
        p.paint(Style::Heading, &underline),
        interpreter(p, python),
        markdown::render(&text, p.width, p.color).trim_end()
    )
}

/// Question `number` (from 1) as it is asked before the runs, its lines hanging under the
/// first.
pub fn question(p: Painter, number: usize, question: &Question) -> String {
    let text = markdown::render(&question.ask, p.width.saturating_sub(4), p.color);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let lead = if i == 0 {
            format!("{number:>2}. ")
        } else {
            "    ".to_owned()
        };
        let _ = writeln!(out, "{lead}{line}");
    }
    out
}

/// The learner's predictions next to what the runs showed.
pub fn predictions(
    p: Painter,
    questions: &[Question],
    answers: &[String],
    runs: &[(&str, &Run, &Outcome)],
) -> String {
    let mut out = String::new();
    p.section(&mut out, "your predictions");
    for (i, (asked, answer)) in questions.iter().zip(answers).enumerate() {
        out.push_str(&question(p, i + 1, asked));
        // What the learner typed is shown back, but never drives the terminal.
        let answer = if answer.trim().is_empty() {
            "(skipped)".to_owned()
        } else {
            printable::one_line(answer.trim())
        };
        let _ = writeln!(out, "    {} {answer}", p.paint(Style::Dim, "you said:"));
        let seen: Vec<String> = asked
            .shows
            .iter()
            .filter_map(|observation| observe(observation, runs))
            .collect();
        let seen = if seen.is_empty() {
            "the explanation below answers this".to_owned()
        } else {
            seen.join("; ")
        };
        let seen = wrap(&seen, p.width.saturating_sub(14).max(20)).join("\n              ");
        let _ = writeln!(out, "    {} {seen}", p.paint(Style::Dim, "the runs:"));
    }
    out
}

/// `obj = rc`, relative to its baseline when it is watched; a count read from freed memory
/// (filled with 0xDD by the debug allocator) says so.
fn relative(baselines: &BTreeMap<String, i64>, obj: &str, rc: i64) -> String {
    if !(0..=PLAUSIBLE_REFCOUNT).contains(&rc) {
        return format!("{obj} = garbage: its memory was freed");
    }
    match baselines.get(obj) {
        Some(base) => format!("{obj} = baseline{:+}", rc - base),
        None => format!("{obj} = {rc}"),
    }
}

/// What `observation` points at in the runs, as one short phrase; `None` if its variant
/// did not run.
fn observe(observation: &Observation, runs: &[(&str, &Run, &Outcome)]) -> Option<String> {
    let (variant, run, outcome) = runs
        .iter()
        .find(|(name, ..)| *name == observation.variant)?;
    let mut baselines: BTreeMap<String, i64> = BTreeMap::new();
    let mut found = None;
    for event in run.events() {
        match (event, &observation.what) {
            (Event::Watch { obj, rc, .. }, _) => {
                baselines.insert(obj.clone(), *rc);
            }
            (
                Event::Refcount {
                    label,
                    obj,
                    rc,
                    pinned,
                },
                Shown::Refcount(wanted),
            ) if label.starts_with(wanted.as_str()) => {
                found = Some(match pinned {
                    Some(why) => format!("{obj} is {why}"),
                    None => relative(&baselines, obj, *rc),
                });
            }
            (Event::Say { text }, Shown::Say(wanted))
                if text.trim_start().starts_with(wanted.as_str()) =>
            {
                found = Some(text.trim().replace('\n', " "));
            }
            (Event::Final { obj, rc, freed, .. }, Shown::Exit(wanted)) if obj == wanted => {
                found = Some(match rc {
                    Some(rc) if !freed => format!("at exit, {}", relative(&baselines, obj, *rc)),
                    _ => format!("{obj} was freed by exit"),
                });
            }
            _ => {}
        }
        if found.is_some() {
            break;
        }
    }
    let text = match &observation.what {
        Shown::Outcome => match outcome {
            Outcome::Crashed { signal, .. } => format!("crashed: {}", signal_name(*signal)),
            other => other.kind().to_owned(),
        },
        _ => found.unwrap_or_else(|| "not reached: the run ended first".to_owned()),
    };
    Some(format!("{variant}: {text}"))
}

/// The one line naming the interpreter the runs below use.
pub fn interpreter(p: Painter, python: &str) -> String {
    format!("{}\n", p.paint(Style::Dim, &format!("in {python}")))
}

/// One run: its trace, the script's output, and the outcome.
pub fn run(p: Painter, heading: &str, run: &Run, outcome: &Outcome) -> String {
    let mut out = String::new();
    p.section(&mut out, heading);
    trace(p, &mut out, run);
    script_output(p, &mut out, run, outcome);
    outcome_block(p, &mut out, outcome);
    for fault in &run.faults {
        let ran = match run.fault_ran(*fault) {
            Some(0) if run.faults_in_forks.iter().any(|name| name == fault.name()) => {
                "ran only in a process the script forked, which refcount-lab does not \
                 trace: what it did there is not in this report"
                    .to_owned()
            }
            Some(0) => "never ran: the script did not reach its site, so this run shows \
                        nothing of it"
                .to_owned(),
            None => "ran (the run ended before it could count how often)".to_owned(),
            Some(n) => {
                let times = if n == 1 {
                    "once".to_owned()
                } else {
                    format!("{n} times")
                };
                if *outcome == Outcome::Ok {
                    format!("ran {times}, and its damage went unseen")
                } else {
                    format!("ran {times}")
                }
            }
        };
        let note = wrap(
            &format!("the faulty code of {} {ran}", fault.name()),
            p.width.saturating_sub(12),
        )
        .join("\n            ");
        let _ = writeln!(out, "  {} {note}", p.paint(Style::Dim, "fault:   "));
    }
    if let Some(files) = not_used(run) {
        let note = wrap(&files, p.width.saturating_sub(12)).join("\n            ");
        let _ = writeln!(out, "  {} {note}", p.paint(Style::Dim, "note:    "));
    }
    if let Some((names, held)) = outcome::threads_at_exit(run) {
        let held = match held.as_slice() {
            [] => String::new(),
            [object] => format!(" {object} was not freed, and is not counted."),
            [first @ .., last] if held.len() <= HELD_NAMED => format!(
                " {} and {last} were not freed, and are not counted.",
                first
                    .iter()
                    .map(|object| object.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            many => format!(
                " {}, and {} more were not freed, and are not counted.",
                many[..HELD_NAMED]
                    .iter()
                    .map(|object| object.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                many.len() - HELD_NAMED
            ),
        };
        let note = format!(
            "{} daemon thread{} still running at exit: CPython does not wait for daemon \
             threads, and does not free what their code can still reach (their frames keep \
             module globals alive). So a native object not freed at exit counts as a leak \
             only if it had references nothing visible held then: C code's, or a cycle \
             the collector cannot see.{held} Stop or join the threads before the \
             script ends to check them all.",
            names.len(),
            if names.len() == 1 { " was" } else { "s were" }
        );
        let note = wrap(&note, p.width.saturating_sub(12)).join("\n            ");
        let _ = writeln!(out, "  {} {note}", p.paint(Style::Dim, "note:    "));
    }
    if !run.leftovers.is_empty() {
        let _ = writeln!(
            out,
            "  {} {} (left running by the script, stopped by refcount-lab)",
            p.paint(Style::Dim, "stopped: "),
            run.leftovers_named()
        );
    }
    if run.other_process_events > 0 {
        let count = match run.other_process_events {
            1 => "1 trace event from a fork of the script was".to_owned(),
            n => format!("{n} trace events from forks of the script were"),
        };
        let _ = writeln!(
            out,
            "  {} {count} not counted: a run counts its own process's",
            p.paint(Style::Dim, "note:    ")
        );
    }
    out
}

/// The files beside the script that were not imported in place of refcount-lab's modules,
/// said once.
fn not_used(run: &Run) -> Option<String> {
    let files = run.events().find_map(|event| match event {
        Event::NotUsed { files } if !files.is_empty() => Some(files),
        _ => None,
    })?;
    let names: Vec<&str> = files.values().map(String::as_str).collect();
    let modules: Vec<&str> = files.keys().map(String::as_str).collect();
    let (were, modules_word, other_names, them) = if files.len() == 1 {
        ("was", "module", "another name", "it")
    } else {
        ("were", "modules", "other names", "them")
    };
    Some(format!(
        "{} beside the script {were} not used: `import {}` imports refcount-lab's \
         {modules_word}; give yours {other_names} to import {them}",
        names.join(", "),
        modules.join(", ")
    ))
}

fn trace(p: Painter, out: &mut String, run: &Run) {
    let mut baselines: BTreeMap<String, i64> = BTreeMap::new();
    let mut held_at_watch: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut shown = Vec::new();
    let mut lines = run.trace.iter().enumerate();
    while let Some((at, line)) = lines.next() {
        // A loop that makes and drops objects one by one reads as one line, not thousands.
        let churned = churn(&run.trace[at..]);
        if churned >= CHURN_MIN {
            if let TraceLine::Event(Event::Alloc { type_name, id }) = line {
                let last = id + churned as u64 - 1;
                let tag = p.paint(Style::Dim, "new/freed");
                shown.push(format!(
                    "  {tag} {type_name}#{id} to #{last}: {churned} made, each freed at once"
                ));
            }
            lines.nth(2 * churned - 2);
            continue;
        }
        let (tag, body, note) = match line {
            TraceLine::Unreadable(text) => ("???", text.clone(), String::new()),
            TraceLine::Forged(text) => (
                "forged",
                text.clone(),
                "not from lab or hashtable: ignored".into(),
            ),
            TraceLine::Event(event) => match event {
                Event::Say { text } => ("say", text.clone(), String::new()),
                Event::Refcount {
                    label,
                    obj,
                    rc,
                    pinned,
                } => {
                    let body = match pinned {
                        Some(why) => format!("{obj} is {why}: its count never moves"),
                        None => relative(&baselines, obj, *rc),
                    };
                    ("refcount", body, label.clone())
                }
                Event::Watch {
                    obj,
                    rc,
                    pinned,
                    globals,
                } => {
                    let body = match pinned {
                        Some(why) => format!("{obj} is {why}: its count never moves"),
                        None => {
                            baselines.insert(obj.clone(), *rc);
                            held_at_watch.insert(obj.clone(), globals.clone());
                            format!("{obj} = baseline")
                        }
                    };
                    ("watch", body, String::new())
                }
                Event::Final {
                    obj,
                    rc,
                    freed,
                    pinned,
                    globals,
                } => {
                    let body = match (rc, pinned) {
                        (_, Some(why)) => format!("{obj} is {why}: nothing to compare"),
                        (Some(rc), None) if !freed => relative(&baselines, obj, *rc),
                        _ => format!("{obj} was freed"),
                    };
                    let then = held_at_watch.get(obj).cloned().unwrap_or_default();
                    let names: Vec<String> = outcome::held_since_watch(&then, globals)
                        .into_iter()
                        .map(|(name, more)| match more {
                            1 => name,
                            more => format!("{name} (x{more})"),
                        })
                        .collect();
                    let note = match names.len() {
                        0 => String::new(),
                        1 => format!("still held by the global {}", names[0]),
                        _ => format!("still held by the globals {}", names.join(", ")),
                    };
                    ("at exit", body, note)
                }
                Event::Alloc { type_name, id } => {
                    ("new", format!("{type_name}#{id}"), String::new())
                }
                Event::Free { type_name, id } => {
                    ("freed", format!("{type_name}#{id}"), String::new())
                }
                Event::Repetition(r) => {
                    ("measured", format!("repetition {}", r.index), String::new())
                }
                Event::Findings(_) => ("found", "what leaked".into(), String::new()),
                Event::Threads { names, .. } => (
                    "threads",
                    format!("still running at exit: {}", names.join(", ")),
                    String::new(),
                ),
                Event::FaultRan { fault } => (
                    "fault",
                    format!("{fault}: its faulty code runs for the first time"),
                    String::new(),
                ),
                Event::FaultCounts { .. } | Event::NotUsed { .. } | Event::HuntDone => continue,
                Event::Done => ("end", "the interpreter shut down".into(), String::new()),
            },
        };
        let tag = p.paint(Style::Dim, &format!("{tag:<9}"));
        // Long lines are cut, then wrap, and continuation lines (a repr, say) line up under
        // the first; a note that does not fit beside its line goes on a line of its own below.
        let room = p.width.saturating_sub(12).max(20);
        let body = wrap(&cut(&body, TRACE_LINE_CHARS), room);
        let last = body.last().map_or(0, |line| line.chars().count());
        let body_text = body.join("\n            ");
        shown.push(if note.is_empty() {
            format!("  {tag} {body_text}")
        } else if body.len() == 1 && last.max(28) + 2 + note.chars().count() <= room {
            format!("  {tag} {body_text:<28}  {}", p.paint(Style::Dim, &note))
        } else {
            let note = wrap(&note, room).join("\n            ");
            format!(
                "  {tag} {body_text}\n            {}",
                p.paint(Style::Dim, &note)
            )
        });
    }
    let hidden = shown.len().saturating_sub(TRACE_HEAD + TRACE_TAIL);
    for (i, line) in shown.iter().enumerate() {
        if hidden > 0 && i == TRACE_HEAD {
            let _ = writeln!(out, "  … {hidden} trace lines not shown");
        }
        if hidden == 0 || i < TRACE_HEAD || i >= TRACE_HEAD + hidden {
            let _ = writeln!(out, "{line}");
        }
    }
    if run.dropped_trace_lines > 0 {
        let _ = writeln!(
            out,
            "  … {} more trace lines not kept",
            run.dropped_trace_lines
        );
    }
}

/// Runs of at least this many objects made and freed at once are shown as one line.
const CHURN_MIN: usize = 4;

/// How many objects in a row `trace` starts by making and freeing at once, each right after
/// the one before (`new T#n`, `freed T#n`, `new T#n+1`, `freed T#n+1`, ...).
fn churn(trace: &[TraceLine]) -> usize {
    let mut pairs = trace.chunks_exact(2).map(made_and_freed);
    let Some(Some((type_name, first))) = pairs.next() else {
        return 0;
    };
    1 + pairs
        .zip(first + 1..)
        .take_while(|(pair, next)| *pair == Some((type_name, *next)))
        .count()
}

/// `new T#n` directly followed by `freed T#n`: (T, n).
fn made_and_freed(pair: &[TraceLine]) -> Option<(&str, u64)> {
    match pair {
        [TraceLine::Event(Event::Alloc { type_name, id }), TraceLine::Event(Event::Free {
            type_name: freed,
            id: freed_id,
        })] if type_name == freed && id == freed_id => Some((type_name.as_str(), *id)),
        _ => None,
    }
}

/// `text` up to `max` characters, and how many more there were.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            let more = text[at..].chars().count();
            format!("{}… ({more} more characters)", &text[..at])
        }
        None => text.to_owned(),
    }
}

/// Splits `text` into lines of at most `width` characters, breaking at spaces, and a word
/// longer than a line where the line ends.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for mut word in paragraph.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            } else if !line.is_empty() {
                line.push(' ');
            }
            while let Some((at, _)) = word.char_indices().nth(width) {
                lines.push(word[..at].to_owned());
                word = &word[at..];
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// What the script printed: its stdout, and its stderr but what the outcome quotes below
/// (a crash's report from the interpreter, an error's traceback).
fn script_output(p: Painter, out: &mut String, run: &Run, outcome: &Outcome) {
    captured(p, out, "output:", &run.stdout.text, run.stdout.dropped);
    let stderr = outcome::unquoted_stderr(run, outcome);
    captured(p, out, "stderr:", stderr, run.stderr.dropped);
}

/// `text`, a captured stream, of which `dropped` bytes were not kept.
fn captured(p: Painter, out: &mut String, title: &str, text: &str, dropped: usize) {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {}", p.paint(Style::Dim, title));
    for line in lines.iter().take(OUTPUT_LINES_SHOWN) {
        match line.char_indices().nth(OUTPUT_LINE_CHARS) {
            Some((cut, _)) => {
                let rest = line.len() - cut;
                let _ = writeln!(out, "    │ {}… ({rest} more bytes)", &line[..cut]);
            }
            None => {
                let _ = writeln!(out, "    │ {line}");
            }
        }
    }
    let hidden_lines = lines.len().saturating_sub(OUTPUT_LINES_SHOWN);
    let mut hidden = Vec::new();
    if hidden_lines > 0 {
        let plural = if hidden_lines == 1 { "" } else { "s" };
        hidden.push(format!("{hidden_lines} more line{plural} not shown"));
    }
    if dropped > 0 {
        hidden.push(format!("{dropped} more bytes not kept"));
    }
    if !hidden.is_empty() {
        let _ = writeln!(out, "    … {}", hidden.join(", "));
    }
}

pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV (segmentation fault)".into(),
        libc::SIGABRT => "SIGABRT (abort)".into(),
        libc::SIGBUS => "SIGBUS (bus error)".into(),
        libc::SIGFPE => "SIGFPE (arithmetic error)".into(),
        libc::SIGILL => "SIGILL (illegal instruction)".into(),
        libc::SIGKILL => "SIGKILL (killed)".into(),
        libc::SIGTERM => "SIGTERM (terminated)".into(),
        libc::SIGINT => "SIGINT (interrupted)".into(),
        libc::SIGPIPE => "SIGPIPE (broken pipe)".into(),
        libc::SIGXCPU => "SIGXCPU (CPU time limit)".into(),
        libc::SIGSYS => "SIGSYS (bad system call)".into(),
        other => format!("signal {other}"),
    }
}

fn outcome_block(p: Painter, out: &mut String, outcome: &Outcome) {
    let (style, headline, details): (Style, String, Vec<String>) = match outcome {
        Outcome::Ok => (Style::Good, "ok".into(), vec![]),
        Outcome::Leaked(leaks) => (
            Style::Warn,
            "leaked".into(),
            leaks.iter().map(Leak::to_string).collect(),
        ),
        Outcome::Crashed { signal, report } => (
            Style::Bad,
            format!("crashed: {}", signal_name(*signal)),
            report.clone(),
        ),
        Outcome::Error { exit_code, report } => (
            Style::Bad,
            match exit_code {
                Some(code) => format!("error (exit status {code})"),
                None => "error (stopped by refcount-lab)".to_owned(),
            },
            report.clone(),
        ),
        Outcome::Timeout {
            seconds,
            script_ended: false,
        } => (
            Style::Bad,
            format!("timeout: still running after {seconds} s, stopped"),
            vec![],
        ),
        Outcome::Timeout {
            seconds,
            script_ended: true,
        } => (
            Style::Bad,
            format!(
                "timeout: the script ended, but what it started was still running after \
                 {seconds} s; stopped"
            ),
            vec![],
        ),
    };
    let _ = writeln!(
        out,
        "  {} {}",
        p.paint(Style::Dim, "outcome: "),
        p.paint(style, &headline)
    );
    for line in details {
        let line = wrap(&line, p.width.saturating_sub(4).max(20)).join("\n      ");
        let _ = writeln!(out, "    {line}");
    }
}

/// The correct and faulty source lines of a fault site.
pub fn site(p: Painter, fault: Fault) -> String {
    let mut out = String::new();
    let Some(site) = sites::find(fault) else {
        return out;
    };
    p.section(&mut out, &format!("the fault site: {}", fault.name()));
    let _ = writeln!(out, "  in {}", site.file);
    for (label, branch, style) in [
        ("correct", &site.correct, Style::Good),
        ("faulty", &site.faulty, Style::Bad),
    ] {
        let _ = writeln!(out, "  {label}, line {}:", branch.first_line);
        for line in &branch.lines {
            let _ = writeln!(out, "    {}", p.paint(style, line));
        }
    }
    let c = &faults::info(fault).c;
    for (label, code, style) in [
        ("in C, correct:", c.correct, Style::Good),
        ("in C, faulty:", c.faulty, Style::Bad),
    ] {
        let _ = writeln!(out, "  {label}");
        for line in code.lines() {
            let _ = writeln!(out, "    {}", p.paint(style, line));
        }
    }
    out
}

/// The catalogue as safe PyO3 sees it (lesson 19): each raw fault, what it did, and what
/// becomes of it in safe PyO3; then the compiler's message for each fault it rules out: the
/// first in full and the others by their first line, or all in full with `all_messages`
/// (`refcount-lab lesson LESSON --all-messages`).
pub fn safe_pyo3(p: Painter, lesson: u32, all_messages: bool) -> String {
    let mut out = String::new();
    p.section(&mut out, "each fault of the raw type, in safe PyO3");
    let _ = writeln!(out, "  {:<28} {:<13} safe PyO3", "fault", "raw pyo3-ffi");
    let mut reasons = Vec::new();
    for info in CATALOGUE {
        let (verdict, style) = match info.safe {
            InSafePyO3::SafeCode => continue,
            InSafePyO3::CompileError => {
                let message = compiler::case(info.fault).map_or("", |case| case.message);
                let codes = compiler::error_codes(message);
                if codes == ["E0133"] {
                    ("needs `unsafe` (E0133)".to_owned(), Style::Good)
                } else {
                    (
                        format!("does not compile ({})", codes.join(", ")),
                        Style::Good,
                    )
                }
            }
            InSafePyO3::CannotHappen(why) => {
                reasons.push((info.fault.name(), why));
                ("cannot happen (below)".to_owned(), Style::Good)
            }
            InSafePyO3::StillPossible(safe) => {
                (format!("still possible: {}", safe.name()), Style::Bad)
            }
        };
        let raw = match info.expected {
            Expected::Crash => "crash",
            Expected::Leak => "leak",
            Expected::CrashBefore3_12 => "crash < 3.12",
        };
        let _ = writeln!(
            out,
            "  {:<28} {raw:<13} {}",
            info.fault.name(),
            p.paint(style, &verdict)
        );
    }
    p.section(&mut out, "why some cannot happen");
    for (name, why) in reasons {
        let lines = wrap(why, p.width.saturating_sub(6).max(40));
        let _ = writeln!(out, "  {name}:\n    {}", lines.join("\n    "));
    }
    p.section(&mut out, "what the compiler says to the others");
    let shown_whole = if all_messages {
        compiler::CASES.len()
    } else {
        1
    };
    let (whole, by_first_line) = compiler::CASES.split_at(shown_whole);
    let width = p.width.saturating_sub(4).max(40);
    for case in whole {
        let _ = writeln!(out, "  {} ({}):", case.fault.name(), case.path);
        for line in case.message.trim_end().lines() {
            let line = line.trim_end();
            if line.is_empty() {
                out.push('\n');
                continue;
            }
            for part in wrap_diagnostic(line, width) {
                let _ = writeln!(out, "    {}", p.paint(Style::Dim, &part));
            }
        }
        out.push('\n');
    }
    if !by_first_line.is_empty() {
        let intro = format!(
            "The other {}, by their first line (`refcount-lab lesson {lesson} \
             --all-messages` shows them whole):",
            by_first_line.len()
        );
        for line in wrap(&intro, p.width.saturating_sub(2).max(40)) {
            let _ = writeln!(out, "  {line}");
        }
        for case in by_first_line {
            let first = case.message.lines().next().unwrap_or("").trim_end();
            let line = format!("{}: {first}", case.fault.name());
            for part in wrap_diagnostic(&line, width) {
                let _ = writeln!(out, "    {}", p.paint(Style::Dim, &part));
            }
        }
        out.push('\n');
    }
    out
}

/// A line of rustc's output in lines of at most `width` columns: a label after a `|` gutter
/// and its markers (`^^^^ move occurs …`) goes on under the label's first word, any other
/// long line under a four-space indent. Source lines are short enough not to need it.
fn wrap_diagnostic(line: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= width {
        return vec![line.to_owned()];
    }
    let gutter = chars
        .iter()
        .take(8)
        .position(|&c| c == '|')
        .map_or(0, |at| at + 1);
    let Some(text_start) =
        (gutter..chars.len()).find(|&i| !matches!(chars[i], ' ' | '^' | '-' | '+' | '|'))
    else {
        // Markers under a suggestion that was itself wrapped: they no longer line up.
        return vec![chars[..width]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_owned()];
    };
    // Labels far to the right go on nearer the gutter, or there would be no room left.
    let hang = if text_start + 24 > width {
        gutter + 4
    } else {
        text_start
    };
    let indent: String = if gutter > 0 {
        // A line number belongs to the first part only.
        chars[..gutter]
            .iter()
            .map(|&c| if c.is_ascii_digit() { ' ' } else { c })
            .chain(std::iter::repeat_n(' ', hang - gutter))
            .collect()
    } else {
        "    ".to_owned()
    };
    let mut lines = vec![chars[..text_start].iter().collect::<String>()];
    for word in chars[text_start..].iter().collect::<String>().split(' ') {
        let last = lines.last_mut().expect("one line at least");
        let fresh = last.chars().count() == text_start || last.trim_end() == indent.trim_end();
        if !fresh && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(format!("{indent}{word}"));
        } else {
            if !fresh {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// The closing paragraph of a lesson.
pub fn explanation(p: Painter, lesson: &Lesson) -> String {
    let mut out = String::new();
    p.section(&mut out, "what happened");
    out.push_str(&markdown::render(&lesson.explanation, p.width, p.color));
    let rule = markdown::render(&format!("**The rule:** {}", lesson.rule), p.width, p.color);
    let _ = write!(out, "\n{rule}");
    out
}

/// One line per variant: what it ended with, and what the lesson expected.
pub fn verdict(p: Painter, results: &[(&str, &Outcome, Option<&str>)]) -> String {
    let parts: Vec<String> = results
        .iter()
        .map(|(variant, outcome, expected)| {
            let kind = outcome.kind();
            match expected {
                Some(expected) if *expected == kind => {
                    format!("{variant} {} (as expected)", p.paint(Style::Good, kind))
                }
                Some(expected) => format!(
                    "{variant} {} (expected {expected})",
                    p.paint(Style::Bad, kind)
                ),
                None => format!("{variant} {kind}"),
            }
        })
        .collect();
    format!("\nResult: {}\n", parts.join(" · "))
}

/// `refcount-lab list`.
pub fn lesson_list(lessons: &[Lesson]) -> String {
    let mut out = String::new();
    for lesson in lessons {
        let faults: Vec<&str> = lesson.faults.iter().map(|f| f.name()).collect();
        let faults = if faults.is_empty() {
            "correct code only".to_owned()
        } else {
            format!("--fault {}", faults.join(", "))
        };
        let _ = writeln!(out, "{:>3}  {:<58} {faults}", lesson.number, lesson.title);
    }
    out.push_str("\nRun one with `refcount-lab lesson N`.\n");
    out
}

/// `refcount-lab faults`.
pub fn fault_list() -> String {
    let mut out = String::new();
    for info in CATALOGUE {
        let expected = match info.expected {
            Expected::Crash => "crash",
            Expected::Leak => "leak",
            Expected::CrashBefore3_12 => "crash before 3.12, none on 3.12+",
        };
        let _ = writeln!(
            out,
            "{}\n    lesson {} · site: {} · outcome: {expected}\n    {}\n",
            info.fault.name(),
            info.lesson,
            info.site,
            wrap(info.summary, 84).join("\n    ")
        );
    }
    out.push_str("Switch one on with `--fault NAME` on `lesson`, `run` or `python`.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_line_breaks() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("[]\n[]*", 76), vec!["[]", "[]*"]);
        assert!(wrap("", 10).is_empty());
        assert_eq!(wrap("a bcdefgh ij", 3), vec!["a", "bcd", "efg", "h", "ij"]);
    }

    #[test]
    fn long_trace_lines_are_cut_and_say_how_much() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdé", 2), "ab… (3 more characters)");
    }

    #[test]
    fn long_diagnostics_wrap_under_their_label() {
        let caret = "   |         ^^^^ move occurs because `*slf` has type `Bound<'_, Table>`, which does not";
        assert_eq!(
            wrap_diagnostic(caret, 60),
            vec![
                "   |         ^^^^ move occurs because `*slf` has type",
                "   |              `Bound<'_, Table>`, which does not",
            ]
        );
        let header = "error[E0133]: call to unsafe function is unsafe and requires unsafe block";
        assert_eq!(
            wrap_diagnostic(header, 50),
            vec![
                "error[E0133]: call to unsafe function is unsafe",
                "    and requires unsafe block"
            ]
        );
        assert_eq!(wrap_diagnostic("11 |  *slf", 50), vec!["11 |  *slf"]);
    }

    #[test]
    fn churn_counts_objects_made_and_freed_one_after_another() {
        let alloc = |id| {
            TraceLine::Event(Event::Alloc {
                type_name: "HashTable".into(),
                id,
            })
        };
        let free = |id| {
            TraceLine::Event(Event::Free {
                type_name: "HashTable".into(),
                id,
            })
        };
        let say = TraceLine::Event(Event::Say { text: "x".into() });
        let run = [alloc(6), free(6), alloc(7), free(7), alloc(8), free(8), say];
        assert_eq!(churn(&run), 3);
        // A table still alive, or a gap in the ids, ends the run.
        assert_eq!(churn(&[alloc(6), free(6), alloc(7), alloc(8)]), 1);
        assert_eq!(churn(&[alloc(6), free(6), alloc(8), free(8)]), 1);
        assert_eq!(churn(&[alloc(6), alloc(7), free(6)]), 0);
    }
}
