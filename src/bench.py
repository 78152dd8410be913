"""The measurements behind `refcount-lab bench`, run in child interpreters.

With `--round K`, one round of HashTable and SafeHashTable against dict and each other
(throughput ratios); the parent runs each round in a fresh interpreter, because where a
process's memory lands moves a lookup's speed from one process to the next (see
`compare_with_dict`). With `--refill dict` or `--refill HashTable`, `timeit`'s pattern for
one container alone (see `refill`). Without either, memory per entry and a sweep of the
talk's three knobs (hash function, initial size, max load). One JSON document on stdout.
Everything but the timings is deterministic (the parent fixes PYTHONHASHSEED).
"""

import gc
import json
import resource
import statistics
import sys
import time

from hashtable import HashTable, SafeHashTable, terrible_hash


def digit_sum_hash(key):
    """A user-written hash: the sum of the characters of str(key). Cheap to write, slow to run."""
    return sum(map(ord, str(key)))


def op_set(table, keys):
    for key in keys:
        table[key] = key


def op_get(table, keys):
    for key in keys:
        table[key]


def op_contains(table, keys):
    for key in keys:
        key in table


def op_pop(table, keys):
    for key in keys:
        table.pop(key)


REFILL_RUNS = 7

OPERATIONS = [("h[k] = v", op_set), ("h[k]", op_get), ("k in h", op_contains), ("pop(k)", op_pop)]


def timed(operation, table, keys):
    start = time.perf_counter()
    operation(table, keys)
    return time.perf_counter() - start


def compare_with_dict(n, round_number, repeats):
    """One round: per key kind and operation, HashTable / dict, SafeHashTable / dict and
    SafeHashTable / HashTable throughput, all three timed in this round. Each container runs
    the four operations `repeats` times, on a fresh table each time, and the fastest time of
    each operation counts (as `timeit` advises: on a shared machine the slower times measure
    the other processes).

    Each round runs in a fresh interpreter: the same lookups timed again in one process
    repeat within a few per cent, but from one process to the next HashTable / dict for
    `h[k]` on int keys moved by up to 10 per cent either way (benches/results-issue-25.md).
    So each process is a sample of its own, and the rounds' median is steadier."""
    key_sets = {"int": list(range(n)), "str": ["key%d" % i for i in range(n)]}
    contenders = [dict, HashTable, SafeHashTable]
    pairs = {"ratio": (HashTable, dict), "safe_ratio": (SafeHashTable, dict),
             "safe_vs_raw": (SafeHashTable, HashTable)}
    rows = []
    for kind, keys in key_sets.items():
        # Rotate which type goes first, so none always runs on a warmer cache.
        shift = round_number % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        # Untimed, twice: a fresh process's first tables take their memory from the system,
        # and dropping the first only raises the C allocator's thresholds for the second.
        for make in order * 2:
            table = make()
            for _, operation in OPERATIONS:
                operation(table, keys)
        seconds = {}
        for make in order:
            for _ in range(repeats):
                table = make()
                for name, operation in OPERATIONS:
                    took = timed(operation, table, keys)
                    seconds[make, name] = min(seconds.get((make, name), took), took)
        for name, _ in OPERATIONS:
            rows.append(dict(keys=kind, operation=name, **{
                field: seconds[than, name] / seconds[faster, name]
                for field, (faster, than) in pairs.items()}))
    return rows


def refill(make, n, runs):
    """What a `timeit` loop of `t = make()` and a fill measures: dropping the last table,
    making a new one and filling it with n int keys. The fastest of `runs` such steps after
    an untimed one (the first drops nothing), and the median of their page faults (pages of
    memory the system had to hand over anew)."""
    keys = list(range(n))
    table = make()
    op_set(table, keys)
    fastest, faults = None, []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        table = make()  # the last table is dropped here, as in the loop
        op_set(table, keys)
        took = time.perf_counter() - start
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        fastest = took if fastest is None else min(fastest, took)
    return {"seconds": fastest, "page_faults": statistics.median_low(faults)}


def memory_per_entry(n):
    """sys.getsizeof per entry (the container's own memory; keys and values excluded)."""
    table, safe, plain = HashTable(), SafeHashTable(), {}
    for key in range(n):
        table[key] = safe[key] = plain[key] = key
    return {"entries": n, "hashtable": sys.getsizeof(table) / n,
            "safe": sys.getsizeof(safe) / n, "dict": sys.getsizeof(plain) / n,
            "buckets": table.size}


def sweep(n):
    """Every hash function x initial size x max load on the same mixed keys."""
    keys = ["k%d" % i for i in range(n // 2)] + list(range(n // 2))
    rows = []
    for hash_func in (hash, terrible_hash, digit_sum_hash):
        for size in (1, 64, 4096):
            for max_load in (0.25, 0.5, 1.0):
                table = HashTable(size, max_load, hash_func)
                set_seconds = timed(op_set, table, keys)
                get_seconds = min(timed(op_get, table, keys) for _ in range(3))
                chains = [length for length in table.chain_lengths() if length]
                rows.append({
                    "hash_func": hash_func.__name__,
                    "size": size,
                    "max_load": max_load,
                    "final_size": table.size,
                    "resizes": table.resizes,
                    "mean_chain": statistics.fmean(chains),
                    "max_chain": max(chains),
                    "set_mops": n / set_seconds / 1e6,
                    "get_mops": n / get_seconds / 1e6,
                })
    return rows


def main():
    quick = "--quick" in sys.argv
    n, repeats, sweep_n = (20_000, 1, 1_000) if quick else (100_000, 3, 5_000)
    gc.disable()  # the collector would land in one round or another at random
    if "--refill" in sys.argv:
        name = sys.argv[sys.argv.index("--refill") + 1]
        make = {"dict": dict, "HashTable": HashTable}[name]
        report = {"entries": n, "runs": REFILL_RUNS, **refill(make, n, REFILL_RUNS)}
    elif "--round" in sys.argv:
        round_number = int(sys.argv[sys.argv.index("--round") + 1])
        report = {
            "entries": n,
            "repeats": repeats,
            "versus_dict": compare_with_dict(n, round_number, repeats),
        }
    else:
        report = {
            # Both containers grow in steps, so one size can flatter either: measure several.
            "memory": [memory_per_entry(size)
                       for size in (1_000, 3_000, 10_000, 30_000, 100_000, 1_000_000)],
            "sweep_entries": sweep_n,
            "sweep": sweep(sweep_n),
        }
    print(json.dumps(report))


main()
