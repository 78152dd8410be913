"""The probe of exercise 17: does split() release what it took when it fails?"""
import sys

import fixc_split
import lab


class Head:
    pass


head = Head()
if fixc_split.split([head, 2]) != (head, 2):
    raise SystemExit("split([head, 2]) does not return (head, 2)")
lab.watch(head, "head")
before = sys.getrefcount(head)
for _ in range(3):
    try:
        fixc_split.split([head])
    except IndexError:
        pass
    else:
        raise SystemExit("split([head]) did not raise IndexError")
after = sys.getrefcount(head)
lab.refcount(head, "head", "after 3 calls that raised IndexError")
if after != before:
    raise SystemExit(
        "split() keeps a reference to the first item when the second is missing: 3 failed "
        "calls, and head has %d references more" % (after - before)
    )
try:
    fixc_split.split([])
except IndexError:
    lab.say("split([]) raises IndexError too")
lab.say("split() releases what it took on every way out")
