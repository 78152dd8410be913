//! The fault catalogue: the refcounting mistakes the `hashtable` module can be switched into.
//!
//! This is the single list of faults; the CLI, the lessons and the tests all read it. The
//! switch itself lives in the module (`native/src/faults.rs`): the runner names the faults of
//! a run in the child's environment, the module reads them once at import, and each fault
//! site asks for its own name (`sites.rs` checks that every fault here has its site there).

/// A refcounting mistake the `hashtable` type can be told to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// `set` returns `self` without `Py_INCREF`.
    SetMissingIncref,
    /// Dealloc never releases the table's reference to `hash_func`.
    DeallocMissingDecref,
    /// The int returned by `hash_func` is never released.
    HashResultLeak,
    /// `get` returns the stored value without `Py_INCREF`.
    GetBorrowedReturn,
    /// Removing a key releases its value twice.
    RemoveDoubleDecref,
    /// A new key is stored without `Py_INCREF`.
    SetMissingKeyIncref,
    /// When `hash_func` raises, the reference taken for the value is kept.
    ErrorPathLeak,
    /// `items()` lets `PyTuple_SetItem` steal references the table still owns.
    ItemsStealsBorrowed,
    /// `update()` releases each pair before using the key and value borrowed from it.
    UpdateUsesReleasedPair,
    /// `clear()` returns `None` without a reference (no `Py_RETURN_NONE`).
    ClearReturnsBorrowedNone,
    /// `tp_traverse` shows the GC nothing the table holds.
    NoTraverse,
    /// `merge()` uses its argument as a HashTable without checking its type.
    TrustsArgumentType,
    /// Module init releases `__version__` after `PyModule_AddObject` already took it.
    ModuleAddObject,
    /// A table made with the default hash releases the borrowed builtins namespace.
    ReleasesBorrowedBuiltins,
    /// When `hash_func` fails or returns a non-int, its result leaks and its error is replaced.
    HashErrorLeak,
    /// `==` keeps an entry's key and value borrowed while looking the key up runs Python code.
    CompareKeepsBorrowedEntry,
    /// Dealloc never releases the table's reference to its type (a heap type).
    ForgetsTypeReference,
    /// `SafeHashTable.__traverse__` shows the GC nothing the table holds (safe PyO3).
    SafeNoTraverse,
    /// `SafeHashTable()` forgets a clone of `hash_func` with `mem::forget` (safe PyO3).
    SafeMemForget,
    /// `SafeHashTable` also keeps every new key in a `static` list (safe PyO3).
    SafeStaticKeepsKeys,
}

/// What a fault does to a run when a demo exercises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Crash,
    Leak,
    /// A crash where `None` is mortal (before 3.12: its count reaches zero and CPython stops
    /// with a fatal error, "deallocating None"; it is never freed); nothing where it is
    /// immortal.
    CrashBefore3_12,
}

/// One row of the catalogue.
#[derive(Debug)]
pub struct FaultInfo {
    pub fault: Fault,
    /// The lesson that demonstrates it.
    pub lesson: u32,
    /// The function the fault site lives in.
    pub site: &'static str,
    pub expected: Expected,
    pub summary: &'static str,
    /// The same site as a C extension would write it: what learners will type.
    pub c: CSite,
    /// What becomes of the fault when the table is written in safe PyO3.
    pub safe: InSafePyO3,
}

