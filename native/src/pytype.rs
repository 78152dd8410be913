//! `hashtable.HashTable`: the heap type, a thin and explicit skin over `table::Table`.
//!
//! Ownership rule of this file: the table owns one reference to every key and every value it
//! stores, one to its `hash_func` and, as every instance of a heap type, one to its type
//! (taken by `tp_alloc`, released last in dealloc). Every `Py_INCREF`/`Py_DECREF` says whose
//! reference it takes or releases. Fault sites are marked `// fault-site: NAME`: the `if`
//! branch below the marker is the faulty variant, the `else` branch the correct one, and
//! lessons print both straight from this file.
//!
//! Python code can run in the middle of any operation (`hash_func`, a key's `__eq__`, a
//! value's `__del__`), and that code may change this very table. So no Rust borrow of the
//! table is held across a call into Python, positions are re-read afterwards, and lookups
//! and iterators check `Table::version` to notice that their chain moved.

// The C API's reference counting, written as CPython's headers inline it (`refcount.rs`).
use super::refcount::{Py_CLEAR, Py_DECREF, Py_INCREF, Py_NewRef, Py_XDECREF, Py_XNewRef};
use super::table::{self, Slot, Walk, MAX_SIZE};
use super::{alloc_instance, free_memory, iter, state_of, type_attribute, type_name, Raised};
use crate::{faults, trace};
use pyo3_ffi::compat::*;
use pyo3_ffi::*;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;

/// The chained table of `table/`, storing pointers to Python objects.
type Table = table::Table<*mut PyObject>;
type Entry = table::Entry<*mut PyObject>;

/// The instance layout: the object header first, as every Python object starts.
#[repr(C)]
pub struct HashTableObject {
    ob_base: PyObject,
    /// Called on every key to get its hash (owned).
    hash_func: *mut PyObject,
    table: Table,
    /// `hash_func` is the built-in `hash`, which the fast path calls directly.
    builtin_hash: bool,
    /// Names this table in trace events.
    trace_id: u64,
}

const TYPE_NAME: &str = "HashTable";

// ---------------------------------------------------------------------------------------------
// Helpers: hashing, lookup, insertion, removal. Each returns `Err(Raised)` with an exception set.
// ---------------------------------------------------------------------------------------------

unsafe fn raise(exception: *mut PyObject, message: &CStr) -> Raised {
    // SAFETY: exception classes are live for the interpreter's lifetime.
    unsafe { PyErr_SetString(exception, message.as_ptr()) };
    Raised
}

/// `KeyError(key)`, with the key wrapped in a tuple so tuple keys print right (as `dict` does).
unsafe fn raise_key_error(key: *mut PyObject) -> Raised {
    // SAFETY: `key` is a live borrowed object; PyTuple_Pack takes its own reference to it.
    unsafe {
        let args = PyTuple_Pack(1, key);
        if !args.is_null() {
            PyErr_SetObject(PyExc_KeyError, args);
            Py_DECREF(args); // PyErr_SetObject took its own reference to the tuple
        }
    }
    Raised
}

/// `MemoryError`: the table could not grow to the bytes the allocator refused.
fn raise_cannot_grow(refused: table::Refused) -> Raised {
    // SAFETY: a constant format whose %zu takes the `usize` passed after it.
    unsafe {
        PyErr_Format(
            PyExc_MemoryError,
            c"HashTable could not grow to %zu bytes, which the system refused".as_ptr(),
            refused.bytes,
        );
    }
    Raised
}

/// `TypeError` with the name of `obj`'s type in `message`, at its one `%U`.
unsafe fn raise_type_error_naming(message: &CStr, obj: *mut PyObject) -> Raised {
    // SAFETY: `obj` is a live object borrowed from the caller; every call is checked.
    unsafe {
        let name = type_name(obj); // a new reference, for the message
        if !name.is_null() {
            PyErr_Format(PyExc_TypeError, message.as_ptr(), name);
            Py_DECREF(name); // the message holds what it needs
        }
    }
    Raised
}

/// `TypeError`: `hash_func` returned `result`, which is not an int, for `key`.
unsafe fn raise_not_an_int(result: *mut PyObject, key: *mut PyObject) {
    // SAFETY: both are live objects borrowed from the caller; every call is checked.
    unsafe {
        let name = type_name(result); // a new reference, for the message
        if !name.is_null() {
            PyErr_Format(
                PyExc_TypeError,
                c"hash_func must return an int, but it returned %U for key %R".as_ptr(),
                name,
                key,
            );
            Py_DECREF(name); // the message holds what it needs
        }
    }
}

/// The hash of `key`: `hash_func(key)`, or what the built-in `hash` would return without
/// building a call when `hash_func` is that (every operation starts here).
#[inline(always)]
unsafe fn hash_key(slf: *mut HashTableObject, key: *mut PyObject) -> Result<isize, Raised> {
    // SAFETY: `slf` is a live table and `key` a live borrowed object (GIL held).
    unsafe {
        if !(*slf).builtin_hash {
            return call_hash_func(slf, key);
        }
        let hash = PyObject_Hash(key);
        if hash == -1 && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        Ok(hash)
    }
}

/// Calls `hash_func(key)` and folds the int it returns into a hash, as `hash()` folds the
/// int returned by a `__hash__` method, so negative and huge results are fine.
#[inline(never)]
unsafe fn call_hash_func(slf: *mut HashTableObject, key: *mut PyObject) -> Result<isize, Raised> {
    // SAFETY: `slf` is a live table and `key` a live borrowed object (GIL held).
    unsafe {
        let hash_func = (*slf).hash_func;
        if hash_func.is_null() {
            return Err(raise(
                PyExc_RuntimeError,
                c"this HashTable was cleared by the garbage collector",
            ));
        }
        // (`PyObject_CallOneArg` is not part of the limited API; this is the portable form.)
        let result = PyObject_CallFunctionObjArgs(hash_func, key, null_mut::<PyObject>());
        // `result` is a new reference (ours to release), or NULL with the call's exception set
        // fault-site: hash-error-leak
        if faults::is_on("hash-error-leak") {
            if result.is_null() || PyLong_Check(result) == 0 {
                // Wrong twice: replaces the exception the call raised, and
                // never releases `result` (a new reference) when it is no int.
                return Err(raise(PyExc_TypeError, c"hash_func did not return an int"));
            }
        } else {
            if result.is_null() {
                return Err(Raised); // the call's own exception goes up unchanged
            }
            if PyLong_Check(result) == 0 {
                raise_not_an_int(result, key);
                Py_DECREF(result); // ours, even when it is wrong
                return Err(Raised);
            }
        }
        let hash = PyObject_Hash(result);
        // fault-site: hash-result-leak
        if faults::is_on("hash-result-leak") {
            // Forgotten: the call's result, a new reference, is never released.
        } else {
            Py_DECREF(result); // we have the number we needed; the int object goes
        }
        if hash == -1 && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        Ok(hash)
    }
}

