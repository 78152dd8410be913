//! The blocks a run left alive, as objects: `hunt` names the type and size of what it
//! leaked at a line whose blocks grew. Those are often objects the collector does not
//! track (a `str`, `bytes`, a `float`), which no walk of the heap reaches once the
//! reference that leaked them is the only one.
//!
//! A watch sits over the object allocator (`PyMem_SetAllocator`, the way tracemalloc
//! hooks in) and keeps the address and size of each block this interpreter makes while it
//! records, forgetting each one freed. At the end, each block still alive that starts with
//! an object's header (after the collector's header and the managed dict's, where its type
//! has them) is named by that type, its size and the line tracemalloc saw make it. The
//! blocks are only read, never taken for objects: a buffer that happens to look like one is
//! at worst misnamed.

use crate::frames::python_minor;
use crate::heap::{AddressMap, AddressSet};
use pyo3_ffi::*;
use std::ffi::{c_int, c_uint, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};
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

impl Allocator {
    const EMPTY: Allocator = Allocator {
        ctx: null_mut(),
        malloc: None,
        calloc: None,
        realloc: None,
        free: None,
    };

    /// Its five words, to compare allocators by.
    fn words(&self) -> [usize; 5] {
        [
            self.ctx as usize,
            self.malloc.map_or(0, |f| f as usize),
            self.calloc.map_or(0, |f| f as usize),
            self.realloc.map_or(0, |f| f as usize),
            self.free.map_or(0, |f| f as usize),
        ]
    }
}

/// `PYMEM_DOMAIN_OBJ`: `PyObject_Malloc`'s, which every object's memory comes from.
const OBJECT_DOMAIN: c_int = 2;

unsafe extern "C" {
    fn PyMem_GetAllocator(domain: c_int, allocator: *mut Allocator);
    fn PyMem_SetAllocator(domain: c_int, allocator: *mut Allocator);
}

/// The allocator under the watch, kept for good once set: a call that read the watch's
/// functions just before it ended (another interpreter's thread) still has somewhere to go.
static UNDER: AtomicPtr<Allocator> = AtomicPtr::new(null_mut());

/// The calling thread's state or NULL, without the fatal error `PyThreadState_Get` raises:
/// `PyThreadState_GetUnchecked` (3.13+) or `_PyThreadState_UncheckedGet` (3.10-3.12).
static THREAD_STATE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

struct Watch {
    /// Each block made while recording and not freed since: address -> size.
    alive: AddressMap<usize>,
    /// Whether new blocks are kept (a hunt stops before measuring the run).
    recording: bool,
    /// The interpreter whose blocks are kept: sub-interpreters with a GIL of their own
    /// allocate through the same functions, at the same time, and free their own blocks.
    interpreter: usize,
    /// The `malloc` the watch set, to tell whether it is still the allocator on top.
    installed: usize,
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

/// The allocator under the watch.
fn under() -> Allocator {
    // SAFETY: set before the watch's functions are, and never freed.
    unsafe { *UNDER.load(Ordering::Acquire) }
}

/// The address of an exported symbol of the interpreter, or NULL.
fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: a lookup in the symbols already loaded; `name` is NUL-terminated.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// The interpreter the calling thread runs, as an address (0 for none).
fn current_interpreter() -> usize {
    let get = THREAD_STATE.load(Ordering::Acquire);
    if get.is_null() {
        return 0;
    }
    // SAFETY: `get` is one of the two functions named at `THREAD_STATE`, which take nothing
    // and read the calling thread's own state.
    unsafe {
        let get: unsafe extern "C" fn() -> *mut PyThreadState = std::mem::transmute(get);
        let state = get();
        if state.is_null() {
            return 0;
        }
        PyThreadState_GetInterpreter(state) as usize
    }
}

impl Watch {
    /// Whether a block the calling thread makes now is kept. The thread's interpreter is
    /// asked only while recording: after, every allocation of the measuring passes here.
    fn keeps_new(&self) -> bool {
        self.recording && self.interpreter == current_interpreter()
    }
}

fn made(block: *mut c_void, size: usize) {
    if block.is_null() {
        return;
    }
    if let Ok(mut watch) = WATCH.lock() {
        if let Some(watch) = watch.as_mut().filter(|watch| watch.keeps_new()) {
            watch.alive.insert(block as usize, size);
        }
    }
}

unsafe extern "C" fn watched_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let under = under();
    // SAFETY: the allocator under the watch, called as CPython calls it.
    let block = unsafe { (under.malloc.unwrap_unchecked())(under.ctx, size) };
    made(block, size);
    block
}

