//! Building a pack: `pack.toml` and RPMs to legacy and update ISOs in an output directory.
//!
//! RPMs come from the pack (`[[rpm]]` globs) or are built from files in the repository
//! (`[[package]]`). Every RPM's header is read once (NEVRA, dependencies, sizes, MD5 and
//! SHA-256). Then:
//!
//! - legacy: `XS-REPOSITORY`, `XS-PACKAGES` in install order, `install` and `install.sh`
//!   (0755) and the RPMs at the ISO root (`docs/formats/packs.md` section "Legacy pack");
//! - update: `Packages/` with the payload and the generated `update-<label>` and `control-<label>`
//!   RPMs, repodata with the `update` group, `update.xml`, the public key and detached signatures
//!   of `update.xml` and `repodata/repomd.xml` (`docs/formats/packs.md` section "Update pack").
//!
//! The ISOs are written by xspack-iso, reproducibly, into an [`OutputDir`].

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{InputRoots, Progress, ProgressReader, ProgressUnit};
use xspack_iso::{FileId, IsoBuilder, IsoOptions, Metadata};
use xspack_manifest::{Output, OutputDir, RelPath};
use xspack_rpmrepo::{
    Comparison, Dependency, RepoGroup, RepodataOptions, RpmBuilder, RpmHeader, SigningKey, Target,
};

use crate::Error;
use crate::inputs::{PackInputs, file_input, pack_dir, roots_error};
use crate::legacy::{LegacyPackage, install_order, install_script, xs_packages, xs_repository};
use crate::spec::{PackFormat, PackSpec, file_mode_bits};
use crate::update::{UpdateXml, derive_uuid};

/// How to build.
#[non_exhaustive]
pub struct BuildOptions<'a> {
    /// Formats to build; `None` builds those `pack.toml` lists.
    pub formats: Option<Vec<PackFormat>>,
    /// The signing key (required for update packs unless `unsigned`).
    pub key: Option<&'a SigningKey>,
    /// Build an update pack without signatures (xapi will refuse to upload it).
    pub unsigned: bool,
    /// Time stamped on everything.
    pub source_date_epoch: u64,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Directories besides the pack's own that its inputs may come from (`--allow-outside`).
    pub allow_outside: Vec<Utf8PathBuf>,
    /// The file `key` was loaded from, which no payload file may be.
    pub sign_key_file: Option<Utf8PathBuf>,
}

