"""What `refcount-lab hunt` runs: a script, `SCRIPT::FUNCTION`, `python -m MODULE`, a
unittest suite or pytest, and how any subset of a suite's tests runs on its own."""

import importlib
import inspect
import os
import runpy
import sys

from hunt_paths import relative


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
