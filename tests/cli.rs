//! The command line as a learner meets it: every lesson's real runs, bad input, and learner
//! scripts that misbehave. Snapshots hold the real output of real child runs.

use insta_cmd::{assert_cmd_snapshot, get_cargo_bin};
use std::path::Path;
use std::process::Command;

/// Fault-site line numbers move whenever `pytype.rs` is edited; the lines themselves are
/// what the snapshots pin (and `sites.rs` tests that the numbers point at them).
///
/// A pointer read from freed memory raises SIGSEGV on some interpreters and SIGBUS on
/// others, for the same bug and the same address: the debug allocator fills freed memory
/// with 0xDD bytes, so the pointer is 0xdddddddddddddddd, which x86-64 refuses. What differs
/// is the crash site's machine code: if the compiler that built the interpreter picked rbp or
/// rsp as the register to read through, the CPU raises a stack-segment fault, which Linux
/// reports as SIGBUS; any other register gives a general-protection fault, SIGSEGV (lesson
/// 11). The snapshots say "one of the two" (and `tests/determinism.rs` pins the exact signal
/// run after run on one interpreter).
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"(correct|faulty), line \d+:", "$1, line [N]:");
    settings.add_filter(
        r"crashed: SIG(SEGV|BUS) \([a-z ]+\)",
        "crashed: [SIGSEGV or SIGBUS]",
    );
    settings.add_filter(
        r"Fatal Python error: (Segmentation fault|Bus error)",
        "Fatal Python error: [Segmentation fault or Bus error]",
    );
    // The same snapshots hold for every interpreter; `header_names_the_interpreter` checks
    // this line against the interpreter itself.
    // A leftover interpreter is named after its executable (python3, python3.14, …).
    settings.add_filter(r"stopped:  python[0-9.d]*", "stopped:  python");
    settings.add_filter(
        r"in CPython \S+, (release|debug) build",
        "in CPython [version], [release or debug] build",
    );
    settings
}

/// `refcount-lab ARGS…`, plain (`--color=never` on the commands that colour their report),
/// with a timeout no busy machine reaches unless the test sets its own.
fn lab(args: &[&str]) -> Command {
    let mut command = Command::new(get_cargo_bin("refcount-lab"));
    command.args(args).env_remove("NO_COLOR");
    if matches!(args.first(), Some(&("lesson" | "run" | "exercise"))) {
        command.arg("--color=never");
    }
    if matches!(args.first(), Some(&("lesson" | "run"))) && !args.contains(&"--timeout") {
        command.args(["--timeout", "3600"]);
    }
    command
}

/// `refcount-lab run SCRIPT` for a script in `fixtures/scripts/`, run from there.
fn run_fixture(script: &str, extra: &[&str]) -> Command {
    let mut args = vec!["run", script];
    args.extend_from_slice(extra);
    let mut command = lab(&args);
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scripts"));
    command
}

