//! XML 1.0 escaping as libxml2 serialises text and attribute values (what `createrepo_c` writes):
//! `&`, `<`, `>` everywhere, `"` and whitespace control characters in attributes as character
//! references. Characters XML 1.0 does not allow at all (C0 controls other than tab, newline and
//! carriage return, and U+FFFE/U+FFFF) are dropped, since no reference can carry them.

use std::borrow::Cow;

fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
}

fn escape(s: &str, in_attr: bool) -> Cow<'_, str> {
    let special = |c: char| {
        matches!(c, '&' | '<' | '>' | '\r')
            || !allowed(c)
            || (in_attr && matches!(c, '"' | '\n' | '\t'))
    };
    if !s.chars().any(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if in_attr => out.push_str("&quot;"),
            '\n' if in_attr => out.push_str("&#10;"),
            '\t' if in_attr => out.push_str("&#9;"),
            c if !allowed(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes element text.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Escapes an attribute value (to be written between double quotes).
pub(crate) fn attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_only() {
        assert_eq!(text("a & <b> \"q\" 'a'\tx\ny"), "a &amp; &lt;b&gt; \"q\" 'a'\tx\ny");
        assert!(matches!(text("plain ünï"), Cow::Borrowed(_)));
    }

    #[test]
    fn attributes_escape_quotes_and_whitespace() {
        assert_eq!(attr("Au\"th\tor <a@x>\n"), "Au&quot;th&#9;or &lt;a@x&gt;&#10;");
    }

    #[test]
    fn invalid_characters_are_dropped() {
        assert_eq!(text("a\u{1}b\u{1b}c\r"), "abc&#13;");
    }
}