impl<'a> BuildOptions<'a> {
    /// Options for a build at `source_date_epoch`, signed with `key` if given.
    pub fn new(
        source_date_epoch: u64,
        key: Option<&'a SigningKey>,
        progress: &'a dyn Progress,
    ) -> Self {
        BuildOptions {
            formats: None,
            key,
            unsigned: false,
            source_date_epoch,
            progress,
            allow_outside: Vec::new(),
            sign_key_file: None,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct PackSummary {
    /// Pack label.
    pub name: String,
    /// The hosts it was built for (`pack.target`), recorded in each ISO.
    pub target: &'static Target,
    /// The ISOs written.
    pub outputs: Vec<Output>,
    /// Payload RPMs, in install order.
    pub rpms: Vec<String>,
    /// The update uuid, when an update pack was built.
    pub update_uuid: Option<String>,
}

/// One RPM of the pack: its file and what its header says.
struct PackRpm {
    path: Utf8PathBuf,
    header: RpmHeader,
}

fn rpm_err(e: xspack_rpmrepo::Error) -> Error {
    Error::Rpm(Box::new(e))
}

fn epoch32(epoch: u64) -> u32 {
    u32::try_from(epoch).unwrap_or(u32::MAX)
}

/// Builds the pack defined at `spec_path` into `out`.
pub fn build_pack(
    spec_path: &Utf8Path,
    out: &mut OutputDir,
    opts: &BuildOptions<'_>,
) -> Result<PackSummary, Error> {
    let spec = PackSpec::load(spec_path)?;
    let dir = pack_dir(spec_path);
    let formats: Vec<PackFormat> =
        opts.formats.clone().unwrap_or_else(|| spec.pack.formats.clone());
    let update = formats.contains(&PackFormat::Update);
    if update && opts.key.is_none() && !opts.unsigned {
        return Err(Error::Spec {
            at: spec_path.to_string(),
            reason: "update packs must be signed: give a signing key (--sign-key or [signing] key), or --unsigned".into(),
        });
    }
    let roots =
        InputRoots::new(dir, &opts.allow_outside).map_err(|e| roots_error(spec_path, &e))?;
    let inputs = PackInputs::check(&spec, spec_path, dir, &roots, opts.sign_key_file.as_deref())?;
    out.add_input(file_input(spec_path, Utf8Path::new("pack.toml"), "pack")?);
    let rpms = collect_rpms(&spec, (spec_path, dir), &inputs, out, opts)?;
    let mut summary = PackSummary {
        name: spec.pack.name.clone(),
        target: spec.target(),
        outputs: Vec::new(),
        rpms: Vec::new(),
        update_uuid: None,
    };
    let legacy_pkgs = legacy_packages(&rpms);
    summary.rpms = legacy_pkgs.iter().map(|p| p.file.clone()).collect();
    let base = format!("{}-{}-{}", spec.pack.name, spec.pack.version, spec.pack.build);
    if formats.contains(&PackFormat::Legacy) {
        let iso = RelPath::new(format!("{base}.iso"))
            .map_err(|e| Error::metadata("output", e.to_string()))?;
        summary.outputs.push(write_legacy(&spec, &rpms, &legacy_pkgs, &iso, out, opts)?);
    }
    if update {
        let iso = RelPath::new(format!("{base}-update.iso"))
            .map_err(|e| Error::metadata("output", e.to_string()))?;
        let (output, uuid) = write_update(&spec, &rpms, &iso, out, opts)?;
        summary.outputs.push(output);
        summary.update_uuid = Some(uuid);
    }
    Ok(summary)
}

/// Prebuilt RPMs (globs, sorted) and RPMs built from `[[package]]`, each read once.
fn collect_rpms(
    spec: &PackSpec,
    (spec_path, dir): (&Utf8Path, &Utf8Path),
    inputs: &PackInputs,
    out: &mut OutputDir,
    opts: &BuildOptions<'_>,
) -> Result<Vec<PackRpm>, Error> {
    let mut paths: Vec<Utf8PathBuf> = Vec::new();
    for p in &inputs.rpms {
        out.add_input(file_input(p, p.strip_prefix(dir).unwrap_or(p), "rpm")?);
        paths.push(p.clone());
    }
    // RPMs built here: the writer hashed the whole file already (`BuiltRpm`), so only their
    // headers are read back.
    let mut built_rpms: Vec<(Utf8PathBuf, xspack_rpmrepo::BuiltRpm)> = Vec::new();
    if !spec.packages.is_empty() || !spec.templates.is_empty() {
        let staging = out
            .scratch_path("built-rpms")
            .map_err(|e| Error::metadata("scratch", e.to_string()))?;
        std::fs::create_dir_all(&staging).map_err(|e| Error::io("creating", &staging, e))?;
        for (i, pkg) in spec.packages.iter().enumerate() {
            let built =
                build_package(pkg, (i, spec_path, inputs), (dir, spec.target()), opts, out)?
                    .write_to_dir(&staging, opts.key, false)
                    .map_err(rpm_err)?;
            built_rpms.push((staging.join(&built.file_name), built));
        }
        for template in &spec.templates {
            let built = build_template_rpm((dir, &template.path), opts, out)?
                .target(spec.target())
                .write_to_dir(&staging, opts.key, false)
                .map_err(rpm_err)?;
            built_rpms.push((staging.join(&built.file_name), built));
        }
    }
    let count = (paths.len() + built_rpms.len()) as u64;
    let task = opts.progress.task("reading RPMs", Some(count), ProgressUnit::Items);
    // Only the legacy format lists MD5s: update-only packs skip that hash.
    let md5 = opts.formats.as_ref().unwrap_or(&spec.pack.formats).contains(&PackFormat::Legacy);
    let mut headers = read_headers(&paths, md5, task.as_ref())?;
    for (path, built) in built_rpms {
        headers.push(xspack_rpmrepo::read_built_rpm(&path, &built).map_err(rpm_err)?);
        paths.push(path);
        task.advance(1);
    }
    let mut rpms = Vec::with_capacity(paths.len());
    let mut nevras = BTreeSet::new();
    for (path, header) in paths.into_iter().zip(headers) {
        if !nevras.insert(header.nevra()) {
            return Err(Error::metadata(
                path.as_str(),
                format!("duplicate package {}", header.nevra()),
            ));
        }
        let prebuilt = !path.starts_with(out.dest());
        if prebuilt {
            // Judged from their headers (the RPMs built here were checked before they were
            // written): a pack never holds what its target's rpm cannot install.
            let name = path.file_name().unwrap_or(path.as_str());
            spec.target().check_rpm(name, &header).map_err(rpm_err)?;
        }
        if let Some(key) = opts.key
            && prebuilt
        {
            // Prebuilt RPMs must carry the pack key's signature: yum checks it on the host.
            xspack_rpmrepo::verify_rpm_signature(&path, &key.public_key()).map_err(|e| {
                Error::metadata(path.as_str(), format!("not signed by the pack key ({e}); sign it with rpmsign or let xspack build it"))
            })?;
        }
        rpms.push(PackRpm { path, header });
    }
    task.finish();
    Ok(rpms)
}

/// Reads every RPM's header (hashing each whole file), spread over the cores; results keep
/// the order of `paths`.
fn read_headers(
    paths: &[Utf8PathBuf],
    md5: bool,
    task: &dyn xspack_io::ProgressTask,
) -> Result<Vec<RpmHeader>, Error> {
    parallel_map(paths, |path| {
        let header = if md5 {
            xspack_rpmrepo::read_rpm(path)
        } else {
            xspack_rpmrepo::read_rpm_without_md5(path)
        };
        task.advance(1);
        header.map_err(rpm_err)
    })
}

/// `f` of every item, spread over the cores (each a whole file to read and hash); the results
/// keep the order of `items`, and the first error in that order is returned.
fn parallel_map<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U, Error> + Sync,
) -> Result<Vec<U>, Error> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<U, Error>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let workers =
        std::thread::available_parallelism().map_or(1, usize::from).min(items.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] =
                        Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect()
}

fn template_err(e: xspack_template::Error) -> Error {
    Error::VmTemplate(Box::new(e))
}

/// The template RPM of a `[[template]]` definition (xspack-template,
/// `docs/formats/templates.md` section "The template RPM").
fn build_template_rpm(
    (dir, rel): (&Utf8Path, &Utf8Path),
    opts: &BuildOptions<'_>,
    out: &mut OutputDir,
) -> Result<RpmBuilder, Error> {
    let path = dir.join(rel);
    let spec = xspack_template::TemplateSpec::load(&path).map_err(template_err)?;
    out.add_input(file_input(&path, rel, "template")?);
    let json = xspack_template::render_guest_json(&spec).map_err(template_err)?;
    xspack_template::template_rpm(&spec, &json, epoch32(opts.source_date_epoch))
        .map_err(template_err)
}

/// Whether a payload file is a guest-templates JSON that `create-guest-templates` loads.
fn is_vm_template_json(dest: &str) -> bool {
    [xspack_template::VM_TEMPLATES_DIR, xspack_template::SHIPPED_TEMPLATES_DIR].iter().any(|d| {
        dest.strip_prefix(d)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|name| name.strip_suffix(".json"))
            .is_some_and(|stem| !stem.is_empty() && !stem.contains('/'))
    })
}

