// items() builds (key, value) tuples; the raw fault gives each tuple the table's own
// references (PyTuple_SetItem steals them).
use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[pyclass]
struct Table {
    entries: Vec<(Py<PyAny>, Py<PyAny>)>,
}

#[pymethods]
impl Table {
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.entries
            .iter()
            .map(|(key, value)| PyTuple::new(py, [*key, *value])) // the table's references
            .collect()
    }
}

fn main() {}
