//! The `hashtable` extension module, written against the raw CPython C API (`pyo3-ffi`).
//!
//! In Python terms the module is:
//!
//! ```python
//! class HashTable:                      # pytype.rs, a chained table (table/)
//!     def __init__(self, size=4, max_load=0.5, hash_func=hash): ...
//!     def set(self, key, value): ...; return self
//!     def get(self, key, default=None): ...
//!     def pop(self, key, default=<missing>): ...
//!     # plus h[k], h[k] = v, del h[k], len(h), k in h, iter(h), keys/values/items, ...
//!
//! class SafeHashTable:                  # safe.rs: the same table in safe PyO3, same API
//!     ...
//!
//! def terrible_hash(key):               # the talk's first hash function
//!     ...                               # int -> itself, float -> floor, str -> len, else 0
//!
//! __version__ = "0.1.0"                 # added in module init (a fault site, lesson 17)
//! ```
//!
//! It is an ordinary extension module built for CPython's stable ABI (`abi3`, Python 3.10 and
//! up, the limited API only), so one build imports into every CPython 3.10-3.15, release or
//! debug build, as modern extensions are written (CPython's `Modules/xxlimited.c` is the
//! model): heap types, module state, multi-phase init. `refcount-lab` carries it and puts it
//! on the `PYTHONPATH` of the interpreter it runs. The module knows nothing about processes,
//! lessons or rendering; it asks `faults::is_on` at its fault sites and sends `alloc`/`free`
//! events through `trace`. The same library also holds `_labtrace`, the `lab` probes' trace
//! emitter (at the end of this file), kept apart so that a script's own `import hashtable`
//! is what runs this module's init.
//!
//! Reading order: `table/` (the chained table in plain Rust, and the one block it lives in),
//! `pytype.rs` (the type, every `Py_INCREF`/`Py_DECREF`, the fault sites), `refcount.rs`
//! (how those two write the count), `iter.rs` (its iterator), this file (the module), then
//! `safe.rs` (the same type again, where PyO3's types do the counting).

mod blocks;
mod counts;
mod explain;
mod faults;
mod frames;
mod heap;
mod iter;
mod pytype;
mod refcount;
mod safe;
mod table;
mod tally;
mod trace;

use pyo3_ffi::compat::*;
use pyo3_ffi::*;
use std::ffi::{c_int, c_void, CStr};
use std::ptr::null_mut;

/// Marks a function's failure after it has set a Python exception: the caller returns
/// `NULL` or `-1` to the interpreter.
pub struct Raised;

/// Per-module state (instead of globals), as `Modules/xxlimited.c` does.
#[repr(C)]
struct ModuleState {
    /// `hashtable.HashTable` (owned).
    table_type: *mut PyObject,
    /// The iterator type behind `iter(table)` (owned).
    iter_type: *mut PyObject,
    /// The interned strings `"keys"` and `"hash"` (owned). Attribute names built afresh on
    /// every call would each take a slot in CPython's type attribute cache, which holds on
    /// to them. Each table looks `hash` up in the builtins when it is made, so the module
    /// holds no reference to `hash` itself and `sys.getrefcount(hash)` counts exactly what
    /// the talk counted: the builtins namespace and the tables.
    keys_name: *mut PyObject,
    hash_name: *mut PyObject,
    /// The id the next table gets in trace events.
    next_trace_id: u64,
}

/// The state of the module that defined `tp` or one of its bases (subclasses have none).
///
/// (With the full API this reads `ht_module` off the type struct; the limited API keeps type
/// objects opaque, so it walks `tp_base` with `PyType_GetSlot` and asks `PyType_GetModule`.)
///
/// # Safety
/// `tp` must be a live type object; the GIL must be held.
unsafe fn state_of(tp: *mut PyTypeObject) -> *mut ModuleState {
    // SAFETY: every type in the chain is live while `tp` is (a type owns its base); the error
    // `PyType_GetModule` raises for types without a module is cleared at once.
    unsafe {
        let mut base = tp;
        while !base.is_null() {
            if PyType_GetFlags(base) & Py_TPFLAGS_HEAPTYPE != 0 {
                let module = PyType_GetModule(base); // borrowed from the type
                if module.is_null() {
                    PyErr_Clear();
                } else if PyModule_GetDef(module) == &raw mut MODULE_DEF {
                    return PyModule_GetState(module) as *mut ModuleState;
                }
            }
            base = PyType_GetSlot(base, Py_tp_base) as *mut PyTypeObject;
        }
        unreachable!("HashTable objects always have HashTable among their bases")
    }
}

