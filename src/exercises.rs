//! Workshop exercises: the catalogue (`exercises/`, compiled in), the learner's working
//! folder, and the checks `verify` runs.
//!
//! Four kinds. *predict*: the learner writes the values they expect into their file, and
//! the check runs a real demo and compares. *probe*: the learner writes a script that makes
//! a named fault show. *diagnose*: the learner's probe runs with a fault they are not told;
//! it must single the fault out, and then they name it. *fix the C*: the learner repairs a
//! small C extension; the check compiles it (`cbuild.rs`) and runs a probe against it.
//! Nothing is compared against values kept by hand: every check runs real code.

use crate::cbuild::{self, Built};
use crate::faults::{self, Fault, InSafePyO3, UNTARGETED_FAULTS};
use crate::lessons::{self, Lesson};
use crate::outcome::{self, Outcome};
use crate::python::Python;
use crate::runner::{self, Job, Run};
use crate::scratch::{self, ScratchDir};
use crate::trace::Event;
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

include!(concat!(env!("OUT_DIR"), "/exercises.rs"));

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Predict,
    Diagnose,
    Probe,
    FixC,
}

impl Kind {
    /// The spelling in `exercises.toml` and in listings.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Predict => "predict",
            Kind::Diagnose => "diagnose",
            Kind::Probe => "probe",
            Kind::FixC => "fix-c",
        }
    }
}

/// What a predict exercise runs: a lesson's demo or a script of `exercises/checks/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    lesson: Option<u32>,
    script: Option<String>,
    fault: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    kind: Kind,
    lesson: u32,
    check: Option<Check>,
    /// For predict: the learner's name → where the run shows it (`outcome`, `refcount:LABEL`,
    /// `delta:OBJECT`, `stdout:KEY`).
    #[serde(default)]
    answers: BTreeMap<String, String>,
    /// For predict: the learner's name → a one-line nudge for a wrong prediction, aimed at
    /// the usual misconception (not the answer).
    #[serde(default)]
    feedback: BTreeMap<String, String>,
    fault: Option<String>,
    /// For fix-c: the name of the C extension module the file defines.
    module: Option<String>,
    hint: String,
}

#[derive(Deserialize)]
struct Catalogue {
    exercise: Vec<Entry>,
}

pub struct Exercise {
    pub number: usize,
    pub name: String,
    pub kind: Kind,
    pub lesson: u32,
    pub hint: String,
    /// The fault a diagnose or probe exercise is about; a predict exercise's check fault.
    pub fault: Option<Fault>,
    answers: BTreeMap<String, String>,
    feedback: BTreeMap<String, String>,
    check: Option<Check>,
    /// For fix-c: the module the C file defines.
    module: Option<String>,
    /// The file the learner starts from.
    pub starter: &'static str,
}

impl Exercise {
    pub fn file_name(&self) -> String {
        file_name(&self.name, self.kind)
    }
}

/// The learner's file of the exercise `name`: C for fix-c, Python otherwise.
fn file_name(name: &str, kind: Kind) -> String {
    match kind {
        Kind::FixC => format!("{name}.c"),
        _ => format!("{name}.py"),
    }
}

/// The exercises, in order, checked for consistency.
pub fn catalogue() -> Result<Vec<Exercise>> {
    let catalogue: Catalogue = toml::from_str(CATALOGUE).context("exercises/exercises.toml")?;
    let mut exercises = Vec::new();
    for (i, entry) in catalogue.exercise.into_iter().enumerate() {
        let file = file_name(&entry.name, entry.kind);
        let starter = FILES
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, text)| *text)
            .with_context(|| format!("exercise {} has no exercises/files/{file}", entry.name))?;
        let fault_name = entry
            .fault
            .as_ref()
            .or(entry.check.as_ref().and_then(|c| c.fault.as_ref()));
        let fault = fault_name.map(|name| Fault::from_name(name)).transpose()?;
        match entry.kind {
            Kind::Predict => ensure!(
                entry.check.is_some()
                    && !entry.answers.is_empty()
                    && entry.answers.keys().eq(entry.feedback.keys()),
                "predict exercise {} needs a check, answers and feedback for each answer",
                entry.name
            ),
            Kind::Diagnose | Kind::Probe => ensure!(
                entry.fault.is_some(),
                "exercise {} needs the fault it is about",
                entry.name
            ),
            Kind::FixC => ensure!(
                entry.module.is_some() && probe_of(&entry.name).is_some(),
                "fix-c exercise {} needs its module and exercises/checks/{}.py",
                entry.name,
                entry.name
            ),
        }
        exercises.push(Exercise {
            number: i + 1,
            name: entry.name,
            kind: entry.kind,
            lesson: entry.lesson,
            hint: entry.hint,
            fault,
            answers: entry.answers,
            feedback: entry.feedback,
            check: entry.check,
            module: entry.module,
            starter,
        });
    }
    Ok(exercises)
}

