//! The heap as the collector sees it: what an object refers to (its `tp_traverse`, as
//! `gc.get_referents` lists it), and `_labtrace._scan`, `hunt`'s walk of every object it
//! can reach after each run (`src/hunt/hunt_census.py` says what the walk is for).
//!
//! The walk is native because it is most of what a hunt costs past running the target:
//! in Python it took 0.43 s of a 0.7 s naming on ujson's suite, and ran after every run.

use pyo3_ffi::*;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_int, c_void};
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::null_mut;

/// Addresses are keys enough: one multiplication spreads them (the default SipHash costs
/// most of a pass over a million objects).
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

pub(crate) type ByAddress = BuildHasherDefault<AddressHasher>;
pub(crate) type AddressSet = HashSet<usize, ByAddress>;
pub(crate) type AddressMap<V> = HashMap<usize, V, ByAddress>;

/// Appends what the collector's walk of `obj` visits to `found`, as `gc.get_referents` lists
/// it: nothing for an object the collector does not manage.
///
/// # Safety
/// The GIL is held and `obj` is a live object.
pub(crate) unsafe fn referents(obj: *mut PyObject, found: &mut Vec<*mut PyObject>) {
    // SAFETY: a live object's type is live; its slots are what CPython itself calls.
    unsafe {
        let tp = Py_TYPE(obj);
        if PyType_GetFlags(tp) & Py_TPFLAGS_HAVE_GC == 0 {
            return;
        }
        // A type object is managed only if it is a heap type: its `tp_is_gc` says.
        let is_gc = PyType_GetSlot(tp, Py_tp_is_gc);
        if !is_gc.is_null() {
            let is_gc: inquiry = std::mem::transmute(is_gc);
            if is_gc(obj) == 0 {
                return;
            }
        }
        let traverse = PyType_GetSlot(tp, Py_tp_traverse);
        if traverse.is_null() {
            return;
        }
        let traverse: traverseproc = std::mem::transmute(traverse);
        traverse(obj, collect, (found as *mut Vec<*mut PyObject>).cast());
    }
}

/// The visitor of `referents`: `found` is its `Vec`.
unsafe extern "C" fn collect(obj: *mut PyObject, found: *mut c_void) -> c_int {
    // SAFETY: `referents` passes its `&mut Vec` as `found`, for the traversal's duration.
    unsafe { (*found.cast::<Vec<*mut PyObject>>()).push(obj) };
    0
}

/// `_labtrace._scan(tracked, running, code_type)`: every object in `tracked` (the
/// collector's list) and everything those refer to, walked through `tp_traverse`, as
/// `(objects, seen)`: `{id: object}` and `{id: references the walk saw to it}`. The frames
/// whose ids are in `running` are not walked (their value stacks may hold stale pointers
/// on 3.10); a code object, which shows the collector nothing, is walked through its
/// constants and names. `tracked` itself is left out.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn scan(_module: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    let (mut tracked, mut running, mut code_type) = (null_mut(), null_mut(), null_mut());
    // SAFETY: the GIL is held; the parsed objects are borrowed from `args`. The collector
    // is off and nothing here runs Python code (the code objects' members are read as they
    // are), so nothing the walk reached is freed before the result holds it.
    unsafe {
        let parsed = PyArg_ParseTuple(
            args,
            c"O!OO:_scan".as_ptr(),
            &raw mut PyList_Type,
            &mut tracked,
            &mut running,
            &mut code_type,
        );
        if parsed == 0 {
            return null_mut();
        }
        let collecting = PyGC_Disable();
        let result = walk(tracked, running, code_type);
        if collecting == 1 {
            PyGC_Enable();
        }
        result
    }
}

/// [`scan`], with the collector off.
///
/// # Safety
/// The GIL is held, the collector is off, and the arguments are live.
unsafe fn walk(
    tracked: *mut PyObject,
    running: *mut PyObject,
    code_type: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as the caller promises; the objects reached stay live while `reached` is.
    unsafe {
        match reach(tracked, running, code_type) {
            Some(reached) => as_dicts(&reached.objects, &reached.seen),
            None => null_mut(),
        }
    }
}

/// What a walk reached: every object by address, and how many references to each the
/// walk saw. It owns the code objects' constants and names it walked through (they are
/// released when it is dropped, the GIL held), so each address stays a live object while
/// the collector is off and no Python code runs.
pub(crate) struct Reached {
    pub(crate) objects: AddressMap<*mut PyObject>,
    pub(crate) seen: AddressMap<usize>,
    pub(crate) members: Vec<*mut PyObject>,
}

