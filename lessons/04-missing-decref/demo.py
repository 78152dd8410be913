"""Lesson 4: does a table give back its reference to hash_func when it dies? (the talk's demo)"""
import builtins
import gc
import sys

import hashtable
import lab


def holders(obj):
    """Who holds obj besides getrefcount's argument, as the garbage collector finds them."""
    found = []
    for referrer in gc.get_referrers(obj):
        if referrer is builtins.__dict__:
            found.append("the builtins namespace")
        elif isinstance(referrer, dict) and "print" in referrer:
            found.append("a copy of the builtins namespace")
        elif isinstance(referrer, tuple):
            users = [f.__qualname__ for f in gc.get_referrers(referrer)
                     if getattr(f, "__defaults__", None) is referrer]
            found.append("the default arguments of %s()" % users[0] if users else "a tuple")
        else:
            found.append("a %s" % type(referrer).__name__)
    return found


def main():
    print("main: sys.getrefcount(hash) =", sys.getrefcount(hash))
    do_hashtable_stuff()
    do_hashtable_stuff()
    do_hashtable_stuff()
    print("main: sys.getrefcount(hash) =", sys.getrefcount(hash))


def do_hashtable_stuff():
    h = hashtable.HashTable(hash_func=hash)
    print("do_hashtable_stuff: sys.getrefcount(hash) =", sys.getrefcount(hash))
    lab.refcount(hash, "hash", "inside do_hashtable_stuff()")


lab.say("Who holds hash at the start: " + "; ".join(holders(hash)) + ".")
lab.watch(hash, "hash")
main()
