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
import json
import os
import sys
import time
import tracemalloc

import _labtrace
import lab
from hunt_census import (
    GrowingCounts,
    Reachable,
    Series,
    SiteCounts,
    census,
    ids_of_types,
    immortal_interned,
    open_fds,
    release_built_extensions,
    scanned,
    settle,
    type_name,
)
from hunt_naming import (
    LeftBehind,
    Roots,
    blocks_made,
    describe,
    every_type,
    object_traceback,
    unreachable,
)
from hunt_paths import source_line, user_frame
from hunt_targets import make_target, resolve

# Bound now, before the target runs: a target that replaces `lab._send` (to change what
# the hunt reports) changes only its own calls. (A target shares the hunt's interpreter
# and can still tamper on purpose, with ctypes or gc; `hunt` measures code, not adversaries.)
send = lab._send
# The exit status that says a --watch name never resolved (the target itself was fine).
WATCH_NOT_FOUND = 3
# Totals that grow with any leak; a growth of theirs nothing explains must go on for this
# many confirming runs (on 3.10 the blocks of a clean suite grow for 9 under tracing).
TOTALS = {"allocated blocks", "total refcount"}
SLOW_CACHE_RUNS = 12
# Frames tracemalloc keeps per allocation: the innermost only. Each more frame costs (a
# deep test suite ran 4.5 times slower with one frame, 26 times with eight), and the line
# that made an object is the one to show.
TRACE_FRAMES = 1


