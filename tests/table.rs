//! The pure chained table's own unit tests (`native/src/table.rs`), run here because the
//! native crate is a cdylib for the stable ABI: a test binary of it would need libpython.
//! The table never touches Python (not even its types), so it compiles in on its own.

#[allow(dead_code)]
#[path = "../native/src/table.rs"]
mod table;
