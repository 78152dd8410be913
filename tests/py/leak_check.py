"""Runs the HashTable test-suites repeatedly in one process and checks that nothing leaks.

After WARMUP runs (caches fill, imports settle), every further run must return the number
of live HashTable objects to its baseline, and sys.getallocatedblocks() must not grow on
average: under one block per run of some 70 tests, where leaking one object per table
operation would add thousands. (3.9 wobbles by a block or two as its own caches settle.)
Prints one line per run and the mean, so a failure shows its figures.

This check found a real one: attribute names made afresh per call ("keys" in update) each
took a slot in CPython's type attribute cache, about 6 blocks per test run.
"""

import gc
import io
import sys
import unittest

import test_hashtable
import test_mapping_protocol
import test_model
from subject import HashTable

# Caches fill over the first runs: on 3.10 allocated blocks still grew by up to 25 a run
# in runs 10 to 13 of these suites, and stayed flat from there on.
WARMUP, MEASURED = 15, 10
test_model.STEPS = 3_000  # the whole model test is 200,000 operations: too many, ten times


def live_tables():
    return sum(1 for o in gc.get_objects() if isinstance(o, HashTable))


def run_suites():
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(
        loader.loadTestsFromModule(module)
        for module in (test_hashtable, test_mapping_protocol, test_model)
    )
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    if not result.wasSuccessful():
        sys.exit("the suite failed inside the leak check: %s" % (result.failures + result.errors))
    return result.testsRun


def measure():
    gc.collect()
    return live_tables(), sys.getallocatedblocks()


for _ in range(WARMUP):
    run_suites()
baseline_tables, previous_blocks = measure()
growth = []
for run in range(1, MEASURED + 1):
    tests = run_suites()
    tables, blocks = measure()
    growth.append(blocks - previous_blocks)
    previous_blocks = blocks
    print("run %d: %d tests, live %s objects %d (baseline %d), allocated blocks %+d"
          % (run, tests, HashTable.__name__, tables, baseline_tables, growth[-1]))
    assert tables == baseline_tables, "%s objects leaked" % HashTable.__name__
mean = sum(growth) / len(growth)
print("mean allocated-block growth per run: %+.1f" % mean)
assert mean < 1, "allocated blocks grow by %.1f per run: %s" % (mean, growth)
