"""Lesson 19: the same table in safe PyO3. Which of the raw type's faults are left?"""
import gc

import hashtable
import lab


class Key:
    """A key of our own, so that every reference to it is one this lesson made."""


def use_a_table(key):
    table = hashtable.SafeHashTable(hash_func=hash)
    table[key] = "value"
    table.set(key, "again").set("other", 1)  # set() returns the table: a new reference
    return table.get(key)


key = Key()
lab.watch(hash, "hash")
lab.watch(key, "key")
for _ in range(3):
    use_a_table(key)
lab.refcount(hash, "hash", "after 3 tables, all gone")
lab.refcount(key, "key", "after 3 tables, all gone")

h = hashtable.SafeHashTable()
h["self"] = h
lab.say("h['self'] = h; del h; gc.collect() ...")
del h
gc.collect()
lab.say("gc.collect() returned.")