/// The exercise numbered `number`, or an error naming the valid numbers.
pub fn find(exercises: &[Exercise], number: usize) -> Result<&Exercise> {
    exercises
        .iter()
        .find(|e| e.number == number)
        .with_context(|| {
            format!(
                "there is no exercise {number}; exercises are 1 to {}",
                exercises.len()
            )
        })
}

/// Writes every starting file into `dir`. Nothing is overwritten: if any file is there
/// already, none is written, unless `resume`, which keeps the files there and writes only
/// the missing ones. The files are written in a hidden folder of their own first (removed
/// at an interrupt) and moved into place together, a new `dir` in one rename: a failed
/// write or an interrupt leaves `dir` as it was. A folder other users may change is
/// refused. Returns how many files it kept.
pub fn init(dir: &Path, exercises: &[Exercise], resume: bool) -> Result<usize> {
    refuse_shared(dir)?;
    let taken: Vec<String> = exercises
        .iter()
        .map(|exercise| exercise.file_name())
        .filter(|name| std::fs::symlink_metadata(dir.join(name)).is_ok())
        .collect();
    ensure!(
        resume || taken.is_empty(),
        "{} already has {}: nothing was written. Pick a new folder, or keep working in this \
         one with `refcount-lab exercises init {} --resume`",
        dir.display(),
        taken.join(", "),
        dir.display()
    );
    let missing: Vec<&Exercise> = exercises
        .iter()
        .filter(|exercise| !taken.contains(&exercise.file_name()))
        .collect();
    let again = format!(
        "refcount-lab exercises init {}{}",
        dir.display(),
        if resume { " --resume" } else { "" }
    );
    let write = |folder: &Path| -> Result<()> {
        for exercise in &missing {
            write_starter(&folder.join(exercise.file_name()), exercise.starter).with_context(
                || {
                    format!(
                        "cannot write {}; nothing was written (once it can be, `{again}` \
                         writes the files)",
                        dir.join(exercise.file_name()).display()
                    )
                },
            )?;
        }
        Ok(())
    };
    if dir.is_dir() {
        let scratch = ScratchDir::new_in(dir)?;
        scratch.hand_over(|scratch| {
            write(scratch)?;
            move_into(scratch, dir, &missing)
        })?;
    } else {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let scratch = ScratchDir::new_in(parent)?;
        scratch.hand_over(|scratch| {
            let made = scratch.join("exercises");
            // Others may read the files, not change them (whatever the umask).
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&made)
                .with_context(|| format!("cannot create a folder in {}", scratch.display()))?;
            write(&made)?;
            std::fs::rename(&made, dir).with_context(|| format!("cannot create {}", dir.display()))
        })?;
    }
    Ok(taken.len())
}

/// Writes a starting file that only its owner may change, whatever the umask (which may
/// take more away): refcount-lab refuses to run a file others may change.
fn write_starter(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o644;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())
}

/// Moves the starting files from `scratch` into `dir`, never over a file there; if one
/// cannot be moved, those moved before it are taken out again.
fn move_into(scratch: &Path, dir: &Path, files: &[&Exercise]) -> Result<()> {
    let mut moved = Vec::new();
    for exercise in files {
        let to = dir.join(exercise.file_name());
        let result = if std::fs::symlink_metadata(&to).is_ok() {
            Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
        } else {
            std::fs::rename(scratch.join(exercise.file_name()), &to)
        };
        if let Err(error) = result {
            for path in moved {
                let _ = std::fs::remove_file(path);
            }
            return Err(error)
                .with_context(|| format!("cannot write {}; nothing was written", to.display()));
        }
        moved.push(to);
    }
    Ok(())
}

/// Refuses a folder for the exercises that another user may change (`dir`, with the files
/// in it, or the folder it will be made in): they could change the learner's files, or add a
/// module the learner's scripts would import.
fn refuse_shared(dir: &Path) -> Result<()> {
    let (at, existing) = dir
        .ancestors()
        .map(|folder| match folder.as_os_str().is_empty() {
            true => Path::new("."),
            false => folder,
        })
        .enumerate()
        .find(|(_, folder)| folder.exists())
        .unwrap_or((0, dir));
    if let Some(link) = scratch::foreign_link(existing)? {
        bail!(
            "cannot put the exercises in {}: {link}, so one of them could choose where your \
             files go. Pick a folder only you can change, such as one in your home folder",
            dir.display()
        );
    }
    if let Some(shared) = scratch::shared_folder(existing, at == 0)? {
        bail!(
            "cannot put the exercises in {}: {shared}, so one of them could change your files \
             or add a module your scripts would import. Pick a folder only you can change, \
             such as one in your home folder",
            dir.display()
        );
    }
    Ok(())
}

