// update() stores (key, value) pairs; the raw fault releases a pair,
// then uses the key it borrowed from it.
use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[pyclass]
struct Table {
    keys: Vec<Py<PyAny>>,
}

#[pymethods]
impl Table {
    fn update(&mut self, pair: Bound<PyTuple>) -> PyResult<()> {
        let key = pair.get_borrowed_item(0)?; // lent by pair
        drop(pair); // release the pair...
        self.keys.push(key.to_owned().unbind()); // ...then use the key
        Ok(())
    }
}

fn main() {}
