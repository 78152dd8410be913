//! The workshop commands: `exercises` (list, `init DIR`, `--reset`, `--export FILE`),
//! `exercise N`, `hint N`, `verify [--watch]`, and the teacher's `class DIR`, on top of the
//! catalogue and checks (`exercises.rs`) and the progress file (`progress.rs`).

use crate::cli::ExercisesAction;
use crate::python::Python;
use crate::render::{self, show, Painter};
use crate::{exercises, outcome, printable, progress};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FIRST_STEPS: &str =
    "Open the first file, replace each ... with your prediction, save, and run

    refcount-lab verify

verify checks the exercises in order and stops at the first one not done. `refcount-lab
exercises` lists them with your progress, `refcount-lab exercise N` runs one, and
`refcount-lab hint N` gives a nudge.
";

/// `exercises`, `exercises init DIR`, `exercises --reset`.
pub fn exercises_command(action: Option<ExercisesAction>, reset: bool) -> Result<bool> {
    let all = exercises::catalogue()?;
    if reset {
        show(&format!("{}\n", progress::Progress::reset()?));
        return Ok(true);
    }
    let progress = progress::Progress::load()?;
    if let Some(ExercisesAction::Init { dir, resume }) = action {
        // Under the progress lock, so that the folder and the progress naming it are saved
        // together: interrupted while waiting for the lock, init leaves nothing behind.
        let (kept, dir) = progress::Progress::update_with(|progress| {
            let kept = exercises::init(&dir, &all, resume)?;
            let dir = dir
                .canonicalize()
                .with_context(|| format!("cannot find {}", dir.display()))?;
            // Resuming in the folder already in use, however it is spelled, keeps what is
            // done there.
            let saved = progress
                .workdir
                .as_deref()
                .and_then(|w| w.canonicalize().ok());
            if !(resume && saved.as_ref() == Some(&dir)) {
                progress.done.clear();
                progress.passed.clear();
            }
            progress.workdir = Some(dir.clone());
            Ok((kept, dir))
        })?;
        let written = all.len() - kept;
        let kept = match kept {
            0 => String::new(),
            n => format!(" (kept the {n} already there)"),
        };
        show(&format!(
            "Wrote {written} exercises to {}{kept}.\n\n{FIRST_STEPS}\nThe first file: {}\n",
            printable::path(&dir),
            printable::path(&dir.join(all[0].file_name()))
        ));
        return Ok(true);
    }
    let mut out = String::new();
    for exercise in &all {
        let mark = if progress.done.contains(&exercise.name) {
            "done"
        } else {
            "    "
        };
        let kind = exercise.kind.name();
        let lesson = lesson_shown(exercise, &progress).map_or("  ".into(), |n| format!("{n:>2}"));
        out.push_str(&format!(
            "  {mark}  {:>2}  {kind:<8}  lesson {lesson}  {}\n",
            exercise.number, exercise.name
        ));
    }
    let done = all
        .iter()
        .filter(|e| progress.done.contains(&e.name))
        .count();
    out.push_str(&format!("\n{done} of {} done. ", all.len()));
    match &progress.workdir {
        Some(dir) => out.push_str(&format!("Your files are in {}.\n", printable::path(dir))),
        None => out.push_str("Start with `refcount-lab exercises init DIR`.\n"),
    }
    show(&out);
    Ok(true)
}

/// The lesson an exercise belongs to, as far as the learner may know it: a diagnose
/// exercise keeps its lesson (and so its fault) to itself until it is solved.
fn lesson_shown(exercise: &exercises::Exercise, progress: &progress::Progress) -> Option<u32> {
    let hidden =
        exercise.kind == exercises::Kind::Diagnose && !progress.done.contains(&exercise.name);
    (!hidden).then_some(exercise.lesson)
}

