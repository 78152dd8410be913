//! A running function's variables, as the addresses its local slots hold (cells and free
//! variables as their cell objects).
//!
//! Read at exit when threads still run (`explain.rs`), to explain every reference to a
//! table that was never freed: a variable of a running function is one. Python's own view,
//! `f_locals`, copies a frame's variables into a dict (3.10-3.12; 3.13+ gives a view),
//! about a hundred times slower for a function of 30 000 variables (5 ms against 0.05 ms a
//! frame on 3.12).
//!
//! Where a frame keeps its slots is CPython's private business and changes between
//! versions, so this knows the versions it was checked on (3.10-3.15) and answers `None`
//! for any other. `explain.rs` checks the layout on a frame of its own (a variable it
//! knows) before it trusts an answer; only then does it take the addresses for objects (a
//! variable's slot owns a reference to a live object).

use pyo3_ffi::*;
use std::ffi::CStr;
use std::ptr::null_mut;

/// Where a frame's slots (local variables, cells and free variables, then the value
/// stack, not read here) are, and where its namespace (`f_locals`) is.
#[derive(Clone, Copy)]
enum Layout {
    /// 3.10: in the frame object itself, which points at the first stack slot.
    InFrameObject,
    /// 3.11 and later: in the interpreter frame the frame object points to, from
    /// `slots_at` bytes in; its `f_globals`, `f_builtins` and `f_locals` fields follow each
    /// other from `globals_at`. `tagged`: the low two bits of a slot are tag bits (3.14+,
    /// `_PyStackRef`), set when the slot owns no reference.
    InInterpreterFrame {
        slots_at: usize,
        globals_at: usize,
        tagged: bool,
    },
}

/// 3.10's `PyFrameObject` fields: after `PyObject_VAR_HEAD` (3 words), `f_back`, `f_code`,
/// `f_builtins`, `f_globals`, `f_locals` and `f_valuestack`.
const F_BUILTINS: usize = 5 * 8;
const F_GLOBALS: usize = 6 * 8;
const F_LOCALS: usize = 7 * 8;
const F_VALUESTACK: usize = 8 * 8;
/// 3.11+'s `PyFrameObject.f_frame`: after `PyObject_HEAD` (2 words) and `f_back`.
const F_FRAME: usize = 3 * 8;

