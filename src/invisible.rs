//! Characters that change how a line is shown without being seen: control characters,
//! line and paragraph separators, the bidi controls that reorder text, and the byte-order
//! mark. Ids refuse them, suite comments turn them into spaces, the terminal shows them as
//! escapes: one definition for all three.

/// Whether `c` is one of them. Newline and tab count: callers that keep them say so.
pub fn is_layout_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_bidi_and_controls_but_not_text() {
        for c in [
            '\u{1b}', '\n', '\u{85}', '\u{2028}', '\u{202e}', '\u{2067}', '\u{feff}',
        ] {
            assert!(is_layout_control(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', '→', '\u{fffd}'] {
            assert!(!is_layout_control(c), "{c:?}");
        }
    }
}
