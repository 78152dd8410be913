"""Known holders, expected counts in the labels: lab's probes must read exactly these on
every CPython from 3.10 to 3.15, from every context (module level, function locals,
closures, class bodies, comprehensions, attributes, container elements).

Run by tests/hashtable.rs through `refcount-lab run`; every `refcount` event's label starts
with the count it must show, and the test compares.
"""
import lab


class Thing:
    pass


# Module level: names are globals of __main__.
thing = Thing()
lab.refcount(thing, "thing", "1 module: one name")
alias = thing
lab.refcount(thing, "thing", "2 module: two names")
pair = [thing, thing]
lab.refcount(thing, "thing", "4 module: a list holds it twice more")
lab.refcount(pair[0], "pair[0]", "4 module: read from the list")
del alias, pair
lab.refcount(thing, "thing", "1 module: back to one name")
as_tuple = (thing,)
lab.refcount(as_tuple[0], "as_tuple[0]", "2 module: a name and a tuple")
del as_tuple

holder = Thing()
holder.attr = Thing()
lab.refcount(holder.attr, "holder.attr", "1 module: only the attribute")
lab.refcount(holder, "holder", "1 module: one name")


def in_a_function():
    local = Thing()
    lab.refcount(local, "local", "1 function: one local")
    other = local
    lab.refcount(local, "local", "2 function: two locals")
    lab.refcount(other, "other", "2 function: the same object by its other name")
    name = "other"
    lab.refcount(other, name, "2 function: the name argument is a local too")
    box = [local]
    lab.refcount(box[0], "box[0]", "3 function: two locals and a list")
    lab.refcount(thing, "thing", "1 function: a global")
    lab.refcount(obj=local, name="local", label="3 function: keyword arguments")
    del other, box
    lab.refcount(local, "local", "1 function: back to one local")


in_a_function()


def closure():
    captured = Thing()

    def inner():
        lab.refcount(captured, "captured", "1 closure: only the cell")

    lab.refcount(captured, "captured", "1 closure: read through the cell")
    return inner


closure()()


class Body:
    member = Thing()
    lab.refcount(member, "member", "1 class body: one name in the namespace")


lab.refcount(Body.member, "Body.member", "1 class: the attribute")
[lab.refcount(x, "x", "3 comprehension: a global, the list, the loop variable") for x in [thing]]