/// A new, zeroed, GC-tracked instance of the heap type `tp` (NULL with an exception set).
///
/// (The full API calls `tp->tp_alloc`; in the limited API type objects are opaque and the
/// slot is read with `PyType_GetSlot`.)
///
/// # Safety
/// `tp` must be a live type object; the GIL must be held.
unsafe fn alloc_instance(tp: *mut PyTypeObject) -> *mut PyObject {
    // SAFETY: every ready type has a `tp_alloc` slot (inherited from `object` at least).
    unsafe {
        let alloc: allocfunc = std::mem::transmute(PyType_GetSlot(tp, Py_tp_alloc));
        alloc(tp, 0)
    }
}

/// Frees the memory of an instance whose references were already released; its reference
/// to its type is then the caller's to release (read `Py_TYPE(obj)` first).
///
/// (The full API calls `Py_TYPE(obj)->tp_free`; the limited API reads the slot.)
///
/// # Safety
/// `obj` must be an instance of a heap type in its dealloc, untracked and cleared.
unsafe fn free_memory(obj: *mut PyObject) {
    // SAFETY: every ready type has a `tp_free` slot; the instance keeps its type alive.
    unsafe {
        let free: freefunc = std::mem::transmute(PyType_GetSlot(Py_TYPE(obj), Py_tp_free));
        free(obj.cast());
    }
}

/// Frees the memory of an instance whose references were already released, then releases
/// the instance's reference to its type.
///
/// # Safety
/// `obj` must be an instance of a heap type in its dealloc, untracked and cleared.
unsafe fn free_instance(obj: *mut PyObject) {
    // SAFETY: `tp` stays alive until the DECREF: the instance owned a reference to it.
    unsafe {
        let tp = Py_TYPE(obj);
        free_memory(obj);
        Py_DECREF(tp.cast()); // every instance of a heap type owns a reference to its type
    }
}

/// `type(obj).__name__`, as a new reference (NULL with an exception set).
///
/// (The full API reads `Py_TYPE(obj)->tp_name`; the limited API asks the type object.)
///
/// # Safety
/// `obj` must be a live object; the GIL must be held.
unsafe fn type_name(obj: *mut PyObject) -> *mut PyObject {
    // SAFETY: a live object's type is live; every call is checked.
    unsafe { type_attribute(Py_TYPE(obj).cast(), c"__name__") }
}

/// `tp.<name>` as a new reference (NULL with an exception set), looked up by an interned
/// name: a fresh string per call would take one more slot in CPython's type attribute
/// cache every time (the leak check sees it on 3.10).
///
/// # Safety
/// `tp` must be a live object; the GIL must be held.
unsafe fn type_attribute(tp: *mut PyObject, name: &std::ffi::CStr) -> *mut PyObject {
    // SAFETY: interning returns a new reference (the interpreter's own string if it exists),
    // released once the lookup is done.
    unsafe {
        let name = PyUnicode_InternFromString(name.as_ptr());
        if name.is_null() {
            return null_mut();
        }
        let value = PyObject_GetAttr(tp, name);
        Py_DECREF(name); // only needed for the lookup
        value
    }
}

/// `terrible_hash(key)`: the talk's hand-rolled hash. Ints hash to themselves, floats to their
/// floor, strings to their length, anything else to 0. Collisions galore, on purpose.
unsafe extern "C" fn terrible_hash(_module: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    // SAFETY: `key` is a live object borrowed from the caller; every call is checked.
    unsafe {
        if PyLong_Check(key) != 0 {
            Py_NewRef(key) // the caller gets its own reference to the int
        } else if PyFloat_Check(key) != 0 {
            let value = PyFloat_AsDouble(key);
            if !value.is_finite() {
                PyErr_SetString(
                    PyExc_ValueError,
                    c"terrible_hash cannot floor an infinite or NaN float".as_ptr(),
                );
                return null_mut();
            }
            PyLong_FromDouble(value.floor())
        } else if PyUnicode_Check(key) != 0 {
            let length = PyUnicode_GetLength(key);
            if length < 0 {
                return null_mut();
            }
            PyLong_FromSsize_t(length)
        } else {
            PyLong_FromLong(0)
        }
    }
}

