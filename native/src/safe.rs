//! `hashtable.SafeHashTable`: the table of `pytype.rs` again, written in safe PyO3.
//!
//! Same chained table (`table/`), same Python API, same `repr`; not one `Py_INCREF`, not
//! one `unsafe` block. Ownership is a type here:
//!
//! - `Py<PyAny>` and `Bound<'py, PyAny>` each own one reference. Cloning one (`clone_ref`,
//!   `clone`) is the `Py_INCREF`; dropping it, at the end of its scope, is the `Py_DECREF`.
//! - `&Bound<'py, PyAny>` borrows one, for as long as the borrow checker can prove it lives.
//! - A returned value is converted into a new reference by PyO3, so a method cannot return
//!   one it does not own; arguments are type-checked before the method runs.
//!
//! What stays the author's job is what `pytype.rs` also had to mind: Python code (`hash_func`,
//! a key's `__eq__`, a value's `__del__`) may run in the middle of an operation and change
//! this very table. PyO3 guards the table with a borrow flag, as a `RefCell` does: a method
//! that held `&mut self` across such a call would make that code fail with "Already
//! borrowed". So, as in `pytype.rs`, no borrow of the table is held across a call into
//! Python, and lookups re-check `Table::version` afterwards.
//!
//! Safe PyO3 still lets a table leak, and the marked fault sites show three ways:
//! a `__traverse__` that hides references, `mem::forget` (or `into_ptr`, which is also
//! safe), and a `static` that keeps objects.

use crate::table::{self, Slot, MAX_SIZE};
use crate::{faults, trace};
use pyo3::exceptions::{
    PyKeyError, PyMemoryError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyList, PyModule, PyString, PyTuple, PyType};
use pyo3::{intern, PyTraverseError};
use std::sync::atomic::{AtomicU64, Ordering};

/// The chained table of `table/`, each entry owning its key and value.
type Table = table::Table<Py<PyAny>>;
type Entry = table::Entry<Py<PyAny>>;

const TYPE_NAME: &str = "SafeHashTable";

/// The id the next table gets in trace events.
static NEXT_TRACE_ID: AtomicU64 = AtomicU64::new(1);

/// Where the `safe-static-keeps-keys` fault keeps every key it was given.
static KEYS_SEEN: PyOnceLock<Py<PyList>> = PyOnceLock::new();

/// A hash table with separate chaining, written in safe PyO3.
#[pyclass(name = "SafeHashTable", module = "hashtable", subclass, mapping)]
pub struct SafeHashTable {
    /// Called on every key to get its hash; `None` once the garbage collector cleared it.
    hash_func: Option<Py<PyAny>>,
    table: Table,
    /// `hash_func` is the built-in `hash`, which the fast path calls directly.
    builtin_hash: bool,
    /// Names this table in trace events.
    trace_id: u64,
}

impl Drop for SafeHashTable {
    fn drop(&mut self) {
        trace::free(TYPE_NAME, self.trace_id);
        // The fields drop next: every key, value and `hash_func` gives its reference back.
    }
}

fn changed(during: &str) -> PyErr {
    PyRuntimeError::new_err(format!("{TYPE_NAME} changed size {during}"))
}

/// `MemoryError`: the table could not grow to the bytes the allocator refused.
fn cannot_grow(refused: table::Refused) -> PyErr {
    PyMemoryError::new_err(format!(
        "{TYPE_NAME} could not grow to {} bytes, which the system refused",
        refused.bytes
    ))
}

/// `KeyError(key)`, with the key wrapped in a tuple so tuple keys print right (as `dict` does).
fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err((key.clone().unbind(),))
}

/// The `__name__` of `obj`'s type, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.to_string())
}

