"""The probe of exercise 15: does first() give its caller a reference of its own?"""
# Taken before the module is imported, so that nothing the module does can replace them.
from os import _exit
from sys import getrefcount
import sys

import fixc_first
import lab


def fail(message):
    """Say what is wrong and leave at once: the interpreter's teardown would trip over the
    counts the module got wrong, and crash before the message was read."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    _exit(1)


class Item:
    pass


item = Item()
items = [item]
lab.refcount(item, "item", "held by the name item and by the list")
before = getrefcount(item)
fixc_first.first(items)  # the result is dropped at once
after = getrefcount(item)
lab.refcount(item, "item", "after one call, its result dropped")
if after < before:
    fail(
        "first() returned the list's own reference as if it were new: one call, its result "
        "dropped, and the item has %d reference(s) fewer" % (before - after)
    )
if after > before:
    fail(
        "first() takes a reference too many: one call, its result dropped, and the item has "
        "%d reference(s) more, which nobody will release (a leak)" % (after - before)
    )
try:
    fixc_first.first([])
except IndexError:
    lab.say("first([]) raises IndexError")
if sys.getrefcount is not getrefcount:
    fail("fixc_first replaced sys.getrefcount: a module that changes how it is checked "
         "cannot pass")
lab.say("first() hands out references of its own: the count is back where it was")
