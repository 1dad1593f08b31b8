//! RPM dependencies (`Requires`, `Provides`, ...) as stored in the header: a name, the
//! `RPMSENSE_*` flag bits of rpm's `rpmds.h`, and an `[epoch:]version[-release]` string.
//!
//! The same type is read from headers and given to the builder. Boolean ("rich") dependencies such
//! as `(a or b)` are recognised so the builder can refuse them: rpm 4.11 in the XenServer 7/8 dom0
//! predates them (`docs/formats/packs.md` section "The three kinds of RPM"; `docs/rpm.md` section
//! "Targets").

use std::fmt;

/// The `RPMSENSE_*` flag bits this crate interprets (values from rpm's `rpmds.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepFlags;

impl DepFlags {
    /// `RPMSENSE_LESS`.
    pub const LESS: u32 = 1 << 1;
    /// `RPMSENSE_GREATER`.
    pub const GREATER: u32 = 1 << 2;
    /// `RPMSENSE_EQUAL`.
    pub const EQUAL: u32 = 1 << 3;
    /// The comparison bits.
    pub const SENSE_MASK: u32 = Self::LESS | Self::GREATER | Self::EQUAL;
    /// `RPMSENSE_POSTTRANS`: needed by `%posttrans`.
    pub const POSTTRANS: u32 = 1 << 5;
    /// `RPMSENSE_PREREQ`: legacy `PreReq:`.
    pub const PREREQ: u32 = 1 << 6;
    /// `RPMSENSE_PRETRANS`: needed by `%pretrans`.
    pub const PRETRANS: u32 = 1 << 7;
    /// `RPMSENSE_INTERP`: a scriptlet interpreter.
    pub const INTERP: u32 = 1 << 8;
    /// `RPMSENSE_SCRIPT_PRE`: `Requires(pre)`.
    pub const SCRIPT_PRE: u32 = 1 << 9;
    /// `RPMSENSE_SCRIPT_POST`: `Requires(post)`.
    pub const SCRIPT_POST: u32 = 1 << 10;
    /// `RPMSENSE_SCRIPT_PREUN`: `Requires(preun)`.
    pub const SCRIPT_PREUN: u32 = 1 << 11;
    /// `RPMSENSE_SCRIPT_POSTUN`: `Requires(postun)`.
    pub const SCRIPT_POSTUN: u32 = 1 << 12;
    /// `RPMSENSE_RPMLIB`: an `rpmlib(...)` feature dependency.
    pub const RPMLIB: u32 = 1 << 24;
}

/// A version comparison of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Comparison {
    /// The `RPMSENSE_*` bits of this comparison.
    pub fn flags(self) -> u32 {
        match self {
            Comparison::Lt => DepFlags::LESS,
            Comparison::Le => DepFlags::LESS | DepFlags::EQUAL,
            Comparison::Eq => DepFlags::EQUAL,
            Comparison::Ge => DepFlags::GREATER | DepFlags::EQUAL,
            Comparison::Gt => DepFlags::GREATER,
        }
    }

    /// The comparison encoded in `flags`, if any (invalid combinations give `None`).
    pub fn from_flags(flags: u32) -> Option<Self> {
        match flags & DepFlags::SENSE_MASK {
            DepFlags::LESS => Some(Comparison::Lt),
            x if x == DepFlags::LESS | DepFlags::EQUAL => Some(Comparison::Le),
            DepFlags::EQUAL => Some(Comparison::Eq),
            x if x == DepFlags::GREATER | DepFlags::EQUAL => Some(Comparison::Ge),
            DepFlags::GREATER => Some(Comparison::Gt),
            _ => None,
        }
    }

    /// The operator as rpm prints it (`>=`).
    pub fn operator(self) -> &'static str {
        match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "=",
            Comparison::Ge => ">=",
            Comparison::Gt => ">",
        }
    }

    /// The repodata `flags` attribute value (`GE`).
    pub fn repodata_name(self) -> &'static str {
        match self {
            Comparison::Lt => "LT",
            Comparison::Le => "LE",
            Comparison::Eq => "EQ",
            Comparison::Ge => "GE",
            Comparison::Gt => "GT",
        }
    }
}

/// An `[epoch:]version[-release]` split as repodata writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr {
    /// The epoch, `"0"` when none is written.
    pub epoch: String,
    /// The version.
    pub version: String,
    /// The release, if the string has one.
    pub release: Option<String>,
}

