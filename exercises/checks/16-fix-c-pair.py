"""The probe of exercise 16: does pair() give the tuple references of its own?"""
# Taken before the module is imported, so that nothing the module does can replace them.
from os import _exit
from sys import getrefcount
import sys
import weakref

import fixc_pair
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    _exit(1)


class Part:
    pass


# Counts are read at this level, where getrefcount(name) is the number of holders plus one
# (its own argument) on every CPython from 3.10 to 3.15.
a, b = Part(), Part()
# A weak reference adds nothing to the count, and goes dead when its object is freed: a
# freed object's count is whatever the memory holds now, so none is read once one is dead.
alive = weakref.ref(a), weakref.ref(b)
lab.refcount(a, "a", "held by the name a")
made = fixc_pair.pair(a, b)
if alive[0]() is None or alive[1]() is None:
    fail("pair(a, b) freed a or b, though the names a and b still hold them")
if made != (a, b):
    fail("pair(a, b) returned %r, not (a, b)" % (made,))
lab.refcount(a, "a", "held by the name a and by the tuple")
lab.refcount(b, "b", "held by the name b and by the tuple")
# Checked while the tuple is alive: dropping it releases one reference to each, and would
# free an object it holds without one.
holders = getrefcount(a) - 1, getrefcount(b) - 1
for name, count in zip("ab", holders):
    if count < 2:
        fail("pair() let PyTuple_SetItem steal a reference it did not own: the tuple holds %s, "
             "but %s has %d holder(s), not 2 (the name %s and the tuple)"
             % (name, name, count, name))
    if count > 2:
        fail("pair() takes references too many: %s has %d holders, not 2 (the name %s and the "
             "tuple), and nobody will release the rest (a leak)" % (name, count, name))
del made  # dropping the tuple releases its references to a and b
lab.refcount(a, "a", "after the tuple is dropped")
holders = getrefcount(a) - 1, getrefcount(b) - 1
if holders != (1, 1):
    fail("once the tuple is dropped, a and b have %d and %d holders, not 1 each (their names)"
         % holders)
if sys.getrefcount is not getrefcount:
    fail("fixc_pair replaced sys.getrefcount: a module that changes how it is checked cannot "
         "pass")
lab.say("pair() gives the tuple references of its own: the counts are back where they were")