/// Where `key` is stored, and a copy of its entry (borrowed pointers, valid until Python code
/// next runs), if it is. Compares colliding keys with `==`, which runs Python code.
#[inline(always)]
unsafe fn find(
    slf: *mut HashTableObject,
    key: *mut PyObject,
    hash: isize,
) -> Result<Option<(Slot, Entry)>, Raised> {
    // SAFETY: `slf` is a live table; the borrow of it ends before `find_equal` runs Python
    // code, which may change it.
    unsafe {
        let table = &(*slf).table;
        let first = table.first_in_chain(table.bucket_of(hash));
        match table.walk(first, hash, key) {
            Walk::Same(slot, entry) => Ok(Some((slot, entry))),
            Walk::End => Ok(None),
            Walk::SameHash(slot) => find_equal(slf, key, hash, slot),
        }
    }
}

/// [`find`] on from `slot`, whose key has `key`'s hash but is another object: asks `==`,
/// and walks on while it says no. Out of `find`, which then calls nothing but the walk:
/// with a good hash, equal hashes mostly mean the very same key object.
#[inline(never)]
unsafe fn find_equal(
    slf: *mut HashTableObject,
    key: *mut PyObject,
    hash: isize,
    mut slot: Slot,
) -> Result<Option<(Slot, Entry)>, Raised> {
    // SAFETY: `slf` is a live table; entries hold live keys owned by the table; no borrow of
    // the table outlives a statement, so Python code run by `==` may change it freely.
    unsafe {
        loop {
            // Copied: no borrow stays. Should `==` change the keys, keys_equal raises, and
            // `after` goes unused.
            let (&stored, after) = (*slf).table.chained(slot);
            if keys_equal(slf, stored.key, key)? {
                // Read again: `==` may have given the key another value (`t[key] = v` inside
                // `__eq__`), which changes no key, and released the one copied above.
                return Ok(Some((slot, *(*slf).table.chained(slot).0)));
            }
            match (*slf).table.walk(after, hash, key) {
                Walk::Same(same, entry) => return Ok(Some((same, entry))),
                Walk::End => return Ok(None),
                Walk::SameHash(next) => slot = next,
            }
        }
    }
}

/// `stored == key`, for a stored key whose hash matches: runs Python code (`__eq__`), after
/// which the table may have changed. A change to its keys is an error (the chain being
/// walked may be gone); a key given another value is not, so callers read the entry again.
unsafe fn keys_equal(
    slf: *mut HashTableObject,
    stored: *mut PyObject,
    key: *mut PyObject,
) -> Result<bool, Raised> {
    // SAFETY: `slf` is a live table, `stored` a key it owns, `key` a live borrowed object.
    unsafe {
        // The keys as they are before `==` runs.
        let version = (*slf).table.version();
        // Comparing two exact strs or two exact ints runs no Python code, so the
        // table's borrowed key cannot go away meanwhile; any other `==` might.
        let runs_python = !(PyUnicode_CheckExact(stored) != 0 && PyUnicode_CheckExact(key) != 0
            || PyLong_CheckExact(stored) != 0 && PyLong_CheckExact(key) != 0);
        if runs_python {
            Py_INCREF(stored); // keep the stored key alive while its __eq__ runs
        }
        let equal = PyObject_RichCompareBool(stored, key, Py_EQ);
        if runs_python {
            Py_DECREF(stored); // done comparing: release our temporary reference
        }
        if equal < 0 {
            return Err(Raised);
        }
        if (*slf).table.version() != version {
            return Err(raise(
                PyExc_RuntimeError,
                c"HashTable changed size while comparing keys",
            ));
        }
        Ok(equal == 1)
    }
}

/// `table[key] = value`.
unsafe fn insert(
    slf: *mut HashTableObject,
    key: *mut PyObject,
    value: *mut PyObject,
) -> Result<(), Raised> {
    // SAFETY: `slf` is a live table, `key` and `value` live borrowed objects.
    unsafe {
        Py_INCREF(value); // the reference the table will own once the value is stored
        let hash = match hash_key(slf, key) {
            Ok(hash) => hash,
            Err(raised) => {
                // fault-site: error-path-leak
                if faults::is_on("error-path-leak") {
                    // Forgotten: the reference taken for the value is kept on the error path.
                } else {
                    Py_DECREF(value); // not stored after all: give the reference back
                }
                return Err(raised);
            }
        };
        store(slf, key, hash, value)
    }
}

/// Files `value` under `key`, whose hash is known; takes over the reference to `value` the
/// caller took for the table, in every case (stored, or released on failure).
#[inline(always)]
unsafe fn store(
    slf: *mut HashTableObject,
    key: *mut PyObject,
    hash: isize,
    value: *mut PyObject,
) -> Result<(), Raised> {
    // SAFETY: `slf` is a live table, `key` a live borrowed object, `value` a live object
    // the caller holds a reference to for us.
    unsafe {
        let found = match find(slf, key, hash) {
            Ok(found) => found,
            Err(raised) => {
                Py_DECREF(value); // not stored after all: give the reference back
                return Err(raised);
            }
        };
        match found {
            Some((slot, _)) => {
                // The reference taken above now belongs to the table, in place of the old one.
                let old = (*slf).table.replace_value(slot, value);
                Py_DECREF(old); // the table's reference to the old value is released last,
                                // because its __del__ may run Python code
            }
            None if (*slf).table.is_full() => {
                Py_DECREF(value); // not stored after all: give the reference back
                return Err(raise(PyExc_OverflowError, c"HashTable is full"));
            }
            None => {
                if let Err(refused) = (*slf).table.reserve_one() {
                    Py_DECREF(value); // not stored after all: give the reference back
                    return Err(raise_cannot_grow(refused));
                }
                // fault-site: set-missing-key-incref
                if faults::is_on("set-missing-key-incref") {
                    // Forgotten: the key is stored without a reference of the table's own.
                } else {
                    Py_INCREF(key); // the table owns a reference to each key it stores
                }
                (*slf).table.insert_new(Entry { hash, key, value });
            }
        }
        Ok(())
    }
}

/// Looks `key` up: a *borrowed* reference to its value (the table keeps owning it), valid
/// until Python code next runs, or `None` when absent.
#[inline(always)]
unsafe fn lookup(
    slf: *mut HashTableObject,
    key: *mut PyObject,
) -> Result<Option<*mut PyObject>, Raised> {
    // SAFETY: `slf` is a live table; a found slot holds a live value owned by the table.
    unsafe {
        let hash = hash_key(slf, key)?;
        Ok(find(slf, key, hash)?.map(|(_, entry)| entry.value))
    }
}

/// Unlinks `key`; hands the table's reference to its value to the caller.
#[inline(always)]
unsafe fn remove(
    slf: *mut HashTableObject,
    key: *mut PyObject,
) -> Result<Option<*mut PyObject>, Raised> {
    // SAFETY: `slf` is a live table; the removed entry's references were owned by it.
    unsafe {
        let hash = hash_key(slf, key)?;
        let Some((slot, _)) = find(slf, key, hash)? else {
            return Ok(None);
        };
        let entry = (*slf).table.remove(slot);
        Py_DECREF(entry.key); // the table's reference to the key is released
                              // fault-site: remove-double-decref
        if faults::is_on("remove-double-decref") {
            Py_DECREF(entry.value); // Wrong: this reference goes to the caller below.
        } else {
            // Nothing to release: the table's reference moves to the caller.
        }
        Ok(Some(entry.value))
    }
}

