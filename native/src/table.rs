//! The chained hash table itself, in plain Rust: buckets, chains, load and resizing.
//!
//! It stores references (`P`: `*mut PyObject` in `pytype.rs`, `Py<PyAny>` in `safe.rs`) but
//! never dereferences them, never touches a reference count and never calls into Python: who
//! owns them is decided one layer up, in `pytype.rs`, where every `Py_INCREF`/`Py_DECREF` is
//! written out (in `safe.rs` the types decide: a `Py<PyAny>` owns its reference).
//! Keeping the two apart makes the refcounting easy to read and lets this file be tested
//! without an interpreter (or even pyo3).
//!
//! Layout: separate chaining with the chains' links stored as indices. Entries live in one
//! array; each bucket holds the index of the first entry of its chain, and each entry the
//! index of the next, and of the one before it. The same linked lists as in the talk's C
//! code (doubly linked), without one allocation per entry, and resizing only relinks indices.

/// One key/value pair and the hash it was filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<P> {
    pub hash: isize,
    pub key: P,
    pub value: P,
}

/// Where an entry lives: its index in the entry array. Valid until the next change to the
/// set of keys (see [`Table::version`]).
pub type Slot = usize;

/// Marks the end of a chain.
const END: u32 = u32::MAX;

/// The largest number of buckets or entries a table can have (indices are `u32`).
pub const MAX_SIZE: usize = 1 << 30;

#[derive(Clone, Copy, Debug)]
struct Node<P> {
    entry: Entry<P>,
    /// The next entry in the same chain, or [`END`].
    next: u32,
    /// The entry before this one in its chain, or [`END`] when this one is first (its
    /// bucket's head points at it). With it, removing an entry, and moving the last entry
    /// into its place, rewrites the links around them without walking a chain (and without
    /// reading a bucket head, a likely cache miss); it fills what would be padding.
    prev: u32,
}

#[derive(Debug)]
pub struct Table<P> {
    /// For each bucket, the first entry of its chain, or [`END`].
    heads: Vec<u32>,
    nodes: Vec<Node<P>>,
    max_load: f64,
    resizes: usize,
    /// Bumped by every change to the set of keys, so iterators and lookups that ran Python
    /// code (`__eq__`) can tell that the chain they were walking has moved.
    version: u64,
}

