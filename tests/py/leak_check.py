"""Runs the HashTable test-suites repeatedly in one process and checks that they leave no
tables and no memory behind. (References leaked to objects that live anyway, such as a
function, add no memory: the suites' own ReferenceCounts tests count those.)

After WARMUP runs (caches fill, imports settle), every further run must return the number
of live HashTable objects to its baseline, and sys.getallocatedblocks() must not grow: the
least-squares slope of the counts over MEASURED runs stays under SLOPE_LIMIT blocks a run.
Keeping two objects more a run fails it (slopes 1.3 to 2.3 on 3.10, 3.14 and 3.15d); one
more is at the limit on 3.10 (0.8 to 1.3: it failed 8 of 14 runs) and under it on 3.14
(0.3 to 0.95); leaking one object per table operation would add thousands. Prints one
line per run and the slope, so a failure shows its figures.

A slope over many runs, not the difference of two counts: the count wanders by a few
blocks between runs as CPython's own caches fill and empty. Over 200 runs of the suites on
3.10-3.15 and 3.15d, the slope over any 60 consecutive runs stayed under +0.5 (3.10's count
rose by 37 and 41 blocks over the 200 runs, at no one allocation site: tracemalloc finds
none that grows with the runs; from 3.14 the count drifts down, by up to 1.2 a run). The
difference of counts ten runs apart reached +1.2 a run on 3.10.

This check found a real one: attribute names made afresh per call ("keys" in update) each
took a slot in CPython's type attribute cache, about 6 blocks per test run.
"""

import array
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
WARMUP, MEASURED = 15, 60
SLOPE_LIMIT = 1
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


def slope(counts):
    """The least-squares slope of counts taken one run apart."""
    middle = (len(counts) - 1) / 2
    mean = sum(counts) / len(counts)
    spread = sum((run - middle) ** 2 for run in range(len(counts)))
    return sum((run - middle) * (count - mean) for run, count in enumerate(counts)) / spread


for _ in range(WARMUP):
    run_suites()
# Filled in place: keeping each count as a new int object would itself grow a block a run.
counts = array.array("q", [0]) * (MEASURED + 1)
baseline_tables, counts[0] = measure()
for run in range(1, MEASURED + 1):
    tests = run_suites()
    tables, counts[run] = measure()
    print("run %d: %d tests, live %s objects %d (baseline %d), allocated blocks %+d since"
          " the baseline, %+d since the last run"
          % (run, tests, HashTable.__name__, tables, baseline_tables,
             counts[run] - counts[0], counts[run] - counts[run - 1]))
    assert tables == baseline_tables, "%s objects leaked" % HashTable.__name__
growth = slope(counts)
print("allocated blocks grow by %+.2f a run (least squares over %d runs)" % (growth, MEASURED))
assert growth < SLOPE_LIMIT, "allocated blocks grow by %.2f a run: %s" % (
    growth, [count - counts[0] for count in counts])
