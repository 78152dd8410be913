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
//! index of the next. The same linked lists as in the talk's C code, without one allocation
//! per entry, and resizing only relinks indices. The buckets and the entries share one
//! allocation, as a `dict`'s index and entries do (`block.rs` says why).
//!
//! Removing an entry leaves a hole in the array (as `dict` leaves a dummy): nothing else
//! moves, and the only link rewritten is the one that led to it, which the lookup that found
//! the entry has just read. Holes are squeezed out when the table grows, or when they
//! outnumber the entries. The array keeps the entries in the order they were added, and so
//! does each chain (the oldest first, as `dict` probes find older keys first).

mod block;

pub use block::Refused;

use block::Block;
use std::num::NonZeroU32;

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

/// Where a walk along a chain stopped ([`Table::walk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk<P> {
    /// At the entry that holds the very key looked for (a copy of it).
    Same(Slot, Entry<P>),
    /// At an entry of the same hash holding another key: only `==` can tell whether they
    /// are equal.
    SameHash(Slot),
    /// Past the end of the chain.
    End,
}

/// The largest number of buckets or entries a table can have (indices are `u32`).
pub const MAX_SIZE: usize = 1 << 30;

/// A link to an entry: its slot plus one, so that no link is zero. That spare value lets
/// `Option<Node>` mark a hole in the node's own 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link(NonZeroU32);

impl Link {
    /// Marks the end of a chain.
    const END: Link = Link(NonZeroU32::MAX);

    fn to(slot: Slot) -> Link {
        Link(NonZeroU32::MIN.saturating_add(slot as u32)) // slot + 1: slots stay below MAX_SIZE
    }

    fn slot(self) -> Option<Slot> {
        (self != Link::END).then(|| self.0.get() as usize - 1)
    }
}

#[derive(Clone, Copy, Debug)]
struct Node<P> {
    entry: Entry<P>,
    /// The next entry in the same chain, or [`Link::END`].
    next: Link,
}

#[derive(Debug)]
pub struct Table<P> {
    /// The heads: for each bucket, the first entry of its chain, or [`Link::END`]. The
    /// nodes: the entries in the order they were added; `None` where one was removed (a hole).
    block: Block<Link, Option<Node<P>>>,
    /// Entries, holes not counted.
    live: usize,
    max_load: f64,
    /// How many entries fit in the buckets within `max_load` ([`fits`]): the table doubles
    /// before one more goes in.
    fits: usize,
    /// How many more entries go in before [`Table::make_room`] must look again (a `dict`'s
    /// `dk_usable`): before the room runs out, or one more would pass `max_load`. A removal
    /// that leaves more holes than entries sets it to 0.
    usable: usize,
    resizes: usize,
    /// Bumped by every change to the set of keys, so iterators and lookups that ran Python
    /// code (`__eq__`) can tell that the chain they were walking has moved.
    version: u64,
}

impl<P> Table<P> {
    /// A table of `size` empty buckets, or an error when the memory for them is refused.
    /// Callers validate `0 < size <= MAX_SIZE` and `0 < max_load <= 1`.
    pub fn try_new(size: usize, max_load: f64) -> Result<Table<P>, Refused> {
        let fits = fits(size, max_load);
        Ok(Table {
            // A table made large on purpose has room for entries from the start (as a
            // `dict` made for many keys has), as many bytes as its buckets take, and none
            // it cannot fill: growing the room past that moves no more than it makes. The
            // system hands out the pages as they are written.
            block: Block::try_new(size, Link::END, fits.min(room_as_large_as_heads::<P>(size)))?,
            live: 0,
            max_load,
            fits,
            usable: 0, // the first insert makes room
            resizes: 0,
            version: 0,
        })
    }

    pub fn size(&self) -> usize {
        self.block.heads().len()
    }

    /// Number of entries.
    pub fn load(&self) -> usize {
        self.live
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
        bucket_of(hash, self.size())
    }

