"""Lesson 8: does the table own the keys it stores?"""
import hashtable
import lab


class Badge:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Badge(%r)" % self.name


h = hashtable.HashTable()
badge = Badge("visitor")
h[badge] = "room 101"
lab.refcount(badge, "badge", "after h[badge] = 'room 101'")
del badge
lab.say("del badge: the script let go of its key. The table's keys:")
lab.say(repr(h.keys()))
