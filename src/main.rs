//! `refcount-lab`: watch reference counting go wrong in a real CPython extension type.
//!
//! `main` parses the command line and dispatches; each module owns one idea:
//! `hashtable/` the raw-FFI type being taught, `faults` the switchboard of its mistakes,
//! `sites` their source lines, `embed` the interpreter, `lab` the probes lesson scripts use,
//! `trace` the child → parent protocol, `runner` the child process, `outcome` what a run
//! adds up to, `lessons` the catalogue, `render` the text.
//!
//! Exit status: 0 when all went as expected, 1 when a run did not (a crash, leak or error
//! that was not the lesson's point), 2 when the command itself failed (bad input).

mod bench;
mod embed;
mod exercises;
mod faults;
mod hashtable;
mod hunt;
mod lab;
mod lessons;
mod outcome;
mod progress;
mod render;
mod runner;
mod sites;
mod trace;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use faults::Fault;
use outcome::Outcome;
use render::Painter;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version = concat!(env!("CARGO_PKG_VERSION"), " (CPython ", env!("REFCOUNT_LAB_PYTHON_VERSION"), ")"),
    about,
    long_about = None
)]
struct Cli {
    /// When to use colours.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    /// Load lessons from this folder instead of the built-in ones.
    #[arg(long, value_name = "DIR", global = true)]
    lessons_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum ExercisesAction {
    /// Copy the exercise files into DIR (new or empty) and work there.
    Init { dir: PathBuf },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Variant {
    Correct,
    Faulty,
}

#[derive(Subcommand)]
enum Command {
    /// List the lessons.
    List,
    /// Run a lesson: the correct code and the faulty code, side by side.
    Lesson {
        /// The lesson number (see `refcount-lab list`).
        number: u32,
        /// Run only one variant.
        #[arg(long, value_enum)]
        variant: Option<Variant>,
        /// Switch on these faults in the faulty run instead of the lesson's own (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// Seconds a run may take before it is stopped.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Run any Python script in a child interpreter and report its refcount trace and outcome.
    Run {
        /// The script (it can `import hashtable, lab`).
        script: PathBuf,
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// Seconds the script may take before it is stopped.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// List the faults the hashtable type can be switched into.
    Faults,
    /// Workshop exercises: list them with your progress (`exercises init DIR` to start).
    Exercises {
        #[command(subcommand)]
        action: Option<ExercisesAction>,
        /// Forget which exercises are done (your files stay as they are).
        #[arg(long)]
        reset: bool,
    },
    /// Run exercise N on your file: its probe with the fault on and off, or its question.
    Exercise { number: usize },
    /// A hint for exercise N.
    Hint { number: usize },
    /// Check the exercises in order, stopping at the first one not done.
    Verify {
        /// Check again whenever an exercise file changes (stop with Ctrl-C).
        #[arg(long)]
        watch: bool,
    },
    /// Hunt for reference leaks on the interpreter you have (no debug build needed): run a
    /// target again and again in one interpreter and report what grows every time.
    ///
    /// TARGET is a script (re-run each time), SCRIPT::FUNCTION (imported once, the function
    /// called each time), a module with -m (e.g. `-m unittest test_module`), or pytest
    /// arguments with --pytest (e.g. `--pytest -- tests/ -k model`).
    Hunt {
        /// Run a module as `python -m MODULE ARGS…` would.
        #[arg(short = 'm', value_name = "MODULE", conflicts_with = "pytest")]
        module: Option<String>,
        /// Run pytest with ARGS… (pytest must be installed in the embedded interpreter).
        #[arg(long)]
        pytest: bool,
        /// Runs before measuring starts (caches fill, imports settle).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Measured runs: a leak must grow in every one of them.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        repeat: u64,
        /// Follow the refcount of this object too, by dotted name (repeatable), e.g. `hash`.
        #[arg(long, value_name = "NAME")]
        watch: Vec<String>,
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// `text` (the short report) or `json` (every measurement).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also draw the leaking metrics per run as an SVG plot.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Seconds the whole hunt may take before it is stopped.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The script (or SCRIPT::FUNCTION), or the module's or pytest's arguments (after
        /// `--` when they start with `-`).
        #[arg(value_name = "TARGET")]
        target: Vec<String>,
    },
    /// Measure HashTable against dict, and how hash function, initial size and max load
    /// change its performance.
    Bench {
        /// A smaller, faster run (for CI): fewer keys and rounds.
        #[arg(long)]
        quick: bool,
        /// Also write the sweep as CSV to this file.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Also draw the sweep as SVG plots into this folder.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// Seconds the measurements may take before they are stopped.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Run the embedded CPython (as `python3` would: REPL, -c, -m, a script), with
    /// `hashtable` and `lab` importable. Put `--` before Python options that clash with ours.
    Python {
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// Arguments for Python.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let painter = Painter {
        color: match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        },
    };
    let result = match cli.command {
        Command::Python { faults, args } => {
            let code = embed::run_python(&args, faults);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Command::List => lessons::load(cli.lessons_dir.as_deref()).map(|lessons| {
            show(&render::lesson_list(&lessons));
            true
        }),
        Command::Faults => {
            show(&render::fault_list());
            Ok(true)
        }
        Command::Lesson {
            number,
            variant,
            faults,
            timeout,
        } => run_lesson(
            painter,
            cli.lessons_dir.as_deref(),
            number,
            variant,
            faults,
            Duration::from_secs(timeout),
        ),
        Command::Run {
            script,
            faults,
            timeout,
        } => run_script(painter, &script, &faults, Duration::from_secs(timeout)),
        Command::Exercises { action, reset } => exercises_command(action, reset),
        Command::Exercise { number } => exercise_command(painter, number),
        Command::Hint { number } => exercises::catalogue().and_then(|all| {
            let exercise = exercises::find(&all, number)?;
            show(&format!(
                "Hint for exercise {number} ({}): {}\n",
                exercise.name, exercise.hint
            ));
            Ok(true)
        }),
        Command::Verify { watch } => verify_command(watch),
        Command::Hunt {
            module,
            pytest,
            warmup,
            repeat,
            watch,
            faults,
            format,
            plot,
            timeout,
            target,
        } => {
            hunt_config(module, pytest, target, warmup, repeat as usize, watch).and_then(|config| {
                run_hunt(
                    config,
                    &faults,
                    format,
                    plot.as_deref(),
                    Duration::from_secs(timeout),
                )
            })
        }
        Command::Bench {
            quick,
            csv,
            plot,
            timeout,
        } => run_bench(
            quick,
            csv.as_deref(),
            plot.as_deref(),
            Duration::from_secs(timeout),
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes to stdout; a closed pipe (`refcount-lab lesson 3 | head`) is not an error.
fn show(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Runs a lesson's variants; true when each ended as the lesson expects.
fn run_lesson(
    painter: Painter,
    lessons_dir: Option<&Path>,
    number: u32,
    variant: Option<Variant>,
    chosen_faults: Vec<Fault>,
    timeout: Duration,
) -> Result<bool> {
    let catalogue = lessons::load(lessons_dir)?;
    let lesson = lessons::find(&catalogue, number)?;
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
            .faulty_on(embed::python_version())
            .filter(|_| own_faults);
        variants.push(("faulty", faults.clone(), expected));
    }

    let demo = lesson.demo_on_disk()?;
    show(&render::lesson_intro(painter, lesson));
    let mut results: Vec<(&str, Outcome, Option<&str>)> = Vec::new();
    for (name, faults, expected) in variants {
        let job = runner::Job {
            script: &demo.script,
            args: &[],
            dir: &demo.dir,
            faults: &faults,
            timeout,
            debug_allocator: true,
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
    }
    for fault in &faults {
        show(&render::site(painter, *fault));
    }
    show(&render::explanation(painter, lesson));
    let summary: Vec<(&str, &Outcome, Option<&str>)> =
        results.iter().map(|(n, o, e)| (*n, o, *e)).collect();
    show(&render::verdict(painter, &summary));
    Ok(results
        .iter()
        .all(|(_, outcome, expected)| expected.is_none_or(|kind| kind == outcome.kind())))
}

/// Runs a learner's script; true when it ended `ok`.
fn run_script(
    painter: Painter,
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
        script,
        args: &[],
        dir: Path::new("."),
        faults,
        timeout,
        debug_allocator: true,
    };
    let run = runner::run(&job)?;
    let outcome = outcome::classify(&run);
    let heading = format!("run {}", script.display());
    show(&render::run(painter, &heading, &run, &outcome));
    for fault in faults {
        show(&render::site(painter, *fault));
    }
    Ok(outcome == Outcome::Ok)
}

/// Measures, prints the tables, and writes the CSV and plots asked for.
fn run_bench(
    quick: bool,
    csv: Option<&Path>,
    plot: Option<&Path>,
    timeout: Duration,
) -> Result<bool> {
    let report = bench::measure(quick, timeout)?;
    show(&bench::render(&report));
    if let Some(path) = csv {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, bench::csv(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        show(&format!("\nwrote {}\n", path.display()));
    }
    if let Some(dir) = plot {
        for path in bench::plot(&report, dir)? {
            show(&format!("wrote {}\n", path.display()));
        }
    }
    Ok(true)
}

/// The hunt's target from the command line's three ways of naming one.
fn hunt_config(
    module: Option<String>,
    pytest: bool,
    mut target: Vec<String>,
    warmup: usize,
    repeat: usize,
    watch: Vec<String>,
) -> Result<hunt::Config> {
    let (kind, name) = match (module, pytest) {
        (Some(module), _) => ("module", module),
        (None, true) => ("pytest", String::new()),
        (None, false) => {
            if target.is_empty() {
                bail!(
                    "name what to hunt in: a SCRIPT, SCRIPT::FUNCTION, -m MODULE or --pytest ARGS"
                );
            }
            let script = target.remove(0);
            let path = script.split("::").next().unwrap_or(&script);
            if !Path::new(path).is_file() {
                bail!("{path} is not a file: give the path of a Python script");
            }
            ("script", script)
        }
    };
    Ok(hunt::Config {
        kind,
        target: name,
        args: target,
        warmup,
        repeat,
        watch,
    })
}

/// Hunts and reports; true when nothing leaked.
fn run_hunt(
    config: hunt::Config,
    faults: &[Fault],
    format: Format,
    plot: Option<&Path>,
    timeout: Duration,
) -> Result<bool> {
    let hunt = hunt::hunt(config, faults, timeout)?;
    match format {
        Format::Text => show(&hunt::render(&hunt)),
        Format::Json => show(&(serde_json::to_string_pretty(&hunt)? + "\n")),
    }
    if let Some(path) = plot {
        hunt::plot(&hunt, path).with_context(|| format!("cannot draw {}", path.display()))?;
        if format == Format::Text {
            show(&format!("  wrote {}\n", path.display()));
        }
    }
    Ok(hunt.leaks.is_empty())
}

const FIRST_STEPS: &str =
    "Open the first file, replace each ... with your prediction, save, and run

    refcount-lab verify

verify checks the exercises in order and stops at the first one not done. `refcount-lab
exercises` lists them with your progress, `refcount-lab exercise N` runs one, and
`refcount-lab hint N` gives a nudge.
";

/// `exercises`, `exercises init DIR`, `exercises --reset`.
fn exercises_command(action: Option<ExercisesAction>, reset: bool) -> Result<bool> {
    let all = exercises::catalogue()?;
    let mut progress = progress::Progress::load()?;
    if let Some(ExercisesAction::Init { dir }) = action {
        exercises::init(&dir, &all)?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot find {}", dir.display()))?;
        show(&format!(
            "Wrote {} exercises to {}.\n\n{FIRST_STEPS}\nThe first file: {}\n",
            all.len(),
            dir.display(),
            dir.join(all[0].file_name()).display()
        ));
        progress.workdir = Some(dir);
        progress.done.clear();
        return progress.save().map(|()| true);
    }
    if reset {
        progress.done.clear();
        progress.save()?;
        show("Progress reset: every exercise is to do again.\n");
        return Ok(true);
    }
    let mut out = String::new();
    for exercise in &all {
        let mark = if progress.done.contains(&exercise.name) {
            "done"
        } else {
            "    "
        };
        let kind = format!("{:?}", exercise.kind).to_lowercase();
        out.push_str(&format!(
            "  {mark}  {:>2}  {kind:<8}  lesson {:>2}  {}\n",
            exercise.number, exercise.lesson, exercise.name
        ));
    }
    let done = all
        .iter()
        .filter(|e| progress.done.contains(&e.name))
        .count();
    out.push_str(&format!("\n{done} of {} done. ", all.len()));
    match &progress.workdir {
        Some(dir) => out.push_str(&format!("Your files are in {}.\n", dir.display())),
        None => out.push_str("Start with `refcount-lab exercises init DIR`.\n"),
    }
    show(&out);
    Ok(true)
}

/// `exercise N`: what to do, and the learner's script run with the fault on and off.
fn exercise_command(painter: Painter, number: usize) -> Result<bool> {
    let all = exercises::catalogue()?;
    let exercise = exercises::find(&all, number)?;
    let workdir = exercises::workdir(progress::Progress::load()?.workdir.as_deref())?;
    let kind = format!("{:?}", exercise.kind).to_lowercase();
    show(&format!(
        "Exercise {number} · {} ({kind}, lesson {})\nYour file: {}\n",
        exercise.name,
        exercise.lesson,
        workdir.join(exercise.file_name()).display()
    ));
    let Some(fault) = exercise
        .fault
        .filter(|_| exercise.kind != exercises::Kind::Predict)
    else {
        show(&format!(
            "\nReplace each ... in the file with your prediction, then run `refcount-lab verify`.\n\
             To watch the lesson first: `refcount-lab lesson {}`.\n",
            exercise.lesson
        ));
        return Ok(true);
    };
    let (correct, faulty) = exercises::run_both_ways(&workdir, exercise, fault)?;
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
    Ok(true)
}

/// `verify`: check in order, record progress, stop at the first exercise not done.
fn verify_command(watch: bool) -> Result<bool> {
    let all = exercises::catalogue()?;
    let mut progress = progress::Progress::load()?;
    let workdir = exercises::workdir(progress.workdir.as_deref())?;
    loop {
        let (done, stuck) = exercises::verify_all(&all, &workdir)?;
        let mut out = String::new();
        for exercise in &all[..done] {
            out.push_str(&format!(
                "  done  {:>2}  {}\n",
                exercise.number, exercise.name
            ));
        }
        progress.done = all[..done].iter().map(|e| e.name.clone()).collect();
        progress.save()?;
        if let Some((number, why)) = &stuck {
            let exercise = &all[number - 1];
            out.push_str(&format!(
                "  to do {number:>2}  {}\n\n{why}\n\nYour file: {}\nA hint: `refcount-lab hint {number}`\n",
                exercise.name,
                workdir.join(exercise.file_name()).display()
            ));
        }
        out.push_str(&format!("\n{done} of {} exercises done.\n", all.len()));
        if stuck.is_none() {
            out.push_str("All done: every refcount accounted for.\n");
        }
        show(&out);
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