impl<P> Table<P> {
    /// A table of `size` empty buckets. Callers validate `0 < size <= MAX_SIZE` and
    /// `0 < max_load <= 1`.
    pub fn new(size: usize, max_load: f64) -> Table<P> {
        Table {
            heads: vec![END; size],
            nodes: Vec::new(),
            max_load,
            resizes: 0,
            version: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.heads.len()
    }

    /// Number of entries.
    pub fn load(&self) -> usize {
        self.nodes.len()
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
    #[inline]
    pub fn bucket_of(&self, hash: isize) -> usize {
        let size = self.size();
        if size & (size - 1) == 0 {
            // The same number without a division (tens of cycles): modulo a power of two
            // is the hash's low bits, negative hashes included (two's complement).
            (hash as usize) & (size - 1)
        } else {
            // Sizes stay far below isize::MAX, so the cast back and forth is exact.
            hash.rem_euclid(size as isize) as usize
        }
    }

    /// The first entry chained in `bucket`.
    pub fn first_in_chain(&self, bucket: usize) -> Option<Slot> {
        link(self.heads[bucket])
    }

    /// The entry after `slot` in the same chain.
    pub fn next_in_chain(&self, slot: Slot) -> Option<Slot> {
        link(self.nodes[slot].next)
    }

    pub fn entry(&self, slot: Slot) -> Option<&Entry<P>> {
        self.nodes.get(slot).map(|node| &node.entry)
    }

    /// No room for another entry ([`MAX_SIZE`] entries): callers check before inserting.
    pub fn is_full(&self) -> bool {
        self.nodes.len() >= MAX_SIZE
    }

    /// Files a new entry (its key must not be in the table yet, and the table must not be
    /// full), doubling the table first when one more entry would push the load factor past
    /// `max_load`.
    pub fn insert_new(&mut self, entry: Entry<P>) {
        debug_assert!(!self.is_full(), "callers check is_full first");
        if (self.load() + 1) as f64 / self.size() as f64 > self.max_load && self.size() < MAX_SIZE {
            self.grow();
        }
        let bucket = self.bucket_of(entry.hash);
        let index = self.nodes.len() as u32;
        let next = self.heads[bucket];
        if let Some(first) = link(next) {
            self.nodes[first].prev = index;
        }
        self.nodes.push(Node {
            entry,
            next,
            prev: END,
        });
        self.heads[bucket] = index;
        self.version += 1;
    }

    /// Puts `value` in place of the value at `slot` and hands back the old one.
    pub fn replace_value(&mut self, slot: Slot, value: P) -> P {
        std::mem::replace(&mut self.nodes[slot].entry.value, value)
    }

    /// Unlinks the entry at `slot` and hands it back. The last entry moves into its place.
    pub fn remove(&mut self, slot: Slot) -> Entry<P> {
        let Node { next, prev, .. } = self.nodes[slot];
        // Its neighbours link past it.
        *self.link_before(slot) = next;
        if let Some(after) = link(next) {
            self.nodes[after].prev = prev;
        }
        // The last entry moves into its place: what linked to the last links to `slot`.
        let last = self.nodes.len() - 1;
        if slot != last {
            *self.link_before(last) = slot as u32;
            if let Some(after) = link(self.nodes[last].next) {
                self.nodes[after].prev = slot as u32;
            }
        }
        self.version += 1;
        let removed = self.nodes.swap_remove(slot).entry;
        self.prefetch_last_links();
        removed
    }

    /// A hint to the CPU cache: the next removal moves the entry that is now last, and
    /// rewrites the links around it (the bucket head or entry before it, the entry after
    /// it), which for random hashes sit far away in memory. Fetching them now lets that
    /// wait overlap with whatever runs in between.
    #[inline]
    fn prefetch_last_links(&self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(last) = self.nodes.last() {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let before: *const u32 = match link(last.prev) {
                Some(before) => &self.nodes[before].next,
                None => &self.heads[self.bucket_of(last.entry.hash)],
            };
            // SAFETY: a prefetch only warms the cache: it changes nothing and cannot fault
            // (and both addresses are live elements besides).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(before.cast());
                if let Some(after) = link(last.next) {
                    _mm_prefetch::<_MM_HINT_T0>((&raw const self.nodes[after]).cast());
                }
            }
        }
    }

    /// The most recently filed entry (for `popitem`).
    pub fn last(&self) -> Option<Slot> {
        self.nodes.len().checked_sub(1)
    }

    /// Every entry, in the order they are stored.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<P>> {
        self.nodes.iter().map(|node| &node.entry)
    }

    /// Empties the table (keeping its size) and hands back what it held.
    pub fn take_all(&mut self) -> Vec<Entry<P>> {
        self.heads.fill(END);
        self.version += 1;
        self.nodes.drain(..).map(|node| node.entry).collect()
    }

    /// The length of every chain, bucket by bucket (for `repr` and the benchmarks).
    pub fn chain_lengths(&self) -> Vec<usize> {
        let mut lengths = vec![0; self.size()];
        for node in &self.nodes {
            lengths[self.bucket_of(node.entry.hash)] += 1;
        }
        lengths
    }

    /// Bytes of heap memory the buckets and entries occupy (capacity, not just length).
    pub fn heap_bytes(&self) -> usize {
        self.heads.capacity() * size_of::<u32>() + self.nodes.capacity() * size_of::<Node<P>>()
    }

    /// The link that points at `slot`: the `next` of the entry before it, or its bucket's
    /// head when it is first in its chain.
    fn link_before(&mut self, slot: Slot) -> &mut u32 {
        match link(self.nodes[slot].prev) {
            Some(before) => &mut self.nodes[before].next,
            None => {
                let bucket = self.bucket_of(self.nodes[slot].entry.hash);
                &mut self.heads[bucket]
            }
        }
    }

    fn grow(&mut self) {
        self.heads = vec![END; (self.size() * 2).min(MAX_SIZE)];
        for index in 0..self.nodes.len() {
            let bucket = self.bucket_of(self.nodes[index].entry.hash);
            let next = self.heads[bucket];
            if let Some(first) = link(next) {
                self.nodes[first].prev = index as u32;
            }
            self.nodes[index].next = next;
            self.nodes[index].prev = END;
            self.heads[bucket] = index as u32;
        }
        self.resizes += 1;
        self.version += 1;
    }
}