/// Releases the table's references to entries already unlinked from it.
unsafe fn release(entries: impl IntoIterator<Item = Entry>) {
    for entry in entries {
        // SAFETY: each entry was unlinked from a table that owned both references.
        unsafe {
            Py_DECREF(entry.key); // the table's reference to the key
            Py_DECREF(entry.value); // the table's reference to the value
        }
    }
}

/// Is `obj` a HashTable (or a subclass)?
unsafe fn is_table(slf: *mut HashTableObject, obj: *mut PyObject) -> bool {
    // SAFETY: both are live objects; the state's type is owned by the module.
    unsafe {
        let table_type = (*state_of(Py_TYPE(slf.cast()))).table_type;
        PyObject_TypeCheck(obj, table_type as *mut PyTypeObject) != 0
    }
}

/// The trace id of `obj` if it is a HashTable of any instance of this module, or of a
/// subclass: `lab` names by it the tables still referred to at exit.
///
/// # Safety
/// `obj` must be a live object; the GIL must be held.
pub(crate) unsafe fn trace_id_of(obj: *mut PyObject) -> Option<u64> {
    // SAFETY: a live object's type and its bases are live; a type whose dealloc is ours lays
    // its instances out as `HashTableObject`.
    unsafe {
        let mut base = Py_TYPE(obj);
        while !base.is_null() {
            if PyType_GetSlot(base, Py_tp_dealloc) == table_dealloc as *mut c_void {
                return Some((*obj.cast::<HashTableObject>()).trace_id);
            }
            base = PyType_GetSlot(base, Py_tp_base).cast();
        }
        None
    }
}

fn new_size_object(n: usize) -> *mut PyObject {
    // SAFETY: creating an int has no preconditions beyond holding the GIL.
    unsafe { PyLong_FromSize_t(n) }
}

/// Converts a helper's result into the C convention: a new reference, or NULL with an error.
fn into_ptr(result: Result<*mut PyObject, Raised>) -> *mut PyObject {
    result.unwrap_or(null_mut())
}

/// Converts a helper's result into the C convention: 0, or -1 with an error.
fn into_status(result: Result<(), Raised>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(Raised) => -1,
    }
}

// ---------------------------------------------------------------------------------------------
// Construction and the GC lifecycle.
// ---------------------------------------------------------------------------------------------

/// `HashTable(size=4, max_load=0.5, hash_func=hash)`.
unsafe extern "C" fn table_new(
    subtype: *mut PyTypeObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    static mut KEYWORDS: [*const c_char; 4] = [
        c"size".as_ptr(),
        c"max_load".as_ptr(),
        c"hash_func".as_ptr(),
        std::ptr::null(),
    ];
    let mut size: Py_ssize_t = 4;
    let mut max_load: f64 = 0.5;
    let mut hash_func: *mut PyObject = null_mut();
    // SAFETY: the format string matches the three out-pointers; KEYWORDS ends in NULL and is
    // never written.
    unsafe {
        if PyArg_ParseTupleAndKeywords(
            args,
            kwargs,
            c"|ndO:HashTable".as_ptr(),
            (&raw mut KEYWORDS).cast(),
            &mut size,
            &mut max_load,
            &mut hash_func,
        ) == 0
        {
            return null_mut();
        }
        if size <= 0 || size as usize > MAX_SIZE {
            PyErr_Format(
                PyExc_ValueError,
                c"size must be a positive number of buckets, at most %zd, got %zd".as_ptr(),
                MAX_SIZE as Py_ssize_t,
                size,
            );
            return null_mut();
        }
        if !(max_load > 0.0 && max_load <= 1.0) {
            let message = format!("max_load must be in (0, 1], got {max_load}\0");
            PyErr_SetString(PyExc_ValueError, message.as_ptr().cast());
            return null_mut();
        }
        let state = state_of(subtype);
        let builtins = PyEval_GetBuiltins(); // borrowed: the running frame owns its builtins
        let builtin_hash = PyDict_GetItemWithError(builtins, (*state).hash_name); // borrowed
        if builtin_hash.is_null() {
            if PyErr_Occurred().is_null() {
                raise(PyExc_RuntimeError, c"the builtins namespace has no hash");
            }
            return null_mut();
        }
        if hash_func.is_null() {
            hash_func = builtin_hash; // the default, borrowed until the table takes its own
                                      // fault-site: releases-borrowed-builtins
            if faults::is_on("releases-borrowed-builtins") {
                Py_DECREF(builtins); // wrong: lent by PyEval_GetBuiltins
            } else {
                // Nothing to release: `builtins` and `hash` are both borrowed.
            }
        }
        let is_builtin_hash = hash_func == builtin_hash;
        if PyCallable_Check(hash_func) == 0 {
            raise_type_error_naming(c"hash_func must be callable, got %U", hash_func);
            return null_mut();
        }
        let table = match Table::try_new(size as usize, max_load) {
            Ok(table) => table,
            Err(refused) => {
                PyErr_Format(
                    PyExc_MemoryError,
                    c"HashTable(size=%zd) needs %zu bytes, which the system refused".as_ptr(),
                    size,
                    refused.bytes,
                );
                return null_mut();
            }
        };
        let slf = alloc_instance(subtype) as *mut HashTableObject;
        if slf.is_null() {
            return null_mut();
        }
        // The memory is zeroed, which is not a valid `Table`: write one before anything can
        // run the GC and look inside.
        std::ptr::write(&raw mut (*slf).table, table);
        Py_INCREF(hash_func); // the table owns a reference to its hash function
        (*slf).hash_func = hash_func;
        (*slf).builtin_hash = is_builtin_hash;
        (*state).next_trace_id += 1;
        (*slf).trace_id = (*state).next_trace_id;
        trace::alloc(TYPE_NAME, (*slf).trace_id);
        slf.cast()
    }
}

// traverse: visit every reference this object owns, so the GC can find cycles through it.
unsafe extern "C" fn table_traverse(
    slf: *mut PyObject,
    visit: visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on a live, initialised table; traverse must not run Python code.
    unsafe {
        let slf = slf as *mut HashTableObject;
        // fault-site: no-traverse
        if faults::is_on("no-traverse") {
            // Forgotten: hash_func, keys and values are never shown to the GC.
            visit(Py_TYPE(slf.cast()).cast(), arg)
        } else {
            // Py_VISIT every reference the table owns: type, hash_func, keys, values.
            let owned = [Py_TYPE(slf.cast()).cast(), (*slf).hash_func];
            let stored = (*slf).table.entries().flat_map(|e| [e.key, e.value]);
            for object in owned.into_iter().chain(stored) {
                if !object.is_null() {
                    let result = visit(object, arg);
                    if result != 0 {
                        return result;
                    }
                }
            }
            0
        }
    }
}

