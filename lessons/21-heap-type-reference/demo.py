"""Lesson 21: every table holds a reference to its type. Does it give it back when it dies?"""
import sys

import hashtable
import lab

HashTable = hashtable.HashTable


def make_and_free():
    h = HashTable()
    h["headers"] = "parsed"
    lab.refcount(HashTable, "HashTable", "while one table exists")


print("sys.getrefcount(HashTable) =", sys.getrefcount(HashTable))
lab.watch(HashTable, "HashTable")
for _ in range(3):
    make_and_free()
    print("sys.getrefcount(HashTable) =", sys.getrefcount(HashTable), "after a table came and went")