impl<P: Copy> Table<P> {
    /// A copy of the entry at `slot` (for raw pointers, which copy freely).
    pub fn get(&self, slot: Slot) -> Option<Entry<P>> {
        self.entry(slot).copied()
    }
}

fn link(index: u32) -> Option<Slot> {
    (index != END).then_some(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct fake pointer: the table never dereferences what it stores.
    fn fake(n: usize) -> *mut u8 {
        std::ptr::without_provenance_mut(n * 16)
    }

    fn entry(hash: isize) -> Entry<*mut u8> {
        Entry {
            hash,
            key: fake(hash.unsigned_abs() + 1),
            value: fake(1),
        }
    }

    fn chain(table: &Table<*mut u8>, bucket: usize) -> Vec<isize> {
        let mut hashes = Vec::new();
        let mut next = table.first_in_chain(bucket);
        while let Some(slot) = next {
            hashes.push(table.get(slot).unwrap().hash);
            next = table.next_in_chain(slot);
        }
        hashes
    }

    #[test]
    fn negative_hashes_land_in_range() {
        let table: Table<*mut u8> = Table::new(4, 0.5);
        assert_eq!(table.bucket_of(-4), 0);
        assert_eq!(table.bucket_of(-1), 3);
        assert_eq!(table.bucket_of(isize::MIN), 0);
        assert_eq!(table.bucket_of(7), 3);
        // A size that is no power of two divides; one that is masks: the same buckets.
        let odd: Table<*mut u8> = Table::new(3, 0.5);
        assert_eq!(
            (odd.bucket_of(-1), odd.bucket_of(-3), odd.bucket_of(7)),
            (2, 0, 1)
        );
        for hash in [-9, -8, -1, 0, 5, isize::MAX, isize::MIN + 1] {
            assert_eq!(table.bucket_of(hash), hash.rem_euclid(4) as usize);
        }
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
        assert_eq!(table.chain_lengths(), vec![2, 0, 1, 0]);
        assert_eq!(chain(&table, 0), vec![4, 0]);
    }

    /// Every chain, walked forwards, is the same chain walked backwards from its end.
    fn assert_links_agree(table: &Table<*mut u8>) {
        for bucket in 0..table.size() {
            let mut before = END;
            let mut next = table.heads[bucket];
            while let Some(slot) = link(next) {
                assert_eq!(
                    table.nodes[slot].prev, before,
                    "bucket {bucket}, slot {slot}"
                );
                assert_eq!(table.bucket_of(table.nodes[slot].entry.hash), bucket);
                before = slot as u32;
                next = table.nodes[slot].next;
            }
        }
    }

    #[test]
    fn back_links_follow_every_insert_remove_and_resize() {
        let mut table = Table::new(2, 1.0);
        for hash in [0, 2, 4, 6, 1, 3, -2, 8, 10] {
            table.insert_new(entry(hash));
            assert_links_agree(&table);
        }
        // First, middle and last of a chain, and the last entry itself.
        for slot in [Some(0), Some(3), Some(1), None, Some(0), Some(2)] {
            table.remove(slot.or(table.last()).unwrap());
            assert_links_agree(&table);
        }
        assert_eq!(table.load(), 3);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_back_link_costs_no_memory() {
        // hash, key, value (8 bytes each) and two 4-byte links: 32 bytes, as one link and
        // padding took before.
        assert_eq!(size_of::<Node<*mut u8>>(), 32);
    }

    #[test]
    fn removing_relinks_the_entry_that_moves() {
        let mut table = Table::new(4, 1.0);
        for hash in [0, 4, 1, 8] {
            table.insert_new(entry(hash));
        }
        assert_eq!(chain(&table, 0), vec![8, 4, 0]);
        // Slot 0 (hash 0) goes; the last entry (hash 8, same chain) moves into slot 0.
        assert_eq!(table.remove(0).hash, 0);
        assert_eq!(chain(&table, 0), vec![8, 4]);
        assert_eq!(chain(&table, 1), vec![1]);
        assert_eq!(table.remove(table.last().unwrap()).hash, 1);
        let hashes: Vec<isize> = table.entries().map(|e| e.hash).collect();
        assert_eq!(hashes, vec![8, 4]);
        assert_eq!(table.take_all().len(), 2);
        assert_eq!(
            (table.load(), table.last(), table.first_in_chain(0)),
            (0, None, None)
        );
    }
}
