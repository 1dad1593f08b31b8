//! Quoting untrusted text in messages: at most [`MAX_QUOTED`] characters of any one input
//! (a path, a name, a field) go into an error line, so a hostile input cannot flood a log.

use std::borrow::Cow;

/// The most characters of one input's text that a message quotes.
pub const MAX_QUOTED: usize = 200;

/// `text`, cut to [`MAX_QUOTED`] characters with `…` appended when it was longer.
pub fn truncated(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncated("short"), "short");
        let exact = "é".repeat(MAX_QUOTED);
        assert_eq!(truncated(&exact), exact);
        let long = "é".repeat(MAX_QUOTED + 1);
        let cut = truncated(&long);
        assert_eq!(cut.chars().count(), MAX_QUOTED + 1);
        assert!(cut.ends_with('…'));
    }
}
