"""Exercise 1 (predict) · lesson 1, the hash table.

A HashTable(size=4, max_load=0.5, hash_func=terrible_hash) gets the keys 1, 5 and 2, in
that order. terrible_hash sends an int to itself.

Replace each ... below with your prediction, save, and run `refcount-lab verify`.
"""

BUCKET_OF_5 = ...  # the bucket (0 to 3) key 5 lands in, while the table has 4 buckets
SIZE_AFTER_THREE_KEYS = ...  # the number of buckets once all three keys are stored
