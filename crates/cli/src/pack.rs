//! `xspack pack`: supplemental-pack ISOs from `pack.toml`.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use xspack_io::{Classify as _, Fault};
use xspack_pack::{BuildOptions, PackFormat, PackSpec};
use xspack_rpmrepo::{SigningKey, Target};

use crate::exit::{ClassifyResult as _, bad_input, usage};
use crate::outputs;
use crate::ui::Ui;

use crate::hint::PASSPHRASE_ENV as DEFAULT_PASSPHRASE_ENV;

/// Arguments of `xspack pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    #[command(subcommand)]
    pub command: PackCommand,
}

/// The `pack` subcommands.
#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// Build a pack's ISOs: legacy (XenServer 6.x/7.0) and update (7.1+, XCP-ng 8)
    ///
    /// Writes NAME-VERSION-BUILD.iso (legacy) and NAME-VERSION-BUILD-update.iso with
    /// SHA256SUMS and manifest.json. Update packs are signed: xapi refuses unsigned ones.
    Build(BuildArgs),
    /// Check a pack ISO: structure, md5 and sha256 sums, signatures and metadata rules
    Verify(VerifyArgs),
    /// Make a throw-away RSA signing key for test packs (one primary key, no subkeys)
    Keygen(KeygenArgs),
    /// List the packs under a directory: name, version, formats and path (for CI matrices)
    ///
    /// Every DIR/*/pack.toml is loaded and checked; with --json the list is one JSON result
    /// whose `packs` array a CI job can fan out over (see examples/ci/).
    List(ListArgs),
}

/// Arguments of `xspack pack list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Directory holding one subdirectory per pack
    #[arg(value_name = "DIR", default_value = "packs")]
    pub dir: Utf8PathBuf,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// XS-REPOSITORY pack for XenServer 6.x and 7.0
    Legacy,
    /// Signed yum repository with update.xml for 7.1 and later
    Update,
    /// Both
    Both,
}

/// Arguments of `xspack pack build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A pack directory holding pack.toml, or the pack.toml file
    #[arg(value_name = "PACK")]
    pub pack: Utf8PathBuf,
    /// Output directory [default: dist/NAME]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<Utf8PathBuf>,
    /// Formats to build [default: those pack.toml lists]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Armored secret key to sign with (passphrase from $XSPACK_SIGN_PASSPHRASE or the variable
    /// pack.toml names) [default: pack.toml's signing key]
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<Utf8PathBuf>,
    /// Build an update pack without signatures (xapi will refuse to upload it)
    #[arg(long, conflicts_with = "sign_key")]
    pub unsigned: bool,
    /// Replace the output directory if it exists (only an empty one or a previous build)
    #[arg(long)]
    pub force: bool,
    /// Let pack.toml name files under DIR too, besides its own directory; repeat for several
    #[arg(long, value_name = "DIR")]
    pub allow_outside: Vec<Utf8PathBuf>,
}

/// Arguments of `xspack pack verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The pack ISO
    #[arg(value_name = "ISO")]
    pub iso: Utf8PathBuf,
    /// Armored public key the signatures must verify with [default: the key file on the ISO]
    #[arg(long, value_name = "PUBKEY")]
    pub key: Option<Utf8PathBuf>,
    /// Judge the RPMs against these hosts' rpm [default: the target the ISO records, else
    /// xenserver-8]
    #[arg(long, value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<&'static Target>,
}

/// A `--target` value: a target id.
fn parse_target(id: &str) -> Result<&'static Target, String> {
    Target::by_id(id).ok_or_else(|| format!("unknown target {id:?}; use one of {}", Target::ids()))
}

/// Arguments of `xspack pack keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write signing.asc (secret, mode 0600) and signing.pub.asc into
    #[arg(short, long, value_name = "DIR")]
    pub output: Utf8PathBuf,
    /// User ID of the key
    #[arg(long, default_value = "xspack test key <test@example.invalid>")]
    pub user_id: String,
    /// Protect signing.asc with the passphrase in $XSPACK_SIGN_PASSPHRASE (which `pack build`
    /// and `template build` then read to unlock it)
    #[arg(long)]
    pub protect: bool,
}

