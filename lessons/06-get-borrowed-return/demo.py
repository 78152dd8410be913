"""Lesson 6: get() hands out a value. Whose reference is it?"""
import hashtable
import lab


class Treasure:
    def __init__(self, name):
        self.name = name


h = hashtable.HashTable()
h["gold"] = Treasure("gold")  # the table holds the only reference
found = h.get("gold")
lab.refcount(found, "treasure", "found = h.get('gold')")
del found
lab.say("del found: the name lets go of its reference.")
lab.say("h['gold'].name is %r" % h["gold"].name)
