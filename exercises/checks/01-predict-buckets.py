"""Measures the answers of exercise 1 on the real type."""
import json

import hashtable

h = hashtable.HashTable(size=4, max_load=0.5, hash_func=hashtable.terrible_hash)
h[1] = "one"
h[5] = "five"
bucket_of_5 = next(i for i, n in enumerate(h.chain_lengths()) if n == 2)
h[2] = "two"
print(json.dumps({"BUCKET_OF_5": bucket_of_5, "SIZE_AFTER_THREE_KEYS": h.size}))
