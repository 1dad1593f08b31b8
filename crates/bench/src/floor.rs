//! The floor: what any tool that reads every layer must at least do. Inflate each layer and
//! sha256 the result (checking it against the config's `diff_id`), layers in parallel over the
//! cores, writing nothing.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use sha2::{Digest as _, Sha256};
use xspack_oci::{Image, ImageSource};

/// Buffer for the inflate-and-hash loop.
const BUF: usize = 256 * 1024;

/// `xspack-bench floor LAYOUT REF`.
pub fn run(args: &[String]) -> Result<()> {
    let [layout, reference] = args else { bail!("usage: xspack-bench floor LAYOUT REF") };
    let image = Image::open(&ImageSource::OciDir {
        path: layout.into(),
        reference: Some(reference.clone()),
    })?;
    let next = AtomicUsize::new(0);
    let workers =
        std::thread::available_parallelism().map_or(1, usize::from).min(image.layers.len()).max(1);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(layer) = image.layers.get(i) else { return Ok(()) };
                        let path = Utf8PathBuf::from(layout.as_str()).join(&layer.blob);
                        let digest = inflate_and_hash(&path)?;
                        if digest != layer.diff_id.0.0 {
                            bail!("{}: diff_id mismatch", layer.label());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a floor worker panicked"))??;
        }
        Ok(())
    })
}

fn inflate_and_hash(path: &camino::Utf8Path) -> Result<[u8; 32]> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut buffered = BufReader::with_capacity(BUF, file);
    let head = buffered.fill_buf()?;
    let mut reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
