//! The files a `pack.toml` names, checked before any of them is read.
//!
//! A pack definition may come from a pull request, so every path in it is resolved (symbolic
//! links and `..` followed) and must lie inside the pack's directory, or a directory the user
//! allows with `--allow-outside` (`xspack_io::InputRoots`): `[[rpm]] path` globs (each match),
//! `[[package]]` `files.src` and scripts, `[[template]] path` and `[signing] key`. Each must be a
//! regular file, so a FIFO or a device never blocks or streams forever. Payload files and
//! scripts are then read once, to hash them for the manifest, and refused if they hold an
//! `OpenPGP` secret key or are the signing key file itself: a pack ships them to every host.
//!
//! Every refusal is a [`Error::Spec`] that names `pack.toml` and the field.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{InputError, InputRoots};
use xspack_manifest::{Input, InputDigest};
use xspack_rpmrepo::SecretKeyScan;

use crate::Error;
use crate::spec::PackSpec;

/// The checked inputs of a pack.
pub(crate) struct PackInputs {
    /// Each `[[rpm]]` glob's matches, sorted, as the glob spells them.
    pub rpms: Vec<Utf8PathBuf>,
    /// The signing key file (`--sign-key` or `[signing] key`), which no payload may be.
    sign_key: Option<(u64, u64)>,
}

/// The directory of `pack.toml` at `spec_path`, which its paths are relative to.
pub(crate) fn pack_dir(spec_path: &Utf8Path) -> &Utf8Path {
    spec_path.parent().filter(|p| !p.as_str().is_empty()).unwrap_or(Utf8Path::new("."))
}

/// `field: problem` as a spec error of `spec_path`.
fn spec_error(spec_path: &Utf8Path, field: &str, problem: impl std::fmt::Display) -> Error {
    Error::Spec { at: spec_path.to_string(), reason: format!("{field}: {problem}") }
}

/// Checks one named input of field `field`.
pub(crate) fn check_input(
    roots: &InputRoots,
    spec_path: &Utf8Path,
    field: &str,
    path: &Utf8Path,
) -> Result<Utf8PathBuf, Error> {
    roots.check_file(path).map_err(|e| spec_error(spec_path, field, e))
}

impl PackInputs {
    /// Resolves and checks every path `spec` (loaded from `spec_path`, in `dir`) names.
    /// `sign_key` is the signing key file in use, if any.
    pub(crate) fn check(
        spec: &PackSpec,
        spec_path: &Utf8Path,
        dir: &Utf8Path,
        roots: &InputRoots,
        sign_key: Option<&Utf8Path>,
    ) -> Result<Self, Error> {
        let mut rpms = Vec::new();
        for (i, rpm) in spec.rpms.iter().enumerate() {
            let field = format!("rpm[{i}].path");
            let pattern = dir.join(&rpm.path);
            let matches = glob::glob(pattern.as_str())
                .map_err(|e| spec_error(spec_path, &field, format!("{:?}: {e}", rpm.path)))?;
            let mut found: Vec<Utf8PathBuf> = Vec::new();
            for m in matches {
                let m = m.map_err(|e| spec_error(spec_path, &field, e))?;
                let m = Utf8PathBuf::from_path_buf(m).map_err(|p| {
                    spec_error(spec_path, &field, format!("{} is not UTF-8", p.display()))
                })?;
                check_input(roots, spec_path, &field, &m)?;
                found.push(m);
            }
            if found.is_empty() {
                return Err(spec_error(
                    spec_path,
                    &field,
                    format!("{:?} matches no file", xspack_io::quote::truncated(&rpm.path)),
                ));
            }
            found.sort();
            rpms.extend(found);
        }
        for (i, pkg) in spec.packages.iter().enumerate() {
            for (j, f) in pkg.files.iter().enumerate() {
                let field = format!("package[{i}].files[{j}].src");
                check_input(roots, spec_path, &field, &dir.join(&f.src))?;
            }
            for (name, script) in
                [("post", &pkg.post), ("postun", &pkg.postun), ("posttrans", &pkg.posttrans)]
            {
                if let Some(script) = script {
                    let field = format!("package[{i}].{name}");
                    check_input(roots, spec_path, &field, &dir.join(script))?;
                }
            }
        }
        for (i, t) in spec.templates.iter().enumerate() {
            check_input(roots, spec_path, &format!("template[{i}].path"), &dir.join(&t.path))?;
        }
        let sign_key = match sign_key {
            Some(key) => {
                let meta =
                    std::fs::metadata(key).map_err(|e| Error::io("reading signing key", key, e))?;
                Some((meta.dev(), meta.ino()))
            }
            None => None,
        };
        Ok(PackInputs { rpms, sign_key })
    }

    /// A manifest input for the payload file (or script) `path` of field `field`, hashing it
    /// in one read that also looks for secret key material, which is refused.
    pub(crate) fn payload_input(
        &self,
        spec_path: &Utf8Path,
        (field, name): (&str, &Utf8Path),
        path: &Utf8Path,
        kind: &str,
    ) -> Result<Input, Error> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
        if self.sign_key == Some((meta.dev(), meta.ino())) {
            return Err(spec_error(spec_path, field, format!("{path} is the signing key file")));
        }
        let mut scan = SecretKeyScan::new();
        let input = hashed_input(file, (path, name), kind, |chunk| scan.update(chunk))?;
        if let Some(what) = scan.found() {
            return Err(spec_error(
                spec_path,
                field,
                format!("{path} holds {what}; a pack ships its payload to every host"),
            ));
        }
        Ok(input)
    }
}

/// A manifest input for the file `path`, named `name` (as `pack.toml` writes it, relative to
/// the pack's directory: never a host path): its sha256 and size.
pub(crate) fn file_input(path: &Utf8Path, name: &Utf8Path, kind: &str) -> Result<Input, Error> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    hashed_input(file, (path, name), kind, |_| {})
}

/// Hashes `file` (at `path`) into a manifest input named `name`, showing each chunk to
/// `visit`.
fn hashed_input(
    file: File,
    (path, name): (&Utf8Path, &Utf8Path),
    kind: &str,
    mut visit: impl FnMut(&[u8]),
) -> Result<Input, Error> {
    struct Tee<R, F>(R, F);
    impl<R: Read, F: FnMut(&[u8])> Read for Tee<R, F> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            (self.1)(&buf[..n]);
            Ok(n)
        }
    }
    let (digest, size) =
        xspack_io::hash_reader(Tee(file, &mut visit)).map_err(|e| Error::io("reading", path, e))?;
    Ok(Input { name: name.to_string(), kind: kind.into(), digest: InputDigest(digest), size })
}

/// Loads the pack at `spec_path` and checks every path it names (the rules of this module)
/// without reading any of the files: what `pack build` checks before it starts, for linters
/// and tests. `allow_outside` are the directories `--allow-outside` names.
pub fn check_pack_inputs(spec_path: &Utf8Path, allow_outside: &[Utf8PathBuf]) -> Result<(), Error> {
    let spec = PackSpec::load(spec_path)?;
    let dir = pack_dir(spec_path);
    let roots = InputRoots::new(dir, allow_outside).map_err(|e| roots_error(spec_path, &e))?;
    PackInputs::check(&spec, spec_path, dir, &roots, None).map(|_| ())
}

/// Maps an error of the allowed roots themselves (`--allow-outside`).
pub(crate) fn roots_error(spec_path: &Utf8Path, e: &InputError) -> Error {
    Error::Spec { at: spec_path.to_string(), reason: e.to_string() }
}
