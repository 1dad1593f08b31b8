//! RPM packages, yum repositories and `OpenPGP` signatures for XenServer supplemental packs.
//!
//! Everything a 7.1+ update pack (read by xapi, `ocaml/xapi/xapi_pool_update.ml`, and yum) and
//! a legacy pack (`XS-REPOSITORY`/`XS-PACKAGES`, read by python-libs `xcp/repository.py`) need
//! from RPMs:
//!
//! - [`read_rpm`] reads an RPM header without loading the payload (the rpm crate's
//!   `PackageMetadata`), hashes the whole file in the same streaming pass (SHA-256 for
//!   `primary.xml`, MD5 for the legacy `XS-PACKAGES`) and checks the header and payload digests,
//!   giving an [`RpmHeader`] with NEVRA, dependencies, files, sizes and the header byte range.
//! - [`RpmBuilder`] builds v4 RPMs (gzip or xz payload, SHA-256 file digests, no rich
//!   dependencies, no file of 4 GiB or more) reproducibly from a source date, optionally signed
//!   with an RSA key, for the [`Target`] hosts' rpm (by default 4.11, the `CentOS` 7 based
//!   dom0 of XenServer 8): its own writer lays them out as
//!   rpm 4.11's rpmbuild and rpmsign do (payload size, MD5, SHA-1, header and header+payload
//!   signatures in the signature header) and streams the payload in bounded memory
//!   (`docs/rpm.md`).
//! - [`write_repodata`] writes yum metadata as `createrepo_c` 0.17 does (`primary`, `filelists`,
//!   `other`, a comps `group` and `group_gz`, `repomd.xml`, all sha256, gzip), deterministically.
//! - [`SigningKey`] and [`PublicKey`] load armored `OpenPGP` keys, enforce the XenServer DDK key
//!   rules (one RSA primary key, no subkeys), make and check detached armored signatures like
//!   `gpg --armor --detach-sign`, verify RPM header signatures, and [`generate_test_key`] makes
//!   throw-away RSA-2048 keys for tests and examples.
//!
//! ```
//! use camino::Utf8Path;
//! use xspack_rpmrepo::{Dependency, RpmBuilder, read_rpm_from};
//!
//! let mut rpm = Vec::new();
//! RpmBuilder::new("hello", "1.0", "1")
//!     .summary("Says hello")
//!     .license("MIT")
//!     .source_date(1_700_000_000)
//!     .file_from_bytes(b"#!/bin/sh\necho hello\n".to_vec(), "/usr/bin/hello", 0o755)
//!     .requires(Dependency::any("/bin/sh"))
//!     .write(&mut rpm, None)?;
//!
//! let header = read_rpm_from(rpm.as_slice(), Utf8Path::new("hello-1.0-1.noarch.rpm"))?;
//! assert_eq!(header.nevra(), "hello-1.0-1.noarch");
//! assert_eq!(header.files[0].path, "/usr/bin/hello");
//! assert_eq!(header.package_size, rpm.len() as u64);
//! # Ok::<(), xspack_rpmrepo::Error>(())
//! ```

mod build;
mod deps;
mod digest;
mod header;
mod keys;
mod layout;
mod repodata;
mod secret_scan;
mod sign;
mod target;
mod write;

pub use build::{BuiltRpm, Compression, FileAttrs, RpmBuilder};
pub use deps::{Comparison, DepFlags, Dependency, Evr};
pub use digest::Md5Digest;
pub use header::{
    ChangelogEntry, FileEntry, FileKind, HeaderRange, RpmHeader, read_built_rpm, read_rpm,
    read_rpm_from, read_rpm_without_md5,
};
pub use keys::{
    GeneratedKey, KeyInfo, MIN_RSA_BITS, PublicKey, SigningKey, TestKeyOptions, generate_test_key,
};
pub use repodata::{
    CHANGELOG_LIMIT, REPODATA_DIR, RepoGroup, RepoPackage, RepodataFile, RepodataOptions,
    RepodataSummary, is_primary_file, read_packages, write_comps, write_filelists, write_other,
    write_primary, write_repodata, write_repodata_for, write_repomd,
};
pub use secret_scan::SecretKeyScan;
pub use sign::{
    RpmSignature, SignatureInfo, sign_detached, sign_detached_file, verify_detached,
    verify_detached_file, verify_rpm_signature,
};
pub use target::{EL9, TARGETS, Target, XENSERVER_8};

use camino::Utf8PathBuf;

