/* Exercise 17 (fix the C) · lesson 9: every way out releases what the function took.

   A tiny extension module, fixc_split, in plain C. split(seq) returns (seq[0], seq[1]) and
   raises IndexError when seq is too short. `refcount-lab verify` compiles this file against
   your Python's headers and runs a probe against it (`refcount-lab exercise 17` shows the
   probe's run). As written, split() works, but each call that fails for want of a second
   item leaks a reference.

   Fix the C in your editor, save, and run `refcount-lab verify`. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
split(PyObject *module, PyObject *seq)
{
    PyObject *head = PySequence_GetItem(seq, 0); /* a new reference */
    if (head == NULL) {
        return NULL;
    }
    PyObject *second = PySequence_GetItem(seq, 1); /* a new reference */
    if (second == NULL) {
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, head, second); /* takes references of its own */
    Py_DECREF(head);
    Py_DECREF(second);
    return result;
}

static PyMethodDef methods[] = {
    {"split", split, METH_O, "(seq[0], seq[1])."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "fixc_split", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit_fixc_split(void)
{
    return PyModule_Create(&module_def);
}
