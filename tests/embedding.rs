//! `refcount-lab python` is the interpreter it was built against, from any directory.

use std::process::Command;

fn python(code: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_refcount-lab"))
        .args(["python", "-c", code, "first", "second"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("refcount-lab runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn loads_its_own_libpython_and_standard_library_from_anywhere() {
    let report = python(
        "import sys, os, json\n\
         maps = [l.split()[-1] for l in open('/proc/self/maps') if 'libpython' in l]\n\
         print(json.dumps([sys.base_prefix, sorted(set(maps)), os.__file__]))",
    );
    let (prefix, libraries, os_module): (String, Vec<String>, String) =
        serde_json::from_str(report.trim()).unwrap();
    assert_eq!(libraries.len(), 1, "one libpython mapped: {libraries:?}");
    assert!(
        libraries[0].starts_with(&prefix),
        "{libraries:?} is not under {prefix}"
    );
    assert!(
        os_module.starts_with(&prefix),
        "{os_module} is not under {prefix}"
    );
}

#[test]
fn behaves_like_python3_with_argv_and_builtin_modules() {
    let report =
        python("import sys, hashtable, lab; print(sys.argv[1:], hashtable.HashTable().size)");
    assert_eq!(report.trim(), "['first', 'second'] 4");
}
