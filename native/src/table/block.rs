//! One allocation for a table's bucket heads and its nodes, as `dict` keeps its index and its
//! entries in one block (`PyDictKeysObject`).
//!
//! Why not two `Vec`s: they grow apart (the heads when the table doubles, the nodes each
//! time they fill), and their trail of freed blocks is larger than what glibc keeps for the
//! next table. Dropping a table of 10⁵ entries then gave its heap back to the system, and the
//! next table of that size faulted in every page again (`bench`'s `timeit` pattern: 0.4×
//! dict's speed).
//!
//! The nodes come first and the heads after them. The block grows by `realloc`, which glibc
//! does in place where the heap has room after it (a growing table is often the last block
//! of the heap). When the table doubles, the nodes stay where they are and the heads, which
//! the resize rebuilds anyway, are written afresh past the room. More room for nodes moves
//! the heads up past it (a copy of the heads): the table grows the room by at least as many
//! bytes as the heads take, so the copy never costs more than the room it makes. Only
//! `nodes[..len]` is initialised. A block the allocator refuses to grow is left as it was.

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::ptr::NonNull;

pub struct Block<H, N> {
    start: NonNull<u8>,
    heads: usize,
    /// Nodes there is room for.
    room: usize,
    /// Nodes stored (initialised), at the front of the room.
    len: usize,
    /// Where the heads start, within the block (after the room for nodes): kept, not worked
    /// out from `start` on every lookup.
    heads_start: NonNull<H>,
    /// The block owns its heads and nodes (for the drop check).
    owns: PhantomData<(H, N)>,
}

// SAFETY: a block owns its contents as a `Vec` would and shares nothing: it may move to
// another thread, or be read from several, exactly when its heads and nodes may.
unsafe impl<H: Send, N: Send> Send for Block<H, N> {}
// SAFETY: as above; `&Block` only hands out shared references to its contents.
unsafe impl<H: Sync, N: Sync> Sync for Block<H, N> {}

/// The allocator refused a new block of this many bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub bytes: usize,
}

impl<H: Copy, N> Block<H, N> {
    /// A block of `heads` heads, each set to `empty`, and room for `room` nodes; an error
    /// when the allocator refuses (a size asked for is an input: too large must not abort).
    pub fn try_new(heads: usize, empty: H, room: usize) -> Result<Self, Refused> {
        let (layout, heads_at) = layout::<H, N>(heads, room);
        assert!(layout.size() > 0, "a table has at least one bucket");
        // SAFETY: the layout is not zero-sized (checked above).
        let start = NonNull::new(unsafe { alloc::alloc(layout) }).ok_or(Refused {
            bytes: layout.size(),
        })?;
        let mut block = Block {
            start,
            heads,
            room,
            len: 0,
            // SAFETY: `heads_at` is within the block just allocated.
            heads_start: unsafe { start.add(heads_at) }.cast(),
            owns: PhantomData,
        };
        block.set_heads(empty);
        Ok(block)
    }

    pub fn heads(&self) -> &[H] {
        // SAFETY: `heads` initialised heads at `heads_start`, aligned for `H`.
        unsafe { std::slice::from_raw_parts(self.heads_start.as_ptr(), self.heads) }
    }

    pub fn heads_mut(&mut self) -> &mut [H] {
        // SAFETY: as in `heads`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.heads_start.as_ptr(), self.heads) }
    }

    pub fn nodes(&self) -> &[N] {
        // SAFETY: the block starts with `len` initialised nodes, aligned for `N`.
        unsafe { std::slice::from_raw_parts(self.first_node(), self.len) }
    }

    pub fn nodes_mut(&mut self) -> &mut [N] {
        // SAFETY: as in `nodes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.first_node(), self.len) }
    }

