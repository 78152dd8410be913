"""Lesson 1: file keys in a chained hash table and watch the buckets."""
import hashtable
import lab

h = hashtable.HashTable(size=4, max_load=0.5, hash_func=hashtable.terrible_hash)
lab.say("An empty table with 4 buckets:\n" + repr(h))

h.set(1, "one")
lab.say("h.set(1, 'one'): 1 % 4 = 1, so bucket 1:\n" + repr(h))

h.set(5, "five")
lab.say("h.set(5, 'five'): 5 % 4 = 1 too, a collision; the chain grows:\n" + repr(h))

h.set(2, "two")
lab.say(
    "h.set(2, 'two'): a third entry would make the load 3/4 > 0.5, so the table doubled "
    "first (size %d, resizes %d); now 1 and 5 live apart:\n%r" % (h.size, h.resizes, h)
)

for word in ("cat", "dog", "owl", "emu"):
    h[word] = len(word)
lab.say(
    "Four 3-letter words: terrible_hash gives each the hash 3, so one bucket takes them all "
    "(size %d, load %d):\n%r" % (h.size, h.load, h)
)
lab.say("h['owl'] walks that chain comparing keys: %r; h.get('yak') = %r" % (h["owl"], h.get("yak")))

signed = hashtable.HashTable(size=4, max_load=1.0, hash_func=lambda key: key)
signed[-4] = "minus four"
signed[-1] = "minus one"
lab.say(
    "Negative hashes: -4 belongs in bucket 0, and -1 in bucket 2: like dict, the table passes "
    "hash_func's result through hash(), and hash(-1) is -2, since -1 means 'error' in C. "
    "(The talk's C code computed -4 % 4 + 4 = 4, one past the end.)\n" + repr(signed)
)
