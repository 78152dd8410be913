"""Instructions per operation, HashTable against dict (and SafeHashTable), under callgrind.

Wall time on a shared machine drifts; instruction counts do not. For each container, key
kind (int, str) and operation (h[k] = v, h[k], k in h, pop(k)) this runs one child
interpreter under `valgrind --tool=callgrind` that builds N keys (and, for the lookups and
pop, a full table), then does the operation once per key; and a second child that does
the same setup and runs the same loop with an empty body (the collector off in both, as
in `bench`). The difference, divided by N,
is what one operation costs, the bytecodes around the call included (both containers pay
those), the loop's own cost not. Per function too: callgrind's exclusive counts of the
two runs are subtracted, so setup cancels out and what stays is where an operation's
instructions go (`_Py_IncRef`, `PyObject_Hash`, the lookup, the call machinery ...).

    benches/instructions.sh [PYTHON ...]     # builds the module, then runs this

or by hand, with a built module at hand:

    python3 benches/instructions.py --module target/native/release/libhashtable.so \
        [--python PYTHON] [--n 20000] [--types dict,HashTable] [--top 12]

Needs valgrind (`apt-get install valgrind`). PYTHONHASHSEED is fixed at 0, so two runs
print the same numbers (to a few instructions: the allocator's state differs a little).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

KINDS = ("int", "str")
OPERATIONS = {  # name: (loop body, needs a full table first)
    "h[k] = v": ("table[key] = key", False),
    "h[k]": ("table[key]", True),
    "k in h": ("key in table", True),
    "pop(k)": ("table.pop(key)", True),
}

# Function names that make up what PyO3 adds around the table's own work.
PYO3_GROUPS = (
    ("pyo3::impl_::trampoline", "AttachGuard", "__tls_get_addr", "__pymethod_",
     "extract_argument", "slot_impl", "PyTuple::new"),
    ("BorrowChecker",),
    ("_Py_IncRef", "_Py_DecRef", "Py_IncRef", "Py_DecRef"),
)

WORKLOAD = """
import gc, os, sys
from hashtable import HashTable, SafeHashTable
gc.disable()  # as bench.py: a collection would land in one run and not the other
kind, type_name, full, n = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
keys = list(range(n)) if kind == "int" else ["key%d" % i for i in range(n)]
make = {"dict": dict, "HashTable": HashTable, "SafeHashTable": SafeHashTable}[type_name]
table = make()
if full:
    for key in keys:
        table[key] = key
def run(table, keys):
    for key in keys:
        BODY
run(table, keys)
os._exit(0)  # no finalization: freeing a full table or an empty one is not the operation
"""


def callgrind(python, module_dir, body, kind, type_name, full, n, scratch):
    """Runs one workload under callgrind; returns (total Ir, {function: exclusive Ir})."""
    script = os.path.join(scratch, "workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD.replace("BODY", body))
    out = os.path.join(scratch, "callgrind.out")
    env = dict(os.environ, PYTHONPATH=module_dir, PYTHONHASHSEED="0")
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
         python, "-S", script, kind, type_name, "1" if full else "0", str(n)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    annotated = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out],
        check=True, capture_output=True, text=True).stdout
    os.remove(out)
    total = None
    functions = {}
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.%]+\)\s+)?(.*)$", line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        rest = match.group(2)
        if "PROGRAM TOTALS" in rest:
            total = count
        elif ":" in rest:
            name = rest.split(":", 1)[1].split(" [")[0].strip()
            functions[name] = functions.get(name, 0) + count
    return total, functions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", required=True, help="the built libhashtable.so")
    parser.add_argument("--python", action="append", help="interpreter(s) to measure")
    parser.add_argument("--n", type=int, default=20_000, help="operations per run")
    parser.add_argument("--types", default="dict,HashTable,SafeHashTable")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--operations", default=",".join(OPERATIONS))
    parser.add_argument("--top", type=int, default=10,
                        help="functions shown per HashTable operation (0: none)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still removes the scratch folder
    scratch = tempfile.mkdtemp(prefix="refcount-lab-instructions-")
    try:
        shutil.copy(args.module, os.path.join(scratch, "hashtable.abi3.so"))
        for python in args.python or [sys.executable]:
            version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                     check=True, capture_output=True, text=True).stdout.strip()
            print(f"CPython {version} ({python}), {args.n} operations per run, "
                  "instructions per operation (loop's own cost subtracted)\n")
            types = args.types.split(",")
            print("  keys  operation " + "".join(f"{t:>15}" for t in types) +
                  "".join(f"  {t} / dict" for t in types if t != "dict" and "dict" in types))
            profiles = {}
            for kind in args.kinds.split(","):
                for name in args.operations.split(","):
                    body, full = OPERATIONS[name]
                    per_op = {}
                    for type_name in types:
                        base_total, base = callgrind(python, scratch, "pass", kind, type_name,
                                                     full, args.n, scratch)
                        op_total, op = callgrind(python, scratch, body, kind, type_name,
                                                 full, args.n, scratch)
                        per_op[type_name] = (op_total - base_total) / args.n
                        profiles[kind, name, type_name] = {
                            f: (op.get(f, 0) - base.get(f, 0)) / args.n
                            for f in set(op) | set(base)}
                    ratios = "".join(f"  {per_op[t] / per_op['dict']:>{len(t) + 7}.2f}×"
                                     for t in types if t != "dict" and "dict" in per_op)
                    print(f"  {kind:<5} {name:<10}" +
                          "".join(f"{per_op[t]:>15.0f}" for t in types) + ratios)
            if "SafeHashTable" in types:
                print("\n  What SafeHashTable pays on top, per operation (instructions, summed by "
                      "function): PyO3's entry and exit (trampoline, GIL count, argument\n"
                      "  extraction), the borrow flag, and reference counts by function call\n")
                print("  keys  operation      entry/exit  borrow flag  refcount calls")
                for (kind, name, type_name), profile in profiles.items():
                    if type_name != "SafeHashTable":
                        continue
                    sums = [sum(count for function, count in profile.items()
                                if any(part in function for part in group))
                            for group in PYO3_GROUPS]
                    print(f"  {kind:<5} {name:<10}" + "".join(f"{x:>13.0f}" for x in sums))
            if args.top:
                for (kind, name, type_name), profile in profiles.items():
                    print(f"\n  {type_name}, {kind} keys, {name}: instructions per operation "
                          "by function (exclusive)")
                    ranked = sorted(profile.items(), key=lambda item: -abs(item[1]))
                    for function, count in ranked[:args.top]:
                        if abs(count) < 0.5:  # setup noise, not the operation
                            break
                        print(f"    {count:>8.1f}  {function}")
            print()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutil.rmtree(scratch)


main()