    /// The heads and the nodes at once (they never overlap), to relink every chain.
    pub fn parts_mut(&mut self) -> (&mut [H], &mut [N]) {
        // SAFETY: two disjoint, initialised ranges of the block (the nodes first, the heads
        // at `heads_start`, past the room); `&mut self` makes both borrows unique.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.heads_start.as_ptr(), self.heads),
                std::slice::from_raw_parts_mut(self.first_node(), self.len),
            )
        }
    }

    pub fn room(&self) -> usize {
        self.room
    }

    /// Adds a node after the others; the caller has made room for it.
    #[inline(always)]
    pub fn push(&mut self, node: N) {
        assert!(self.len < self.room, "push into a full block");
        // SAFETY: slot `len` is within the room and not initialised yet.
        unsafe { self.first_node().add(self.len).write(node) };
        self.len += 1;
    }

    /// Takes the last node out.
    pub fn pop(&mut self) -> Option<N> {
        self.len = self.len.checked_sub(1)?;
        // SAFETY: slot `len` was initialised, and is no longer counted as such.
        Some(unsafe { self.first_node().add(self.len).read() })
    }

    /// Drops every node from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        // SAFETY: `len` is below `self.len`, within the room.
        let tail = std::ptr::slice_from_raw_parts_mut(
            unsafe { self.first_node().add(len) },
            self.len - len,
        );
        // Forgotten first, so that a panicking drop cannot lead to a second one.
        self.len = len;
        // SAFETY: the tail was initialised and is no longer counted.
        unsafe { tail.drop_in_place() };
    }

    /// Makes room for `room` nodes (more than now), keeping the nodes and the heads: the
    /// heads move up past the new room.
    pub fn grow_room(&mut self, room: usize) -> Result<(), Refused> {
        assert!(room > self.room, "growing makes more room");
        let old_heads_at = self.heads_at();
        self.reallocate(self.heads, room)?;
        // SAFETY: the block now holds the old bytes, heads included, at `old_heads_at`, and
        // room for `heads` heads at the new, higher `heads_start`; `copy` allows the overlap.
        unsafe {
            let old_heads = self.start.add(old_heads_at).cast::<H>();
            std::ptr::copy(old_heads.as_ptr(), self.heads_start.as_ptr(), self.heads);
        }
        Ok(())
    }

    /// Gives the block `heads` heads (more than now), each set to `empty`, and room for
    /// `room` nodes (at least as many as it holds), keeping the nodes where they are.
    pub fn grow_heads(&mut self, heads: usize, empty: H, room: usize) -> Result<(), Refused> {
        assert!(
            heads > self.heads && room >= self.len,
            "growing keeps the nodes"
        );
        self.reallocate(heads, room)?;
        self.set_heads(empty);
        Ok(())
    }

    /// Bytes the block occupies, the room not yet used included.
    pub fn bytes(&self) -> usize {
        layout::<H, N>(self.heads, self.room).0.size()
    }

    /// `realloc`s the block for `heads` heads and room for `room` nodes (its bytes kept, up
    /// to the smaller size), pointing `heads_start` past the new room. No smaller than now.
    /// Refused, the block stays as it was.
    fn reallocate(&mut self, heads: usize, room: usize) -> Result<(), Refused> {
        let (old, _) = layout::<H, N>(self.heads, self.room);
        let (new, heads_at) = layout::<H, N>(heads, room);
        assert!(new.size() >= old.size(), "a block only grows");
        // SAFETY: `start` was allocated with `old`; `new` has the same alignment (that of `H`
        // and `N`) and a size that is not zero; `realloc` keeps the bytes if it moves them.
        let start = unsafe { alloc::realloc(self.start.as_ptr(), old, new.size()) };
        // A null `realloc` leaves the old block where it was, still ours.
        self.start = NonNull::new(start).ok_or(Refused { bytes: new.size() })?;
        // SAFETY: `heads_at` is within the block as it now is.
        self.heads_start = unsafe { self.start.add(heads_at) }.cast();
        (self.heads, self.room) = (heads, room);
        Ok(())
    }

    /// Where the heads start, in bytes from `start`.
    fn heads_at(&self) -> usize {
        layout::<H, N>(self.heads, self.room).1
    }

    fn first_node(&self) -> *mut N {
        self.start.as_ptr().cast()
    }

    /// Writes every head, whatever was there (heads are `Copy`: nothing to drop).
    fn set_heads(&mut self, empty: H) {
        let first = self.heads_start.as_ptr();
        for i in 0..self.heads {
            // SAFETY: head `i` is within the block, aligned for `H`.
            unsafe { first.add(i).write(empty) };
        }
    }
}

