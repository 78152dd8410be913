"""Where code is, for `refcount-lab hunt`: which frames are the harness's (this folder's
files, `lab`, the test runners, the standard library's import and run machinery) and
which are the code under test, named `file:line` relative to the current folder."""

import os

import lab

# Frames from these files are the harness, not the code under test: the hunt's own files
# (this folder holds them alone), lab, and these packages.
HARNESS_FOLDER = os.path.dirname(os.path.abspath(__file__))
HARNESS_PACKAGES = ("unittest", "runpy.py", "importlib", "_pytest", "pytest", "pluggy", "tracemalloc.py")


def harness_file(filename):
    # <string>: refcount-lab's launcher (`python -c`).
    if filename == lab.__file__ or filename == "<string>" or filename.startswith("<frozen"):
        return True
    if os.path.dirname(os.path.abspath(filename)) == HARNESS_FOLDER:
        return True
    parts = filename.replace("\\", "/").split("/")
    return any(package in parts for package in HARNESS_PACKAGES)


def user_frame(traceback):
    """The innermost frame of the code under test, as `file:line`, or None."""
    # A Traceback lists the oldest call first.
    return user_site((frame.filename, frame.lineno) for frame in reversed(traceback))


def user_site(frames):
    """`user_frame` of (file, line) pairs, the innermost first (as tracemalloc keeps them)."""
    for filename, lineno in frames:
        if not harness_file(filename):
            return "%s:%d" % (relative(filename), lineno)
    return None


def relative(filename):
    try:
        path = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if path.startswith("..") else path


def source_line(site):
    import linecache

    filename, _, lineno = site.rpartition(":")
    for candidate in (filename, os.path.abspath(filename)):
        line = linecache.getline(candidate, int(lineno)).strip()
        if line:
            return line
    return ""