/// This interpreter's minor version, as it was built (which no script can change).
pub(crate) fn python_minor() -> Option<u32> {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string, "3.11.7 (main, ...".
    let version = unsafe { CStr::from_ptr(Py_GetVersion()) }.to_str().ok()?;
    version
        .strip_prefix("3.")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The layout of this interpreter's frames, or `None` for a version nobody checked.
fn layout() -> Option<Layout> {
    match python_minor()? {
        10 => Some(Layout::InFrameObject),
        // `_PyInterpreterFrame`: 8 pointers (`f_func` first on 3.11; `f_code` or
        // `f_executable`, `previous` and `f_funcobj` first after), an int, a u16 or bool and
        // a char, then slots.
        11 => Some(Layout::InInterpreterFrame {
            slots_at: 72,
            globals_at: 8,
            tagged: false,
        }),
        12 | 13 => Some(Layout::InInterpreterFrame {
            slots_at: 72,
            globals_at: 24,
            tagged: false,
        }),
        // 9 pointers (the stack pointer joined), a u16 and two chars, then the slots.
        14 | 15 => Some(Layout::InInterpreterFrame {
            slots_at: 80,
            globals_at: 24,
            tagged: true,
        }),
        _ => None,
    }
}

/// Where `frame`'s fields live: the frame object (3.10), or the interpreter frame it points
/// to, on its thread's stack while it runs, in itself after (3.11+); `None` if it has none.
///
/// # Safety
/// `frame` is a live frame object of this interpreter, whose frames are laid out as `layout`.
unsafe fn fields_of(frame: *mut PyObject, layout: Layout) -> Option<*const u8> {
    let frame_at = frame.cast::<u8>().cast_const();
    match layout {
        Layout::InFrameObject => Some(frame_at),
        Layout::InInterpreterFrame { .. } => {
            // SAFETY: a 3.11+ frame object has this field.
            let interpreter_frame = unsafe { *frame_at.add(F_FRAME).cast::<*const u8>() };
            (!interpreter_frame.is_null()).then_some(interpreter_frame)
        }
    }
}

/// `frame`'s namespace as the frame holds it (`f_locals`: a module's, a class body's,
/// `exec`'s; on 3.10-3.12 a function's `locals()` snapshot), or NULL; `None` when the fields
/// read are not the `globals` and `builtins` given. Read, not asked for: asking runs the
/// namespace's own `__setitem__` and `__delitem__` (3.10-3.12) or makes a view (3.13+).
///
/// # Safety
/// The GIL is held; `frame` is a live frame object, `globals` and `builtins` its own.
pub(crate) unsafe fn namespace(
    frame: *mut PyObject,
    globals: *mut PyObject,
    builtins: *mut PyObject,
) -> Option<*mut PyObject> {
    let layout = layout()?;
    let (globals_at, builtins_at, locals_at) = match layout {
        Layout::InFrameObject => (F_GLOBALS, F_BUILTINS, F_LOCALS),
        Layout::InInterpreterFrame { globals_at, .. } => {
            (globals_at, globals_at + 8, globals_at + 16)
        }
    };
    // SAFETY: the fields exist in this layout; they are checked against the frame's own
    // `f_globals` and `f_builtins` before the third is trusted.
    unsafe {
        let fields = fields_of(frame, layout)?;
        let read = |at: usize| *fields.add(at).cast::<*mut PyObject>();
        (read(globals_at) == globals && read(builtins_at) == builtins).then(|| read(locals_at))
    }
}

/// Whether `frame` holds its variables itself: a 3.10 frame, or a 3.11+ frame object whose
/// function has finished (a generator's that ran to its end, for one), which took its
/// interpreter frame into its own memory. `None` when it cannot tell.
///
/// # Safety
/// The GIL is held and `frame` is a live frame object.
pub(crate) unsafe fn holds_its_variables(frame: *mut PyObject) -> Option<bool> {
    let layout = layout()?;
    if let Layout::InFrameObject = layout {
        return Some(true);
    }
    // SAFETY: the GIL is held; `frame` is a live frame object of this layout; `size` is a
    // new reference, released at once.
    unsafe {
        let fields = fields_of(frame, layout)? as usize;
        let start = frame as usize;
        Some(fields >= start && fields < start + size_of_frame(frame)?)
    }
}

/// Whether the collector's walk of a running frame object lists only the frame object's own
/// fields (3.11+: `f_back`, `f_trace`, and on 3.13+ the names written through `f_locals`
/// and the values it replaced), not its variables and value stack (3.10).
pub(crate) fn walk_lists_own_fields_only() -> bool {
    matches!(layout(), Some(Layout::InInterpreterFrame { .. }))
}

/// Whether this interpreter's frames keep tagged slots (3.14+), whose collector walk of a
/// suspended generator also lists the values its stack only borrows.
pub(crate) fn borrowing_stacks() -> bool {
    matches!(
        layout(),
        Some(Layout::InInterpreterFrame { tagged: true, .. })
    )
}

/// The bytes of `frame` (`frame.__sizeof__()`), its own trailing slots included; `None`
/// with an error set if the call fails.
///
/// # Safety
/// The GIL is held and `frame` is a live frame object.
unsafe fn size_of_frame(frame: *mut PyObject) -> Option<usize> {
    // SAFETY: the GIL is held; `size` is a new reference, released at once.
    unsafe {
        let size = PyObject_CallMethod(frame, c"__sizeof__".as_ptr(), null_mut());
        if size.is_null() {
            return None;
        }
        let bytes = PyLong_AsSsize_t(size);
        Py_DECREF(size); // ours, from the call
        usize::try_from(bytes).ok()
    }
}

/// `len(obj.name)`, or `None` with the error cleared.
///
/// # Safety
/// The GIL is held and `obj` is a live object.
unsafe fn length_of(obj: *mut PyObject, name: &CStr) -> Option<Py_ssize_t> {
    // SAFETY: the GIL is held; `value` is a new reference, released below.
    unsafe {
        let value = PyObject_GetAttrString(obj, name.as_ptr());
        if value.is_null() {
            PyErr_Clear();
            return None;
        }
        let length = PyObject_Size(value);
        Py_DECREF(value); // ours, from GetAttr
        if length < 0 {
            PyErr_Clear();
            return None;
        }
        Some(length)
    }
}

/// How many slots a frame of `code` keeps before its value stack: one per local variable,
/// cell and free variable. From 3.11 an argument that is also a cell has one slot, and
/// `code._varname_from_oparg(i)` names slot `i` (it is how `dis` names them), so the count
/// is the first index it refuses, found by halving (a function may have 100 000 variables).
///
/// # Safety
/// The GIL is held and `code` is a live code object.
unsafe fn local_slots(code: *mut PyObject, layout: Layout) -> Option<usize> {
    // SAFETY: the GIL is held; `name` is a new reference, released at once.
    unsafe {
        let varnames = length_of(code, c"co_varnames")?;
        let cellvars = length_of(code, c"co_cellvars")?;
        let freevars = length_of(code, c"co_freevars")?;
        let most = varnames + cellvars + freevars;
        if let Layout::InFrameObject = layout {
            return usize::try_from(most).ok();
        }
        let named = |index: Py_ssize_t| {
            let name =
                PyObject_CallMethod(code, c"_varname_from_oparg".as_ptr(), c"n".as_ptr(), index);
            if name.is_null() {
                PyErr_Clear();
                return false;
            }
            Py_DECREF(name); // ours, from the call
            true
        };
        // Slots below `low` are named; `high` is not (there are at most `most` slots).
        let (mut low, mut high) = (0, most);
        while low < high {
            let middle = low + (high - low) / 2;
            if named(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        usize::try_from(low).ok()
    }
}

/// The addresses in `frame`'s local slots that hold a reference of the frame's own, one per
/// slot, or `None` for a frame this cannot read (an error set if one happened).
///
/// # Safety
/// The GIL is held and `frame` is a live frame object.
pub(crate) unsafe fn local_addresses(frame: *mut PyObject) -> Option<Vec<usize>> {
    let layout = layout()?;
    // SAFETY: the GIL is held; `code` is a new reference, released once its size is read.
    let locals = unsafe {
        // Not `frame.f_code`, whose getter raises an audit event: a hook's Python code
        // could give other threads a turn in the middle of a count.
        let code = PyFrame_GetCode(frame.cast()).cast::<PyObject>();
        if code.is_null() {
            return None;
        }
        let locals = local_slots(code, layout);
        Py_DECREF(code); // ours, from PyFrame_GetCode
        locals?
    };
    // SAFETY: `frame` is a live frame object of this layout.
    let fields = unsafe { fields_of(frame, layout)? };
    let (first, tagged) = match layout {
        Layout::InFrameObject => {
            // SAFETY: `frame` is a live 3.10 frame object, which has this field.
            let stack = unsafe { *fields.add(F_VALUESTACK).cast::<*const usize>() };
            // The slots are the frame object's own trailing memory: check that they are.
            // SAFETY: the GIL is held and `frame` is a live frame object.
            let size = unsafe { size_of_frame(frame)? };
            let first = (stack as usize).checked_sub(8 * locals)?;
            let inside = first >= fields as usize + F_VALUESTACK
                && first + 8 * locals <= fields as usize + size;
            if !inside {
                return None;
            }
            (first as *const usize, false)
        }
        Layout::InInterpreterFrame {
            slots_at, tagged, ..
        } => {
            // SAFETY: the slots follow the interpreter frame's fixed fields.
            (unsafe { fields.add(slots_at).cast::<usize>() }, tagged)
        }
    };
    let mut addresses = Vec::with_capacity(locals);
    for index in 0..locals {
        // SAFETY: `index` < the local slots the frame was allocated with, all written: a
        // frame starts with its variables NULL.
        let word = unsafe { first.add(index).read() };
        // Tag bits set (3.14+): a reference the slot borrowed (an argument the caller loaded
        // with LOAD_FAST_BORROW), or an immortal's: none of the frame's own.
        if word == 0 || tagged && word & 3 != 0 {
            continue; // a variable not bound (yet, or any more), or not owning one
        }
        addresses.push(word);
    }
    Some(addresses)
}