impl<H, N> Drop for Block<H, N> {
    fn drop(&mut self) {
        /// Gives the block back even if a node's drop panics, as a `Vec` does.
        struct Dealloc(NonNull<u8>, Layout);
        impl Drop for Dealloc {
            fn drop(&mut self) {
                // SAFETY: the block was allocated (or last reallocated) with this layout.
                unsafe { alloc::dealloc(self.0.as_ptr(), self.1) };
            }
        }
        let _dealloc = Dealloc(self.start, layout::<H, N>(self.heads, self.room).0);
        let nodes = std::ptr::slice_from_raw_parts_mut(self.start.as_ptr().cast::<N>(), self.len);
        // SAFETY: `nodes[..len]` are initialised and dropped once, before the block goes.
        unsafe { nodes.drop_in_place() };
    }
}

/// Room for `room` nodes, then `heads` heads (padded to their alignment): the block's layout,
/// and where the heads start.
fn layout<H, N>(heads: usize, room: usize) -> (Layout, usize) {
    Layout::array::<N>(room)
        .and_then(|nodes| nodes.extend(Layout::array::<H>(heads)?))
        .expect("a table's block fits in the address space")
}

impl<H: std::fmt::Debug + Copy, N: std::fmt::Debug> std::fmt::Debug for Block<H, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("heads", &self.heads())
            .field("nodes", &self.nodes())
            .field("room", &self.room)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn nodes_keep_their_contents_as_the_block_grows() {
        let mut block: Block<u32, u64> = Block::try_new(3, 7, 1).unwrap();
        block.push(10);
        block.heads_mut()[1] = 8;
        assert_eq!((block.heads(), block.nodes()), (&[7, 8, 7][..], &[10][..]));
        block.grow_room(2).unwrap();
        block.push(11);
        assert_eq!(
            (block.heads(), block.nodes()),
            (&[7, 8, 7][..], &[10, 11][..])
        );
        block.grow_heads(5, 6, 3).unwrap();
        block.push(12);
        assert_eq!(block.heads(), &[6; 5]);
        assert_eq!(block.nodes(), &[10, 11, 12]);
        assert_eq!(block.pop(), Some(12));
        let (heads, nodes) = block.parts_mut();
        heads[4] = 9;
        nodes[0] = 13;
        assert_eq!(block.heads(), &[6, 6, 6, 6, 9]);
        assert_eq!(block.nodes(), &[13, 11]);
        // Three nodes of 8 bytes, then five heads of 4.
        assert_eq!((block.room(), block.bytes()), (3, 3 * 8 + 5 * 4));
        block.grow_heads(40, 0, 2).unwrap();
        assert_eq!(
            (block.heads(), block.nodes()),
            (&[0; 40][..], &[13, 11][..])
        );
    }

    #[test]
    #[should_panic(expected = "push into a full block")]
    fn a_full_block_refuses_a_node() {
        let mut block: Block<u32, u64> = Block::try_new(1, 0, 1).unwrap();
        block.push(1);
        block.push(2);
    }

    #[test]
    fn every_node_is_dropped_once() {
        let owner = Rc::new(());
        let mut block: Block<u32, Rc<()>> = Block::try_new(2, 0, 4).unwrap();
        for _ in 0..4 {
            block.push(owner.clone());
        }
        block.truncate(3);
        assert_eq!(Rc::strong_count(&owner), 4);
        drop(block.pop());
        assert_eq!(Rc::strong_count(&owner), 3);
        block.grow_room(8).unwrap();
        block.grow_heads(4, 0, 8).unwrap();
        drop(block);
        assert_eq!(Rc::strong_count(&owner), 1);
    }
}
