//! The tera templates under `templates/vm/`, embedded at build time, and one function to
//! render any of them. Autoescaping is off: JSON strings go through `json_encode`, and the XML
//! templates only receive numbers and fixed words.

use crate::Error;

/// Every template: its name (the path under `templates/`) and text.
const TEMPLATES: &[(&str, &str)] = &[
    ("vm/guest-template.json.tera", include_str!("../../../templates/vm/guest-template.json.tera")),
    ("vm/recommendations.xml.tera", include_str!("../../../templates/vm/recommendations.xml.tera")),
    ("vm/provision.xml.tera", include_str!("../../../templates/vm/provision.xml.tera")),
    ("vm/posttrans.sh.tera", include_str!("../../../templates/vm/posttrans.sh.tera")),
    ("vm/postun.sh.tera", include_str!("../../../templates/vm/postun.sh.tera")),
];

/// Renders the template `name` with `context`.
pub(crate) fn render(name: &str, context: &tera::Context) -> Result<String, Error> {
    let fail = |e: tera::Error| {
        // tera keeps the useful part of the message in the source chain.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::Render { template: name.to_owned(), reason }
    };
    let (_, text) = TEMPLATES.iter().find(|(n, _)| *n == name).ok_or_else(|| Error::Render {
        template: name.to_owned(),
        reason: "no such template".into(),
    })?;
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.add_raw_template(name, text).map_err(fail)?;
    // Each template opens with a comment; drop the line break it leaves.
    Ok(tera.render(name, context).map_err(fail)?.trim_start_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, text) in TEMPLATES {
            let mut tera = tera::Tera::default();
            tera.add_raw_template(name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        assert!(matches!(render("vm/nope", &tera::Context::new()), Err(Error::Render { .. })));
    }
}
