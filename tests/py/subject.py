"""The table type the suites test: hashtable.HashTable, or the type $TABLE_TYPE names.

`cargo test` runs every suite twice: on HashTable (raw pyo3-ffi) and on SafeHashTable (safe
PyO3, TABLE_TYPE=SafeHashTable). The two have the same API, errors and repr.
"""

import os

import hashtable

HashTable = getattr(hashtable, os.environ.get("TABLE_TYPE", "HashTable"))
