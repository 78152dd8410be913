"""Lesson 20: h == d runs Python code in the middle. What if that code empties h?"""
import hashtable
import lab


class Name:
    """A key compared by its text, with an __eq__ written in Python."""

    def __init__(self, text):
        self.text = text

    def __hash__(self):
        return hash(self.text)

    def __eq__(self, other):
        # Any Python code can run here. This __eq__ tidies up: it empties the table.
        lab.say("Name.__eq__ runs inside h == d: it empties h, then returns")
        h.clear()
        return isinstance(other, Name) and self.text == other.text


class Score:
    def __init__(self, points, whose):
        self.points = points
        self.whose = whose

    def __eq__(self, other):
        lab.say("Score.__eq__ compares %s score with %s" % (self.whose, other.whose))
        return self.points == other.points

    def __del__(self):
        lab.say("%s Score freed" % self.whose)


ada = Name("ada")
h = hashtable.HashTable()
h[ada] = Score(36, "h's")  # the table holds the only reference to this Score
d = {Name("ada"): Score(36, "d's")}  # an equal key and an equal score, other objects
lab.say("h and d map equal names to equal scores. Is h == d?")
try:
    lab.say("h == d is %s" % (h == d))
except RuntimeError as error:
    lab.say("h == d raised RuntimeError: %s" % error)
lab.say("h has %d entries left" % len(h))