impl Evr {
    /// Splits `s`: the epoch is what precedes a `:` (`"0"` without one), the release what follows
    /// the last `-`.
    pub fn parse(s: &str) -> Evr {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.to_owned(), rest)
            }
            _ => ("0".to_owned(), s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v.to_owned(), Some(r.to_owned())),
            None => (rest.to_owned(), None),
        };
        Evr { epoch, version, release }
    }
}

/// A dependency as stored in an RPM header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// What is required or provided: a package name, a virtual name or a path.
    pub name: String,
    /// The raw `RPMSENSE_*` flags (see [`DepFlags`]).
    pub flags: u32,
    /// `[epoch:]version[-release]`, empty when unversioned.
    pub version: String,
}

impl Dependency {
    /// A dependency on any version of `name`.
    pub fn any(name: impl Into<String>) -> Self {
        Dependency { name: name.into(), flags: 0, version: String::new() }
    }

    /// A versioned dependency, e.g. `Dependency::versioned("platform-version", Comparison::Ge,
    /// "2.3")`.
    pub fn versioned(name: impl Into<String>, cmp: Comparison, version: impl Into<String>) -> Self {
        Dependency { name: name.into(), flags: cmp.flags(), version: version.into() }
    }

    /// Adds `RPMSENSE_*` bits, e.g. [`DepFlags::SCRIPT_POST`] for `Requires(post)`.
    #[must_use]
    pub fn with_flags(mut self, flags: u32) -> Self {
        self.flags |= flags;
        self
    }

    /// The version comparison, if the dependency is versioned.
    pub fn comparison(&self) -> Option<Comparison> {
        if self.version.is_empty() { None } else { Comparison::from_flags(self.flags) }
    }

    /// The version split into epoch, version and release, if versioned.
    pub fn evr(&self) -> Option<Evr> {
        (!self.version.is_empty()).then(|| Evr::parse(&self.version))
    }

    /// Whether this is an `rpmlib(...)` feature requirement.
    pub fn is_rpmlib(&self) -> bool {
        self.name.starts_with("rpmlib(") || self.flags & DepFlags::RPMLIB != 0
    }

    /// Whether this is a boolean ("rich") dependency such as `(a or b)`.
    pub fn is_rich(&self) -> bool {
        self.name.starts_with('(')
    }

    /// Whether repodata marks this requirement `pre="1"`: it is needed before the package's
    /// own `%pre`/`%post` scripts run (legacy `PreReq`, `Requires(pre)`, `Requires(post)`), as
    /// `createrepo_c` decides it.
    pub fn is_pre(&self) -> bool {
        self.flags & (DepFlags::PREREQ | DepFlags::SCRIPT_PRE | DepFlags::SCRIPT_POST) != 0
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.comparison() {
            Some(cmp) => write!(f, "{} {} {}", self.name, cmp.operator(), self.version),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_split() {
        let evr = Evr::parse("1:2.3-4.el7");
        assert_eq!((evr.epoch.as_str(), evr.version.as_str()), ("1", "2.3"));
        assert_eq!(evr.release.as_deref(), Some("4.el7"));
        let evr = Evr::parse("1.0");
        assert_eq!((evr.epoch.as_str(), evr.version.as_str(), evr.release), ("0", "1.0", None));
        let evr = Evr::parse("2.3-1-2");
        assert_eq!((evr.version.as_str(), evr.release.as_deref()), ("2.3-1", Some("2")));
    }

    #[test]
    fn comparisons_round_trip() {
        for cmp in [Comparison::Lt, Comparison::Le, Comparison::Eq, Comparison::Ge, Comparison::Gt]
        {
            assert_eq!(Comparison::from_flags(cmp.flags() | DepFlags::SCRIPT_POST), Some(cmp));
        }
        assert_eq!(Comparison::from_flags(DepFlags::LESS | DepFlags::GREATER), None);
        let dep = Dependency::versioned("platform-version", Comparison::Ge, "2.3");
        assert_eq!(dep.to_string(), "platform-version >= 2.3");
        assert_eq!(Dependency::any("bash").to_string(), "bash");
    }

    #[test]
    fn pre_and_rich_and_rpmlib() {
        assert!(Dependency::any("/bin/sh").with_flags(DepFlags::SCRIPT_POST).is_pre());
        assert!(Dependency::any("x").with_flags(DepFlags::SCRIPT_PRE | DepFlags::INTERP).is_pre());
        assert!(!Dependency::any("x").with_flags(DepFlags::SCRIPT_POSTUN).is_pre());
        assert!(!Dependency::any("x").with_flags(DepFlags::POSTTRANS).is_pre());
        assert!(Dependency::any("(a or b)").is_rich());
        assert!(Dependency::any("rpmlib(FileDigests)").is_rpmlib());
    }
}
