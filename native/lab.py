"""Probes for refcount-lab lesson scripts.

    lab.say("text")                     narrate a step
    lab.refcount(obj, "name", "when")   record obj's reference count at this point
    lab.watch(obj, "name")              baseline now; at exit, report the change or that obj died
    lab.show_ref_counts(obj, times, show_referrers)
                                        the talk's helper: nested calls holding obj, and what
                                        gc.get_referrers sees at each depth

Reference counts are reported without the probe's own references: the number of references
held by everything else (names, containers, attributes, closure cells, other frames), so a
fresh object bound to one name reads 1, on every CPython from 3.10 to 3.15 and from any
context. Objects whose count cannot move (immortal objects, 3.12+) are reported as such
instead of a number. Each probe sends one JSON line to refcount-lab through the native
trace emitter (`_labtrace._emit`, from the `hashtable` library), which signs it and writes
it straight to the trace pipe, so nothing is lost if the interpreter crashes a moment
later; outside refcount-lab the lines go to stderr.

How the probe's own references are taken out. `sys.getrefcount(obj)` also counts the
references the probe call itself holds: one per call on the way from the caller to
`getrefcount` (the argument on the caller's evaluation stack becomes the callee's local;
before 3.11 the caller's stack keeps its own reference too, so two per Python call). That
total is the same for every probe call, and is measured once at import on an object with
exactly one known holder (`_calibrate`). Except on 3.14 and later: there the compiler may
push a local variable as a *borrowed* stack reference (`LOAD_FAST_BORROW`), which adds
nothing to the count, while a global, a closure cell, an attribute or an element is pushed
as a new one. So each probe also reads the bytecode of the calls in progress (the caller's
call of the probe, the probe's call of `_refs`) and adds back one for each argument that was
pushed borrowed (`_pushed_borrowed`).
"""

import _thread
import atexit
import gc
import os
import sys
import weakref

import _labtrace  # refcount-lab's trace emitter: signs lab's events, registers "done"

# Read and closed by `_labtrace` already: an interpreter the script starts must not take
# an unrelated descriptor of its own for the key pipe (multiprocessing's spawn passes fd 4),
# and without it none takes the trace pipe either.
os.environ.pop("REFCOUNT_LAB_KEY_FD", None)

if sys.version_info >= (3, 14):
    import dis  # read by every probe: imported now, not in the middle of a script

_watched = []
_reported = False

