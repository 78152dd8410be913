"""Lesson 14: the shape of a table under each of the talk's three knobs."""
import statistics

import hashtable
import lab

# 2000 made-up words, 3 to 9 letters and then a number: 4 to 13 characters long, the same
# keys for every table.
letters = "etaoinshrdlucmfwypvbgkqjxz"
words = ["".join(letters[(i * 7 + j * 3) % 26] for j in range(3 + i % 7)) + str(i) for i in range(2000)]


def shape(hash_func, size, max_load):
    table = hashtable.HashTable(size, max_load, hash_func)
    for word in words:
        table[word] = True
    chains = [n for n in table.chain_lengths() if n]
    lab.say(
        "%s, size %d, max_load %.2f\n-> %d buckets after %d resizes; chains: mean %.2f, longest %d"
        % (hash_func.__name__, size, max_load, table.size, table.resizes,
           statistics.fmean(chains), max(chains))
    )


lab.say("Initial size (max_load 0.5):")
for hash_func in (hash, hashtable.terrible_hash):
    for size in (1, 4096):
        shape(hash_func, size, 0.5)
lab.say("Max load (initial size 4):")
for max_load in (0.25, 1.0):
    shape(hash, 4, max_load)
    shape(hashtable.terrible_hash, 4, max_load)
