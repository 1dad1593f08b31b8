//! Image source names, as skopeo spells them: `docker-archive:PATH[:REF]`,
//! `oci:DIR[:REF]`, `oci-archive:PATH[:REF]`, or a bare path whose kind is detected by content.

use std::fmt;
use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};

use crate::Error;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A `docker save` tarball, with an optional `repo:tag` to pick one of several images.
    DockerArchive {
        /// The tarball.
        path: Utf8PathBuf,
        /// Which image, when the archive holds several.
        reference: Option<String>,
    },
    /// An OCI image layout directory, with an optional ref name.
    OciDir {
        /// The directory.
        path: Utf8PathBuf,
        /// `org.opencontainers.image.ref.name` to select.
        reference: Option<String>,
    },
    /// A tarball of an OCI image layout, with an optional ref name.
    OciArchive {
        /// The tarball.
        path: Utf8PathBuf,
        /// `org.opencontainers.image.ref.name` to select.
        reference: Option<String>,
    },
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, path, reference) = match self {
            ImageSource::DockerArchive { path, reference } => ("docker-archive", path, reference),
            ImageSource::OciDir { path, reference } => ("oci", path, reference),
            ImageSource::OciArchive { path, reference } => ("oci-archive", path, reference),
        };
        write!(f, "{scheme}:{path}")?;
        if let Some(r) = reference {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

impl ImageSource {
    /// Parses a source name. A bare path is inspected to find its kind.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Source {
            source_name: text.to_owned(),
            reason: reason.to_owned(),
        };
        for (scheme, make) in [
            (
                "docker-archive:",
                ImageSource::docker as fn(Utf8PathBuf, Option<String>) -> ImageSource,
            ),
            ("oci:", ImageSource::oci_dir),
            ("oci-archive:", ImageSource::oci_archive),
        ] {
            if let Some(rest) = text.strip_prefix(scheme) {
                if rest.is_empty() {
                    return Err(bad("no path after the transport name"));
                }
                let (path, reference) = split_reference(rest);
                return Ok(make(path.into(), reference.map(str::to_owned)));
            }
        }
        if let Some((scheme, _)) = text.split_once(':')
            && !scheme.contains('/')
            && !Utf8Path::new(text).exists()
        {
            return Err(bad(&format!(
                "unknown transport {scheme:?} (use docker-archive:, oci: or oci-archive:)"
            )));
        }
        Self::detect(Utf8Path::new(text))
    }

    fn docker(path: Utf8PathBuf, reference: Option<String>) -> Self {
        ImageSource::DockerArchive { path, reference }
    }

    fn oci_dir(path: Utf8PathBuf, reference: Option<String>) -> Self {
        ImageSource::OciDir { path, reference }
    }

    fn oci_archive(path: Utf8PathBuf, reference: Option<String>) -> Self {
        ImageSource::OciArchive { path, reference }
    }

    /// The source as outputs name it: the transport, the file or directory's own name (after
    /// symbolic links, so `.`, `img/`, `./img` and a link to it name it alike) and the
    /// reference, e.g. `oci:img:latest`. Unlike the `Display` form it holds no directory, so
    /// where the image lies and how its path was spelled never change an output, and no
    /// output records a host path.
    pub fn portable_name(&self) -> String {
        let path = self.path();
        let resolved = path.canonicalize_utf8().ok();
        let name = resolved
            .as_deref()
            .and_then(Utf8Path::file_name)
            .or_else(|| path.file_name())
            .unwrap_or("image");
        let scheme = match self {
            ImageSource::DockerArchive { .. } => "docker-archive",
            ImageSource::OciDir { .. } => "oci",
            ImageSource::OciArchive { .. } => "oci-archive",
        };
        match self.reference() {
            Some(r) => format!("{scheme}:{name}:{r}"),
            None => format!("{scheme}:{name}"),
        }
    }

    /// The reference that picks the image, if one was given.
    pub fn reference(&self) -> Option<&str> {
        match self {
            ImageSource::DockerArchive { reference, .. }
            | ImageSource::OciDir { reference, .. }
            | ImageSource::OciArchive { reference, .. } => reference.as_deref(),
        }
    }

    /// The file or directory the image is read from.
    pub fn path(&self) -> &Utf8Path {
        match self {
            ImageSource::DockerArchive { path, .. }
            | ImageSource::OciDir { path, .. }
            | ImageSource::OciArchive { path, .. } => path,
        }
    }

    /// Detects the kind of a bare path: a directory with `oci-layout` is an OCI layout; a tar
    /// whose members include `manifest.json` is a docker archive, else one with `oci-layout`
    /// is an OCI archive.
    pub fn detect(path: &Utf8Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::Source { source_name: path.to_string(), reason };
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io("opening image source", path.as_str(), e))?;
        if meta.is_dir() {
            if path.join("oci-layout").is_file() {
                return Ok(ImageSource::OciDir { path: path.to_owned(), reference: None });
            }
            return Err(bad(
                "a directory without an oci-layout file is not an OCI image layout".into()
            ));
        }
        let mut head = [0u8; 4];
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io("opening image source", path.as_str(), e))?;
        let n = file.take(4).read(&mut head).map_err(|e| Error::io("reading", path.as_str(), e))?;
        if n >= 2 && (head[..2] == [0x1f, 0x8b] || head == [0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(bad("a compressed archive; decompress it first (e.g. gunzip), docker save output is a plain tar".into()));
        }
        let members = crate::archive::TarIndex::scan(path)?;
        if members.contains("manifest.json") {
            Ok(ImageSource::DockerArchive { path: path.to_owned(), reference: None })
        } else if members.contains("oci-layout") {
            Ok(ImageSource::OciArchive { path: path.to_owned(), reference: None })
        } else {
            Err(bad("a tar archive with neither manifest.json (docker-archive) nor oci-layout (oci-archive)".into()))
        }
    }
}

/// Splits `path[:ref]` at the first colon, as containers/image does: paths cannot hold one.
fn split_reference(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, reference)) if !reference.is_empty() => (path, Some(reference)),
        Some((path, _)) => (path, None),
        None => (rest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        let cases = [
            ("docker-archive:img.tar", ImageSource::docker("img.tar".into(), None)),
            (
                "docker-archive:/x/img.tar:mysql:8",
                ImageSource::docker("/x/img.tar".into(), Some("mysql:8".into())),
            ),
            ("oci:layout", ImageSource::oci_dir("layout".into(), None)),
            ("oci:layout:latest", ImageSource::oci_dir("layout".into(), Some("latest".into()))),
            ("oci-archive:a.tar:v1", ImageSource::oci_archive("a.tar".into(), Some("v1".into()))),
        ];
        for (text, want) in cases {
            assert_eq!(ImageSource::parse(text).unwrap(), want, "{text}");
        }
        assert_eq!(
            ImageSource::parse("oci:layout:latest").unwrap().to_string(),
            "oci:layout:latest"
        );
    }

    #[test]
    fn bad_sources() {
        let err = ImageSource::parse("docker://mysql").unwrap_err().to_string();
        assert!(err.contains("unknown transport \"docker\""), "{err}");
        assert!(ImageSource::parse("oci:").unwrap_err().to_string().contains("no path"));
        let err = ImageSource::parse("/nonexistent/image.tar").unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/image.tar: opening image source"), "{err}");
    }
}
