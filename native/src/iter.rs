//! The iterator behind `iter(table)`: walks the keys in the order they were added.
//!
//! It owns a reference to its table, so the table outlives the loop, and remembers the
//! table's version so that adding or removing keys mid-loop raises `RuntimeError` (as `dict`
//! does) instead of walking chains that have moved.

use super::pytype::{next_key, version_of};
use super::table::Slot;
use super::{alloc_instance, free_instance};
use pyo3_ffi::compat::*;
use pyo3_ffi::*;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

#[repr(C)]
struct TableIterObject {
    ob_base: PyObject,
    /// The table being walked (owned); NULL once the GC cleared it.
    table: *mut PyObject,
    cursor: Slot,
    version: u64,
}

/// A new iterator over `table`'s keys.
///
/// # Safety
/// `iter_type` must be the module's iterator type and `table` a live HashTable.
pub(super) unsafe fn new(iter_type: *mut PyTypeObject, table: *mut PyObject) -> *mut PyObject {
    // SAFETY: guaranteed by the caller; tp_alloc returns zeroed, GC-tracked memory, and the
    // GC tolerates a NULL `table` until we fill it in.
    unsafe {
        let it = alloc_instance(iter_type) as *mut TableIterObject;
        if it.is_null() {
            return null_mut();
        }
        (*it).table = Py_NewRef(table); // the iterator owns a reference to its table
        (*it).cursor = 0;
        // Read after the allocation, which can run a finalizer that changes the table (before
        // 3.12): the iterator walks the table as it is when `iter()` returns, as dict's does.
        (*it).version = version_of(table);
        it.cast()
    }
}

unsafe extern "C" fn iter_next(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live iterator; its table is NULL or an owned, live HashTable.
    unsafe {
        let it = slf as *mut TableIterObject;
        if (*it).table.is_null() {
            return null_mut(); // exhausted or cleared: StopIteration
        }
        match next_key((*it).table, &mut (*it).cursor, (*it).version) {
            Ok(Some(key)) => key,
            Ok(None) => {
                Py_CLEAR(&raw mut (*it).table); // exhausted: let the table go early
                null_mut()
            }
            Err(_) => null_mut(),
        }
    }
}

// traverse: visit the type and the table this iterator owns.
unsafe extern "C" fn iter_traverse(
    slf: *mut PyObject,
    visit: visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on a live iterator.
    unsafe {
        let result = visit(Py_TYPE(slf).cast(), arg);
        let table = (*(slf as *mut TableIterObject)).table;
        if result != 0 || table.is_null() {
            return result;
        }
        visit(table, arg)
    }
}

// clear: drop the reference to the table (it may be in a cycle with us).
unsafe extern "C" fn iter_clear(slf: *mut PyObject) -> c_int {
    // SAFETY: called by the GC or dealloc on a live iterator.
    unsafe { Py_CLEAR(&raw mut (*(slf as *mut TableIterObject)).table) };
    0
}

// dealloc: untrack, release the table, free the memory, release the type.
unsafe extern "C" fn iter_dealloc(slf: *mut PyObject) {
    // SAFETY: the refcount reached zero; nobody else can reach this iterator.
    unsafe {
        PyObject_GC_UnTrack(slf.cast());
        iter_clear(slf);
        free_instance(slf); // every instance of a heap type owns a reference to its type
    }
}

static mut SLOTS: [PyType_Slot; 6] = [
    PyType_Slot {
        slot: Py_tp_iter,
        pfunc: PyObject_SelfIter as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_iternext,
        pfunc: iter_next as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_traverse,
        pfunc: iter_traverse as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_clear,
        pfunc: iter_clear as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_dealloc,
        pfunc: iter_dealloc as *mut c_void,
    },
    PyType_Slot {
        slot: 0,
        pfunc: null_mut(),
    },
];

static mut SPEC: PyType_Spec = PyType_Spec {
    name: c"hashtable.HashTableIterator".as_ptr(),
    basicsize: size_of::<TableIterObject>() as c_int,
    itemsize: 0,
    flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC) as _,
    slots: &raw mut SLOTS as *mut PyType_Slot,
};

pub(super) fn spec() -> *mut PyType_Spec {
    &raw mut SPEC
}
