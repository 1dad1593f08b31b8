//! The small XML documents packs carry: escaping for writing (XML 1.0 sections 2.4 and 3.3.3)
//! and a bounded element tree for reading (a pack ISO is untrusted input).

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

/// Most elements a document may hold before it is refused.
const MAX_ELEMENTS: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// Escapes text for an attribute value or element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An element: local name (prefix dropped), attributes, children and its direct text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Name without namespace prefix.
    pub name: String,
    /// Attributes (prefixes kept), in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<Element>,
    /// Concatenated text directly inside the element.
    pub text: String,
}

impl Element {
    /// The attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Children named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child named `name`.
    pub fn first(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_owned()
}

fn element(e: &BytesStart<'_>) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        attrs.push((AsRef::<str>::as_ref(&a.key).to_owned(), value.into_owned()));
    }
    Ok(Element { name: local(e.name().as_ref()), attrs, ..Element::default() })
}

/// Parses `text` into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| format!("not well-formed XML: {e}"))?;
        let done = |el: Element, stack: &mut Vec<Element>, root: &mut Option<Element>| match stack
            .last_mut()
        {
            Some(parent) => parent.children.push(el),
            None => *root = Some(el),
        };
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err("content after the root element".into());
            }
            Event::Start(e) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err("too many or too deeply nested elements".into());
                }
                stack.push(element(&e)?);
            }
            Event::Empty(e) => {
                count += 1;
                let el = element(&e)?;
                done(el, &mut stack, &mut root);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                done(el, &mut stack, &mut root);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                let c =
                    match (r.resolve_char_ref().map_err(|e| format!("bad reference: {e}"))?, &*r) {
                        (Some(c), _) => c,
                        (None, "amp") => '&',
                        (None, "lt") => '<',
                        (None, "gt") => '>',
                        (None, "quot") => '"',
                        (None, "apos") => '\'',
                        (None, other) => return Err(format!("unknown entity &{other};")),
                    };
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element at end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b & "c"'"#), "a&lt;b &amp; &quot;c&quot;&apos;");
    }

    #[test]
    fn parses_a_tree() {
        let root = parse(r#"<?xml version="1.0"?><repomd xmlns:rpm="x"><data type="primary"><rpm:location href="a&amp;b"/><size>12</size></data></repomd>"#).unwrap();
        assert_eq!(root.name, "repomd");
        let data = root.first("data").unwrap();
        assert_eq!(data.attr("type"), Some("primary"));
        assert_eq!(data.first("location").unwrap().attr("href"), Some("a&b"));
        assert_eq!(data.first("size").unwrap().text, "12");
        for bad in ["<a>", "<a></b>", "", "<a/><b/>", "<a>&bogus;</a>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