/// Where an exercise stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Not yet, and what to do about it.
    NotYet(String),
}

/// Runs `script` in `dir` as a learner's script is run.
fn run(python: &Python, dir: &Path, script: &Path, faults: &[Fault]) -> Result<Run> {
    runner::run(&Job {
        python,
        script,
        args: &[],
        dir,
        faults,
        timeout: TIMEOUT,
        debug_allocator: true,
        wait_for_leftovers: true,
    })
}

/// Runs the learner's file with correct code and with `fault`.
pub fn run_both_ways(
    python: &Python,
    workdir: &Path,
    exercise: &Exercise,
    fault: Fault,
) -> Result<(Run, Run)> {
    let file = PathBuf::from(exercise.file_name());
    Ok((
        run(python, workdir, &file, &[])?,
        run(python, workdir, &file, &[fault])?,
    ))
}

/// The most an exercise file may hold: a learner's script or C file is a few kilobytes.
const FILE_CAP: u64 = 1024 * 1024;

/// Why a learner's file cannot be checked: a sentence naming it and saying what to do.
#[derive(Debug)]
pub struct Unreadable {
    /// There is no such file (a later exercise's is then just not started).
    pub missing: bool,
    pub why: String,
}

/// The learner's file of `exercise`, read the way refcount-lab reads every file it reads
/// itself (`progress::read_regular`): a regular file (not a pipe, which would hang the
/// read, nor a device such as `/dev/zero`, which never ends), not a symbolic link, of at
/// most [`FILE_CAP`] bytes. The interpreter or the compiler is given it only once it is.
pub fn learners_file(workdir: &Path, exercise: &Exercise) -> Result<Vec<u8>, Unreadable> {
    let name = exercise.file_name();
    let path = workdir.join(&name);
    let error = match crate::progress::read_regular(&path, FILE_CAP, "an exercise file") {
        Ok((contents, metadata)) => match scratch::foreign_file(&metadata) {
            None => return Ok(contents),
            Some(whose) => {
                return Err(Unreadable {
                    missing: false,
                    why: format!(
                        "{name} {whose}, and refcount-lab runs it (or compiles and loads it) as \
                         you: another user could put their code there. If the work in it is \
                         yours, make it a file of your own that only you can change: `cp {file} \
                         {file}.mine && mv {file}.mine {file} && chmod go-w {file}` \
                         (refcount-lab writes the files that way whatever your umask)",
                        file = crate::printable::path(&path)
                    ),
                })
            }
        },
        Err(error) => error,
    };
    let again = format!(
        "`refcount-lab exercises init {} --resume` writes its starting file again",
        workdir.display()
    );
    let plain = format!(
        "refcount-lab reads an exercise file only as a plain file of at most {} MiB; put \
         your work there as one (or remove it: {again})",
        FILE_CAP >> 20
    );
    let missing = error.kind() == std::io::ErrorKind::NotFound;
    let why = match error.raw_os_error() {
        _ if missing => format!("{name} is missing from {}: {again}", workdir.display()),
        Some(libc::EISDIR) => format!("{name} is a folder, not a file: {plain}"),
        // One of read_regular's own reasons: "a symbolic link, not followed", …
        None => format!("{name} is {error}: {plain}"),
        Some(_) => format!("cannot read {}: {error}", path.display()),
    };
    Err(Unreadable { missing, why })
}

/// Checks one exercise in the learner's folder; a file that cannot be read is not done
/// yet, and the verdict says why.
pub fn check(python: &Python, exercise: &Exercise, workdir: &Path) -> Result<Verdict> {
    match learners_file(workdir, exercise) {
        Ok(contents) => check_contents(python, exercise, workdir, &contents),
        Err(unreadable) => Ok(Verdict::NotYet(unreadable.why)),
    }
}

/// `check`, with the file's `contents` read.
fn check_contents(
    python: &Python,
    exercise: &Exercise,
    workdir: &Path,
    contents: &[u8],
) -> Result<Verdict> {
    let answers = read_answers(&String::from_utf8_lossy(contents));
    match exercise.kind {
        Kind::Predict => check_predictions(python, exercise, &answers),
        Kind::Diagnose => check_diagnosis(python, exercise, workdir, answers.get("FAULT")),
        Kind::Probe => {
            let fault = exercise.fault.expect("probe exercises have a fault");
            check_probe(python, exercise, workdir, fault, "")
        }
        Kind::FixC => check_c(python, exercise, workdir),
    }
}

