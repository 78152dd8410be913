"""Lesson 4: does a table give back its reference to hash_func when it dies?"""
import hashtable
import lab


def do_hashtable_stuff():
    h = hashtable.HashTable(hash_func=hash)
    lab.refcount(hash, "hash", "inside do_hashtable_stuff()")


lab.watch(hash, "hash")
for call in (1, 2, 3):
    do_hashtable_stuff()
    lab.refcount(hash, "hash", "after call %d" % call)
