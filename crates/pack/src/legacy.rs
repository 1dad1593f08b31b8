//! The legacy pack format of XenServer 6.x and 7.0 (`docs/formats/packs.md` section "Legacy pack"):
//! `XS-REPOSITORY`, `XS-PACKAGES` (in install order) and our own `install` and `install.sh`
//! (sections "XS-REPOSITORY", "XS-PACKAGES", "install and install.sh"), rendered from
//! `templates/pack/install.sh.tera`.

use crate::Error;
use crate::spec::PackSpec;
use crate::xml::escape;

/// The install script template.
const INSTALL_TEMPLATE: &str = include_str!("../../../templates/pack/install.sh.tera");

/// One RPM of a legacy pack, as `XS-PACKAGES` and the install script need it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegacyPackage {
    /// RPM `%{NAME}`, the `label`.
    pub name: String,
    /// `%{VERSION}-%{RELEASE}`, to skip what is already installed.
    pub version_release: String,
    /// File name on the ISO, relative to its root.
    pub file: String,
    /// File size in bytes.
    pub size: u64,
    /// Lowercase hex MD5 of the whole file.
    pub md5: String,
    /// Capability names the RPM requires (versions dropped).
    #[serde(skip)]
    pub requires: Vec<String>,
    /// Capability names the RPM provides, its own name included.
    #[serde(skip)]
    pub provides: Vec<String>,
}

/// Puts packages in an order where each comes after the pack's packages providing what it
/// requires (the host installer runs `rpm -U` one package at a time, in listed order).
/// Among packages free to go, the earlier in `pkgs` goes first; a dependency cycle keeps its
/// members in their given order.
pub fn install_order(pkgs: &[LegacyPackage]) -> Vec<usize> {
    let n = pkgs.len();
    let deps: Vec<Vec<usize>> = pkgs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut d: Vec<usize> = (0..n)
                .filter(|&j| j != i && p.requires.iter().any(|r| pkgs[j].provides.contains(r)))
                .collect();
            d.dedup();
            d
        })
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
        // In a cycle nothing is ready: take the earliest remaining package.
        let next = ready.unwrap_or_else(|| (0..n).find(|&i| !placed[i]).expect("one remains"));
        placed[next] = true;
        order.push(next);
    }
    order
}

/// `XS-REPOSITORY`, with `<description>` first as xapi's `make_packs_info` needs.
pub fn xs_repository(spec: &PackSpec) -> String {
    let p = &spec.pack;
    let mut extra = String::new();
    if spec.legacy.enforce_homogeneity {
        extra.push_str(" enforce-homogeneity=\"true\"");
    }
    if let Some(mb) = spec.legacy.memory_requirement_mb {
        extra.push_str(&format!(" memory-requirement-mb=\"{mb}\""));
    }
    let mut out = format!(
        "<repository originator=\"{}\" name=\"{}\" product=\"{}\" version=\"{}\" build=\"{}\"{extra}>\n  <description>{}</description>\n",
        escape(&p.originator),
        escape(&p.name),
        escape(&spec.legacy.product),
        escape(&p.version),
        escape(&p.build),
        escape(&p.description),
    );
    for r in &spec.legacy.requires {
        out.push_str(&format!(
            "  <requires originator=\"{}\" name=\"{}\" test=\"{}\" version=\"{}\"/>\n",
            escape(&r.originator),
            escape(&r.name),
            r.test.as_str(),
            escape(&r.version)
        ));
    }
    out.push_str("</repository>\n");
    out
}

/// `XS-PACKAGES`, listing `pkgs` in the order given (see [`install_order`]).
pub fn xs_packages(pkgs: &[LegacyPackage]) -> String {
    let mut out = String::from("<packages>\n");
    for p in pkgs {
        out.push_str(&format!(
            "  <package label=\"{}\" type=\"rpm\" size=\"{}\" md5=\"{}\">{}</package>\n",
            escape(&p.name),
            p.size,
            escape(&p.md5),
            escape(&p.file)
        ));
    }
    out.push_str("</packages>\n");
    out
}

fn shell_safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._+~^:-/".contains(c))
}

/// The install script (shipped as both `install` and `install.sh`).
pub fn install_script(spec: &PackSpec, pkgs: &[LegacyPackage]) -> Result<String, Error> {
    for p in pkgs {
        for value in [&p.name, &p.version_release, &p.file, &p.md5] {
            if !shell_safe(value) {
                return Err(Error::metadata(
                    "install.sh",
                    format!("{value:?} has characters the install script cannot carry"),
                ));
            }
        }
    }
    let mut tera = tera::Tera::default();
    let template_err = |e: tera::Error| Error::Template {
        template: "pack/install.sh.tera".into(),
        reason: format!("{e:?}"),
    };
    tera.add_raw_template("install.sh", INSTALL_TEMPLATE).map_err(template_err)?;
    let mut ctx = tera::Context::new();
    ctx.insert("name", &spec.pack.name);
    ctx.insert("originator", &spec.pack.originator);
    ctx.insert("version", &spec.pack.version);
    ctx.insert("build", &spec.pack.build);
    ctx.insert("product", &spec.legacy.product);
    let requires: Vec<TemplateRequirement> = spec
        .legacy
        .requires
        .iter()
        .map(|r| TemplateRequirement {
            originator: r.originator.clone(),
            name: r.name.clone(),
            test: r.test.as_str(),
            version: r.version.clone(),
        })
        .collect();
    ctx.insert("requires", &requires);
    ctx.insert("packages", pkgs);
    tera.render("install.sh", &ctx).map_err(template_err)
}

/// A requirement as the template sees it.
#[derive(serde::Serialize)]
struct TemplateRequirement {
    originator: String,
    name: String,
    test: &'static str,
    version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, requires: &[&str], provides: &[&str]) -> LegacyPackage {
        LegacyPackage {
            name: name.into(),
            version_release: "1.0-1".into(),
            file: format!("{name}-1.0-1.noarch.rpm"),
            size: 10,
            md5: "00112233445566778899aabbccddeeff".into(),
            requires: requires.iter().map(|s| (*s).to_owned()).collect(),
            provides: std::iter::once(name)
                .chain(provides.iter().copied())
                .map(str::to_owned)
                .collect(),
        }
    }

    #[test]
    fn dependencies_go_first() {
        let pkgs = vec![
            pkg("app", &["python-paramiko", "libfoo.so.1"], &[]),
            pkg("python-paramiko", &["python-crypto"], &[]),
            pkg("libfoo", &[], &["libfoo.so.1"]),
            pkg("python-crypto", &["/bin/sh"], &[]),
        ];
        let order: Vec<&str> =
            install_order(&pkgs).into_iter().map(|i| pkgs[i].name.as_str()).collect();
        assert_eq!(order, ["libfoo", "python-crypto", "python-paramiko", "app"]);
    }

    #[test]
    fn cycles_keep_given_order() {
        let pkgs = vec![pkg("a", &["b"], &[]), pkg("b", &["a"], &[]), pkg("c", &[], &[])];
        let order: Vec<&str> =
            install_order(&pkgs).into_iter().map(|i| pkgs[i].name.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn unsafe_values_are_refused() {
        let spec =
            crate::PackSpec::parse(crate::spec::tests_support::GOOD, "p.toml".into()).unwrap();
        let mut p = pkg("ok", &[], &[]);
        p.file = "x'; rm -rf /; '.rpm".into();
        assert!(install_script(&spec, &[p]).is_err());
    }
}
