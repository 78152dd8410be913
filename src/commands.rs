//! What `lesson`, `run`, `bench` and `hunt` do with their validated arguments: run children,
//! print reports, and answer whether everything went as expected (the exit status).

use crate::cli::{Format, Shell, Variant};
use crate::faults::Fault;
use crate::outcome::{self, Outcome};
use crate::python::Python;
use crate::render::{self, show, Painter};
use crate::{bench, hunt, lessons, outputs, printable, runner};
use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Runs a lesson's variants; true when each ended as the lesson expects.
pub fn run_lesson(
    painter: Painter,
    python: &Python,
    lessons_dir: Option<&Path>,
    number: u32,
    options: LessonOptions,
) -> Result<bool> {
    let LessonOptions {
        variant,
        faults: chosen_faults,
        timeout,
        predict,
        all_messages,
    } = options;
    let catalogue = lessons::load(lessons_dir)?;
    let lesson = lessons::find(&catalogue, number)?;
    if all_messages && !lesson.safe_pyo3_table {
        let with: Vec<String> = catalogue
            .iter()
            .filter(|lesson| lesson.safe_pyo3_table)
            .map(|lesson| lesson.number.to_string())
            .collect();
        bail!(
            "lesson {number} shows no compiler messages; --all-messages is for the lessons \
             that do: {}",
            with.join(", ")
        );
    }
    let own_faults = chosen_faults.is_empty();
    let faults = if own_faults {
        lesson.faults.clone()
    } else {
        chosen_faults
    };
    if variant == Some(Variant::Faulty) && faults.is_empty() {
        bail!(
            "lesson {number} is about correct code and has no faulty variant; \
             pick faults with --fault (see `refcount-lab faults`)"
        );
    }
    let mut variants = Vec::new();
    if variant != Some(Variant::Faulty) {
        variants.push(("correct", Vec::new(), Some(lesson.expect.correct.as_str())));
    }
    if variant != Some(Variant::Correct) && !faults.is_empty() {
        let expected = lesson
            .expect
            .faulty_on(python.version)
            .filter(|_| own_faults);
        variants.push(("faulty", faults.clone(), expected));
    }

    let demo = lesson.demo_on_disk()?;
    let predict = predict && !lesson.questions.is_empty();
    show(&render::lesson_intro(
        painter,
        lesson,
        &python.describe(),
        !predict,
    ));
    if lesson.safe_pyo3_table {
        show(&render::safe_pyo3(painter, number, all_messages));
    }
    let answers = if predict {
        ask(painter, &lesson.questions)?
    } else {
        Vec::new()
    };
    let mut results: Vec<(&str, Outcome, Option<&str>)> = Vec::new();
    let mut runs = Vec::new();
    for (name, faults, expected) in variants {
        let job = runner::Job {
            python,
            script: &demo.script,
            args: &[],
            dir: &demo.dir,
            faults: &faults,
            timeout,
            debug_allocator: true,
            wait_for_leftovers: true,
        };
        let run = runner::run(&job)?;
        let outcome = outcome::classify(&run);
        let heading = if faults.is_empty() {
            format!("{name} run")
        } else {
            let names: Vec<String> = faults
                .iter()
                .map(|f| format!("--fault {}", f.name()))
                .collect();
            format!("{name} run ({})", names.join(" "))
        };
        show(&render::run(painter, &heading, &run, &outcome));
        results.push((name, outcome, expected));
        runs.push(run);
    }
    for fault in &faults {
        show(&render::site(painter, *fault));
    }
    if predict {
        let seen: Vec<(&str, &runner::Run, &Outcome)> = results
            .iter()
            .zip(&runs)
            .map(|((name, outcome, _), run)| (*name, run, outcome))
            .collect();
        show(&render::predictions(
            painter,
            &lesson.questions,
            &answers,
            &seen,
        ));
    }
    show(&render::explanation(painter, lesson));
    let summary: Vec<(&str, &Outcome, Option<&str>)> =
        results.iter().map(|(n, o, e)| (*n, o, *e)).collect();
    show(&render::verdict(painter, &summary));
    Ok(results
        .iter()
        .all(|(_, outcome, expected)| expected.is_none_or(|kind| kind == outcome.kind())))
}

/// How `lesson` runs: which variants, with which faults, how long, and whether to ask for
/// predictions first.
pub struct LessonOptions {
    pub variant: Option<Variant>,
    /// Instead of the lesson's own faults (none: the lesson's).
    pub faults: Vec<Fault>,
    pub timeout: Duration,
    pub predict: bool,
    /// Every compiler message in full, not only the first (lessons with `safe_pyo3_table`).
    pub all_messages: bool,
}