/// Runs when the module is imported: makes the types and fills the module state.
unsafe extern "C" fn module_exec(module: *mut PyObject) -> c_int {
    // Before the first reference this module counts itself.
    refcount::install();
    // SAFETY: `module` is the module being initialised, with `m_size` bytes of zeroed state.
    unsafe {
        let state = PyModule_GetState(module) as *mut ModuleState;
        let table_type = PyType_FromModuleAndSpec(module, pytype::spec(), null_mut());
        if table_type.is_null() {
            return -1;
        }
        (*state).table_type = table_type; // the module state owns the type
        let iter_type = PyType_FromModuleAndSpec(module, iter::spec(), null_mut());
        if iter_type.is_null() {
            return -1;
        }
        (*state).iter_type = iter_type; // the module state owns the iterator type
        (*state).keys_name = PyUnicode_InternFromString(c"keys".as_ptr()); // owned
        if (*state).keys_name.is_null() {
            return -1;
        }
        (*state).hash_name = PyUnicode_InternFromString(c"hash".as_ptr()); // owned
        if (*state).hash_name.is_null() {
            return -1;
        }
        faults::install();
        if watch_forks() < 0 {
            return -1;
        }
        if PyModule_AddObjectRef(module, c"HashTable".as_ptr(), table_type) < 0 {
            return -1;
        }
        if add_safe_table(module) < 0 {
            return -1;
        }
        add_version(module)
    }
}

/// Has `os.fork()` tell, in each child, which faults ran before it (`faults::inherited`):
/// a child that crashes of damage done before the fork never runs a fault site itself.
///
/// # Safety
/// The GIL must be held.
unsafe fn watch_forks() -> c_int {
    // SAFETY: every call is checked; each new reference is released once, here.
    unsafe {
        let os = PyImport_ImportModule(c"os".as_ptr()); // new reference: ours
        if os.is_null() {
            return -1;
        }
        let register = PyObject_GetAttrString(os, c"register_at_fork".as_ptr()); // ours
        Py_DECREF(os);
        if register.is_null() {
            return -1;
        }
        let hook = PyCFunction_NewEx(&raw mut AFTER_FORK, null_mut(), null_mut()); // ours
        let arguments = PyTuple_New(0); // ours
        let keywords = PyDict_New(); // ours
        let mut result = null_mut();
        if !hook.is_null()
            && !arguments.is_null()
            && !keywords.is_null()
            // The dict takes a reference of its own to `hook`.
            && PyDict_SetItemString(keywords, c"after_in_child".as_ptr(), hook) == 0
        {
            result = PyObject_Call(register, arguments, keywords); // os keeps the hook
        }
        Py_XDECREF(hook);
        Py_XDECREF(arguments);
        Py_XDECREF(keywords);
        Py_DECREF(register);
        if result.is_null() {
            return -1;
        }
        Py_DECREF(result); // None
        0
    }
}

/// The hook `os.fork()` calls in the child.
unsafe extern "C" fn after_fork_in_child(
    _module: *mut PyObject,
    _: *mut PyObject,
) -> *mut PyObject {
    faults::inherited();
    // SAFETY: Py_None is a live object; the caller takes the new reference.
    unsafe { Py_NewRef(Py_None()) }
}

static mut AFTER_FORK: PyMethodDef = PyMethodDef {
    ml_name: c"_after_fork_in_child".as_ptr(),
    ml_meth: PyMethodDefPointer {
        PyCFunction: after_fork_in_child,
    },
    ml_flags: METH_NOARGS,
    ml_doc: c"Tells refcount-lab's trace which faults ran before this fork.".as_ptr(),
};

/// `hashtable.SafeHashTable`, the same table in safe PyO3 (`safe.rs`), for comparison.
///
/// # Safety
/// `module` must be the module being initialised; the GIL must be held.
unsafe fn add_safe_table(module: *mut PyObject) -> c_int {
    // SAFETY: module init runs attached to the interpreter, and `module` is a live module
    // borrowed for the length of this call.
    let (py, module) = unsafe {
        let py = pyo3::Python::assume_attached();
        (py, pyo3::Bound::from_borrowed_ptr(py, module))
    };
    let added = module
        .cast_into::<pyo3::types::PyModule>()
        .map_err(pyo3::PyErr::from)
        .and_then(|module| safe::add_to(&module));
    match added {
        Ok(()) => 0,
        Err(error) => {
            error.restore(py);
            -1
        }
    }
}

