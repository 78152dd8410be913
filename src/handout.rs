//! The handout (`refcount-lab rules`): the ownership rules the lessons teach, on one page a
//! teacher can print (at most [`PAGE_LINES`] lines of 80 columns), in Markdown.
//!
//! The rules are written here, one per [`Topic`], not gathered from the lessons' own
//! `rule`s: several lessons teach one rule, and a page has no room to say it twice. Each rule
//! names the lessons whose `topic` it is.

use crate::lessons::{Lesson, Topic};

/// The most lines the text handout may take at 80 columns: one printed page.
#[cfg(test)]
pub const PAGE_LINES: usize = 60;

/// One rule: the topic of the lessons that show it, and its text (Markdown).
struct Rule {
    topic: Topic,
    text: &'static str,
}

const TITLE: &str = "Who owns this reference? The rules of refcount-lab";

const INTRO: &str = "Every reference has one owner, who releases it exactly once; at a count \
    of zero the object is freed. The words are the C API documentation's (its glossary, and \
    \"Reference Count Details\" in docs.python.org/3/c-api/intro.html): a *strong* reference \
    is one you own (a *new* one when a function hands it to you), a *borrowed* one is someone \
    else's, and a function that *steals* one takes yours.";

/// The rules, one per topic, in the order of `Topic`.
const RULES: &[Rule] = &[
    Rule {
        topic: Topic::Counting,
        text: "**A count counts owners**: names, container slots, attributes, running calls. \
               Since 3.14 a call may borrow a local variable without counting it, so a count \
               of 1 does not prove that nothing else uses the object.",
    },
    Rule {
        topic: Topic::Returned,
        text: "**What you return** is a new reference: `return Py_NewRef(obj)`, never a \
               pointer you do not own.",
    },
    Rule {
        topic: Topic::Received,
        text: "**What a function returns to you** is a new reference unless its documentation \
               says \"Borrowed reference\": release it once (`Py_DECREF`) or hand it on, on \
               every path out, error paths included. NULL means an exception is set: pass it \
               on.",
    },
    Rule {
        topic: Topic::Released,
        text: "**What an object owns, its dealloc releases**, once; a reference handed on is \
               no longer yours; a heap type's instance owns one to its type, which dealloc \
               releases after `tp_free`. `Py_XINCREF`, `Py_XDECREF`, `Py_XNewRef`, `Py_CLEAR` accept \
               NULL. To replace a reference you own, `Py_SETREF(field, new)` (`Py_XSETREF` \
               if the old one may be NULL; neither is in the limited API) stores first, then \
               releases.",
    },
    Rule {
        topic: Topic::Borrowed,
        text: "**Borrowed**: arguments, and what `PyTuple_GetItem`, `PyList_GetItem`, \
               `PyDict_GetItem`, `PyEval_GetBuiltins` return. Never release one; use it only \
               while its owner holds it; to keep it, take your own: `Py_NewRef`.",
    },
    Rule {
        topic: Topic::Stolen,
        text: "**Stolen**: `PyTuple_SetItem` and `PyList_SetItem` take the item's reference \
               even when they fail: pass one you own, and never release it afterwards, on the \
               error path either. `PyModule_AddObjectRef` (3.10+) takes a reference of its \
               own, `PyModule_Add` (3.13+) always takes yours, `PyModule_AddObject` only on \
               success.",
    },
    Rule {
        topic: Topic::Immortal,
        text: "**Immortal** since 3.12: `None`, `True`, `False`, small ints and more; their \
               counts do not move. Count them anyway: on 3.10 and 3.11 a None released too \
               often stops CPython at zero (\"deallocating None\"); on 3.10 a small int is freed in use. \
               `Py_RETURN_NONE` (and `_TRUE`, `_FALSE`, `_NOTIMPLEMENTED`) is right on every \
               version; only a module for the limited API of 3.11 or older built with the 3.12 \
               headers, or 3.13's before 3.13.5 (gh-134989), must write \
               `return Py_NewRef(Py_None)`; for `_NOTIMPLEMENTED` also 3.13's before 3.13.10 \
               and 3.14.0's (gh-140487).",
    },
    Rule {
        topic: Topic::Cycles,
        text: "**Cycles**: the collector frees objects that hold each other only if their \
               type's `tp_traverse` visits every reference they own.",
    },
    Rule {
        topic: Topic::Types,
        text: "**Types**: check a `PyObject *` (`PyObject_TypeCheck`, or \"O!\" when parsing \
               arguments) before you cast it.",
    },
    Rule {
        topic: Topic::Pyo3,
        text: "**Safe PyO3**: `Py` and `Bound` own, `&Bound` borrows; clone to take a \
               reference, drop to release it. The compiler checks the rest, but not that \
               `__traverse__` visits everything, nor that nothing is forgotten \
               (`mem::forget`, `into_ptr`) or kept in a static.",
    },
];

const FINDING_THEM: &str = "**Finding the bugs**: `python -X dev`, on any build, fills freed \
    memory with 0xDD bytes and shows the Python line of a crash. A debug build \
    (`--with-pydebug`) adds `sys.gettotalrefcount()` and `python -m test -R 3:3 TEST` (3 \
    warm-up runs, then 3 that report references that grew); on a release build, \
    `refcount-lab hunt`.";

const CLOSING: &str =
    "Each lesson runs the right and the wrong code side by side: `refcount-lab lesson N`.";

/// The handout, in Markdown: each rule with the lessons of `lessons` that show it.
pub fn markdown(lessons: &[Lesson]) -> String {
    let mut out = format!("# {TITLE}\n\n{INTRO}\n\n");
    for rule in RULES {
        let numbers: Vec<String> = lessons
            .iter()
            .filter(|lesson| lesson.topic == Some(rule.topic))
            .map(|lesson| lesson.number.to_string())
            .collect();
        // No-break spaces keep "(lessons 8, 11, 18)" on one line.
        let shown_in = match numbers.len() {
            0 => String::new(),
            1 => format!(" (lesson\u{a0}{})", numbers[0]),
            _ => format!(" (lessons\u{a0}{})", numbers.join(",\u{a0}")),
        };
        out.push_str(&format!("- {}{shown_in}\n", rule.text));
    }
    out.push_str(&format!("\n{FINDING_THEM}\n\n{CLOSING}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lessons;

    #[test]
    fn one_rule_per_topic_in_order_and_each_shown_by_a_lesson() {
        let topics: Vec<Topic> = RULES.iter().map(|rule| rule.topic).collect();
        assert!(
            topics.windows(2).all(|pair| pair[0] < pair[1]),
            "one rule per topic, in the order of Topic: {topics:?}"
        );
        let catalogue = lessons::load(None).unwrap();
        for topic in &topics {
            assert!(
                catalogue.iter().any(|lesson| lesson.topic == Some(*topic)),
                "no lesson shows {topic:?}"
            );
        }
        for lesson in &catalogue {
            if let Some(topic) = lesson.topic {
                assert!(
                    topics.contains(&topic),
                    "no rule for lesson {}",
                    lesson.number
                );
            }
        }
        let handout = markdown(&catalogue);
        assert!(
            handout.contains("(lessons\u{a0}8,\u{a0}11,\u{a0}18,\u{a0}20)"),
            "{handout}"
        );
    }

    #[test]
    fn the_handout_fits_one_page_of_80_columns() {
        let text = crate::markdown::render(&markdown(&lessons::load(None).unwrap()), 80, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= PAGE_LINES, "{} lines:\n{text}", lines.len());
        for line in lines {
            assert!(line.chars().count() <= 80, "over 80 columns: {line}");
        }
    }
}
