//! Reading a few small files (configuration: `os-release`, `passwd`) out of a merged image
//! without writing a filesystem: one pass per layer that holds any of them.

use std::collections::HashMap;

use xspack_oci::{Image, MergedTree};

use crate::Error;

/// Largest file [`read_files`] returns: configuration files, not payloads.
pub const MAX_READ_FILE: u64 = 1 << 20;

/// Reads the files at `paths` (symlinks followed inside the image) from the merged image, one
/// pass per layer holding any of them. Missing paths and non-files are left out; a file larger
/// than [`MAX_READ_FILE`] is an error.
pub fn read_files(
    image: &Image,
    tree: &mut MergedTree,
    paths: &[&[u8]],
) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    read_files_up_to(image, tree, paths, MAX_READ_FILE)
}

/// [`read_files`] with files of up to `max` bytes.
pub(crate) fn read_files_up_to(
    image: &Image,
    tree: &mut MergedTree,
    paths: &[&[u8]],
    max: u64,
) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    use xspack_oci::{FileData, NodeKind};
    let mut out = std::collections::BTreeMap::new();
    let mut wanted: HashMap<(usize, u64), Vec<Vec<u8>>> = HashMap::new();
    for path in paths {
        let Some(id) = tree.resolve(path) else { continue };
        if let NodeKind::File { size, source } = &tree.node(id).kind {
            if *size > max {
                return Err(Error::Request(format!(
                    "{}: larger than {max} bytes",
                    String::from_utf8_lossy(path)
                )));
            }
            match source {
                FileData::Inline(data) => {
                    out.insert(path.to_vec(), data.to_vec());
                }
                FileData::Layer(layer, entry) => {
                    wanted.entry((*layer, *entry)).or_default().push(path.to_vec())
                }
            }
        }
    }
    let mut layers: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
    for &(layer, entry) in wanted.keys() {
        let last = layers.entry(layer).or_insert(entry);
        *last = (*last).max(entry);
    }
    for (index, last) in layers {
        let layer = &image.layers[index];
        image.reread_layer(layer, last, |entry, data| -> Result<(), Error> {
            if let Some(names) = wanted.get(&(index, entry.index)) {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(data, &mut bytes)
                    .map_err(|e| Error::Io(xspack_io::IoError::new("reading", layer.label(), e)))?;
                for name in names {
                    out.insert(name.clone(), bytes.clone());
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}
