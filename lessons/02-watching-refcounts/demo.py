"""Lesson 2: watch a reference count move as names, containers and calls take hold."""
import hashtable
import lab


class Thing:
    pass


thing = Thing()
lab.refcount(thing, "thing", "one name")
other = thing
lab.refcount(thing, "thing", "a second name")
both = [thing, thing]
lab.refcount(thing, "thing", "and a list holding it twice")
del other, both
lab.refcount(thing, "thing", "back to one name")

lab.say("Each active call holds the object in a local variable:")
lab.show_ref_counts(thing, 3)

h = hashtable.HashTable()
h["key"] = thing
lab.refcount(thing, "thing", "a HashTable holds it as a value")
h.get("key")
lab.refcount(thing, "thing", "after h.get: the returned reference was released")
h.pop("key")
lab.refcount(thing, "thing", "after h.pop: the table let go")
