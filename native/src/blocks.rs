//! The blocks a run left alive, as objects: `hunt` names the type and size of what it
//! leaked at a line whose blocks grew. Those are often objects the collector does not
//! track (a `str`, `bytes`, a `float`), which no walk of the heap reaches once the
//! reference that leaked them is the only one.
//!
//! A watch sits over the object allocator (`PyMem_SetAllocator`, the way tracemalloc
//! hooks in) and keeps the address and size of each block made while it records,
//! forgetting each one freed. At the end, each block still alive that starts an object
//! (after the collector's header and the managed dict's, where its type has them) is
//! handed to `hunt`, which asks tracemalloc where it was made.

use crate::frames::python_minor;
use crate::heap::{AddressMap, AddressSet};
use pyo3_ffi::*;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;
use std::sync::Mutex;

/// `PyMemAllocatorEx`: CPython's own, exported by every version though not in the stable
/// ABI.
#[repr(C)]
#[derive(Clone, Copy)]
struct Allocator {
    ctx: *mut c_void,
    malloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    calloc: Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void>,
    realloc: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void>,
    free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
}

/// `PYMEM_DOMAIN_OBJ`: `PyObject_Malloc`'s, which every object's memory comes from.
const OBJECT_DOMAIN: c_int = 2;

unsafe extern "C" {
    fn PyMem_GetAllocator(domain: c_int, allocator: *mut Allocator);
    fn PyMem_SetAllocator(domain: c_int, allocator: *mut Allocator);
}

struct Watch {
    /// The allocator the watch sits over (tracemalloc's, when it traces).
    under: Allocator,
    /// Each block made while recording and not freed since: address -> size.
    alive: AddressMap<usize>,
    /// Whether new blocks are kept (a hunt stops before measuring the run).
    recording: bool,
}

// SAFETY: the allocator's functions and context are the process's, usable from any thread
// holding the GIL, which the object domain requires of every caller.
unsafe impl Send for Watch {}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

/// The allocator under the watch; `None` once the watch has ended (a block freed by a
/// thread that read the allocator just before).
fn under() -> Option<Allocator> {
    WATCH.lock().ok()?.as_ref().map(|watch| watch.under)
}

fn made(block: *mut c_void, size: usize) {
    if block.is_null() {
        return;
    }
    if let Ok(mut watch) = WATCH.lock() {
        if let Some(watch) = watch.as_mut().filter(|watch| watch.recording) {
            watch.alive.insert(block as usize, size);
        }
    }
}

unsafe extern "C" fn watched_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let Some(under) = under() else {
        return null_mut();
    };
    // SAFETY: the allocator under the watch, called as CPython calls it.
    let block = unsafe { (under.malloc.unwrap_unchecked())(under.ctx, size) };
    made(block, size);
    block
}

unsafe extern "C" fn watched_calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let Some(under) = under() else {
        return null_mut();
    };
    // SAFETY: as in `watched_malloc`.
    let block = unsafe { (under.calloc.unwrap_unchecked())(under.ctx, count, size) };
    made(block, count.saturating_mul(size));
    block
}

unsafe extern "C" fn watched_realloc(
    _ctx: *mut c_void,
    old: *mut c_void,
    size: usize,
) -> *mut c_void {
    let Some(under) = under() else {
        return null_mut();
    };
    // SAFETY: as in `watched_malloc`; `old` is a block of this domain, or NULL.
    let block = unsafe { (under.realloc.unwrap_unchecked())(under.ctx, old, size) };
    if block.is_null() {
        return block; // `old` is untouched
    }
    if let Ok(mut watch) = WATCH.lock() {
        if let Some(watch) = watch.as_mut() {
            // A block made while recording stays watched when it moves.
            if watch.alive.remove(&(old as usize)).is_some() || watch.recording {
                watch.alive.insert(block as usize, size);
            }
        }
    }
    block
}

unsafe extern "C" fn watched_free(_ctx: *mut c_void, block: *mut c_void) {
    let Ok(mut watch) = WATCH.lock() else { return };
    let Some(watching) = watch.as_mut() else {
        return;
    };
    watching.alive.remove(&(block as usize));
    let under = watching.under;
    drop(watch);
    // SAFETY: as in `watched_malloc`; `block` is a block of this domain, or NULL.
    unsafe { (under.free.unwrap_unchecked())(under.ctx, block) };
}

/// `_labtrace._watch_blocks(record)`: with `True`, starts watching the blocks made from now
/// on (a `RuntimeError` if they are watched already); with `False`, stops keeping new ones
/// (the blocks kept are still followed until freed).
///
/// # Safety
/// Called by CPython with the GIL held and a live argument.
pub unsafe extern "C" fn watch_blocks(
    _module: *mut PyObject,
    record: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: the GIL is held; `record` is borrowed from the call.
    let record = unsafe { PyObject_IsTrue(record) };
    if record < 0 {
        return null_mut();
    }
    // No Python object is made while the lock is held: the watch would wait for itself.
    let Ok(mut watch) = WATCH.lock() else {
        return raise("the block watch was poisoned");
    };
    let refused = match (watch.as_mut(), record == 1) {
        (Some(watching), false) => {
            watching.recording = false;
            None
        }
        (None, true) => {
            let mut under = Allocator {
                ctx: null_mut(),
                malloc: None,
                calloc: None,
                realloc: None,
                free: None,
            };
            // SAFETY: the GIL is held, as CPython asks of both calls; the watch is set
            // before its functions are, so they never run without it.
            unsafe { PyMem_GetAllocator(OBJECT_DOMAIN, &mut under) };
            *watch = Some(Watch {
                under,
                alive: AddressMap::default(),
                recording: true,
            });
            let mut ours = Allocator {
                ctx: ours(),
                malloc: Some(watched_malloc),
                calloc: Some(watched_calloc),
                realloc: Some(watched_realloc),
                free: Some(watched_free),
            };
            // SAFETY: as above.
            unsafe { PyMem_SetAllocator(OBJECT_DOMAIN, &mut ours) };
            None
        }
        (Some(_), true) => Some("blocks are watched already"),
        (None, false) => None, // nothing to stop
    };
    drop(watch);
    if let Some(refused) = refused {
        return raise(refused);
    }
    // SAFETY: Py_None is static; the caller gets a new reference.
    unsafe { Py_NewRef(Py_None()) }
}