unsafe extern "C" fn watched_calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let under = under();
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
    let under = under();
    // SAFETY: as in `watched_malloc`; `old` is a block of this domain, or NULL.
    let block = unsafe { (under.realloc.unwrap_unchecked())(under.ctx, old, size) };
    if block.is_null() {
        return block; // `old` is untouched
    }
    if let Ok(mut watch) = WATCH.lock() {
        if let Some(watch) = watch.as_mut() {
            // A block made while recording stays watched when it moves.
            let kept = watch.alive.remove(&(old as usize)).is_some();
            if kept || watch.keeps_new() {
                watch.alive.insert(block as usize, size);
            }
        }
    }
    block
}

unsafe extern "C" fn watched_free(_ctx: *mut c_void, block: *mut c_void) {
    if let Ok(mut watch) = WATCH.lock() {
        if let Some(watch) = watch.as_mut() {
            watch.alive.remove(&(block as usize));
        }
    }
    let under = under();
    // SAFETY: as in `watched_malloc`; `block` is a block of this domain, or NULL.
    unsafe { (under.free.unwrap_unchecked())(under.ctx, block) };
}

/// `_labtrace._watch_blocks(record)`: with `True`, starts watching the blocks this
/// interpreter makes from now on (a `RuntimeError` if they are watched already, or if the
/// interpreter cannot say which interpreter a thread runs); with `False`, stops keeping new
/// ones (the blocks kept are still followed until freed).
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
    if THREAD_STATE.load(Ordering::Acquire).is_null() {
        let get = [
            c"PyThreadState_GetUnchecked",
            c"_PyThreadState_UncheckedGet",
        ]
        .into_iter()
        .map(symbol)
        .find(|get| !get.is_null());
        THREAD_STATE.store(get.unwrap_or(null_mut()), Ordering::Release);
    }
    let interpreter = current_interpreter();
    // Neither a Python object is made nor the allocator read or set while the lock is held:
    // the watch would wait for itself, or for CPython's own lock (which can let the GIL go).
    let Ok(watching) = WATCH.lock().map(|mut watch| match watch.as_mut() {
        Some(watch) if record == 0 => {
            watch.recording = false;
            true
        }
        watch => watch.is_some(),
    }) else {
        return raise("the block watch was poisoned");
    };
    if record == 1 {
        if watching {
            return raise("blocks are watched already");
        }
        if interpreter == 0 {
            return raise("no thread state to tell interpreters apart");
        }
        let mut under = Allocator::EMPTY;
        // SAFETY: the GIL is held, as CPython asks of both calls.
        unsafe { PyMem_GetAllocator(OBJECT_DOMAIN, &mut under) };
        let kept = UNDER.load(Ordering::Acquire);
        // SAFETY: a kept allocator is never freed.
        if kept.is_null() || unsafe { (*kept).words() } != under.words() {
            // One for each allocator a watch was set over (a few), kept for good.
            UNDER.store(Box::into_raw(Box::new(under)), Ordering::Release);
        }
        // The context is the one under the watch: a thread that reads the functions while
        // they change, with either context, calls them right.
        let mut ours = Allocator {
            ctx: under.ctx,
            malloc: Some(watched_malloc),
            calloc: Some(watched_calloc),
            realloc: Some(watched_realloc),
            free: Some(watched_free),
        };
        let Ok(mut watch) = WATCH.lock() else {
            return raise("the block watch was poisoned");
        };
        if watch.is_some() {
            drop(watch);
            return raise("blocks are watched already");
        }
        *watch = Some(Watch {
            alive: AddressMap::default(),
            recording: true,
            interpreter,
            installed: ours.malloc.map_or(0, |malloc| malloc as usize),
        });
        drop(watch);
        // SAFETY: as above; the watch and the allocator under it are set first.
        unsafe { PyMem_SetAllocator(OBJECT_DOMAIN, &mut ours) };
    }
    // SAFETY: Py_None is static; the caller gets a new reference.
    unsafe { Py_NewRef(Py_None()) }
}

