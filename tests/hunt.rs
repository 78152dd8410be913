//! `refcount-lab hunt` on real targets: the HashTable test-suite in correct mode and under
//! leaking faults, and fixture scripts that leak once per run or fill a cache once.

use std::path::Path;
use std::process::{Command, Output};

const SUITE: [&str; 5] = [
    "-m",
    "unittest",
    "test_hashtable",
    "test_mapping_protocol",
    "test_model",
];

fn hunt(dir: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .arg("hunt")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .output()
        .expect("refcount-lab runs")
}

fn report(output: &Output) -> String {
    format!(
        "{}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn correct_code_reports_no_leak_in_ten_hunts() {
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..5 {
                    let output = hunt("tests/py", &SUITE);
                    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
                    assert!(report(&output).contains("no leak"));
                }
            });
        }
    });
}

#[test]
fn leaking_faults_are_found_and_the_leaking_type_named() {
    for (fault, named) in [
        ("dealloc-missing-decref", "LEAK objects: function"),
        ("hash-result-leak", "LEAK objects: Hash:"),
        ("error-path-leak", "LEAK objects: Payload:"),
    ] {
        let mut args = vec!["--fault", fault];
        args.extend(SUITE);
        let output = hunt("tests/py", &args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{fault}: {}",
            report(&output)
        );
        assert!(
            report(&output).contains(named),
            "{fault}: {}",
            report(&output)
        );
    }
}

#[test]
fn one_leaked_object_per_run_is_found_and_a_cache_is_not() {
    let leak = hunt("fixtures/hunt", &["leaks_one_per_run.py::run"]);
    assert_eq!(leak.status.code(), Some(1), "{}", report(&leak));
    assert!(
        report(&leak).contains("LEAK objects: Record: +1.0 per run"),
        "{}",
        report(&leak)
    );

    let cache = hunt("fixtures/hunt", &["caches_once.py::run"]);
    assert_eq!(cache.status.code(), Some(0), "{}", report(&cache));
    assert!(report(&cache).contains("no leak"));
}

#[test]
fn json_has_every_measurement() {
    let output = hunt(
        "fixtures/hunt",
        &["--format", "json", "--repeat", "4", "caches_once.py::run"],
    );
    let hunt: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(hunt["repetitions"].as_array().unwrap().len(), 6);
    assert_eq!(hunt["config"]["warmup"], 2);
    assert!(hunt["repetitions"][0]["census"]["Record"].as_i64().unwrap() >= 100);
    assert_eq!(hunt["leaks"], serde_json::json!([]));
}

#[test]
fn a_failing_target_is_an_error_with_its_own_traceback() {
    let output = hunt("fixtures/hunt", &["raises.py"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("after 2 of 5 runs"), "{text}");
    assert!(text.contains("File \"raises.py\", line 6"), "{text}");
    assert!(
        !text.contains("hunt.py") && !text.contains("runpy"),
        "{text}"
    );
}

#[test]
fn nothing_to_hunt_in_is_an_error() {
    for args in [&[][..], &["no_such_script.py"][..]] {
        let output = hunt("fixtures/hunt", args);
        assert_eq!(output.status.code(), Some(2), "{}", report(&output));
    }
}

#[test]
fn a_watched_name_the_target_creates_is_found_after_it_runs() {
    let output = hunt(
        "fixtures/hunt",
        &["sets_a_cache.py", "--watch", "json.hunt_cache"],
    );
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("LEAK allocated blocks"), "{text}");

    let output = hunt(
        "fixtures/hunt",
        &["sets_a_cache.py", "--watch", "json.not_there"],
    );
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--watch json.not_there: there is no object"),
        "{text}"
    );
    assert!(!text.contains("hunted target"), "{text}");
}
