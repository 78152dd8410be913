//! Which objects gain references run after run: the rows of `hunt`'s `GrowingCounts`
//! (`src/hunt/hunt_census.py`), made and filtered here. The first table has a row for every
//! object the hunt can reach; in Python, making it took 0.3 s on ujson's suite, in every
//! `--jobs` copy.
//!
//! A table is bytes: the number of rows, then six signed 64-bit integers a row (id, type
//! id, count at the start, count now, and the same for the references the collector saw).
//! A count is read as the dict the object comes from holds it, the same way every time.

use crate::frames::python_minor;
use crate::heap::{reach, AddressMap};
use pyo3_ffi::*;
use std::ffi::{c_char, c_void};
use std::ptr::null_mut;

const WIDTH: usize = 6;

/// A count this high is an immortal object's, and means nothing: 3.12 and 3.13 pin it at
/// 2**32 - 1; 3.14's drift upwards from 3 << 30 (an incref is no longer skipped for them),
/// so a field name of every namedtuple made would seem to gain a reference a run.
const IMMORTAL: i64 = 1 << 30;

/// `obj`'s reference count. From 3.12 on, the low 32 bits (3.14 keeps flags above them).
///
/// # Safety
/// The GIL is held and `obj` is live.
unsafe fn count(obj: *mut PyObject, split: bool) -> i64 {
    // SAFETY: as the caller promises.
    let count = unsafe { Py_REFCNT(obj) } as i64;
    if split {
        count & 0xffff_ffff
    } else {
        count
    }
}

fn split_counts() -> bool {
    python_minor().is_none_or(|minor| minor >= 12)
}

/// `_labtrace._count_rows(objects, seen)`: a table with a row for every object of `objects`
/// (`{id: object}`) that is not immortal, `seen` (`{id: count}`) giving the references the
/// collector saw.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn count_rows(_module: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    let (mut objects, mut seen) = (null_mut(), null_mut());
    // SAFETY: the GIL is held; the dicts are borrowed from `args`, and reading them (int
    // keys) runs no Python code, so nothing in them is freed meanwhile.
    unsafe {
        if PyArg_ParseTuple(
            args,
            c"O!O!:_count_rows".as_ptr(),
            &raw mut PyDict_Type,
            &mut objects,
            &raw mut PyDict_Type,
            &mut seen,
        ) == 0
        {
            return null_mut();
        }
        if !keys_are_ints(objects) || !keys_are_ints(seen) {
            return null_mut();
        }
        let split = split_counts();
        let mut table = vec![0_i64];
        let (mut position, mut key, mut obj) = (0, null_mut(), null_mut());
        while PyDict_Next(objects, &mut position, &mut key, &mut obj) != 0 {
            let references = count(obj, split);
            if references >= IMMORTAL {
                continue;
            }
            let seen_count = PyDict_GetItem(seen, key);
            let seen_count = if seen_count.is_null() {
                0
            } else {
                PyLong_AsLongLong(seen_count)
            };
            let address = PyLong_AsVoidPtr(key) as i64;
            if !PyErr_Occurred().is_null() {
                return null_mut();
            }
            let tp = Py_TYPE(obj) as i64;
            table.extend([address, tp, references, references, seen_count, seen_count]);
        }
        table[0] = ((table.len() - 1) / WIDTH) as i64;
        as_bytes(&table)
    }
}

/// `_labtrace._still_growing(table, objects)`: the rows of `table` whose object is still in
/// `objects` (`{id: object}`), of the same type, with more references than when last
/// counted, that count now theirs.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn still_growing(
    _module: *mut PyObject,
    args: *mut PyObject,
) -> *mut PyObject {
    let (mut table, mut objects) = (null_mut(), null_mut());
    // SAFETY: as in `count_rows`; the table's bytes are read within the bytes object.
    unsafe {
        if PyArg_ParseTuple(
            args,
            c"O!O!:_still_growing".as_ptr(),
            &raw mut PyBytes_Type,
            &mut table,
            &raw mut PyDict_Type,
            &mut objects,
        ) == 0
        {
            return null_mut();
        }
        let Some(rows) = rows_of(table) else {
            return null_mut();
        };
        if !keys_are_ints(objects) {
            return null_mut();
        }
        let split = split_counts();
        let mut kept = vec![0_i64];
        for mut fields in rows {
            let key = PyLong_FromVoidPtr(fields[0] as usize as *mut c_void);
            if key.is_null() {
                return null_mut();
            }
            let obj = PyDict_GetItem(objects, key);
            Py_DECREF(key);
            if obj.is_null() || Py_TYPE(obj) as i64 != fields[1] {
                continue;
            }
            let references = count(obj, split);
            if references > fields[3] {
                fields[3] = references;
                kept.extend(fields);
            }
        }
        kept[0] = ((kept.len() - 1) / WIDTH) as i64;
        as_bytes(&kept)
    }
}

