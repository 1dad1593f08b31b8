//! `update.xml` of the update format (`docs/formats/packs.md` section "update.xml"): written as
//! build-update writes it, and parsed with the rules of xapi's `parse_update_info`.

use quick_xml::XmlVersion;
use quick_xml::events::Event;

use crate::Error;
use crate::spec::Guidance;
use crate::xml::escape;

/// The fields of `update.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateXml {
    /// `name-label`: the pack label.
    pub name_label: String,
    /// `version`.
    pub version: String,
    /// `uuid`, lowercase.
    pub uuid: String,
    /// `installation-size`: bytes the payload takes once installed.
    pub installation_size: u64,
    /// `key`: basename of the public key, or empty for none.
    pub key: String,
    /// `control`: name of the control RPM, or empty.
    pub control: String,
    /// `after-apply-guidance`.
    pub guidance: Vec<Guidance>,
    /// `enforce-homogeneity`.
    pub enforce_homogeneity: bool,
    /// `<name-description>`.
    pub description: String,
}

/// Whether `s` is a lowercase UUID as build-update requires
/// (`^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$`).
pub fn is_valid_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A stable uuid for a pack name and version: the first 16 bytes of
/// SHA-256("xspack update\0" name "\0" version), with the RFC 9562 version 4 and variant bits.
pub fn derive_uuid(name: &str, version: &str) -> String {
    xspack_io::Derivation::new(b"xspack update\0")
        .field(name.as_bytes())
        .bytes(version.as_bytes())
        .uuid()
        .to_string()
}

impl UpdateXml {
    /// The document, without an XML declaration (as build-update writes it).
    pub fn render(&self) -> String {
        let mut attrs = format!(
            "name-label=\"{}\" version=\"{}\" uuid=\"{}\" installation-size=\"{}\"",
            escape(&self.name_label),
            escape(&self.version),
            escape(&self.uuid),
            self.installation_size
        );
        if !self.key.is_empty() {
            attrs.push_str(&format!(" key=\"{}\"", escape(&self.key)));
        }
        if !self.control.is_empty() {
            attrs.push_str(&format!(" control=\"{}\"", escape(&self.control)));
        }
        if !self.guidance.is_empty() {
            let list: Vec<&str> = self.guidance.iter().map(|g| g.as_str()).collect();
            attrs.push_str(&format!(" after-apply-guidance=\"{}\"", list.join(",")));
        }
        if self.enforce_homogeneity {
            attrs.push_str(" enforce-homogeneity=\"true\"");
        }
        format!(
            "<update {attrs}>\n  <name-description>{}</name-description>\n</update>\n",
            escape(&self.description)
        )
    }

    /// Parses `text` with xapi's rules: root `update`; `uuid`, `name-label` and `version`
    /// present; a lowercase uuid and `[\w-]+` label; an integer `installation-size`; known
    /// guidance; exactly one non-empty `<name-description>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::metadata("update.xml", reason);
        let (root, description) = read_document(text)?;
        let attrs = root.ok_or_else(|| bad("missing <update> in update.xml".into()))?;
        let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let need = |k: &str| get(k).ok_or_else(|| bad(format!("missing attribute {k}")));
        let uuid = need("uuid")?;
        if !is_valid_uuid(&uuid) {
            return Err(bad(format!("uuid {uuid:?} is not a lowercase UUID")));
        }
        let name_label = need("name-label")?;
        if name_label.is_empty()
            || !name_label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!("name-label {name_label:?} must match [\\w-]+")));
        }
        let version = need("version")?;
        let installation_size = match get("installation-size") {
            None => 0,
            Some(v) => {
                v.parse().map_err(|_| bad(format!("installation-size {v:?} is not an integer")))?
            }
        };
        let guidance = match get("after-apply-guidance") {
            None => Vec::new(),
            Some(list) if list.is_empty() => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|g| match g {
                    "restartHVM" => Ok(Guidance::RestartHvm),
                    "restartPV" => Ok(Guidance::RestartPv),
                    "restartHost" => Ok(Guidance::RestartHost),
                    "restartXAPI" => Ok(Guidance::RestartXapi),
                    other => Err(bad(format!("after-apply-guidance {other:?} is unknown; xapi would ignore the whole list"))),
                })
                .collect::<Result<_, _>>()?,
        };
        let enforce_homogeneity = match get("enforce-homogeneity").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" || v == "1" => true,
            Some(v) if v == "false" || v == "0" => false,
            Some(v) => return Err(bad(format!("enforce-homogeneity {v:?} is not true or false"))),
        };
        let description = description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        let description = description.ok_or_else(|| bad("missing <name-description>".into()))?;
        Ok(UpdateXml {
            name_label,
            version,
            uuid,
            installation_size,
            key: get("key").unwrap_or_default(),
            control: get("control").unwrap_or_default(),
            guidance,
            enforce_homogeneity,
            description,
        })
    }
}

