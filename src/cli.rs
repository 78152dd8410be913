//! The command line: every subcommand and flag, as clap derive types. Each variant's `///`
//! doc is its `--help`; each option sits only on the subcommands that use it. Parsing only;
//! what the commands do lives in `commands.rs` and `workshop.rs`.

use crate::faults::Fault;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// The longest `--timeout`, in seconds: a day.
const MAX_TIMEOUT: u64 = 24 * 60 * 60;

#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// The CPython to run, for any command that runs Python: the same as `--python` after
    /// the command (`refcount-lab --python python3.14 lesson 3`), which wins when both are given.
    #[arg(long, value_name = "PATH_OR_NAME")]
    pub python: Option<OsString>,
    /// When to use colours, for the commands that colour their output: the same as `--color`
    /// after the command, which wins when both are given.
    #[arg(long, value_enum)]
    pub color: Option<ColorChoice>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command, with `--python` and `--color` given before it moved into it (its own
    /// win), as users of uv and ruff expect; an error when the command has no use for one.
    pub fn into_command(self, name: &str) -> Result<Command, clap::Error> {
        let Cli {
            python,
            color,
            mut command,
        } = self;
        let unused = |flag: &str, why: &str| {
            use clap::CommandFactory;
            Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("`{name}` does not use {flag}: {why}"),
            )
        };
        let (python_slot, look_slot) = command.options_mut();
        if let Some(python) = python {
            let slot = python_slot.ok_or_else(|| unused("--python", "it runs no Python"))?;
            slot.python.get_or_insert(python);
        }
        if let Some(color) = color {
            let slot = look_slot.ok_or_else(|| unused("--color", "its output has no colours"))?;
            slot.color.get_or_insert(color);
        }
        // A fault is on or off: a repeated `--fault` is the same fault, said once (and
        // thousands of them once filled the pipe that hands them to the child).
        if let Some(faults) = command.faults_mut() {
            let mut seen = std::collections::BTreeSet::new();
            faults.retain(|fault| seen.insert(*fault));
        }
        Ok(command)
    }
}

/// Which CPython runs the Python code.
#[derive(Args, Clone, Default)]
pub struct PythonChoice {
    /// The CPython to run (3.10+): a path, or a name on PATH such as `python3.14`.
    ///
    /// Default: $REFCOUNT_LAB_PYTHON, else the active virtual environment's python, else
    /// `python3` on PATH.
    #[arg(long, value_name = "PATH_OR_NAME")]
    pub python: Option<OsString>,
}

/// How the report looks.
#[derive(Args, Clone, Copy)]
pub struct Look {
    /// When to use colours [default: auto].
    #[arg(long, value_enum)]
    pub color: Option<ColorChoice>,
    /// Wrap prose and trace lines to this many columns (default: the terminal's width, or 80
    /// when the output is not a terminal).
    #[arg(long, value_name = "COLUMNS", value_parser = clap::value_parser!(u16).range(40..))]
    pub width: Option<u16>,
}

impl Look {
    /// Whether to colour: as `--color` says, or `auto`.
    pub fn color(&self) -> bool {
        self.color.unwrap_or(ColorChoice::Auto).enabled()
    }

    /// The columns to wrap to.
    pub fn width(&self) -> usize {
        self.width
            .map(usize::from)
            .or_else(terminal_width)
            .unwrap_or(80)
    }
}

/// Whether to ask for predictions before a lesson runs: on a terminal (both ways), unless
/// `--no-predict`.
pub fn interactive(no_predict: bool) -> bool {
    use std::io::IsTerminal;
    !no_predict && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The width of the terminal on stdout, if stdout is one.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize struct it is given, and fails on a non-terminal.
    let found = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (found && size.ws_col >= 40).then_some(usize::from(size.ws_col))
}

