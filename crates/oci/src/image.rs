//! Opening an image: selecting the manifest, verifying the index, manifest and config, and
//! describing the layers.

use std::io::Read;

use camino::Utf8PathBuf;
use serde::de::DeserializeOwned;
use xspack_io::HashingReader;

use crate::archive::TarIndex;
use crate::spec::{
    ConfigFile, ContainerConfig, Descriptor, DockerSaveEntry, INDEX_TYPES, Index, LayoutFile,
    MANIFEST_TYPES, Manifest, REF_NAME,
};
use crate::{Digest, Error, ImageSource};

/// Largest JSON document read (index, manifest, config): they are kilobytes in practice, and a
/// hostile size must not exhaust memory.
const MAX_JSON: u64 = 8 << 20;

/// Layer media types we can read (OCI and Docker; the non-distributable variants too).
const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Where blobs live.
#[derive(Debug)]
enum Store {
    Dir(Utf8PathBuf),
    Tar(TarIndex),
}

impl Store {
    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + Send>>, Error> {
        match self {
            Store::Dir(root) => {
                let path = root.join(name);
                match std::fs::File::open(&path) {
                    Ok(f) => Ok(Some(Box::new(f))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("opening blob", path.as_str(), e)),
                }
            }
            Store::Tar(index) => {
                index.open(name).map_err(|e| Error::io("reading archive member", name, e))
            }
        }
    }

    fn size(&self, name: &str) -> Option<u64> {
        match self {
            Store::Dir(root) => std::fs::metadata(root.join(name)).ok().map(|m| m.len()),
            Store::Tar(index) => index.size(name),
        }
    }
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Position, base layer first (0).
    pub index: usize,
    /// The blob's name in the layout or archive.
    pub blob: String,
    /// Digest of the blob as stored (compressed), when the image records it.
    pub digest: Option<Digest>,
    /// Digest of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// Size of the blob as stored.
    pub size: u64,
    /// Media type, when the manifest gives one.
    pub media_type: Option<String>,
}

impl LayerInfo {
    /// How messages name the layer: `layer 2 (sha256:0123456789ab)`.
    pub fn label(&self) -> String {
        format!("layer {} ({})", self.index + 1, self.digest.unwrap_or(self.diff_id).short())
    }
}

/// An opened image: its identity, run configuration and layers.
#[derive(Debug)]
pub struct Image {
    /// Where it came from.
    pub source: ImageSource,
    store: Store,
    /// Digest of the image manifest (for docker archives, of the config: the image id).
    pub digest: Digest,
    /// Size of the document `digest` covers.
    pub digest_size: u64,
    /// Digest of the config.
    pub config_digest: Digest,
    /// The config's member name in the layout or archive.
    config_name: String,
    /// CPU architecture from the config.
    pub architecture: Option<String>,
    /// Operating system from the config.
    pub os: Option<String>,
    /// How a container runs.
    pub config: ContainerConfig,
    /// Layers, base first.
    pub layers: Vec<LayerInfo>,
    /// What the first read of each layer left for the next, by layer index.
    pub(crate) first_reads:
        std::sync::Mutex<std::collections::HashMap<usize, std::sync::Arc<crate::layer::FirstRead>>>,
}

fn json_err(what: &str, reason: impl Into<String>) -> Error {
    Error::Json { what: what.to_owned(), reason: reason.into() }
}

/// Reads a whole member, at most [`MAX_JSON`] bytes, returning the bytes and their digest.
fn read_limited(store: &Store, name: &str, what: &str) -> Result<(Vec<u8>, Digest), Error> {
    let reader = store.open(name)?.ok_or_else(|| json_err(what, format!("{name} is missing")))?;
    let mut hashing = HashingReader::new(reader.take(MAX_JSON + 1));
    let mut bytes = Vec::new();
    hashing
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", format!("{what} ({name})"), e))?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(json_err(what, format!("larger than {MAX_JSON} bytes")));
    }
    let (_, digest, _) = hashing.finish();
    Ok((bytes, Digest(digest)))
}

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| json_err(what, e.to_string()))
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Reads the blob a descriptor points at and checks its size and digest.
fn read_descriptor(store: &Store, d: &Descriptor, what: &str) -> Result<(Vec<u8>, Digest), Error> {
    let digest: Digest = d.digest.parse().map_err(|e: String| json_err(what, e))?;
    let name = blob_name(&digest);
    if store.size(&name).is_none() {
        return Err(Error::MissingBlob { what: what.to_owned(), digest: digest.to_string() });
    }
    let (bytes, actual) = read_limited(store, &name, what)?;
    if bytes.len() as u64 != d.size {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            kind: "size",
            expected: d.size.to_string(),
            actual: bytes.len().to_string(),
        });
    }
    if actual != digest {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            kind: "digest",
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok((bytes, digest))
}