# Instructions that push a borrowed reference (3.14+): the count does not include it.
_BORROWING = {"LOAD_FAST_BORROW", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"}
# Instructions with a net stack effect below one that still push one value.
_PUSH_ONE = {"BINARY_OP", "BINARY_SLICE", "BUILD_LIST", "BUILD_MAP", "BUILD_SET",
             "BUILD_SLICE", "BUILD_STRING", "BUILD_TUPLE", "CALL", "CALL_FUNCTION_EX",
             "CALL_INTRINSIC_1", "CALL_INTRINSIC_2", "CALL_KW", "COMPARE_OP", "CONTAINS_OP",
             "CONVERT_VALUE", "FORMAT_SIMPLE", "FORMAT_WITH_SPEC", "IS_OP", "LOAD_ATTR",
             "LOAD_SUPER_ATTR", "TO_BOOL", "UNARY_INVERT", "UNARY_NEGATIVE", "UNARY_NOT"}
_instructions = weakref.WeakKeyDictionary()  # code object -> its instructions
# A reference count read from memory the debug allocator filled with its dead byte, 0xDD
# (3.14 reads 32 bits of it, earlier versions 64).
_DEAD_COUNT = 0xDDDDDDDD
# Taken now, before any script or module of the learner's is imported: one that replaces
# sys.getrefcount cannot change what the probes read.
_getrefcount = sys.getrefcount
_get_objects, _current_frames, _freeze_count = gc.get_objects, sys._current_frames, gc.get_freeze_count
_get_ident = _thread.get_ident


# What a JSON string cannot hold as itself: control characters, quote and backslash.
# str.translate does the work in C.
_JSON_ESCAPES = {c: "\\u%04x" % c for c in [*range(0x20), 0x22, 0x5C]}
# A lone surrogate (a file name's undecodable byte, through surrogateescape) is no JSON
# text: it goes as U+FFFD, as refcount-lab shows such a name anyway.
_JSON_ESCAPES.update({c: "\\ufffd" for c in range(0xD800, 0xE000)})
# Characters of a `say` sent; the rest is cut (refcount-lab keeps a bounded trace anyway).
_SAY_CAP = 64 * 1024


def _json(value):
    """JSON for the plain values events hold (str, int, float, bool, None, dict, list).

    Hand-written on purpose: `json` imports `re` and `functools`, and on 3.10-3.13 a default
    argument in `functools` holds `hash`, which lesson 4 counts. A probe should change
    nothing it measures.
    """
    if isinstance(value, dict):
        return "{" + ", ".join(_json(str(k)) + ": " + _json(v) for k, v in value.items()) + "}"
    if isinstance(value, str):
        if '"' not in value and "\\" not in value and (
            value.isprintable() or not any(c < " " for c in value)
        ):
            try:
                value.encode("utf-8")  # fails on a lone surrogate
                return '"' + value + '"'  # nothing to escape: the common case, at C speed
            except UnicodeEncodeError:
                pass
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_json(item) for item in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "null"
    return str(int(value))


def _send(event, _emit=_labtrace._emit):
    """To refcount-lab's trace (signed by the native module), or to stderr outside it.
    (The emitter is bound now: a script that replaces `_labtrace._emit` changes its own
    calls only.)"""
    line = _json(event)
    if not _emit(line):
        sys.stderr.write("lab: " + line + "\n")


def _pushed_borrowed(frame):
    """1 if the first argument of the call `frame` is making was pushed borrowed, else 0."""
    if sys.version_info < (3, 14):
        return 0
    code = frame.f_code
    if code not in _instructions:
        # Only names and numbers are kept: an Instruction also holds the constants it loads,
        # and keeping those would add references to the very objects being counted.
        _instructions[code] = [
            (ins.offset, ins.opname, ins.opcode, ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None)
            for ins in dis.get_instructions(code)
        ]
    instructions = _instructions[code]
    at = next((i for i, ins in enumerate(instructions) if ins[0] == frame.f_lasti), None)
    if at is None or instructions[at][1] not in ("CALL", "CALL_KW"):
        return 0
    _, call, _, arg = instructions[at]
    # How many stack items lie above the first argument when the call starts.
    depth = arg - 1 + (call == "CALL_KW")
    for _, opname, opcode, arg in reversed(instructions[:at]):
        net = dis.stack_effect(opcode, arg, jump=False)
        pushed = max(net, 1) if opname in _PUSH_ONE else max(net, 0)
        if opname.startswith(("LOAD_ATTR", "LOAD_SUPER_ATTR")) and net > 0:
            pushed = 2  # the attribute and `self` (or NULL) for a method call
        if depth < pushed:
            return int(opname in _BORROWING)
        depth -= net
    return 0


def _pinned(obj):
    """Why obj's count cannot move, or None: immortal objects never change their count."""
    if sys.version_info >= (3, 14):
        return "immortal" if sys._is_immortal(obj) else None
    if sys.version_info >= (3, 12) and _getrefcount(obj) >= 1 << 29:
        return "immortal"
    return None


def _refs(obj):
    """References to obj held by anything but the probe: called by a probe, with `obj`.

    -1 when obj's memory was already freed: the debug allocator fills freed memory with
    0xDD bytes, and a count made of them is no count. It is read first, before anything
    here allocates and could reuse that memory.
    """
    raw = _getrefcount(obj)
    if raw & 0xFFFFFFFF == _DEAD_COUNT:
        return -1
    borrowed = _pushed_borrowed(sys._getframe(1)) + _pushed_borrowed(sys._getframe(2))
    return raw - _OVERHEAD + borrowed


def _probe(obj):
    """Shaped like every public probe: one call deep, then `_refs`."""
    return _refs(obj)


def _calibrate():
    fresh = object()  # exactly one reference: this local name
    return _probe(fresh) - 1


_OVERHEAD = 0
# What a probe call itself holds differs between Python versions; measure it once.
_OVERHEAD = _calibrate()


def _counted(event, obj, name, rc):
    """`event` with obj's count `rc` (from `_refs`), or with why its count cannot move.

    Every probe calls `_refs(obj)` itself, so that each is one call deep like `_probe`.
    """
    event["obj"] = str(name)
    event["rc"] = rc
    pinned = _pinned(obj) if rc >= 0 else None
    if pinned:
        event["pinned"] = pinned
    return event


def say(text):
    """Narrate a step of the lesson."""
    text = str(text)
    if len(text) > _SAY_CAP:
        text = "%s... (%d more characters not sent)" % (text[:_SAY_CAP], len(text) - _SAY_CAP)
    _send({"ev": "say", "text": text})


def refcount(obj, name, label=""):
    """Record the reference count of obj (called `name`) at the point `label`."""
    rc = _refs(obj)
    _send(_counted({"ev": "refcount", "label": str(label)}, obj, name, rc))


def watch(obj, name):
    """Remember obj's reference count now; at exit, report how it changed or that it died.

    Objects that allow weak references are watched through one, so watching does not keep
    them alive. Others are held, which the baseline already counts. Watching the same object
    under its name again changes nothing (its first baseline stands); another object under
    that name is an error.
    """
    for watched, weak, handle in _watched:
        if watched == name:
            same = (handle() if weak else handle) is obj
            del handle
            if same:
                return  # watched already: its first baseline stands
            raise ValueError(
                "lab.watch: %r is watched already, for another object: give each its own name"
                % (name,))
    handle = None
    try:
        handle = weakref.ref(obj)
    except TypeError:
        handle = obj
    _watched.append((name, isinstance(handle, weakref.ref), handle))
    del handle  # only the entry in _watched may count, here and at exit alike
    rc = _refs(obj)
    event = _counted({"ev": "watch"}, obj, name, rc)
    event["globals"] = _held_by_globals(obj)
    _send(event)


def _held_by_globals(obj):
    """The script's global names that hold obj, with how many references each holds.

    A name bound to obj holds one; a name bound to a container (a table, a list, a dict, an
    instance) holds one for each of its slots that holds obj. At exit, references from
    globals that were not there at the watch explain a higher count: the script still
    holds obj, which is not a leak. (Called after the count is read: the loop's own
    temporaries must not be counted.)
    """
    main = sys.modules.get("__main__")
    held = {}
    for name, value in list(vars(main).items()) if main else ():
        if name.startswith("__") and name.endswith("__"):
            continue
        count = 1 if value is obj else sum(1 for slot in gc.get_referents(value) if slot is obj)
        if count:
            held[name] = count
    return held


def show_ref_counts(an_object, times_to_call=1, show_referrers=False, _depth=1):
    """Call itself `times_to_call` times deep, recording the refcount at each depth.

    The talk's helper. The outer calls' frames count as holders: each holds `an_object` in
    a local variable, as a new reference (on 3.10 also on its evaluation stack) or, on 3.14+,
    possibly as a borrowed one, which is not counted. Each depth also reports what the talk
    printed, `len(gc.get_referrers(an_object))`, which does not see frames at all (3.7+);
    `show_referrers` adds the referrers' types.
    """
    rc = _refs(an_object)
    _send(_counted({"ev": "refcount", "label": "depth %d" % _depth}, an_object, "an_object", rc))
    found = gc.get_referrers(an_object)
    text = "depth %d: gc.get_referrers finds %d" % (_depth, len(found))
    if show_referrers:
        text += ": " + ", ".join(sorted(type(referrer).__name__ for referrer in found))
    del found
    _send({"ev": "say", "text": text})
    if times_to_call > 1:
        show_ref_counts(an_object, times_to_call - 1, show_referrers, _depth + 1)


def _threads_to_report():
    """Threads still running at shutdown (daemon threads, or any started with `_thread`):
    their names as JSON, and how generators keep their frames; None when there are none.

    CPython does not wait for such threads, and does not free what they can still reach.
    The native tables kept alive for them are not leaks: those whose every reference an
    object the collector sees or a running function's frame explains (each counted once),
    and that something alive reaches (a running function's variables, globals, namespace
    and frame, or a module). A table with references nothing explains was over-counted by
    C code (or sits in a cycle the collector cannot see), and one only such objects reach
    is lost with them: both are leaks whatever the threads do. `_labtrace._report_threads`
    decides and sends the event, in one pass no other thread interrupts, and returns to
    the interpreter's shutdown without running Python code again."""
    me = _get_ident()
    others = [ident for ident in _current_frames() if ident != me]
    if not others:
        return None
    threading = sys.modules.get("threading")
    named = {}
    for thread in threading.enumerate() if threading else ():
        try:
            named[thread.ident] = str(thread.name)
        except Exception:  # a Thread subclass's own `name` may fail by now
            pass
    names = sorted(named.get(ident, "thread %d" % ident) for ident in others)
    return _json(names), _generator_frames()


def _generator_frames():
    """Where a generator, a coroutine and an async generator keep their frame: (type,
    attribute name) each."""
    def generator():
        yield

    async def coroutine():
        pass

    async def async_generator():
        yield

    made = [generator(), coroutine(), async_generator()]
    found = tuple(zip(map(type, made), ("gi_frame", "cr_frame", "ag_frame")))
    made[1].close()
    return found


def _check_frame_layout():
    """Lets `_labtrace` check, on a frame of this function's, that it reads a frame's
    variables right: it reads the running threads' at exit only if it does."""
    known = object()
    return _labtrace._check_frames(known)


_check_frame_layout()
# Registered before `_report_watched`, so that it runs after it (atexit runs the last
# registered first): what reading the threads makes must not change a watched count. A C
# function, called by atexit itself: after its count no Python code of lab's runs, in
# which a thread could take its turn.
atexit.register(_labtrace._report_threads, _threads_to_report, _get_objects, _freeze_count)


@atexit.register
def _report_watched():
    global _reported
    if _reported:
        return
    _reported = True
    for name, weak, handle in _watched:
        obj = handle() if weak else handle
        del handle
        if weak and obj is None:
            _send({"ev": "final", "obj": name, "rc": None, "freed": True})
            continue
        # -1: the local name `obj` is ours, not the script's.
        rc = _probe(obj) - 1
        event = _counted({"ev": "final", "freed": False}, obj, name, rc)
        event["globals"] = _held_by_globals(obj)
        _send(event)
        del obj


# refcount-lab's own modules. `lab` and `_labtrace` are imported before the script runs;
# `hashtable` is left for the script to import (its module init is part of lesson 17).
_OWN_MODULES = ("hashtable", "lab", "_labtrace")


class _OwnModuleFinder:
    """First on sys.meta_path: finds refcount-lab's modules in its own folder only.

    The script's folder comes first on sys.path, as `python script.py` puts it, so a
    learner's hashtable.py there would otherwise be imported in place of refcount-lab's.
    """

    def __init__(self, path_finder, folder):
        self._path_finder = path_finder
        self._folder = folder

    def find_spec(self, name, path=None, target=None):
        if name not in _OWN_MODULES:
            return None
        return self._path_finder.find_spec(name, [self._folder])


def _not_used(path_finder, folder):
    """The files in `folder` that `import NAME` would have found for one of refcount-lab's
    modules, by module name (a folder without __init__.py replaces nothing)."""
    found = {}
    for name in _OWN_MODULES:
        spec = path_finder.find_spec(name, [folder])
        if spec is not None and spec.origin is not None:
            found[name] = os.path.relpath(spec.origin, folder)
    return found


def _run_main():
    """Run the script named by sys.argv[1] as __main__, then report watched objects.

    This is how refcount-lab runs lesson and learner scripts. The report comes while the
    script's compiled code is still alive: that code holds its constants, and so counts the
    same references at the end as it did when `watch` took the baseline. (Run as
    `python script.py`, the report waits for exit, when the code is gone.)
    """
    import __main__

    # importlib.machinery's PathFinder, loaded at start-up: importing importlib.machinery
    # would import `warnings` too (3.10-3.12), a change to what the probes measure.
    from _frozen_importlib_external import PathFinder

    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    folder = os.path.dirname(os.path.abspath(path))
    own = os.path.dirname(os.path.abspath(__file__))
    sys.meta_path.insert(0, _OwnModuleFinder(PathFinder, own))
    not_used = _not_used(PathFinder, folder)
    if not_used:
        _send({"ev": "not_used", "files": not_used})
    # Before refcount-lab's module folder, as `python script.py` puts the script's folder.
    sys.path.insert(0, folder)
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec")
    __main__.__file__ = path
    gc.enable()  # refcount-lab's launcher turned it off until the script starts
    try:
        exec(code, __main__.__dict__)
    except SystemExit:
        raise
    except BaseException as error:
        # The standard library's, not a `traceback.py` beside the script (whoever put it
        # there): the script is over, its folder need not come first any more.
        sys.path[:] = [entry for entry in sys.path if entry not in (folder, "")]
        import traceback

        # Print the traceback from the script's own frames down, as `python script.py` does.
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        raise SystemExit(1)
    finally:
        _report_watched()