/// `exercise N`: what to do, and the learner's script run with the fault on and off.
pub fn exercise_command(painter: Painter, python: &Python, number: usize) -> Result<bool> {
    let all = exercises::catalogue()?;
    let exercise = exercises::find(&all, number)?;
    let progress = progress::Progress::load()?;
    let workdir = exercises::workdir(progress.workdir.as_deref())?;
    // Nothing is run or compiled from a file that is not a plain one of sane size.
    exercises::learners_file(&workdir, exercise)
        .map_err(|unreadable| anyhow::anyhow!(unreadable.why))?;
    let kind = exercise.kind.name();
    let about = match lesson_shown(exercise, &progress) {
        Some(lesson) => format!("{kind}, lesson {lesson}"),
        None => kind.to_owned(),
    };
    show(&format!(
        "Exercise {number} · {} ({about})\nYour file: {}\n",
        exercise.name,
        printable::path(&workdir.join(exercise.file_name()))
    ));
    let verdict = if exercise.kind == exercises::Kind::FixC {
        let attempt = exercises::try_c(python, exercise, &workdir)?;
        match &attempt {
            exercises::CAttempt::Rejected(messages) => {
                show(&format!(
                    "\nYour C does not compile yet:\n{messages}\n\nFix it, save, and run \
                     `refcount-lab exercise {number}` again.\n"
                ));
                return Ok(false);
            }
            exercises::CAttempt::Ran(run) => {
                let heading = "the probe, against your module";
                let outcome = outcome::classify(run);
                show(&render::run(painter, heading, run, &outcome));
                if outcome != outcome::Outcome::Ok {
                    show(&probe_listing(exercise));
                }
            }
        }
        exercises::c_verdict(exercise, &attempt)
    } else {
        let Some(fault) = exercise
            .fault
            .filter(|_| exercise.kind != exercises::Kind::Predict)
        else {
            show(&format!(
                "\nReplace each ... in the file with your prediction, then run `refcount-lab \
                 verify`.\nOnce it passes, `refcount-lab lesson {}` shows it happen.\n",
                exercise.lesson
            ));
            return Ok(true);
        };
        let (correct, faulty) = exercises::run_both_ways(python, &workdir, exercise, fault)?;
        let faulty_heading = match exercise.kind {
            exercises::Kind::Diagnose => "your script, with the hidden fault on".to_owned(),
            _ => format!("your script, with --fault {}", fault.name()),
        };
        for (heading, run) in [
            ("your script, on correct code", &correct),
            (faulty_heading.as_str(), &faulty),
        ] {
            show(&render::run(painter, heading, run, &outcome::classify(run)));
        }
        // The verdict `verify` would give, for this exercise alone.
        exercises::check(python, exercise, &workdir)?
    };
    let done = verdict == exercises::Verdict::Done;
    let message = match &verdict {
        exercises::Verdict::Done => {
            format!("\nDone: exercise {number} passes. `refcount-lab verify` counts it.\n")
        }
        exercises::Verdict::NotYet(why) => {
            format!("\nNot yet: {why}\nA hint: `refcount-lab hint {number}`\n")
        }
    };
    show(&message);
    progress::Progress::update_or_warn(|progress| {
        exercises::remember(python, exercise, &workdir, &verdict, &mut progress.passed);
        if done {
            progress.done.insert(exercise.name.clone());
        } else {
            progress.done.remove(&exercise.name);
        }
    });
    Ok(done)
}

/// A fix-c exercise's probe with line numbers, as its crash reports count them.
fn probe_listing(exercise: &exercises::Exercise) -> String {
    let mut out = format!(
        "\nThe probe, {}.py (what verify runs against your module):\n",
        exercise.name
    );
    for (i, line) in exercises::probe_source(exercise).lines().enumerate() {
        out.push_str(&format!("  {:>3}  {line}\n", i + 1));
    }
    out
}