/// `_labtrace._blocks_alive(types)`: ends the watch and returns `[(object, size)]` for each
/// block it kept that is still alive and holds an object of one of `types` (every type there
/// is, which the caller lists): the block's memory starts with the object, or with the
/// collector's header and the managed dict's before it, as its type says.
///
/// # Safety
/// Called by CPython with the GIL held and a live argument.
pub unsafe extern "C" fn blocks_alive(
    _module: *mut PyObject,
    types: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: the GIL is held; `types` is borrowed from the call.
    unsafe {
        if PyList_Check(types) == 0 {
            PyErr_SetString(
                PyExc_TypeError,
                c"_blocks_alive(types): a list of types".as_ptr(),
            );
            return null_mut();
        }
        let Some(Watch {
            mut under, alive, ..
        }) = end_watch()
        else {
            return PyList_New(0);
        };
        // From here on, blocks come from the allocator under the watch directly.
        PyMem_SetAllocator(OBJECT_DOMAIN, &mut under);
        let mut known = AddressSet::default();
        for index in 0..PyList_Size(types) {
            let tp = PyList_GetItem(types, index);
            if PyType_Check(tp) != 0 {
                known.insert(tp as usize);
            }
        }
        let result = PyList_New(0);
        if result.is_null() {
            return null_mut();
        }
        let managed = managed_header_flags();
        for (&block, &size) in &alive {
            let Some(obj) = object_in(block, size, &known, managed) else {
                continue;
            };
            let pair = Py_BuildValue(c"(On)".as_ptr(), obj, size as Py_ssize_t);
            if pair.is_null() || PyList_Append(result, pair) < 0 {
                Py_XDECREF(pair);
                Py_DECREF(result);
                return null_mut();
            }
            Py_DECREF(pair);
        }
        result
    }
}

/// Takes the watch, to be taken off the allocator, if it is still the allocator on top. If
/// the run set another over it (`tracemalloc.stop()` puts back the one it found; a
/// profiler may sit on top and call the watch), it stays, keeping nothing, so that what is
/// over it can still call it.
fn end_watch() -> Option<Watch> {
    let mut watch = WATCH.lock().ok()?;
    let mut current = watch.as_ref()?.under;
    // SAFETY: the GIL is held by the caller; this reads the allocator and makes nothing.
    unsafe { PyMem_GetAllocator(OBJECT_DOMAIN, &mut current) };
    if current.ctx == ours() {
        return watch.take();
    }
    if let Some(watch) = watch.as_mut() {
        watch.recording = false;
        watch.alive = AddressMap::default();
    }
    None
}

/// The type flags that put the managed dict's two pointers before the collector's header:
/// `Py_TPFLAGS_MANAGED_DICT` on 3.11, and `Py_TPFLAGS_MANAGED_WEAKREF` with it from 3.12.
fn managed_header_flags() -> std::ffi::c_ulong {
    match python_minor() {
        Some(10) | None => 0,
        Some(11) => 1 << 4,
        Some(_) => (1 << 4) | (1 << 3),
    }
}

/// The object a live block of `size` bytes holds, if it holds one: a word of references
/// (at least one, and not an address: a free list links its objects through that word on
/// 3.14) and then one of the `known` types, at the offset that type's objects start at.
///
/// # Safety
/// The GIL is held and `block` is a live block of the object domain, `size` bytes long.
unsafe fn object_in(
    block: usize,
    size: usize,
    known: &AddressSet,
    managed: std::ffi::c_ulong,
) -> Option<*mut PyObject> {
    const WORD: usize = std::mem::size_of::<usize>();
    for offset in [0, 2 * WORD, 4 * WORD] {
        if offset + 2 * WORD > size {
            break;
        }
        // SAFETY: both words are inside the live block.
        let (references, tp) = unsafe {
            let at = (block + offset) as *const usize;
            (at.read(), at.add(1).read())
        };
        if !known.contains(&tp) {
            continue;
        }
        // SAFETY: `tp` is one of the live types the caller listed.
        let flags = unsafe { PyType_GetFlags(tp as *mut PyTypeObject) };
        let collected = flags & Py_TPFLAGS_HAVE_GC != 0;
        let starts_at =
            if collected { 2 * WORD } else { 0 } + if flags & managed != 0 { 2 * WORD } else { 0 };
        // The low 32 bits count references; 3.14 keeps flags in the top 16.
        let counted = references & 0xffff_ffff != 0 && references >> 32 & 0xffff == 0;
        if starts_at == offset && counted {
            return Some((block + offset) as *mut PyObject);
        }
    }
    None
}

/// The context our allocator is set with, which tells it from any other.
fn ours() -> *mut c_void {
    (&raw const WATCH).cast_mut().cast()
}

fn raise(message: &str) -> *mut PyObject {
    let message = std::ffi::CString::new(message).unwrap_or_default();
    // SAFETY: the GIL is held by every caller; the message is copied.
    unsafe { PyErr_SetString(PyExc_RuntimeError, message.as_ptr()) };
    null_mut()
}
