//! Two tallies `hunt` takes after every run (`src/hunt/hunt_census.py`): the live objects
//! per type, and tracemalloc's live blocks per traceback. In Python each was a loop over
//! every object or every block, and under tracemalloc each object that loop made was
//! traced too: on ujson's suite they took 25 ms and 56 ms a traced run.

use crate::heap::AddressMap;
use pyo3_ffi::*;
use std::ptr::null_mut;

/// `_labtrace._census(objects)`: `{type.__qualname__: count}` over the list `objects` (the
/// collector's, from `gc.get_objects()`). Types that share a name share a count.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn census(_module: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    let mut objects = null_mut();
    // SAFETY: the GIL is held; the list is borrowed from `args`. No Python code runs while
    // it is counted; each type counted is then held (reading a name can run a metaclass's
    // Python code, which could empty the list).
    unsafe {
        if PyArg_ParseTuple(
            args,
            c"O!:_census".as_ptr(),
            &raw mut PyList_Type,
            &mut objects,
        ) == 0
        {
            return null_mut();
        }
        let mut by_type: AddressMap<isize> = AddressMap::default();
        for index in 0..PyList_Size(objects) {
            *by_type
                .entry(Py_TYPE(PyList_GetItem(objects, index)) as usize)
                .or_insert(0) += 1;
        }
        dict_of(&by_type, |counts, tp, &count| add(counts, tp, count))
    }
}

/// A new dict filled by `add(dict, object, value)` for each object of `tallies` (by address),
/// each held meanwhile (`add` can run Python code); NULL with an error set when one fails.
///
/// # Safety
/// The GIL is held and each address is a live object.
unsafe fn dict_of<V>(
    tallies: &AddressMap<V>,
    mut add: impl FnMut(*mut PyObject, *mut PyObject, &V) -> bool,
) -> *mut PyObject {
    // SAFETY: as the caller promises; `held` keeps every object live until the end.
    unsafe {
        let held = Held::new(tallies.keys());
        let dict = PyDict_New();
        for (&address, value) in tallies {
            if dict.is_null() {
                break;
            }
            if !add(dict, address as *mut PyObject, value) {
                Py_DECREF(dict);
                drop(held);
                return null_mut();
            }
        }
        drop(held);
        dict
    }
}

/// Strong references to objects known by address, released when dropped (the GIL held).
struct Held(Vec<*mut PyObject>);

impl Held {
    /// # Safety
    /// The GIL is held and each address is a live object.
    unsafe fn new<'a>(addresses: impl Iterator<Item = &'a usize>) -> Held {
        let objects: Vec<*mut PyObject> =
            addresses.map(|&address| address as *mut PyObject).collect();
        for &obj in &objects {
            // SAFETY: as the caller promises.
            unsafe { Py_INCREF(obj) };
        }
        Held(objects)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for &obj in &self.0 {
            // SAFETY: a reference `Held::new` took, the GIL held by its caller.
            unsafe { Py_DECREF(obj) };
        }
    }
}

/// `counts[tp.__qualname__] += count`; false with an error set.
///
/// # Safety
/// The GIL is held; `counts` is a live dict and `tp` a live type.
unsafe fn add(counts: *mut PyObject, tp: *mut PyObject, count: isize) -> bool {
    // SAFETY: as the caller promises; each new reference is released here.
    unsafe {
        let qualname = PyObject_GetAttrString(tp, c"__qualname__".as_ptr());
        if qualname.is_null() {
            return false;
        }
        // An exact str (a subclass's copy; anything else is a TypeError).
        let name = PyUnicode_FromObject(qualname);
        Py_DECREF(qualname);
        if name.is_null() {
            return false;
        }
        // A str key runs no Python code in the dict; a value may have been changed all the
        // same (through the collector's referrers), and is read as an int or refused.
        let before = PyDict_GetItemWithError(counts, name);
        let total = if before.is_null() {
            if !PyErr_Occurred().is_null() {
                Py_DECREF(name);
                return false;
            }
            count
        } else {
            let had = if PyLong_CheckExact(before) != 0 {
                PyLong_AsSsize_t(before)
            } else {
                -1
            };
            if had < 0 {
                if PyErr_Occurred().is_null() {
                    PyErr_SetString(
                        PyExc_TypeError,
                        c"the census was changed while it was taken".as_ptr(),
                    );
                }
                Py_DECREF(name);
                return false;
            }
            had.saturating_add(count)
        };
        let total = PyLong_FromSsize_t(total);
        let added = !total.is_null() && PyDict_SetItem(counts, name, total) == 0;
        Py_XDECREF(total);
        Py_DECREF(name);
        added
    }
}

