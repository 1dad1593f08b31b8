//! Building a template's artifacts into an [`OutputDir`]: `<name>.json`
//! (`docs/formats/templates.md` section "Keys"), `<name>-template-<version>-<release>.noarch.rpm`
//! (section "The template RPM") and `<name>.xva` (section "Template XVA"). Each is hashed as it is
//! written; the inputs (the definition and any file the XVA reads) are recorded in the manifest.

use std::fs::File;
use std::io::{BufWriter, Write as _};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{BUFFER_SIZE, Progress};
use xspack_manifest::{Input, InputDigest, Output, OutputDir, RelPath};
use xspack_rpmrepo::SigningKey;

use crate::{Error, TemplateSpec, render_guest_json, template_rpm};

/// The three artifacts of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateFormat {
    /// guest-templates JSON.
    Json,
    /// The template RPM.
    Rpm,
    /// The template XVA.
    Xva,
}

/// How to build a template.
#[non_exhaustive]
pub struct TemplateBuildOptions<'a> {
    /// What to build.
    pub formats: Vec<TemplateFormat>,
    /// The key to sign the RPM's header with.
    pub key: Option<&'a SigningKey>,
    /// Every timestamp: RPM build time and file mtimes, XVA member mtimes, config-drive dates.
    pub source_date_epoch: u64,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Directories besides the definition's own that the files it names may come from
    /// (`--allow-outside`).
    pub allow_outside: Vec<Utf8PathBuf>,
}

impl<'a> TemplateBuildOptions<'a> {
    /// All three formats, unsigned, stamped with `source_date_epoch`.
    pub fn new(source_date_epoch: u64, progress: &'a dyn Progress) -> Self {
        TemplateBuildOptions {
            formats: vec![TemplateFormat::Json, TemplateFormat::Rpm, TemplateFormat::Xva],
            key: None,
            source_date_epoch,
            progress,
            allow_outside: Vec::new(),
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct TemplateSummary {
    /// The template's name.
    pub name: String,
    /// The template's UUID (the JSON's `uuid`).
    pub uuid: String,
    /// The artifacts, in the order written.
    pub outputs: Vec<Output>,
    /// Whether the RPM was signed.
    pub rpm_signed: bool,
    /// Things the user should know, one sentence each (a Secure Boot request not met).
    pub notes: Vec<String>,
}

/// A manifest input for the file at `path`, named `name`: as the definition writes it, or the
/// definition's own file name, so no host path goes into the manifest.
fn file_input(path: &Utf8Path, name: &str, kind: &str) -> Result<Input, Error> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let (digest, size) = xspack_io::hash_reader(f).map_err(|e| Error::io("reading", path, e))?;
    Ok(Input { name: name.to_owned(), kind: kind.into(), digest: InputDigest(digest), size })
}

fn rel(spec: &TemplateSpec, name: String) -> Result<RelPath, Error> {
    RelPath::new(name).map_err(|e| Error::Spec { at: spec.path.to_string(), reason: e.to_string() })
}

/// Builds the template defined at `spec_path` into `out`.
pub fn build_template(
    spec_path: &Utf8Path,
    out: &mut OutputDir,
    opts: &TemplateBuildOptions<'_>,
) -> Result<TemplateSummary, Error> {
    let spec = TemplateSpec::load(spec_path)?;
    spec.check_inputs(&opts.allow_outside)?;
    let spec_name = spec_path.file_name().unwrap_or("template.toml");
    out.add_input(file_input(spec_path, spec_name, "template")?);
    let mut formats = opts.formats.clone();
    formats.sort_unstable();
    formats.dedup();
    let mut summary = TemplateSummary {
        name: spec.name().to_owned(),
        uuid: spec.uuid().to_string(),
        outputs: Vec::new(),
        rpm_signed: false,
        notes: Vec::new(),
    };
    let json = render_guest_json(&spec)?;
    let source_date = u32::try_from(opts.source_date_epoch).unwrap_or(u32::MAX);
    for format in formats {
        let output = match format {
            TemplateFormat::Json => {
                out.write_file(&rel(&spec, spec.json_file_name())?, json.as_bytes())?
            }
            TemplateFormat::Rpm => {
                let builder = template_rpm(&spec, &json, source_date)?;
                let file = out.create_file(&rel(&spec, builder.file_name())?)?;
                let (file, built) = builder.write(file, opts.key)?;
                summary.rpm_signed = built.signed;
                out.finish_file(file)?
            }
            TemplateFormat::Xva => {
                for (path, kind) in spec.xva_inputs() {
                    let name = path.strip_prefix(spec.resolve(Utf8Path::new(""))).unwrap_or(&path);
                    out.add_input(file_input(&path, name.as_str(), kind)?);
                }
                let secure_boot = crate::secure_boot(&spec, true)?;
                summary.notes.extend(secure_boot.note.clone());
                let path = rel(&spec, format!("{}.xva", spec.name()))?;
                let file = out.create_file(&path)?;
                let buffered = BufWriter::with_capacity(BUFFER_SIZE, file);
                let epoch_progress = (opts.source_date_epoch, opts.progress);
                let mut buffered =
                    crate::xva::write_decided(&spec, buffered, epoch_progress, &secure_boot)?;
                let io_err = |e| Error::io("writing", out.dest().join(path.as_str()), e);
                buffered.flush().map_err(io_err)?;
                let file = buffered.into_inner().map_err(|e| io_err(e.into_error()))?;
                out.finish_file(file)?
            }
        };
        summary.outputs.push(output);
    }
    Ok(summary)
}
