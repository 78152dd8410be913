"""The child side of `refcount-lab hunt`: run a target again and again, measure after each run.

Configuration comes as JSON in sys.argv[1], the target and its arguments after it. After every run of the target (and clearing
CPython's caches, and a full collection) one `repetition` event goes to the trace pipe:
allocated blocks, open file descriptors, live objects per type (gc census), refcounts of
watched objects, the total refcount on debug builds, and how long the run and the measuring
took.

Beside those totals it follows the reference count of every object it can reach (everything
the collector tracks, and what those refer to), so a reference-only leak (an incref without
its decref on a long-lived object) is seen on a release build. When anything grew in every
measured run (regrtest's rule), it runs the target a few more times with tracemalloc on, to
confirm the leak and to name it: which objects, where they were allocated, what holds them
(or that nothing the collector can see does), and, for a test suite, which tests leak. That
goes to the parent as one `findings` event. The parent decides and reports.

What the hunt keeps from one run to the next is always the same number of objects (a few
texts and one array, each replaced whole), since every object kept, small or large, counts
as an allocated block.
"""

import array
import atexit
import gc
import importlib
import inspect
import json
import os
import reprlib
import runpy
import sys
import sysconfig
import time
import tracemalloc
import types

import lab

# Bound now, before the target runs: a target that replaces `lab._send` (to change what
# the hunt reports) changes only its own calls. (A target shares the hunt's interpreter
# and can still tamper on purpose, with ctypes or gc; `hunt` measures code, not adversaries.)
send = lab._send

# Py_TPFLAGS_MANAGED_DICT (3.11+): a type whose instances keep their __dict__ before them.
MANAGED_DICT = 1 << 4
# The exit status that says a --watch name never resolved (the target itself was fine).
WATCH_NOT_FOUND = 3
# Frames from these files are the harness, not the code under test.
HARNESS = (__file__, lab.__file__)
HARNESS_PACKAGES = ("unittest", "runpy.py", "importlib", "_pytest", "pytest", "pluggy", "tracemalloc.py")
try:
    from test.libregrtest.utils import clear_caches as REGRTEST_CLEAR_CACHES
except ImportError:  # a Python without its test suite (Debian's, without libpython3-testsuite)
    REGRTEST_CLEAR_CACHES = None
# Totals that grow with any leak; a growth of theirs nothing explains gets more runs.
TOTALS = {"allocated blocks", "total refcount"}
EXTRA_CONFIRM = 6
# Frames tracemalloc keeps per allocation: the innermost only. Each more frame costs (a
# deep test suite ran 4.5 times slower with one frame, 26 times with eight), and the line
# that made an object is the one to show.
TRACE_FRAMES = 1


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


class Target:
    """The code under test: `run` runs it once, or only the named tests of a suite."""

    tests = None  # the names of its tests, for a suite
    failed = ()  # the tests that failed in the last run
    lines = {}  # each test's (file, first line, last line), where its function is known

    def roots(self):
        """Namespaces the target holds outside sys.modules, by name."""
        return {}


class Script(Target):
    """A script run again each time, or `path::function` imported once and called each time."""

    def __init__(self, spec):
        self.namespace = None
        if "::" in spec:
            path, function = spec.split("::", 1)
            self.name = os.path.splitext(os.path.basename(path))[0]
            self.namespace = runpy.run_path(path, run_name="__hunted__")
            if not callable(self.namespace.get(function)):
                sys.exit("%s has no function %s(): name one it defines" % (path, function))
            self.call = self.namespace[function]
        else:
            self.call = lambda: runpy.run_path(spec, run_name="__main__")

    def run(self, tests=None):
        self.call()

    def roots(self):
        return {self.name: self.namespace} if self.namespace else {}