// clear: drop every reference that could be part of a cycle; the object stays usable (empty).
unsafe extern "C" fn table_clear(slf: *mut PyObject) -> c_int {
    // SAFETY: called by the GC (or dealloc) on a live table.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let entries = (*slf).table.take_all();
        release(entries);
        (*slf).builtin_hash = false; // no hash function to call any more: hash_key says so
        Py_CLEAR(&raw mut (*slf).hash_func); // the table's reference to its hash function
        0
    }
}

// dealloc: untrack from the GC, release owned references, free the memory, release the type
// (every instance of a heap type owns a reference to its type: lesson 21).
unsafe extern "C" fn table_dealloc(slf: *mut PyObject) {
    // SAFETY: the refcount reached zero; nobody else can reach this object any more.
    unsafe {
        let table = slf as *mut HashTableObject;
        PyObject_GC_UnTrack(slf.cast());
        trace::free(TYPE_NAME, (*table).trace_id);
        // Moved out, with the memory it holds: nobody can reach this table any more, so it
        // need not stay usable, and its entries are released without collecting them first.
        release(std::ptr::read(&raw const (*table).table).into_entries());
        // fault-site: dealloc-missing-decref
        if faults::is_on("dealloc-missing-decref") {
            // Forgotten: the table's reference to hash_func is never released.
            (*table).hash_func = null_mut();
        } else {
            Py_CLEAR(&raw mut (*table).hash_func); // the table's own reference
        }
        let tp = Py_TYPE(slf); // read while the object still exists
        free_memory(slf);
        // fault-site: forgets-type-reference
        if faults::is_on("forgets-type-reference") {
            // Forgotten: the table's reference to its type is never released.
        } else {
            Py_DECREF(tp.cast()); // the table's reference to its type, released last
        }
    }
}

// ---------------------------------------------------------------------------------------------
// repr, comparison, the mapping protocol and iteration.
// ---------------------------------------------------------------------------------------------

/// One line per bucket: `[]` followed by one `*` per entry chained there.
unsafe extern "C" fn table_repr(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table; the string is built in Rust and copied by Python.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let lines: Vec<String> = (*slf)
            .table
            .chain_lengths()
            .into_iter()
            .map(|length| format!("[]{}", "*".repeat(length)))
            .collect();
        let text = lines.join("\n");
        PyUnicode_FromStringAndSize(text.as_ptr().cast(), text.len() as Py_ssize_t)
    }
}

/// Does `other` map `key` to a value equal to `value`? 1 yes, 0 no, -1 with an exception set.
/// The lookup and the comparison both run Python code: `key`'s `__hash__`, the `__eq__` of
/// the keys it is compared with, `value`'s `__eq__`, a dict subclass's `__getitem__`.
unsafe fn maps_to_equal(other: *mut PyObject, key: *mut PyObject, value: *mut PyObject) -> c_int {
    // SAFETY: the three are live objects the caller keeps alive for the length of this call.
    unsafe {
        let theirs = PyObject_GetItem(other, key); // new reference, or NULL
        if theirs.is_null() {
            if PyErr_ExceptionMatches(PyExc_KeyError) != 0 {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        let equal = PyObject_RichCompareBool(value, theirs, Py_EQ);
        Py_DECREF(theirs); // the looked-up value was ours to release
        equal
    }
}

/// Do `slf` and the mapping `other` hold equal values under equal keys?
unsafe fn equal_to(slf: *mut HashTableObject, other: *mut PyObject) -> Result<bool, Raised> {
    // SAFETY: `slf` and `other` are live; entries are re-read after every call into Python.
    unsafe {
        let other_len = PyObject_Size(other);
        if other_len < 0 {
            return Err(Raised);
        }
        if other_len as usize != (*slf).table.load() {
            return Ok(false);
        }
        let version = (*slf).table.version();
        let mut cursor = 0;
        // A copy of each entry: no borrow of the table lives into the loop's body.
        while let Some((slot, entry)) = (*slf).table.next_entry(cursor).map(|(s, &e)| (s, e)) {
            cursor = slot + 1;
            // `entry` holds borrowed pointers: the table owns the key and the value, and
            // the comparison runs Python code that may empty the table (lesson 20).
            let verdict;
            // fault-site: compare-keeps-borrowed-entry
            if faults::is_on("compare-keeps-borrowed-entry") {
                // Thin ice: still borrowed while Python code runs, which may free them.
                verdict = maps_to_equal(other, entry.key, entry.value);
            } else {
                Py_INCREF(entry.key); // references of our own: whatever Python code does
                Py_INCREF(entry.value); // to the table, these two live until we are done
                verdict = maps_to_equal(other, entry.key, entry.value);
                Py_DECREF(entry.key); // done with them: release the references taken above
                Py_DECREF(entry.value);
            }
            if verdict < 0 {
                return Err(Raised);
            }
            if (*slf).table.version() != version {
                return Err(raise(
                    PyExc_RuntimeError,
                    c"HashTable changed size during comparison",
                ));
            }
            if verdict == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `==` and `!=` against another HashTable or a dict.
unsafe extern "C" fn table_richcompare(
    slf: *mut PyObject,
    other: *mut PyObject,
    op: c_int,
) -> *mut PyObject {
    // SAFETY: both are live objects; results are new references.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let comparable = is_table(slf, other) || PyDict_Check(other) != 0;
        if !comparable || (op != Py_EQ && op != Py_NE) {
            return Py_NewRef(Py_NotImplemented()); // a new reference, as every return value
        }
        match equal_to(slf, other) {
            Ok(equal) => PyBool_FromLong(c_int::from(equal == (op == Py_EQ)).into()),
            Err(Raised) => null_mut(),
        }
    }
}

unsafe extern "C" fn table_length(slf: *mut PyObject) -> Py_ssize_t {
    // SAFETY: `slf` is a live table.
    unsafe { (*(slf as *mut HashTableObject)).table.load() as Py_ssize_t }
}

/// `table[key]`.
unsafe extern "C" fn table_subscript(slf: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table and `key` a live borrowed object.
    unsafe {
        match lookup(slf.cast(), key) {
            Ok(Some(value)) => Py_NewRef(value), // the caller gets its own reference
            Ok(None) => into_ptr(Err(raise_key_error(key))),
            Err(Raised) => null_mut(),
        }
    }
}

/// `table[key] = value`, and `del table[key]` when `value` is NULL.
unsafe extern "C" fn table_ass_subscript(
    slf: *mut PyObject,
    key: *mut PyObject,
    value: *mut PyObject,
) -> c_int {
    // SAFETY: `slf` is a live table; `key` and `value` (if not NULL) are live borrowed objects.
    unsafe {
        let slf = slf as *mut HashTableObject;
        if !value.is_null() {
            return into_status(insert(slf, key, value));
        }
        into_status(delete(slf, key))
    }
}

/// `del table[key]`: a function of its own, which keeps `table[key] = value` short.
#[inline(never)]
unsafe fn delete(slf: *mut HashTableObject, key: *mut PyObject) -> Result<(), Raised> {
    // SAFETY: `slf` is a live table and `key` a live borrowed object.
    unsafe {
        match remove(slf, key)? {
            Some(removed) => {
                Py_DECREF(removed); // `del` discards the value: release the reference we got
                Ok(())
            }
            None => Err(raise_key_error(key)),
        }
    }
}

/// `key in table`.
unsafe extern "C" fn table_contains(slf: *mut PyObject, key: *mut PyObject) -> c_int {
    // SAFETY: `slf` is a live table and `key` a live borrowed object.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let found = hash_key(slf, key).and_then(|hash| find(slf, key, hash));
        match found {
            Ok(found) => c_int::from(found.is_some()),
            Err(Raised) => -1,
        }
    }
}

/// `iter(table)`: an iterator over the keys.
unsafe extern "C" fn table_iter(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table; the iterator type lives in the module state.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let iter_type = (*state_of(Py_TYPE(slf.cast()))).iter_type;
        iter::new(iter_type.cast(), slf.cast())
    }
}

/// The table's version (what a change of keys moves on), for the iterator.
///
/// # Safety
/// `slf` must be a live HashTable.
pub(super) unsafe fn version_of(slf: *mut PyObject) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { (*(slf as *mut HashTableObject)).table.version() }
}

/// The next stored key at or after `cursor`, for the iterator; fails if the table changed.
///
/// # Safety
/// `slf` must be a live HashTable.
pub(super) unsafe fn next_key(
    slf: *mut PyObject,
    cursor: &mut Slot,
    version: u64,
) -> Result<Option<*mut PyObject>, Raised> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let table = &(*(slf as *mut HashTableObject)).table;
        if table.version() != version {
            return Err(raise(
                PyExc_RuntimeError,
                c"HashTable changed size during iteration",
            ));
        }
        let Some((slot, entry)) = table.next_entry(*cursor) else {
            return Ok(None);
        };
        *cursor = slot + 1;
        Ok(Some(Py_NewRef(entry.key))) // the caller gets its own reference to the key
    }
}

