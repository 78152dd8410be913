//! Finds the CPython this binary embeds and bakes its location in.
//!
//! pyo3-ffi picks the interpreter (`PYO3_PYTHON`, else `python3` on `PATH`) and links its
//! libpython. This script insists on a *shared* libpython, records an rpath to it (so the
//! binary loads that interpreter's library, not another `libpython3.x.so` on the loader
//! path), and records the interpreter's home and executable so the embedded interpreter finds
//! its own standard library from any directory. It also embeds the lesson catalogue
//! (`lessons/NN-slug/{lesson.toml,README.md,demo.py}`) and the workshop exercises
//! (`exercises/`) so the binary works from anywhere.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const HELP: &str = "refcount-lab embeds CPython and needs one built with a shared libpython \
(--enable-shared). Point PYO3_PYTHON at such an interpreter, e.g. \
PYO3_PYTHON=$(pyenv prefix 3.13)/bin/python3 (pyenv builds: add PYTHON_CONFIGURE_OPTS=--enable-shared \
when installing), then build again.";

fn main() {
    embed_lessons();
    embed_exercises();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    if !config.shared() {
        panic!(
            "\n\nthe Python found ({:?}) has no shared libpython.\n{HELP}\n",
            config.executable()
        );
    }
    let executable = config
        .executable()
        .unwrap_or_else(|| panic!("\n\npyo3 found no Python executable.\n{HELP}\n"));
    let home = Command::new(executable)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| panic!("\n\ncould not run {executable} to find its prefix.\n{HELP}\n"));
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rustc-env=REFCOUNT_LAB_PYTHON_HOME={home}");
    println!("cargo:rustc-env=REFCOUNT_LAB_PYTHON_EXECUTABLE={executable}");
    println!(
        "cargo:rustc-env=REFCOUNT_LAB_PYTHON_VERSION={}",
        config.version()
    );
}

/// Writes `$OUT_DIR/lessons.rs`: one `EmbeddedLesson` per folder of `lessons/`, in order.
fn embed_lessons() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("readable lessons/ entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    let mut code = String::from("&[\n");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        writeln!(code, "    EmbeddedLesson {{ dir: {name:?},").unwrap();
        for (field, file) in [
            ("toml", "lesson.toml"),
            ("readme", "README.md"),
            ("demo", "demo.py"),
        ] {
            let path = dir.join(file);
            assert!(path.is_file(), "lesson {name} has no {file}");
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                code,
                "        {field}: include_str!({:?}),",
                path.display().to_string()
            )
            .unwrap();
        }
        code.push_str("    },\n");
    }
    code.push_str("]\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("lessons.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// Writes `$OUT_DIR/exercises.rs`: the exercise catalogue and every file it names.
fn embed_exercises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("exercises");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut code = String::new();
    let catalogue = root.join("exercises.toml");
    writeln!(
        code,
        "const CATALOGUE: &str = include_str!({:?});",
        catalogue.display().to_string()
    )
    .unwrap();
    for (constant, folder) in [("FILES", "files"), ("CHECKS", "checks")] {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("readable entry").path())
            .collect();
        paths.sort();
        writeln!(code, "const {constant}: &[(&str, &str)] = &[").unwrap();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            writeln!(
                code,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        code.push_str("];\n");
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("exercises.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