impl Image {
    /// Opens `source`, reading and verifying everything but the layers.
    pub fn open(source: &ImageSource) -> Result<Image, Error> {
        match source {
            ImageSource::OciDir { path, reference } => {
                Self::open_layout(source.clone(), Store::Dir(path.clone()), reference.as_deref())
            }
            ImageSource::OciArchive { path, reference } => Self::open_layout(
                source.clone(),
                Store::Tar(TarIndex::scan(path)?),
                reference.as_deref(),
            ),
            ImageSource::DockerArchive { path, reference } => {
                Self::open_docker(source.clone(), TarIndex::scan(path)?, reference.as_deref())
            }
        }
    }

    fn open_layout(
        source: ImageSource,
        store: Store,
        reference: Option<&str>,
    ) -> Result<Image, Error> {
        let (layout, _) = read_limited(&store, "oci-layout", "oci-layout")?;
        let layout: LayoutFile = parse(&layout, "oci-layout")?;
        if layout.image_layout_version != "1.0.0" {
            return Err(json_err(
                "oci-layout",
                format!("imageLayoutVersion {:?} is not 1.0.0", layout.image_layout_version),
            ));
        }
        let (index, _) = read_limited(&store, "index.json", "index.json")?;
        let index: Index = parse(&index, "index.json")?;
        if index.schema_version != 2 {
            return Err(json_err(
                "index.json",
                format!("schemaVersion {} is not 2", index.schema_version),
            ));
        }
        let chosen = select_ref(&index, reference, &source)?;
        let mut desc = chosen.clone();
        let mut what = format!("manifest {}", desc.digest);
        if desc.media_type.as_deref().is_some_and(|t| INDEX_TYPES.contains(&t)) {
            let (bytes, _) =
                read_descriptor(&store, &desc, &format!("image index {}", desc.digest))?;
            let nested: Index = parse(&bytes, &format!("image index {}", desc.digest))?;
            desc = select_platform(&nested, &desc.digest)?.clone();
            what = format!("manifest {}", desc.digest);
        }
        let (bytes, digest) = read_descriptor(&store, &desc, &what)?;
        let manifest: Manifest = parse(&bytes, &what)?;
        if manifest.schema_version != 2 {
            return Err(json_err(
                &what,
                format!("schemaVersion {} is not 2", manifest.schema_version),
            ));
        }
        if let Some(t) = &manifest.media_type
            && !MANIFEST_TYPES.contains(&t.as_str())
        {
            return Err(json_err(&what, format!("mediaType {t:?} is not an image manifest")));
        }
        let config_what = format!("config {}", manifest.config.digest);
        let (config_bytes, config_digest) =
            read_descriptor(&store, &manifest.config, &config_what)?;
        let config: ConfigFile = parse(&config_bytes, &config_what)?;
        let diff_ids = check_rootfs(&config, manifest.layers.len(), &config_what)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (i, (d, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
            let lwhat = format!("{what}: layer {}", i + 1);
            if let Some(t) = &d.media_type
                && !LAYER_TYPES.contains(&t.as_str())
            {
                return Err(json_err(&lwhat, format!("layer media type {t:?} is not supported")));
            }
            let ldigest: Digest = d.digest.parse().map_err(|e: String| json_err(&lwhat, e))?;
            let blob = blob_name(&ldigest);
            let size = store.size(&blob).ok_or_else(|| Error::MissingBlob {
                what: lwhat.clone(),
                digest: ldigest.to_string(),
            })?;
            if size != d.size {
                return Err(Error::DigestMismatch {
                    what: lwhat,
                    kind: "size",
                    expected: d.size.to_string(),
                    actual: size.to_string(),
                });
            }
            layers.push(LayerInfo {
                index: i,
                blob,
                digest: Some(ldigest),
                diff_id,
                size,
                media_type: d.media_type.clone(),
            });
        }
        Ok(Image {
            source,
            store,
            digest,
            digest_size: desc.size,
            config_name: blob_name(&config_digest),
            config_digest,
            architecture: config.architecture,
            os: config.os,
            config: config.config.unwrap_or_default(),
            layers,
            first_reads: std::sync::Mutex::default(),
        })
    }

    fn open_docker(
        source: ImageSource,
        index: TarIndex,
        reference: Option<&str>,
    ) -> Result<Image, Error> {
        let store = Store::Tar(index);
        let (bytes, _) = read_limited(&store, "manifest.json", "manifest.json")?;
        let entries: Vec<DockerSaveEntry> = parse(&bytes, "manifest.json")?;
        let entry = select_docker(&entries, reference, &source)?;
        let config_what = format!("config {}", entry.config);
        let (config_bytes, config_digest) = read_limited(&store, &entry.config, &config_what)?;
        if let Some(named) = hex_in_name(&entry.config)
            && named != config_digest.hex()
        {
            return Err(Error::DigestMismatch {
                what: config_what,
                kind: "digest",
                expected: format!("sha256:{named}"),
                actual: config_digest.to_string(),
            });
        }
        let config: ConfigFile = parse(&config_bytes, &config_what)?;
        let diff_ids = check_rootfs(&config, entry.layers.len(), &config_what)?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for (i, (blob, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
            let size = store.size(blob).ok_or_else(|| Error::MissingBlob {
                what: format!("manifest.json: layer {} ({blob})", i + 1),
                digest: diff_id.to_string(),
            })?;
            let digest = hex_in_name(blob)
                .map(|h| format!("sha256:{h}").parse())
                .transpose()
                .map_err(|e: String| json_err("manifest.json", e))?;
            layers.push(LayerInfo {
                index: i,
                blob: blob.clone(),
                digest,
                diff_id,
                size,
                media_type: None,
            });
        }
        let digest_size = config_bytes.len() as u64;
        Ok(Image {
            source,
            store,
            digest: config_digest,
            digest_size,
            config_name: entry.config.clone(),
            config_digest,
            architecture: config.architecture,
            os: config.os,
            config: config.config.unwrap_or_default(),
            layers,
            first_reads: std::sync::Mutex::default(),
        })
    }

    /// The config document as stored, checked against [`Image::config_digest`].
    pub fn config_bytes(&self) -> Result<Vec<u8>, Error> {
        let what = format!("config {}", self.config_digest);
        let (bytes, digest) = read_limited(&self.store, &self.config_name, &what)?;
        if digest != self.config_digest {
            return Err(Error::DigestMismatch {
                what,
                kind: "digest",
                expected: self.config_digest.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(bytes)
    }

    /// A reader of layer `i`'s stored (possibly compressed) bytes.
    pub(crate) fn open_blob(&self, layer: &LayerInfo) -> Result<Box<dyn Read + Send>, Error> {
        self.store.open(&layer.blob)?.ok_or_else(|| Error::MissingBlob {
            what: layer.label(),
            digest: layer.digest.unwrap_or(layer.diff_id).to_string(),
        })
    }
}

/// `blobs/sha256/<hex>` or `<hex>.json` / `<hex>.tar`: the hex a name promises.
fn hex_in_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next()?;
    let stem = base.strip_suffix(".json").or_else(|| base.strip_suffix(".tar")).unwrap_or(base);
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| stem.to_owned())
}

fn check_rootfs(config: &ConfigFile, layers: usize, what: &str) -> Result<Vec<Digest>, Error> {
    if config.rootfs.kind != "layers" {
        return Err(json_err(
            what,
            format!("rootfs.type {:?} is not \"layers\"", config.rootfs.kind),
        ));
    }
    if config.rootfs.diff_ids.len() != layers {
        return Err(json_err(
            what,
            format!("{} diff_ids for {layers} layers", config.rootfs.diff_ids.len()),
        ));
    }
    if let Some(os) = &config.os
        && os != "linux"
    {
        return Err(json_err(what, format!("os {os:?} is not linux")));
    }
    config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.parse().map_err(|e: String| json_err(what, e)))
        .collect()
}

fn select_ref<'a>(
    index: &'a Index,
    reference: Option<&str>,
    source: &ImageSource,
) -> Result<&'a Descriptor, Error> {
    let bad = |reason: String| Error::Source { source_name: source.to_string(), reason };
    if index.manifests.is_empty() {
        return Err(json_err("index.json", "no manifests"));
    }
    let name_of = |d: &Descriptor| d.annotations.get(REF_NAME).cloned();
    let names: Vec<String> = index.manifests.iter().filter_map(name_of).collect();
    match reference {
        Some(r) => {
            index.manifests.iter().find(|d| name_of(d).as_deref() == Some(r)).ok_or_else(|| {
                bad(format!("no manifest named {r:?} (the layout has: {})", names.join(", ")))
            })
        }
        None if index.manifests.len() == 1 => Ok(&index.manifests[0]),
        None => {
            index.manifests.iter().find(|d| name_of(d).as_deref() == Some("latest")).ok_or_else(
                || {
                    bad(format!(
                        "several manifests and none named \"latest\"; pick one with :REF ({})",
                        names.join(", ")
                    ))
                },
            )
        }
    }
}

