//! Lesson prose as terminal text: the small Markdown subset the lessons are written in.
//!
//! Blocks are separated by blank lines: a heading (`# ` or `## `), a paragraph (its lines
//! are joined and wrapped again to the width) or a list (items start with `- `; their
//! wrapped lines line up under the item's text). Inline, `**strong**`, `*emphasis*` and `` `code` ``: with colour, strong is
//! bold, emphasis italic and code cyan, marks dropped; without colour, strong and emphasis
//! lose their marks and code keeps its backticks (plain text's own way to set code apart).
//! Nothing else is Markdown here: a `*` or `` ` `` without its partner is kept as written.

/// How a piece of text is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Plain,
    Strong,
    Emphasis,
    Code,
}

/// `text` rendered to lines of at most `width` columns (a word longer than that gets a
/// line of its own).
pub fn render(text: &str, width: usize, color: bool) -> String {
    let mut out = Vec::new();
    for block in text.trim().split("\n\n").filter(|b| !b.trim().is_empty()) {
        if !out.is_empty() {
            out.push(String::new());
        }
        let lines: Vec<&str> = block.lines().collect();
        if let Some((level, title)) = heading(lines[0]) {
            out.extend(render_heading(level, title, width, color));
        } else if lines[0].starts_with("- ") {
            for item in list_items(&lines) {
                out.extend(wrap_words(&words(&item, color), width, "- ", "  ", color));
            }
        } else {
            out.extend(wrap_words(
                &words(&lines.join(" "), color),
                width,
                "",
                "",
                color,
            ));
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// `# Title` → (1, "Title"), `## Title` → (2, "Title").
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let title = line[level..].strip_prefix(' ')?;
    (1..=2).contains(&level).then_some((level, title.trim()))
}

/// A heading: bold with colour; underlined with `=` (level 1) or `-` without.
fn render_heading(level: usize, title: &str, width: usize, color: bool) -> Vec<String> {
    let lines: Vec<String> = wrap_words(&words(title, false), width, "", "", false);
    if color {
        return lines
            .into_iter()
            .map(|line| format!("\x1b[1m{line}\x1b[0m"))
            .collect();
    }
    let underline = if level == 1 { "=" } else { "-" };
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut lines = lines;
    lines.push(underline.repeat(longest));
    lines
}

/// The items of a list block, each as one line of text.
fn list_items(lines: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for line in lines {
        match line.strip_prefix("- ") {
            Some(start) => items.push(start.trim().to_owned()),
            None => match items.last_mut() {
                Some(item) => {
                    item.push(' ');
                    item.push_str(line.trim());
                }
                None => items.push(line.trim().to_owned()),
            },
        }
    }
    items
}

/// Code spans up to this many columns are never broken across lines; longer ones (a whole
/// command line) break at their spaces like text.
const UNBROKEN_CODE: usize = 32;

/// The words of `text` with their marks, the marks themselves removed (but for code in
/// plain text, which keeps its backticks). A short code span is one word, spaces and all;
/// a word may be made of several pieces (`(*new*)` is three).
fn words(text: &str, color: bool) -> Vec<Vec<(Mark, String)>> {
    let mut words: Vec<Vec<(Mark, String)>> = vec![Vec::new()];
    for (mark, piece) in pieces(text) {
        let (mark, piece) = match mark {
            Mark::Code if !color => (Mark::Plain, format!("`{piece}`")),
            mark => (mark, piece),
        };
        let is_code = mark == Mark::Code || piece.starts_with('`');
        if is_code && piece.chars().count() <= UNBROKEN_CODE {
            // A short code span stays on one line.
            words.last_mut().expect("never empty").push((mark, piece));
            continue;
        }
        for (i, part) in piece.split(' ').enumerate() {
            if i > 0 && !words.last().is_some_and(Vec::is_empty) {
                words.push(Vec::new());
            }
            if !part.is_empty() {
                words
                    .last_mut()
                    .expect("never empty")
                    .push((mark, part.to_owned()));
            }
        }
    }
    words.retain(|word| !word.is_empty());
    words
}

/// `text` cut at its marks: (mark, text without the mark characters).
fn pieces(text: &str) -> Vec<(Mark, String)> {
    let mut pieces = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let span = match c {
            '`' => closed(rest, "`").map(|(inner, len)| (Mark::Code, inner, len)),
            '*' if rest.starts_with("**") => {
                closed(rest, "**").map(|(inner, len)| (Mark::Strong, inner, len))
            }
            '*' => closed(rest, "*").map(|(inner, len)| (Mark::Emphasis, inner, len)),
            _ => None,
        };
        match span {
            Some((mark, inner, len)) => {
                if !plain.is_empty() {
                    pieces.push((Mark::Plain, std::mem::take(&mut plain)));
                }
                pieces.push((mark, inner.to_owned()));
                rest = &rest[len..];
            }
            None => {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !plain.is_empty() {
        pieces.push((Mark::Plain, plain));
    }
    pieces
}

/// For `text` starting with `delimiter`: the text up to the closing delimiter, and the
/// length of the whole span. Emphasis and strong need text right inside their marks
/// (`2 * 3 * 4` is no emphasis); code takes anything.
fn closed<'a>(text: &'a str, delimiter: &str) -> Option<(&'a str, usize)> {
    let after = &text[delimiter.len()..];
    let end = after.find(delimiter)?;
    let inner = &after[..end];
    let tight = !inner.starts_with(' ') && !inner.ends_with(' ');
    (!inner.is_empty() && (delimiter == "`" || tight)).then_some((inner, 2 * delimiter.len() + end))
}

/// Greedy wrapping of `words` into lines of at most `width` visible columns, the first
/// line starting with `first`, the others with `rest`.
fn wrap_words(
    words: &[Vec<(Mark, String)>],
    width: usize,
    first: &str,
    rest: &str,
    color: bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_owned();
    let mut used = first.chars().count();
    let mut empty = true;
    for word in words {
        let len: usize = word.iter().map(|(_, text)| text.chars().count()).sum();
        if !empty && used + 1 + len > width {
            lines.push(std::mem::replace(&mut line, rest.to_owned()));
            used = rest.chars().count();
            empty = true;
        }
        if !empty {
            line.push(' ');
            used += 1;
        }
        for (mark, text) in word {
            line.push_str(&paint(*mark, text, color));
        }
        used += len;
        empty = false;
    }
    lines.push(line);
    lines
}

fn paint(mark: Mark, text: &str, color: bool) -> String {
    let code = match mark {
        _ if !color => return text.to_owned(),
        Mark::Plain => return text.to_owned(),
        Mark::Strong => "1",
        Mark::Emphasis => "3",
        Mark::Code => "36",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_are_rewrapped_and_marks_dropped_in_plain_text() {
        let text = "A *new*\nreference: `Py_INCREF(x)` is **yours**.\n\nNext paragraph.";
        assert_eq!(
            render(text, 20, false),
            "A new reference:\n`Py_INCREF(x)` is\nyours.\n\nNext paragraph.\n"
        );
    }

    #[test]
    fn headings_are_underlined_in_plain_text() {
        assert_eq!(
            render("# Rules\n\n## New", 80, false),
            "Rules\n=====\n\nNew\n---\n"
        );
        assert_eq!(render("#hashtag", 80, false), "#hashtag\n");
    }

    #[test]
    fn list_items_hang_under_their_text() {
        let text = "- one two three\n  four\n- five";
        assert_eq!(render(text, 12, false), "- one two\n  three four\n- five\n");
    }

    #[test]
    fn lone_marks_stay_and_colour_paints_marks() {
        assert_eq!(
            render("2 * 3 * 4 and `[]*`", 80, false),
            "2 * 3 * 4 and `[]*`\n"
        );
        assert_eq!(render("after `a = b`?", 80, false), "after `a = b`?\n");
        assert_eq!(render("(*new*)", 80, true), "(\x1b[3mnew\x1b[0m)\n");
        assert_eq!(render("a `b c` d", 80, true), "a \x1b[36mb c\x1b[0m d\n");
    }

    #[test]
    fn no_line_is_wider_than_the_width_unless_one_word_is() {
        let text = "word ".repeat(50) + "averyveryverylongword";
        let out = render(&text, 16, false);
        assert!(out.lines().all(|l| l.chars().count() <= 21), "{out}");
        assert!(out.lines().filter(|l| l.chars().count() > 16).count() <= 1);
    }
}