/// `_labtrace._still_growing_walked(table, tracked, running, code_type)`: `_still_growing`
/// over what a walk as `_scan`'s reaches now, without making its `{id: object}` dict
/// (most of the walk's cost). A count is read as that dict would hold it: less the
/// references the walk itself holds (`tracked`'s, and the code objects' members it took),
/// plus the dict's one.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn still_growing_walked(
    _module: *mut PyObject,
    args: *mut PyObject,
) -> *mut PyObject {
    let (mut table, mut tracked, mut running, mut code_type) =
        (null_mut(), null_mut(), null_mut(), null_mut());
    // SAFETY: the GIL is held; the parsed objects are borrowed from `args`. The collector is
    // off and no Python code runs from the walk to the last count, so every object reached
    // is live while it is read.
    unsafe {
        if PyArg_ParseTuple(
            args,
            c"O!O!OO:_still_growing_walked".as_ptr(),
            &raw mut PyBytes_Type,
            &mut table,
            &raw mut PyList_Type,
            &mut tracked,
            &mut running,
            &mut code_type,
        ) == 0
        {
            return null_mut();
        }
        let Some(rows) = rows_of(table) else {
            return null_mut();
        };
        let collecting = PyGC_Disable();
        let kept = reach(tracked, running, code_type).map(|reached| {
            let mut held_by_walk: AddressMap<i64> = AddressMap::default();
            for index in 0..PyList_Size(tracked) {
                *held_by_walk
                    .entry(PyList_GetItem(tracked, index) as usize)
                    .or_insert(0) += 1;
            }
            for &member in &reached.members {
                *held_by_walk.entry(member as usize).or_insert(0) += 1;
            }
            let split = split_counts();
            let mut kept = vec![0_i64];
            for mut fields in rows {
                let address = fields[0] as usize;
                let Some(&obj) = reached.objects.get(&address) else {
                    continue;
                };
                if Py_TYPE(obj) as i64 != fields[1] {
                    continue;
                }
                let references =
                    count(obj, split) - held_by_walk.get(&address).copied().unwrap_or(0) + 1;
                if references > fields[3] {
                    fields[3] = references;
                    kept.extend(fields);
                }
            }
            kept[0] = ((kept.len() - 1) / WIDTH) as i64;
            kept
        });
        if collecting == 1 {
            PyGC_Enable();
        }
        match kept {
            Some(kept) => as_bytes(&kept),
            None => null_mut(),
        }
    }
}

/// The rows of a table made by `_count_rows`; None with an error set when `table` is not
/// one.
///
/// # Safety
/// The GIL is held and `table` is a live bytes object.
unsafe fn rows_of(table: *mut PyObject) -> Option<Vec<[i64; WIDTH]>> {
    // SAFETY: as the caller promises; every read is within the object's `size` bytes.
    unsafe {
        let size = PyBytes_Size(table) as usize;
        let start = PyBytes_AsString(table).cast::<u8>();
        // Read as bytes: no alignment asked.
        let word = |index: usize| i64::from_ne_bytes(*start.add(index * 8).cast::<[u8; 8]>());
        let Some(rows) = (size >= 8)
            .then(|| word(0))
            .and_then(|rows| usize::try_from(rows).ok())
        else {
            PyErr_SetString(
                PyExc_ValueError,
                c"not a table of hunt's growing counts".as_ptr(),
            );
            return None;
        };
        if rows
            .checked_mul(WIDTH)
            .is_none_or(|words| words >= size / 8)
        {
            PyErr_SetString(
                PyExc_ValueError,
                c"a table of hunt's growing counts cut short".as_ptr(),
            );
            return None;
        }
        Some(
            (0..rows)
                .map(|row| std::array::from_fn(|field| word(1 + row * WIDTH + field)))
                .collect(),
        )
    }
}

/// Whether every key of `dict` is an `int` (an id), so that looking one up runs no Python
/// code (an `__eq__` of a key could free what is being read); false with an error set.
///
/// # Safety
/// The GIL is held and `dict` is a live dict.
unsafe fn keys_are_ints(dict: *mut PyObject) -> bool {
    let (mut position, mut key, mut value) = (0, null_mut(), null_mut());
    // SAFETY: as the caller promises; the items are borrowed while the dict is not changed.
    unsafe {
        while PyDict_Next(dict, &mut position, &mut key, &mut value) != 0 {
            if PyLong_CheckExact(key) == 0 {
                PyErr_SetString(PyExc_TypeError, c"keys are ids: ints".as_ptr());
                return false;
            }
        }
    }
    true
}

/// The table as a bytes object, a new reference (NULL with an error set).
///
/// # Safety
/// The GIL is held.
unsafe fn as_bytes(table: &[i64]) -> *mut PyObject {
    let bytes: Vec<u8> = table.iter().flat_map(|word| word.to_ne_bytes()).collect();
    // SAFETY: the GIL is held; the bytes are copied.
    unsafe { PyBytes_FromStringAndSize(bytes.as_ptr().cast::<c_char>(), bytes.len() as Py_ssize_t) }
}
