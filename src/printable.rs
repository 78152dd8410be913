//! Text from other programs (a script's output and trace, process names, a learner's
//! files), made safe to print on a terminal: control characters, which could clear the
//! screen, move the cursor or forge a line, the marks that reorder text on screen
//! (bidirectional overrides) and the characters that hide text or break lines unseen
//! (zero-width characters, line and paragraph separators) are shown as escapes (`\x1b`,
//! `\u{202e}`, `\u{200b}`), never sent.

/// `text` for one line: newlines and tabs are escaped too.
pub fn one_line(text: &str) -> String {
    escape(text, |_| false)
}

/// A path (a learner's folder, a file to write) for one line.
pub fn path(path: &std::path::Path) -> String {
    one_line(&path.display().to_string())
}

/// `text` for several lines: newlines and tabs are kept.
pub fn lines(text: &str) -> String {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> String {
    let unsafe_char = |c: char| !keep(c) && (c.is_control() || invisible(c));
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            c if !unsafe_char(c) => c.to_string(),
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if u32::from(c) < 0x100 => format!("\\x{:02x}", u32::from(c)),
            c => c.escape_unicode().to_string(),
        })
        .collect()
}

/// A character that changes how text around it is shown without showing itself: bidi marks,
/// embeddings, overrides and isolates; zero-width spaces, joiners and the byte-order mark;
/// line and paragraph separators (U+0085, NEL, is a control character already); the soft
/// hyphen, blank fillers and the tag characters that hide text in plain sight.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_sent() {
        assert_eq!(
            one_line("a\nb\x1b[2J\u{9b}\u{202e}"),
            "a\\nb\\x1b[2J\\x9b\\u{202e}"
        );
        assert_eq!(lines("a\n\tb\x1b"), "a\n\tb\\x1b");
        assert_eq!(lines("plain … text"), "plain … text");
    }

    #[test]
    fn zero_width_characters_and_separators_are_shown_not_sent() {
        assert_eq!(
            one_line("a\u{200b}b\u{200c}c\u{200d}d\u{2060}e\u{feff}f"),
            "a\\u{200b}b\\u{200c}c\\u{200d}d\\u{2060}e\\u{feff}f"
        );
        assert_eq!(
            lines("one\u{2028}two\u{2029}three\u{85}four\n"),
            "one\\u{2028}two\\u{2029}three\\x85four\n"
        );
        // Bidi marks too, not only overrides; letters and spaces of any script pass.
        assert_eq!(
            one_line("\u{200e}\u{200f}\u{61c}"),
            "\\u{200e}\\u{200f}\\u{61c}"
        );
        assert_eq!(one_line("naïve 日本語 Ω\u{a0}x"), "naïve 日本語 Ω\u{a0}x");
        // Text hidden in tag characters or split by soft hyphens shows.
        assert_eq!(one_line("ok\u{e0041}\u{ad}"), "ok\\u{e0041}\\xad");
    }
}