// ---------------------------------------------------------------------------------------------
// Methods.
// ---------------------------------------------------------------------------------------------

/// The positional arguments of a `METH_FASTCALL` call, between `min` and `max` of them (at
/// most two): borrowed references from the caller, NULL where not given; else a TypeError.
///
/// # Safety
/// `args` must point at `nargs` live objects, as CPython passes them.
#[inline(always)]
unsafe fn arguments(
    name: &str,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    min: Py_ssize_t,
    max: Py_ssize_t,
) -> Result<[*mut PyObject; 2], Raised> {
    if nargs < min || nargs > max {
        return Err(wrong_number_of_arguments(name, nargs, min, max));
    }
    // SAFETY: `args[..nargs]` are live (guaranteed by the caller), and nargs <= max <= 2.
    let argument = |i: Py_ssize_t| unsafe {
        if i < nargs {
            *args.offset(i)
        } else {
            null_mut()
        }
    };
    Ok([argument(0), argument(1)])
}

/// The TypeError for a call with a number of arguments outside `min..=max`.
#[cold]
fn wrong_number_of_arguments(
    name: &str,
    nargs: Py_ssize_t,
    min: Py_ssize_t,
    max: Py_ssize_t,
) -> Raised {
    let expected = if min == max {
        format!("exactly {min}")
    } else {
        format!("from {min} to {max}")
    };
    let message = format!("{name}() takes {expected} arguments ({nargs} given)\0");
    // SAFETY: exception classes live as long as the interpreter; the message ends in NUL.
    unsafe { PyErr_SetString(PyExc_TypeError, message.as_ptr().cast()) };
    Raised
}

/// `set(key, value)`: stores the pair and returns the table itself, so calls can be chained.
unsafe extern "C" fn table_set(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table; CPython passes `nargs` live arguments.
    unsafe {
        let Ok([key, value]) = arguments("set", args, nargs, 2, 2) else {
            return null_mut();
        };
        if insert(slf.cast(), key, value).is_err() {
            return null_mut();
        }
        // fault-site: set-missing-incref
        if faults::is_on("set-missing-incref") {
            slf // Forgotten: the caller will release a reference nobody gave it.
        } else {
            Py_INCREF(slf); // the caller owns the reference we return
            slf
        }
    }
}

/// `get(key, default=None)`.
unsafe extern "C" fn table_get(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table; CPython passes `nargs` live arguments.
    unsafe {
        let Ok([key, default]) = arguments("get", args, nargs, 1, 2) else {
            return null_mut();
        };
        match lookup(slf.cast(), key) {
            Ok(Some(value)) => {
                // fault-site: get-borrowed-return
                if faults::is_on("get-borrowed-return") {
                    value // Forgotten: the table's own reference, handed out as if it were new.
                } else {
                    Py_INCREF(value); // the caller owns the reference we return
                    value
                }
            }
            Ok(None) if default.is_null() => Py_NewRef(Py_None()), // a new reference to None
            Ok(None) => Py_NewRef(default), // the caller gets its own reference to the default
            Err(Raised) => null_mut(),
        }
    }
}

/// `pop(key[, default])`: removes `key` and returns its value.
unsafe extern "C" fn table_pop(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table; CPython passes `nargs` live arguments.
    unsafe {
        let Ok([key, default]) = arguments("pop", args, nargs, 1, 2) else {
            return null_mut();
        };
        match remove(slf.cast(), key) {
            Ok(Some(value)) => value, // the table's reference now belongs to the caller
            Ok(None) if default.is_null() => into_ptr(Err(raise_key_error(key))),
            Ok(None) => Py_NewRef(default), // the caller gets its own reference to the default
            Err(Raised) => null_mut(),
        }
    }
}

/// `setdefault(key, default=None)`: the value of `key`, storing `default` first if absent.
unsafe extern "C" fn table_setdefault(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table; CPython passes `nargs` live arguments.
    unsafe {
        let Ok([key, default]) = arguments("setdefault", args, nargs, 1, 2) else {
            return null_mut();
        };
        let default = if default.is_null() {
            Py_None()
        } else {
            default
        };
        match lookup(slf.cast(), key) {
            Ok(Some(value)) => Py_NewRef(value), // the caller gets its own reference
            Ok(None) => match insert(slf.cast(), key, default) {
                Ok(()) => Py_NewRef(default), // the caller gets its own reference
                Err(Raised) => null_mut(),
            },
            Err(Raised) => null_mut(),
        }
    }
}

/// `popitem()`: removes and returns some `(key, value)` pair.
unsafe extern "C" fn table_popitem(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table; the removed entry's references were the table's.
    unsafe {
        let slf = slf as *mut HashTableObject;
        let Some(slot) = (*slf).table.last() else {
            return into_ptr(Err(raise(PyExc_KeyError, c"popitem(): HashTable is empty")));
        };
        let entry = (*slf).table.remove(slot);
        let pair = PyTuple_New(2);
        if pair.is_null() {
            release([entry]);
            return null_mut();
        }
        PyTuple_SetItem(pair, 0, entry.key); // steals the table's reference to the key
        PyTuple_SetItem(pair, 1, entry.value); // steals the table's reference to the value
        pair
    }
}

