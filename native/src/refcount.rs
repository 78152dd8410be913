//! `Py_INCREF` and `Py_DECREF` as CPython's own headers inline them, for a stable-ABI module.
//!
//! Built for the limited API, pyo3-ffi turns every reference count change into a function
//! call (`_Py_IncRef`, `_Py_DecRef`), because one binary meets several CPythons and the
//! meaning of the count's word changed in 3.12 (immortal objects). This file finds out
//! once, when the module is imported ([`install`]), which CPython it is in, and then does
//! what that CPython's `Include/refcount.h` inlines into C extensions:
//!
//! - 3.10 and 3.11: `ob_refcnt += 1`; `ob_refcnt -= 1`, and `_Py_Dealloc` when it reaches 0
//!   (what C built for the stable ABI of 3.10 and 3.11 compiles to as well);
//! - 3.12 and later, 64-bit: the same on the count's low 32 bits, and nothing at all for an
//!   immortal object, whose low 32 bits read as a negative `i32` (`_Py_IsImmortal`);
//! - a debug build (`Py_REF_DEBUG`, where `sys.gettotalrefcount` exists, or `Py_TRACE_REFS`),
//!   a 32-bit build, a build without `abi3` (free-threaded 3.14t), and any use before
//!   `install`: the function calls, as before, which keep a debug interpreter's total
//!   reference count right.
//!
//! The names are the C API's, so `pytype.rs` reads as C does and means the same: the rules of
//! who owns a reference do not change, only how the count is written. Everything else
//! (`Py_XDECREF`, `Py_NewRef`, ...) is built on the two.

use pyo3_ffi::{PyObject, PySys_GetObject, Py_GetVersion};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

extern "C" {
    // In the stable ABI since 3.10: what the inlined macros and the checked calls use.
    fn _Py_IncRef(op: *mut PyObject);
    fn _Py_DecRef(op: *mut PyObject);
    fn _Py_Dealloc(op: *mut PyObject);
}

/// How this process writes reference counts; set once by [`install`], read-only after.
static MODE: AtomicU8 = AtomicU8::new(CALL);
/// Call `_Py_IncRef`/`_Py_DecRef` (debug builds, 32-bit builds, before `install`).
const CALL: u8 = 0;
/// CPython 3.10 and 3.11: the whole word is the count.
const PLAIN: u8 = 1;
/// CPython 3.12 and later, 64-bit: the low 32 bits are the count; immortal objects are skipped.
const IMMORTAL_AWARE: u8 = 2;

/// Chooses how to count for the running interpreter. Called in module init, with the GIL.
pub fn install() {
    // SAFETY: both calls only read interpreter state (the GIL is held during init);
    // Py_GetVersion returns a static string such as "3.11.7 (main, ...)".
    let (version, debug) = unsafe {
        let version = CStr::from_ptr(Py_GetVersion())
            .to_string_lossy()
            .into_owned();
        let debug = !PySys_GetObject(c"gettotalrefcount".as_ptr()).is_null()
            || !PySys_GetObject(c"getobjects".as_ptr()).is_null();
        (version, debug)
    };
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let stable_abi_64 = cfg!(all(feature = "abi3", target_pointer_width = "64"));
    let mode = if debug || !stable_abi_64 || major != 3 {
        CALL
    } else if minor <= 11 {
        PLAIN
    } else {
        IMMORTAL_AWARE
    };
    MODE.store(mode, Ordering::Relaxed);
}

/// The word `ob_refcnt`, the object header's first field.
fn full_count(op: *mut PyObject) -> *mut isize {
    op.cast()
}

/// The low 32 bits of `ob_refcnt`: the count itself from 3.12 on (`ob_refcnt_split`).
fn low_count(op: *mut PyObject) -> *mut u32 {
    let low_half = if cfg!(target_endian = "big") { 1 } else { 0 };
    op.cast::<u32>().wrapping_add(low_half)
}

/// Takes a new reference to `op`.
///
/// # Safety
/// `op` must be a live object and the GIL held.
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_INCREF(op: *mut PyObject) {
    // SAFETY: `op` is a live object (guaranteed by the caller), so its header is ours to
    // update under the GIL, in the layout `install` found.
    unsafe {
        match MODE.load(Ordering::Relaxed) {
            PLAIN => *full_count(op) += 1,
            IMMORTAL_AWARE => {
                let count = *low_count(op);
                if (count as i32) >= 0 {
                    *low_count(op) = count + 1;
                } // else immortal: its count stays as it is
            }
            _ => _Py_IncRef(op),
        }
    }
}

/// Releases a reference to `op`, which is deallocated when it was the last.
///
/// # Safety
/// `op` must be a live object the caller owns a reference to, and the GIL held.
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_DECREF(op: *mut PyObject) {
    // SAFETY: the caller owns a reference, so the count is at least 1 (or immortal); at 0
    // nobody else holds one and the object is deallocated, as the interpreter does.
    unsafe {
        match MODE.load(Ordering::Relaxed) {
            PLAIN => {
                *full_count(op) -= 1;
                if *full_count(op) == 0 {
                    _Py_Dealloc(op);
                }
            }
            IMMORTAL_AWARE => {
                let count = *low_count(op);
                if (count as i32) >= 0 {
                    *low_count(op) = count - 1;
                    if count == 1 {
                        _Py_Dealloc(op);
                    }
                } // else immortal: its count stays as it is
            }
            _ => _Py_DecRef(op),
        }
    }
}

/// `Py_DECREF`, for a pointer that may be NULL.
///
/// # Safety
/// As [`Py_DECREF`], when `op` is not NULL.
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_XDECREF(op: *mut PyObject) {
    if !op.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { Py_DECREF(op) }
    }
}

/// A new reference to `op`, returned.
///
/// # Safety
/// As [`Py_INCREF`].
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_NewRef(op: *mut PyObject) -> *mut PyObject {
    // SAFETY: guaranteed by the caller.
    unsafe { Py_INCREF(op) };
    op
}

/// A new reference to `op`, or NULL when `op` is NULL.
///
/// # Safety
/// As [`Py_INCREF`], when `op` is not NULL.
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_XNewRef(op: *mut PyObject) -> *mut PyObject {
    if !op.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { Py_INCREF(op) };
    }
    op
}

/// Sets `*field` to NULL, then releases the reference it held (if any): in that order, so
/// that code run by the release (a `__del__`) never sees the stale pointer.
///
/// # Safety
/// `field` must point at a valid pointer that is NULL or owns a reference.
#[inline(always)]
#[allow(non_snake_case)]
pub unsafe fn Py_CLEAR(field: *mut *mut PyObject) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let old = *field;
        *field = std::ptr::null_mut();
        Py_XDECREF(old);
    }
}
