//! `_labtrace._report_threads(prepare, get_objects, freeze_count)`, `lab`'s last exit
//! handler: at exit, while other threads still run, the native tables CPython keeps alive
//! for them, not lost by a leak. A table is such if (a) every reference to it is explained,
//! each counted once, by an object the collector sees or by a running function's frame
//! (its variables, namespace and own fields), and (b) something alive reaches it: those
//! frames' variables, globals, builtins, namespace and fields, or a module.
//!
//! One native pass, with the GIL held, sending the `threads` event itself. (Walked in
//! Python, the count could be interrupted by a thread that drops a variable the walk had
//! counted, and an over-counted table read explained.) Once the frames are read nothing
//! here runs Python code: the collector is off, attributes read are C getters, and
//! references are released at the end only.

use crate::frames;
use crate::heap::{referents, AddressMap, AddressSet};
use pyo3_ffi::*;
use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

/// New references, released when this is dropped: at the end, when a release that runs
/// Python code (a finalizer) no longer matters.
struct Owned(Vec<*mut PyObject>);

impl Owned {
    /// Keeps `obj`, a new reference, or gives `None` for NULL (an error set).
    fn keep(&mut self, obj: *mut PyObject) -> Option<*mut PyObject> {
        if obj.is_null() {
            return None;
        }
        self.0.push(obj);
        Some(obj)
    }

    /// `obj.name`, kept.
    ///
    /// # Safety
    /// The GIL is held and `obj` is a live object.
    unsafe fn attribute(&mut self, obj: *mut PyObject, name: &CStr) -> Option<*mut PyObject> {
        // SAFETY: the GIL is held; the result is a new reference, which `keep` owns.
        self.keep(unsafe { PyObject_GetAttrString(obj, name.as_ptr()) })
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        for &obj in &self.0 {
            // SAFETY: each is a reference this owns, dropped while the native call that made
            // it still holds the GIL.
            unsafe { Py_DECREF(obj) };
        }
    }
}

/// The running frames' variables, with what they reach from and what holds them.
#[derive(Default)]
struct Frames {
    /// Each frame on a thread's chain (the frame objects hold their variables on 3.10).
    running: AddressSet,
    /// What is certainly alive: `sys.modules`, and the frames' variables, globals, builtins,
    /// namespaces and own fields.
    roots: Vec<*mut PyObject>,
    /// The references the frames hold themselves, by address: their variables (one per
    /// slot), namespaces and own fields. Each is an explained reference.
    variables: Vec<usize>,
}

// CPython's own, exported by every version though not in the stable ABI: the threads of
// this interpreter (`sys._current_frames()` also lists other interpreters' on 3.12 and
// 3.13, whose objects run under their own lock).
unsafe extern "C" {
    fn PyInterpreterState_ThreadHead(interp: *mut PyInterpreterState) -> *mut PyThreadState;
    fn PyThreadState_Next(tstate: *mut PyThreadState) -> *mut PyThreadState;
}

