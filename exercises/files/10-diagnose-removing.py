"""Exercise 10 (diagnose).

`refcount-lab exercise 10` runs this file with one fault of the catalogue switched on, and
does not say which. Write a probe below (the lab module: lab.refcount, lab.watch, lab.say)
that makes the fault show, then name it: set FAULT to its name as `refcount-lab faults`
lists it. `refcount-lab verify` checks your probe first: it must end ok on correct code,
not ok with the hidden fault, and ok under nearly every other fault (a probe that breaks
under every fault shows that something is wrong, not what). Then it checks the name.
Stuck? `refcount-lab hint 10`.
"""
import hashtable
import lab

FAULT = ...  # e.g. "set-missing-incref"

h = hashtable.HashTable()
# Your probe here.
