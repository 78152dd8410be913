//! Text from other programs (a script's output and trace, process names, a learner's
//! files), made safe to print on a terminal: control characters, which could clear the
//! screen, move the cursor or forge a line, and the marks that reorder text on screen
//! (bidirectional overrides) are shown as escapes (`\x1b`, `\u{202e}`), never sent.

/// `text` for one line: newlines and tabs are escaped too.
pub fn one_line(text: &str) -> String {
    escape(text, |_| false)
}

/// `text` for several lines: newlines and tabs are kept.
pub fn lines(text: &str) -> String {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> String {
    let unsafe_char = |c: char| {
        !keep(c)
            && (c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    };
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
}
