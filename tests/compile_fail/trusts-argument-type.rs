// merge() takes another table; the raw fault uses its argument as a
// table without checking.
use pyo3::prelude::*;

#[pyclass]
struct Table {
    load: usize,
}

#[pymethods]
impl Table {
    fn merge(&mut self, other: &Bound<'_, PyAny>) {
        // whatever it is, read it as a Table
        let source = other.cast_unchecked::<Table>();
        self.load += source.borrow().load;
    }
}

fn main() {}
