//! XenServer supplemental packs in both formats: the legacy one that python-libs
//! (`xcp/repository.py`) and `xe-install-supplemental-pack` read, and the 7.1+ update ISO that
//! xapi reads (`ocaml/xapi/xapi_pool_update.ml`) and installs with yum.
//!
//! - [`spec`]: `packs/<name>/pack.toml`, parsed strictly (unknown keys are errors that name the
//!   file, line and column) and checked against the rules of both pack formats;
//! - [`legacy`]: the XenServer 6.x/7.0 format: `XS-REPOSITORY`, `XS-PACKAGES` (md5, size,
//!   install order) and our own `install`/`install.sh`;
//! - [`update`]: the 7.1+ format's `update.xml`, written and parsed with xapi's rules;
//! - the pack's target (the hosts it is for, [`xspack_rpmrepo::Target`]) is checked against
//!   every RPM and recorded in the ISO (`target_record`).

mod build;
mod inputs;
pub mod legacy;
pub mod spec;
mod target_record;
pub mod update;
pub mod verify;
mod xml;

pub use build::{BuildOptions, PackSummary, build_pack, parse_dep};
pub use inputs::check_pack_inputs;
pub use spec::{PackFormat, PackSpec};

/// Errors from pack definitions and metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `pack.toml` is malformed or breaks a rule; `at` is `file:line:column` or `file`.
    #[error("{at}: {reason}")]
    Spec {
        /// Where: `packs/x/pack.toml:3:5`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// Generated or read metadata breaks a rule of its format.
    #[error("{what}: {reason}")]
    Metadata {
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A template failed to render.
    #[error("rendering {template}: {reason}")]
    Template {
        /// The template name.
        template: String,
        /// The cause.
        reason: String,
    },
    /// Reading, building or signing an RPM, or writing repodata, failed.
    #[error(transparent)]
    Rpm(Box<xspack_rpmrepo::Error>),
    /// Writing an ISO failed.
    #[error(transparent)]
    Iso(Box<xspack_iso::Error>),
    /// A `[[template]]` definition, or a template JSON file of a `[[package]]`, is bad, or its
    /// RPM could not be built.
    #[error(transparent)]
    VmTemplate(Box<xspack_template::Error>),
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
}

impl Error {
    pub(crate) fn metadata(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Metadata { what: what.into(), reason: reason.into() }
    }

    pub(crate) fn io(op: &'static str, path: &camino::Utf8Path, source: std::io::Error) -> Self {
        Error::Io(xspack_io::IoError::new(op, path, source))
    }
}