/// Asks each question on the terminal and reads one line of answer (empty: skipped).
fn ask(painter: Painter, questions: &[lessons::Question]) -> Result<Vec<String>> {
    use std::io::BufRead;
    show("\nPredict first: answer each question (Enter skips one), then the runs begin.\n");
    let mut answers = Vec::new();
    let mut stdin = std::io::stdin().lock();
    for (i, question) in questions.iter().enumerate() {
        show(&format!("\n{}", render::question(painter, i + 1, question)));
        show("    your answer: ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .context("cannot read your answer")?;
        answers.push(line.trim_end().to_owned());
    }
    show("\n");
    Ok(answers)
}

/// Runs a learner's script; true when it ended `ok`.
pub fn run_script(
    painter: Painter,
    python: &Python,
    script: &Path,
    faults: &[Fault],
    timeout: Duration,
) -> Result<bool> {
    if !script.is_file() {
        bail!(
            "{} is not a file: give the path of a Python script",
            script.display()
        );
    }
    let job = runner::Job {
        python,
        script,
        args: &[],
        dir: Path::new("."),
        faults,
        timeout,
        debug_allocator: true,
        wait_for_leftovers: true,
    };
    let run = runner::run(&job)?;
    let outcome = outcome::classify(&run);
    show(&render::interpreter(painter, &python.describe()));
    let heading = format!("run {}", printable::one_line(&script.to_string_lossy()));
    show(&render::run(painter, &heading, &run, &outcome));
    for fault in faults {
        show(&render::site(painter, *fault));
    }
    Ok(outcome == Outcome::Ok)
}

/// Measures, prints the tables, and writes the CSV and plots asked for.
pub fn run_bench(
    python: &Python,
    quick: bool,
    csv: Option<&Path>,
    plot: Option<&Path>,
    timeout: Duration,
) -> Result<bool> {
    // What cannot be written is found before the bench, not after it.
    if let Some(path) = csv {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            outputs::make_folder(parent)?;
        }
        outputs::check(path)?;
    }
    if let Some(dir) = plot {
        outputs::make_folder(dir)?;
        // As for the files themselves (see `outputs`): another user's link could choose
        // which folder of yours gets them.
        if std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink()) {
            bail!(
                "cannot write into {}: it is a symbolic link, not followed (name the folder \
                 itself)",
                printable::path(dir)
            );
        }
        for file in bench::PLOTS {
            outputs::check(&dir.join(file))?;
        }
    }
    let report = bench::measure(python, quick, timeout)?;
    show(&bench::render(&report));
    if let Some(path) = csv {
        outputs::write(path, bench::csv(&report).as_bytes())?;
        show(&format!("\nwrote {}\n", printable::path(path)));
    }
    if let Some(dir) = plot {
        for path in bench::plot(&report, dir)? {
            show(&format!("wrote {}\n", printable::path(&path)));
        }
    }
    Ok(true)
}

/// The hunt's target from the command line's three ways of naming one: its kind, its name
/// and its arguments.
pub fn hunt_target(
    module: Option<String>,
    pytest: bool,
    mut target: Vec<OsString>,
) -> Result<(&'static str, OsString, Vec<OsString>)> {
    let (kind, name) = match (module, pytest) {
        (Some(module), _) => ("module", OsString::from(module)),
        (None, true) => ("pytest", OsString::new()),
        (None, false) => {
            if target.is_empty() {
                bail!(
                    "name what to hunt in: a SCRIPT, SCRIPT::FUNCTION, -m MODULE or --pytest ARGS"
                );
            }
            let script = target.remove(0);
            // A path need not be UTF-8; the function's name, after `::`, is Python's.
            let bytes = script.as_bytes();
            let (path, function) = match bytes.windows(2).position(|pair| pair == b"::") {
                Some(at) => (&bytes[..at], &bytes[at + 2..]),
                None => (bytes, &b""[..]),
            };
            let shown = script.to_string_lossy();
            let named = bytes.len() != path.len();
            if path.is_empty() || (named && function.is_empty()) {
                bail!(
                    "{shown}: name a script, and after `::` one function it defines \
                     (SCRIPT or SCRIPT::FUNCTION)"
                );
            }
            if function.windows(2).any(|pair| pair == b"::") {
                bail!(
                    "{shown}: name one function the script defines, as SCRIPT::FUNCTION \
                     (for a test of a class, hunt with --pytest {shown})"
                );
            }
            if !Path::new(OsStr::from_bytes(path)).is_file() {
                bail!(
                    "{} is not a file: give the path of a Python script",
                    String::from_utf8_lossy(path)
                );
            }
            ("script", script)
        }
    };
    Ok((kind, name, target))
}

