"""How `refcount-lab hunt` names what leaked: a short description of an object
(`describe`), what holds it (`Roots`, `step`, `unreachable`), where it was made
(`object_traceback`), and the line whose run left an over-counted object's references
behind (`LeftBehind`)."""

import gc
import inspect
import json
import os
import reprlib
import sys
import sysconfig
import tracemalloc
import types

import _labtrace
import lab
from hunt_census import settle, type_name
from hunt_paths import relative, source_line, user_site

# Py_TPFLAGS_MANAGED_DICT (3.11+): a type whose instances keep their __dict__ before them.
MANAGED_DICT = 1 << 4


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
    from the namespace of a script the hunt loaded). The walk is native
    (`_labtrace._parents`): in Python it took 0.6 s of a 1 s naming on ujson's suite."""

    def __init__(self, extra):
        harness = {id(sys.modules.get("__main__")), id(lab), id(sys.modules.get("_labtrace"))}
        roots = [
            (name, root)
            for name, root in list(sys.modules.items()) + list(extra.items())
            if root is not None and id(root) not in harness
        ]
        # {id: the object it was reached from}, {id: a root's name}
        self.parent, self.root = _labtrace._parents(roots)

    def reaches(self, key):
        return key in self.parent or key in self.root

    def chain(self, obj):
        path = [obj]
        while id(path[-1]) not in self.root:
            path.append(self.parent[id(path[-1])])
        path.reverse()
        text = self.root[id(path[0])]
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


def every_type():
    """Every type there is: each is a subclass of `object`, or of one of its subclasses."""
    found, pending = {}, [object]
    while pending:
        cls = pending.pop()
        if id(cls) not in found:
            found[id(cls)] = cls
            pending.extend(type.__subclasses__(cls))
    return list(found.values())


def blocks_made(alive):
    """What `_labtrace._blocks_alive` found, `[(type, size, frames)]`, by the line of the
    code under test that made each block, as one JSON text of `[site, type, size, count]`
    rows: the hunt keeps no object of its own that the naming would count. This names the
    blocks a line leaked when no walk reaches them (a `str`, `bytes`)."""
    sites = {}  # frames -> site: a few lines make most of the blocks
    made = {}
    for cls, size, frames in alive:
        if frames is None:
            continue
        site = sites.get(frames, False)
        if site is False:
            site = sites[frames] = user_site(frames)
        if site:
            key = (site, cls.__qualname__, size)
            made[key] = made.get(key, 0) + 1
    return json.dumps([[*key, count] for key, count in made.items()])


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
