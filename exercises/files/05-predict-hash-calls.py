"""Exercise 5 (predict) · lesson 5, calling a Python hash function.

Lesson 5's demo hashes every key to one big int, BIG, and watches it. With
--fault hash-result-leak, the result of each hash_func call is never released. Read the demo
(`refcount-lab lesson 5 --variant correct` shows every step) and count the calls.

Predict the faulty run, then run `refcount-lab verify`.
"""

BIG_ABOVE_BASELINE_AT_EXIT = ...  # how many references above its baseline BIG ends
