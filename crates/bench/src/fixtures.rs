//! Benchmark inputs, generated once and cached under `target/bench/fixtures/`.

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Write as _;
use xspack_manifest::{OutputDir, RelPath, Tool};

/// Large incompressible files in the verify fixture, and their size.
const LARGE_FILES: usize = 8;
const LARGE_SIZE: usize = 64 << 20;
/// Small files, to weigh per-file overhead.
const SMALL_FILES: usize = 2000;
const SMALL_SIZE: usize = 4096;

/// A build directory of ~520 MiB: 8 × 64 MiB pseudo-random files and 2000 × 4 KiB files, with
/// SHA256SUMS and manifest.json. Reused when already present.
pub fn verify_fixture(dest: &Utf8Path) -> Result<Utf8PathBuf> {
    if dest.join("manifest.json").is_file() {
        return Ok(dest.to_owned());
    }
    eprintln!("bench: generating {dest}");
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    }
    let tool = Tool { name: "xspack-bench".into(), version: env!("CARGO_PKG_VERSION").into() };
    let mut out = OutputDir::create(dest, tool, 0, false)?;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..LARGE_FILES {
        let mut file = out.create_file(&RelPath::new(format!("large/{i:02}.bin"))?)?;
        for _ in 0..LARGE_SIZE / buf.len() {
            rng.fill(&mut buf);
            file.write_all(&buf)?;
        }
        out.finish_file(file)?;
    }
    for i in 0..SMALL_FILES {
        rng.fill(&mut buf[..SMALL_SIZE]);
        out.write_file(
            &RelPath::new(format!("small/{:02}/{i:04}.dat", i % 50))?,
            &buf[..SMALL_SIZE],
        )?;
    }
    Ok(out.commit()?.0)
}

/// xorshift64*: fast, deterministic, incompressible enough for I/O and hashing benchmarks.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
