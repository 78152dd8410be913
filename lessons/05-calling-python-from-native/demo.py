"""Lesson 5: native code calls a Python hash function. Who owns the result?"""
import hashtable
import lab

BIG = 2**70  # every key hashes to this one int object


def picky_hash(key):
    if not isinstance(key, str):
        raise TypeError("picky_hash hashes strings only, not %s" % type(key).__name__)
    return BIG


lab.watch(BIG, "BIG")
h = hashtable.HashTable(hash_func=picky_hash)
h["a"] = 1
lab.refcount(BIG, "BIG", "after h['a'] = 1")
h.set("b", 2)
lab.refcount(BIG, "BIG", "after h.set('b', 2)")
found = h["a"], "b" in h
lab.refcount(BIG, "BIG", "after h['a'] and 'b' in h")
h.pop("b")
lab.refcount(BIG, "BIG", "after h.pop('b')")

try:
    h[42] = "forty-two"
except TypeError as error:
    lab.say("h[42] = ... raised TypeError: %s" % error)
lab.refcount(BIG, "BIG", "after the failed call")

del h
