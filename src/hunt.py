"""The child side of `refcount-lab hunt`: run a target again and again, measure after each run.

Configuration comes as JSON in sys.argv[1]. After every run of the target (and clearing
CPython's caches, and a full collection) one `repetition` event goes to the trace pipe: allocated blocks, open file
descriptors, live objects per type (gc census), refcounts of watched objects, the total
refcount on debug builds, and how long the run and the measuring took. Deciding what leaks
is the parent's job.
"""

import collections
import gc
import importlib
import json
import os
import runpy
import sys
import time

import lab


def resolve(dotted):
    """The object a dotted name like `hashtable.terrible_hash` or `hash` refers to."""
    parts = dotted.split(".")
    import builtins

    if len(parts) == 1:
        return getattr(builtins, dotted)
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError("cannot find %r" % dotted)


def make_target(config):
    """A function that runs the target once."""
    kind, spec, args = config["kind"], config["target"], config["args"]
    if kind == "script" and "::" in spec:
        path, function = spec.rsplit("::", 1)
        module = runpy.run_path(path, run_name="__hunted__")  # loaded once, called each run
        return module[function]
    if kind == "script":
        return lambda: runpy.run_path(spec, run_name="__main__")
    if kind == "module":
        def run_module():
            sys.argv = [spec] + args
            try:
                runpy.run_module(spec, run_name="__main__", alter_sys=True)
            except SystemExit as exit:
                if exit.code not in (0, None, False):
                    raise
        return run_module
    if kind == "pytest":
        try:
            import pytest
        except ImportError:
            sys.exit(
                "pytest is not importable in refcount-lab's interpreter (%s). Install it there: "
                "%s -m pip install pytest" % (sys.version.split()[0], sys.executable)
            )

        def run_pytest():
            code = pytest.main(["-q", "-p", "no:cacheprovider"] + args)
            if code not in (0, 5):  # 5: no tests collected
                raise RuntimeError("pytest exited with status %d" % code)
        return run_pytest
    raise ValueError(kind)


def clear_caches():
    """Empty CPython's caches that fill up over many runs, as regrtest -R does.

    The type attribute cache holds on to attribute names that code builds at run time
    (argparse, which `-m unittest` runs every time, does), so it grows until it is full.
    """
    clear_type_cache = getattr(sys, "_clear_internal_caches", None) or sys._clear_type_cache
    clear_type_cache()
    re = sys.modules.get("re")
    if re is not None:
        re.purge()


def census():
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


# The exit status that says a --watch name never resolved (the target itself was fine).
WATCH_NOT_FOUND = 3


def main():
    config = json.loads(sys.argv[1])
    sys.argv = sys.argv[:1]
    sys.path.insert(0, os.getcwd())
    target = make_target(config)
    # A watched name may only exist once the target has run (an attribute it sets, a module
    # it imports): look again after each run until the warm-up is over.
    watched = {}
    total = getattr(sys, "gettotalrefcount", None)
    for index in range(config["warmup"] + config["repeat"]):
        started = time.perf_counter()
        target()
        ran = time.perf_counter()
        clear_caches()
        for _ in range(3):  # objects freed by one pass can free more in the next
            gc.collect()
        for name in config["watch"]:
            if name not in watched:
                try:
                    watched[name] = resolve(name)
                except (LookupError, AttributeError):
                    if index + 1 >= max(config["warmup"], 1):
                        sys.stderr.write(
                            "--watch %s: there is no object by that name, before the target "
                            "ran or after %d runs of it. Name a builtin (hash) or a dotted "
                            "name in an importable module (json.dumps, mymodule.CACHE).\n"
                            % (name, index + 1)
                        )
                        sys.exit(WATCH_NOT_FOUND)
        event = {
            "ev": "repetition",
            "index": index,
            "blocks": sys.getallocatedblocks(),
            "fds": open_fds(),
            "census": census(),
            "refcounts": {name: sys.getrefcount(obj) for name, obj in watched.items()},
            "total_refcount": total() if total else None,
            "run_seconds": ran - started,
            "measure_seconds": time.perf_counter() - ran,
        }
        lab._send(event)


main()