// Helpers: hashing, lookup, insertion, removal. None holds a borrow of the table while Python
// code runs.
impl SafeHashTable {
    fn hash_key(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<isize> {
        let py = slf.py();
        let hash_func = {
            let this = slf.borrow();
            match &this.hash_func {
                None => {
                    return Err(PyRuntimeError::new_err(
                        "this SafeHashTable was cleared by the garbage collector",
                    ))
                }
                Some(_) if this.builtin_hash => None,
                Some(hash_func) => Some(hash_func.clone_ref(py)), // alive while it runs
            }
        };
        let Some(hash_func) = hash_func else {
            return key.hash(); // what calling the built-in hash would do, without a call
        };
        let result = hash_func.bind(py).call1((key,))?; // an error goes up unchanged
        if !result.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!(
                "hash_func must return an int, but it returned {} for key {}",
                type_name(&result)?,
                key.repr()?
            )));
        }
        result.hash() // `result` is dropped here, on every path: nothing to forget
    }

    /// Where `key` is stored, if it is. Compares colliding keys with `==`, which runs Python.
    /// One borrow of the table covers the walk (each borrow is an atomic operation on the
    /// flag); it ends only while a key's `==` runs, which may change the table.
    fn find(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>, hash: isize) -> PyResult<Option<Slot>> {
        let py = slf.py();
        let plain = |obj: &Bound<'_, PyAny>| {
            obj.is_exact_instance_of::<PyString>() || obj.is_exact_instance_of::<PyInt>()
        };
        let key_is_plain = plain(key);
        let mut this = slf.borrow();
        let version = this.table.version();
        let mut next = this.table.first_in_chain(this.table.bucket_of(hash));
        while let Some(slot) = next {
            let (entry, after) = this.table.chained(slot);
            if entry.key.is(key) {
                return Ok(Some(slot));
            }
            if entry.hash == hash {
                if key_is_plain && plain(entry.key.bind(py)) {
                    // Two exact strs or ints compare without running Python code, so the
                    // borrow may stay, and the stored key needs no reference of our own.
                    if entry.key.bind(py).eq(key)? {
                        return Ok(Some(slot));
                    }
                } else {
                    let stored = entry.key.clone_ref(py); // alive while its `==` runs
                    drop(this);
                    let equal = stored.bind(py).eq(key)?;
                    // The last reference if `==` removed the key: its __del__ runs here, with
                    // no borrow held, and may use the table.
                    drop(stored);
                    this = slf.borrow();
                    if this.table.version() != version {
                        return Err(changed("while comparing keys"));
                    }
                    if equal {
                        return Ok(Some(slot));
                    }
                }
            }
            next = after; // the table is as it was: a change raised above
        }
        Ok(None)
    }

    /// `table[key] = value`.
    fn insert(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let hash = Self::hash_key(slf, key)?;
        Self::store(slf, key, hash, value)
    }

    /// Files `value` under `key`, whose hash is known.
    fn store(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        hash: isize,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let found = Self::find(slf, key, hash)?;
        if found.is_none() {
            // fault-site: safe-static-keeps-keys
            if faults::is_on("safe-static-keeps-keys") {
                // A log of every key stored, in a static: never dropped.
                let seen = KEYS_SEEN.get_or_init(py, || PyList::empty(py).unbind());
                seen.bind(py).append(key)?;
            } else {
                // The table's entry is the only reference it takes.
            }
        }
        let mut this = slf.borrow_mut();
        match found {
            Some(slot) => {
                let old = this.table.replace_value(slot, value.clone().unbind());
                drop(this);
                drop(old); // released after the borrow ends: its __del__ may use the table
            }
            None if this.table.is_full() => {
                return Err(PyOverflowError::new_err("SafeHashTable is full"));
            }
            None => {
                this.table.reserve_one().map_err(cannot_grow)?;
                this.table.insert_new(Entry {
                    hash,
                    key: key.clone().unbind(),
                    value: value.clone().unbind(),
                })
            }
        }
        Ok(())
    }

    /// A new reference to the value stored under `key`, if any.
    fn lookup(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let hash = Self::hash_key(slf, key)?;
        let Some(slot) = Self::find(slf, key, hash)? else {
            return Ok(None);
        };
        let this = slf.borrow();
        Ok(this
            .table
            .entry(slot)
            .map(|entry| entry.value.clone_ref(slf.py())))
    }

    /// Unlinks `key` and hands its value to the caller.
    fn remove(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let hash = Self::hash_key(slf, key)?;
        let Some(slot) = Self::find(slf, key, hash)? else {
            return Ok(None);
        };
        let entry = slf.borrow_mut().table.remove(slot);
        Ok(Some(entry.value)) // the key drops here; the value's reference moves to the caller
    }

    /// Every stored key, value or pair, as new references. The borrow of the table ends
    /// before PyO3 builds the list (a `&self` method's would last until the list is built):
    /// its allocations can start the collector before 3.12, and a finalizer may change the
    /// table, which nothing has borrowed then.
    fn collect<T>(slf: &Bound<'_, Self>, part: impl Fn(Python<'_>, &Entry) -> T) -> Vec<T> {
        let py = slf.py();
        let this = slf.borrow();
        this.table.entries().map(|entry| part(py, entry)).collect()
    }

    fn update_from_mapping(slf: &Bound<'_, Self>, mapping: &Bound<'_, PyAny>) -> PyResult<()> {
        let keys = mapping.call_method0(intern!(slf.py(), "keys"))?;
        for key in keys.try_iter()? {
            let key = key?;
            Self::insert(slf, &key, &mapping.get_item(&key)?)?;
        }
        Ok(())
    }

    fn update_from_pairs(slf: &Bound<'_, Self>, pairs: &Bound<'_, PyAny>) -> PyResult<()> {
        for item in pairs.try_iter()? {
            let pair: Vec<Bound<'_, PyAny>> = item?.try_iter()?.collect::<PyResult<_>>()?;
            let [key, value] = pair.as_slice() else {
                return Err(PyValueError::new_err(format!(
                    "update sequence element has length {}; 2 is required",
                    pair.len()
                )));
            };
            Self::insert(slf, key, value)?;
        }
        Ok(())
    }

    /// Do `slf` and the mapping `other` hold equal values under equal keys?
    fn equal_to(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        // Asked before our own load and version are read: a `__len__` may change the table.
        let their_load = other.len()?;
        let (load, version) = {
            let this = slf.borrow();
            (this.table.load(), this.table.version())
        };
        if their_load != load {
            return Ok(false);
        }
        // Slot by slot, over the holes removals leave (`next_entry`), as pytype.rs does.
        let mut cursor = 0;
        loop {
            let Some((slot, key, value)) = slf
                .borrow()
                .table
                .next_entry(cursor)
                .map(|(slot, e)| (slot, e.key.clone_ref(py), e.value.clone_ref(py)))
            else {
                break;
            };
            cursor = slot + 1;
            let equal = match other.get_item(&key) {
                Ok(theirs) => value.bind(py).eq(theirs)?,
                Err(error) if error.is_instance_of::<PyKeyError>(py) => false,
                Err(error) => return Err(error),
            };
            if slf.borrow().table.version() != version {
                return Err(changed("during comparison"));
            }
            if !equal {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[pymethods]
impl SafeHashTable {
    #[new]
    #[pyo3(
        signature = (size=4, max_load=0.5, hash_func=None),
        text_signature = "(size=4, max_load=0.5, hash_func=hash)"
    )]
    fn new(
        py: Python<'_>,
        size: isize,
        max_load: f64,
        hash_func: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if size <= 0 || size as usize > MAX_SIZE {
            return Err(PyValueError::new_err(format!(
                "size must be a positive number of buckets, at most {MAX_SIZE}, got {size}"
            )));
        }
        if !(max_load > 0.0 && max_load <= 1.0) {
            return Err(PyValueError::new_err(format!(
                "max_load must be in (0, 1], got {max_load}"
            )));
        }
        let builtin_hash = py.import("builtins")?.getattr(intern!(py, "hash"))?;
        let hash_func = hash_func.unwrap_or_else(|| builtin_hash.clone());
        if !hash_func.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "hash_func must be callable, got {}",
                type_name(&hash_func)?
            )));
        }
        // fault-site: safe-mem-forget
        if faults::is_on("safe-mem-forget") {
            // A clone is a new reference; forgetting it is safe Rust.
            std::mem::forget(hash_func.clone());
        } else {
            // Nothing to write: the table's own `Py` is dropped with it.
        }
        let table = Table::try_new(size as usize, max_load).map_err(|refused| {
            PyMemoryError::new_err(format!(
                "{TYPE_NAME}(size={size}) needs {} bytes, which the system refused",
                refused.bytes
            ))
        })?;
        let trace_id = NEXT_TRACE_ID.fetch_add(1, Ordering::Relaxed);
        trace::alloc(TYPE_NAME, trace_id);
        Ok(SafeHashTable {
            builtin_hash: hash_func.is(&builtin_hash),
            hash_func: Some(hash_func.unbind()),
            table,
            trace_id,
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // fault-site: safe-no-traverse
        if faults::is_on("safe-no-traverse") {
            // Forgotten: the collector is shown nothing the table holds.
        } else {
            visit.call(&self.hash_func)?;
            for entry in self.table.entries() {
                visit.call(&entry.key)?;
                visit.call(&entry.value)?;
            }
        }
        Ok(())
    }

    /// Taken under the borrow, released after it (releasing may run Python code that uses
    /// the table): the entries first, then `hash_func`, as `pytype.rs` does. Code run
    /// between the two finds the table empty, and may still store into it.
    fn __clear__(slf: &Bound<'_, Self>) {
        let entries = slf.borrow_mut().table.take_all();
        drop(entries);
        let hash_func = slf.borrow_mut().hash_func.take();
        drop(hash_func);
    }

    /// Mutable, so unhashable (as `dict`).
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(&self) -> String {
        let lines: Vec<String> = self
            .table
            .chain_lengths()
            .into_iter()
            .map(|length| format!("[]{}", "*".repeat(length)))
            .collect();
        lines.join("\n")
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let comparable =
            other.is_instance_of::<SafeHashTable>() || other.is_instance_of::<PyDict>();
        let equal = match op {
            CompareOp::Eq if comparable => Self::equal_to(slf, other)?,
            CompareOp::Ne if comparable => !Self::equal_to(slf, other)?,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    fn __len__(&self) -> usize {
        self.table.load()
    }

    fn __contains__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let hash = Self::hash_key(slf, key)?;
        Ok(Self::find(slf, key, hash)?.is_some())
    }

    fn __getitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::lookup(slf, key)?.ok_or_else(|| key_error(key))
    }

    fn __setitem__(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::insert(slf, key, value)
    }

    fn __delitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::remove(slf, key)?
            .map(drop)
            .ok_or_else(|| key_error(key))
    }

    fn __iter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, SafeHashTableIterator>> {
        let iterator = SafeHashTableIterator {
            table: Some(slf.clone().unbind()),
            cursor: 0,
            version: 0,
        };
        let iterator = Bound::new(slf.py(), iterator)?;
        // Read after the allocation, which can run a finalizer that changes the table (before
        // 3.12): the iterator walks the table as it is when `iter()` returns, as dict's does.
        iterator.borrow_mut().version = slf.borrow().table.version();
        Ok(iterator)
    }

    /// set(key, value) -> self: store value under key
    #[pyo3(signature = (key, value, /))]
    fn set<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Self>> {
        Self::insert(slf, key, value)?;
        Ok(slf.clone()) // the caller's new reference: the clone is the Py_INCREF
    }

    /// get(key, default=None): the value of key, or default
    #[pyo3(signature = (key, default=None, /))]
    fn get(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(Self::lookup(slf, key)?.or(default))
    }

    /// pop(key[, default]): remove key and return its value
    #[pyo3(signature = (key, /, *default))]
    fn pop(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop() takes from 1 to 2 arguments ({} given)",
                default.len() + 1
            )));
        }
        match Self::remove(slf, key)? {
            Some(value) => Ok(value),
            None if default.is_empty() => Err(key_error(key)),
            None => Ok(default.get_item(0)?.unbind()),
        }
    }

    /// setdefault(key, default=None): get(key), storing default first if absent
    #[pyo3(signature = (key, default=None, /))]
    fn setdefault(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        default: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(value) = Self::lookup(slf, key)? {
            return Ok(value);
        }
        let default = default.unwrap_or_else(|| slf.py().None().into_bound(slf.py()));
        Self::insert(slf, key, &default)?;
        Ok(default.unbind())
    }

    /// popitem() -> removes and returns the most recently stored (key, value) pair.
    fn popitem(slf: &Bound<'_, Self>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let mut this = slf.borrow_mut();
        let slot = this
            .table
            .last()
            .ok_or_else(|| PyKeyError::new_err("popitem(): SafeHashTable is empty"))?;
        let entry = this.table.remove(slot);
        Ok((entry.key, entry.value)) // the table's references move into the tuple
    }

    /// clear() -> removes every pair.
    fn clear(slf: &Bound<'_, Self>) {
        let taken = slf.borrow_mut().table.take_all();
        drop(taken); // released after the borrow ends: a value's __del__ may use the table
    }

    /// keys() -> list of keys
    fn keys(slf: &Bound<'_, Self>) -> Vec<Py<PyAny>> {
        Self::collect(slf, |py, entry| entry.key.clone_ref(py))
    }

    /// values() -> list of values
    fn values(slf: &Bound<'_, Self>) -> Vec<Py<PyAny>> {
        Self::collect(slf, |py, entry| entry.value.clone_ref(py))
    }

    /// items() -> list of (key, value) pairs
    fn items(slf: &Bound<'_, Self>) -> Vec<(Py<PyAny>, Py<PyAny>)> {
        Self::collect(slf, |py, entry| {
            (entry.key.clone_ref(py), entry.value.clone_ref(py))
        })
    }

    /// update([other], **kwargs) -> stores the pairs of a mapping or an iterable of pairs.
    #[pyo3(signature = (other=None, **kwargs))]
    fn update(
        slf: &Bound<'_, Self>,
        other: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if let Some(other) = other {
            if other.hasattr(intern!(slf.py(), "keys"))? {
                Self::update_from_mapping(slf, other)?;
            } else {
                Self::update_from_pairs(slf, other)?;
            }
        }
        if let Some(kwargs) = kwargs {
            Self::update_from_mapping(slf, kwargs.as_any())?;
        }
        Ok(())
    }

    /// merge(other): store every pair of another SafeHashTable, reusing its stored hashes
    /// when both tables use the same hash function
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let Ok(source) = other.cast::<SafeHashTable>() else {
            return Err(PyTypeError::new_err(format!(
                "merge() takes a SafeHashTable, not {}",
                type_name(other)?
            )));
        };
        let (same_hash, pairs) = {
            let source = source.borrow();
            let same_hash = match (&source.hash_func, &slf.borrow().hash_func) {
                (Some(theirs), Some(ours)) => theirs.is(ours),
                _ => false,
            };
            let pairs: Vec<_> = source
                .table
                .entries()
                .map(|e| (e.key.clone_ref(py), e.hash, e.value.clone_ref(py)))
                .collect();
            (same_hash, pairs)
        };
        for (key, hash, value) in pairs {
            let (key, value) = (key.bind(py), value.bind(py));
            if same_hash {
                Self::store(slf, key, hash, value)?;
            } else {
                Self::insert(slf, key, value)?;
            }
        }
        Ok(())
    }

    /// copy() -> a new table of the same type, size, max_load and hash function.
    fn copy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let (size, max_load, hash_func) = {
            let this = slf.borrow();
            let hash_func = this.hash_func.as_ref().map(|f| f.clone_ref(slf.py()));
            (this.table.size(), this.table.max_load(), hash_func)
        };
        let copy = slf.get_type().call1((size, max_load, hash_func))?;
        // A subclass's constructor may make anything.
        let Ok(table) = copy.cast::<SafeHashTable>() else {
            return Err(PyTypeError::new_err(format!(
                "copy() needs the type to make a {TYPE_NAME}, not {}",
                type_name(&copy)?
            )));
        };
        Self::update_from_mapping(table, slf.as_any())?;
        Ok(copy)
    }

    /// fromkeys(keys, value=None) -> a new table with each key set to value.
    #[classmethod]
    #[pyo3(signature = (keys, value=None))]
    fn fromkeys<'py>(
        cls: &Bound<'py, PyType>,
        keys: &Bound<'py, PyAny>,
        value: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let table = cls.call0()?;
        for key in keys.try_iter()? {
            table.set_item(key?, &value)?; // goes through subclass overrides
        }
        Ok(table)
    }

    /// __sizeof__() -> the object and its buckets and entries, not the keys and values.
    fn __sizeof__(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let object_bytes: usize = slf
            .get_type()
            .getattr(intern!(slf.py(), "__basicsize__"))?
            .extract()?;
        Ok(object_bytes + slf.borrow().table.heap_bytes())
    }

    /// chain_lengths() -> the length of every bucket's chain
    fn chain_lengths(slf: &Bound<'_, Self>) -> Vec<usize> {
        slf.borrow().table.chain_lengths() // the borrow ends before the list is built
    }

    /// number of buckets
    #[getter]
    fn size(&self) -> usize {
        self.table.size()
    }

    /// number of stored pairs
    #[getter]
    fn load(&self) -> usize {
        self.table.load()
    }

    /// the load factor past which the table doubles
    #[getter]
    fn max_load(&self) -> f64 {
        self.table.max_load()
    }

    /// the function every key is hashed with
    #[getter]
    fn hash_func(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.hash_func.as_ref().map(|f| f.clone_ref(py))
    }

    /// how many times the table has doubled
    #[getter]
    fn resizes(&self) -> usize {
        self.table.resizes()
    }
}

