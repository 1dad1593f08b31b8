//! `xspack template`: VM templates (`docs/formats/templates.md`) from `templates/NAME.toml`, and
//! the guest-templates JSON check (`docs/formats/templates.md` section "Keys").

use std::process::ExitCode;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use xspack_io::{Classify as _, Fault};
use xspack_rpmrepo::SigningKey;
use xspack_template::{TemplateBuildOptions, TemplateFormat, TemplateSpec};

use crate::exit::{ClassifyResult as _, bad_input, usage};
use crate::outputs;
use crate::ui::Ui;

use crate::hint::PASSPHRASE_ENV;

/// Arguments of `xspack template`.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// The `template` subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build a VM template: guest-templates JSON, a template RPM and a template XVA
    ///
    /// NAME.json is loaded by create-guest-templates from /etc/xapi.d/vm-templates;
    /// NAME-template-VERSION-RELEASE.noarch.rpm installs it there and reloads the templates;
    /// NAME.xva is a template for xe vm-import. SHA256SUMS and manifest.json are written beside
    /// them.
    Build(BuildArgs),
    /// Check guest-templates JSON files: every key and value type the template loader reads
    ///
    /// Exits 3 and names the file and key when a file has an unknown or mistyped key.
    Check(CheckArgs),
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// guest-templates JSON (`NAME.json`)
    Json,
    /// Template RPM installing the JSON (`NAME-template-VERSION-RELEASE.noarch.rpm`)
    Rpm,
    /// Template XVA for xe vm-import (`NAME.xva`)
    Xva,
}

impl From<FormatArg> for TemplateFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => TemplateFormat::Json,
            FormatArg::Rpm => TemplateFormat::Rpm,
            FormatArg::Xva => TemplateFormat::Xva,
        }
    }
}

/// Arguments of `xspack template build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The template definition
    #[arg(value_name = "TEMPLATE.toml")]
    pub template: Utf8PathBuf,
    /// Output directory [default: dist/NAME]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<Utf8PathBuf>,
    /// Artifact to build; repeat for several [default: json, rpm and xva]
    #[arg(long = "format", value_enum, value_name = "FORMAT")]
    pub formats: Vec<FormatArg>,
    /// Armored secret key to sign the RPM with (passphrase from $XSPACK_SIGN_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<Utf8PathBuf>,
    /// Replace the output directory if it exists (only an empty one or a previous build)
    #[arg(long)]
    pub force: bool,
    /// Let the definition name files under DIR too, besides its own directory; repeat for
    /// several
    #[arg(long, value_name = "DIR")]
    pub allow_outside: Vec<Utf8PathBuf>,
}

/// Arguments of `xspack template check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// guest-templates JSON files
    #[arg(required = true, value_name = "FILE.json")]
    pub files: Vec<Utf8PathBuf>,
}

/// Runs `xspack template`.
pub fn run(args: TemplateArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    match args.command {
        TemplateCommand::Build(a) => build(&a, ui, source_date_epoch),
        TemplateCommand::Check(a) => check(&a, ui),
    }
}

fn build(args: &BuildArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    let mut formats: Vec<TemplateFormat> = args.formats.iter().copied().map(Into::into).collect();
    if formats.is_empty() {
        formats = vec![TemplateFormat::Json, TemplateFormat::Rpm, TemplateFormat::Xva];
    }
    if args.sign_key.is_some() && !formats.contains(&TemplateFormat::Rpm) {
        return Err(usage("--sign-key signs the RPM: add --format rpm").into());
    }
    let spec = TemplateSpec::load(&args.template).classified()?;
    let definition_dir = args.template.parent().unwrap_or(Utf8Path::new(""));
    xspack_io::InputRoots::new(definition_dir, &args.allow_outside)
        .map_err(|e| usage(e.to_string()))?;
    let key = match &args.sign_key {
        Some(path) => {
            let passphrase = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty());
            Some(SigningKey::from_file(path, passphrase.as_deref()).fault(Fault::Input)?)
        }
        None => None,
    };
    let dest = args.output.clone().unwrap_or_else(|| Utf8PathBuf::from("dist").join(spec.name()));
    let template_dir = args.template.parent().filter(|p| !p.as_str().is_empty());
    let inputs: Vec<Utf8PathBuf> =
        [Some(args.template.clone()), template_dir.map(Utf8Path::to_owned), args.sign_key.clone()]
            .into_iter()
            .flatten()
            .collect();
    let mut out = outputs::open(&dest, source_date_epoch, args.force, &inputs)?;
    let mut opts = TemplateBuildOptions::new(source_date_epoch, ui.progress());
    opts.formats = formats;
    opts.key = key.as_ref();
    opts.allow_outside.clone_from(&args.allow_outside);
    let summary = xspack_template::build_template(&args.template, &mut out, &opts).classified()?;
    for note in &summary.notes {
        ui.warn(note);
    }
    let extra = json!({
        "name": summary.name,
        "uuid": summary.uuid,
        "signed": summary.rpm_signed,
    });
    outputs::commit(ui, out, &summary.outputs, extra)?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &CheckArgs, ui: &Ui) -> Result<ExitCode> {
    for file in &args.files {
        xspack_template::validate_guest_template_file(file).map_err(|e| -> anyhow::Error {
            if e.is_bad_input() { bad_input(e.to_string()).into() } else { e.into() }
        })?;
    }
    if ui.json {
        ui.result(json!({ "files": args.files }));
    } else {
        for file in &args.files {
            ui.say(&format!("{file}: OK (guest-templates JSON)"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