/// `_labtrace._blocks_alive(types)`: ends the watch and returns `[(type, size, frames)]`
/// for each block it kept that is still alive and starts with the header of an object of
/// one of `types` (every type there is, which the caller lists), at the offset that type's
/// objects start at; `frames` is where tracemalloc saw the block made, as
/// `tracemalloc.Traceback` takes it, or `None`.
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
        let Some(Watch { alive, .. }) = end_watch() else {
            return PyList_New(0);
        };
        // From here on, blocks come from the allocator under the watch directly.
        let mut under = under();
        PyMem_SetAllocator(OBJECT_DOMAIN, &mut under);
        // No collection either: a finalizer it ran could free a block of `alive`.
        let collecting = PyGC_Disable();
        let result = named(&alive, types);
        if collecting == 1 {
            PyGC_Enable();
        }
        result
    }
}

/// [`blocks_alive`]'s list, the collector off.
///
/// # Safety
/// The GIL is held, `types` is a live list and every block of `alive` is live.
unsafe fn named(alive: &AddressMap<usize>, types: *mut PyObject) -> *mut PyObject {
    // SAFETY: as the caller promises; every type kept is an item of `types`, alive as long.
    unsafe {
        let mut known = AddressSet::default();
        for index in 0..PyList_Size(types) {
            let tp = PyList_GetItem(types, index);
            if PyType_Check(tp) != 0 {
                known.insert(tp as usize);
            }
        }
        let managed = managed_header_flags();
        // Every block is read before anything is made, so nothing is freed meanwhile.
        let found: Vec<(usize, usize, *mut PyObject)> = alive
            .iter()
            .filter_map(|(&block, &size)| {
                Some((block, size, type_in(block, size, &known, managed)?))
            })
            .collect();
        let traceback = symbol(c"_PyTraceMalloc_GetTraceback");
        let result = PyList_New(0);
        if result.is_null() {
            return null_mut();
        }
        for (block, size, tp) in found {
            let frames = if traceback.is_null() {
                Py_NewRef(Py_None())
            } else {
                // Domain 0 is Python's own allocators'.
                let traceback: unsafe extern "C" fn(c_uint, usize) -> *mut PyObject =
                    std::mem::transmute(traceback);
                traceback(0, block)
            };
            // "N" hands `frames` over to the tuple.
            let item = if frames.is_null() {
                null_mut()
            } else {
                Py_BuildValue(c"(OnN)".as_ptr(), tp, size as Py_ssize_t, frames)
            };
            if item.is_null() || PyList_Append(result, item) < 0 {
                Py_XDECREF(item);
                Py_DECREF(result);
                return null_mut();
            }
            Py_DECREF(item);
        }
        result
    }
}

/// Takes the watch, to be taken off the allocator, if it is still the allocator on top. If
/// the run set another over it (`tracemalloc.stop()` puts back the one it found; a
/// profiler may sit on top and call the watch), it stays, keeping nothing, so that what is
/// over it can still call it.
fn end_watch() -> Option<Watch> {
    let installed = WATCH.lock().ok()?.as_ref()?.installed;
    let mut current = Allocator::EMPTY;
    // SAFETY: the GIL is held by the caller; this reads the allocator and makes nothing.
    unsafe { PyMem_GetAllocator(OBJECT_DOMAIN, &mut current) };
    let mut watch = WATCH.lock().ok()?;
    if current.malloc.map_or(0, |malloc| malloc as usize) == installed {
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

/// The type of the object a live block of `size` bytes starts with, if it looks like one: a
/// word of references (at least one, and not an address: a free list links its objects
/// through that word on 3.14) and then one of the `known` types, at the offset that type's
/// objects start at.
///
/// # Safety
/// The GIL is held and `block` is a live block of the object domain, `size` bytes long.
unsafe fn type_in(
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
            return Some(tp as *mut PyObject);
        }
    }
    None
}

fn raise(message: &str) -> *mut PyObject {
    let message = std::ffi::CString::new(message).unwrap_or_default();
    // SAFETY: the GIL is held by every caller; the message is copied.
    unsafe { PyErr_SetString(PyExc_RuntimeError, message.as_ptr()) };
    null_mut()
}
