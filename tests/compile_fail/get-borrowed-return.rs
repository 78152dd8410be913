// get() returns a stored value; the raw fault hands out the table's
// own reference.
use pyo3::prelude::*;

#[pyclass]
struct Table {
    value: Py<PyAny>,
}

#[pymethods]
impl Table {
    fn get(&self) -> Py<PyAny> {
        self.value // the table's own reference, handed out
    }
}

fn main() {}
