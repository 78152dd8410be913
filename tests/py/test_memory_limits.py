"""Memory the system refuses: a MemoryError, and the table as it was (no abort, no leak).

Run by tests/hashtable.rs as `refcount-lab python -X faulthandler tests/py/test_memory_limits.py`
under PYTHONMALLOC=debug, on both types. Apart from the other suites, and not in
leak_check.py: with these tests in them, its counts of allocated blocks moved by up to 20
from one run to the next on 3.10 (+2, 0, -7, -2, +13), while 80 runs of the growth test
alone averaged -0.3 blocks a run. So the tests count the references they care about
themselves.
"""

import contextlib
import sys
import unittest

from subject import HashTable


@contextlib.contextmanager
def address_space_to_spare(test, spare):
    """Caps this process's address space at what it uses now plus `spare` bytes; skips
    `test` where the cap does not bite (a sandbox that ignores it), rather than let it
    fill the memory it was meant to be refused."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    cap = in_use + spare if soft == resource.RLIM_INFINITY else min(in_use + spare, soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        try:
            bytearray(2 * spare)
        except MemoryError:
            pass  # the cap bites
        else:
            test.skipTest("RLIMIT_AS is not enforced here")
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@unittest.skipUnless(sys.platform == "linux", "RLIMIT_AS caps a process's memory on Linux")
class MemoryTheSystemRefuses(unittest.TestCase):
    def test_a_size_the_system_refuses_raises_memory_error(self):
        def hash_func(key):  # a function of its own, to count the references to it
            return 0

        before = sys.getrefcount(hash_func)
        with address_space_to_spare(self, 2**30):  # size=2**30 needs 8 GiB
            with self.assertRaisesRegex(MemoryError, r"needs \d+ bytes, which the system refused"):
                HashTable(size=2**30, hash_func=hash_func)
        self.assertEqual(sys.getrefcount(hash_func), before)

    def test_a_table_the_system_will_not_grow_raises_memory_error_and_stays_whole(self):
        h = HashTable(max_load=1e-9)  # its buckets fit no entry: it doubles on every insert
        stored, refused = [], object()
        before = sys.getrefcount(refused)
        with address_space_to_spare(self, 2**25):  # reached at about 2**23 buckets
            with self.assertRaisesRegex(MemoryError, r"could not grow to \d+ bytes, which the"):
                for key in range(40):
                    h[key] = refused
                    stored.append(key)
        self.assertEqual(sys.getrefcount(refused), before + len(stored))  # one per value stored
        self.assertGreater(len(stored), 10)
        self.assertEqual(len(h), len(stored))
        self.assertEqual(h.keys(), stored)
        self.assertTrue(all(h[key] is refused for key in stored))
        h[0] = "again"  # a key it has needs no room
        self.assertEqual(h.pop(0), "again")
        del h
        self.assertEqual(sys.getrefcount(refused), before)


if __name__ == "__main__":
    unittest.main()