/// An [`RpmBuilder`] for a `[[package]]`.
fn build_package(
    pkg: &crate::spec::PackageSpec,
    (index, spec_path, inputs): (usize, &Utf8Path, &PackInputs),
    (dir, target): (&Utf8Path, &'static Target),
    opts: &BuildOptions<'_>,
    out: &mut OutputDir,
) -> Result<RpmBuilder, Error> {
    // What the target cannot install is refused from the file sizes, before any file is read.
    let mut total = 0u64;
    for f in &pkg.files {
        let src = dir.join(&f.src);
        let size = std::fs::metadata(&src).map_err(|e| Error::io("reading", &src, e))?.len();
        target.check_file(&pkg.name, &f.dest, f.src.as_str(), size).map_err(rpm_err)?;
        total += size;
    }
    target.check_total(&pkg.name, total).map_err(rpm_err)?;
    let mut b = RpmBuilder::new(pkg.name.clone(), pkg.version.clone(), pkg.release.clone())
        .target(target)
        .arch(pkg.arch.clone())
        .summary(pkg.summary.clone())
        .description(pkg.description.clone())
        .license(pkg.license.clone())
        .compression(pkg.compression.into())
        .source_date(epoch32(opts.source_date_epoch));
    // Every file is read once here (its digest for the manifest, and the secret-key scan),
    // files spread over the cores; the RPM writer then takes that digest.
    let fields: Vec<(usize, String)> =
        (0..pkg.files.len()).map(|j| (j, format!("package[{index}].files[{j}].src"))).collect();
    let read = parallel_map(&fields, |(j, field)| {
        let f = &pkg.files[*j];
        inputs.payload_input(spec_path, (field, &f.src), &dir.join(&f.src), "file")
    })?;
    for (f, input) in pkg.files.iter().zip(read) {
        let src = dir.join(&f.src);
        let known = (input.digest.0, input.size);
        out.add_input(input);
        if is_vm_template_json(&f.dest) {
            // The loader copies unknown keys into the VM record: refuse typos here.
            xspack_template::validate_guest_template_file(&src).map_err(template_err)?;
        }
        let mode = u16::try_from(file_mode_bits(f)).expect("validated to 0o7777");
        let mut attrs = if f.config {
            xspack_rpmrepo::FileAttrs::config_noreplace(mode)
        } else {
            xspack_rpmrepo::FileAttrs::mode(mode)
        };
        attrs.user.clone_from(&f.owner);
        attrs.group.clone_from(&f.group);
        b = b.file_from_disk_known(src, f.dest.clone(), attrs, known);
    }
    for (script, which, name) in
        [(&pkg.post, 0, "post"), (&pkg.postun, 1, "postun"), (&pkg.posttrans, 2, "posttrans")]
    {
        let Some(rel) = script else { continue };
        let path = dir.join(rel);
        let field = format!("package[{index}].{name}");
        out.add_input(inputs.payload_input(spec_path, (&field, rel), &path, "script")?);
        let body =
            std::fs::read_to_string(&path).map_err(|e| Error::io("reading script", &path, e))?;
        b = match which {
            0 => b.post_install(body),
            1 => b.post_uninstall(body),
            _ => b.post_trans(body),
        };
    }
    for dep in &pkg.requires {
        b = b.requires(parse_dep(dep)?);
    }
    for dep in &pkg.provides {
        b = b.provides(parse_dep(dep)?);
    }
    Ok(b)
}

/// `name`, or `name OP version` with OP one of `< <= = >= >`.
pub fn parse_dep(text: &str) -> Result<Dependency, Error> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let bad =
        || Error::metadata("dependency", format!("{text:?} is not `name` or `name OP version`"));
    match parts.as_slice() {
        [name] => Ok(Dependency::any(*name)),
        [name, op, version] => {
            let cmp = match *op {
                "<" => Comparison::Lt,
                "<=" => Comparison::Le,
                "=" | "==" => Comparison::Eq,
                ">=" => Comparison::Ge,
                ">" => Comparison::Gt,
                _ => return Err(bad()),
            };
            Ok(Dependency::versioned(*name, cmp, *version))
        }
        _ => Err(bad()),
    }
}

