//! Runs the Python test-suites of the table types (`tests/py/`) through `refcount-lab
//! python`, under the debug allocator with faulthandler on, in correct mode: every suite on
//! `HashTable` (raw pyo3-ffi) and on `SafeHashTable` (safe PyO3), which must agree.

use std::path::Path;
use std::process::Command;

/// The types `tests/py/subject.py` can hand the suites.
const TABLE_TYPES: [&str; 2] = ["HashTable", "SafeHashTable"];

fn run_python_file(file: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    for table_type in TABLE_TYPES {
        let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
            .args(["python", "-X", "faulthandler", file])
            .current_dir(&dir)
            .env("PYTHONMALLOC", "debug")
            .env("TABLE_TYPE", table_type)
            .output()
            .expect("refcount-lab runs");
        let report = format!(
            "{file} on {table_type}: {}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{report}");
        println!("{report}");
    }
}

#[test]
fn every_method_and_error_path() {
    run_python_file("test_hashtable.py");
}

#[test]
fn cpythons_mapping_protocol_suite() {
    run_python_file("test_mapping_protocol.py");
}

#[test]
fn agrees_with_dict_on_random_operations() {
    run_python_file("test_model.py");
}

#[test]
fn memory_the_system_refuses_is_a_memory_error() {
    run_python_file("test_memory_limits.py");
}

#[test]
fn repeated_suites_leak_nothing() {
    run_python_file("leak_check.py");
}