class Hunt:
    def __init__(self, config):
        self.config = config
        self.target = make_target(config)
        self.accepted = set(config["accept"])
        self.shard = None
        if (config["shard"] or config["job"]) and self.target.tests is not None:
            # --shard's part of the suite, then a --jobs copy's part of that.
            first, last = 0, len(self.target.tests)
            for part in (config["shard"], config["job"]):
                if part:
                    size = last - first
                    first, last = (
                        first + (part["index"] - 1) * size // part["count"],
                        first + part["index"] * size // part["count"],
                    )
            self.shard = {"first": first + 1, "last": last, "of": len(self.target.tests)}
            self.target.tests = self.target.tests[first:last]
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
        self.suite_growth = {}  # growth per metric in the measured runs of the whole target
        self.made = "[]"  # what the last confirming run made and left alive: see `blocks_made`

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

    def repetition(self, index, phase, series, tests=None, follow=None, watch_blocks=False):
        """Runs the target (or these tests of it) once, measures, adds the totals to `series`
        and, but while attributing, sends them. `follow()` follows the growing objects.
        Nothing made here outlives the call, but what `series` and `follow` keep.
        `watch_blocks`: also keep what the run made and left alive, by line (`self.made`)."""
        if tracemalloc.is_tracing():
            # Empty the free lists, which measuring the last run filled. tracemalloc gives an
            # object a free list hands out the trace of the line that takes it, but only if
            # its memory was traced already; the block watch sees only memory made while it
            # watches.
            gc.collect()
        started = time.perf_counter()
        if watch_blocks:
            try:
                _labtrace._watch_blocks(True)
            except RuntimeError:  # the target called lab's own function: no names, then
                watch_blocks = False
        try:
            self.target.run(tests)
            ran = time.perf_counter()
            settle()
            if watch_blocks:
                _labtrace._watch_blocks(False)  # what measuring makes is not the run's
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
        finally:
            alive = _labtrace._blocks_alive(every_type()) if watch_blocks else []
        if alive:
            self.made = blocks_made(alive)

    def main(self):
        warmup, repeat, confirm = self.config["warmup"], self.config["repeat"], self.config["confirm"]
        baseline = max(warmup - 1, 0)
        series = Series()
        for index in range(warmup + repeat):
            if index < baseline:
                follow = None
            elif index == baseline:
                follow = lambda: scanned(self.growing.start)  # noqa: E731
            else:
                follow = self.growing.update
            self.repetition(index, "warm-up" if index < warmup else "measured", series, follow=follow)
        suspects = series.leaking(baseline)
        if not suspects and not len(self.growing):
            return
        # Confirm with tracemalloc on, which also says where the leaked memory came from.
        # The last measured run is the baseline of the first confirming one, which also
        # keeps what tracing keeps once (and so does holding the growing objects). A total
        # must grow in every confirming run; a line's blocks, traced from the first on, in
        # every one after it.
        scanned(self.growing.hold)
        self.existing = ids_of_types(m[len("objects: "):] for m in suspects if m.startswith("objects: "))
        tracemalloc.start(TRACE_FRAMES)
        start = warmup + repeat - 1
        for index in range(start + 1, start + 1 + confirm):
            # The last also names the blocks that leaked, by line, type and size (when blocks
            # are what grew: only then are their lines reported).
            name_blocks = index == start + confirm and "allocated blocks" in suspects
            self.repetition(index, "confirming", series, follow=self.growing.update_held, watch_blocks=name_blocks)
        confirmed = series.leaking(start, confirming=True) & suspects
        # Where the new objects were made is read while tracemalloc traces; the naming walks
        # every object after it stops, in a third of the time. The collector waits until the
        # walk, so that no id read before it names another object by then.
        self.growing.release()  # what it held and no one else does goes before ids are read
        collecting = gc.isenabled()
        gc.disable()
        try:
            made_at = self.made_at(confirmed)
            tracemalloc.stop()
            findings = self.name(confirmed, confirm, made_at)
        finally:
            if collecting:
                gc.enable()
        if confirmed & TOTALS and not findings["sites"] and not findings["objects"]:
            # Nothing named: a slow cache of the interpreter's or the test runner's (3.10
            # has some) grows for a while, then stops. Make sure it does not.
            for index in range(start + 1 + confirm, start + 1 + SLOW_CACHE_RUNS):
                self.repetition(index, "confirming", series)
                confirmed = series.leaking(start, confirming=True) & suspects
                if not confirmed & TOTALS:
                    break
        # Growth in the measured runs but the first, which often still carries a warm-up's
        # (ujson's suite: +7, +2, +2), untraced as the runs of parts of the suite are.
        self.suite_growth = series.growth(warmup, warmup + repeat)
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

    def name(self, confirmed, runs, made_at):
        """The leaked objects and allocation sites behind the confirmed leaks."""
        with Reachable() as reachable:
            roots = Roots(self.target.roots())
            existing = set(self.existing)
            objects = self.references(reachable, roots, confirmed, existing, self.config["repeat"] + runs)
            objects += self.new_objects(reachable, roots, made_at, runs)
        grown = max(runs - 1, 1)  # the lines' baseline is the first confirming run
        sites = {
            site: ((last - first) / grown, (last_size - first_size) / grown)
            for site, first, first_size, last, last_size in self.sites.rows()
        }
        made = {}
        for site, name, size, count in json.loads(self.made):
            made.setdefault(site, []).append({"type": name, "size": size, "count": count})
        blocks = [
            {
                "allocated": site,
                "source": source_line(site),
                "per_run": per_run,
                "bytes_per_run": size,
                "made": sorted(made.get(site, []), key=lambda kind: (-kind["count"], kind["type"], kind["size"]))[:5],
            }
            for site, (per_run, size) in sorted(sites.items(), key=lambda item: -item[1][0])
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

    def made_at(self, confirmed):
        """The objects of the types that leaked, made in the traced runs: by id, their
        type's id and the line that made them. Only ints and new texts, which take no
        reference to anything the naming counts."""
        leaking_types = {m[len("objects: "):] for m in confirmed if m.startswith("objects: ")}
        existing = set(self.existing)
        found = {}
        for obj in gc.get_objects():
            if type_name(obj) in leaking_types and id(obj) not in existing:
                traceback = object_traceback(obj)
                found[id(obj)] = (id(type(obj)), (traceback and user_frame(traceback)) or "")
        obj = None  # the loop's last object: not a reference to keep
        return found

    def new_objects(self, reachable, roots, made_at, runs):
        """Objects of the types that leaked, made in the traced runs and still alive, at
        least one a run: where they were made, how many, and what keeps them.

        The first traced run may reuse memory freed before tracing began (3.10 keeps a frame
        for each code object): its objects can lack a traceback. So a site needs one object per
        confirming run, and one fewer than `runs` makes it a site of one a run."""
        groups = {}
        for key, (type_id, site) in made_at.items():
            obj = reachable.objects.get(key)
            # Objects the scan did not see are the naming's own (Roots' tuples).
            if obj is not None and id(type(obj)) == type_id:
                groups.setdefault((type_name(obj), site), []).append(key)
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
