//! Single artifacts given to `verify` and `inspect`: VHD, XVA, ISO and qcow2 files, recognised
//! by content and checked by their own format crates.
//!
//! - VHD: every rule of blktap's `vhd-util check` (xspack-disk);
//! - XVA: every rule of the XVA format, each chunk's SHA-1 or XXH64 checksum (xspack-xva);
//! - ISO: volume descriptors, both directory trees, every file extent in bounds (xspack-iso);
//! - qcow2: header, L1, L2 and refcount tables within the file and by the rules of the format
//!   (xspack-disk); qcow2 has no checksums, so its content integrity comes from the lists
//!   beside it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use serde_json::{Value, json};
use xspack_io::Classify as _;

use crate::exit::bad_input;

/// A kind of artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Dynamic VHD.
    Vhd,
    /// XenServer VM export.
    Xva,
    /// ISO 9660 image.
    Iso,
    /// qcow2 image.
    Qcow2,
}

impl Kind {
    /// Name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Vhd => "VHD",
            Kind::Xva => "XVA",
            Kind::Iso => "ISO",
            Kind::Qcow2 => "qcow2",
        }
    }

    /// What [`check`] covers, for messages.
    pub fn checks(self) -> &'static str {
        match self {
            Kind::Qcow2 => "structure",
            _ => "structure and checksums",
        }
    }
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
    file.seek(SeekFrom::Start(offset))?;
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Recognises `path` by its magic numbers.
pub fn detect(path: &Utf8Path) -> Result<Option<Kind>> {
    let mut f = File::open(path).with_context(|| format!("{path}: cannot open"))?;
    let len = f.metadata().with_context(|| format!("{path}: cannot read"))?.len();
    let mut head = [0u8; 512];
    let whole = read_at(&mut f, 0, &mut head).with_context(|| format!("{path}: cannot read"))?;
    if head.starts_with(b"QFI\xfb") {
        return Ok(Some(Kind::Qcow2));
    }
    if whole && head.starts_with(b"conectix") {
        return Ok(Some(Kind::Vhd));
    }
    if whole && head.starts_with(b"ova.xml\0") {
        return Ok(Some(Kind::Xva));
    }
    let mut cd = [0u8; 6];
    if read_at(&mut f, 0x8000, &mut cd).with_context(|| format!("{path}: cannot read"))?
        && &cd[1..6] == b"CD001"
    {
        return Ok(Some(Kind::Iso));
    }
    let mut tail = [0u8; 8];
    if len >= 512
        && read_at(&mut f, len - 512, &mut tail).with_context(|| format!("{path}: cannot read"))?
        && &tail == b"conectix"
    {
        return Ok(Some(Kind::Vhd));
    }
    Ok(None)
}

/// Checks `path` as `kind` completely and returns its summary.
pub fn check(path: &Utf8Path, kind: Kind) -> Result<Value> {
    let bad = |e: &dyn std::fmt::Display| {
        anyhow::Error::new(bad_input(format!("{path}: {}: {e}", kind.name())))
    };
    match kind {
        Kind::Vhd => {
            let mut vhd = xspack_disk::vhd::open_vhd_file(path)
                .map_err(|e| classify(path, kind, &inner(&e), e.is_bad_input()))?;
            // Read every allocated block back: bounds and bitmaps are checked as we go.
            let size = io::copy(&mut vhd.raw_reader(), &mut io::sink()).map_err(|e| bad(&e))?;
            Ok(json!({ "kind": "vhd", "info": vhd.info(), "read_bytes": size }))
        }
        Kind::Xva => {
            let summary = xspack_xva::summarize_xva_file(path)
                .map_err(|e| classify(path, kind, &e, e.is_bad_input()))?;
            Ok(json!({ "kind": "xva", "info": summary }))
        }
        Kind::Iso => {
            let file = File::open(path).with_context(|| format!("{path}: cannot open"))?;
            let mut iso = xspack_iso::IsoReader::new(file)
                .map_err(|e| classify(path, kind, &e, e.is_bad_input()))?;
            let entries = iso.entries().map_err(|e| classify(path, kind, &e, e.is_bad_input()))?;
            // The Joliet tree is checked too: a reader that picks it must not meet damage.
            iso.joliet_entries().map_err(|e| classify(path, kind, &e, e.is_bad_input()))?;
            let mut files = 0u64;
            let mut bytes = 0u64;
            for entry in entries.iter().filter(|e| e.kind == xspack_iso::EntryKind::File) {
                let mut reader =
                    iso.open_file(entry).map_err(|e| classify(path, kind, &e, e.is_bad_input()))?;
                bytes += io::copy(&mut reader, &mut io::sink()).map_err(|e| bad(&e))?;
                files += 1;
            }
            let v = iso.volume();
            let listing: Vec<Value> = entries
                .iter()
                .map(|e| json!({ "path": e.path, "kind": format!("{:?}", e.kind).to_lowercase(), "mode": e.mode.map(|m| format!("{m:o}")), "size": e.size, "target": e.symlink_target }))
                .collect();
            Ok(json!({
                "kind": "iso",
                "volume_id": v.volume_id,
                "application_id": v.application_id,
                "sectors": v.volume_space_size,
                "joliet": v.joliet_level,
                "rock_ridge": v.rock_ridge,
                "files": files,
                "file_bytes": bytes,
                "entries": listing,
            }))
        }
        Kind::Qcow2 => {
            let info = xspack_disk::qcow2::check_qcow2_file(path)
                .map_err(|e| classify(path, kind, &inner(&e), e.is_bad_input()))?;
            Ok(json!({ "kind": "qcow2", "info": info }))
        }
    }
}

/// A disk error without the file name [`check`] already puts first.
fn inner(e: &xspack_disk::Error) -> String {
    match e {
        xspack_disk::Error::File { source, .. } => inner(source),
        e => error_chain(e),
    }
}

/// `e` and its sources joined with ": ", on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Wraps a format crate's error: a rule the file breaks is bad input (exit 3).
fn classify(
    path: &Utf8Path,
    kind: Kind,
    e: &dyn std::fmt::Display,
    input_at_fault: bool,
) -> anyhow::Error {
    let message = format!("{path}: {}: {e}", kind.name());
    if input_at_fault { bad_input(message).into() } else { anyhow::anyhow!(message) }
}

/// Human lines for a summary: `key  value` pairs, nested objects flattened, lists counted.
pub fn render(value: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    flatten("", value, &mut lines);
    lines
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if prefix == "entries" => {
            for item in items {
                let mode = item["mode"].as_str().unwrap_or("-");
                let target =
                    item["target"].as_str().map(|t| format!(" -> {t}")).unwrap_or_default();
                out.push(format!(
                    "  {mode:>6} {:>10}  {}{target}",
                    item["size"],
                    item["path"].as_str().unwrap_or("")
                ));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push(format!("{prefix:<28} {s}")),
        other => out.push(format!("{prefix:<28} {other}")),
    }
}
