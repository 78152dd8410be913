"""Lesson 7: after del h[key], who still owns the value?"""
import hashtable
import lab


class Treasure:
    def __init__(self, name):
        self.name = name


gem = Treasure("ruby")
h = hashtable.HashTable()
h["ruby"] = gem
lab.refcount(gem, "gem", "held by the name and the table")
del h["ruby"]
lab.say("del h['ruby'] done; reading gem.name ...")
lab.say("gem.name is %r" % gem.name)
lab.refcount(gem, "gem", "only the name now")