/// The probe script `exercises/checks/NAME.py` of a fix-c exercise.
fn probe_of(name: &str) -> Option<&'static str> {
    let file = format!("{name}.py");
    CHECKS
        .iter()
        .find(|(found, _)| *found == file)
        .map(|(_, text)| *text)
}

/// The probe a fix-c exercise runs against the learner's module.
pub fn probe_source(exercise: &Exercise) -> &'static str {
    probe_of(&exercise.name).unwrap_or_default()
}

/// What became of a fix-c exercise's C file.
pub enum CAttempt {
    /// The compiler's messages.
    Rejected(String),
    /// The probe's run against the compiled module.
    Ran(Box<Run>),
}

/// Compiles the learner's C file and runs the exercise's probe against it, in a scratch
/// folder that holds both (the probe imports the module from its own folder).
pub fn try_c(python: &Python, exercise: &Exercise, workdir: &Path) -> Result<CAttempt> {
    let module = exercise
        .module
        .as_deref()
        .expect("fix-c exercises name their module");
    let probe = probe_of(&exercise.name).expect("checked by catalogue()");
    let probe_file = format!("{}.py", exercise.name);
    let scratch = ScratchDir::with_file(&probe_file, probe)?;
    // Compiled only once it is a plain file of sane size.
    learners_file(workdir, exercise).map_err(|unreadable| anyhow!(unreadable.why))?;
    let source = workdir.join(exercise.file_name());
    Ok(
        match cbuild::build(python, &source, module, scratch.path())? {
            Built::Rejected(messages) => CAttempt::Rejected(messages),
            Built::Compiled => CAttempt::Ran(Box::new(run(
                python,
                scratch.path(),
                Path::new(&probe_file),
                &[],
            )?)),
        },
    )
}

/// Done when the module compiles and the probe ends `ok`: no crash, no leak, no problem
/// found.
fn check_c(python: &Python, exercise: &Exercise, workdir: &Path) -> Result<Verdict> {
    Ok(c_verdict(exercise, &try_c(python, exercise, workdir)?))
}

