//! The pure chained table (`native/src/table/`): its own unit tests, and a property test
//! against `std::collections::HashMap` (and the order entries were added in, as a dict keeps). They run here because the native crate is a cdylib
//! for the stable ABI (a test binary of it would need libpython); the table never touches
//! Python, not even its types, so it compiles in on its own.

#[allow(dead_code)]
#[path = "../native/src/table/mod.rs"]
mod table;

use proptest::prelude::*;
use std::collections::HashMap;
use table::{Entry, Slot, Table};

/// Keys are small numbers; the table stores them as fake pointers it never dereferences.
fn pointer(n: usize) -> *mut u8 {
    std::ptr::without_provenance_mut(n * 16 + 16)
}

/// A hash with many collisions, negative ones too, as a bad `hash_func` would give.
fn hash_of(key: usize) -> isize {
    (key % 7) as isize - 3
}

/// Where `key` is stored: the chain walk `pytype.rs` does, comparing by identity.
fn find(table: &Table<*mut u8>, key: usize) -> Option<Slot> {
    let mut next = table.first_in_chain(table.bucket_of(hash_of(key)));
    while let Some(slot) = next {
        let (entry, after) = table.chained(slot);
        if entry.key == pointer(key) {
            return Some(slot);
        }
        next = after;
    }
    None
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize, usize),
    Remove(usize),
    /// `popitem`: the latest entry goes.
    RemoveLast,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40usize, 0..1000usize).prop_map(|(k, v)| Op::Set(k, v)),
        4 => (0..40usize).prop_map(Op::Remove),
        1 => Just(Op::RemoveLast),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// After every operation the table holds exactly what a HashMap holds, in the order they
    /// were added (removals leave holes, never reorder), every entry is found under its
    /// stored hash, and it grows exactly by the talk's rule.
    #[test]
    fn behaves_like_a_hashmap(
        size in 1..9usize,
        max_load in prop_oneof![Just(0.25), Just(0.5), Just(0.75), Just(1.0)],
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut table: Table<*mut u8> = Table::try_new(size, max_load).unwrap();
        let mut model: HashMap<usize, usize> = HashMap::new();
        let mut order: Vec<usize> = Vec::new(); // the keys, in the order they were added
        for op in ops {
            match op {
                Op::Set(key, value) => {
                    match find(&table, key) {
                        Some(slot) => {
                            let old = table.replace_value(slot, pointer(value));
                            prop_assert_eq!(Some(old), model.get(&key).map(|v| pointer(*v)));
                        }
                        None => {
                            // The talk's rule: double once when one more would pass max_load.
                            let (load, size) = (table.load(), table.size());
                            table.insert_new(Entry {
                                hash: hash_of(key),
                                key: pointer(key),
                                value: pointer(value),
                            });
                            let grows = (load + 1) as f64 / size as f64 > max_load;
                            prop_assert_eq!(table.size(), if grows { 2 * size } else { size });
                        }
                    }
                    if model.insert(key, value).is_none() {
                        order.push(key);
                    }
                }
                Op::Remove(key) => {
                    let removed = find(&table, key).map(|slot| table.remove(slot));
                    prop_assert_eq!(
                        removed.map(|entry| entry.value),
                        model.remove(&key).map(pointer)
                    );
                    order.retain(|k| *k != key);
                }
                Op::RemoveLast => {
                    let removed = table.last().map(|slot| table.remove(slot).key);
                    let latest = order.pop();
                    prop_assert_eq!(removed, latest.map(pointer));
                    if let Some(key) = latest {
                        model.remove(&key);
                    }
                }
                Op::Clear => {
                    prop_assert_eq!(table.take_all().len(), model.len());
                    model.clear();
                    order.clear();
                }
            }
            prop_assert_eq!(table.load(), model.len());
            prop_assert_eq!(table.size(), size << table.resizes());
            prop_assert_eq!(table.chain_lengths().iter().sum::<usize>(), model.len());
            let stored: Vec<*mut u8> = table.entries().map(|e| e.key).collect();
            prop_assert_eq!(&stored, &order.iter().map(|k| pointer(*k)).collect::<Vec<_>>());
            // An iterator's walk, hole by hole, sees the same.
            let mut walked = Vec::new();
            let mut cursor = 0;
            while let Some((slot, entry)) = table.next_entry(cursor) {
                prop_assert_eq!(table.entry(slot), Some(entry));
                walked.push(entry.key);
                cursor = slot + 1;
            }
            prop_assert_eq!(walked, stored);
            for key in 0..40 {
                let stored = find(&table, key).and_then(|slot| table.entry(slot));
                prop_assert_eq!(stored.map(|e| e.value), model.get(&key).map(|v| pointer(*v)));
                if let Some(entry) = stored {
                    prop_assert_eq!(entry.hash, hash_of(key));
                }
            }
        }
    }
}
