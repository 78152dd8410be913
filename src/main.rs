//! `refcount-lab`: watch reference counting go wrong in a real CPython extension type.
//!
//! `main` parses the command line (`cli`) and dispatches; each module owns one idea:
//! `hashtable/` the raw-FFI type being taught, `faults` the switchboard of its mistakes,
//! `sites` their source lines, `embed` the interpreter, `lab` the probes lesson scripts use,
//! `trace` the child → parent protocol, `runner` the child process, `outcome` what a run
//! adds up to, `lessons` the catalogue, `render` the text, `commands` and `workshop` what
//! each subcommand does, `bench`, `hunt`, `exercises` and `progress` their subjects.
//!
//! Exit status: 0 when all went as expected, 1 when a run did not (a crash, leak or error
//! that was not the lesson's point), 2 when the command itself failed (bad input).

mod bench;
mod cli;
mod commands;
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
mod workshop;

use clap::Parser;
use cli::{Cli, Command};
use render::{show, Painter};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let painter = Painter {
        color: cli.color.enabled(),
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
        } => commands::run_lesson(
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
        } => commands::run_script(painter, &script, &faults, Duration::from_secs(timeout)),
        Command::Exercises { action, reset } => workshop::exercises_command(action, reset),
        Command::Exercise { number } => workshop::exercise_command(painter, number),
        Command::Hint { number } => workshop::hint_command(number),
        Command::Verify { watch } => workshop::verify_command(watch),
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
        } => commands::hunt_config(module, pytest, target, warmup, repeat as usize, watch)
            .and_then(|config| {
                commands::run_hunt(
                    config,
                    &faults,
                    format,
                    plot.as_deref(),
                    Duration::from_secs(timeout),
                )
            }),
        Command::Bench {
            quick,
            csv,
            plot,
            timeout,
        } => commands::run_bench(
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
