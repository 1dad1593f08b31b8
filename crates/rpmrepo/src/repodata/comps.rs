//! The comps group file (`groups.xml`, DTD "-//Red Hat, Inc.//DTD Comps info//EN"): the groups
//! `yum|dnf install @update` (xapi's `pool_update.apply`) and the host installer's `@drivers`
//! install (`docs/formats/packs.md` section "Group metadata (comps)").

use std::io::{self, Write};

use crate::Error;
use crate::repodata::xml::text;

/// A comps group whose packages are all mandatory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoGroup {
    /// Group id: `update` for update packs, `drivers` for driver disks.
    pub id: String,
    /// Display name (build-update uses the pack label).
    pub name: String,
    /// Description (may be empty).
    pub description: String,
    /// Names of the mandatory packages, e.g. `update-<label>`.
    pub mandatory: Vec<String>,
    /// `<default>`: installed by default in a fresh install (false for packs).
    pub default: bool,
    /// `<uservisible>`: listed by `dnf group list`.
    pub user_visible: bool,
}

impl RepoGroup {
    /// A user-visible, non-default group with the given mandatory packages.
    pub fn new(id: impl Into<String>, name: impl Into<String>, mandatory: Vec<String>) -> Self {
        RepoGroup {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            mandatory,
            default: false,
            user_visible: true,
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |reason| Error::InvalidGroup { id: self.id.clone(), reason };
        let ident = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        };
        if !ident(&self.id) {
            return Err(bad("the id must be non-empty ASCII letters, digits and -_.+"));
        }
        if self.mandatory.is_empty() {
            return Err(bad("a group needs at least one mandatory package"));
        }
        if self.mandatory.iter().any(|m| !ident(m)) {
            return Err(bad("a package name is empty or has characters RPM names do not use"));
        }
        Ok(())
    }
}

/// Writes the comps document for `groups` to `out` (groups in the given order).
pub fn write_comps<W: Write>(mut out: W, groups: &[RepoGroup]) -> io::Result<W> {
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<!DOCTYPE comps PUBLIC \"-//Red Hat, Inc.//DTD Comps info//EN\" \"comps.dtd\">"
    )?;
    writeln!(out, "<comps>")?;
    for g in groups {
        writeln!(out, "  <group>")?;
        writeln!(out, "    <id>{}</id>", text(&g.id))?;
        writeln!(out, "    <name>{}</name>", text(&g.name))?;
        writeln!(out, "    <description>{}</description>", text(&g.description))?;
        writeln!(out, "    <default>{}</default>", g.default)?;
        writeln!(out, "    <uservisible>{}</uservisible>", g.user_visible)?;
        writeln!(out, "    <packagelist>")?;
        for m in &g.mandatory {
            writeln!(out, "      <packagereq type=\"mandatory\">{}</packagereq>", text(m))?;
        }
        writeln!(out, "    </packagelist>")?;
        writeln!(out, "  </group>")?;
    }
    writeln!(out, "</comps>")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_document() {
        let g = RepoGroup::new("update", "demo & co", vec!["update-demo".into()]);
        let out = String::from_utf8(write_comps(Vec::new(), &[g]).unwrap()).unwrap();
        assert!(out.contains("<id>update</id>\n    <name>demo &amp; co</name>"), "{out}");
        assert!(
            out.contains("<default>false</default>\n    <uservisible>true</uservisible>"),
            "{out}"
        );
        assert!(out.contains("<packagereq type=\"mandatory\">update-demo</packagereq>"), "{out}");
    }

    #[test]
    fn bad_groups() {
        assert!(RepoGroup::new("", "x", vec!["a".into()]).check().is_err());
        assert!(RepoGroup::new("update", "x", vec![]).check().is_err());
        assert!(RepoGroup::new("up date", "x", vec!["a".into()]).check().is_err());
        assert!(RepoGroup::new("drivers", "x", vec!["a b".into()]).check().is_err());
        assert!(RepoGroup::new("drivers", "x", vec!["update-x".into()]).check().is_ok());
    }
}