/// `hashtable.__version__`: a module attribute made from a new reference, the classic place
/// for `PyModule_AddObject`'s trap (it steals the reference only when it succeeds).
///
/// # Safety
/// `module` must be the module being initialised; the GIL must be held.
unsafe fn add_version(module: *mut PyObject) -> c_int {
    // SAFETY: every call is checked; `version` is ours until it is given away or released.
    unsafe {
        let version = PyUnicode_FromString(VERSION.as_ptr()); // a new reference: ours
        if version.is_null() {
            return -1;
        }
        // fault-site: module-add-object
        if faults::is_on("module-add-object") {
            if PyModule_AddObject(module, c"__version__".as_ptr(), version) < 0 {
                return -1; // `version` leaks: only a success steals it
            }
            Py_DECREF(version); // wrong: AddObject took ours; this releases the dict's
            0
        } else {
            // The module takes a reference of its own.
            let added = PyModule_AddObjectRef(module, c"__version__".as_ptr(), version);
            Py_DECREF(version); // ours, released whether the add worked or not
            added
        }
    }
}

/// The module's version, the crate's.
const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(version) => version,
    Err(_) => panic!("the crate version has no NUL byte"),
};

// traverse: visit every reference the module state owns.
unsafe extern "C" fn module_traverse(
    module: *mut PyObject,
    visit: visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on a live module; its state fields are NULL or owned refs.
    unsafe {
        let state = PyModule_GetState(module) as *mut ModuleState;
        if state.is_null() {
            return 0;
        }
        for field in [
            (*state).table_type,
            (*state).iter_type,
            (*state).keys_name,
            (*state).hash_name,
        ] {
            if !field.is_null() {
                let result = visit(field, arg);
                if result != 0 {
                    return result;
                }
            }
        }
        0
    }
}

// clear: drop every reference the module state owns (breaks module <-> type cycles).
unsafe extern "C" fn module_clear(module: *mut PyObject) -> c_int {
    // SAFETY: the state fields are NULL or owned references, and Py_CLEAR handles both.
    unsafe {
        let state = PyModule_GetState(module) as *mut ModuleState;
        if !state.is_null() {
            Py_CLEAR(&raw mut (*state).table_type);
            Py_CLEAR(&raw mut (*state).iter_type);
            Py_CLEAR(&raw mut (*state).keys_name);
            Py_CLEAR(&raw mut (*state).hash_name);
        }
        0
    }
}

// free: the module is going away; release what clear has not.
unsafe extern "C" fn module_free(module: *mut c_void) {
    // SAFETY: called once with the module being freed.
    unsafe {
        module_clear(module as *mut PyObject);
    }
}

static mut MODULE_METHODS: [PyMethodDef; 2] = [
    PyMethodDef {
        ml_name: c"terrible_hash".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: terrible_hash,
        },
        ml_flags: METH_O,
        ml_doc: c"terrible_hash(key) -> int: int -> itself, float -> floor, str -> length, else 0"
            .as_ptr(),
    },
    PyMethodDef::zeroed(),
];

static mut MODULE_SLOTS: [PyModuleDef_Slot; 2] = [
    PyModuleDef_Slot {
        slot: Py_mod_exec,
        value: module_exec as *mut c_void,
    },
    PyModuleDef_Slot {
        slot: 0,
        value: null_mut(),
    },
];

static mut MODULE_DEF: PyModuleDef = PyModuleDef {
    m_base: PyModuleDef_HEAD_INIT,
    m_name: c"hashtable".as_ptr(),
    m_doc: c"A chained hash table written with the raw CPython C API, faults included.".as_ptr(),
    m_size: size_of::<ModuleState>() as Py_ssize_t,
    m_methods: &raw mut MODULE_METHODS as *mut PyMethodDef,
    m_slots: &raw mut MODULE_SLOTS as *mut PyModuleDef_Slot,
    m_traverse: Some(module_traverse),
    m_clear: Some(module_clear),
    m_free: Some(module_free),
};

/// The module's init function, found by name when Python imports `hashtable`.
#[no_mangle]
pub extern "C" fn PyInit_hashtable() -> *mut PyObject {
    // SAFETY: MODULE_DEF is a static that lives for the whole process; multi-phase init only
    // reads it.
    unsafe { PyModuleDef_Init(&raw mut MODULE_DEF) }
}

// `_labtrace`: refcount-lab's plumbing, kept out of the module being taught. `lab` imports
// it before the script runs, so the trace pipes are taken over (and "done" registered)
// before any script code, and `hashtable` is first imported, and initialised, by the
// script itself. It lives in the same library (installed under a second name that links to
// it), so both modules share one trace sink.