/// Walks the frames of every thread of this interpreter but `caller`'s (this call's own):
/// `None` with an error set, or `Some(None)` when a frame's slots cannot be read.
///
/// # Safety
/// The GIL is held and `caller` is the calling frame.
unsafe fn walk_frames(owned: &mut Owned, caller: *mut PyObject) -> Option<Option<Frames>> {
    let mut walk = Frames::default();
    // 3.10's frame objects hold their globals and builtins (later, the function does).
    let holds_globals = !frames::walk_lists_own_fields_only();
    // SAFETY: the GIL is held: no thread of this interpreter ends meanwhile; every frame read
    // is kept by `owned`, and what it holds lives as long as it does.
    unsafe {
        walk.roots.push(PyImport_GetModuleDict()); // the modules: alive
        let mut thread = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
        while !thread.is_null() {
            let top = owned.keep(PyThreadState_GetFrame(thread).cast());
            thread = PyThreadState_Next(thread);
            let Some(mut frame) = top else {
                continue; // a thread running no Python code
            };
            loop {
                walk.running.insert(frame as usize);
                if frame != caller {
                    let Some(held) = frames::local_addresses(frame) else {
                        return unreadable();
                    };
                    walk.roots
                        .extend(held.iter().map(|&address| address as *mut PyObject));
                    walk.variables.extend(held);
                    // Borrowed from here on: the frame keeps them alive.
                    let globals = PyObject_GetAttrString(frame, c"f_globals".as_ptr());
                    Py_XDECREF(globals);
                    let builtins = PyObject_GetAttrString(frame, c"f_builtins".as_ptr());
                    Py_XDECREF(builtins);
                    if globals.is_null() || builtins.is_null() {
                        return None;
                    }
                    walk.roots.extend([globals, builtins]);
                    if holds_globals {
                        walk.variables.extend([globals as usize, builtins as usize]);
                    }
                    let Some(namespace) = frames::namespace(frame, globals, builtins) else {
                        return Some(None);
                    };
                    if !namespace.is_null() {
                        // The frame's own reference: explained, and alive.
                        walk.roots.push(namespace);
                        walk.variables.push(namespace as usize);
                    }
                    if !holds_globals {
                        // What the frame object holds itself (its trace function, a name a
                        // 3.13+ function was given through `f_locals`) is alive too. The
                        // collector does not track a running frame object (3.11+): its
                        // references are counted here, or with the rest if it is tracked.
                        if PyObject_GC_IsTracked(frame) == 1 {
                            walk.roots.push(frame);
                        } else {
                            let before = walk.roots.len();
                            referents(frame, &mut walk.roots);
                            let own = walk.roots[before..].iter().map(|&obj| obj as usize);
                            walk.variables.extend(own.collect::<Vec<_>>());
                        }
                    }
                }
                let back = owned.attribute(frame, c"f_back")?;
                if back == Py_None() {
                    break;
                }
                frame = back;
            }
        }
    }
    Some(Some(walk))
}

/// What a step gives when a frame's slots could not be read: `Some(None)` (nothing is
/// excused), or `None` if that was an error, which stays set.
fn unreadable<T>() -> Option<Option<T>> {
    // SAFETY: the GIL is held by every caller.
    if unsafe { PyErr_Occurred() }.is_null() {
        Some(None)
    } else {
        None
    }
}

/// What `roots` reach, each object once; and those of them the collector tracks but
/// `in_list` left out (`gc.freeze()` hid them, or they are newer than the list), borrowed.
///
/// # Safety
/// The GIL is held and the roots are live objects; no Python code runs meanwhile.
unsafe fn reach(
    roots: Vec<*mut PyObject>,
    in_list: &AddressSet,
) -> (AddressSet, Vec<*mut PyObject>) {
    let mut reached = AddressSet::default();
    let mut unlisted = Vec::new();
    let mut todo = roots;
    while let Some(obj) = todo.pop() {
        if !reached.insert(obj as usize) {
            continue;
        }
        // SAFETY: `obj` is reached from a live root, and nothing is freed meanwhile.
        unsafe {
            if !in_list.contains(&(obj as usize)) && PyObject_GC_IsTracked(obj) == 1 {
                unlisted.push(obj);
            }
            referents(obj, &mut todo);
        }
    }
    (reached, unlisted)
}

/// The frame attribute of generator-like objects, by type: `((type, name), ...)`.
///
/// # Safety
/// The GIL is held and `pairs` is a live object.
unsafe fn frame_attributes(pairs: *mut PyObject) -> Option<Vec<(usize, *mut PyObject)>> {
    // SAFETY: the GIL is held; items are borrowed from `pairs`, which the caller holds.
    unsafe {
        if PyTuple_Check(pairs) == 0 {
            PyErr_SetString(
                PyExc_TypeError,
                c"generators: a tuple of (type, name)".as_ptr(),
            );
            return None;
        }
        let mut found = Vec::new();
        for index in 0..PyTuple_Size(pairs) {
            let pair = PyTuple_GetItem(pairs, index);
            if PyTuple_Check(pair) == 0 || PyTuple_Size(pair) != 2 {
                PyErr_SetString(
                    PyExc_TypeError,
                    c"generators: a tuple of (type, name)".as_ptr(),
                );
                return None;
            }
            found.push((PyTuple_GetItem(pair, 0) as usize, PyTuple_GetItem(pair, 1)));
        }
        Some(found)
    }
}