/// The root element's attributes and the text of its `<name-description>` child.
type Document = (Option<Vec<(String, String)>>, Option<String>);

fn read_document(text: &str) -> Result<Document, Error> {
    let bad = |reason: String| Error::metadata("update.xml", reason);
    let mut reader = quick_xml::Reader::from_str(text);
    let mut root: Option<Vec<(String, String)>> = None;
    let mut description: Option<String> = None;
    let mut in_description = false;
    let mut depth = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(e) | Event::Empty(e) if depth == 0 => {
                if root.is_some() || AsRef::<str>::as_ref(&e.name()) != "update" {
                    return Err(bad("missing <update> in update.xml".into()));
                }
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(format!("bad attribute: {e}")))?;
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| bad(format!("bad attribute value: {e}")))?;
                    attrs.push((AsRef::<str>::as_ref(&a.key).to_owned(), value.into_owned()));
                }
                root = Some(attrs);
                depth = 1;
            }
            Event::Start(e) => {
                if depth == 1 && AsRef::<str>::as_ref(&e.name()) == "name-description" {
                    if description.is_some() {
                        return Err(bad("more than one <name-description>".into()));
                    }
                    in_description = true;
                    description = Some(String::new());
                }
                depth += 1;
            }
            Event::End(_) => {
                in_description = false;
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if in_description => {
                description.get_or_insert_with(String::new).push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_description => {
                let c = match (
                    r.resolve_char_ref().map_err(|e| bad(format!("bad reference: {e}")))?,
                    &*r,
                ) {
                    (Some(c), _) => c,
                    (None, "amp") => '&',
                    (None, "lt") => '<',
                    (None, "gt") => '>',
                    (None, "quot") => '"',
                    (None, "apos") => '\'',
                    (None, other) => return Err(bad(format!("unknown entity &{other};"))),
                };
                description.get_or_insert_with(String::new).push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((root, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UpdateXml {
        UpdateXml {
            name_label: "xscontainer".into(),
            version: "1.0.1".into(),
            uuid: derive_uuid("xscontainer", "1.0.1"),
            installation_size: 8_123_456,
            key: "RPM-GPG-KEY-Example".into(),
            control: "control-xscontainer".into(),
            guidance: vec![Guidance::RestartXapi],
            enforce_homogeneity: false,
            description: "XSContainer Management & <more>".into(),
        }
    }

    #[test]
    fn round_trip_and_stable_uuid() {
        let x = sample();
        assert!(is_valid_uuid(&x.uuid));
        assert_eq!(x.uuid, derive_uuid("xscontainer", "1.0.1"));
        assert_ne!(x.uuid, derive_uuid("xscontainer", "1.0.2"));
        assert_eq!(UpdateXml::parse(&x.render()).unwrap(), x);
    }

    #[test]
    fn xapi_rules() {
        let good = sample().render();
        let cases = [
            (
                good.replace("<update ", "<updates ").replace("</update>", "</updates>"),
                "missing <update>",
            ),
            (
                good.replace(&sample().uuid, "DF95997F-0332-4F1E-AFD6-DCEC74940B82"),
                "not a lowercase UUID",
            ),
            (
                good.replace("name-label=\"xscontainer\"", "name-label=\"xs container\""),
                "name-label",
            ),
            (good.replace("8123456", "8M"), "installation-size"),
            (good.replace("restartXAPI", "reboot"), "is unknown"),
            (
                good.replace("XSContainer Management &amp; &lt;more&gt;", "  "),
                "missing <name-description>",
            ),
            (
                good.replace("</update>", "<name-description>x</name-description></update>"),
                "more than one",
            ),
            (good.replace(" version=\"1.0.1\"", ""), "missing attribute version"),
            ("<update".to_owned(), "not well-formed"),
        ];
        for (text, want) in cases {
            let err = UpdateXml::parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with("update.xml: ") && err.contains(want),
                "want {want:?} in {err}"
            );
        }
    }
}