/// Errors from reading and building RPMs, writing repodata and handling `OpenPGP` keys.
///
/// Variants about a file carry its path; key errors carry where the key came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// Writing an atomic output failed.
    #[error(transparent)]
    Output(#[from] xspack_io::Error),
    /// The file does not start with the RPM lead magic.
    #[error("{path}: not an RPM package ({reason})")]
    NotRpm {
        /// The file.
        path: Utf8PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file ends before the header or payload it announces.
    #[error("{path}: truncated RPM: {reason}")]
    Truncated {
        /// The file.
        path: Utf8PathBuf,
        /// Which part is missing.
        reason: String,
    },
    /// The signature header or header cannot be parsed or is inconsistent.
    #[error("{path}: corrupt RPM header: {reason}")]
    CorruptHeader {
        /// The file.
        path: Utf8PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A digest recorded in the RPM does not match the bytes.
    #[error("{path}: {what} digest mismatch: recorded {expected}, computed {actual}")]
    DigestMismatch {
        /// The file.
        path: Utf8PathBuf,
        /// Which digest, e.g. `header SHA-256`.
        what: &'static str,
        /// The recorded digest (hex).
        expected: String,
        /// The digest of the bytes read (hex).
        actual: String,
    },
    /// The RPM carries no `OpenPGP` header signature.
    #[error("{path}: the RPM is not signed")]
    UnsignedRpm {
        /// The file.
        path: Utf8PathBuf,
    },
    /// A signature (RPM header or detached) does not verify with the given key.
    #[error("{path}: BAD signature: {reason}")]
    BadSignature {
        /// The signed file (or RPM).
        path: Utf8PathBuf,
        /// Why verification failed.
        reason: String,
    },
    /// A detached signature file is not an armored `OpenPGP` signature.
    #[error("{path}: not a valid armored OpenPGP signature: {reason}")]
    InvalidSignature {
        /// The signature file.
        path: Utf8PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The package needs something its target hosts' rpm lacks: an `rpmlib()` feature (a
    /// boolean dependency needs one), a payload compressor, a file digest algorithm, or room
    /// for a file of 4 GiB or more (rpm 4.11).
    #[error("package {package}: {what}; {target} cannot install it")]
    Unsupported {
        /// The package being built.
        package: String,
        /// The target's rpm, e.g. `rpm 4.11 (XenServer 8 / XCP-ng 8.x dom0)`.
        target: &'static str,
        /// What it cannot take, naming the file or feature.
        what: String,
    },
    /// The package metadata is refused, or an input cannot be read.
    #[error("building RPM {package}: {reason}")]
    Build {
        /// The package being built.
        package: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing a built package out failed: an I/O error (a full disk, say), not a problem with
    /// the package.
    #[error("writing RPM {package}: {reason}")]
    Write {
        /// The package being written.
        package: String,
        /// What went wrong.
        reason: String,
    },
    /// A package path given to the repodata writer is not a clean relative path.
    #[error("{path:?}: invalid repository path: {reason}")]
    InvalidRepoPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Two RPMs in one repository have the same name, epoch, version, release and arch.
    #[error("duplicate package {nevra}: {first} and {second}")]
    DuplicateNevra {
        /// The shared NEVRA.
        nevra: String,
        /// Location of the first copy.
        first: String,
        /// Location of the second copy.
        second: String,
    },
    /// A comps group definition is unusable.
    #[error("comps group {id:?}: {reason}")]
    InvalidGroup {
        /// The group id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key material cannot be parsed as an armored `OpenPGP` key.
    #[error("{origin}: invalid OpenPGP key: {reason}")]
    InvalidKey {
        /// Where the key came from (a path, or a description).
        origin: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The key parses but breaks the XenServer DDK key rules (section 2.5).
    #[error("{origin}: key refused by the XenServer DDK key rules: {reason}")]
    KeyRules {
        /// Where the key came from.
        origin: String,
        /// Which rule is broken.
        reason: String,
    },
    /// The secret key is encrypted and no passphrase was given.
    #[error("{origin}: the secret key is passphrase-protected and no passphrase was given")]
    PassphraseRequired {
        /// Where the key came from.
        origin: String,
    },
    /// The passphrase does not unlock the secret key.
    #[error("{origin}: wrong passphrase for the secret key")]
    WrongPassphrase {
        /// Where the key came from.
        origin: String,
    },
    /// Creating a signature failed.
    #[error("signing {what}: {reason}")]
    Sign {
        /// What was being signed.
        what: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<Utf8PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), source))
    }
}

/// The `SOURCE_DATE_EPOCH` environment variable as seconds, if set to a valid number.
///
/// Callers use it as the default for every timestamp this crate writes (RPM build time, file
/// mtimes, signature creation times, repodata timestamps).
pub fn source_date_epoch() -> Option<u32> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

impl xspack_io::Classify for Error {
    /// The host's when a file could not be read or written; otherwise the input's (a package,
    /// key or signature that breaks a rule).
    fn fault(&self) -> xspack_io::Fault {
        match self {
            Error::Io(_) | Error::Write { .. } | Error::Output(_) => xspack_io::Fault::Host,
            _ => xspack_io::Fault::Input,
        }
    }
}