/// What `run_fixture` prints on stdout.
fn fixture_stdout(script: &str, extra: &[&str]) -> String {
    let output = run_fixture(script, extra)
        .output()
        .expect("refcount-lab runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The chosen interpreter's `(major, minor)`.
fn python_version() -> (u32, u32) {
    let output = lab(&["python", "-c", "import sys; print(*sys.version_info[:2])"])
        .output()
        .expect("refcount-lab python runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().map(|n| n.parse().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// Snapshot settings for lesson `number`, with a suffix where CPython versions differ (each
/// lesson says why in its text): lesson 2's call-depth counts (a call holds its argument
/// twice on 3.10, and on 3.14+ may borrow it), lesson 4's absolute `sys.getrefcount(hash)`
/// (start-up objects hold `hash` on 3.10 and 3.11), lesson 12's faulty run (None is mortal
/// before 3.12, and each version words its fatal error), lesson 14's chains (str hashes
/// changed from SipHash-2-4 to SipHash-1-3 in 3.11) and lesson 15 (borrowed stack
/// references, 3.14+).
fn lesson_settings(number: u32) -> insta::Settings {
    let mut settings = settings();
    let (major, minor) = python_version();
    match number {
        2 | 4 | 14 if minor < 11 => settings.set_snapshot_suffix("py310"),
        2 | 15 if minor >= 14 => settings.set_snapshot_suffix("py314+"),
        4 | 12 if minor < 12 => settings.set_snapshot_suffix(format!("py{major}.{minor}")),
        _ => {}
    }
    // Lesson 18 makes as many tables as the builtins namespace has references: a number
    // that differs from one interpreter (and installation) to the next.
    settings.add_filter(
        r"#(\d+) to #\d+: \d+ made, each freed at once",
        "#$1 to #[N]: [N] made, each freed at once",
    );
    settings
}

fn lesson_count() -> u32 {
    let lessons = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    std::fs::read_dir(lessons).unwrap().count() as u32
}

#[test]
fn every_lesson_both_variants() {
    for number in 1..=lesson_count() {
        let name = format!("lesson_{number:02}");
        let mut command = lab(&["lesson", &number.to_string()]);
        lesson_settings(number).bind(|| assert_cmd_snapshot!(name, command));
    }
}

#[test]
fn one_variant_at_a_time() {
    lesson_settings(4).bind(|| assert_cmd_snapshot!(lab(&["lesson", "4", "--variant", "faulty"])));
}

#[test]
fn another_fault_on_a_lesson_demo() {
    lesson_settings(2)
        .bind(|| assert_cmd_snapshot!(lab(&["lesson", "2", "--fault", "set-missing-incref"])));
}

#[test]
fn the_rules_handout_as_text_and_as_markdown() {
    settings().bind(|| {
        assert_cmd_snapshot!(lab(&["rules", "--color=never"]));
        assert_cmd_snapshot!(lab(&["rules", "--markdown"]));
    });
}

/// The handout is one printed page: at most 60 lines of at most 80 columns, as `rules`
/// prints it when its output is not a terminal. In Markdown, Python's dunder names are
/// code (unmarked, `__traverse__` would read as a bold "traverse").
#[test]
fn the_rules_handout_fits_one_page() {
    let output = lab(&["rules", "--color=never"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 60, "{} lines:\n{text}", lines.len());
    for line in &lines {
        assert!(line.chars().count() <= 80, "over 80 columns: {line}");
    }
    let output = lab(&["rules", "--markdown"]).output().unwrap();
    let markdown = String::from_utf8(output.stdout).unwrap();
    assert!(markdown.contains("`__traverse__`"), "{markdown}");
    let outside_code: String = markdown.split('`').step_by(2).collect();
    assert!(!outside_code.contains("__"), "{outside_code}");
}

#[test]
fn list_and_faults() {
    settings().bind(|| assert_cmd_snapshot!(lab(&["list"])));
    settings().bind(|| assert_cmd_snapshot!(lab(&["faults"])));
}

#[test]
fn unknown_lesson_lists_the_valid_ones() {
    settings().bind(|| assert_cmd_snapshot!(lab(&["lesson", "99"])));
}

#[test]
fn unknown_fault_lists_the_valid_ones() {
    settings().bind(|| assert_cmd_snapshot!(lab(&["lesson", "3", "--fault", "forgot-everything"])));
}

/// Lesson 19 shows the first compiler message whole and the others by their first line;
/// `--all-messages` shows every one whole (each from `tests/compile_fail/`, where trybuild
/// checks it against the real compiler), and is refused by lessons without messages.
#[test]
fn compiler_messages_one_whole_or_all_of_them() {
    let cases: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile_fail"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".stderr").map(str::to_owned))
            .collect();
    assert!(cases.len() >= 7, "{cases:?}");
    let locations = |args: &[&str]| {
        let output = lab(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        cases
            .iter()
            .filter(|case| text.contains(&format!("--> tests/compile_fail/{case}.rs:")))
            .count()
    };
    assert_eq!(locations(&["lesson", "19", "--variant", "correct"]), 1);
    assert_eq!(
        locations(&["lesson", "19", "--variant", "correct", "--all-messages"]),
        cases.len()
    );
    let refused = lab(&["lesson", "3", "--all-messages"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("--all-messages is for the lessons that do: 19"),
        "{message}"
    );
}

#[test]
fn faulty_variant_of_a_correct_code_lesson_is_refused() {
    settings().bind(|| assert_cmd_snapshot!(lab(&["lesson", "1", "--variant", "faulty"])));
}

#[test]
fn missing_script_is_refused() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("no_such_script.py", &[])));
}

#[test]
fn a_watched_object_still_held_by_globals_is_not_a_leak() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("watched_key_held_by_a_global.py", &[])));
}

#[test]
fn script_that_runs_clean() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("clean.py", &[])));
}

