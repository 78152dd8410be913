"""Lesson 18: the talk's code, audited. Two refcount bugs: find them in the trace."""
import builtins
import sys

import hashtable
import lab


class NotAnInt:
    """What a broken hash function returns."""


broken_result = NotAnInt()


def returns_no_int(key):
    return broken_result


def raises(key):
    raise LookupError("no hash for %r" % (key,))


lab.watch(broken_result, "broken_result")
h = hashtable.HashTable(hash_func=returns_no_int)
for key in ("a", "b", "c"):
    try:
        h[key] = 1
    except TypeError as error:
        lab.say("h[%r] = 1 -> TypeError: %s" % (key, error))
lab.refcount(broken_result, "broken_result", "after 3 failed hashes")

h = hashtable.HashTable(hash_func=raises)
try:
    h["x"] = 1
except Exception as error:
    lab.say("with a hash_func that raises: %s: %s" % (type(error).__name__, error))

namespace = vars(builtins)
before = sys.getrefcount(namespace)
for _ in range(3):
    hashtable.HashTable()
lab.say("3 tables with the default hash: the count of the builtins namespace moved by %+d"
        % (sys.getrefcount(namespace) - before))

lab.say("Now as many tables as the namespace has references, and 10 more.")
for _ in range(sys.getrefcount(namespace) + 10):
    hashtable.HashTable()
lab.say("Made them all: the count moved by %+d" % (sys.getrefcount(namespace) - before))
