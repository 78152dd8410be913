//! The chained hash table itself, in plain Rust: buckets, chains, load and resizing.
//!
//! It stores `*mut PyObject` pointers but never touches a reference count and never calls
//! into Python: who owns those pointers is decided one layer up, in `pytype.rs`, where every
//! `Py_INCREF`/`Py_DECREF` is written out. Keeping the two apart makes the refcounting easy
//! to read and lets this file be tested without an interpreter.

use pyo3_ffi::PyObject;

/// One key/value pair and the hash it was filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hash: isize,
    pub key: *mut PyObject,
    pub value: *mut PyObject,
}

/// Where an entry lives: its bucket, and its position in that bucket's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub bucket: usize,
    pub pos: usize,
}

/// Separate chaining: every bucket holds a chain of entries whose hashes share an index.
///
/// A chain is a `Vec` rather than a linked list: the same idea, fewer allocations.
#[derive(Debug)]
pub struct Table {
    buckets: Vec<Vec<Entry>>,
    load: usize,
    max_load: f64,
    resizes: usize,
    /// Bumped by every change to the set of keys, so iterators and lookups that ran Python
    /// code (`__eq__`) can tell that the chain they were walking has moved.
    version: u64,
}

impl Table {
    /// A table of `size` empty buckets. Callers validate `size > 0` and `0 < max_load <= 1`.
    pub fn new(size: usize, max_load: f64) -> Table {
        Table {
            buckets: (0..size).map(|_| Vec::new()).collect(),
            load: 0,
            max_load,
            resizes: 0,
            version: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.buckets.len()
    }

    /// Number of entries.
    pub fn load(&self) -> usize {
        self.load
    }

    pub fn max_load(&self) -> f64 {
        self.max_load
    }

    pub fn resizes(&self) -> usize {
        self.resizes
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The bucket a hash falls into: `hash mod size`, always in range, negative hashes too.
    pub fn bucket_of(&self, hash: isize) -> usize {
        // Sizes stay far below isize::MAX, so the cast back and forth is exact.
        hash.rem_euclid(self.size() as isize) as usize
    }

    pub fn chain(&self, bucket: usize) -> &[Entry] {
        &self.buckets[bucket]
    }

    pub fn get(&self, slot: Slot) -> Option<Entry> {
        self.buckets.get(slot.bucket)?.get(slot.pos).copied()
    }

    /// Files a new entry (its key must not be in the table yet), doubling the table first when
    /// one more entry would push the load factor past `max_load`.
    pub fn insert_new(&mut self, entry: Entry) {
        if (self.load + 1) as f64 / self.size() as f64 > self.max_load {
            self.grow();
        }
        let bucket = self.bucket_of(entry.hash);
        self.buckets[bucket].push(entry);
        self.load += 1;
        self.version += 1;
    }

    /// Puts `value` in place of the value at `slot` and hands back the old one.
    pub fn replace_value(&mut self, slot: Slot, value: *mut PyObject) -> *mut PyObject {
        std::mem::replace(&mut self.buckets[slot.bucket][slot.pos].value, value)
    }

    /// Unlinks the entry at `slot` and hands it back.
    pub fn remove(&mut self, slot: Slot) -> Entry {
        let entry = self.buckets[slot.bucket].remove(slot.pos);
        self.load -= 1;
        self.version += 1;
        entry
    }

    /// Where the most recently chained entry of the last non-empty bucket is (for `popitem`).
    pub fn last(&self) -> Option<Slot> {
        let bucket = self.buckets.iter().rposition(|chain| !chain.is_empty())?;
        let pos = self.buckets[bucket].len() - 1;
        Some(Slot { bucket, pos })
    }

    /// The first slot at or after `from`, walking buckets in order (for iteration).
    pub fn next_slot(&self, from: Slot) -> Option<Slot> {
        let mut slot = from;
        while slot.bucket < self.size() {
            if slot.pos < self.buckets[slot.bucket].len() {
                return Some(slot);
            }
            slot = Slot {
                bucket: slot.bucket + 1,
                pos: 0,
            };
        }
        None
    }

    /// Every entry, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flatten()
    }

    /// Empties the table (keeping its size) and hands back what it held.
    pub fn take_all(&mut self) -> Vec<Entry> {
        let taken: Vec<Entry> = self.buckets.iter_mut().flat_map(std::mem::take).collect();
        self.load = 0;
        self.version += 1;
        taken
    }

    /// The length of every chain, bucket by bucket (for `repr` and the benchmarks).
    pub fn chain_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets.iter().map(Vec::len)
    }

    fn grow(&mut self) {
        let new_size = self.size() * 2;
        let old = std::mem::replace(
            &mut self.buckets,
            (0..new_size).map(|_| Vec::new()).collect(),
        );
        for entry in old.into_iter().flatten() {
            let bucket = self.bucket_of(entry.hash);
            self.buckets[bucket].push(entry);
        }
        self.resizes += 1;
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct fake pointer: the table never dereferences what it stores.
    fn fake(n: usize) -> *mut PyObject {
        std::ptr::without_provenance_mut(n * 16)
    }

    fn entry(hash: isize) -> Entry {
        Entry {
            hash,
            key: fake(hash.unsigned_abs() + 1),
            value: fake(1),
        }
    }

    #[test]
    fn negative_hashes_land_in_range() {
        let table = Table::new(4, 0.5);
        assert_eq!(table.bucket_of(-4), 0);
        assert_eq!(table.bucket_of(-1), 3);
        assert_eq!(table.bucket_of(isize::MIN), 0);
        assert_eq!(table.bucket_of(7), 3);
    }

    #[test]
    fn grows_when_one_more_entry_would_pass_max_load() {
        let mut table = Table::new(4, 0.5);
        table.insert_new(entry(0));
        table.insert_new(entry(1));
        assert_eq!((table.size(), table.resizes()), (4, 0));
        table.insert_new(entry(2));
        assert_eq!((table.size(), table.resizes(), table.load()), (8, 1, 3));
    }

    #[test]
    fn growing_rechains_by_stored_hash() {
        let mut table = Table::new(2, 1.0);
        for hash in [0, 2, 4] {
            table.insert_new(entry(hash));
        }
        let lengths: Vec<usize> = table.chain_lengths().collect();
        assert_eq!(lengths, vec![2, 0, 1, 0]);
    }

    #[test]
    fn remove_and_last_and_iteration_agree() {
        let mut table = Table::new(4, 1.0);
        for hash in [1, 5, 2] {
            table.insert_new(entry(hash));
        }
        let last = table.last().unwrap();
        assert_eq!(table.get(last).unwrap().hash, 2);
        let first = table.next_slot(Slot { bucket: 0, pos: 0 }).unwrap();
        assert_eq!(table.remove(first).hash, 1);
        assert_eq!(
            table.entries().map(|e| e.hash).collect::<Vec<_>>(),
            vec![5, 2]
        );
        assert_eq!(table.take_all().len(), 2);
        assert_eq!((table.load(), table.last()), (0, None));
    }
}
