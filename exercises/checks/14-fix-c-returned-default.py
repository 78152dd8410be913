"""The probe of exercise 14: does default_value() give its caller a reference of its own?"""
# Taken before the module is imported, so that nothing the module does can replace them.
from os import _exit
from sys import getrefcount
import sys

import fixc_default
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    _exit(1)


class Default:
    pass


# Counts are read at this level, where getrefcount(name) is the number of holders plus one
# (its own argument) on every CPython from 3.10 to 3.15.
default = Default()
fixc_default.set_default(default)
lab.refcount(default, "default", "held by the name default and by the module")
holders = getrefcount(default) - 1
if holders != 2:
    fail(
        "set_default() should keep one reference to the default: the default has %d "
        "holders, not 2 (the name default and the module)" % holders
    )
fixc_default.default_value()  # the result is dropped at once
lab.refcount(default, "default", "after one call, its result dropped")
holders = getrefcount(default) - 1
if holders < 2:
    fail(
        "default_value() returned a reference it never took: one call, its result dropped, "
        "and the default has %d reference(s) fewer" % (2 - holders)
    )
if holders > 2:
    fail(
        "default_value() takes a reference too many: one call, its result dropped, and the "
        "default has %d reference(s) more, which nobody will release (a leak)" % (holders - 2)
    )
fixc_default.set_default(Default())
lab.refcount(default, "default", "held by the name default, once the module keeps another")
holders = getrefcount(default) - 1
if holders != 1:
    fail(
        "set_default() should release the default it replaces: the old default has %d "
        "holders, not 1 (the name default)" % holders
    )
if sys.getrefcount is not getrefcount:
    fail("fixc_default replaced sys.getrefcount: a module that changes how it is checked "
         "cannot pass")
lab.say("default_value() hands out references of its own: the counts are exact")