/// Runs `xspack pack`.
pub fn run(args: PackArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    match args.command {
        PackCommand::Build(a) => build(&a, ui, source_date_epoch),
        PackCommand::Verify(a) => verify(&a, ui),
        PackCommand::Keygen(a) => keygen(&a, ui, source_date_epoch),
        PackCommand::List(a) => list(&a, ui),
    }
}

fn list(args: &ListArgs, ui: &Ui) -> Result<ExitCode> {
    let entries =
        std::fs::read_dir(&args.dir).with_context(|| format!("{}: cannot read", args.dir))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", args.dir))?;
        let path = Utf8PathBuf::try_from(entry.path())
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8", e.as_path().display()))?;
        if path.join("pack.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    let mut packs = Vec::new();
    for dir in dirs {
        let toml = dir.join("pack.toml");
        let spec = PackSpec::load(&toml).classified()?;
        let formats: Vec<String> = spec.pack.formats.iter().map(ToString::to_string).collect();
        packs.push(json!({
            "name": spec.pack.name,
            "version": spec.pack.version,
            "build": spec.pack.build,
            "kind": "pack",
            "formats": formats,
            "target": spec.target().id,
            "path": dir,
            "pack_toml": toml,
        }));
    }
    if ui.json {
        ui.result(json!({ "dir": args.dir, "packs": packs }));
    } else {
        for p in &packs {
            ui.say(&format!(
                "{}\t{}-{}\t{}\t{}\t{}",
                p["name"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default(),
                p["build"].as_str().unwrap_or_default(),
                p["formats"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                p["target"].as_str().unwrap_or_default(),
                p["path"].as_str().unwrap_or_default(),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spec_path(pack: &Utf8Path) -> Utf8PathBuf {
    if pack.is_dir() { pack.join("pack.toml") } else { pack.to_owned() }
}

/// Loads a signing key; its errors stay typed for the hint and count as bad input (exit 3).
fn load_key(path: &Utf8Path, passphrase_env: &str) -> Result<SigningKey> {
    // An empty variable is an unset one: a passphrase is never empty.
    let passphrase = std::env::var(passphrase_env).ok().filter(|p| !p.is_empty());
    Ok(SigningKey::from_file(path, passphrase.as_deref()).fault(Fault::Input)?)
}

fn build(args: &BuildArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    let spec_path = spec_path(&args.pack);
    let spec = PackSpec::load(&spec_path).classified()?;
    let dir = spec_path.parent().unwrap_or(Utf8Path::new("."));
    let env = spec.signing.passphrase_env.clone().unwrap_or_else(|| DEFAULT_PASSPHRASE_ENV.into());
    let roots =
        xspack_io::InputRoots::new(dir, &args.allow_outside).map_err(|e| usage(e.to_string()))?;
    let key_path = match (&args.sign_key, &spec.signing.key) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(key)) => {
            // A key named by pack.toml stays inside the pack, like every path in it.
            let path = dir.join(key);
            roots
                .check_file(&path)
                .map_err(|e| bad_input(format!("{spec_path}: signing.key: {e}")))?;
            Some(path)
        }
        (None, None) => None,
    };
    let key = match (&key_path, args.unsigned) {
        (Some(path), false) => Some(load_key(path, &env)?),
        _ => None,
    };
    let formats = args.format.map(|f| match f {
        FormatArg::Legacy => vec![PackFormat::Legacy],
        FormatArg::Update => vec![PackFormat::Update],
        FormatArg::Both => vec![PackFormat::Legacy, PackFormat::Update],
    });
    let dest =
        args.output.clone().unwrap_or_else(|| Utf8PathBuf::from("dist").join(&spec.pack.name));
    let inputs: Vec<Utf8PathBuf> =
        [Some(dir.to_owned()), key_path.clone()].into_iter().flatten().collect();
    let mut out = outputs::open(&dest, source_date_epoch, args.force, &inputs)?;
    let mut opts = BuildOptions::new(source_date_epoch, key.as_ref(), ui.progress());
    opts.formats = formats;
    opts.unsigned = args.unsigned;
    opts.allow_outside.clone_from(&args.allow_outside);
    opts.sign_key_file = key_path.clone().filter(|_| key.is_some());
    let summary = xspack_pack::build_pack(&spec_path, &mut out, &opts).classified()?;
    if args.unsigned {
        ui.warn("the update pack is unsigned: xe update-upload will refuse it");
    }
    let extra = json!({
        "target": summary.target.id,
        "update_uuid": summary.update_uuid,
        "rpms": summary.rpms,
        "signed": key.is_some(),
    });
    outputs::commit(ui, out, &summary.outputs, extra)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs, ui: &Ui) -> Result<ExitCode> {
    let key = match &args.key {
        Some(path) => Some(
            xspack_rpmrepo::PublicKey::from_file(path)
                .map_err(|e| usage(format!("--key {path}: {e}")))?,
        ),
        None => None,
    };
    let report = xspack_pack::verify::verify_iso(&args.iso, key.as_ref(), args.target).map_err(
        |e| -> anyhow::Error {
            if e.is_bad_input() {
                bad_input(format!("{}: {e}", args.iso)).into()
            } else {
                anyhow::Error::new(e).context(args.iso.to_string())
            }
        },
    )?;
    for w in &report.warnings {
        ui.warn(&format!("{}: {w}", args.iso));
    }
    if ui.json {
        // The ISO as the input it is: its digest names exactly what was verified.
        let file =
            std::fs::File::open(&args.iso).with_context(|| format!("{}: cannot open", args.iso))?;
        let (digest, size) =
            xspack_io::hash_reader(file).with_context(|| format!("{}: reading", args.iso))?;
        let input = json!({ "name": args.iso, "kind": "iso", "digest": format!("sha256:{digest}"), "size": size });
        ui.result(json!({ "iso": args.iso, "report": report, "inputs": [input] }));
    } else {
        ui.say(&format!("{}: OK for {} ({})", args.iso, report.target, report.checked.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: &KeygenArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    let created = u32::try_from(source_date_epoch).unwrap_or(u32::MAX);
    let mut opts = xspack_rpmrepo::TestKeyOptions::new(args.user_id.clone(), created);
    if args.protect {
        let passphrase =
            std::env::var(DEFAULT_PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()).ok_or_else(
                || usage(format!("--protect: set ${DEFAULT_PASSPHRASE_ENV} to the passphrase")),
            )?;
        opts.passphrase = Some(passphrase);
    }
    let key = xspack_rpmrepo::generate_test_key(&opts).classified()?;
    let out = xspack_io::AtomicDir::create(&args.output)?;
    let secret = out.path().join("signing.asc");
    std::fs::write(&secret, &key.secret_armored).with_context(|| format!("{secret}: writing"))?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("{secret}: setting mode 0600"))?;
    std::fs::write(out.path().join("signing.pub.asc"), &key.public_armored)?;
    let dest = out.commit()?;
    if ui.json {
        let artifacts: Vec<_> =
            [("signing.asc", &key.secret_armored), ("signing.pub.asc", &key.public_armored)]
                .into_iter()
                .map(|(name, text)| outputs::artifact(name, text.as_bytes()))
                .collect();
        ui.result(json!({
            "output_dir": dest,
            "artifacts": artifacts,
            "fingerprint": key.info.fingerprint,
        }));
    } else {
        ui.say(&format!("{dest}/signing.asc: secret key (keep it out of version control)"));
        ui.say(&format!("{dest}/signing.pub.asc: public key {}", key.info.fingerprint));
    }
    Ok(ExitCode::SUCCESS)
}
