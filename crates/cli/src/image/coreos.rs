//! `xspack image build --flavor coreos`: a Flatcar or Fedora CoreOS container host running the
//! given images, from `--base` and SOURCE arguments or a `--spec guest.toml`.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use camino::Utf8PathBuf;
use indicatif::HumanBytes;
use serde_json::json;
use xspack_guest::coreos::{Container, ContainerSpec, CoreosOptions, GuestSpec};
use xspack_image::DiskFormat;
use xspack_manifest::{Input, InputDigest};
use xspack_oci::{Image, ImageSource};

use crate::exit::{ClassifyResult as _, usage};
use crate::image::{
    BuildArgs, Runtime, UBUNTU_ONLY, add_image_inputs, check_name, default_name, parse_size,
    ubuntu_options_set,
};
use crate::outputs;
use crate::ui::Ui;

/// A container name from an image source's file name: lower case, other characters as `-`.
fn container_name(source: &ImageSource) -> String {
    let name: String = default_name(source)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() { "app".into() } else { name.chars().take(63).collect() }
}

/// Reads the public keys of an SSH key file: every line but blanks and `#` comments.
fn read_keys(path: &Utf8PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{path}: reading"))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(usage(format!("--ssh-key {path}: the file holds no key")).into());
    }
    Ok(keys)
}

/// The build options from the arguments, the spec, and the key files.
fn options(
    args: &BuildArgs,
    spec: Option<&GuestSpec>,
    name: &str,
    base: &Utf8PathBuf,
    source_date_epoch: u64,
) -> Result<CoreosOptions> {
    let formats: Vec<DiskFormat> = args.formats.iter().copied().map(DiskFormat::from).collect();
    let mut opts = CoreosOptions::new(name.to_owned(), formats, base.clone(), source_date_epoch);
    opts.base_size = args.size;
    opts.hostname = args.hostname.clone().or_else(|| spec?.hostname.clone());
    if let Some(spec) = spec {
        opts.ssh_keys.extend(spec.ssh_keys.iter().cloned());
        if let Some(memory) = &spec.memory {
            opts.memory = parse_size(memory)
                .map_err(|reason| usage(format!("{}: memory: {reason}", spec.path)))?;
        }
        opts.vcpus = spec.vcpus.unwrap_or(opts.vcpus);
        opts.runtime = spec.runtime;
    }
    for path in &args.ssh_keys {
        opts.ssh_keys.extend(read_keys(path)?);
    }
    opts.memory = args.memory.unwrap_or(opts.memory);
    opts.vcpus = args.vcpus.unwrap_or(opts.vcpus);
    if let Some(runtime) = args.runtime {
        opts.runtime = Some(match runtime {
            Runtime::Docker => xspack_guest::coreos::Runtime::Docker,
            Runtime::Podman => xspack_guest::coreos::Runtime::Podman,
        });
    }

    Ok(opts)
}

/// Runs `image build --flavor coreos`.
pub fn run(args: &BuildArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    if ubuntu_options_set(args) {
        return Err(usage(UBUNTU_ONLY).into());
    }
    let base = args.base.clone().ok_or_else(|| {
        usage(
            "--flavor coreos needs --base FILE: a Flatcar or Fedora CoreOS OpenStack raw image \
             (.img, .img.gz, .img.bz2, .img.xz or .img.zst)",
        )
    })?;
    let spec = args.spec.as_deref().map(GuestSpec::load).transpose().classified()?;
    // The containers: the spec's, then one per SOURCE.
    let mut wanted: Vec<(ContainerSpec, String, ImageSource)> = Vec::new();
    if let Some(spec) = &spec {
        for c in &spec.containers {
            let text = spec.resolve_image(c);
            let source = ImageSource::parse(&text).classified()?;
            wanted.push((c.clone(), text, source));
        }
    }
    for text in &args.sources {
        let source = ImageSource::parse(text).classified()?;
        wanted.push((
            ContainerSpec::new(container_name(&source), text.clone()),
            text.clone(),
            source,
        ));
    }
    let name = args
        .name
        .clone()
        .or_else(|| spec.as_ref()?.name.clone())
        .unwrap_or_else(|| "coreos-host".to_owned());
    check_name(&name)?;
    let mut images = Vec::new();
    for (_, source_text, source) in &wanted {
        images.push(Image::open(source).classified().with_context(|| source_text.clone())?);
    }
    let containers: Vec<Container<'_>> = wanted
        .iter()
        .zip(&images)
        .map(|((spec, _, _), image)| Container { spec: spec.clone(), image })
        .collect();

    let opts = options(args, spec.as_ref(), &name, &base, source_date_epoch)?;
    let dest = args.output.clone().unwrap_or_else(|| Utf8PathBuf::from("dist").join(&name));
    let mut out =
        outputs::open(&dest, source_date_epoch, args.force, &crate::image::file_inputs(args))?;
    for c in &containers {
        add_image_inputs(&mut out, c.image, &format!("{}: ", c.spec.name));
    }
    let built =
        xspack_guest::coreos::build(&containers, &mut out, &opts, ui.progress()).classified()?;
    out.add_input(Input {
        // The file's own name: where it lies is no part of the build.
        name: base.file_name().unwrap_or("base").to_owned(),
        kind: "coreos-base".into(),
        digest: InputDigest(built.base_file.0),
        size: built.base_file.1,
    });
    ui.detail(&format!(
        "base: {} ({}, grown to {}), data disk {}, containers run by {:?}",
        built.distribution,
        HumanBytes(built.base_size.0),
        HumanBytes(built.base_size.1),
        HumanBytes(built.data_size),
        built.runtime,
    ));
    for a in &built.archives {
        ui.detail(&format!("images/{}: {} ({})", a.file, HumanBytes(a.size), a.sha256));
    }
    let containers_json: Vec<_> = built
        .archives
        .iter()
        .map(|a| json!({"name": a.name, "archive": a.file, "size": a.size, "sha256": a.sha256.to_string()}))
        .collect();
    let extra = json!({
        "name": name,
        "flavor": "coreos",
        "distribution": built.distribution.to_string(),
        "containers": containers_json,
    });
    outputs::commit(ui, out, &built.outputs, extra)?;
    Ok(ExitCode::SUCCESS)
}
