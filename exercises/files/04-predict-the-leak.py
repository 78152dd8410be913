"""Exercise 4 (predict) · lesson 4, a missing Py_DECREF in dealloc.

Lesson 4's demo watches the built-in `hash` and calls do_hashtable_stuff() three times;
each call makes one HashTable(hash_func=hash) that dies when the call returns. With
--fault dealloc-missing-decref, dealloc never releases the table's reference to hash_func.

Predict the faulty run, then run `refcount-lab verify`.
"""

HASH_ABOVE_BASELINE_AT_EXIT = ...  # how many references above its baseline `hash` ends
FAULTY_OUTCOME = ...  # one of "ok", "leaked", "crashed", "error", "timeout"