    /// The first entry chained in `bucket`.
    pub fn first_in_chain(&self, bucket: usize) -> Option<Slot> {
        self.block.heads()[bucket].slot()
    }

    /// The entry at `slot`, which a chain links to, and the one after it in that chain: one
    /// look at the node per step of a lookup.
    pub fn chained(&self, slot: Slot) -> (&Entry<P>, Option<Slot>) {
        let node = self.node(slot);
        (&node.entry, node.next.slot())
    }

    /// Walks a chain from `from` (a slot in it, or `None` for an empty rest) to the first
    /// entry that holds `key` itself or has its `hash`. Identity first, as `dict` looks: with
    /// a good hash the key found is mostly the very object stored. No Python code runs here,
    /// so this loop calls nothing.
    #[inline(always)]
    pub fn walk(&self, mut from: Option<Slot>, hash: isize, key: P) -> Walk<P>
    where
        P: Copy + PartialEq,
    {
        while let Some(slot) = from {
            let node = self.node(slot);
            if node.entry.key == key {
                return Walk::Same(slot, node.entry);
            }
            if node.entry.hash == hash {
                return Walk::SameHash(slot);
            }
            from = node.next.slot();
        }
        Walk::End
    }

    /// The entry at `slot`; `None` for a hole or past the end.
    pub fn entry(&self, slot: Slot) -> Option<&Entry<P>> {
        self.block
            .nodes()
            .get(slot)?
            .as_ref()
            .map(|node| &node.entry)
    }

    /// The first entry at or after `slot`, and where it is (for iterators, which step over
    /// holes).
    pub fn next_entry(&self, slot: Slot) -> Option<(Slot, &Entry<P>)> {
        let rest = self.block.nodes().get(slot..)?.iter().enumerate();
        rest.filter_map(|(i, node)| Some((slot + i, &node.as_ref()?.entry)))
            .next()
    }

    /// No room for another entry ([`MAX_SIZE`] entries): callers check before inserting.
    pub fn is_full(&self) -> bool {
        self.live >= MAX_SIZE
    }

    /// Makes sure one more entry can go in ([`Table::make_room`]: doubling the table first
    /// when one more entry would push the load factor past `max_load`). Refused memory is
    /// an error, and leaves the table as it was.
    #[inline(always)]
    pub fn reserve_one(&mut self) -> Result<(), Refused> {
        if self.usable == 0 {
            self.make_room()?;
        }
        Ok(())
    }

    /// Files a new entry (its key must not be in the table yet, and the table must not be
    /// full). Callers that must not abort when memory runs out call [`Table::reserve_one`]
    /// first.
    #[inline(always)]
    pub fn insert_new(&mut self, entry: Entry<P>) {
        debug_assert!(!self.is_full(), "callers check is_full first");
        self.reserve_one().expect("memory for one more entry");
        let bucket = self.bucket_of(entry.hash);
        let slot = self.block.nodes().len();
        // At the end of its chain. The lookup that found the key absent has just walked
        // the chain, so this walk reads only what is in the cache.
        match self.last_in_chain(bucket) {
            Some(last) => self.node_mut(last).next = Link::to(slot),
            None => self.block.heads_mut()[bucket] = Link::to(slot),
        }
        self.block.push(Some(Node {
            entry,
            next: Link::END,
        }));
        self.live += 1;
        self.usable -= 1;
        self.version += 1;
    }

    /// Puts `value` in place of the value at `slot` and hands back the old one.
    pub fn replace_value(&mut self, slot: Slot, value: P) -> P {
        std::mem::replace(&mut self.node_mut(slot).entry.value, value)
    }

