"""Lesson 11: update() borrows key and value from each pair. For how long?"""
import hashtable
import lab


class Coin:
    def __init__(self, year):
        self.year = year


def fresh_pairs():
    for year in (1999, 2000, 2001):
        yield Coin(year), year  # nothing but the pair holds the coin


h = hashtable.HashTable()
lab.say("h.update() from a generator of fresh (coin, year) pairs ...")
h.update(fresh_pairs())
lab.say("stored %d coins: %s" % (len(h), sorted(coin.year for coin in h)))
