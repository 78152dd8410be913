"""Lesson 12: clear() returns None. Does None's count notice a missing reference?"""
import gc
import sys

import hashtable
import lab


def none_count_change(table, calls):
    """How far each of `calls` calls to table.clear() moves None's count, on average."""
    gc.collect()
    gc.disable()  # so that no garbage holding None is freed while we count
    before = sys.getrefcount(None)
    for _ in range(calls):
        table.clear()
    change = sys.getrefcount(None) - before
    gc.enable()
    return round(change / calls)


h = hashtable.HashTable()
lab.say("Each h.clear() moves None's count by %+d." % none_count_change(h, 1000))
if sys.getrefcount(None) >= 2**30:
    lab.say("None is immortal on this Python: its count never moves, the bug costs nothing.")
else:
    lab.say("None is mortal on this Python. Calling h.clear() until its count runs out ...")
    none_count_change(h, sys.getrefcount(None) + 10)
    lab.say("None survived.")