    /// Unlinks the entry at `slot` and hands it back, leaving a hole. The one link that
    /// changes, the bucket's head or the entry before it, is found by walking the chain
    /// again: after a lookup found the entry (`pop`, `del`), through cached nodes.
    #[inline(always)]
    pub fn remove(&mut self, slot: Slot) -> Entry<P> {
        let bucket = self.bucket_of(self.node(slot).entry.hash);
        let (mut before, mut at) = (None, self.first_in_chain(bucket));
        while at != Some(slot) {
            before = at;
            at = self
                .node(at.expect("an entry is in its bucket's chain"))
                .next
                .slot();
        }
        let Node { entry, next } = self.block.nodes_mut()[slot].take().expect("a stored entry");
        match before {
            Some(before) => self.node_mut(before).next = next,
            None => self.block.heads_mut()[bucket] = next,
        }
        self.live -= 1;
        if self.live == 0 {
            self.block.truncate(0); // only holes left: no need to look at them one by one
        }
        // Holes at the end go at once, so the last slot always holds an entry (`popitem`).
        while let Some(None) = self.block.nodes().last() {
            self.block.pop();
        }
        if self.block.nodes().len() - self.live > self.live {
            self.usable = 0; // more holes than entries: the next insert squeezes them out
        }
        self.version += 1;
        entry
    }

    /// The most recently filed entry (for `popitem`).
    pub fn last(&self) -> Option<Slot> {
        self.block.nodes().len().checked_sub(1)
    }

