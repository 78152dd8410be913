"""Lesson 10: items() builds tuples with PyTuple_SetItem, which steals."""
import hashtable
import lab


class Treasure:
    def __init__(self, name):
        self.name = name


prize = Treasure("cup")
h = hashtable.HashTable()
h["cup"] = prize
lab.refcount(prize, "prize", "held by the name and the table")
pairs = h.items()
lab.refcount(prize, "prize", "while the items() list is alive")
del pairs
lab.refcount(prize, "prize", "after the list is gone")
h.items()
lab.say("one more items(); reading prize.name ...")
lab.say("prize.name is %r" % prize.name)