/// `clear()`: removes every entry.
unsafe extern "C" fn table_clear_method(
    slf: *mut PyObject,
    _unused: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table; entries are unlinked before any reference is released.
    unsafe {
        release((*(slf as *mut HashTableObject)).table.take_all());
        // fault-site: clear-returns-borrowed-none
        if faults::is_on("clear-returns-borrowed-none") {
            Py_None() // Forgotten: no reference for None (no Py_RETURN_NONE).
        } else {
            Py_NewRef(Py_None()) // a new reference to None, as Py_RETURN_NONE makes
        }
    }
}

/// `copy()`: a new table of the same type, size, max_load and hash_func, same pairs.
unsafe extern "C" fn table_copy(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table; `copy` is a new reference released on failure.
    unsafe {
        let source = slf as *mut HashTableObject;
        let hash_func = if (*source).hash_func.is_null() {
            Py_None() // cleared by the GC: let the constructor pick the default
        } else {
            (*source).hash_func
        };
        let copy = PyObject_CallFunction(
            Py_TYPE(slf).cast(),
            c"ndO".as_ptr(),
            (*source).table.size() as Py_ssize_t,
            (*source).table.max_load(),
            hash_func,
        ); // a new reference: ours until we return it
        if copy.is_null() {
            return null_mut();
        }
        // A subclass's constructor may make anything: only a HashTable has its layout.
        if !is_table(source, copy) {
            raise_type_error_naming(c"copy() needs the type to make a HashTable, not %U", copy);
            Py_DECREF(copy); // not ours to fill
            return null_mut();
        }
        match update_from_mapping(copy.cast(), slf) {
            Ok(()) => copy, // handed to the caller
            Err(Raised) => {
                Py_DECREF(copy); // failed half-way: the half-built copy goes
                null_mut()
            }
        }
    }
}

/// `HashTable.fromkeys(iterable, value=None)`: a new table mapping every key to `value`.
unsafe extern "C" fn table_fromkeys(cls: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    let mut keys: *mut PyObject = null_mut();
    let mut value: *mut PyObject = null_mut();
    // SAFETY: `cls` is HashTable or a subclass; new references are released on every path.
    unsafe {
        if PyArg_UnpackTuple(args, c"fromkeys".as_ptr(), 1, 2, &mut keys, &mut value) == 0 {
            return null_mut();
        }
        let value = if value.is_null() { Py_None() } else { value };
        let table = PyObject_CallNoArgs(cls); // a new reference: ours until we return it
        if table.is_null() {
            return null_mut();
        }
        let iterator = PyObject_GetIter(keys); // new reference
        let mut ok = !iterator.is_null();
        while ok {
            let key = PyIter_Next(iterator); // new reference, or NULL at the end or on error
            if key.is_null() {
                ok = PyErr_Occurred().is_null();
                break;
            }
            ok = PyObject_SetItem(table, key, value) == 0; // goes through subclass overrides
            Py_DECREF(key); // the table took its own reference
        }
        Py_XDECREF(iterator); // done iterating
        if !ok {
            Py_DECREF(table); // failed half-way: the half-built table goes
            return null_mut();
        }
        table
    }
}

/// `__sizeof__()`: the object and the memory its table allocated (not the keys and values).
unsafe extern "C" fn table_sizeof(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    unsafe {
        // The instance size of this object's type (a subclass's is larger); the limited API
        // has no `tp_basicsize` field to read, but the type tells it as `__basicsize__`.
        let basicsize = type_attribute(Py_TYPE(slf).cast(), c"__basicsize__");
        if basicsize.is_null() {
            return null_mut();
        }
        let object_bytes = PyLong_AsSsize_t(basicsize);
        Py_DECREF(basicsize); // only its value was needed
        if object_bytes < 0 {
            return null_mut();
        }
        let table = &(*(slf as *mut HashTableObject)).table;
        new_size_object(object_bytes as usize + table.heap_bytes())
    }
}

/// `chain_lengths()`: a new list with the number of entries in each bucket, in order.
unsafe extern "C" fn table_chain_lengths(
    slf: *mut PyObject,
    _unused: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: `slf` is a live table. The lengths are counted before `PyList_New`, which
    // can start the collector (before 3.12), whose finalizers may change the table; filling
    // the list runs no Python code (ints are not tracked by the collector).
    unsafe {
        let lengths = (*(slf as *mut HashTableObject)).table.chain_lengths();
        let list = PyList_New(lengths.len() as Py_ssize_t); // a new reference, handed back
        if list.is_null() {
            return null_mut();
        }
        for (i, length) in lengths.into_iter().enumerate() {
            let item = new_size_object(length);
            if item.is_null() {
                Py_DECREF(list); // releases the lengths already in it, then the list
                return null_mut();
            }
            PyList_SetItem(list, i as Py_ssize_t, item); // steals our new reference
        }
        list
    }
}

/// Which part of each entry `keys`/`values`/`items` collect.
#[derive(Clone, Copy)]
enum Part {
    Key,
    Value,
    Item,
}

/// Fills `pair`, a new tuple of two empty slots, with the entry's key and value.
unsafe fn fill_pair(pair: *mut PyObject, entry: &Entry) {
    // SAFETY: the entry's key and value are live objects owned by the table; `pair` is new
    // and empty, so setting its items releases nothing.
    unsafe {
        // PyTuple_SetItem *steals* a reference: it must be given one that is ours to give.
        // fault-site: items-steals-borrowed
        if faults::is_on("items-steals-borrowed") {
            PyTuple_SetItem(pair, 0, entry.key); // Wrong: the table's references.
            PyTuple_SetItem(pair, 1, entry.value);
        } else {
            PyTuple_SetItem(pair, 0, Py_NewRef(entry.key)); // the tuple's own
            PyTuple_SetItem(pair, 1, Py_NewRef(entry.value)); // to steal, for each item
        }
    }
}

/// A new list of the keys, values or `(key, value)` tuples, in the order they were added.
unsafe fn collect(slf: *mut PyObject, part: Part) -> *mut PyObject {
    // SAFETY: `slf` is a live table. Everything that allocates comes first, as in
    // `dict.items()`: an allocation can start the collector, whose finalizers may change
    // this table. When one did, the list goes and the count starts again.
    unsafe {
        let slf = slf as *mut HashTableObject;
        loop {
            let (count, version) = ((*slf).table.load(), (*slf).table.version());
            let list = PyList_New(count as Py_ssize_t); // a new reference, handed back
            if list.is_null() {
                return null_mut();
            }
            if let Part::Item = part {
                for i in 0..count as Py_ssize_t {
                    let pair = PyTuple_New(2);
                    if pair.is_null() {
                        Py_DECREF(list); // releases the pairs already in it, then the list
                        return null_mut();
                    }
                    PyList_SetItem(list, i, pair); // steals our reference to pair
                }
            }
            if (*slf).table.version() != version {
                Py_DECREF(list);
                continue;
            }
            // From here on nothing allocates or runs Python code.
            for (i, entry) in (*slf).table.entries().enumerate() {
                let i = i as Py_ssize_t;
                // The list steals the new reference to each key or value: its own.
                match part {
                    Part::Key => _ = PyList_SetItem(list, i, Py_NewRef(entry.key)),
                    Part::Value => _ = PyList_SetItem(list, i, Py_NewRef(entry.value)),
                    Part::Item => fill_pair(PyList_GetItem(list, i), entry), // a pair it holds
                }
            }
            return list;
        }
    }
}