fn select_platform<'a>(index: &'a Index, digest: &str) -> Result<&'a Descriptor, Error> {
    let what = format!("image index {digest}");
    let amd64 = index.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            && d.media_type.as_deref().is_none_or(|t| MANIFEST_TYPES.contains(&t))
    });
    match amd64 {
        Some(d) => Ok(d),
        None if index.manifests.len() == 1 && index.manifests[0].platform.is_none() => {
            Ok(&index.manifests[0])
        }
        None => Err(json_err(&what, "no manifest for platform linux/amd64")),
    }
}

fn select_docker<'a>(
    entries: &'a [DockerSaveEntry],
    reference: Option<&str>,
    source: &ImageSource,
) -> Result<&'a DockerSaveEntry, Error> {
    let bad = |reason: String| Error::Source { source_name: source.to_string(), reason };
    match (reference, entries) {
        (_, []) => Err(json_err("manifest.json", "no images")),
        (None, [only]) => Ok(only),
        (None, _) => Err(bad("the archive holds several images; pick one with :REPO:TAG".into())),
        (Some(r), _) => {
            let want = if r.contains(':') { r.to_owned() } else { format!("{r}:latest") };
            entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .any(|t| t == &want || t.rsplit('/').next() == Some(want.as_str()))
                })
                .ok_or_else(|| bad(format!("no image tagged {want:?} in the archive")))
        }
    }
}
