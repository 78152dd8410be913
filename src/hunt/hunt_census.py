"""How `refcount-lab hunt` measures after each run: CPython's caches emptied and a full
collection (`settle`), the live objects per type (`census`), the reference count of every
object it can reach (`scan`, `GrowingCounts`), the totals of each run (`Series`) and, under
tracemalloc, the live blocks per line that allocated them (`SiteCounts`).

What it keeps from one run to the next is always the same number of objects (a few texts
and one array, each replaced whole), since every object kept counts as an allocated block.
"""

import array
import gc
import marshal
import os
import sys
import tracemalloc

import _labtrace
import lab
from hunt_paths import user_site

try:
    from test.libregrtest.utils import clear_caches as REGRTEST_CLEAR_CACHES
except ImportError:  # a Python without its test suite (Debian's, without libpython3-testsuite)
    REGRTEST_CLEAR_CACHES = None


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
        if not gc.collect():
            break  # this pass freed nothing: nor would the next


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def type_name(obj):
    return type(obj).__qualname__


def census():
    """Live objects the collector tracks, per type name (counted natively: under tracemalloc
    a loop here traced every int it made)."""
    return _labtrace._census(gc.get_objects())


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
    tracked, running = walk_from()
    tracked_ids = {id(o) for o in tracked}
    objects, seen = _labtrace._scan(tracked, running, CODE)
    del tracked
    probes = {True: id(probe), False: id(holder[0])}
    del probe
    offset = {tracked: unexplained(objects, seen, key) for tracked, key in probes.items()}
    # The probes are the scan's own, not objects of the target's to name.
    for key in (*probes.values(), id(holder)):
        objects.pop(key, None)
        tracked_ids.discard(key)
    return objects, seen, tracked_ids, offset


def walk_from():
    """Where a walk of every object starts (the collector's list), and the frames it leaves
    out: those still running (objects the collector tracks on 3.10), whose value stacks may
    hold stale pointers there. Their locals count as unseen references. The walk itself is
    native (`_labtrace._scan`): it visits what the collector's `gc.get_referents` lists,
    and a code object's constants and names."""
    running = set()
    frame = sys._getframe()
    while frame is not None:
        running.add(id(frame))
        frame = frame.f_back
    return gc.get_objects(), running


CODE = type(walk_from.__code__)


def unexplained(objects, seen, key):
    return sys.getrefcount(objects[key]) - seen.get(key, 0)


class GrowingCounts:
    """Objects whose reference count grew in every run since `start` (same id, same type).

    One table, as bytes: the number of rows, then six integers a row (id, type id, count at
    the start, count now, and the same for the references the collector can see). Made and
    filtered natively (`_labtrace._count_rows`, `_still_growing_walked`, `_still_growing`):
    the first has a row for every object, and took 0.3 s in Python on ujson's suite; a walk
    that follows the rows without making the scan's tables takes a third of a scan's time.
    """

    WIDTH = 6

    def __init__(self):
        self.table = bytes(8)
        self.held = {}

    def start(self, reachable):
        self.table = _labtrace._count_rows(reachable.objects, reachable.seen)

    def rows(self):
        table, width = array.array("q"), self.WIDTH
        table.frombytes(self.table)
        for row in range(table[0]):
            yield tuple(table[1 + row * width : 1 + (row + 1) * width])

    def update(self):
        """Follows the rows over a walk of every object now, without the scan's tables."""
        tracked, running = walk_from()
        self.table = _labtrace._still_growing_walked(self.table, tracked, running, CODE)

    def hold(self, reachable):
        """Keeps the objects growing now, so later runs can be followed without a scan. The
        hold is a dict, as the scan's table was, so counts stay comparable."""
        objects = reachable.objects
        self.held = {key: objects[key] for key, *_ in self.rows() if key in objects}

    def update_held(self):
        self.table = _labtrace._still_growing(self.table, self.held)

    def release(self):
        self.held = {}

    def __len__(self):
        return int.from_bytes(self.table[:8], sys.byteorder, signed=True)


def steady_but_one_dip(deltas):
    """A total refcount (debug builds) that grew in all but one of at least three runs, and
    overall: one dip does not clear a leak regrtest -R reports (as hunt.rs decides too)."""
    return len(deltas) >= 3 and sum(d <= 0 for d in deltas) <= 1 and sum(deltas) > 0


class Series:
    """The totals after each run, kept as one `marshal` bytes object replaced whole each run.
    Not JSON: under tracemalloc, `json` would make it on `json`'s own lines, which are not
    the harness's, and the one kept, first traced in the first confirming run, would read
    as a line that grows."""

    def __init__(self):
        self.kept = marshal.dumps([])

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
        self.kept = marshal.dumps(marshal.loads(self.kept) + [values])

    def growth(self, start, end=None):
        """Each metric's growth in each run from `start` on, to `end` (the metrics all those
        runs have)."""
        runs = marshal.loads(self.kept)[start:end]
        names = set(runs[0])
        for values in runs:
            names &= set(values)
        return {name: [after[name] - before[name] for before, after in zip(runs, runs[1:])] for name in names}

    def leaking(self, start, confirming=False):
        """The metrics that leak over the runs from `start` on by regrtest's rule: growth in
        every run, or for file descriptors any change; in `confirming` runs, a total refcount
        that grew in all runs but one."""
        found = set()
        for name, deltas in self.growth(start).items():
            if name == "open file descriptors" and any(deltas):
                found.add(name)
            elif deltas and all(delta > 0 for delta in deltas):
                found.add(name)
            elif confirming and name == "total refcount" and steady_but_one_dip(deltas):
                found.add(name)
        return found


class SiteCounts:
    """Live blocks per allocation site that grew in every traced run after the first (which
    is their baseline: what it made and keeps is all new to tracemalloc), and their bytes.

    One text (a header, then site, count and bytes at the first run, count and bytes now),
    replaced whole.
    """

    def __init__(self):
        self.updates = 0
        self.text = self.encode([])

    @staticmethod
    def encode(rows):
        return "\n".join(["sites %d" % len(rows)] + ["%s\t%d\t%d\t%d\t%d" % row for row in rows])

    def update(self):
        now = {}
        for frames, (blocks, size) in _labtrace._count_traces(tracemalloc._get_traces()).items():
            site = user_site(frames)
            if site is not None:
                count, total = now.get(site, (0, 0))
                now[site] = (count + blocks, total + size)
        if self.updates == 0:  # the baseline
            rows = [(site, count, size, count, size) for site, (count, size) in now.items()]
        elif self.updates == 1:  # a site can be new: it had no block at the baseline
            before = {site: (count, size) for site, _, _, count, size in self.rows()}
            rows = [
                (site, *before.get(site, (0, 0)), count, size)
                for site, (count, size) in now.items()
                if count > before.get(site, (0, 0))[0]
            ]
        else:
            rows = [
                (site, first, first_size, *now[site])
                for site, first, first_size, last, _ in self.rows()
                if now.get(site, (0, 0))[0] > last
            ]
        self.updates += 1
        self.text = self.encode(rows)

    def rows(self):
        for line in self.text.split("\n")[1:]:
            site, *numbers = line.rsplit("\t", 4)
            yield (site, *map(int, numbers))
