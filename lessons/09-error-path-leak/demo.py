"""Lesson 9: a failed h[key] = value must give back what it took."""
import hashtable
import lab


def strings_only(key):
    if not isinstance(key, str):
        raise TypeError("strings_only cannot hash %s" % type(key).__name__)
    return len(key)


payload = ["a", "list", "of", "data"]
lab.watch(payload, "payload")
h = hashtable.HashTable(hash_func=strings_only)
for key in (1, 2, 3):
    try:
        h[key] = payload
    except TypeError as error:
        lab.refcount(payload, "payload", "after h[%d] = payload raised %s" % (key, error))
h["ok"] = payload
lab.refcount(payload, "payload", "after h['ok'] = payload succeeded")
del h
lab.refcount(payload, "payload", "after del h")
