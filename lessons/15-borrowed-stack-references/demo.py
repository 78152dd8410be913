"""Lesson 15: why sys.getrefcount reads lower on 3.14: borrowed stack references."""
import dis
import sys

import lab


class Thing:
    pass


def pushed_as(function, name):
    """How `function` pushes its variable `name` as getrefcount's argument, on this Python."""
    for instruction in dis.get_instructions(function):
        if instruction.opname.startswith("LOAD") and instruction.argval == name:
            return "%s %s" % (instruction.opname, name)
    return "?"


def in_a_function():
    local = Thing()
    raw = sys.getrefcount(local)
    lab.say("in a function:   sys.getrefcount(local) = %d" % raw)
    lab.say("  the argument is pushed by " + pushed_as(in_a_function, "local"))
    lab.refcount(local, "local", "the probe: one local variable")


def module_level():
    return compile("sys.getrefcount(thing)", "<module>", "exec")


thing = Thing()
raw = sys.getrefcount(thing)
lab.say("at module level: sys.getrefcount(thing) = %d" % raw)
lab.say("  the argument is pushed by " + pushed_as(module_level(), "thing"))
lab.refcount(thing, "thing", "the probe: one global name")
in_a_function()