/// The verdict on a fix-c attempt.
pub fn c_verdict(exercise: &Exercise, attempt: &CAttempt) -> Verdict {
    let number = exercise.number;
    let run = match attempt {
        CAttempt::Rejected(messages) => {
            let shown: Vec<&str> = messages.lines().take(20).collect();
            return Verdict::NotYet(format!(
                "Your C does not compile yet:\n{}",
                shown.join("\n")
            ));
        }
        CAttempt::Ran(run) => run.as_ref(),
    };
    match outcome::classify(run) {
        Outcome::Ok => Verdict::Done,
        Outcome::Crashed { report, .. } => {
            let probe = probe_of(&exercise.name).expect("checked by catalogue()");
            let mut why = "The probe crashed the interpreter with your module".to_owned();
            if let Some(line) = crash_line(&report, &exercise.name, probe) {
                why.push_str(&format!(", at this line of the probe: `{line}`"));
            }
            if let Some(said) = run
                .events()
                .filter_map(|event| match event {
                    Event::Say { text } => Some(text),
                    _ => None,
                })
                .last()
            {
                why.push_str(&format!(". It last said: {said}"));
            }
            Verdict::NotYet(format!(
                "{why}\n`refcount-lab exercise {number}` shows the whole run."
            ))
        }
        Outcome::Leaked(leaks) => Verdict::NotYet(format!(
            "Your module leaks: {}.",
            leaks
                .iter()
                .map(outcome::Leak::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Outcome::Error { report, .. } => Verdict::NotYet(format!(
            "The probe found a problem: {}",
            report
                .last()
                .map_or("it ended with an error", String::as_str)
        )),
        Outcome::Timeout {
            seconds,
            script_ended: true,
            ..
        } => Verdict::NotYet(format!(
            "The probe ended, but a process it started (from your module's code) was still \
             running after {seconds} s, and was stopped: the `stopped:` line of \
             `refcount-lab exercise {number}` names it."
        )),
        Outcome::Timeout { seconds, .. } => Verdict::NotYet(format!(
            "The probe was still running after {seconds} s; `refcount-lab exercise {number}` \
             shows where it was."
        )),
    }
}

/// The probe's source line a crash report points at (`File ".../NAME.py", line N`).
fn crash_line<'a>(report: &[String], name: &str, probe: &'a str) -> Option<&'a str> {
    let marker = format!("{name}.py\", line ");
    let number: usize = report.iter().find_map(|line| {
        let after = &line[line.find(&marker)? + marker.len()..];
        after.split_whitespace().next()?.parse().ok()
    })?;
    probe.lines().nth(number.checked_sub(1)?).map(str::trim)
}

/// How many other faults a diagnose probe may also end badly under and still single the
/// hidden fault out: faults near each other in the code can share a symptom (the reference
/// solution of exercise 12 also trips two), and a probe that calls every method trips ten.
const MAX_ALSO_SHOWN: usize = 3;

/// A diagnosis needs evidence first: the probe ends `ok` on correct code, not `ok` with the
/// hidden fault, and `ok` under nearly every other fault. Then the name must be right.
/// Neither the lesson nor any candidate fault is named before the exercise is solved.
fn check_diagnosis(
    python: &Python,
    exercise: &Exercise,
    workdir: &Path,
    named: Option<&Answer>,
) -> Result<Verdict> {
    let fault = exercise.fault.expect("diagnose exercises have a fault");
    let named = match named {
        Some(Answer::Text(name)) => Some(name.as_str()),
        _ => None,
    };
    if let Some(name) = named.filter(|name| Fault::from_name(name).is_err()) {
        return Ok(Verdict::NotYet(format!(
            "FAULT = {name:?}: there is no fault by that name; `refcount-lab faults` lists them"
        )));
    }
    if let Verdict::NotYet(why) = check_probe(python, exercise, workdir, fault, "")? {
        return Ok(Verdict::NotYet(why));
    }
    // The faults of HashTable, which probes use: SafeHashTable's own change nothing there.
    let others: Vec<Fault> = faults::CATALOGUE
        .iter()
        .filter(|info| info.safe != InSafePyO3::SafeCode)
        .map(|info| info.fault)
        .filter(|other| *other != fault && !UNTARGETED_FAULTS.contains(other))
        .collect();
    let also_shown = others_shown(python, workdir, exercise, &others)?;
    if also_shown > MAX_ALSO_SHOWN {
        return Ok(Verdict::NotYet(format!(
            "Your probe shows the hidden fault, but it also ends badly under {also_shown} of \
             the {} other faults it is compared with: it shows that something is wrong, not \
             what. Narrow it down to the one operation you suspect.",
            others.len()
        )));
    }
    Ok(match named {
        None => Verdict::NotYet(
            "Your probe singles the fault out. Now name it: set FAULT to a name from \
             `refcount-lab faults`."
                .into(),
        ),
        Some(name) if name != fault.name() => Verdict::NotYet(format!(
            "FAULT = {name:?} is not the fault at work here. Your probe singles the hidden \
             one out: what does it do, and which fault breaks that?"
        )),
        Some(_) => Verdict::Done,
    })
}

/// Under how many of `faults` the learner's file ends other than `ok`.
///
/// One run at a time: the runner reaps whatever child of this process ends, so two runs at
/// once would take each other's exit status.
fn others_shown(
    python: &Python,
    workdir: &Path,
    exercise: &Exercise,
    faults: &[Fault],
) -> Result<usize> {
    let file = PathBuf::from(exercise.file_name());
    let mut shown = 0;
    for fault in faults {
        let run = run(python, workdir, &file, std::slice::from_ref(fault))?;
        shown += usize::from(outcome::classify(&run) != Outcome::Ok);
    }
    Ok(shown)
}

/// The probe must end `ok` on correct code and otherwise with the fault on.
fn check_probe(
    python: &Python,
    exercise: &Exercise,
    workdir: &Path,
    fault: Fault,
    prefix: &str,
) -> Result<Verdict> {
    let (correct, faulty_run) = run_both_ways(python, workdir, exercise, fault)?;
    let (correct, faulty) = (outcome::classify(&correct), outcome::classify(&faulty_run));
    let problem = if correct != Outcome::Ok {
        format!(
            "on correct code your script ends {}, not ok; `refcount-lab exercise {}` shows why",
            correct.kind(),
            exercise.number
        )
    } else if faulty == Outcome::Ok {
        // Whether the faulty code ran at all is the learner's first clue.
        match faulty_run.fault_ran(fault) {
            Some(0) => "with the fault on, your script still ends ok: it never reaches the \
                        faulty code"
                .to_owned(),
            Some(1) => "with the fault on, your script still ends ok: the faulty code ran \
                        once, and its damage went unseen"
                .to_owned(),
            Some(n) => format!(
                "with the fault on, your script still ends ok: the faulty code ran {n} times, \
                 and its damage went unseen"
            ),
            None => "with the fault on, your script still ends ok".to_owned(),
        }
    } else {
        return Ok(Verdict::Done);
    };
    Ok(Verdict::NotYet(match prefix {
        "" => capitalised(&problem),
        prefix => format!("{prefix}{problem}"),
    }))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A learner's answer, as written in their file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Number(i64),
    Text(String),
    /// Still `...`.
    Missing,
    /// Something other than a plain number or a quoted word.
    Unreadable(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Number(n) => write!(f, "{n}"),
            Answer::Text(text) => write!(f, "{text:?}"),
            Answer::Missing => write!(f, "..."),
            Answer::Unreadable(text) => write!(f, "{text}"),
        }
    }
}

