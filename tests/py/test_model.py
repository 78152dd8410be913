"""Model-based random test: HashTable and dict get the same random operations and must agree.

Every step compares the result (or the exception type) and the length; every 100 steps the
whole contents. Iteration and `popitem` follow the order keys were added in, as dict's do. Keys collide on purpose (small key space, weak hash functions, mixed types).
A last test uses keys whose `__eq__`, `__hash__` and `__del__` change the very table they are
used with, where dict is no model: the table must keep itself consistent and never crash.
200,000 operations in all (leak_check.py runs fewer, many times over).
"""

import random
import unittest

from hashtable import terrible_hash
from subject import HashTable

STEPS = 40_000
KEYS = list(range(-20, 20)) + ["a", "bb", "cc", "ddd", 1.5, -2.5, (1, 2), None, True]


def hash_mod_3(key):
    return hash(key) % 3


class Model(unittest.TestCase):
    def run_model(self, hash_func, seed):
        rng = random.Random(seed)
        table = HashTable(size=rng.choice([1, 2, 4, 8]), max_load=rng.choice([0.3, 0.5, 1.0]),
                          hash_func=hash_func)
        model = {}

        def both(operation):
            outcomes = []
            for target in (table, model):
                try:
                    outcomes.append(("ok", operation(target)))
                except Exception as error:  # compared by type below
                    outcomes.append(("raised", type(error)))
            return outcomes

        for step in range(STEPS):
            key, value = rng.choice(KEYS), rng.randrange(1000)
            op = rng.choice(["set", "get", "pop", "del", "in", "setdefault", "iter", "popitem"])
            if op == "set":
                outcomes = both(lambda t: t.__setitem__(key, value))
            elif op == "get":
                outcomes = both(lambda t: t.get(key, "absent"))
            elif op == "pop":
                outcomes = both(lambda t: t.pop(key, "absent"))
            elif op == "del":
                outcomes = both(lambda t: t.__delitem__(key))
            elif op == "in":
                outcomes = both(lambda t: key in t)
            elif op == "setdefault":
                outcomes = both(lambda t: t.setdefault(key, value))
            elif op == "iter":
                outcomes = both(lambda t: list(map(repr, t)))
            else:
                outcomes = both(lambda t: t.popitem())
            self.assertEqual(outcomes[0], outcomes[1], (step, op, key))
            self.assertEqual(len(table), len(model), (step, op, key))
            if step % 100 == 0:
                self.assertEqual(table, model, step)

    def test_builtin_hash(self):
        self.run_model(hash, seed=1)

    def test_terrible_hash(self):
        self.run_model(terrible_hash, seed=2)

    def test_three_buckets_worth_of_hashes(self):
        self.run_model(hash_mod_3, seed=3)

    def test_keys_that_change_the_table_they_are_in(self):
        rng = random.Random(4)
        table = HashTable(size=2, max_load=0.5)
        meddling = [True]

        def meddle():
            if meddling[0] and rng.random() < 0.05:
                meddling[0] = False  # no meddling inside meddling
                try:
                    if rng.random() < 0.5:
                        table[rng.randrange(10)] = Meddler(rng.randrange(30))
                    else:
                        table.pop(rng.randrange(10), None)
                finally:
                    meddling[0] = True

        class Meddler:
            def __init__(self, n):
                self.n = n

            def __hash__(self):
                meddle()
                return self.n % 5

            def __eq__(self, other):
                meddle()
                return isinstance(other, Meddler) and other.n == self.n

            def __del__(self):
                meddle()

        for step in range(STEPS * 2):
            key = Meddler(rng.randrange(30)) if rng.random() < 0.7 else rng.randrange(10)
            op = rng.choice(["set", "get", "pop", "in", "iter", "update"])
            try:
                if op == "set":
                    table[key] = Meddler(rng.randrange(30))
                elif op == "get":
                    table.get(key)
                elif op == "pop":
                    table.pop(key, None)
                elif op == "in":
                    key in table
                elif op == "iter":
                    list(table)
                else:
                    table.update([(key, step)])
            except RuntimeError:
                pass  # the table changed under the operation, and said so
            del key
            if step % 50 == 0:
                meddling[0] = False
                keys = list(table)
                self.assertEqual(len(keys), len(table), step)
                for stored in keys:
                    self.assertIn(stored, table, step)
                meddling[0] = True
        meddling[0] = False
        table.clear()


if __name__ == "__main__":
    unittest.main()