unsafe extern "C" fn table_keys(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    unsafe { collect(slf, Part::Key) }
}

unsafe extern "C" fn table_values(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    unsafe { collect(slf, Part::Value) }
}

unsafe extern "C" fn table_items(slf: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    unsafe { collect(slf, Part::Item) }
}

/// Stores every `(key, value)` that `iterable` yields as a pair.
unsafe fn update_from_pairs(
    slf: *mut HashTableObject,
    iterable: *mut PyObject,
) -> Result<(), Raised> {
    // SAFETY: `slf` is a live table, `iterable` a live borrowed object; new references are
    // released on every path.
    unsafe {
        let iterator = PyObject_GetIter(iterable); // new reference
        if iterator.is_null() {
            return Err(Raised);
        }
        let mut result = Ok(());
        loop {
            let item = PyIter_Next(iterator); // new reference, or NULL at the end or on error
            if item.is_null() {
                if !PyErr_Occurred().is_null() {
                    result = Err(Raised);
                }
                break;
            }
            let pair = PySequence_Tuple(item); // new reference
            Py_DECREF(item); // the tuple copy is all we need
            if pair.is_null() {
                result = Err(Raised);
                break;
            }
            if PyTuple_Size(pair) != 2 {
                PyErr_Format(
                    PyExc_ValueError,
                    c"update sequence element has length %zd; 2 is required".as_ptr(),
                    PyTuple_Size(pair),
                );
                Py_DECREF(pair); // the malformed pair is ours to release
                result = Err(Raised);
                break;
            }
            let key = PyTuple_GetItem(pair, 0); // borrowed: valid while `pair` lives
            let value = PyTuple_GetItem(pair, 1); // borrowed, likewise
                                                  // fault-site: update-uses-released-pair
            if faults::is_on("update-uses-released-pair") {
                Py_DECREF(pair); // Too early: key and value are borrowed from the pair.
                result = insert(slf, key, value);
            } else {
                result = insert(slf, key, value);
                Py_DECREF(pair); // insert took its own references: now the pair can go
            }
            if result.is_err() {
                break;
            }
        }
        Py_DECREF(iterator); // done iterating
        result
    }
}

/// Stores `mapping[key]` for every key of `mapping.keys()`.
unsafe fn update_from_mapping(
    slf: *mut HashTableObject,
    mapping: *mut PyObject,
) -> Result<(), Raised> {
    // SAFETY: `slf` is a live table, `mapping` a live borrowed object; new references are
    // released on every path.
    unsafe {
        let keys_name = (*state_of(Py_TYPE(slf.cast()))).keys_name;
        let keys = PyObject_CallMethodNoArgs(mapping, keys_name); // new reference
        if keys.is_null() {
            return Err(Raised);
        }
        let iterator = PyObject_GetIter(keys); // new reference
        Py_DECREF(keys); // the iterator keeps what it needs alive
        if iterator.is_null() {
            return Err(Raised);
        }
        let mut result = Ok(());
        loop {
            let key = PyIter_Next(iterator); // new reference, or NULL at the end or on error
            if key.is_null() {
                if !PyErr_Occurred().is_null() {
                    result = Err(Raised);
                }
                break;
            }
            let value = PyObject_GetItem(mapping, key); // new reference
            result = if value.is_null() {
                Err(Raised)
            } else {
                let stored = insert(slf, key, value);
                Py_DECREF(value); // insert took its own reference
                stored
            };
            Py_DECREF(key); // insert took its own reference
            if result.is_err() {
                break;
            }
        }
        Py_DECREF(iterator); // done iterating
        result
    }
}

/// `update([other], **kwargs)`, as `dict.update`.
unsafe extern "C" fn table_update(
    slf: *mut PyObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    let mut other: *mut PyObject = null_mut();
    // SAFETY: `slf` is a live table; UnpackTuple fills a borrowed reference.
    unsafe {
        if PyArg_UnpackTuple(args, c"update".as_ptr(), 0, 1, &mut other) == 0 {
            return null_mut();
        }
        let slf = slf as *mut HashTableObject;
        let mut result = Ok(());
        if !other.is_null() {
            let keys_name = (*state_of(Py_TYPE(slf.cast()))).keys_name;
            result = if PyObject_HasAttr(other, keys_name) != 0 {
                update_from_mapping(slf, other)
            } else {
                update_from_pairs(slf, other)
            };
        }
        if result.is_ok() && !kwargs.is_null() {
            result = update_from_mapping(slf, kwargs);
        }
        match result {
            Ok(()) => Py_NewRef(Py_None()), // a new reference to None
            Err(Raised) => null_mut(),
        }
    }
}

