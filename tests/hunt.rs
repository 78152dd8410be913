//! `refcount-lab hunt` on real targets: the HashTable test-suite in correct mode and under
//! leaking faults (and SafeHashTable's, with the leaks safe PyO3 still allows), fixture test modules with the leaks C code makes (an incref on a
//! long-lived object, on a new one, a dealloc that keeps its type), a suite where one test of
//! twelve leaks, and scripts that leak once per run or fill a cache.

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
    hunt_table("HashTable", dir, args)
}

/// A hunt with the test-suites of `tests/py/` run on `table_type` (`tests/py/subject.py`).
fn hunt_table(table_type: &str, dir: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .arg("hunt")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .env("TABLE_TYPE", table_type)
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

/// Six hunts, or two in CI's version matrix (`CI_VERSION_MATRIX` set), which runs this again on
/// each further interpreter and must stay within its time.
#[test]
fn correct_code_reports_no_leak_in_repeated_hunts() {
    let hunts_per_worker = if std::env::var_os("CI_VERSION_MATRIX").is_some() {
        1
    } else {
        3
    };
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..hunts_per_worker {
                    let output = hunt("tests/py", &SUITE);
                    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
                    assert!(report(&output).contains("no leak"));
                }
            });
        }
    });
}

/// The hunt's findings as JSON, after checking it ended with `code`.
fn findings(dir: &str, args: &[&str], code: i32) -> serde_json::Value {
    table_findings("HashTable", dir, args, code)
}

/// `findings`, with the suites run on `table_type`.
fn table_findings(table_type: &str, dir: &str, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend(args);
    let output = hunt_table(table_type, dir, &all);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {}",
        report(&output)
    );
    serde_json::from_slice(&output.stdout).expect("valid JSON")
}

