/* Exercise 15 (fix the C) · lesson 6: a borrowed reference is not yours to give.

   A tiny extension module, fixc_first, in plain C. first(list) returns the first item of a
   list. `refcount-lab verify` compiles this file against your Python's headers and runs a
   probe against it (`refcount-lab exercise 15` shows the probe's run). As written, every
   call of first() costs the item one reference, until it is freed while the list still
   holds it.

   Fix the C in your editor, save, and run `refcount-lab verify`. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
first(PyObject *module, PyObject *list)
{
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "first() takes a list");
        return NULL;
    }
    return PyList_GetItem(list, 0); /* NULL with IndexError if the list is empty */
}

static PyMethodDef methods[] = {
    {"first", first, METH_O, "The first item of a list."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "fixc_first", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit_fixc_first(void)
{
    return PyModule_Create(&module_def);
}