impl Drop for Reached {
    fn drop(&mut self) {
        for &member in &self.members {
            // SAFETY: a new reference `reach` took, the GIL held by whoever walked.
            unsafe { Py_DECREF(member) };
        }
    }
}

/// The walk of [`scan`]: every object in the list `tracked`, and everything those refer
/// to; None with an error set.
///
/// # Safety
/// The GIL is held, the collector is off, and the arguments are live.
pub(crate) unsafe fn reach(
    tracked: *mut PyObject,
    running: *mut PyObject,
    code_type: *mut PyObject,
) -> Option<Reached> {
    // SAFETY: as the caller promises: nothing reached is freed while the walk runs.
    unsafe {
        let running = addresses(running)?;
        if !is_code_type(code_type) {
            PyErr_SetString(
                PyExc_TypeError,
                c"code_type: not the type of code objects".as_ptr(),
            );
            return None;
        }
        let listed = PyList_Size(tracked);
        let mut reached = Reached {
            objects: AddressMap::default(),
            seen: AddressMap::default(),
            members: Vec::new(),
        };
        let mut todo = Vec::with_capacity(listed as usize);
        for index in 0..listed {
            let obj = PyList_GetItem(tracked, index);
            reached.objects.insert(obj as usize, obj);
            todo.push(obj);
        }
        let mut found = Vec::new();
        while let Some(referrer) = todo.pop() {
            if running.contains(&(referrer as usize)) {
                continue;
            }
            found.clear();
            if Py_TYPE(referrer).cast::<PyObject>() == code_type {
                for name in [c"co_consts", c"co_names"] {
                    let member = PyObject_GetAttrString(referrer, name.as_ptr());
                    if member.is_null() {
                        return None;
                    }
                    reached.members.push(member);
                    found.push(member);
                }
            } else {
                referents(referrer, &mut found);
            }
            for &referent in &found {
                let key = referent as usize;
                if referent == tracked {
                    continue;
                }
                *reached.seen.entry(key).or_insert(0) += 1;
                if let Entry::Vacant(entry) = reached.objects.entry(key) {
                    entry.insert(referent);
                    todo.push(referent);
                }
            }
        }
        Some(reached)
    }
}

/// Whether `tp` is CPython's own type of code objects (a static type of `type`, named
/// `code`), whose members the walk reads without running any Python code.
///
/// # Safety
/// The GIL is held and `tp` is a live object.
unsafe fn is_code_type(tp: *mut PyObject) -> bool {
    // SAFETY: as the caller promises; `type`'s own `__name__` runs no Python code.
    unsafe {
        if Py_TYPE(tp) != &raw mut PyType_Type
            || PyType_GetFlags(tp.cast()) & Py_TPFLAGS_HEAPTYPE != 0
        {
            return false;
        }
        let name = PyObject_GetAttrString(tp, c"__name__".as_ptr());
        let is_code =
            !name.is_null() && PyUnicode_CompareWithASCIIString(name, c"code".as_ptr()) == 0;
        Py_XDECREF(name);
        PyErr_Clear();
        is_code
    }
}

/// The addresses an iterable of ids names.
///
/// # Safety
/// The GIL is held and `ids` is a live object.
unsafe fn addresses(ids: *mut PyObject) -> Option<AddressSet> {
    // SAFETY: the GIL is held; each item is a new reference, released at once.
    unsafe {
        let iterator = PyObject_GetIter(ids);
        if iterator.is_null() {
            return None;
        }
        let mut found = AddressSet::default();
        loop {
            let item = PyIter_Next(iterator);
            if item.is_null() {
                break;
            }
            let address = PyLong_AsVoidPtr(item);
            Py_DECREF(item);
            if address.is_null() && !PyErr_Occurred().is_null() {
                break;
            }
            found.insert(address as usize);
        }
        Py_DECREF(iterator);
        PyErr_Occurred().is_null().then_some(found)
    }
}

/// `({id: object}, {id: count})`, a new reference (NULL with an error set).
///
/// # Safety
/// The GIL is held, the collector is off, and every object in `objects` is live.
unsafe fn as_dicts(objects: &AddressMap<*mut PyObject>, seen: &AddressMap<usize>) -> *mut PyObject {
    // SAFETY: the GIL is held; every reference made here is released or given to a dict.
    unsafe {
        let (by_id, counts) = (PyDict_New(), PyDict_New());
        let mut ok = !by_id.is_null() && !counts.is_null();
        for (&address, &obj) in objects {
            ok = ok && set_item(by_id, address, obj);
        }
        for (&address, &count) in seen {
            let count = PyLong_FromSize_t(count);
            ok = ok && !count.is_null() && set_item(counts, address, count);
            Py_XDECREF(count);
        }
        pair_of(ok, by_id, counts)
    }
}