#[test]
fn script_that_raises() {
    // Tracebacks underline the failing expression on some versions (3.11+) and not others.
    let mut settings = settings();
    settings.add_filter(r"\n *[~^]+\n", "\n");
    settings.bind(|| assert_cmd_snapshot!(run_fixture("raises.py", &[])));
}

#[test]
fn script_that_loops_forever() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("loops_forever.py", &["--timeout", "1"])));
}

#[test]
fn script_that_prints_100_mb() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("floods_stdout.py", &[])));
}

#[test]
fn script_that_floods_the_trace() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("floods_trace.py", &[])));
}

#[test]
fn script_that_writes_invalid_utf8() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("invalid_utf8.py", &[])));
}

#[test]
fn script_that_calls_os_exit() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("os_exit.py", &[])));
}

#[test]
fn script_that_segfaults_without_a_fault() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("segfaults.py", &[])));
}

#[test]
fn script_that_leaves_a_process_holding_the_pipes() {
    let started = std::time::Instant::now();
    settings()
        .bind(|| assert_cmd_snapshot!(run_fixture("leaves_a_sleeper.py", &["--timeout", "30"])));
    // The sleeper would hold stdout for an hour; the run waits only up to its timeout. (A
    // bound no busy machine comes near, far below the sleeper's hour.)
    assert!(
        started.elapsed().as_secs() < 600,
        "the parent waited for the sleeper"
    );
}

/// Lines a script writes to the trace pipe itself carry no valid signature: shown as
/// forged, counted for nothing, and unable to swallow or stop the real trace.
#[test]
fn forged_trace_lines_count_for_nothing() {
    for script in [
        "forges_done.py",
        "forges_a_free.py",
        "forges_a_baseline.py",
        "jams_the_trace.py",
    ] {
        settings().bind(|| assert_cmd_snapshot!(script, run_fixture(script, &[])));
    }
}

/// Output a learner should see, whole or summed up: one very long line is cut with its
/// length said, and stderr is shown for a run that ends well; signals have their names.
#[test]
fn long_lines_stderr_and_signal_names() {
    for script in ["one_long_line.py", "killed_by_sigterm.py"] {
        settings().bind(|| assert_cmd_snapshot!(script, run_fixture(script, &[])));
    }
}

