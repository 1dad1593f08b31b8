//! The XML-RPC value syntax of `ova.xml`, read by xapi with `Xmlrpc.of_string`
//! (`xapi-project/xen-api:ocaml/xapi/import.ml` `stream_import`).
//!
//! Strings are bare text (`<value>text</value>`, empty `<value/>`); ints, including int64, are
//! written as strings as `XenAPI` does; booleans are `<boolean>0|1</boolean>`, floats
//! `<double>`, maps `<struct>` and sets `<array><data>`. The encoder indents between elements
//! (allowed: whitespace there is not data) and never inside a string. The decoder also takes
//! the typed scalar forms (`<string>`, `<int>`, `<i4>`, `<i8>`, `<dateTime.iso8601>`) other
//! writers use, keeping their text.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::Error;

/// Deepest nesting the decoder follows; `ova.xml` needs about 6.
const MAX_DEPTH: usize = 32;

/// An XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A string, or any other scalar kept as its text (ints, dates).
    Str(String),
    /// `<boolean>`.
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<struct>`: members in document order.
    Struct(Vec<(String, Value)>),
    /// `<array>`.
    Array(Vec<Value>),
}

impl Value {
    #[cfg(test)]
    pub(crate) fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// The value of member `name` of a struct.
    pub(crate) fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Characters XML 1.0 cannot carry in text, even escaped.
pub(crate) fn invalid_xml_char(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    })
}

/// Renders `value` as a complete document with an XML declaration.
pub(crate) fn encode_document(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    encode(value, 0, &mut out);
    out.push('\n');
    out
}

fn indent(depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Appends `<value>…</value>` for `value`, whose own line is already indented to `depth`.
fn encode(value: &Value, depth: usize, out: &mut String) {
    match value {
        Value::Str(s) if s.is_empty() => out.push_str("<value/>"),
        Value::Str(s) => {
            out.push_str("<value>");
            out.push_str(&quick_xml::escape::partial_escape(s.as_str()));
            out.push_str("</value>");
        }
        Value::Bool(b) => {
            out.push_str(if *b {
                "<value><boolean>1</boolean></value>"
            } else {
                "<value><boolean>0</boolean></value>"
            });
        }
        Value::Double(d) => {
            out.push_str("<value><double>");
            out.push_str(&d.to_string());
            out.push_str("</double></value>");
        }
        Value::Struct(members) if members.is_empty() => out.push_str("<value><struct/></value>"),
        Value::Struct(members) => {
            out.push_str("<value><struct>");
            for (name, v) in members {
                indent(depth + 1, out);
                out.push_str("<member><name>");
                out.push_str(&quick_xml::escape::partial_escape(name.as_str()));
                out.push_str("</name>");
                encode(v, depth + 1, out);
                out.push_str("</member>");
            }
            indent(depth, out);
            out.push_str("</struct></value>");
        }
        Value::Array(items) if items.is_empty() => {
            out.push_str("<value><array><data/></array></value>");
        }
        Value::Array(items) => {
            out.push_str("<value><array><data>");
            for v in items {
                indent(depth + 1, out);
                encode(v, depth + 1, out);
            }
            indent(depth, out);
            out.push_str("</data></array></value>");
        }
    }
}

/// Parses a document holding one top-level `<value>`.
pub(crate) fn decode_document(xml: &str) -> Result<Value, Error> {
    let mut p = Parser { reader: Reader::from_str(xml), peeked: None };
    let value = match p.next_element()? {
        Element::Start(name) if name == "value" => p.value_body(0)?,
        Element::Empty(name) if name == "value" => Value::Str(String::new()),
        other => return Err(p.error(format!("expected <value>, found {other}"))),
    };
    match p.next_element()? {
        Element::Eof => Ok(value),
        other => Err(p.error(format!("expected end of document, found {other}"))),
    }
}

/// A structural event: text between elements is checked and dropped by [`Parser`].
#[derive(Debug)]
enum Element {
    Start(String),
    Empty(String),
    End(String),
    Eof,
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Element::Start(n) => write!(f, "<{n}>"),
            Element::Empty(n) => write!(f, "<{n}/>"),
            Element::End(n) => write!(f, "</{n}>"),
            Element::Eof => f.write_str("end of document"),
        }
    }
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    peeked: Option<Element>,
}

fn element_name(e: &BytesStart<'_>) -> String {
    e.name().as_ref().to_owned()
}

impl Parser<'_> {
    fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Xml { reason: format!("{reason} (near byte {})", self.reader.buffer_position()) }
    }

    /// Reads text (with references resolved) up to the next element, which is returned too.
    fn text_then_element(&mut self) -> Result<(String, Element), Error> {
        let mut text = String::new();
        loop {
            let event = self.reader.read_event().map_err(|e| self.error(e.to_string()))?;
            match event {
                Event::Start(e) => return Ok((text, Element::Start(element_name(&e)))),
                Event::Empty(e) => return Ok((text, Element::Empty(element_name(&e)))),
                Event::End(e) => {
                    let name = e.name().as_ref().to_owned();
                    return Ok((text, Element::End(name)));
                }
                Event::Eof => return Ok((text, Element::Eof)),
                Event::Text(t) => text.push_str(&t.xml10_content()),
                Event::CData(c) => text.push_str(&c.into_inner()),
                Event::GeneralRef(r) => {
                    let resolved = r.resolve_char_ref().map_err(|e| self.error(e.to_string()))?;
                    let ch = match (resolved, &*r) {
                        (Some(c), _) => c,
                        (None, "amp") => '&',
                        (None, "lt") => '<',
                        (None, "gt") => '>',
                        (None, "quot") => '"',
                        (None, "apos") => '\'',
                        (None, other) => {
                            return Err(self.error(format!("unknown entity &{other};")));
                        }
                    };
                    text.push(ch);
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    /// The next element, refusing non-whitespace text before it.
    fn next_element(&mut self) -> Result<Element, Error> {
        if let Some(e) = self.peeked.take() {
            return Ok(e);
        }
        let (text, element) = self.text_then_element()?;
        if !text.chars().all(char::is_whitespace) {
            return Err(self.error(format!("unexpected text {text:?} before {element}")));
        }
        Ok(element)
    }

    fn expect_end(&mut self, name: &str) -> Result<(), Error> {
        match self.next_element()? {
            Element::End(n) if n == name => Ok(()),
            other => Err(self.error(format!("expected </{name}>, found {other}"))),
        }
    }

    /// The text content of an element whose start tag was just read, through its end tag.
    fn text_content(&mut self, name: &str) -> Result<String, Error> {
        match self.text_then_element()? {
            (text, Element::End(n)) if n == name => Ok(text),
            (_, other) => Err(self.error(format!("expected text and </{name}>, found {other}"))),
        }
    }

    /// After `<value>`: either bare text then `</value>`, or one typed element then `</value>`.
    fn value_body(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(self.error("values nested too deeply"));
        }
        let (text, element) = self.text_then_element()?;
        let value = match element {
            Element::End(n) if n == "value" => return Ok(Value::Str(text)),
            _ if !text.chars().all(char::is_whitespace) => {
                return Err(self.error(format!("text {text:?} mixed with {element}")));
            }
            Element::Empty(n) => match n.as_str() {
                "string" | "int" | "i4" | "i8" | "dateTime.iso8601" => Value::Str(String::new()),
                "struct" => Value::Struct(Vec::new()),
                other => return Err(self.error(format!("unexpected <{other}/> in <value>"))),
            },
            Element::Start(n) => match n.as_str() {
                "string" | "dateTime.iso8601" => Value::Str(self.text_content(&n)?),
                "int" | "i4" | "i8" => Value::Str(self.text_content(&n)?.trim().to_owned()),
                "boolean" => match self.text_content(&n)?.trim() {
                    "1" | "true" => Value::Bool(true),
                    "0" | "false" => Value::Bool(false),
                    other => return Err(self.error(format!("bad boolean {other:?}"))),
                },
                "double" => {
                    let text = self.text_content(&n)?;
                    let d = text
                        .trim()
                        .parse()
                        .map_err(|_| self.error(format!("bad double {text:?}")))?;
                    Value::Double(d)
                }
                "struct" => self.struct_body(depth)?,
                "array" => self.array_body(depth)?,
                other => return Err(self.error(format!("unexpected <{other}> in <value>"))),
            },
            other => return Err(self.error(format!("unexpected {other} in <value>"))),
        };
        self.expect_end("value")?;
        Ok(value)
    }

    fn struct_body(&mut self, depth: usize) -> Result<Value, Error> {
        let mut members = Vec::new();
        loop {
            match self.next_element()? {
                Element::End(n) if n == "struct" => return Ok(Value::Struct(members)),
                Element::Start(n) if n == "member" => {}
                other => return Err(self.error(format!("expected <member>, found {other}"))),
            }
            let name = match self.next_element()? {
                Element::Start(n) if n == "name" => self.text_content("name")?,
                Element::Empty(n) if n == "name" => String::new(),
                other => return Err(self.error(format!("expected <name>, found {other}"))),
            };
            let value = match self.next_element()? {
                Element::Start(n) if n == "value" => self.value_body(depth + 1)?,
                Element::Empty(n) if n == "value" => Value::Str(String::new()),
                other => return Err(self.error(format!("expected <value>, found {other}"))),
            };
            self.expect_end("member")?;
            members.push((name, value));
        }
    }

    fn array_body(&mut self, depth: usize) -> Result<Value, Error> {
        match self.next_element()? {
            Element::Empty(n) if n == "data" => {
                self.expect_end("array")?;
                return Ok(Value::Array(Vec::new()));
            }
            Element::Start(n) if n == "data" => {}
            other => return Err(self.error(format!("expected <data>, found {other}"))),
        }
        let mut items = Vec::new();
        loop {
            match self.next_element()? {
                Element::End(n) if n == "data" => break,
                Element::Start(n) if n == "value" => items.push(self.value_body(depth + 1)?),
                Element::Empty(n) if n == "value" => items.push(Value::Str(String::new())),
                other => return Err(self.error(format!("expected <value>, found {other}"))),
            }
        }
        self.expect_end("array")?;
        Ok(Value::Array(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(body: &str) -> Result<Value, Error> {
        decode_document(&format!("<?xml version=\"1.0\"?>{body}"))
    }

    #[test]
    fn scalars_and_escapes() {
        assert_eq!(
            doc("<value>a &amp; b &lt;c&gt; &#13;&#x41;</value>").unwrap(),
            Value::str("a & b <c> \rA")
        );
        assert_eq!(doc("<value>  </value>").unwrap(), Value::str("  "));
        assert_eq!(doc("<value/>").unwrap(), Value::str(""));
        assert_eq!(doc("<value><string>x</string></value>").unwrap(), Value::str("x"));
        assert_eq!(doc("<value><i8> 42 </i8></value>").unwrap(), Value::str("42"));
        assert_eq!(doc("<value> <boolean>1</boolean> </value>").unwrap(), Value::Bool(true));
        assert_eq!(doc("<value><double>1.5</double></value>").unwrap(), Value::Double(1.5));
        assert_eq!(doc("<value><![CDATA[<x>]]></value>").unwrap(), Value::str("<x>"));
    }

    #[test]
    fn containers() {
        let v = doc("<value><struct><member><name>a</name><value><array><data><value>1</value>\
                     <value/></data></array></value></member><member><name>b</name>\
                     <value><struct/></value></member></struct></value>")
        .unwrap();
        assert_eq!(
            v,
            Value::Struct(vec![
                ("a".into(), Value::Array(vec![Value::str("1"), Value::str("")])),
                ("b".into(), Value::Struct(vec![])),
            ])
        );
        assert_eq!(v.member("b"), Some(&Value::Struct(vec![])));
        assert_eq!(doc("<value><array><data/></array></value>").unwrap(), Value::Array(vec![]));
    }

    #[test]
    fn encode_round_trips_and_is_indented() {
        let v = Value::Struct(vec![
            ("s".into(), Value::str(" spaced\r\n<&>\t")),
            ("e".into(), Value::str("")),
            ("b".into(), Value::Bool(false)),
            ("d".into(), Value::Double(1.0)),
            ("m".into(), Value::Struct(vec![])),
            ("l".into(), Value::Array(vec![Value::str("Ref:1"), Value::Struct(vec![])])),
            ("n".into(), Value::Array(vec![])),
        ]);
        let text = encode_document(&v);
        assert!(text.contains(
            "\n  <member><name>s</name><value> spaced&#13;\n&lt;&amp;&gt;\t</value></member>"
        ));
        assert_eq!(decode_document(&text).unwrap(), v);
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            "",
            "<struct/>",
            "<value>x</value><value/>",
            "<value>x<struct/></value>",
            "<value><struct><member><value/></member></struct></value>",
            "<value><boolean>2</boolean></value>",
            "<value><double>x</double></value>",
            "<value><nil/></value>",
            "<value>&nbsp;</value>",
            "<value><struct></value>",
            "<value><array><value/></array></value>",
        ] {
            assert!(matches!(doc(bad), Err(Error::Xml { .. })), "{bad:?}");
        }
        let deep = "<value><array><data>".repeat(40) + &"</data></array></value>".repeat(40);
        assert!(doc(&deep).is_err());
    }

    #[test]
    fn finds_invalid_characters() {
        assert_eq!(invalid_xml_char("ok\t\n\r"), None);
        assert_eq!(invalid_xml_char("bell\u{7}"), Some('\u{7}'));
    }
}
