"""Exercise 8 (write a probe): make --fault no-traverse visible.

Write a script that runs clean (outcome ok) on correct code but ends differently (crashed,
leaked, error) with `--fault no-traverse`. Try it with
`refcount-lab exercise 8`, which runs it both ways; `refcount-lab verify` checks it.
`refcount-lab faults` says where the fault is; `refcount-lab hint 8` gives a nudge.
"""
import hashtable
import lab

# Your probe here.