/// `(first, second)`, a new reference taking over both of them; NULL (releasing them) when
/// `filled` is false, an error being set.
///
/// # Safety
/// The GIL is held; `first` and `second` are new references, or NULL with `filled` false.
unsafe fn pair_of(filled: bool, first: *mut PyObject, second: *mut PyObject) -> *mut PyObject {
    // SAFETY: as the caller promises; the tuple takes references of its own.
    unsafe {
        let pair = if filled {
            PyTuple_Pack(2, first, second)
        } else {
            null_mut()
        };
        Py_XDECREF(first);
        Py_XDECREF(second);
        pair
    }
}

/// `dict[id] = value`; false with an error set.
///
/// # Safety
/// The GIL is held; `dict` and `value` are live.
unsafe fn set_item(dict: *mut PyObject, address: usize, value: *mut PyObject) -> bool {
    // SAFETY: the GIL is held; the key is a new reference, released after the dict took its own.
    unsafe {
        let key = PyLong_FromVoidPtr(address as *mut c_void);
        if key.is_null() {
            return false;
        }
        let set = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        set == 0
    }
}

/// `_labtrace._parents(roots)`: for `roots`, a list of `(name, object)`, the first object
/// through which a breadth-first walk (`tp_traverse`, as `gc.get_referents` lists) reaches
/// each object from them, as `({id: parent}, {id: a root's name})`. Following parents gives
/// the shortest chain from a root, as objgraph's back-reference chains do; a root reached
/// first from another is not one.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument.
pub unsafe extern "C" fn parents(_module: *mut PyObject, roots: *mut PyObject) -> *mut PyObject {
    // SAFETY: the GIL is held; `roots` is borrowed from the call, and each pair it holds
    // keeps its name and object alive. The collector is off and no Python code runs, so
    // nothing the walk reaches is freed before the result holds its parent.
    unsafe {
        let collecting = PyGC_Disable();
        let result = breadth_first(roots);
        if collecting == 1 {
            PyGC_Enable();
        }
        result
    }
}

/// [`parents`], with the collector off.
///
/// # Safety
/// As for [`parents`], and the collector is off.
unsafe fn breadth_first(roots: *mut PyObject) -> *mut PyObject {
    // SAFETY: as in `parents`.
    unsafe {
        let mut parent: AddressMap<*mut PyObject> = AddressMap::default();
        let mut queue = std::collections::VecDeque::new();
        let is_pair = |pair| PyTuple_Check(pair) != 0 && PyTuple_Size(pair) == 2;
        let listed = if PyList_Check(roots) != 0 {
            PyList_Size(roots)
        } else {
            -1
        };
        if listed < 0 || (0..listed).any(|index| !is_pair(PyList_GetItem(roots, index))) {
            PyErr_SetString(
                PyExc_TypeError,
                c"_parents(roots): a list of (name, object)".as_ptr(),
            );
            return null_mut();
        }
        let mut names = Vec::new(); // each root's address and name; its parent is NULL
        for index in 0..listed {
            let pair = PyList_GetItem(roots, index);
            let (name, root) = (PyTuple_GetItem(pair, 0), PyTuple_GetItem(pair, 1));
            if let Entry::Vacant(entry) = parent.entry(root as usize) {
                entry.insert(null_mut());
                names.push((root as usize, name));
                queue.push_back(root);
            }
        }
        let mut found = Vec::new();
        while let Some(obj) = queue.pop_front() {
            found.clear();
            referents(obj, &mut found);
            for &referent in &found {
                if let Entry::Vacant(entry) = parent.entry(referent as usize) {
                    entry.insert(obj);
                    queue.push_back(referent);
                }
            }
        }
        let (by_id, root_names) = (PyDict_New(), PyDict_New());
        let mut ok = !by_id.is_null() && !root_names.is_null();
        for (&address, &obj) in &parent {
            ok = ok && (obj.is_null() || set_item(by_id, address, obj));
        }
        for &(address, name) in &names {
            ok = ok && set_item(root_names, address, name);
        }
        pair_of(ok, by_id, root_names)
    }
}
