//! `hunt --jobs N`: a suite's tests in N equal parts, hunted side by side, each by a copy of
//! refcount-lab in an interpreter of its own (as `regrtest -j` runs tests in worker
//! processes). A copy is `refcount-lab hunt --job J/N --format json` on the same target; its
//! JSON comes back whole, and the verdicts are made here as for one hunt.
//!
//! A copy holds its own runs and cleans up after itself (`processes::copies`). A leak that
//! needs tests of two parts together is found only by a hunt that runs both.

use super::{assemble, Config, Hunt, Shard};
use crate::faults::Fault;
use crate::processes::{copies, Stopped};
use crate::python::Python;
use crate::trace::{Findings, Repetition};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::process::Command;
use std::time::Duration;

/// The most parts `--jobs` runs at once.
pub const MOST_JOBS: u64 = 64;
/// The most a copy's JSON report may take.
const REPORT_CAP: usize = 64 << 20;
/// Time a copy is given past the hunt's own `--timeout`, which it keeps itself.
const TIMEOUT_GRACE: Duration = Duration::from_secs(30);

/// One part of the suite, and its hunt or why it has none.
pub struct Part {
    pub job: Shard,
    pub hunt: Result<Hunt, String>,
}

/// What a copy's JSON report holds that the verdicts are made from.
#[derive(Deserialize)]
struct Measured {
    repetitions: Vec<Repetition>,
    findings: Option<Findings>,
    threads_left: Vec<String>,
    processes_left: Vec<String>,
}

/// Hunts in `jobs` parts of the suite at once; the parts in order, and the processes the
/// copies left running (stopped).
pub fn hunt_in_parts(
    python: &Python,
    config: &Config,
    faults: &[Fault],
    timeout: Duration,
    jobs: usize,
) -> Result<(Vec<Part>, Vec<String>)> {
    let parts: Vec<Shard> = (1..=jobs)
        .map(|index| Shard { index, count: jobs })
        .collect();
    let mut commands: Vec<Command> = parts
        .iter()
        .map(|&job| copy_command(python, config, faults, timeout, job))
        .collect();
    let outputs = copies::run(&mut commands, timeout + TIMEOUT_GRACE, REPORT_CAP)
        .context("cannot start the parts of the hunt (copies of refcount-lab)")?;
    let parts = parts
        .into_iter()
        .zip(outputs.each)
        .map(|(job, output)| {
            let config = Config {
                job: Some(job),
                ..config.clone()
            };
            Part {
                job,
                hunt: read(output).map(|measured| {
                    assemble(
                        config,
                        measured.repetitions,
                        measured.findings,
                        measured.threads_left,
                        measured.processes_left,
                    )
                }),
            }
        })
        .collect();
    Ok((parts, outputs.left_running))
}

/// `refcount-lab hunt` on part `job`, with this hunt's settings: this very program
/// (`/proc/self/exe`, not a path another program could have replaced since).
fn copy_command(
    python: &Python,
    config: &Config,
    faults: &[Fault],
    timeout: Duration,
    job: Shard,
) -> Command {
    let mut command = Command::new("/proc/self/exe");
    command.arg("hunt").arg("--python").arg(&python.executable);
    for (flag, value) in [
        ("--warmup", config.warmup),
        ("--repeat", config.repeat),
        ("--confirm", config.confirm),
    ] {
        command.arg(flag).arg(value.to_string());
    }
    for name in &config.watch {
        command.arg("--watch").arg(name);
    }
    for name in &config.accept {
        command.arg("--accept").arg(name);
    }
    if let Some(shard) = config.shard {
        command.arg("--shard").arg(shard.to_string());
    }
    for fault in faults {
        command.arg("--fault").arg(fault.name());
    }
    command
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .arg("--job")
        .arg(job.to_string())
        .args(["--format", "json"]);
    match config.kind {
        "pytest" => command.arg("--pytest"),
        _ => command.arg("-m").arg(&config.target),
    };
    command.arg("--").args(&config.args);
    command
}

/// The copy's measurements, or what went wrong, in its own words where it had some.
fn read(output: copies::Output) -> Result<Measured, String> {
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim().trim_start_matches("error: ");
    match output.stopped {
        // What it said then is its own "interrupted", by the SIGTERM that stopped it.
        Some(Stopped::TimeLimit) => {
            return Err(String::from(
                "it was still running past the time limit, and was stopped",
            ))
        }
        Some(Stopped::OutputCap) => {
            return Err(format!(
                "its report was larger than {} MiB",
                REPORT_CAP >> 20
            ))
        }
        None => {}
    }
    match output.status.code() {
        // No leak, or a leak: the report is on stdout.
        Some(0 | 1) => serde_json::from_slice(&output.stdout)
            .map_err(|error| format!("its report cannot be read: {error}")),
        Some(_) => Err(said.to_string()),
        None => Err(format!("it ended with {}\n{said}", describe(output.status))),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => crate::render::signal_name(signal),
        None => status.to_string(),
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
