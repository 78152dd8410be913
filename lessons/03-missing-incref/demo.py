"""Lesson 3: set() returns self; does it give the caller a reference of its own?"""
import hashtable
import lab

h = hashtable.HashTable()
alias = h
lab.refcount(h, "h", "two names: h and alias")

h.set("pi", 3.14)
lab.refcount(h, "h", "after the 1st set()")

lab.say("Now a 2nd and a 3rd set(), back to back.")
h.set("e", 2.72)
h.set("tau", 6.28)

lab.refcount(h, "h", "after 3 calls")
lab.say("Still alive: %d entries." % len(h))
