//! Benchmark inputs, generated once and cached under `target/bench/fixtures/`.

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::fmt::Write as _;
use std::io::Write as _;
use xspack_manifest::{OutputDir, RelPath, Tool};

/// Where the fixtures are cached.
pub fn dir(target: &Utf8Path) -> Utf8PathBuf {
    std::env::var("XSPACK_BENCH_FIXTURES")
        .map_or_else(|_| target.join("bench/fixtures"), Utf8PathBuf::from)
}

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
    let mut rng = xspack_testkit::Rng(0x9e37_79b9_7f4a_7c15);
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

/// The bookworm minbase OCI layout made by `scripts/fixtures/bookworm` (needs root once).
pub fn bookworm(target: &Utf8Path) -> Result<Utf8PathBuf> {
    let script =
        Utf8PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fixtures/bookworm"));
    let out = std::process::Command::new(&script)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .with_context(|| format!("running {script}"))?;
    if !out.status.success() {
        anyhow::bail!("{script}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Utf8PathBuf::from(String::from_utf8(out.stdout)?.trim()).join("oci"))
}

/// The synthetic image of [`xspack_testkit::fixtures::synthetic`] at `dest`.
pub fn synthetic(dest: &Utf8Path, files: usize, bytes: usize) -> Result<Utf8PathBuf> {
    xspack_testkit::fixtures::synthetic(dest, files, bytes)
        .with_context(|| format!("writing {dest}"))
}

/// Size in bytes of the filesystem xspack builds from `source`, so the baseline's mkfs gets
/// the same size.
pub fn image_size(xspack: &Utf8Path, source: &str) -> Result<u64> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let status = std::process::Command::new(xspack)
        .args(["-q", "image", "build", source, "--flavor", "none", "--name", "fs", "-o"])
        .arg(&out)
        .status()
        .context("running xspack")?;
    if !status.success() {
        anyhow::bail!("xspack image build {source} failed");
    }
    Ok(std::fs::metadata(out.join("fs.raw"))?.len())
}

/// The raw image xspack builds from `source`, cached at `dest` (input for qemu-img convert).
pub fn raw_image(xspack: &Utf8Path, source: &str, dest: &Utf8Path) -> Result<Utf8PathBuf> {
    if dest.is_file() {
        return Ok(dest.to_owned());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let status = std::process::Command::new(xspack)
        .args(["-q", "image", "build", source, "--flavor", "none", "--name", "fs", "-o"])
        .arg(&out)
        .status()
        .context("running xspack")?;
    if !status.success() {
        anyhow::bail!("xspack image build {source} failed");
    }
    std::fs::copy(out.join("fs.raw"), dest).with_context(|| format!("writing {dest}"))?;
    Ok(dest.to_owned())
}

/// RPMs in the pack fixture, and the incompressible payload of each.
const PACK_RPMS: usize = 20;
const PACK_RPM_PAYLOAD: usize = 10 << 20;

/// A pack directory with 20 RPMs of 10 MiB incompressible payload each (about 200 MB) and a
/// pack.toml listing them. Reused when present.
pub fn pack(dest: &Utf8Path) -> Result<Utf8PathBuf> {
    if dest.join("pack.toml").is_file() {
        return Ok(dest.to_owned());
    }
    eprintln!("bench: generating {dest} (about 200 MB of RPMs, once)");
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let rpms = tmp.join("rpms");
    std::fs::create_dir_all(&rpms)?;
    let mut rng = xspack_testkit::Rng(0xb3ac_4000_0000_0001);
    for i in 0..PACK_RPMS {
        let mut payload = vec![0u8; PACK_RPM_PAYLOAD];
        rng.fill(&mut payload);
        xspack_rpmrepo::RpmBuilder::new(format!("bench-payload-{i:02}"), "1.0", "1")
            .summary("bench payload")
            .description("Incompressible payload for the pack benchmark.")
            .license("MIT")
            .source_date(1_700_000_000)
            .file_from_bytes(payload, format!("/opt/bench/payload-{i:02}.bin"), 0o644)
            .write_to_dir(&rpms, None, false)?;
    }
    std::fs::write(
        tmp.join("pack.toml"),
        "[pack]\nname = \"bench\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"Pack benchmark\"\nformats = [\"update\"]\n\n[[rpm]]\npath = \"rpms/*.rpm\"\n",
    )?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming {tmp}"))?;
    Ok(dest.to_owned())
}

/// The payload files of the pack-from-files fixture: name prefix, count, size of each.
/// Incompressible (`.bin`): 4 × 48 MiB + 16 × 4 MiB = 256 MiB; text (`.log`, `.csv`):
/// 2 × 64 MiB + 12 × 10 MiB = 248 MiB; 34 files in all.
const FROM_FILES: [(&str, usize, usize); 4] = [
    ("blob", 4, 48 << 20),
    ("data", 16, 4 << 20),
    ("xapi", 2, 64 << 20),
    ("metrics", 12, 10 << 20),
];

/// Where the pack-from-files package installs its payload.
const FROM_FILES_DEST: &str = "/opt/bench-files";

/// The pack-from-files fixture: `files/` holding about 500 MiB in 34 files, half
/// incompressible (xorshift bytes) and half text (xapi-like log lines and CSV rows, from the
/// same generator, so every run makes the same bytes); `pack.toml`, one `[[package]]` of those
/// files, update format; and `bench-files.spec`, the same package for `rpmbuild` (sources
/// from `%{_sourcedir}`, which the baseline points at `files/`). Reused when present.
pub fn pack_from_files(dest: &Utf8Path) -> Result<Utf8PathBuf> {
    if dest.join("pack.toml").is_file() {
        return Ok(dest.to_owned());
    }
    eprintln!("bench: generating {dest} (about 500 MiB of payload files, once)");
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).with_context(|| format!("creating {files}"))?;
    let mut rng = xspack_testkit::Rng(0xf11e_5000_0000_0019);
    let mut names = Vec::new();
    for (prefix, count, size) in FROM_FILES {
        for i in 0..count {
            let name = match prefix {
                "blob" | "data" => format!("{prefix}-{i:02}.bin"),
                "xapi" => format!("{prefix}-{i:02}.log"),
                _ => format!("{prefix}-{i:02}.csv"),
            };
            let path = files.join(&name);
            let file = std::fs::File::create(&path).with_context(|| format!("creating {path}"))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            match prefix {
                "blob" | "data" => {
                    let mut buf = vec![0u8; 1 << 20];
                    for _ in 0..size / buf.len() {
                        rng.fill(&mut buf);
                        out.write_all(&buf)?;
                    }
                }
                "xapi" => write_text(&mut out, size, &mut rng, log_line)?,
                _ => write_text(&mut out, size, &mut rng, csv_line)?,
            }
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {path}"))?;
            names.push(name);
        }
    }
    let (mut entries, mut install, mut listed) = (String::new(), String::new(), String::new());
    for n in &names {
        writeln!(entries, "  {{ src = \"files/{n}\", dest = \"{FROM_FILES_DEST}/{n}\" }},")?;
        writeln!(
            install,
            "install -m 0644 %{{_sourcedir}}/{n} %{{buildroot}}{FROM_FILES_DEST}/{n}"
        )?;
        writeln!(listed, "{FROM_FILES_DEST}/{n}")?;
    }
    std::fs::write(
        tmp.join("pack.toml"),
        format!(
            "[pack]\nname = \"bench-files\"\nversion = \"1.0.0\"\nbuild = \"1\"\n\
             originator = \"xspack\"\ndescription = \"Pack-from-files benchmark\"\n\
             formats = [\"update\"]\n\n[[package]]\nname = \"bench-files\"\nversion = \"1.0\"\n\
             summary = \"bench payload\"\n\
             description = \"Mixed payload for the pack-from-files benchmark.\"\n\
             license = \"MIT\"\nfiles = [\n{entries}]\n"
        ),
    )?;
    std::fs::write(
        tmp.join("bench-files.spec"),
        format!(
            "Name: bench-files\nVersion: 1.0\nRelease: 1\nSummary: bench payload\nLicense: MIT\n\
             BuildArch: noarch\n\n%description\nMixed payload for the pack-from-files benchmark.\n\n\
             %install\nmkdir -p %{{buildroot}}{FROM_FILES_DEST}\n{install}\n\
             %files\n%defattr(-,root,root,-)\n{listed}"
        ),
    )?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming {tmp}"))?;
    Ok(dest.to_owned())
}

/// Writes whole lines from `line` until at least `size` bytes are written.
fn write_text(
    out: &mut impl std::io::Write,
    size: usize,
    rng: &mut xspack_testkit::Rng,
    line: fn(&mut String, u64, &mut xspack_testkit::Rng),
) -> std::io::Result<()> {
    let mut written = 0;
    let mut text = String::with_capacity(256);
    let mut n = 0u64;
    while written < size {
        text.clear();
        line(&mut text, n, rng);
        out.write_all(text.as_bytes())?;
        written += text.len();
        n += 1;
    }
    Ok(())
}

const HOSTS: [&str; 6] =
    ["xs-pool-a1", "xs-pool-a2", "xs-pool-b1", "xs-pool-b2", "xs-dev", "xs-dr"];
const LEVELS: [&str; 4] = ["debug", "info", "info", "warn"];
const MESSAGES: [&str; 8] = [
    "VM.start: starting domain",
    "VM.clean_shutdown: guest acknowledged shutdown request",
    "SR.scan: found new VDI",
    "host.call_plugin: plugin returned",
    "event.from: returning events",
    "VBD.plug: attaching disk to backend",
    "pool.sync_database: database flushed",
    "session.login_with_password: authenticated",
];
const METRICS: [&str; 5] = ["cpu0", "memory_free_kib", "pif_eth0_rx", "vbd_xvda_read", "loadavg"];

/// The item of `items` that `r` picks.
fn pick<'a>(items: &[&'a str], r: u64) -> &'a str {
    // The remainder is below the length, so it fits.
    items[usize::try_from(r % items.len() as u64).unwrap_or_default()]
}

