//! The pure table, without Python: insert, find and remove on `table::Table` against
//! `std::collections::HashMap`, in interleaved rounds within one run.
//!
//! The table is compiled in from its source (`native/src/table/` needs nothing from
//! the interpreter), fed fake object pointers it never dereferences. Finding a key walks its
//! chain comparing stored hashes, as `find` in `pytype.rs` does before calling `==`.
//! Not a like-for-like race: `HashMap` hashes every key with SipHash, while the table is
//! handed hashes already computed (by Python's `hash`), so the figure shows what the table
//! costs around the hash, not which design is faster. Run with `cargo bench --bench table_ops`.

// What the benchmark leaves unused, and the imports of unit tests compiled here without
// their `#[test]` functions.
#[allow(dead_code, unused_imports)]
#[path = "../native/src/table/mod.rs"]
mod table;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;
use table::{Entry, Table};

const N: usize = 1_000_000;
const ROUNDS: usize = 7;

/// A pseudo-random but reproducible spread of hashes (splitmix64).
fn hashes() -> Vec<isize> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..N)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as isize
        })
        .collect()
}

fn fake(n: usize) -> *mut u8 {
    std::ptr::without_provenance_mut((n + 1) * 16)
}

fn find(table: &Table<*mut u8>, hash: isize) -> Option<usize> {
    let mut next = table.first_in_chain(table.bucket_of(hash));
    while let Some(slot) = next {
        let (entry, after) = table.chained(slot);
        if entry.hash == hash {
            return Some(slot);
        }
        next = after;
    }
    None
}

/// Nanoseconds per operation for insert, find and remove.
fn run_table(hashes: &[isize]) -> [f64; 3] {
    let mut table = Table::try_new(4, 0.5).unwrap();
    let started = Instant::now();
    for (i, &hash) in hashes.iter().enumerate() {
        table.insert_new(Entry {
            hash,
            key: fake(i),
            value: fake(i),
        });
    }
    let inserted = started.elapsed();
    let started = Instant::now();
    for &hash in hashes {
        black_box(find(&table, hash));
    }
    let found = started.elapsed();
    let started = Instant::now();
    for &hash in hashes {
        let slot = find(&table, hash).expect("every key is there");
        black_box(table.remove(slot));
    }
    let removed = started.elapsed();
    [inserted, found, removed].map(|d| d.as_nanos() as f64 / N as f64)
}

fn run_hashmap(hashes: &[isize]) -> [f64; 3] {
    let mut map = HashMap::new();
    let started = Instant::now();
    for (i, &hash) in hashes.iter().enumerate() {
        map.insert(hash, i);
    }
    let inserted = started.elapsed();
    let started = Instant::now();
    for hash in hashes {
        black_box(map.get(hash));
    }
    let found = started.elapsed();
    let started = Instant::now();
    for hash in hashes {
        black_box(map.remove(hash));
    }
    let removed = started.elapsed();
    [inserted, found, removed].map(|d| d.as_nanos() as f64 / N as f64)
}

fn main() {
    let hashes = hashes();
    let (mut ours, mut std) = (vec![], vec![]);
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            ours.push(run_table(&hashes));
            std.push(run_hashmap(&hashes));
        } else {
            std.push(run_hashmap(&hashes));
            ours.push(run_table(&hashes));
        }
    }
    let median = |samples: &[[f64; 3]], op: usize| {
        let mut values: Vec<f64> = samples.iter().map(|s| s[op]).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("{N} distinct hashes, medians of {ROUNDS} interleaved rounds (ns per operation)");
    println!("  operation   Table   HashMap   Table / HashMap");
    for (op, name) in ["insert", "find", "remove"].iter().enumerate() {
        let (table, map) = (median(&ours, op), median(&std, op));
        println!(
            "  {name:<9} {table:>7.1}   {map:>7.1}   {:>14.2}×",
            table / map
        );
    }
}
