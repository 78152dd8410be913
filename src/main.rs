//! `refcount-lab`: watch reference counting go wrong in a real CPython extension type.
//!
//! `main` parses the command line (`cli`) and dispatches; each module owns one idea:
//! `faults` the catalogue of the native module's mistakes (the module itself, the raw-FFI
//! type with its switchboard, trace emitter and `lab` probes, is the crate in `native/`),
//! `sites` their source lines, `native` the module carried in this binary, `python` the
//! interpreter it runs in, `trace` the child → parent protocol, `runner` the child process,
//! `processes` the hold on every process it starts, `scratch` the private folders it
//! writes, `outcome` what a run adds up to, `lessons` the catalogue, `render` the text
//! (`markdown` the lessons' prose), `handout` the rules handout, `commands` and `workshop`
//! what each subcommand does, `bench`, `hunt`, `exercises` (with `cbuild` for the C ones)
//! and `progress` their subjects.
//!
//! Exit status: 0 when all went as expected, 1 when a run did not (a crash, leak or error
//! that was not the lesson's point), 2 when the command itself failed (bad input).

mod bench;
mod cbuild;
mod cli;
mod commands;
mod compiler;
mod exercises;
mod faults;
mod handout;
mod hunt;
mod lessons;
mod markdown;
mod namespace;
mod native;
mod outcome;
mod outputs;
mod printable;
mod processes;
mod progress;
mod python;
mod render;
mod runner;
mod scratch;
mod sites;
mod trace;
mod workshop;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, Look, PythonChoice};
use python::Python;
use render::{show, Painter};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let name = matches.subcommand_name().unwrap_or_default().to_owned();
    let command = Cli::from_arg_matches(&matches)
        .and_then(|cli| cli.into_command(&name))
        .unwrap_or_else(|error| error.exit());
    // Before any other thread starts (see processes.rs).
    processes::interrupts::install(match command {
        Command::Python { .. } => processes::interrupts::Mode::Interactive,
        _ => processes::interrupts::Mode::Stop,
    });
    let painter = |look: Look| Painter {
        color: look.color(),
        width: look.width(),
    };
    let python = |choice: &PythonChoice| Python::choose(choice.python.as_deref());
    // `refcount-lab python`'s status: the interpreter's own.
    let mut interpreter_exit: Option<std::process::ExitStatus> = None;
    let result = match command {
        Command::Python {
            faults,
            python: choice,
            args,
        } => python(&choice).and_then(|python| {
            let names: Vec<&str> = faults.iter().map(|fault| fault.name()).collect();
            // A child, not an exec: the module folder is removed when it ends. It shares
            // the terminal, so Ctrl-C is its own; its exit status becomes the command's.
            // The interpreter is yours to drive: its faults are in its environment.
            let mut command = python.command();
            command
                .env("REFCOUNT_LAB_FAULTS", names.join(","))
                .args(&args);
            let (status, left) = processes::run_interactive(&mut command).map_err(|error| {
                anyhow::anyhow!("cannot run {}: {error}", python.executable.display())
            })?;
            if !left.is_empty() {
                eprintln!(
                    "refcount-lab: stopped what the interpreter left running: {}",
                    left.join(", ")
                );
            }
            interpreter_exit = Some(status);
            Ok(true)
        }),
        Command::List { source } => lessons::load(source.lessons_dir.as_deref()).map(|lessons| {
            show(&render::lesson_list(&lessons));
            true
        }),
        Command::Faults => {
            show(&render::fault_list());
            Ok(true)
        }
        Command::Rules { markdown, look } => lessons::load(None).map(|lessons| {
            let handout = handout::markdown(&lessons);
            if markdown {
                show(&handout);
            } else {
                let painter = painter(look);
                show(&markdown::render(&handout, painter.width, painter.color));
            }
            true
        }),
        Command::Lesson {
            number,
            variant,
            faults,
            timeout,
            no_predict,
            all_messages,
            source,
            python: choice,
            look,
        } => python(&choice).and_then(|python| {
            let options = commands::LessonOptions {
                variant,
                faults,
                timeout: Duration::from_secs(timeout),
                predict: cli::interactive(no_predict),
                all_messages,
            };
            commands::run_lesson(
                painter(look),
                &python,
                source.lessons_dir.as_deref(),
                number,
                options,
            )
        }),
        Command::Run {
            script,
            faults,
            timeout,
            python: choice,
            look,
        } => python(&choice).and_then(|python| {
            commands::run_script(
                painter(look),
                &python,
                &script,
                &faults,
                Duration::from_secs(timeout),
            )
        }),
        Command::Exercises {
            check_c: true,
            python: choice,
            ..
        } => python(&choice).and_then(|python| workshop::check_c_command(&python)),
        Command::Exercises {
            action,
            reset,
            export: Some(file),
            name,
            ..
        } if action.is_none() && !reset => workshop::export_command(&file, name),
        Command::Exercises { action, reset, .. } => workshop::exercises_command(action, reset),
        Command::Class { dir } => workshop::class_command(&dir),
        Command::Exercise {
            number,
            python: choice,
            look,
        } => python(&choice)
            .and_then(|python| workshop::exercise_command(painter(look), &python, number)),
        Command::Hint { number } => workshop::hint_command(number),
        Command::Verify {
            watch,
            python: choice,
        } => python(&choice).and_then(|python| workshop::verify_command(&python, watch)),
        Command::Hunt {
            module,
            pytest,
            warmup,
            repeat,
            confirm,
            watch,
            accept,
            shard,
            jobs,
            job,
            faults,
            format,
            plot,
            timeout,
            python: choice,
            target,
        } => commands::hunt_target(module, pytest, target).and_then(|(kind, target, args)| {
            let suite = kind == "pytest" || (kind == "module" && target == "unittest");
            for (splits, flag) in [(shard.is_some(), "--shard"), (jobs > 1, "--jobs")] {
                if splits && !suite {
                    anyhow::bail!(
                        "{flag} splits a suite's tests: hunt with -m unittest or --pytest to \
                         use it"
                    );
                }
            }
            if jobs > 1 && plot.is_some() {
                anyhow::bail!(
                    "--plot draws the runs of one interpreter, and --jobs has one per part: \
                     plot a part alone with --shard K/N --plot FILE"
                );
            }
            commands::run_hunt(
                &python(&choice)?,
                hunt::Config {
                    kind,
                    target,
                    args,
                    warmup: warmup as usize,
                    repeat: repeat as usize,
                    confirm: confirm as usize,
                    watch,
                    accept,
                    shard,
                    job,
                },
                &faults,
                format,
                plot.as_deref(),
                Duration::from_secs(timeout),
                jobs as usize,
            )
        }),
        Command::Bench {
            quick,
            csv,
            plot,
            timeout,
            python: choice,
        } => python(&choice).and_then(|python| {
            commands::run_bench(
                &python,
                quick,
                csv.as_deref(),
                plot.as_deref(),
                Duration::from_secs(timeout),
            )
        }),
        Command::Completions { shell } => {
            commands::completions(&mut Cli::command(), shell);
            Ok(true)
        }
        Command::Man => commands::man(Cli::command()).map(|()| true),
    };
    processes::interrupts::hold_if_interrupted();
    let result = match render::write_error() {
        Some(error) => Err(anyhow::anyhow!(
            "cannot write the report to standard output: {error}"
        )),
        None => result,
    };
    match result {
        Ok(_) if interpreter_exit.is_some() => {
            use std::os::unix::process::ExitStatusExt;
            let status = interpreter_exit.expect("checked");
            if let Some(signal) = status.signal() {
                // The module folder is gone (with `python`); now end as the child did.
                processes::interrupts::die_of(signal);
            }
            ExitCode::from(status.code().unwrap_or(1) as u8)
        }
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            // Escaped: a message may quote a file name or a file's line.
            eprintln!("error: {}", printable::lines(&format!("{error:#}")));
            ExitCode::from(2)
        }
    }
}