/// `verify`: check in order, record progress, stop at the first exercise not done.
pub fn verify_command(python: &Python, watch: bool) -> Result<bool> {
    let all = exercises::catalogue()?;
    let progress = progress::Progress::load()?;
    let workdir = exercises::workdir(progress.workdir.as_deref())?;
    let mut passed = progress.passed;
    loop {
        let exercises::Verified {
            done,
            stuck,
            also_done,
            started,
            unreadable,
            passed: now_passed,
        } = exercises::verify_all(python, &all, &workdir, &passed)?;
        passed = now_passed;
        let mut out = String::new();
        for exercise in &all[..done] {
            out.push_str(&format!(
                "  done  {:>2}  {}\n",
                exercise.number, exercise.name
            ));
        }
        let done_names: BTreeSet<String> = all[..done]
            .iter()
            .map(|e| e.name.clone())
            .chain(also_done.iter().cloned())
            .collect();
        if let Some((number, why)) = &stuck {
            let exercise = &all[number - 1];
            out.push_str(&format!(
                "  to do {number:>2}  {}\n\n{why}\n\nYour file: {}\nA hint: `refcount-lab hint {number}`\n",
                exercise.name,
                printable::path(&workdir.join(exercise.file_name()))
            ));
        }
        if !also_done.is_empty() {
            out.push_str(&format!(
                "\nAlso done, out of order: {}\n",
                also_done.join(", ")
            ));
        }
        if !started.is_empty() {
            let numbers: Vec<String> = started.iter().map(usize::to_string).collect();
            out.push_str(&format!(
                "Started, not done yet: {} (`refcount-lab exercise N` says why)\n",
                numbers.join(", ")
            ));
        }
        for why in &unreadable {
            out.push_str(&format!("Not checked: {why}\n"));
        }
        let done = done + also_done.len();
        out.push_str(&format!("\n{done} of {} exercises done.\n", all.len()));
        if stuck.is_none() {
            out.push_str("All done: every refcount accounted for.\n");
        }
        show(&out);
        // What verify has just checked replaces what was saved.
        progress::Progress::update_or_warn(|progress| {
            progress.done = done_names;
            progress.passed = passed.clone();
        });
        if !watch {
            return Ok(stuck.is_none());
        }
        show("\nWatching your files; save one to check again (Ctrl-C stops).\n");
        wait_for_change(&workdir)?;
    }
}

/// Blocks until a file in `dir` is modified.
fn wait_for_change(dir: &Path) -> Result<()> {
    let stamp = || -> Result<Vec<(PathBuf, std::time::SystemTime)>> {
        let mut stamps = Vec::new();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry?;
            stamps.push((entry.path(), entry.metadata()?.modified()?));
        }
        stamps.sort();
        Ok(stamps)
    };
    let before = stamp()?;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if stamp()? != before {
            return Ok(());
        }
    }
}

/// `hint N`.
pub fn hint_command(number: usize) -> Result<bool> {
    let all = exercises::catalogue()?;
    let exercise = exercises::find(&all, number)?;
    show(&format!(
        "Hint for exercise {number} ({}): {}\n",
        exercise.name, exercise.hint
    ));
    Ok(true)
}

/// `exercises --check-c`: builds a one-line C extension the way the fix-the-C exercises are
/// built, and says whether that works here.
pub fn check_c_command(python: &Python) -> Result<bool> {
    let source = "#include <Python.h>\n\
                  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, \"refcount_lab_check\"};\n\
                  PyMODINIT_FUNC PyInit_refcount_lab_check(void) { return PyModule_Create(&def); }\n";
    let scratch = crate::scratch::ScratchDir::with_file("refcount_lab_check.c", source)?;
    let file = scratch.path().join("refcount_lab_check.c");
    match crate::cbuild::build(python, &file, "refcount_lab_check", scratch.path())? {
        crate::cbuild::Built::Compiled => {
            show(&format!(
                "C extensions build here, against {}: the fix-the-C exercises will work.\n",
                python.describe()
            ));
            Ok(true)
        }
        crate::cbuild::Built::Rejected(messages) => {
            show(&format!(
                "A test extension did not compile against {}:\n{messages}\n",
                python.describe()
            ));
            Ok(false)
        }
    }
}

/// What `exercises --export` writes and `class` reads: one learner's progress.
#[derive(serde::Serialize, serde::Deserialize)]
struct Exported {
    /// Identifies the file's kind and version.
    format: String,
    learner: String,
    /// Every exercise of the learner's refcount-lab, in order.
    exercises: Vec<String>,
    done: Vec<String>,
}