/// Runs when `_labtrace` is imported: takes over the trace pipes, registers "done".
unsafe extern "C" fn lab_trace_exec(_module: *mut PyObject) -> c_int {
    trace::install();
    if trace::is_traced() {
        AT_EXIT.call_once(|| {
            // SAFETY: registering a plain function pointer, once per process.
            unsafe { Py_AtExit(Some(trace::done)) };
        });
    }
    0
}

/// The name and id `obj` has in trace events (`HashTable` or `SafeHashTable`), or `None` for
/// any other object.
///
/// # Safety
/// The GIL is held and `obj` is a live object.
pub(crate) unsafe fn traced_as(obj: *mut PyObject) -> Option<(&'static CStr, u64)> {
    // SAFETY: `obj` is a live object borrowed from the caller, and the GIL is held.
    unsafe {
        match pytype::trace_id_of(obj) {
            Some(id) => Some((c"HashTable", id)),
            None => {
                let py = pyo3::Python::assume_attached();
                safe::trace_id_of(&pyo3::Bound::from_borrowed_ptr(py, obj))
                    .map(|id| (c"SafeHashTable", id))
            }
        }
    }
}

static mut LAB_TRACE_METHODS: [PyMethodDef; 13] = [
    PyMethodDef {
        ml_name: c"_emit".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: trace::emit_python,
        },
        ml_flags: METH_O,
        ml_doc: c"_emit(line) -> bool: refcount-lab's trace, for the lab probes (not the table's)"
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_check_frames".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: explain::check_frames,
        },
        ml_flags: METH_O,
        ml_doc: c"_check_frames(known) -> bool: whether the caller's variable `known` is found where frames are read".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_report_threads".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: explain::report_threads,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_report_threads(prepare, get_objects, freeze_count): the threads event, as the last exit handler".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_scan".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: heap::scan,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_scan(tracked, running, code_type) -> (objects, seen): hunt's walk of every object it can reach".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_parents".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: heap::parents,
        },
        ml_flags: METH_O,
        ml_doc: c"_parents(roots) -> ({id: parent}, {id: name}): the shortest chains from [(name, object)] to every object they reach".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_census".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: tally::census,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_census(objects) -> {type name: count}: hunt's count of live objects per type".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_count_traces".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: tally::count_traces,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_count_traces(traces) -> {frames: (blocks, bytes)}: tracemalloc's live blocks per traceback".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_count_rows".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: counts::count_rows,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_count_rows(objects, seen) -> table: a row for every mortal object, for hunt's GrowingCounts".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_still_growing".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: counts::still_growing,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_still_growing(table, objects) -> table: the rows whose object gained references since".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_still_growing_walked".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: counts::still_growing_walked,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"_still_growing_walked(table, tracked, running, code_type) -> table: _still_growing over a walk as _scan's".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_watch_blocks".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: blocks::watch_blocks,
        },
        ml_flags: METH_O,
        ml_doc: c"_watch_blocks(record): keep the object blocks made from now on, or stop keeping new ones".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_blocks_alive".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: blocks::blocks_alive,
        },
        ml_flags: METH_O,
        ml_doc: c"_blocks_alive(types) -> [(object, size)]: end the watch; the objects in the blocks it kept".as_ptr(),
    },
    PyMethodDef::zeroed(),
];

static mut LAB_TRACE_SLOTS: [PyModuleDef_Slot; 2] = [
    PyModuleDef_Slot {
        slot: Py_mod_exec,
        value: lab_trace_exec as *mut c_void,
    },
    PyModuleDef_Slot {
        slot: 0,
        value: null_mut(),
    },
];

static mut LAB_TRACE_DEF: PyModuleDef = PyModuleDef {
    m_base: PyModuleDef_HEAD_INIT,
    m_name: c"_labtrace".as_ptr(),
    m_doc: c"refcount-lab's signed trace emitter, for the lab probes.".as_ptr(),
    m_size: 0,
    m_methods: &raw mut LAB_TRACE_METHODS as *mut PyMethodDef,
    m_slots: &raw mut LAB_TRACE_SLOTS as *mut PyModuleDef_Slot,
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// Registers the trace's `done` event once per process, however often the module is imported.
static AT_EXIT: std::sync::Once = std::sync::Once::new();

/// `_labtrace`'s init function, found by name when Python imports `_labtrace`.
#[no_mangle]
pub extern "C" fn PyInit__labtrace() -> *mut PyObject {
    // SAFETY: LAB_TRACE_DEF is a static that lives for the whole process; multi-phase init
    // only reads it.
    unsafe { PyModuleDef_Init(&raw mut LAB_TRACE_DEF) }
}