/// The iterator behind `iter(table)`: the keys in the order they were added (holes skipped).
#[pyclass(module = "hashtable")]
pub struct SafeHashTableIterator {
    /// The table being walked; `None` once the garbage collector cleared it.
    table: Option<Py<SafeHashTable>>,
    cursor: Slot,
    version: u64,
}

#[pymethods]
impl SafeHashTableIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let mut this = slf.try_borrow_mut()?;
        let Some(table) = &this.table else {
            return Ok(None);
        };
        let next = {
            let table = table.borrow(py);
            if table.table.version() != this.version {
                return Err(changed("during iteration"));
            }
            let next = table.table.next_entry(this.cursor);
            next.map(|(slot, entry)| (slot, entry.key.clone_ref(py)))
        };
        let Some((slot, key)) = next else {
            // Exhausted: the table is released, as dict's are, after the borrow ends (this
            // may be its last reference, and a value's __del__ may call next() again).
            let table = this.table.take();
            drop(this);
            drop(table);
            return Ok(None);
        };
        this.cursor = slot + 1;
        Ok(Some(key))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.table)
    }

    /// The table is released after the borrow ends: a value's __del__ may call next().
    fn __clear__(slf: &Bound<'_, Self>) {
        let table = slf.borrow_mut().table.take();
        drop(table);
    }
}

/// Adds `SafeHashTable` to the module being initialised (by `module_exec` in `lib.rs`).
/// The trace id of `obj` if it is a SafeHashTable (not borrowed right now): see
/// `pytype::trace_id_of`.
pub fn trace_id_of(obj: &Bound<'_, PyAny>) -> Option<u64> {
    let table = obj.cast::<SafeHashTable>().ok()?;
    table.try_borrow().ok().map(|table| table.trace_id)
}

pub fn add_to(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<SafeHashTable>()
}
