//! The workshop loop as a newcomer meets it: list, init, verify, one exercise at a time with
//! the reference solutions in `fixtures/exercise-solutions/`, and the messages that wrong or
//! unfinished answers get. Each test keeps its progress in its own state folder.

use insta_cmd::{assert_cmd_snapshot, get_cargo_bin};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A private state folder and exercise folder, removed at the end.
struct Workshop {
    root: PathBuf,
}

impl Workshop {
    fn new(name: &str) -> Workshop {
        let root = std::env::temp_dir().join(format!("refcount-lab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Workshop { root }
    }

    fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// `exercises init` into `work()`.
    fn init(&self) {
        let work = self.work();
        let output = self
            .lab(&["exercises", "init", work.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    fn lab(&self, args: &[&str]) -> Command {
        let mut command = Command::new(get_cargo_bin("refcount-lab"));
        command
            .args(args)
            .env("REFCOUNT_LAB_STATE_DIR", self.root.join("state"));
        if args.first() == Some(&"exercise") {
            command.arg("--color=never");
        }
        command
    }

    fn settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        let root = self.root.canonicalize().unwrap();
        settings.add_filter(&regex_escape(&root.display().to_string()), "[WORKSHOP]");
        // How many other faults a probe also trips depends on the interpreter (None is
        // mortal before 3.12, for one); the message around the number does not.
        settings.add_filter(r"ends badly under \d+ of", "ends badly under [N] of");
        settings
    }

    fn solve(&self, file: &str) {
        let solution = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/exercise-solutions")
            .join(file);
        // Written over the starting file, which keeps its mode (a copy would take the
        // checkout's, which a umask of 002 makes writable by the group: refused).
        std::fs::write(self.work().join(file), std::fs::read(solution).unwrap()).unwrap();
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.work().join(file), text).unwrap();
    }

    fn stdout(&self, args: &[&str]) -> (Option<i32>, String) {
        let output = self.lab(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

impl Drop for Workshop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The reference solution `file` of `fixtures/exercise-solutions/`.
fn solution(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/exercise-solutions")
            .join(file),
    )
    .unwrap()
}

fn solutions() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/exercise-solutions");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

#[test]
fn a_newcomer_goes_from_init_to_every_exercise_done() {
    let shop = Workshop::new("newcomer");
    let work = shop.work();
    let work = work.to_str().unwrap();
    shop.settings().bind(|| {
        assert_cmd_snapshot!("before_init", shop.lab(&["exercises"]));
        assert_cmd_snapshot!("verify_before_init", shop.lab(&["verify"]));
        assert_cmd_snapshot!("init", shop.lab(&["exercises", "init", work]));
        assert_cmd_snapshot!("first_verify", shop.lab(&["verify"]));
    });
    let files = solutions();
    assert_eq!(files.len(), 17, "one reference solution per exercise");
    for (i, file) in files.iter().enumerate() {
        shop.solve(file);
        let (code, stdout) = shop.stdout(&["verify"]);
        assert!(
            stdout.contains(&format!("{} of 17 exercises done", i + 1)),
            "{file}:\n{stdout}"
        );
        assert_eq!(code, Some(if i + 1 == 17 { 0 } else { 1 }), "{stdout}");
    }
    shop.settings().bind(|| {
        assert_cmd_snapshot!("all_done", shop.lab(&["verify"]));
        assert_cmd_snapshot!("list_when_done", shop.lab(&["exercises"]));
    });
    // A done exercise is checked again once its file changes.
    shop.write(
        "01-predict-buckets.py",
        "BUCKET_OF_5 = 3\nSIZE_AFTER_THREE_KEYS = 8\n",
    );
    let (_, stdout) = shop.stdout(&["verify"]);
    assert!(stdout.contains("to do  1"), "{stdout}");
    shop.solve("01-predict-buckets.py");
    let (_, stdout) = shop.stdout(&["exercises", "--reset"]);
    assert!(stdout.contains("Progress reset"));
    let (_, stdout) = shop.stdout(&["exercises"]);
    assert!(stdout.contains("0 of 17 done"), "{stdout}");
}

#[test]
fn unfinished_and_wrong_answers_say_what_to_do() {
    let shop = Workshop::new("wrong");
    shop.init();
    let solutions = solutions();
    let cases: [(&str, &str, &str); 4] = [
        (
            "wrong_prediction",
            "01-predict-buckets.py",
            "BUCKET_OF_5 = 3\nSIZE_AFTER_THREE_KEYS = 8\n",
        ),
        (
            "unreadable_prediction",
            "01-predict-buckets.py",
            "BUCKET_OF_5 = 5 % 4\nSIZE_AFTER_THREE_KEYS = 8\n",
        ),
        (
            "wrong_count_gets_a_nudge_not_the_answer",
            "02-predict-refcounts.py",
            "AFTER_A_SECOND_NAME = \"2\"\nIN_A_LIST_TWICE = 3\n",
        ),
        (
            "an_outcome_that_is_not_an_outcome_word",
            "03-predict-the-crash.py",
            "REFCOUNT_AFTER_FIRST_SET = '1'\nFAULTY_OUTCOME = \"segfault\"\n",
        ),
    ];
    check_cases(&shop, &solutions[..5], &cases);
    shop.write(
        "06-probe-hash-results.py",
        "import hashtable\nhashtable.HashTable()[1] = 2\n",
    );
    shop.settings().bind(|| {
        assert_cmd_snapshot!("probe_that_does_not_show_the_fault", shop.lab(&["verify"]));
        assert_cmd_snapshot!("hint", shop.lab(&["hint", "6"]));
        assert_cmd_snapshot!(
            "exercise_runs_the_probe_both_ways",
            shop.lab(&["exercise", "6"])
        );
        assert_cmd_snapshot!("unknown_exercise", shop.lab(&["exercise", "99"]));
    });
    // A weak reference sees the table's Box freed at once, whatever the allocator does
    // with its memory next (reading the freed Box back crashes, or not, by heap layout).
    let probe = "import weakref\n\n\nclass Box:\n    pass\n\n\nh = hashtable.HashTable()\nh['box'] = Box()\nalive = weakref.ref(h['box'])\nfound = h.get('box')\ndel found\nassert alive() is not None, 'the Box in the table was freed'\n";
    let named = |name: &str| format!("import hashtable\nFAULT = {name}\n{probe}");
    let cases: [(&str, &str, &str); 6] = [
        ("fault_not_named", "09-diagnose-reading.py", &named("...")),
        (
            "unknown_fault_named",
            "09-diagnose-reading.py",
            &named("\"get-missing-incref\""),
        ),
        (
            "wrong_fault_named",
            "09-diagnose-reading.py",
            &named("\"no-traverse\""),
        ),
        (
            "right_fault_but_no_probe",
            "09-diagnose-reading.py",
            "FAULT = \"get-borrowed-return\"\n",
        ),
        (
            "probe_that_fails_on_correct_code",
            "09-diagnose-reading.py",
            "FAULT = \"get-borrowed-return\"\nraise SystemExit(3)\n",
        ),
        (
            "a_probe_that_breaks_under_every_fault_proves_nothing",
            "09-diagnose-reading.py",
            &universal_probe("get-borrowed-return"),
        ),
    ];
    check_cases(&shop, &solutions[..8], &cases);
    // The diagnose exercise keeps its lesson to itself until it is solved.
    let (_, listing) = shop.stdout(&["exercises"]);
    let line = listing.lines().find(|l| l.contains("09-diagnose")).unwrap();
    assert!(!line.contains("lesson  6"), "{line}");
    shop.solve("09-diagnose-reading.py");
    shop.lab(&["verify"]).output().unwrap();
    let (_, listing) = shop.stdout(&["exercises"]);
    let line = listing.lines().find(|l| l.contains("09-diagnose")).unwrap();
    assert!(line.contains("lesson  6"), "{line}");
}

/// With `solved` in place, each case's text in its file gets the snapshot named after it.
fn check_cases(shop: &Workshop, solved: &[String], cases: &[(&str, &str, &str)]) {
    for file in solved {
        shop.solve(file);
    }
    for (name, file, text) in cases {
        shop.write(file, text);
        shop.settings()
            .bind(|| assert_cmd_snapshot!(*name, shop.lab(&["verify"])));
        shop.solve(file);
    }
}

/// `fixtures/exercise-probes/universal.py`, naming `fault`: a probe that calls every method.
fn universal_probe(fault: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/exercise-probes/universal.py");
    let text = std::fs::read_to_string(path).unwrap();
    format!("FAULT = {fault:?}\n{text}")
}

#[test]
fn the_universal_probe_passes_no_diagnose_exercise() {
    let shop = Workshop::new("universal");
    shop.init();
    let solutions = solutions();
    for file in &solutions[..8] {
        shop.solve(file);
    }
    for (i, file) in solutions[8..13].iter().enumerate() {
        let answer = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/exercise-solutions")
                .join(file),
        )
        .unwrap();
        let fault = answer
            .lines()
            .find_map(|line| line.strip_prefix("FAULT = "))
            .unwrap()
            .trim_matches('"');
        shop.write(file, &universal_probe(fault));
        let (_, stdout) = shop.stdout(&["verify"]);
        assert!(
            stdout.contains(&format!("{} of 17 exercises done", 8 + i)),
            "{file} passed with the universal probe:\n{stdout}"
        );
        shop.solve(file);
    }
}

#[test]
fn a_damaged_or_misplaced_progress_file_is_moved_aside_by_reset() {
    let shop = Workshop::new("damaged");
    let state = shop.root.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("progress.json"), "{ not json").unwrap();
    let (code, _) = shop.stdout(&["exercises"]);
    assert_ne!(code, Some(0));
    let stderr = String::from_utf8(shop.lab(&["exercises"]).output().unwrap().stderr).unwrap();
    assert!(stderr.contains("exercises --reset"), "{stderr}");

    let (code, stdout) = shop.stdout(&["exercises", "--reset"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("could not be read; moved it to"),
        "{stdout}"
    );
    let aside = std::fs::read_to_string(state.join("progress.json.damaged")).unwrap();
    assert_eq!(aside, "{ not json", "the damaged file is kept, not deleted");
    let (code, stdout) = shop.stdout(&["exercises"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("0 of 17 done"), "{stdout}");

    // A folder in the file's place: --reset moves it aside too, and init works again.
    std::fs::create_dir_all(state.join("progress.json/inside")).unwrap();
    let (_, stdout) = shop.stdout(&["exercises", "--reset"]);
    assert!(stdout.contains("was a folder; moved it to"), "{stdout}");
    assert!(state.join("progress.json.damaged.2/inside").is_dir());
    let work = shop.work();
    let (code, stdout) = shop.stdout(&["exercises", "init", work.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
}

#[test]
fn init_writes_nothing_when_any_file_is_taken() {
    let shop = Workshop::new("taken");
    let work = shop.work();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("05-predict-hash-calls.py"), "mine").unwrap();
    let output = shop
        .lab(&["exercises", "init", work.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("05-predict-hash-calls.py"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    let files: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert_eq!(files.len(), 1, "only the learner's own file");
    assert_eq!(
        std::fs::read_to_string(work.join("05-predict-hash-calls.py")).unwrap(),
        "mine"
    );
}

#[test]
fn verify_shows_its_results_even_when_progress_cannot_be_saved() {
    let shop = Workshop::new("unsaved");
    shop.init();
    shop.solve("01-predict-buckets.py");
    // The lock every save takes first cannot be opened: a folder is in its way.
    let lock = shop.root.join("state/progress.lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir_all(lock.join("blocker")).unwrap();
    let output = shop.lab(&["verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("1 of 17 exercises done"), "{stdout}");
    assert!(stderr.contains("your progress was not saved"), "{stderr}");
    assert!(
        stderr.contains("Is a directory"),
        "the system's reason: {stderr}"
    );
    assert!(
        stderr.contains("set REFCOUNT_LAB_STATE_DIR to a folder only you can change"),
        "what to do: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "exercise 2 is still to do");
}

#[test]
fn errors_keep_the_systems_reason_and_say_what_to_do() {
    let shop = Workshop::new("errors");
    // Files may not grow past 100 bytes: init fails on its first file and leaves nothing
    // (a file half written would be kept by --resume as the learner's).
    let work = shop.work();
    let mut init = shop.lab(&["exercises", "init", work.to_str().unwrap()]);
    // SAFETY: setrlimit and signal are async-signal-safe, and touch only the child.
    unsafe {
        init.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 100,
                rlim_max: 100,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = init.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("File too large"),
        "the system's reason: {stderr}"
    );
    assert!(
        stderr.contains("nothing was written (once it can be, `refcount-lab exercises init"),
        "what to do: {stderr}"
    );
    assert!(!work.exists(), "no folder, no half-written file");
    let left: Vec<_> = std::fs::read_dir(&shop.root)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name != "state")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // A state folder that is a file.
    let file = shop.root.join("a-file");
    std::fs::write(&file, "").unwrap();
    let output = shop
        .lab(&["exercises"])
        .env("REFCOUNT_LAB_STATE_DIR", &file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Not a directory"),
        "the system's reason: {stderr}"
    );
    assert!(
        stderr.contains("REFCOUNT_LAB_STATE_DIR"),
        "what to do: {stderr}"
    );

    // An exercise folder that cannot be reached is not "gone".
    let outer = shop.root.join("outer");
    let nested = outer.join("work");
    let (code, _) = shop.stdout(&["exercises", "init", nested.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    std::fs::remove_dir_all(&outer).unwrap();
    std::fs::write(&outer, "").unwrap();
    let output = shop.lab(&["verify"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Not a directory"),
        "the system's reason: {stderr}"
    );
    assert!(stderr.contains("once it can, it is used again"), "{stderr}");
}

#[test]
fn progress_is_never_read_half_written() {
    let shop = Workshop::new("atomic");
    shop.init();
    let state = shop.root.join("state");
    let writer = {
        let lab = shop.lab(&["exercises", "--reset"]);
        let program = lab.get_program().to_owned();
        std::thread::spawn(move || {
            for _ in 0..100 {
                Command::new(&program)
                    .args(["exercises", "--reset"])
                    .env("REFCOUNT_LAB_STATE_DIR", &state)
                    .output()
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let (code, stdout) = shop.stdout(&["exercises"]);
        assert_eq!(code, Some(0), "read a half-written file:\n{stdout}");
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
}

#[test]
fn exercises_checked_at_the_same_time_are_all_saved() {
    let shop = Workshop::new("concurrent");
    shop.init();
    let exercises = [6, 7, 8];
    for file in &solutions()[5..8] {
        shop.solve(file);
    }
    let runs: Vec<_> = exercises
        .iter()
        .map(|n| {
            let mut lab = shop.lab(&["exercise", &n.to_string()]);
            lab.stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("Done: exercise"), "{stdout}");
    }
    let (_, stdout) = shop.stdout(&["exercises"]);
    assert!(stdout.contains("3 of 17 done"), "{stdout}");
}

#[test]
fn a_save_does_not_follow_a_symlink_at_the_old_temporary_name() {
    let shop = Workshop::new("symlink");
    shop.init();
    let victim = shop.root.join("victim");
    std::fs::write(&victim, "someone else's").unwrap();
    let state = shop.root.join("state");
    std::os::unix::fs::symlink(&victim, state.join("progress.json.tmp")).unwrap();
    let (code, stdout) = shop.stdout(&["exercises", "--reset"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "someone else's");
    let saved = std::fs::symlink_metadata(state.join("progress.json")).unwrap();
    assert!(saved.is_file(), "progress.json is a file of its own");
}

#[test]
fn resuming_in_the_same_folder_keeps_what_is_done() {
    let shop = Workshop::new("resume");
    shop.init();
    for file in &solutions()[..2] {
        shop.solve(file);
    }
    shop.lab(&["verify"]).output().unwrap();
    let work = shop.work();
    std::os::unix::fs::symlink(&work, shop.root.join("link")).unwrap();
    let spellings = [
        (&shop.root, work.to_str().unwrap()),
        (&shop.root, "work/"),
        (&shop.root, "link"),
        (&work, "."),
    ];
    for (folder, spelling) in spellings {
        let output = shop
            .lab(&["exercises", "init", spelling, "--resume"])
            .current_dir(folder)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let (_, stdout) = shop.stdout(&["exercises"]);
        assert!(
            stdout.contains("2 of 17 done"),
            "after `init {spelling} --resume`:\n{stdout}"
        );
        let saved = std::fs::read_to_string(shop.root.join("state/progress.json")).unwrap();
        let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
        assert_eq!(saved["passed"].as_object().unwrap().len(), 2, "{saved}");
    }
    // Another folder starts over.
    let other = shop.root.join("other");
    let (code, _) = shop.stdout(&["exercises", "init", other.to_str().unwrap(), "--resume"]);
    assert_eq!(code, Some(0));
    let (_, stdout) = shop.stdout(&["exercises"]);
    assert!(stdout.contains("0 of 17 done"), "{stdout}");
}

#[test]
fn each_c_exercise_fails_as_given_and_passes_with_its_fix() {
    let shop = Workshop::new("fix-c");
    shop.init();
    let solutions = solutions();
    for file in &solutions[..13] {
        shop.solve(file);
    }
    for (i, file) in solutions[13..].iter().enumerate() {
        let name = file.trim_end_matches(".c");
        shop.settings()
            .bind(|| assert_cmd_snapshot!(format!("as_given_{name}"), shop.lab(&["verify"])));
        shop.solve(file);
        let (_, stdout) = shop.stdout(&["verify"]);
        assert!(
            stdout.contains(&format!("{} of 17 exercises done", 14 + i)),
            "{file}:\n{stdout}"
        );
    }
    // Fixes that go too far fail too, and say which way.
    let too_many = solution("14-fix-c-returned-default.c").replace(
        "    return Py_NewRef(the_default);",
        "    Py_INCREF(the_default);\n    return Py_NewRef(the_default);",
    );
    shop.write("14-fix-c-returned-default.c", &too_many);
    let (code, stdout) = shop.stdout(&["exercise", "14"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("takes a reference too many"), "{stdout}");
    shop.solve("14-fix-c-returned-default.c");
    let released_null = solution("17-fix-c-error-path.c").replacen(
        "    if (head == NULL) {\n",
        "    if (head == NULL) {\n        Py_DECREF(head);\n",
        1,
    );
    shop.write("17-fix-c-error-path.c", &released_null);
    let (_, stdout) = shop.stdout(&["verify"]);
    assert!(stdout.contains("`fixc_split.split([])`"), "{stdout}");
    shop.solve("17-fix-c-error-path.c");
    // A C file that does not compile gets the compiler's own words.
    shop.write("17-fix-c-error-path.c", "this is not C\n");
    let (_, stdout) = shop.stdout(&["verify"]);
    assert!(stdout.contains("Your C does not compile yet"), "{stdout}");
    assert!(stdout.contains("error"), "{stdout}");
    // No compiler: say what to install.
    let output = shop
        .lab(&["verify"])
        .env("CC", "no-such-compiler")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no C compiler found"), "{stderr}");
    assert!(stderr.contains("apt install gcc"), "{stderr}");
}

/// `exercise N` on `text` as the learner's file: whether it passes, and the verdict (the
/// output before it shows the probe's source, which holds every message).
fn try_c(shop: &Workshop, file: &str, text: &str) -> (bool, String) {
    shop.write(file, text);
    let (code, stdout) = shop.stdout(&["exercise", &file[..2]]);
    let verdict = stdout
        .rfind("\nNot yet: ")
        .or_else(|| stdout.rfind("\nDone: "))
        .map_or(stdout.as_str(), |at| &stdout[at..]);
    (code == Some(0), verdict.to_owned())
}

#[test]
fn exercise_14_checks_exact_counts() {
    let shop = Workshop::new("fix-c-14");
    shop.init();
    let file = "14-fix-c-returned-default.c";
    let right = solution(file);
    // The module keeps two references: the probe's own count reads 3 where 2 is right.
    let twice = right.replace("Py_NewRef(obj)", "Py_NewRef(Py_NewRef(obj))");
    assert_ne!(twice, right);
    let (passed, stdout) = try_c(&shop, file, &twice);
    assert!(!passed, "{stdout}");
    assert!(
        stdout.contains("the default has 3 holders, not 2"),
        "{stdout}"
    );
    // Forgetting the old default on replacing it leaks it.
    let keeps_old = right.replace(
        "Py_XSETREF(the_default, Py_NewRef(obj));",
        "the_default = Py_NewRef(obj);",
    );
    assert_ne!(keeps_old, right);
    let (passed, stdout) = try_c(&shop, file, &keeps_old);
    assert!(!passed, "{stdout}");
    assert!(
        stdout.contains("should release the default it replaces"),
        "{stdout}"
    );
    let (passed, stdout) = try_c(&shop, file, &right);
    assert!(passed, "{stdout}");
}

#[test]
fn exercise_16_half_fixed_names_the_item_still_stolen() {
    let shop = Workshop::new("fix-c-16");
    shop.init();
    let file = "16-fix-c-pair.c";
    let right = solution(file);
    // Fixed for one item only, the other is stolen: the probe says which, before dropping
    // the tuple frees it.
    for (unfixed, stolen) in [("1", "b"), ("0", "a")] {
        let half = right.replace(
            &format!("Py_NewRef(args[{unfixed}])"),
            &format!("args[{unfixed}]"),
        );
        assert_ne!(half, right);
        let (passed, stdout) = try_c(&shop, file, &half);
        assert!(!passed, "{stdout}");
        let said = format!("the tuple holds {stolen}, but {stolen} has 1 holder(s), not 2");
        assert!(stdout.contains(&said), "{stdout}");
    }
    // Released once too often, b is freed while its name still holds it: no count is read.
    let frees = right.replace(
        "    return tuple;",
        "    Py_DECREF(args[1]);\n    Py_DECREF(args[1]);\n    return tuple;",
    );
    let (passed, stdout) = try_c(&shop, file, &frees);
    assert!(!passed, "{stdout}");
    assert!(stdout.contains("pair(a, b) freed a or b"), "{stdout}");
    let (passed, stdout) = try_c(&shop, file, &right);
    assert!(passed, "{stdout}");
}

#[test]
fn a_module_that_replaces_getrefcount_does_not_pass() {
    let shop = Workshop::new("fix-c-patch");
    shop.init();
    let patch = |text: &str| {
        let patched = text.replace(
            "    return PyModule_Create(&module_def);",
            "    PyRun_SimpleString(\"import sys; sys.getrefcount = lambda obj: 3\");\n    \
             return PyModule_Create(&module_def);",
        );
        assert_ne!(patched, text);
        patched
    };
    for file in &solutions()[13..] {
        let starter = std::fs::read_to_string(shop.work().join(file)).unwrap();
        // Unfixed: the probe's counts are real, and show the bug.
        let (passed, stdout) = try_c(&shop, file, &patch(&starter));
        assert!(!passed, "{file} as given:\n{stdout}");
        assert!(!stdout.contains("replaced sys.getrefcount"), "{stdout}");
        // Fixed: the module still changed how it is checked.
        let (passed, stdout) = try_c(&shop, file, &patch(&solution(file)));
        assert!(!passed, "{file} fixed:\n{stdout}");
        assert!(stdout.contains("replaced sys.getrefcount"), "{stdout}");
    }
}

#[test]
fn a_teacher_collects_exported_progress() {
    let ada = Workshop::new("export-ada");
    ada.init();
    for file in &solutions()[..2] {
        ada.solve(file);
    }
    ada.lab(&["verify"]).output().unwrap();
    let class = ada.root.join("class");
    std::fs::create_dir_all(&class).unwrap();
    let exported = class.join("ada.json");
    let (code, stdout) = ada.stdout(&[
        "exercises",
        "--export",
        exported.to_str().unwrap(),
        "--name",
        "Ada",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("2 of 17 done, as Ada"), "{stdout}");
    // A learner who has not started, and a stray file the summary skips.
    let bob = Workshop::new("export-bob");
    let (code, _) = bob.stdout(&[
        "exercises",
        "--export",
        class.join("bob.json").to_str().unwrap(),
        "--name",
        "Bob",
    ]);
    assert_eq!(code, Some(0));
    std::fs::write(class.join("notes.json"), "{}").unwrap();
    ada.settings()
        .bind(|| assert_cmd_snapshot!("class", ada.lab(&["class", class.to_str().unwrap()])));
}

/// `--export --name` keeps a name as it can be shown (no control or bidi character reaches
/// a terminal or the file), and refuses one too long for a row of `class`.
#[test]
fn an_exported_name_is_escaped_and_bounded() {
    let shop = Workshop::new("export-name");
    let exported = shop.root.join("me.json");
    let exported = exported.to_str().unwrap();
    let output = shop
        .lab(&[
            "exercises",
            "--export",
            exported,
            "--name",
            "Ada\u{1b}[2J\u{202e}\u{200b}",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let shown = "Ada\\x1b[2J\\u{202e}\\u{200b}";
    assert!(stdout.contains(&format!("as {shown})")), "{stdout:?}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported).unwrap()).unwrap();
    assert_eq!(file["learner"], shown);

    let long = "A".repeat(65);
    let output = shop
        .lab(&["exercises", "--export", exported, "--name", &long])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("65 characters long"), "{stderr}");
    assert!(
        stderr.contains("pass a shorter one with --name"),
        "{stderr}"
    );
}

#[test]
fn class_shows_what_files_say_as_text_and_counts_each_exercise_once() {
    let shop = Workshop::new("class-forged");
    let class = shop.root.join("class");
    std::fs::create_dir_all(&class).unwrap();
    let honest = class.join("ada.json");
    let (code, _) = shop.stdout(&[
        "exercises",
        "--export",
        honest.to_str().unwrap(),
        "--name",
        "Ada",
    ]);
    assert_eq!(code, Some(0));
    let mut forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&honest).unwrap()).unwrap();
    let first = forged["exercises"][0].clone();
    forged["learner"] = "Mallory\nZed                  17/17  all done\u{1b}[2J".into();
    forged["done"] = std::iter::repeat_n(first, 45)
        .chain(["no-such-exercise".into()])
        .collect();
    std::fs::write(class.join("mallory.json"), forged.to_string()).unwrap();
    std::fs::write(class.join("evil\n\u{1b}[31m.json"), "{}").unwrap();
    std::fs::create_dir(class.join("folder.json")).unwrap();
    // A pipe (reading it would wait forever), a huge file, a link: skipped, said why.
    let fifo = std::ffi::CString::new(class.join("pipe.json").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path of ours.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::write(class.join("huge.json"), vec![b' '; 2 << 20]).unwrap();
    std::os::unix::fs::symlink(&honest, class.join("link.json")).unwrap();

    let (code, stdout) = shop.stdout(&["class", class.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal:\n{stdout:?}"
    );
    assert!(!stdout.lines().any(|l| l.starts_with("Zed")), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("Mallory")).unwrap();
    assert!(row.contains("Mallory\\nZed"), "{row}");
    assert!(row.contains("\\x1b[2J"), "{row}");
    assert!(
        row.contains(" 1/17 "),
        "each exercise once, only those that exist: {row}"
    );
    assert!(stdout.contains("skipped "), "{stdout}");
    assert!(stdout.contains("evil\\n\\x1b[31m.json"), "{stdout}");
    assert!(
        stdout.contains("folder.json: cannot read it: Is a directory"),
        "the system's reason: {stdout}"
    );
    for (file, why) in [
        ("pipe.json", "not a regular file"),
        ("huge.json", "more than a progress file holds"),
        ("link.json", "a symbolic link, not followed"),
    ] {
        let said = format!("{file}: cannot read it: ");
        let line = stdout.lines().find(|line| line.contains(&said));
        assert!(line.is_some_and(|line| line.contains(why)), "{stdout}");
    }
}

#[test]
fn a_class_that_takes_exercises_out_of_order_and_a_learner_who_resumes() {
    let shop = Workshop::new("order");
    shop.init();
    let solutions = solutions();
    for file in &solutions[..5] {
        shop.solve(file);
    }
    shop.solve("09-diagnose-reading.py");
    shop.write("10-diagnose-removing.py", "FAULT = ...\n");
    shop.write(
        "01-predict-buckets.py",
        "BUCKET_OF_5 = 3\nSIZE_AFTER_THREE_KEYS = 4\n",
    );
    let (_, stdout) = shop.stdout(&["verify"]);
    // Every wrong prediction is named, not only the first.
    assert!(stdout.contains("BUCKET_OF_5 = 3"), "{stdout}");
    assert!(stdout.contains("SIZE_AFTER_THREE_KEYS = 4"), "{stdout}");
    shop.solve("01-predict-buckets.py");
    let (_, stdout) = shop.stdout(&["verify"]);
    assert!(stdout.contains("to do  6"), "{stdout}");
    assert!(
        stdout.contains("Also done, out of order: 09-diagnose-reading"),
        "{stdout}"
    );
    assert!(stdout.contains("Started, not done yet: 10"), "{stdout}");

    // A damaged progress file, reset, and the same folder picked up again.
    std::fs::write(shop.root.join("state/progress.json"), "{").unwrap();
    let (_, stdout) = shop.stdout(&["exercises", "--reset"]);
    assert!(stdout.contains("--resume"), "{stdout}");
    let work = shop.work();
    let (code, stdout) = shop.stdout(&["exercises", "init", work.to_str().unwrap(), "--resume"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("kept the 17 already there"), "{stdout}");
    let (_, stdout) = shop.stdout(&["verify"]);
    assert!(
        stdout.contains("5 of 17") || stdout.contains("6 of 17"),
        "{stdout}"
    );

    // The set-up check for the C exercises.
    let (code, stdout) = shop.stdout(&["exercises", "--check-c"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("C extensions build here"), "{stdout}");
}

/// The progress file is read only if it is a regular file of sane size (a pipe would hang
/// the reader, `/dev/zero` would fill memory), and `--export` never writes through a link
/// (in a hand-in folder others can write to, one could point at a file of yours).
#[test]
fn progress_and_export_files_are_bounded_and_never_followed() {
    let shop = Workshop::new("bounded-files");
    let state = shop.root.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = std::ffi::CString::new(state.join("progress.json").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path of ours.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let output = shop.lab(&["exercises"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"));
    std::fs::remove_file(state.join("progress.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", state.join("progress.json")).unwrap();
    let output = shop.lab(&["exercises"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_file(state.join("progress.json")).unwrap();

    let precious = shop.root.join("precious.txt");
    std::fs::write(&precious, "mine\n").unwrap();
    let link = shop.root.join("handed-in.json");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let output = shop
        .lab(&[
            "exercises",
            "--export",
            link.to_str().unwrap(),
            "--name",
            "Eve",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "mine\n");
}

/// The exercise folder the progress file names is used only while no one else may change
/// it (its scripts run as the learner), nor the state folder: a learner's own folder made
/// group- or other-writable is refused with what to do, and works again once it is not.
#[test]
fn a_folder_others_may_change_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let shop = Workshop::new("others-may-change");
    shop.init();
    let work = shop.work();
    for mode in [0o775, 0o757] {
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(mode)).unwrap();
        for command in [vec!["verify"], vec!["exercise", "6"]] {
            let output = shop.lab(&command).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{mode:o} {command:?}: {stderr}"
            );
            assert!(stderr.contains("refusing the exercise folder"), "{stderr}");
            assert!(stderr.contains("can be changed by other users"), "{stderr}");
            assert!(stderr.contains("chmod go-w"), "what to do: {stderr}");
            assert!(output.stdout.is_empty(), "nothing ran");
        }
    }
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stdout) = shop.stdout(&["verify"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("0 of 17 exercises done"), "{stdout}");

    let state = shop.root.join("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
    let output = shop.lab(&["exercises"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot keep your progress in"), "{stderr}");
    assert!(
        stderr.contains("Set REFCOUNT_LAB_STATE_DIR to a folder only you can change"),
        "{stderr}"
    );
}

/// Runs `command` with at most 1 GiB of address space (a file read whole fails at once
/// instead of filling the machine's memory), killed if it runs for more than two minutes (a
/// pipe read whole waits for ever). Its exit code, stdout and stderr.
fn run_bounded(mut command: Command) -> (Option<i32>, String, String) {
    use std::io::Read;
    // SAFETY: setrlimit is async-signal-safe, and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{command:?} still ran after two minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.unwrap().read_to_string(&mut stderr).unwrap();
    (status.code(), stdout, stderr)
}

/// M5 and M6 of issue 23: `verify` reads the exercise files as it reads the progress file,
/// within bounds: a pipe (which hung it), `/dev/zero` behind a link (which grew it to
/// gigabytes), a huge sparse file, a folder. Each gets a message naming the file and what
/// to do, and the rest of verify goes on; `exercise N` says the same.
/// A learner's file others may change, or that is not theirs, is never run: another user
/// could have put their code in it. The starting files are the owner's alone, whatever the
/// umask.
#[test]
fn exercise_files_others_may_change_are_not_run() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let shop = Workshop::new("shared-files");
    let work = shop.work();
    let mut init = shop.lab(&["exercises", "init", work.to_str().unwrap()]);
    // SAFETY: umask is async-signal-safe and changes only the child's mask.
    unsafe {
        init.pre_exec(|| {
            libc::umask(0o002);
            Ok(())
        });
    }
    assert!(init.output().unwrap().status.success());
    let starter = work.join("01-predict-buckets.py");
    let mode = std::fs::metadata(&starter).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "{mode:o}");

    for file in &solutions()[..5] {
        shop.solve(file);
    }
    let ran = shop.root.join("payload-ran");
    shop.write(
        "06-probe-hash-results.py",
        &format!("open({:?}, 'w').write('ran')\n", ran.to_str().unwrap()),
    );
    let shared = work.join("06-probe-hash-results.py");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (code, stdout) = shop.stdout(&["verify"]);
    assert!(!ran.exists(), "ran a file others may change: {stdout}");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("06-probe-hash-results.py can be changed by other users (mode 664)"),
        "{stdout}"
    );
    assert!(stdout.contains("chmod go-w"), "{stdout}");
}

#[test]
fn exercise_files_are_read_within_bounds() {
    let shop = Workshop::new("bounded-exercises");
    shop.init();
    let work = shop.work();
    let fifo = |name: &str| {
        let path = work.join(name);
        std::fs::remove_file(&path).unwrap();
        let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path of ours.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    };
    fifo("01-predict-buckets.py");
    fifo("14-fix-c-returned-default.c");
    let sparse = work.join("06-probe-hash-results.py");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let folder = work.join("07-probe-stolen-references.py");
    std::fs::remove_file(&folder).unwrap();
    std::fs::create_dir(&folder).unwrap();
    let zero = work.join("10-diagnose-removing.py");
    std::fs::remove_file(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();

    let (code, stdout, stderr) = run_bounded(shop.lab(&["verify"]));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for said in [
        "to do  1  01-predict-buckets\n\n01-predict-buckets.py is not a regular file (a pipe or \
         a device?)",
        "06-probe-hash-results.py is 2147483648 bytes, more than an exercise file holds",
        "07-probe-stolen-references.py is a folder",
        "10-diagnose-removing.py is a symbolic link, not followed",
        "14-fix-c-returned-default.c is not a regular file",
        "exercises init",
    ] {
        assert!(stdout.contains(said), "{said:?} in:\n{stdout}");
    }
    assert!(stdout.contains("0 of 17 exercises done"), "{stdout}");
    // The rest goes on: exercise 1 solved, it is done, and the others still say why not.
    std::fs::remove_file(work.join("01-predict-buckets.py")).unwrap();
    shop.solve("01-predict-buckets.py");
    let (code, stdout, stderr) = run_bounded(shop.lab(&["verify"]));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("1 of 17 exercises done"), "{stdout}");
    assert!(
        stdout.contains("10-diagnose-removing.py is a symbolic"),
        "{stdout}"
    );

    for (number, said) in [
        (
            "10",
            "10-diagnose-removing.py is a symbolic link, not followed",
        ),
        ("14", "14-fix-c-returned-default.c is not a regular file"),
        ("6", "more than an exercise file holds"),
    ] {
        let (code, stdout, stderr) = run_bounded(shop.lab(&["exercise", number]));
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(stderr.contains(said), "{said:?} in:\n{stderr}");
    }
}
