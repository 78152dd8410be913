#!/bin/sh
# Instructions per operation, HashTable against dict and SafeHashTable, under callgrind:
# builds the native module, then runs benches/instructions.py (its docstring says how it
# measures) for each interpreter given, or python3.
#
#   benches/instructions.sh                                  # python3 on PATH
#   benches/instructions.sh ~/.pyenv/versions/3.11.7/bin/python3 python3.14
#   N=50000 TOP=0 benches/instructions.sh python3.11         # more operations, no profile
#
# Needs valgrind (apt-get install valgrind). Takes about a minute per interpreter.
set -eu
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/instructions-module"
PYO3_NO_PYTHON=1 cargo build --release --quiet --manifest-path native/Cargo.toml --target-dir "$target"
[ $# -gt 0 ] || set -- python3
pythons=""
# The interpreter itself, not a wrapper such as pyenv's shim (valgrind would measure the shell).
for python in "$@"; do pythons="$pythons --python $("$python" -c 'import sys; print(sys.executable)')"; done
# shellcheck disable=SC2086 # one word per --python and path
exec python3 benches/instructions.py --module "$target/release/libhashtable.so" \
    --n "${N:-20000}" --top "${TOP:-10}" $pythons