/// `_labtrace._count_traces(traces)`: `{frames: (blocks, bytes)}` over the list
/// `tracemalloc._get_traces()` gives (`(domain, size, frames, …)` a block). Blocks are
/// grouped first by the `frames` object, which tracemalloc shares between the blocks of
/// one traceback, then by value: one line reached at different call depths is a traceback
/// of its own each time, and a tuple of its own.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn count_traces(
    _module: *mut PyObject,
    args: *mut PyObject,
) -> *mut PyObject {
    let mut traces = null_mut();
    // SAFETY: the GIL is held; the list is borrowed from `args`. No Python code runs while
    // it is counted; each `frames` is then held (hashing it can run Python code).
    unsafe {
        if PyArg_ParseTuple(
            args,
            c"O!:_count_traces".as_ptr(),
            &raw mut PyList_Type,
            &mut traces,
        ) == 0
        {
            return null_mut();
        }
        let mut by_frames: AddressMap<(isize, isize)> = AddressMap::default();
        for index in 0..PyList_Size(traces) {
            let trace = PyList_GetItem(traces, index);
            if PyTuple_Check(trace) == 0 || PyTuple_Size(trace) < 3 {
                PyErr_SetString(
                    PyExc_TypeError,
                    c"a trace is a tuple (domain, size, frames, ...)".as_ptr(),
                );
                return null_mut();
            }
            let size = PyLong_AsSsize_t(PyTuple_GetItem(trace, 1));
            if size == -1 && !PyErr_Occurred().is_null() {
                return null_mut();
            }
            let tally = by_frames
                .entry(PyTuple_GetItem(trace, 2) as usize)
                .or_insert((0, 0));
            let Some(bytes) = tally.1.checked_add(size).filter(|_| size >= 0) else {
                PyErr_SetString(PyExc_ValueError, c"a trace's size is not a size".as_ptr());
                return null_mut();
            };
            *tally = (tally.0 + 1, bytes);
        }
        dict_of(&by_frames, |counts, frames, &(blocks, bytes)| {
            add_tally(counts, frames, blocks, bytes)
        })
    }
}

/// `counts[frames] += (blocks, bytes)`; false with an error set.
///
/// # Safety
/// The GIL is held; `counts` is a live dict and `frames` a live object.
unsafe fn add_tally(
    counts: *mut PyObject,
    frames: *mut PyObject,
    blocks: isize,
    bytes: isize,
) -> bool {
    // SAFETY: as the caller promises; `before` is held while it is read.
    unsafe {
        let before = PyDict_GetItemWithError(counts, frames);
        let (mut blocks, mut bytes) = (blocks, bytes);
        if before.is_null() {
            if !PyErr_Occurred().is_null() {
                return false;
            }
        } else {
            // Held while read: reading an int can run Python code (`__index__`).
            Py_INCREF(before);
            let (mut had_blocks, mut had_bytes) = (0, 0);
            let read = PyTuple_CheckExact(before) != 0
                && PyTuple_Size(before) == 2
                && PyArg_ParseTuple(before, c"nn".as_ptr(), &mut had_blocks, &mut had_bytes) != 0;
            Py_DECREF(before);
            let sums = blocks
                .checked_add(had_blocks)
                .zip(bytes.checked_add(had_bytes));
            match sums {
                Some(sums) if read => (blocks, bytes) = sums,
                _ => {
                    if PyErr_Occurred().is_null() {
                        PyErr_SetString(
                            PyExc_ValueError,
                            c"the tallies were changed, or overflowed".as_ptr(),
                        );
                    }
                    return false;
                }
            }
        }
        let tally = Py_BuildValue(c"(nn)".as_ptr(), blocks, bytes);
        let added = !tally.is_null() && PyDict_SetItem(counts, frames, tally) == 0;
        Py_XDECREF(tally);
        added
    }
}
