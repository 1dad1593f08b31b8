//! XenServer VM templates, as `docs/formats/templates.md` describes them (the loader, the template
//! RPM, the keys, template XVAs).
//!
//! A template is defined once, in `templates/<name>.toml` ([`TemplateSpec`]), and built into
//! three artifacts:
//!
//! - **guest-templates JSON** ([`render_guest_json`]): the file `create-guest-templates` loads from
//!   `/etc/xapi.d/vm-templates` or `/usr/share/xapi/vm-templates` ("The loader"), rendered with
//!   tera from `templates/vm/guest-template.json.tera` and checked by [`validate_guest_template`],
//!   which knows every key of section "Keys" and its type. The same validator checks JSON read from
//!   disk ([`validate_guest_template_file`]).
//! - **a template RPM** ([`template_rpm`]): installs the JSON under [`VM_TEMPLATES_DIR`] and
//!   reloads the default templates in `%posttrans` ("The template RPM"), reproducibly, optionally
//!   signed.
//! - **a template XVA** ([`template_vm_spec`], [`write_template_xva`]): `is_a_template=true`, with
//!   its disks either provisioned on `xe vm-install` (no disk in the archive) or embedded, plus the
//!   config drive (`docs/formats/config-drive.md`) when the template has one (sections "Template
//!   XVA" and `docs/formats/xva.md`).
//!
//! [`build_template`] writes any of the three into an [`xspack_manifest::OutputDir`].
//!
//! ```
//! use camino::Utf8Path;
//! use xspack_template::{TemplateSpec, render_guest_json, validate_guest_template_str};
//!
//! let spec = TemplateSpec::parse(
//!     r#"
//! [template]
//! name = "demo"
//! label = "Demo guest"
//! version = "1.0"
//! flavor = "debian"
//! boot = "uefi"
//! memory = "2G"
//! vcpus = 2
//!
//! [[disk]]
//! size = "10G"
//! "#,
//!     Utf8Path::new("templates/demo.toml"),
//! )?;
//! let json = render_guest_json(&spec)?;
//! let value = validate_guest_template_str(&json, "demo.json")?;
//! assert_eq!(value["min_memory"], "1G");
//! assert_eq!(value["derived_from"], "base-linux-uefi.json");
//! # Ok::<(), xspack_template::Error>(())
//! ```

mod build;
mod config_drive;
mod json;
mod render;
mod rpm;
mod secure_boot;
mod size;
pub mod spec;
mod validate;
mod xva;

pub use build::{TemplateBuildOptions, TemplateFormat, TemplateSummary, build_template};
pub use config_drive::{CONFIG_DRIVE_LABEL, CONFIG_DRIVE_SIZE, config_drive_image};
pub use json::render_guest_json;
pub use rpm::{
    CREATE_TEMPLATES_WRAPPER, MARKER_FILE, SHIPPED_TEMPLATES_DIR, VM_TEMPLATES_DIR, rpm_name,
    template_rpm,
};
pub use secure_boot::{SecureBootDecision, secure_boot};
pub use size::{format_amount, parse_amount};
pub use spec::{BootFirmware, Flavor, SecureBoot, TemplateSpec};
pub use validate::{
    GuestJsonError, validate_guest_template, validate_guest_template_file,
    validate_guest_template_str,
};
pub use xva::{template_vm_spec, write_template_xva};

use camino::Utf8PathBuf;

/// Errors from reading template definitions and building their artifacts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The template definition is malformed or breaks a rule; `at` is `file:line:column` or
    /// `file`.
    #[error("{at}: {reason}")]
    Spec {
        /// Where: `templates/x.toml:3:5`, or the file alone for rules across keys.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A guest-templates JSON document breaks the rules of `docs/formats/templates.md` section
    /// "Keys".
    #[error("{origin}: {error}")]
    GuestJson {
        /// The file (or description) the JSON came from.
        origin: String,
        /// The offending key and why.
        error: GuestJsonError,
    },
    /// A tera template failed to render.
    #[error("rendering {template}: {reason}")]
    Render {
        /// The template's name, e.g. `vm/guest-template.json.tera`.
        template: String,
        /// The cause.
        reason: String,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// Building or signing the RPM failed.
    #[error(transparent)]
    Rpm(Box<xspack_rpmrepo::Error>),
    /// Building or writing the XVA failed.
    #[error(transparent)]
    Xva(Box<xspack_xva::Error>),
    /// Building the config drive's ISO 9660 image failed.
    #[error("building the config drive: {0}")]
    ConfigDrive(Box<xspack_iso::Error>),
    /// Writing the output directory failed.
    #[error(transparent)]
    Output(#[from] xspack_manifest::Error),
    /// Reading an embedded disk image's partition table or EFI system partition failed.
    #[error("reading disk image {path}")]
    Disk {
        /// The image.
        path: Utf8PathBuf,
        /// What failed.
        #[source]
        source: Box<xspack_disk::Error>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<Utf8PathBuf>, e: std::io::Error) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), e))
    }
}

impl xspack_io::Classify for Error {
    /// Whether the error means an input (definition, JSON, disk image) is bad, as opposed to
    /// a failure to read or write it.
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(match self {
            Error::Spec { .. } | Error::GuestJson { .. } | Error::ConfigDrive(_) => true,
            Error::Xva(e) => e.is_bad_input(),
            Error::Output(e) => e.is_bad_input(),
            Error::Disk { source, .. } => source.is_bad_input(),
            Error::Render { .. } | Error::Io(_) | Error::Rpm(_) => false,
        })
    }
}

impl From<xspack_rpmrepo::Error> for Error {
    fn from(e: xspack_rpmrepo::Error) -> Self {
        Error::Rpm(Box::new(e))
    }
}

impl From<xspack_xva::Error> for Error {
    fn from(e: xspack_xva::Error) -> Self {
        Error::Xva(Box::new(e))
    }
}
