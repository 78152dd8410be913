//! `refcount-lab` runs the CPython the user has: the one chosen by `--python`,
//! `$REFCOUNT_LAB_PYTHON`, the active venv or `python3` on `PATH`, as itself.

use insta_cmd::assert_cmd_snapshot;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary, with the interpreter chosen the default way: `$REFCOUNT_LAB_PYTHON` (the CI
/// matrix sets it), else `python3`. A virtual environment the tests run in is ignored.
fn lab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refcount-lab"));
    command.env_remove("VIRTUAL_ENV");
    command
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The real `python3` on PATH, as a path.
fn python3() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is on PATH");
    PathBuf::from(stdout(&output).trim())
}

fn fake(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/interpreters")
        .join(name)
}

#[test]
fn the_binary_links_no_libpython() {
    let output = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_refcount-lab"))
        .output()
        .expect("ldd runs");
    let libraries = String::from_utf8_lossy(&output.stdout);
    assert!(!libraries.contains("libpython"), "{libraries}");
}

#[test]
fn python_is_the_chosen_interpreter_with_argv_and_the_module() {
    let chosen = python3();
    let output = lab()
        .args(["python", "--python"])
        .arg(&chosen)
        .arg("-c")
        .arg("import sys, hashtable, lab; print(sys.executable, sys.argv[1:], hashtable.HashTable().size)")
        .args(["first", "second"])
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output).trim(),
        format!("{} ['first', 'second'] 4", chosen.display())
    );
}

#[test]
fn a_raised_sigsegv_kills_python_and_is_reported_by_run() {
    let output = lab()
        .args(["python", "-c"])
        .arg("import os, signal; os.kill(os.getpid(), signal.SIGSEGV); print('survived')")
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGSEGV));
    assert!(output.stdout.is_empty());

    let dir = std::env::temp_dir().join(format!("refcount-lab-sigsegv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("raise.py"),
        "import faulthandler\nfaulthandler._sigsegv()\n",
    )
    .unwrap();
    let output = lab()
        .args(["run", "raise.py", "--color=never"])
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("outcome:  crashed: SIGSEGV"), "{text}");
}

#[test]
fn an_active_virtual_environment_is_the_interpreter() {
    let venv = std::env::temp_dir().join(format!("refcount-lab-venv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new(python3())
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    let output = lab()
        .env_remove("REFCOUNT_LAB_PYTHON")
        .env("VIRTUAL_ENV", &venv)
        .args(["python", "-c", "import sys, hashtable; print(sys.prefix)"])
        .output()
        .unwrap();
    let prefix = stdout(&output);
    std::fs::remove_dir_all(&venv).unwrap();
    assert_eq!(prefix.trim(), venv.display().to_string());
}

#[test]
fn the_header_names_version_and_build() {
    let facts = lab()
        .args(["python", "-c"])
        .arg("import sys; print(sys.version.split()[0], 'debug' if hasattr(sys, 'gettotalrefcount') else 'release')")
        .output()
        .unwrap();
    let facts = stdout(&facts);
    let (version, build) = facts.trim().split_once(' ').unwrap();
    let lesson = stdout(
        &lab()
            .args(["lesson", "1", "--color=never"])
            .output()
            .unwrap(),
    );
    let expected = format!("in CPython {version}, {build} build");
    assert_eq!(lesson.lines().nth(2), Some(expected.as_str()));
}

/// Interpreters the module cannot load into are refused with exit 2, saying what was found
/// and what is needed. The stand-ins answer the probe as those interpreters would.
#[test]
fn interpreters_it_cannot_use() {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        &regex_escape(&fake("").display().to_string()),
        "[fixtures]/",
    );
    settings.bind(|| {
        for name in [
            "python3.9",
            "python2.7",
            "pypy3",
            "python3.14t",
            "not-python",
            "garbled",
            "talks-forever",
        ] {
            assert_cmd_snapshot!(
                name,
                lab().args(["lesson", "3", "--python"]).arg(fake(name))
            );
        }
        assert_cmd_snapshot!(
            "not_on_path",
            lab().args(["lesson", "3", "--python", "python2.1"])
        );
        assert_cmd_snapshot!(
            "from_the_environment",
            lab()
                .env("REFCOUNT_LAB_PYTHON", fake("python3.9"))
                .args(["run", "x.py"])
        );
    });
}

/// An interpreter that never answers is given up on (after 30 s), and nothing it started
/// is left running.
#[test]
fn an_interpreter_that_never_answers_is_given_up_on() {
    let output = lab()
        .args(["lesson", "3", "--python"])
        .arg(fake("never-answers"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did not answer within 30 s and was stopped"),
        "{stderr}"
    );
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