/// How the trace names a table: its type's name and its id.
type Traced = (&'static CStr, u64);

/// The tables explained and reached, by their trace names, `Some(None)` when a frame cannot be read (nothing is
/// excused then), or `None` with a Python error set.
///
/// Two steps. First what may run an audit hook (Python code, during which other threads
/// may take a turn): the collector's list, and the frame of each generator, coroutine and
/// async generator in it. A reference moved meanwhile is counted where it is at the second
/// step, since the list only keeps its objects alive. Then, from the threads' frames
/// on, nothing gives another thread a turn: the frames are read and the references counted.
///
/// # Safety
/// The GIL is held; the arguments are live objects.
unsafe fn held_tables(
    owned: &mut Owned,
    generators: *mut PyObject,
    get_objects: *mut PyObject,
    freeze_count: *mut PyObject,
) -> Option<Option<Vec<Traced>>> {
    if !FRAMES_READ_RIGHT.load(Ordering::Relaxed) {
        return Some(None);
    }
    // SAFETY: the GIL is held throughout; every object used is kept by `owned`, the
    // collector's list, or something they hold.
    unsafe {
        // PyO3 makes SafeHashTable's type object the first time it is asked about (which may
        // give another thread a turn): ask now, in the first step, not in the count.
        crate::traced_as(get_objects);
        let generators = frame_attributes(generators)?;
        // Functions `lab` took at start-up: C functions, which run no Python code but an
        // audit hook's.
        let functions = [get_objects, freeze_count];
        if functions
            .iter()
            .any(|&function| PyCFunction_Check(function) == 0)
        {
            PyErr_SetString(
                PyExc_TypeError,
                c"expected gc.get_objects and gc.get_freeze_count".as_ptr(),
            );
            return None;
        }
        let listed = owned.keep(PyObject_CallObject(get_objects, null_mut()))?;
        if PyList_Check(listed) == 0 {
            PyErr_SetString(PyExc_TypeError, c"get_objects() gave no list".as_ptr());
            return None;
        }
        let mut objects: Vec<*mut PyObject> = (0..PyList_Size(listed))
            .map(|index| PyList_GetItem(listed, index))
            .collect();
        let in_list: AddressSet = objects.iter().map(|&obj| obj as usize).collect();
        // The frame of a Python function that called this one, if any (not when atexit
        // itself calls): its variables are this call's own.
        let caller = PyEval_GetFrame().cast::<PyObject>();
        // The generators `gc.freeze()` hid are not in the list: found from what is alive now,
        // held, then asked for their frames with the rest (the second step walks again).
        // The attribute holding `obj`'s frame, if it is a generator, coroutine or async
        // generator.
        let frame_attribute = |obj: *mut PyObject| {
            let kind = Py_TYPE(obj) as usize;
            generators
                .iter()
                .find(|&&(tp, _)| tp == kind)
                .map(|&(_, name)| name)
        };
        let is_generator = |obj| frame_attribute(obj).is_some();
        let mut candidates: Vec<_> = objects
            .iter()
            .copied()
            .filter(|&obj| is_generator(obj))
            .collect();
        let frozen = owned.keep(PyObject_CallObject(freeze_count, null_mut()))?;
        if PyLong_AsLong(frozen) > 0 {
            let Some(walk) = walk_frames(owned, caller)? else {
                return Some(None);
            };
            for obj in reach(walk.roots, &in_list).1 {
                if is_generator(obj) {
                    candidates.push(owned.keep(Py_NewRef(obj))?); // before any hook runs
                }
            }
        }
        // Each generator-like object's frame (the same frame object while it lives).
        let mut frame_of = AddressMap::default();
        for obj in candidates {
            if let Some(name) = frame_attribute(obj) {
                frame_of.insert(obj as usize, owned.keep(PyObject_GetAttr(obj, name))?);
            }
        }

        // From here on nothing runs Python code or gives another thread a turn.
        let Some(walk) = walk_frames(owned, caller)? else {
            return Some(None);
        };
        let Frames {
            running,
            roots,
            mut variables,
        } = walk;

        // What something alive reaches; with the objects `gc.freeze()` hid from the
        // collector's list (and any made since it was taken), counted below like the rest.
        let (reached, unlisted) = reach(roots, &in_list);
        for obj in unlisted {
            objects.push(owned.keep(Py_NewRef(obj))?); // held as the list holds the others
        }

        // What holds a running frame's variables, counted above: the frame object (3.10) or
        // the generator or coroutine running it. Their other references go uncounted.
        let mut owners = if frames::walk_lists_own_fields_only() {
            AddressSet::default() // a running frame object's walk lists its own fields only
        } else {
            running.clone()
        };
        let borrowing_stacks = frames::borrowing_stacks();
        for &obj in &objects {
            if !is_generator(obj) {
                continue;
            }
            let Some(&frame) = frame_of.get(&(obj as usize)) else {
                // Made after the first step: its frame is not known, and what it holds
                // counts for nothing.
                owners.insert(obj as usize);
                continue;
            };
            if frame == Py_None() {
                continue;
            }
            if running.contains(&(frame as usize)) {
                owners.insert(obj as usize);
                continue;
            }
            if !borrowing_stacks {
                continue;
            }
            // Finished since the first step (an audit hook gave its thread a turn), its frame
            // object holds the variables now, and the collector's walk of that counts them.
            let Some(finished) = frames::holds_its_variables(frame) else {
                return unreadable();
            };
            if !finished {
                // Suspended, on 3.14+: the collector's walk of it also lists the values its
                // stack only borrowed; count its variables' own references instead.
                owners.insert(obj as usize);
                let Some(held) = frames::local_addresses(frame) else {
                    return unreadable();
                };
                variables.extend(held);
            }
        }

        // The references explained, by table (nothing else is asked about). Each table in
        // `objects` starts with one: this call's own, the collector's list's or `owned`'s.
        let mut explained: AddressMap<(usize, Traced)> = objects
            .iter()
            .filter_map(|&obj| Some((obj as usize, (1, crate::traced_as(obj)?))))
            .collect();
        let mut count = |address: usize| {
            if let Some((references, _)) = explained.get_mut(&address) {
                *references += 1;
            }
        };
        variables.into_iter().for_each(&mut count);
        let mut visited = Vec::new();
        for &obj in &objects {
            if !owners.contains(&(obj as usize)) {
                referents(obj, &mut visited);
                visited
                    .drain(..)
                    .for_each(|referent| count(referent as usize));
            }
        }
        let held = explained
            .into_iter()
            .filter(|&(table, (references, _))| {
                let count = Py_REFCNT(table as *mut PyObject);
                usize::try_from(count).is_ok_and(|count| count <= references)
                    && reached.contains(&table)
            })
            .map(|(_, (_, traced))| traced)
            .collect();
        Some(Some(held))
    }
}

/// Whether `_labtrace._check_frames` found the variable it was given where this reads a
/// frame's variables (checked once, as `lab` is imported).
static FRAMES_READ_RIGHT: AtomicBool = AtomicBool::new(false);

/// `_labtrace._check_frames(known)`: whether the frames of this interpreter are read right,
/// checked on the caller's frame, which holds `known` in a variable.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument.
pub unsafe extern "C" fn check_frames(
    _module: *mut PyObject,
    known: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: the GIL is held; the caller's frame is live while it calls.
    unsafe {
        let caller = PyEval_GetFrame().cast::<PyObject>();
        let right = !caller.is_null()
            && frames::local_addresses(caller).is_some_and(|held| held.contains(&(known as usize)));
        if !PyErr_Occurred().is_null() {
            return null_mut();
        }
        FRAMES_READ_RIGHT.store(right, Ordering::Relaxed);
        PyBool_FromLong(right.into())
    }
}

/// Tables named in one threads event (about 400 KB; an event is at most 1 MiB).
const HELD_PER_EVENT: usize = 10_000;

/// `_labtrace._report_threads(prepare, get_objects, freeze_count)`, called by atexit as the
/// last exit handler: `prepare()` gives the names of the threads still running, as JSON,
/// and `((type, frame attribute name), ...)` for generators (or None: no thread runs). Then
/// the tables those threads keep alive are counted, and the `threads` event sent, with the
/// GIL held and no Python code run: no thread takes a turn between the count and the
/// interpreter's shutdown, which stops them. The collector is off meanwhile (it would run
/// finalizers).
///
/// # Safety
/// Called by CPython with the GIL held and a live argument tuple.
pub unsafe extern "C" fn report_threads(
    _module: *mut PyObject,
    args: *mut PyObject,
) -> *mut PyObject {
    let (mut prepare, mut get_objects, mut freeze_count) = (null_mut(), null_mut(), null_mut());
    // SAFETY: the GIL is held; the parsed objects are borrowed from `args`, `prepared` is a
    // new reference kept by `owned`.
    unsafe {
        let parsed = PyArg_ParseTuple(
            args,
            c"OOO:_report_threads".as_ptr(),
            &mut prepare,
            &mut get_objects,
            &mut freeze_count,
        );
        if parsed == 0 {
            return null_mut();
        }
        let mut owned = Owned(Vec::new());
        let Some(prepared) = owned.keep(PyObject_CallObject(prepare, null_mut())) else {
            return null_mut();
        };
        if prepared == Py_None() {
            return Py_NewRef(Py_None()); // no other thread: nothing to report
        }
        let (names, generators) = match prepared_parts(prepared) {
            Some(parts) => parts,
            None => return null_mut(),
        };
        let collecting = PyGC_Disable();
        let held = held_tables(&mut owned, generators, get_objects, freeze_count);
        let result = match held {
            None => null_mut(),
            Some(tables) => {
                let mut named: Vec<String> = tables
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(kind, id)| {
                        format!(r#"{{"type": "{}", "id": {id}}}"#, kind.to_string_lossy())
                    })
                    .collect();
                named.sort();
                send_in_parts(&names, &named);
                Py_NewRef(Py_None())
            }
        };
        drop(owned); // now: releasing may run a finalizer
        if collecting == 1 {
            PyGC_Enable();
        }
        result
    }
}

/// The JSON of the threads' names and the generators' tuple `prepare()` gave.
///
/// # Safety
/// The GIL is held and `prepared` is a live object.
unsafe fn prepared_parts(prepared: *mut PyObject) -> Option<(String, *mut PyObject)> {
    // SAFETY: the GIL is held; items are borrowed from `prepared`, which the caller keeps.
    unsafe {
        if PyTuple_Check(prepared) == 0 || PyTuple_Size(prepared) != 2 {
            PyErr_SetString(
                PyExc_TypeError,
                c"prepare() gives (names, generators)".as_ptr(),
            );
            return None;
        }
        let mut size: Py_ssize_t = 0;
        let text = PyUnicode_AsUTF8AndSize(PyTuple_GetItem(prepared, 0), &mut size);
        if text.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(text.cast::<u8>(), usize::try_from(size).ok()?);
        let names = String::from_utf8_lossy(bytes).into_owned();
        Some((names, PyTuple_GetItem(prepared, 1)))
    }
}

/// Sends the `threads` event, naming the tables in parts; to stderr outside refcount-lab.
fn send_in_parts(names: &str, held: &[String]) {
    let parts: Vec<&[String]> = if held.is_empty() {
        vec![&[]]
    } else {
        held.chunks(HELD_PER_EVENT).collect()
    };
    for part in parts {
        let body = format!(
            r#"{{"ev": "threads", "names": {names}, "held": [{}]}}"#,
            part.join(", ")
        );
        if !crate::trace::emit(&body) {
            eprintln!("lab: {body}");
        }
    }
}
