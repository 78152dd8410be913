/* Exercise 16 (fix the C) · lesson 10: a function that steals needs a reference you own.

   A tiny extension module, fixc_pair, in plain C. pair(a, b) returns the tuple (a, b).
   `refcount-lab verify` compiles this file against your Python's headers and runs a probe
   against it (`refcount-lab exercise 16` shows the probe's run). As written, every pair
   made and dropped costs a and b one reference each.

   Fix the C in your editor, save, and run `refcount-lab verify`. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
pair(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pair() takes exactly two arguments");
        return NULL;
    }
    PyObject *tuple = PyTuple_New(2);
    if (tuple == NULL) {
        return NULL;
    }
    PyTuple_SetItem(tuple, 0, args[0]);
    PyTuple_SetItem(tuple, 1, args[1]);
    return tuple;
}

static PyMethodDef methods[] = {
    {"pair", (PyCFunction)(void (*)(void))pair, METH_FASTCALL, "The tuple (a, b)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "fixc_pair", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit_fixc_pair(void)
{
    return PyModule_Create(&module_def);
}
