"""Exercise 3 (predict) · lesson 3, a missing Py_INCREF in set().

Lesson 3's demo binds one table to two names (h and alias) and calls h.set() three times.
With --fault set-missing-incref, set() returns the table without taking a reference.

Predict the faulty run, then run `refcount-lab verify`.
"""

REFCOUNT_AFTER_FIRST_SET = ...  # the table's count after the first set() (it was 2)
FAULTY_OUTCOME = ...  # one of "ok", "leaked", "crashed", "error", "timeout"