/// The `NAME = value` lines of a learner's file, for UPPERCASE names (read, not run).
pub fn read_answers(source: &str) -> BTreeMap<String, Answer> {
    let mut answers = BTreeMap::new();
    for line in source.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            continue;
        }
        let value = value.split('#').next().unwrap_or("").trim();
        let quoted = value.len() >= 2
            && (value.starts_with('"') && value.ends_with('"')
                || value.starts_with('\'') && value.ends_with('\''));
        let answer = if value == "..." {
            Answer::Missing
        } else if let Ok(number) = value.parse() {
            Answer::Number(number)
        } else if quoted {
            let text = value[1..value.len() - 1].trim();
            // "8" means 8: a number in quotes is still the number.
            text.parse()
                .map(Answer::Number)
                .unwrap_or_else(|_| Answer::Text(text.to_owned()))
        } else {
            Answer::Unreadable(value.to_owned())
        };
        answers.insert(name.to_owned(), answer);
    }
    answers
}

/// Runs the predict exercise's check and compares each answer with what the run shows.
fn check_predictions(
    python: &Python,
    exercise: &Exercise,
    answers: &BTreeMap<String, Answer>,
) -> Result<Verdict> {
    for name in exercise.answers.keys() {
        match answers.get(name) {
            None => {
                return Ok(Verdict::NotYet(format!(
                    "{name} is gone from your file; put `{name} = ...` back"
                )))
            }
            Some(Answer::Missing) => {
                return Ok(Verdict::NotYet(format!(
                    "{name} is still `...`: replace it with your prediction"
                )))
            }
            Some(Answer::Unreadable(value)) => {
                return Ok(Verdict::NotYet(format!(
                    "{name} = {value}: write a plain number (2) or a quoted word (\"ok\")"
                )))
            }
            Some(_) => {}
        }
    }
    let run = run_check(python, exercise)?;
    let mut wrong = Vec::new();
    for (name, source) in &exercise.answers {
        let actual = observe(&run, source).with_context(|| {
            format!(
                "exercise {}: the check run does not show {source}",
                exercise.name
            )
        })?;
        let given = &answers[name];
        if *given == actual {
            continue;
        }
        let is_outcome_word =
            matches!(given, Answer::Text(word) if OUTCOME_WORDS.contains(&word.as_str()));
        let why = if source == "outcome" && !is_outcome_word {
            let words = OUTCOME_WORDS.map(|word| format!("\"{word}\""));
            format!("not an outcome: write one of {}.", words.join(", "))
        } else if matches!((given, &actual), (Answer::Text(_), Answer::Number(_))) {
            "not a number: write one, such as 2.".to_owned()
        } else {
            format!("not what happens. {}", exercise.feedback[name])
        };
        wrong.push(format!("{name} = {given}: {why}"));
    }
    Ok(if wrong.is_empty() {
        Verdict::Done
    } else {
        Verdict::NotYet(wrong.join("\n"))
    })
}

fn run_check(python: &Python, exercise: &Exercise) -> Result<Run> {
    let check = exercise
        .check
        .as_ref()
        .expect("predict exercises have a check");
    let faults: Vec<Fault> = check
        .fault
        .iter()
        .map(|name| Fault::from_name(name))
        .collect::<Result<_, _>>()?;
    if let Some(number) = check.lesson {
        let catalogue = lessons::load(None)?;
        let lesson: &Lesson = lessons::find(&catalogue, number)?;
        let demo = lesson.demo_on_disk()?;
        return run(python, &demo.dir, &demo.script, &faults);
    }
    let script = check
        .script
        .as_deref()
        .context("a check names a lesson or a script")?;
    let source = CHECKS
        .iter()
        .find(|(name, _)| *name == script)
        .map(|(_, text)| *text)
        .with_context(|| format!("no exercises/checks/{script}"))?;
    let scratch = ScratchDir::with_file(script, source)?;
    run(python, scratch.path(), Path::new(script), &faults)
}

/// The words an outcome prediction may use, as `Outcome::kind` spells them.
const OUTCOME_WORDS: [&str; 5] = ["ok", "leaked", "crashed", "error", "timeout"];

