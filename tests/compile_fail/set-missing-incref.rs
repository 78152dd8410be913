// set() returns the table itself, so calls chain; the raw fault
// returns `self` without taking a reference for the caller.
use pyo3::prelude::*;

#[pyclass]
struct Table {}

#[pymethods]
impl Table {
    fn set<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf // hand back the reference we were lent, as our own
    }
}

fn main() {}