/// `merge(other)`: stores every pair of another HashTable, read straight from its entries
/// (no Python-level iteration, which is why `other` must really be a HashTable).
unsafe extern "C" fn table_merge(slf: *mut PyObject, other: *mut PyObject) -> *mut PyObject {
    // SAFETY: `slf` is a live table and `other` a live object borrowed from the caller; the
    // pairs are held by references of our own while `insert` runs Python code.
    unsafe {
        let slf = slf as *mut HashTableObject;
        // fault-site: trusts-argument-type
        if faults::is_on("trusts-argument-type") {
            // Forgotten: `other` is used as a HashTable, never checked to be one.
        } else {
            // Only a HashTable (or a subclass) has a HashTable's memory layout.
            let checked = is_table(slf, other);
            if !checked {
                let name = type_name(other); // a new reference, for the message
                if !name.is_null() {
                    PyErr_Format(
                        PyExc_TypeError,
                        c"merge() takes a HashTable, not %U".as_ptr(),
                        name,
                    );
                    Py_DECREF(name); // the message holds what it needs
                }
                return null_mut();
            }
        }
        let source = other as *mut HashTableObject;
        // Held while Python code runs below (__eq__ may set off the GC, which clears tables).
        let source_hash = Py_XNewRef((*source).hash_func);
        // Pairs filed by the same hash function keep their hash: no hash_func call needed.
        let same_hash = !source_hash.is_null() && source_hash == (*slf).hash_func;
        // Our own references to every pair first: storing runs Python code (hash_func,
        // __eq__) that may change either table.
        let pairs: Vec<(*mut PyObject, isize, *mut PyObject)> = (*source)
            .table
            .entries()
            .map(|entry| (Py_NewRef(entry.key), entry.hash, Py_NewRef(entry.value)))
            .collect();
        let mut result = Ok(());
        for (key, hash, value) in pairs {
            if result.is_ok() {
                result = if same_hash {
                    Py_INCREF(value); // the reference `store` takes over for the table
                    store(slf, key, hash, value)
                } else {
                    insert(slf, key, value) // insert takes references of its own
                };
            }
            Py_DECREF(key); // ours, taken above
            Py_DECREF(value);
        }
        Py_XDECREF(source_hash); // done with the source's hash function
        match result {
            Ok(()) => Py_NewRef(Py_None()), // a new reference to None
            Err(Raised) => null_mut(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Read-only attributes.
// ---------------------------------------------------------------------------------------------

unsafe extern "C" fn get_size(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    new_size_object(unsafe { (*(slf as *mut HashTableObject)).table.size() })
}

unsafe extern "C" fn get_load(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    new_size_object(unsafe { (*(slf as *mut HashTableObject)).table.load() })
}

unsafe extern "C" fn get_resizes(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    new_size_object(unsafe { (*(slf as *mut HashTableObject)).table.resizes() })
}

unsafe extern "C" fn get_max_load(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: `slf` is a live table.
    unsafe { PyFloat_FromDouble((*(slf as *mut HashTableObject)).table.max_load()) }
}

unsafe extern "C" fn get_hash_func(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: `slf` is a live table; hash_func is NULL only after the GC cleared it.
    unsafe {
        let hash_func = (*(slf as *mut HashTableObject)).hash_func;
        if hash_func.is_null() {
            return Py_NewRef(Py_None()); // cleared: report None, as a new reference
        }
        Py_NewRef(hash_func) // the caller gets its own reference to the hash function
    }
}

// ---------------------------------------------------------------------------------------------
// The type: methods, attributes, slots and spec, as static data ending in zeroed sentinels.
// ---------------------------------------------------------------------------------------------

const fn fast_method(
    name: &'static CStr,
    meth: PyCFunctionFast,
    doc: &'static CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFast: meth,
        },
        ml_flags: METH_FASTCALL,
        ml_doc: doc.as_ptr(),
    }
}

const fn method(
    name: &'static CStr,
    meth: PyCFunction,
    flags: c_int,
    doc: &'static CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: meth },
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

static mut METHODS: [PyMethodDef; 16] = [
    fast_method(
        c"set",
        table_set,
        c"set(key, value) -> self: store value under key",
    ),
    fast_method(
        c"get",
        table_get,
        c"get(key, default=None): the value of key, or default",
    ),
    fast_method(
        c"pop",
        table_pop,
        c"pop(key[, default]): remove key and return its value",
    ),
    fast_method(
        c"setdefault",
        table_setdefault,
        c"setdefault(key, default=None): get(key), storing default first if absent",
    ),
    method(
        c"popitem",
        table_popitem,
        METH_NOARGS,
        c"popitem() -> (key, value): remove some pair",
    ),
    method(
        c"clear",
        table_clear_method,
        METH_NOARGS,
        c"clear(): remove every pair",
    ),
    method(c"keys", table_keys, METH_NOARGS, c"keys() -> list of keys"),
    method(
        c"values",
        table_values,
        METH_NOARGS,
        c"values() -> list of values",
    ),
    method(
        c"items",
        table_items,
        METH_NOARGS,
        c"items() -> list of (key, value) pairs",
    ),
    PyMethodDef {
        ml_name: c"update".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionWithKeywords: table_update,
        },
        ml_flags: METH_VARARGS | METH_KEYWORDS,
        ml_doc: c"update([other], **kwargs): store every pair of a mapping or iterable".as_ptr(),
    },
    method(
        c"merge",
        table_merge,
        METH_O,
        c"merge(other: HashTable): store every pair of another HashTable",
    ),
    method(
        c"copy",
        table_copy,
        METH_NOARGS,
        c"copy() -> a new table with the same parameters and pairs",
    ),
    method(
        c"fromkeys",
        table_fromkeys,
        METH_VARARGS | METH_CLASS,
        c"fromkeys(iterable, value=None) -> a new table mapping each key to value",
    ),
    method(
        c"chain_lengths",
        table_chain_lengths,
        METH_NOARGS,
        c"chain_lengths() -> list of the number of entries in each bucket",
    ),
    method(
        c"__sizeof__",
        table_sizeof,
        METH_NOARGS,
        c"__sizeof__() -> bytes used by the table itself, keys and values not included",
    ),
    PyMethodDef::zeroed(),
];

const fn getter(
    name: &'static CStr,
    get: unsafe extern "C" fn(*mut PyObject, *mut c_void) -> *mut PyObject,
    doc: &'static CStr,
) -> PyGetSetDef {
    PyGetSetDef {
        name: name.as_ptr(),
        get: Some(get),
        set: None,
        doc: doc.as_ptr(),
        closure: null_mut(),
    }
}

static mut GETSETS: [PyGetSetDef; 6] = [
    getter(c"size", get_size, c"number of buckets"),
    getter(c"load", get_load, c"number of stored pairs"),
    getter(
        c"max_load",
        get_max_load,
        c"load factor past which the table doubles",
    ),
    getter(
        c"hash_func",
        get_hash_func,
        c"the function that hashes keys",
    ),
    getter(
        c"resizes",
        get_resizes,
        c"how many times the table has doubled",
    ),
    PyGetSetDef {
        name: std::ptr::null(),
        get: None,
        set: None,
        doc: std::ptr::null(),
        closure: null_mut(),
    },
];

const fn slot(slot: c_int, pfunc: *mut c_void) -> PyType_Slot {
    PyType_Slot { slot, pfunc }
}

static mut SLOTS: [PyType_Slot; 16] = [
    slot(
        Py_tp_doc,
        c"HashTable(size=4, max_load=0.5, hash_func=hash)\n--\n\n\
          A hash table with separate chaining, written with the raw C API."
            .as_ptr() as *mut c_void,
    ),
    slot(Py_tp_new, table_new as *mut c_void),
    slot(Py_tp_dealloc, table_dealloc as *mut c_void),
    slot(Py_tp_traverse, table_traverse as *mut c_void),
    slot(Py_tp_clear, table_clear as *mut c_void),
    slot(Py_tp_repr, table_repr as *mut c_void),
    slot(Py_tp_richcompare, table_richcompare as *mut c_void),
    slot(Py_tp_iter, table_iter as *mut c_void),
    slot(Py_tp_methods, &raw mut METHODS as *mut c_void),
    slot(Py_tp_getset, &raw mut GETSETS as *mut c_void),
    slot(Py_mp_length, table_length as *mut c_void),
    slot(Py_mp_subscript, table_subscript as *mut c_void),
    slot(Py_mp_ass_subscript, table_ass_subscript as *mut c_void),
    slot(Py_sq_contains, table_contains as *mut c_void),
    // Sequence length too, so `len()` and `bool()` work through either protocol.
    slot(Py_sq_length, table_length as *mut c_void),
    slot(0, null_mut()),
];

static mut SPEC: PyType_Spec = PyType_Spec {
    name: c"hashtable.HashTable".as_ptr(),
    basicsize: size_of::<HashTableObject>() as c_int,
    itemsize: 0,
    flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE) as _,
    slots: &raw mut SLOTS as *mut PyType_Slot,
};

/// The spec `PyType_FromModuleAndSpec` builds `hashtable.HashTable` from.
pub(super) fn spec() -> *mut PyType_Spec {
    &raw mut SPEC
}
