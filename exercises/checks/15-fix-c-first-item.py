"""The probe of exercise 15: does first() give its caller a reference of its own?"""
import sys

import fixc_first
import lab


class Item:
    pass


item = Item()
items = [item]
lab.refcount(item, "item", "held by the name item and by the list")
before = sys.getrefcount(item)
fixc_first.first(items)  # the result is dropped at once
after = sys.getrefcount(item)
lab.refcount(item, "item", "after one call, its result dropped")
if after < before:
    raise SystemExit(
        "first() returned the list's own reference as if it were new: one call, its result "
        "dropped, and the item has %d reference(s) fewer" % (before - after)
    )
if after > before:
    raise SystemExit(
        "first() takes a reference too many: one call, its result dropped, and the item has "
        "%d reference(s) more, which nobody will release (a leak)" % (after - before)
    )
try:
    fixc_first.first([])
except IndexError:
    lab.say("first([]) raises IndexError")
lab.say("first() hands out references of its own: the count is back where it was")
