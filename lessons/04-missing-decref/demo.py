"""Lesson 4: does a table give back its reference to hash_func when it dies? (the talk's demo)"""
import sys

import hashtable
import lab


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


lab.watch(hash, "hash")
main()
