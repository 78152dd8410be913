"""Exercise 2 (predict) · lesson 2, watching reference counts.

Lesson 2's demo binds a fresh object to `thing`, then does `other = thing`, then
`both = [thing, thing]`, reporting the count (without lab's own references) after each step.

Replace each ... with the count you expect, then run `refcount-lab verify`.
"""

AFTER_A_SECOND_NAME = ...  # after `other = thing`
IN_A_LIST_TWICE = ...  # after `both = [thing, thing]` (other still bound)