/// A xapi-like log line: timestamp, host, level, task and VM uuids, a message.
fn log_line(s: &mut String, n: u64, rng: &mut xspack_testkit::Rng) {
    let r = rng.next_u64();
    let (secs, ms) = (n / 40, (n % 40) * 25 + r % 25);
    let _ = writeln!(
        s,
        "2024-03-{:02}T{:02}:{:02}:{:02}.{ms:03}Z {} xapi: [{}|{}|R:{:012x}|{}] {} vm={:08x}-{:04x}-4{:03x} rc={}",
        1 + (secs / 86_400) % 28,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        pick(&HOSTS, r >> 8),
        pick(&LEVELS, r >> 12),
        1000 + (r >> 16) % 64,
        rng.next_u64() & 0xffff_ffff_ffff,
        pick(&["xapi", "xenopsd", "squeezed", "SM"], r >> 24),
        pick(&MESSAGES, r >> 28),
        (r >> 32) as u32 & 0x00ff_ffff,
        (r >> 40) & 0xfff,
        (r >> 52) & 0xfff,
        u8::from(r.is_multiple_of(97)),
    );
}

/// A CSV row of host metrics: sample number, timestamp, host, metric, value.
fn csv_line(s: &mut String, n: u64, rng: &mut xspack_testkit::Rng) {
    let r = rng.next_u64();
    let _ = writeln!(
        s,
        "{n},{},{},{},{}.{:03}",
        1_709_251_200 + n / 30,
        pick(&HOSTS, r),
        pick(&METRICS, r >> 8),
        (r >> 16) % 100_000,
        (r >> 40) % 1000,
    );
}
