// pop() removes a value and returns it; the raw fault also releases
// it.
use pyo3::prelude::*;

#[pyclass]
struct Table {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Table {
    fn pop(&mut self) -> Option<Py<PyAny>> {
        let value = self.value.take()?;
        drop(value); // release the table's reference...
        Some(value) // ...and hand the same one to the caller
    }
}

fn main() {}
