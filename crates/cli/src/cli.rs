//! Command-line definitions: the CLI contract that README.md's "Command line" section states
//! (users and CI scripts depend on it; change it only on purpose).

use camino::Utf8PathBuf;
use clap::{ArgAction, Args, Parser, Subcommand};

/// Build XenServer supplemental packs, VM templates and guest disk images, and check them.
///
/// Every build writes SHA256SUMS and manifest.json beside its artifacts.
/// Exit codes: 0 ok, 1 failure, 2 usage error, 3 verification failed (the input is bad).
#[derive(Debug, Parser)]
#[command(name = "xspack", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print nothing but errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail; repeat for more
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Print one machine-readable JSON result on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Timestamp for every time field in outputs [default: $SOURCE_DATE_EPOCH, then 0]
    #[arg(long, global = true, value_name = "N", env = "SOURCE_DATE_EPOCH", hide_env = true)]
    pub source_date_epoch: Option<u64>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a build directory against its SHA256SUMS and manifest.json
    ///
    /// Every listed file must exist with the recorded size and SHA-256, and no unlisted file may
    /// be present. Given a single file, checks it against the lists in its directory.
    /// Exits 3 and names each missing, extra or mismatched file when verification fails.
    Verify(VerifyArgs),
    /// Show what a build directory holds: tool, inputs and outputs from its manifest
    Inspect(InspectArgs),
    /// Build guest disk images from container images
    Image(crate::image::ImageArgs),
    /// Build and check supplemental packs for xe-install-supplemental-pack
    Pack(crate::pack::PackArgs),
    /// Build VM templates: guest-templates JSON, template RPMs and template XVAs
    Template(crate::template::TemplateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(crate::docs::CompletionsArgs),
    /// Write the man pages of every command into a directory
    Man(crate::docs::ManArgs),
}

impl Command {
    /// The subcommand's full name (`pack build`), for JSON results and hints.
    pub fn name(&self) -> &'static str {
        use crate::image::ImageCommand;
        use crate::pack::PackCommand;
        use crate::template::TemplateCommand;
        match self {
            Command::Verify(_) => "verify",
            Command::Inspect(_) => "inspect",
            Command::Image(a) => match a.command {
                ImageCommand::Build(_) => "image build",
            },
            Command::Pack(a) => match a.command {
                PackCommand::Build(_) => "pack build",
                PackCommand::Verify(_) => "pack verify",
                PackCommand::Keygen(_) => "pack keygen",
                PackCommand::List(_) => "pack list",
            },
            Command::Template(a) => match a.command {
                TemplateCommand::Build(_) => "template build",
                TemplateCommand::Check(_) => "template check",
            },
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }
}

/// Arguments of `xspack verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A build directory, or one file inside it
    #[arg(value_name = "DIR | FILE")]
    pub target: Utf8PathBuf,
}

/// Arguments of `xspack inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A build directory, or its manifest.json or SHA256SUMS
    #[arg(value_name = "DIR | FILE")]
    pub target: Utf8PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
