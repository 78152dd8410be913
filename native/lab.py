"""Probes for refcount-lab lesson scripts.

    lab.say("text")                     narrate a step
    lab.refcount(obj, "name", "when")   record obj's reference count at this point
    lab.watch(obj, "name")              baseline now; at exit, report the change or that obj died
    lab.show_ref_counts(obj, times, show_referrers)
                                        the talk's helper: how each nested call adds a reference

Reference counts are reported without the probe's own references, so a fresh object bound
to one name reads 1. Each probe sends one JSON line to refcount-lab (written straight to the
trace pipe, so nothing is lost if the interpreter crashes a moment later); outside
refcount-lab the lines go to stderr.
"""

import atexit
import gc
import json
import os
import sys
import weakref

import hashtable  # noqa: F401  its import registers the trace's "done" event (native/src/trace.rs)

_TRACE_FD = int(os.environ.get("REFCOUNT_LAB_TRACE_FD", "-1"))
_watched = []
_reported = False


def _send(event):
    line = json.dumps(event) + "\n"
    if _TRACE_FD >= 0:
        try:
            os.write(_TRACE_FD, line.encode())
            return
        except OSError:
            pass
    sys.stderr.write("lab: " + line)


def _refs(obj):
    return sys.getrefcount(obj) - _OVERHEAD


def _probe(obj):
    """Shaped like every public probe: one call deep, then `_refs`."""
    return _refs(obj)


def _calibrate():
    fresh = object()  # exactly one reference: this local name
    return _probe(fresh) - 1


_OVERHEAD = 0
# What a probe call itself adds differs between Python versions; measure it once.
_OVERHEAD = _calibrate()


def say(text):
    """Narrate a step of the lesson."""
    _send({"ev": "say", "text": str(text)})


def refcount(obj, name, label=""):
    """Record the reference count of obj (called `name`) at the point `label`."""
    _send({"ev": "refcount", "label": str(label), "obj": str(name), "rc": _refs(obj)})


def watch(obj, name):
    """Remember obj's reference count now; at exit, report how it changed or that it died.

    Objects that allow weak references are watched through one, so watching does not keep
    them alive. Others are held, which the baseline already counts.
    """
    try:
        handle = weakref.ref(obj)
    except TypeError:
        handle = obj
    _watched.append((name, isinstance(handle, weakref.ref), handle))
    del handle  # only the entry in _watched may count, here and at exit alike
    _send({"ev": "watch", "obj": str(name), "rc": _refs(obj)})


def show_ref_counts(an_object, times_to_call=1, show_referrers=False, _depth=1):
    """Call itself `times_to_call` times deep, recording the refcount at each depth.

    Every active call holds `an_object` in a local variable, so the count climbs by one per
    depth; `show_referrers` also lists the types of the objects that refer to it.
    """
    # The frames of the outer calls are part of the lesson: each holds `an_object`.
    _send({"ev": "refcount", "label": "depth %d" % _depth, "obj": "an_object",
           "rc": _refs(an_object)})
    if show_referrers:
        kinds = sorted(type(r).__name__ for r in gc.get_referrers(an_object))
        _send({"ev": "say", "text": "referrers at depth %d: %s" % (_depth, ", ".join(kinds))})
    if times_to_call > 1:
        show_ref_counts(an_object, times_to_call - 1, show_referrers, _depth + 1)


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
        _send({"ev": "final", "obj": name, "rc": _probe(obj) - 1, "freed": False})
        del obj


def _run_main():
    """Run the script named by sys.argv[1] as __main__, then report watched objects.

    This is how refcount-lab runs lesson and learner scripts. The report comes while the
    script's compiled code is still alive: that code holds its constants, and so counts the
    same references at the end as it did when `watch` took the baseline. (Run as
    `python script.py`, the report waits for exit, when the code is gone.)
    """
    import __main__
    import traceback

    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec")
    __main__.__file__ = path
    try:
        exec(code, __main__.__dict__)
    except SystemExit:
        raise
    except BaseException as error:
        # Print the traceback from the script's own frames down, as `python script.py` does.
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        raise SystemExit(1)
    finally:
        _report_watched()
