//! The `lab` module that lesson scripts import: refcount probes that report to the parent.
//!
//! It is plain Python (`lab.py`, compiled into the binary) because what it does is what a
//! learner would write: `sys.getrefcount`, `gc.get_referrers`, weak references. This file
//! only registers it as a built-in module whose body is that source.

use pyo3_ffi::*;
use std::ffi::{c_int, c_void, CString};
use std::ptr::null_mut;

const SOURCE: &str = include_str!("lab.py");

/// Runs `lab.py` in the new module's namespace.
unsafe extern "C" fn module_exec(module: *mut PyObject) -> c_int {
    let source = CString::new(SOURCE).expect("lab.py contains no NUL");
    // SAFETY: called by the import system with the GIL held and a live module; every result
    // is checked and every new reference released.
    unsafe {
        let namespace = PyModule_GetDict(module); // borrowed from the module
        let builtins = PyImport_ImportModule(c"builtins".as_ptr()); // new reference
        if builtins.is_null() {
            return -1;
        }
        let stored = PyDict_SetItemString(namespace, c"__builtins__".as_ptr(), builtins);
        Py_DECREF(builtins); // the namespace holds its own reference now
        if stored < 0 {
            return -1;
        }
        let code = Py_CompileString(source.as_ptr(), c"lab.py".as_ptr(), Py_file_input);
        if code.is_null() {
            return -1;
        }
        let result = PyEval_EvalCode(code, namespace, namespace);
        Py_DECREF(code); // the module's functions keep what they need of the code
        if result.is_null() {
            return -1;
        }
        Py_DECREF(result); // the value of running a module body is None
        0
    }
}

static mut SLOTS: [PyModuleDef_Slot; 2] = [
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
    m_name: c"lab".as_ptr(),
    m_doc: null_mut(),
    m_size: 0,
    m_methods: null_mut(),
    m_slots: &raw mut SLOTS as *mut PyModuleDef_Slot,
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// The module's init function, for `PyImport_AppendInittab`.
pub extern "C" fn init() -> *mut PyObject {
    // SAFETY: MODULE_DEF is a static that lives for the whole process.
    unsafe { PyModuleDef_Init(&raw mut MODULE_DEF) }
}
