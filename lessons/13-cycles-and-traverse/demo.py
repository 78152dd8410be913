"""Lesson 13: can the garbage collector see a table that contains itself?"""
import gc

import hashtable
import lab

h = hashtable.HashTable()
h["self"] = h
lab.refcount(h, "h", "the name h and the table's own entry")
del h
lab.say("del h: only the table's entry for itself keeps it alive now. gc.collect() ...")
gc.collect()
lab.say("gc.collect() returned.")
