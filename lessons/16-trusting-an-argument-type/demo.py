"""Lesson 16: merge() reads its argument as a HashTable. What if it is not one?"""
import hashtable
import lab

h = hashtable.HashTable()
h["a"] = 1
other = hashtable.HashTable()
other["b"] = 2
h.merge(other)
lab.say("h.merge(other table): h has %d entries" % len(h))
lab.say("h.merge({'c': 3}), a dict ...")
try:
    h.merge({"c": 3})
except TypeError as error:
    lab.say("TypeError: %s" % error)
lab.say("h has %d entries" % len(h))