    /// Every entry, in the order they were added.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<P>> {
        self.block.nodes().iter().flatten().map(|node| &node.entry)
    }

    /// Empties the table (keeping its size) and hands back what it held: the table is whole
    /// and empty before the caller lets go of any entry (which may run Python code that
    /// looks at it).
    pub fn take_all(&mut self) -> Vec<Entry<P>> {
        self.block.heads_mut().fill(Link::END);
        self.live = 0;
        self.version += 1;
        let nodes = self.block.nodes_mut().iter_mut().filter_map(Option::take);
        let entries = nodes.map(|node| node.entry).collect();
        self.block.truncate(0); // holes only, now
        entries
    }

    /// What the table held, for a table that is going away: unlike [`Table::take_all`],
    /// nothing is allocated (a deallocation that allocates can take the heap past the size
    /// glibc keeps, and make it shrink and grow again with every large table dropped).
    pub fn into_entries(self) -> Taken<P> {
        Taken {
            block: self.block,
            next: 0,
        }
    }

    /// The length of every chain, bucket by bucket (for `repr` and the benchmarks).
    pub fn chain_lengths(&self) -> Vec<usize> {
        let mut lengths = vec![0; self.size()];
        for entry in self.entries() {
            lengths[self.bucket_of(entry.hash)] += 1;
        }
        lengths
    }

    /// Bytes of heap memory the buckets and entries occupy (capacity, not just length).
    pub fn heap_bytes(&self) -> usize {
        self.block.bytes()
    }

    /// A node that chains link to, never a hole.
    fn node(&self, slot: Slot) -> &Node<P> {
        self.block.nodes()[slot]
            .as_ref()
            .expect("chains link stored entries")
    }

    fn node_mut(&mut self, slot: Slot) -> &mut Node<P> {
        self.block.nodes_mut()[slot]
            .as_mut()
            .expect("chains link stored entries")
    }

    /// Before an insert that would pass `max_load`, doubles the table; else, with more holes
    /// than entries, squeezes them out (a pass over the entries and the buckets, after at
    /// least as many removals as there are entries), which keeps the array from growing
    /// without end; else, with the nodes' room used up, makes more. Then works out how many
    /// entries go in before it must look again. Memory refused is an error, with the table
    /// as it was. Out of `insert_new`: it is rare.
    #[cold]
    fn make_room(&mut self) -> Result<(), Refused> {
        let (stored, room) = (self.block.nodes().len(), self.block.room());
        if self.live >= self.fits && self.size() < MAX_SIZE {
            let size = (self.size() * 2).min(MAX_SIZE);
            let fits = fits(size, self.max_load);
            // Room for as many entries as the buckets hold within `max_load` (the next
            // doubling comes before the room runs out, as in a `dict`), and never less than
            // the entries and this one (at most MAX_SIZE: a full table takes no insert).
            let room = fits.max(self.live + 1).min(MAX_SIZE);
            // The memory first: refused, the table has not changed.
            self.block
                .grow_heads(size, Link::END, room.max(self.block.room()))?;
            self.fits = fits;
            self.squeeze_holes();
            self.rechain();
            self.resizes += 1;
        } else if stored - self.live > self.live || (stored == room && room == MAX_SIZE) {
            self.squeeze_holes();
            self.block.heads_mut().fill(Link::END);
            self.rechain();
        } else if stored == room {
            // Twice the room, as a `Vec` grows, and at least as many more bytes as the heads
            // it moves take (`block.rs`).
            let more = room_as_large_as_heads::<P>(self.size());
            let room = (2 * room).max(room + more).max(4);
            self.block.grow_room(room.min(MAX_SIZE))?;
        }
        let before_doubling = if self.size() < MAX_SIZE {
            // At least the entry this is for, even past `max_load`: a table whose buckets
            // fit none (a tiny size and `max_load`) doubles once per insert.
            self.fits.saturating_sub(self.live).max(1)
        } else {
            usize::MAX // it cannot double: the room alone limits it
        };
        let before_room_runs_out = self.block.room() - self.block.nodes().len();
        self.usable = before_doubling.min(before_room_runs_out);
        Ok(())
    }

    /// The last entry of `bucket`'s chain.
    fn last_in_chain(&self, bucket: usize) -> Option<Slot> {
        let mut last = self.first_in_chain(bucket)?;
        while let Some(next) = self.node(last).next.slot() {
            last = next;
        }
        Some(last)
    }

    /// Chains every entry (there are no holes) into the empty buckets.
    fn rechain(&mut self) {
        let size = self.size();
        let (heads, nodes) = self.block.parts_mut();
        // The newest first, each in front of its chain: every chain ends up oldest first.
        for (slot, node) in nodes.iter_mut().enumerate().rev() {
            let node = node.as_mut().expect("no hole left");
            let bucket = bucket_of(node.entry.hash, size);
            node.next = std::mem::replace(&mut heads[bucket], Link::to(slot));
        }
        self.version += 1;
    }

    /// Moves every entry down over the holes before it, keeping their order.
    fn squeeze_holes(&mut self) {
        if self.block.nodes().len() == self.live {
            return; // none (as when a table that only grew doubles)
        }
        let nodes = self.block.nodes_mut();
        let mut kept = 0;
        for slot in 0..nodes.len() {
            if let Some(node) = nodes[slot].take() {
                nodes[kept] = Some(node);
                kept += 1;
            }
        }
        self.block.truncate(kept); // holes only
    }
}

/// The entries of a table that went away, in the order they were added; those not taken
/// go with it.
#[derive(Debug)]
pub struct Taken<P> {
    block: Block<Link, Option<Node<P>>>,
    /// The slot to look at next.
    next: Slot,
}

impl<P> Iterator for Taken<P> {
    type Item = Entry<P>;

    fn next(&mut self) -> Option<Entry<P>> {
        let nodes = self.block.nodes_mut();
        while let Some(node) = nodes.get_mut(self.next) {
            self.next += 1;
            if let Some(node) = node.take() {
                return Some(node.entry);
            }
        }
        None
    }
}

/// How many entries `size` buckets hold within `max_load`: the largest `n` with
/// `n / size <= max_load`, worked out once per size instead of divided on every insert.
fn fits(size: usize, max_load: f64) -> usize {
    let over = |n: usize| n as f64 / size as f64 > max_load;
    let mut n = (size as f64 * max_load) as usize; // close; the loops settle the rounding
    while over(n) {
        n -= 1;
    }
    while !over(n + 1) {
        n += 1;
    }
    n
}

