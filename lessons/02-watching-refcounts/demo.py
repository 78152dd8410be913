"""Lesson 2: watch a reference count move as names, containers and calls take hold."""
import gc

import hashtable
import lab


class Thing:
    pass


def referrers(obj):
    """What the talk counted: the objects the garbage collector finds referring to obj."""
    kinds = sorted(type(referrer).__name__ for referrer in gc.get_referrers(obj))
    return "gc.get_referrers finds %d: %s" % (len(kinds), ", ".join(kinds))


thing = Thing()
lab.refcount(thing, "thing", "one name")
other = thing
lab.refcount(thing, "thing", "a second name")
both = [thing, thing]
lab.refcount(thing, "thing", "and a list holding it twice")
lab.say(referrers(thing))
del other, both
lab.refcount(thing, "thing", "back to one name")

lab.say("show_ref_counts: each call still running holds the object too.")
lab.show_ref_counts(thing, 3)

h = hashtable.HashTable()
h["key"] = thing
lab.refcount(thing, "thing", "a HashTable holds it as a value")
lab.say(referrers(thing))
h.get("key")
lab.refcount(thing, "thing", "after h.get: the returned reference was released")
h.pop("key")
lab.refcount(thing, "thing", "after h.pop: the table let go")
