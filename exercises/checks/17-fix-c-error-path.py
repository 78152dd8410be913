"""The probe of exercise 17: does split() release what it took when it fails?"""
# Taken before the module is imported, so that nothing the module does can replace them.
from os import _exit
from sys import getrefcount
import sys

import fixc_split
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    _exit(1)


class Head:
    pass


head = Head()
if fixc_split.split([head, 2]) != (head, 2):
    fail("split([head, 2]) does not return (head, 2)")
lab.watch(head, "head")
before = getrefcount(head)
for _ in range(3):
    try:
        fixc_split.split([head])
    except IndexError:
        pass
    else:
        fail("split([head]) did not raise IndexError")
after = getrefcount(head)
lab.refcount(head, "head", "after 3 calls that raised IndexError")
if after != before:
    fail(
        "split() keeps a reference to the first item when the second is missing: 3 failed "
        "calls, and head has %d references more" % (after - before)
    )
try:
    fixc_split.split([])
except IndexError:
    lab.say("split([]) raises IndexError too")
if sys.getrefcount is not getrefcount:
    fail("fixc_split replaced sys.getrefcount: a module that changes how it is checked "
         "cannot pass")
lab.say("split() releases what it took on every way out")