/// Hunts (in `jobs` parts at once when more than 1) and reports; true when nothing leaked.
#[allow(clippy::too_many_arguments)]
pub fn run_hunt(
    python: &Python,
    config: hunt::Config,
    faults: &[Fault],
    format: Format,
    plot: Option<&Path>,
    timeout: Duration,
    jobs: usize,
) -> Result<bool> {
    if jobs > 1 {
        return run_hunt_in_parts(python, &config, faults, format, timeout, jobs);
    }
    // A plot that cannot be written is found before the hunt, not after it.
    if let Some(path) = plot {
        outputs::check(path)?;
    }
    let hunt = hunt::hunt(python, config, faults, timeout)?;
    match format {
        Format::Text => show(&hunt::render(&hunt)),
        Format::Json => show(&(serde_json::to_string_pretty(&hunt)? + "\n")),
    }
    if let Some(path) = plot {
        hunt::plot(&hunt, path).with_context(|| format!("cannot draw {}", path.display()))?;
        if format == Format::Text {
            show(&format!("  wrote {}\n", printable::path(path)));
        }
    }
    Ok(!hunt.failed())
}

/// `hunt --jobs`: every part's report in the order of the suite, then a line for all of
/// them; an error when a part could not be hunted, after the others' reports.
fn run_hunt_in_parts(
    python: &Python,
    config: &hunt::Config,
    faults: &[Fault],
    format: Format,
    timeout: Duration,
    jobs: usize,
) -> Result<bool> {
    let (parts, left_running) = hunt::hunt_in_parts(python, config, faults, timeout, jobs)?;
    let failed: Vec<String> = parts
        .iter()
        .filter_map(|part| {
            let error = part.hunt.as_ref().err()?;
            Some(format!(
                "part {} of --jobs could not be hunted: {error}",
                part.job
            ))
        })
        .collect();
    let leaking: Vec<String> = parts
        .iter()
        .filter(|part| part.hunt.as_ref().is_ok_and(hunt::Hunt::failed))
        .map(|part| part.job.to_string())
        .collect();
    match format {
        Format::Text => {
            let mut out = String::new();
            for hunt in parts.iter().filter_map(|part| part.hunt.as_ref().ok()) {
                out += &hunt::render(hunt);
                out += "\n";
            }
            out += &format!(
                "hunt --jobs {jobs}: {}{}\n",
                match leaking.len() {
                    0 => String::from("no part leaks"),
                    _ => format!("leaks in part {}", leaking.join(", ")),
                },
                match failed.len() {
                    0 => String::new(),
                    n => format!(", {n} could not be hunted"),
                }
            );
            if !left_running.is_empty() {
                out += &format!(
                    "  note: stopped what the parts left running: {}\n",
                    left_running.join(", ")
                );
            }
            show(&out);
        }
        Format::Json => {
            let parts: Vec<serde_json::Value> = parts
                .iter()
                .map(|part| match &part.hunt {
                    Ok(hunt) => serde_json::to_value(hunt),
                    Err(error) => Ok(serde_json::json!({ "error": error })),
                })
                .collect::<Result<_, _>>()?;
            let report = serde_json::json!({ "jobs": jobs, "parts": parts });
            show(&(serde_json::to_string_pretty(&report)? + "\n"));
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("\n"));
    }
    Ok(leaking.is_empty())
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(command: &mut clap::Command, shell: Shell) {
    use clap_complete::Shell as Target;
    let target = match shell {
        Shell::Bash => Target::Bash,
        Shell::Zsh => Target::Zsh,
        Shell::Fish => Target::Fish,
        Shell::Elvish => Target::Elvish,
        Shell::Powershell => Target::PowerShell,
    };
    // Into memory first: a closed pipe or a full disk is `show`'s to handle, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(target, command, "refcount-lab", &mut script);
    show(&String::from_utf8_lossy(&script));
}

/// Writes the manual page (roff) to stdout.
pub fn man(command: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("cannot write the manual page")?;
    show(&String::from_utf8_lossy(&page));
    Ok(())
}
