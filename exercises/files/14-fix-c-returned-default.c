/* Exercise 14 (fix the C) · lesson 3: returning an object hands over a reference.

   A tiny extension module, fixc_default, in plain C. set_default(obj) keeps obj as the
   module's default; default_value() returns it. `refcount-lab verify` compiles this file
   against your Python's headers and runs a probe against it (`refcount-lab exercise 14`
   shows the probe's run). As written, every call of default_value() costs the default one
   reference, until it is freed while the module still holds it.

   Fix the C in your editor, save, and run `refcount-lab verify`. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *the_default = NULL; /* owned by the module once set */

/* Py_XSETREF(var, new) stores new in var, then releases the value var held before (X: that
   value may be NULL, as the_default is until the first call). Storing first matters:
   releasing the old value can run Python code (a __del__) that calls default_value(), and
   it must find the new value there, not a freed one. */
static PyObject *
set_default(PyObject *module, PyObject *obj)
{
    Py_XSETREF(the_default, Py_NewRef(obj)); /* keep our own, release the old one */
    Py_RETURN_NONE;
}

static PyObject *
default_value(PyObject *module, PyObject *unused)
{
    if (the_default == NULL) {
        Py_RETURN_NONE;
    }
    return the_default;
}

static PyMethodDef methods[] = {
    {"set_default", set_default, METH_O, "Keep obj as the default."},
    {"default_value", default_value, METH_NOARGS, "The default set last."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "fixc_default", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit_fixc_default(void)
{
    return PyModule_Create(&module_def);
}
