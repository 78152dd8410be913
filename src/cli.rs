//! The command line: every subcommand and flag, as clap derive types. Each variant's `///`
//! doc is its `--help`. Parsing only; what the commands do lives in `commands.rs` and
//! `workshop.rs`.

use crate::faults::Fault;
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// When to use colours.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// The CPython to run (3.10+): a path, or a name on PATH such as `python3.14`.
    ///
    /// Default: $REFCOUNT_LAB_PYTHON, else the active virtual environment's python, else
    /// `python3` on PATH.
    #[arg(long, value_name = "PATH_OR_NAME", global = true)]
    pub python: Option<OsString>,
    /// Load lessons from this folder instead of the built-in ones.
    #[arg(long, value_name = "DIR", global = true)]
    pub lessons_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum ExercisesAction {
    /// Copy the exercise files into DIR (new or empty) and work there.
    Init { dir: PathBuf },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    Correct,
    Faulty,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Run your own script in a child interpreter: its refcount trace and outcome.
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
    /// Find reference leaks on a release build of CPython: rerun a target, report what grows.
    ///
    /// The target runs again and again in one interpreter; what grows in every measured run
    /// is reported, by type.
    ///
    /// TARGET is a script (re-run each time), SCRIPT::FUNCTION (imported once, the function
    /// called each time), a module with -m (e.g. `-m unittest test_module`), or pytest
    /// arguments with --pytest (e.g. `--pytest -- tests/ -k model`).
    Hunt {
        /// Run a module as `python -m MODULE ARGS…` would.
        #[arg(short = 'm', value_name = "MODULE", conflicts_with = "pytest")]
        module: Option<String>,
        /// Run pytest with ARGS… (pytest must be installed in the chosen interpreter).
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
    /// Measure HashTable against dict, and the talk's three knobs.
    ///
    /// How hash function, initial size and max load change chains, resizes and speed.
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
    /// Run the chosen CPython (REPL, -c, -m, a script) with `hashtable` and `lab` importable.
    ///
    /// It is that interpreter: exit codes and signals are its own. Put `--` before Python
    /// options that clash with ours.
    Python {
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// Arguments for Python.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

impl ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set; or as forced.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}