/// Room for as many nodes as take the bytes of `size` heads.
fn room_as_large_as_heads<P>(size: usize) -> usize {
    size * std::mem::size_of::<Link>() / std::mem::size_of::<Option<Node<P>>>()
}

/// The bucket a hash falls into among `size`: `hash mod size`, always in range.
#[inline]
fn bucket_of(hash: isize, size: usize) -> usize {
    if size & (size - 1) == 0 {
        // The same number without a division (tens of cycles): modulo a power of two
        // is the hash's low bits, negative hashes included (two's complement).
        (hash as usize) & (size - 1)
    } else {
        // Sizes stay far below isize::MAX, so the cast back and forth is exact.
        hash.rem_euclid(size as isize) as usize
    }
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
            let (entry, after) = table.chained(slot);
            hashes.push(entry.hash);
            next = after;
        }
        hashes
    }

    #[test]
    fn negative_hashes_land_in_range() {
        let table: Table<*mut u8> = Table::try_new(4, 0.5).unwrap();
        assert_eq!(table.bucket_of(-4), 0);
        assert_eq!(table.bucket_of(-1), 3);
        assert_eq!(table.bucket_of(isize::MIN), 0);
        assert_eq!(table.bucket_of(7), 3);
        // A size that is no power of two divides; one that is masks: the same buckets.
        let odd: Table<*mut u8> = Table::try_new(3, 0.5).unwrap();
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
        let mut table = Table::try_new(4, 0.5).unwrap();
        table.insert_new(entry(0));
        table.insert_new(entry(1));
        assert_eq!((table.size(), table.resizes()), (4, 0));
        table.insert_new(entry(2));
        assert_eq!((table.size(), table.resizes(), table.load()), (8, 1, 3));
    }

    #[test]
    fn fits_is_the_division_made_once() {
        for size in (1..300).chain([1000, 4096, 12345, MAX_SIZE]) {
            for max_load in [1e-9, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.7, 0.75, 0.999, 1.0] {
                let n = fits(size, max_load);
                assert!(n as f64 / size as f64 <= max_load, "{size} {max_load}");
                assert!((n + 1) as f64 / size as f64 > max_load, "{size} {max_load}");
            }
        }
    }

    #[test]
    fn growing_rechains_by_stored_hash() {
        let mut table = Table::try_new(2, 1.0).unwrap();
        for hash in [0, 2, 4] {
            table.insert_new(entry(hash));
        }
        assert_eq!(table.chain_lengths(), vec![2, 0, 1, 0]);
        assert_eq!(chain(&table, 0), vec![0, 4]);
    }

    /// Every chain holds entries of its own bucket, the oldest first, and the chains hold
    /// every entry (and no hole) once.
    fn assert_chains_agree(table: &Table<*mut u8>) {
        let mut chained = 0;
        for bucket in 0..table.size() {
            let mut before = None;
            let mut next = table.block.heads()[bucket];
            while let Some(slot) = next.slot() {
                let node = table.block.nodes()[slot]
                    .as_ref()
                    .expect("no chain links a hole");
                assert!(
                    before < Some(slot),
                    "bucket {bucket}, slot {slot}: oldest first"
                );
                assert_eq!(table.bucket_of(node.entry.hash), bucket);
                before = Some(slot);
                next = node.next;
                chained += 1;
            }
        }
        assert_eq!(chained, table.load());
        assert_eq!(table.block.nodes().iter().flatten().count(), table.load());
        assert!(
            !matches!(table.block.nodes().last(), Some(None)),
            "no hole at the end"
        );
    }

    fn hashes(table: &Table<*mut u8>) -> Vec<isize> {
        table.entries().map(|e| e.hash).collect()
    }

    #[test]
    fn chains_follow_every_insert_remove_and_resize() {
        let mut table = Table::try_new(2, 1.0).unwrap();
        for hash in [0, 2, 4, 6, 1, 3, -2, 8, 10] {
            table.insert_new(entry(hash));
            assert_chains_agree(&table);
        }
        // First, middle and last of a chain, and the last entry itself.
        for slot in [Some(0), Some(3), Some(1), None, Some(4), Some(2)] {
            table.remove(slot.or(table.last()).unwrap());
            assert_chains_agree(&table);
        }
        assert_eq!(table.load(), 3);
        table.insert_new(entry(12));
        assert_chains_agree(&table);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn holes_cost_no_memory() {
        // hash, key, value (8 bytes each) and a 4-byte link: 32 bytes with the padding; a
        // hole is a link no slot has (zero), in the same bytes.
        assert_eq!(size_of::<Node<*mut u8>>(), 32);
        assert_eq!(size_of::<Option<Node<*mut u8>>>(), 32);
    }

    #[test]
    fn removing_leaves_a_hole_and_moves_nothing() {
        let mut table = Table::try_new(4, 1.0).unwrap();
        for hash in [0, 4, 1, 8] {
            table.insert_new(entry(hash));
        }
        assert_eq!(chain(&table, 0), vec![0, 4, 8]);
        // Slot 1 (hash 4, mid-chain) goes; the others keep their slots.
        assert_eq!(table.remove(1).hash, 4);
        assert_eq!(chain(&table, 0), vec![0, 8]);
        assert_eq!(
            (table.load(), table.entry(1), table.entry(3).unwrap().hash),
            (3, None, 8)
        );
        assert_eq!(hashes(&table), vec![0, 1, 8]);
        assert_chains_agree(&table);
        assert_eq!(table.remove(table.last().unwrap()).hash, 8);
        assert_eq!(hashes(&table), vec![0, 1]);
        assert_eq!(table.take_all().len(), 2);
        assert_eq!(
            (table.load(), table.last(), table.first_in_chain(0)),
            (0, None, None)
        );
    }

    #[test]
    fn removing_then_inserting_keeps_the_order_added() {
        let mut table = Table::try_new(8, 1.0).unwrap();
        for hash in [10, 11, 12] {
            table.insert_new(entry(hash));
        }
        table.remove(0);
        table.insert_new(entry(10)); // the same key again: at the end, as in a dict
        assert_eq!(hashes(&table), vec![11, 12, 10]);
        assert_eq!(chain(&table, 10 % 8), vec![10]);
        assert_chains_agree(&table);
    }

    #[test]
    fn iterators_step_over_holes() {
        let mut table = Table::try_new(16, 1.0).unwrap();
        for hash in 0..6 {
            table.insert_new(entry(hash));
        }
        table.remove(0);
        table.remove(2);
        table.remove(3);
        let mut seen = Vec::new();
        let mut cursor = 0;
        while let Some((slot, entry)) = table.next_entry(cursor) {
            seen.push((slot, entry.hash));
            cursor = slot + 1;
        }
        assert_eq!(seen, vec![(1, 1), (4, 4), (5, 5)]);
        assert_eq!(table.next_entry(6), None);
        assert_eq!(table.next_entry(100), None);
        assert_eq!(table.chain_lengths().iter().sum::<usize>(), 3);
    }

    #[test]
    fn holes_at_the_end_go_at_once() {
        let mut table = Table::try_new(16, 1.0).unwrap();
        for hash in 0..4 {
            table.insert_new(entry(hash));
        }
        table.remove(2);
        assert_eq!(table.last(), Some(3));
        table.remove(3); // the hole at 2 is now at the end too
        assert_eq!((table.last(), table.block.nodes().len()), (Some(1), 2));
        // popitem's order: the latest entry first, down to an empty table.
        let popped: Vec<isize> =
            std::iter::from_fn(|| Some(table.remove(table.last()?).hash)).collect();
        assert_eq!(popped, vec![1, 0]);
        assert!(table.block.nodes().is_empty());
    }

    #[test]
    fn growing_squeezes_the_holes_out() {
        let mut table = Table::try_new(4, 1.0).unwrap();
        for hash in 0..4 {
            table.insert_new(entry(hash));
        }
        table.remove(0);
        table.remove(2);
        table.insert_new(entry(4)); // more room for nodes: the holes stay
        assert_eq!((table.block.nodes().len(), table.resizes()), (5, 0));
        table.insert_new(entry(5)); // a fourth entry in 4 buckets: within max_load 1.0
        table.insert_new(entry(6)); // a fifth: the table doubles
        assert_eq!((table.size(), table.resizes()), (8, 1));
        assert_eq!(table.block.nodes().len(), table.load());
        assert_eq!(hashes(&table), vec![1, 3, 4, 5, 6]);
        assert_chains_agree(&table);
    }

    #[test]
    fn a_large_table_has_room_for_as_many_bytes_of_entries_as_its_buckets_take() {
        let mut table = Table::try_new(1024, 0.5).unwrap(); // 4 KiB of heads: room for 128 nodes of 32
        assert_eq!(table.block.room(), 128);
        for hash in 0..128 {
            table.insert_new(entry(hash));
        }
        assert_eq!(table.block.room(), 128);
        table.insert_new(entry(128)); // moving the heads makes as much room again
        assert_eq!(table.block.room(), 256);
        assert_chains_agree(&table);
        let mut small = Table::<*mut u8>::try_new(16, 0.1).unwrap(); // fits 1: no room it cannot fill
        assert_eq!(small.block.room(), 1);
        small.insert_new(entry(0));
        small.insert_new(entry(16)); // the table doubles: room for what 32 buckets fit
        assert_eq!((small.size(), small.block.room()), (32, 3));
        // Where the buckets fit fewer entries than their bytes would hold, holes fill the
        // room before the table doubles: it grows by the heads' bytes at least all the same.
        let mut sparse = Table::try_new(1024, 0.1).unwrap();
        assert_eq!((sparse.fits, sparse.block.room()), (102, 102));
        for hash in 0..102 {
            sparse.insert_new(entry(hash));
        }
        for slot in 0..10 {
            sparse.remove(slot);
        }
        sparse.insert_new(entry(102));
        assert_eq!((sparse.size(), sparse.block.room()), (1024, 102 + 128));
        assert_chains_agree(&sparse);
    }

    #[test]
    fn a_walk_stops_at_the_same_key_or_the_same_hash() {
        let mut table = Table::try_new(4, 1.0).unwrap();
        for hash in [1, 5, 9] {
            table.insert_new(entry(hash)); // one chain: bucket 1 holds all three
        }
        let key = |hash| entry(hash).key;
        let first = table.first_in_chain(1);
        assert_eq!(table.walk(first, 9, key(9)), Walk::Same(2, entry(9)));
        assert_eq!(table.walk(first, 5, fake(99)), Walk::SameHash(1));
        assert_eq!(table.walk(first, 13, key(13)), Walk::End);
        assert_eq!(table.walk(Some(2), 5, key(5)), Walk::End); // from the last: 5 is behind
        assert_eq!(table.walk(table.first_in_chain(0), 0, key(0)), Walk::End);
    }

    #[test]
    fn many_removals_squeeze_the_holes_out_without_growing() {
        let mut table = Table::try_new(1024, 0.5).unwrap();
        for hash in 0..400 {
            table.insert_new(entry(hash));
        }
        for slot in 0..390 {
            table.remove(slot);
        }
        assert_eq!((table.load(), table.block.nodes().len()), (10, 400));
        for hash in 400..2000 {
            table.insert_new(entry(hash));
            let slot = table.last().unwrap();
            table.remove(slot - 1);
            assert!(
                table.block.nodes().len() <= 2 * table.load() + 1,
                "holes stay bounded"
            );
        }
        assert_eq!((table.size(), table.resizes()), (1024, 0));
        assert_eq!(table.load(), 10);
        assert_eq!(hashes(&table).last(), Some(&1999));
        assert_chains_agree(&table);
    }
}
