"""Exercise 6 (write a probe): make --fault hash-result-leak visible.

Write a script that runs clean (outcome ok) on correct code but ends differently (crashed,
leaked, error) with `--fault hash-result-leak`. Try it with
`refcount-lab exercise 6`, which runs it both ways; `refcount-lab verify` checks it.
`refcount-lab faults` says where the fault is; `refcount-lab hint 6` gives a nudge.
"""
import hashtable
import lab

# Your probe here.