/// The value a run shows at `source` (see `Entry::answers`).
fn observe(run: &Run, source: &str) -> Option<Answer> {
    if source == "outcome" {
        return Some(Answer::Text(outcome::classify(run).kind().to_owned()));
    }
    if let Some(label) = source.strip_prefix("refcount:") {
        return run.events().find_map(|event| match event {
            Event::Refcount { label: l, rc, .. } if l == label => Some(Answer::Number(*rc)),
            _ => None,
        });
    }
    if let Some(object) = source.strip_prefix("delta:") {
        let baseline = run.events().find_map(|event| match event {
            Event::Watch { obj, rc, .. } if obj == object => Some(*rc),
            _ => None,
        })?;
        return run.events().find_map(|event| match event {
            Event::Final {
                obj, rc: Some(rc), ..
            } if obj == object => Some(Answer::Number(rc - baseline)),
            _ => None,
        });
    }
    let key = source.strip_prefix("stdout:")?;
    let values: serde_json::Value = serde_json::from_str(run.stdout.text.trim()).ok()?;
    match &values[key] {
        serde_json::Value::Number(n) => n.as_i64().map(Answer::Number),
        serde_json::Value::String(s) => Some(Answer::Text(s.clone())),
        _ => None,
    }
}

/// Checks every exercise in order and stops at the first one not done.
///
/// `passed` holds, per exercise, the stamp (`stamp`) of the file that last passed: an
/// exercise whose file and interpreter are unchanged since is done without running its
/// checks again (a diagnose check alone runs the probe under every fault). Returns the
/// number done, the first one not done with why, and the stamps of those done.
pub fn verify_all(
    python: &Python,
    exercises: &[Exercise],
    workdir: &Path,
    passed: &BTreeMap<String, String>,
) -> Result<Verified> {
    let mut stamps = BTreeMap::new();
    for (done, exercise) in exercises.iter().enumerate() {
        let (verdict, stamped) = verdict_of(python, exercise, workdir, passed, false)?
            .expect("only untouched files are skipped");
        match verdict {
            Verdict::Done => {
                stamps.extend(stamped.map(|stamp| (exercise.name.clone(), stamp)));
            }
            Verdict::NotYet(why) => {
                // Later exercises count too, for a class that takes them out of order: one
                // that passed before and is unchanged is done; one the learner has changed
                // from its starting file is checked now.
                let mut also_done = Vec::new();
                let mut started = Vec::new();
                let mut unreadable = Vec::new();
                for later in &exercises[done + 1..] {
                    match verdict_of(python, later, workdir, passed, true)? {
                        Some((Verdict::Done, stamped)) => {
                            stamps.extend(stamped.map(|stamp| (later.name.clone(), stamp)));
                            also_done.push(later.name.clone());
                        }
                        // No stamp: the file could not be read.
                        Some((Verdict::NotYet(why), None)) => unreadable.push(why),
                        Some((Verdict::NotYet(_), Some(_))) => started.push(later.number),
                        None => {}
                    }
                }
                return Ok(Verified {
                    done,
                    stuck: Some((exercise.number, why)),
                    also_done,
                    started,
                    unreadable,
                    passed: stamps,
                });
            }
        }
    }
    Ok(Verified {
        done: exercises.len(),
        stuck: None,
        also_done: Vec::new(),
        started: Vec::new(),
        unreadable: Vec::new(),
        passed: stamps,
    })
}

/// `exercise`'s verdict and the stamp of its file (`None` if it cannot be read, when the
/// verdict says why). Done without a check when the stamp is the one that passed; with
/// `skip_untouched`, `None` for a file that is missing or still as it started.
fn verdict_of(
    python: &Python,
    exercise: &Exercise,
    workdir: &Path,
    passed: &BTreeMap<String, String>,
    skip_untouched: bool,
) -> Result<Option<(Verdict, Option<String>)>> {
    let contents = match learners_file(workdir, exercise) {
        Ok(contents) => contents,
        Err(unreadable) if skip_untouched && unreadable.missing => return Ok(None),
        Err(unreadable) => return Ok(Some((Verdict::NotYet(unreadable.why), None))),
    };
    let stamped = stamp(python, &contents);
    if passed.get(&exercise.name) == Some(&stamped) {
        return Ok(Some((Verdict::Done, Some(stamped))));
    }
    if skip_untouched && contents == exercise.starter.as_bytes() {
        return Ok(None);
    }
    let verdict = check_contents(python, exercise, workdir, &contents)?;
    Ok(Some((verdict, Some(stamped))))
}

