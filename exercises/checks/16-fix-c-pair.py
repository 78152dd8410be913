"""The probe of exercise 16: does pair() give the tuple references of its own?"""
import os
import sys

import fixc_pair
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(1)


class Part:
    pass


a, b = Part(), Part()
lab.refcount(a, "a", "held by the name a")
before = sys.getrefcount(a), sys.getrefcount(b)
made = fixc_pair.pair(a, b)
lab.refcount(a, "a", "held by the name a and by the tuple")
if made != (a, b):
    fail("pair(a, b) returned %r, not (a, b)" % (made,))
grown = sys.getrefcount(a) - before[0]
if grown < 1:
    fail("pair() let PyTuple_SetItem steal references it did not own: the tuple holds a, "
         "but a's count did not grow, and dropping the tuple will release it anyway")
del made  # dropping the tuple releases its references to a and b
after = sys.getrefcount(a), sys.getrefcount(b)
lab.refcount(a, "a", "after the tuple is dropped")
if after[0] > before[0] or after[1] > before[1]:
    fail(
        "pair() takes references too many: one pair made and dropped, and a and b have %d "
        "and %d more, which nobody will release (a leak)"
        % (after[0] - before[0], after[1] - before[1])
    )
if after != before:
    fail(
        "pair() let PyTuple_SetItem steal references it did not own: one pair made and "
        "dropped, and a and b have %d and %d references fewer"
        % (before[0] - after[0], before[1] - after[1])
    )
lab.say("pair() gives the tuple references of its own: the counts are back where they were")