/// Where the lessons come from.
#[derive(Args, Clone, Default)]
pub struct LessonSource {
    /// Load lessons from this folder instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub lessons_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum ExercisesAction {
    /// Copy the exercise files into DIR and work there (if any is there already, none is written).
    Init {
        /// The folder to write the exercise files into.
        dir: PathBuf,
        /// Keep the exercise files already in DIR (say, after `exercises --reset`) and write
        /// only the missing ones.
        #[arg(long)]
        resume: bool,
    },
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

/// The shells `completions` writes a script for.
#[derive(Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Subcommand)]
pub enum Command {
    /// List the lessons.
    List {
        #[command(flatten)]
        source: LessonSource,
    },
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
        /// Seconds a run may take before it is stopped (1 to 86400).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT))]
        timeout: u64,
        /// Do not stop for predictions: show the questions and run at once (the default when
        /// not on a terminal).
        #[arg(long)]
        no_predict: bool,
        /// Show every compiler message in full (lesson 19 shows the first one whole, and the
        /// first line of each of the others).
        #[arg(long)]
        all_messages: bool,
        #[command(flatten)]
        source: LessonSource,
        #[command(flatten)]
        python: PythonChoice,
        #[command(flatten)]
        look: Look,
    },
    /// Run your own script in a child interpreter: its refcount trace and outcome.
    Run {
        /// The script (it can `import hashtable, lab`).
        script: PathBuf,
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// Seconds the script, and what it starts, may take before they are stopped (1
        /// to 86400).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT))]
        timeout: u64,
        #[command(flatten)]
        python: PythonChoice,
        #[command(flatten)]
        look: Look,
    },
    /// List the faults the hashtable type can be switched into.
    Faults,
    /// Print the ownership rules the lessons teach, as a handout.
    Rules {
        /// Print the handout as Markdown (to edit, or to convert with pandoc) instead of text.
        #[arg(long)]
        markdown: bool,
        #[command(flatten)]
        look: Look,
    },
    /// Workshop exercises: list them with your progress (`exercises init DIR` to start).
    #[command(args_conflicts_with_subcommands = true)]
    Exercises {
        #[command(subcommand)]
        action: Option<ExercisesAction>,
        /// Forget which exercises are done (your files stay as they are).
        #[arg(long)]
        reset: bool,
        /// Write your progress to FILE, a small file to hand to your teacher.
        #[arg(long, value_name = "FILE", conflicts_with = "reset")]
        export: Option<PathBuf>,
        /// Your name in the exported file (default: your login name).
        #[arg(long, requires = "export")]
        name: Option<String>,
        /// Check that C extensions build here (a compiler, and the chosen Python's headers),
        /// as the fix-the-C exercises need: a set-up step.
        #[arg(long, conflicts_with_all = ["reset", "export"])]
        check_c: bool,
        #[command(flatten)]
        python: PythonChoice,
    },
    /// For teachers: a class's progress, from a folder of files made with `exercises --export`.
    Class {
        /// The folder holding the learners' exported files.
        dir: PathBuf,
    },
    /// Run exercise N on your file (your probe with the fault on and off, or your C module
    /// against its probe) and say whether it passes.
    Exercise {
        /// The exercise number (see `refcount-lab exercises`).
        number: usize,
        #[command(flatten)]
        python: PythonChoice,
        #[command(flatten)]
        look: Look,
    },
    /// A hint for exercise N.
    Hint {
        /// The exercise number (see `refcount-lab exercises`).
        number: usize,
    },
    /// Check the exercises in order, stopping at the first one not done.
    Verify {
        /// Check again whenever an exercise file changes (stop with Ctrl-C).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        python: PythonChoice,
    },
    /// Find reference leaks on a release build of CPython: rerun a target, name what leaks.
    ///
    /// The target runs again and again in one interpreter. What grows in every measured run
    /// (blocks, objects of a type, the references to any one object) is confirmed by more
    /// runs with tracemalloc on, then named: the objects, the line that made them, what
    /// holds them (or that nothing the collector can see does), and the leaking tests.
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
        /// Runs before measuring starts (caches fill, imports settle; 0 to 1000).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1000))]
        warmup: u64,
        /// Measured runs: a leak must grow in every one of them (1 to 1000).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
        repeat: u64,
        /// Runs after a suspected leak, with tracemalloc on: a leak must grow in these too,
        /// and they say where it was allocated (a line's blocks must grow in every one after
        /// the first, which is their baseline: 3 to 1000).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=1000))]
        confirm: u64,
        /// Follow the refcount of this object too, by dotted name (repeatable), e.g. `hash`.
        #[arg(long, value_name = "NAME")]
        watch: Vec<String>,
        /// A known leak not to fail on (repeatable): a type name (`Record`), or a test id
        /// (`test_mod.Case.test_name`, not run at all).
        #[arg(long, value_name = "TYPE|TEST")]
        accept: Vec<String>,
        /// Hunt in part K of N equal parts of a suite's tests (in the order it lists them),
        /// e.g. `2/4` for the second quarter: one CI job per part (-m unittest, --pytest).
        #[arg(long, value_name = "K/N", value_parser = clap::value_parser!(crate::hunt::Shard))]
        shard: Option<crate::hunt::Shard>,
        /// Hunt in N parts of a suite's tests at once, each in an interpreter of its own
        /// (-m unittest, --pytest; 1 to 64): on N cores, up to N times sooner.
        #[arg(long, short = 'j', value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..=crate::hunt::MOST_JOBS))]
        jobs: u64,
        /// The part of the suite one copy of `--jobs` hunts in (for `--jobs` only).
        #[arg(long, value_name = "J/N", hide = true,
              value_parser = clap::value_parser!(crate::hunt::Shard))]
        job: Option<crate::hunt::Shard>,
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        /// `text` (the short report) or `json` (every measurement).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also draw the leaking metrics per run as an SVG plot.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Seconds the whole hunt may take before it is stopped (1 to 86400).
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT))]
        timeout: u64,
        #[command(flatten)]
        python: PythonChoice,
        /// The script (or SCRIPT::FUNCTION), or the module's or pytest's arguments (after
        /// `--` when they start with `-`).
        #[arg(value_name = "TARGET")]
        target: Vec<OsString>,
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
        /// Seconds the measurements may take before they are stopped (1 to 86400).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT))]
        timeout: u64,
        #[command(flatten)]
        python: PythonChoice,
    },
    /// Run the chosen CPython (REPL, -c, -m, a script) with `hashtable` and `lab` importable.
    ///
    /// It is that interpreter: exit codes and signals are its own. Put `--` before Python
    /// options that clash with ours.
    Python {
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<Fault>,
        #[command(flatten)]
        python: PythonChoice,
        /// Arguments for Python.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print a shell completion script, e.g. `refcount-lab completions bash > …`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff), e.g. `refcount-lab man | man -l -`.
    Man,
}

impl Command {
    /// The faults the command switches on, if it takes `--fault`.
    fn faults_mut(&mut self) -> Option<&mut Vec<Fault>> {
        match self {
            Command::Lesson { faults, .. }
            | Command::Run { faults, .. }
            | Command::Hunt { faults, .. }
            | Command::Python { faults, .. } => Some(faults),
            _ => None,
        }
    }

    /// Where the command keeps `--python` and `--color`, if it takes them.
    fn options_mut(&mut self) -> (Option<&mut PythonChoice>, Option<&mut Look>) {
        match self {
            Command::Lesson { python, look, .. }
            | Command::Run { python, look, .. }
            | Command::Exercise { python, look, .. } => (Some(python), Some(look)),
            Command::Exercises { python, .. }
            | Command::Verify { python, .. }
            | Command::Hunt { python, .. }
            | Command::Bench { python, .. }
            | Command::Python { python, .. } => (Some(python), None),
            Command::Rules { look, .. } => (None, Some(look)),
            _ => (None, None),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_of_every_command_says_what_it_is() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in command.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let command = Cli::command();
        command.clone().debug_assert();
        check(&command, "refcount-lab");
    }
}