class Module(Target):
    """`python -m MODULE ARGS…`."""

    def __init__(self, name, args):
        self.name, self.args = name, args

    def run(self, tests=None):
        sys.argv = [self.name] + self.args
        try:
            runpy.run_module(self.name, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            if exit.code not in (0, None, False):
                raise


class Unittest(Target):
    """`python -m unittest ARGS…`, loaded once; any subset of its tests can run on its own."""

    def __init__(self, args):
        import unittest

        class Load(unittest.TestProgram):
            def runTests(self):
                pass  # only the loading: the hunt runs the tests

        program = Load(module=None, argv=["python -m unittest"] + args, exit=False)
        self.cases = list(flatten(program.test))
        self.tests = [case.id() for case in self.cases]
        self.lines = lines_of(
            (case.id(), getattr(case, getattr(case, "_testMethodName", ""), None)) for case in self.cases
        )

    def run(self, tests=None):
        import unittest

        wanted = set(self.tests if tests is None else tests)
        suite = unittest.TestSuite(c for c in self.cases if c.id() in wanted)
        result = unittest.TestResult()
        result.startTestRun()
        suite.run(result)
        result.stopTestRun()
        problems = result.errors + result.failures + [(t, "unexpected success\n") for t in result.unexpectedSuccesses]
        # A failing test is hunted all the same (it may be the one that leaks); a suite that
        # cannot run at all (a module that does not import) is an error.
        self.failed = sorted({test.id() for test, _ in problems})
        if problems and tests is None and len(self.failed) >= result.testsRun:
            for test, text in problems:
                sys.stderr.write("FAIL: %s\n%s\n" % (test.id(), text))
            sys.exit(
                "every test failed (%d of %d): check the test names, and run from the folder "
                "they import from" % (len(self.failed), result.testsRun)
            )


def lines_of(tests):
    """(file, first line, last line) of each (test, function) whose code can be found."""
    found = {}
    for test, function in tests:
        code = getattr(inspect.unwrap(function), "__code__", None) if function else None
        if code is not None:
            numbers = [line for _, _, line in code.co_lines() if line is not None]
            found[test] = (relative(code.co_filename), code.co_firstlineno, max(numbers, default=0))
    return found


def flatten(suite):
    for item in suite:
        if hasattr(item, "_tests"):
            yield from flatten(item)
        else:
            yield item


class Pytest(Target):
    """`pytest ARGS…`; a subset runs by deselecting the other collected tests."""

    def __init__(self, args):
        import pytest  # main() made sure it is there

        self.pytest, self.args = pytest, args
        collected = []
        functions = []

        class Collect:
            def pytest_collection_finish(self, session):
                collected.extend(item.nodeid for item in session.items)
                functions.extend((item.nodeid, getattr(item, "function", None)) for item in session.items)

        self.main(["--collect-only"], Collect())
        self.tests = collected
        self.lines = lines_of(functions)

    def main(self, extra, plugin):
        code = self.pytest.main(["-q", "-p", "no:cacheprovider"] + extra + self.args, plugins=[plugin])
        # 1: some tests failed (hunted all the same, as with unittest); 5: none collected.
        if code not in (0, 1, 5):
            sys.exit("pytest exited with status %d" % code)

    def run(self, tests=None):
        wanted = set(self.tests if tests is None else tests)
        failed = []

        class Select:
            def pytest_collection_modifyitems(self, config, items):
                items[:] = [item for item in items if item.nodeid in wanted]

            def pytest_runtest_logreport(self, report):
                if report.failed:
                    failed.append(report.nodeid)

        self.main([], Select())
        self.failed = sorted(set(failed))


def make_target(config):
    kind, spec, args = config["kind"], config["target"], config["args"]
    if kind == "script":
        return Script(spec)
    if kind == "module" and spec == "unittest":
        return Unittest(args)
    if kind == "module":
        return Module(spec, args)
    if kind == "pytest":
        return Pytest(args)
    raise ValueError(kind)


def clear_caches():
    """Empty CPython's caches that fill up over many runs, as regrtest -R does: with
    regrtest's own list (warning registries, re, struct, linecache, typing, abc, ...) where
    the interpreter has the `test` package, else the two that matter most.

    The type attribute cache holds on to attribute names that code builds at run time
    (argparse, which `-m unittest` runs every time, does), so it grows until it is full.
    """
    if REGRTEST_CLEAR_CACHES is not None:
        REGRTEST_CLEAR_CACHES()
    clear_type_cache = getattr(sys, "_clear_internal_caches", None) or sys._clear_type_cache
    clear_type_cache()
    re = sys.modules.get("re")
    if re is not None:
        re.purge()
    # lab's own record of what a run watched: a target that calls lab.watch adds to it once
    # a run, and it is only read at exit, where a hunt has nothing to say of it.
    lab._watched.clear()


def immortal_interned():
    """Strings interned at run time that live until shutdown (3.12+), as regrtest -R counts
    them: it subtracts them from the allocated blocks, on 3.12 from the total refcount too."""
    size = getattr(sys, "getunicodeinternedsize", None)
    if size is None:
        return 0
    try:
        return size(_only_immortal=True)  # 3.13+: only those made immortal
    except TypeError:
        return size()


def release_built_extensions():
    """On a debug build, the extension modules loaded from files built for a release build
    (a wheel from PyPI, say): their Py_INCREF and Py_DECREF are inline and never touch the
    total refcount, so it drifts with every object they make or free (regrtest -R is fooled
    the same way). Told apart by the file's ABI tag: `.cpython-315-…` not `.cpython-315d-…`.
    A stable-ABI module (`.abi3.so`) does not say, and is trusted."""
    tag = "." + sys.implementation.cache_tag
    found = []
    for name, module in list(sys.modules.items()):
        filename = os.path.basename(getattr(module, "__file__", None) or "")
        if filename.endswith(".so") and (tag + "-" in filename or filename.endswith(tag + ".so")):
            found.append(name)
    return sorted(found)


def settle():
    clear_caches()
    for _ in range(3):  # objects freed by one pass can free more in the next
        gc.collect()


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def type_name(obj):
    return type(obj).__qualname__


def census():
    counts = {}
    for obj in gc.get_objects():
        name = type_name(obj)
        counts[name] = counts.get(name, 0) + 1
    return counts


class Reachable:
    """Every object the collector tracks and everything those refer to, by id, with the
    number of references to each that objects show the collector (`seen`).

    `excess(key)` is how many references to an object nothing shows the collector: those of
    local variables of running code, and those of C code (an incref never released, or a C
    object that owns a reference and does not visit it in tp_traverse). Callers pass ids, not
    objects, so that their own references do not count. Use it in a `with` block: leaving it
    lets go of every object at once (else a cycle through the tables would keep them all,
    and their blocks, until the next collection).
    """

    def __init__(self):
        self.objects, self.seen, self.tracked, self.offset = scan()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.objects.clear()
        self.seen.clear()

    def excess(self, key):
        return unexplained(self.objects, self.seen, key) - self.offset[key in self.tracked]


def ids_of_types(names):
    """The ids of every live object of these types, kept in one array."""
    names = set(names)
    return array.array("q", [id(o) for o in gc.get_objects() if type_name(o) in names])


def scanned(step):
    """step(reachable), over a scan of every object that can be reached."""
    with Reachable() as reachable:
        step(reachable)


def scan():
    # Two probes that only the tables hold (the float also through a list the collector
    # sees): what the tables add to a count.
    probe = []
    holder = [float(len(sys.argv)) + 0.5]
    tracked = gc.get_objects()
    objects = {id(o): o for o in tracked}
    tracked_ids = set(objects)
    seen = {}
    own = {id(objects), id(seen), id(tracked)}  # reached through this frame on 3.10
    # Frames still running (objects the collector tracks on 3.10) are not walked: their
    # value stacks may hold stale pointers there. Their locals count as unseen references.
    running = set()
    frame = sys._getframe()
    while frame is not None:
        running.add(id(frame))
        frame = frame.f_back
    get_referents = gc.get_referents
    code_type = type(scan.__code__)
    while tracked:
        referrer = tracked.pop()
        if id(referrer) in running:
            continue
        referents = get_referents(referrer)
        if type(referrer) is code_type:
            # A code object shows the collector nothing: walk its constants and names, or
            # a reference leaked onto a test's string constant is never seen.
            referents = (referrer.co_consts, referrer.co_names)
        for referent in referents:
            key = id(referent)
            if key in own:
                continue
            seen[key] = seen.get(key, 0) + 1
            if key not in objects:
                objects[key] = referent
                tracked.append(referent)
        referent = referrer = referents = None
    probes = {True: id(probe), False: id(holder[0])}
    del probe
    offset = {tracked: unexplained(objects, seen, key) for tracked, key in probes.items()}
    # The probes are the scan's own, not objects of the target's to name.
    for key in (*probes.values(), id(holder)):
        objects.pop(key, None)
        tracked_ids.discard(key)
    return objects, seen, tracked_ids, offset


def unexplained(objects, seen, key):
    return sys.getrefcount(objects[key]) - seen.get(key, 0)


class GrowingCounts:
    """Objects whose reference count grew in every run since `start` (same id, same type).

    One array of integers: the number of rows, then six a row (id, type id, count at the
    start, count now, and the same for the references the collector can see).
    """

    WIDTH = 6

    def __init__(self):
        self.table = array.array("q", [0])
        self.held = {}

    def start(self, reachable):
        rows = []
        for key in reachable.objects:  # not items(): its tuples would add to the counts
            obj = reachable.objects[key]
            count, seen = sys.getrefcount(obj), reachable.seen.get(key, 0)
            if not immortal(obj, count):
                rows.append((key, id(type(obj)), count, count, seen, seen))
        obj = None
        self.keep(rows)

    def keep(self, rows):
        table = array.array("q", [len(rows)])
        for row in rows:
            table.extend(row)
        self.table = table

    def rows(self):
        table, width = self.table, self.WIDTH
        for row in range(table[0]):
            yield tuple(table[1 + row * width : 1 + (row + 1) * width])

    def update(self, reachable):
        self.update_from(reachable.objects.get)

    def update_from(self, lookup):
        kept = []
        for key, type_id, first, last, first_seen, last_seen in self.rows():
            obj = lookup(key)
            if obj is None or id(type(obj)) != type_id:
                continue
            count = sys.getrefcount(obj)
            if count > last:
                kept.append((key, type_id, first, count, first_seen, last_seen))
        obj = None
        self.keep(kept)

    def hold(self, reachable):
        """Keeps the objects growing now, so later runs can be followed without a scan. The
        hold adds the one reference the scan's table did, so counts stay comparable."""
        objects = reachable.objects
        self.held = {key: objects[key] for key, *_ in self.rows() if key in objects}

    def update_held(self):
        self.update_from(self.held.get)

    def release(self):
        self.held = {}

    def __len__(self):
        return self.table[0]


def immortal(obj, count):
    """Whether `obj` is immortal (3.12+), its count `count` meaning nothing. 3.12 and 3.13
    pin an immortal count at 2**32 - 1; 3.14's counts of immortal objects drift upwards
    (an incref is no longer skipped for them), so a field name of every namedtuple made
    seems to gain a reference a run: ask `sys._is_immortal` there."""
    is_immortal = getattr(sys, "_is_immortal", None)
    if is_immortal is not None:
        return is_immortal(obj)
    return count >= 1 << 30


def steady_but_one_dip(deltas):
    """A total refcount (debug builds) that grew in all but one of at least three runs, and
    overall: one dip does not clear a leak regrtest -R reports (as hunt.rs decides too)."""
    return len(deltas) >= 3 and sum(d <= 0 for d in deltas) <= 1 and sum(deltas) > 0


class Series:
    """The totals after each run, kept as one JSON text replaced whole each run."""

    def __init__(self):
        self.text = json.dumps([])

    def add(self, event):
        values = {
            "allocated blocks": event["blocks"],
            "open file descriptors": event["fds"],
        }
        if event["total_refcount"] is not None:
            values["total refcount"] = event["total_refcount"]
        for name, count in event["census"].items():
            values["objects: " + name] = count
        for name, count in event["refcounts"].items():
            values["refcount: " + name] = count
        values.update(event.get("followed", {}))
        self.text = json.dumps(json.loads(self.text) + [values])

    def growth(self, start):
        """Each metric's growth in each run from `start` on (the metrics all runs have)."""
        runs = json.loads(self.text)[start:]
        names = set(runs[0])
        for values in runs:
            names &= set(values)
        return {name: [after[name] - before[name] for before, after in zip(runs, runs[1:])] for name in names}

    def leaking(self, start, confirming=False):
        """The metrics that leak over the runs from `start` on by regrtest's rule: growth in
        every run, or for file descriptors any change; in `confirming` runs, a total refcount
        that grew in all runs but one."""
        runs = json.loads(self.text)[start:]
        names = set(runs[0])
        for values in runs:
            names &= set(values)
        found = set()
        for name in names:
            deltas = [after[name] - before[name] for before, after in zip(runs, runs[1:])]
            if name == "open file descriptors" and any(deltas):
                found.add(name)
            elif deltas and all(delta > 0 for delta in deltas):
                found.add(name)
            elif confirming and name == "total refcount" and steady_but_one_dip(deltas):
                found.add(name)
        return found


class SiteCounts:
    """Live blocks per allocation site that grew in every run since tracemalloc started.

    One text (a header, then site, count at the first run, count now), replaced whole.
    """

    def __init__(self):
        self.updates = 0
        self.text = self.encode([])

    @staticmethod
    def encode(rows):
        return "\n".join(["sites %d" % len(rows)] + ["%s\t%d\t%d" % row for row in rows])

    def update(self):
        now = {}
        for statistic in tracemalloc.take_snapshot().statistics("traceback"):
            site = user_frame(statistic.traceback)
            if site is not None:
                now[site] = now.get(site, 0) + statistic.count
        if self.updates == 0:  # the baseline
            rows = [(site, count, count) for site, count in now.items()]
        elif self.updates == 1:  # a site can be new: it had no block at the baseline
            before = {site: last for site, _, last in self.rows()}
            rows = [(site, before.get(site, 0), count) for site, count in now.items() if count > before.get(site, 0)]
        else:
            rows = [(site, first, now[site]) for site, first, last in self.rows() if now.get(site, 0) > last]
        self.updates += 1
        self.text = self.encode(rows)

    def rows(self):
        for line in self.text.split("\n")[1:]:
            site, first, last = line.rsplit("\t", 2)
            yield site, int(first), int(last)


def harness_file(filename):
    # <string>: refcount-lab's launcher (`python -c`).
    if filename in HARNESS or filename == "<string>" or filename.startswith("<frozen"):
        return True
    parts = filename.replace("\\", "/").split("/")
    return any(package in parts for package in HARNESS_PACKAGES)


def user_frame(traceback):
    """The innermost frame of the code under test, as `file:line`, or None."""
    for frame in reversed(traceback):  # tracemalloc lists the oldest call first
        if not harness_file(frame.filename):
            return "%s:%d" % (relative(frame.filename), frame.lineno)
    return None


def relative(filename):
    try:
        path = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if path.startswith("..") else path


def source_line(site):
    import linecache

    filename, _, lineno = site.rpartition(":")
    for candidate in (filename, os.path.abspath(filename)):
        line = linecache.getline(candidate, int(lineno)).strip()
        if line:
            return line
    return ""


SHORT = reprlib.Repr()
SHORT.maxstring = SHORT.maxother = 60


def short_repr(obj):
    try:
        text = SHORT.repr(obj)
    except Exception as error:  # a broken __repr__ must not end the hunt
        text = "<%s object (repr raised %s)>" % (type_name(obj), type(error).__name__)
    return " ".join(text.split())[:80]


def describe(obj, cleared=False):
    """`type` plus a short repr. An object the collector may have cleared (tp_clear) while
    a leaked reference kept it alive gets `object.__repr__` on 3.10, whose cleared functions
    have NULL fields that their own repr reads."""
    if cleared and sys.version_info < (3, 11):
        return {"type": type_name(obj), "repr": object.__repr__(obj)}
    return {"type": type_name(obj), "repr": short_repr(obj)}


class Roots:
    """Shortest chains of references from a module to each object (objgraph's back-reference
    chains, found forward: one breadth-first walk from every module but the harness's, and
    from the namespace of a script the hunt loaded)."""

    def __init__(self, extra):
        harness = {id(sys.modules.get("__main__")), id(lab), id(sys.modules.get("_labtrace"))}
        self.parent = {}
        level = []
        for name, root in list(sys.modules.items()) + list(extra.items()):
            if root is not None and id(root) not in harness and id(root) not in self.parent:
                self.parent[id(root)] = (None, name)
                level.append(root)
        get_referents = gc.get_referents
        while level:
            following = []
            for obj in level:
                for referent in get_referents(obj):
                    if id(referent) not in self.parent:
                        self.parent[id(referent)] = (obj, None)
                        following.append(referent)
            level = following

    def reaches(self, key):
        return key in self.parent

    def chain(self, obj):
        path = [obj]
        while True:
            parent, name = self.parent[id(path[-1])]
            if parent is None:
                break
            path.append(parent)
        path.reverse()
        text = self.parent[id(path[0])][1]
        for parent, child in zip(path, path[1:]):
            text += step(parent, child)
        return text


def step(parent, child):
    """How `parent` refers to `child`, as Python would write it (`.name`, `[3]`, `['key']`)."""
    if getattr(parent, "__dict__", None) is child:
        return ""
    if isinstance(parent, types.ModuleType):
        # An extension module's state refers to its types directly (m_traverse): the
        # name the module gives them says more than "module -> type".
        for name, value in vars(parent).items():
            if value is child:
                return "." + name
    if isinstance(parent, dict):
        for key, value in parent.items():
            if value is child:
                return "." + key if isinstance(key, str) and key.isidentifier() else "[%s]" % short_repr(key)
            if key is child:
                return " (a key)"
    if isinstance(parent, (list, tuple)):
        for index, item in enumerate(parent):
            if item is child:
                return "[%d]" % index
    if isinstance(parent, (set, frozenset)):
        return " (in a set)"
    return " -> %s" % type_name(child)


class Hunt:
    def __init__(self, config):
        self.config = config
        self.target = make_target(config)
        self.accepted = set(config["accept"])
        self.shard = None
        if config["shard"] and self.target.tests is not None:
            every, part = self.target.tests, config["shard"]
            first = (part["index"] - 1) * len(every) // part["count"]
            last = part["index"] * len(every) // part["count"]
            self.target.tests = every[first:last]
            self.shard = {"first": first + 1, "last": last, "of": len(every)}
        self.skipped = []
        if self.target.tests is not None:  # accepted tests are not run at all
            self.skipped = [t for t in self.target.tests if t in self.accepted]
            self.target.tests = [t for t in self.target.tests if t not in self.accepted]
        self.tests = self.target.tests
        self.watched = {}
        self.followed = {}  # the objects named as gaining references, by metric name
        self.total = getattr(sys, "gettotalrefcount", None)
        self.growing = GrowingCounts()
        self.existing = array.array("q")
        self.sites = SiteCounts()
        self.suite_growth = {}  # each metric's growth in each confirming run of the whole target

    def watch(self, index):
        # A watched name may only exist once the target has run (an attribute it sets, a
        # module it imports): look again after each run until the warm-up is over.
        for name in self.config["watch"]:
            if name not in self.watched:
                try:
                    self.watched[name] = resolve(name)
                except (LookupError, AttributeError):
                    if index + 1 >= max(self.config["warmup"], 1):
                        sys.stderr.write(
                            "--watch %s: there is no object by that name, before the target "
                            "ran or after %d runs of it. Name a builtin (hash) or a dotted "
                            "name in an importable module (json.dumps, mymodule.CACHE).\n"
                            % (name, index + 1)
                        )
                        sys.exit(WATCH_NOT_FOUND)

    def repetition(self, index, phase, series, tests=None, follow=None):
        """Runs the target (or these tests of it) once, measures, adds the totals to `series`
        and, but while attributing, sends them. `follow()` follows the growing objects.
        Nothing made here outlives the call, but what `series` and `follow` keep."""
        started = time.perf_counter()
        self.target.run(tests)
        ran = time.perf_counter()
        settle()
        self.watch(index)
        # The totals first, before measuring allocates anything.
        interned = immortal_interned()
        release_built = release_built_extensions() if self.total else []
        event = {
            "ev": "repetition",
            "index": index,
            "phase": phase,
            "blocks": sys.getallocatedblocks() - interned,
            "fds": open_fds(),
            "total_refcount": self.total() - (2 * interned if sys.version_info[:2] == (3, 12) else 0)
            if self.total and not release_built
            else None,
            "release_built": release_built,
            "interned": interned,
        }
        event["failed"] = self.target.failed
        event["skipped"] = self.skipped
        event["shard"] = self.shard
        event["census"] = census()
        event["refcounts"] = {name: sys.getrefcount(obj) for name, obj in self.watched.items()}
        if phase == "attributing":
            event["followed"] = {name: sys.getrefcount(obj) for name, obj in self.followed.items()}
        if follow is not None:
            follow()
        event["objects_growing"] = len(self.growing)
        if tracemalloc.is_tracing():
            self.sites.update()
        series.add(event)
        if phase != "attributing":
            event["run_seconds"] = ran - started
            event["measure_seconds"] = time.perf_counter() - ran
            send(event)

    def main(self):
        warmup, repeat, confirm = self.config["warmup"], self.config["repeat"], self.config["confirm"]
        baseline = max(warmup - 1, 0)
        series = Series()
        for index in range(warmup + repeat):
            if index < baseline:
                follow = None
            else:
                step = self.growing.start if index == baseline else self.growing.update
                follow = lambda: scanned(step)  # noqa: E731
            self.repetition(index, "warm-up" if index < warmup else "measured", series, follow=follow)
        suspects = series.leaking(baseline)
        if not suspects and not len(self.growing):
            return
        # Confirm with tracemalloc on, which also says where the leaked memory came from.
        # The first traced run is a warm-up: code first run under tracing keeps a few blocks
        # (and so does holding the growing objects).
        scanned(self.growing.hold)
        self.existing = ids_of_types(m[len("objects: "):] for m in suspects if m.startswith("objects: "))
        tracemalloc.start(TRACE_FRAMES)
        start = warmup + repeat
        for index in range(start, start + 1 + confirm):
            phase = "confirming" if index > start else "tracing warm-up"
            self.repetition(index, phase, series, follow=self.growing.update_held)
        confirmed = series.leaking(start, confirming=True) & suspects
        findings = self.name(confirmed, confirm)
        tracemalloc.stop()
        if confirmed & TOTALS and not findings["sites"] and not findings["objects"]:
            # Nothing named: a slow cache of the interpreter's or the test runner's (3.10
            # has some) grows for a while, then stops. Make sure it does not.
            end = start + 1 + confirm
            for index in range(end, end + EXTRA_CONFIRM):
                self.repetition(index, "confirming", series)
            confirmed = series.leaking(start, confirming=True) & suspects
        self.suite_growth = series.growth(start)
        if self.tests and (confirmed or findings["objects"]):
            findings["tests"] = self.attribute(confirmed, findings)
        self.name_lines(findings)
        send(dict(ev="findings", **findings))

    def name_lines(self, findings):
        """For each object C code over-counted, the lines of its leaking test (or of the
        target) whose run left the references behind: one more run, followed line by line,
        for each of the first few (a dealloc that keeps its type's references over-counts
        a dozen of its attributes' names at once)."""
        over_counted = [
            found
            for found in findings["objects"]
            if found["kind"] == "references" and found["verdict"] == "over-counted"
        ]
        for found in over_counted[:LeftBehind.MOST_FOLLOWED]:
            metric = "references to " + found["repr"]
            tests = None
            if self.tests:
                groups = [f["tests"] for f in findings.get("tests", []) if metric in f["metrics"]]
                if not groups:
                    continue
                tests = groups[0]
            follower = LeftBehind(self.followed[metric])
            follower.follow(lambda: self.target.run(tests))
            found["left_by"] = follower.lines()

    def name(self, confirmed, runs):
        """The leaked objects and allocation sites behind the confirmed leaks."""
        self.growing.release()
        with Reachable() as reachable:
            roots = Roots(self.target.roots())
            existing = set(self.existing)
            objects = self.references(reachable, roots, confirmed, existing, self.config["repeat"] + 1 + runs)
            objects += self.new_objects(reachable, roots, confirmed, existing, 1 + runs)
        sites = {site: (last - first) / runs for site, first, last in self.sites.rows()}
        blocks = [
            {"allocated": site, "source": source_line(site), "per_run": per_run}
            for site, per_run in sorted(sites.items(), key=lambda item: -item[1])
            if per_run >= 1
        ][:5]
        return {"objects": objects, "sites": blocks if "allocated blocks" in confirmed else []}

    def references(self, reachable, roots, confirmed, existing, runs):
        """Long-lived objects that gained references in every run, and who took them."""
        objects = []
        for key, _, first, last, first_seen, _ in self.growing.rows():
            obj = reachable.objects.get(key)
            if obj is None:
                continue
            found = describe(obj)
            found.update(kind="references", per_run=(last - first) / runs)
            if reachable.seen.get(key, 0) - first_seen >= last - first:
                if any(
                    id(r) in reachable.objects
                    and id(r) not in existing
                    and "objects: " + type_name(r) in confirmed
                    for r in gc.get_referrers(obj)
                ):
                    continue  # new leaked objects took its references: they are named with them
                found["verdict"] = "held"
            else:
                found["verdict"] = "over-counted"
            if roots.reaches(key):
                found["chain"] = roots.chain(obj)
            objects.append(found)
            self.followed["references to " + found["repr"]] = obj  # while looking for the tests
        return objects

    def new_objects(self, reachable, roots, confirmed, existing, runs):
        """Objects of the types that leaked, made in the traced runs and still alive, at
        least one a run: where they were made, how many, and what keeps them.

        The first traced run (the warm-up) may reuse memory freed before tracing began (a
        free list's): its objects can lack a traceback. So a site needs one object per
        confirming run, and one fewer than `runs` makes it a site of one a run."""
        leaking_types = {m[len("objects: "):] for m in confirmed if m.startswith("objects: ")}
        groups = {}
        for obj in gc.get_objects():
            name = type_name(obj)
            # Objects the scan did not see are the naming's own (Roots' tuples).
            if name in leaking_types and id(obj) not in existing and id(obj) in reachable.objects:
                traceback = object_traceback(obj)
                site = traceback and user_frame(traceback)
                groups.setdefault((name, site or ""), []).append(id(obj))
        obj = None  # the loop's last object: not a reference to count
        objects = []
        for (name, site), keys in sorted(groups.items()):
            if len(keys) < runs - 1:
                continue  # not one a run: what the last runs left, not a leak
            per_run = len(keys) / (runs if len(keys) >= runs else runs - 1)
            verdict = unreachable(keys[-1], reachable, roots)
            found = describe(reachable.objects[keys[-1]], cleared=verdict["verdict"] != "held")
            found.update(kind="new objects", per_run=per_run, count=len(keys), **verdict)
            if site:
                found.update(allocated=site, source=source_line(site))
            objects.append(found)
        return objects

    def attribute(self, confirmed, findings):
        """Which tests leak. The tests whose own code holds a line that made leaked objects
        or blocks are tried first; then, in the tests left (all of them if none of those
        leaks), the suite is halved until each leak is pinned to a test (or to a group that
        leaks only together)."""
        checks = {metric for metric in confirmed if metric != "open file descriptors"}
        checks |= set(self.followed)
        if not checks and findings["objects"]:
            checks = {"allocated blocks"}
        found = []
        growths = []
        for group in self.tests_making(findings):
            leaked, growth = self.growth_in(group, checks)
            if leaked:
                growths.append(growth)
                self.bisect(group, leaked, found)
        if not found:
            self.bisect(self.tests, checks, found)
            return found
        pinned = {test for f in found for test in f["tests"]}
        rest = [test for test in self.tests if test not in pinned]
        if rest and not self.explain_all(growths, checks):
            leaked = self.leaks_in(rest, checks)
            if leaked:
                self.bisect(rest, leaked, found)
        return found

    def explain_all(self, growths, checks):
        """Whether the groups of tests with these growths leak all that the whole target
        did, run for run: each metric checked grew by the same amount in every run of the
        target, and by the same amount in every run of each group, and those add up. Then
        the rest of the tests leak none of it, and need no run of their own."""
        for metric in checks:
            whole = set(self.suite_growth.get(metric, ()))
            parts = [set(growth.get(metric, ())) for growth in growths]
            if len(whole) != 1 or any(len(part) != 1 for part in parts):
                return False
            if sum(part.pop() for part in parts) != whole.pop():
                return False
        return True

    def tests_making(self, findings):
        """Groups of tests (those of one test function) whose code holds a line where
        leaked objects or blocks were made."""
        sites = [found["allocated"] for found in findings["objects"] if found.get("allocated")]
        sites += [found["allocated"] for found in findings["sites"]]
        groups = []
        for site in dict.fromkeys(sites):
            path, _, line = site.rpartition(":")
            group = [
                test
                for test in self.tests
                if test in self.target.lines
                and self.target.lines[test][0] == path
                and self.target.lines[test][1] <= int(line) <= self.target.lines[test][2]
            ]
            if group and group not in groups:
                groups.append(group)
        return groups

    def bisect(self, tests, checks, found):
        if len(tests) == 1:
            found.append({"tests": tests, "metrics": sorted(checks)})
            return
        half = len(tests) // 2
        before = len(found)
        for part in (tests[:half], tests[half:]):
            leaked = self.leaks_in(part, checks)
            if leaked:
                self.bisect(part, leaked, found)
        if len(found) == before:
            found.append({"tests": tests, "metrics": sorted(checks), "together": True})

    def leaks_in(self, tests, checks):
        return self.growth_in(tests, checks)[0]

    def growth_in(self, tests, checks):
        """Which of `checks` leak when only `tests` run, and each metric's growth per run."""
        warmup, repeat = self.config["warmup"], self.config["repeat"]
        series = Series()
        for index in range(warmup + repeat):
            self.repetition(index, "attributing", series, tests)
        baseline = max(warmup - 1, 0)
        return series.leaking(baseline) & checks, series.growth(baseline)


class LeftBehind:
    """Follows one object's references through a run, line by line (`sys.settrace`) and
    across each call of a C function (`sys.setprofile`), and names the lines whose run left
    references to it that nothing explains: not a local variable of a running function, not
    an object the collector sees. Those are references C code took and never gave back (or
    keeps where the collector cannot see), still there at the end of the run.

    A reference C code forgets to release when it lets go of the object (a dealloc, a
    removal) leaves the count as it was: so the references are explained again after every
    line of the target's own code (not the standard library's or a test runner's), and
    whenever the count moves. Lines are those of the target's own code too: what a test
    runner does after a test function returns (freeing its locals) counts to the test
    function's last line."""

    # Each explanation looks at every reference of every object the collector tracks
    # (tenths of a second in a big program): after this many, a run that keeps changing
    # the object's references is no longer followed.
    MOST_EXPLAINED = 1000
    MOST_FOLLOWED = 5
    RUNNERS = ("pytest", "_pytest", "pluggy", "unittest")

    def __init__(self, obj):
        self.held = [obj]  # the follower's one reference, skipped as a referrer
        self.running = None  # the line of the target's code running now: (file, line)
        self.called = None  # the C function it is calling, if any
        self.returned = None  # the function that returned from it (freeing its locals)
        self.calls = []  # the running line and C function of each caller in the target's code
        self.explanations = 0
        self.own_code = {}  # file name -> whether it is the target's code
        self.stdlib = {
            os.path.realpath(sysconfig.get_path(name)) for name in ("stdlib", "platstdlib")
        }
        self.count = self.start = 0  # from the start of `follow`
        self.seen_last = None  # (count, explained by referrers and locals) at the last look
        # What raised the excess to each level, still held: (line, C function, returned).
        self.left = []

    def references(self):
        return sys.getrefcount(self.held[0])

    def explained(self):
        """The references to the object that objects the collector sees, and the local
        variables of the running functions, hold."""
        self.explanations += 1
        obj = self.held[0]
        seen = 0
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_flags & inspect.CO_OPTIMIZED and code not in LeftBehind.CODES:
                # Before 3.13 this also copies them into a dict the frame keeps, which the
                # collector sees: its references are counted with the other referrers'.
                names = frame.f_locals
                seen += sum(1 for name in code.co_varnames if names.get(name) is obj)
            frame = frame.f_back
        names = frame = None
        for referrer in gc.get_referrers(obj):
            if referrer is not self.held and not isinstance(referrer, types.FrameType):
                seen += sum(1 for referent in gc.get_referents(referrer) if referent is obj)
        return seen

    def in_untracked(self):
        """The references to the object that tuples and dicts the collector does not track
        hold (3.14 makes a tuple of atomic values untracked, such as a function's defaults;
        the collector stops tracking others as it goes): those reached from the tracked
        objects, each counted once. A look at every object, so only when the cheaper count
        moved."""
        self.explanations += 9
        obj = self.held[0]
        seen = 0
        visited = set()
        kinds = (tuple, dict, types.CodeType)
        for tracked in gc.get_objects():
            pending = [r for r in gc.get_referents(tracked) if type(r) in kinds]
            while pending:
                container = pending.pop()
                if gc.is_tracked(container) or id(container) in visited:
                    continue
                visited.add(id(container))
                if type(container) is types.CodeType:
                    # The collector sees nothing in a code object: its constants count too
                    # (a loop over a constant tuple would else explain them only meanwhile).
                    pending.append(container.co_consts)
                    continue
                for referent in gc.get_referents(container):
                    if referent is obj:
                        seen += 1
                    elif type(referent) in kinds:
                        pending.append(referent)
        tracked = pending = container = referent = None
        return seen

    def is_own_code(self, path):
        """Is `path` the target's code, not the standard library's, a test runner's or the
        hunt's?"""
        own = self.own_code.get(path)
        if own is None:
            real = os.path.realpath(path)
            parts = set(real.split(os.sep))
            own = (
                not path.startswith("<")
                and not any(real.startswith(folder + os.sep) for folder in self.stdlib)
                and not parts & set(LeftBehind.RUNNERS)
                and os.path.dirname(real) != os.path.dirname(os.path.realpath(__file__))
            )
            self.own_code[path] = own
        return own

    def step(self, always, in_flight=False):
        count = self.references() - in_flight
        if count == self.count and not always or self.explanations >= LeftBehind.MOST_EXPLAINED:
            return
        explained = self.explained()
        self.count = self.references() - in_flight  # after: explaining copies locals
        if (self.count, explained) == self.seen_last:
            return  # nothing moved since the last look: no need to look at every object
        self.seen_last = (self.count, explained)
        excess = self.count - explained - self.in_untracked() - self.start
        del self.left[max(excess, 0):]
        while len(self.left) < excess:
            self.left.append((self.running, self.called, self.returned))

    def trace(self, frame, event, arg):
        own = self.is_own_code(frame.f_code.co_filename)
        # Not on a call: its arguments are on their way then, references nothing explains.
        if event == "line":
            self.step(always=own)
        elif event == "return" and own:
            # Its result is on its way back: a reference nothing explains yet (and `arg`
            # would be one more).
            in_flight, arg = arg is self.held[0], None
            self.step(always=True, in_flight=in_flight)
        if not own:
            return self.trace
        if event == "call":
            self.calls.append((self.running, self.called))
        elif event == "line":
            self.running = (frame.f_code.co_filename, frame.f_lineno)
            self.called = self.returned = None
        elif event == "return" and self.calls:
            # Back in the target's code, the calling line runs on (a function called by a C
            # function of that line, such as a hash function, is part of it); back in a
            # test runner, the function's last line stands for what comes of its return.
            caller = frame.f_back
            if caller is not None and self.is_own_code(caller.f_code.co_filename):
                self.running, self.called = self.calls.pop()
            else:
                self.calls.pop()
                self.returned = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        return self.trace

    def profile(self, frame, event, arg):
        if event.startswith("c_") and self.is_own_code(frame.f_code.co_filename):
            self.step(always=False)
            self.called = getattr(arg, "__qualname__", None) if event == "c_call" else None

    def follow(self, run):
        tracer, profiler = sys.gettrace(), sys.getprofile()
        explained = self.explained()
        self.count = self.references()
        self.seen_last = (self.count, explained)
        self.start = self.count - explained - self.in_untracked()
        # No collection in the run: one would stop tracking tuples and dicts that hold only
        # atomic values, and the references they hold would look unexplained.
        gc.disable()
        sys.settrace(self.trace)
        sys.setprofile(self.profile)
        try:
            run()
        finally:
            sys.settrace(tracer)
            sys.setprofile(profiler)
            gc.enable()
        settle()
        self.step(always=True)

    def lines(self):
        """The lines (and C functions) that left references, with how many each."""
        counts = {}
        for left in self.left:
            if left[0] is not None:
                counts[left] = counts.get(left, 0) + 1
        found = []
        for ((path, line), called, returned), references in counts.items():
            site = "%s:%d" % (relative(path), line)
            entry = {"line": site, "source": source_line(site), "references": references}
            if called:
                entry["call"] = called
            if returned:
                entry["returned"] = returned
            found.append(entry)
        return found


LeftBehind.CODES = {
    function.__code__
    for function in vars(LeftBehind).values()
    if isinstance(function, types.FunctionType)
}


def object_traceback(obj):
    """Where tracemalloc saw `obj` made. 3.11's tracemalloc misses an object with a managed
    `__dict__` (an instance of a plain class; gh-101430, fixed in 3.12): its memory starts
    before the collector's header, at two pointers of its own, and is looked up there."""
    traceback = tracemalloc.get_object_traceback(obj)
    if traceback is not None or sys.version_info[:2] != (3, 11):
        return traceback
    if not type(obj).__flags__ & MANAGED_DICT or not gc.is_tracked(obj):
        return None
    import ctypes

    lookup = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    lookup.restype = ctypes.py_object
    lookup.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    word = ctypes.sizeof(ctypes.c_void_p)
    frames = lookup(0, id(obj) - 4 * word)  # domain 0: Python's own allocators
    return tracemalloc.Traceback(frames) if frames is not None else None


def unreachable(key, reachable, roots):
    """What holds a leaked object: a chain from a module, or why nothing that can be reached
    does and it is still alive."""
    if roots.reaches(key):
        return {"verdict": "held", "chain": roots.chain(reachable.objects[key])}
    excess = reachable.excess(key)
    if excess > 0:
        return {"verdict": "over-counted", "excess": excess}
    # Every reference to it is accounted for, yet the collector did not free it: follow its
    # referrers to the one with references nothing the collector sees holds.
    chain = [type_name(reachable.objects[key])]
    for _ in range(8):
        referrers = gc.get_referrers(reachable.objects[key])
        keys = [id(r) for r in referrers if id(r) in reachable.objects]
        del referrers
        if not keys:
            break
        key = keys[0]
        chain.append(type_name(reachable.objects[key]))
        excess = reachable.excess(key)
        if excess > 0:
            break
    return {"verdict": "unreachable", "kept_by": " <- ".join(chain), "excess": excess}


def main():
    # The target and its arguments come as arguments of their own: a path need not be
    # UTF-8, and JSON holds only text.
    config = json.loads(sys.argv[1])
    config["target"], config["args"] = sys.argv[2], sys.argv[3:]
    sys.argv = sys.argv[:1]
    # What `python SCRIPT` and `python -m MODULE` put first on sys.path: the script's own
    # folder, or the current one. Not the current folder for a script: another user's
    # module there would be imported (by this harness too) as yours.
    # What the harness itself imports, now or later, comes first, from the standard
    # library and the interpreter's packages, not from that folder (another user's
    # `pkgutil.py`, `ctypes.py` or `pytest.py` in a shared folder).
    import linecache  # noqa: F401  (source lines of the sites)
    import pkgutil  # noqa: F401  (runpy imports it on each run)

    if sys.version_info[:2] == (3, 11):
        import ctypes  # noqa: F401  (object_traceback, when a leak is named)
    if config["kind"] == "module" and config["target"] == "unittest":
        import unittest  # noqa: F401

    if config["kind"] == "pytest":
        try:
            import pytest  # noqa: F401
        except ImportError:
            sys.exit(
                "pytest is not importable in refcount-lab's interpreter (%s). Install it there: "
                "%s -m pip install pytest" % (sys.version.split()[0], sys.executable)
            )
    if config["kind"] == "script":
        script = config["target"].split("::", 1)[0]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    else:
        sys.path.insert(0, os.getcwd())
    Hunt(config).main()
    send({"ev": "hunt_done"})
    end_now()


def end_now():
    """The hunt is over. A thread the target left running (not a daemon) would hold the
    interpreter at its shutdown for as long as it runs, and the report with it: run the
    exit handlers (`lab` names the threads still running) and leave without waiting."""
    threading = sys.modules.get("threading")
    if threading is None:
        return
    main_thread = threading.main_thread()
    if all(t is main_thread or t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


main()
