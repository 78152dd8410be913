"""Exercise 7 (write a probe): make --fault items-steals-borrowed visible.

Write a script that runs clean (outcome ok) on correct code but ends differently (crashed,
leaked, error) with `--fault items-steals-borrowed`. Try it with
`refcount-lab exercise 7`, which runs it both ways; `refcount-lab verify` checks it.
`refcount-lab faults` says where the fault is; `refcount-lab hint 7` gives a nudge.
"""
import hashtable
import lab

# Your probe here.
