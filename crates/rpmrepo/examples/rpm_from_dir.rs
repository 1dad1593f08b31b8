//! Builds one RPM from every regular file under a directory and reports the time taken and
//! the peak resident memory (`VmHWM`), to measure the writer on large payloads:
//!
//! ```text
//! cargo run --release -p xspack-rpmrepo --example rpm_from_dir -- SRC_DIR OUT_DIR [gzip|xz] [seek|spool] [sign]
//! ```
//!
//! By default the package goes to an atomic output (`write_to_dir`: a temporary file, synced
//! and renamed). `seek` writes straight into a plain file ([`RpmBuilder::write_seekable`]),
//! `spool` through [`RpmBuilder::write`] (an unnamed temporary file, then a copy): the two
//! designs, without the final sync. `sign` signs with a throw-away key (a fixed
//! seed), whose public half it writes to `OUT_DIR/RPM-GPG-KEY-test`.

use std::fs::File;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_rpmrepo::{Compression, RpmBuilder, SigningKey, TestKeyOptions, generate_test_key};

fn files(dir: &Utf8Path, out: &mut Vec<Utf8PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = dir.read_dir_utf8()?.collect::<Result<_, _>>()?;
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for e in entries {
        if e.file_type()?.is_dir() {
            files(e.path(), out)?;
        } else if e.file_type()?.is_file() {
            out.push(e.path().to_owned());
        }
    }
    Ok(())
}

/// The peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out, rest @ ..] = args.as_slice() else {
        return Err("usage: rpm_from_dir SRC_DIR OUT_DIR [gzip|xz] [seek|spool] [sign]".into());
    };
    let (src, out) = (Utf8Path::new(src), Utf8Path::new(out));
    let compression =
        if rest.iter().any(|a| a == "xz") { Compression::Xz } else { Compression::Gzip };
    let mut list = Vec::new();
    files(src, &mut list)?;
    let mut b =
        RpmBuilder::new("bulk", "1", "1").source_date(1_700_000_000).compression(compression);
    for f in &list {
        let rel = f.strip_prefix(src)?;
        b = b.file_from_disk(f.clone(), format!("/opt/bulk/{rel}"), 0o644);
    }
    let key = if rest.iter().any(|a| a == "sign") {
        let mut opts = TestKeyOptions::new("Example <test@example.invalid>", 1_600_000_000);
        opts.seed = Some(7);
        let generated = generate_test_key(&opts)?;
        std::fs::write(out.join("RPM-GPG-KEY-test"), &generated.public_armored)?;
        Some(SigningKey::from_armored(&generated.secret_armored, "test key", None)?)
    } else {
        None
    };
    let started = Instant::now();
    let built = if rest.iter().any(|a| a == "spool") {
        let file = File::create(out.join(b.file_name()))?;
        b.write(file, key.as_ref())?.1
    } else if rest.iter().any(|a| a == "seek") {
        let path = out.join(b.file_name());
        let file = File::options().read(true).write(true).create(true).truncate(true).open(path)?;
        b.write_seekable(file, key.as_ref())?.1
    } else {
        b.write_to_dir(out, key.as_ref(), true)?
    };
    println!(
        "rpm={} bytes={} seconds={:.2} vmhwm_kib={}",
        built.file_name,
        built.size,
        started.elapsed().as_secs_f64(),
        vm_hwm_kib()
    );
    Ok(())
}