const EXPORT_FORMAT: &str = "refcount-lab progress 1";
/// The longest learner's name an exported file takes, in characters (a row of `class`).
const NAME_CHARS: usize = 64;

/// `exercises --export FILE [--name NAME]`.
pub fn export_command(file: &Path, name: Option<String>) -> Result<bool> {
    let all = exercises::catalogue()?;
    let progress = progress::Progress::load()?;
    let learner = name
        .or_else(|| std::env::var("USER").ok())
        .filter(|name| !name.trim().is_empty())
        .context("cannot tell your name: pass --name NAME")?;
    let length = learner.chars().count();
    ensure!(
        length <= NAME_CHARS,
        "the name is {length} characters long, more than the {NAME_CHARS} an exported file \
         takes: pass a shorter one with --name NAME"
    );
    // Kept as it is shown: the file, its summary here and `class` print no control or bidi
    // character of it.
    let learner = printable::one_line(&learner);
    let exported = Exported {
        format: EXPORT_FORMAT.to_owned(),
        learner,
        exercises: all.iter().map(|e| e.name.clone()).collect(),
        done: all
            .iter()
            .filter(|e| progress.done.contains(&e.name))
            .map(|e| e.name.clone())
            .collect(),
    };
    let text = serde_json::to_string_pretty(&exported)? + "\n";
    crate::outputs::check(file)?;
    crate::outputs::write(file, text.as_bytes())?;
    show(&format!(
        "Wrote {} ({} of {} done, as {}). Hand it to your teacher.\n",
        printable::path(file),
        exported.done.len(),
        exported.exercises.len(),
        exported.learner
    ));
    Ok(true)
}

/// `class DIR`: every learner's progress, and where the class is stuck.
pub fn class_command(dir: &Path) -> Result<bool> {
    let all = exercises::catalogue()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut learners = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let read = progress::read_bounded(&path)
            .map_err(|error| format!("cannot read it: {error}"))
            .and_then(|text| {
                serde_json::from_str::<Exported>(&text)
                    .ok()
                    .filter(|exported| exported.format == EXPORT_FORMAT)
                    .ok_or_else(|| "not a file from `refcount-lab exercises --export`".to_owned())
            });
        match read {
            Ok(exported) => learners.push(exported),
            Err(why) => skipped.push((path, why)),
        }
    }
    learners.sort_by(|a, b| a.learner.cmp(&b.learner));
    let mut out = String::new();
    if learners.is_empty() {
        out.push_str(&format!(
            "No progress files in {}: each learner runs `refcount-lab exercises --export \
             FILE` and hands FILE in.\n",
            printable::path(dir)
        ));
    } else {
        out.push_str(&format!("{:<20} {:>5}  next\n", "learner", "done"));
        let mut next_counts = vec![0usize; all.len()];
        for learner in &learners {
            // Only exercises that exist, each once: a file cannot claim more than all.
            let done = all
                .iter()
                .filter(|e| learner.done.contains(&e.name))
                .count();
            let next = all.iter().position(|e| !learner.done.contains(&e.name));
            let next_text = match next {
                Some(i) => {
                    next_counts[i] += 1;
                    format!("{:>2}  {}", all[i].number, all[i].name)
                }
                None => "all done".to_owned(),
            };
            out.push_str(&format!(
                "{:<20} {done:>2}/{:<2}  {next_text}\n",
                printable::one_line(&learner.learner),
                all.len()
            ));
        }
        out.push_str("\nper exercise, learners done:\n");
        for (i, exercise) in all.iter().enumerate() {
            let done = learners
                .iter()
                .filter(|l| l.done.contains(&exercise.name))
                .count();
            let stuck = match next_counts[i] {
                0 => String::new(),
                n => format!("  ({n} working on it)"),
            };
            out.push_str(&format!(
                "  {:>2}  {:<28} {done:>3}/{}{stuck}\n",
                exercise.number,
                exercise.name,
                learners.len()
            ));
        }
    }
    for (path, why) in &skipped {
        out.push_str(&format!(
            "skipped {}: {why}\n",
            printable::one_line(&path.display().to_string())
        ));
    }
    show(&out);
    Ok(true)
}