/// The payload in install order, as the legacy format lists it.
fn legacy_packages(rpms: &[PackRpm]) -> Vec<LegacyPackage> {
    let pkgs: Vec<LegacyPackage> = rpms
        .iter()
        .map(|r| LegacyPackage {
            name: r.header.name.clone(),
            version_release: r.header.version_release(),
            file: r.header.file_name(),
            size: r.header.package_size,
            // Read with MD5 whenever a legacy pack is written, the only user of this field.
            md5: r.header.md5.map(|m| m.to_string()).unwrap_or_default(),
            requires: r
                .header
                .requires
                .iter()
                .filter(|d| !d.is_rpmlib())
                .map(|d| d.name.clone())
                .collect(),
            provides: std::iter::once(r.header.name.clone())
                .chain(r.header.provides.iter().map(|d| d.name.clone()))
                .chain(r.header.files.iter().map(|f| f.path.clone()))
                .collect(),
        })
        .collect();
    install_order(&pkgs).into_iter().map(|i| pkgs[i].clone()).collect()
}

/// What each ISO file is made from.
enum Source {
    Bytes(Vec<u8>),
    File(Utf8PathBuf),
}

fn open_source(sources: &[Source], id: FileId) -> io::Result<Box<dyn Read>> {
    match &sources[id.index()] {
        Source::Bytes(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
        Source::File(p) => Ok(Box::new(File::open(p)?)),
    }
}

fn iso_options(spec: &PackSpec, epoch: u64) -> IsoOptions {
    let mut o = IsoOptions::new(
        xspack_iso::sanitize_volume_id(&spec.pack.name),
        i64::try_from(epoch).unwrap_or(i64::MAX),
    );
    o.publisher_id = spec.pack.originator.to_uppercase();
    o.application_id = crate::target_record::application_id(&o.application_id, spec.target());
    o
}

fn iso_err(e: xspack_iso::Error) -> Error {
    Error::Iso(Box::new(e))
}

/// Writes an ISO of `files` (path, source, mode) as `rel` in `out`.
fn write_iso(
    spec: &PackSpec,
    files: Vec<(String, Source, u32)>,
    rel: &RelPath,
    out: &mut OutputDir,
    opts: &BuildOptions<'_>,
) -> Result<Output, Error> {
    let mut builder =
        IsoBuilder::new(iso_options(spec, opts.source_date_epoch)).map_err(iso_err)?;
    let mut sources: Vec<Source> = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut total = 0u64;
    for (path, source, mode) in files {
        if let Some((parent, _)) = path.rsplit_once('/')
            && dirs.insert(parent.to_owned())
        {
            builder.add_dir(parent, Metadata::new(0o755)).map_err(iso_err)?;
        }
        let size = match &source {
            Source::Bytes(b) => b.len() as u64,
            Source::File(p) => std::fs::metadata(p).map_err(|e| Error::io("reading", p, e))?.len(),
        };
        total += size;
        let id = builder.add_file(&path, size, Metadata::new(mode)).map_err(iso_err)?;
        debug_assert_eq!(id.index(), sources.len());
        sources.push(source);
    }
    let file = out.create_file(rel).map_err(|e| Error::metadata(rel.as_str(), e.to_string()))?;
    // The files' bytes are the ISO's bulk: the task counts them as they are copied in.
    let task = opts.progress.task(&format!("writing {rel}"), Some(total), ProgressUnit::Bytes);
    let (file, _) = xspack_iso::write_iso(&builder, file, |id| {
        open_source(&sources, id).map(|r| ProgressReader::new(r, task.as_ref()))
    })
    .map_err(iso_err)?;
    task.finish();
    out.finish_file(file).map_err(|e| Error::metadata(rel.as_str(), e.to_string()))
}

fn write_legacy(
    spec: &PackSpec,
    rpms: &[PackRpm],
    pkgs: &[LegacyPackage],
    iso: &RelPath,
    out: &mut OutputDir,
    opts: &BuildOptions<'_>,
) -> Result<Output, Error> {
    let script = install_script(spec, pkgs)?.into_bytes();
    let mut files = vec![
        ("XS-REPOSITORY".to_owned(), Source::Bytes(xs_repository(spec).into_bytes()), 0o644),
        ("XS-PACKAGES".to_owned(), Source::Bytes(xs_packages(pkgs).into_bytes()), 0o644),
        ("install".to_owned(), Source::Bytes(script.clone()), 0o755),
        ("install.sh".to_owned(), Source::Bytes(script), 0o755),
    ];
    for p in pkgs {
        let rpm = rpms.iter().find(|r| r.header.file_name() == p.file).expect("listed from rpms");
        files.push((p.file.clone(), Source::File(rpm.path.clone()), 0o644));
    }
    write_iso(spec, files, iso, out, opts)
}

fn write_update(
    spec: &PackSpec,
    rpms: &[PackRpm],
    iso: &RelPath,
    out: &mut OutputDir,
    opts: &BuildOptions<'_>,
) -> Result<(Output, String), Error> {
    let label = &spec.pack.name;
    let uuid = spec.update.uuid.clone().unwrap_or_else(|| derive_uuid(label, &spec.pack.version));
    let epoch = epoch32(opts.source_date_epoch);
    let staging =
        out.scratch_path("update").map_err(|e| Error::metadata("scratch", e.to_string()))?;
    let packages = staging.join("Packages");
    std::fs::create_dir_all(&packages).map_err(|e| Error::io("creating", &packages, e))?;
    // The payload is linked, not copied, into the staging tree: repodata reuses the headers
    // already read, and the ISO writer reads each RPM through its link once.
    let mut repo_packages = Vec::new();
    for r in rpms {
        let name = r.header.file_name();
        let dest = packages.join(&name);
        let target = r.path.canonicalize_utf8().map_err(|e| Error::io("resolving", &r.path, e))?;
        std::os::unix::fs::symlink(&target, &dest).map_err(|e| Error::io("linking", &dest, e))?;
        repo_packages.push(xspack_rpmrepo::RepoPackage {
            location: format!("Packages/{name}"),
            file_time: u64::from(epoch),
            header: r.header.clone(),
        });
    }
    let installation_size: u64 = rpms.iter().map(|r| r.header.installed_size).sum();
    let xml = UpdateXml {
        name_label: label.clone(),
        version: spec.pack.version.clone(),
        uuid: uuid.clone(),
        installation_size,
        key: if opts.key.is_some() { spec.key_name() } else { String::new() },
        control: format!("control-{label}"),
        guidance: spec.update.after_apply_guidance.clone(),
        enforce_homogeneity: spec.update.enforce_homogeneity,
        description: spec.pack.description.clone(),
    };
    let update_xml = xml.render();
    // update-<label>: pulls in the payload and leaves /var/update/applied/<uuid> for xapi.
    let mut update_rpm = RpmBuilder::new(format!("update-{label}"), spec.pack.version.clone(), "1")
        .target(spec.target())
        .summary(format!("{} update metadata", spec.pack.description))
        .description(format!("Installs {label} {} and records it as applied.", spec.pack.version))
        .license("Proprietary")
        .source_date(epoch)
        .file_from_bytes(
            update_xml.clone().into_bytes(),
            format!("/var/update/applied/{uuid}"),
            0o644,
        );
    for r in rpms {
        update_rpm = update_rpm.requires(Dependency::versioned(
            r.header.name.clone(),
            Comparison::Ge,
            r.header.version_release(),
        ));
    }
    if xml.guidance.contains(&crate::spec::Guidance::RestartHost) {
        update_rpm = update_rpm.post_trans(format!("echo {uuid} >> /run/reboot-required.hfxs\n"));
    }
    let built = update_rpm.write_to_dir(&packages, opts.key, false).map_err(rpm_err)?;
    let mut built_names = vec![built.file_name];
    let control = control_rpm(spec, epoch)?;
    let built = control.write_to_dir(&packages, opts.key, false).map_err(rpm_err)?;
    built_names.push(built.file_name);
    for name in built_names {
        let header = xspack_rpmrepo::read_rpm(&packages.join(&name)).map_err(rpm_err)?;
        repo_packages.push(xspack_rpmrepo::RepoPackage {
            location: format!("Packages/{name}"),
            file_time: u64::from(epoch),
            header,
        });
    }
    let mut repo = RepodataOptions::new(epoch);
    repo.groups.push(RepoGroup {
        id: "update".into(),
        name: label.clone(),
        description: String::new(),
        mandatory: vec![format!("update-{label}")],
        default: false,
        user_visible: true,
    });
    xspack_rpmrepo::write_repodata_for(&staging, repo_packages, &repo).map_err(rpm_err)?;
    let xml_path = staging.join("update.xml");
    std::fs::write(&xml_path, &update_xml).map_err(|e| Error::io("writing", &xml_path, e))?;
    if let Some(key) = opts.key {
        std::fs::write(staging.join(spec.key_name()), key.public_key().to_armored())
            .map_err(|e| Error::io("writing", &staging, e))?;
        for signed in [xml_path.clone(), staging.join("repodata/repomd.xml")] {
            xspack_rpmrepo::sign_detached_file(key, &signed, epoch).map_err(rpm_err)?;
        }
    }
    let mut files = Vec::new();
    for entry in walk(&staging)? {
        let rel = entry.strip_prefix(&staging).expect("under staging").to_string();
        files.push((rel, Source::File(entry), 0o644));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let output = write_iso(spec, files, iso, out, opts)?;
    Ok((output, uuid))
}

/// `control-<label>`: what precheck installs to test the host.
fn control_rpm(spec: &PackSpec, epoch: u32) -> Result<RpmBuilder, Error> {
    let label = &spec.pack.name;
    let mut control = RpmBuilder::new(format!("control-{label}"), spec.pack.version.clone(), "1")
        .target(spec.target())
        .summary(format!("{} precheck", spec.pack.description))
        .description(format!("Checks that this host can take {label}."))
        .license("Proprietary")
        .source_date(epoch);
    for dep in &spec.update.base_requires {
        control = control.requires(parse_dep(dep)?);
    }
    Ok(control)
}

fn walk(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>, Error> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading", dir, e))?;
        let path = Utf8PathBuf::from_path_buf(entry.path()).map_err(|p| {
            Error::io("reading", dir, io::Error::other(format!("{} is not UTF-8", p.display())))
        })?;
        if entry.file_type().map_err(|e| Error::io("reading", &path, e))?.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
