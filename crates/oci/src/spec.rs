//! The JSON documents of an image: OCI image spec v1.1 (`index.json`, image index, image
//! manifest, image configuration; their Docker v2 schema 2 equivalents) and the
//! `manifest.json` that `docker save` writes. Unknown fields are ignored, as the specs require
//! of readers.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Media types of image indexes (OCI and Docker manifest list).
pub const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Media types of image manifests.
pub const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Annotation naming a manifest in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: Option<String>,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Platform, in image indexes.
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The platform an image is for.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
}

/// An image index (or `index.json` of a layout).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Must be 2.
    pub schema_version: u32,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Must be 2.
    pub schema_version: u32,
    /// Media type, when present.
    pub media_type: Option<String>,
    /// The image configuration.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An image configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    /// CPU architecture.
    pub architecture: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Execution parameters.
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// `rootfs` of an image configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    /// Must be `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    pub diff_ids: Vec<String>,
}

/// How a container from the image runs: what the guest flavors turn into a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `NAME=value` environment entries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// Entrypoint argv.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    /// Command argv (arguments to the entrypoint).
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user[:group]`, by name or number.
    #[serde(default)]
    pub user: Option<String>,
    /// Exposed ports, e.g. `8080/tcp`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Declared volumes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// Signal that stops the container.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Docker writes `null` for empty lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One image in `docker save`'s `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveEntry {
    /// Archive path of the config.
    pub config: String,
    /// Tags, e.g. `mysql:8`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub repo_tags: Vec<String>,
    /// Archive paths of the layer tars, base first.
    pub layers: Vec<String>,
}

/// `oci-layout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutFile {
    /// Must be `1.0.0`.
    pub image_layout_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_nulls_are_empty() {
        let c: ContainerConfig = serde_json::from_str(
            r#"{"Env":null,"Cmd":["sh"],"Entrypoint":null,"ExposedPorts":{"80/tcp":{}},"Labels":null,"Extra":1}"#,
        )
        .unwrap();
        assert!(c.env.is_empty() && c.entrypoint.is_empty());
        assert_eq!(c.cmd, ["sh"]);
        assert!(c.exposed_ports.contains_key("80/tcp"));
    }
}
