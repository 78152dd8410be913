//! Builds the native `hashtable` module the CLI carries, and embeds the catalogues.
//!
//! The module (`native/`) is a cdylib for CPython's stable ABI. It cannot be an ordinary
//! dependency (a binary cannot link a cdylib, and must not link libpython), so this script
//! runs `cargo build --release` on it in a target folder of its own and hands the library's
//! path to `src/native.rs`, which embeds its bytes. `PYO3_NO_PYTHON` keeps the build from
//! looking at any interpreter: the stable ABI needs none, so the build is the same on every
//! machine, with or without a Python. It also embeds the lesson catalogue
//! (`lessons/NN-slug/{lesson.toml,README.md,demo.py}`) and the workshop exercises
//! (`exercises/`) so the binary works from anywhere.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    embed_lessons();
    embed_exercises();
    build_native();
}

/// Builds `native/` and sets `REFCOUNT_LAB_NATIVE_MODULE` to the library it made.
fn build_native() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let native = manifest_dir.join("native");
    for input in ["Cargo.toml", "src", "lab.py"] {
        println!("cargo:rerun-if-changed={}", native.join(input).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Beside the CLI's own profiles (target/native), so debug and release CLI builds share
    // one module build; OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("native"), |target| target.join("native"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(native.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("PYO3_NO_PYTHON", "1")
        // Wrappers set for the outer build (clippy) are not for this one: the module is
        // linted on its own (`.ci/run`).
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build native/: {e}"));
    assert!(
        status.success(),
        "building the native module (native/) failed"
    );
    let library = target_dir.join("release").join("libhashtable.so");
    assert!(
        library.is_file(),
        "no {} after the build",
        library.display()
    );
    println!(
        "cargo:rustc-env=REFCOUNT_LAB_NATIVE_MODULE={}",
        library.display()
    );
    // FNV-1a over the module and lab.py, once here rather than at every command: it names
    // the cache folder, so binaries carrying other modules never share one.
    let fingerprint = [library, native.join("lab.py")]
        .iter()
        .flat_map(|file| std::fs::read(file).expect("the module's files are readable"))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    println!("cargo:rustc-env=REFCOUNT_LAB_NATIVE_FINGERPRINT={fingerprint:016x}");
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
