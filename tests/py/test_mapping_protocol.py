"""CPython's own mapping test-suite (test.mapping_tests) run against the table type
(hashtable.HashTable, or SafeHashTable).

BasicTestMappingProtocol runs whole. TestMappingProtocol runs whole but for
test_constructor: it builds tables as `type2test(x=1, y=2)`, like dict(x=1, y=2), while
HashTable's keyword arguments are its parameters (size, max_load, hash_func).
"""

import sys
import unittest

try:
    from test import mapping_tests
except ImportError:
    sys.exit(
        "this CPython (%s) was installed without its own test package (test.mapping_tests): "
        "Debian splits it into libpython3.X-testsuite. Install that, or run the tests with "
        "another interpreter (REFCOUNT_LAB_PYTHON=/path/to/python cargo test)." % sys.executable
    )

from subject import HashTable


class BasicProtocol(mapping_tests.BasicTestMappingProtocol):
    type2test = HashTable


class FullProtocol(mapping_tests.TestMappingProtocol):
    type2test = HashTable

    @unittest.skip("HashTable(**kwargs) takes table parameters, not initial items")
    def test_constructor(self):
        pass


if __name__ == "__main__":
    unittest.main()