/// Remembers `verdict` on one exercise, as `exercise N` gives it after its run: a pass goes
/// into `passed` (see `verify_all`) so that `verify` counts it while the file stays
/// unchanged.
pub fn remember(
    python: &Python,
    exercise: &Exercise,
    workdir: &Path,
    verdict: &Verdict,
    passed: &mut BTreeMap<String, String>,
) {
    let contents = learners_file(workdir, exercise).ok();
    match (verdict, contents.map(|contents| stamp(python, &contents))) {
        (Verdict::Done, Some(stamp)) => {
            passed.insert(exercise.name.clone(), stamp);
        }
        _ => {
            passed.remove(&exercise.name);
        }
    }
}

/// Where `verify` got to.
pub struct Verified {
    /// How many exercises, from the first, are done.
    pub done: usize,
    /// The first exercise not done, and why.
    pub stuck: Option<(usize, String)>,
    /// Exercises after it that pass (taken out of order).
    pub also_done: Vec<String>,
    /// Numbers of the exercises after it that the learner changed and that do not pass yet.
    pub started: Vec<usize>,
    /// Why files of exercises after it cannot be read (`learners_file`), one each.
    pub unreadable: Vec<String>,
    /// The stamps of the exercises done (see `verify_all`).
    pub passed: BTreeMap<String, String>,
}

/// What a check's verdict depends on: the learner's file (`contents`), the interpreter, and
/// this build of refcount-lab (its checks and its module).
fn stamp(python: &Python, contents: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    let parts: [&[u8]; 4] = [
        contents,
        python.executable.as_os_str().as_encoded_bytes(),
        python.full_version.as_bytes(),
        env!("REFCOUNT_LAB_NATIVE_FINGERPRINT").as_bytes(),
    ];
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}-{}", env!("CARGO_PKG_VERSION"))
}

/// The working folder, or an error saying how to make one.
pub fn workdir(saved: Option<&Path>) -> Result<PathBuf> {
    let Some(dir) = saved else {
        bail!("no exercise folder yet: start with `refcount-lab exercises init DIR`")
    };
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {
            refuse_foreign(dir, &metadata)?;
            Ok(dir.to_owned())
        }
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| {
                format!(
                    "cannot open the exercise folder {} (once it can, it is used again; or \
                     `refcount-lab exercises init DIR` makes a new one)",
                    dir.display()
                )
            })
        }
        _ => bail!(
            "the exercise folder {} is gone; `refcount-lab exercises init DIR` makes a new one",
            dir.display()
        ),
    }
}

/// Refuses an exercise folder (as the progress file names it) that is not the user's own,
/// or that another user may change, it or a folder above it (`scratch::shared_folder`):
/// its scripts run, and its C compiles, as the user.
fn refuse_foreign(dir: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    const ADVICE: &str = "`refcount-lab exercises init DIR` makes a new one in a folder only \
                          you can change (copy your work over), or if the folder is yours, \
                          take write access from the others (chmod go-w)";
    if let Some(shared) = scratch::shared_folder(dir, true)? {
        bail!(
            "refusing the exercise folder {}: {shared}, so one of them could change your files \
             or add a module your scripts would import, and refcount-lab runs them as you. \
             {ADVICE}",
            dir.display()
        );
    }
    // SAFETY: getuid cannot fail and has no preconditions.
    let me = unsafe { libc::getuid() };
    if metadata.uid() != me {
        bail!(
            "refusing the exercise folder {}: it is not yours (owner uid {}), and refcount-lab \
             would run its scripts as you. {ADVICE}",
            dir.display(),
            metadata.uid()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_complete_and_covers_every_kind() {
        let exercises = catalogue().unwrap();
        assert!(exercises.len() >= 12);
        for kind in [Kind::Predict, Kind::Diagnose, Kind::Probe] {
            assert!(exercises.iter().any(|e| e.kind == kind), "{kind:?}");
        }
        for lesson in 1..=5 {
            assert!(
                exercises.iter().any(|e| e.lesson == lesson),
                "lesson {lesson}"
            );
        }
    }

    #[test]
    fn answers_are_read_not_run() {
        let answers = read_answers(
            "\"\"\"Doc.\"\"\"\nA = 2  # two\nB = \"crashed\"\nC = ...\nD = 1 + 1\nlower = 3\n",
        );
        assert_eq!(answers["A"], Answer::Number(2));
        assert_eq!(answers["B"], Answer::Text("crashed".into()));
        assert_eq!(answers["C"], Answer::Missing);
        assert_eq!(answers["D"], Answer::Unreadable("1 + 1".into()));
        assert_eq!(read_answers("E = \"8\"\n")["E"], Answer::Number(8));
        assert!(!answers.contains_key("lower"));
    }
}
