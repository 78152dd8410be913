// Module init adds __version__; the raw fault releases the reference
// the module took.
use pyo3::prelude::*;
use pyo3::types::PyString;

#[pymodule]
fn hashtable(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let version = PyString::new(module.py(), "0.1.0");
    module.add("__version__", version)?; // the module takes ours...
    drop(version); // ...and we release it as well
    Ok(())
}

fn main() {}