/// What a fault becomes in safe PyO3 (`SafeHashTable`, lesson 19).
#[derive(Debug, PartialEq, Eq)]
pub enum InSafePyO3 {
    /// The closest safe code does not compile: `tests/compile_fail/<fault>.rs` holds it, and
    /// the message rustc gives (`compiler.rs`).
    CompileError,
    /// There is nothing to write it with, for this reason.
    CannotHappen(&'static str),
    /// Safe code can still do it: the `SafeHashTable` fault that shows how.
    StillPossible(Fault),
    /// A fault of `SafeHashTable` itself: safe code that still has the bug.
    SafeCode,
}

/// A fault site's two variants in C.
#[derive(Debug)]
pub struct CSite {
    pub correct: &'static str,
    pub faulty: &'static str,
}

pub const CATALOGUE: &[FaultInfo] = &[
    FaultInfo {
        fault: Fault::SetMissingIncref,
        lesson: 3,
        site: "HashTable.set",
        expected: Expected::Crash,
        summary: "set() returns self without Py_INCREF: each call hands the caller a \
                  reference it never took, and the table is freed while still in use",
        c: CSite {
            correct: "Py_INCREF(self);\nreturn (PyObject *)self;",
            faulty: "return (PyObject *)self;",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::DeallocMissingDecref,
        lesson: 4,
        site: "HashTable dealloc",
        expected: Expected::Leak,
        summary: "dealloc forgets Py_XDECREF(hash_func): every table ever made keeps \
                  its hash function alive forever",
        c: CSite {
            correct: "Py_CLEAR(self->hash_func);",
            faulty: "/* self->hash_func is never released */",
        },
        safe: InSafePyO3::StillPossible(Fault::SafeMemForget),
    },
    FaultInfo {
        fault: Fault::HashResultLeak,
        lesson: 5,
        site: "hashing a key (set, get, pop, in, ...)",
        expected: Expected::Leak,
        summary: "the new reference returned by calling hash_func is never released: \
                  every hash leaks the int it returned",
        c: CSite {
            correct: "PyObject *result = PyObject_CallOneArg(self->hash_func, key);\nif (result == NULL) return -1;\nPy_hash_t hash = PyObject_Hash(result);\nPy_DECREF(result);",
            faulty: "PyObject *result = PyObject_CallOneArg(self->hash_func, key);\nif (result == NULL) return -1;\nPy_hash_t hash = PyObject_Hash(result);\n/* result is never released */",
        },
        safe: InSafePyO3::CannotHappen(
            "the call returns a Bound, which releases its reference when it goes out of scope",
        ),
    },
    FaultInfo {
        fault: Fault::GetBorrowedReturn,
        lesson: 6,
        site: "HashTable.get",
        expected: Expected::Crash,
        summary: "get() hands out the table's own reference as if it were new: the caller \
                  releases it, and the value dies while the table still holds it",
        c: CSite {
            correct: "Py_INCREF(value);\nreturn value;",
            faulty: "return value;  /* the table's own reference */",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::RemoveDoubleDecref,
        lesson: 7,
        site: "removing a key (pop, del)",
        expected: Expected::Crash,
        summary: "the removed value is released and also handed to the caller: one \
                  reference released twice, the value freed while still in use",
        c: CSite {
            correct: "return value;  /* the table's reference moves to the caller */",
            faulty: "Py_DECREF(value);\nreturn value;",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::SetMissingKeyIncref,
        lesson: 8,
        site: "storing a new key (set, h[k] = v, update)",
        expected: Expected::Crash,
        summary: "new keys are stored without a reference of the table's own: when the \
                  caller lets go, the table holds a key that was freed",
        c: CSite {
            correct: "Py_INCREF(key);\nentry->key = key;",
            faulty: "entry->key = key;",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::ErrorPathLeak,
        lesson: 9,
        site: "storing a pair when hash_func raises",
        expected: Expected::Leak,
        summary: "the reference taken for the value is not given back when hashing the \
                  key fails: a leak on the error path only",
        c: CSite {
            correct: "Py_INCREF(value);\nPy_hash_t hash = call_hash_func(self, key);\nif (hash == -1 && PyErr_Occurred()) {\n    Py_DECREF(value);\n    return -1;\n}",
            faulty: "Py_INCREF(value);\nPy_hash_t hash = call_hash_func(self, key);\nif (hash == -1 && PyErr_Occurred()) {\n    return -1;\n}",
        },
        safe: InSafePyO3::CannotHappen(
            "`?` returns early and drops every reference taken so far",
        ),
    },
    FaultInfo {
        fault: Fault::ItemsStealsBorrowed,
        lesson: 10,
        site: "HashTable.items",
        expected: Expected::Crash,
        summary: "PyTuple_SetItem steals a reference, and items() gives it the table's: \
                  every pair built takes one reference the table still relies on",
        c: CSite {
            correct: "PyTuple_SetItem(pair, 0, Py_NewRef(entry->key));\nPyTuple_SetItem(pair, 1, Py_NewRef(entry->value));",
            faulty: "PyTuple_SetItem(pair, 0, entry->key);\nPyTuple_SetItem(pair, 1, entry->value);",
        },
        safe: InSafePyO3::CannotHappen(
            "a PyO3 function that takes a reference takes it by move, and the table's \
             cannot be moved out of &self: given its &Py, PyTuple::new takes one of its own",
        ),
    },
    FaultInfo {
        fault: Fault::UpdateUsesReleasedPair,
        lesson: 11,
        site: "HashTable.update from (key, value) pairs",
        expected: Expected::Crash,
        summary: "key and value are borrowed from the pair, and the pair is released \
                  before they are used: a borrowed reference outlives its owner",
        c: CSite {
            correct: "PyObject *key = PyTuple_GetItem(pair, 0);    /* borrowed */\nPyObject *value = PyTuple_GetItem(pair, 1);  /* borrowed */\nint err = hashtable_insert(self, key, value);\nPy_DECREF(pair);",
            faulty: "PyObject *key = PyTuple_GetItem(pair, 0);    /* borrowed */\nPyObject *value = PyTuple_GetItem(pair, 1);  /* borrowed */\nPy_DECREF(pair);\nint err = hashtable_insert(self, key, value);",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::ClearReturnsBorrowedNone,
        lesson: 12,
        site: "HashTable.clear",
        expected: Expected::CrashBefore3_12,
        summary: "clear() returns None without Py_RETURN_NONE: harmless where None is \
                  immortal (3.12+), a slow countdown to a fatal error before",
        c: CSite {
            correct: "return Py_NewRef(Py_None);",
            faulty: "return Py_None;",
        },
        safe: InSafePyO3::CannotHappen(
            "a method returns (), and PyO3 makes a reference to None of its own",
        ),
    },
    FaultInfo {
        fault: Fault::NoTraverse,
        lesson: 13,
        site: "tp_traverse",
        expected: Expected::Leak,
        summary: "tp_traverse hides the table's references from the garbage collector: \
                  a table that contains itself is never collected",
        c: CSite {
            correct: "Py_VISIT(Py_TYPE(self));\nPy_VISIT(self->hash_func);\nfor (Py_ssize_t i = 0; i < self->load; i++) {\n    Py_VISIT(self->entries[i].key);\n    Py_VISIT(self->entries[i].value);\n}\nreturn 0;",
            faulty: "Py_VISIT(Py_TYPE(self));\nreturn 0;  /* hash_func, keys and values never visited */",
        },
        safe: InSafePyO3::StillPossible(Fault::SafeNoTraverse),
    },
    FaultInfo {
        fault: Fault::TrustsArgumentType,
        lesson: 16,
        site: "HashTable.merge",
        expected: Expected::Crash,
        summary: "merge() casts its argument to a HashTable without checking its type: \
                  given a dict, it reads the dict's memory as a table's and crashes",
        c: CSite {
            correct: "if (!PyObject_TypeCheck(other, state->table_type)) {\n    PyErr_Format(PyExc_TypeError, \"merge() takes a HashTable, not %s\",\n                 Py_TYPE(other)->tp_name);\n    return NULL;\n}\nHashTableObject *source = (HashTableObject *)other;",
            faulty: "HashTableObject *source = (HashTableObject *)other;  /* never checked */",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::ModuleAddObject,
        lesson: 17,
        site: "module init (hashtable.__version__)",
        expected: Expected::Crash,
        summary: "PyModule_AddObject steals the reference only when it succeeds; module init \
                  releases it anyway, and __version__ is freed while the module still holds it",
        c: CSite {
            correct: "PyObject *version = PyUnicode_FromString(VERSION);\nif (version == NULL) {\n    return -1;\n}\n/* The module takes its own reference. */\nint added = PyModule_AddObjectRef(module, \"__version__\", version);\nPy_DECREF(version);  /* ours, added or not */\nreturn added;\n/* 3.13+: PyModule_Add takes the reference even when it fails, and a NULL\n   (a failed creation) just makes it fail, so all of this is one call:\n   return PyModule_Add(module, \"__version__\",\n                       PyUnicode_FromString(VERSION)); */",
            faulty: "PyObject *version = PyUnicode_FromString(VERSION);\nif (version == NULL) {\n    return -1;\n}\nif (PyModule_AddObject(module, \"__version__\", version) < 0) {\n    return -1;  /* leaks version: only a success steals it */\n}\nPy_DECREF(version);  /* releases the reference AddObject took */\nreturn 0;",
        },
        safe: InSafePyO3::CompileError,
    },
    FaultInfo {
        fault: Fault::ReleasesBorrowedBuiltins,
        lesson: 18,
        site: "HashTable() with the default hash",
        expected: Expected::Crash,
        summary: "the talk's default hash lookup releases the builtins namespace it only \
                  borrowed: one reference fewer per table, until the namespace is freed",
        c: CSite {
            correct: "PyObject *builtins = PyEval_GetBuiltins();  /* borrowed */\nPyObject *hash = PyDict_GetItemWithError(builtins, name); /* borrowed */\n/* nothing to release */",
            faulty: "PyObject *builtins = PyEval_GetBuiltins();  /* borrowed */\nPyObject *hash = PyDict_GetItemWithError(builtins, name); /* borrowed */\nPy_DECREF(builtins);  /* never ours to release */",
        },
        safe: InSafePyO3::CannotHappen(
            "dropping a &Bound borrow releases nothing: only an owned Py or Bound holds a \
             reference to release",
        ),
    },
    FaultInfo {
        fault: Fault::HashErrorLeak,
        lesson: 18,
        site: "calling hash_func (set, get, pop, in, ...)",
        expected: Expected::Leak,
        summary: "when hash_func returns something other than an int, the talk's error path \
                  leaks it; when hash_func raises, it replaces the exception with its own",
        c: CSite {
            correct: "PyObject *result = PyObject_CallOneArg(self->hash_func, key);\nif (result == NULL) {\n    return -1;  /* the call's own exception goes up */\n}\nif (!PyLong_Check(result)) {\n    PyErr_Format(PyExc_TypeError,\n        \"hash_func must return an int, but it returned %s for key %R\",\n        Py_TYPE(result)->tp_name, key);\n    Py_DECREF(result);\n    return -1;\n}",
            faulty: "PyObject *result = PyObject_CallOneArg(self->hash_func, key);\nif (result == NULL || !PyLong_Check(result)) {\n    PyErr_SetString(PyExc_TypeError, \"hash_func did not return an int\");\n    return -1;  /* result leaks; a raised error is replaced */\n}",
        },
        safe: InSafePyO3::CannotHappen(
            "the leak: the result is dropped on every path. Replacing the call's error \
             (map_err) is still possible, and still wrong",
        ),
    },
    FaultInfo {
        fault: Fault::CompareKeepsBorrowedEntry,
        lesson: 20,
        site: "HashTable == mapping",
        expected: Expected::Crash,
        summary: "== keeps each entry's key and value borrowed while it looks the key up in \
                  the other mapping: the lookup runs Python code (a key's __eq__) that can \
                  empty the table, and the value is compared after it was freed",
        c: CSite {
            correct: "PyObject *key = entry->key, *value = entry->value;  /* borrowed */\nPy_INCREF(key);    /* references of our own: they live */\nPy_INCREF(value);  /* whatever the Python code below does */\nPyObject *theirs = PyObject_GetItem(other, key);  /* runs Python code */\nint equal = theirs ? PyObject_RichCompareBool(value, theirs, Py_EQ) : -1;\nPy_XDECREF(theirs);\nPy_DECREF(key);\nPy_DECREF(value);",
            faulty: "PyObject *key = entry->key, *value = entry->value;  /* borrowed */\nPyObject *theirs = PyObject_GetItem(other, key);  /* runs Python code */\nint equal = theirs ? PyObject_RichCompareBool(value, theirs, Py_EQ) : -1;\nPy_XDECREF(theirs);",
        },
        safe: InSafePyO3::CannotHappen(
            "a reference into the table is a borrow of the table (a PyRef): Python code that \
             tries to change the table while it is held fails with \"Already borrowed\" \
             instead of freeing what the reference points to",
        ),
    },
    FaultInfo {
        fault: Fault::ForgetsTypeReference,
        lesson: 21,
        site: "HashTable dealloc (its type)",
        expected: Expected::Leak,
        summary: "dealloc frees the table but never releases its reference to HashTable, a \
                  heap type: one more reference to the type per table, forever (the bug \
                  multidict shipped)",
        c: CSite {
            correct: "PyTypeObject *tp = Py_TYPE(self);\nPyObject_GC_UnTrack(self);\nhashtable_clear(self);\ntp->tp_free(self);\nPy_DECREF(tp);  /* the instance's reference to its type */",
            faulty: "PyTypeObject *tp = Py_TYPE(self);\nPyObject_GC_UnTrack(self);\nhashtable_clear(self);\ntp->tp_free(self);\n/* the instance's reference to its type is never released */",
        },
        safe: InSafePyO3::CannotHappen(
            "PyO3 writes the tp_dealloc of every #[pyclass], and it releases the type",
        ),
    },
    FaultInfo {
        fault: Fault::SafeNoTraverse,
        lesson: 19,
        site: "SafeHashTable.__traverse__",
        expected: Expected::Leak,
        summary: "safe PyO3 still needs __traverse__ to visit what the table holds: one \
                  that visits nothing leaves a table that contains itself uncollected",
        c: CSite {
            correct: "Py_VISIT(self->hash_func);\nfor (Py_ssize_t i = 0; i < self->load; i++) {\n    Py_VISIT(self->entries[i].key);\n    Py_VISIT(self->entries[i].value);\n}\nreturn 0;",
            faulty: "return 0;  /* nothing visited */",
        },
        safe: InSafePyO3::SafeCode,
    },
    FaultInfo {
        fault: Fault::SafeMemForget,
        lesson: 19,
        site: "SafeHashTable()",
        expected: Expected::Leak,
        summary: "mem::forget is safe Rust: a forgotten clone of hash_func is a reference \
                  nobody releases, one more per table, as in lesson 4",
        c: CSite {
            correct: "Py_INCREF(hash_func);  /* the table's own reference */\nself->hash_func = hash_func;",
            faulty: "Py_INCREF(hash_func);  /* the table's own reference */\nPy_INCREF(hash_func);  /* and one that nobody owns */\nself->hash_func = hash_func;",
        },
        safe: InSafePyO3::SafeCode,
    },
    FaultInfo {
        fault: Fault::SafeStaticKeepsKeys,
        lesson: 19,
        site: "storing a new key in a SafeHashTable",
        expected: Expected::Leak,
        summary: "a static is never dropped: a key logged in a static list stays alive \
                  after its table is gone, to the end of the process",
        c: CSite {
            correct: "/* the table's entry is the only reference it takes */",
            faulty: "static PyObject *keys_seen;  /* a list, made at module init */\nif (PyList_Append(keys_seen, key) < 0) {  /* never emptied */\n    return -1;\n}",
        },
        safe: InSafePyO3::SafeCode,
    },
];

/// Faults whose damage does not depend on what a script tests: module init
/// (`module-add-object`) frees an attribute at import, and a script then crashes or not
/// depending on what reuses that memory; the default hash of every new table
/// (`releases-borrowed-builtins`) crashes any script that makes a few tables, by its exit.
/// A probe ending badly under them tells nothing.
pub const UNTARGETED_FAULTS: [Fault; 2] = [Fault::ModuleAddObject, Fault::ReleasesBorrowedBuiltins];

/// The catalogue row of `fault`.
pub fn info(fault: Fault) -> &'static FaultInfo {
    CATALOGUE
        .iter()
        .find(|info| info.fault == fault)
        .expect("every fault has a catalogue row")
}

impl Fault {
    /// The CLI spelling, e.g. `set-missing-incref`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SetMissingIncref => "set-missing-incref",
            Fault::DeallocMissingDecref => "dealloc-missing-decref",
            Fault::HashResultLeak => "hash-result-leak",
            Fault::GetBorrowedReturn => "get-borrowed-return",
            Fault::RemoveDoubleDecref => "remove-double-decref",
            Fault::SetMissingKeyIncref => "set-missing-key-incref",
            Fault::ErrorPathLeak => "error-path-leak",
            Fault::ItemsStealsBorrowed => "items-steals-borrowed",
            Fault::UpdateUsesReleasedPair => "update-uses-released-pair",
            Fault::ClearReturnsBorrowedNone => "clear-returns-borrowed-none",
            Fault::NoTraverse => "no-traverse",
            Fault::TrustsArgumentType => "trusts-argument-type",
            Fault::ModuleAddObject => "module-add-object",
            Fault::ReleasesBorrowedBuiltins => "releases-borrowed-builtins",
            Fault::HashErrorLeak => "hash-error-leak",
            Fault::CompareKeepsBorrowedEntry => "compare-keeps-borrowed-entry",
            Fault::ForgetsTypeReference => "forgets-type-reference",
            Fault::SafeNoTraverse => "safe-no-traverse",
            Fault::SafeMemForget => "safe-mem-forget",
            Fault::SafeStaticKeepsKeys => "safe-static-keeps-keys",
        }
    }

    pub fn from_name(name: &str) -> Result<Fault, UnknownFault> {
        CATALOGUE
            .iter()
            .map(|info| info.fault)
            .find(|fault| fault.name() == name)
            .ok_or_else(|| UnknownFault(name.to_owned()))
    }
}

/// A fault name that is not in the catalogue; its message lists the valid ones.
#[derive(Debug)]
pub struct UnknownFault(pub String);

impl std::fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let valid: Vec<&str> = CATALOGUE.iter().map(|info| info.fault.name()).collect();
        write!(
            f,
            "unknown fault '{}'; valid faults: {}",
            self.0,
            valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownFault {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_both_c_variants_and_they_differ() {
        for info in CATALOGUE {
            let name = info.fault.name();
            assert!(!info.c.correct.trim().is_empty(), "{name}: no correct C");
            assert!(!info.c.faulty.trim().is_empty(), "{name}: no faulty C");
            assert_ne!(info.c.correct, info.c.faulty, "{name}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for info in CATALOGUE {
            assert_eq!(Fault::from_name(info.fault.name()).unwrap(), info.fault);
        }
        let message = Fault::from_name("nope").unwrap_err().to_string();
        assert!(message.contains("set-missing-incref"), "{message}");
    }

    #[test]
    fn safe_pyo3_points_from_raw_faults_to_safe_ones() {
        for row in CATALOGUE {
            let name = row.fault.name();
            match row.safe {
                InSafePyO3::StillPossible(safe) => {
                    assert_eq!(info(safe).safe, InSafePyO3::SafeCode, "{name}");
                    assert!(!name.starts_with("safe-"), "{name}");
                }
                InSafePyO3::SafeCode => assert!(name.starts_with("safe-"), "{name}"),
                _ => assert!(!name.starts_with("safe-"), "{name}"),
            }
        }
    }

    #[test]
    fn clap_spelling_matches_the_catalogue() {
        use clap::ValueEnum;
        for fault in Fault::value_variants() {
            let clap_name = fault.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(clap_name, fault.name());
        }
    }
}
