// items() builds (key, value) tuples; the raw fault gives each tuple
// the table's own references (PyTuple_SetItem steals them).
use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[pyclass]
struct Table {
    entries: Vec<(Py<PyAny>, Py<PyAny>)>,
}

#[pymethods]
impl Table {
    fn items<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyTuple>> {
        let mut items = Vec::new();
        for (key, value) in &self.entries {
            // the tuple gets the table's own references
            items.push(PyTuple::new(py, [*key, *value]).unwrap());
        }
        items
    }
}

fn main() {}
