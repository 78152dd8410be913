//! Safe on a shared machine and safe to interrupt: the attacks of issue 23, each run for
//! real. Every command here runs with its own `TMPDIR`, so that the test can see that its
//! scratch folders are gone, and with a marker in its environment, so that the test can
//! find (through `/proc`) every process it started, wherever it moved.
//!
//! Nothing here depends on the machine's speed: a process is interrupted once it is seen
//! running and frozen (`SIGSTOP`), so it cannot finish first, and every wait is for an
//! event, with a limit far beyond any machine's need.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = "REFCOUNT_LAB_SAFETY_TEST";
/// Far beyond what any event here needs; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(300);

/// A private `TMPDIR` and a marker, for one test.
struct Sandbox {
    root: PathBuf,
    marker: String,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let root = std::env::temp_dir().join(format!("rl-safety-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        Sandbox {
            marker: format!("{name}-{}", std::process::id()),
            root,
        }
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lab(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_refcount-lab"));
        command
            .args(args)
            .env("TMPDIR", self.tmp())
            .env_remove("XDG_RUNTIME_DIR")
            .env("REFCOUNT_LAB_STATE_DIR", self.root.join("state"))
            .env(MARKER, &self.marker)
            .current_dir(fixtures());
        command
    }

    /// Live processes (not zombies) carrying this test's marker, but `except`.
    fn marked(&self, except: Option<u32>) -> Vec<(u32, String)> {
        let needle = format!("{MARKER}={}\0", self.marker);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if Some(pid) == except {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let state = stat.rsplit_once(") ").map_or("?", |(_, rest)| &rest[..1]);
            let marked = environ
                .windows(needle.len())
                .any(|window| window == needle.as_bytes());
            if marked && state != "Z" && state != "X" {
                found.push((pid, stat));
            }
        }
        found
    }

    /// Waits until no marked process is alive.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.marked(None).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left running: {:?}",
                self.marked(None)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_scratch_removed(&self) {
        let left: Vec<_> = std::fs::read_dir(self.tmp()).unwrap().flatten().collect();
        assert!(left.is_empty(), "scratch left behind: {left:?}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for (pid, _) in self.marked(None) {
            // SAFETY: killing a process this test started (it carries the test's marker).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn report(output: &Output) -> String {
    format!(
        "{}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Is `pid` a child interpreter running a script (through refcount-lab's launcher)?
fn runs_a_script(pid: u32) -> bool {
    let launcher = b"refcount_lab_launch.py";
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .windows(launcher.len())
            .any(|window| window == launcher)
    })
}

/// Waits for a script of `child`'s to run, freezes it so that the command cannot finish on
/// its own, then sends `signal` to refcount-lab.
fn interrupt_once_running(sandbox: &Sandbox, child: Child, signal: i32) -> Output {
    match try_interrupt_once_running(sandbox, child, signal) {
        Ok(output) => output,
        Err(status) => panic!(
            "{:?} ended before it could be interrupted: {status}",
            sandbox.marker
        ),
    }
}

/// [`interrupt_once_running`], or how the command ended if it ended first (a quick one,
/// such as a lesson, may end between two looks on a busy machine).
fn try_interrupt_once_running(
    sandbox: &Sandbox,
    mut child: Child,
    signal: i32,
) -> Result<Output, std::process::ExitStatus> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let marked = sandbox.marked(Some(child.id()));
        if let Some((pid, _)) = marked.iter().find(|(pid, _)| runs_a_script(*pid)) {
            // SAFETY: signalling processes this test started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGSTOP);
                libc::kill(child.id() as i32, signal);
            }
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        assert!(Instant::now() < deadline, "no child process ever started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.stdin.take();
    Ok(child.wait_with_output().unwrap())
}

fn spawn(mut command: Command) -> Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ctrl-C on every command that runs a child: exit 130, "interrupted", nothing left running,
/// no scratch folder left.
#[test]
fn ctrl_c_stops_everything_every_command_started() {
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("lesson", vec!["lesson", "3", "--no-predict"]),
        ("run", vec!["run", "attacks/sleeps_with_a_daemon.py"]),
        ("hunt", vec!["hunt", "attacks/sleeps_with_a_daemon.py"]),
        // Two copies of refcount-lab, each with its own runs and scratch folders.
        (
            "hunt-jobs",
            vec![
                "hunt",
                "--jobs",
                "2",
                "-m",
                "unittest",
                "hunt/test_clean.py",
            ],
        ),
        ("bench", vec!["bench", "--quick"]),
        ("exercise", vec!["exercise", "14"]),
        ("verify", vec!["verify"]),
    ];
    for (name, args) in commands {
        let sandbox = Sandbox::new(&format!("ctrl-c-{name}"));
        if matches!(name, "exercise" | "verify") {
            let work = sandbox.root.join("work");
            let init = sandbox
                .lab(&["exercises", "init", work.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(init.status.success(), "{}", report(&init));
            let solution = fixtures().join("exercise-solutions/01-predict-buckets.py");
            // Over the starting file, keeping its mode (the checkout's may let others write).
            std::fs::write(
                work.join("01-predict-buckets.py"),
                std::fs::read(solution).unwrap(),
            )
            .unwrap();
        }
        // Until one try interrupts it while a script runs.
        let output = (0..20)
            .find_map(|_| {
                try_interrupt_once_running(&sandbox, spawn(sandbox.lab(&args)), libc::SIGINT).ok()
            })
            .unwrap_or_else(|| panic!("{name} always ended before it could be interrupted"));
        assert_eq!(
            output.status.code(),
            Some(130),
            "{name}: {}",
            report(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("interrupted (SIGINT)"), "{name}: {stderr}");
        sandbox.assert_nothing_left();
        sandbox.assert_scratch_removed();
    }
}

/// SIGTERM and SIGHUP stop a run as Ctrl-C does, with their own exit status.
#[test]
fn every_terminating_signal_stops_everything_too() {
    // Those a shell sends, and the rarer ones anyone may send with `kill`.
    let real_time = libc::SIGRTMIN() + 6;
    for signal in [
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGABRT,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGBUS,
        real_time,
    ] {
        let sandbox = Sandbox::new(&format!("signal-{signal}"));
        let child = spawn(sandbox.lab(&["run", "attacks/sleeps_with_a_daemon.py"]));
        let output = interrupt_once_running(&sandbox, child, signal);
        assert_eq!(
            output.status.code(),
            Some(128 + signal),
            "{}",
            report(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("refcount-lab: interrupted (SIG"),
            "{}",
            report(&output)
        );
        sandbox.assert_nothing_left();
        sandbox.assert_scratch_removed();
    }
}

/// The state letter of a process's `/proc/PID/stat` (`T`: stopped), `?` once it is gone.
fn state_of(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or('?', |stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .unwrap_or('?')
    })
}

/// Waits until `ready()` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ctrl-Z stops the run with refcount-lab (the run's group and session are its own, which
/// the terminal does not reach), and `fg` lets them go on together; Ctrl-C then ends both
/// as ever.
#[test]
fn ctrl_z_stops_the_run_too_and_fg_lets_it_go_on() {
    let sandbox = Sandbox::new("ctrl-z");
    let mut child = spawn(sandbox.lab(&["run", "attacks/sleeps_with_a_daemon.py"]));
    let lab = child.id();
    wait_until("the script's daemon runs", || {
        sandbox
            .marked(Some(lab))
            .iter()
            .any(|(_, stat)| stat.contains("(sleep)"))
    });
    // SAFETY: signalling the refcount-lab this test started.
    unsafe { libc::kill(lab as i32, libc::SIGTSTP) };
    wait_until("refcount-lab stops", || state_of(lab) == 'T');
    let run = sandbox.marked(Some(lab));
    assert!(run.len() >= 2, "{run:?}"); // the interpreter and its daemon, at least
    for (pid, stat) in &run {
        assert_eq!(state_of(*pid), 'T', "not stopped with refcount-lab: {stat}");
    }
    // SAFETY: as above.
    unsafe { libc::kill(lab as i32, libc::SIGCONT) };
    wait_until("the run goes on", || {
        run.iter().all(|(pid, _)| state_of(*pid) != 'T') && state_of(lab) != 'T'
    });
    // SAFETY: as above.
    unsafe { libc::kill(lab as i32, libc::SIGINT) };
    child.stdin.take();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", report(&output));
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// Does a run get a PID namespace of its own here (not where the kernel or a policy
/// refuses unprivileged namespaces)? The script is pid 2 inside one.
fn runs_in_a_namespace(sandbox: &Sandbox) -> bool {
    let output = sandbox
        .lab(&["run", "attacks/tells_its_pid.py"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
    let contained = String::from_utf8_lossy(&output.stdout).contains("│ 2\n");
    if !contained {
        eprintln!("no PID namespace for a run here: only refcount-lab's child is held");
    }
    contained
}

/// Killed outright (SIGKILL: nothing of refcount-lab's runs), its child dies with it, and
/// inside a namespace so does every process the script started.
#[test]
fn killed_outright_nothing_it_started_survives() {
    let sandbox = Sandbox::new("sigkill");
    let contained = runs_in_a_namespace(&sandbox);
    let mut child = spawn(sandbox.lab(&["run", "attacks/sleeps_with_a_daemon.py"]));
    let deadline = Instant::now() + PATIENCE;
    let (python, daemon) = loop {
        let found = sandbox.marked(Some(child.id()));
        let python = found.iter().find(|(_, stat)| stat.contains("(python"));
        let daemon = found.iter().find(|(_, stat)| stat.contains("(sleep)"));
        if let (Some((python, _)), Some((daemon, _))) = (python, daemon) {
            break (*python, *daemon);
        }
        assert!(Instant::now() < deadline, "the script never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let outliving = |pid: u32| sandbox.marked(None).iter().any(|(found, _)| *found == pid);
    while outliving(python) || (contained && outliving(daemon)) {
        assert!(
            Instant::now() < deadline,
            "outlived refcount-lab: {:?}",
            sandbox.marked(None)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Inside a namespace a script cannot name refcount-lab: stopping or killing its parent
/// reaches the namespace's init, which ignores both, and the timeout holds.
#[test]
fn a_script_cannot_stop_or_kill_refcount_lab() {
    let sandbox = Sandbox::new("parent");
    if !runs_in_a_namespace(&sandbox) {
        return;
    }
    let output = sandbox
        .lab(&[
            "run",
            "attacks/stops_and_kills_its_parent.py",
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", report(&output));
    assert!(stdout.contains("outcome:  timeout"), "{stdout}");
    assert!(stdout.contains("stopped:  sleep"), "{stdout}");
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// A script that leaves its process group (for refcount-lab's, or a child's) is still
/// stopped at the timeout, and the report says so.
#[test]
fn a_script_cannot_escape_the_timeout_by_changing_its_process_group() {
    for script in [
        "attacks/escapes_by_joining_the_parents_group.py",
        "attacks/escapes_into_a_grandchilds_group.py",
    ] {
        let sandbox = Sandbox::new("process-group");
        let output = sandbox
            .lab(&["run", script, "--timeout", "1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{}", report(&output));
        assert!(stdout.contains("outcome:  timeout"), "{script}: {stdout}");
        sandbox.assert_nothing_left();
        sandbox.assert_scratch_removed();
    }
}

/// Work a script leaves behind, even a daemon that keeps changing its pid, is part of the
/// run: still running at the timeout, it is stopped, named, and the run is not `ok`.
#[test]
fn a_script_that_leaves_processes_is_not_ok() {
    let sandbox = Sandbox::new("leftovers");
    let output = sandbox
        .lab(&["run", "attacks/hops_pids.py", "--timeout", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", report(&output));
    assert!(!stdout.contains("outcome:  ok"), "{stdout}");
    assert!(stdout.contains("stopped:  python3"), "{stdout}");
    sandbox.assert_nothing_left();
}

/// Events count only from the script's own process: a fork's `done` cannot hide the
/// script's `os._exit`, and a fork freeing its copy of a table cannot hide the leak.
#[test]
fn events_from_forks_count_for_nothing() {
    let sandbox = Sandbox::new("forks");
    for (script, outcome) in [
        ("attacks/fork_hides_os_exit.py", "outcome:  error"),
        ("attacks/fork_frees_the_leaked_table.py", "outcome:  leaked"),
    ] {
        let output = sandbox
            .lab(&["run", script, "--timeout", "600"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(outcome), "{script}: {stdout}");
        assert!(stdout.contains("of the script w"), "{stdout}");
    }
}

/// The parent's memory is bounded whatever the script sends: 1000 `say`s of 1 MB, and
/// 1.1 million tables made past every cap (whose one leak is still found).
#[test]
fn what_a_script_sends_cannot_grow_refcount_lab() {
    let sandbox = Sandbox::new("bounded");
    for (script, outcome) in [
        ("attacks/says_a_gigabyte.py", "outcome:  ok"),
        ("attacks/makes_a_million_tables.py", "outcome:  leaked"),
    ] {
        // Waited for with wait4 below, which also gives its resource usage.
        #[allow(clippy::zombie_processes)]
        let child = spawn(sandbox.lab(&["run", script, "--timeout", "3600"]));
        let pid = child.id() as i32;
        // Waited for here, with its resource usage (its own and its waited-for children's).
        let mut status = 0;
        // SAFETY: `usage` is a plain C struct that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let stdout = std::thread::spawn({
            let mut out = child.stdout.unwrap();
            move || {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut out, &mut text).unwrap();
                text
            }
        });
        // SAFETY: waiting for our own child, once.
        assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
        let stdout = stdout.join().unwrap();
        assert!(stdout.contains(outcome), "{script}: {stdout}");
        let peak_mib = usage.ru_maxrss / 1024;
        assert!(peak_mib < 200, "{script}: peak {peak_mib} MiB");
    }
}

/// Only refcount-lab's own code runs: files planted where a run starts (a learner's
/// folder, or a shared one) are never imported in place of the standard library or of
/// refcount-lab's module.
#[test]
fn files_planted_beside_a_run_are_never_imported() {
    let sandbox = Sandbox::new("planted");
    let planted = sandbox.root.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let ran = sandbox.root.join("planted-code-ran");
    let payload = format!(
        "open({:?}, 'a').write(__name__ + '\\n')\n",
        ran.display().to_string()
    );
    for name in [
        "lab.py",
        "json.py",
        "dis.py",
        "sitecustomize.py",
        "hashtable.py",
        "linecache.py",
        "pkgutil.py",
        "traceback.py",
    ] {
        std::fs::write(planted.join(name), &payload).unwrap();
    }
    std::fs::create_dir(planted.join("_labtrace")).unwrap();
    std::fs::write(planted.join("_labtrace/__init__.py"), &payload).unwrap();
    let lesson = sandbox
        .lab(&["lesson", "3", "--no-predict"])
        .current_dir(&planted)
        .output()
        .unwrap();
    assert!(lesson.status.success(), "{}", report(&lesson));
    let script = fixtures().join("attacks/plants_nothing.py");
    let copy = sandbox.root.join("plants_nothing.py");
    std::fs::copy(script, &copy).unwrap();
    let run = sandbox
        .lab(&["run", copy.to_str().unwrap()])
        .current_dir(&planted)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("lab is refcount-lab's: True"), "{stdout}");
    let hunt = sandbox
        .lab(&["hunt", copy.to_str().unwrap(), "--repeat", "1"])
        .current_dir(&planted)
        .output()
        .unwrap();
    assert!(hunt.status.code().is_some(), "{}", report(&hunt));
    assert!(
        !ran.exists(),
        "planted code ran: {:?}",
        std::fs::read_to_string(&ran)
    );
}

/// A learner's own hashtable.py or lab.py beside their script is not imported in place of
/// refcount-lab's modules (the script's folder is first on `sys.path`, as with `python
/// script.py`), and the report says so, once.
/// refcount-lab's own Python (hunt's harness, lab's report of an exception) imports what it
/// needs before the target's folder (the script's, or the current one) goes first on
/// `sys.path`, or after it has left: another user's `pkgutil.py`, `ctypes.py`, `pytest.py`
/// or `traceback.py` in a shared folder is not run.
#[test]
fn the_hunts_harness_imports_nothing_from_the_targets_folder() {
    let sandbox = Sandbox::new("hunt-planted");
    let shared = sandbox.root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let ran = sandbox.root.join("planted-ran");
    let payload = format!("open({:?}, 'w').write('ran')\n", ran.to_str().unwrap());
    for module in [
        "pkgutil",
        "pytest",
        "ctypes",
        "linecache",
        "unittest",
        "traceback",
    ] {
        std::fs::write(shared.join(format!("{module}.py")), &payload).unwrap();
    }
    std::fs::write(shared.join("target.py"), "x = 1\n").unwrap();
    // A leak, so that the hunt names it (and 3.11's naming needs ctypes).
    std::fs::write(
        shared.join("leaks.py"),
        "import os\nclass Record: pass\nos.__dict__.setdefault('_kept', []).append(Record())\n",
    )
    .unwrap();
    std::fs::write(shared.join("raises.py"), "raise ValueError('mine')\n").unwrap();
    for args in [
        vec!["hunt", "target.py"],
        vec!["hunt", "leaks.py"],
        vec!["hunt", "--pytest", "--", "target.py"],
        vec!["run", "raises.py"],
    ] {
        let output = sandbox.lab(&args).current_dir(&shared).output().unwrap();
        assert!(
            !ran.exists(),
            "{args:?} ran a planted module: {}",
            report(&output)
        );
    }
}

#[test]
fn modules_beside_the_script_do_not_replace_refcount_labs() {
    let sandbox = Sandbox::new("beside");
    let mine = sandbox.root.join("mine");
    std::fs::create_dir(&mine).unwrap();
    let ran = sandbox.root.join("planted-code-ran");
    let payload = format!(
        "open({:?}, 'a').write(__name__ + '\\n')\n",
        ran.display().to_string()
    );
    for name in ["hashtable.py", "lab.py"] {
        std::fs::write(mine.join(name), &payload).unwrap();
    }
    let script = mine.join("plants_nothing.py");
    std::fs::copy(fixtures().join("attacks/plants_nothing.py"), &script).unwrap();
    let output = sandbox
        .lab(&["run", script.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", report(&output));
    assert!(
        !ran.exists(),
        "a module beside the script ran: {:?}",
        std::fs::read_to_string(&ran)
    );
    assert!(
        stdout.contains("hashtable is refcount-lab's: True"),
        "{stdout}"
    );
    assert!(stdout.contains("lab is refcount-lab's: True"), "{stdout}");
    let said = stdout.replace("\n            ", " ");
    let note = "hashtable.py, lab.py beside the script were not used";
    assert_eq!(said.matches(note).count(), 1, "{stdout}");
    sandbox.assert_scratch_removed();
}

/// A scratch folder is never put where another user could swap it for their own: a
/// temporary folder others may change without the sticky bit is refused, with a way out.
#[test]
fn a_temporary_folder_others_may_change_is_refused() {
    let sandbox = Sandbox::new("open-tmp");
    std::fs::set_permissions(sandbox.tmp(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = sandbox
        .lab(&["lesson", "3", "--no-predict"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", report(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no sticky bit"), "{stderr}");
    assert!(stderr.contains("Set TMPDIR"), "{stderr}");
    std::fs::set_permissions(sandbox.tmp(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let output = sandbox
        .lab(&["lesson", "3", "--no-predict"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", report(&output));
    sandbox.assert_scratch_removed();
}

/// Is `pid` waiting for a file lock (flock), as `/proc/locks` says?
fn waits_for_a_lock(pid: u32) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let pid = pid.to_string();
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->") && fields.contains(&pid.as_str())
    })
}

/// SIGTERM or Ctrl-C during `exercises init` leaves no partial folder, no temporary folder
/// and no temporary progress file. The test holds the progress lock, which init fills its
/// folder under, so the signal comes at the same point every time.
#[test]
fn an_interrupted_init_leaves_nothing_behind() {
    use std::os::fd::AsRawFd;
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let sandbox = Sandbox::new(&format!("init-{signal}"));
        let state = sandbox.root.join("state");
        std::fs::create_dir(&state).unwrap();
        let lock = std::fs::File::create(state.join("progress.lock")).unwrap();
        // SAFETY: flock reads only its two integer arguments; the descriptor is `lock`'s.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let work = sandbox.root.join("work");
        let child = spawn(sandbox.lab(&["exercises", "init", work.to_str().unwrap()]));
        let deadline = Instant::now() + PATIENCE;
        while !waits_for_a_lock(child.id()) {
            assert!(Instant::now() < deadline, "init never waited for the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(child.id() as i32, signal) };
        let output = child.wait_with_output().unwrap();
        drop(lock);
        assert_eq!(output.status.code(), Some(code), "{}", report(&output));
        assert!(
            !work.exists(),
            "a partial folder: {:?}",
            std::fs::read_dir(&work)
        );
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&sandbox.root), ["state", "tmp"]);
        assert_eq!(names(&state), ["progress.lock"]);
        sandbox.assert_scratch_removed();
    }
}

/// `exercises init` refuses a folder other users may change, as the temporary folder is
/// refused: one they may write in without the sticky bit (they could swap the folder made
/// there), or one they may add files to (a module the learner's scripts would import).
#[test]
fn init_refuses_a_folder_others_may_change() {
    let sandbox = Sandbox::new("init-shared");
    let open = sandbox.root.join("open");
    let sticky = sandbox.root.join("sticky");
    for (dir, mode) in [(&open, 0o777), (&sticky, 0o1777)] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut refused = vec![open.join("work"), open.clone(), sticky.clone()];
    let other = SecondUser::make();
    if let Some(other) = &other {
        let theirs = sandbox.root.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let chown = Command::new("chown").arg(other.0).arg(&theirs).status();
        assert!(chown.unwrap().success());
        refused.push(theirs);
    }
    for dir in &refused {
        let output = sandbox
            .lab(&["exercises", "init", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{dir:?}: {}",
            report(&output)
        );
        assert!(stderr.contains("can be changed by other users"), "{stderr}");
        assert!(
            stderr.contains("Pick a folder only you can change"),
            "{stderr}"
        );
        assert!(!dir.join("01-predict-buckets.py").exists(), "{dir:?}");
    }
    assert!(!open.join("work").exists());
    // A folder of one's own made in a sticky one, as in /tmp, is fine.
    let mine = sticky.join("work");
    let output = sandbox
        .lab(&["exercises", "init", mine.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", report(&output));
    let mode = std::fs::metadata(&mine).unwrap().permissions().mode();
    assert_eq!(mode & 0o022, 0, "others may not change it: {mode:o}");
}

/// A second local user, made by the test where the machine allows it (root, `useradd`;
/// the CI machine runs as root), removed again when dropped.
struct SecondUser(&'static str);

impl SecondUser {
    fn make() -> Option<SecondUser> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: making a second user needs root");
            return None;
        }
        // One name per test binary run would race between tests: one per test.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name: &'static str = Box::leak(format!("rlab-other{n}").into_boxed_str());
        let _ = Command::new("userdel").arg(name).output();
        let made = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", name])
            .output();
        if !made.is_ok_and(|output| output.status.success()) {
            eprintln!("skipped: useradd is not available here");
            return None;
        }
        Some(SecondUser(name))
    }

    /// Runs `python3 SCRIPT ARGS…` as this user, the script given on stdin: the checkout
    /// may sit in a folder this user cannot read.
    fn python(&self, script: &Path, args: &[&Path]) -> Output {
        use std::io::Write;
        let mut child = Command::new("runuser")
            .args(["-u", self.0, "--", "python3", "-"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let source = std::fs::read(script).unwrap();
        child.stdin.take().unwrap().write_all(&source).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for SecondUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.0).output();
    }
}

/// The same with a real second user: a folder of theirs is refused even with no write bit
/// for others, and even sticky.
#[test]
fn a_temporary_folder_of_another_user_is_refused() {
    let Some(other) = SecondUser::make() else {
        return;
    };
    let user = other.0;
    let sandbox = Sandbox::new("other-user");
    let chown = Command::new("chown")
        .arg(user)
        .arg(sandbox.tmp())
        .status()
        .unwrap();
    assert!(chown.success());
    // Sticky or not: its owner may rename what is in it, and so swap our folder.
    for mode in [0o755, 0o1777] {
        std::fs::set_permissions(sandbox.tmp(), std::fs::Permissions::from_mode(mode)).unwrap();
        let output = sandbox
            .lab(&["lesson", "3", "--no-predict"])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{mode:o}: {}",
            report(&output)
        );
        assert!(String::from_utf8_lossy(&output.stderr).contains("can be changed by other users"));
    }
}

/// `--timeout` is bounded, with a clear error, not a panic.
#[test]
fn a_huge_timeout_is_refused() {
    let sandbox = Sandbox::new("huge-timeout");
    for value in ["86401", "9223372036854775808", "18446744073709551615"] {
        let output = sandbox
            .lab(&["run", "attacks/hops_pids.py", "--timeout", value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", report(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("1..=86400"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(sandbox.marked(None).is_empty());
}

/// A signal the interpreter dies of under `refcount-lab python` is the command's too, and
/// the module folder is removed all the same.
#[test]
fn the_python_command_ends_as_its_interpreter_did() {
    let sandbox = Sandbox::new("python-signal");
    let output = sandbox
        .lab(&[
            "python",
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        report(&output)
    );
    sandbox.assert_scratch_removed();
}

/// What an interpreter run by `refcount-lab python` leaves running (a child, a daemon in
/// a session of its own) is stopped when it ends, and named.
#[test]
fn the_python_command_leaves_nothing_running() {
    let sandbox = Sandbox::new("python-leftovers");
    let output = sandbox
        .lab(&[
            "python",
            "-c",
            "import subprocess; subprocess.Popen(['sleep', '100000']); \
             subprocess.Popen(['sleep', '100001'], start_new_session=True)",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("stopped what the interpreter left running: sleep, sleep"),
        "{}",
        report(&output)
    );
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// `refcount-lab python` killed with its whole process group (by its own script, or by
/// SIGKILL from outside): in a namespace, nothing the script started survives it.
#[test]
fn the_python_command_killed_outright_leaves_nothing() {
    use std::os::unix::process::CommandExt;
    let sandbox = Sandbox::new("python-killpg");
    // Without one, the daemon outlives it (and holds the output pipes open).
    if !runs_in_a_namespace(&sandbox) {
        return;
    }
    let mut command = sandbox.lab(&[
        "python",
        "-c",
        "import os, signal, subprocess\n\
         daemon = subprocess.Popen(['sleep', '100002'], start_new_session=True)\n\
         while not os.path.exists(f'/proc/{daemon.pid}/cmdline') or \
         b'100002' not in open(f'/proc/{daemon.pid}/cmdline', 'rb').read(): pass\n\
         os.killpg(0, signal.SIGKILL)",
    ]);
    // Its own group, which the script kills (not this test's).
    command.process_group(0);
    let output = command.output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "{}",
        report(&output)
    );
    sandbox.assert_nothing_left();
}

/// Ctrl-C typed at a lesson's prediction prompt, on a real terminal.
#[test]
fn ctrl_c_at_the_prediction_prompt() {
    use std::io::Write;
    let sandbox = Sandbox::new("prompt");
    let (mut terminal, mut child) = on_a_terminal(sandbox.lab(&["lesson", "3"]));
    let mut seen = Vec::new();
    read_until(&mut terminal, &mut seen, "your answer");
    terminal.write_all(b"\x03").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// `refcount-lab python` on a terminal is the learner's interpreter: Ctrl-C interrupts
/// what it is doing, not the command, and it goes on.
#[test]
fn ctrl_c_in_the_python_command_is_the_interpreters() {
    use std::io::Write;
    let sandbox = Sandbox::new("python-ctrl-c");
    let mut command = sandbox.lab(&["python", "-q"]);
    // The plain REPL (3.13.0's new one, run alone too, exits 1 on `raise SystemExit(5)`),
    // left with `os._exit`, whose status no REPL changes (after a KeyboardInterrupt,
    // 3.14's turn `SystemExit(5)` into 1, or into SIGINT under refcount-lab).
    command.env("PYTHON_BASIC_REPL", "1");
    let (mut terminal, mut child) = on_a_terminal(command);
    let mut seen = Vec::new();
    read_until(&mut terminal, &mut seen, ">>> ");
    // The echo of the line holds neither of the words looked for. Short sleeps, forever: a
    // Ctrl-C that lands between the print and the start of one long sleep would be seen
    // only when that sleep ends.
    terminal
        .write_all(
            b"import time; print('sleep' + 'ing'); [time.sleep(0.05) for _ in iter(int, 1)]\n",
        )
        .unwrap();
    read_until(&mut terminal, &mut seen, "sleeping\r\n");
    terminal.write_all(b"\x03").unwrap();
    read_until(&mut terminal, &mut seen, "KeyboardInterrupt");
    // Typed at the next prompt, not before it.
    let interrupted = String::from_utf8_lossy(&seen)
        .find("KeyboardInterrupt")
        .unwrap();
    read_until_from(&mut terminal, &mut seen, interrupted, ">>> ");
    terminal
        .write_all(b"print(6 * 7); import os; os._exit(5)\n")
        .unwrap();
    read_until(&mut terminal, &mut seen, "42");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "{}", String::from_utf8_lossy(&seen));
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// Started by a shell script's background job, which ignores Ctrl-C and Ctrl-\\,
/// refcount-lab still gives its interpreter their default actions, with namespaces and
/// without: Ctrl-C is the interpreter's to take either way.
#[test]
fn an_interpreter_takes_ctrl_c_even_when_refcount_lab_was_started_ignoring_it() {
    use std::os::unix::process::CommandExt;
    let sandbox = Sandbox::new("ignored-ctrl-c");
    let show = "import signal as s; print(s.getsignal(s.SIGINT) is s.default_int_handler, \
                s.getsignal(s.SIGQUIT) == s.SIG_DFL)";
    for namespaces_off in ["", "1"] {
        let mut command = sandbox.lab(&["python", "-c", show]);
        command.env("REFCOUNT_LAB_NO_NAMESPACE", namespaces_off);
        // SAFETY: signal() is async-signal-safe; it runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            });
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", report(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "True True\n",
            "namespaces off: {namespaces_off:?}"
        );
    }
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// Starts `command` in a session of its own whose controlling terminal is a new
/// pseudo-terminal (whose line discipline turns `^C` into SIGINT for the foreground
/// process group); returns the terminal's other end.
fn on_a_terminal(mut command: Command) -> (std::fs::File, Child) {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (master, slave) = {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills in two descriptors, which are then owned here.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        }
    };
    command
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: setsid and ioctl are async-signal-safe; the terminal becomes the child's own.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(command);
    (master, child)
}

/// Reads the terminal into `seen` until it holds `needle`.
fn read_until(terminal: &mut std::fs::File, seen: &mut Vec<u8>, needle: &str) {
    read_until_from(terminal, seen, 0, needle);
}

/// [`read_until`], for `needle` at `from` or after in what was seen.
fn read_until_from(terminal: &mut std::fs::File, seen: &mut Vec<u8>, from: usize, needle: &str) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen[from.min(seen.len())..]).contains(needle) {
        // Bounded, so that a run that went wrong fails the test instead of hanging the suite.
        let mut ready = libc::pollfd {
            fd: terminal.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let polled = unsafe { libc::poll(&mut ready, 1, 60_000) };
        assert!(
            polled > 0,
            "{needle:?} did not come within a minute: {}",
            String::from_utf8_lossy(seen)
        );
        let n = terminal.read(&mut buffer).unwrap_or(0);
        assert!(
            n > 0,
            "{needle:?} never came: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
}

/// A script that hands its output pipes to a process outside the run (which holds them for
/// an hour, writing without end) ends the report when the run ends, not when that process
/// lets go.
#[test]
fn pipes_handed_to_an_outside_process_do_not_hold_the_report() {
    use std::io::BufRead;
    let sandbox = Sandbox::new("handed-out");
    let socket = sandbox.root.join("socket");
    let mut holder = Command::new("python3")
        .arg(fixtures().join("attacks/holds_the_fds_it_is_sent.py"))
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "listening");
    let output = sandbox
        .lab(&["run", "attacks/hands_its_pipes_out.py", "--timeout", "3600"])
        .env("REFCOUNT_LAB_ATTACK_SOCKET", &socket)
        .output()
        .unwrap();
    // The holder still holds the pipes: the report did not wait for it.
    let holder_alive = holder.try_wait().unwrap().is_none();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(holder_alive, "the holder ended first");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("handed stdout, stderr and the trace pipe out"),
        "{stdout}"
    );
    assert!(stdout.contains("outcome:  ok"), "{stdout}");
}

/// A fork bomb is stopped once the run has more than 1024 processes at once (and, for a
/// user other than root, the kernel refuses its forks beyond twice that).
#[test]
fn a_fork_bomb_is_stopped() {
    let sandbox = Sandbox::new("fork-bomb");
    let output = sandbox
        .lab(&["run", "attacks/forks_without_end.py", "--timeout", "3600"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", report(&output));
    assert!(stdout.contains("(a fork bomb?)"), "{stdout}");
    sandbox.assert_nothing_left();
    sandbox.assert_scratch_removed();
}

/// Another user who fills a shared temporary folder with folders for the next pids, each
/// holding a `lab.py` and a `json.py` (the attack that worked when folders were named
/// `refcount-lab-<pid>-<n>` and reused), gets none of them used: nothing planted runs.
#[test]
fn folders_another_user_planted_are_never_used() {
    let Some(other) = SecondUser::make() else {
        return;
    };
    let sandbox = Sandbox::new("planted-by-another");
    std::fs::set_permissions(&sandbox.root, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(sandbox.tmp(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ran = sandbox.tmp().join("planted-code-ran");
    let plant = fixtures().join("attacks/plants_folders_for_the_next_pids.py");
    let planted = other.python(&plant, &[&sandbox.tmp(), &ran]);
    assert!(planted.status.success(), "{}", report(&planted));
    // The plant works: one of its modules, run, leaves the mark.
    let sample = std::fs::read_dir(sandbox.tmp())
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let ran_sample = Command::new("python3")
        .arg(sample.path().join("lab.py"))
        .status()
        .unwrap();
    assert!(ran_sample.success() && ran.exists());
    std::fs::remove_file(&ran).unwrap();
    for args in [
        vec!["lesson", "3", "--no-predict"],
        vec!["hunt", "attacks/plants_nothing.py", "--repeat", "1"],
    ] {
        let output = sandbox.lab(&args).output().unwrap();
        assert!(output.status.code().is_some(), "{}", report(&output));
    }
    assert!(!ran.exists(), "planted code ran as the victim");
}

/// A file name that holds terminal controls reaches the terminal escaped: in a run's
/// heading, a hunt's first line and an error.
#[test]
fn file_names_reach_the_terminal_escaped() {
    let sandbox = Sandbox::new("names");
    let name = "evil\u{1b}]0;T\u{7}\u{1b}[2J.py";
    let script = sandbox.root.join(name);
    std::fs::write(&script, "print(1)\n").unwrap();
    let script = script.to_str().unwrap();
    let missing = format!("{script}.missing");
    for args in [
        vec!["run", script],
        vec!["hunt", script],
        vec!["run", missing.as_str()],
    ] {
        let output = sandbox.lab(&args).output().unwrap();
        let text = report(&output);
        assert!(text.contains("evil\\x1b]0;T\\x07\\x1b[2J.py"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }
    // Folders named by the learner, in what the workshop says (not only in errors).
    let folder = sandbox.root.join("work\u{1b}[2J\u{202e}");
    let folder = folder.to_str().unwrap();
    for args in [vec!["exercises", "init", folder], vec!["exercises"]] {
        let output = sandbox.lab(&args).output().unwrap();
        let text = report(&output);
        assert_eq!(output.status.code(), Some(0), "{text}");
        assert!(text.contains("work\\x1b[2J\\u{202e}"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
    }
}

/// What the trace cannot vouch for is an error, not `ok`: a process of the script's that
/// relays the module's signed events and drops one (the leaked table's `alloc`), and
/// faulty code that ran only in a fork (a multiprocessing worker that crashes).
#[test]
fn what_the_trace_cannot_vouch_for_is_not_ok() {
    for (script, fault, said) in [
        (
            "attacks/relays_the_trace_but_one_event.py",
            "no-traverse",
            "1 of the script's trace events never arrived",
        ),
        (
            "attacks/faults_in_a_fork.py",
            "set-missing-incref",
            "set-missing-incref ran in a process the script forked, or",
        ),
        (
            "attacks/crashes_a_fork_of_a_fault.py",
            "set-missing-incref",
            "set-missing-incref ran in a process the script forked, or",
        ),
        (
            "attacks/faults_once_then_in_a_fork.py",
            "set-missing-incref",
            "set-missing-incref ran in a process the script forked, or",
        ),
    ] {
        let sandbox = Sandbox::new("unvouched");
        let output = sandbox
            .lab(&["run", script, "--fault", fault])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{}", report(&output));
        assert!(stdout.contains("outcome:  error"), "{stdout}");
        assert!(stdout.contains(said), "{stdout}");
        sandbox.assert_nothing_left();
    }
}

/// The C compiler of a fix-the-C exercise runs in a namespace of its own: SIGKILL of
/// refcount-lab while `cc1` waits on an `#include` that never ends (a FIFO) leaves no
/// compiler behind.
#[test]
fn killed_outright_while_compiling_no_compiler_survives() {
    let sandbox = Sandbox::new("cc-sigkill");
    if !runs_in_a_namespace(&sandbox) {
        return;
    }
    let work = sandbox.root.join("work");
    let init = sandbox
        .lab(&["exercises", "init", work.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", report(&init));
    let fifo = sandbox.root.join("never-ends.h");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a valid C string and a mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    std::fs::write(
        work.join("14-fix-c-returned-default.c"),
        format!("#include \"{}\"\n", fifo.display()),
    )
    .unwrap();
    let mut child = spawn(sandbox.lab(&["exercise", "14"]));
    let deadline = Instant::now() + PATIENCE;
    while !sandbox
        .marked(Some(child.id()))
        .iter()
        .any(|(_, stat)| stat.contains("(cc1)"))
    {
        assert!(Instant::now() < deadline, "the compiler never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sandbox.assert_nothing_left();
}

/// Writes `path` as `user` would have: the file, then its ownership.
fn write_as(user: &str, path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let chown = Command::new("chown").arg(user).arg(path).status().unwrap();
    assert!(chown.success());
}

/// H4 of issue 23: a progress file is trusted only in a state folder of the user's own that
/// no one else may change, only if it is the user's, and the exercise folder it names only
/// if that folder passes the same check. Else another user who writes a progress file
/// naming a folder of theirs gets their "probe" run as the user by `verify`.
#[test]
fn a_progress_file_or_exercise_folder_of_another_user_is_not_trusted() {
    let Some(other) = SecondUser::make() else {
        return;
    };
    let user = other.0;
    let sandbox = Sandbox::new("planted-progress");
    std::fs::set_permissions(&sandbox.root, std::fs::Permissions::from_mode(0o711)).unwrap();
    // Only the user (root here) may create this: the mark that the payload ran as them.
    let ran = sandbox.root.join("payload-ran");
    let payload = format!(
        "open({:?}, 'w').write('ran')\nraise SystemExit(1)\n",
        ran.to_str().unwrap()
    );
    // Their exercise folder: the starting files, with a payload for a probe.
    let theirs = sandbox.root.join("theirs");
    let init = sandbox
        .lab(&["exercises", "init", theirs.to_str().unwrap()])
        .env("REFCOUNT_LAB_STATE_DIR", sandbox.root.join("their-state"))
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", report(&init));
    std::fs::write(theirs.join("10-diagnose-removing.py"), &payload).unwrap();
    let chown = Command::new("chown")
        .args(["-R", user])
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(chown.success());
    let planted = format!(
        "{{\"workdir\": {:?}, \"done\": [], \"passed\": {{}}}}",
        theirs.to_str().unwrap()
    );
    let verify = |state: &Path| {
        let output = sandbox
            .lab(&["verify"])
            .env("REFCOUNT_LAB_STATE_DIR", state)
            .output()
            .unwrap();
        assert!(
            !ran.exists(),
            "their payload ran as the user: {}",
            report(&output)
        );
        assert_eq!(output.status.code(), Some(2), "{}", report(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    // A state folder anyone may write in (sticky or not), their progress file in it.
    let shared = sandbox.root.join("shared-state");
    std::fs::create_dir(&shared).unwrap();
    for mode in [0o1777, 0o777] {
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
        write_as(user, &shared.join("progress.json"), &planted);
        let stderr = verify(&shared);
        assert!(stderr.contains("can be changed by other users"), "{stderr}");
        assert!(
            stderr.contains("REFCOUNT_LAB_STATE_DIR to a folder only you can change"),
            "{stderr}"
        );
        std::fs::remove_file(shared.join("progress.json")).unwrap();
    }
    // A state folder of theirs.
    let their_state = sandbox.root.join("their-state");
    let chown = Command::new("chown")
        .args(["-R", user])
        .arg(&their_state)
        .status()
        .unwrap();
    assert!(chown.success());
    write_as(user, &their_state.join("progress.json"), &planted);
    let stderr = verify(&their_state);
    assert!(stderr.contains("can be changed by other users"), "{stderr}");

    // The user's own state folder, holding a progress file of theirs.
    let state = sandbox.root.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_as(user, &state.join("progress.json"), &planted);
    let stderr = verify(&state);
    assert!(stderr.contains("is not yours"), "{stderr}");
    assert!(stderr.contains("exercises --reset"), "what to do: {stderr}");

    // The user's own progress file, naming their exercise folder.
    std::fs::remove_file(state.join("progress.json")).unwrap();
    std::fs::write(state.join("progress.json"), &planted).unwrap();
    for command in [vec!["verify"], vec!["exercise", "10"]] {
        let output = sandbox.lab(&command).output().unwrap();
        assert!(
            !ran.exists(),
            "their payload ran as the user: {}",
            report(&output)
        );
        assert_eq!(output.status.code(), Some(2), "{}", report(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("the exercise folder"), "{stderr}");
        assert!(stderr.contains("can be changed by other users"), "{stderr}");
        assert!(stderr.contains("exercises init"), "what to do: {stderr}");
    }
    // The user's own exercise folder, in a sticky folder of theirs (its owner may rename
    // what is in it, the sticky bit notwithstanding).
    let their_sticky = sandbox.root.join("their-sticky");
    std::fs::create_dir(&their_sticky).unwrap();
    let mine = their_sticky.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&their_sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let chown = Command::new("chown").arg(user).arg(&their_sticky).status();
    assert!(chown.unwrap().success());
    let progress = format!(
        "{{\"workdir\": {:?}, \"done\": [], \"passed\": {{}}}}",
        mine.to_str().unwrap()
    );
    std::fs::write(state.join("progress.json"), progress).unwrap();
    let output = sandbox.lab(&["verify"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", report(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing the exercise folder"), "{stderr}");
    assert!(stderr.contains("their-sticky can be changed"), "{stderr}");
}

/// A command that finds the progress file locked by another says so once, then waits; one
/// that finds it free says nothing.
#[test]
fn waiting_for_the_progress_lock_is_said_once() {
    use std::os::fd::AsRawFd;
    const WAITING: &str = "waiting for another refcount-lab to finish with the progress file";
    let sandbox = Sandbox::new("lock-wait");
    let state = sandbox.root.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let lock = std::fs::File::create(state.join("progress.lock")).unwrap();
    // SAFETY: flock reads only its two integer arguments; the descriptor is `lock`'s.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let child = spawn(sandbox.lab(&["exercises", "--reset"]));
    let deadline = Instant::now() + PATIENCE;
    while !waits_for_a_lock(child.id()) {
        assert!(
            Instant::now() < deadline,
            "--reset never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(lock);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", report(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches(WAITING).count(), 1, "{stderr}");
    let output = sandbox.lab(&["exercises", "--reset"]).output().unwrap();
    assert!(output.status.success(), "{}", report(&output));
    assert!(output.stderr.is_empty(), "{}", report(&output));
}

/// A SIGKILL leaves refcount-lab's scratch folder behind (nothing of it runs); the next
/// command removes it once it is a minute old, and never the folder of one still running.
#[test]
fn the_next_command_removes_what_a_sigkill_left() {
    let sandbox = Sandbox::new("sweep");
    let backdate = |folder: &Path| {
        let touched = Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(folder)
            .status()
            .unwrap();
        assert!(touched.success());
    };
    let folders = || -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(sandbox.tmp())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        found.sort();
        found
    };
    let start = |sandbox: &Sandbox| {
        let child = spawn(sandbox.lab(&["run", "attacks/sleeps_with_a_daemon.py"]));
        let deadline = Instant::now() + PATIENCE;
        while !sandbox
            .marked(Some(child.id()))
            .iter()
            .any(|(_, stat)| stat.contains("(sleep)"))
        {
            assert!(Instant::now() < deadline, "the script never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    };
    let mut killed = start(&sandbox);
    killed.kill().unwrap();
    killed.wait().unwrap();
    // Without a namespace the script's daemon outlives a SIGKILL (as documented): not
    // this test's subject.
    for (pid, _) in sandbox.marked(None) {
        // SAFETY: killing a process this test started (it carries the test's marker).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    sandbox.assert_nothing_left();
    let left = folders();
    assert!(!left.is_empty(), "a SIGKILL leaves its scratch folder");
    left.iter().for_each(|folder| backdate(folder));

    let mut running = start(&sandbox);
    let theirs: Vec<PathBuf> = folders()
        .into_iter()
        .filter(|f| !left.contains(f))
        .collect();
    theirs.iter().for_each(|folder| backdate(folder));
    let output = sandbox.lab(&["run", "scripts/clean.py"]).output().unwrap();
    assert!(output.status.success(), "{}", report(&output));
    assert_eq!(
        folders(),
        theirs,
        "the killed command's folders go, the running one's stay"
    );
    running.kill().unwrap();
    running.wait().unwrap();
}
