// set() stores a new key; the raw fault keeps the caller's key
// without a reference of its own.
use pyo3::prelude::*;

#[pyclass]
struct Table {
    keys: Vec<Py<PyAny>>,
}

#[pymethods]
impl Table {
    fn set(&mut self, key: &Bound<'_, PyAny>) {
        let keys = &mut self.keys;
        keys.push(key.unbind()); // keep the key we were lent
    }
}

fn main() {}