/// The named objects of a hunt: (kind, type, verdict, allocated) of each.
fn named(hunt: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    hunt["findings"]["objects"]
        .as_array()
        .map(|objects| {
            objects
                .iter()
                .map(|o| {
                    (
                        text(&o["kind"]),
                        text(&o["type"]),
                        text(&o["verdict"]),
                        text(&o["allocated"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(
    found: &[(String, String, String, String)],
    kind: &str,
    type_name: &str,
    verdict: &str,
) -> bool {
    found
        .iter()
        .any(|(k, t, v, _)| k == kind && t == type_name && v == verdict)
}

#[test]
fn leaking_faults_are_found_and_what_leaked_named_with_its_verdict() {
    let suite = ["-m", "unittest", "test_hashtable"];
    for (fault, kind, type_name, verdict) in [
        // The table's dealloc keeps its reference to the default hash function.
        (
            "dealloc-missing-decref",
            "references",
            "builtin_function_or_method",
            "over-counted",
        ),
        // Each hash result keeps one reference nothing holds.
        ("hash-result-leak", "new objects", "Hash", "over-counted"),
        ("error-path-leak", "new objects", "Payload", "over-counted"),
        // A table in a cycle with what it hides from the collector: never freed.
        ("no-traverse", "new objects", "HashTable", "unreachable"),
    ] {
        let mut args = vec!["--fault", fault];
        args.extend(suite);
        let hunt = findings("tests/py", &args, 1);
        let found = named(&hunt);
        assert!(has(&found, kind, type_name, verdict), "{fault}: {found:?}");
    }
}

#[test]
fn the_safe_table_hunts_clean_and_the_leaks_safe_pyo3_allows_are_found() {
    let clean = hunt_table("SafeHashTable", "tests/py", &SUITE);
    assert_eq!(clean.status.code(), Some(0), "{}", report(&clean));
    let suite = ["-m", "unittest", "test_hashtable"];
    for (fault, kind, type_name, verdict) in [
        // A forgotten clone of the default hash function, one per table.
        (
            "safe-mem-forget",
            "references",
            "builtin_function_or_method",
            "over-counted",
        ),
        // A table in a cycle that __traverse__ hides: never freed.
        (
            "safe-no-traverse",
            "new objects",
            "SafeHashTable",
            "unreachable",
        ),
    ] {
        let mut args = vec!["--fault", fault];
        args.extend(suite);
        let found = named(&table_findings("SafeHashTable", "tests/py", &args, 1));
        assert!(has(&found, kind, type_name, verdict), "{fault}: {found:?}");
    }
}

#[test]
fn a_c_level_incref_on_a_long_lived_object_is_named_over_counted() {
    let hunt = findings(
        "fixtures/hunt",
        &["-m", "unittest", "test_incref_function"],
        1,
    );
    let objects = &hunt["findings"]["objects"];
    assert_eq!(
        objects[0]["repr"].as_str().unwrap().split(" at ").next(),
        Some("<function helper")
    );
    assert_eq!(objects[0]["verdict"], "over-counted");
    assert_eq!(objects[0]["per_run"], 1.0);
    assert_eq!(objects[0]["chain"], "test_incref_function.helper");
    assert_eq!(
        hunt["findings"]["tests"][0]["tests"],
        serde_json::json!(["test_incref_function.IncrefFunction.test_incref"])
    );
    assert_eq!(objects.as_array().unwrap().len(), 1, "{objects}");
}

/// Lesson 21's leak, the one multidict 6.7.1 shipped: a dealloc that never releases the
/// reference each instance of a heap type holds to its type. Heap types are not immortal on
/// any version, so every interpreter sees it, named by the module that holds the type.
#[test]
fn a_dealloc_that_keeps_its_type_reference_is_found_on_the_type() {
    let clean = hunt("fixtures/hunt", &["-m", "unittest", "test_type_reference"]);
    assert_eq!(clean.status.code(), Some(0), "{}", report(&clean));
    let hunt = findings(
        "fixtures/hunt",
        &[
            "--fault",
            "forgets-type-reference",
            "-m",
            "unittest",
            "test_type_reference",
        ],
        1,
    );
    let objects = &hunt["findings"]["objects"];
    assert_eq!(objects.as_array().unwrap().len(), 1, "{objects}");
    let leak = &objects[0];
    assert_eq!(leak["repr"], "<class 'hashtable.HashTable'>", "{leak}");
    assert_eq!(leak["kind"], "references", "{leak}");
    assert_eq!(leak["verdict"], "over-counted", "{leak}");
    assert_eq!(leak["per_run"], 3.0, "{leak}");
    assert_eq!(leak["chain"], "hashtable.HashTable", "{leak}");
    assert_eq!(
        hunt["findings"]["tests"][0]["tests"],
        serde_json::json!(["test_type_reference.TypeReference.test_tables_come_and_go"])
    );
}

#[test]
fn an_incref_on_the_int_type_leaks_until_3_12_made_it_immortal() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_incref_type"]);
    let text = report(&output);
    if python_minor() < 12 {
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains("LEAK references to <class 'int'> (type): +1.0 per run"),
            "{text}"
        );
        assert!(text.contains("over-counted"), "{text}");
    } else {
        assert_eq!(output.status.code(), Some(0), "{text}");
        assert!(text.contains("no leak"), "{text}");
    }
}

/// A script whose name is not UTF-8 is hunted, as `run` runs it, and its line named.
#[test]
fn a_script_whose_name_is_not_utf8_is_hunted() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("rl-hunt-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(std::ffi::OsStr::from_bytes(b"leaks_\xff.py"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hunt/leaks_one_per_run.py");
    std::fs::copy(fixture, &script).unwrap();
    let mut target = script.clone().into_os_string();
    target.push("::run");
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .arg("hunt")
        .arg(&target)
        .output()
        .expect("refcount-lab runs");
    std::fs::remove_dir_all(&dir).unwrap();
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("LEAK objects: Record"), "{text}");
    assert!(text.contains("leaks_\u{fffd}.py:12"), "{text}");
}

/// New objects of a plain class are named with the line that made them on every version:
/// 3.11's tracemalloc cannot find them by themselves (gh-101430).
#[test]
fn a_leaked_instance_of_a_plain_class_is_named_with_its_line() {
    let result = findings("fixtures/hunt", &["leaks_one_per_run.py::run"], 1);
    let found = named(&result);
    assert!(
        found.iter().any(
            |(kind, type_name, verdict, allocated)| kind == "new objects"
                && type_name == "Record"
                && verdict == "held"
                && allocated == "leaks_one_per_run.py:12"
        ),
        "{found:?}"
    );
}

/// The lines that left an over-counted object's references behind, from the findings.
fn left_by(hunt: &serde_json::Value, repr: &str) -> Vec<(String, i64)> {
    let objects = hunt["findings"]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = objects.iter().find(|o| o["repr"] == repr);
    found
        .and_then(|o| o["left_by"].as_array())
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    (
                        l["line"].as_str().unwrap().to_owned(),
                        l["references"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For an object C code over-counted, the line whose run left the references is named:
/// in a script (a dealloc that keeps its reference, at `del h`), and in a test suite (a
/// hash function's result kept when `set` fails, at the line that stores).
#[test]
fn the_line_that_leaves_the_reference_behind_is_named() {
    let script = findings(
        "fixtures/hunt",
        &["--fault", "dealloc-missing-decref", "frees_a_table.py::run"],
        1,
    );
    assert_eq!(
        left_by(&script, "<built-in function hash>"),
        [("frees_a_table.py:9".to_owned(), 1)],
        "{script}"
    );
    // The string a hash function returned, kept when `set` fails: mortal but on 3.12,
    // where string constants are interned and so immortal (no leak to see).
    let args = [
        "--fault",
        "hash-error-leak",
        "-m",
        "unittest",
        "test_hashtable",
    ];
    if python_minor() == 12 {
        findings("tests/py", &args, 0);
        return;
    }
    let suite = findings("tests/py", &args, 1);
    // The line that stores, found in the suite itself (tests added above it move it).
    let source = std::fs::read_to_string("tests/py/test_hashtable.py").expect("the suite");
    let test = source
        .find("def test_hash_func_returning_a_non_int")
        .expect("the test");
    let store = test + source[test..].find("h[\"k\"] = 1").expect("its store");
    let line = source[..store].lines().count();
    assert_eq!(
        left_by(&suite, "'nope'"),
        [(format!("test_hashtable.py:{line}"), 1)],
        "{suite}"
    );
}

/// The scan that names leaked objects makes a list of its own (a probe): when lists leak,
/// only the target's are named.
#[test]
fn only_the_targets_leaked_lists_are_named() {
    let result = findings("fixtures/hunt", &["leaks_a_list_per_run.py::run"], 1);
    let lists: Vec<_> = named(&result)
        .into_iter()
        .filter(|(kind, type_name, _, _)| kind == "new objects" && type_name == "list")
        .collect();
    let expected = ("held".to_owned(), "leaks_a_list_per_run.py:7".to_owned());
    assert!(
        !lists.is_empty()
            && lists
                .iter()
                .all(|(_, _, verdict, allocated)| (verdict.clone(), allocated.clone()) == expected),
        "{lists:?}"
    );
}

/// A leaked float is found by the line that made it on every version, and named by type
/// and size. The free lists are emptied before each traced run: else, on 3.12 and 3.13, the
/// float took memory a float of the measuring had freed, traced at the hunt's own line.
#[test]
fn an_unreachable_leaked_float_is_found_by_the_line_that_made_it() {
    let result = findings("fixtures/hunt", &["-m", "unittest", "test_incref_float"], 1);
    let leaks: Vec<&str> = result["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["metric"].as_str().unwrap())
        .collect();
    assert!(leaks.contains(&"allocated blocks"), "{leaks:?}");
    let sites = &result["findings"]["sites"];
    assert_eq!(sites[0]["allocated"], "test_incref_float.py:9", "{sites}");
    assert_eq!(sites[0]["per_run"], 1.0, "{sites}");
    // One float a run: sys.getsizeof(1.0), 24 bytes on every 64-bit CPython.
    assert_eq!(sites[0]["bytes_per_run"], 24.0, "{sites}");
    assert_eq!(
        sites[0]["made"],
        serde_json::json!([{"type": "float", "size": 24, "count": 1}]),
        "{sites}"
    );
    assert!(sites[0]["source"]
        .as_str()
        .unwrap()
        .contains("float(id(self))"));
}

/// Blocks no walk reaches (a `str` and `bytes` a C call kept, the collector tracking
/// neither) are named by type and size under the line that made them, and the sizes add
/// up to the bytes the line's blocks grew by.
#[test]
fn leaked_blocks_are_named_by_type_and_size() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_incref_text"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let result = findings("fixtures/hunt", &["-m", "unittest", "test_incref_text"], 1);
    let sites = result["findings"]["sites"].as_array().unwrap().clone();
    let named: Vec<(String, String)> = sites
        .iter()
        .map(|site| {
            let made = site["made"].as_array().unwrap();
            assert_eq!(made.len(), 1, "{site}");
            assert_eq!(made[0]["count"], 1, "{site}");
            assert_eq!(
                made[0]["size"].as_f64(),
                site["bytes_per_run"].as_f64(),
                "{site}"
            );
            let name = made[0]["type"].as_str().unwrap().to_owned();
            assert!(
                text.contains(&format!("1 × {name} ({} bytes)", made[0]["size"])),
                "{text}"
            );
            (site["allocated"].as_str().unwrap().to_owned(), name)
        })
        .collect();
    let expected = [
        ("test_incref_text.py:10", "str"),
        ("test_incref_text.py:11", "bytes"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut named = named;
    named.sort();
    assert_eq!(named, expected, "{text}");
}

/// A line's blocks are counted whole when it is reached at a different call depth each run
/// (each depth is a traceback of its own to tracemalloc), and a cache replaced whole every
/// run from the same line adds nothing to its growth (the first traced run is the baseline).
#[test]
fn a_line_that_leaks_at_any_call_depth_is_named_with_its_true_growth() {
    // With the fewest confirming runs (3, the default), so that its lines grow over two runs.
    let result = findings("fixtures/hunt", &["leaks_at_any_depth.py::run"], 1);
    let sites = result["findings"]["sites"].as_array().unwrap();
    let lines: Vec<(&str, f64)> = sites
        .iter()
        .map(|site| {
            (
                site["allocated"].as_str().unwrap(),
                site["per_run"].as_f64().unwrap(),
            )
        })
        .collect();
    // A bytearray is two blocks: the object and its buffer.
    assert_eq!(lines, [("leaks_at_any_depth.py:11", 2.0)], "{result}");
}

/// What holds a leaked object is named from its module, through any object on the way: an
/// instance of a `str` subclass was once taken for the name of a module.
#[test]
fn a_chain_through_a_str_subclass_starts_at_its_module() {
    let result = findings(
        "fixtures/hunt",
        &["-m", "unittest", "test_str_subclass_holds"],
        1,
    );
    let boxes: Vec<&serde_json::Value> = result["findings"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|found| found["type"] == "Box")
        .collect();
    assert!(!boxes.is_empty(), "{result}");
    for found in boxes {
        let chain = found["chain"].as_str().unwrap();
        assert!(chain.starts_with("test_str_subclass_holds.TAG"), "{found}");
    }
}

/// A target that calls the block watch's own functions (before any watch, with bad
/// arguments, leaving a watch of its own on) is hunted all the same: its leak is found at
/// its line, only not named by type.
#[test]
fn a_target_meddling_with_the_block_watch_is_hunted_all_the_same() {
    let result = findings(
        "fixtures/hunt",
        &["-m", "unittest", "test_meddles_with_the_block_watch"],
        1,
    );
    let sites = &result["findings"]["sites"];
    assert_eq!(
        sites[0]["allocated"], "test_meddles_with_the_block_watch.py:20",
        "{sites}"
    );
}

#[test]
fn a_clean_test_module_is_clean() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_clean"]);
    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
    assert!(report(&output).contains("no leak"));
}

#[test]
fn the_one_leaking_test_of_twelve_is_named() {
    let hunt = findings("fixtures/hunt", &["-m", "unittest", "test_one_of_many"], 1);
    let tests = &hunt["findings"]["tests"];
    assert_eq!(tests.as_array().unwrap().len(), 1, "{tests}");
    assert_eq!(
        tests[0]["tests"],
        serde_json::json!(["test_one_of_many.More.test_i"])
    );
    let found = named(&hunt);
    assert!(has(&found, "new objects", "Record", "held"), "{found:?}");
    let record = &hunt["findings"]["objects"][0];
    assert!(
        record["chain"]
            .as_str()
            .unwrap()
            .starts_with("test_one_of_many.SEEN["),
        "{record}"
    );
}

/// The test whose own line made the leaked objects is tried first; when it leaks less than
/// the whole suite did, the rest of the suite is searched too, and its leak is pinned.
#[test]
fn a_leak_made_outside_every_tests_lines_is_pinned_after_the_one_found_first() {
    let hunt = findings("fixtures/hunt", &["-m", "unittest", "test_two_sites"], 1);
    let tests: Vec<&serde_json::Value> = hunt["findings"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|found| &found["tests"])
        .collect();
    assert_eq!(
        tests,
        [
            &serde_json::json!(["test_two_sites.Two.test_a"]),
            &serde_json::json!(["test_two_sites.Two.test_z"])
        ],
        "{hunt}"
    );
}

/// `--shard K/N` hunts in part K of N of a suite's tests: the half with the leaking test
/// names it, the other half is clean, and each report says which tests it covered.
#[test]
fn a_shard_hunts_its_part_of_the_suite_only() {
    let suite = ["-m", "unittest", "test_one_of_many"];
    let first = hunt("fixtures/hunt", &[&["--shard", "1/2"], &suite[..]].concat());
    assert_eq!(first.status.code(), Some(0), "{}", report(&first));
    assert!(
        report(&first).contains("note: shard 1/2: tests 1 to 6 of 12,"),
        "{}",
        report(&first)
    );
    let second = findings(
        "fixtures/hunt",
        &[&["--shard", "2/2"], &suite[..]].concat(),
        1,
    );
    assert_eq!(
        second["findings"]["tests"][0]["tests"],
        serde_json::json!(["test_one_of_many.More.test_i"])
    );
    let last = second["repetitions"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last["shard"],
        serde_json::json!({"first": 7, "last": 12, "of": 12})
    );
    let script = hunt("fixtures/hunt", &["--shard", "1/2", "leaks_one_per_run.py"]);
    assert_eq!(script.status.code(), Some(2), "{}", report(&script));
    assert!(report(&script).contains("--shard splits a suite's tests"));
    let wrong = hunt("fixtures/hunt", &[&["--shard", "3/2"], &suite[..]].concat());
    assert_eq!(wrong.status.code(), Some(2), "{}", report(&wrong));
    assert!(report(&wrong).contains("part K of N"));
}

/// `--jobs N` hunts the N parts side by side, each in an interpreter of its own: the part
/// with the leaking test names it, the other is clean, and the last line says which part
/// leaks.
#[test]
fn jobs_hunt_the_parts_side_by_side() {
    let suite = ["-m", "unittest", "test_one_of_many"];
    let output = hunt("fixtures/hunt", &[&["--jobs", "2"], &suite[..]].concat());
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for needle in [
        "note: part 1/2 of --jobs: tests 1 to 6 of 12,",
        "note: part 2/2 of --jobs: tests 7 to 12 of 12,",
        "leaking test: test_one_of_many.More.test_i\n",
        "hunt --jobs 2: leaks in part 2/2\n",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    let json = hunt(
        "fixtures/hunt",
        &[&["--jobs", "2", "--format", "json"], &suite[..]].concat(),
    );
    let whole: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let parts = whole["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{whole}");
    assert_eq!(parts[0]["leaks"], serde_json::json!([]), "{}", parts[0]);
    assert_eq!(
        parts[1]["findings"]["tests"][0]["tests"],
        serde_json::json!(["test_one_of_many.More.test_i"])
    );
    let with_shard = hunt(
        "fixtures/hunt",
        &[&["--shard", "2/2", "--jobs", "2"], &suite[..]].concat(),
    );
    assert!(
        report(&with_shard).contains("part 1/2 of --jobs in shard 2/2: tests 7 to 9 of 12,"),
        "{}",
        report(&with_shard)
    );
    let script = hunt("fixtures/hunt", &["--jobs", "2", "leaks_one_per_run.py"]);
    assert_eq!(script.status.code(), Some(2), "{}", report(&script));
    assert!(report(&script).contains("--jobs splits a suite's tests"));
}

#[test]
fn accepted_leaks_do_not_fail_the_hunt() {
    let by_type = hunt(
        "fixtures/hunt",
        &["--accept", "Record", "leaks_one_per_run.py::run"],
    );
    let text = report(&by_type);
    assert_eq!(by_type.status.code(), Some(0), "{text}");
    assert!(
        text.contains("accepted (--accept): Record objects"),
        "{text}"
    );
    let by_test = hunt(
        "fixtures/hunt",
        &[
            "--accept",
            "test_one_of_many.More.test_i",
            "--accept",
            "Recrod",
            "-m",
            "unittest",
            "test_one_of_many",
        ],
    );
    let text = report(&by_test);
    assert_eq!(by_test.status.code(), Some(0), "{text}");
    assert!(
        text.contains("not run (--accept): test_one_of_many.More.test_i"),
        "{text}"
    );
    assert!(
        text.contains("note: --accept Recrod matched no test and no type that leaked"),
        "{text}"
    );
}

#[test]
fn naming_what_is_not_there_says_what_to_do() {
    let output = hunt("fixtures/hunt", &["leaks_one_per_run.py::nosuch"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("leaks_one_per_run.py has no function nosuch(): name one it defines"),
        "{text}"
    );
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_nosuch"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("every test failed (1 of 1): check the test names"),
        "{text}"
    );
}

#[test]
fn a_cache_that_fills_into_the_measured_runs_is_not_a_leak() {
    let output = hunt("fixtures/hunt", &["fills_late.py::run"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("no leak: what grew in every measured run did not"),
        "{text}"
    );
    assert!(
        text.contains("not a leak: allocated blocks moved"),
        "{text}"
    );
}

/// On a debug build, hunt and CPython's own `python -m test -R 3:3` agree on which of the
/// fixture modules leak.
#[test]
fn on_a_debug_build_the_verdicts_agree_with_regrtest() {
    if !is_debug_build() {
        eprintln!("not a debug build of CPython: nothing to compare with regrtest -R");
        return;
    }
    let modules = [
        "test_incref_function",
        "test_incref_float",
        "test_incref_type",
        "test_clean",
    ];
    // regrtest writes its reflog.txt into the current folder: a scratch one.
    let scratch =
        std::env::temp_dir().join(format!("refcount-lab-regrtest-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hunt");
    let regrtest = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["python", "-m", "test", "-R", "3:3", "--testdir"])
        .arg(&fixtures)
        .args(modules)
        .current_dir(&scratch)
        .output()
        .expect("regrtest runs");
    std::fs::remove_dir_all(&scratch).unwrap();
    let regrtest_text = report(&regrtest);
    for module in modules {
        let regrtest_leaks = regrtest_text.contains(&format!("{module} failed (reference leak)"));
        let output = hunt("fixtures/hunt", &["-m", "unittest", module]);
        let text = report(&output);
        assert_eq!(
            output.status.code(),
            Some(if regrtest_leaks { 1 } else { 0 }),
            "{module}: {text}\n{regrtest_text}"
        );
        if regrtest_leaks {
            assert!(text.contains("LEAK total refcount"), "{module}: {text}");
        }
    }
}

/// What the chosen interpreter prints for `code`.
fn python_says(code: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["python", "-c", code])
        .output()
        .expect("refcount-lab python runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn python_minor() -> u32 {
    python_says("import sys; print(sys.version_info[1])")
        .parse()
        .expect("a minor version")
}

fn is_debug_build() -> bool {
    python_says("import sys; print(hasattr(sys, 'gettotalrefcount'))") == "True"
}

#[test]
fn json_has_every_measurement() {
    let output = hunt(
        "fixtures/hunt",
        &["--format", "json", "--repeat", "4", "caches_once.py::run"],
    );
    let hunt: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let phases: Vec<&str> = hunt["repetitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|repetition| repetition["phase"].as_str().unwrap())
        .collect();
    // Two warm-ups and the four measured runs; then three confirming ones when an object's
    // reference count happened to grow after each measured run (2 hunts in 60 on 3.11), which
    // the confirming runs clear: no leak either way.
    let runs = [
        "warm-up", "warm-up", "measured", "measured", "measured", "measured",
    ];
    let confirming = ["confirming"; 3];
    assert!(
        phases == runs || phases == [&runs[..], &confirming[..]].concat(),
        "{phases:?}"
    );
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

#[test]
fn the_text_report_names_every_leaking_test() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_four_leak"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for test in ["one", "two", "three", "four"] {
        assert!(
            text.contains(&format!("leaking test: test_four_leak.Four.test_{test}\n")),
            "{text}"
        );
    }
}

#[test]
fn a_target_or_plot_it_cannot_use_is_refused_before_the_hunt() {
    let output = hunt("fixtures/hunt", &["leaks_one_per_run.py::run::again"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("name one function the script defines"),
        "{text}"
    );
    for half_named in ["leaks_one_per_run.py::", "::run"] {
        let output = hunt("fixtures/hunt", &[half_named]);
        let text = report(&output);
        assert_eq!(output.status.code(), Some(2), "{text}");
        assert!(
            text.contains("name a script, and after `::` one function"),
            "{text}"
        );
    }
    let output = hunt(
        "fixtures/hunt",
        &["leaks_one_per_run.py", "--plot", "no-such-folder/leak.svg"],
    );
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("the folder no-such-folder does not exist"),
        "{text}"
    );
    assert!(output.stdout.is_empty(), "hunted first: {text}");
}

/// A hunt ends when its runs do, whatever thread or process the target left running (a
/// regression would wait for the default timeout, ten minutes, and then lose the runs).
#[test]
fn work_the_target_leaves_running_does_not_hold_the_hunt() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_leaves_work"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("no leak"), "{text}");
    assert!(
        text.contains("note: the target left 1 thread running; the hunt ended without waiting"),
        "{text}"
    );
    assert!(
        text.contains("note: the target left 1 process running, stopped at the hunt's end: sleep"),
        "{text}"
    );
}

/// References leaked onto strings: a constant only a test's code object holds (code objects
/// show the collector nothing), a string made at run time (3.12 has mortal strings too), and
/// one interned at run time (mortal but on 3.12, which makes interned strings immortal).
#[test]
fn references_leaked_onto_strings_are_found_wherever_the_string_is_mortal() {
    let output = hunt("fixtures/hunt", &["-m", "unittest", "test_incref_strings"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let mut leaking = vec![
        ("constant", "a constant-only-here"),
        ("made", "made-at-run-time"),
    ];
    let interned = ("interned", "interned-at-run-time");
    if python_minor() == 12 {
        assert!(!text.contains(interned.1), "{text}");
    } else {
        leaking.push(interned);
    }
    for (test, string) in leaking {
        assert!(
            text.contains(&format!(
                "LEAK references to '{string}' (str): +1.0 per run"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "leaking test: test_incref_strings.IncrefStrings.test_{test}\n"
            )),
            "{text}"
        );
    }
}

/// On a debug build, a module built for a release build (its file's ABI tag says so) moves
/// the total refcount without a leak: the hunt leaves that total out and says why, instead
/// of accusing a clean test. (The fixture is built here with the debug headers and given a
/// release build's file name: what the hunt goes by.)
#[test]
fn on_a_debug_build_a_release_built_module_does_not_make_a_false_alarm() {
    if !is_debug_build() {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hunt/uncounted");
    let build = std::env::temp_dir().join(format!("rl-uncounted-{}", std::process::id()));
    std::fs::create_dir_all(&build).unwrap();
    let (include, suffix) = {
        let said = python_says(
            "import importlib.machinery as m, sys, sysconfig; \
             print(sysconfig.get_paths()['include']); \
             print(m.EXTENSION_SUFFIXES[0].replace(sys.abiflags + '-', '-', 1))",
        );
        let (include, suffix) = said.split_once('\n').expect("two lines");
        (include.to_owned(), suffix.to_owned())
    };
    // Debian's `pyconfig.h` includes a multiarch copy kept in the folder above.
    let parent = Path::new(&include).parent().expect("a parent folder");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-I", &include, "-I"])
        .arg(parent)
        .arg(fixture.join("uncounted.c"))
        .arg("-o")
        .arg(build.join(format!("uncounted{suffix}")))
        .output()
        .expect("cc runs");
    assert!(built.status.success(), "{}", report(&built));
    std::fs::copy(
        fixture.join("test_uncounted.py"),
        build.join("test_uncounted.py"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["hunt", "-m", "unittest", "test_uncounted"])
        .current_dir(&build)
        .output()
        .expect("refcount-lab runs");
    let text = report(&output);
    let _ = std::fs::remove_dir_all(&build);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("no leak"), "{text}");
    assert!(
        text.contains("note: total refcount left out: 1 extension module was built"),
        "{text}"
    );
    assert!(text.contains("without a leak: uncounted\n"), "{text}");
}

/// A target that ends the interpreter in a confirming run did not let the hunt finish: an
/// error, not a verdict drawn from the runs before (it was once "LEAK allocated blocks").
#[test]
fn a_target_that_exits_after_the_measured_runs_is_an_error() {
    let target = "fills_then_exits.py::run";
    let finished = hunt("fixtures/hunt", &[target]);
    assert_eq!(finished.status.code(), Some(0), "{}", report(&finished));
    let exits = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["hunt", target])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hunt"))
        .env("EXIT_AT", "6")
        .output()
        .expect("refcount-lab runs");
    let text = report(&exits);
    assert_eq!(exits.status.code(), Some(2), "{text}");
    assert!(
        text.contains("exited with status 0 after 5 measured runs"),
        "{text}"
    );
    assert!(!text.contains("LEAK"), "{text}");
}

/// lab's record of each `lab.watch` call is lab's, not the target's (it was reported as a
/// tuple leaked per run, held by `lab._watched`).
#[test]
fn a_script_that_calls_lab_watch_does_not_leak() {
    let output = hunt("fixtures/hunt", &["watches_hash.py"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("no leak"), "{text}");
}

/// A target's own exit status 3 is the target's, whatever the harness uses that status for
/// (it once read as a blank `error: `).
#[test]
fn a_target_that_exits_with_the_harness_status_is_named() {
    let output = hunt("fixtures/hunt", &["exits_3.py"]);
    let text = report(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("exited with status 3 after 1 of 5 runs"),
        "{text}"
    );
}