/// A 64 KiB `say` is cut in the report, which says how much, and wraps to the width.
#[test]
fn a_very_long_trace_line_is_cut_and_wrapped() {
    let output = run_fixture("says_64_kib.py", &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let unwrapped = stdout.replace("\n            ", " ");
    assert!(unwrapped.contains("x… (64536 more characters)"), "{stdout}");
    let widest = stdout.lines().map(|line| line.chars().count()).max();
    assert!(
        widest <= Some(80),
        "a line of {widest:?} characters:\n{stdout}"
    );
}

/// What a script wrote to stderr itself is shown when it crashes or leaves through
/// `os._exit`, above the outcome (which sums up the interpreter's crash report).
#[test]
fn a_scripts_own_stderr_is_shown_when_it_crashes_or_leaves() {
    for script in [
        "writes_stderr_then_crashes.py",
        "writes_stderr_then_leaves.py",
    ] {
        settings().bind(|| assert_cmd_snapshot!(script, run_fixture(script, &[])));
    }
}

/// Options are where they are used; a zero timeout is refused; completions and the
/// manual page are generated.
#[test]
fn command_line_conventions() {
    let refused = |args: &[&str]| {
        let output = lab(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(refused(&["run", "x.py", "--timeout", "0"]).contains("0 is not in 1.."));
    assert!(refused(&["faults", "--lessons-dir", "x"]).contains("unexpected argument"));
    assert!(refused(&["hint", "1", "--python", "python3"]).contains("unexpected argument"));
    // Before the command too, as uv and ruff take them; refused where nothing uses them.
    assert!(refused(&["--python", "python3", "faults"]).contains("`faults` does not use --python"));
    assert!(refused(&["--color", "always", "list"]).contains("`list` does not use --color"));
    let missing = "/nonexistent/python3";
    assert!(refused(&["--python", missing, "lesson", "1"]).contains(missing));
    let own_wins = lab(&["--python", missing, "lesson", "1", "--python", "python3"]).output();
    assert!(own_wins.unwrap().status.success());
    let generated = |args: &[&str], needle: &str| {
        let output = lab(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(needle), "{args:?}: {needle} not in {text}");
    };
    generated(&["completions", "bash"], "refcount-lab");
    generated(&["completions", "zsh"], "#compdef refcount-lab");
    generated(&["man"], ".TH refcount-lab");
}

/// Daemon threads alive at shutdown keep what they reach: said, and not counted as a leak.
#[test]
fn daemon_threads_at_exit_are_explained() {
    settings().bind(|| assert_cmd_snapshot!(run_fixture("daemon_threads.py", &[])));
}

/// A daemon thread hides no leak: a table nothing refers to at exit (a cycle the collector
/// cannot see) is still a leak; the ones a global and the thread's frame hold are not.
#[test]
fn a_daemon_thread_does_not_hide_a_table_nothing_refers_to() {
    let mut settings = settings();
    // How often the collector traversed the tables by the end depends on what the version
    // had imported before the threads were read at exit (`dis`, for their stacks).
    settings.add_filter(r"no-traverse ran \d+ times", "no-traverse ran [N] times");
    settings.bind(|| {
        assert_cmd_snapshot!(run_fixture(
            "daemon_thread_beside_a_leak.py",
            &["--fault", "no-traverse"]
        ))
    });
}

/// Only what a running thread can reach is excused: a global table of a script whose
/// daemon thread runs another module's code is cleared at shutdown like any other, and a
/// table it leaves unfreed is a leak. A script cannot claim such a thread in lab's words.
#[test]
fn a_daemon_thread_excuses_only_what_it_can_reach() {
    let leak = fixture_stdout("leaks_beside_a_heartbeat.py", &["--fault", "no-traverse"]);
    assert!(
        leak.contains("outcome:  leaked\n    HashTable#1 was never freed"),
        "{leak}"
    );
    let kept = fixture_stdout(
        "keeps_its_module_beside_a_daemon.py",
        &["--fault", "no-traverse"],
    );
    assert!(
        kept.contains("outcome:  leaked\n    HashTable#1 was never freed"),
        "{kept}"
    );
    let forged = fixture_stdout("forges_threads.py", &["--fault", "no-traverse"]);
    assert!(
        forged.contains("outcome:  error") && forged.contains("no other thread is running"),
        "{forged}"
    );
}

/// A table a blocked daemon thread's value stack holds (an argument being gathered for a
/// call that blocks) is not explained: refcount-lab reads no value stack, whose slots may
/// already have been released. Over-counted by C code, it reads leaked.
#[test]
fn a_table_held_on_a_blocked_threads_stack_and_over_counted_is_a_leak() {
    let stdout = fixture_stdout(
        "leaks_a_table_held_on_a_blocked_stack.py",
        &["--fault", "error-path-leak"],
    );
    assert!(
        stdout.contains("outcome:  leaked\n    HashTable#1 was never freed"),
        "{stdout}"
    );
}

/// A running thread excuses no table C code over-counted, however the count is laid out:
/// a running generator's variable (which the generator also shows the collector), a running
/// coroutine's variable, an argument a closure captures (a cell), a list only the leaked
/// reference keeps, an argument a callee only borrows (3.14+), a class body's inlined
/// comprehension (3.12), a suspended generator's variable its stack borrows too (3.14+).
/// The correct table a running generator holds is excused, and with the
/// fault off the run is clean.
#[test]
fn a_running_thread_excuses_no_over_counted_table() {
    let fixture = "hides_leaks_behind_running_threads.py";
    let leaked = fixture_stdout(fixture, &["--fault", "error-path-leak"]);
    let never_freed: Vec<&str> = leaked
        .lines()
        .filter(|line| line.ends_with("was never freed"))
        .map(str::trim)
        .collect();
    assert_eq!(
        never_freed,
        [1, 3, 5, 7, 9, 11, 14].map(|id| format!("HashTable#{id} was never freed")),
        "{leaked}"
    );
    assert!(
        leaked.contains("HashTable#13 was not freed, and is not counted"),
        "{leaked}"
    );
    let correct = fixture_stdout(fixture, &[]);
    if python_version() == (3, 10) {
        // 3.10's caller keeps its own reference to an argument for the whole call, on a
        // stack refcount-lab does not read: the README's documented false alarm.
        assert!(
            correct.contains("outcome:  leaked\n    HashTable#9 was never freed\n  note:"),
            "{correct}"
        );
    } else {
        assert!(correct.contains("outcome:  ok"), "{correct}");
    }
}

/// A thread that moves an over-counted table from its variable into a deque once the
/// exit report has begun cannot make the count see one reference twice: the frames are
/// read and the references counted in one pass no thread interrupts.
#[test]
fn a_table_moved_while_the_report_runs_is_counted_once() {
    let correct = leaked_with_the_fault_ok_without("moves_a_leaked_table_while_the_report_runs.py");
    assert!(
        correct.contains("HashTable#1 was not freed, and is not counted"),
        "{correct}"
    );
}

/// An audit hook that lets a thread run a generator to its end inside the exit report
/// cannot make its variables count twice (for the generator, and for the frame object that
/// holds them once it finished).
#[test]
fn a_generator_finished_inside_the_report_is_counted_once() {
    leaked_with_the_fault_ok_without("finishes_a_generator_inside_the_report.py");
}

/// A table a running function was given through `frame.f_locals` is held by its frame
/// (3.13+: by the frame object, beside the variables) and reached through it.
#[test]
fn a_name_given_through_f_locals_is_held_by_the_running_frame() {
    let stdout = fixture_stdout("gives_a_running_function_a_name_through_f_locals.py", &[]);
    assert!(stdout.contains("outcome:  ok"), "{stdout}");
    assert!(
        stdout.contains("HashTable#1 was not freed, and is not counted"),
        "{stdout}"
    );
}

/// A suspended generator `gc.freeze()` hid from the collector's list is found from what
/// is alive, and its variable explains its table.
#[test]
fn a_frozen_generator_is_counted_once() {
    leaked_with_the_fault_ok_without("freezes_a_suspended_generator.py");
}

/// A running frame's own fields (its trace function) hold a table: read from 3.11, where
/// the table is excused; 3.10's documented false alarm before.
#[test]
fn a_running_frames_trace_function_is_held_by_the_frame() {
    let stdout = fixture_stdout("holds_a_table_as_its_trace_function.py", &[]);
    let expected = if python_version() == (3, 10) {
        "outcome:  leaked\n    HashTable#1 was never freed"
    } else {
        "HashTable#1 was not freed, and is not counted"
    };
    assert!(stdout.contains(expected), "{stdout}");
}

/// Runs `fixture`, whose HashTable#1 `error-path-leak` over-counts, with the fault (it must
/// read leaked) and without (ok); the report of the correct run.
fn leaked_with_the_fault_ok_without(fixture: &str) -> String {
    let leaked = fixture_stdout(fixture, &["--fault", "error-path-leak"]);
    assert!(
        leaked.contains("outcome:  leaked\n    HashTable#1 was never freed\n"),
        "{leaked}"
    );
    let correct = fixture_stdout(fixture, &[]);
    assert!(correct.contains("outcome:  ok"), "{correct}");
    correct
}

/// A thread blocked in a finalizer an instruction's clean-up ran leaves stale stack slots
/// behind (an operand already released, a value already stored): they explain no
/// reference, so both over-counted tables read leaked on every version.
#[test]
fn a_stale_stack_slot_explains_nothing() {
    let stdout = fixture_stdout("blocks_in_a_finalizer.py", &["--fault", "error-path-leak"]);
    assert!(
        stdout.contains(
            "outcome:  leaked\n    HashTable#1 was never freed\n    HashTable#3 was never freed"
        ),
        "{stdout}"
    );
}

/// A new interpreter the script starts (multiprocessing's spawn) does not take one of its
/// own descriptors for refcount-lab's key pipe: it imports `hashtable` and exits.
#[test]
fn a_spawned_interpreter_does_not_read_the_key_pipe() {
    let stdout = fixture_stdout("spawns_a_child_with_fd_4.py", &[]);
    assert!(
        stdout.contains("child exited with 0") && stdout.contains("outcome:  ok"),
        "{stdout}"
    );
}

/// A name watched twice keeps its first baseline: a second `lab.watch` after the leak does
/// not hide it.
#[test]
fn watching_a_name_again_keeps_its_first_baseline() {
    let output = run_fixture("watches_twice.py", &["--fault", "dealloc-missing-decref"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("hash ended 5 references above its baseline"),
        "{stdout}"
    );
    let output = run_fixture("watches_two_objects_as_one_name.py", &[])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("outcome:  error") && stdout.contains("is watched already"),
        "{stdout}"
    );
}

/// A daemon that left the process group and the session (double fork, `setsid`) is still
/// part of the run: the timeout holds, and nothing of the run outlives it.
#[test]
fn a_daemon_that_left_the_session_is_found_and_stopped() {
    // A mark in the environment, which the daemon inherits: this test's processes, not
    // another run's of the same fixture on the same machine.
    let mark = format!("REFCOUNT_LAB_DAEMON_TEST={}", std::process::id());
    let started = std::time::Instant::now();
    settings().bind(|| {
        assert_cmd_snapshot!(run_fixture("starts_a_daemon.py", &["--timeout", "30"])
            .env("REFCOUNT_LAB_DAEMON_TEST", std::process::id().to_string()))
    });
    // The daemon sleeps for a day: a bound no busy machine comes near shows the run did
    // not wait for it.
    assert!(
        started.elapsed().as_secs() < 600,
        "took {:?}",
        started.elapsed()
    );
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("environ")).is_ok_and(|environ| {
                environ
                    .split(|&byte| byte == 0)
                    .any(|variable| variable == mark.as_bytes())
            })
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

#[test]
fn run_with_a_fault() {
    settings()
        .bind(|| assert_cmd_snapshot!(run_fixture("clean.py", &["--fault", "set-missing-incref"])));
}

/// A copy of `fixtures/lessons` in a folder of the test's own, only its owner may change
/// (a checkout made under a umask of 002 is the group's too, and refused).
fn private_lessons(name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lessons");
    let root = std::env::temp_dir().join(format!("rl-lessons-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for lesson in std::fs::read_dir(&fixture).unwrap() {
        let lesson = lesson.unwrap().path();
        let copy = root.join(lesson.file_name().unwrap());
        std::fs::create_dir_all(&copy).unwrap();
        for file in std::fs::read_dir(&lesson).unwrap() {
            let file = file.unwrap().path();
            let to = copy.join(file.file_name().unwrap());
            std::fs::write(&to, std::fs::read(&file).unwrap()).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    for dir in [root.clone(), root.join("01-counting-a-list")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

#[test]
fn lessons_from_another_folder() {
    let root = private_lessons("snapshot");
    let dir = root.to_str().unwrap();
    settings().bind(|| assert_cmd_snapshot!(lab(&["lesson", "1", "--lessons-dir", dir])));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Lessons' demos run as the user: a folder or demo others may change is refused.
#[test]
fn lessons_others_may_change_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = private_lessons("shared");
    let demo = root.join("01-counting-a-list/demo.py");
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o664)).unwrap();
    let output = lab(&["lesson", "1", "--lessons-dir", root.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("can be changed by other users (mode 664)"),
        "{stderr}"
    );
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = lab(&["list", "--lessons-dir", root.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing the lessons folder"), "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let ansi = |args: &[&str], no_color: bool| {
        let mut command = Command::new(get_cargo_bin("refcount-lab"));
        command.args(args);
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let stdout = command.output().unwrap().stdout;
        String::from_utf8_lossy(&stdout).contains("\x1b[")
    };
    assert!(ansi(&["lesson", "1", "--color", "always"], false));
    assert!(ansi(&["--color", "always", "lesson", "1"], false));
    assert!(!ansi(
        &["--color", "always", "lesson", "1", "--color", "never"],
        false
    ));
    assert!(
        !ansi(&["lesson", "1"], false),
        "stdout is a pipe here, not a terminal"
    );
    assert!(!ansi(&["lesson", "1", "--color", "never"], false));
    assert!(!ansi(&["lesson", "1", "--color", "auto"], true));
}

/// On a terminal, `lesson` asks its questions first, reads the answers, runs, and puts
/// each answer next to what the runs showed. Driven through a pseudo-terminal (`script`,
/// from util-linux).
/// What `lesson 3` prints on a pseudo-terminal (`script`, from util-linux) given `answers`.
fn lesson_3_on_a_terminal(answers: &str) -> String {
    use std::io::Write;
    let command = format!(
        "{} lesson 3 --color never --width 80",
        get_cargo_bin("refcount-lab").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n")
}

#[test]
fn on_a_terminal_a_learner_predicts_then_sees() {
    let text = lesson_3_on_a_terminal("2\n\n");
    let asked = text
        .find(" 1. Before you run it")
        .expect("the question is asked");
    let ran = text.find("── correct run").expect("the lesson runs");
    assert!(asked < ran, "asked after the run:\n{text}");
    let predictions = &text[text.find("── your predictions").expect("a comparison")..];
    assert!(predictions.contains("you said: 2\n"), "{predictions}");
    assert!(
        predictions.contains("the runs: correct: h = 2; faulty: h = 1"),
        "{predictions}"
    );
    assert!(predictions.contains("you said: (skipped)"), "{predictions}");
    assert!(
        predictions.contains("the runs: faulty: crashed: SIG"),
        "{predictions}"
    );
}

/// An answer typed at the prompt is shown back next to the runs escaped: it cannot drive
/// the terminal. (The terminal itself echoes it as it is typed, as any program's input.)
#[test]
fn a_typed_answer_is_shown_back_escaped() {
    let text = lesson_3_on_a_terminal("2\u{1b}[2J\u{202e}\u{200b}\n\n");
    let predictions = &text[text.find("── your predictions").expect("a comparison")..];
    assert!(
        predictions.contains("you said: 2\\x1b[2J\\u{202e}\\u{200b}\n"),
        "{predictions:?}"
    );
    assert!(
        !predictions.chars().any(|c| c.is_control() && c != '\n'),
        "{predictions:?}"
    );
}

/// A run's faults are handed to the module privately: no code of the script can read them
/// (a diagnose exercise hides its fault from the learner's probe).
#[test]
fn a_script_cannot_read_its_runs_faults() {
    let output = run_fixture(
        "looks_for_its_faults.py",
        &["--fault", "set-missing-incref"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("the fault's name found in: nothing"),
        "{stdout}"
    );
}

/// A report that cannot be written (a full disk) is an error, not a silent exit 0; a
/// reader that stops early (`| head`) is not.
#[test]
fn a_report_lost_to_a_full_disk_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = lab(&["faults"]).stdout(full).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write the report to standard output: No space left"),
        "{stderr}"
    );
    let mut head = lab(&["rules"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(head.stdout.take());
    assert_eq!(head.wait().unwrap().code(), Some(0));
}

/// A fault is on or off: thousands of the same `--fault` are one fault, said once (they
/// once filled the pipe that hands the faults over, and the run hung before it started).
#[test]
fn a_fault_given_thousands_of_times_is_one_fault() {
    let mut args = vec!["clean.py"];
    for _ in 0..5000 {
        args.extend(["--fault", "hash-result-leak"]);
    }
    let output = run_fixture(args[0], &args[1..]).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    for line in [
        "faulty code of hash-result-leak",
        "the fault site: hash-result-leak",
    ] {
        assert_eq!(report.matches(line).count(), 1, "once:\n{report}");
    }
}
