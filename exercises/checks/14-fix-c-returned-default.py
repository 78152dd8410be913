"""The probe of exercise 14: does default_value() give its caller a reference of its own?"""
import os
import sys

import fixc_default
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(1)


class Default:
    pass


default = Default()
fixc_default.set_default(default)
lab.refcount(default, "default", "held by the name default and by the module")
before = sys.getrefcount(default)
fixc_default.default_value()  # the result is dropped at once
after = sys.getrefcount(default)
lab.refcount(default, "default", "after one call, its result dropped")
if after < before:
    fail(
        "default_value() returned a reference it never took: one call, its result dropped, "
        "and the default has %d reference(s) fewer" % (before - after)
    )
if after > before:
    fail(
        "default_value() takes a reference too many: one call, its result dropped, and the "
        "default has %d reference(s) more, which nobody will release (a leak)" % (after - before)
    )
lab.say("default_value() hands out references of its own: the count is back where it was")
